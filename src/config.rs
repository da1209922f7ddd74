//! Configuration: every limit as a named constant with its reason, the [`Config`] and
//! [`Limits`] structs built from them, and the command-line parser (a raw pass that collects
//! flags, then a validating pass), written by hand because the card allows no CLI crate.
//!
//! Nothing here touches sockets or threads; `main.rs` turns [`ConfigError`] into one line on
//! stderr and exit code 2.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::ConfigError;

/// The access log's format (`--access-log`); `access.rs` writes the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessLog {
    /// NCSA Combined plus the request duration in seconds (nginx's `$request_time`).
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
    /// No access log.
    Off,
}

/// Longest request line we read (RFC 9112 §3 recommends at least 8000 octets); longer: 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head (line plus fields). Bounds the buffer each connection may hold while
/// it is parked; larger: 431 (RFC 6585 §5).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields in one request; more: 431. Real browsers send 10 to 30.
pub const MAX_HEADERS: usize = 100;
/// Deadline over the *whole* head, from its first byte (or from accept for a new
/// connection): a per-read timeout does not stop slowloris; this does. Expiry: 408.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle keep-alive connection may wait for its next request. Idle connections
/// cost a keeper entry and no worker, so this can be longer than Apache's 5 s; it stays below
/// the 60 s idle timeout of common load balancers' upstream pools.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest stall between two successful writes to a client (like nginx `send_timeout`): a
/// large download on a slow link survives, a reader that stopped reading does not.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Budget for a graceful stop: below the 30 s Kubernetes grace period and systemd's 90 s.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served on one connection before it is closed (nginx and lighttpd use 1000),
/// so one client cannot own a connection slot forever.
pub const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// Connections open at once (queued, parked or being served) when the descriptor limit
/// cannot be read (no `/proc`): what [`FdBudget`] allows for the common soft limit of 1024
/// with up to 48 workers (and the snapshots' descriptors).
/// At the cap the keeper first reclaims a connection that is not working (see
/// [`RECLAIM_HEAD_GRACE`]); only when every one is working does a new one get 503.
pub const MAX_CONNECTIONS: usize = 420;
/// `Limits::max_connections` value that means "derive it from the descriptor limit when the
/// server binds" ([`FdBudget::for_limit`]); the default.
pub const MAX_CONNECTIONS_AUTO: usize = 0;
/// Descriptors held apart from connections: stdin, stdout, stderr, the listener, two epoll
/// instances and their wakers, the signal pipe, the sweeper's directory, with room to spare.
/// [`FdBudget`] adds one per worker for what a request opens for a moment (a sidecar next to
/// its file, the directory an upload's rename is synced through).
pub const FDS_RESERVED: usize = 16;
/// Most descriptors one connection holds: its socket, plus the file of a response parked
/// with the keeper (or an upload's temporary file).
pub const FDS_PER_CONNECTION: usize = 2;
/// Most connections the derived default allows, whatever the descriptor limit: every idle
/// connection pins kernel socket memory, and a container's limit of 1,048,576 should not
/// mean half a million connections unless the operator asks for them.
pub const MAX_CONNECTIONS_DERIVED_CEILING: usize = 16_384;
/// Most connections accepted at the cap that wait for a seat at once (an eighth of the cap
/// up to this; see [`room_for`]). Each holds a socket, so the budget counts them; beyond,
/// a newcomer gets 503 at once.
pub const ROOM_MAX: usize = 64;
/// At the connection cap, a connection that has not completed a request head this long
/// after it started may be closed to seat a new one (idle keep-alive connections go first,
/// at any age). A real client sends its head right behind the handshake's last ACK, so the
/// server sees it in well under a millisecond on loopback (curl, 30 runs: 0.02 ms median and
/// 0.07 ms at most from accept to a complete head; often it is there before the accept) and
/// within one packet flight over a network, whatever the round trip;
/// 500 ms also covers one lost segment resent after Linux's 200 ms minimum retransmission
/// timeout. Silent and slowloris connections are older than that; a new client is not.
pub const RECLAIM_HEAD_GRACE: Duration = Duration::from_millis(500);
/// Write timeout for the canned 503 the acceptor sends when the queue is full: the acceptor
/// must never wait on a client.
pub const OVERLOAD_WRITE_TIMEOUT: Duration = Duration::from_millis(20);
/// How long we keep reading (and discarding) after sending a final error response, so the
/// client sees the response rather than a reset (nginx `lingering_close`).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Under saturation the keeper closes idle keep-alive connections, but only those idle at
/// least this long: a connection idle for a moment is about to send its next request, and
/// closing it would only make an active client reconnect.
pub const SHED_IDLE_AFTER: Duration = Duration::from_secs(1);
/// Most bytes discarded during a lingering close.
pub const LINGER_MAX_BYTES: usize = 256 * 1024;
/// Largest request body on GET/HEAD/OPTIONS that we read and throw away to keep the
/// connection; a larger one gets its response and a close.
pub const MAX_DISCARD_BODY: u64 = 64 * 1024;
/// During a drain, a connection that has not sent its first byte gets this long to do so
/// before it is closed like an idle keep-alive connection.
pub const DRAIN_FIRST_BYTE_GRACE: Duration = Duration::from_secs(1);
/// Default `--defer-accept`, in seconds: like nginx's `listen ... deferred`, the kernel hands
/// a new connection over only once its request has arrived (Linux `TCP_DEFER_ACCEPT`), so it
/// goes straight to a worker with no keeper round trip; a silent one is handed over after
/// about this long (the SYN-ACK retransmission schedule: 1 s, then 3, 7...) and then waits
/// in the keeper under the head deadline like any silent connection. 1 s keeps that delay
/// short; a longer one only keeps silent connections in the kernel longer.
pub const DEFER_ACCEPT_SECS: u32 = 1;
/// The listen backlog (std binds with 128; the kernel caps it at `net.core.somaxconn`, 4096 by
/// default since Linux 5.4). With deferred accept a connection waits in the SYN queue until
/// its request arrives, and past the backlog the kernel answers new handshakes with SYN
/// cookies, which hold a connection's MSS at 1448 bytes for its whole life (65483 on
/// loopback): 512 connections opened at once (bench S4) got 379 such connections and 25%
/// fewer requests per second, every 2 KiB response in two segments. nginx listens with 511.
pub const LISTEN_BACKLOG: u32 = 4096;
/// Largest `--defer-accept`: past about two minutes the kernel's retransmissions give up
/// anyway.
pub const DEFER_ACCEPT_MAX_SECS: u32 = 600;
/// Most snapshots alive at once (cached or still being sent): each is a descriptor, and
/// [`FdBudget`] keeps this many apart.
pub const SNAPSHOT_MAX_FILES: usize = 64;
/// Files at least this long get a snapshot, and go out by sendfile from it, when a response
/// sends at least this many of their bytes in one range; shorter ones go by copy. Below it
/// sendfile saves less than its extra calls cost. Measured with sendfile from the file itself
/// (wrk, 8 connections, server on one core, three rounds, server CPU µs per request, copy /
/// sendfile): 64 KiB 29.0-29.9 / 30.1-30.6, 96 KiB 35.2-36.2 / 35.5-41.8, 128 KiB 40.0-49.5 /
/// 33.7-37.4, 256 KiB 62.3-63.9 / 45.2-46.5, 1 MiB 249-254 / 137-139.
pub const ZERO_COPY_MIN: u64 = 128 * 1024;

/// Default `--zero-copy-mem` (see `snapshot.rs`): room for a hot set of large files (64 one-MiB images, or four
/// 16 MiB videos) at a cost a small server can carry.
pub const ZERO_COPY_MEM: u64 = 64 * 1024 * 1024;

