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
//! A range goes out from one of two sources ([`Body`]). A file that has a snapshot (a sealed
//! in-memory copy, see `snapshot`: Linux, files from
//! [`ZERO_COPY_MIN`](crate::config::ZERO_COPY_MIN) up to a quarter of `--zero-copy-mem`) goes by sendfile(2) from the snapshot: nothing is copied through user
//! space. The offset is ours and sendfile says how many bytes the socket took, so a partial
//! send advances exactly that far, and "would block" parks the connection as above. Every
//! other range goes by copy: positioned reads (`pread`) into one reusable buffer per worker
//! and plain writes, just as exact (what the socket did not take is read again next time).
//! We do not use `io::copy` for this: the Rust standard library no longer turns a copy from a
//! `File` to a `TcpStream` into sendfile(2) (measured with strace on Rust 1.95: `read` +
//! `sendto` of 8 KiB each, see rust-lang/rust#128300 for why), and it cannot resume on a
//! non-blocking socket.
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
//! A snapshot cannot change (its seals forbid it), so a zero-copy body is always the bytes of
//! one version of the file. By copy, bytes are in our buffer before they are sent, so a
//! change after a read cannot reach them; what is left is a change between reads, which could
//! stitch two versions together (or a truncate, which ends a read short: the connection is
//! closed and the client sees a short body). So the chunk that ends a range is sent only if
//! the file still has the stamp it had at open ([`FileStamp`]: one `fstat` per range);
//! otherwise the connection is closed. Every byte sent was read before that check, so a
//! complete body is one version of the file.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;

use std::sync::Arc;

use crate::cache::{Cached, INLINE_BODY_MAX};
use crate::conditional::MultipartLayout;
use crate::resolve::FileStamp;
use crate::snapshot::Snapshot;
#[cfg(target_os = "linux")]
use crate::sys;

/// Bytes one worker sends on one connection before it looks whether others wait for a
/// worker (fairness for large downloads to fast clients; 1 MiB is a few hundred µs of
/// sendfile on loopback, well under the latency a waiting client notices).
pub const TURN_BUDGET: u64 = 1024 * 1024;

/// A response with at most this much left when the turn's budget is spent is finished in the
/// same turn: handing the connection to the next worker costs a ring of the doorbell and a
/// context switch, more than sending one more chunk, and without the slack a 1 MiB file and
/// its head always took two turns (bench S3: 1.06 `futex` calls per request).
pub const TURN_SLACK: u64 = 64 * 1024;

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
    /// `len` bytes of the body's file from `offset`.
    File { offset: u64, len: u64 },
    /// A body made as it is sent: `buf[pos..]` made and not yet written, `left` bytes
    /// promised and not yet made.
    Made {
        made: Box<dyn Generate>,
        buf: Vec<u8>,
        pos: usize,
        left: u64,
    },
}

/// A body made a piece at a time as the socket takes it (a listing page, see
/// [`crate::listing::Page`]), so that a large one is never whole in memory.
pub trait Generate: Send + std::fmt::Debug {
    /// Appends the next pieces to `out` until it holds at least `want` bytes or the body
    /// ends; false once nothing is left.
    fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool;
}

/// Where the file ranges of a response come from.
#[derive(Debug)]
pub enum Body {
    /// The open file, sent by copy, and its stamp at open (checked before the chunk that
    /// ends each range).
    File(File, FileStamp),
    /// A sealed snapshot of the file, sent by sendfile.
    Snapshot(Arc<Snapshot>),
}

impl Body {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Body::File(file, _) => file.read_exact_at(buf, offset),
            Body::Snapshot(snapshot) => snapshot.file().read_exact_at(buf, offset),
        }
    }
}

/// A response being written. Built in full before the first byte goes out.
#[derive(Debug)]
pub struct Outgoing {
    parts: VecDeque<Part>,
    body: Option<Body>,
    head_len: u64,
    written: u64,
}

