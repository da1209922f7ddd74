//! One connection's life while a worker holds it: read what is there without waiting, answer
//! every complete request in the buffer (pipelining, in order), and hand the connection back
//! as soon as no bytes are ready or the client stops taking bytes, so that a worker never
//! waits on a quiet client or a slow reader.
//!
//! The socket is non-blocking from accept to close. A response is built in full as an
//! [`Outgoing`] and then pumped; when the socket would block, the connection parks with the
//! keeper for writability and resumes on any worker exactly where it stopped. Deadlines (head,
//! keep-alive idle, write stall) are kept by the keeper, not by socket timeouts.
//!
//! The request pipeline, in order: [`request::parse`] → body framing (a small body on a
//! request that does not use one is discarded, otherwise the connection closes after the
//! response) → method → [`resolve::resolve`] → response head and body → one access-log line.
//! Errors become a status in one place, [`HttpError::status`]. Only this module and the
//! keeper touch client sockets; only this module knows about keep-alive.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::access;
use crate::body::BodyDiscarder;
use crate::cache::{self, Cached, CachedRep, FileCache, Lookup};
use crate::conditional::{self, Plan, Preconditions};
use crate::config::{Limits, MAX_DISCARD_BODY};
use crate::encoding::{self, Coding};
use crate::error::HttpError;
use crate::keeper::{Lingering, Ticket};
use crate::outgoing::{Outgoing, Sent, TURN_BUDGET};
use crate::request::{self, BodyFraming, Method, Parse, RequestHead, Version};
use crate::resolve::{self, ResolveOptions, Resolved};
use crate::response::{self, Head, HttpDate, Status, ALLOW, ALLOW_WRITE};
use crate::state::{OpenGuard, Shared};
use crate::upload::{Commit, Upload};

/// Requests one connection may have answered in a row while other connections wait for a
/// worker; then it goes to the back of the line (fairness for pipelining clients).
const MAX_REQUESTS_PER_TURN: u32 = 8;

thread_local! {
    /// Each worker's access-log line, reused.
    static LOG_LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each worker's read buffer (one maximal head), zeroed once, reused for every read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A client connection and everything that must survive between two requests.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes received and not yet consumed: a partial head or pipelined requests.
    buf: Vec<u8>,
    /// Where the parser resumes its scan for the end of the head.
    resume: usize,
    /// Deadline of the head being received (from accept for a new connection).
    head_deadline: Option<Instant>,
    /// When the last response was finished (start of keep-alive idle time).
    idle_since: Instant,
    /// Requests answered on this connection.
    requests: u32,
    /// The response being written, if the socket stopped taking bytes mid-way.
    /// Boxed: a parked or queued connection stays small when it has nothing to send.
    pending: Option<Box<Pending>>,
    /// Deadline of the current write stall (reset whenever the client takes bytes).
    write_deadline: Option<Instant>,
    /// A PUT whose body is arriving (`--allow-write`).
    upload: Option<Box<PutState>>,
    /// The client may still be sending bytes we did not read (a body we skipped), so a
    /// close must linger.
    unread_input: bool,
    /// Its place with the keeper, from its first park until it closes (see [`Ticket`]).
    ticket: Option<Ticket>,
    _open: OpenGuard,
}

/// A response on its way out and what to do once it is written.
#[derive(Debug)]
struct Pending {
    out: Outgoing,
    status: Status,
    /// What the access log needs; `None` for health probes (logged at debug) and when the
    /// access log is off.
    log: Option<LogInfo>,
    start: Instant,
    /// Keep the connection open afterwards.
    keep: bool,
}

/// The request's fields for its access-log line, copied when the request is answered.
#[derive(Debug, Clone)]
struct LogInfo {
    format: access::Format,
    time: SystemTime,
    request: String,
    referer: Option<String>,
    user_agent: Option<String>,
}

impl LogInfo {
    /// `None` when the access log is off; `head` is `None` for a request we could not parse.
    fn new(format: access::Format, head: Option<&RequestHead>) -> Option<LogInfo> {
        if format == access::Format::Off {
            return None;
        }
        let field = |name| head.and_then(|h| h.headers.get(name)).map(str::to_string);
        Some(LogInfo {
            format,
            time: SystemTime::now(),
            request: head.map_or_else(|| "-".to_string(), request_line),
            referer: field("referer"),
            user_agent: field("user-agent"),
        })
    }
}

/// What a parked connection waits for, which decides its deadline and its fate in a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// Accepted, not a single byte received yet.
    Fresh,
    /// Between requests on a keep-alive connection.
    Idle,
    /// Part of a request head received.
    Head,
    /// The client to take more of a response (a slow reader).
    Write,
    /// More of an upload's body.
    Body,
}

/// What the worker should do with a connection after [`serve`].
#[derive(Debug)]
pub(crate) enum Next {
    /// No bytes are ready: park it with the keeper.
    Park(Conn),
    /// Complete requests are buffered but others are waiting: back of the ready queue.
    Requeue(Conn),
    /// A final response was sent and the write side shut: discard input for a while
    /// (lingering close) so the client reads the response instead of a reset.
    Linger(Lingering),
    /// Closed (or the client went away).
    Done,
}

