//! The HTTP/1.1 request-head parser (RFC 9112 §2-§6): pure, incremental, no I/O.
//!
//! [`parse`] takes the bytes received so far and answers [`Parse::Partial`] (send more) or
//! [`Parse::Complete`] with the parsed and validated head and its length; anything malformed
//! is an [`HttpError`]. The search for the end of the head resumes where the previous call
//! stopped, so a client that sends one byte per write costs O(n), not O(n²). This module owns
//! the syntax of the head, the `Host` rules and the body framing decision (the request
//! smuggling defences of RFC 9112 §6); it must not percent-decode the target (that is
//! `resolve`'s job, done exactly once) nor read the body (that is `body`'s).

use std::borrow::Cow;
use std::net::Ipv6Addr;

use memchr::{memchr, memchr_iter};

use crate::config::Limits;
use crate::error::HttpError;

/// Longest method we accept; every registered method is under 20 bytes (PROPPATCH is 9).
pub const MAX_METHOD_LEN: usize = 32;

/// Most bytes of empty lines we skip before a request line (RFC 9112 §2.2 asks us to skip at
/// least one CRLF, which some clients send after a body); more is not HTTP.
pub const MAX_LEADING_EMPTY_BYTES: usize = 64;

/// HTTP versions we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1, and HTTP/1.2 to HTTP/1.9, which are served as HTTP/1.1 (RFC 9110 §2.5).
    Http11,
}

/// The request method (RFC 9110 §9; case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// OPTIONS
    Options,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// Any other well-formed, uppercase method token, as sent.
    Other(String),
}

impl Method {
    /// The method as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        }
    }

    fn from_token(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"OPTIONS" => Method::Options,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            other => Method::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3), decided at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither field, or `Content-Length: 0`.
    None,
    /// Exactly this many bytes (`Content-Length`, never 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Header fields in arrival order, names as sent, values trimmed of optional whitespace
/// (obs-text bytes that are not UTF-8 are kept as U+FFFD).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// The value of the first field with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field with this name (case-insensitive), in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the list-valued field `name` (case-insensitive), `None` when absent. RFC
    /// 9110 §5.3: several field lines of a list mean the same as one line with their values
    /// joined by commas, so they are joined here; one line is borrowed as sent, so only a
    /// repeated field costs an allocation.
    pub fn get_list(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str());
        let first = values.next()?;
        let Some(second) = values.next() else {
            return Some(Cow::Borrowed(first));
        };
        let mut all = format!("{first},{second}");
        for v in values {
            all.push(',');
            all.push_str(v);
        }
        Some(Cow::Owned(all))
    }

    /// Whether the comma-separated list field `name`, across all its fields, holds `token`
    /// (case-insensitive), e.g. `Connection: keep-alive, Upgrade` (RFC 9110 §5.6.1).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| trim_ows_str(t).eq_ignore_ascii_case(token))
    }

    /// All fields as `(name, value)`, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A parsed and validated request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request-target exactly as sent (for the access log).
    pub target: String,
    /// Origin-form path, still percent-encoded, starting with `/`; `*` for asterisk-form.
    /// Absolute-form targets are reduced to their path (RFC 9112 §3.2.2).
    pub path: String,
    /// The text after the first `?`, without it; `None` when there is no `?`.
    pub query: Option<String>,
    /// The protocol version.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// How the body is delimited (RFC 9112 §6).
    pub framing: BodyFraming,
    /// What the client asked for: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive` (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent on HTTP/1.1 (RFC 9110 §10.1.1: ignored on 1.0).
    pub expect_continue: bool,
}

/// The parser's answer.
#[derive(Debug)]
pub enum Parse {
    /// The head is not complete yet: read more and call again.
    Partial,
    /// A complete head.
    Complete {
        /// The head.
        head: RequestHead,
        /// Bytes it occupied at the start of the buffer, including skipped leading empty
        /// lines and the final empty line; the body or the next request starts there.
        len: usize,
    },
}

/// Parses the request head at the start of `buf`.
///
/// `resume` is where the terminator scan resumes; the caller starts it at 0 for a new head,
/// passes the same variable on every call while the buffer only grows, and resets it to 0
/// after consuming a head (on `Complete` it is also set back to 0 here).
///
/// Errors, in order of precedence: a request line longer than `max_request_line` is
/// [`HttpError::UriTooLong`] (known as soon as that many bytes have arrived), a head longer
/// than `max_head_bytes` or with more than `max_headers` fields is
/// [`HttpError::HeadTooLarge`], and anything else is found once the head is complete.
pub fn parse(buf: &[u8], resume: &mut usize, limits: &Limits) -> Result<Parse, HttpError> {
    let Some(skip) = skip_empty_lines(buf)? else {
        // Only empty lines so far: where the head starts is still open, so scan it all again
        // next time (at most MAX_LEADING_EMPTY_BYTES).
        *resume = 0;
        return Ok(Parse::Partial);
    };
    let body = buf.get(skip..).unwrap_or_default();
    // Bytes of `body` that earlier calls already scanned.
    let scanned = (*resume).min(buf.len()).saturating_sub(skip);
    let end = find_head_end(body, scanned);
    // The request-line verdict depends only on its first max_request_line + 2 bytes, so it
    // is taken once, when they first arrive (or when the head is complete).
    let line_window = limits.max_request_line.saturating_add(2);
    let line_decidable = end.is_some() || body.len() > limits.max_request_line;
    if line_decidable
        && scanned < line_window
        && request_line_too_long(body, limits.max_request_line)
    {
        return Err(HttpError::UriTooLong);
    }
    let Some(end) = end else {
        if buf.len() > limits.max_head_bytes {
            return Err(HttpError::HeadTooLarge);
        }
        *resume = buf.len();
        return Ok(Parse::Partial);
    };
    let len = skip + end;
    if len > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let head = parse_head(body.get(..end).unwrap_or_default(), limits)?;
    *resume = 0;
    Ok(Parse::Complete { head, len })
}

