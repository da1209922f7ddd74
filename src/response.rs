//! Responses on the wire: the closed set of statuses we send ([`Status`]), the response head
//! builder, generated error pages and the canned 503 of the acceptor. Bodies are written by
//! the connection code (`outgoing`), which owns the sockets.
//!
//! This module never sees an `HttpError`: `connection.rs` maps errors to a status first. It
//! always writes CRLF line endings (RFC 9112 §2.2).

/// Every status poolserve sends, with its code and reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 100 Continue
    Continue,
    /// 200 OK
    Ok,
    /// 201 Created
    Created,
    /// 204 No Content
    NoContent,
    /// 206 Partial Content
    PartialContent,
    /// 301 Moved Permanently
    MovedPermanently,
    /// 302 Found
    Found,
    /// 303 See Other
    SeeOther,
    /// 304 Not Modified
    NotModified,
    /// 307 Temporary Redirect
    TemporaryRedirect,
    /// 308 Permanent Redirect
    PermanentRedirect,
    /// 400 Bad Request
    BadRequest,
    /// 403 Forbidden
    Forbidden,
    /// 404 Not Found
    NotFound,
    /// 405 Method Not Allowed
    MethodNotAllowed,
    /// 408 Request Timeout
    RequestTimeout,
    /// 409 Conflict
    Conflict,
    /// 410 Gone
    Gone,
    /// 411 Length Required
    LengthRequired,
    /// 412 Precondition Failed
    PreconditionFailed,
    /// 413 Content Too Large
    PayloadTooLarge,
    /// 414 URI Too Long
    UriTooLong,
    /// 416 Range Not Satisfiable
    RangeNotSatisfiable,
    /// 417 Expectation Failed
    ExpectationFailed,
    /// 431 Request Header Fields Too Large
    HeaderFieldsTooLarge,
    /// 451 Unavailable For Legal Reasons (RFC 7725)
    UnavailableForLegalReasons,
    /// 500 Internal Server Error
    InternalServerError,
    /// 501 Not Implemented
    NotImplemented,
    /// 503 Service Unavailable
    ServiceUnavailable,
    /// 505 HTTP Version Not Supported
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::Created => 201,
            Status::NoContent => 204,
            Status::PartialContent => 206,
            Status::MovedPermanently => 301,
            Status::Found => 302,
            Status::SeeOther => 303,
            Status::NotModified => 304,
            Status::TemporaryRedirect => 307,
            Status::PermanentRedirect => 308,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::Conflict => 409,
            Status::Gone => 410,
            Status::LengthRequired => 411,
            Status::PreconditionFailed => 412,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::RangeNotSatisfiable => 416,
            Status::ExpectationFailed => 417,
            Status::HeaderFieldsTooLarge => 431,
            Status::UnavailableForLegalReasons => 451,
            Status::InternalServerError => 500,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Continue => "Continue",
            Status::Ok => "OK",
            Status::Created => "Created",
            Status::NoContent => "No Content",
            Status::PartialContent => "Partial Content",
            Status::MovedPermanently => "Moved Permanently",
            Status::Found => "Found",
            Status::SeeOther => "See Other",
            Status::NotModified => "Not Modified",
            Status::TemporaryRedirect => "Temporary Redirect",
            Status::PermanentRedirect => "Permanent Redirect",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::Conflict => "Conflict",
            Status::Gone => "Gone",
            Status::LengthRequired => "Length Required",
            Status::PreconditionFailed => "Precondition Failed",
            Status::PayloadTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::RangeNotSatisfiable => "Range Not Satisfiable",
            Status::ExpectationFailed => "Expectation Failed",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::UnavailableForLegalReasons => "Unavailable For Legal Reasons",
            Status::InternalServerError => "Internal Server Error",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

impl Status {
    /// The status a `_redirects` rule names (see [`crate::site_rules::RuleStatus`]); the
    /// parser admits no other code.
    pub fn of_rule(code: u16) -> Status {
        match code {
            200 => Status::Ok,
            302 => Status::Found,
            303 => Status::SeeOther,
            307 => Status::TemporaryRedirect,
            308 => Status::PermanentRedirect,
            404 => Status::NotFound,
            410 => Status::Gone,
            451 => Status::UnavailableForLegalReasons,
            _ => Status::MovedPermanently,
        }
    }
}

use std::fmt::Write as _;

/// The `Server` header value.
pub const SERVER: &str = concat!("poolserve/", env!("CARGO_PKG_VERSION"));

/// Methods a read-only server allows (RFC 9110 §10.2.1 `Allow`), sent with 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";
/// The same with `--allow-write`.
pub const ALLOW_WRITE: &str = "GET, HEAD, OPTIONS, PUT, DELETE";

/// The acceptor's answer when the queue is full: no Date (RFC 9110 §6.6.1 lets a 5xx omit
/// it) so that it is a constant, written without formatting by the thread that must not wait.
pub const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Server: poolserve\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 31\r\n\
\r\n\
server busy, retry in a second\n";

/// [`OVERLOADED`] with the `--header` fields in it (`fields`: name and value, checked at
/// start-up), built once, so the acceptor still writes a constant.
pub fn overloaded(fields: &[(String, String)]) -> Vec<u8> {
    let at = OVERLOADED
        .windows(b"Connection: ".len())
        .position(|w| w == b"Connection: ")
        .unwrap_or(OVERLOADED.len());
    let mut out = OVERLOADED[..at].to_vec();
    // Its own type and `Retry-After` stay: one of each.
    let ours = |name: &str| {
        ["content-type", "retry-after"]
            .iter()
            .any(|o| o.eq_ignore_ascii_case(name))
    };
    for (name, value) in fields.iter().filter(|(n, _)| !ours(n)) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&OVERLOADED[at..]);
    out
}

