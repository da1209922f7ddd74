//! One connection's life while a worker holds it: read what is there without waiting, answer
//! every complete request in the buffer (pipelining, in order), and hand the connection back
//! as soon as no bytes are ready or the client stops taking bytes, so that a worker never
//! waits on a quiet client or a slow reader.
//!
//! A held connection is in one [`Phase`]: reading a head (or idle, with nothing buffered),
//! writing a response, or receiving an upload's body. [`serve`] drives the phases in a loop:
//! a complete head goes to [`handler::answer`] (what to reply is the handler's business) and
//! the reply becomes the pending response; a PUT that may start becomes an upload, after a
//! `100 Continue` when the client asked for one. Every byte leaves through the same resumable
//! [`Outgoing`], so when the socket would block the connection parks with the keeper for
//! writability and resumes on any worker exactly where it stopped.
//!
//! The socket is non-blocking from accept to close. Deadlines (head, keep-alive idle, write
//! stall, upload stall) are kept by the keeper, not by socket timeouts ([`Conn::deadline`]).
//! The keep-alive rule is written once, [`KeepAlive::decide`], and only narrowed afterwards.
//! Only this module and the keeper touch client sockets; only this module knows about
//! keep-alive.

use std::io::{self, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::access::Entry;
use crate::body::BodyDiscarder;
use crate::config::{Limits, MAX_DISCARD_BODY};
use crate::error::HttpError;
use crate::handler::{self, Reply, CONTINUE};
use crate::keeper::{Lingering, Ticket};
use crate::metrics::{self, Timeout};
use crate::outgoing::{Outgoing, Sent, TURN_BUDGET};
use crate::request::{self, BodyFraming, Method, Parse, RequestHead, Version};
use crate::response::{self, Status};
use crate::state::{OpenGuard, Shared};
use crate::upload::Put;

/// Requests one connection may have answered in a row while other connections wait for a
/// worker; then it goes to the back of the line (fairness for pipelining clients).
const MAX_REQUESTS_PER_TURN: u32 = 8;

thread_local! {
    /// Each worker's read buffer (one maximal head), zeroed once, reused for every read.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A client connection and everything that must survive between two requests.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes received and not yet consumed: a partial head, pipelined requests, or body.
    buf: Vec<u8>,
    /// Where the parser resumes its scan for the end of the head.
    resume: usize,
    /// Deadline of the head being received (from accept for a new connection).
    head_deadline: Option<Instant>,
    /// When the last response was finished (start of keep-alive idle time).
    idle_since: Instant,
    /// Requests answered on this connection.
    requests: u32,
    /// What the connection is doing.
    phase: Phase,
    /// The client may still be sending bytes we did not read (a body we skipped), so a
    /// close must linger.
    unread_input: bool,
    /// The keeper saw the client's end of stream with the readiness that sent this
    /// connection to a worker (see [`Conn::note_read_closed`]).
    read_closed: bool,
    /// Its place with the keeper, from its first park until it closes (see [`Ticket`]).
    ticket: Option<Ticket>,
    _open: OpenGuard,
}

/// What a held connection is doing. The write and body phases are boxed: a parked or queued
/// connection stays small when it has nothing to send.
#[derive(Debug)]
enum Phase {
    /// Reading a request head; idle between requests while nothing is buffered.
    Head,
    /// Writing a response, or the `100 Continue` before an upload's body.
    Write(Box<Pending>),
    /// Receiving an upload's body (`--allow-write`).
    Body(Box<Receiving>),
}

/// Bytes on their way out and what to do once they are written.
#[derive(Debug)]
struct Pending {
    out: Outgoing,
    /// When the client must have taken more bytes (restarted whenever it takes some).
    stall: Option<Instant>,
    then: Then,
}

/// What follows a written [`Pending`].
#[derive(Debug)]
enum Then {
    /// A final response: log it, then keep the connection or close it.
    Finish(Finish),
    /// The interim `100 Continue`: then receive the body.
    Receive(Box<Receiving>),
}

/// A final response's log entry and keep-alive verdict.
#[derive(Debug)]
struct Finish {
    status: Status,
    /// The request's method as the metrics count it ([`metrics::method_index`]).
    method: usize,
    /// When its head was complete.
    start: Instant,
    /// `None` for health probes (logged at debug) and when the access log is off.
    log: Option<Entry>,
    /// Keep the connection open afterwards.
    keep: bool,
}

/// An upload whose body is arriving, and what its answer needs.
#[derive(Debug)]
struct Receiving {
    put: Put,
    version: Version,
    keep: KeepAlive,
    log: Option<Entry>,
    /// When the upload's head was complete (its duration in the metrics).
    start: Instant,
    /// No body progress by then: 408 (the head timeout, applied to each stall).
    deadline: Instant,
}

/// Whether the connection stays open after the answer to the current request: decided once
/// per request by [`KeepAlive::decide`], then only ever narrowed.
#[derive(Debug, Clone, Copy)]
struct KeepAlive(bool);

impl KeepAlive {
    /// The keep-alive rule. The client's wish (RFC 9112 §9.3: the version's default and its
    /// `Connection` field, parsed into [`RequestHead::keep_alive`]), the per-connection
    /// request cap, and adaptive keep-alive: with every worker busy and new connections
    /// waiting, answers say `Connection: close` so that clients come back through the queue
    /// in turn. Then everything [`KeepAlive::recheck`] narrows by.
    fn decide(head: &RequestHead, conn: &Conn, shared: &Shared, load: &dyn Load) -> KeepAlive {
        let config = &shared.config;
        let saturated =
            load.new_waiting() && shared.busy_workers.load(Ordering::Relaxed) >= config.workers;
        let mut keep =
            KeepAlive(head.keep_alive && conn.requests < config.limits.max_requests && !saturated);
        keep.recheck(conn, shared);
        keep
    }

    /// Narrows by what may change while a request is answered: input left unread (the
    /// framing of what follows is unknown, RFC 9112 §6.3) or a drain that began.
    fn recheck(&mut self, conn: &Conn, shared: &Shared) {
        self.0 &= !conn.unread_input && !shared.shutdown.is_triggered();
    }

    fn get(self) -> bool {
        self.0
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
    /// Wraps a freshly accepted socket, which the acceptor made non-blocking for good (its
    /// `accept4`); its head deadline runs from here, before the first read (the keeper
    /// enforces it). `TCP_NODELAY` comes from the listener on Linux, and is set here elsewhere.
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        shared: &std::sync::Arc<Shared>,
    ) -> io::Result<Conn> {
        let limits = &shared.config.limits;
        #[cfg(not(target_os = "linux"))]
        stream.set_nodelay(true)?;
        let now = Instant::now();
        Ok(Conn {
            stream,
            peer,
            buf: Vec::new(),
            resume: 0,
            head_deadline: Some(now + limits.head_timeout),
            idle_since: now,
            requests: 0,
            phase: Phase::Head,
            unread_input: false,
            read_closed: false,
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
        match self.phase {
            Phase::Write(_) => Waiting::Write,
            Phase::Body(_) => Waiting::Body,
            Phase::Head if !self.buf.is_empty() => Waiting::Head,
            Phase::Head if self.requests == 0 => Waiting::Fresh,
            Phase::Head => Waiting::Idle,
        }
    }

    /// What a deadline passing now would end, as the metrics count it.
    pub fn timeout_kind(&self) -> Timeout {
        match self.waiting() {
            Waiting::Fresh => Timeout::Silent,
            Waiting::Idle => Timeout::Idle,
            Waiting::Head => Timeout::Head,
            Waiting::Body => Timeout::Body,
            Waiting::Write => Timeout::Write,
        }
    }

    /// Records that the readiness event that woke this connection also reported the
    /// client's end of stream. The socket is edge-triggered: when a request and the FIN
    /// arrive together (a client that half-closes after its request), the read that takes
    /// the request uses up the only event, and the end of stream is seen by a later read
    /// alone. Such a connection therefore reads once more after its response instead of
    /// parking at once (found by the soak: 5% of half-closed clients waited for the 30 s
    /// keep-alive timeout).
    pub fn note_read_closed(&mut self) {
        self.read_closed = true;
    }

    /// When its last response was finished.
    pub fn idle_since(&self) -> Instant {
        self.idle_since
    }

    /// When the head it is waiting for started: its accept for a fresh connection, its first
    /// byte otherwise; `None` when it is not waiting for a head.
    pub fn head_since(&self, limits: &Limits) -> Option<Instant> {
        match self.waiting() {
            Waiting::Fresh | Waiting::Head => self
                .head_deadline
                .and_then(|d| d.checked_sub(limits.head_timeout)),
            _ => None,
        }
    }

    /// When the keeper gives up on it.
    pub fn deadline(&self, limits: &Limits) -> Instant {
        match (&self.phase, self.waiting(), self.head_deadline) {
            (Phase::Write(p), _, _) => p
                .stall
                .unwrap_or_else(|| Instant::now() + limits.write_timeout),
            (Phase::Body(r), _, _) => r.deadline,
            (_, Waiting::Idle, _) | (_, _, None) => self.idle_since + limits.keep_alive_timeout,
            (_, _, Some(d)) => d,
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

    /// Empty lines before a request (RFC 9112 §2.2) are not a request: drop them, and a
    /// connection between requests stays idle, on its keep-alive deadline (which they do not
    /// extend), rather than waiting for a head that may never come. A final lone CR stays: it
    /// may be the start of the next empty line or of nothing.
    fn skip_empty_lines(&mut self) {
        let Some(n) = request::empty_lines(&self.buf) else {
            return;
        };
        self.consume(n);
        if self.buf.is_empty() && self.requests > 0 {
            self.head_deadline = None;
        }
    }

    /// Makes `reply` the pending final response.
    fn send(&mut self, reply: Reply, log: Option<Entry>, method: usize, start: Instant) {
        let finish = Finish {
            status: reply.status,
            method,
            start,
            log,
            keep: reply.keep,
        };
        self.write(reply.out, Then::Finish(finish));
    }

    fn write(&mut self, out: Outgoing, then: Then) {
        self.phase = Phase::Write(Box::new(Pending {
            out,
            stall: None,
            then,
        }));
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
    let mut body_taken = 0u64;
    loop {
        match conn.phase {
            Phase::Write(_) => match flush(&mut conn, shared, load) {
                // Nothing buffered after a response: park without trying a read. A client
                // that waits for each response cannot have sent the next request yet, so the
                // read would only say "would block"; if bytes did arrive meanwhile, the
                // keeper's registration reports them at once.
                Ok(Flush::Done { keep: true }) if conn.buf.is_empty() && !conn.read_closed => {
                    return Next::Park(conn)
                }
                Ok(Flush::Done { keep: true }) => {
                    if turn >= MAX_REQUESTS_PER_TURN && load.others_waiting() {
                        return Next::Requeue(conn);
                    }
                    continue;
                }
                Ok(Flush::Done { keep: false }) => return close(conn),
                Ok(Flush::Interim) => continue,
                Ok(Flush::Park) => return Next::Park(conn),
                Ok(Flush::Requeue) => return Next::Requeue(conn),
                Err(e) => {
                    log::debug!("{}: write failed: {e}", conn.peer);
                    return Next::Done;
                }
            },
            Phase::Body(_) => match feed_upload(&mut conn, shared) {
                Some(n) => {
                    // Fairness, as for downloads: a fast uploader yields its worker every
                    // turn's worth.
                    body_taken += n as u64;
                    if body_taken >= TURN_BUDGET && load.others_waiting() {
                        return Next::Requeue(conn);
                    }
                }
                None => continue, // answered
            },
            Phase::Head if conn.buf.is_empty() => {}
            Phase::Head => match request::parse(&conn.buf, &mut conn.resume, limits) {
                Ok(Parse::Complete { head, len }) => {
                    conn.consume(len);
                    exchange(&mut conn, head, shared, load);
                    turn += 1;
                    continue;
                }
                Ok(Parse::Partial) => {
                    conn.skip_empty_lines();
                    if !conn.buf.is_empty()
                        && conn.head_deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        fail(&mut conn, HttpError::HeadTimeout, shared);
                        continue;
                    }
                }
                Err(e) => {
                    fail(&mut conn, e, shared);
                    continue;
                }
            },
        }
        // Everything buffered is used: one read that does not wait, for a head or a body.
        match conn.read_ready(limits) {
            Ok(0) => {
                if conn.waiting() == Waiting::Body {
                    // The temporary file goes with the upload.
                    log::debug!("{}: upload aborted by the client", conn.peer);
                }
                return Next::Done;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Park(conn),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("{}: read failed: {e}", conn.peer);
                return Next::Done;
            }
        }
    }
}

/// Where writing the pending bytes got to.
enum Flush {
    /// A final response was written in full (and logged); keep the connection or not.
    Done { keep: bool },
    /// The `100 Continue` was written: the upload's body comes next.
    Interim,
    /// The client is not taking bytes: park for writability.
    Park,
    /// A turn's worth was sent and others wait for a worker.
    Requeue,
}

/// Writes the pending bytes as far as the socket allows.
fn flush(conn: &mut Conn, shared: &Shared, load: &dyn Load) -> io::Result<Flush> {
    let limits = &shared.config.limits;
    let Phase::Write(pending) = &mut conn.phase else {
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
                if progressed || pending.stall.is_none() {
                    pending.stall = Some(Instant::now() + limits.write_timeout);
                }
                return Ok(Flush::Park);
            }
            Ok(Sent::Budget) if load.others_waiting() => {
                pending.stall = Some(Instant::now() + limits.write_timeout);
                return Ok(Flush::Requeue);
            }
            Ok(Sent::Budget) => {}
            Err(e) => {
                abandon(shared, conn.peer, pending);
                return Err(e);
            }
        }
    }
    let Phase::Write(pending) = std::mem::replace(&mut conn.phase, Phase::Head) else {
        return Ok(Flush::Done { keep: true });
    };
    match pending.then {
        Then::Receive(mut receiving) => {
            receiving.deadline = Instant::now() + limits.head_timeout;
            conn.phase = Phase::Body(receiving);
            Ok(Flush::Interim)
        }
        Then::Finish(finish) => {
            log_done(shared, conn.peer, &finish, pending.out.body_written());
            conn.idle_since = Instant::now();
            conn.head_deadline = if conn.buf.is_empty() {
                None
            } else {
                Some(conn.idle_since + limits.head_timeout)
            };
            Ok(Flush::Done { keep: finish.keep })
        }
    }
}

/// Logs a response given up on (the client went away or stalled), with the body bytes that
/// actually went out; an unfinished `100 Continue` is not a response (its upload's temporary
/// file goes with the connection).
fn abandon(shared: &Shared, peer: SocketAddr, pending: &Pending) {
    if let Then::Finish(finish) = &pending.then {
        log_done(shared, peer, finish, pending.out.body_written());
    }
}

/// The access-log line and the metrics of a finished (or abandoned) response.
fn log_done(shared: &Shared, peer: SocketAddr, finish: &Finish, body_bytes: u64) {
    let took = finish.start.elapsed();
    let code = finish.status.code();
    shared
        .metrics
        .response(finish.method, code, body_bytes, took);
    if let Some(entry) = &finish.log {
        entry.write(&shared.access, peer, finish.status.code(), body_bytes);
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
    log::debug!("{}: {err:?}", conn.peer);
    shared.requests.fetch_add(1, Ordering::Relaxed);
    if matches!(err, HttpError::HeadTimeout) {
        // A head whose deadline passed while it waited for a worker (bytes kept coming, so
        // the keeper did not expire it): the same timeout as the keeper's 408.
        shared.metrics.timeout(Timeout::Head);
    }
    conn.unread_input = true;
    let start = Instant::now();
    let log = Entry::new(shared.config.access_log, None, start);
    let rules = shared.rules.current();
    let reply = handler::malformed(&err, &rules.headers.global());
    drop(rules);
    conn.send(reply, log, metrics::method_index(None), start);
}

/// Answers one parsed request: decides keep-alive, starts an upload or has the handler build
/// the reply, and leaves it pending for [`flush`].
fn exchange(conn: &mut Conn, head: RequestHead, shared: &Shared, load: &dyn Load) {
    let start = Instant::now();
    conn.requests += 1;
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let mut keep = KeepAlive::decide(&head, conn, shared, load);

    let mut refused = None;
    if head.method == Method::Put && shared.config.allow_write {
        match Put::begin(&head, shared) {
            Ok(put) => return receive(conn, &head, put, keep, start, shared),
            Err(e) => refused = Some(e),
        }
    }
    if !skip_body(conn, &head) {
        conn.unread_input = true;
        keep.recheck(conn, shared);
    }
    if let Some(gate) = &shared.config.hold {
        gate.wait_if(&head.path);
    }
    let reply = handler::answer(&head, conn.peer, keep.get(), refused, shared);
    let log = if handler::is_probe(&head, shared) {
        log::debug!("{} {}: {}", conn.peer, head.path, reply.status.code());
        None
    } else {
        Entry::new(shared.config.access_log, Some(&head), start)
    };
    conn.send(reply, log, metrics::method_index(Some(&head.method)), start);
}

/// RFC 9112 §6.3: a body we will not use must still be consumed, or it would be read as the
/// next request. A small one already buffered is skipped; otherwise (`false`) we close after
/// answering, which is always allowed.
fn skip_body(conn: &mut Conn, head: &RequestHead) -> bool {
    if head.framing == BodyFraming::None {
        return true;
    }
    let Ok(mut discarder) = BodyDiscarder::new(head.framing, MAX_DISCARD_BODY) else {
        return false;
    };
    match discarder.feed(&conn.buf) {
        Ok((n, done)) => {
            conn.consume(n);
            done
        }
        Err(_) => false,
    }
}

/// Starts receiving the body of an accepted PUT. `Expect: 100-continue` is answered only
/// now, once the checks passed, so a client whose upload would be refused never sends the
/// body (RFC 9110 §10.1.1); the interim line goes out like any response, resumable, so a
/// short write can never splice a cut line before the final answer.
fn receive(
    conn: &mut Conn,
    head: &RequestHead,
    put: Put,
    keep: KeepAlive,
    start: Instant,
    shared: &Shared,
) {
    let receiving = Box::new(Receiving {
        put,
        version: head.version,
        keep,
        log: Entry::new(shared.config.access_log, Some(head), start),
        start,
        deadline: Instant::now() + shared.config.limits.head_timeout,
    });
    if head.expect_continue {
        let interim = Outgoing::bytes(CONTINUE.to_vec(), CONTINUE.len());
        conn.write(interim, Then::Receive(receiving));
    } else {
        conn.phase = Phase::Body(receiving);
    }
}

/// Feeds the body bytes buffered into the upload; commits and answers when the body is
/// complete or refused (`None`), else says how many bytes it took. Fed even with nothing
/// buffered: an empty body (`Content-Length: 0`) is complete before any byte arrives.
fn feed_upload(conn: &mut Conn, shared: &Shared) -> Option<usize> {
    let Phase::Body(receiving) = &mut conn.phase else {
        return None;
    };
    match receiving.put.feed(&conn.buf) {
        Ok((n, done)) => {
            if n > 0 {
                receiving.deadline = Instant::now() + shared.config.limits.head_timeout;
            }
            conn.consume(n);
            if !done {
                return Some(n);
            }
            answer_upload(conn, None, shared);
        }
        Err(e) => {
            // Malformed or too large: what follows cannot be trusted; answer, close.
            conn.unread_input = true;
            answer_upload(conn, Some(e), shared);
        }
    }
    None
}

/// Commits a complete upload (or drops a refused one, which removes its temporary file) and
/// makes its answer pending: 201 or 204, or the error's status.
fn answer_upload(conn: &mut Conn, refused: Option<HttpError>, shared: &Shared) {
    let Phase::Body(receiving) = std::mem::replace(&mut conn.phase, Phase::Head) else {
        return;
    };
    let Receiving {
        put,
        version,
        mut keep,
        log,
        start,
        ..
    } = *receiving;
    let result = match refused {
        None => put.commit(shared),
        Some(e) => {
            drop(put);
            Err(e)
        }
    };
    keep.recheck(conn, shared);
    conn.idle_since = Instant::now();
    let rules = shared.rules.current();
    let reply = handler::put_reply(version, keep.get(), result, &rules.headers.global());
    drop(rules);
    conn.send(reply, log, metrics::method_index(Some(&Method::Put)), start);
}

/// The keeper's verdict on a connection whose deadline passed while parked: a partial head
/// gets 408 (RFC 9110 §15.5.9) and a lingering close; a fresh or idle connection is closed
/// quietly, as nginx does for keep-alive; a response stalled longer than the write timeout is
/// abandoned (logged with the bytes that went out). The socket is non-blocking, so the keeper
/// never waits on the 408: a client that does not even read 200 bytes loses it.
pub(crate) fn expire(mut conn: Conn, shared: &Shared) -> Option<Lingering> {
    // A stalled head has no method yet; a stalled upload is a PUT, timed from its head.
    let (method, start) = match &conn.phase {
        Phase::Head if conn.waiting() == Waiting::Head => (metrics::method_index(None), None),
        Phase::Head => return None,
        Phase::Body(receiving) => {
            log::debug!("{}: upload stalled, 408", conn.peer);
            let start = receiving.start;
            conn.phase = Phase::Head; // removes the temporary file
            (metrics::method_index(Some(&Method::Put)), Some(start))
        }
        Phase::Write(pending) => {
            log::debug!("{}: write stalled, closing", conn.peer);
            abandon(shared, conn.peer, pending);
            return None;
        }
    };
    let log = Entry::new(shared.config.access_log, None, Instant::now());
    let status = HttpError::HeadTimeout.status();
    // The `--header` fields as fixed at start-up: the keeper does not consult the rules.
    let fields = shared
        .fixed_fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()));
    let (bytes, body) = response::status_response_with(status, false, Some("close"), &[], fields);
    let complete = (&conn.stream).write(&bytes).is_ok_and(|n| n == bytes.len());
    let body_bytes = if complete { body } else { 0 };
    let took = start.map_or(Duration::ZERO, |s| s.elapsed());
    shared
        .metrics
        .response(method, status.code(), body_bytes, took);
    if let Some(entry) = log {
        entry.write(
            &shared.access,
            conn.peer,
            status.code(),
            if complete { body } else { 0 },
        );
    }
    let _ = conn.stream.shutdown(Half::Write);
    complete.then(|| conn.into_linger())
}

#[cfg(test)]
mod tests;