/// RFC 9112 §2.2: when `buf` holds nothing but empty lines (CRLF or LF) before a request,
/// the bytes they take, so that the connection can drop them and stay idle; a final lone CR
/// is not counted (it may still become CRLF). `None` once a request line has begun, or when
/// there are too many of them (the parser answers 400).
pub fn empty_lines(buf: &[u8]) -> Option<usize> {
    match skip_empty_lines(buf) {
        Ok(None) => Some(buf.len() - usize::from(buf.last() == Some(&b'\r'))),
        _ => None,
    }
}

/// RFC 9112 §2.2: skips empty lines (CRLF or LF) before the request line. `None` when the
/// buffer holds nothing else yet (a final lone CR may still become CRLF).
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HttpError> {
    let mut i = 0;
    loop {
        let rest = buf.get(i..).unwrap_or_default();
        match rest {
            [b'\n', ..] => i += 1,
            [b'\r', b'\n', ..] => i += 2,
            [] | [b'\r'] => return Ok(None),
            _ => return Ok(Some(i)),
        }
        if i > MAX_LEADING_EMPTY_BYTES {
            return Err(HttpError::BadRequest(
                "too many empty lines before the request",
            ));
        }
    }
}

/// Finds the end of the head (the byte after its empty line) in `body`, which starts at the
/// request line. Line endings are CRLF or bare LF, mixed at will (RFC 9112 §2.2). Only line
/// feeds at or after `scanned - 3` are examined: earlier ones were rejected by earlier calls.
fn find_head_end(body: &[u8], scanned: usize) -> Option<usize> {
    let start = scanned.saturating_sub(3).min(body.len());
    let tail = body.get(start..).unwrap_or_default();
    memchr_iter(b'\n', tail).map(|i| i + start).find_map(|i| {
        let before = body.get(..i).unwrap_or_default();
        (before.ends_with(b"\n") || before.ends_with(b"\n\r")).then_some(i + 1)
    })
}

/// Whether the request line (without its CRLF or LF) is known to be longer than `max`,
/// looking at no more than its first `max + 2` bytes; false while it could still fit.
fn request_line_too_long(body: &[u8], max: usize) -> bool {
    let window = body.get(..max.saturating_add(2)).unwrap_or(body);
    match memchr(b'\n', window) {
        Some(lf) => {
            let cr = usize::from(lf > 0 && window.get(lf - 1) == Some(&b'\r'));
            lf - cr > max
        }
        // No LF yet: max + 1 bytes are too many unless the last one is a CR that an LF
        // may follow.
        None => {
            window.len() > max.saturating_add(1) || (window.len() > max && !window.ends_with(b"\r"))
        }
    }
}

/// Lines of a complete head without their CRLF or LF. A CR anywhere else is a bare CR,
/// which RFC 9112 §2.2 lets us reject.
fn lines(head: &[u8]) -> impl Iterator<Item = Result<&[u8], HttpError>> {
    head.split(|&b| b == b'\n').map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match memchr(b'\r', line) {
            Some(_) => Err(HttpError::BadRequest("bare CR")),
            None => Ok(line),
        }
    })
}

fn parse_head(head: &[u8], limits: &Limits) -> Result<RequestHead, HttpError> {
    let mut lines = lines(head);
    let request_line = lines.next().unwrap_or(Ok(&[][..]))?;
    // Normally caught by `parse` before the head completes; kept here so that a caller
    // that misuses `resume` cannot skip it.
    if request_line.len() > limits.max_request_line {
        return Err(HttpError::UriTooLong);
    }
    let (method, target, version) = parse_request_line(request_line)?;
    let mut fields = Vec::new();
    for line in lines {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if fields.len() >= limits.max_headers {
            return Err(HttpError::HeadTooLarge);
        }
        fields.push(parse_field(line)?);
    }
    let headers = Headers { fields };
    let (path, query) = split_target(&method, &target)?;
    check_host(&headers, version)?;
    let framing = framing(&headers, version)?;
    let expect_continue = expect_continue(&headers, version)?;
    let keep_alive = match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => {
            headers.has_token("connection", "keep-alive")
                && !headers.has_token("connection", "close")
        }
    };
    Ok(RequestHead {
        method,
        target,
        path,
        query,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.2 `token`: one or more `tchar` (also the rule for `_headers` field names).
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// RFC 9112 §3: `method SP request-target SP HTTP-version`, single spaces, nothing else.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(m), Some(t), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest(
            "request line is not method SP target SP version",
        ));
    };
    if m.len() > MAX_METHOD_LEN || !is_token(m) {
        return Err(HttpError::BadRequest("bad method"));
    }
    // Methods are case-sensitive (RFC 9110 §9.1) and every registered one is uppercase; a
    // lowercase `get` is a broken or probing client.
    if m.iter().any(u8::is_ascii_lowercase) {
        return Err(HttpError::BadRequest("lowercase method"));
    }
    // RFC 9112 §3.2: the target is visible ASCII; raw spaces, controls and UTF-8 are refused.
    if t.is_empty() || !t.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(HttpError::BadRequest("bad target bytes"));
    }
    let version = match v {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        // RFC 9110 §2.5: a higher minor version of a major version we speak is treated as
        // the highest minor version we implement, so HTTP/1.2 to HTTP/1.9 are served as
        // HTTP/1.1 (Host required, persistent by default); the answer says HTTP/1.1.
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => Version::Http11,
        // §2.5: a major version we do not speak is 505 (RFC 9110 §15.6.6).
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported)
        }
        _ => return Err(HttpError::BadRequest("bad version")),
    };
    // Visible ASCII only (checked above), so this is lossless.
    let target = String::from_utf8_lossy(t).into_owned();
    Ok((Method::from_token(m), target, version))
}

