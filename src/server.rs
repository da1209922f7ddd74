//! The server: binding, the accept loop on the calling thread, and the drain.
//!
//! [`Server::bind`] checks the root and binds (so errors come before any thread exists).
//! [`Server::run`] builds the keeper and the N workers, then accepts on the calling thread
//! (the main thread in the binary) until the stop token fires. Each accepted socket goes on
//! the bounded queue with `try_send` and rings the workers' doorbell only if too few of them
//! are awake for what is queued (under load, once per accept batch: see `pool`); when the
//! queue is full the acceptor writes the canned 503 without waiting and moves on. At the
//! connection cap it hands the new connection to the keeper, which closes an idle, silent or
//! slowloris connection to seat it; only when every connection held is working does the
//! acceptor answer 503 itself. It waits for the
//! listener in a `mio::Poll` so that a stop wakes it at once, without the self-connect trick.
//! Sockets come from mio's `accept` (one `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC` on
//! Linux, no `ioctl` after it) and on Linux inherit `TCP_NODELAY` from the listener, which
//! also defers accept (`--defer-accept`): a new connection arrives with its request.
//!
//! The drain: stop accepting and drop the listener (new connections are refused), let the
//! keeper close idle connections, let workers finish what they hold and what is queued (with
//! `Connection: close`), and wait for every thread up to the shutdown timeout.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{
    nofile_limit, snapshot_files_for, AccessLog, Config, FdBudget, Overload, ACCEPT_BACKOFF_MAX,
    FDS_PER_CONNECTION, LISTEN_BACKLOG, MAX_CONNECTIONS, MAX_CONNECTIONS_AUTO,
};
use crate::connection::Conn;
use crate::error::Error;
use crate::keeper::{self, KeeperHandle, Lingering, Parcel};
use crate::pool::{self, Queues, ReadyQueue, STALL_AFTER};
use crate::rules_file::RuleFiles;
use crate::shutdown::Shutdown;
use crate::state::{Shared, Stats};
use crate::upload::{sweep_stale, STALE_UPLOAD_AGE};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// First pause after a failed `accept()`; doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// In `--overload wait` mode, how often a saturated acceptor looks for room again: short
/// enough to add no visible latency, and only while saturated (never while idle).
const OVERLOAD_WAIT_POLL: Duration = Duration::from_millis(2);
/// At most one warning per this interval for repeated accept errors and load shedding.
const WARN_INTERVAL: Duration = Duration::from_secs(1);
/// How long the end of a run waits for the access-log thread to write what is queued: the
/// last requests' lines reach stdout before the process exits, but a stalled reader cannot
/// hold the exit for longer than this.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A bound server, not yet running.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// A cloneable handle to stop a server and learn its address, from any thread.
#[derive(Clone, Debug)]
pub struct ServerHandle {
    shutdown: Shutdown,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Starts the graceful drain (idempotent).
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stop token.
    pub fn shutdown_token(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// A snapshot of the server's counters (also logged on SIGUSR1 and at shutdown).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

/// A server running on a background thread (tests, examples, embedding). Dropping it stops
/// the server and waits for the drain.
#[derive(Debug)]
pub struct Running {
    handle: ServerHandle,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Running {
    /// The handle of the running server.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.addr
    }

    /// Stops the server and waits for the drain to finish; returns what `run` returned.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), Error> {
        self.handle.shutdown();
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Io {
                context: "server thread panicked",
                source: io::Error::other("panic"),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Canonicalizes a configured page and checks that it is a regular file, so a typo fails
/// at start-up (exit 2) instead of on the first 404.
fn page(flag: &'static str, path: Option<PathBuf>) -> Result<Option<PathBuf>, Error> {
    let Some(path) = path else { return Ok(None) };
    let err = |reason: String| Error::Page {
        flag,
        path: path.clone(),
        reason,
    };
    let real = path
        .canonicalize()
        .map_err(|e| err(e.to_string().to_lowercase()))?;
    if !real.is_file() {
        return Err(err("not a regular file".into()));
    }
    Ok(Some(real))
}

/// Derives the connection cap from the descriptor limit when it is not set
/// ([`MAX_CONNECTIONS_AUTO`]), and says what the budget is, or warns when a cap that was set
/// needs more descriptors than the limit gives.
fn descriptor_budget(config: &mut Config) {
    let limit = nofile_limit();
    let snapshots = snapshot_files_for(config.zero_copy_mem);
    let limits = &mut config.limits;
    let budget = match limit {
        Some(l) if limits.max_connections == MAX_CONNECTIONS_AUTO => {
            FdBudget::for_limit(l, config.workers, snapshots)
        }
        _ => {
            if limits.max_connections == MAX_CONNECTIONS_AUTO {
                limits.max_connections = MAX_CONNECTIONS;
            }
            FdBudget::new(limits.max_connections, config.workers, snapshots)
        }
    };
    limits.max_connections = budget.connections;
    config.zero_copy_files = budget.snapshots;
    let Some(limit) = limit else {
        return log::info!(
            "descriptor limit unknown: at most {} connections (2 descriptors each)",
            budget.connections
        );
    };
    let plan = format!(
        "{} connections x {FDS_PER_CONNECTION} (a socket, and a file while a response waits \
         for the client) + {} waiting for a seat + {} reserved ({} of them for zero-copy \
         snapshots) = {} of {limit} descriptors",
        budget.connections,
        budget.room,
        budget.reserved,
        budget.snapshots,
        budget.needed()
    );
    if budget.needed() as u64 > limit {
        log::warn!(
            "--max-connections {}: {plan}; raise the limit (ulimit -n, LimitNOFILE=) or lower \
             the cap, or accept() will fail with EMFILE under load",
            budget.connections
        );
    } else {
        log::info!("descriptor budget: {plan}");
    }
}

/// The listening socket this process inherited as descriptor `fd` (systemd socket
/// activation, `--fd`), once checked to be a listening TCP socket.
#[cfg(target_os = "linux")]
fn inherited(fd: i32) -> Result<TcpListener, Error> {
    crate::sys::inherited_listener(fd).map_err(|source| Error::Inherited { fd, source })
}

/// A listener on `addr` that other processes may share (`--reuse-port`).
#[cfg(target_os = "linux")]
fn reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    crate::sys::bind_reuse_port(addr, LISTEN_BACKLOG)
}

/// Off Linux `SO_REUSEPORT` means something else (BSD: no load spreading): refuse.
#[cfg(not(target_os = "linux"))]
fn reuse_port(_addr: SocketAddr) -> io::Result<TcpListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--reuse-port needs Linux",
    ))
}

