//! State shared by the acceptor, the keeper and the workers: the validated configuration, the
//! stop token and a few counters. Counting open connections is what lets the drain know when
//! it is finished and what enforces [`crate::config::Limits::max_connections`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::access::{Sink, LOG_QUEUE_LINES};
use crate::cache::FileCache;
use crate::config::{AccessLog, Config};
use crate::rules_file::RuleFiles;
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshots;

/// Everything the server threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration, with `root` canonicalized.
    pub config: Config,
    /// The stop token.
    pub shutdown: Shutdown,
    /// The small-file cache.
    pub cache: FileCache,
    /// Sealed copies of large files, for zero-copy bodies.
    pub snapshots: Snapshots,
    /// `_redirects`, `_headers` and `--header`, reloaded when the files change.
    pub rules: RuleFiles,
    /// The `--header` fields as name and value, for the answers written where the rules are
    /// not consulted (the acceptor's 503, the keeper's 408): fixed at start-up.
    pub fixed_fields: Vec<(String, String)>,
    /// The acceptor's 503 with those fields ([`crate::response::overloaded`]).
    pub overloaded: Vec<u8>,
    /// The access log's queue (the `access-log` thread writes it to stdout).
    pub access: Sink,
    /// Serializes the commit of writes (PUT rename, DELETE) with their precondition check.
    pub write_lock: std::sync::Mutex<()>,
    /// Connections open anywhere: queued, being served, parked or lingering.
    open: AtomicUsize,
    /// Requests answered since start.
    pub requests: AtomicU64,
    /// Connections refused with the canned 503 since start.
    pub shed: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections closed at the connection cap to seat a new one (idle, silent, slowloris).
    pub reclaimed: AtomicU64,
    /// Parked connections that are not working (idle, silent, partial heads, lingering
    /// closes), as the keeper last counted them: at the cap, the acceptor hands a new
    /// connection to the keeper to reclaim one of them instead of answering 503.
    pub reclaimable: AtomicUsize,
    /// Requests by method and status, body bytes, durations, and timeouts by kind (the
    /// figures `--metrics-path` adds to these).
    pub metrics: crate::metrics::Metrics,
    /// Connections still open when a drain hit the shutdown timeout.
    pub forced: AtomicU64,
    /// Connections parked with the keeper right now (idle, silent or partial heads).
    pub parked: AtomicUsize,
    /// Sockets the keeper watches right now: parked ones and those a worker has.
    pub watched: AtomicUsize,
    /// Connections waiting in the accept queue right now (set by the acceptor and workers).
    pub queued: AtomicUsize,
    /// Workers currently serving a connection (the rest wait for jobs).
    pub busy_workers: AtomicUsize,
    /// The keeper thread panicked (the server drains and `run` returns an error).
    pub keeper_failed: AtomicBool,
    /// The acceptor is done (listener closed, last sweep queued): until then a drain is not
    /// over even with no connection open, because one may still be accepted.
    pub acceptor_done: AtomicBool,
    /// Big listings being read and sorted right now (see [`Slot`]).
    pub listing_builds: Arc<AtomicUsize>,
    /// Bytes of entries held by the listing pages being sent right now.
    pub listing_bytes: Arc<AtomicUsize>,
}

/// A share of a bounded resource counted by a shared counter (a listing being built, the
/// memory of the listing pages being sent): `amount` of at most `max` in all, given back
/// when dropped, wherever the owner ends, a panic included.
#[derive(Debug)]
pub(crate) struct Slot {
    counter: Arc<AtomicUsize>,
    amount: usize,
}

impl Slot {
    /// `amount` more, if the total stays within `max`.
    pub fn take(counter: &Arc<AtomicUsize>, amount: usize, max: usize) -> Option<Slot> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(amount).filter(|total| *total <= max)
            })
            .ok()
            .map(|_| Slot {
                counter: Arc::clone(counter),
                amount,
            })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.amount, Ordering::AcqRel);
    }
}

impl Shared {
    #[cfg(test)]
    pub fn new(config: Config, shutdown: Shutdown) -> Arc<Shared> {
        let rules = RuleFiles::load_or_none(&config);
        Shared::with_rules(config, shutdown, rules)
    }