/// RFC 9112 §5: `field-name ":" OWS field-value OWS`.
fn parse_field(line: &[u8]) -> Result<(String, String), HttpError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        // RFC 9112 §5.2: obs-fold in a request may be rejected; we do.
        return Err(HttpError::BadRequest("obs-fold"));
    }
    let colon = memchr(b':', line).ok_or(HttpError::BadRequest("field without colon"))?;
    let (name, value) = line.split_at(colon);
    let value = value.get(1..).unwrap_or_default();
    // RFC 9112 §5.1: no whitespace between name and colon (a smuggling vector); a token.
    if !is_token(name) {
        return Err(HttpError::BadRequest("bad field name"));
    }
    // RFC 9110 §5.5: field-vchar, SP, HTAB and obs-text only.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest("control byte in field value"));
    }
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(trim_ows(value)).into_owned(),
    ))
}

/// Trims OWS (SP and HTAB, RFC 9110 §5.6.3) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn trim_ows_str(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// Splits the target into path and query (RFC 9112 §3.2): origin-form as is, absolute-form
/// reduced to its path, `*` only with OPTIONS; authority-form (CONNECT) is refused.
fn split_target(method: &Method, target: &str) -> Result<(String, Option<String>), HttpError> {
    // A fragment is never sent (RFC 9110 §4.2.5); `#` would also end the path early.
    if target.contains('#') {
        return Err(HttpError::BadRequest("fragment in target"));
    }
    if target == "*" {
        return match method {
            Method::Options => Ok(("*".into(), None)),
            _ => Err(HttpError::BadRequest("asterisk-form without OPTIONS")),
        };
    }
    let origin = if target.starts_with('/') {
        target
    } else {
        absolute_form_rest(target)?
    };
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (origin, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok((path.to_string(), query))
}

/// For `http://authority/rest` (scheme case-insensitive, RFC 9110 §4.2), returns `/rest`
/// (or `?query`, or empty), after checking the authority.
fn absolute_form_rest(target: &str) -> Result<&str, HttpError> {
    let rest = match target.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
        {
            rest
        }
        _ => {
            return Err(HttpError::BadRequest(
                "target is neither origin-form nor absolute-form",
            ))
        }
    };
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(cut);
    if authority.is_empty() || !valid_host(authority.as_bytes()) {
        return Err(HttpError::BadRequest("bad authority in absolute-form"));
    }
    Ok(rest)
}

/// RFC 9112 §3.2: HTTP/1.1 needs exactly one valid, non-empty Host; HTTP/1.0 at most one,
/// which may be empty.
fn check_host(headers: &Headers, version: Version) -> Result<(), HttpError> {
    let mut hosts = headers.get_all("host");
    match (hosts.next(), hosts.next(), version) {
        (None, _, Version::Http10) => Ok(()),
        (None, _, Version::Http11) => Err(HttpError::BadRequest("HTTP/1.1 without Host")),
        (Some(_), Some(_), _) => Err(HttpError::BadRequest("two Host fields")),
        (Some(""), None, Version::Http10) => Ok(()),
        (Some(h), None, _) if valid_host(h.as_bytes()) => Ok(()),
        (Some(_), None, _) => Err(HttpError::BadRequest("invalid Host")),
    }
}

/// `host [":" port]` with a reg-name, IPv4 or `[IPv6]` host (RFC 3986 §3.2.2) and a port of
/// 1 to 5 digits up to 65535. No userinfo (RFC 9110 §4.2.4), no IPvFuture.
fn valid_host(h: &[u8]) -> bool {
    let (host_ok, port) = match h {
        [b'[', rest @ ..] => match memchr(b']', rest) {
            Some(close) => {
                let inner = std::str::from_utf8(&rest[..close]).unwrap_or_default();
                (inner.parse::<Ipv6Addr>().is_ok(), &rest[close + 1..])
            }
            None => (false, &[][..]),
        },
        _ => {
            let colon = memchr(b':', h).unwrap_or(h.len());
            let (name, port) = h.split_at(colon);
            (valid_reg_name(name), port)
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => {
            (1..=5).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u16>().ok())
                    .is_some()
        }
        _ => false,
    };
    host_ok && port_ok
}

/// RFC 3986 §3.2.2 `reg-name` (which also covers IPv4): unreserved, sub-delims and
/// well-formed pct-encoded triplets, at least one byte.
fn valid_reg_name(name: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        i += match b {
            b'%' => match name.get(i + 1..i + 3) {
                Some([x, y]) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => 3,
                _ => return false,
            },
            _ if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => 1,
            _ => return false,
        };
    }
    !name.is_empty()
}