impl Conn {
    /// Wraps a freshly accepted socket: non-blocking for good, and its head deadline runs
    /// from here, before the first read (the keeper enforces it).
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        shared: &std::sync::Arc<Shared>,
    ) -> io::Result<Conn> {
        let limits = &shared.config.limits;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let now = Instant::now();
        Ok(Conn {
            stream,
            peer,
            buf: Vec::new(),
            resume: 0,
            head_deadline: Some(now + limits.head_timeout),
            idle_since: now,
            requests: 0,
            pending: None,
            write_deadline: None,
            upload: None,
            unread_input: false,
            ticket: None,
            _open: OpenGuard::new(shared),
        })
    }

    /// The socket, for registration with the keeper's poller.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// What this connection is waiting for.
    pub fn waiting(&self) -> Waiting {
        if self.pending.is_some() {
            Waiting::Write
        } else if self.upload.is_some() {
            Waiting::Body
        } else if !self.buf.is_empty() {
            Waiting::Head
        } else if self.requests == 0 {
            Waiting::Fresh
        } else {
            Waiting::Idle
        }
    }

    /// When its last response was finished.
    pub fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// When the keeper gives up on it.
    pub fn deadline(&self, limits: &Limits) -> Instant {
        match (self.waiting(), self.head_deadline) {
            (Waiting::Write, _) => self
                .write_deadline
                .unwrap_or_else(|| Instant::now() + limits.write_timeout),
            (Waiting::Body, _) => self
                .upload
                .as_ref()
                .map_or_else(Instant::now, |u| u.deadline),
            (Waiting::Idle, _) | (_, None) => self.idle_since + limits.keep_alive_timeout,
            (_, Some(d)) => d,
        }
    }

    /// Frees the read buffer while parked, if it holds nothing: an idle connection then
    /// costs a keeper entry and no buffer.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Gives up the socket for a lingering close.
    pub fn into_linger(self) -> Lingering {
        Lingering {
            stream: self.stream,
            _open: self._open,
            ticket: self.ticket,
        }
    }

    /// Its place with the keeper, if it was ever parked.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }

    /// Its place with the keeper, to update.
    pub fn ticket_mut(&mut self) -> Option<&mut Ticket> {
        self.ticket.as_mut()
    }

    /// Records its place with the keeper (at its first park).
    pub fn set_ticket(&mut self, ticket: Ticket) {
        self.ticket = Some(ticket);
    }

    /// One read that does not wait. `Ok(0)` is end of stream.
    fn read_ready(&mut self, limits: &Limits) -> io::Result<usize> {
        let start = self.buf.len();
        // Never hold more than one maximal head (+1 so the parser can see it is too long).
        let room = (limits.max_head_bytes + 1).saturating_sub(start).max(1);
        // Read into the worker's scratch buffer and keep only what arrived: resizing `buf`
        // to `room` would zero 16 KiB per read, most of a small request's cost in memset.
        let got = SCRATCH.with_borrow_mut(|scratch| {
            if scratch.len() < room {
                scratch.resize(room, 0);
            }
            let n = self.stream.read(&mut scratch[..room])?;
            self.buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        });
        if let Ok(n) = got {
            if n > 0 && start == 0 && self.head_deadline.is_none() {
                self.head_deadline = Some(Instant::now() + limits.head_timeout);
            }
        }
        got
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.resume = 0;
    }
}

/// How busy the pool is, as a worker sees it (the queues belong to `pool`).
pub(crate) trait Load {
    /// Any connection, new or with a request ready, is waiting for a worker (fairness: a
    /// pipelining client then goes to the back of the line).
    fn others_waiting(&self) -> bool;
    /// New connections wait in the accept queue (adaptive keep-alive: with every worker busy,
    /// answers say `Connection: close`). Connections with a request ready do not count:
    /// closing keep-alive for them would only make established clients reconnect.
    fn new_waiting(&self) -> bool;
}

/// Serves `conn` until it has no complete request and no ready bytes, or the client stops
/// taking the response.
pub(crate) fn serve(mut conn: Conn, shared: &Shared, load: &dyn Load) -> Next {
    let limits = &shared.config.limits;
    let mut turn = 0u32;
    loop {
        if conn.pending.is_some() {
            match flush(&mut conn, limits, load) {
                // Nothing buffered after a response: park without trying a read. A client
                // that waits for each response cannot have sent the next request yet, so the
                // read would only say "would block"; if bytes did arrive meanwhile, the
                // keeper's registration reports them at once.
                Ok(Flush::Done { keep: true }) if conn.buf.is_empty() => return Next::Park(conn),
                Ok(Flush::Done { keep: true }) => {}
                Ok(Flush::Done { keep: false }) => return close(conn),
                Ok(Flush::Park) => return Next::Park(conn),
                Ok(Flush::Requeue) => return Next::Requeue(conn),
                Err(e) => {
                    log::debug!("{}: write failed: {e}", conn.peer);
                    return Next::Done;
                }
            }
            if !conn.buf.is_empty() && turn >= MAX_REQUESTS_PER_TURN && load.others_waiting() {
                return Next::Requeue(conn);
            }
        }
        if conn.upload.is_some() {
            match drive_upload(&mut conn, shared, load) {
                Drive::Answered => continue,
                Drive::Park => return Next::Park(conn),
                Drive::Requeue => return Next::Requeue(conn),
                Drive::Gone => return Next::Done,
            }
        }
        if !conn.buf.is_empty() {
            match request::parse(&conn.buf, &mut conn.resume, limits) {
                Ok(Parse::Complete { head, len }) => {
                    conn.consume(len);
                    exchange(&mut conn, head, shared, load);
                    turn += 1;
                    continue;
                }
                Ok(Parse::Partial) => {
                    if conn.head_deadline.is_some_and(|d| Instant::now() >= d) {
                        fail(&mut conn, HttpError::HeadTimeout, shared);
                        continue;
                    }
                }
                Err(e) => {
                    fail(&mut conn, e, shared);
                    continue;
                }
            }
        }
        match conn.read_ready(limits) {
            Ok(0) => return Next::Done,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Park(conn),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::debug!("{}: read failed: {e}", conn.peer);
                return Next::Done;
            }
        }
    }
}

