//! Issue 15: property tests for the pure parsers, through the public API only.
//!
//! The unit tables inside each module pin exact answers for chosen inputs; these properties
//! state what must hold for *every* input, and proptest searches for a counterexample and
//! shrinks it. Four groups: the request head ([`request::parse`]), request bodies
//! ([`BodyDiscarder`]), path decoding and normalization ([`resolve`]), and preconditions and
//! ranges ([`conditional`]). The central one for the incremental parsers: cutting the input
//! anywhere never changes the answer.
//!
//! Each of the 12 properties runs proptest's default 256 cases (about a second in debug; CI
//! runs that), or `PROPTEST_CASES` cases when it is set. The long run outside CI, 12 x 100 000
//! = 1 200 000 cases, about 30 s on 2 cores after the release build:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release --test props
//! ```
//!
//! A failure prints the shrunk input; proptest also saves its seed in
//! `tests/props.proptest-regressions`, which is worth committing with the fix.

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::TestCaseError;

use poolserve::body::BodyDiscarder;
use poolserve::conditional::{
    boundary, etag, evaluate, multipart_layout, ByteRange, Plan, Preconditions, BOUNDARY_LEN,
    MAX_RANGES,
};
use poolserve::request::{self, BodyFraming, Parse, RequestHead, MAX_LEADING_EMPTY_BYTES};
use poolserve::resolve::{self, normalize, percent_decode, ResolveOptions, Resolved};
use poolserve::{HttpError, Limits};

use support::TestDir;

/// A property body's result: `prop_assert!` failures, so proptest shrinks instead of
/// unwinding through a panic.
type Checked<T = ()> = Result<T, TestCaseError>;

