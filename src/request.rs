//! The HTTP/1.1 request-head parser (RFC 9112 §2-§6): pure, incremental, no I/O.
//!
//! [`parse`] takes the bytes received so far and answers [`Parse::Partial`] (send more) or
//! [`Parse::Complete`] with the parsed head and its length; anything malformed is an
//! [`HttpError`]. The search for the end of the head resumes where the previous call stopped,
//! so a client that sends one byte per write costs O(n), not O(n²). Percent-decoding of the
//! target is not done here (that is `resolve`'s job, exactly once).

use memchr::{memchr, memchr_iter};

use crate::config::Limits;
use crate::error::HttpError;

/// Longest method we accept; real methods are under 10 bytes (PROPPATCH is 9).
pub const MAX_METHOD_LEN: usize = 32;

/// HTTP versions we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// The request method.
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
    /// Any other well-formed method token.
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
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Header fields in arrival order, values trimmed of optional whitespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// The first field with this name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field with this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated list field (across all its lines) holds `token`
    /// (case-insensitive), e.g. `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// All fields.
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

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request-target exactly as sent (for the access log).
    pub target: String,
    /// Origin-form path, still percent-encoded; `*` for asterisk-form.
    pub path: String,
    /// The query after the first `?`, if any.
    pub query: Option<String>,
    /// The protocol version.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the client wants the connection kept open.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// The parser's answer.
#[derive(Debug)]
pub enum Parse {
    /// The head is not complete yet.
    Partial,
    /// A complete head of `len` bytes (including leading empty lines and the blank line).
    Complete {
        /// The head.
        head: RequestHead,
        /// Bytes it occupied.
        len: usize,
    },
}

/// Parses the request head at the start of `buf`. `resume` is where the terminator scan
/// resumes: start it at 0, keep passing it while the buffer only grows, reset it after
/// consuming a head.
pub fn parse(buf: &[u8], resume: &mut usize, limits: &Limits) -> Result<Parse, HttpError> {
    // RFC 9112 §2.2: ignore at least one empty line before the request line.
    let skip = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skip == buf.len() {
        return if skip > limits.max_request_line {
            Err(HttpError::BadRequest("empty lines"))
        } else {
            Ok(Parse::Partial)
        };
    }
    let body = &buf[skip..];
    let Some(end) = find_head_end(body, resume.saturating_sub(skip)) else {
        *resume = buf.len();
        // Too long already? Tell the client which limit it hit.
        match memchr(b'\n', body) {
            None if body.len() > limits.max_request_line => return Err(HttpError::UriTooLong),
            Some(i) if i > limits.max_request_line => return Err(HttpError::UriTooLong),
            _ if body.len() > limits.max_head_bytes => return Err(HttpError::HeadTooLarge),
            _ => return Ok(Parse::Partial),
        }
    };
    if end > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    let head = parse_head(&body[..end], limits)?;
    Ok(Parse::Complete {
        head,
        len: skip + end,
    })
}

/// Finds the end of the head (the byte after the blank line), accepting CRLF or bare LF line
/// endings, scanning from `from` (minus the 3 bytes a terminator may straddle).
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3).min(buf.len());
    for i in memchr_iter(b'\n', &buf[start..]).map(|i| i + start) {
        // An LF ends the head when the line it ends is empty: the previous line ended at
        // i-1 (LF) or i-2 (CRLF).
        if i >= 1 && buf[i - 1] == b'\n' {
            return Some(i + 1);
        }
        if i >= 2 && buf[i - 1] == b'\r' && buf[i - 2] == b'\n' {
            return Some(i + 1);
        }
    }
    None
}

fn lines(head: &[u8]) -> impl Iterator<Item = Result<&[u8], HttpError>> {
    head.split(|&b| b == b'\n').map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A CR anywhere else is a bare CR: RFC 9112 §2.2 lets us reject it.
        if line.contains(&b'\r') {
            Err(HttpError::BadRequest("bare CR"))
        } else {
            Ok(line)
        }
    })
}

