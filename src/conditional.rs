//! Conditional requests (RFC 9110 §13) and byte ranges (RFC 9110 §14): pure functions from the
//! validator fields of a request and the file's validators (ETag, modification time, length)
//! to a [`Plan`], plus the framing of `multipart/byteranges` bodies.
//!
//! This module decides *what* to answer; it never touches files, sockets or headers of the
//! response, and it never fails: malformed fields are ignored or fail to match, exactly as
//! RFC 9110 tells a recipient to treat them, and no input can make it panic.
//!
//! # Choices
//! - **ETag** ([`etag`]): size and modification time only, never the inode, so replicas serving
//!   identical files with preserved mtimes agree. Without an mtime it is weak, because then it
//!   would not change when the content does (RFC 9110 §8.8.1).
//! - **Dates** compare with the `Last-Modified` value exactly as it is sent: the mtime put
//!   through [`http_date::format`], so truncated to whole seconds (HTTP-dates have no finer
//!   resolution) and clamped as that formatter clamps.
//! - **Entity-tag lists** are parsed whole: a list with any malformed member matches nothing,
//!   so garbage never turns into a 304 (it can turn into a 412 for `If-Match`, the safe side).
//!   Empty list members are skipped (RFC 9110 §5.6.1.2).
//! - **Ranges** are capped against amplification (CVE-2011-3192): more than [`MAX_RANGES`]
//!   range-specs, or satisfiable ranges adding up to more than the file (Go's `net/http` rule),
//!   get the whole file; overlapping or adjacent ranges are sorted and coalesced. Any syntax
//!   error in the set makes the whole `Range` field ignored (RFC 9110 §14.2 allows that), so a
//!   doubtful request always gets the plain 200.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http_date;

/// Most range-specs one `Range` field may hold before we answer with the whole file instead
/// (nginx's `max_ranges` idea): real clients ask for one, or a handful for PDF viewers, and
/// each part costs a part head and a seek (CVE-2011-3192).
pub const MAX_RANGES: usize = 16;

/// Prefix of every [`boundary`]; the hash that follows makes it [`BOUNDARY_LEN`] bytes long.
const BOUNDARY_PREFIX: &str = "poolserve-";

/// Length of every [`boundary`]: the prefix and 16 hex digits of a 64-bit hash, well under
/// the 70 characters RFC 2046 §5.1.1 allows.
pub const BOUNDARY_LEN: usize = BOUNDARY_PREFIX.len() + 16;

/// The validator-related request fields, already OWS-trimmed; `None` when absent. (The caller
/// builds this from the parsed headers; when a list field such as `If-Match` appears several
/// times the caller joins the values with commas, RFC 9110 §5.3:
/// [`Headers::get_list`](crate::request::Headers::get_list).)
#[derive(Debug, Clone, Copy, Default)]
pub struct Preconditions<'a> {
    /// `If-Match` (RFC 9110 §13.1.1).
    pub if_match: Option<&'a str>,
    /// `If-None-Match` (RFC 9110 §13.1.2).
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since` (RFC 9110 §13.1.3).
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since` (RFC 9110 §13.1.4).
    pub if_unmodified_since: Option<&'a str>,
    /// `If-Range` (RFC 9110 §13.1.5).
    pub if_range: Option<&'a str>,
    /// `Range` (RFC 9110 §14.2).
    pub range: Option<&'a str>,
}

/// A byte range, both ends inclusive. Ranges in a [`Plan`] always lie within the
/// representation and have `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes: `end - start + 1`; 0 for a hand-built range with `end < start`
    /// (saturating at `u64::MAX` for the one range, `0..=u64::MAX`, that has 2^64 bytes).
    pub fn len(&self) -> u64 {
        self.end
            .checked_sub(self.start)
            .map_or(0, |d| d.saturating_add(1))
    }

    /// True only for a hand-built range with `end < start`; ranges in a [`Plan`] never are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `Content-Range` value (RFC 9110 §14.4), e.g. `bytes 0-99/1000`.
    pub fn content_range(&self, total: u64) -> String {
        format!("bytes {}-{}/{total}", self.start, self.end)
    }
}

/// What to answer to a request for the representation.
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
    /// 206 `multipart/byteranges` with two or more ranges, sorted and coalesced.
    Multipart(Vec<ByteRange>),
    /// 416 Range Not Satisfiable, with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// The ETag of a file from its length and modification time, never its inode, so replicas
/// with identical files and preserved mtimes agree.
///
/// Format, all numbers lowercase hex: `"SECS.NANOS-LEN"`, the mtime as seconds and
/// nanoseconds since the Unix epoch, then the length, e.g. `"5f1b3a2c.1a2b3c4d-3e8"`. An
/// mtime before the epoch is written as its distance before it with a leading `-`
/// (`"-SECS.NANOS-LEN"`), so such files still get distinct tags. Without an mtime the tag is
/// weak, `W/"LEN"`: it would not change when the content does, so it must never satisfy a
/// strong comparison (`If-Match`, `If-Range`), only a weak one (`If-None-Match`).
pub fn etag(len: u64, modified: Option<SystemTime>) -> String {
    let Some(modified) = modified else {
        return format!("W/\"{len:x}\"");
    };
    let (sign, since) = match modified.duration_since(UNIX_EPOCH) {
        Ok(after) => ("", after),
        Err(before) => ("-", before.duration()),
    };
    format!(
        "\"{sign}{:x}.{:x}-{len:x}\"",
        since.as_secs(),
        since.subsec_nanos()
    )
}

/// The ETag of a precompressed variant: the sidecar's own [`etag`] with the coding appended
/// inside the quotes (`"5f1b3a2c.0-3e8-br"`), so a variant can never share a tag with the
/// identity file or another coding, even when lengths and mtimes coincide (RFC 9110 §8.8.3:
/// each representation its own tag).
pub fn variant_etag(len: u64, modified: Option<SystemTime>, coding: &str) -> String {
    let mut tag = etag(len, modified);
    tag.insert_str(tag.len() - 1, &format!("-{coding}"));
    tag
}

