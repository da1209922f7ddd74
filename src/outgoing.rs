//! A response on its way out: head bytes, file ranges and multipart glue, written to a
//! non-blocking socket so that a slow reader never holds a worker.
//!
//! [`Outgoing::pump`] writes until the response is done, the socket would block, or the
//! turn's byte budget is spent. On "would block" the connection is parked with the keeper for
//! writability and the next worker resumes exactly where this one stopped. This is what
//! stops the slow-read attack (many clients downloading large files at a trickle): without
//! it each of them holds a worker for the whole transfer, and a handful starve the pool.
//!
//! File ranges go out as positioned reads (`pread`) into one reusable buffer per worker and
//! plain writes. The offset is ours, so when the socket takes only part of a chunk the rest
//! is simply read again next time: the accounting is exact whatever the socket does. We do
//! not use `io::copy` for this: the Rust standard library no longer turns a copy from a
//! `File` to a `TcpStream` into sendfile(2) (measured with strace on Rust 1.95: `read` +
//! `sendto` of 8 KiB each, see rust-lang/rust#128300 for why), and its 8 KiB buffer costs
//! eight times the system calls of our 64 KiB chunk. Zero-copy sendfile would need `unsafe`
//! or a new dependency; the issue tracker has the measurements that would justify one.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use std::sync::Arc;

use crate::cache::{Cached, INLINE_BODY_MAX};
use crate::conditional::MultipartLayout;

/// Bytes one worker sends on one connection before it looks whether others wait for a
/// worker (fairness for large downloads to fast clients; 1 MiB is a few hundred µs of
/// sendfile on loopback, well under the latency a waiting client notices).
pub const TURN_BUDGET: u64 = 1024 * 1024;

/// Size of each worker's file-to-socket buffer: one `pread` and one `write` per chunk. Small
/// enough that the buffer stays in the L2 cache between the two copies (measured on the bench
/// machine, 1 MiB bodies to 8 clients: 64 KiB ~2,700 req/s, 128 KiB ~2,100, 256 KiB ~2,500,
/// 32 KiB ~2,400; issue 7), large enough that a 1 MiB file is 16 round trips. Allocated on a
/// worker's first large body.
pub const COPY_CHUNK: usize = 64 * 1024;