fn parse_head(head: &[u8], limits: &Limits) -> Result<RequestHead, HttpError> {
    let mut lines = lines(head);
    let request_line = lines
        .next()
        .ok_or(HttpError::BadRequest("no request line"))??;
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
        if fields.len() == limits.max_headers {
            return Err(HttpError::HeadTooLarge);
        }
        fields.push(parse_field(line)?);
    }
    let headers = Headers { fields };
    let (path, query) = split_target(&method, &target)?;
    check_host(&headers, version)?;
    let framing = framing(&headers, version)?;
    let expect_continue = match headers.get("expect") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(HttpError::ExpectationFailed),
    };
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

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(m), Some(t), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest(
            "request line is not method SP target SP version",
        ));
    };
    if m.is_empty() || m.len() > MAX_METHOD_LEN || !m.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("bad method"));
    }
    // Methods are case-sensitive (RFC 9110 §9.1) and every registered one is uppercase.
    if m.iter().any(|b| b.is_ascii_lowercase()) {
        return Err(HttpError::BadRequest("lowercase method"));
    }
    if t.is_empty() || !t.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HttpError::BadRequest("bad target"));
    }
    let version = match v {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            return Err(HttpError::VersionNotSupported)
        }
        _ => return Err(HttpError::BadRequest("bad version")),
    };
    let method = match m {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"OPTIONS" => Method::Options,
        b"POST" => Method::Post,
        b"PUT" => Method::Put,
        b"DELETE" => Method::Delete,
        other => Method::Other(String::from_utf8_lossy(other).into_owned()),
    };
    // Checked above: visible ASCII only, so this is valid UTF-8.
    Ok((method, String::from_utf8_lossy(t).into_owned(), version))
}

fn parse_field(line: &[u8]) -> Result<(String, String), HttpError> {
    if line[0] == b' ' || line[0] == b'\t' {
        // RFC 9112 §5.2: obs-fold is rejected.
        return Err(HttpError::BadRequest("obs-fold"));
    }
    let colon = memchr(b':', line).ok_or(HttpError::BadRequest("field without colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // RFC 9112 §5.1: no whitespace between name and colon; the name is a token.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequest("bad field name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::BadRequest("control byte in field value"));
    }
    let value = trim_ows(value);
    Ok((
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Splits the target into path and query; absolute-form is reduced to its path
/// (RFC 9112 §3.2.2); `*` only with OPTIONS (§3.2.4).
fn split_target(method: &Method, target: &str) -> Result<(String, Option<String>), HttpError> {
    if target == "*" {
        return match method {
            Method::Options => Ok(("*".into(), None)),
            _ => Err(HttpError::BadRequest(
                "asterisk-form on a method other than OPTIONS",
            )),
        };
    }
    let origin = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or("").to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return Err(HttpError::BadRequest(
                "target is neither origin-form nor absolute-form",
            ));
        };
        let slash = rest.find(['/', '?']).unwrap_or(rest.len());
        if slash == 0 || !valid_host(&rest[..slash]) {
            return Err(HttpError::BadRequest("bad authority"));
        }
        &rest[slash..]
    };
    if origin.contains('#') {
        return Err(HttpError::BadRequest("fragment in target"));
    }
    let (path, query) = match origin.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (origin, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok((path.to_string(), query))
}

/// RFC 9112 §3.2: HTTP/1.1 needs exactly one valid Host; HTTP/1.0 at most one.
fn check_host(headers: &Headers, version: Version) -> Result<(), HttpError> {
    let mut hosts = headers.get_all("host");
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::Http10 => Ok(()),
        (None, _) => Err(HttpError::BadRequest("HTTP/1.1 without Host")),
        (Some(_), Some(_)) => Err(HttpError::BadRequest("two Host fields")),
        (Some(h), None) if valid_host(h) => Ok(()),
        (Some(_), None) => Err(HttpError::BadRequest("invalid Host")),
    }
}

/// `host [":" port]` with a reg-name, IPv4 or `[IPv6]` host (RFC 3986 §3.2.2).
fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return false;
        };
        let inner = &rest[..close];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        ("x", &rest[close + 1..])
    } else {
        match h.rfind(':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, ""),
        }
    };
    let port_ok = match port.strip_prefix(':') {
        Some(p) => p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b));
    host_ok && port_ok
}

