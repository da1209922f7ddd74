//! The access log: one line per request on stdout, apart from the diagnostic log (stderr,
//! `RUST_LOG`), in the NCSA Combined format that log tools and fail2ban read, or as one JSON
//! object per line.
//!
//! A slow log reader never slows serving: a worker formats its line and hands it to a
//! bounded queue ([`Sink`]) without waiting; one `access-log` thread writes the queue to
//! stdout. When the reader stalls (a full pipe: `poolserve | sleep 60`, a container runtime
//! or journald under pressure), the queue fills and further lines are dropped and counted
//! (`log_dropped` in the stats line, a warning on stderr at most once per
//! [`DROP_WARN_INTERVAL`]); when it reads again, lines flow again. This module keeps what a line needs from a request ([`Entry`]), formats
//! it and writes it; `connection.rs` decides what is logged (health probes are not) and when
//! (once the response is finished or abandoned, with the body bytes that went out). The
//! format itself is a setting ([`crate::config::AccessLog`]).
//!
//! Every field that comes from the client is escaped, so a request cannot forge a second log
//! line or break a JSON parser: in Combined, `"` and `\` get a backslash and every byte that
//! is not printable ASCII becomes `\xHH` (nginx's rule); in JSON, strings follow RFC 8259
//! (`\"`, `\\`, `\n`-style and `\u00HH` escapes; bytes that are not UTF-8 become U+FFFD).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::AccessLog as Format;
use crate::request::{RequestHead, Version};

/// Lines the queue holds for the logger thread; more are dropped. At about 200 bytes a line
/// this bounds the queue near 1 MiB, and at 150,000 requests a second it rides out a reader
/// that pauses for 25 ms, while a reader that stops for good costs no more memory than that.
pub const LOG_QUEUE_LINES: usize = 4096;
/// At most one warning about dropped lines per this interval: stderr may be as slow as
/// stdout, and one line every ten seconds says all there is to say.
pub const DROP_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Bytes the logger thread gathers from the queue into one `write`.
const WRITE_BATCH: usize = 64 * 1024;

/// The workers' end of the access log: a bounded queue of formatted lines, and what was
/// dropped because it was full.
#[derive(Debug)]
pub struct Sink {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
    dropped: AtomicU64,
    /// When the last warning about dropped lines went out, in ms since `epoch` (0: never).
    warned_at: AtomicU64,
    epoch: Instant,
}

impl Sink {
    /// A queue of `lines` lines.
    pub fn new(lines: usize) -> Sink {
        let (tx, rx) = crossbeam_channel::bounded(lines.max(1));
        Sink {
            tx,
            rx,
            dropped: AtomicU64::new(0),
            warned_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Lines dropped since start because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a line without waiting; a full queue drops it (counted, and warned about).
    fn push(&self, line: Vec<u8>) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.warn(dropped);
            }
        }
    }

    /// A warning on stderr, at most once per [`DROP_WARN_INTERVAL`] across all threads.
    fn warn(&self, dropped: u64) {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.warned_at.load(Ordering::Relaxed);
        let interval = DROP_WARN_INTERVAL.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        if self
            .warned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            log::warn!(
                "access log: stdout is not keeping up; {dropped} line(s) dropped since start"
            );
        }
    }

    /// The logger thread's loop: writes queued lines to `out`, gathering what is queued into
    /// one write, until `stop` says so and the queue is empty (or `stop` says to give up).
    pub(crate) fn drain_to(&self, out: &mut impl Write, stop: &Receiver<Instant>) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut until: Option<Instant> = None;
        loop {
            let line = match until {
                None => crossbeam_channel::select! {
                    recv(self.rx) -> line => line.ok(),
                    recv(stop) -> deadline => {
                        until = Some(deadline.unwrap_or_else(|_| Instant::now()));
                        continue;
                    }
                },
                // Stopping: what is queued still goes out, until the deadline.
                Some(deadline) if Instant::now() < deadline => self.rx.try_recv().ok(),
                Some(_) => None,
            };
            let Some(line) = line else { return };
            batch.clear();
            batch.extend_from_slice(&line);
            while batch.len() < WRITE_BATCH {
                match self.rx.try_recv() {
                    Ok(line) => batch.extend_from_slice(&line),
                    Err(_) => break,
                }
            }
            // A failed write (stdout closed) loses the batch: the log must not cost a
            // request, and there is nobody to tell but stderr.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
        }
    }
}