/// RFC 9112 §6.1-§6.3: how the body is delimited, refusing every ambiguity that enables
/// request smuggling. Several `Content-Length` fields or a list (`5, 5`) are refused even
/// when the values agree, as nginx does: no honest client sends them.
fn framing(headers: &Headers, version: Version) -> Result<BodyFraming, HttpError> {
    let has_te = headers.get("transfer-encoding").is_some();
    let mut lengths = headers.get_all("content-length");
    let (first_cl, second_cl) = (lengths.next(), lengths.next());
    if has_te {
        if first_cl.is_some() {
            // §6.3 item 3: both present is a smuggling attempt; refuse and close.
            return Err(HttpError::BadRequest(
                "Content-Length with Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            // §6.1: a 1.0 recipient cannot know chunked; the framing is untrustworthy.
            return Err(HttpError::BadRequest("Transfer-Encoding on HTTP/1.0"));
        }
        return transfer_codings(headers);
    }
    match (first_cl, second_cl) {
        (None, _) => Ok(BodyFraming::None),
        (Some(_), Some(_)) => Err(HttpError::BadRequest("several Content-Length fields")),
        (Some(v), None) => match content_length(v)? {
            0 => Ok(BodyFraming::None),
            n => Ok(BodyFraming::Length(n)),
        },
    }
}

/// §6.3 item 4: the final coding must be `chunked`, else 400. We implement `chunked` alone;
/// anything layered under it (gzip, deflate, compress or unknown) is 501 (§6.1).
fn transfer_codings(headers: &Headers) -> Result<BodyFraming, HttpError> {
    // RFC 9110 §5.6.1.2: empty list elements are ignored.
    let codings: Vec<&str> = headers
        .get_all("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(trim_ows_str)
        .filter(|c| !c.is_empty())
        .collect();
    let Some((last, earlier)) = codings.split_last() else {
        return Err(HttpError::BadRequest("empty Transfer-Encoding"));
    };
    if !last.eq_ignore_ascii_case("chunked") {
        return Err(HttpError::BadRequest(
            "final transfer coding is not chunked",
        ));
    }
    for coding in earlier {
        if coding.eq_ignore_ascii_case("chunked") {
            // §6.1: chunked must not be applied more than once.
            return Err(HttpError::BadRequest("chunked applied twice"));
        }
        let name = coding.split(';').next().map(trim_ows_str).unwrap_or("");
        if !is_token(name.as_bytes()) {
            return Err(HttpError::BadRequest("bad transfer coding"));
        }
    }
    if earlier.is_empty() {
        Ok(BodyFraming::Chunked)
    } else {
        Err(HttpError::NotImplemented)
    }
}

/// RFC 9110 §8.6: `1*DIGIT`, no sign, no spaces inside, no list; overflow is an error.
fn content_length(v: &str) -> Result<u64, HttpError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest("malformed Content-Length"));
    }
    v.bytes()
        .try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(HttpError::BadRequest("Content-Length overflow"))
}