/// RFC 9112 §6.1-§6.3: how the body is delimited, refusing every ambiguity that enables
/// request smuggling.
fn framing(headers: &Headers, version: Version) -> Result<BodyFraming, HttpError> {
    let te: Vec<&str> = headers.get_all("transfer-encoding").collect();
    let cl: Vec<&str> = headers.get_all("content-length").collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(HttpError::BadRequest(
                "Content-Length with Transfer-Encoding",
            ));
        }
        if version == Version::Http10 {
            return Err(HttpError::BadRequest("Transfer-Encoding on HTTP/1.0"));
        }
        let codings: Vec<String> = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .collect();
        if codings.iter().any(|c| c.is_empty()) {
            return Err(HttpError::BadRequest("empty transfer coding"));
        }
        if codings.last().map(String::as_str) != Some("chunked") {
            return Err(HttpError::BadRequest(
                "final transfer coding is not chunked",
            ));
        }
        if codings.len() > 1 {
            // Only `chunked` alone is implemented; anything layered under it (gzip...) is not.
            return Err(HttpError::NotImplemented);
        }
        return Ok(BodyFraming::Chunked);
    }
    // Several Content-Length lines or a list are refused outright, even when the values agree,
    // as nginx does: there is no honest reason to send them.
    match cl.as_slice() {
        [] => Ok(BodyFraming::None),
        [v] if !v.is_empty() && v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) => {
            let n: u64 = v
                .parse()
                .map_err(|_| HttpError::BadRequest("Content-Length overflow"))?;
            Ok(if n == 0 {
                BodyFraming::None
            } else {
                BodyFraming::Length(n)
            })
        }
        [_] => Err(HttpError::BadRequest("malformed Content-Length")),
        _ => Err(HttpError::BadRequest("several Content-Length fields")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn whole(raw: &[u8]) -> Result<Parse, HttpError> {
        parse(raw, &mut 0, &limits())
    }

    fn head(raw: &str) -> RequestHead {
        match whole(raw.as_bytes()) {
            Ok(Parse::Complete { head, len }) => {
                assert_eq!(len, raw.len(), "{raw:?}");
                head
            }
            other => panic!("{raw:?} gave {other:?}"),
        }
    }

    fn err(raw: &str) -> HttpError {
        match whole(raw.as_bytes()) {
            Err(e) => e,
            other => panic!("{raw:?} should fail, gave {other:?}"),
        }
    }

    #[test]
    fn valid_requests_table() {
        let h = head(
            "GET /a/b.txt?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\nAccept:  */* \t\r\n\r\n",
        );
        assert_eq!(
            (h.method, h.path.as_str(), h.query.as_deref()),
            (Method::Get, "/a/b.txt", Some("x=1&y"))
        );
        assert_eq!(
            (h.version, h.keep_alive, h.framing),
            (Version::Http11, true, BodyFraming::None)
        );
        assert_eq!(
            h.headers.get("ACCEPT"),
            Some("*/*"),
            "OWS trimmed, names case-insensitive"
        );
        assert_eq!(h.target, "/a/b.txt?x=1&y");

        let h = head("HEAD / HTTP/1.0\n\n");
        assert_eq!(
            (h.method, h.version, h.keep_alive),
            (Method::Head, Version::Http10, false),
            "bare LF, 1.0 closes"
        );
        let h = head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(h.keep_alive);
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.method, h.path.as_str()), (Method::Options, "*"));
        let h = head("GET http://example.com/p/q?z HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(
            (h.path.as_str(), h.query.as_deref()),
            ("/p/q", Some("z")),
            "absolute-form"
        );
        let h = head("GET HTTPS://Example.com HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path, "/");
        let h = head("PROPFIND /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
        assert_eq!(h.method, Method::Other("PROPFIND".into()));
        let h = head("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(12));
        let h = head("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n");
        assert!(h.expect_continue);
        let h = head("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            h.path, "/",
            "leading empty lines are skipped (RFC 9112 §2.2)"
        );
        let h = head("GET / HTTP/1.1\r\nHost: h\r\nX-Obs: caf\u{e9}\r\n\r\n");
        assert_eq!(
            h.headers.get("x-obs"),
            Some("caf\u{e9}"),
            "obs-text allowed"
        );
    }

    #[test]
    fn malformed_requests_table() {
        use HttpError::*;
        let cases: &[(&str, HttpError)] = &[
            ("GET /\r\n\r\n", BadRequest("")),                              // HTTP/0.9
            ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),         // double space
            ("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", BadRequest("")),
            ("get / HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),          // lowercase method
            ("G@T / HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\n\r\n", BadRequest("")),                     // no Host
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h:80x\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", BadRequest("")),         // space before colon
            ("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", BadRequest("")), // obs-fold
            ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nX\u{1}: v\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{0}b\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{7f}\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", BadRequest("")), // bare CR
            ("GET /a\u{7f} HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),
            ("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),
            ("GET * HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),
            ("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", BadRequest("")),  // authority-form
            ("GET / HTTP/1.x\r\nHost: h\r\n\r\n", BadRequest("")),
            ("GET / http/1.1\r\nHost: h\r\n\r\n", BadRequest("")),
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", VersionNotSupported),
            ("GET / HTTP/0.9\r\nHost: h\r\n\r\n", VersionNotSupported),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", BadRequest("")),
            ("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", NotImplemented),
            ("GET / HTTP/1.1\r\nHost: h\r\nExpect: fancy\r\n\r\n", ExpectationFailed),
        ];
        for (raw, want) in cases {
            let got = err(raw);
            let same = match (want, &got) {
                (BadRequest(_), BadRequest(_)) => true,
                (w, g) => w == g,
            };
            assert!(same, "{raw:?}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn limits_table() {
        let l = limits();
        let long_line = format!(
            "GET /{} HTTP/1.1\r\nHost: h\r\n\r\n",
            "a".repeat(l.max_request_line)
        );
        assert_eq!(err(&long_line), HttpError::UriTooLong);
        let partial_long = format!("GET /{}", "a".repeat(l.max_request_line + 1));
        assert_eq!(
            err(&partial_long),
            HttpError::UriTooLong,
            "known before the line ends"
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "X-A: aaaaaaaaaaaaaaaa\r\n".repeat(800)
        );
        assert_eq!(err(&big), HttpError::HeadTooLarge);
        let endless = format!("GET / HTTP/1.1\r\nHost: h\r\n{}", "X-A: a\r\n".repeat(3000));
        assert_eq!(
            err(&endless),
            HttpError::HeadTooLarge,
            "an endless partial head is refused"
        );
        let many = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "X: v\r\n".repeat(l.max_headers)
        );
        assert_eq!(
            err(&many),
            HttpError::HeadTooLarge,
            "Host plus max_headers fields is one too many"
        );
        let ok = format!(
            "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
            "X: v\r\n".repeat(l.max_headers - 1)
        );
        assert!(matches!(whole(ok.as_bytes()), Ok(Parse::Complete { .. })));
    }

    /// The naive oracle: the first blank line, CRLF or LF, found by brute force.
    fn naive_end(buf: &[u8]) -> Option<usize> {
        (0..buf.len()).find_map(|i| {
            let before = &buf[..=i];
            (before.ends_with(b"\n\n") || before.ends_with(b"\n\r\n")).then_some(i + 1)
        })
    }

    use crate::testutil::Rng;

    #[test]
    fn terminator_search_matches_the_naive_oracle() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"\r\nab: ";
        for _ in 0..20_000 {
            let len = rng.index(40);
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.index(alphabet.len())])
                .collect();
            assert_eq!(find_head_end(&buf, 0), naive_end(&buf), "{buf:?}");
            // Resuming from any earlier point finds the same end.
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
    fn a_request_split_anywhere_parses_the_same() {
        let requests = [
            "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
            "HEAD / HTTP/1.0\n\n",
            "\r\nOPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            "POST /x HTTP/1.1\nHost: h\nContent-Length: 3\n\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\nrest",
        ];
        let mut rng = Rng(42);
        for raw in requests {
            let raw = raw.as_bytes();
            let expected = format!("{:?}", whole(raw));
            for _ in 0..300 {
                // Feed growing prefixes cut at random points, keeping `resume` across calls.
                let mut resume = 0;
                let mut cut = 0;
                let result = loop {
                    cut = (cut + 1 + rng.index(6)).min(raw.len());
                    match parse(&raw[..cut], &mut resume, &limits()) {
                        Ok(Parse::Partial) if cut < raw.len() => continue,
                        other => break other,
                    }
                };
                assert_eq!(format!("{result:?}"), expected, "{raw:?}");
            }
        }
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let mut rng = Rng(7);
        let seed = b"GET /a?b HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        for i in 0..20_000 {
            let buf: Vec<u8> = if i % 2 == 0 {
                (0..rng.index(64)).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = seed.to_vec();
                for _ in 0..1 + rng.index(4) {
                    let at = rng.index(b.len());
                    b[at] = rng.next() as u8;
                }
                b
            };
            if let Ok(Parse::Complete { len, .. }) = parse(&buf, &mut 0, &limits()) {
                assert!(len <= buf.len());
            }
        }
    }
}