/// Sorted cut points in `0..=len` from random indexes.
fn cut_points(cuts: &[Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Every way of cutting `len` bytes that the split properties try: in two at each point, at
/// the random `cuts`, and one byte at a time.
fn splits(len: usize, cuts: &[Index]) -> Vec<Vec<usize>> {
    let mut all: Vec<Vec<usize>> = (0..=len).map(|at| vec![at]).collect();
    all.push(cut_points(cuts, len));
    all.push((0..len).collect());
    all
}

// ---------------------------------------------------------------------------------------
// 1. The request head.
// ---------------------------------------------------------------------------------------

/// A comparable form of [`request::parse`]'s answer: `Ok(None)` is `Partial`.
type HeadOutcome = Result<Option<(RequestHead, usize)>, HttpError>;

fn outcome(r: Result<Parse, HttpError>) -> HeadOutcome {
    r.map(|p| match p {
        Parse::Partial => None,
        Parse::Complete { head, len } => Some((head, len)),
    })
}

/// The whole buffer at once, with a fresh `resume`.
fn parse_whole(buf: &[u8], limits: &Limits) -> HeadOutcome {
    outcome(request::parse(buf, &mut 0, limits))
}

/// Growing prefixes of `buf` ending at `cuts` (sorted; the end is added), one `resume`
/// carried across the calls as the connection does, until an answer is not `Partial`. Checks
/// the `resume` contract on the way: within the buffer after `Partial`, 0 after `Complete`.
fn parse_in_pieces(buf: &[u8], cuts: &[usize], limits: &Limits) -> Checked<HeadOutcome> {
    let mut resume = 0;
    for &cut in cuts.iter().chain([&buf.len()]) {
        let got = outcome(request::parse(&buf[..cut], &mut resume, limits));
        match &got {
            Ok(None) => {
                prop_assert!(resume <= cut, "resume {} past the buffer {}", resume, cut);
                continue;
            }
            Ok(Some(_)) => prop_assert_eq!(resume, 0, "resume not reset after Complete"),
            Err(_) => {}
        }
        return Ok(got);
    }
    Ok(Ok(None))
}

/// Line ends: mostly CRLF or LF; now and then a bare CR or none, which glue lines together.
fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![30 => Just("\r\n"), 10 => Just("\n"), 1 => Just("\r"), 1 => Just("")]
}

fn request_line() -> impl Strategy<Value = String> {
    let method = prop_oneof![
        20 => select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
            .prop_map(String::from),
        1 => select(vec!["get", "Get", "PROPFIND", "M-SEARCH", "G@T", ""]).prop_map(String::from),
        1 => "[A-Z]{1,40}",
    ];
    let target = prop_oneof![
        20 => "/[a-zA-Z0-9._~%/?&=-]{0,24}",
        1 => Just("*".to_string()),
        1 => "(http|HTTP|https|ftp)://[a-z0-9.:@\\[\\]]{0,12}(/[a-z0-9?]{0,8})?",
        1 => "[!-~]{0,12}",
        1 => "/[^\r\n]{0,8}",
    ];
    let version = prop_oneof![
        20 => select(vec!["HTTP/1.1", "HTTP/1.0"]),
        1 => select(vec!["HTTP/2.0", "HTTP/1.x", "http/1.1", "HTTP/1.10", ""]),
    ];
    let sp = || prop_oneof![40 => Just(" "), 1 => Just("  "), 1 => Just("\t")];
    (method, sp(), target, sp(), version).prop_map(|(m, a, t, b, v)| format!("{m}{a}{t}{b}{v}"))
}

/// A header field line without its line end: mostly fields the parser interprets, each with
/// values that pass or fail its rules, or other names with any visible text; sometimes a
/// name or a colon out of any bytes, and obs-text in values.
fn field() -> impl Strategy<Value = Vec<u8>> {
    let with = |name: &'static str, values: Vec<&'static str>| {
        select(values).prop_map(move |v| format!("{name}: {v}").into_bytes())
    };
    prop_oneof![
        2 => with("Content-Length", vec!["5", "0", "007", "18446744073709551616", "1, 2", ""]),
        2 => with("Transfer-Encoding", vec!["chunked", "Chunked", "gzip, chunked", "chunked, x"]),
        2 => with("Connection", vec!["close", "keep-alive", "Upgrade, close", ""]),
        1 => with("Expect", vec!["100-continue", "100-Continue", "fancy"]),
        1 => with("host", vec!["h", "[::1]:80", "a b", ""]),
        12 => (
            select(vec!["Accept", "User-Agent", "X-A", "x-a", "Cookie"]),
            select(vec![": ", ":", ":\t "]),
            "[ -~]{0,16}",
        )
            .prop_map(|(n, c, v)| format!("{n}{c}{v}").into_bytes()),
        1 => ("[!-~ \t]{0,8}", select(vec![": ", "", " : ", "\t:"]), vec(any::<u8>(), 0..12))
            .prop_map(|(n, c, v)| [n.as_bytes(), c.as_bytes(), &v].concat()),
    ]
}

/// A valid request head, nothing after it: a method we serve, an origin-form target, Host and
/// other token-named fields with visible values, CRLF or LF line ends.
fn valid_head() -> impl Strategy<Value = Vec<u8>> {
    let eol = || select(vec!["\r\n", "\n"]);
    let fields = vec(
        ("X-[A-Za-z0-9-]{1,10}", "[!-~]([ -~]{0,14}[!-~])?", eol()),
        0..4,
    );
    (
        select(vec!["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
        "/[a-zA-Z0-9._~%/?&=-]{0,24}",
        select(vec!["HTTP/1.1", "HTTP/1.0"]),
        eol(),
        fields,
        eol(),
    )
        .prop_map(|(method, target, version, line_end, fields, end)| {
            let mut head = format!("{method} {target} {version}{line_end}Host: h{line_end}");
            for (name, value, e) in fields {
                head.push_str(&format!("{name}: {value}{e}"));
            }
            head.push_str(end);
            head.into_bytes()
        })
}

/// A request head that is valid or nearly so: leading empty lines, a request line, an
/// optional Host, random fields, mixed line ends, the empty line, then whatever follows (a
/// body or the next request), and in one case out of four a byte mutation or two anywhere.
fn near_valid_head() -> impl Strategy<Value = Vec<u8>> {
    let host = prop::option::weighted(0.8, select(vec!["h", "example.com", "[::1]:80", "a b"]));
    (
        vec(select(vec!["\r\n", "\n"]), 0..4),
        request_line(),
        eol(),
        host,
        vec((field(), eol()), 0..6),
        eol(),
        vec(any::<u8>(), 0..16),
        prop_oneof![3 => Just(vec![]), 1 => vec((any::<Index>(), 0..3u8, any::<u8>()), 1..3)],
    )
        .prop_map(|(empty, line, line_end, host, fields, end, after, edits)| {
            let mut buf = empty.concat().into_bytes();
            buf.extend(line.as_bytes());
            buf.extend(line_end.as_bytes());
            if let Some(h) = host {
                buf.extend(format!("Host: {h}\r\n").as_bytes());
            }
            for (f, e) in fields {
                buf.extend(f);
                buf.extend(e.as_bytes());
            }
            buf.extend(end.as_bytes());
            buf.extend(after);
            for (at, op, byte) in edits {
                let at = at.index(buf.len() + 1);
                match op {
                    0 if at < buf.len() => buf[at] = byte,
                    1 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.insert(at, byte),
                }
            }
            buf
        })
}

/// Any bytes, or bytes from the alphabet of heads so that line structure appears.
fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..160),
        vec(
            select(b"\r\n\r\n :GET/ HTTP/1.1Host\0\x7f\xff".to_vec()),
            0..160
        ),
    ]
}

/// The defaults, or small limits so that the 414 and 431 paths are reached. The head limit
/// leaves room for the longest request line after the most leading empty lines: with a
/// smaller one, a head too large is found before the request line can be judged, and the
/// answer (431 or 414) would depend on how the bytes arrived.
fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        3 => Just(Limits::default()),
        1 => (1usize..80, 0usize..120, 0usize..8).prop_map(|(line, extra, fields)| Limits {
            max_request_line: line,
            max_head_bytes: MAX_LEADING_EMPTY_BYTES + 1 + line + 2 + extra,
            max_headers: fields,
            ..Limits::default()
        }),
    ]
}

