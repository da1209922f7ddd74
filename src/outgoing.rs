//! A response on its way out: head bytes, file ranges and multipart glue, written to a
//! non-blocking socket so that a slow reader never holds a worker.
//!
//! [`Outgoing::pump`] writes until the response is done, the socket would block, or the
//! turn's byte budget is spent. On "would block" the connection is parked with the keeper for
//! writability and the next worker resumes exactly where this one stopped. This is what
//! stops the slow-read attack (many clients downloading large files at a trickle): without
//! it each of them holds a worker for the whole transfer, and a handful starve the pool.
//!
//! # File ranges
//! On Linux a range of at least [`ZERO_COPY_MIN`] bytes goes out by sendfile(2) (`sys`): the
//! kernel hands page-cache pages to the socket, nothing is copied through user space. The
//! offset is ours and sendfile says how many bytes the socket took, so a partial send
//! advances exactly that far, and "would block" parks the connection as above. Shorter
//! ranges, and every range on other Unixes, go out by copy: positioned reads (`pread`) into
//! one reusable buffer per worker and plain writes, just as exact (what the socket did not
//! take is read again next time). We do not use `io::copy` for this: the Rust standard
//! library no longer turns a copy from a `File` to a `TcpStream` into sendfile(2) (measured
//! with strace on Rust 1.95: `read` + `sendto` of 8 KiB each, see rust-lang/rust#128300 for
//! why), and it cannot resume on a non-blocking socket.
//!
//! The head leaves in the same segment as the first body bytes: bytes right before a file
//! range are written with `MSG_MORE`, which holds a partial segment back for the range's first
//! write (before, a head went alone in its own segment). `TCP_CORK` set before the head and
//! cleared after the first chunk does the same with two more system calls per response; we
//! measured both on 128 KiB and 1 MiB files (wrk, 8 connections, server on one core, three
//! rounds each): `MSG_MORE` 33.2-34.6 and 136.8-139.0 µs of server CPU per request, `TCP_CORK`
//! 35.3-37.9 and 147.2-149.2, and 22.8 against 25.8 system calls per request (strace).
//!
//! # A file that changes under a response
//! sendfile sends page-cache pages by reference, and a truncate zeroes the page (on ext4 the
//! whole large folio, up to megabytes) around the new end in place, also under bytes already
//! queued in a socket: nginx and lighttpd then complete responses with zeros in them. So in a
//! response with a zero-copy range, the range's last [`ZERO_COPY_TAIL`] bytes and every other
//! chunk copied are read first and sent only if the file still has the length and ctime it
//! had when it was opened ([`FileStamp`], one `fstat`); otherwise the connection is closed and
//! the client sees a short body. A change at any time before that last check is caught,
//! whatever it did to bytes already sent (tests/integrity.rs: 32 downloads changed under, all
//! cut; without the check 31-32 of 32 complete with zeros). What no server can catch: a change
//! after the last check while the client has not read everything yet. On loopback the
//! client's receive buffer still holds the pages (up to `tcp_rmem`'s maximum, 32 MiB here);
//! remotely, bytes not yet acknowledged would be resent from them. The copy path needs no
//! check: a read of a shortened file comes up short, which ends the connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;

use std::sync::Arc;

use crate::cache::{Cached, INLINE_BODY_MAX};
use crate::conditional::MultipartLayout;
use crate::resolve::FileStamp;
#[cfg(target_os = "linux")]
use crate::sys;

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

/// File ranges at least this long go out by sendfile(2) on Linux; shorter ones by copy. Below
/// it the sendfile, the tail's read and the `fstat` before it cost more than copying the
/// whole range. Measured with wrk (8 connections, server on one core, three rounds, server CPU
/// µs per request, copy / sendfile): 64 KiB 29.0-29.9 / 30.1-30.6, 96 KiB 35.2-36.2 /
/// 35.5-41.8, 128 KiB 40.0-49.5 / 33.7-37.4, 256 KiB 62.3-63.9 / 45.2-46.5, 1 MiB 249-254 /
/// 147-163 (137-139 once the tail went in one piece).
pub const ZERO_COPY_MIN: u64 = 128 * 1024;

