//! Discarding a request body we do not use (RFC 9112 §6.3, §7.1): a GET with a body must
//! never have that body read as the next request. [`BodyDiscarder`] is a pure, incremental
//! state machine fed with whatever bytes have arrived; it says how many belong to the body and
//! whether the body is over. Chunked bodies are parsed properly, with chunk extensions and
//! trailers bounded.

use crate::error::HttpError;
use crate::request::BodyFraming;

/// Longest chunk-size line (size, extensions) we accept; real ones are a few bytes.
pub const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes we accept after the last chunk.
pub const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Fixed-length body: bytes left.
    Length(u64),
    /// Reading a chunk-size line; bytes of it seen so far.
    Size {
        seen: usize,
        size: u64,
        digits: usize,
        in_ext: bool,
    },
    /// Chunk data: bytes left.
    Data(u64),
    /// The CRLF after chunk data; whether the CR was seen.
    DataEnd {
        cr: bool,
    },
    /// Trailer section; bytes seen, and the length of the current line.
    Trailers {
        seen: usize,
        line: usize,
    },
    Done,
}

/// Skips one request body.
#[derive(Debug, Clone)]
pub struct BodyDiscarder {
    state: State,
    total: u64,
    limit: u64,
}

impl BodyDiscarder {
    /// A discarder for a body framed as `framing`, refusing (413) one that is, or turns out
    /// to be, longer than `limit`.
    pub fn new(framing: BodyFraming, limit: u64) -> Result<BodyDiscarder, HttpError> {
        let state = match framing {
            BodyFraming::None => State::Done,
            BodyFraming::Length(n) if n > limit => return Err(HttpError::PayloadTooLarge),
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::Size {
                seen: 0,
                size: 0,
                digits: 0,
                in_ext: false,
            },
        };
        Ok(BodyDiscarder {
            state,
            total: 0,
            limit,
        })
    }

    /// Consumes body bytes from the start of `buf`. Returns how many bytes belonged to the
    /// body and whether it is complete.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            i += self.step(&buf[i..])?;
        }
        Ok((i, self.state == State::Done))
    }

    /// Advances over a prefix of `buf` (never empty); returns its length.
    fn step(&mut self, buf: &[u8]) -> Result<usize, HttpError> {
        let b = buf[0];
        match self.state {
            State::Length(left) | State::Data(left) => {
                let n = left.min(buf.len() as u64);
                let rest = left - n;
                self.state = match (self.state, rest) {
                    (State::Length(_), 0) => State::Done,
                    (State::Length(_), r) => State::Length(r),
                    (_, 0) => State::DataEnd { cr: false },
                    (_, r) => State::Data(r),
                };
                return Ok(n as usize);
            }
            State::Size {
                seen,
                size,
                digits,
                in_ext,
            } => {
                if seen + 1 > MAX_CHUNK_LINE {
                    return Err(HttpError::BadRequest("chunk-size line too long"));
                }
                let next = |size, digits, in_ext| State::Size {
                    seen: seen + 1,
                    size,
                    digits,
                    in_ext,
                };
                self.state = match b {
                    b'\n' => {
                        if digits == 0 {
                            return Err(HttpError::BadRequest("chunk without size"));
                        }
                        self.total = self.total.saturating_add(size);
                        if self.total > self.limit {
                            return Err(HttpError::PayloadTooLarge);
                        }
                        if size == 0 {
                            State::Trailers { seen: 0, line: 0 }
                        } else {
                            State::Data(size)
                        }
                    }
                    b'\r' => next(size, digits, in_ext),
                    _ if in_ext => {
                        if b < 0x20 && b != b'\t' || b == 0x7f {
                            return Err(HttpError::BadRequest("control byte in chunk extension"));
                        }
                        next(size, digits, true)
                    }
                    b';' | b' ' | b'\t' if digits > 0 => next(size, digits, true),
                    _ => {
                        let d = (b as char)
                            .to_digit(16)
                            .ok_or(HttpError::BadRequest("bad chunk size"))?;
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(HttpError::BadRequest("chunk size overflow"))?;
                        next(size, digits + 1, false)
                    }
                };
            }
            State::DataEnd { cr } => {
                self.state = match (b, cr) {
                    (b'\r', false) => State::DataEnd { cr: true },
                    (b'\n', _) => State::Size {
                        seen: 0,
                        size: 0,
                        digits: 0,
                        in_ext: false,
                    },
                    _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
                };
            }
            State::Trailers { seen, line } => {
                if seen + 1 > MAX_TRAILERS {
                    return Err(HttpError::HeadTooLarge);
                }
                self.state = match b {
                    b'\n' if line == 0 => State::Done,
                    b'\n' => State::Trailers {
                        seen: seen + 1,
                        line: 0,
                    },
                    b'\r' => State::Trailers {
                        seen: seen + 1,
                        line,
                    },
                    _ => State::Trailers {
                        seen: seen + 1,
                        line: line + 1,
                    },
                };
            }
            State::Done => return Ok(0),
        }
        Ok(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(usize, bool), HttpError>;

    fn discard(framing: BodyFraming, input: &[u8]) -> Result<(usize, bool), HttpError> {
        BodyDiscarder::new(framing, 1000)?.feed(input)
    }

    #[test]
    fn bodies_table() {
        use BodyFraming::*;
        let cases: &[(BodyFraming, &[u8], Outcome)] = &[
            (None, b"GET /", Ok((0, true))),
            (Length(5), b"helloGET", Ok((5, true))),
            (Length(5), b"hel", Ok((3, false))),
            (Length(1001), b"", Err(HttpError::PayloadTooLarge)),
            (Chunked, b"5\r\nhello\r\n0\r\n\r\nGET", Ok((15, true))),
            (
                Chunked,
                b"5;name=\"v\"\r\nhello\r\n0\r\nTrailer: x\r\n\r\nNEXT",
                Ok((36, true)),
            ),
            (Chunked, b"A\nabcdefghij\n0\n\n", Ok((16, true))),
            (Chunked, b"5\r\nhel", Ok((6, false))),
            (Chunked, b"zz\r\n", Err(HttpError::BadRequest(""))),
            (Chunked, b"\r\n", Err(HttpError::BadRequest(""))),
            (Chunked, b"5\r\nhelloXX", Err(HttpError::BadRequest(""))),
            (
                Chunked,
                b"fffffffffffffffff\r\n",
                Err(HttpError::BadRequest("")),
            ),
            (Chunked, b"3e9\r\n", Err(HttpError::PayloadTooLarge)),
        ];
        for (framing, input, want) in cases {
            let got = discard(*framing, input);
            let same = match (want, &got) {
                (Err(HttpError::BadRequest(_)), Err(HttpError::BadRequest(_))) => true,
                (w, g) => w == g,
            };
            assert!(
                same,
                "{framing:?} {:?}: want {want:?}, got {got:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn extensions_and_trailers_are_bounded() {
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(discard(BodyFraming::Chunked, long_ext.as_bytes()).is_err());
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "t".repeat(MAX_TRAILERS));
        assert!(discard(BodyFraming::Chunked, long_trailer.as_bytes()).is_err());
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\nNEXT";
        let whole = discard(BodyFraming::Chunked, body).unwrap();
        let mut d = BodyDiscarder::new(BodyFraming::Chunked, 1000).unwrap();
        let mut used = 0;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = d.feed(std::slice::from_ref(b)).unwrap();
            used += n;
            if done {
                assert_eq!((used, i + 1), (whole.0, whole.0));
                return;
            }
        }
        panic!("never finished");
    }
}
