//! Conditional requests (RFC 9110 §13) and byte ranges (RFC 9110 §14): pure functions from
//! the validator fields of a request and the file's validators to a [`Plan`].
//!
//! The ETag is strong and derived from size and modification time only (never the inode), so
//! replicas serving identical files with preserved mtimes agree. Dates compare at one-second
//! resolution, as HTTP-dates carry no more. Range sets are capped against amplification
//! (CVE-2011-3192): at most [`MAX_RANGES`] ranges, overlapping or adjacent ones coalesced, and
//! a set that adds up to more than the file gets the whole file instead.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http_date;

/// Most ranges one request may ask for before we answer with the whole file (nginx's
/// `max_ranges` idea; lighttpd caps too). Real clients ask for one, or a handful for PDFs.
pub const MAX_RANGES: usize = 16;

/// The validator-related request fields, OWS-trimmed; `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    /// `If-Match`
    pub if_match: Option<&'a str>,
    /// `If-None-Match`
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since`
    pub if_unmodified_since: Option<&'a str>,
    /// `If-Range`
    pub if_range: Option<&'a str>,
    /// `Range`
    pub range: Option<&'a str>,
}

/// A byte range, both ends inclusive, always inside the representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` value, e.g. `bytes 0-99/1000`.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole body.
    Full,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 206 with one range.
    Partial(ByteRange),
    /// 206 `multipart/byteranges`, ranges sorted and coalesced.
    Multipart(Vec<ByteRange>),
    /// 416, with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// The strong ETag of a file: `"SECS.NANOS-LEN"` in hex (mtime seconds and nanoseconds since
/// the epoch, then the length). Without an mtime it is `"0.0-LEN"`.
pub fn etag(len: u64, modified: Option<SystemTime>) -> String {
    let d = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!("\"{:x}.{:x}-{len:x}\"", d.as_secs(), d.subsec_nanos())
}

/// Whole seconds since the epoch (HTTP-dates have no finer resolution).
fn secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

fn date_secs(field: &str) -> Option<u64> {
    http_date::parse(field.trim()).and_then(secs)
}

/// The entity-tags of an `If-Match`/`If-None-Match` list as (weak, opaque-tag) pairs;
/// `None` if the list is malformed (then nothing matches).
fn tags(list: &str) -> Option<Vec<(bool, &str)>> {
    let mut out = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let weak = rest.starts_with("W/");
        let body = if weak { &rest[2..] } else { rest };
        let inner = body.strip_prefix('"')?;
        let close = inner.find('"')?;
        out.push((weak, &body[..close + 2]));
        rest = inner[close + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(out)
}

/// RFC 9110 §8.8.3.2: strong comparison (both strong, same opaque tag) or weak (same tag).
fn list_matches(list: &str, current: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    tags(list).is_some_and(|tags| {
        tags.iter()
            .any(|&(weak, tag)| tag == current && !(strong && weak))
    })
}

/// Evaluates the preconditions in RFC 9110 §13.2.2 order, then the range (only for GET and
/// HEAD: HEAD plans like GET so that its headers mirror GET's).
pub fn evaluate(
    p: &Preconditions,
    is_get_or_head: bool,
    etag: &str,
    modified: Option<SystemTime>,
    len: u64,
) -> Plan {
    let mtime = modified.and_then(secs);
    // 1. If-Match: strong comparison; a weak tag never matches (§13.1.1).
    if let Some(im) = p.if_match {
        if !list_matches(im, etag, true) {
            return Plan::PreconditionFailed;
        }
    } else if let Some(ius) = p.if_unmodified_since {
        // 2. If-Unmodified-Since, only without If-Match; an invalid date is ignored.
        if let (Some(date), Some(m)) = (date_secs(ius), mtime) {
            if m > date {
                return Plan::PreconditionFailed;
            }
        }
    }
    if !is_get_or_head {
        return Plan::Full;
    }
    // 3. If-None-Match: weak comparison (§13.1.2).
    if let Some(inm) = p.if_none_match {
        if list_matches(inm, etag, false) {
            return Plan::NotModified;
        }
    } else if let Some(ims) = p.if_modified_since {
        // 4. If-Modified-Since, only without If-None-Match; a date later than Last-Modified
        // also means "not modified"; an invalid one is ignored.
        if let (Some(date), Some(m)) = (date_secs(ims), mtime) {
            if m <= date {
                return Plan::NotModified;
            }
        }
    }
    // 5. Range, subject to If-Range (§13.1.5).
    let Some(range) = p.range else {
        return Plan::Full;
    };
    if let Some(ir) = p.if_range {
        let ir = ir.trim();
        let current = if ir.starts_with('"') || ir.starts_with("W/") {
            // Only a strong tag can match: a weak one never does.
            ir == etag
        } else {
            // A date must equal Last-Modified exactly.
            matches!((date_secs(ir), mtime), (Some(d), Some(m)) if d == m)
        };
        if !current {
            return Plan::Full;
        }
    }
    plan_ranges(range, len)
}

/// One range-spec, resolved against `len`: `Ok(None)` when valid but unsatisfiable,
/// `Err(())` when malformed (then the whole header is ignored).
fn range_spec(spec: &str, len: u64) -> Result<Option<ByteRange>, ()> {
    let (first, last) = spec.trim().split_once('-').ok_or(())?;
    let num = |s: &str| -> Result<u64, ()> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        s.parse().map_err(|_| ())
    };
    if first.is_empty() {
        // Suffix: the last N bytes (§14.1.1); -0 is unsatisfiable.
        let n = num(last)?;
        return Ok((n > 0 && len > 0).then(|| ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }));
    }
    let start = num(first)?;
    let end = if last.is_empty() {
        None
    } else {
        Some(num(last)?)
    };
    if end.is_some_and(|e| e < start) {
        return Err(());
    }
    if start >= len {
        return Ok(None);
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    Ok(Some(ByteRange { start, end }))
}