/// The last bytes of a zero-copy range, sent by copy after the check (see the module docs):
/// one read, one `fstat`, one write. 4 KiB and 16 KiB measured the same within noise on 96
/// KiB and 1 MiB files.
pub const ZERO_COPY_TAIL: u64 = 16 * 1024;

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
    /// `len` bytes of the file from `offset`; by sendfile up to its last
    /// [`ZERO_COPY_TAIL`] bytes when `zero_copy`.
    File {
        offset: u64,
        len: u64,
        zero_copy: bool,
    },
}

/// A response being written. Built in full before the first byte goes out.
#[derive(Debug)]
pub struct Outgoing {
    parts: VecDeque<Part>,
    file: Option<File>,
    /// The file's stamp at open, kept when a range goes by sendfile: every chunk copied is
    /// then sent only if the file still has it.
    stamp: Option<FileStamp>,
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
            stamp: None,
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
            stamp: None,
            written: 0,
        }
    }

    /// `head` then `len` bytes of `file` from `offset` (nothing after the head for HEAD);
    /// `stamp` is the file's at open. Bodies up to [`INLINE_BODY_MAX`] are read now and
    /// joined to the head.
    pub fn file(
        mut head: Vec<u8>,
        mut file: File,
        stamp: FileStamp,
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
        out.push_file(offset, len, stamp);
        out.file = Some(file);
        Ok(out)
    }

    /// `head` then a `multipart/byteranges` body laid out by
    /// [`crate::conditional::multipart_layout`] (RFC 9110 §14.6).
    pub fn multipart(
        mut head: Vec<u8>,
        file: File,
        stamp: FileStamp,
        layout: MultipartLayout,
        head_only: bool,
    ) -> Outgoing {
        let head_len = head.len();
        if head_only {
            return Outgoing::bytes(head, head_len);
        }
        let mut parts = layout.parts.into_iter();
        // The first part's head joins the response head: one buffer before the first range.
        if let Some((part_head, _)) = parts.as_slice().first() {
            head.extend_from_slice(part_head);
        }
        let mut out = Outgoing::bytes(head, head_len);
        for (i, (part_head, range)) in parts.by_ref().enumerate() {
            if i > 0 {
                out.parts.push_back(Part::Bytes {
                    buf: part_head,
                    pos: 0,
                });
            }
            out.push_file(range.start, range.len(), stamp);
        }
        out.parts.push_back(Part::Bytes {
            buf: layout.trailer,
            pos: 0,
        });
        out.file = Some(file);
        out
    }

    /// Queues `len` bytes of the file from `offset`: by sendfile when the range is long
    /// enough ([`ZERO_COPY_MIN`]), which keeps `stamp` for the checks before each copy.
    fn push_file(&mut self, offset: u64, len: u64, stamp: FileStamp) {
        let zero_copy = zero_copy_fits(offset, len);
        if zero_copy {
            self.stamp = Some(stamp);
        }
        self.parts.push_back(Part::File {
            offset,
            len,
            zero_copy,
        });
    }

    /// Body bytes written so far (for the access log).
    pub fn body_written(&self) -> u64 {
        self.written.saturating_sub(self.head_len)
    }

    /// Writes to the non-blocking `stream` until done, blocked, or `budget` bytes are sent. An
    /// error means the connection is unusable: the client left, or the file shrank or changed
    /// so that the promised body cannot be sent as it was.
    pub fn pump(&mut self, stream: &mut impl Sink, budget: u64) -> io::Result<Sent> {
        let mut spent = 0u64;
        while !self.parts.is_empty() {
            if spent >= budget {
                return Ok(Sent::Budget);
            }
            if let Some(Part::File {
                offset,
                len,
                zero_copy,
            }) = self.parts.front_mut()
            {
                let file = self.file.as_ref().ok_or(io::ErrorKind::InvalidInput)?;
                let room = budget - spent;
                let sent = if *zero_copy && *len > ZERO_COPY_TAIL {
                    // A short count is a full socket (or a file that shrank): the next call
                    // says which, with `WouldBlock` or 0.
                    stream
                        .send_file(file, *offset, (*len - ZERO_COPY_TAIL).min(room))?
                        .map(|n| (n, true))
                } else {
                    // A zero-copy range's tail goes in one piece, past the budget if need be:
                    // split, it would cost a second read and check.
                    let want = if *zero_copy { *len } else { (*len).min(room) };
                    copy_range(file, *offset, want, stream, self.stamp.as_ref())?
                };
                let Some((n, all)) = sent else {
                    return Ok(Sent::Blocked);
                };
                *offset += n;
                *len -= n;
                spent += n;
                self.written += n;
                if *len == 0 {
                    self.parts.pop_front();
                } else if !all {
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
            let written = if matches!(self.parts.get(1), Some(Part::File { .. })) {
                // Bytes right before a file range (a head): held back for the range's first
                // bytes, so that both leave in one segment.
                stream.write_more(first).map(|n| (n, first.len(), 0))
            } else {
                // An in-memory part goes out together with the next one if that is in memory
                // too (a head and its cached body): one `write_vectored`, no copy.
                let second = self.parts.get(1).and_then(Part::in_memory).unwrap_or(&[]);
                stream
                    .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
                    .map(|n| (n, first.len(), second.len()))
            };
            let n = match written {
                Ok((0, _, _)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok((n, first_len, second_len)) => {
                    self.advance_memory(n, first_len, second_len);
                    n
                }
                Err(e) => {
                    would_block(e)?;
                    return Ok(Sent::Blocked);
                }
            };
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

/// Whether a file range goes out by sendfile: when it is long enough.
#[cfg(target_os = "linux")]
fn zero_copy_fits(offset: u64, len: u64) -> bool {
    len >= ZERO_COPY_MIN && offset.checked_add(len).is_some_and(sys::sendfile_reaches)
}

/// Off Linux every range goes by copy.
#[cfg(not(target_os = "linux"))]
fn zero_copy_fits(_offset: u64, _len: u64) -> bool {
    false
}

/// Where [`Outgoing::pump`] writes: a client socket (a `Vec` in tests).
pub trait Sink: Write {
    /// Sends up to `len` bytes of `file` at `offset` without copying them (sendfile): how
    /// many the sink took, or `None` when it is full. A file that ends early is an error:
    /// the head has promised more.
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<Option<u64>>;

    /// Writes `buf` and lets the kernel hold back a segment that is not full for what
    /// follows (`MSG_MORE`).
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize>;
}

impl Sink for TcpStream {
    #[cfg(target_os = "linux")]
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<Option<u64>> {
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        match sys::sendfile(self, file, offset, want) {
            Ok(0) => Err(shrank()),
            Ok(n) => Ok(Some(n as u64)),
            Err(e) => would_block(e).map(|()| None),
        }
    }

    /// Off Linux no range is zero-copy ([`zero_copy_fits`]): this is the copy path.
    #[cfg(not(target_os = "linux"))]
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<Option<u64>> {
        copy_range(file, offset, len, self, None).map(|sent| sent.map(|(n, _)| n))
    }

    #[cfg(target_os = "linux")]
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::send_more(self, buf)
    }

    #[cfg(not(target_os = "linux"))]
    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// The handler's tests read responses from a `Vec`.
#[cfg(test)]
impl Sink for Vec<u8> {
    fn send_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<Option<u64>> {
        copy_range(file, offset, len, self, None).map(|sent| sent.map(|(n, _)| n))
    }

    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Sends up to one chunk of the `len` bytes of `file` at `offset` by copy: returns how many
/// the socket took and whether that was all it was offered, or `None` when it is full. A
/// file that ends early is an error: the head has promised more. With `verify`, the chunk is
/// sent only if the file still has that stamp once the chunk is read (see the module docs).
fn copy_range(
    file: &File,
    offset: u64,
    len: u64,
    stream: &mut impl Write,
    verify: Option<&FileStamp>,
) -> io::Result<Option<(u64, bool)>> {
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
        if let Some(stamp) = verify {
            if FileStamp::now(file)? != *stamp {
                return Err(changed());
            }
        }
        match stream.write(&buf[..got]) {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some((n as u64, n == got))),
            Err(e) => would_block(e).map(|()| None),
        }
    })
}

fn shrank() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sending")
}

fn changed() -> io::Error {
    io::Error::other("file changed while sending")
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
        out.parts.push_back(Part::File {
            offset: 0,
            len: 1,
            zero_copy: false,
        });
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
        let out = Outgoing::file(head.clone(), file, stamp(&path), 1000, 7_000_000, false).unwrap();
        assert_eq!(
            zero_copy_parts(&out),
            usize::from(cfg!(target_os = "linux"))
        );
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
        let out = Outgoing::multipart(b"H\r\n\r\n".to_vec(), file, stamp(&path), layout, false);
        assert_eq!(
            zero_copy_parts(&out),
            2 * usize::from(cfg!(target_os = "linux"))
        );
        let (got, _) = drain_slowly(out, want.len(), 100_000);
        assert!(got == want, "multipart body differs");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn small_bodies_are_inline_and_head_only_sends_the_head() {
        let (path, file) = temp_file(b"hello world");
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, stamp(&path), 6, 5, false).unwrap();
        assert_eq!(out.parts.len(), 1, "one write for head and body");
        let (got, _) = drain_slowly(out, 10, u64::MAX);
        assert_eq!(got, b"H\r\n\r\nworld");
        let file = File::open(&path).unwrap();
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, stamp(&path), 0, 11, true).unwrap();
        assert_eq!(drain_slowly(out, 5, u64::MAX).0, b"H\r\n\r\n");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_a_short_body() {
        let data = vec![1u8; 2 * ZERO_COPY_MIN as usize];
        let (path, _) = temp_file(&data);
        let at_open = stamp(&path);
        // Both paths: by copy (a range below the zero-copy minimum) and by sendfile.
        for len in [ZERO_COPY_MIN - 1, 2 * ZERO_COPY_MIN] {
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let mut out =
                Outgoing::file(b"H\r\n\r\n".to_vec(), file, at_open, 0, len, false).unwrap();
            std::fs::write(&path, b"short").unwrap();
            let (mut tx, _rx) = pair();
            let err = out.pump(&mut tx, u64::MAX).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{len} bytes");
        }
        std::fs::remove_file(path).unwrap();
    }

    /// Whether the ranges of `out` go by sendfile, part by part.
    fn zero_copy_parts(out: &Outgoing) -> usize {
        out.parts
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    Part::File {
                        zero_copy: true,
                        ..
                    }
                )
            })
            .count()
    }

    fn stamp(path: &std::path::Path) -> FileStamp {
        FileStamp::now(&File::open(path).unwrap()).unwrap()
    }

    #[test]
    fn ranges_below_the_zero_copy_minimum_are_copied_byte_exact() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let (path, file) = temp_file(&data);
        let len = ZERO_COPY_MIN - 1;
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), file, stamp(&path), 7, len, false).unwrap();
        assert_eq!(zero_copy_parts(&out), 0);
        let (got, _) = drain_slowly(out, 5 + len as usize, u64::MAX);
        assert!(got[5..] == data[7..7 + len as usize], "body differs");
        std::fs::remove_file(path).unwrap();
    }

    /// The integrity rule of a zero-copy body: a file changed in place (same length, so no
    /// read comes up short) after the response started is caught before its last chunk,
    /// and the response is cut rather than completed.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_file_changed_in_place_cuts_a_zero_copy_body_before_its_last_chunk() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 255 + 1) as u8).collect();
        let (path, file) = temp_file(&data);
        let at_open = stamp(&path);
        let mut out =
            Outgoing::file(b"H\r\n\r\n".to_vec(), file, at_open, 0, 1_000_000, false).unwrap();
        let (mut tx, mut rx) = pair();
        // Half of it goes out, then the file is rewritten in place with the same bytes.
        assert_eq!(out.pump(&mut tx, 500_000).unwrap(), Sent::Budget);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&data[..10], 0)
            .unwrap();
        let err = out.pump(&mut tx, u64::MAX).unwrap_err();
        assert_eq!(err.to_string(), "file changed while sending");
        assert_eq!(
            out.body_written(),
            1_000_000 - ZERO_COPY_TAIL,
            "all but the tail"
        );
        drop(tx);
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        assert_eq!(
            got.len() as u64,
            5 + 1_000_000 - ZERO_COPY_TAIL,
            "a short body"
        );
        std::fs::remove_file(path).unwrap();
    }
}