impl Outgoing {
    /// A response that is all in memory (head, or head and a generated body).
    pub fn bytes(buf: Vec<u8>, head_len: usize) -> Outgoing {
        Outgoing {
            head_len: head_len as u64,
            parts: VecDeque::from([Part::Bytes { buf, pos: 0 }]),
            body: None,
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
            body: None,
            written: 0,
        }
    }

    /// Whether a body of `len` bytes is kept to go out as the socket takes it, rather than
    /// joined to its head at once (HEAD sends none; bodies up to [`INLINE_BODY_MAX`] are
    /// joined). What is kept is held for as long as the client takes to read it.
    pub fn keeps_body(len: u64, head_only: bool) -> bool {
        !head_only && len > INLINE_BODY_MAX
    }

    /// `head` then `len` bytes of `body` from `offset` (nothing after the head for HEAD).
    /// Bodies up to [`INLINE_BODY_MAX`] are read now and joined to the head.
    pub fn file(
        mut head: Vec<u8>,
        body: Body,
        offset: u64,
        len: u64,
        head_only: bool,
    ) -> io::Result<Outgoing> {
        let head_len = head.len();
        if !Outgoing::keeps_body(len, head_only) {
            if !head_only {
                head.resize(head_len + len as usize, 0);
                body.read_exact_at(&mut head[head_len..], offset)?;
            }
            return Ok(Outgoing::bytes(head, head_len));
        }
        let mut out = Outgoing::bytes(head, head_len);
        out.parts.push_back(Part::File { offset, len });
        out.body = Some(body);
        Ok(out)
    }

    /// `head` then the `len` bytes `made` makes (nothing after the head for HEAD). A body up
    /// to [`INLINE_BODY_MAX`] is made now and joined to the head; a longer one
    /// [`COPY_CHUNK`] at a time as the socket takes it. A body that turns out longer or
    /// shorter than `len` is an error when it does, and the connection closes: the head
    /// has promised `len` bytes.
    pub fn made(
        mut head: Vec<u8>,
        mut made: Box<dyn Generate>,
        len: u64,
        head_only: bool,
    ) -> io::Result<Outgoing> {
        let head_len = head.len();
        if !Outgoing::keeps_body(len, head_only) {
            if !head_only {
                made.fill(&mut head, usize::MAX);
                if (head.len() - head_len) as u64 != len {
                    return Err(not_as_promised());
                }
            }
            return Ok(Outgoing::bytes(head, head_len));
        }
        let mut out = Outgoing::bytes(head, head_len);
        out.parts.push_back(Part::Made {
            made,
            buf: Vec::new(),
            pos: 0,
            left: len,
        });
        Ok(out)
    }