/// Plans a `Range` header (§14.2). Unknown units and bad syntax are ignored (Full).
fn plan_ranges(header: &str, len: u64) -> Plan {
    let Some((unit, set)) = header.split_once('=') else {
        return Plan::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Plan::Full;
    }
    let specs: Vec<&str> = set.split(',').filter(|s| !s.trim().is_empty()).collect();
    if specs.is_empty() {
        return Plan::Full;
    }
    if specs.len() > MAX_RANGES {
        return Plan::Full;
    }
    let mut ranges = Vec::with_capacity(specs.len());
    for spec in specs {
        match range_spec(spec, len) {
            Ok(Some(r)) => ranges.push(r),
            Ok(None) => {}
            Err(()) => return Plan::Full,
        }
    }
    if ranges.is_empty() {
        return Plan::Unsatisfiable;
    }
    // Go's rule against amplification: asking for more bytes than the file has gets the file.
    let asked = ranges
        .iter()
        .map(ByteRange::len)
        .fold(0u64, u64::saturating_add);
    if ranges.len() > 1 && asked > len {
        return Plan::Full;
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if merged.len() == 1 {
        Plan::Partial(merged[0])
    } else {
        Plan::Multipart(merged)
    }
}

/// The framing of a `multipart/byteranges` body (§14.6): each part's head and range, the
/// closing delimiter, and the exact total length (so Content-Length can be sent first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartLayout {
    /// Part heads and the ranges that follow them.
    pub parts: Vec<(Vec<u8>, ByteRange)>,
    /// The closing delimiter.
    pub trailer: Vec<u8>,
    /// Total body length.
    pub total_len: u64,
}

/// Lays out a multipart/byteranges body.
pub fn multipart_layout(
    ranges: &[ByteRange],
    len: u64,
    content_type: &str,
    boundary: &str,
) -> MultipartLayout {
    let parts: Vec<(Vec<u8>, ByteRange)> = ranges
        .iter()
        .map(|r| {
            let head = format!(
                "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
                r.content_range(len)
            );
            (head.into_bytes(), *r)
        })
        .collect();
    let trailer = format!("\r\n--{boundary}--\r\n").into_bytes();
    let total_len = parts
        .iter()
        .map(|(h, r)| h.len() as u64 + r.len())
        .sum::<u64>()
        + trailer.len() as u64;
    MultipartLayout {
        parts,
        trailer,
        total_len,
    }
}