proptest! {
    // No `proptest_config`: `ProptestConfig::default()` is 256 cases, or `PROPTEST_CASES`.

    /// `parse` never panics, and the answer for the whole buffer equals the answer for the
    /// same bytes fed as growing prefixes (split in two at every point, at random points, and
    /// byte by byte), with `resume` carried as documented: the same head and length, the same
    /// error, or `Partial` for both.
    #[test]
    fn head_split_anywhere_parses_the_same(
        buf in prop_oneof![
            4 => near_valid_head(),
            1 => (valid_head(), head_bytes()).prop_map(|(h, after)| [h, after].concat()),
            2 => head_bytes(),
        ],
        limits in limits(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let whole = parse_whole(&buf, &limits);
        for cuts in splits(buf.len(), &cuts) {
            let pieces = parse_in_pieces(&buf, &cuts, &limits)?;
            prop_assert_eq!(&pieces, &whole, "cut at {:?}", cuts);
        }
    }

    /// A complete head occupies `len <= buf.len()` bytes and depends on nothing after them:
    /// `buf[..len]` alone gives the same head, every shorter prefix is `Partial`, and other
    /// bytes after it change nothing.
    #[test]
    fn a_complete_head_ends_where_it_says(
        buf in prop_oneof![valid_head(), near_valid_head()],
        limits in limits(),
        after in head_bytes(),
    ) {
        let whole = parse_whole(&buf, &limits);
        if let Ok(Some((head, len))) = &whole {
            prop_assert!(*len <= buf.len());
            prop_assert!(head.path.starts_with('/') || head.path == "*", "{:?}", head.path);
            prop_assert_eq!(&parse_whole(&buf[..*len], &limits), &whole);
            for k in 0..*len {
                prop_assert_eq!(parse_whole(&buf[..k], &limits), Ok(None), "prefix {}", k);
            }
            let other = [&buf[..*len], &after].concat();
            prop_assert_eq!(&parse_whole(&other, &limits), &whole);
        }
    }

    /// Pipelined heads: a connection that drops each complete head from its buffer and
    /// parses on (with `resume` reset by `parse`) gets the same sequence of heads, and the
    /// same final error, whatever pieces the bytes arrive in.
    #[test]
    fn pipelined_heads_split_anywhere_parse_the_same(
        heads in vec(prop_oneof![3 => valid_head(), 1 => near_valid_head()], 1..5),
        limits in limits(),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let stream = heads.concat();
        let want = serve_heads(&stream, &[], &limits)?;
        for cuts in splits(stream.len(), &cuts) {
            prop_assert_eq!(&serve_heads(&stream, &cuts, &limits)?, &want, "cut at {:?}", cuts);
        }
    }
}

/// What a connection makes of a stream of heads: each head (with its length), then the
/// first error, if any.
type Served = (Vec<(RequestHead, usize)>, Option<HttpError>);

/// Receives `stream` in pieces ending at `cuts`, as `connection.rs` does: appends each piece,
/// parses while heads are complete, drops each head's bytes, keeps `resume` across calls.
fn serve_heads(stream: &[u8], cuts: &[usize], limits: &Limits) -> Checked<Served> {
    let (mut buf, mut resume, mut from) = (Vec::new(), 0, 0);
    let mut heads = Vec::new();
    for &cut in cuts.iter().chain([&stream.len()]) {
        buf.extend_from_slice(&stream[from..cut]);
        from = cut;
        loop {
            match request::parse(&buf, &mut resume, limits) {
                Ok(Parse::Partial) => break,
                Ok(Parse::Complete { head, len }) => {
                    prop_assert_eq!(resume, 0);
                    buf.drain(..len);
                    heads.push((head, len));
                }
                Err(e) => return Ok((heads, Some(e))),
            }
        }
    }
    Ok((heads, None))
}

// ---------------------------------------------------------------------------------------
// 2. Request bodies.
// ---------------------------------------------------------------------------------------

/// What feeding a body produced: bytes consumed, whether it is over, the decoded data, and
/// the error that stopped it.
#[derive(Debug, PartialEq)]
struct Fed {
    used: usize,
    done: bool,
    data: Vec<u8>,
    error: Option<HttpError>,
}

/// Feeds `input` to a new discarder in pieces ending at `cuts` (sorted; the end is added)
/// through `feed_data`, collecting the data, until the body is over or fails (then `used` is
/// 0: a failed call says nothing about it). Checks the contract of every call on the way:
/// never more than the piece, all of it while the body is not over, then `(0, true)` once
/// over, and the same error again once failed.
fn feed_in_pieces(
    framing: BodyFraming,
    limit: u64,
    input: &[u8],
    cuts: &[usize],
) -> Checked<Result<Fed, HttpError>> {
    let mut d = match BodyDiscarder::new(framing, limit) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    let mut fed = Fed {
        used: 0,
        done: false,
        data: Vec::new(),
        error: None,
    };
    let mut from = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        let piece = &input[from..cut];
        from = cut;
        let mut sink = |chunk: &[u8]| {
            fed.data.extend_from_slice(chunk);
            Ok(())
        };
        match d.feed_data(piece, &mut sink) {
            Ok((n, done)) => {
                prop_assert!(n <= piece.len());
                fed.used += n;
                if done {
                    fed.done = true;
                    prop_assert_eq!(d.feed(&input[fed.used..]), Ok((0, true)));
                    break;
                }
                prop_assert_eq!(n, piece.len(), "an unfinished body takes all it is fed");
            }
            Err(e) => {
                prop_assert_eq!(d.feed(b"0\r\n\r\n"), Err(e.clone()), "a failure sticks");
                // A failed call reports no count, so what was consumed depends on the cuts;
                // the data handed over before the bad byte does not.
                fed.used = 0;
                fed.error = Some(e);
                return Ok(Ok(fed));
            }
        }
    }
    prop_assert!(fed.data.len() <= fed.used);
    Ok(Ok(fed))
}