/// A request's fields for its access-log line, copied when the request is answered (the
/// head is gone by the time the response is finished).
#[derive(Debug, Clone)]
pub struct Entry {
    format: Format,
    time: SystemTime,
    request: String,
    referer: Option<String>,
    user_agent: Option<String>,
    start: Instant,
}

impl Entry {
    /// `None` when the access log is off; `head` is `None` for a request we could not parse.
    /// `start` is when the request's head was complete.
    pub fn new(format: Format, head: Option<&RequestHead>, start: Instant) -> Option<Entry> {
        if format == Format::Off {
            return None;
        }
        let field = |name| head.and_then(|h| h.headers.get(name)).map(str::to_string);
        Some(Entry {
            format,
            time: SystemTime::now(),
            request: head.map_or_else(|| "-".to_string(), request_line),
            referer: field("referer"),
            user_agent: field("user-agent"),
            start,
        })
    }

    /// Queues the line, with the status sent and the body bytes that went out, for the
    /// logger thread (never waits; see [`Sink`]).
    pub fn write(&self, sink: &Sink, peer: SocketAddr, status: u16, bytes: u64) {
        let record = Record {
            peer,
            time: self.time,
            request: &self.request,
            status,
            bytes,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
            duration: self.start.elapsed(),
        };
        let mut line = Vec::with_capacity(LINE_CAPACITY);
        format_into(self.format, &record, &mut line);
        sink.push(line);
    }
}

/// Room for a typical line at once (a long user agent grows it).
const LINE_CAPACITY: usize = 256;

/// The request line as received.
fn request_line(head: &RequestHead) -> String {
    let version = match head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    format!("{} {} {version}", head.method.as_str(), head.target)
}

/// One finished (or abandoned) request.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// When the request arrived.
    pub time: SystemTime,
    /// The request line as received, `-` when it could not be parsed.
    pub request: &'a str,
    /// The status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The `Referer` field, if any.
    pub referer: Option<&'a str>,
    /// The `User-Agent` field, if any.
    pub user_agent: Option<&'a str>,
    /// From the end of the request head to the last byte written.
    pub duration: Duration,
}

/// Appends `record` as one line (with its newline) in `format` to `out`; nothing for `Off`.
pub fn format_into(format: Format, record: &Record, out: &mut Vec<u8>) {
    match format {
        Format::Combined => combined(record, out),
        Format::Json => json(record, out),
        Format::Off => {}
    }
}

/// `addr - - [time] "request" status bytes "referer" "agent" seconds`.
fn combined(r: &Record, out: &mut Vec<u8>) {
    let _ = write!(out, "{} - - [", r.peer.ip());
    crate::http_date::clf_into(r.time, out);
    out.extend_from_slice(b"] \"");
    clf_escape(r.request, out);
    let _ = write!(out, "\" {} {} \"", r.status, r.bytes);
    clf_escape(r.referer.unwrap_or("-"), out);
    out.extend_from_slice(b"\" \"");
    clf_escape(r.user_agent.unwrap_or("-"), out);
    let _ = writeln!(out, "\" {:.3}", r.duration.as_secs_f64());
}

fn json(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    crate::http_date::rfc3339_into(r.time, out);
    let _ = write!(out, "\",\"remote\":\"{}\",\"request\":", r.peer.ip());
    json_string(r.request, out);
    let _ = write!(
        out,
        ",\"status\":{},\"bytes\":{},\"referer\":",
        r.status, r.bytes
    );
    json_opt(r.referer, out);
    out.extend_from_slice(b",\"user_agent\":");
    json_opt(r.user_agent, out);
    let _ = writeln!(
        out,
        ",\"duration_ms\":{:.3}}}",
        r.duration.as_secs_f64() * 1000.0
    );
}