/// Off Linux the checks are not written: refuse rather than trust the descriptor.
#[cfg(not(target_os = "linux"))]
fn inherited(fd: i32) -> Result<TcpListener, Error> {
    let source = io::Error::new(io::ErrorKind::Unsupported, "inherited sockets need Linux");
    Err(Error::Inherited { fd, source })
}

impl Server {
    /// Validates the root and binds the address (or takes the inherited listening socket).
    /// Nothing runs yet.
    pub fn bind(mut config: Config) -> Result<Server, Error> {
        let root_err = |reason: String| Error::Root {
            path: config.root.clone(),
            reason,
        };
        let root = config
            .root
            .canonicalize()
            .map_err(|e| root_err(e.to_string().to_lowercase()))?;
        if !root.is_dir() {
            return Err(root_err("not a directory".into()));
        }
        config.root = root;
        config.not_found_page = page("--404", config.not_found_page.take())?;
        config.fallback = page("--fallback", config.fallback.take())?;
        config.workers = config.workers.max(1);
        config.queue = config.queue.max(1);
        descriptor_budget(&mut config);
        let rules = RuleFiles::load(&config).map_err(Error::Rules)?;
        let bind_error = |source| Error::Bind {
            addr: config.addr,
            source,
        };
        let listener = match config.listen_fd {
            Some(fd) => inherited(fd)?,
            None if config.reuse_port => reuse_port(config.addr).map_err(bind_error)?,
            None => TcpListener::bind(config.addr).map_err(bind_error)?,
        };
        let io_err = |context| move |source| Error::Io { context, source };
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the bound address"))?;
        config.addr = addr;
        listener
            .set_nonblocking(true)
            .map_err(io_err("configuring the listener"))?;
        listener_options(&listener, config.defer_accept)
            .map_err(io_err("configuring the listener"))?;
        Ok(Server {
            listener,
            addr,
            shared: Shared::with_rules(config, Shutdown::new(), rules),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration in force (root canonicalized).
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shutdown: self.shared.shutdown.clone(),
            addr: self.addr,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Runs on a new thread named `acceptor` and returns at once.
    pub fn spawn(self) -> Result<Running, Error> {
        let handle = self.handle();
        let thread = std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || self.run())
            .map_err(|source| Error::Io {
                context: "starting the acceptor thread",
                source,
            })?;
        Ok(Running {
            handle,
            thread: Some(thread),
        })
    }

    /// Serves until the stop token fires, then drains. `Err` if threads could not start or
    /// the drain outlived the shutdown timeout.
    pub fn run(self) -> Result<(), Error> {
        let Server {
            listener,
            addr,
            shared,
        } = self;
        let io_err = |context| move |source| Error::Io { context, source };
        let logger = Logger::start(&shared).map_err(io_err("starting the access-log thread"))?;
        sweep_in_background(&shared.config.root);
        let workers = shared.config.workers;
        let (new_tx, new_rx) = crossbeam_channel::bounded::<Conn>(shared.config.queue);
        let ready = ReadyQueue::with_accept_queue(workers, shared.config.cores, new_rx.clone());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (keeper, _keeper_thread) = keeper::start(
            Arc::clone(&shared),
            Arc::clone(&ready),
            new_rx.clone(),
            done_tx.clone(),
        )
        .map_err(io_err("starting the keeper"))?;
        let queues = Queues {
            ready: Arc::clone(&ready),
            keeper: keeper.clone(),
        };
        let started = pool::start(&shared, queues, done_tx);
        if let Err(source) = started {
            shared.acceptor_done.store(true, Ordering::SeqCst);
            shared.shutdown.trigger();
            return Err(Error::Io {
                context: "starting the workers",
                source,
            });
        }
        log::debug!(
            "listening on http://{addr}/ (root {}, {workers} workers, queue {})",
            shared.config.root.display(),
            shared.config.queue
        );

        let listener = mio::net::TcpListener::from_std(listener);
        let accepted = accept_loop(&listener, &new_tx, &ready, &keeper, &shared);
        drop(listener);
        drop(new_tx);
        shared.shutdown.trigger();
        shared.acceptor_done.store(true, Ordering::SeqCst);
        shared.shutdown.wake_all(); // the keeper may be waiting for exactly this
        if let Err(e) = accepted {
            log::error!("accept loop failed: {e}");
        }
        let open = shared.open();
        let served_before = shared.requests.load(Ordering::Relaxed);
        log::info!("shutting down: stopped accepting, draining {open} open connection(s)");

        let start = shared.shutdown.triggered_at().unwrap_or_else(Instant::now);
        let deadline = start + shared.config.limits.shutdown_timeout;
        for _ in 0..workers + 1 {
            if done_rx.recv_deadline(deadline).is_err() {
                let remaining = shared.open();
                shared.forced.store(remaining as u64, Ordering::Relaxed);
                log::info!("{}", shared.stats());
                log::warn!(
                    "shutdown timeout: {remaining} connection(s) still open, giving up on them"
                );
                logger.finish();
                return Err(Error::ShutdownTimeout { remaining });
            }
        }
        log::info!(
            "drained {open} connection(s) in {} ms, answering {} request(s) during the drain",
            start.elapsed().as_millis(),
            shared.requests.load(Ordering::Relaxed) - served_before
        );
        log::info!("{}", shared.stats());
        logger.finish();
        if shared.keeper_failed.load(Ordering::SeqCst) {
            return Err(Error::KeeperFailed);
        }
        Ok(())
    }
}

/// Linux: a listen backlog of [`LISTEN_BACKLOG`] (std's 128 is too short for deferred
/// accept), `TCP_NODELAY` once on the listener, which passes it on to every socket it accepts
/// (one `setsockopt` per connection saved), and `TCP_DEFER_ACCEPT` (`--defer-accept`), so that
/// a new connection reaches the acceptor with its request already in the socket and goes
/// straight to a worker, and a silent one costs the process nothing until the kernel hands
/// it over after `defer_secs` (then it is parked like any silent connection). Elsewhere each
/// connection gets `TCP_NODELAY` in `Conn::new` and there is no deferred accept.
fn listener_options(listener: &TcpListener, defer_secs: u32) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        crate::sys::set_backlog(listener, LISTEN_BACKLOG)?;
        crate::sys::set_listener_nodelay(listener)?;
        crate::sys::set_defer_accept(listener, defer_secs)?;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, defer_secs);
    Ok(())
}

