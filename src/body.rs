//! Discarding a request body we do not use (RFC 9112 §6.3, §7.1): a GET with a body must
//! never have that body read as the next request.
//!
//! [`BodyDiscarder`] is a pure, incremental state machine fed with whatever bytes have
//! arrived, in pieces of any size (one byte at a time works); it says how many of them belong
//! to the body and whether the body is over. Chunked bodies are parsed fully (sizes, chunk
//! extensions, the CRLF after each chunk, trailer fields), with extensions and trailers
//! bounded. This module owns only the framing of the body: it does no I/O and never keeps
//! the bytes.

use crate::error::HttpError;
use crate::request::BodyFraming;

/// Longest chunk-size line (hex size, BWS and chunk extensions, RFC 9112 §7.1.1) we accept:
/// real ones are a few bytes, and the bound stops leading zeros or extensions from running on.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Most bytes of trailer section (RFC 9112 §7.1.2) we accept after the last chunk: trailers
/// are fields, so this matches the spirit of the head limit; larger is 431.
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Where we are inside a chunk-size line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizePhase {
    /// Reading hex digits.
    Digits,
    /// BWS after the size; only `;`, more BWS or the line end may follow.
    Bws,
    /// Inside chunk extensions (their syntax is not checked beyond banning controls).
    Ext,
    /// A CR was seen; only LF may follow.
    Cr,
}

/// Where we are inside a trailer field line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailerPhase {
    /// At the start of a line: a field name or the empty line that ends the body.
    LineStart,
    /// Inside a field name.
    Name,
    /// Inside a field value.
    Value,
    /// A CR was seen; only LF may follow. `empty` when the line was empty.
    Cr { empty: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Fixed-length body: bytes left.
    Length(u64),
    /// A chunk-size line: size so far, bytes of the line so far.
    Size {
        size: u64,
        line: usize,
        phase: SizePhase,
    },
    /// Chunk data: bytes left.
    Data(u64),
    /// The line end after chunk data; whether its CR was seen.
    DataEnd { cr: bool },
    /// The trailer section: bytes of it so far.
    Trailers { seen: usize, phase: TrailerPhase },
    /// The body is over.
    Done,
    /// The body was malformed; every later call repeats the error.
    Failed(HttpError),
}

impl State {
    const NEW_CHUNK: State = State::Size {
        size: 0,
        line: 0,
        phase: SizePhase::Digits,
    };
}

/// Skips one request body, incrementally.
#[derive(Debug, Clone)]
pub struct BodyDiscarder {
    state: State,
    /// Chunk data announced so far.
    total: u64,
    limit: u64,
}