thread_local! {
    /// The chunk buffer of the thread that pumps (a worker).
    static CHUNK: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What [`Outgoing::pump`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Everything is written.
    Done,
    /// The socket would block: wait for writability.
    Blocked,
    /// The turn's budget is spent; more to send.
    Budget,
}

#[derive(Debug)]
enum Part {
    /// Bytes in memory, the first `pos` already written.
    Bytes { buf: Vec<u8>, pos: usize },
    /// `data[start..end]` of a cached representation, not yet written.
    Shared {
        data: Arc<Cached>,
        rep: usize,
        start: usize,
        end: usize,
    },
    /// `len` bytes of the file from `offset`.
    File { offset: u64, len: u64 },
}

/// A response being written. Built in full before the first byte goes out.
#[derive(Debug)]
pub struct Outgoing {
    parts: VecDeque<Part>,
    file: Option<File>,
    head_len: u64,
    written: u64,
}

impl Outgoing {
    /// A response that is all in memory (head, or head and a generated body).
    pub fn bytes(buf: Vec<u8>, head_len: usize) -> Outgoing {
        Outgoing {
            head_len: head_len as u64,
            parts: VecDeque::from([Part::Bytes { buf, pos: 0 }]),
            file: None,
            written: 0,
        }
    }

    /// `head` then the cached representation's bytes `start..end`, without copying them:
    /// both go out in one vectored write.
    pub fn shared(
        head: Vec<u8>,
        data: Arc<Cached>,
        rep: usize,
        start: usize,
        end: usize,
    ) -> Outgoing {
        let head_len = head.len();
        let mut parts = VecDeque::with_capacity(2);
        parts.push_back(Part::Bytes { buf: head, pos: 0 });
        if start < end {
            parts.push_back(Part::Shared {
                data,
                rep,
                start,
                end,
            });
        }
        Outgoing {
            head_len: head_len as u64,
            parts,
            file: None,
            written: 0,
        }
    }

    /// `head` then `len` bytes of `file` from `offset` (nothing after the head for HEAD).
    /// Bodies up to [`INLINE_BODY_MAX`] are read now and joined to the head.
    pub fn file(
        mut head: Vec<u8>,
        mut file: File,
        offset: u64,
        len: u64,
        head_only: bool,
    ) -> io::Result<Outgoing> {
        let head_len = head.len();
        if head_only || len == 0 {
            return Ok(Outgoing::bytes(head, head_len));
        }
        if len <= INLINE_BODY_MAX {
            file.seek(SeekFrom::Start(offset))?;
            head.resize(head_len + len as usize, 0);
            file.read_exact(&mut head[head_len..])?;
            return Ok(Outgoing::bytes(head, head_len));
        }
        let mut out = Outgoing::bytes(head, head_len);
        out.parts.push_back(Part::File { offset, len });
        out.file = Some(file);
        Ok(out)
    }

    /// `head` then a `multipart/byteranges` body laid out by
    /// [`crate::conditional::multipart_layout`] (RFC 9110 §14.6).
    pub fn multipart(
        head: Vec<u8>,
        file: File,
        layout: MultipartLayout,
        head_only: bool,
    ) -> Outgoing {
        let head_len = head.len();
        let mut out = Outgoing::bytes(head, head_len);
        if head_only {
            return out;
        }
        for (part_head, range) in layout.parts {
            out.parts.push_back(Part::Bytes {
                buf: part_head,
                pos: 0,
            });
            out.parts.push_back(Part::File {
                offset: range.start,
                len: range.len(),
            });
        }
        out.parts.push_back(Part::Bytes {
            buf: layout.trailer,
            pos: 0,
        });
        out.file = Some(file);
        out
    }

    /// Body bytes written so far (for the access log).
    pub fn body_written(&self) -> u64 {
        self.written.saturating_sub(self.head_len)
    }

    /// Writes to the non-blocking `stream` (a client socket; a `Vec` in tests) until done,
    /// blocked, or `budget` bytes are sent. An error means the connection is unusable (the
    /// client left, or the file shrank so the promised Content-Length cannot be kept).
    pub fn pump(&mut self, stream: &mut impl Write, budget: u64) -> io::Result<Sent> {
        let mut spent = 0u64;
        while !self.parts.is_empty() {
            if spent >= budget {
                return Ok(Sent::Budget);
            }
            if let Some(Part::File { offset, len }) = self.parts.front_mut() {
                let file = self.file.as_ref().ok_or(io::ErrorKind::InvalidInput)?;
                let chunk = (*len).min(budget - spent);
                let (n, all) = copy_range(file, *offset, chunk, stream)?;
                *offset += n;
                *len -= n;
                spent += n;
                self.written += n;
                if *len == 0 {
                    self.parts.pop_front();
                } else if !all || n == 0 {
                    // The socket took less than offered: its buffer is full.
                    return Ok(Sent::Blocked);
                }
                continue;
            }
            let first = self.parts[0].in_memory().unwrap_or(&[]);
            if first.is_empty() {
                self.parts.pop_front();
                continue;
            }
            // An in-memory part goes out together with the next one if that is in memory too
            // (a head and its cached body): one `write_vectored`, no copy.
            let second = self.parts.get(1).and_then(Part::in_memory).unwrap_or(&[]);
            let (first_len, second_len) = (first.len(), second.len());
            let n = match stream.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) => {
                    would_block(e)?;
                    return Ok(Sent::Blocked);
                }
            };
            self.advance_memory(n, first_len, second_len);
            spent += n as u64;
            self.written += n as u64;
        }
        Ok(Sent::Done)
    }

    /// Accounts `n` bytes written from the first part (`first_len` unwritten) and then the
    /// second (`second_len`), dropping the parts that are finished.
    fn advance_memory(&mut self, n: usize, first_len: usize, second_len: usize) {
        let from_first = n.min(first_len);
        if from_first < first_len {
            self.parts[0].advance(from_first);
            return;
        }
        self.parts.pop_front();
        let from_second = n - from_first;
        if from_second == 0 {
            return;
        }
        if from_second == second_len {
            self.parts.pop_front();
        } else {
            self.parts[0].advance(from_second);
        }
    }
}

impl Part {
    /// The unwritten bytes of a part held in memory; `None` for a file range.
    fn in_memory(&self) -> Option<&[u8]> {
        match self {
            Part::Bytes { buf, pos } => Some(&buf[*pos..]),
            Part::Shared {
                data,
                rep,
                start,
                end,
            } => Some(&data.reps[*rep].bytes[*start..*end]),
            Part::File { .. } => None,
        }
    }

    /// Marks `n` more bytes of an in-memory part as written.
    fn advance(&mut self, n: usize) {
        match self {
            Part::Bytes { pos, .. } => *pos += n,
            Part::Shared { start, .. } => *start += n,
            Part::File { .. } => {}
        }
    }
}

/// `Ok` for "would block" (or an interrupted call: the connection parks and is resumed),
/// the error otherwise.
fn would_block(e: io::Error) -> io::Result<()> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
        _ => Err(e),
    }
}