/// A response head under construction. Always starts with the status line, `Date` and
/// `Server`; [`Head::finish`] adds the blank line. Built with plain byte copies, not the
/// `fmt` machinery: a head is built for every response (issue 7).
#[derive(Debug)]
pub struct Head {
    buf: Vec<u8>,
}

/// A header value we produced: text, a number, or an HTTP date.
pub trait HeaderValue {
    /// Appends the value's bytes.
    fn put(&self, out: &mut Vec<u8>);
}

impl HeaderValue for str {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl HeaderValue for String {
    fn put(&self, out: &mut Vec<u8>) {
        self.as_str().put(out);
    }
}

impl<T: HeaderValue + ?Sized> HeaderValue for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out);
    }
}

impl HeaderValue for u64 {
    fn put(&self, out: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = *self;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[at..]);
    }
}

impl HeaderValue for usize {
    fn put(&self, out: &mut Vec<u8>) {
        (*self as u64).put(out);
    }
}

/// A time as an HTTP date (IMF-fixdate), rendered straight into the head.
#[derive(Debug, Clone, Copy)]
pub struct HttpDate(pub std::time::SystemTime);

impl HeaderValue for HttpDate {
    fn put(&self, out: &mut Vec<u8>) {
        crate::http_date::format_into(self.0, out);
    }
}

impl Head {
    /// Starts a head; we always answer as HTTP/1.1, our highest version (RFC 9110 §2.5).
    pub fn new(status: Status) -> Head {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(b"HTTP/1.1 ");
        (status.code() as u64).put(&mut buf);
        buf.push(b' ');
        buf.extend_from_slice(status.reason().as_bytes());
        buf.extend_from_slice(b"\r\nServer: ");
        buf.extend_from_slice(SERVER.as_bytes());
        buf.extend_from_slice(b"\r\nDate: ");
        crate::http_date::now_into(&mut buf);
        buf.extend_from_slice(b"\r\n");
        Head { buf }
    }

    /// Adds one field. Values come from us, never unchecked from the client.
    pub fn header(&mut self, name: &str, value: impl HeaderValue) -> &mut Head {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        value.put(&mut self.buf);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Ends the head and returns its bytes (with room left for an inline body).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(b"\r\n");
        self.buf
    }
}

/// A small HTML page for an error or redirect status. Nothing the client sent appears in it.
pub fn status_page(status: Status) -> String {
    let mut page = String::with_capacity(256);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n\
<body><h1>{code} {reason}</h1><hr><p>{SERVER}</p></body></html>\n",
        code = status.code(),
        reason = status.reason()
    );
    page
}

/// [`status_page`] for the status the error path sends most, rendered once.
fn cached_page(status: Status) -> std::borrow::Cow<'static, str> {
    static NOT_FOUND: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if status == Status::NotFound {
        std::borrow::Cow::Borrowed(NOT_FOUND.get_or_init(|| status_page(Status::NotFound)))
    } else {
        std::borrow::Cow::Owned(status_page(status))
    }
}

/// A complete response for a status with the generated HTML page as body (`head_only` for
/// HEAD: same headers, no body). `connection` is the `Connection` value to send, if any;
/// `extra` adds fields such as `Allow` or `Location`. Returns the bytes and the body length
/// sent (0 for HEAD).
pub fn status_response(
    status: Status,
    head_only: bool,
    connection: Option<&str>,
    extra: &[(&str, &str)],
) -> (Vec<u8>, u64) {
    status_response_with(status, head_only, connection, extra, std::iter::empty())
}

/// [`status_response`] with `more` fields after `extra` (the site rules' or `--header`'s),
/// without gathering them first. A field of `more` that this answer writes itself (its page's
/// `Content-Type`, or a name in `extra` such as `Location`, `Retry-After`, `Allow`) is left
/// out: one of each.
pub fn status_response_with<'f>(
    status: Status,
    head_only: bool,
    connection: Option<&str>,
    extra: &[(&str, &str)],
    more: impl Iterator<Item = (&'f str, &'f str)>,
) -> (Vec<u8>, u64) {
    let page = cached_page(status);
    let mut head = Head::new(status);
    head.header("Content-Type", "text/html; charset=utf-8")
        .header("Content-Length", page.len());
    for (name, value) in extra {
        head.header(name, value);
    }
    let ours = |n: &str| {
        n.eq_ignore_ascii_case("content-type")
            || extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(n))
    };
    for (name, value) in more.filter(|(n, _)| !ours(n)) {
        head.header(name, value);
    }
    if let Some(c) = connection {
        head.header("Connection", c);
    }
    let mut bytes = head.finish();
    if head_only {
        return (bytes, 0);
    }
    bytes.extend_from_slice(page.as_bytes());
    (bytes, page.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_503_takes_the_header_fields_before_its_connection_field() {
        assert_eq!(overloaded(&[]), OVERLOADED);
        let with = overloaded(&[
            ("X-A".into(), "1".into()),
            ("Retry-After".into(), "9".into()),
            ("content-type".into(), "x/y".into()),
            ("X-B".into(), "".into()),
        ]);
        let text = String::from_utf8(with).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
                && text.contains("Retry-After: 1\r\nX-A: 1\r\nX-B: \r\nConnection: close\r\n")
                && text.ends_with("\r\n\r\nserver busy, retry in a second\n"),
            "{text}"
        );
    }
}
