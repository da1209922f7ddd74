//! The keeper: one thread that holds every connection that is waiting for bytes, so that no
//! worker ever waits on a quiet client (Apache's event MPM shape; see
//! `../shared/design/architecture.md`).
//!
//! It owns the parked set (a slab indexed by `mio::Token`), a deadline heap, and one
//! `mio::Poll`. Each parked socket is registered on arrival (for readability, or for
//! writability when it is a slow reader in the middle of a response) and deregistered
//! when it leaves, so the std `TcpStream` stays the only owner of the descriptor (registered
//! through `SourceFd`, no `unsafe`). epoll reports a socket that is already readable at
//! registration, so bytes that arrive between the worker's last read and the park are never
//! missed. The poll timeout is the next deadline: no spinning, no CPU while idle.
//!
//! Ready → the connection goes back to the workers on the ready channel (which workers
//! prefer over new connections, and which is never answered 503). Deadline → 408 for a partial
//! head, a quiet close for an idle or fresh one, an abandoned response for a write stalled
//! longer than the write timeout. Lingering closes (after a final response)
//! also live here: read and discard until the client's FIN or the linger deadline.
//!
//! In a drain it closes idle connections at once, gives fresh ones a short grace, keeps
//! partial heads until their deadline, lets responses in flight finish (only the shutdown
//! timeout bounds them), and exits when no connection is open anywhere; then
//! it sends one `Exit` job per worker.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::LINGER_MAX_BYTES;
use crate::connection::{self, Conn, Waiting};
use crate::pool::{ReadyQueue, STALL_AFTER};
use crate::state::{OpenGuard, Shared};

/// Token of the waker; slots use their index.
const WAKE: Token = Token(usize::MAX);
/// Most readiness events handled per poll call.
const EVENTS_PER_POLL: usize = 1024;
/// Stale deadline entries tolerated before the heap is rebuilt (see `compact_heap`).
const HEAP_SLACK: usize = 1024;
/// While draining, re-check the open count at least this often (the last close also wakes us).
const DRAIN_TICK: Duration = Duration::from_millis(50);

/// A job for the workers.
#[derive(Debug)]
pub(crate) enum Job {
    /// A connection with bytes ready (or buffered).
    Serve(Conn),
    /// Everything is closed: the worker may exit.
    Exit,
}

/// What a worker hands to the keeper.
#[derive(Debug)]
pub(crate) enum Parcel {
    /// Wait for bytes (or the deadline).
    Wait(Conn),
    /// Lingering close: discard input until FIN or the linger deadline.
    Linger(TcpStream, OpenGuard),
}

/// The workers' (and the acceptor's) way to hand connections to the keeper.
#[derive(Clone, Debug)]
pub(crate) struct KeeperHandle {
    tx: Sender<Parcel>,
    waker: Arc<Waker>,
    /// The keeper is (about to be) blocked in `poll`: only then does a parcel need the
    /// waker's system call. Under load the keeper is mostly awake and parcels just queue.
    sleeping: Arc<AtomicBool>,
}

impl KeeperHandle {
    /// Wakes the keeper to look at the load (the acceptor calls it when it queues a
    /// connection while every worker is busy).
    pub fn nudge(&self) {
        let _ = self.waker.wake();
    }

    pub fn send(&self, parcel: Parcel) {
        // The keeper outlives every open connection, so a send fails only after it exited,
        // when dropping the parcel (closing the socket) is the right thing anyway.
        if self.tx.send(parcel).is_ok() {
            // Pairs with the fence in `Keeper::run`: either the keeper sees this parcel
            // before it blocks, or we see that it sleeps and wake it.
            fence(Ordering::SeqCst);
            if self.sleeping.swap(false, Ordering::SeqCst) {
                if let Err(e) = self.waker.wake() {
                    log::error!("cannot wake the keeper: {e}");
                }
            }
        }
    }
}

enum Kind {
    Wait(Conn),
    Linger {
        stream: TcpStream,
        _open: OpenGuard,
        discarded: usize,
    },
}

struct Entry {
    kind: Kind,
    gen: u64,
    deadline: Instant,
}

struct Keeper {
    poll: Poll,
    sleeping: Arc<AtomicBool>,
    rx: Receiver<Parcel>,
    ready: Arc<ReadyQueue>,
    /// The accept queue, only to see how many new connections wait (never received from).
    new_queue: Receiver<Conn>,
    shared: Arc<Shared>,
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_gen: u64,
    draining: bool,
    scratch: Vec<u8>,
}

