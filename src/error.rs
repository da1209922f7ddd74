//! Errors, split by when they happen.
//!
//! [`Error`] is a start-up or run-time failure of the server as a whole (bind, root, shutdown
//! deadline); it carries its context and displays as one line for the operator.
//! [`HttpError`] is one request going wrong; [`HttpError::status`] is the *only* place in the
//! crate that decides which status code a request error becomes, and
//! [`HttpError::closes_connection`] says whether the framing of the connection can still be
//! trusted afterwards.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::response::Status;

/// Too many open files in this process (Linux `EMFILE`); std has no `ErrorKind` for it.
const EMFILE: i32 = 24;
/// Too many open files in the system (Linux `ENFILE`).
const ENFILE: i32 = 23;

/// A failure of the server as a whole.
#[derive(Debug)]
pub enum Error {
    /// The listening socket could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The inherited listening socket (`--fd`, `LISTEN_FDS`) cannot be used: not open, not a
    /// socket, not TCP, not listening.
    Inherited {
        /// The descriptor.
        fd: i32,
        /// Why it cannot be used.
        source: io::Error,
    },
    /// The document root is missing, not a directory, or cannot be canonicalized.
    Root {
        /// The root as configured.
        path: PathBuf,
        /// Why it cannot be served.
        reason: String,
    },
    /// A page named by `--404` or `--fallback` is missing or not a regular file.
    Page {
        /// The flag that named it.
        flag: &'static str,
        /// The path as configured.
        path: PathBuf,
        /// Why it cannot be served.
        reason: String,
    },
    /// A `_redirects` or `_headers` file (or a `--header`) cannot be used: `file:line: reason`.
    Rules(crate::site_rules::RuleError),
    /// A thread could not be started or another I/O failure outside any one connection.
    Io {
        /// What we were doing.
        context: &'static str,
        /// What the operating system said.
        source: io::Error,
    },
    /// The keeper thread panicked: the server drained what it could and stopped, so that a
    /// supervisor restarts it (exit status 1).
    KeeperFailed,
    /// The drain did not finish within the shutdown timeout; `remaining` connections were
    /// still open when the server gave up on them.
    ShutdownTimeout {
        /// Connections still open at the deadline.
        remaining: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, source } => write!(f, "cannot bind {addr}: {source}"),
            Error::Inherited { fd, source } => {
                write!(f, "cannot serve on inherited descriptor {fd}: {source}")
            }
            Error::Root { path, reason } => {
                write!(f, "cannot serve root {}: {reason}", path.display())
            }
            Error::Page { flag, path, reason } => {
                write!(f, "{flag}: cannot serve {}: {reason}", path.display())
            }
            Error::Io { context, source } => write!(f, "{context}: {source}"),
            Error::Rules(e) => write!(f, "{e}"),
            Error::KeeperFailed => write!(
                f,
                "the keeper thread panicked; drained and stopped so that a supervisor restarts the server"
            ),
            Error::ShutdownTimeout { remaining } => write!(
                f,
                "shutdown timeout expired with {remaining} connection(s) still open"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. }
            | Error::Inherited { source, .. }
            | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One request going wrong. Each variant maps to exactly one status in [`HttpError::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Malformed request line, header or target (the text is for the debug log only and is
    /// never sent to the client).
    BadRequest(&'static str),
    /// The request target climbs above the document root (`/../x`, `%2e%2e`, ...).
    Traversal,
    /// The request line is longer than the limit (RFC 9112 §3: 414).
    UriTooLong,
    /// The head is larger than the limit, or has too many fields (RFC 6585 §5: 431).
    HeadTooLarge,
    /// The whole head did not arrive before its deadline (RFC 9110 §15.5.9: 408).
    HeadTimeout,
    /// A well-formed version we do not speak, such as HTTP/2.0 on a text connection (505).
    VersionNotSupported,
    /// A method other than the ones we serve (405 with `Allow`).
    MethodNotAllowed,
    /// A transfer coding we do not implement (RFC 9112 §6.1: 501).
    NotImplemented,
    /// A request body larger than we are willing to read and discard (413).
    PayloadTooLarge,
    /// `Expect` with anything but `100-continue` (RFC 9110 §10.1.1: 417).
    ExpectationFailed,
    /// A precondition (`If-Match`, `If-Unmodified-Since`) failed (RFC 9110 §13.1: 412).
    PreconditionFailed,
    /// Nothing to serve there: missing, hidden, outside the root, or not a regular file.
    NotFound,
    /// The file exists but the server may not read it.
    Forbidden,
    /// A write that conflicts with the tree: a missing parent directory (no implicit
    /// mkdir) or a directory where a file was named (409).
    Conflict,
    /// A PUT without Content-Length or chunked framing (RFC 9110 §15.5.12: 411).
    LengthRequired,
    /// Out of descriptors (`EMFILE`, `ENFILE`) opening a file: a moment's overload, not a
    /// fault, so 503 with `Retry-After` rather than 500, and the connection closes to give
    /// its descriptor back.
    Unavailable,
    /// Any other failure while handling the request; the detail goes to the log.
    Internal,
}

impl HttpError {
    /// The one mapping from request errors to status codes.
    pub fn status(&self) -> Status {
        match self {
            HttpError::BadRequest(_) | HttpError::Traversal => Status::BadRequest,
            HttpError::UriTooLong => Status::UriTooLong,
            HttpError::HeadTooLarge => Status::HeaderFieldsTooLarge,
            HttpError::HeadTimeout => Status::RequestTimeout,
            HttpError::VersionNotSupported => Status::VersionNotSupported,
            HttpError::MethodNotAllowed => Status::MethodNotAllowed,
            HttpError::NotImplemented => Status::NotImplemented,
            HttpError::PayloadTooLarge => Status::PayloadTooLarge,
            HttpError::ExpectationFailed => Status::ExpectationFailed,
            HttpError::PreconditionFailed => Status::PreconditionFailed,
            HttpError::NotFound => Status::NotFound,
            HttpError::Forbidden => Status::Forbidden,
            HttpError::Conflict => Status::Conflict,
            HttpError::LengthRequired => Status::LengthRequired,
            HttpError::Unavailable => Status::ServiceUnavailable,
            HttpError::Internal => Status::InternalServerError,
        }
    }

    /// True when the error leaves the connection's framing unknown, so the response must say
    /// `Connection: close` and the connection must end (the tiny_http rule: after a malformed
    /// request we do not know where the next one starts).
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self,
            HttpError::MethodNotAllowed
                | HttpError::PreconditionFailed
                | HttpError::NotFound
                | HttpError::Forbidden
                | HttpError::Traversal
                | HttpError::Conflict
                | HttpError::LengthRequired
                | HttpError::Internal
        )
    }

    /// Maps a file-system error met while resolving a path. `NotFound` and the errors that
    /// mean "a path component is not a directory" become 404; permission problems 403.
    pub fn from_fs(err: &io::Error) -> HttpError {
        match err.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::IsADirectory
            | io::ErrorKind::InvalidFilename
            | io::ErrorKind::InvalidInput => HttpError::NotFound,
            io::ErrorKind::PermissionDenied => HttpError::Forbidden,
            // EMFILE, ENFILE: the descriptor budget is exhausted for a moment.
            _ if matches!(err.raw_os_error(), Some(EMFILE | ENFILE)) => HttpError::Unavailable,
            _ => HttpError::Internal,
        }
    }
}

/// A command-line or environment problem; displays as one line naming the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