/// Removes the temporary upload files a crash left under `root` (older than
/// [`STALE_UPLOAD_AGE`]) on a `sweeper` thread, so that a large tree does not delay serving.
/// A thread that cannot start only means no sweep this time.
fn sweep_in_background(root: &std::path::Path) {
    let root = root.to_path_buf();
    let started = std::thread::Builder::new()
        .name("sweeper".into())
        .spawn(move || {
            let report = sweep_stale(&root, STALE_UPLOAD_AGE);
            if report.removed > 0 || report.truncated {
                log::info!(
                    "removed {} stale upload file(s) under {} ({} entries examined{})",
                    report.removed,
                    root.display(),
                    report.examined,
                    if report.truncated {
                        ", stopped at the bound"
                    } else {
                        ""
                    }
                );
            }
        });
    if let Err(e) = started {
        log::warn!("cannot start the upload sweep: {e}");
    }
}

/// The `access-log` thread, which writes the access log's queue to stdout (see
/// [`crate::access::Sink`]); none when the access log is off.
struct Logger(Option<(Sender<Instant>, crossbeam_channel::Receiver<()>)>);

impl Logger {
    fn start(shared: &Arc<Shared>) -> io::Result<Logger> {
        if shared.config.access_log == AccessLog::Off {
            return Ok(Logger(None));
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                shared.access.drain_to(&mut io::stdout(), &stop_rx);
                let _ = done_tx.send(());
            })?;
        Ok(Logger(Some((stop_tx, done_rx))))
    }

    /// Lets the thread write what is queued, for at most [`LOG_FLUSH_TIMEOUT`], and stop.
    fn finish(self) {
        if let Some((stop, done)) = self.0 {
            let deadline = Instant::now() + LOG_FLUSH_TIMEOUT;
            let _ = stop.send(deadline);
            let _ = done.recv_deadline(deadline);
        }
    }
}