/// Longest pause of the acceptor after `accept()` fails (EMFILE and friends): it backs off
/// instead of spinning, doubling from 5 ms.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Least time between two looks at the rule files (`_redirects`, `_headers`), whatever
/// `--cache-valid` says: with `--cache-valid 0` every request would otherwise cost two
/// `statx`; a change is still seen within a tenth of a second.
pub const RULES_CHECK_MIN: Duration = Duration::from_millis(100);

/// How long the small-file cache trusts an entry before resolving the path again (see
/// `cache.rs`): a changed file is served at most this long after the change, like nginx
/// `open_file_cache_valid` (60 s there; 1 s here, because a static site redeploy should show
/// at once).
pub const CACHE_VALID: Duration = Duration::from_secs(1);

/// Default `--max-upload`: large enough for site assets and documents, small enough that a
/// runaway client cannot fill a disk in one request.
pub const DEFAULT_MAX_UPLOAD: u64 = 64 * 1024 * 1024;

/// Default health endpoint (static-web-server and Kubernetes probes use the same name).
pub const DEFAULT_HEALTH_PATH: &str = "/health";

/// How many connections accepted at a cap of `cap` may wait for a seat at once.
pub fn room_for(cap: usize) -> usize {
    (cap / 8).min(ROOM_MAX)
}

/// Snapshots `--zero-copy-mem` can hold at most (each is at least [`ZERO_COPY_MIN`]
/// bytes), up to [`SNAPSHOT_MAX_FILES`].
pub fn snapshot_files_for(mem: u64) -> usize {
    usize::try_from(mem / ZERO_COPY_MIN).map_or(SNAPSHOT_MAX_FILES, |n| n.min(SNAPSHOT_MAX_FILES))
}

/// The descriptor budget: what `connections` connections may hold at most, next to what the
/// process keeps apart. A connection holds its socket, plus a file while its response is
/// parked with the keeper (or an upload's temporary file): [`FDS_PER_CONNECTION`] each, and
/// one each for those waiting for a seat at the cap ([`room_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Descriptors kept apart: [`FDS_RESERVED`], one per worker, and the snapshots'.
    pub reserved: usize,
    /// Snapshots allowed (one descriptor each; see [`snapshot_files_for`]).
    pub snapshots: usize,
    /// The connection cap.
    pub connections: usize,
    /// Connections that may wait for a seat beyond the cap.
    pub room: usize,
}

impl FdBudget {
    /// The budget of `connections` connections with `workers` workers and `snapshots`
    /// snapshots.
    pub fn new(connections: usize, workers: usize, snapshots: usize) -> FdBudget {
        FdBudget {
            reserved: FDS_RESERVED + workers + snapshots,
            snapshots,
            connections,
            room: room_for(connections),
        }
    }

    /// The most connections that `limit` descriptors allow with `workers` workers (at least
    /// one, at most [`MAX_CONNECTIONS_DERIVED_CEILING`]), next to up to `snapshots`
    /// snapshots: fewer under a low limit, at most an eighth of what the process may use.
    pub fn for_limit(limit: u64, workers: usize, snapshots: usize) -> FdBudget {
        let free = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_sub(FDS_RESERVED + workers);
        let snapshots = snapshots.min(free / 8);
        let free = free - snapshots;
        let fits = |c: usize| FDS_PER_CONNECTION * c + room_for(c) <= free;
        // A third of what is free surely fits (the room is at most an eighth of the cap).
        let mut connections =
            (free / (FDS_PER_CONNECTION + 1)).min(MAX_CONNECTIONS_DERIVED_CEILING);
        while connections < MAX_CONNECTIONS_DERIVED_CEILING && fits(connections + 1) {
            connections += 1;
        }
        FdBudget::new(connections.max(1), workers, snapshots)
    }

    /// Descriptors needed at most.
    pub fn needed(&self) -> usize {
        self.reserved + FDS_PER_CONNECTION * self.connections + self.room
    }
}

/// The soft limit on open descriptors (`RLIMIT_NOFILE`) as `/proc/self/limits` states it;
/// `None` when unlimited or unreadable (another Unix, no `/proc`).
pub fn nofile_limit() -> Option<u64> {
    parse_nofile(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// The soft value of the "Max open files" line of a `/proc/<pid>/limits` text.
pub fn parse_nofile(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Per-connection limits and timeouts. `Default` reads the constants above; tests shrink the
/// timeouts instead of waiting them out. Keep `max_head_bytes` above `max_request_line` plus
/// the empty lines allowed before a request (`request::MAX_LEADING_EMPTY_BYTES`) plus 2, as
/// the defaults are: below that, whether an over-long request line gets 414 or 431 depends on
/// how its bytes arrive (found by the property tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_REQUEST_LINE`].
    pub max_request_line: usize,
    /// See [`MAX_HEAD_BYTES`].
    pub max_head_bytes: usize,
    /// See [`MAX_HEADERS`].
    pub max_headers: usize,
    /// See [`HEAD_TIMEOUT`].
    pub head_timeout: Duration,
    /// See [`KEEP_ALIVE_TIMEOUT`].
    pub keep_alive_timeout: Duration,
    /// See [`WRITE_TIMEOUT`].
    pub write_timeout: Duration,
    /// See [`SHUTDOWN_TIMEOUT`].
    pub shutdown_timeout: Duration,
    /// See [`MAX_REQUESTS_PER_CONNECTION`].
    pub max_requests: u32,
    /// The connection cap; [`MAX_CONNECTIONS_AUTO`] (the default) derives it from the
    /// descriptor limit when the server binds ([`FdBudget::for_limit`]).
    pub max_connections: usize,
    /// See [`LINGER_TIMEOUT`].
    pub linger_timeout: Duration,
    /// See [`DRAIN_FIRST_BYTE_GRACE`].
    pub drain_first_byte_grace: Duration,
    /// See [`SHED_IDLE_AFTER`].
    pub shed_idle_after: Duration,
    /// See [`RECLAIM_HEAD_GRACE`].
    pub reclaim_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: MAX_REQUEST_LINE,
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
            head_timeout: HEAD_TIMEOUT,
            keep_alive_timeout: KEEP_ALIVE_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            max_requests: MAX_REQUESTS_PER_CONNECTION,
            max_connections: MAX_CONNECTIONS_AUTO,
            linger_timeout: LINGER_TIMEOUT,
            drain_first_byte_grace: DRAIN_FIRST_BYTE_GRACE,
            shed_idle_after: SHED_IDLE_AFTER,
            reclaim_grace: RECLAIM_HEAD_GRACE,
        }
    }
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Document root (default `html`).
    pub root: PathBuf,
    /// Address to listen on (default `127.0.0.1:8000`, the origin server's port).
    pub addr: SocketAddr,
    /// Serve on this inherited listening socket instead of binding `addr` (`--fd N`, or
    /// systemd's `LISTEN_FDS` for this process: descriptor 3). See `sys::inherited_listener`.
    pub listen_fd: Option<i32>,
    /// Bind with `SO_REUSEPORT` (`--reuse-port`), so that several processes share the port.
    pub reuse_port: bool,
    /// Worker threads, all built at start-up.
    pub workers: usize,
    /// Capacity of the accept queue; when it is full new connections get 503.
    pub queue: usize,
    /// What the acceptor does when the queue is full or the connection cap is reached.
    pub overload: Overload,
    /// After the first stop signal, keep serving this long with `/health` at 503 before the
    /// drain starts (0: drain at once).
    pub drain_delay: Duration,
    /// Serve dotfiles and dot-directories (off: they are 404).
    pub hidden: bool,
    /// Path of the health endpoint (`None`: off). GET/HEAD answer 200 while serving and 503
    /// from the first stop signal, so a load balancer stops sending traffic before the drain.
    pub health_path: Option<String>,
    /// Path of the Prometheus metrics endpoint (`--metrics-path`; `None`: off).
    pub metrics_path: Option<String>,
    /// A file served (status 404) instead of the built-in not-found page.
    pub not_found_page: Option<PathBuf>,
    /// A file served (status 200, with validators and ranges) for a GET or HEAD of a missing
    /// path without a file extension: the entry page of a single-page app.
    pub fallback: Option<PathBuf>,
    /// Per-connection limits and timeouts.
    pub limits: Limits,
    /// Bytes of memory for snapshots, the sealed copies of large files that bodies are sent
    /// from without copying (zero: every body by copy). See `snapshot.rs`.
    pub zero_copy_mem: u64,
    /// Most snapshots at once (one descriptor each): [`snapshot_files_for`] the memory, fewer
    /// when the descriptor limit is low (set when the server binds, see [`FdBudget`]).
    pub zero_copy_files: usize,
    /// Seconds the kernel may hold a new connection until its first bytes arrive (Linux
    /// `TCP_DEFER_ACCEPT`; 0: off). See [`DEFER_ACCEPT_SECS`].
    pub defer_accept: u32,
    /// The access log's format (stdout; `Off` for none).
    pub access_log: AccessLog,
    /// How long the small-file cache trusts an entry (zero: no cache). See [`CACHE_VALID`].
    pub cache_valid: Duration,
    /// Accept PUT and DELETE under the root (off: 405 with `Allow`).
    pub allow_write: bool,
    /// Read `_redirects` and `_headers` at the root (`--site-rules`, on by default).
    pub site_rules: bool,
    /// Fields every response carries (`--header 'Name: value'`, repeatable).
    pub headers: Vec<String>,
    /// Serve `/about` from `about.html` and redirect `/about.html` there (`--clean-urls`).
    pub clean_urls: bool,
    /// Answer a directory without `index.html` with a listing (`--list-dirs`; off: 404).
    pub list_dirs: bool,
    /// Most entries a listing shows; the page says how many more were left out. Not on
    /// the command line: [`crate::listing::LISTING_MAX_ENTRIES`] unless a test lowers it.
    pub list_max: usize,
    /// Largest PUT body accepted (413 beyond).
    pub max_upload: u64,
    /// Test seam, never set by the command line: see [`HoldGate`].
    #[doc(hidden)]
    pub hold: Option<HoldGate>,
    /// Test seam, never set by the command line: the cores the pool's wake-up rule assumes
    /// (`None`: the cores this process may run on, `num_cpus::get()`).
    #[doc(hidden)]
    pub cores: Option<usize>,
    /// Test seam, never set by the command line: see [`KeeperFault`].
    #[doc(hidden)]
    pub keeper_fault: Option<KeeperFault>,
}