/// Where writing the pending response got to.
enum Flush {
    /// Written in full (and logged); keep the connection or not.
    Done { keep: bool },
    /// The client is not taking bytes: park for writability.
    Park,
    /// A turn's worth was sent and others wait for a worker.
    Requeue,
}

/// Writes the pending response as far as the socket allows.
fn flush(conn: &mut Conn, limits: &Limits, load: &dyn Load) -> io::Result<Flush> {
    let Some(pending) = conn.pending.as_mut() else {
        return Ok(Flush::Done { keep: true });
    };
    loop {
        let before = pending.out.body_written();
        let sent = pending.out.pump(&mut conn.stream, TURN_BUDGET);
        let progressed = pending.out.body_written() > before;
        match sent {
            Ok(Sent::Done) => break,
            Ok(Sent::Blocked) => {
                // The stall clock restarts whenever the client takes bytes (nginx
                // `send_timeout` semantics: a slow reader is fine, a stuck one is not).
                if progressed || conn.write_deadline.is_none() {
                    conn.write_deadline = Some(Instant::now() + limits.write_timeout);
                }
                return Ok(Flush::Park);
            }
            Ok(Sent::Budget) if load.others_waiting() => {
                conn.write_deadline = Some(Instant::now() + limits.write_timeout);
                return Ok(Flush::Requeue);
            }
            Ok(Sent::Budget) => {}
            Err(e) => {
                if let Some(p) = conn.pending.take() {
                    log_done(conn.peer, &p);
                }
                return Err(e);
            }
        }
    }
    let Some(done) = conn.pending.take() else {
        return Ok(Flush::Done { keep: true });
    };
    log_done(conn.peer, &done);
    conn.idle_since = Instant::now();
    conn.write_deadline = None;
    conn.head_deadline = if conn.buf.is_empty() {
        None
    } else {
        Some(conn.idle_since + limits.head_timeout)
    };
    Ok(Flush::Done { keep: done.keep })
}

/// The access-log line of a finished (or abandoned) response, with the body bytes that
/// actually went out.
fn log_done(peer: SocketAddr, p: &Pending) {
    if let Some(info) = &p.log {
        access_log(peer, info, p.status, p.out.body_written(), p.start);
    }
}

/// Ends a connection after a response that said `Connection: close`.
fn close(conn: Conn) -> Next {
    if conn.buf.is_empty() && !conn.unread_input {
        // Nothing unread on our side: a plain close sends FIN, not RST (and saves the
        // shutdown call, one system call per `Connection: close` request).
        return Next::Done;
    }
    let _ = conn.stream.shutdown(Half::Write);
    Next::Linger(conn.into_linger())
}

/// Answers a request we could not parse (or whose head took too long) and closes: its
/// framing is unknown, so nothing after it can be trusted (RFC 9112 §9.6, and the tiny_http
/// lesson). The close lingers so that the client reads the answer rather than a reset.
fn fail(conn: &mut Conn, err: HttpError, shared: &Shared) {
    let status = err.status();
    log::debug!("{}: {err:?}", conn.peer);
    shared.requests.fetch_add(1, Ordering::Relaxed);
    conn.unread_input = true;
    conn.pending = Some(Box::new(Pending {
        out: canned(status, false, Some("close"), &[]),
        status,
        log: LogInfo::new(shared.config.access_log, None),
        start: Instant::now(),
        keep: false,
    }));
}

/// A generated status page as an [`Outgoing`].
fn canned(
    status: Status,
    head_only: bool,
    connection: Option<&str>,
    extra: &[(&str, &str)],
) -> Outgoing {
    let (bytes, body) = response::status_response(status, head_only, connection, extra);
    let head_len = bytes.len() - body as usize;
    Outgoing::bytes(bytes, head_len)
}

/// Answers one parsed request: decides keep-alive, builds the response and leaves it in
/// `conn.pending` for [`flush`].
fn exchange(conn: &mut Conn, head: RequestHead, shared: &Shared, load: &dyn Load) {
    let start = Instant::now();
    let limits = &shared.config.limits;
    conn.requests += 1;
    shared.requests.fetch_add(1, Ordering::Relaxed);

    let mut put_error = None;
    if head.method == Method::Put && shared.config.allow_write {
        match begin_put(conn, &head, shared, load, start) {
            Ok(()) => return, // the body is read by `drive_upload`
            Err(e) => put_error = Some(e),
        }
    }

    // RFC 9112 §6.3: a body we will not use must still be consumed, or it would be read as
    // the next request. A small one already buffered is skipped; otherwise we close after
    // answering, which is always allowed.
    let mut body_left = false;
    if head.framing != BodyFraming::None {
        match BodyDiscarder::new(head.framing, MAX_DISCARD_BODY) {
            Ok(mut d) => match d.feed(&conn.buf) {
                Ok((n, done)) => {
                    conn.consume(n);
                    body_left = !done;
                }
                Err(_) => body_left = true,
            },
            Err(_) => body_left = true,
        }
    }

    let keep_alive = head.keep_alive
        && !body_left
        && conn.requests < limits.max_requests
        && !shared.shutdown.is_triggered()
        && !(load.new_waiting()
            && shared.busy_workers.load(Ordering::Relaxed) >= shared.config.workers);

    if let Some(gate) = &shared.config.hold {
        gate.wait_if(&head.path);
    }
    let reply = match put_error {
        Some(e) => Ok(send_error(conn, &head, e, keep_alive)),
        None => respond(conn, &head, keep_alive, shared),
    };
    let (status, out, keep) = match reply {
        Ok(response) => response,
        Err(e) => {
            // Reading a small file into the response failed after it was opened.
            log::error!("{}: cannot read {:?}: {e}", conn.peer, head.target);
            let status = Status::InternalServerError;
            let head_only = head.method == Method::Head;
            (status, canned(status, head_only, Some("close"), &[]), false)
        }
    };
    let log = if is_health_probe(&head, shared) {
        log::debug!("{} health probe: {}", conn.peer, status.code());
        None
    } else {
        LogInfo::new(shared.config.access_log, Some(&head))
    };
    conn.unread_input |= body_left;
    conn.pending = Some(Box::new(Pending {
        out,
        status,
        log,
        start,
        keep,
    }));
}