/// Starts the keeper thread. `done` gets a message when it exits.
pub(crate) fn start(
    shared: Arc<Shared>,
    ready: Arc<ReadyQueue>,
    new_queue: Receiver<Conn>,
    done: Sender<()>,
) -> io::Result<(KeeperHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    shared.shutdown.add_waker(Arc::clone(&waker));
    let (tx, rx) = crossbeam_channel::unbounded();
    let sleeping = Arc::new(AtomicBool::new(false));
    let mut keeper = Keeper {
        poll,
        sleeping: Arc::clone(&sleeping),
        rx,
        ready,
        new_queue,
        shared,
        slots: Vec::new(),
        free: Vec::new(),
        heap: BinaryHeap::new(),
        next_gen: 0,
        draining: false,
        scratch: vec![0; 16 * 1024],
    };
    let thread = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            keeper.run();
            let _ = done.send(());
        })?;
    Ok((
        KeeperHandle {
            tx,
            waker,
            sleeping,
        },
        thread,
    ))
}

impl Keeper {
    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut progress = (0, Instant::now());
        loop {
            let now = Instant::now();
            self.expire(now);
            self.ready.wake();
            let queued = self.ready.check_stall(&mut progress, now);
            if self.shared.shutdown.is_triggered() && !self.draining {
                self.begin_drain();
            }
            if self.draining && self.shared.drained() {
                break;
            }
            let parked = self.slots.len() - self.free.len();
            self.shared
                .parked
                .store(parked, std::sync::atomic::Ordering::Relaxed);
            let mut timeout = self
                .heap
                .peek()
                .map(|Reverse((d, _, _))| d.saturating_duration_since(now));
            if self.draining {
                timeout = Some(timeout.map_or(DRAIN_TICK, |t| t.min(DRAIN_TICK)));
            }
            if queued {
                timeout = Some(timeout.map_or(STALL_AFTER, |t| t.min(STALL_AFTER)));
            }
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                timeout = Some(Duration::ZERO); // a parcel came before the flag was up
            }
            let polled = self.poll.poll(&mut events, timeout);
            self.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("keeper: poll failed: {e}");
                    std::thread::sleep(DRAIN_TICK);
                }
                continue;
            }
            for event in events.iter() {
                if event.token() != WAKE {
                    self.on_ready(event.token().0);
                }
            }
            while let Ok(parcel) = self.rx.try_recv() {
                self.admit(parcel);
            }
            self.shed_idle_under_load();
            self.ready.wake();
        }
        self.ready.exit_all();
        log::debug!("keeper: done");
    }

    fn admit(&mut self, parcel: Parcel) {
        let limits = &self.shared.config.limits;
        let (kind, deadline) = match parcel {
            Parcel::Wait(conn) => {
                if self.draining && conn.waiting() == Waiting::Idle {
                    self.close_idle(conn);
                    return;
                }
                let deadline = conn.deadline(limits);
                (Kind::Wait(conn), deadline)
            }
            Parcel::Linger(stream, open) => (
                Kind::Linger {
                    stream,
                    _open: open,
                    discarded: 0,
                },
                Instant::now() + limits.linger_timeout,
            ),
        };
        let deadline = if self.draining {
            self.drain_deadline(&kind, deadline)
        } else {
            deadline
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let (fd, interest) = match &kind {
            Kind::Wait(conn) if conn.waiting() == Waiting::Write => {
                (conn.stream().as_raw_fd(), Interest::WRITABLE)
            }
            Kind::Wait(conn) => (conn.stream().as_raw_fd(), Interest::READABLE),
            Kind::Linger { stream, .. } => (stream.as_raw_fd(), Interest::READABLE),
        };
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), Token(slot), interest)
        {
            log::warn!("keeper: cannot watch a connection, closing it: {e}");
            self.free.push(slot);
            return;
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        self.heap.push(Reverse((deadline, slot, gen)));
        self.slots[slot] = Some(Entry {
            kind,
            gen,
            deadline,
        });
        // After the slot is filled: the rebuild keeps only entries it finds in `slots`.
        self.compact_heap();
    }

    /// The heap drops entries lazily (a connection that leaves before its deadline leaves its
    /// entry behind), so under load it would grow with requests × keep-alive timeout (90k
    /// req/s × 30 s is millions of entries). Rebuilding it from the live entries whenever it is
    /// four times larger than needed keeps it proportional to the parked set, at an amortized
    /// O(1) per park.
    fn compact_heap(&mut self) {
        let live = self.slots.len() - self.free.len();
        if self.heap.len() <= 4 * live + HEAP_SLACK {
            return;
        }
        self.heap = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| Reverse((e.deadline, slot, e.gen))))
            .collect();
    }

    /// A deadline shortened for the drain: a fresh connection gets a short grace to send its
    /// first byte; a response in flight keeps its write-stall deadline (contract: it finishes
    /// byte-exact, and only the shutdown timeout, which counts it as forced, cuts it short);
    /// everything else must be over before 90% of the shutdown timeout, so that a slowloris
    /// head or a lingering close cannot hold the exit past it.
    fn drain_deadline(&self, kind: &Kind, deadline: Instant) -> Instant {
        let limits = &self.shared.config.limits;
        let start = self
            .shared
            .shutdown
            .triggered_at()
            .unwrap_or_else(Instant::now);
        let cap = match kind {
            Kind::Wait(conn) if conn.waiting() == Waiting::Fresh => {
                start + limits.drain_first_byte_grace
            }
            Kind::Wait(conn) if conn.waiting() == Waiting::Write => return deadline,
            _ => start + limits.shutdown_timeout.mul_f64(0.9),
        };
        deadline.min(cap)
    }

    /// Takes an entry out of the parked set and the poller.
    fn remove(&mut self, slot: usize) -> Option<Entry> {
        let entry = self.slots.get_mut(slot)?.take()?;
        let fd = match &entry.kind {
            Kind::Wait(conn) => conn.stream().as_raw_fd(),
            Kind::Linger { stream, .. } => stream.as_raw_fd(),
        };
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        self.free.push(slot);
        Some(entry)
    }

    fn on_ready(&mut self, slot: usize) {
        let lingering = matches!(
            self.slots.get(slot),
            Some(Some(Entry {
                kind: Kind::Linger { .. },
                ..
            }))
        );
        if !lingering {
            if let Some(Entry {
                kind: Kind::Wait(conn),
                ..
            }) = self.remove(slot)
            {
                self.ready.push(Job::Serve(conn));
            }
            return;
        }
        // Edge-triggered: read until the socket would block, or it is finished.
        let finished = match self.slots.get_mut(slot) {
            Some(Some(Entry {
                kind: Kind::Linger {
                    stream, discarded, ..
                },
                ..
            })) => loop {
                match stream.read(&mut self.scratch) {
                    Ok(0) => break true,
                    Ok(n) => {
                        *discarded += n;
                        if *discarded > LINGER_MAX_BYTES {
                            break true;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            },
            _ => false,
        };
        if finished {
            self.remove(slot);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, slot, gen))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            let current = matches!(self.slots.get(slot), Some(Some(e)) if e.gen == gen && e.deadline == deadline);
            if !current {
                continue;
            }
            if let Some(Entry {
                kind: Kind::Wait(conn),
                ..
            }) = self.remove(slot)
            {
                self.shared
                    .timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some((stream, open)) =
                    connection::expire(conn, self.shared.config.access_log)
                {
                    self.admit(Parcel::Linger(stream, open));
                }
            }
        }
    }

    /// Adaptive keep-alive (Apache event, nginx): while every worker is busy and new
    /// connections wait in the queue, close idle keep-alive connections (idle at least
    /// `shed_idle_after`), oldest first, one per waiting connection, so their clients come back through the queue in turn instead
    /// of holding connection slots. (Workers also answer `Connection: close` meanwhile.)
    fn shed_idle_under_load(&mut self) {
        let waiting = self.new_queue.len();
        let busy = self
            .shared
            .busy_workers
            .load(std::sync::atomic::Ordering::Relaxed);
        if waiting == 0 || busy < self.shared.config.workers {
            return;
        }
        let limits = &self.shared.config.limits;
        let Some(idle_before) = Instant::now().checked_sub(limits.shed_idle_after) else {
            return;
        };
        let mut idle: Vec<(Instant, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| match e {
                Some(Entry {
                    kind: Kind::Wait(conn),
                    ..
                }) if conn.waiting() == Waiting::Idle && conn.idle_since() <= idle_before => {
                    Some((conn.idle_since(), slot))
                }
                _ => None,
            })
            .collect();
        idle.sort_unstable();
        for (_, slot) in idle.into_iter().take(waiting) {
            if let Some(Entry {
                kind: Kind::Wait(conn),
                ..
            }) = self.remove(slot)
            {
                self.close_idle(conn);
            }
        }
    }

    /// Closes an idle keep-alive connection (drain, or load), unless its next request has
    /// already started to arrive (bytes in the socket we have not been told about yet): that
    /// one goes to a worker and is answered with `Connection: close`.
    fn close_idle(&self, conn: Conn) {
        let pending = matches!(conn.stream().peek(&mut [0u8; 1]), Ok(n) if n > 0);
        if pending {
            self.ready.push(Job::Serve(conn));
        }
    }

    fn begin_drain(&mut self) {
        self.draining = true;
        for slot in 0..self.slots.len() {
            let Some(entry) = self.slots[slot].as_ref() else {
                continue;
            };
            if matches!(&entry.kind, Kind::Wait(conn) if conn.waiting() == Waiting::Idle) {
                if let Some(Entry {
                    kind: Kind::Wait(conn),
                    ..
                }) = self.remove(slot)
                {
                    self.close_idle(conn);
                }
                continue;
            }
            let deadline = self.drain_deadline(&entry.kind, entry.deadline);
            if let Some(entry) = self.slots[slot].as_mut() {
                if deadline < entry.deadline {
                    entry.deadline = deadline;
                    self.heap.push(Reverse((deadline, slot, entry.gen)));
                }
            }
        }
    }
}