/// Default worker count: workers never wait on a client, quiet or slow to read (the keeper
/// holds those), so they are busy with CPU work or file reads; four per core keeps every core
/// busy while a few workers are blocked on a disk read.
pub fn default_workers() -> usize {
    (num_cpus::get() * 4).max(4)
}

/// Default queue capacity: an entry is one accepted socket, and a worker takes it off in
/// microseconds, so the queue only absorbs bursts of connects. With deferred accept a
/// connection arrives with its request and the worker serves it before taking the next
/// (about 7 µs for a small file), so on one core the acceptor queues a burst faster than it
/// drains: with 256, 512 connections opened at once (bench S4) got 33-94 503s while the
/// workers were busy for a few milliseconds. 1024 per core holds such bursts; a full queue
/// still means the workers are saturated.
pub fn default_queue() -> usize {
    (num_cpus::get() * 1024).max(1024)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("html"),
            addr: SocketAddr::from(([127, 0, 0, 1], 8000)),
            listen_fd: None,
            reuse_port: false,
            workers: default_workers(),
            queue: default_queue(),
            overload: Overload::Shed,
            drain_delay: Duration::ZERO,
            hidden: false,
            health_path: Some(DEFAULT_HEALTH_PATH.to_string()),
            metrics_path: None,
            not_found_page: None,
            fallback: None,
            limits: Limits::default(),
            defer_accept: DEFER_ACCEPT_SECS,
            zero_copy_mem: ZERO_COPY_MEM,
            zero_copy_files: SNAPSHOT_MAX_FILES,
            cache_valid: CACHE_VALID,
            access_log: AccessLog::Combined,
            allow_write: false,
            site_rules: true,
            headers: Vec::new(),
            clean_urls: false,
            list_dirs: false,
            list_max: crate::listing::LISTING_MAX_ENTRIES,
            max_upload: DEFAULT_MAX_UPLOAD,
            hold: None,
            cores: None,
            keeper_fault: None,
        }
    }
}

/// Overload policy (`--overload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// Answer new connections with the canned 503 + `Retry-After` at once (load shedding):
    /// right when clients retry, and for direct traffic.
    Shed,
    /// Stop accepting until there is room, so the kernel backlog holds new clients
    /// (back-pressure, as Apache and lighttpd do): right behind a load balancer that can
    /// route around a slow replica.
    Wait,
}

/// What the command line asked for.
// Built once at start-up and matched at once: boxing `Config` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    /// Run the server with this configuration.
    Run(Config),
    /// Print [`usage`] and exit 0.
    Help,
    /// Print the version line and exit 0.
    Version,
}

/// Every option that can also come from the environment, and whether it takes a value.
pub const ENV_OPTIONS: &[(&str, bool)] = &[
    ("--root", true),
    ("--addr", true),
    ("--port", true),
    ("--fd", true),
    ("--reuse-port", false),
    ("--workers", true),
    ("--queue", true),
    ("--max-connections", true),
    ("--overload", true),
    ("--defer-accept", true),
    ("--zero-copy-mem", true),
    ("--max-requests", true),
    ("--header-timeout", true),
    ("--keepalive-timeout", true),
    ("--write-timeout", true),
    ("--shutdown-timeout", true),
    ("--drain-delay", true),
    ("--hidden", false),
    ("--allow-write", false),
    ("--max-upload", true),
    ("--health-path", true),
    ("--metrics-path", true),
    ("--cache-valid", true),
    ("--access-log", true),
    ("--404", true),
    ("--fallback", true),
    ("--site-rules", true),
    ("--header", true),
    ("--clean-urls", false),
    ("--list-dirs", false),
];

/// The environment variable for an option: `--max-requests` → `POOLSERVE_MAX_REQUESTS`.
pub fn env_name(flag: &str) -> String {
    format!(
        "POOLSERVE_{}",
        flag.trim_start_matches('-')
            .to_uppercase()
            .replace('-', "_")
    )
}

/// The variable names, wrapped for `--help`.
fn env_names() -> String {
    let mut out = String::from(" ");
    let mut width = 1;
    for (flag, _) in ENV_OPTIONS {
        let name = env_name(flag);
        if width + name.len() + 1 > 90 {
            out.push_str("\n ");
            width = 1;
        }
        out.push(' ');
        out.push_str(&name);
        width += name.len() + 1;
    }
    out
}