fn framing() -> impl Strategy<Value = BodyFraming> {
    prop_oneof![
        4 => Just(BodyFraming::Chunked),
        2 => (0u64..300).prop_map(BodyFraming::Length),
        1 => Just(BodyFraming::None),
    ]
}

fn body_limit() -> impl Strategy<Value = u64> {
    prop_oneof![Just(u64::MAX), 0u64..400]
}

/// A well-formed chunked body of random data: sizes with leading zeros in either case,
/// extensions, CRLF or LF, trailer fields; returned with the data it carries.
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let eol = || select(vec!["\r\n", "\r\n", "\n"]);
    let chunk = (
        vec(any::<u8>(), 1..40),
        0usize..3,
        any::<bool>(),
        select(vec!["", "", ";", " ;a=b", ";x=\"y z\";q", "\t"]),
        eol(),
        eol(),
    );
    let trailer = ("[A-Za-z-]{1,8}", ":[ -~\t]{0,10}", eol());
    (
        vec(chunk, 0..6),
        select(vec!["0", "000"]),
        eol(),
        vec(trailer, 0..3),
        eol(),
    )
        .prop_map(|(chunks, last, last_eol, trailers, end)| {
            let (mut wire, mut data) = (Vec::new(), Vec::new());
            for (bytes, zeros, upper, ext, size_eol, data_eol) in chunks {
                let size = format!("{}{:x}", "0".repeat(zeros), bytes.len());
                let size = if upper { size.to_uppercase() } else { size };
                wire.extend(format!("{size}{ext}{size_eol}").as_bytes());
                wire.extend(&bytes);
                wire.extend(data_eol.as_bytes());
                data.extend(bytes);
            }
            wire.extend(format!("{last}{last_eol}").as_bytes());
            for (name, value, e) in trailers {
                wire.extend(format!("{name}{value}{e}").as_bytes());
            }
            wire.extend(end.as_bytes());
            (wire, data)
        })
}

/// Bodies to feed: chunked bodies (sometimes mutated) with the next request after them,
/// bytes from the alphabet of chunked framing, and any bytes.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        chunked_body(),
        vec((any::<Index>(), select(b"0aF;\r\n \t:\0x".to_vec())), 0..3),
    )
        .prop_map(|((mut wire, _), edits)| {
            for (at, byte) in edits {
                if !wire.is_empty() {
                    let at = at.index(wire.len());
                    wire[at] = byte;
                }
            }
            wire.extend(b"GET / HTTP/1.1\r\n");
            wire
        });
    prop_oneof![
        2 => mutated,
        1 => vec(select(b"0123456789abcdefABCDEF;= \t\r\n:xX\0\x7f\xff".to_vec()), 0..160),
        1 => vec(any::<u8>(), 0..160),
    ]
}

