//! A file truncated and restored in place while clients download it (issue 16). sendfile
//! sends page-cache pages, and a truncate zeroes the page (on ext4, the whole large folio)
//! around the new end in place, also under bytes already queued for a client: nginx and
//! lighttpd then complete responses whose tails are zeros. poolserve checks the file before
//! the last chunk of a zero-copy body and cuts the response if it changed, so a client sees
//! a short body, never a complete one with bytes that were never in the file.
//!
//! The test drives the case that check is for, deterministically: a client reads the start
//! of a download and pauses, so the server fills the socket buffers and parks; the file is
//! truncated a page past where the client is (inside the bytes queued for it); the client
//! reads on through the zeroed page; the file is restored; the server resumes. Without the
//! check that response completes with zeros in it. Bystander clients download the same file
//! all along and must never get a complete body with foreign bytes either.
//!
//! What no server can catch (see `outgoing.rs`): a change after the server wrote the last
//! byte, while the client still has unread bytes in its socket buffer. The changes here are
//! kept in the file's first few MiB, which a bystander near the end of its download has read
//! long before (the file is much larger than what loopback buffers hold).

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{TestDir, TestServer};

/// Much larger than what the socket buffers of a download hold, so the server is still
/// sending when the file changes.
const SIZE: usize = 24 << 20;
/// Downloads whose file changes under them.
const ROUNDS: usize = 32;
/// Body bytes read before the pause.
const PREFIX: usize = 256 << 10;
/// Body bytes read while the file is truncated.
const PEEK: usize = 64 << 10;
/// Clients downloading the whole file meanwhile, over and over.
const BYSTANDERS: usize = 2;

/// Bytes with no zero among them (zeros are what a truncate leaves), and different a page
/// apart, so that a page from the wrong place shows too.
fn content() -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 255 + 1) as u8
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    complete: AtomicU64,
    cut: AtomicU64,
    foreign: AtomicU64,
}

/// One download on a fresh connection: sends the request, then reads the head and calls
/// `body` with the stream and Content-Length; returns the body read.
struct Download {
    s: TcpStream,
    body: Vec<u8>,
    len: usize,
}

impl Download {
    fn start(addr: SocketAddr) -> Download {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "no head");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
        };
        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200 "), "{head}");
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        let mut body = Vec::with_capacity(len);
        body.extend_from_slice(&got[end + 4..]);
        Download { s, body, len }
    }

    /// Reads until the body has `upto` bytes (or Content-Length), or the server cuts.
    fn read_to(&mut self, upto: usize) {
        let mut buf = vec![0u8; 64 * 1024];
        while self.body.len() < upto.min(self.len) {
            let want = (upto.min(self.len) - self.body.len()).min(buf.len());
            match self.s.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(n) => self.body.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads the rest, and counts the download: complete (and whether with foreign bytes)
    /// or cut. Returns whether it was complete.
    fn finish(mut self, want: &[u8], tally: &Tally) -> bool {
        self.read_to(self.len);
        if self.body.len() < self.len {
            tally.cut.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        tally.complete.fetch_add(1, Ordering::Relaxed);
        // A download that started while the file was short has the short length.
        if self.body != want[..self.len] {
            tally.foreign.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

#[test]
fn a_file_truncated_and_restored_during_downloads_never_gives_foreign_bytes() {
    let d = TestDir::new();
    let want = Arc::new(content());
    let path = d.file("big.bin", &*want);
    let mut c = support::config(&d.path);
    c.workers = 4;
    let srv = TestServer::with_config(c);
    let stop = Arc::new(AtomicBool::new(false));
    let bystanders = Arc::new(Tally::default());
    let watchers: Vec<_> = (0..BYSTANDERS)
        .map(|_| {
            let (stop, want, tally) = (stop.clone(), want.clone(), bystanders.clone());
            let addr = srv.addr;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    Download::start(addr).finish(&want, &tally);
                }
            })
        })
        .collect();

    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let changed = Tally::default();
    for round in 0..ROUNDS {
        let mut dl = Download::start(srv.addr);
        dl.read_to(PREFIX);
        // The server fills the socket buffers and parks for writability.
        std::thread::sleep(Duration::from_millis(20));
        // A page past the client, inside a page: the zeroed bytes are queued for it.
        let at = (dl.body.len() + 4096) | 1;
        file.set_len(at as u64).unwrap();
        dl.read_to(dl.body.len() + PEEK);
        restore(&file, &want, at);
        if dl.finish(&want, &changed) {
            eprintln!("round {round}: a download the file changed under completed");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.join().unwrap();
    }
    let count = |t: &Tally| {
        (
            t.complete.load(Ordering::Relaxed),
            t.cut.load(Ordering::Relaxed),
            t.foreign.load(Ordering::Relaxed),
        )
    };
    let (changed, bystanders) = (count(&changed), count(&bystanders));
    eprintln!("changed under: {changed:?}, bystanders: {bystanders:?} (complete, cut, foreign)");
    assert_eq!(
        changed.2, 0,
        "complete bodies with bytes that were never in the file"
    );
    assert_eq!(bystanders.2, 0, "bystanders got bodies with foreign bytes");
    // Stronger, and deterministic: the server was still sending when the file changed.
    assert_eq!(
        changed,
        (0, ROUNDS as u64, 0),
        "every changed download is cut"
    );
    assert!(bystanders.0 > 0, "no bystander download completed");
}

/// Writes the file's tail back in place from `at`.
fn restore(file: &File, want: &[u8], at: usize) {
    file.write_all_at(&want[at..], at as u64).unwrap();
}