/// nginx's escaping for log fields: `"` and `\` get a backslash; bytes outside printable
/// ASCII become `\xHH`.
fn clf_escape(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

fn json_opt(s: Option<&str>, out: &mut Vec<u8>) {
    match s {
        Some(s) => json_string(s, out),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string literal (RFC 8259 §7).
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_full_queue_drops_and_counts_and_never_waits() {
        let sink = Sink::new(3);
        for i in 0..10u8 {
            sink.push(vec![b'0' + i, b'\n']);
        }
        assert_eq!(sink.dropped(), 7, "three queued, the rest dropped");
        let first_warning = sink.warned_at.load(Ordering::Relaxed);
        assert_ne!(first_warning, 0, "the first drop warns");
        sink.push(b"x\n".to_vec());
        assert_eq!(
            sink.warned_at.load(Ordering::Relaxed),
            first_warning,
            "not again so soon"
        );

        // The logger writes what was queued, in order, in one batch, and stops when told.
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        // Tells the logger to stop by `deadline`, and returns what it wrote.
        let drain = |deadline: Instant| {
            stop_tx.send(deadline).unwrap();
            let mut out = Vec::new();
            sink.drain_to(&mut out, &stop_rx);
            out
        };
        let later = || Instant::now() + Duration::from_secs(5);
        assert_eq!(drain(later()), b"0\n1\n2\n");
        // Room again: lines flow again.
        sink.push(b"later\n".to_vec());
        assert_eq!(sink.dropped(), 8);
        assert_eq!(drain(later()), b"later\n");
        // A stop whose deadline has passed writes nothing more.
        sink.push(b"late\n".to_vec());
        assert!(drain(Instant::now()).len() <= b"late\n".len());
    }

    fn record<'a>(request: &'a str, referer: Option<&'a str>, ua: Option<&'a str>) -> Record<'a> {
        Record {
            peer: "192.0.2.7:5555".parse().unwrap(),
            time: UNIX_EPOCH + Duration::from_secs(1_764_065_045), // 2025-11-25 10:04:05 UTC
            request,
            status: 200,
            bytes: 2048,
            referer,
            user_agent: ua,
            duration: Duration::from_micros(1_500),
        }
    }

    fn line(format: Format, r: &Record) -> String {
        let mut out = Vec::new();
        format_into(format, r, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_lines() {
        let rows = [
            (
                record("GET /a.txt HTTP/1.1", Some("http://t/"), Some("curl/8.5")),
                "192.0.2.7 - - [25/Nov/2025:10:04:05 +0000] \"GET /a.txt HTTP/1.1\" 200 2048 \"http://t/\" \"curl/8.5\" 0.002\n",
            ),
            (
                record("-", None, None),
                "192.0.2.7 - - [25/Nov/2025:10:04:05 +0000] \"-\" 200 2048 \"-\" \"-\" 0.002\n",
            ),
            (
                record("GET /\"x\\ HTTP/1.1", Some("a\"b"), Some("evil\n192.0.2.1 - - forged")),
                "192.0.2.7 - - [25/Nov/2025:10:04:05 +0000] \"GET /\\\"x\\\\ HTTP/1.1\" 200 2048 \"a\\\"b\" \"evil\\x0A192.0.2.1 - - forged\" 0.002\n",
            ),
            (
                record("GET / HTTP/1.1", None, Some("caf\u{e9}\u{1b}[31m")),
                "192.0.2.7 - - [25/Nov/2025:10:04:05 +0000] \"GET / HTTP/1.1\" 200 2048 \"-\" \"caf\\xC3\\xA9\\x1B[31m\" 0.002\n",
            ),
        ];
        for (r, want) in rows {
            assert_eq!(line(Format::Combined, &r), want);
        }
    }

    #[test]
    fn json_lines_are_one_valid_object_each() {
        let r = record("GET /x HTTP/1.1", None, Some("a\"b\\c\nd\u{1}\u{7f}é"));
        assert_eq!(
            line(Format::Json, &r),
            "{\"time\":\"2025-11-25T10:04:05Z\",\"remote\":\"192.0.2.7\",\"request\":\"GET /x HTTP/1.1\",\
\"status\":200,\"bytes\":2048,\"referer\":null,\"user_agent\":\"a\\\"b\\\\c\\nd\\u0001\\u007fé\",\
\"duration_ms\":1.500}\n"
        );
        let mut v6 = record("-", Some("r"), None);
        v6.peer = "[2001:db8::1]:80".parse().unwrap();
        let l = line(Format::Json, &v6);
        assert!(l.contains("\"remote\":\"2001:db8::1\"") && l.contains("\"referer\":\"r\""));
        assert_eq!(l.matches('\n').count(), 1);
    }

    #[test]
    fn off_writes_nothing() {
        assert_eq!(line(Format::Off, &record("GET / HTTP/1.1", None, None)), "");
    }
}