/// A response head with no content (201/204 and OPTIONS).
fn no_body(h: Head) -> Outgoing {
    let bytes = h.finish();
    let len = bytes.len();
    Outgoing::bytes(bytes, len)
}

/// An upload and what its answer needs.
#[derive(Debug)]
pub(crate) struct PutState {
    upload: Upload,
    target: std::path::PathBuf,
    answer: PutAnswer,
    /// Owned copies of the precondition fields, evaluated again at commit.
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_unmodified_since: Option<String>,
    /// No body progress by then: 408 (the head timeout, applied to each stall).
    deadline: Instant,
}

/// What the answer to a PUT needs from its request.
#[derive(Debug)]
struct PutAnswer {
    version: Version,
    keep: bool,
    log: Option<LogInfo>,
    start: Instant,
}

/// The write preconditions of a request, borrowed from owned fields.
fn write_preconditions<'a>(
    if_match: Option<&'a str>,
    if_none_match: Option<&'a str>,
    if_unmodified_since: Option<&'a str>,
) -> Preconditions<'a> {
    Preconditions {
        if_match,
        if_none_match,
        if_modified_since: None,
        if_unmodified_since,
        if_range: None,
        range: None,
    }
}

/// The current ETag and mtime of the file at `path`, if it is a regular file.
fn current_validators(path: &Path) -> Option<(String, Option<SystemTime>)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| {
        let modified = meta.modified().ok();
        (conditional::etag(meta.len(), modified), modified)
    })
}

/// The target of a PUT or DELETE: the GET path rules ([`resolve::resolve_write`]), and
/// never the health endpoint, which is not a file.
fn write_target(head: &RequestHead, shared: &Shared) -> Result<resolve::WriteTarget, HttpError> {
    let config = &shared.config;
    if config.health_path.as_deref() == Some(head.path.as_str()) {
        return Err(HttpError::Forbidden);
    }
    let opts = ResolveOptions {
        hidden: config.hidden,
    };
    resolve::resolve_write(&config.root, &head.path, &opts)
}

/// The write preconditions a request carries.
fn head_preconditions(head: &RequestHead) -> Preconditions<'_> {
    let h = &head.headers;
    write_preconditions(
        h.get("if-match"),
        h.get("if-none-match"),
        h.get("if-unmodified-since"),
    )
}

/// Evaluates write preconditions against the file at `path` as it is now: whether a file
/// exists there, or 412.
fn check_write(pre: &Preconditions, path: &Path) -> Result<bool, HttpError> {
    let current = current_validators(path);
    if conditional::write_allowed(pre, current.as_ref().map(|(t, m)| (t.as_str(), *m))) {
        Ok(current.is_some())
    } else {
        Err(HttpError::PreconditionFailed)
    }
}