proptest! {
    /// `BodyDiscarder` never panics, and feeding the whole input at once equals feeding it
    /// in pieces (in two at every point, at random points, byte by byte): the same bytes
    /// consumed, the same completion, the same data through `feed_data`, the same error.
    #[test]
    fn body_split_anywhere_feeds_the_same(
        framing in framing(),
        limit in body_limit(),
        input in body_bytes(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let whole = feed_in_pieces(framing, limit, &input, &[])?;
        for cuts in splits(input.len(), &cuts) {
            let pieces = feed_in_pieces(framing, limit, &input, &cuts)?;
            prop_assert_eq!(&pieces, &whole, "cut at {:?}", cuts);
        }
    }

    /// A well-formed chunked body decodes to exactly the data encoded in it, ends exactly at
    /// its last byte (the next request is left alone), and is refused with 413 exactly when
    /// its data is longer than the limit.
    #[test]
    fn chunked_bodies_decode_to_their_data(
        (wire, data) in chunked_body(),
        limit in body_limit(),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let input = [&wire[..], b"GET / HTTP/1.1\r\n"].concat();
        let want = if data.len() as u64 > limit {
            Fed { used: 0, done: false, data: Vec::new(), error: Some(HttpError::PayloadTooLarge) }
        } else {
            Fed { used: wire.len(), done: true, data, error: None }
        };
        let cuts = cut_points(&cuts, input.len());
        let mut got = feed_in_pieces(BodyFraming::Chunked, limit, &input, &cuts)?
            .map_err(|e| TestCaseError::fail(format!("new: {e:?}")))?;
        if got.error.is_some() {
            // The data before the refusal is whatever fitted; not the point here.
            prop_assert!(want.error.is_some(), "{:?}", got);
            got.data.clear();
        }
        prop_assert_eq!(got, want);
    }

    /// A `Content-Length` body is exactly its first `n` bytes: refused up front above the
    /// limit, otherwise consumes `min(n, len)` bytes, is over once `n` have arrived, and its
    /// data is those bytes.
    #[test]
    fn length_bodies_take_exactly_their_length(
        n in 0u64..300,
        limit in body_limit(),
        input in vec(any::<u8>(), 0..320),
        cuts in vec(any::<Index>(), 0..6),
    ) {
        let cuts = cut_points(&cuts, input.len());
        let got = feed_in_pieces(BodyFraming::Length(n), limit, &input, &cuts)?;
        let used = input.len().min(n as usize);
        let want = if n > limit {
            Err(HttpError::PayloadTooLarge)
        } else {
            Ok(Fed {
                used,
                done: input.len() as u64 >= n,
                data: input[..used].to_vec(),
                error: None,
            })
        };
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------
// 3. Paths.
// ---------------------------------------------------------------------------------------

/// Request paths built from the pieces of traversal attempts: dot segments plain and
/// encoded, doubled and encoded slashes, backslashes, NUL, broken escapes, `%25`, UTF-8
/// plain and encoded, and the names of the fixture of `resolve_stays_inside_the_root`.
fn request_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        20 => select(vec![
            "/", "/", "/", "//", ".", "..", "/..", "/../", "/%2e%2e/", "...", "%2e", "%2E",
            "%2e%2e", "%2E%2e", ".%2e",
            "%2f", "%2F", "%5c", "\\", "..\\", "%25", "%252e", "\u{e9}", "%C3%A9", "%ff", "?",
            "#", " ", "a", "sub", "a.txt", "b.txt", "index.html", ".hidden", "outside",
            "secret.txt", "link-out", "link-outdir", "x%20y",
        ]).prop_map(String::from),
        1 => select(vec!["%00", "\0", "%", "%4", "%zz", "\r\n"]).prop_map(String::from),
        2 => "[^/%]{1,3}",
    ];
    (prop::bool::weighted(0.9), vec(piece, 0..12))
        .prop_map(|(slash, pieces)| format!("{}{}", if slash { "/" } else { "" }, pieces.concat()))
}

/// The oracle for a climb, counting depth instead of keeping a stack: some `..` comes when
/// nothing has been descended into. Returns the final depth when there is no climb.
fn depth_without_climb(decoded: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => depth = depth.checked_sub(1)?,
            _ => depth += 1,
        }
    }
    Some(depth)
}

