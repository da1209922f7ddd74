//! The stop signal: a [`Shutdown`] token shared by every thread, and the signal-hook wiring
//! that turns SIGINT/SIGTERM into it.
//!
//! Triggering sets one flag and wakes every thread that may be asleep in a `mio::Poll`
//! (the acceptor and the keeper register a [`mio::Waker`] here), so nobody notices the stop
//! late. Workers never sleep on a socket, so they need no wake-up: they learn of the stop from
//! the flag between requests and from the `Exit` jobs the keeper sends once everything is
//! closed. Only `main.rs` calls [`on_signals`]; an embedder stops the server with
//! `ServerHandle::shutdown()` and gets no process-global side effects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// A cloneable stop token.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    announced: AtomicBool,
    triggered: AtomicBool,
    at: OnceLock<Instant>,
    wakers: Mutex<Vec<Arc<mio::Waker>>>,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

impl Shutdown {
    /// A token that has not been triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Announces a coming stop: `/health` answers 503 from now on, while everything else is
    /// still served normally (the `--drain-delay` window, for load balancers to notice).
    pub fn announce(&self) {
        self.inner.announced.store(true, Ordering::SeqCst);
    }

    /// Whether a stop has been announced (or started).
    pub fn is_announced(&self) -> bool {
        self.inner.announced.load(Ordering::SeqCst) || self.is_triggered()
    }

    /// Starts the drain. Idempotent: returns true only for the call that started it.
    pub fn trigger(&self) -> bool {
        self.announce();
        if self.inner.triggered.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _ = self.inner.at.set(Instant::now());
        self.wake_all();
        true
    }

    /// Whether the drain has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::SeqCst)
    }

    /// When the drain started, if it has.
    pub fn triggered_at(&self) -> Option<Instant> {
        self.inner.at.get().copied()
    }

    /// Registers a waker to be woken on [`Shutdown::trigger`] (and by [`Shutdown::wake_all`]).
    pub(crate) fn add_waker(&self, waker: Arc<mio::Waker>) {
        let mut wakers = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        wakers.push(waker);
        // A trigger that raced with registration must still be seen.
        if self.is_triggered() {
            let _ = wakers.last().map(|w| w.wake());
        }
    }

    /// Wakes every registered poller, e.g. when the last connection of a drain closes.
    pub(crate) fn wake_all(&self) {
        let wakers = self.inner.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for w in wakers.iter() {
            if let Err(e) = w.wake() {
                log::error!("cannot wake a poller: {e}");
            }
        }
    }
}

/// Starts a thread named `signals` that, on the first SIGINT or SIGTERM, announces the stop
/// (health turns 503), keeps serving for `drain_delay`, then triggers the drain; a second
/// signal exits the process at once with status 130 (the operator asked twice). SIGUSR1 logs
/// the server's counters.
#[cfg(unix)]
pub fn on_signals(
    handle: crate::ServerHandle,
    drain_delay: std::time::Duration,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let shutdown = handle.shutdown_token();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGUSR1 {
                    log::info!("{}", handle.stats());
                    continue;
                }
                seen += 1;
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if seen == 1 && drain_delay.is_zero() {
                    log::info!("{name} received: draining (send it again to exit at once)");
                    shutdown.trigger();
                } else if seen == 1 {
                    log::info!(
                        "{name} received: health now 503, draining in {} ms (send it again to exit at once)",
                        drain_delay.as_millis()
                    );
                    shutdown.announce();
                    let later = shutdown.clone();
                    let timer = std::thread::Builder::new().name("drain-delay".into()).spawn(move || {
                        std::thread::sleep(drain_delay);
                        later.trigger();
                    });
                    if timer.is_err() {
                        shutdown.trigger();
                    }
                } else {
                    log::warn!("second {name}: exiting now without finishing the drain");
                    std::process::exit(130);
                }
            }
        })?;
    Ok(())
}