    /// [`Shared::new`] with the site rules already loaded (`Server::bind` refuses to start
    /// on a malformed rule file; see [`RuleFiles::load`]).
    pub fn with_rules(config: Config, shutdown: Shutdown, rules: RuleFiles) -> Arc<Shared> {
        let fixed_fields: Vec<(String, String)> = (rules.current().headers.global().pairs())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Arc::new(Shared {
            rules,
            overloaded: crate::response::overloaded(&fixed_fields),
            fixed_fields,
            cache: FileCache::new(config.cache_valid),
            snapshots: Snapshots::new(config.zero_copy_mem, config.zero_copy_files),
            // The queue's slots are allocated up front (4096 lines, about 128 KiB touched):
            // with the access log off nothing is ever queued, so one slot does.
            access: Sink::new(if config.access_log == AccessLog::Off {
                1
            } else {
                LOG_QUEUE_LINES
            }),
            write_lock: std::sync::Mutex::new(()),
            config,
            shutdown,
            open: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            reclaimable: AtomicUsize::new(0),
            metrics: crate::metrics::Metrics::default(),
            forced: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
            watched: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            busy_workers: AtomicUsize::new(0),
            keeper_failed: AtomicBool::new(false),
            acceptor_done: AtomicBool::new(false),
            listing_builds: Arc::new(AtomicUsize::new(0)),
            listing_bytes: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Whether the drain is over: the acceptor is done and no connection is open anywhere.
    pub fn drained(&self) -> bool {
        self.acceptor_done.load(Ordering::SeqCst) && self.open() == 0
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            accepted: get(&self.accepted),
            served: get(&self.requests),
            active: self.busy_workers.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            idle: self.parked.load(Ordering::Relaxed),
            watched: self.watched.load(Ordering::Relaxed),
            shed: get(&self.shed),
            timeouts: self.metrics.timeouts(),
            open: self.open(),
            forced: get(&self.forced),
            log_dropped: self.access.dropped(),
            reclaimed: get(&self.reclaimed),
            zero_copy: self.snapshots.usage(),
        }
    }
}

/// Server counters, as logged on SIGUSR1 and at shutdown (nginx `stub_status` in spirit).
/// Each is a lock-free atomic read; the snapshot is not one instant across all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub served: u64,
    /// Workers serving a connection now.
    pub active: usize,
    /// Connections waiting in the accept queue now.
    pub queued: usize,
    /// Connections parked with the keeper now (idle keep-alive, silent, partial heads).
    pub idle: usize,
    /// Sockets registered with the keeper now: the idle ones plus keep-alive connections a
    /// worker is serving (a socket stays registered from its first park until it closes).
    pub watched: usize,
    /// Connections refused with 503 since start.
    pub shed: u64,
    /// Connections ended by a deadline since start.
    pub timeouts: u64,
    /// Connections open now: queued, being served, parked or closing.
    pub open: usize,
    /// Connections given up on when a drain hit the shutdown timeout.
    pub forced: u64,
    /// Access-log lines dropped since start because stdout did not keep up.
    pub log_dropped: u64,
    /// Connections closed at the cap to seat new ones since start.
    pub reclaimed: u64,
    /// Bytes and count of the snapshots alive now (sealed copies of large files for
    /// zero-copy bodies; shared memory, outside the process's RSS).
    pub zero_copy: (u64, usize),
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stats: accepted={} served={} active={} queued={} idle={} watched={} shed={} reclaimed={} timeouts={} forced={} log_dropped={} zero_copy_bytes={} zero_copy_files={}",
            self.accepted, self.served, self.active, self.queued, self.idle, self.watched, self.shed, self.reclaimed, self.timeouts, self.forced, self.log_dropped, self.zero_copy.0, self.zero_copy.1
        )
    }
}

/// Counts one open connection for as long as it lives; moved along with its socket.
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    pub fn new(shared: &Arc<Shared>) -> OpenGuard {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let before = self.0.open.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.0.shutdown.is_triggered() {
            // The last connection of a drain: the keeper may be waiting for exactly this.
            self.0.shutdown.wake_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_when_dropped() {
        let counter = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&counter, 1, 2).expect("first");
        let b = Slot::take(&counter, 1, 2).expect("second");
        assert!(Slot::take(&counter, 1, 2).is_none(), "a third of two");
        assert_eq!(counter.load(Ordering::SeqCst), 2);
        drop(a);
        let c = Slot::take(&counter, 1, 2).expect("a place given back");
        // A panic gives the place back too (a listing cut short by one).
        let counter2 = Arc::clone(&counter);
        let _ = std::thread::spawn(move || {
            let _held = Slot::take(&counter2, 1, 3).expect("third of three");
            panic!("dropped by unwinding");
        })
        .join();
        assert_eq!(counter.load(Ordering::SeqCst), 2);
        drop((b, c));
        assert_eq!(counter.load(Ordering::SeqCst), 0);
        // Amounts: what fits is taken, what would pass the bound is not (nor overflow).
        let bytes = Arc::new(AtomicUsize::new(0));
        let big = Slot::take(&bytes, 700, 1000).expect("700 of 1000");
        assert!(Slot::take(&bytes, 301, 1000).is_none());
        assert!(Slot::take(&bytes, usize::MAX, usize::MAX).is_none());
        let rest = Slot::take(&bytes, 300, 1000).expect("exactly the rest");
        assert_eq!(bytes.load(Ordering::SeqCst), 1000);
        drop((big, rest));
        assert_eq!(bytes.load(Ordering::SeqCst), 0);
    }
}