/// Evaluates the preconditions in the order of RFC 9110 §13.2.2, then the `Range` field.
///
/// `is_get_or_head` is false for other methods: then only `If-Match` and
/// `If-Unmodified-Since` apply and the answer is [`Plan::Full`] or
/// [`Plan::PreconditionFailed`]. HEAD is planned like GET so that its headers mirror GET's.
/// `etag` is the current tag from [`etag`], `modified` the file's mtime, `len` its length.
pub fn evaluate(
    p: &Preconditions,
    is_get_or_head: bool,
    etag: &str,
    modified: Option<SystemTime>,
    len: u64,
) -> Plan {
    let v = Validators {
        etag: single_tag(etag),
        modified,
    };
    if !v.unchanged(p) {
        return Plan::PreconditionFailed;
    }
    if !is_get_or_head {
        return Plan::Full;
    }
    if v.not_modified(p) {
        return Plan::NotModified;
    }
    match p.range {
        // Step 5: If-Range only matters with a Range (§13.1.5: ignored without one).
        Some(range) if v.if_range_holds(p.if_range) => plan_ranges(range, len),
        _ => Plan::Full,
    }
}

/// Preconditions of a request that changes the resource (PUT, DELETE): RFC 9110 §13.2.2
/// steps 1-3 against `current`, the resource's ETag, `None` when it does not exist (then
/// `If-Match` always fails, even `*`, and `If-None-Match: *` holds). `If-Unmodified-Since`
/// is evaluated only without `If-Match`. A failure is 412: this is how two clients avoid
/// silently overwriting each other (`If-None-Match: *` to create, `If-Match: "tag"` to
/// replace the version they read).
pub fn write_allowed(p: &Preconditions, current: Option<(&str, Option<SystemTime>)>) -> bool {
    let v = current.map(|(etag, modified)| Validators {
        etag: single_tag(etag),
        modified,
    });
    match (&v, p.if_match, p.if_unmodified_since) {
        (None, Some(_), _) => return false,
        (Some(v), _, _) if !v.unchanged(p) => return false,
        // §13.1.4: a date condition on a missing resource cannot hold.
        (None, None, Some(date)) if http_date::parse(date).is_some() => return false,
        _ => {}
    }
    match (p.if_none_match, &v) {
        (Some(list), Some(v)) => !list_matches(list, v.etag, weak_match),
        _ => true,
    }
}

/// The current validators of the representation.
struct Validators<'a> {
    /// The current entity-tag; `None` only if the caller passed a malformed one, and then
    /// no list but `*` matches.
    etag: Option<EntityTag<'a>>,
    modified: Option<SystemTime>,
}

impl Validators<'_> {
    /// The date in `field` and `Last-Modified` exactly as the client was sent it (the mtime
    /// through [`http_date::format`]: whole seconds, clamped); `None` when the field is not a
    /// valid HTTP-date or the file has no mtime, and then the field is ignored (§13.1.3,
    /// §13.1.4). Only computed when a date field is present.
    fn date_and_last_modified(&self, field: &str) -> Option<(SystemTime, SystemTime)> {
        let date = http_date::parse(field)?;
        let last_modified = http_date::parse(&http_date::format(self.modified?))?;
        Some((date, last_modified))
    }

    /// Steps 1 and 2 of §13.2.2: true unless `If-Match` or `If-Unmodified-Since` fails.
    fn unchanged(&self, p: &Preconditions) -> bool {
        match (p.if_match, p.if_unmodified_since) {
            // §13.1.1: strong comparison, so a weak tag never matches.
            (Some(list), _) => list_matches(list, self.etag, strong_match),
            // §13.1.4: evaluated only without If-Match; an invalid date is ignored.
            (None, Some(date)) => self
                .date_and_last_modified(date)
                .is_none_or(|(date, last_modified)| last_modified <= date),
            (None, None) => true,
        }
    }

    /// Steps 3 and 4 of §13.2.2, for GET and HEAD: true when the client's copy is current.
    fn not_modified(&self, p: &Preconditions) -> bool {
        match (p.if_none_match, p.if_modified_since) {
            // §13.1.2: weak comparison.
            (Some(list), _) => list_matches(list, self.etag, weak_match),
            // §13.1.3: only without If-None-Match; a date later than Last-Modified also
            // means "not modified"; an invalid date is ignored.
            (None, Some(date)) => self
                .date_and_last_modified(date)
                .is_some_and(|(date, last_modified)| last_modified <= date),
            (None, None) => false,
        }
    }

    /// §13.1.5: true when there is no `If-Range`, or it names the current representation by
    /// a strong ETag (strong comparison) or by a date exactly equal to `Last-Modified`.
    fn if_range_holds(&self, if_range: Option<&str>) -> bool {
        let Some(value) = if_range else {
            return true;
        };
        match single_tag(value) {
            Some(tag) => self.etag.is_some_and(|current| strong_match(tag, current)),
            None => self
                .date_and_last_modified(value)
                .is_some_and(|(date, last_modified)| date == last_modified),
        }
    }
}

/// An entity-tag (RFC 9110 §8.8.3): weakness and the opaque tag without its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// §8.8.3.2 strong comparison: both strong and the same opaque tag.
fn strong_match(a: EntityTag, b: EntityTag) -> bool {
    !a.weak && !b.weak && a.opaque == b.opaque
}

/// §8.8.3.2 weak comparison: the same opaque tag, whatever the weakness.
fn weak_match(a: EntityTag, b: EntityTag) -> bool {
    a.opaque == b.opaque
}