/// A boundary derived from the ETag: deterministic, so a retried request gets identical bytes
/// (and the same Content-Length); it cannot collide with the file's bytes in a way that
/// matters, because parts are delimited by length as much as by boundary.
pub fn boundary(etag: &str) -> String {
    // FNV-1a of the tag: a short hex string, only [0-9a-f].
    let hash = etag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("poolserve-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use std::time::Duration;

    const LEN: u64 = 1000;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The file: 1000 bytes modified at 784111777 s (Sun, 06 Nov 1994 08:49:37 GMT) + 0.5 s.
    fn mtime() -> SystemTime {
        t(784_111_777) + Duration::from_millis(500)
    }

    fn tag() -> String {
        etag(LEN, Some(mtime()))
    }

    fn plan(p: Preconditions) -> Plan {
        evaluate(&p, true, &tag(), Some(mtime()), LEN)
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    #[test]
    fn etag_depends_on_size_and_mtime_only() {
        assert_eq!(etag(5, Some(t(1))), etag(5, Some(t(1))));
        assert_ne!(etag(5, Some(t(1))), etag(6, Some(t(1))));
        assert_ne!(etag(5, Some(t(1))), etag(5, Some(t(2))));
        assert_ne!(
            etag(5, Some(t(1))),
            etag(5, Some(t(1) + Duration::from_nanos(1)))
        );
        assert_eq!(etag(16, None), "\"0.0-10\"");
        assert!(tag().starts_with('"') && tag().ends_with('"'));
    }

    #[test]
    fn precondition_precedence_table() {
        let tag = tag();
        let weak = format!("W/{tag}");
        let p = Preconditions::default;
        let rows: Vec<(Preconditions, Plan)> = vec![
            (p(), Plan::Full),
            (
                Preconditions {
                    if_match: Some("*"),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_match: Some(&tag),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_match: Some("\"x\", \"y\""),
                    ..p()
                },
                Plan::PreconditionFailed,
            ),
            (
                Preconditions {
                    if_match: Some(&weak),
                    ..p()
                },
                Plan::PreconditionFailed,
            ),
            (
                Preconditions {
                    if_match: Some("garbage"),
                    ..p()
                },
                Plan::PreconditionFailed,
            ),
            (
                Preconditions {
                    if_unmodified_since: Some(BEFORE),
                    ..p()
                },
                Plan::PreconditionFailed,
            ),
            (
                Preconditions {
                    if_unmodified_since: Some(LM),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_unmodified_since: Some("not a date"),
                    ..p()
                },
                Plan::Full,
            ),
            // If-Match present: If-Unmodified-Since is not evaluated.
            (
                Preconditions {
                    if_match: Some("*"),
                    if_unmodified_since: Some(BEFORE),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_none_match: Some("*"),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_none_match: Some(&tag),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_none_match: Some(&weak),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_none_match: Some("\"a\", \"b,c\""),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_modified_since: Some(LM),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_modified_since: Some(AFTER),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_modified_since: Some(BEFORE),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_modified_since: Some("yesterday"),
                    ..p()
                },
                Plan::Full,
            ),
            (
                Preconditions {
                    if_modified_since: Some("Sunday, 06-Nov-94 08:49:37 GMT"),
                    ..p()
                },
                Plan::NotModified,
            ),
            (
                Preconditions {
                    if_modified_since: Some("Sun Nov  6 08:49:37 1994"),
                    ..p()
                },
                Plan::NotModified,
            ),
            // If-None-Match present: If-Modified-Since is ignored.
            (
                Preconditions {
                    if_none_match: Some("\"other\""),
                    if_modified_since: Some(LM),
                    ..p()
                },
                Plan::Full,
            ),
            // If-Match failing wins over If-None-Match.
            (
                Preconditions {
                    if_match: Some("\"x\""),
                    if_none_match: Some("*"),
                    ..p()
                },
                Plan::PreconditionFailed,
            ),
        ];
        for (i, (pre, want)) in rows.into_iter().enumerate() {
            assert_eq!(plan(pre), want, "row {i}: {pre:?}");
        }
    }

    #[test]
    fn other_methods_only_see_if_match_and_if_unmodified_since() {
        let p = Preconditions {
            if_none_match: Some("*"),
            range: Some("bytes=0-1"),
            ..Default::default()
        };
        assert_eq!(evaluate(&p, false, &tag(), Some(mtime()), LEN), Plan::Full);
        let p = Preconditions {
            if_match: Some("\"x\""),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&p, false, &tag(), Some(mtime()), LEN),
            Plan::PreconditionFailed
        );
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn range_table() {
        let rows: &[(&str, Plan)] = &[
            ("bytes=0-99", Plan::Partial(r(0, 99))),
            ("bytes=100-", Plan::Partial(r(100, 999))),
            ("bytes=-100", Plan::Partial(r(900, 999))),
            ("bytes=-5000", Plan::Partial(r(0, 999))),
            ("bytes=0-0", Plan::Partial(r(0, 0))),
            ("bytes=0-1", Plan::Partial(r(0, 1))),
            ("bytes=990-5000", Plan::Partial(r(990, 999))),
            ("BYTES = 5-9", Plan::Partial(r(5, 9))),
            ("bytes=1000-", Plan::Unsatisfiable),
            ("bytes=1000-2000, 3000-", Plan::Unsatisfiable),
            ("bytes=-0", Plan::Unsatisfiable),
            ("bytes=0-1, 5000-6000", Plan::Partial(r(0, 1))),
            ("bytes=0-9,20-29", Plan::Multipart(vec![r(0, 9), r(20, 29)])),
            (
                "bytes=20-29, 0-9",
                Plan::Multipart(vec![r(0, 9), r(20, 29)]),
            ),
            ("bytes=0-9,10-19", Plan::Partial(r(0, 19))),
            (
                "bytes=0-9,5-14,30-39",
                Plan::Multipart(vec![r(0, 14), r(30, 39)]),
            ),
            ("bytes=0-999,0-999", Plan::Full),
            ("items=0-9", Plan::Full),
            ("bytes=abc", Plan::Full),
            ("bytes=5-1", Plan::Full),
            ("bytes=", Plan::Full),
            ("bytes=--1", Plan::Full),
            ("bytes=0-99999999999999999999999", Plan::Full),
            ("bytes 0-9", Plan::Full),
        ];
        for (header, want) in rows {
            let p = Preconditions {
                range: Some(header),
                ..Default::default()
            };
            assert_eq!(plan(p), *want, "{header}");
        }
        let many: String = (0..=MAX_RANGES)
            .map(|i| format!("{}-{},", i * 10, i * 10 + 1))
            .collect();
        let p = Preconditions {
            range: Some(&format!("bytes={many}")),
            ..Default::default()
        };
        assert_eq!(plan(p), Plan::Full, "more than MAX_RANGES ranges");
        let p = Preconditions {
            range: Some("bytes=0-0"),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&p, true, &tag(), Some(mtime()), 0),
            Plan::Unsatisfiable,
            "empty file"
        );
    }

    #[test]
    fn if_range_table() {
        let tag = tag();
        let weak = format!("W/{tag}");
        for (if_range, want) in [
            (tag.as_str(), Plan::Partial(r(0, 9))),
            ("\"other\"", Plan::Full),
            (weak.as_str(), Plan::Full),
            (LM, Plan::Partial(r(0, 9))),
            (AFTER, Plan::Full),
            ("garbage", Plan::Full),
        ] {
            let p = Preconditions {
                range: Some("bytes=0-9"),
                if_range: Some(if_range),
                ..Default::default()
            };
            assert_eq!(plan(p), want, "{if_range}");
        }
    }

    #[test]
    fn multipart_layout_adds_up() {
        let ranges = [r(0, 9), r(20, 29)];
        let b = boundary(&tag());
        let layout = multipart_layout(&ranges, LEN, "text/plain", &b);
        let parts: u64 = layout
            .parts
            .iter()
            .map(|(h, r)| h.len() as u64 + r.len())
            .sum();
        assert_eq!(layout.total_len, parts + layout.trailer.len() as u64);
        let first = String::from_utf8(layout.parts[0].0.clone()).unwrap();
        assert!(first.contains("Content-Range: bytes 0-9/1000"), "{first}");
        assert!(first.starts_with(&format!("\r\n--{b}\r\n")));
        assert_eq!(layout.trailer, format!("\r\n--{b}--\r\n").into_bytes());
    }

    #[test]
    fn boundary_is_short_safe_ascii() {
        let b = boundary(&tag());
        assert!(
            b.len() <= 70 && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
            "{b}"
        );
        assert_eq!(b, boundary(&tag()));
        assert_ne!(b, boundary("\"other\""));
    }

    #[test]
    fn never_panics_and_ranges_stay_inside() {
        let mut rng = Rng(0x5eed);
        let seeds = ["bytes=0-9,20-", "bytes=-5", "W/\"a\", \"b\"", LM, "*"];
        let alphabet = b"bytes=0123456789-,* \"W/";
        for _ in 0..20_000 {
            let mut s = seeds[rng.index(seeds.len())].as_bytes().to_vec();
            for _ in 0..rng.index(4) {
                let at = rng.index(s.len() + 1);
                s.insert(at, alphabet[rng.index(alphabet.len())]);
            }
            let s = String::from_utf8_lossy(&s).into_owned();
            let len = rng.below(50);
            let p = Preconditions {
                range: Some(&s),
                if_match: (rng.below(4) == 0).then_some(s.as_str()),
                if_none_match: (rng.below(4) == 0).then_some(s.as_str()),
                if_range: (rng.below(4) == 0).then_some(s.as_str()),
                ..Default::default()
            };
            match evaluate(&p, true, &tag(), Some(mtime()), len) {
                Plan::Partial(r) => assert!(r.start <= r.end && r.end < len, "{s} {len} {r:?}"),
                Plan::Multipart(rs) => {
                    assert!(rs.len() > 1 && rs.len() <= MAX_RANGES);
                    assert!(
                        rs.iter().all(|r| r.start <= r.end && r.end < len),
                        "{s} {len}"
                    );
                }
                _ => {}
            }
        }
    }
}