/// The `--help` text.
pub fn usage() -> String {
    let d = Config::default();
    format!(
        "\
poolserve {version}: a static-file HTTP/1.1 server with a fixed worker pool

Usage: poolserve [OPTIONS] [DIR]

DIR is the document root, as with --root (poolserve . serves the current folder).

Options:
  --root DIR               document root [default: html]
  --addr HOST:PORT         address to listen on [default: 127.0.0.1:8000]
  -p, --port N             port to listen on, keeping the host of --addr
  --fd N                   serve on inherited listening socket N instead of binding
                           (systemd socket activation sets LISTEN_FDS: no flag needed)
  --reuse-port             bind with SO_REUSEPORT: several processes share the port and
                           the kernel spreads connections among them (Linux)
  --workers N              worker threads, built at start-up [default: 4 x cores = {workers} here]
  --queue N                accept queue capacity; when full, new connections get 503
                           [default: 1024 x cores = {queue} here]
  --max-connections N      open connections at most; at the cap idle, silent and slowloris
                           ones are closed to seat new ones, 503 only when all are busy
                           [default: what the descriptor limit allows, 2 per connection]
  --overload shed|wait     when the queue is full: answer 503 at once (shed), or stop
                           accepting and leave clients in the kernel backlog [default: shed]
  --defer-accept SECS      let the kernel hold a new connection until its request arrives,
                           at most about SECS (Linux); 0 turns it off [default: {defer}]
  --max-requests N         requests per keep-alive connection [default: {maxr}]
  --header-timeout SECS    deadline for a whole request head, then 408 [default: {ht}]
  --keepalive-timeout SECS idle time allowed between requests [default: {ka}]
  --write-timeout SECS     longest stall while sending to a client [default: {wt}]
  --shutdown-timeout SECS  budget for the graceful drain on SIGINT/SIGTERM [default: {st}]
  --drain-delay SECS       after the signal, keep serving with /health at 503 this long
                           before draining, for load balancers to notice [default: 0]
  --hidden                 serve dotfiles and dot-directories (404 otherwise)
  --health-path PATH       health endpoint: 200 while serving, 503 once stopping;
                           \"off\" disables it [default: /health]
  --metrics-path PATH      Prometheus metrics (text format) at PATH, e.g. /metrics;
                           never in the access log [default: off]
  --cache-valid SECS       small files are cached this long before the path is checked
                           again; 0 turns the cache off [default: {cv}]
  --allow-write            accept PUT (atomic upload) and DELETE of files under the root
  --zero-copy-mem SIZE     memory for sealed copies of files from 128K to a quarter of
                           SIZE, sent by sendfile (Linux); 0 sends every body by copy
                           [default: {zc}]
  --max-upload SIZE        largest PUT body, e.g. 64M; more is 413 [default: 64M]
  --access-log FORMAT      one line per request on stdout: combined (NCSA Combined plus
                           seconds), json, or off [default: combined]
  --404 FILE               serve FILE (status 404) for paths that are not found
  --fallback FILE          serve FILE (status 200) for a missing path without an
                           extension: a single-page app's entry, e.g. html/index.html
  --site-rules on|off      apply the root's _redirects and _headers files (Netlify and
                           Cloudflare Pages format); off serves them as plain files
                           [default: on]
  --header 'NAME: VALUE'   add a header field to every response; repeatable (in the
                           environment, one field per line)
  --clean-urls             serve /about from about.html, redirect /about.html to /about
                           and /dir/index.html to /dir/ (308)
  --list-dirs              list a directory without index.html: an HTML page, or JSON
                           for Accept: application/json or ?format=json (404 otherwise)
  -h, --help               print this help and exit
  -V, --version            print the version and exit

Durations are seconds (\"2.5\") or milliseconds with an ms suffix (\"500ms\").
Logging: access lines go to stdout (--access-log); diagnostics go to stderr, filtered by
RUST_LOG (default: info; warn hides start/stop messages).
Signals: SIGINT/SIGTERM drain gracefully; a second signal exits at once.

Environment: every option above can also be set as POOLSERVE_<OPTION>, upper case with
underscores (switches take 1/true/yes or 0/false/no); the command line wins:
{env}
",
        env = env_names(),
        version = env!("CARGO_PKG_VERSION"),
        workers = d.workers,
        queue = d.queue,
        maxr = d.limits.max_requests,
        ht = secs(d.limits.head_timeout),
        ka = secs(d.limits.keep_alive_timeout),
        wt = secs(d.limits.write_timeout),
        st = secs(d.limits.shutdown_timeout),
        cv = secs(d.cache_valid),
        defer = d.defer_accept,
        zc = format_args!("{}M", d.zero_copy_mem >> 20),
    )
}

/// The path of an endpoint the server answers itself (`--health-path`, `--metrics-path`):
/// an origin-form path without a query, or `off`.
fn endpoint_path(flag: &str, path: String) -> Result<Option<String>, ConfigError> {
    match path.as_str() {
        "off" => Ok(None),
        p if p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic()) && !p.contains('?') => {
            Ok(Some(path))
        }
        _ => Err(ConfigError(format!(
            "{flag}: {path:?} must start with / (or be \"off\")"
        ))),
    }
}

/// The options that cannot go together, checked on the whole configuration (one option
/// alone cannot know what the others say).
fn check_together(cfg: &Config) -> Result<(), ConfigError> {
    if cfg.metrics_path.is_some() && cfg.metrics_path == cfg.health_path {
        return Err(ConfigError(
            "--metrics-path: the health endpoint already has that path".into(),
        ));
    }
    // An inherited socket is bound already, by its owner, with its own options.
    if cfg.listen_fd.is_some() && cfg.reuse_port {
        return Err(ConfigError(
            "--reuse-port: the inherited listening socket (--fd, LISTEN_FDS) is bound already; set SO_REUSEPORT where it is made (ReusePort=yes in the .socket unit)".into(),
        ));
    }
    Ok(())
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening socket systemd passed to process `pid`, by its socket-activation protocol
/// (sd_listen_fds(3)): `LISTEN_FDS` sockets from descriptor 3 on, meant for the process
/// `LISTEN_PID` names. Variables meant for another process (a parent that did not clear
/// them) are ignored, as sd_listen_fds ignores them; poolserve serves one socket, so more
/// than one is an error, as is a value that is not a number.
fn systemd_listener(
    env: &impl Fn(&str) -> Option<OsString>,
    pid: u32,
) -> Result<Option<i32>, ConfigError> {
    let text = |name: &str| env(name).map(|v| v.to_string_lossy().into_owned());
    let Some(fds) = text("LISTEN_FDS") else {
        return Ok(None);
    };
    if text("LISTEN_PID").and_then(|p| p.trim().parse::<u32>().ok()) != Some(pid) {
        return Ok(None);
    }
    match fds.trim().parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(1) => Ok(Some(LISTEN_FDS_START)),
        Ok(n) => Err(ConfigError(format!(
            "LISTEN_FDS={n}: poolserve serves one listening socket (give the unit one ListenStream=)"
        ))),
        Err(_) => Err(ConfigError(format!("LISTEN_FDS: {fds:?} is not a number"))),
    }
}