/// `etagc = %x21 / %x23-7E / obs-text` (§8.8.3): visible characters but `"`, and non-ASCII.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// Parses `[ "W/" ] DQUOTE *etagc DQUOTE` at the start of `s`; returns it and the rest.
fn entity_tag(s: &str) -> Option<(EntityTag<'_>, &str)> {
    let (weak, quoted) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let inner = quoted.strip_prefix('"')?;
    let (opaque, rest) = inner.split_once('"')?;
    opaque
        .bytes()
        .all(is_etagc)
        .then_some((EntityTag { weak, opaque }, rest))
}

/// A field value that is exactly one entity-tag.
fn single_tag(s: &str) -> Option<EntityTag<'_>> {
    let (tag, rest) = entity_tag(s)?;
    rest.is_empty().then_some(tag)
}

/// Optional whitespace (§5.6.3): spaces and horizontal tabs.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The members of an `#entity-tag` list (§5.6.1), or `None` if any member is malformed.
/// Splits on the commas between tags, not on commas inside quotes.
fn tag_list(list: &str) -> Option<Vec<EntityTag<'_>>> {
    let mut tags = Vec::new();
    let mut rest = trim_ows(list);
    while !rest.is_empty() {
        if let Some(after_empty_member) = rest.strip_prefix(',') {
            rest = trim_ows(after_empty_member);
            continue;
        }
        let (tag, after) = entity_tag(rest)?;
        tags.push(tag);
        rest = trim_ows(after);
        if !rest.is_empty() {
            rest = trim_ows(rest.strip_prefix(',')?);
        }
    }
    Some(tags)
}

/// `If-Match`/`If-None-Match` evaluation: `*` matches the (always existing) representation;
/// otherwise any listed tag matching the current one by `matches`. A malformed list, or a
/// malformed current tag, matches nothing.
fn list_matches(
    list: &str,
    current: Option<EntityTag>,
    matches: fn(EntityTag, EntityTag) -> bool,
) -> bool {
    if list == "*" {
        return true;
    }
    match (tag_list(list), current) {
        (Some(tags), Some(current)) => tags.iter().any(|&tag| matches(tag, current)),
        _ => false,
    }
}

/// The `Range` field is malformed: ignore it and send the whole representation (§14.2).
struct Malformed;

/// One `range-spec` (§14.1.1) as written, before it meets the representation's length.
enum RangeSpec {
    /// `first-pos "-" [ last-pos ]`.
    FromTo(u64, Option<u64>),
    /// `"-" suffix-length`: the last N bytes.
    Suffix(u64),
}

impl RangeSpec {
    fn parse(spec: &str) -> Result<RangeSpec, Malformed> {
        let (first, last) = spec.split_once('-').ok_or(Malformed)?;
        if first.is_empty() {
            return Ok(RangeSpec::Suffix(number(last)?));
        }
        let first = number(first)?;
        let last = if last.is_empty() {
            None
        } else {
            Some(number(last)?)
        };
        // §14.1.1: a last-pos less than the first-pos makes the range-spec invalid.
        if last.is_some_and(|last| last < first) {
            return Err(Malformed);
        }
        Ok(RangeSpec::FromTo(first, last))
    }

    /// The bytes this spec selects from a representation of `len` bytes, or `None` when it
    /// selects none (§14.1.1: first-pos past the end, a zero suffix, an empty body).
    fn resolve(&self, len: u64) -> Option<ByteRange> {
        let last_byte = len.checked_sub(1)?;
        match *self {
            RangeSpec::FromTo(start, _) if start > last_byte => None,
            RangeSpec::FromTo(start, last) => Some(ByteRange {
                start,
                end: last.map_or(last_byte, |last| last.min(last_byte)),
            }),
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some(ByteRange {
                start: len.saturating_sub(n),
                end: last_byte,
            }),
        }
    }
}

/// `1*DIGIT` that fits a u64 (`str::parse` alone would also take a leading `+`).
fn number(s: &str) -> Result<u64, Malformed> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed);
    }
    s.parse().map_err(|_| Malformed)
}

/// Plans a `Range` field (§14.2) against a representation of `len` bytes.
fn plan_ranges(field: &str, len: u64) -> Plan {
    match satisfiable_ranges(field, len) {
        Err(Malformed) => Plan::Full,
        Ok(ranges) if ranges.is_empty() => Plan::Unsatisfiable,
        Ok(ranges) => {
            // Go's rule against amplification: asking for more bytes than the file has, by
            // overlapping ranges, gets the file once. (Checked: a sum past u64::MAX is more.)
            let asked = ranges
                .iter()
                .try_fold(0u64, |sum, r| sum.checked_add(r.len()));
            if asked.is_none_or(|asked| asked > len) {
                return Plan::Full;
            }
            match coalesce(ranges).as_slice() {
                [one] => Plan::Partial(*one),
                many => Plan::Multipart(many.to_vec()),
            }
        }
    }
}

/// The satisfiable ranges of a `bytes` range set, in request order; `Malformed` for another
/// unit, a syntax error anywhere, an empty set, or more than [`MAX_RANGES`] range-specs.
fn satisfiable_ranges(field: &str, len: u64) -> Result<Vec<ByteRange>, Malformed> {
    // `ranges-specifier = range-unit "=" range-set`, no whitespace around "=";
    // range units are case-insensitive (§14.1).
    let (unit, set) = field.split_once('=').ok_or(Malformed)?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(Malformed);
    }
    let mut specs = 0;
    let mut ranges = Vec::new();
    // `1#range-spec`: empty members are allowed and skipped (§5.6.1.2).
    for spec in set.split(',').map(trim_ows).filter(|s| !s.is_empty()) {
        specs += 1;
        if specs > MAX_RANGES {
            return Err(Malformed);
        }
        ranges.extend(RangeSpec::parse(spec)?.resolve(len));
    }
    if specs == 0 {
        return Err(Malformed);
    }
    Ok(ranges)
}