/// Percent-encodes `bytes`, each escape or literal as `escape` says (bytes that cannot stand
/// for themselves are always escaped), hex digits in either case.
fn percent_encode(bytes: &[u8], escape: &[(bool, bool)]) -> String {
    let mut out = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        let (esc, upper) = escape.get(i).copied().unwrap_or((true, false));
        if !esc && b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

proptest! {
    /// Decoding inverts encoding: any bytes but NUL, percent-encoded with escapes of either
    /// case or left literal, decode back to themselves, exactly once (`%25` stays `%`).
    #[test]
    fn percent_decode_inverts_percent_encoding(
        bytes in vec(1u8..=255, 0..64),
        escape in vec(any::<(bool, bool)>(), 64),
    ) {
        let encoded = percent_encode(&bytes, &escape);
        prop_assert_eq!(percent_decode(&encoded), Ok(bytes));
    }

    /// Normalization never points above the root and never panics. For any path: decoding
    /// fails only as 400 and never yields NUL; normalization fails only as `Traversal`, and
    /// exactly when some `..` climbs above the root (the depth oracle); otherwise every
    /// segment is a plain name (not empty, `.` or `..`, no `/` or NUL), so the segments make
    /// a relative path of as many `Normal` components, which stays under any root it is
    /// joined to, and normalizing that normal form again changes nothing.
    #[test]
    fn normalized_paths_never_leave_the_root(path in request_path()) {
        let decoded = match percent_decode(&path) {
            Ok(decoded) => decoded,
            Err(e) => {
                prop_assert!(matches!(e, HttpError::BadRequest(_)), "{:?}", e);
                return Ok(());
            }
        };
        prop_assert!(!decoded.contains(&0));
        let segments = match normalize(&decoded) {
            Ok(segments) => segments,
            Err(e) => {
                prop_assert_eq!(e, HttpError::Traversal);
                prop_assert_eq!(depth_without_climb(&decoded), None, "not a climb");
                return Ok(());
            }
        };
        prop_assert_eq!(depth_without_climb(&decoded), Some(segments.len()));
        for s in &segments {
            prop_assert!(!s.is_empty() && s != b"." && s != b"..", "{:?}", s);
            prop_assert!(!s.contains(&b'/') && !s.contains(&0), "{:?}", s);
        }
        let rel: PathBuf = segments.iter().map(|s| OsStr::from_bytes(s)).collect();
        prop_assert!(rel.is_relative());
        prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", rel);
        prop_assert_eq!(rel.components().count(), segments.len());
        let root = Path::new("/srv/www");
        prop_assert!(root.join(&rel).starts_with(root));
        let normal_form: Vec<u8> = segments.iter().flat_map(|s| [&b"/"[..], s].concat()).collect();
        prop_assert_eq!(normalize(&normal_form), Ok(segments));
    }
}

/// The on-disk fixture: `BASE/root` is the document root; `BASE/outside/secret.txt` and the
/// links pointing at it must never be served.
struct Fixture {
    _dir: TestDir,
    root: PathBuf,
}

const SECRET: &str = "SECRET-outside-the-root";

fn fixture() -> Fixture {
    use std::os::unix::fs::symlink;
    let dir = TestDir::new();
    for rel in [
        "index.html",
        "a.txt",
        "sub/b.txt",
        "sub/index.html",
        ".hidden",
    ] {
        dir.file(&format!("root/{rel}"), rel);
    }
    dir.file("outside/secret.txt", SECRET);
    let root = std::fs::canonicalize(dir.path.join("root")).expect("canonical root");
    symlink(dir.path.join("outside/secret.txt"), root.join("link-out")).expect("symlink");
    symlink(dir.path.join("outside"), root.join("link-outdir")).expect("symlink");
    symlink("../outside/secret.txt", root.join("sub/secret.txt")).expect("symlink");
    Fixture { _dir: dir, root }
}

/// `resolve` and `resolve_write` on a real tree: whatever the path, a file served is inside
/// the root (never the secret outside, even through links), a redirect is the path plus `/`
/// and can never be read as another host, the answer is `Traversal` exactly when a
/// well-formed path climbs above the root (the depth oracle), and a write target is a plain
/// name in a directory inside the root.
#[test]
fn resolve_stays_inside_the_root() {
    let fx = fixture();
    let root = fx.root.as_path();
    proptest!(|(
        path in request_path(),
        query in prop::option::of("[ -~]{0,6}"),
        hidden in any::<bool>(),
        list_dirs in any::<bool>(),
    )| {
        let opts = ResolveOptions {
            hidden,
            site_rules: true,
            list_dirs,
        };
        // The depth oracle, for a path that passes the checks made before normalization.
        let control = |s: &str| s.bytes().any(|b| b.is_ascii_control());
        let well_formed =
            path.starts_with('/') && !control(&path) && !query.as_deref().is_some_and(control);
        let climbs = well_formed
            && percent_decode(&path).is_ok_and(|d| depth_without_climb(&d).is_none());
        let got = resolve::resolve(root, &path, query.as_deref(), &opts);
        prop_assert_eq!(matches!(got, Err(HttpError::Traversal)), climbs, "{:?}", got);
        match got {
            Ok(Resolved::File(mut info)) => {
                prop_assert!(info.path.starts_with(root), "{:?}", info.path);
                let mut body = String::new();
                std::io::Read::read_to_string(&mut info.file, &mut body).expect("read");
                prop_assert!(body != SECRET, "{} served the secret", path);
                prop_assert_eq!(info.len, body.len() as u64);
            }
            Ok(Resolved::Redirect(location)) => {
                let q = query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
                let scheme_relative = path.starts_with("//") || path.starts_with("/\\");
                let guarded = if scheme_relative { "/." } else { "" };
                prop_assert_eq!(&location, &format!("{guarded}{path}/{q}"));
                prop_assert!(!location.starts_with("//") && !location.starts_with("/\\"));
            }
            Ok(Resolved::Directory(dir)) => {
                prop_assert!(list_dirs && path.ends_with('/'), "{} listed", path);
                prop_assert!(dir.path.starts_with(root), "{:?}", dir.path);
            }
            Err(_) => {}
        }
        if let Ok(target) = resolve::resolve_write(root, &path, &opts) {
            prop_assert!(target.dir.starts_with(root), "{:?}", target.dir);
            prop_assert_eq!(target.path.parent(), Some(target.dir.as_path()));
            let name = target.name.as_bytes();
            prop_assert!(!name.is_empty() && name != b"." && name != b"..");
            prop_assert!(!name.contains(&b'/'));
        }
    });
}

// ---------------------------------------------------------------------------------------
// 4. Preconditions and ranges.
// ---------------------------------------------------------------------------------------

/// What every plan satisfies, for any input: a `Partial` range lies in `0..len`; a
/// `Multipart` has 2 to MAX_RANGES parts, each inside, sorted, neither overlapping nor
/// touching (coalesced), adding up to at most the file.
fn check_plan(plan: &Plan, len: u64) -> Checked {
    let inside = |r: &ByteRange| r.start <= r.end && r.end < len && !r.is_empty();
    match plan {
        Plan::Partial(r) => prop_assert!(inside(r), "{:?} of {}", r, len),
        Plan::Multipart(ranges) => {
            prop_assert!((2..=MAX_RANGES).contains(&ranges.len()), "{:?}", ranges);
            prop_assert!(ranges.iter().all(inside), "{:?} of {}", ranges, len);
            prop_assert!(
                ranges
                    .windows(2)
                    .all(|w| w[0].end.saturating_add(1) < w[1].start),
                "not coalesced: {:?}",
                ranges
            );
            let sum = ranges.iter().try_fold(0u64, |s, r| s.checked_add(r.len()));
            prop_assert!(sum.is_some_and(|s| s <= len), "{:?} of {}", ranges, len);
        }
        _ => {}
    }
    Ok(())
}

/// One range-spec as written (a last-pos before its first-pos makes the set malformed).
#[derive(Debug, Clone)]
enum Spec {
    FromTo(u64, Option<u64>),
    Suffix(u64),
}

/// Range-specs sized for a `len`-byte file: mostly short spans, so that several fit and
/// overlap, touch or not; sometimes past the end, open-ended, suffixes, or any two numbers
/// (a last-pos before the first-pos among them).
fn spec(len: u64) -> impl Strategy<Value = Spec> {
    let span = len / 4 + 2;
    prop_oneof![
        6 => (0..len + 3, 0..span).prop_map(|(a, d)| Spec::FromTo(a, Some(a + d))),
        1 => (0..len + 3).prop_map(|a| Spec::FromTo(a, None)),
        2 => (0..span).prop_map(Spec::Suffix),
        1 => (0u64..70, 0u64..70).prop_map(|(a, b)| Spec::FromTo(a, Some(b))),
    ]
}

/// Renders specs as a `Range` value with random OWS and empty list members.
fn range_field(unit: &str, specs: &[Spec], ows: &[(u8, bool)]) -> String {
    let mut field = format!("{unit}=");
    for (i, s) in specs.iter().enumerate() {
        let (pad, empty) = ows.get(i).copied().unwrap_or((0, false));
        let pad = [" ", "", "\t", ""][usize::from(pad % 4)];
        if i > 0 {
            field.push_str(if empty { ", ," } else { "," });
        }
        field.push_str(pad);
        match s {
            Spec::FromTo(a, Some(b)) => field.push_str(&format!("{a}-{b}")),
            Spec::FromTo(a, None) => field.push_str(&format!("{a}-")),
            Spec::Suffix(n) => field.push_str(&format!("-{n}")),
        }
        field.push_str(pad);
    }
    field
}

/// The byte-set model of RFC 9110 §14 as this server applies it: bytes each spec selects
/// from a `len`-byte file, marked in a bitmap; then the server's caps. Independent of the
/// implementation's sort-and-merge.
fn model_plan(specs: &[Spec], len: u64) -> Plan {
    let malformed = specs
        .iter()
        .any(|s| matches!(s, Spec::FromTo(a, Some(b)) if b < a));
    if malformed || specs.is_empty() || specs.len() > MAX_RANGES {
        return Plan::Full;
    }
    let mut covered = vec![false; len as usize];
    let (mut asked, mut any) = (0u64, false);
    for s in specs {
        let (from, to) = match *s {
            Spec::FromTo(a, b) => (a, b.map_or(len, |b| (b + 1).min(len))),
            Spec::Suffix(n) => (len.saturating_sub(n), len),
        };
        if from < to {
            any = true;
            asked += to - from;
            covered[from as usize..to as usize].fill(true);
        }
    }
    if !any {
        return Plan::Unsatisfiable;
    }
    if asked > len {
        return Plan::Full;
    }
    let mut runs = Vec::new();
    let mut i = 0;
    while i < covered.len() {
        if covered[i] {
            let start = i;
            while i < covered.len() && covered[i] {
                i += 1;
            }
            runs.push(ByteRange {
                start: start as u64,
                end: i as u64 - 1,
            });
        } else {
            i += 1;
        }
    }
    match runs.as_slice() {
        [one] => Plan::Partial(*one),
        _ => Plan::Multipart(runs),
    }
}

/// A header value for any of the precondition fields: real validators of the file, dates
/// around its mtime, lists, `*`, range sets, and arbitrary text.
fn field_value(tag: String) -> impl Strategy<Value = String> {
    let weak = format!("W/{tag}");
    prop_oneof![
        2 => select(vec![
            tag.clone(), weak, format!("\"x\", {tag}"), "*".into(), "\"x\"".into(), ",".into(),
            "Sun, 06 Nov 1994 08:49:37 GMT".into(), "Sun, 06 Nov 1994 08:49:36 GMT".into(),
            "Thu, 01 Jan 1970 00:00:00 GMT".into(), "bytes=0-9,20-".into(), "bytes=-5".into(),
            "bytes=0-0,2-2,4-".into(),
        ]),
        1 => "[bytes=0-9,* \t\"W/-]{0,24}",
        1 => "\\PC{0,16}",
    ]
}

/// A file length: empty, small, or near `u64::MAX`.
fn file_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..70,
        1 => Just(0),
        1 => (0u64..4).prop_map(|d| u64::MAX - d),
        1 => any::<u64>(),
    ]
}