/// Checks a PUT (path, preconditions, size) and starts its upload: `Expect: 100-continue`
/// is answered only now, so a client whose upload would be refused never sends the body.
fn begin_put(
    conn: &mut Conn,
    head: &RequestHead,
    shared: &Shared,
    load: &dyn Load,
    start: Instant,
) -> Result<(), HttpError> {
    let config = &shared.config;
    let target = write_target(head, shared)?;
    let h = &head.headers;
    check_write(&head_preconditions(head), &target.path)?;
    let mode = if h.get("if-none-match") == Some("*") {
        Commit::CreateOnly
    } else {
        Commit::Replace
    };
    // `Content-Length: 0` parses as "no body"; for a PUT it is an empty file, not a missing
    // length (411 is only for no framing at all).
    let framing = match head.framing {
        BodyFraming::None if h.get("content-length").is_some() => BodyFraming::Length(0),
        framing => framing,
    };
    let upload = Upload::begin(&target, framing, config.max_upload, mode)?;
    if head.expect_continue {
        // 25 bytes into an idle socket's empty buffer: never blocks in practice, and if the
        // client cannot take even that, it will not send the body either.
        let _ = (&conn.stream).write(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    // The same keep-alive rule as every other request (adaptive under load included).
    let keep = head.keep_alive
        && conn.requests < config.limits.max_requests
        && !(load.new_waiting() && shared.busy_workers.load(Ordering::Relaxed) >= config.workers);
    conn.upload = Some(Box::new(PutState {
        upload,
        target: target.path,
        answer: PutAnswer {
            version: head.version,
            keep,
            log: LogInfo::new(config.access_log, Some(head)),
            start,
        },
        if_match: h.get("if-match").map(str::to_string),
        if_none_match: h.get("if-none-match").map(str::to_string),
        if_unmodified_since: h.get("if-unmodified-since").map(str::to_string),
        deadline: Instant::now() + config.limits.head_timeout,
    }));
    Ok(())
}

/// Where an upload got to.
enum Drive {
    /// Finished or refused: its answer is pending.
    Answered,
    /// Waiting for more of the body.
    Park,
    /// A turn's worth of body was taken and others wait for a worker.
    Requeue,
    /// The client went away (the temporary file is gone with the upload).
    Gone,
}

/// Feeds the body bytes that have arrived into the upload, reading what is there without
/// waiting; commits and answers when the body is complete.
fn drive_upload(conn: &mut Conn, shared: &Shared, load: &dyn Load) -> Drive {
    let limits = &shared.config.limits;
    let mut taken = 0u64;
    loop {
        // Fed even with nothing buffered: an empty body (`Content-Length: 0`) is complete
        // before any byte arrives.
        {
            let Some(state) = conn.upload.as_mut() else {
                return Drive::Answered;
            };
            match state.upload.feed(&conn.buf) {
                Ok((n, done)) => {
                    if n > 0 {
                        state.deadline = Instant::now() + limits.head_timeout;
                    }
                    conn.consume(n);
                    taken += n as u64;
                    if done {
                        finish_put(conn, shared);
                        return Drive::Answered;
                    }
                }
                Err(e) => {
                    // Malformed or too large: what follows cannot be trusted; answer, close.
                    let Some(state) = conn.upload.take() else {
                        return Drive::Answered;
                    };
                    conn.unread_input = true;
                    answer_put(conn, state.answer, Err(e), shared);
                    return Drive::Answered;
                }
            }
        }
        // Fairness, as for downloads: a fast uploader yields its worker every turn's worth.
        if taken >= TURN_BUDGET && load.others_waiting() {
            return Drive::Requeue;
        }
        match conn.read_ready(limits) {
            Ok(0) => {
                log::debug!("{}: upload aborted by the client", conn.peer);
                conn.upload = None;
                return Drive::Gone;
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drive::Park,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.upload = None;
                return Drive::Gone;
            }
        }
    }
}

/// Commits a complete upload (preconditions checked again, under the write lock, against
/// the file the rename replaces) and answers 201 or 204.
fn finish_put(conn: &mut Conn, shared: &Shared) {
    let Some(state) = conn.upload.take() else {
        return;
    };
    let PutState {
        upload,
        target,
        answer,
        if_match,
        if_none_match,
        if_unmodified_since,
        ..
    } = *state;
    let check = || {
        let pre = write_preconditions(
            if_match.as_deref(),
            if_none_match.as_deref(),
            if_unmodified_since.as_deref(),
        );
        check_write(&pre, &target)
    };
    let result = upload.commit(&shared.write_lock, check);
    // The cache is keyed by request path, and one file has many (`/%61.txt`, `//a.txt`, the
    // directory URL of an `index.html`, the original of a sidecar): forget them all.
    shared.cache.clear();
    answer_put(conn, answer, result, shared);
}

/// The answer to a PUT: 201 (created) or 204 (replaced), or the error's status.
fn answer_put(conn: &mut Conn, state: PutAnswer, result: Result<bool, HttpError>, shared: &Shared) {
    let keep = state.keep && !conn.unread_input && !shared.shutdown.is_triggered();
    let (status, out, keep) = match result {
        Ok(created) => {
            let status = if created {
                Status::Created
            } else {
                Status::NoContent
            };
            let mut h = Head::new(status);
            if created {
                h.header("Content-Length", 0u64);
            }
            connection_header(&mut h, state.version, keep);
            (status, no_body(h), keep)
        }
        Err(e) => error_reply(&e, state.version, false, keep, &[]),
    };
    conn.idle_since = Instant::now();
    conn.pending = Some(Box::new(Pending {
        out,
        status,
        log: state.log,
        start: state.start,
        keep,
    }));
}

/// DELETE (`--allow-write`): a regular file under the root, by the same path rules, never a
/// directory, a link or a hidden name; `If-Match` and friends apply.
fn delete(head: &RequestHead, shared: &Shared) -> Result<(), HttpError> {
    let target = write_target(head, shared)?;
    let pre = head_preconditions(head);
    let _guard = shared.write_lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some((etag, modified)) = current_validators(&target.path) else {
        return Err(HttpError::NotFound);
    };
    if !conditional::write_allowed(&pre, Some((&etag, modified))) {
        return Err(HttpError::PreconditionFailed);
    }
    std::fs::remove_file(&target.path).map_err(|e| HttpError::from_fs(&e))?;
    shared.cache.clear(); // every path that named it (see `finish_put`)
    Ok(())
}

/// The `Connection` field value for a response (RFC 9112 §9.6): `close` whenever we will
/// close; `keep-alive` for an HTTP/1.0 client that asked for it.
fn connection_value(version: Version, keep: bool) -> Option<&'static str> {
    match (keep, version) {
        (false, _) => Some("close"),
        (true, Version::Http10) => Some("keep-alive"),
        (true, Version::Http11) => None,
    }
}

/// Adds `Connection` to a response head when [`connection_value`] says one is due.
fn connection_header(out: &mut Head, version: Version, keep: bool) {
    if let Some(c) = connection_value(version, keep) {
        out.header("Connection", c);
    }
}

/// A GET or HEAD of the health path: answered by [`send_health`] and logged at debug only
/// (other methods there are ordinary requests: 405, in the access log).
fn is_health_probe(head: &RequestHead, shared: &Shared) -> bool {
    matches!(head.method, Method::Get | Method::Head)
        && shared.config.health_path.as_deref() == Some(head.path.as_str())
}

/// What a responder produces: the status (for the log), the response, and whether the
/// connection stays open after it.
type Reply = (Status, Outgoing, bool);

/// Builds the response to `head`.
fn respond(conn: &Conn, head: &RequestHead, keep: bool, shared: &Shared) -> io::Result<Reply> {
    let head_only = head.method == Method::Head;
    let allow = if shared.config.allow_write {
        ALLOW_WRITE
    } else {
        ALLOW
    };
    match head.method {
        Method::Get | Method::Head => {}
        Method::Options => {
            // RFC 9110 §9.3.7: OPTIONS (on a path or `*`) lists what we allow; 204 has no
            // Content-Length (RFC 9110 §8.6).
            let mut h = Head::new(Status::NoContent);
            h.header("Allow", allow);
            connection_header(&mut h, head.version, keep);
            return Ok((Status::NoContent, no_body(h), keep));
        }
        Method::Delete if shared.config.allow_write => {
            return Ok(match delete(head, shared) {
                Ok(()) => {
                    let mut h = Head::new(Status::NoContent);
                    connection_header(&mut h, head.version, keep);
                    (Status::NoContent, no_body(h), keep)
                }
                Err(e) => send_error(conn, head, e, keep),
            });
        }
        _ => {
            // RFC 9110 §15.5.6: 405 lists the methods the resource does allow.
            return Ok(error_reply(
                &HttpError::MethodNotAllowed,
                head.version,
                head.method == Method::Head,
                keep,
                &[("Allow", allow)],
            ));
        }
    }
    if is_health_probe(head, shared) {
        return Ok(send_health(head, keep, shared));
    }
    // Before the lookup and the resolve: see `FileCache::epoch`.
    let epoch = shared.cache.epoch();
    match shared.cache.lookup(&head.path) {
        Lookup::File(entry) => return send_cached(conn, head, entry, keep),
        Lookup::Missing => return send_not_found(conn, head, keep, shared),
        Lookup::Unknown => {}
    }
    let opts = ResolveOptions {
        hidden: shared.config.hidden,
    };
    match resolve::resolve(
        &shared.config.root,
        &head.path,
        head.query.as_deref(),
        &opts,
    ) {
        Ok(Resolved::File(file)) => send_file(
            conn,
            head,
            file,
            &shared.config.root,
            keep,
            Some((&shared.cache, epoch)),
        ),
        Ok(Resolved::Redirect(location)) => {
            let status = Status::MovedPermanently;
            let out = canned(
                status,
                head_only,
                connection_value(head.version, keep),
                &[("Location", &location)],
            );
            Ok((status, out, keep))
        }
        Err(HttpError::NotFound) => {
            shared.cache.insert_missing(&head.path, epoch);
            send_not_found(conn, head, keep, shared)
        }
        Err(e) => Ok(send_error(conn, head, e, keep)),
    }
}

/// A path that resolves to nothing: the `--fallback` page (200) for an extensionless path,
/// else the `--404` page, else the built-in 404. A configured page that cannot be opened
/// now (deleted after start-up) is logged and the built-in answer is sent instead.
fn send_not_found(
    conn: &Conn,
    head: &RequestHead,
    keep: bool,
    shared: &Shared,
) -> io::Result<Reply> {
    let config = &shared.config;
    if let Some(path) = config.fallback.as_deref() {
        if !resolve::has_extension(&head.path) {
            match resolve::open_page(path) {
                // Its precompressed sidecars count when they sit beside it.
                Ok(file) => {
                    let dir = path.parent().unwrap_or(path);
                    return send_file(conn, head, file, dir, keep, None);
                }
                Err(e) => log::warn!("--fallback {}: {e:?}", path.display()),
            }
        }
    }
    if let Some(path) = config.not_found_page.as_deref() {
        match resolve::open_page(path) {
            Ok(page) => {
                let mut out = Head::new(Status::NotFound);
                out.header("Content-Type", crate::mime::content_type(&page.path))
                    .header("Content-Length", page.len)
                    .header("X-Content-Type-Options", "nosniff");
                connection_header(&mut out, head.version, keep);
                let head_only = head.method == Method::Head;
                let out = Outgoing::file(out.finish(), page.file, 0, page.len, head_only)?;
                return Ok((Status::NotFound, out, keep));
            }
            Err(e) => log::warn!("--404 {}: {e:?}", path.display()),
        }
    }
    Ok(send_error(conn, head, HttpError::NotFound, keep))
}

/// The health endpoint: 200 `ok` while serving, 503 `draining` from the first stop signal
/// (so a load balancer takes this replica out before connections start closing). Never
/// cached; logged at debug only, so probes do not flood the access log.
fn send_health(head: &RequestHead, keep: bool, shared: &Shared) -> Reply {
    let (status, body) = if shared.shutdown.is_announced() {
        (Status::ServiceUnavailable, "draining\n")
    } else {
        (Status::Ok, "ok\n")
    };
    let mut out = Head::new(status);
    out.header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store");
    connection_header(&mut out, head.version, keep);
    let mut bytes = out.finish();
    let head_len = bytes.len();
    if head.method != Method::Head {
        bytes.extend_from_slice(body.as_bytes());
    }
    (status, Outgoing::bytes(bytes, head_len), keep)
}

/// The representation chosen for a request: the file or one of its precompressed sidecars,
/// read from disk or from the small-file cache.
struct Chosen {
    len: u64,
    modified: Option<SystemTime>,
    etag: String,
    coding: Option<Coding>,
    /// Sidecars exist, so every answer says `Vary: Accept-Encoding`.
    has_variants: bool,
    content_type: &'static str,
    body: Source,
}

/// Where a representation's bytes come from.
enum Source {
    File(File),
    /// A cached file and the index of the representation in [`Cached::reps`].
    Memory(Arc<Cached>, usize),
}

/// The client's choice among `available` sidecars ([`encoding::choose`]).
fn choose_coding(head: &RequestHead, available: &[Coding]) -> Option<Coding> {
    if available.is_empty() {
        return None;
    }
    let accept = join_fields(&head.headers, "accept-encoding");
    encoding::choose(accept.as_deref(), available)
}

/// Serves an opened file: when precompressed sidecars exist (`FILE.br`, `FILE.gz`, which
/// must lie inside `root`), the client's `Accept-Encoding` picks one; the chosen file is then
/// the representation: its own length, validators and ranges, the original's Content-Type,
/// and `Content-Encoding`. Small files (and sidecars) go into the cache on the way.
fn send_file(
    conn: &Conn,
    head: &RequestHead,
    file: resolve::FileInfo,
    root: &Path,
    keep: bool,
    cache: Option<(&FileCache, u64)>,
) -> io::Result<Reply> {
    let content_type = crate::mime::content_type(&file.path);
    let available = resolve::variants(&file);
    if let Some((cache, epoch)) = cache.filter(|(c, _)| c.enabled() && cache::cacheable(file.len)) {
        if let Some(entry) = load(root, &file, &available, content_type)? {
            let entry = cache.insert(&head.path, entry, epoch);
            return send_cached(conn, head, entry, keep);
        }
    }
    let (rep, coding) = match choose_coding(head, &available) {
        Some(coding) => match resolve::open_variant(root, &file, coding) {
            Ok(variant) => (variant, Some(coding)),
            Err(e) => {
                log::debug!("{}: variant {coding:?} unusable: {e:?}", conn.peer);
                (file, None)
            }
        },
        None => (file, None),
    };
    let etag = match coding {
        Some(c) => conditional::variant_etag(rep.len, rep.modified, c.token()),
        None => conditional::etag(rep.len, rep.modified),
    };
    let chosen = Chosen {
        len: rep.len,
        modified: rep.modified,
        etag,
        coding,
        has_variants: !available.is_empty(),
        content_type,
        body: Source::File(rep.file),
    };
    send_chosen(conn, head, chosen, keep)
}

/// Reads a small file and its sidecars into a cache entry; `None` when a sidecar is too
/// large to cache or cannot be opened (then the file is served from disk).
fn load(
    root: &Path,
    file: &resolve::FileInfo,
    available: &[Coding],
    content_type: &'static str,
) -> io::Result<Option<Cached>> {
    let mut reps = Vec::with_capacity(1 + available.len());
    for coding in available {
        let Ok(v) = resolve::open_variant(root, file, *coding) else {
            return Ok(None);
        };
        if !cache::cacheable(v.len) {
            return Ok(None);
        }
        reps.push(CachedRep {
            coding: Some(*coding),
            bytes: read_all(&v.file, v.len)?,
            modified: v.modified,
            etag: conditional::variant_etag(v.len, v.modified, coding.token()),
        });
    }
    reps.insert(
        0,
        CachedRep {
            coding: None,
            bytes: read_all(&file.file, file.len)?,
            modified: file.modified,
            etag: conditional::etag(file.len, file.modified),
        },
    );
    Ok(Some(Cached::new(content_type, reps)))
}

/// Reads exactly `len` bytes from the start of `file` (a shorter file is an error: it
/// changed under us, and the next revalidation will see it).
fn read_all(file: &File, len: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// Serves a cached file: the same negotiation and preconditions as [`send_file`], from memory.
fn send_cached(
    conn: &Conn,
    head: &RequestHead,
    entry: Arc<Cached>,
    keep: bool,
) -> io::Result<Reply> {
    let codings = entry.codings();
    let coding = choose_coding(head, &codings);
    let index = entry
        .reps
        .iter()
        .position(|r| r.coding == coding)
        .unwrap_or(0);
    let rep = &entry.reps[index];
    let chosen = Chosen {
        len: rep.bytes.len() as u64,
        modified: rep.modified,
        etag: rep.etag.clone(),
        coding: rep.coding,
        has_variants: !codings.is_empty(),
        content_type: entry.content_type,
        body: Source::Memory(Arc::clone(&entry), index),
    };
    send_chosen(conn, head, chosen, keep)
}

/// Answers with a chosen representation as RFC 9110 §13 and §14 say: conditionals first,
/// then ranges. Every answer about it carries its validators (ETag, Last-Modified) and
/// `Accept-Ranges`; every answer about a file with sidecars says `Vary: Accept-Encoding`
/// (RFC 9110 §12.5.5), identity ones included, so caches keep the variants apart.
fn send_chosen(conn: &Conn, head: &RequestHead, c: Chosen, keep: bool) -> io::Result<Reply> {
    let head_only = head.method == Method::Head;
    let vary: &[(&str, &str)] = if c.has_variants {
        &[("Vary", "Accept-Encoding")]
    } else {
        &[]
    };
    let h = &head.headers;
    let pre = Preconditions {
        if_match: h.get("if-match"),
        if_none_match: h.get("if-none-match"),
        if_modified_since: h.get("if-modified-since"),
        if_unmodified_since: h.get("if-unmodified-since"),
        if_range: h.get("if-range"),
        range: h.get("range"),
    };
    let plan = conditional::evaluate(&pre, true, &c.etag, c.modified, c.len);
    let status = match &plan {
        Plan::Full => Status::Ok,
        Plan::NotModified => Status::NotModified,
        Plan::PreconditionFailed => {
            return Ok(send_error(conn, head, HttpError::PreconditionFailed, keep))
        }
        Plan::Partial(_) | Plan::Multipart(_) => Status::PartialContent,
        Plan::Unsatisfiable => {
            let range = format!("bytes */{}", c.len);
            let status = Status::RangeNotSatisfiable;
            let out = canned(
                status,
                head_only,
                connection_value(head.version, keep),
                &[&[("Content-Range", range.as_str())], vary].concat(),
            );
            return Ok((status, out, keep));
        }
    };
    let mut out = Head::new(status);
    out.header("ETag", &c.etag);
    if let Some(modified) = c.modified {
        out.header("Last-Modified", HttpDate(modified));
    }
    for (name, value) in vary {
        out.header(name, value);
    }
    // RFC 9110 §15.4.5: a 304 carries the validators and Vary, no content metadata.
    if status != Status::NotModified {
        out.header("Accept-Ranges", "bytes")
            .header("X-Content-Type-Options", "nosniff");
        if let Some(coding) = c.coding {
            out.header("Content-Encoding", coding.token());
        }
    }
    connection_header(&mut out, head.version, keep);
    let body = match plan {
        Plan::NotModified => no_body(out),
        Plan::Partial(range) => {
            out.header("Content-Type", c.content_type)
                .header("Content-Length", range.len())
                .header("Content-Range", range.content_range(c.len));
            body_range(out.finish(), c.body, range.start, range.len(), head_only)?
        }
        Plan::Multipart(ranges) => {
            let boundary = conditional::boundary(&c.etag);
            let layout = conditional::multipart_layout(&ranges, c.len, c.content_type, &boundary);
            out.header(
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            )
            .header("Content-Length", layout.total_len);
            match c.body {
                Source::File(file) => Outgoing::multipart(out.finish(), file, layout, head_only),
                Source::Memory(entry, i) => {
                    let mut bytes = out.finish();
                    let head_len = bytes.len();
                    if !head_only {
                        let data = &entry.reps[i].bytes;
                        for (part_head, r) in &layout.parts {
                            bytes.extend_from_slice(part_head);
                            bytes.extend_from_slice(&data[r.start as usize..=r.end as usize]);
                        }
                        bytes.extend_from_slice(&layout.trailer);
                    }
                    Outgoing::bytes(bytes, head_len)
                }
            }
        }
        _ => {
            out.header("Content-Type", c.content_type)
                .header("Content-Length", c.len);
            body_range(out.finish(), c.body, 0, c.len, head_only)?
        }
    };
    Ok((status, body, keep))
}

/// `head` then `len` bytes of the representation from `start`.
fn body_range(
    head: Vec<u8>,
    body: Source,
    start: u64,
    len: u64,
    head_only: bool,
) -> io::Result<Outgoing> {
    match body {
        Source::File(file) => Outgoing::file(head, file, start, len, head_only),
        Source::Memory(entry, i) => {
            let from = start as usize;
            let to = if head_only { from } else { from + len as usize };
            Ok(Outgoing::shared(head, entry, i, from, to))
        }
    }
}

/// All field lines of a list-valued field joined with commas (RFC 9110 §5.3), or `None`.
fn join_fields(headers: &request::Headers, name: &str) -> Option<String> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    Some(values.fold(first.to_string(), |mut all, v| {
        all.push(',');
        all.push_str(v);
        all
    }))
}

/// The answer for a request error, through the one status mapping in [`HttpError::status`].
fn send_error(conn: &Conn, head: &RequestHead, err: HttpError, keep: bool) -> Reply {
    if err == HttpError::Internal {
        log::error!("{}: internal error serving {:?}", conn.peer, head.target);
    }
    error_reply(&err, head.version, head.method == Method::Head, keep, &[])
}

/// The generated page for `err` (its one status, [`HttpError::status`]), with `Connection:
/// close` when the error leaves the framing unknown.
fn error_reply(
    err: &HttpError,
    version: Version,
    head_only: bool,
    keep: bool,
    extra: &[(&str, &str)],
) -> Reply {
    let status = err.status();
    let keep = keep && !err.closes_connection();
    let out = canned(status, head_only, connection_value(version, keep), extra);
    (status, out, keep)
}

fn request_line(head: &RequestHead) -> String {
    let version = match head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    format!("{} {} {version}", head.method.as_str(), head.target)
}

/// Writes one access-log line to stdout (see [`access`]). stdout is line-buffered, so the
/// line goes out in one `write`; a failed write (stdout closed) is ignored: the log must not
/// cost a request.
fn access_log(peer: SocketAddr, info: &LogInfo, status: Status, bytes: u64, start: Instant) {
    let record = access::Record {
        peer,
        time: info.time,
        request: &info.request,
        status: status.code(),
        bytes,
        referer: info.referer.as_deref(),
        user_agent: info.user_agent.as_deref(),
        duration: start.elapsed(),
    };
    LOG_LINE.with_borrow_mut(|line| {
        line.clear();
        access::format_into(info.format, &record, line);
        let _ = io::stdout().lock().write_all(line);
    });
}

/// The keeper's verdict on a connection whose deadline passed while parked: a partial head
/// gets 408 (RFC 9110 §15.5.9) and a lingering close; a fresh or idle connection is closed
/// quietly, as nginx does for keep-alive; a response stalled longer than the write timeout is
/// abandoned (logged with the bytes that went out). The socket is non-blocking, so the keeper
/// never waits on the 408: a client that does not even read 200 bytes loses it.
pub(crate) fn expire(mut conn: Conn, format: access::Format) -> Option<Lingering> {
    match conn.waiting() {
        Waiting::Head => {}
        Waiting::Body => {
            log::debug!("{}: upload stalled, 408", conn.peer);
            conn.upload = None; // removes the temporary file
        }
        Waiting::Write => {
            if let Some(p) = conn.pending.take() {
                log::debug!("{}: write stalled, closing", conn.peer);
                log_done(conn.peer, &p);
            }
            return None;
        }
        Waiting::Fresh | Waiting::Idle => return None,
    }
    let start = Instant::now();
    let status = HttpError::HeadTimeout.status();
    let (bytes, body) = response::status_response(status, false, Some("close"), &[]);
    let complete = (&conn.stream).write(&bytes).is_ok_and(|n| n == bytes.len());
    if let Some(info) = LogInfo::new(format, None) {
        access_log(
            conn.peer,
            &info,
            status,
            if complete { body } else { 0 },
            start,
        );
    }
    let _ = conn.stream.shutdown(Half::Write);
    complete.then(|| conn.into_linger())
}