/// RFC 9110 §10.1.1: `100-continue` is the only expectation; any other is 417. A 1.0
/// client's `100-continue` must be ignored.
fn expect_continue(headers: &Headers, version: Version) -> Result<bool, HttpError> {
    let mut seen = false;
    for v in headers.get_all("expect") {
        if !v.eq_ignore_ascii_case("100-continue") {
            return Err(HttpError::ExpectationFailed);
        }
        seen = true;
    }
    Ok(seen && version == Version::Http11)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    /// A comparable form of [`parse`]'s answer: `Ok(None)` is `Partial`.
    type Outcome = Result<Option<(RequestHead, usize)>, HttpError>;

    fn outcome(r: Result<Parse, HttpError>) -> Outcome {
        r.map(|p| match p {
            Parse::Partial => None,
            Parse::Complete { head, len } => Some((head, len)),
        })
    }

    fn whole_with(raw: &[u8], limits: &Limits) -> Outcome {
        outcome(parse(raw, &mut 0, limits))
    }

    fn whole(raw: &[u8]) -> Outcome {
        whole_with(raw, &Limits::default())
    }

    /// Feeds growing prefixes ending at `cuts` (increasing; `raw.len()` is added), keeping
    /// `resume` across calls as the connection does; stops at the first answer that is not
    /// `Partial`.
    fn in_pieces(raw: &[u8], cuts: &[usize], limits: &Limits) -> Outcome {
        let mut resume = 0;
        for &cut in cuts.iter().chain([&raw.len()]) {
            let got = outcome(parse(&raw[..cut.min(raw.len())], &mut resume, limits));
            if got != Ok(None) {
                return got;
            }
        }
        Ok(None)
    }

    fn head(raw: &str) -> RequestHead {
        match whole(raw.as_bytes()) {
            Ok(Some((head, len))) => {
                assert_eq!(len, raw.len(), "{raw:?}");
                head
            }
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    /// Small limits, so boundary tests stay fast and readable.
    fn small() -> Limits {
        Limits {
            max_request_line: 32,
            max_head_bytes: 128,
            max_headers: 3,
            ..Limits::default()
        }
    }

    const M32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF";

    /// (request, method, path, query, version, framing, keep_alive, expect_continue)
    type Valid = (
        &'static str,
        Method,
        &'static str,
        Option<&'static str>,
        Version,
        BodyFraming,
        bool,
        bool,
    );

    #[rustfmt::skip]
    fn valid_table() -> Vec<Valid> {
        use BodyFraming as F;
        use Method::*;
        use Version::*;
        let other = |m: &str| Other(m.to_string());
        vec![
            ("GET /a/b.txt?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", Get, "/a/b.txt", Some("x=1&y"), Http11, F::None, true, false),
            ("HEAD / HTTP/1.0\n\n", Head, "/", None, Http10, F::None, false, false),
            ("GET / HTTP/1.1\nHost: h\r\n\n", Get, "/", None, Http11, F::None, true, false),
            ("\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", Get, "/", None, Http11, F::None, true, false),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", Get, "/", None, Http10, F::None, true, false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", Get, "/", None, Http10, F::None, false, false),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: Close\r\n\r\n", Get, "/", None, Http11, F::None, false, false),
            ("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n", Get, "/", None, Http11, F::None, true, false),
            ("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Options, "*", None, Http11, F::None, true, false),
            ("GET http://example.com/p/q?z HTTP/1.1\r\nHost: other\r\n\r\n", Get, "/p/q", Some("z"), Http11, F::None, true, false),
            ("GET HTTPS://Example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", Get, "/", None, Http11, F::None, true, false),
            ("GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", Get, "/", Some("q=1"), Http11, F::None, true, false),
            ("GET /? HTTP/1.1\r\nHost: h\r\n\r\n", Get, "/", Some(""), Http11, F::None, true, false),
            ("GET /a%20b?b?c HTTP/1.1\r\nHost: h\r\n\r\n", Get, "/a%20b", Some("b?c"), Http11, F::None, true, false),
            ("PROPFIND /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", other("PROPFIND"), "/x", None, Http11, F::None, true, false),
            ("M-SEARCH /x HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", other("M-SEARCH"), "/x", None, Http11, F::None, true, false),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF /x HTTP/1.1\r\nHost: h\r\n\r\n", other(M32), "/x", None, Http11, F::None, true, false),
            // RFC 9110 §2.5: a higher minor version of 1 is served as 1.1, with its rules.
            ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", Get, "/", None, Http11, F::None, true, false),
            ("GET / HTTP/1.9\r\nHost: h\r\nConnection: close\r\n\r\n", Get, "/", None, Http11, F::None, false, false),
            ("PUT /x HTTP/1.7\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n", Put, "/x", None, Http11, F::Chunked, true, true),
            ("DELETE /x HTTP/1.1\r\nhost: xn--bcher-kva.example\r\n\r\n", Delete, "/x", None, Http11, F::None, true, false),
            ("GET / HTTP/1.1\r\nHost: h%41:65535\r\n\r\n", Get, "/", None, Http11, F::None, true, false),
            ("GET / HTTP/1.0\r\nHost:\r\n\r\n", Get, "/", None, Http10, F::None, false, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n", Post, "/x", None, Http11, F::Length(12), true, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", Post, "/x", None, Http11, F::None, true, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", Post, "/x", None, Http11, F::Length(7), true, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n", Post, "/x", None, Http11, F::Length(u64::MAX), true, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", Post, "/x", None, Http11, F::Chunked, true, false),
            ("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked ,\r\n\r\n", Post, "/x", None, Http11, F::Chunked, true, false),
            ("PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", Put, "/x", None, Http11, F::Length(1), true, true),
            ("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", Put, "/x", None, Http10, F::None, false, false),
        ]
    }

    #[test]
    fn valid_requests_table() {
        for (raw, method, path, query, version, framing, keep_alive, expect) in valid_table() {
            let h = head(raw);
            let got = (
                h.method.clone(),
                h.path.as_str(),
                h.query.as_deref(),
                h.version,
                h.framing,
                h.keep_alive,
                h.expect_continue,
            );
            let want = (method, path, query, version, framing, keep_alive, expect);
            assert_eq!(got, want, "{raw:?}");
            assert_eq!(
                h.method.as_str(),
                raw.trim_start().split(' ').next().unwrap()
            );
            let line = raw.trim_start().lines().next().unwrap();
            assert_eq!(h.target, line.split(' ').nth(1).unwrap(), "target as sent");
        }
    }

    #[test]
    fn fields_are_kept_in_order_and_trimmed() {
        let h = head(
            "GET / HTTP/1.1\r\nHost: h\r\nAccept:  */* \t\r\nX-A: 1\r\nx-a:2\r\n\
             X-Obs: caf\u{e9}\r\nX-Empty:\r\nConnection: Upgrade,\tKeep-Alive\r\n\r\n",
        )
        .headers;
        assert_eq!(h.len(), 7);
        assert!(!h.is_empty() && Headers::default().is_empty());
        assert_eq!(
            h.get("ACCEPT"),
            Some("*/*"),
            "OWS trimmed, name case-insensitive"
        );
        assert_eq!(h.get("x-a"), Some("1"), "first of several");
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["1", "2"]);
        // RFC 9110 §5.3: repeated lines of a list are one list; a single line is not copied.
        assert_eq!(h.get_list("x-a").as_deref(), Some("1,2"));
        assert!(matches!(h.get_list("accept"), Some(Cow::Borrowed("*/*"))));
        assert_eq!(h.get_list("missing"), None);
        let three = head(
            "GET / HTTP/1.1\r\nHost: h\r\nIf-Match: \"a\"\r\nif-match:\r\nIF-MATCH: \"b\", \"c\"\r\n\r\n",
        )
        .headers;
        assert_eq!(
            three.get_list("If-Match").as_deref(),
            Some("\"a\",,\"b\", \"c\""),
            "empty lines stay empty list members (RFC 9110 §5.6.1.2 skips them)"
        );
        assert_eq!(h.get("x-obs"), Some("caf\u{e9}"), "obs-text allowed");
        assert_eq!(h.get("x-empty"), Some(""));
        assert_eq!(h.get("missing"), None);
        assert!(h.has_token("connection", "keep-alive"));
        assert!(h.has_token("Connection", "upgrade"));
        assert!(!h.has_token("connection", "close"));
        assert!(!h.has_token("x-a", "12"), "tokens are whole list elements");
        let names: Vec<&str> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Host",
                "Accept",
                "X-A",
                "x-a",
                "X-Obs",
                "X-Empty",
                "Connection"
            ],
            "arrival order, names as sent"
        );
    }

    #[test]
    fn len_counts_leading_empty_lines_and_stops_at_the_head() {
        let raw = b"\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\n";
        let Ok(Some((h, len))) = whole(raw) else {
            panic!("not complete")
        };
        assert_eq!((h.path.as_str(), len), ("/", 30));
        let mut resume = 7;
        assert!(matches!(
            parse(raw, &mut resume, &Limits::default()),
            Ok(Parse::Complete { .. })
        ));
        assert_eq!(resume, 0, "ready for the next head");
    }

    #[rustfmt::skip]
    fn malformed_table() -> Vec<(String, HttpError)> {
        use HttpError::*;
        let line = "request line is not method SP target SP version";
        let host = |h: &str| format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n");
        let field = |f: &str| format!("GET / HTTP/1.1\r\nHost: h\r\n{f}\r\n\r\n");
        let target = |t: &str| format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        let version = |v: &str| format!("GET / {v}\r\nHost: h\r\n\r\n");
        let post = |f: &str| format!("POST / HTTP/1.1\r\nHost: h\r\n{f}\r\n\r\n");
        let mut t = vec![
            // Request line shape.
            ("GET /\r\n\r\n".into(), BadRequest(line)), // HTTP/0.9
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest(line)),
            ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n".into(), BadRequest(line)),
            ("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest(line)),
            (" GET / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest(line)),
            ("get / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("lowercase method")),
            ("Get / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("lowercase method")),
            ("G@T / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("bad method")),
            (format!("{M32}X / HTTP/1.1\r\nHost: h\r\n\r\n"), BadRequest("bad method")),
            ("G\0T / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("bad method")),
            (target("/a\0b"), BadRequest("bad target bytes")),
            (target("/a\u{7f}"), BadRequest("bad target bytes")),
            (target("/caf\u{e9}"), BadRequest("bad target bytes")),
            (target("/a#frag"), BadRequest("fragment in target")),
            (target("*"), BadRequest("asterisk-form without OPTIONS")),
            (target("h:443"), BadRequest("target is neither origin-form nor absolute-form")),
            (target("a/b"), BadRequest("target is neither origin-form nor absolute-form")),
            (target("ftp://h/x"), BadRequest("target is neither origin-form nor absolute-form")),
            (target("http:///x"), BadRequest("bad authority in absolute-form")),
            (target("http://u@h/x"), BadRequest("bad authority in absolute-form")),
            (version("HTTP/1.x"), BadRequest("bad version")),
            (version("http/1.1"), BadRequest("bad version")),
            (version("HTTP/1.10"), BadRequest("bad version")),
            (version("HTTP/1"), BadRequest("bad version")),
            (version("HTTP/11.1"), BadRequest("bad version")),
            (version("HTTP/1."), BadRequest("bad version")),
            (version("HTTP/1.a"), BadRequest("bad version")),
            (version("HTTP/1.22"), BadRequest("bad version")),
            (version("HTTP/2.0"), VersionNotSupported),
            (version("HTTP/0.9"), VersionNotSupported),
            (version("HTTP/0.1"), VersionNotSupported),
            (version("HTTP/3.1"), VersionNotSupported),
            (version("HTTP/9.9"), VersionNotSupported),
            // A higher minor version is 1.1 (RFC 9110 §2.5), so 1.1's Host rule applies.
            ("GET / HTTP/1.5\r\n\r\n".into(), BadRequest("HTTP/1.1 without Host")),
            // Line endings and control bytes.
            ("GET / HTTP/1.1\rHost: h\r\n\r\n".into(), BadRequest("bare CR")),
            ("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n".into(), BadRequest("bare CR")),
            (field("X: a\rb"), BadRequest("bare CR")),
            ("\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("bare CR")),
            ("\n\rGET / HTTP/1.1\r\nHost: h\r\n\r\n".into(), BadRequest("bare CR")),
            (field("X: a\u{1}"), BadRequest("control byte in field value")),
            (field("X: a\0b"), BadRequest("control byte in field value")),
            (field("X: a\u{b}b"), BadRequest("control byte in field value")),
            (field("X: a\u{7f}"), BadRequest("control byte in field value")),
            // Field syntax.
            (field("X\u{1}: v"), BadRequest("bad field name")),
            (field("X : v"), BadRequest("bad field name")),
            (field("X\t: v"), BadRequest("bad field name")),
            (field(": v"), BadRequest("bad field name")),
            (field("X-\u{e9}: v"), BadRequest("bad field name")),
            (field(" folded"), BadRequest("obs-fold")),
            (field("\tfolded"), BadRequest("obs-fold")),
            (field("NoColon"), BadRequest("field without colon")),
            // Host (RFC 9112 §3.2).
            ("GET / HTTP/1.1\r\n\r\n".into(), BadRequest("HTTP/1.1 without Host")),
            ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n".into(), BadRequest("two Host fields")),
            ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".into(), BadRequest("two Host fields")),
            ("GET / HTTP/1.0\r\nHost: a b\r\n\r\n".into(), BadRequest("invalid Host")),
        ];
        for bad in ["", "a b", "h:80x", "h:", "h:65536", "h:123456", "h:+80", "[::1", "[::g]", "[::1]x", "[]",
            "u@h", "h%4", "h%zz", "h/x", ":80", "a:1:2"]
        {
            t.push((host(bad), BadRequest("invalid Host")));
        }
        let framing = [
            ("Content-Length: 5\r\nTransfer-Encoding: chunked", BadRequest("Content-Length with Transfer-Encoding")),
            ("Transfer-Encoding: chunked\r\nContent-Length: 5", BadRequest("Content-Length with Transfer-Encoding")),
            ("Content-Length: 5\r\nContent-Length: 6", BadRequest("several Content-Length fields")),
            ("Content-Length: 5\r\nContent-Length: 5", BadRequest("several Content-Length fields")),
            ("Content-Length: 5, 5", BadRequest("malformed Content-Length")),
            ("Content-Length: -1", BadRequest("malformed Content-Length")),
            ("Content-Length: +5", BadRequest("malformed Content-Length")),
            ("Content-Length: 1 2", BadRequest("malformed Content-Length")),
            ("Content-Length: 0x10", BadRequest("malformed Content-Length")),
            ("Content-Length:", BadRequest("malformed Content-Length")),
            ("Content-Length: 18446744073709551616", BadRequest("Content-Length overflow")),
            ("Content-Length: 99999999999999999999999", BadRequest("Content-Length overflow")),
            ("Transfer-Encoding: chunked, gzip", BadRequest("final transfer coding is not chunked")),
            ("Transfer-Encoding: gzip", BadRequest("final transfer coding is not chunked")),
            ("Transfer-Encoding: chunked;x=1", BadRequest("final transfer coding is not chunked")),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip", BadRequest("final transfer coding is not chunked")),
            ("Transfer-Encoding:", BadRequest("empty Transfer-Encoding")),
            ("Transfer-Encoding: , ,", BadRequest("empty Transfer-Encoding")),
            ("Transfer-Encoding: chunked, chunked", BadRequest("chunked applied twice")),
            ("Transfer-Encoding: g@zip, chunked", BadRequest("bad transfer coding")),
            ("Transfer-Encoding: gzip, chunked", NotImplemented),
            ("Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked", NotImplemented),
            ("Transfer-Encoding: x-foo;a=b, chunked", NotImplemented),
            ("Expect: fancy", ExpectationFailed),
            ("Expect: 100-continue, x", ExpectationFailed),
            ("Expect:", ExpectationFailed),
            ("Expect: 100-continue\r\nExpect: 200-ok", ExpectationFailed),
        ];
        t.extend(framing.into_iter().map(|(f, e)| (post(f), e)));
        t.push((
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            BadRequest("Transfer-Encoding on HTTP/1.0"),
        ));
        t.push(("PUT / HTTP/1.0\r\nExpect: nope\r\n\r\n".into(), ExpectationFailed));
        t
    }

    #[test]
    fn malformed_requests_table() {
        for (raw, want) in malformed_table() {
            assert_eq!(whole(raw.as_bytes()), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn incomplete_heads_are_partial() {
        for raw in [
            "",
            "\r",
            "\r\n",
            "\n\r\n\r",
            "G",
            "GET / HTTP/1.1\r\nHost: h\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\n\r",
            "GET / HTTP/1.1\r\nHost: h\n\r",
        ] {
            assert_eq!(whole(raw.as_bytes()), Ok(None), "{raw:?}");
        }
    }

    /// A request whose request line is `line_len` bytes and whose whole head is `total`.
    fn sized(line_len: usize, total: usize) -> String {
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(line_len - 14));
        let fixed = line.len() + "Host: h\r\nX: \r\n\r\n".len();
        format!("{line}Host: h\r\nX: {}\r\n\r\n", "v".repeat(total - fixed))
    }

    #[test]
    #[rustfmt::skip]
    fn limits_table() {
        use HttpError::*;
        // Ok(true): a complete head; Ok(false): partial.
        let l = small();
        let (m, h) = (l.max_request_line, l.max_head_bytes);
        let fields = |n: usize| format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "X: v\r\n".repeat(n));
        let empty_lines = |n: usize| format!("{}GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n".repeat(n));
        let too_many_empty = BadRequest("too many empty lines before the request");
        let cases: Vec<(String, Result<bool, HttpError>)> = vec![
            (sized(m, 60), Ok(true)),
            (sized(m + 1, 60), Err(UriTooLong)),
            (sized(m + 1, 60).replace("\r\n", "\n"), Err(UriTooLong)),
            (format!("GET /{}", "a".repeat(m - 4)), Err(UriTooLong)), // known before its LF
            (format!("GET /{}", "a".repeat(m - 5)), Ok(false)),
            (format!("GET /{}\r", "a".repeat(m - 5)), Ok(false)), // the CR may start CRLF
            (format!("GET /{}", "a".repeat(10 * h)), Err(UriTooLong)), // 414 wins over 431
            (format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(h)), Err(UriTooLong)),
            (sized(20, h), Ok(true)),
            (sized(20, h + 1), Err(HeadTooLarge)),
            (format!("\r\n{}", sized(20, h - 1)), Err(HeadTooLarge)), // empty lines count
            (sized(20, h + 9)[..h + 1].to_string(), Err(HeadTooLarge)), // still partial
            (sized(20, h + 9)[..h].to_string(), Ok(false)),
            (fields(l.max_headers - 1), Ok(true)), // Host plus the others
            (fields(l.max_headers), Err(HeadTooLarge)),
            (empty_lines(MAX_LEADING_EMPTY_BYTES / 2), Ok(true)),
            (empty_lines(MAX_LEADING_EMPTY_BYTES / 2 + 1), Err(too_many_empty.clone())),
            ("\n".repeat(MAX_LEADING_EMPTY_BYTES + 1), Err(too_many_empty)),
            ("\n".repeat(MAX_LEADING_EMPTY_BYTES), Ok(false)),
        ];
        for (raw, want) in cases {
            let got = whole_with(raw.as_bytes(), &l).map(|p| p.is_some());
            assert_eq!(got, want, "{raw:?}");
        }
        // The defaults from config.rs: 8 KiB line, 16 KiB head, 100 fields.
        let d = Limits::default();
        let complete = |raw: String| whole(raw.as_bytes()).map(|p| p.is_some());
        assert_eq!(complete(fields(d.max_headers - 1)), Ok(true));
        assert_eq!(complete(fields(d.max_headers)), Err(HeadTooLarge));
        assert_eq!(complete(sized(d.max_request_line, 9000)), Ok(true));
        assert_eq!(complete(sized(d.max_request_line + 1, 9000)), Err(UriTooLong));
        assert_eq!(complete(sized(100, d.max_head_bytes)), Ok(true));
        assert_eq!(complete(sized(100, d.max_head_bytes + 1)), Err(HeadTooLarge));
    }

    /// The naive oracle: the first empty line (LF LF or LF CR LF), by sliding windows.
    fn naive_end(buf: &[u8]) -> Option<usize> {
        let lf_lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
        let lf_crlf = buf.windows(3).position(|w| w == b"\n\r\n").map(|p| p + 3);
        match (lf_lf, lf_crlf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    #[test]
    fn terminator_search_matches_the_naive_oracle() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"\r\n\r\nab: ";
        for _ in 0..20_000 {
            let len = rng.index(40);
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.index(alphabet.len())])
                .collect();
            assert_eq!(find_head_end(&buf, 0), naive_end(&buf), "{buf:?}");
            // Resuming from a point where an earlier call found nothing finds the same end.
            let from = rng.index(len + 1);
            if naive_end(&buf[..from]).is_none() {
                assert_eq!(
                    find_head_end(&buf, from),
                    naive_end(&buf),
                    "{buf:?} from {from}"
                );
            }
        }
    }

    #[test]
    fn the_scan_resumes_instead_of_starting_over() {
        // An earlier call already passed the terminator at 3: resuming at 6 must not see it
        // again, which proves bytes before `resume - 3` are not rescanned.
        let buf = b"a\n\nbcdef\n\n";
        assert_eq!(find_head_end(buf, 0), Some(3));
        assert_eq!(find_head_end(buf, 6), Some(10));
        // The 3 bytes of lookback catch a terminator split across calls.
        assert_eq!(find_head_end(b"ab\n\r\n", 4), Some(5));
        assert_eq!(find_head_end(b"ab\n\n", 3), Some(4));
    }

    /// Every request of the tables, valid, malformed, over a limit or followed by another.
    fn corpus() -> Vec<String> {
        let mut c: Vec<String> = valid_table().iter().map(|v| v.0.to_string()).collect();
        c.extend(malformed_table().into_iter().map(|(raw, _)| raw));
        c.extend([
            sized(32, 60),
            sized(33, 60),
            sized(20, 128),
            sized(20, 129),
            format!("{}GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n".repeat(33)),
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\r\nGET /next HTTP/1.1\r\n\r\n".into(),
            "GET / HTTP/1.1\nHost: h\n\nrest".into(),
        ]);
        c
    }

    #[test]
    fn a_request_split_anywhere_parses_the_same() {
        let l = small();
        let mut rng = Rng(42);
        for raw in corpus() {
            let raw = raw.as_bytes();
            let want = whole_with(raw, &l);
            let every_byte: Vec<usize> = (1..raw.len()).collect();
            assert_eq!(
                in_pieces(raw, &every_byte, &l),
                want,
                "byte at a time: {raw:?}"
            );
            let after_each_cr: Vec<usize> =
                (1..raw.len()).filter(|&i| raw[i - 1] == b'\r').collect();
            assert_eq!(
                in_pieces(raw, &after_each_cr, &l),
                want,
                "cut between CR and LF: {raw:?}"
            );
            for _ in 0..50 {
                let mut cuts = vec![];
                let mut at = 0;
                while at < raw.len() {
                    at += 1 + rng.index(9);
                    cuts.push(at);
                }
                assert_eq!(in_pieces(raw, &cuts, &l), want, "{raw:?} cut at {cuts:?}");
            }
        }
    }

    #[test]
    fn never_panics_and_splitting_never_changes_the_answer() {
        let l = small();
        let seeds = corpus();
        let noise = b"\r\n \t:/?#%[]@GETHOST0123456789,\x00\x7f\xff";
        let mut rng = Rng(7);
        for i in 0..6_000 {
            let mut buf: Vec<u8> = if i % 3 == 0 {
                (0..rng.index(80)).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.index(seeds.len())].as_bytes().to_vec()
            };
            for _ in 0..rng.index(4) {
                let at = rng.index(buf.len() + 1);
                let byte = if rng.index(2) == 0 {
                    noise[rng.index(noise.len())]
                } else {
                    rng.next() as u8
                };
                match rng.index(3) {
                    0 if at < buf.len() => buf[at] = byte,
                    1 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.insert(at, byte),
                }
            }
            let want = whole_with(&buf, &l);
            if let Ok(Some((_, len))) = &want {
                assert!(*len <= buf.len(), "{buf:?}");
            }
            let cuts: Vec<usize> = (0..3).map(|_| rng.index(buf.len() + 1)).collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            assert_eq!(in_pieces(&buf, &cuts, &l), want, "{buf:?} cut at {cuts:?}");
            assert_eq!(in_pieces(&buf, &[], &Limits::default()), whole(&buf));
        }
    }
}