/// The `--version` line.
pub fn version_line() -> String {
    format!("poolserve {}", env!("CARGO_PKG_VERSION"))
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

impl Config {
    /// [`Config::from_args`] with the `POOLSERVE_*` environment variables in front of the
    /// arguments, so that a flag on the command line wins. `env` looks a variable up (the
    /// process environment in the binary, a table in tests). A bad value names its variable.
    pub fn from_env_and_args<I>(
        env: impl Fn(&str) -> Option<OsString>,
        args: I,
    ) -> Result<CliAction, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let mut from_env: Vec<OsString> = Vec::new();
        for (flag, takes_value) in ENV_OPTIONS {
            let name = env_name(flag);
            let Some(value) = env(&name) else { continue };
            let value = value
                .into_string()
                .map_err(|v| ConfigError(format!("{name}: value is not UTF-8: {v:?}")))?;
            let pair: Vec<OsString> = if *takes_value {
                vec![flag.into(), value.into()]
            } else {
                match value.to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => vec![flag.into()],
                    "0" | "false" | "no" | "off" | "" => vec![],
                    _ => {
                        return Err(ConfigError(format!(
                            "{name}: {value:?} is not 1/true/yes or 0/false/no"
                        )))
                    }
                }
            };
            // Checked alone first, so that an error names the variable, not a flag the
            // user never typed.
            // (Alone: checks that involve two options wait for the whole configuration.)
            Config::parse_args(pair.clone())
                .map_err(|e| ConfigError(format!("{name}: {}", e.0)))?;
            from_env.extend(pair);
        }
        let mut action = Config::from_args(from_env.into_iter().chain(args))?;
        if let CliAction::Run(cfg) = &mut action {
            if cfg.listen_fd.is_none() {
                cfg.listen_fd = systemd_listener(&env, std::process::id())?;
                check_together(cfg)?;
            }
        }
        Ok(action)
    }

    /// Parses command-line arguments (without the program name). Flags take their value as
    /// the next argument or after `=`. The root is checked later, by `Server::bind`.
    pub fn from_args<I>(args: I) -> Result<CliAction, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let action = Config::parse_args(args)?;
        if let CliAction::Run(cfg) = &action {
            check_together(cfg)?;
        }
        Ok(action)
    }

    /// [`Config::from_args`] without the checks that involve two options.
    fn parse_args<I>(args: I) -> Result<CliAction, ConfigError>
    where
        I: IntoIterator<Item = OsString>,
    {
        let mut cfg = Config::default();
        let mut port: Option<u16> = None;
        let mut positional = false;
        let mut args = args.into_iter();
        while let Some(raw) = args.next() {
            let raw = raw
                .into_string()
                .map_err(|a| ConfigError(format!("argument is not UTF-8: {a:?}")))?;
            let (flag, inline) = match raw.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (raw.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, ConfigError> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args
                        .next()
                        .and_then(|v| v.into_string().ok())
                        .ok_or_else(|| ConfigError(format!("{name} needs a value"))),
                }
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(CliAction::Help),
                "-V" | "--version" => return Ok(CliAction::Version),
                "--root" => cfg.root = PathBuf::from(value("--root")?),
                "--addr" => cfg.addr = parse_addr(&value("--addr")?)?,
                "--port" | "-p" => {
                    port = Some(parse_num("--port", &value("--port")?, 0, 65535)? as u16)
                }
                "--fd" => {
                    let fd = parse_num("--fd", &value("--fd")?, 0, i32::MAX as usize)?;
                    cfg.listen_fd = Some(fd as i32);
                }
                "--reuse-port" if inline.is_none() => cfg.reuse_port = true,
                "--workers" => cfg.workers = parse_num("--workers", &value("--workers")?, 1, 4096)?,
                "--queue" => cfg.queue = parse_num("--queue", &value("--queue")?, 1, 1 << 20)?,
                "--overload" => {
                    cfg.overload = match value("--overload")?.as_str() {
                        "shed" => Overload::Shed,
                        "wait" => Overload::Wait,
                        other => {
                            return Err(ConfigError(format!(
                                "--overload: {other:?} is not shed or wait"
                            )))
                        }
                    }
                }
                "--defer-accept" => {
                    cfg.defer_accept = parse_num(
                        "--defer-accept",
                        &value("--defer-accept")?,
                        0,
                        DEFER_ACCEPT_MAX_SECS as usize,
                    )? as u32
                }
                "--max-connections" => {
                    cfg.limits.max_connections = parse_num(
                        "--max-connections",
                        &value("--max-connections")?,
                        1,
                        1 << 20,
                    )?
                }
                "--max-requests" => {
                    cfg.limits.max_requests = parse_num(
                        "--max-requests",
                        &value("--max-requests")?,
                        1,
                        u32::MAX as usize,
                    )? as u32
                }
                "--header-timeout" => {
                    cfg.limits.head_timeout =
                        parse_duration("--header-timeout", &value("--header-timeout")?)?
                }
                "--keepalive-timeout" => {
                    cfg.limits.keep_alive_timeout =
                        parse_duration("--keepalive-timeout", &value("--keepalive-timeout")?)?
                }
                "--write-timeout" => {
                    cfg.limits.write_timeout =
                        parse_duration("--write-timeout", &value("--write-timeout")?)?
                }
                "--shutdown-timeout" => {
                    cfg.limits.shutdown_timeout =
                        parse_duration("--shutdown-timeout", &value("--shutdown-timeout")?)?
                }
                "--drain-delay" => {
                    cfg.drain_delay =
                        parse_duration_or_zero("--drain-delay", &value("--drain-delay")?)?
                }
                "--hidden" if inline.is_none() => cfg.hidden = true,
                "--allow-write" if inline.is_none() => cfg.allow_write = true,
                "--zero-copy-mem" => {
                    let v = value("--zero-copy-mem")?;
                    cfg.zero_copy_mem = if v == "0" {
                        0
                    } else {
                        parse_size("--zero-copy-mem", &v)?
                    }
                }
                "--max-upload" => {
                    cfg.max_upload = parse_size("--max-upload", &value("--max-upload")?)?
                }
                "--access-log" => {
                    cfg.access_log = match value("--access-log")?.as_str() {
                        "combined" => AccessLog::Combined,
                        "json" => AccessLog::Json,
                        "off" => AccessLog::Off,
                        other => {
                            return Err(ConfigError(format!(
                                "--access-log: {other:?} is not combined, json or off"
                            )))
                        }
                    }
                }
                "--cache-valid" => {
                    cfg.cache_valid =
                        parse_duration_or_zero("--cache-valid", &value("--cache-valid")?)?
                }
                "--404" => cfg.not_found_page = Some(PathBuf::from(value("--404")?)),
                "--fallback" => cfg.fallback = Some(PathBuf::from(value("--fallback")?)),
                "--site-rules" => {
                    cfg.site_rules = match value("--site-rules")?.as_str() {
                        "on" => true,
                        "off" => false,
                        other => {
                            return Err(ConfigError(format!(
                                "--site-rules: {other:?} is not on or off"
                            )))
                        }
                    }
                }
                "--header" => {
                    // The environment variable holds one field per line (`\n`): a CR left in
                    // a field is refused by `check_header`, so `\r\n` can never split one.
                    for field in value("--header")?
                        .split('\n')
                        .filter(|l| !l.trim().is_empty())
                    {
                        crate::site_rules::check_header(field)
                            .map_err(|e| ConfigError(format!("--header {field:?}: {e}")))?;
                        cfg.headers.push(field.trim().to_string());
                    }
                }
                "--clean-urls" if inline.is_none() => cfg.clean_urls = true,
                "--list-dirs" if inline.is_none() => cfg.list_dirs = true,
                "--health-path" => {
                    cfg.health_path = endpoint_path("--health-path", value("--health-path")?)?
                }
                "--metrics-path" => {
                    cfg.metrics_path = endpoint_path("--metrics-path", value("--metrics-path")?)?
                }
                _ if flag.starts_with('-') => {
                    return Err(ConfigError(format!("unknown option {flag} (see --help)")))
                }
                // The one positional argument: the root, as miniserve and static-web-server
                // take it; it comes after the environment, so it wins over POOLSERVE_ROOT.
                _ if !positional => {
                    positional = true;
                    cfg.root = PathBuf::from(raw);
                }
                _ => {
                    return Err(ConfigError(format!(
                        "unexpected argument {raw:?}: one DIR at most (see --help)"
                    )))
                }
            }
        }
        if let Some(p) = port {
            cfg.addr.set_port(p);
        }
        Ok(CliAction::Run(cfg))
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // `localhost:8000` and other names: resolve once, at start-up, preferring IPv4 like
    // most clients do.
    let bad = || ConfigError(format!("--addr: {s:?} is not HOST:PORT"));
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().map_err(|_| bad())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(bad)
}