proptest! {
    /// For any set of range-specs (random OWS, empty members, unit case; some with a last-pos
    /// before the first-pos) and any small length, the plan equals the byte-set model: the exact bytes asked for, as one
    /// range or as sorted coalesced parts; 416 when no spec selects a byte; the whole file
    /// for a malformed set, more than MAX_RANGES specs, or more bytes asked than the file has.
    #[test]
    fn range_plans_match_the_byte_set_model(
        (len, specs) in (0u64..64).prop_flat_map(|len| {
            (Just(len), prop_oneof![4 => vec(spec(len), 1..6), 1 => vec(spec(len), 1..20)])
        }),
        ows in vec(any::<(u8, bool)>(), 20),
        unit in select(vec!["bytes", "BYTES", "Bytes"]),
    ) {
        let field = range_field(unit, &specs, &ows);
        let p = Preconditions { range: Some(&field), ..Preconditions::default() };
        let plan = evaluate(&p, true, &etag(len, None), None, len);
        check_plan(&plan, len)?;
        prop_assert_eq!(plan, model_plan(&specs, len), "{}", field);
    }

    /// `evaluate` never panics for any header strings, lengths, mtimes and methods, every
    /// plan satisfies `check_plan`, and each answer needs the fields that can cause it
    /// (RFC 9110 §13.2.2): 412 only with If-Match or If-Unmodified-Since, 304 only with
    /// If-None-Match or If-Modified-Since and on GET/HEAD, a 206 or 416 only with Range and
    /// on GET/HEAD; other methods get only 200 or 412.
    #[test]
    fn evaluate_is_sound_for_any_fields(
        (len, modified, validators, range) in
            (file_len(), prop::option::weighted(0.8, 0u64..2_000_000_000))
            .prop_flat_map(|(len, secs)| {
                let modified = secs.map(|s| UNIX_EPOCH + Duration::from_millis(s * 500));
                let tag = etag(len, modified);
                let validators = vec(prop::option::weighted(0.15, field_value(tag.clone())), 5);
                let range_set = (vec(spec(70), 1..8), vec(any::<(u8, bool)>(), 8))
                    .prop_map(|(specs, ows)| range_field("bytes", &specs, &ows));
                let range = prop::option::weighted(0.7, prop_oneof![
                    2 => range_set,
                    1 => "bytes=[0-9,\\- ]{0,16}",
                    1 => field_value(tag),
                ]);
                (Just(len), Just(modified), validators, range)
            }),
        is_get_or_head in prop::bool::weighted(0.8),
    ) {
        let f = |i: usize| validators[i].as_deref();
        let p = Preconditions {
            if_match: f(0),
            if_none_match: f(1),
            if_modified_since: f(2),
            if_unmodified_since: f(3),
            if_range: f(4),
            range: range.as_deref(),
        };
        let plan = evaluate(&p, is_get_or_head, &etag(len, modified), modified, len);
        check_plan(&plan, len)?;
        match &plan {
            Plan::PreconditionFailed => {
                prop_assert!(p.if_match.is_some() || p.if_unmodified_since.is_some())
            }
            Plan::NotModified => prop_assert!(
                is_get_or_head && (p.if_none_match.is_some() || p.if_modified_since.is_some())
            ),
            Plan::Partial(_) | Plan::Multipart(_) | Plan::Unsatisfiable => {
                prop_assert!(is_get_or_head && p.range.is_some())
            }
            Plan::Full => {}
        }
    }

    /// A multipart layout adds up: `total_len` is the sum of its part heads, its ranges and
    /// the close delimiter (saturating only past u64), and each part head names its range;
    /// for small files, the body actually written has exactly that many bytes. The boundary
    /// is BOUNDARY_LEN bytes of `[0-9a-z-]` whatever the tag.
    #[test]
    fn multipart_layout_adds_up(
        len in prop_oneof![1u64..200, (1u64..4).prop_map(|d| u64::MAX - d)],
        bounds in vec((any::<u64>(), any::<u64>()), 0..8),
        content_type in "[ -~]{0,24}",
        tag in "\\PC{0,24}",
    ) {
        let b = boundary(&tag);
        prop_assert_eq!(b.len(), BOUNDARY_LEN);
        prop_assert!(b.bytes().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == b'-'));
        let ranges: Vec<ByteRange> = bounds
            .iter()
            .map(|&(x, y)| {
                let (x, y) = (x % len, y % len);
                ByteRange { start: x.min(y), end: x.max(y) }
            })
            .collect();
        let layout = multipart_layout(&ranges, len, &content_type, &b);
        prop_assert_eq!(layout.parts.len(), ranges.len());
        let mut total: u128 = layout.trailer.len() as u128;
        for ((head, r), want) in layout.parts.iter().zip(&ranges) {
            prop_assert_eq!(r, want);
            let head = String::from_utf8_lossy(head);
            prop_assert!(head.starts_with(&format!("\r\n--{b}\r\n")), "{}", head);
            let content_range = format!("\r\nContent-Range: {}\r\n\r\n", r.content_range(len));
            prop_assert!(head.ends_with(&content_range), "{}", head);
            total += head.len() as u128 + u128::from(r.len());
        }
        prop_assert_eq!(&layout.trailer, &format!("\r\n--{b}--\r\n").into_bytes());
        prop_assert_eq!(layout.total_len, u64::try_from(total).unwrap_or(u64::MAX));
        if len < 200 {
            let file: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut body: Vec<u8> = Vec::new();
            for (head, r) in &layout.parts {
                body.extend(head);
                body.extend(&file[r.start as usize..=r.end as usize]);
            }
            body.extend(&layout.trailer);
            prop_assert_eq!(body.len() as u64, layout.total_len);
        }
    }
}