    /// `head` then a `multipart/byteranges` body laid out by
    /// [`crate::conditional::multipart_layout`] (RFC 9110 §14.6).
    pub fn multipart(
        mut head: Vec<u8>,
        body: Body,
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
            out.parts.push_back(Part::File {
                offset: range.start,
                len: range.len(),
            });
        }
        out.parts.push_back(Part::Bytes {
            buf: layout.trailer,
            pos: 0,
        });
        out.body = Some(body);
        out
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
            // Past the budget only to finish (see TURN_SLACK).
            let room = match budget.checked_sub(spent) {
                Some(room) if room > 0 => room,
                _ if self.left() <= TURN_SLACK => TURN_SLACK,
                _ => return Ok(Sent::Budget),
            };
            if let Some(Part::File { offset, len }) = self.parts.front_mut() {
                let sent = match self.body.as_ref().ok_or(io::ErrorKind::InvalidInput)? {
                    Body::Snapshot(snapshot) => {
                        let want = (*len).min(room);
                        // A short count is a full socket.
                        stream
                            .send_file(snapshot.file(), *offset, want)?
                            .map(|n| (n, n == want))
                    }
                    Body::File(file, stamp) => {
                        copy_range(file, stamp, *offset, *len, room, stream)?
                    }
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
            if let Some(Part::Made {
                made,
                buf,
                pos,
                left,
            }) = self.parts.front_mut()
            {
                if *pos == buf.len() && *left > 0 {
                    buf.clear();
                    *pos = 0;
                    made.fill(buf, COPY_CHUNK);
                    if buf.is_empty() || buf.len() as u64 > *left {
                        return Err(not_as_promised());
                    }
                    *left -= buf.len() as u64;
                }
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

    /// Bytes not yet written, all parts together.
    fn left(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Bytes { buf, pos } => (buf.len() - pos) as u64,
                Part::Shared { start, end, .. } => (end - start) as u64,
                Part::File { len, .. } => *len,
                Part::Made { buf, pos, left, .. } => (buf.len() - pos) as u64 + left,
            })
            .sum()
    }

    /// Accounts `n` bytes written from the first part (`first_len` unwritten) and then the
    /// second (`second_len`), dropping the parts that are finished.
    fn advance_memory(&mut self, n: usize, first_len: usize, second_len: usize) {
        let from_first = n.min(first_len);
        self.take_front(from_first, first_len);
        let from_second = n - from_first;
        if from_second > 0 {
            self.take_front(from_second, second_len);
        }
    }

    /// Marks `n` of the `unwritten` bytes of the first part written, and drops it when it is
    /// finished (a made body only once it has made everything it promised).
    fn take_front(&mut self, n: usize, unwritten: usize) {
        let more_to_make = matches!(self.parts[0], Part::Made { left, .. } if left > 0);
        if n == unwritten && !more_to_make {
            self.parts.pop_front();
        } else {
            self.parts[0].advance(n);
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
            Part::Made { buf, pos, .. } => Some(&buf[*pos..]),
            Part::File { .. } => None,
        }
    }

    /// Marks `n` more bytes of an in-memory part as written.
    fn advance(&mut self, n: usize) {
        match self {
            Part::Bytes { pos, .. } | Part::Made { pos, .. } => *pos += n,
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

    /// Off Linux there are no snapshots, so nothing calls this.
    #[cfg(not(target_os = "linux"))]
    fn send_file(&mut self, _file: &File, _offset: u64, _len: u64) -> io::Result<Option<u64>> {
        Err(io::ErrorKind::Unsupported.into())
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
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, offset)?;
        self.extend_from_slice(&buf);
        Ok(Some(len))
    }

    fn write_more(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
}

/// Sends by copy up to one chunk (and at most `room` bytes) of the `len` bytes of `file` left
/// in a range at `offset`: returns how many the socket took and whether that was all it was
/// offered, or `None` when it is full. A file that ends early is an error: the head has
/// promised more. The chunk that ends the range is sent only if the file still has `stamp`
/// once it is read (see the module docs).
fn copy_range(
    file: &File,
    stamp: &FileStamp,
    offset: u64,
    len: u64,
    room: u64,
    stream: &mut impl Write,
) -> io::Result<Option<(u64, bool)>> {
    CHUNK.with_borrow_mut(|buf| {
        if buf.len() < COPY_CHUNK {
            buf.resize(COPY_CHUNK, 0);
        }
        let want = len.min(room).min(COPY_CHUNK as u64) as usize;
        let got = loop {
            match file.read_at(&mut buf[..want], offset) {
                Ok(0) => return Err(shrank()),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if got as u64 == len && FileStamp::now(file)? != *stamp {
            return Err(changed());
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

fn not_as_promised() -> io::Error {
    io::Error::other("a made body is not the length its head promised")
}

fn changed() -> io::Error {
    io::Error::other("file changed while sending")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditional::{multipart_layout, ByteRange};
    use crate::config::ZERO_COPY_MIN;
    use std::io::Read;
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

    fn stamp(path: &std::path::Path) -> FileStamp {
        FileStamp::now(&File::open(path).unwrap()).unwrap()
    }

    /// The file at `path`, sent by copy.
    fn by_copy(path: &std::path::Path) -> Body {
        Body::File(File::open(path).unwrap(), stamp(path))
    }

    /// The sources a file range can go out from here: by copy, and (on Linux) by sendfile
    /// from a snapshot.
    fn bodies(path: &std::path::Path) -> Vec<(&'static str, Body)> {
        let mut all = vec![("copy", by_copy(path))];
        #[cfg(target_os = "linux")]
        {
            let snaps = crate::snapshot::Snapshots::new(1 << 30, 1);
            let (file, stamp) = (File::open(path).unwrap(), stamp(path));
            let snapshot = snaps.get(&file, &stamp, true).expect("a snapshot");
            all.push(("snapshot", Body::Snapshot(snapshot)));
        }
        all
    }

    /// A made body: the numbers `next..end`, one per line, a line per piece.
    #[derive(Debug)]
    struct Lines {
        next: u32,
        end: u32,
    }

    impl Generate for Lines {
        fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool {
            while out.len() < want && self.next < self.end {
                out.extend_from_slice(format!("{}\n", self.next).as_bytes());
                self.next += 1;
            }
            self.next < self.end
        }
    }

    fn lines(end: u32) -> (Box<Lines>, Vec<u8>) {
        let all: String = (0..end).map(|i| format!("{i}\n")).collect();
        (Box::new(Lines { next: 0, end }), all.into_bytes())
    }

    #[test]
    fn a_made_body_resumes_byte_exact_across_blocks_and_turns() {
        let (made, want) = lines(1_500_000);
        let head = b"HEAD\r\n\r\n".to_vec();
        let len = want.len() as u64;
        assert!(len > 4 * COPY_CHUNK as u64 && len > 2 * TURN_BUDGET);
        let out = Outgoing::made(head.clone(), made, len, false).unwrap();
        assert_eq!(out.parts.len(), 2, "a long body is made as it is sent");
        // A small budget: every turn ends on the budget or a full socket, mid-piece.
        let (got, blocked) = drain_slowly(out, head.len() + want.len(), 100_000);
        assert!(blocked > 10, "the receiver must have made the sender wait");
        assert_eq!(&got[..head.len()], &head[..]);
        assert!(got[head.len()..] == want[..], "body differs");
    }

    #[test]
    fn a_short_made_body_joins_the_head_and_head_sends_none() {
        let (made, want) = lines(100);
        let out = Outgoing::made(b"H\r\n\r\n".to_vec(), made, want.len() as u64, false).unwrap();
        assert_eq!(pending(&out), [[&b"H\r\n\r\n"[..], &want].concat()]);
        let (made, want) = lines(600_000);
        let out = Outgoing::made(b"H\r\n\r\n".to_vec(), made, want.len() as u64, true).unwrap();
        assert_eq!(pending(&out), [b"H\r\n\r\n".to_vec()]);
    }

    #[test]
    fn a_made_body_of_another_length_than_promised_is_cut_short() {
        for (end, promised) in [
            (100, 5000),
            (100, 10),
            (600_000, 10_000_000),
            (600_000, 100_000),
        ] {
            let (made, want) = lines(end);
            assert_ne!(want.len() as u64, promised);
            let (mut tx, mut rx) = pair();
            let result =
                Outgoing::made(b"H".to_vec(), made, promised, false).and_then(|mut out| {
                    // The receiver takes everything, so only the length can stop the pump.
                    let reader = std::thread::spawn(move || {
                        let mut sink = Vec::new();
                        let _ = rx.read_to_end(&mut sink);
                        sink.len()
                    });
                    let result = loop {
                        match out.pump(&mut tx, u64::MAX) {
                            Ok(Sent::Done) => break Ok(()),
                            Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                            Err(e) => break Err(e),
                        }
                    };
                    drop(tx);
                    let received = reader.join().unwrap() as u64;
                    assert!(received < 1 + promised, "{end}/{promised}: sent {received}");
                    result
                });
            assert!(result.is_err(), "{end} lines promised as {promised} bytes");
        }
    }

    #[test]
    fn a_blocked_file_range_resumes_byte_exact() {
        let data: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (path, _) = temp_file(&data);
        let head = b"HEAD\r\n\r\n".to_vec();
        for (name, body) in bodies(&path) {
            let out = Outgoing::file(head.clone(), body, 1000, 7_000_000, false).unwrap();
            let (got, blocked) = drain_slowly(out, head.len() + 7_000_000, u64::MAX);
            assert!(
                blocked > 10,
                "{name}: the receiver must have made the sender wait"
            );
            assert_eq!(&got[..head.len()], &head[..]);
            assert!(
                got[head.len()..] == data[1000..7_001_000],
                "{name}: body differs"
            );
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn multipart_and_budget_turns_resume_byte_exact() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (path, _) = temp_file(&data);
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
        for (name, body) in bodies(&path) {
            let layout = multipart_layout(&ranges, data.len() as u64, "text/plain", "B");
            let mut want = b"H\r\n\r\n".to_vec();
            for (part_head, r) in &layout.parts {
                want.extend_from_slice(part_head);
                want.extend_from_slice(&data[r.start as usize..=r.end as usize]);
            }
            want.extend_from_slice(&layout.trailer);
            let out = Outgoing::multipart(b"H\r\n\r\n".to_vec(), body, layout, false);
            let (got, _) = drain_slowly(out, want.len(), 100_000);
            assert!(got == want, "{name}: multipart body differs");
        }
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn small_bodies_are_inline_and_head_only_sends_the_head() {
        let (path, _) = temp_file(b"hello world");
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), by_copy(&path), 6, 5, false).unwrap();
        assert_eq!(out.parts.len(), 1, "one write for head and body");
        let (got, _) = drain_slowly(out, 10, u64::MAX);
        assert_eq!(got, b"H\r\n\r\nworld");
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), by_copy(&path), 0, 11, true).unwrap();
        assert_eq!(drain_slowly(out, 5, u64::MAX).0, b"H\r\n\r\n");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_a_short_body() {
        let data = vec![1u8; 2 * ZERO_COPY_MIN as usize];
        let (path, _) = temp_file(&data);
        for len in [ZERO_COPY_MIN - 1, 2 * ZERO_COPY_MIN] {
            std::fs::write(&path, &data).unwrap();
            let mut out =
                Outgoing::file(b"H\r\n\r\n".to_vec(), by_copy(&path), 0, len, false).unwrap();
            std::fs::write(&path, b"short").unwrap();
            let (mut tx, _rx) = pair();
            let err = out.pump(&mut tx, u64::MAX).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{len} bytes");
        }
        std::fs::remove_file(path).unwrap();
    }

    /// A blocking socket whose peer another thread reads to the end (returned by `join`).
    fn read_by_thread() -> (TcpStream, std::thread::JoinHandle<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            rx.read_to_end(&mut got).unwrap();
            got
        });
        (tx, reader)
    }

    /// Pumps `out` into a blocking socket read by another thread, `first` bytes in one turn
    /// and the rest in the next; returns the outcome of the second turn and what arrived.
    fn in_two_turns(
        mut out: Outgoing,
        first: u64,
        between: impl FnOnce(),
    ) -> (io::Result<Sent>, Outgoing, Vec<u8>) {
        let (mut tx, reader) = read_by_thread();
        assert_eq!(out.pump(&mut tx, first).unwrap(), Sent::Budget);
        between();
        let second = out.pump(&mut tx, u64::MAX);
        drop(tx);
        (second, out, reader.join().unwrap())
    }

    #[test]
    fn a_response_just_past_the_budget_finishes_in_the_same_turn() {
        let data = vec![7u8; (TURN_BUDGET + 2 * TURN_SLACK) as usize];
        let (path, _) = temp_file(&data);
        // (body length, what one turn does) with a 5-byte head
        for (len, want) in [
            (TURN_BUDGET, Sent::Done),
            (TURN_BUDGET + TURN_SLACK - 5, Sent::Done),
            (TURN_BUDGET + TURN_SLACK - 4, Sent::Budget),
        ] {
            for (name, body) in bodies(&path) {
                let mut out = Outgoing::file(b"H\r\n\r\n".to_vec(), body, 0, len, false).unwrap();
                let (mut tx, reader) = read_by_thread();
                assert_eq!(
                    out.pump(&mut tx, TURN_BUDGET).unwrap(),
                    want,
                    "{name} {len}"
                );
                if want == Sent::Budget {
                    assert_eq!(out.pump(&mut tx, TURN_BUDGET).unwrap(), Sent::Done);
                }
                drop(tx);
                assert_eq!(reader.join().unwrap().len() as u64, 5 + len);
            }
        }
        std::fs::remove_file(path).unwrap();
    }

    /// The integrity rule by copy: a file changed in place (same length, so no read comes up
    /// short) after the response started is caught before the chunk that ends the range, and
    /// the response is cut rather than completed.
    #[test]
    fn a_file_changed_in_place_cuts_a_copied_body_before_its_last_chunk() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 255 + 1) as u8).collect();
        let (path, _) = temp_file(&data);
        let out =
            Outgoing::file(b"H\r\n\r\n".to_vec(), by_copy(&path), 0, 1_000_000, false).unwrap();
        let rewrite = || {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&data[..10], 0).unwrap();
        };
        let (second, out, got) = in_two_turns(out, 500_000, rewrite);
        assert_eq!(
            second.unwrap_err().to_string(),
            "file changed while sending"
        );
        // The last chunk is what the second turn's 64 KiB chunks leave of the body after the
        // first turn (500,000 bytes with the 5 of the head).
        let cut = 1_000_000 - 500_005 % COPY_CHUNK as u64;
        assert_eq!(out.body_written(), cut, "all but the last chunk");
        assert_eq!(got.len() as u64, 5 + cut, "a short body");
        std::fs::remove_file(path).unwrap();
    }

    /// A file replaced by rename (a deploy) while a response by copy has it open is not a
    /// change of that file: the response completes with its bytes.
    #[test]
    fn a_file_replaced_by_rename_completes_a_copied_body() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (path, _) = temp_file(&data);
        let out =
            Outgoing::file(b"H\r\n\r\n".to_vec(), by_copy(&path), 0, 1_000_000, false).unwrap();
        let deploy = || {
            let next = path.with_extension("next");
            std::fs::write(&next, b"the new version").unwrap();
            std::fs::rename(&next, &path).unwrap();
        };
        let (second, _, got) = in_two_turns(out, 500_000, deploy);
        assert_eq!(second.unwrap(), Sent::Done);
        assert!(got[5..] == data[..], "the bytes of the version it opened");
        std::fs::remove_file(path).unwrap();
    }

    /// A snapshot body is the version of the file it was copied from, whatever happens to
    /// the file while it is sent: truncated, rewritten, grown.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_snapshot_body_is_whole_whatever_the_file_does_meanwhile() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 255 + 1) as u8).collect();
        let (path, _) = temp_file(&data);
        let (_, body) = bodies(&path).pop().unwrap();
        let out = Outgoing::file(b"H\r\n\r\n".to_vec(), body, 0, 1_000_000, false).unwrap();
        let vandalize = || {
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(4097).unwrap();
            f.write_all_at(&[0xAA; 2_000_000], 0).unwrap();
        };
        let (second, _, got) = in_two_turns(out, 500_000, vandalize);
        assert_eq!(second.unwrap(), Sent::Done);
        assert!(got[5..] == data[..], "the bytes the file had");
        std::fs::remove_file(path).unwrap();
    }
}