fn parse_num(name: &str, s: &str, min: usize, max: usize) -> Result<usize, ConfigError> {
    match s.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError(format!(
            "{name}: {s:?} is not a number from {min} to {max}"
        ))),
    }
}

/// Parses a byte count: digits with an optional K, M or G suffix (powers of 1024).
fn parse_size(name: &str, s: &str) -> Result<u64, ConfigError> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(ConfigError(format!("{name}: {s:?} is not a size like 64M"))),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| ConfigError(format!("{name}: {s:?} is not a size like 64M")))
}

/// Like [`parse_duration`], but a plain `0` is allowed and means "off".
fn parse_duration_or_zero(name: &str, s: &str) -> Result<Duration, ConfigError> {
    if s == "0" {
        Ok(Duration::ZERO)
    } else {
        parse_duration(name, s)
    }
}

/// Parses `2`, `2.5` (seconds) or `500ms`. Zero is refused: a zero timeout would mean
/// "wait forever" for a socket option, the opposite of what a user typing 0 wants.
pub fn parse_duration(name: &str, s: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{name}: {s:?} is not a duration like 10, 2.5 or 500ms"
        ))
    };
    let d = if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse::<u64>().map_err(|_| bad())?)
    } else {
        let secs = s
            .strip_suffix('s')
            .unwrap_or(s)
            .parse::<f64>()
            .map_err(|_| bad())?;
        if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
            return Err(bad());
        }
        Duration::from_secs_f64(secs)
    };
    if d.is_zero() {
        return Err(ConfigError(format!("{name}: must be greater than zero")));
    }
    Ok(d)
}

/// A seam for saturation tests. A worker never waits on a client, so a test cannot hold one
/// with a slow client any more; instead a request for [`HoldGate::path`] makes its worker
/// wait here until [`HoldGate::release`] (or [`HOLD_MAX`] passes, so a failed test cannot
/// hang a drain). Hidden from the docs and absent unless a test sets it.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct HoldGate {
    /// The request path that holds its worker.
    pub path: String,
    state: Arc<(Mutex<(bool, usize)>, Condvar)>,
}

/// The longest a [`HoldGate`] holds a worker.
#[doc(hidden)]
pub const HOLD_MAX: Duration = Duration::from_secs(20);

impl HoldGate {
    /// A closed gate for requests of `path`.
    pub fn new(path: &str) -> HoldGate {
        HoldGate {
            path: path.to_string(),
            state: Arc::new((Mutex::new((false, 0)), Condvar::new())),
        }
    }

    /// Opens the gate for good: held workers go on.
    pub fn release(&self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).0 = true;
        cvar.notify_all();
    }

    /// Workers waiting at the gate now.
    pub fn held(&self) -> usize {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    /// Waits at the gate if `path` is the held one and the gate is closed.
    pub fn wait_if(&self, path: &str) {
        if path != self.path {
            return;
        }
        let (lock, cvar) = &*self.state;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        st.1 += 1;
        let (mut st, _) = cvar
            .wait_timeout_while(st, HOLD_MAX, |s| !s.0)
            .unwrap_or_else(|e| e.into_inner());
        st.1 -= 1;
    }
}

impl PartialEq for HoldGate {
    fn eq(&self, other: &HoldGate) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
    }
}

impl Eq for HoldGate {}

/// Test seam: once armed, the keeper panics at the start of its next turn (once), so that
/// tests can check that a keeper panic is contained: logged, a drain, and an error from
/// `run` (exit status 1). Hidden from the docs and absent unless a test sets it.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct KeeperFault(Arc<std::sync::atomic::AtomicBool>);

impl KeeperFault {
    /// Makes the keeper panic at its next turn.
    pub fn arm(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the fault is armed; disarms it.
    pub fn fire(&self) -> bool {
        self.0.swap(false, std::sync::atomic::Ordering::SeqCst)
    }
}

impl PartialEq for KeeperFault {
    fn eq(&self, other: &KeeperFault) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for KeeperFault {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_nofile(text), Some(1024));
        let unlimited = text.replace("1024      ", "unlimited ");
        assert_eq!(parse_nofile(&unlimited), None);
        assert_eq!(parse_nofile("Max processes 10 10 processes\n"), None);
        assert_eq!(parse_nofile(""), None);
        if cfg!(target_os = "linux") {
            assert!(
                nofile_limit().is_some_and(|n| n > 0),
                "this process has a limit"
            );
        }
    }

    #[test]
    fn the_derived_cap_is_the_most_the_descriptors_allow() {
        // (limit, workers) -> connections
        let table = [
            (1024, 8, 440),
            (1024, 64, 414),
            (64, 8, 16),
            (40, 8, 7),
            (10, 8, 1), // at least one, even when the limit is too low for it
            (1 << 20, 8, MAX_CONNECTIONS_DERIVED_CEILING),
        ];
        for (limit, workers, want) in table {
            let budget = FdBudget::for_limit(limit, workers, SNAPSHOT_MAX_FILES);
            assert_eq!(budget.connections, want, "limit {limit}, {workers} workers");
            if want > 1 && want < MAX_CONNECTIONS_DERIVED_CEILING {
                assert!(budget.needed() as u64 <= limit, "{budget:?} fits {limit}");
                let more = FdBudget::new(want + 1, workers, budget.snapshots);
                assert!(
                    more.needed() as u64 > limit,
                    "{more:?} would not fit {limit}"
                );
            }
        }
        assert_eq!(room_for(7), 0);
        assert_eq!(room_for(471), 58);
        // Snapshots get at most an eighth of a low limit, and none without memory for them.
        assert_eq!(FdBudget::for_limit(64, 8, SNAPSHOT_MAX_FILES).snapshots, 5);
        assert_eq!(
            FdBudget::for_limit(4096, 8, SNAPSHOT_MAX_FILES).snapshots,
            64
        );
        assert_eq!(snapshot_files_for(0), 0);
        assert_eq!(snapshot_files_for(ZERO_COPY_MEM), SNAPSHOT_MAX_FILES);
        assert_eq!(snapshot_files_for(1 << 20), 8);
        assert_eq!(room_for(10_000), ROOM_MAX);
        // The fallback fits the common soft limit of 1024 with up to 48 workers.
        assert!(FdBudget::new(MAX_CONNECTIONS, 48, SNAPSHOT_MAX_FILES).needed() <= 1024);
    }

    fn run(args: &[&str]) -> Result<CliAction, ConfigError> {
        Config::from_args(args.iter().map(OsString::from))
    }

