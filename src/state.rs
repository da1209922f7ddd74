//! State shared by the acceptor, the keeper and the workers: the validated configuration, the
//! stop token and a few counters. Counting open connections is what lets the drain know when
//! it is finished and what enforces [`crate::config::Limits::max_connections`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::shutdown::Shutdown;

/// Everything the server threads share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The configuration, with `root` canonicalized.
    pub config: Config,
    /// The stop token.
    pub shutdown: Shutdown,
    /// Connections open anywhere: queued, being served, parked or lingering.
    open: AtomicUsize,
    /// Requests answered since start.
    pub requests: AtomicU64,
    /// Connections refused with the canned 503 since start.
    pub shed: AtomicU64,
    /// Workers currently serving a connection (the rest wait for jobs).
    pub busy_workers: AtomicUsize,
    /// The acceptor is done (listener closed, last sweep queued): until then a drain is not
    /// over even with no connection open, because one may still be accepted.
    pub acceptor_done: AtomicBool,
}

impl Shared {
    pub fn new(config: Config, shutdown: Shutdown) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            shutdown,
            open: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            busy_workers: AtomicUsize::new(0),
            acceptor_done: AtomicBool::new(false),
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