/// Sends up to one chunk of the `len` bytes of `file` at `offset`: returns how many the
/// socket took and whether that was all it was offered. A file that ends early is an error:
/// the head has promised more.
fn copy_range(
    file: &File,
    offset: u64,
    len: u64,
    stream: &mut impl Write,
) -> io::Result<(u64, bool)> {
    CHUNK.with_borrow_mut(|buf| {
        if buf.len() < COPY_CHUNK {
            buf.resize(COPY_CHUNK, 0);
        }
        let want = len.min(COPY_CHUNK as u64) as usize;
        let got = loop {
            match file.read_at(&mut buf[..want], offset) {
                Ok(0) => return Err(shrank()),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        match stream.write(&buf[..got]) {
            Ok(n) => Ok((n as u64, n == got)),
            Err(e) => would_block(e).map(|()| (0, false)),
        }
    })
}

fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sending")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditional::{multipart_layout, ByteRange};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// The unwritten in-memory bytes, part by part.
    fn pending(out: &Outgoing) -> Vec<Vec<u8>> {
        out.parts
            .iter()
            .map(|p| p.in_memory().map_or(b"<file>".to_vec(), <[u8]>::to_vec))
            .collect()
    }

    #[test]
    fn a_partial_vectored_write_is_accounted_in_both_parts() {
        let body = Arc::new(crate::cache::Cached::new(
            "text/plain",
            vec![crate::cache::CachedRep {
                coding: None,
                bytes: b"0123456789".to_vec(),
                modified: None,
                etag: "\"t\"".into(),
            }],
        ));
        // (bytes written, what is left) for a head "head!" and a cached body 2..10.
        let table: [(usize, &[&[u8]]); 6] = [
            (0, &[b"head!", b"23456789"]),
            (3, &[b"d!", b"23456789"]),
            (5, &[b"23456789"]),
            (6, &[b"3456789"]),
            (12, &[b"9"]),
            (13, &[]),
        ];
        for (n, left) in table {
            let mut out = Outgoing::shared(b"head!".to_vec(), Arc::clone(&body), 0, 2, 10);
            out.advance_memory(n, 5, 8);
            assert_eq!(pending(&out), left, "after {n} bytes");
        }
        // Two byte parts before a file range (multipart glue): the file part is untouched.
        let mut out = Outgoing::bytes(b"ab".to_vec(), 2);
        out.parts.push_back(Part::Bytes {
            buf: b"cd".to_vec(),
            pos: 0,
        });
        out.parts.push_back(Part::File { offset: 0, len: 1 });
        out.advance_memory(3, 2, 2);
        assert_eq!(pending(&out), [b"d".to_vec(), b"<file>".to_vec()]);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (a, b)
    }

    fn temp_file(data: &[u8]) -> (std::path::PathBuf, File) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("poolserve-outgoing-{}-{n}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        let f = File::open(&path).unwrap();
        (path, f)
    }

    /// Pumps `out` into a receiver that reads in small, irregular sips, so the sender blocks
    /// many times mid-range; returns everything the receiver got.
    fn drain_slowly(mut out: Outgoing, total: usize, budget: u64) -> (Vec<u8>, usize) {
        let (mut tx, mut rx) = pair();
        let mut got = Vec::new();
        let mut blocked = 0;
        let mut sip = vec![0u8; 7919];
        loop {
            match out.pump(&mut tx, budget).unwrap() {
                Sent::Done => break,
                Sent::Blocked => {
                    blocked += 1;
                    let n = rx.read(&mut sip).unwrap();
                    got.extend_from_slice(&sip[..n]);
                }
                Sent::Budget => {}
            }
        }
        drop(tx);
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), total);
        (got, blocked)
    }

    #[test]
    fn a_blocked_file_range_resumes_byte_exact() {
        let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (path, file) = temp_file(&data);
        let head = b"HEAD\r\n\r\n".to_vec();
        let out = Outgoing::file(head.clone(), file, 1000, 7_000_000, false).unwrap();
        let (got, blocked) = drain_slowly(out, head.len() + 7_000_000, u64::MAX);
        assert!(blocked > 10, "the receiver must have made the sender wait");
        assert_eq!(&got[..head.len()], &head[..]);
        assert!(got[head.len()..] == data[1000..7_001_000], "body differs");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn multipart_and_budget_turns_resume_byte_exact() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (path, file) = temp_file(&data);
        let ranges = [
            ByteRange {
                start: 0,
                end: 999_999,
            },
            ByteRange {
                start: 2_000_000,
                end: 2_999_999,
            },
        ];
        let layout = multipart_layout(&ranges, data.len() as u64, "text/plain", "B");
        let mut want = b"H\r\n\r\n".to_vec();
        for (part_head, r) in &layout.parts {
            want.extend_from_slice(part_head);
            want.extend_from_slice(&data[r.start as usize..=r.end as usize]);
        }
        want.extend_from_slice(&layout.trailer);
        let out = Outgoing::multipart(b"H\r\n\r\n".to_vec(), file, layout, false);
        let (got, _) = drain_slowly(out, want.len(), 100_000);
        assert!(got == want, "multipart body differs");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn small_bodies_are_inline_and_head_only_sends_the_head() {
        let (path, file) = temp_file(b"hello world");
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, 6, 5, false).unwrap();
        assert_eq!(out.parts.len(), 1, "one write for head and body");
        let (got, _) = drain_slowly(out, 10, u64::MAX);
        assert_eq!(got, b"H\r\n\r\nworld");
        let file = File::open(&path).unwrap();
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, 0, 11, true).unwrap();
        assert_eq!(drain_slowly(out, 5, u64::MAX).0, b"H\r\n\r\n");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_a_short_body() {
        let data = vec![1u8; 100_000];
        let (path, file) = temp_file(&data);
        let mut out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, 0, 100_000, false).unwrap();
        std::fs::write(&path, b"short").unwrap();
        let (mut tx, _rx) = pair();
        let err = out.pump(&mut tx, u64::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(path).unwrap();
    }
}