    fn cfg(args: &[&str]) -> Config {
        match run(args) {
            Ok(CliAction::Run(c)) => c,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_origin_server() {
        let c = cfg(&[]);
        assert_eq!(c.root, PathBuf::from("html"));
        assert_eq!(c.addr, "127.0.0.1:8000".parse().unwrap());
        assert!(c.workers >= 4 && c.queue >= 1024);
    }

    #[test]
    fn flags_table() {
        let c = cfg(&[
            "--root",
            "/srv",
            "--port=9000",
            "--workers",
            "3",
            "--queue",
            "7",
        ]);
        assert_eq!(
            (c.root.to_str(), c.addr.port(), c.workers, c.queue),
            (Some("/srv"), 9000, 3, 7)
        );
        assert_eq!(cfg(&[]).overload, Overload::Shed);
        assert_eq!(cfg(&[]).drain_delay, Duration::ZERO);
        assert_eq!(
            cfg(&["--drain-delay", "5"]).drain_delay,
            Duration::from_secs(5)
        );
        assert_eq!(cfg(&["--drain-delay=0"]).drain_delay, Duration::ZERO);
        assert_eq!(cfg(&["--overload", "wait"]).overload, Overload::Wait);
        assert_eq!(cfg(&[]).health_path.as_deref(), Some("/health"));
        assert_eq!(cfg(&["--health-path", "off"]).health_path, None);
        assert_eq!(
            cfg(&["--health-path=/-/ready"]).health_path.as_deref(),
            Some("/-/ready")
        );
        let c = cfg(&["--404", "site/404.html", "--fallback=site/index.html"]);
        assert_eq!(c.not_found_page, Some(PathBuf::from("site/404.html")));
        assert_eq!(c.fallback, Some(PathBuf::from("site/index.html")));
        assert_eq!(cfg(&[]).fallback, None);
        let c = cfg(&["--addr", "[::1]:81", "--hidden", "--max-requests", "5"]);
        assert_eq!(c.addr, "[::1]:81".parse().unwrap());
        assert!(c.hidden);
        assert_eq!(c.limits.max_requests, 5);
        let c = cfg(&["--port", "0", "--addr", "0.0.0.0:1"]);
        assert_eq!(
            c.addr,
            "0.0.0.0:0".parse().unwrap(),
            "--port wins over --addr's port"
        );
        let c = cfg(&[
            "--header-timeout",
            "500ms",
            "--keepalive-timeout=2.5",
            "--write-timeout",
            "3s",
        ]);
        assert_eq!(c.limits.head_timeout, Duration::from_millis(500));
        assert_eq!(c.limits.keep_alive_timeout, Duration::from_millis(2500));
        assert_eq!(c.limits.write_timeout, Duration::from_secs(3));
        // (arguments, --defer-accept seconds)
        for (args, want) in [
            (&[][..], DEFER_ACCEPT_SECS),
            (&["--defer-accept", "0"], 0),
            (&["--defer-accept=5"], 5),
            (&["--defer-accept", "600"], DEFER_ACCEPT_MAX_SECS),
        ] {
            assert_eq!(cfg(args).defer_accept, want, "{args:?}");
        }
        // (arguments, --zero-copy-mem bytes)
        for (args, want) in [
            (&[][..], ZERO_COPY_MEM),
            (&["--zero-copy-mem", "0"], 0),
            (&["--zero-copy-mem", "256M"], 256 << 20),
            (&["--zero-copy-mem=1G"], 1 << 30),
        ] {
            assert_eq!(cfg(args).zero_copy_mem, want, "{args:?}");
        }
    }

    #[test]
    fn help_and_version() {
        assert_eq!(run(&["--help"]), Ok(CliAction::Help));
        assert_eq!(run(&["-h", "--bogus"]), Ok(CliAction::Help));
        assert_eq!(run(&["--version"]), Ok(CliAction::Version));
        assert!(usage().contains("--root DIR"));
    }

    fn with_env(vars: &[(&str, &str)], args: &[&str]) -> Result<CliAction, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        };
        Config::from_env_and_args(env, args.iter().map(OsString::from))
    }

    #[test]
    fn environment_variables_with_flags_winning() {
        let cfg = |vars: &[(&str, &str)], args: &[&str]| match with_env(vars, args) {
            Ok(CliAction::Run(c)) => c,
            other => panic!("{vars:?} {args:?}: {other:?}"),
        };
        let c = cfg(
            &[
                ("POOLSERVE_WORKERS", "3"),
                ("POOLSERVE_HIDDEN", "1"),
                ("POOLSERVE_ROOT", "/srv/www"),
                ("POOLSERVE_ACCESS_LOG", "json"),
                ("POOLSERVE_MAX_REQUESTS", "7"),
                ("POOLSERVE_DEFER_ACCEPT", "0"),
            ],
            &[],
        );
        assert_eq!(c.defer_accept, 0);
        assert_eq!(c.workers, 3);
        assert!(c.hidden);
        assert_eq!(c.root, PathBuf::from("/srv/www"));
        assert_eq!(c.access_log, AccessLog::Json);
        assert_eq!(c.limits.max_requests, 7);
        let c = cfg(&[("POOLSERVE_WORKERS", "3")], &["--workers", "5"]);
        assert_eq!(c.workers, 5, "the flag wins");
        assert!(!cfg(&[("POOLSERVE_HIDDEN", "false")], &[]).hidden);
        assert!(cfg(&[("POOLSERVE_HIDDEN", "0")], &["--hidden"]).hidden);
        assert_eq!(
            cfg(&[("POOLSERVE_404", "x.html")], &[]).not_found_page,
            Some(PathBuf::from("x.html"))
        );
        for (vars, needle) in [
            (
                &[("POOLSERVE_WORKERS", "x")][..],
                "POOLSERVE_WORKERS: --workers",
            ),
            (&[("POOLSERVE_HIDDEN", "maybe")][..], "POOLSERVE_HIDDEN:"),
            (&[("POOLSERVE_OVERLOAD", "drop")][..], "POOLSERVE_OVERLOAD:"),
        ] {
            let e = with_env(vars, &[]).unwrap_err();
            assert!(e.0.starts_with(needle), "{e:?}");
        }
    }