/// Accepts until the stop token fires. Errors from `accept()` (EMFILE, ENFILE, ENOBUFS...)
/// are logged at most once a second and answered with a growing pause, never a spin and
/// never an exit: the server keeps serving the connections it has. mio's `accept` is one
/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` on Linux: sockets arrive non-blocking, with no
/// `ioctl` of ours.
fn accept_loop(
    listener: &mio::net::TcpListener,
    queue: &Sender<Conn>,
    ready: &ReadyQueue,
    keeper: &KeeperHandle,
    shared: &Arc<Shared>,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    shared.shutdown.add_waker(waker);
    let fd = listener.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(64);
    let mut backoff: Option<Duration> = None;
    let mut warn = RateLimit::default();
    // New connections wait while a worker sleeps: look again after `STALL_AFTER`.
    let mut watch = false;
    let mut progress = (0, Instant::now());
    while !shared.shutdown.is_triggered() {
        let timeout = match (backoff, watch) {
            (Some(b), true) => Some(b.min(STALL_AFTER)),
            (b, false) => b,
            (None, true) => Some(STALL_AFTER),
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        // The listener is edge-triggered: accept until it would block (or fails, in which
        // case we retry after the backoff without waiting for a new edge).
        backoff = loop {
            if shared.shutdown.is_triggered() {
                break None;
            }
            if shared.config.overload == Overload::Wait && saturated(queue, shared) {
                // Back-pressure: leave new clients in the kernel backlog and look again soon.
                break Some(OVERLOAD_WAIT_POLL);
            }
            match accept(listener) {
                Ok((stream, peer)) => {
                    dispatch(stream, peer, queue, ready, keeper, shared, &mut warn)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    let next =
                        backoff.map_or(ACCEPT_BACKOFF_MIN, |b| (b * 2).min(ACCEPT_BACKOFF_MAX));
                    warn.warn(|n| {
                        log::warn!(
                            "accept failed ({n} time(s)): {e}; pausing {} ms",
                            next.as_millis()
                        )
                    });
                    break Some(next);
                }
            }
        };
        // The wake-up rule rings no worker while enough count as awake; if those are stuck
        // (a slow disk), this rings one more. The keeper does the same for ready jobs.
        watch = ready.check_new_stall(&mut progress, Instant::now());
    }
    // Connections the kernel completed but we have not accepted yet would be reset when the
    // listener closes; their clients have usually sent a request already. Take them in one
    // last sweep (bounded by the connection cap) so they are served with `Connection: close`.
    while shared.open() < shared.config.limits.max_connections {
        match accept(listener) {
            Ok((stream, peer)) => dispatch(stream, peer, queue, ready, keeper, shared, &mut warn),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Nobody watches the accept queue from here on: every sleeping worker takes its share of
    // what is left, so no queued connection waits behind a stuck worker during the drain.
    ready.wake_all();
    let _ = poll.registry().deregister(&mut SourceFd(&fd));
    Ok(())
}

/// One connection from the listener, as a std socket (the one owner of each socket),
/// already non-blocking.
fn accept(listener: &mio::net::TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    Ok((TcpStream::from(OwnedFd::from(stream)), peer))
}

/// True when a new connection would have to be shed: the queue is full, or the connection
/// cap is reached with nothing to reclaim (every connection held is working).
fn saturated(queue: &Sender<Conn>, shared: &Shared) -> bool {
    queue.is_full() || (at_cap(shared) && shared.reclaimable.load(Ordering::Relaxed) == 0)
}

/// The connection cap is reached.
fn at_cap(shared: &Shared) -> bool {
    shared.open() >= shared.config.limits.max_connections
}

/// Queues a new connection, or sheds it with the canned 503.
fn dispatch(
    stream: TcpStream,
    peer: SocketAddr,
    queue: &Sender<Conn>,
    ready: &ReadyQueue,
    keeper: &KeeperHandle,
    shared: &Arc<Shared>,
    warn: &mut RateLimit,
) {
    let over_limit = at_cap(shared);
    // (In `--overload wait` mode the accept loop does not get here while saturated.)
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    let conn = match Conn::new(stream, peer, shared) {
        Ok(conn) => conn,
        Err(e) => return log::debug!("{peer}: cannot set up the socket: {e}"),
    };
    let conn = if over_limit {
        if shared.reclaimable.load(Ordering::Relaxed) > 0 {
            // Idle, silent or slowloris connections hold the cap: the keeper closes one of
            // them to seat this one (or answers 503 if it finds none after all).
            return keeper.send(Parcel::Admit(conn));
        }
        conn
    } else {
        match queue.try_send(conn) {
            Ok(()) => {
                // Rings a worker only if too few are awake for what is queued: under load,
                // one ring per accept batch (the module docs of `pool`).
                ready.wake();
                shared.queued.store(queue.len(), Ordering::Relaxed);
                if shared.busy_workers.load(Ordering::Relaxed) >= shared.config.workers {
                    keeper.nudge(); // saturated: the keeper closes idle keep-alives
                }
                return;
            }
            Err(TrySendError::Full(conn)) | Err(TrySendError::Disconnected(conn)) => conn,
        }
    };
    let shed = shared.shed.fetch_add(1, Ordering::Relaxed) + 1;
    warn.warn(|n| log::warn!("overloaded: answered 503 to {n} connection(s) ({shed} since start)"));
    shed_with_503(conn.into_linger(), keeper, shared);
}

/// Writes the canned 503 without ever waiting ([`keeper::shed`]), then lets the keeper
/// linger so the client reads it.
fn shed_with_503(linger: Lingering, keeper: &KeeperHandle, shared: &Shared) {
    if let Some(linger) = keeper::shed(linger, shared) {
        keeper.send(Parcel::Linger(linger));
    }
}

/// Logs at most once per [`WARN_INTERVAL`], with how many events it stands for.
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    count: u64,
}

impl RateLimit {
    fn warn(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
            log(self.count);
            self.count = 0;
            self.last = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    #[cfg(target_os = "linux")]
    fn the_listener_defers_accept_as_configured_and_passes_nodelay_on() {
        // (--defer-accept, what the kernel reports back)
        for (secs, want) in [(1, 1), (0, 0), (3, 3)] {
            let config = Config {
                root: std::env::temp_dir(),
                addr: "127.0.0.1:0".parse().unwrap(),
                defer_accept: secs,
                ..Config::default()
            };
            let server = Server::bind(config).unwrap();
            assert_eq!(crate::sys::defer_accept(&server.listener).unwrap(), want);
            // The backlog as set, or the system's cap if that is lower.
            let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(LISTEN_BACKLOG);
            let backlog = crate::sys::backlog(&server.listener).unwrap();
            assert_eq!(backlog, LISTEN_BACKLOG.min(somaxconn));
            let mut client = TcpStream::connect(server.addr).unwrap();
            client.write_all(b"G").unwrap(); // a deferred connection needs its first byte
            let listener = mio::net::TcpListener::from_std(server.listener);
            let start = Instant::now();
            let (stream, _) = loop {
                match accept(&listener) {
                    Ok(accepted) => break accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(start.elapsed() < Duration::from_secs(5), "never accepted");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            assert!(stream.nodelay().unwrap(), "TCP_NODELAY from the listener");
            let mut byte = [0];
            assert_eq!((&stream).read(&mut byte).map_err(|e| e.kind()), Ok(1));
            assert_eq!(
                (&stream).read(&mut byte).map_err(|e| e.kind()),
                Err(io::ErrorKind::WouldBlock),
                "accepted non-blocking"
            );
        }
    }
}