/// Sorts ranges by start and merges those that overlap or touch (RFC 9110 §15.3.7.2 lets a
/// server coalesce regardless of the requested order).
fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(1) => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// The framing of a `multipart/byteranges` body (RFC 9110 §14.6), so the caller can send
/// `Content-Length` first and then stream each part head followed by its range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartLayout {
    /// Each part's head (`\r\n--BOUNDARY\r\nContent-Type: ..\r\nContent-Range: ..\r\n\r\n`)
    /// and the range of the file that follows it.
    pub parts: Vec<(Vec<u8>, ByteRange)>,
    /// The close delimiter, `\r\n--BOUNDARY--\r\n`.
    pub trailer: Vec<u8>,
    /// Exact body length: all part heads, all ranges and the trailer.
    pub total_len: u64,
}

/// Lays out a `multipart/byteranges` body for `ranges` of a `len`-byte representation of
/// type `content_type`, delimited by `boundary` (from [`boundary`]).
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
        .map(|(head, r)| byte_len(head).saturating_add(r.len()))
        .fold(byte_len(&trailer), u64::saturating_add);
    MultipartLayout {
        parts,
        trailer,
        total_len,
    }
}

/// A buffer's length as u64 (lossless on every supported target; saturates otherwise).
fn byte_len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// The multipart boundary for a representation: [`BOUNDARY_LEN`] bytes of `[0-9a-z-]`, the
/// FNV-1a hash of its ETag after a fixed prefix, so it needs no quoting in `Content-Type`.
///
/// Deterministic on purpose: GET and HEAD of the same ranges then carry the same
/// `Content-Type` and `Content-Length`, and a retried request gets identical bytes. A random
/// boundary would buy only unpredictability, and that protects nothing here: the only way to
/// confuse a client's parser is for the file to contain its own delimiter, and whoever can
/// write the file already controls every byte of the response it garbles.
pub fn boundary(etag: &str) -> String {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    let hash = etag.bytes().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    format!("{BOUNDARY_PREFIX}{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;
    use std::time::Duration;

    /// The file of most tables: 1000 bytes, modified at 784111777.5 s since the epoch, that
    /// is half a second after `LM`, so every date test also checks whole-second truncation.
    const LEN: u64 = 1000;
    const TAG: &str = "\"2ebc98a1.1dcd6500-3e8\"";
    const WEAK: &str = "W/\"2ebc98a1.1dcd6500-3e8\"";
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn mtime() -> SystemTime {
        at(784_111_777) + Duration::from_millis(500)
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    /// Builds preconditions from (field name, value) pairs, so table rows stay one line.
    fn fields<'a>(pairs: &[(&str, &'a str)]) -> Preconditions<'a> {
        let mut p = Preconditions::default();
        for &(name, value) in pairs {
            let slot = match name {
                "if-match" => &mut p.if_match,
                "if-none-match" => &mut p.if_none_match,
                "if-modified-since" => &mut p.if_modified_since,
                "if-unmodified-since" => &mut p.if_unmodified_since,
                "if-range" => &mut p.if_range,
                "range" => &mut p.range,
                other => panic!("unknown field {other}"),
            };
            *slot = Some(value);
        }
        p
    }

    /// Runs a table against the standard file.
    fn check(rows: &[(&[(&str, &str)], Plan)], is_get_or_head: bool) {
        for (i, (pairs, want)) in rows.iter().enumerate() {
            let got = evaluate(&fields(pairs), is_get_or_head, TAG, Some(mtime()), LEN);
            assert_eq!(got, *want, "row {i}: {pairs:?}");
        }
    }

    #[test]
    fn etag_format_and_inputs() {
        assert_eq!(etag(LEN, Some(mtime())), TAG);
        assert_eq!(etag(5, Some(at(1))), etag(5, Some(at(1))));
        let distinct = [
            etag(5, Some(at(1))),
            etag(6, Some(at(1))),
            etag(5, Some(at(2))),
            etag(5, Some(at(1) + Duration::from_nanos(1))),
            etag(5, Some(UNIX_EPOCH - Duration::from_secs(1))),
            etag(5, Some(UNIX_EPOCH - Duration::from_secs(2))),
            etag(5, Some(UNIX_EPOCH)),
            etag(5, None),
            etag(6, None),
        ];
        for (i, a) in distinct.iter().enumerate() {
            for b in &distinct[i + 1..] {
                assert_ne!(a, b);
            }
            // Every tag must itself parse as one entity-tag, or nothing could match it.
            assert!(single_tag(a).is_some(), "{a}");
        }
        assert_eq!(etag(16, None), "W/\"10\"");
        assert_eq!(
            etag(16, Some(UNIX_EPOCH - Duration::from_millis(1500))),
            "\"-1.1dcd6500-10\""
        );
    }

    #[test]
    fn variant_tags_differ_from_the_file_and_each_other() {
        let plain = etag(5, Some(at(1)));
        let br = variant_etag(5, Some(at(1)), "br");
        let gz = variant_etag(5, Some(at(1)), "gzip");
        assert_eq!(br, format!("{}-br\"", &plain[..plain.len() - 1]));
        assert_eq!(variant_etag(16, None, "gzip"), "W/\"10-gzip\"");
        for tag in [&br, &gz] {
            assert_ne!(tag, &plain);
            assert!(single_tag(tag).is_some(), "{tag}");
        }
        assert_ne!(br, gz);
    }

    #[test]
    fn write_preconditions_table() {
        let cur = Some((TAG, Some(mtime())));
        // (fields, allowed when the file exists, allowed when it does not)
        type Row<'a> = (&'a [(&'a str, &'a str)], bool, bool);
        let rows: &[Row] = &[
            (&[], true, true),
            (&[("if-none-match", "*")], false, true),
            (&[("if-match", "*")], true, false),
            (&[("if-match", TAG)], true, false),
            (&[("if-match", WEAK)], false, false),
            (&[("if-match", "\"other\"")], false, false),
            (&[("if-none-match", TAG)], false, true),
            (&[("if-none-match", WEAK)], false, true),
            (&[("if-none-match", "\"other\"")], true, true),
            (
                &[("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
                false,
                false,
            ),
            (
                &[("if-unmodified-since", "Fri, 31 Dec 9999 23:59:59 GMT")],
                true,
                false,
            ),
            (&[("if-unmodified-since", "garbage")], true, true),
        ];
        for (pairs, exists, missing) in rows {
            let p = fields(pairs);
            assert_eq!(write_allowed(&p, cur), *exists, "existing: {pairs:?}");
            assert_eq!(write_allowed(&p, None), *missing, "missing: {pairs:?}");
        }
    }

    #[test]
    fn precondition_precedence_table() {
        let rows: &[(&[(&str, &str)], Plan)] = &[
            (&[], Plan::Full),
            // 1. If-Match: strong comparison, lists, `*`, malformed lists match nothing.
            (&[("if-match", "*")], Plan::Full),
            (&[("if-match", TAG)], Plan::Full),
            (&[("if-match", &format!("\"x\", {TAG}"))], Plan::Full),
            (&[("if-match", &format!(" , {TAG} ,, "))], Plan::Full),
            (&[("if-match", "\"x\", \"y\"")], Plan::PreconditionFailed),
            (&[("if-match", WEAK)], Plan::PreconditionFailed),
            (&[("if-match", "garbage")], Plan::PreconditionFailed),
            (
                &[("if-match", &format!("{TAG}, garbage"))],
                Plan::PreconditionFailed,
            ),
            (
                &[("if-match", &format!("{TAG}\"x\""))],
                Plan::PreconditionFailed,
            ),
            (&[("if-match", "")], Plan::PreconditionFailed),
            (&[("if-match", "*, \"x\"")], Plan::PreconditionFailed),
            // 2. If-Unmodified-Since, whole seconds: LM equals the truncated mtime.
            (&[("if-unmodified-since", BEFORE)], Plan::PreconditionFailed),
            (&[("if-unmodified-since", LM)], Plan::Full),
            (&[("if-unmodified-since", AFTER)], Plan::Full),
            (&[("if-unmodified-since", "not a date")], Plan::Full),
            // ... and only without If-Match.
            (
                &[("if-match", "*"), ("if-unmodified-since", BEFORE)],
                Plan::Full,
            ),
            (
                &[("if-match", "\"x\""), ("if-unmodified-since", AFTER)],
                Plan::PreconditionFailed,
            ),
            // A failed step 1 or 2 wins over everything after it.
            (
                &[("if-match", "\"x\""), ("if-none-match", "*")],
                Plan::PreconditionFailed,
            ),
            (
                &[("if-unmodified-since", BEFORE), ("if-none-match", TAG)],
                Plan::PreconditionFailed,
            ),
            // 3. If-None-Match: weak comparison; commas inside quotes are not separators.
            (&[("if-none-match", "*")], Plan::NotModified),
            (&[("if-none-match", TAG)], Plan::NotModified),
            (&[("if-none-match", WEAK)], Plan::NotModified),
            (
                &[("if-none-match", &format!("\"b,c\" ,\t{WEAK}"))],
                Plan::NotModified,
            ),
            (&[("if-none-match", "\"a\", \"b,c\"")], Plan::Full),
            // obs-text is etagc; a space or control character is not, and spoils the list.
            (
                &[("if-none-match", &format!("\"\u{e9}\", {TAG}"))],
                Plan::NotModified,
            ),
            (&[("if-none-match", &format!("\"a b\", {TAG}"))], Plan::Full),
            (
                &[("if-none-match", &format!("\"a\u{7}\", {TAG}"))],
                Plan::Full,
            ),
            (&[("if-none-match", "\"2ebc98a1.1dcd6500-3e8")], Plan::Full),
            (&[("if-none-match", "2ebc98a1.1dcd6500-3e8")], Plan::Full),
            (&[("if-none-match", &format!("{TAG} garbage"))], Plan::Full),
            (
                &[("if-none-match", "w/\"2ebc98a1.1dcd6500-3e8\"")],
                Plan::Full,
            ),
            // 4. If-Modified-Since: not modified when Last-Modified <= date.
            (&[("if-modified-since", LM)], Plan::NotModified),
            (&[("if-modified-since", AFTER)], Plan::NotModified),
            (&[("if-modified-since", BEFORE)], Plan::Full),
            (&[("if-modified-since", "yesterday")], Plan::Full),
            (&[("if-modified-since", &format!("{LM}, {LM}"))], Plan::Full),
            (
                &[("if-modified-since", "Sunday, 06-Nov-94 08:49:37 GMT")],
                Plan::NotModified,
            ),
            (
                &[("if-modified-since", "Sun Nov  6 08:49:37 1994")],
                Plan::NotModified,
            ),
            // ... and only without If-None-Match.
            (
                &[("if-none-match", "\"other\""), ("if-modified-since", LM)],
                Plan::Full,
            ),
            (
                &[("if-none-match", TAG), ("if-modified-since", BEFORE)],
                Plan::NotModified,
            ),
            // Passing steps 1-2 leads on to steps 3-4; a 304 wins over a Range.
            (
                &[("if-match", TAG), ("if-none-match", TAG)],
                Plan::NotModified,
            ),
            (
                &[("if-unmodified-since", LM), ("if-modified-since", LM)],
                Plan::NotModified,
            ),
            (
                &[("if-none-match", TAG), ("range", "bytes=0-9")],
                Plan::NotModified,
            ),
            (
                &[("if-match", TAG), ("range", "bytes=0-9")],
                Plan::Partial(r(0, 9)),
            ),
        ];
        check(rows, true);
    }

    #[test]
    fn other_methods_only_see_if_match_and_if_unmodified_since() {
        let rows: &[(&[(&str, &str)], Plan)] = &[
            (&[("if-none-match", "*")], Plan::Full),
            (&[("if-modified-since", AFTER)], Plan::Full),
            (&[("range", "bytes=0-1")], Plan::Full),
            (&[("range", "bytes=0-1"), ("if-range", TAG)], Plan::Full),
            (&[("if-match", TAG)], Plan::Full),
            (&[("if-match", "\"x\"")], Plan::PreconditionFailed),
            (&[("if-unmodified-since", BEFORE)], Plan::PreconditionFailed),
            (&[("if-unmodified-since", LM)], Plan::Full),
        ];
        check(rows, false);
    }

    #[test]
    fn without_mtime_the_weak_tag_and_no_dates() {
        let weak = etag(LEN, None);
        let rows: &[(&[(&str, &str)], Plan)] = &[
            (&[("if-none-match", &weak)], Plan::NotModified),
            (&[("if-none-match", "\"3e8\"")], Plan::NotModified),
            (&[("if-match", &weak)], Plan::PreconditionFailed),
            (&[("if-match", "\"3e8\"")], Plan::PreconditionFailed),
            (&[("if-match", "*")], Plan::Full),
            (&[("if-modified-since", AFTER)], Plan::Full),
            (&[("if-unmodified-since", BEFORE)], Plan::Full),
            (&[("range", "bytes=0-9")], Plan::Partial(r(0, 9))),
            (
                &[("range", "bytes=0-9"), ("if-range", "\"3e8\"")],
                Plan::Full,
            ),
            (&[("range", "bytes=0-9"), ("if-range", LM)], Plan::Full),
        ];
        for (i, (pairs, want)) in rows.iter().enumerate() {
            let got = evaluate(&fields(pairs), true, &weak, None, LEN);
            assert_eq!(got, *want, "row {i}: {pairs:?}");
        }
    }

    #[test]
    fn dates_compare_with_the_last_modified_that_was_sent() {
        // A file from before 1970 is sent with Last-Modified at the epoch (the formatter
        // clamps); a client echoing that back must get its 304, and its If-Range must hold.
        let old = UNIX_EPOCH - Duration::from_secs(86_400);
        let epoch = "Thu, 01 Jan 1970 00:00:00 GMT";
        assert_eq!(http_date::format(old), epoch);
        let tag = etag(LEN, Some(old));
        for (pairs, want) in [
            (fields(&[("if-modified-since", epoch)]), Plan::NotModified),
            (fields(&[("if-unmodified-since", epoch)]), Plan::Full),
            (
                fields(&[("range", "bytes=0-0"), ("if-range", epoch)]),
                Plan::Partial(r(0, 0)),
            ),
        ] {
            assert_eq!(
                evaluate(&pairs, true, &tag, Some(old), LEN),
                want,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn range_table() {
        let rows: &[(&str, Plan)] = &[
            ("bytes=0-99", Plan::Partial(r(0, 99))),
            ("bytes=100-", Plan::Partial(r(100, 999))),
            ("bytes=-100", Plan::Partial(r(900, 999))),
            ("bytes=-1000", Plan::Partial(r(0, 999))),
            ("bytes=-5000", Plan::Partial(r(0, 999))),
            ("bytes=0-0", Plan::Partial(r(0, 0))),
            ("bytes=0-1", Plan::Partial(r(0, 1))), // Safari's probe: exactly 2 bytes
            ("bytes=999-999", Plan::Partial(r(999, 999))),
            ("bytes=990-5000", Plan::Partial(r(990, 999))),
            ("bytes=0-18446744073709551615", Plan::Partial(r(0, 999))),
            ("bytes=-18446744073709551615", Plan::Partial(r(0, 999))),
            ("BYTES=5-9", Plan::Partial(r(5, 9))),
            ("Bytes=,5-9,", Plan::Partial(r(5, 9))),
            ("bytes= 5-9 ,\t", Plan::Partial(r(5, 9))),
            // Unsatisfiable: every range starts past the end, or is a zero suffix.
            ("bytes=1000-", Plan::Unsatisfiable),
            ("bytes=1000-1000", Plan::Unsatisfiable),
            ("bytes=1000-2000, 3000-", Plan::Unsatisfiable),
            ("bytes=-0", Plan::Unsatisfiable),
            ("bytes=-0, 1000-", Plan::Unsatisfiable),
            // A satisfiable subset is served alone.
            ("bytes=0-1, 5000-6000", Plan::Partial(r(0, 1))),
            ("bytes=-0,0-9", Plan::Partial(r(0, 9))),
            // Several: sorted and coalesced when overlapping or adjacent.
            ("bytes=0-9,20-29", Plan::Multipart(vec![r(0, 9), r(20, 29)])),
            (
                "bytes=20-29, 0-9",
                Plan::Multipart(vec![r(0, 9), r(20, 29)]),
            ),
            ("bytes=0-9,11-19", Plan::Multipart(vec![r(0, 9), r(11, 19)])),
            ("bytes=0-9,10-19", Plan::Partial(r(0, 19))),
            ("bytes=10-19,0-9", Plan::Partial(r(0, 19))),
            (
                "bytes=0-9,5-14,30-39",
                Plan::Multipart(vec![r(0, 14), r(30, 39)]),
            ),
            (
                "bytes=30-39,0-99,-1",
                Plan::Multipart(vec![r(0, 99), r(999, 999)]),
            ),
            // Go's amplification rule: more bytes asked than the file has -> the file.
            ("bytes=0-499,0-499", Plan::Partial(r(0, 499))),
            ("bytes=0-500,0-499", Plan::Full),
            ("bytes=0-999,0-999", Plan::Full),
            ("bytes=-600,0-500", Plan::Full),
            // Another unit, or a syntax error anywhere: the field is ignored.
            ("items=0-9", Plan::Full),
            ("bytes 0-9", Plan::Full),
            ("bytes = 0-9", Plan::Full),
            ("=0-9", Plan::Full),
            ("bytes=abc", Plan::Full),
            ("bytes=5-1", Plan::Full),
            ("bytes=0-9,5-1", Plan::Full),
            ("bytes=", Plan::Full),
            ("bytes=,", Plan::Full),
            ("bytes=-", Plan::Full),
            ("bytes=--1", Plan::Full),
            ("bytes=1--2", Plan::Full),
            ("bytes=+1-2", Plan::Full),
            ("bytes=1-+2", Plan::Full),
            ("bytes=1 -2", Plan::Full),
            ("bytes=0-9;", Plan::Full),
            ("bytes=0x1-2", Plan::Full),
            ("bytes=0-99999999999999999999999", Plan::Full),
            ("bytes=18446744073709551616-", Plan::Full),
            ("bytes=0-9,1000-2000,abc", Plan::Full),
            ("bytes=\u{661}-2", Plan::Full), // Arabic-Indic digit one
        ];
        for (range, want) in rows {
            let got = evaluate(&fields(&[("range", range)]), true, TAG, Some(mtime()), LEN);
            assert_eq!(got, *want, "{range:?}");
        }
    }

    #[test]
    fn range_count_is_capped() {
        let set = |n: u64| -> String {
            let specs: Vec<String> = (0..n)
                .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
                .collect();
            format!("bytes={}", specs.join(","))
        };
        let cap = MAX_RANGES as u64;
        let at_cap = set(cap);
        let want: Vec<ByteRange> = (0..cap).map(|i| r(i * 10, i * 10 + 1)).collect();
        check(&[(&[("range", &at_cap)], Plan::Multipart(want))], true);
        let over = set(cap + 1);
        check(&[(&[("range", &over)], Plan::Full)], true);
        // Unsatisfiable specs count too: they cost parsing all the same.
        let padded = format!("{},5000-", set(cap));
        check(&[(&[("range", &padded)], Plan::Full)], true);
    }

    #[test]
    fn the_largest_representation() {
        // Two whole-file ranges of a u64::MAX-byte file add up past u64::MAX: still "more".
        for (range, want) in [
            ("bytes=0-,0-", Plan::Full),
            (
                "bytes=-1,0-0",
                Plan::Multipart(vec![r(0, 0), r(u64::MAX - 1, u64::MAX - 1)]),
            ),
            ("bytes=0-", Plan::Partial(r(0, u64::MAX - 1))),
        ] {
            let p = fields(&[("range", range)]);
            let got = evaluate(&p, true, TAG, Some(mtime()), u64::MAX);
            assert_eq!(got, want, "{range}");
        }
    }

    #[test]
    fn empty_representation() {
        for (range, want) in [
            ("bytes=0-0", Plan::Unsatisfiable),
            ("bytes=0-", Plan::Unsatisfiable),
            ("bytes=-5", Plan::Unsatisfiable),
            ("bytes=abc", Plan::Full),
            ("lines=0-0", Plan::Full),
        ] {
            let p = fields(&[("range", range)]);
            assert_eq!(
                evaluate(&p, true, &etag(0, Some(mtime())), Some(mtime()), 0),
                want,
                "{range}"
            );
        }
    }

    #[test]
    fn if_range_table() {
        let rows: &[(&[(&str, &str)], Plan)] = &[
            (
                &[("range", "bytes=0-9"), ("if-range", TAG)],
                Plan::Partial(r(0, 9)),
            ),
            (
                &[("range", "bytes=0-9"), ("if-range", LM)],
                Plan::Partial(r(0, 9)),
            ),
            (
                &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
                Plan::Full,
            ),
            (&[("range", "bytes=0-9"), ("if-range", WEAK)], Plan::Full),
            (&[("range", "bytes=0-9"), ("if-range", BEFORE)], Plan::Full),
            (&[("range", "bytes=0-9"), ("if-range", AFTER)], Plan::Full),
            (
                &[("range", "bytes=0-9"), ("if-range", "garbage")],
                Plan::Full,
            ),
            (&[("range", "bytes=0-9"), ("if-range", "")], Plan::Full),
            (
                &[
                    ("range", "bytes=0-9"),
                    ("if-range", &format!("{TAG}, {TAG}")),
                ],
                Plan::Full,
            ),
            // A matching If-Range leaves the range rules as they are.
            (
                &[("range", "bytes=5000-"), ("if-range", TAG)],
                Plan::Unsatisfiable,
            ),
            (&[("range", "bytes=abc"), ("if-range", TAG)], Plan::Full),
            // Without a Range, If-Range is ignored.
            (&[("if-range", TAG)], Plan::Full),
            (&[("if-range", "\"other\"")], Plan::Full),
        ];
        check(rows, true);
    }

    #[test]
    fn byte_range_len_and_content_range() {
        for (range, len, content_range) in [
            (r(0, 0), 1, "bytes 0-0/1000"),
            (r(0, 99), 100, "bytes 0-99/1000"),
            (r(999, 999), 1, "bytes 999-999/1000"),
            (r(5, 4), 0, "bytes 5-4/1000"),
            (
                r(0, u64::MAX),
                u64::MAX,
                "bytes 0-18446744073709551615/1000",
            ),
        ] {
            assert_eq!(range.len(), len, "{range:?}");
            assert_eq!(range.is_empty(), len == 0, "{range:?}");
            assert_eq!(range.content_range(1000), content_range);
        }
    }

    #[test]
    fn multipart_layout_adds_up() {
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let ranges = [r(0, 9), r(20, 29), r(999, 999)];
        let b = boundary(TAG);
        let layout = multipart_layout(&ranges, LEN, "text/plain", &b);
        // Assemble the body the way the caller streams it; its length must be total_len.
        let mut body = Vec::new();
        for (head, range) in &layout.parts {
            body.extend_from_slice(head);
            body.extend_from_slice(&data[range.start as usize..=range.end as usize]);
        }
        body.extend_from_slice(&layout.trailer);
        assert_eq!(layout.total_len, body.len() as u64);
        let want_ranges: Vec<ByteRange> = layout.parts.iter().map(|(_, r)| *r).collect();
        assert_eq!(want_ranges, ranges);
        for ((head, _), content_range) in
            layout
                .parts
                .iter()
                .zip(["bytes 0-9/1000", "bytes 20-29/1000", "bytes 999-999/1000"])
        {
            let want = format!(
                "\r\n--{b}\r\nContent-Type: text/plain\r\nContent-Range: {content_range}\r\n\r\n"
            );
            assert_eq!(String::from_utf8_lossy(head), want);
        }
        assert_eq!(layout.trailer, format!("\r\n--{b}--\r\n").into_bytes());
        let empty = multipart_layout(&[], LEN, "text/plain", &b);
        assert_eq!(empty.total_len, empty.trailer.len() as u64);
    }

    #[test]
    fn boundary_is_fixed_length_safe_ascii() {
        let tags = [TAG, WEAK, "\"\"", "", "\"-1.0-0\"", "\"x\u{e9}\""];
        let boundaries: Vec<String> = tags.iter().map(|t| boundary(t)).collect();
        for (b, tag) in boundaries.iter().zip(tags) {
            assert_eq!(b.len(), BOUNDARY_LEN, "{b}");
            assert!(b.len() <= 70, "RFC 2046 limit: {b}");
            assert!(
                b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'),
                "{b}"
            );
            assert!(!b.contains(['"', '\r', '\n', ' ']), "{b}");
            assert_eq!(*b, boundary(tag), "deterministic");
        }
        for (i, a) in boundaries.iter().enumerate() {
            for b in &boundaries[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    /// Checks what every plan must satisfy, whatever the input.
    fn assert_sound(plan: &Plan, len: u64, is_get_or_head: bool, input: &str) {
        let inside = |r: &ByteRange| r.start <= r.end && r.end < len;
        match plan {
            Plan::Partial(range) => assert!(inside(range), "{input:?} len {len}: {range:?}"),
            Plan::Multipart(ranges) => {
                assert!((2..=MAX_RANGES).contains(&ranges.len()), "{input:?}");
                assert!(ranges.iter().all(inside), "{input:?} len {len}: {ranges:?}");
                // Sorted, and neither overlapping nor adjacent, so coalescing happened.
                assert!(
                    ranges
                        .windows(2)
                        .all(|w| w[0].end.saturating_add(1) < w[1].start),
                    "{input:?}: {ranges:?}"
                );
                let sum: u64 = ranges.iter().map(ByteRange::len).sum();
                assert!(sum <= len, "{input:?}");
                let layout = multipart_layout(ranges, len, "a/b", &boundary(input));
                // In u128: near u64::MAX the framing itself no longer fits, and saturates.
                let heads: u128 = layout.parts.iter().map(|(h, _)| h.len() as u128).sum();
                let total = heads + u128::from(sum) + layout.trailer.len() as u128;
                let want = u64::try_from(total).unwrap_or(u64::MAX);
                assert_eq!(layout.total_len, want, "{input:?}");
            }
            _ => {}
        }
        if !is_get_or_head {
            assert!(
                matches!(plan, Plan::Full | Plan::PreconditionFailed),
                "{input:?}: {plan:?}"
            );
        }
    }

    /// Random bytes and mutations of valid fields, in random fields, against random lengths:
    /// nothing may panic and every plan must be sound. The counts prove the inputs reach
    /// every kind of answer, so the invariants are really exercised.
    #[test]
    fn fuzz_never_panics_and_ranges_stay_inside() {
        let seeds = [
            "bytes=0-9,20-",
            "bytes=-5",
            "bytes=1-1,3-3,5-5,7-7",
            "bytes=0-0,-1",
            "W/\"a\", \"b\"",
            TAG,
            WEAK,
            LM,
            AFTER,
            "*",
        ];
        let alphabet = b"bytes=0123456789-,* \t\"W/\xc3\xa9";
        let mut rng = Rng(0x5EED_CAFE_F00D_1234);
        let mut seen = [0usize; 6];
        for round in 0..50_000 {
            let bytes: Vec<u8> = if round % 5 == 0 {
                (0..rng.below(24)).map(|_| rng.next() as u8).collect()
            } else {
                let mut v = seeds[rng.index(seeds.len())].as_bytes().to_vec();
                for _ in 0..rng.below(4) {
                    let i = rng.index(v.len() + 1);
                    let b = alphabet[rng.index(alphabet.len())];
                    match rng.below(3) {
                        0 if i < v.len() => v[i] = b,
                        1 if i < v.len() => {
                            v.remove(i);
                        }
                        _ => v.insert(i, b),
                    }
                }
                v
            };
            let input = String::from_utf8_lossy(&bytes).into_owned();
            let len = match rng.below(4) {
                0 => 0,
                1 => u64::MAX - rng.below(3),
                _ => rng.below(40),
            };
            let pick = |rng: &mut Rng| (rng.below(3) == 0).then_some(input.as_str());
            let p = Preconditions {
                if_match: pick(&mut rng),
                if_none_match: pick(&mut rng),
                if_modified_since: pick(&mut rng),
                if_unmodified_since: pick(&mut rng),
                if_range: pick(&mut rng),
                range: Some(input.as_str()),
            };
            let is_get_or_head = rng.below(8) != 0;
            let modified = (rng.below(8) != 0).then(mtime);
            let tag = etag(len, modified);
            let plan = evaluate(&p, is_get_or_head, &tag, modified, len);
            assert_sound(&plan, len, is_get_or_head, &input);
            seen[match plan {
                Plan::Full => 0,
                Plan::NotModified => 1,
                Plan::PreconditionFailed => 2,
                Plan::Partial(_) => 3,
                Plan::Multipart(_) => 4,
                Plan::Unsatisfiable => 5,
            }] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "plans seen: {seen:?}");
    }
}