    #[test]
    fn every_option_has_its_variable_and_help_lists_it() {
        let help = usage();
        for (flag, takes_value) in ENV_OPTIONS {
            let args: Vec<&str> = if *takes_value {
                vec![flag, "1"]
            } else {
                vec![flag]
            };
            // Accepted by the parser (a value error is fine: the flag is known).
            if let Err(e) = run(&args) {
                assert!(!e.0.starts_with("unknown option"), "{flag}: {e:?}");
            }
            assert!(help.contains(&env_name(flag)), "{flag} missing from --help");
            assert!(
                help.contains(&format!("  {flag} ")) || help.contains(&format!(", {flag} ")),
                "{flag} not documented"
            );
        }
        assert_eq!(env_name("--max-requests"), "POOLSERVE_MAX_REQUESTS");
        assert_eq!(env_name("--404"), "POOLSERVE_404");
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        for args in [
            &["--bogus"][..],
            &["--port"],
            &["--port", "70000"],
            &["--port", "x"],
            &["--workers", "0"],
            &["--queue", "-1"],
            &["--addr", "nonsense"],
            &["--header-timeout", "0"],
            &["--write-timeout", "soon"],
            &["--shutdown-timeout", "NaN"],
            &["--hidden=yes"],
            &["--overload", "drop"],
            &["--drain-delay", "-1"],
            &["--defer-accept", "1.5"],
            &["--defer-accept", "601"],
            &["--defer-accept", "-1"],
            &["--zero-copy-mem", "-1"],
            &["--zero-copy-mem", "lots"],
            &["--zero-copy-mem", "0M"],
            &["--health-path", "health"],
            &["--health-path", "/a?b"],
            &["--site-rules", "maybe"],
            &["--header", "no colon"],
            &["--header", "Content-Length: 5"],
            &["--header", "X-A: b\rSet-Cookie: c"],
            &["--header", "! X-A"],
            &["--clean-urls=yes"],
            &["--list-dirs=yes"],
            &["one", "two"],
            &["-p"],
            &["-p", "x"],
        ] {
            let err = run(args).expect_err(&format!("{args:?} should fail"));
            assert!(
                !err.0.contains('\n') && !err.0.is_empty(),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn site_rule_options_and_their_environment() {
        let c = cfg(&[
            "--header",
            "X-A: 1",
            "--header=X-B: two words",
            "--clean-urls",
        ]);
        assert_eq!(c.headers, ["X-A: 1", "X-B: two words"]);
        assert!(c.clean_urls && c.site_rules);
        assert!(!cfg(&["--site-rules", "off"]).site_rules);
        assert!(!Config::default().clean_urls && Config::default().site_rules);
        // One field per line in the environment; the command line adds to them.
        let c = match with_env(
            &[
                ("POOLSERVE_HEADER", "X-A: 1\nX-B: 2\n"),
                ("POOLSERVE_SITE_RULES", "off"),
            ],
            &["--header", "X-C: 3"],
        ) {
            Ok(CliAction::Run(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.headers, ["X-A: 1", "X-B: 2", "X-C: 3"]);
        assert!(!c.site_rules);
        let err = with_env(&[("POOLSERVE_HEADER", "X-A: 1\nDate: now")], &[]).unwrap_err();
        assert!(
            err.0
                .starts_with("POOLSERVE_HEADER: --header \"Date: now\""),
            "{err}"
        );
    }

    #[test]
    fn an_inherited_socket_comes_from_fd_or_from_systemd_for_this_process() {
        let me = std::process::id().to_string();
        let other = (std::process::id() + 1).to_string();
        let fd = |vars: &[(&str, &str)], args: &[&str]| match with_env(vars, args) {
            Ok(CliAction::Run(c)) => Ok(c.listen_fd),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.0),
        };
        assert_eq!(fd(&[], &[]), Ok(None));
        assert_eq!(fd(&[], &["--fd", "7"]), Ok(Some(7)));
        assert_eq!(fd(&[], &["--fd=0"]), Ok(Some(0)));
        assert_eq!(fd(&[("POOLSERVE_FD", "5")], &[]), Ok(Some(5)));
        let systemd = [("LISTEN_FDS", "1"), ("LISTEN_PID", me.as_str())];
        assert_eq!(fd(&systemd, &[]), Ok(Some(3)));
        assert_eq!(fd(&systemd, &["--fd", "9"]), Ok(Some(9)), "--fd wins");
        // Meant for another process (a parent left them set): ignored, as sd_listen_fds does.
        assert_eq!(
            fd(&[("LISTEN_FDS", "1"), ("LISTEN_PID", other.as_str())], &[]),
            Ok(None)
        );
        assert_eq!(fd(&[("LISTEN_FDS", "1")], &[]), Ok(None));
        assert_eq!(
            fd(&[("LISTEN_FDS", "0"), ("LISTEN_PID", me.as_str())], &[]),
            Ok(None)
        );
        for (fds, want) in [
            ("2", "LISTEN_FDS=2: poolserve serves one listening socket (give the unit one ListenStream=)"),
            ("x", "LISTEN_FDS: \"x\" is not a number"),
        ] {
            assert_eq!(fd(&[("LISTEN_FDS", fds), ("LISTEN_PID", me.as_str())], &[]), Err(want.to_string()));
        }
        assert!(!cfg(&[]).reuse_port);
        assert!(cfg(&["--reuse-port"]).reuse_port);
        let both = fd(&systemd, &["--reuse-port"]).unwrap_err();
        assert!(
            both.starts_with("--reuse-port: the inherited listening socket"),
            "{both}"
        );
        assert!(fd(&[], &["--fd", "3", "--reuse-port"]).is_err());
        // Config::from_args alone (embedding programs) refuses the pair too.
        assert!(run(&["--fd", "3", "--reuse-port"]).is_err());
        assert!(run(&["--reuse-port=yes"]).is_err());
        match with_env(&[("POOLSERVE_REUSE_PORT", "1")], &[]) {
            Ok(CliAction::Run(c)) => assert!(c.reuse_port),
            other => panic!("{other:?}"),
        }
        for bad in [
            &["--fd"][..],
            &["--fd", "-1"],
            &["--fd", "three"],
            &["--fd", "99999999999"],
        ] {
            assert!(fd(&[], bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_metrics_path_is_off_unless_given_and_never_the_health_path() {
        assert_eq!(cfg(&[]).metrics_path, None);
        assert_eq!(
            cfg(&["--metrics-path", "/metrics"]).metrics_path.as_deref(),
            Some("/metrics")
        );
        assert_eq!(cfg(&["--metrics-path=off"]).metrics_path, None);
        match with_env(&[("POOLSERVE_METRICS_PATH", "/-/m")], &[]) {
            Ok(CliAction::Run(c)) => assert_eq!(c.metrics_path.as_deref(), Some("/-/m")),
            other => panic!("{other:?}"),
        }
        for (args, want) in [
            (
                &["--metrics-path", "metrics"][..],
                "--metrics-path: \"metrics\" must start with / (or be \"off\")",
            ),
            (
                &["--metrics-path", "/m?x"],
                "--metrics-path: \"/m?x\" must start with / (or be \"off\")",
            ),
            (
                &["--metrics-path", "/health"],
                "--metrics-path: the health endpoint already has that path",
            ),
        ] {
            assert_eq!(run(args).unwrap_err().0, want, "{args:?}");
        }
        // With the health endpoint moved or off, /health is free for metrics.
        let c = cfg(&["--health-path", "off", "--metrics-path", "/health"]);
        assert_eq!(
            (c.health_path, c.metrics_path.as_deref()),
            (None, Some("/health"))
        );
        // Also when the paths come from the environment: each variable is checked alone
        // first, and alone POOLSERVE_METRICS_PATH=/health meets the default health path.
        let free = [
            ("POOLSERVE_METRICS_PATH", "/health"),
            ("POOLSERVE_HEALTH_PATH", "off"),
        ];
        for (vars, args) in [
            (&free[..], &[][..]),
            (&free[..1], &["--health-path", "/healthz"][..]),
        ] {
            match with_env(vars, args) {
                Ok(CliAction::Run(c)) => assert_eq!(c.metrics_path.as_deref(), Some("/health")),
                other => panic!("{vars:?} {args:?}: {other:?}"),
            }
        }
        assert_eq!(
            with_env(&free[..1], &[]).unwrap_err().0,
            "--metrics-path: the health endpoint already has that path"
        );
    }

    #[test]
    fn listings_are_off_unless_asked_for() {
        let d = Config::default();
        assert!(!d.list_dirs);
        assert_eq!(d.list_max, crate::listing::LISTING_MAX_ENTRIES);
        assert!(cfg(&["--list-dirs"]).list_dirs);
        let c = cfg(&[".", "--list-dirs", "-p", "8080"]);
        assert_eq!(
            (c.root, c.list_dirs, c.addr.port()),
            (PathBuf::from("."), true, 8080)
        );
        for (value, on) in [("1", true), ("yes", true), ("0", false), ("no", false)] {
            match with_env(&[("POOLSERVE_LIST_DIRS", value)], &[]) {
                Ok(CliAction::Run(c)) => assert_eq!(c.list_dirs, on, "{value}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let err = with_env(&[("POOLSERVE_LIST_DIRS", "sure")], &[]).unwrap_err();
        assert!(err.0.starts_with("POOLSERVE_LIST_DIRS:"), "{err}");
    }

    #[test]
    fn the_root_may_be_given_as_the_one_positional_argument() {
        assert_eq!(cfg(&["site"]).root, PathBuf::from("site"));
        assert_eq!(cfg(&["--root", "a", "b"]).root, PathBuf::from("b"));
        let c = cfg(&["-p", "9000", ".", "--hidden"]);
        assert_eq!(
            (c.root, c.addr.port(), c.hidden),
            (PathBuf::from("."), 9000, true)
        );
        // The command line wins over the environment, the positional root too.
        let c = match with_env(&[("POOLSERVE_ROOT", "/srv/www")], &["shared"]) {
            Ok(CliAction::Run(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(c.root, PathBuf::from("shared"));
        let err = run(&["a", "b"]).unwrap_err();
        assert_eq!(
            err.0,
            "unexpected argument \"b\": one DIR at most (see --help)"
        );
    }
}