impl BodyDiscarder {
    /// A discarder for a body framed as `framing`, refusing with
    /// [`HttpError::PayloadTooLarge`] a body that is, or turns out to be, longer than `limit`
    /// bytes (for chunked bodies: the sum of the chunk sizes, checked before their data).
    pub fn new(framing: BodyFraming, limit: u64) -> Result<BodyDiscarder, HttpError> {
        let state = match framing {
            BodyFraming::None | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) if n > limit => return Err(HttpError::PayloadTooLarge),
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::NEW_CHUNK,
        };
        Ok(BodyDiscarder {
            state,
            total: 0,
            limit,
        })
    }

    /// Feeds the bytes that follow the head (or the previous feed). Returns how many bytes
    /// at the start of `buf` belong to the body, and whether the body is now complete; while
    /// it is not, that is all of `buf`. Once complete, feeding returns `(0, true)`; once
    /// failed, it returns the same error again.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), HttpError> {
        self.feed_data(buf, &mut |_| Ok(()))
    }

    /// [`BodyDiscarder::feed`] that also hands every piece of body *data* (the content, without
    /// chunk framing or trailers) to `sink`, in order: how an upload is decoded. An error from
    /// `sink` is returned as is.
    pub fn feed_data(
        &mut self,
        buf: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), HttpError>,
    ) -> Result<(usize, bool), HttpError> {
        let mut used = 0;
        loop {
            match &self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok((used, true)),
                _ => {}
            }
            let rest = buf.get(used..).unwrap_or_default();
            if rest.is_empty() {
                return Ok((used, false));
            }
            let data = matches!(self.state, State::Length(_) | State::Data(_));
            match self.step(rest) {
                Ok(n) => {
                    if data && n > 0 {
                        sink(&rest[..n])?;
                    }
                    used += n;
                }
                Err(e) => {
                    self.state = State::Failed(e.clone());
                    return Err(e);
                }
            }
        }
    }

    /// Advances over a prefix of `buf`; returns its length, at least 1 when `buf` is not
    /// empty and the body is neither over nor failed.
    fn step(&mut self, buf: &[u8]) -> Result<usize, HttpError> {
        if let State::Length(left) | State::Data(left) = self.state {
            // Bulk: at most `left` bytes, and never more than `buf` holds.
            let n = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let left = left - n as u64;
            self.state = match (&self.state, left) {
                (State::Length(_), 0) => State::Done,
                (State::Length(_), _) => State::Length(left),
                (_, 0) => State::DataEnd { cr: false },
                (_, _) => State::Data(left),
            };
            return Ok(n);
        }
        let Some(&b) = buf.first() else {
            return Ok(0);
        };
        self.state = match self.state {
            State::Size { size, line, phase } => self.size_byte(size, line, phase, b)?,
            // RFC 9112 §7.1: CRLF after the data; a bare LF is tolerated (§2.2).
            State::DataEnd { cr } => match (cr, b) {
                (false, b'\r') => State::DataEnd { cr: true },
                (_, b'\n') => State::NEW_CHUNK,
                _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
            },
            State::Trailers { seen, phase } => trailer_byte(seen, phase, b)?,
            State::Length(_) | State::Data(_) | State::Done | State::Failed(_) => return Ok(0),
        };
        Ok(1)
    }

    /// One byte of a chunk-size line: `chunk-size [ chunk-ext ] CRLF` (RFC 9112 §7.1).
    fn size_byte(
        &mut self,
        size: u64,
        line: usize,
        phase: SizePhase,
        b: u8,
    ) -> Result<State, HttpError> {
        if line >= MAX_CHUNK_LINE {
            return Err(HttpError::BadRequest("chunk-size line too long"));
        }
        let next = |size, phase| State::Size {
            size,
            line: line + 1,
            phase,
        };
        Ok(match (phase, b) {
            (SizePhase::Digits, _) if b.is_ascii_hexdigit() => {
                let digit = u64::from(hex_value(b));
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(digit))
                    .ok_or(HttpError::BadRequest("chunk size overflow"))?;
                next(size, SizePhase::Digits)
            }
            // A size needs at least one digit.
            (SizePhase::Digits, _) if line == 0 => {
                return Err(HttpError::BadRequest("chunk without size"))
            }
            (SizePhase::Digits | SizePhase::Bws, b' ' | b'\t') => next(size, SizePhase::Bws),
            (SizePhase::Digits | SizePhase::Bws, b';') => next(size, SizePhase::Ext),
            (SizePhase::Ext, _) if b != b'\r' && b != b'\n' => {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    return Err(HttpError::BadRequest("control byte in chunk extension"));
                }
                next(size, SizePhase::Ext)
            }
            (SizePhase::Digits | SizePhase::Bws | SizePhase::Ext, b'\r') => {
                next(size, SizePhase::Cr)
            }
            (_, b'\n') => self.chunk_announced(size)?,
            _ => return Err(HttpError::BadRequest("bad chunk-size line")),
        })
    }

    /// A chunk-size line ended: check the running total, then read data or trailers.
    fn chunk_announced(&mut self, size: u64) -> Result<State, HttpError> {
        self.total = self
            .total
            .checked_add(size)
            .filter(|&t| t <= self.limit)
            .ok_or(HttpError::PayloadTooLarge)?;
        Ok(match size {
            0 => State::Trailers {
                seen: 0,
                phase: TrailerPhase::LineStart,
            },
            n => State::Data(n),
        })
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// One byte of the trailer section: `*( field-line CRLF ) CRLF` (RFC 9112 §7.1.2), with the
/// same field syntax as the head (token name, colon, no controls, no obs-fold).
fn trailer_byte(seen: usize, phase: TrailerPhase, b: u8) -> Result<State, HttpError> {
    if seen >= MAX_TRAILER_BYTES {
        return Err(HttpError::HeadTooLarge);
    }
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let phase = match (phase, b) {
        (TrailerPhase::LineStart, b'\n') | (TrailerPhase::Cr { empty: true }, b'\n') => {
            return Ok(State::Done)
        }
        (TrailerPhase::LineStart, b'\r') => TrailerPhase::Cr { empty: true },
        (TrailerPhase::LineStart | TrailerPhase::Name, _) if is_tchar(b) => TrailerPhase::Name,
        (TrailerPhase::Name, b':') => TrailerPhase::Value,
        (TrailerPhase::Value, b'\r') => TrailerPhase::Cr { empty: false },
        (TrailerPhase::Value | TrailerPhase::Cr { empty: false }, b'\n') => TrailerPhase::LineStart,
        (TrailerPhase::Value, _) if b == b'\t' || (b >= 0x20 && b != 0x7f) => TrailerPhase::Value,
        _ => return Err(HttpError::BadRequest("malformed trailer field")),
    };
    Ok(State::Trailers {
        seen: seen + 1,
        phase,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use BodyFraming::{Chunked, Length};

    type Outcome = Result<(usize, bool), HttpError>;

    const LIMIT: u64 = 1000;

    fn whole(framing: BodyFraming, input: &[u8]) -> Outcome {
        BodyDiscarder::new(framing, LIMIT)?.feed(input)
    }

    /// Feeds `input` in pieces ending at `cuts` (increasing; the end is added), adding up what
    /// each call consumed, until the body is over or fails.
    fn in_pieces(framing: BodyFraming, input: &[u8], cuts: &[usize]) -> Outcome {
        let mut d = BodyDiscarder::new(framing, LIMIT)?;
        let (mut used, mut from) = (0, 0);
        for &cut in cuts.iter().chain([&input.len()]) {
            let (n, done) = d.feed(&input[from..cut])?;
            used += n;
            if done {
                return Ok((used, true));
            }
            assert_eq!(
                n,
                cut - from,
                "an unfinished body consumes everything it is fed"
            );
            from = cut;
        }
        Ok((used, false))
    }

    fn bad(why: &'static str) -> Outcome {
        Err(HttpError::BadRequest(why))
    }

    #[test]
    #[rustfmt::skip]
    fn bodies_table() {
        let over = format!("1f4\r\n{}\r\n1f5\r\n", "x".repeat(500));
        let cases: &[(BodyFraming, &[u8], Outcome)] = &[
            (BodyFraming::None, b"GET /", Ok((0, true))),
            (Length(0), b"GET /", Ok((0, true))),
            (Length(5), b"helloGET", Ok((5, true))),
            (Length(5), b"hel", Ok((3, false))),
            (Length(LIMIT), b"", Ok((0, false))),
            (Length(LIMIT + 1), b"", Err(HttpError::PayloadTooLarge)),
            (Chunked, b"5\r\nhello\r\n0\r\n\r\nGET", Ok((15, true))),
            (Chunked, b"5;name=\"v\"\r\nhello\r\n0\r\nTrailer: x\r\n\r\nNEXT", Ok((36, true))),
            (Chunked, b"A\nabcdefghij\n0\n\n", Ok((16, true))),
            (Chunked, b"5 ;a=b\r\nhello\r\n0\r\n\r\n", Ok((20, true))),
            (Chunked, b"5\t\r\nhello\r\n0;last\r\n\r\n", Ok((21, true))),
            (Chunked, b"00005\r\nhello\r\n0000\r\n\r\n", Ok((22, true))),
            (Chunked, b"f\r\n0123456789abcde\r\n0\r\n\r\n", Ok((25, true))),
            (Chunked, b"0\r\nX: \xff\tv\r\nY:\n\r\nZ", Ok((16, true))),
            (Chunked, b"3e8\r\n", Ok((5, false))),
            (Chunked, b"5\r\nhel", Ok((6, false))),
            (Chunked, b"0\r\n", Ok((3, false))),
            (Chunked, b"0\r\nX: y\r\n", Ok((9, false))),
            (Chunked, b"zz\r\n", bad("chunk without size")),
            (Chunked, b"\r\n", bad("chunk without size")),
            (Chunked, b";x\r\n", bad("chunk without size")),
            (Chunked, b"-5\r\n", bad("chunk without size")),
            (Chunked, b"5\r\nhelloXX", bad("chunk data not followed by CRLF")),
            (Chunked, b"5\r\nhello\r\r\n", bad("chunk data not followed by CRLF")),
            (Chunked, b"5 6\r\n", bad("bad chunk-size line")),
            (Chunked, b"5\rX", bad("bad chunk-size line")),
            (Chunked, b"5;a\rb\r\n", bad("bad chunk-size line")),
            (Chunked, b"5x\r\n", bad("bad chunk-size line")),
            (Chunked, b"5;a\x01\r\n", bad("control byte in chunk extension")),
            (Chunked, b"5;a\x7f\r\n", bad("control byte in chunk extension")),
            (Chunked, b"fffffffffffffffff\r\n", bad("chunk size overflow")),
            (Chunked, b"3e9\r\n", Err(HttpError::PayloadTooLarge)),
            (Chunked, over.as_bytes(), Err(HttpError::PayloadTooLarge)),
            (Chunked, b"0\r\nX : y\r\n\r\n", bad("malformed trailer field")),
            (Chunked, b"0\r\n y\r\n\r\n", bad("malformed trailer field")),
            (Chunked, b"0\r\nNoColon\r\n\r\n", bad("malformed trailer field")),
            (Chunked, b"0\r\nX: a\rb\r\n\r\n", bad("malformed trailer field")),
            (Chunked, b"0\r\nX: a\x00\r\n\r\n", bad("malformed trailer field")),
            (Chunked, b"0\r\n\rX", bad("malformed trailer field")),
        ];
        for (framing, input, want) in cases {
            let got = whole(*framing, input);
            assert_eq!(&got, want, "{framing:?} {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn chunk_lines_and_trailers_are_bounded() {
        // A chunk-size line of exactly MAX_CHUNK_LINE bytes, CRLF included, is accepted.
        let ext = |n: usize| format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(n));
        let fits = ext(MAX_CHUNK_LINE - 4);
        assert_eq!(whole(Chunked, fits.as_bytes()), Ok((fits.len(), true)));
        let long = ext(MAX_CHUNK_LINE - 3);
        assert_eq!(
            whole(Chunked, long.as_bytes()),
            bad("chunk-size line too long")
        );
        let zeros = format!("{}1\r\n", "0".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            whole(Chunked, zeros.as_bytes()),
            bad("chunk-size line too long")
        );
        // A trailer section of exactly MAX_TRAILER_BYTES, final CRLF included, is accepted.
        let trailer = |n: usize| format!("0\r\nX: {}\r\n\r\n", "t".repeat(n));
        let fits = trailer(MAX_TRAILER_BYTES - 7);
        assert_eq!(whole(Chunked, fits.as_bytes()), Ok((fits.len(), true)));
        let long = trailer(MAX_TRAILER_BYTES - 6);
        assert_eq!(
            whole(Chunked, long.as_bytes()),
            Err(HttpError::HeadTooLarge)
        );
    }

    #[test]
    fn finished_and_failed_discarders_stay_so() {
        let mut d = BodyDiscarder::new(Chunked, LIMIT).unwrap();
        assert_eq!(d.feed(b"0\r\n\r\nGET"), Ok((5, true)));
        assert_eq!(d.feed(b"GET"), Ok((0, true)));
        let mut d = BodyDiscarder::new(Chunked, LIMIT).unwrap();
        assert_eq!(d.feed(b"zz"), bad("chunk without size"));
        assert_eq!(d.feed(b"0\r\n\r\n"), bad("chunk without size"));
        let mut d = BodyDiscarder::new(Length(3), LIMIT).unwrap();
        assert_eq!(d.feed(b""), Ok((0, false)));
        assert_eq!(d.feed(b"ab"), Ok((2, false)));
        assert_eq!(d.feed(b"cd"), Ok((1, true)));
    }

    /// A random well-formed chunked body (sizes, case, leading zeros, extensions, CRLF or
    /// LF, trailers), followed by the start of the next request.
    fn random_chunked(rng: &mut Rng) -> (Vec<u8>, usize) {
        let eol = |rng: &mut Rng| if rng.index(4) == 0 { "\n" } else { "\r\n" };
        let mut body = String::new();
        for _ in 0..rng.index(5) {
            let size = 1 + rng.index(40);
            let hex = format!("{}{size:x}", "0".repeat(rng.index(3)));
            let hex = if rng.index(2) == 0 {
                hex.to_uppercase()
            } else {
                hex
            };
            let ext = [";", " ;a=b", ";x=\"y z\";q", "\t"][rng.index(4)];
            let ext = if rng.index(2) == 0 { "" } else { ext };
            body += &format!("{hex}{ext}{}{}{}", eol(rng), "d".repeat(size), eol(rng));
        }
        body += &format!("0{}", eol(rng));
        for _ in 0..rng.index(3) {
            body += &format!("T-{}:  v {}", rng.index(100), eol(rng));
        }
        body += eol(rng);
        let len = body.len();
        body += "GET / HTTP/1.1\r\n";
        (body.into_bytes(), len)
    }

    fn random_cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
        let mut cuts = vec![];
        let mut at = 0;
        while at < len {
            at += 1 + rng.index(7);
            cuts.push(at.min(len));
        }
        cuts
    }

    #[test]
    fn split_feeding_equals_whole_feeding() {
        let mut rng = Rng(0x5eed_b0d1);
        for i in 0..3_000 {
            let (mut input, len) = random_chunked(&mut rng);
            let want = if i % 2 == 0 {
                Ok((len, true))
            } else {
                // Mutations: the answer may be an error, but never depends on the split.
                for _ in 0..1 + rng.index(3) {
                    let at = rng.index(input.len());
                    let noise = b"0aF;\r\n \t:\x00";
                    input[at] = noise[rng.index(noise.len())];
                }
                whole(Chunked, &input)
            };
            assert_eq!(
                whole(Chunked, &input),
                want,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
            let every_byte: Vec<usize> = (1..input.len()).collect();
            assert_eq!(
                in_pieces(Chunked, &input, &every_byte),
                want,
                "byte at a time"
            );
            let cuts = random_cuts(&mut rng, input.len());
            assert_eq!(in_pieces(Chunked, &input, &cuts), want, "cut at {cuts:?}");
        }
        for _ in 0..500 {
            let n = rng.index(50);
            let input = vec![b'x'; rng.index(60)];
            let want = whole(Length(n as u64), &input);
            assert_eq!(want, Ok((n.min(input.len()), input.len() >= n)));
            let cuts = random_cuts(&mut rng, input.len());
            assert_eq!(in_pieces(Length(n as u64), &input, &cuts), want);
        }
    }

    #[test]
    fn never_panics_on_random_input() {
        let mut rng = Rng(99);
        for _ in 0..5_000 {
            let input: Vec<u8> = (0..rng.index(64))
                .map(|_| match rng.index(3) {
                    0 => b"0123456789abcdef"[rng.index(16)],
                    1 => b"\r\n;: \t"[rng.index(6)],
                    _ => rng.next() as u8,
                })
                .collect();
            for framing in [Chunked, Length(rng.below(80))] {
                if let Ok((n, _)) = whole(framing, &input) {
                    assert!(n <= input.len());
                }
            }
        }
    }
}
