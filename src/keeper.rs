//! The keeper: one thread that holds every connection that is waiting for bytes, so that no
//! worker ever waits on a quiet client (Apache's event MPM shape; see
//! `../shared/design/architecture.md`).
//!
//! It owns the parked set (a slab of slots indexed by the `mio::Token`), a deadline heap, and
//! one `mio::Poll`. A socket is registered (edge-triggered, through `SourceFd`: the std
//! `TcpStream` stays the only owner of the descriptor, no `unsafe`) at its first park, and
//! stays registered until it closes: the connection carries a [`Ticket`] for its slot while a
//! worker has it, and the slot is freed when the ticket is dropped with the connection. A
//! registration per park cost an `EPOLL_CTL_ADD` and an `EPOLL_CTL_DEL` per keep-alive
//! request, 14% of the server's CPU in `perf` (issue 7). Readiness reported while a worker has
//! the connection is remembered in its slot, and the connection goes straight back to the
//! workers when it is handed in; the only interest change is to writability for a slow reader
//! and back (`EPOLL_CTL_MOD`, which reports a socket that is already ready, like the first
//! `EPOLL_CTL_ADD` does). So bytes that arrive between the worker's last read and the park
//! are never missed. The poll timeout is the next deadline: no spinning, no CPU while idle.
//!
//! Because the registration stays, most parks need not wake the keeper at all
//! ([`KeeperHandle::park`]): the socket will report its next bytes itself, and the parcel is
//! read on that wake-up. A park wakes the keeper when it needs a registration or an interest
//! change, when its deadline comes before the keeper's next wake-up, during a drain, and when
//! the socket already reported readiness while a worker had it (that edge is spent; the
//! ticket's `readied` flag says so).
//!
//! Ready → the connection goes back to the workers through the ready queue (which workers
//! prefer over new connections, and which is never answered 503). Deadline → 408 for a partial
//! head, a quiet close for an idle or fresh one, an abandoned response for a write stalled
//! longer than the write timeout. An upload whose deadline passed goes to a worker as a
//! [`Job::Expire`]: removing its temporary file is disk work, and the keeper never waits on
//! the disk, nor on stdout (its access lines go through the non-blocking queue of
//! [`crate::access::Sink`]). Lingering closes (after a final response)
//! also live here: read and discard until the client's FIN or the linger deadline.
//!
//! In a drain it closes idle connections at once, gives fresh ones a short grace, keeps
//! partial heads until their deadline, lets responses in flight finish (only the shutdown
//! timeout bounds them), and exits when no connection is open anywhere; then
//! it sends one `Exit` job per worker.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::{Limits, LINGER_MAX_BYTES};
use crate::connection::{self, Conn, Waiting};
use crate::pool::{Job, ReadyQueue, STALL_AFTER};
use crate::state::{OpenGuard, Shared};

/// `Slot::readied`: the socket reported readiness while a worker had the connection.
const READIED: u8 = 1;
/// `Slot::readied`: and that readiness included the client's end of stream.
const READ_CLOSED: u8 = 2;
/// Token of the waker; slots use their index in the low half and the slot's registration
/// generation in the high half (31 bits, so never `usize::MAX`).
const WAKE: Token = Token(usize::MAX);
/// Generations wrap within 31 bits; see [`WAKE`].
const REG_MASK: u32 = 0x7fff_ffff;
const _: () = assert!(usize::BITS == 64, "slot tokens pack two 32-bit halves");
/// Most readiness events handled per poll call.
const EVENTS_PER_POLL: usize = 1024;
/// Stale deadline entries tolerated before the heap is rebuilt (see `compact_heap`).
const HEAP_SLACK: usize = 1024;
/// Panics of the keeper's loop survived before it gives up (see `contained_run`): one is
/// drained from like a stop; a second during that drain means its state cannot be trusted.
const KEEPER_PANICS_MAX: u32 = 2;
/// While draining, re-check the open count at least this often (the last close also wakes us).
const DRAIN_TICK: Duration = Duration::from_millis(50);
/// Longest wait for a seat at the cap: more than the reclaim grace, so a connection that
/// waits for a silent one to age out is seated; after it, 503 and `Retry-After` tell the
/// client more than silence would.
const ROOM_WAIT: Duration = Duration::from_secs(1);
/// While connections wait for a seat, look for one at least this often (a silent connection
/// reaches the reclaim grace, or a connection closes elsewhere, without waking the keeper).
const ROOM_TICK: Duration = Duration::from_millis(10);

/// What a worker hands to the keeper.
#[derive(Debug)]
pub(crate) enum Parcel {
    /// Wait for bytes (or the deadline).
    Wait(Conn),
    /// Lingering close: discard input until FIN or the linger deadline.
    Linger(Lingering),
    /// A ticket was dropped: its connection is closed, free the slot.
    Gone { slot: usize, reg: u32 },
    /// A new connection accepted at the connection cap: seat it by reclaiming one that is
    /// not working, or answer 503 (see [`Keeper::seat`]).
    Admit(Conn),
}

/// A socket on its way to a lingering close.
#[derive(Debug)]
pub(crate) struct Lingering {
    pub stream: TcpStream,
    /// Counts the connection as open until the linger ends.
    pub _open: OpenGuard,
    pub ticket: Option<Ticket>,
}

/// A connection's slot with the keeper, held by the connection from its first park to its
/// close, wherever it is. Dropping it (the connection closed) tells the keeper to free the
/// slot; the descriptor left epoll when it was closed. The generation makes a late event or a
/// late `Gone` for a reused slot harmless.
#[derive(Debug)]
pub(crate) struct Ticket {
    slot: usize,
    reg: u32,
    /// What the socket is registered for.
    interest: Interest,
    /// Set by the keeper when the socket reported readiness while a worker had it: that edge
    /// is spent, so the next park must wake the keeper (see [`KeeperHandle::park`]).
    readied: Arc<AtomicU8>,
    keeper: Arc<KeeperHandle>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.keeper.send(Parcel::Gone {
            slot: self.slot,
            reg: self.reg,
        });
    }
}

/// The workers' (and the acceptor's) way to hand connections to the keeper.
#[derive(Clone, Debug)]
pub(crate) struct KeeperHandle {
    tx: Sender<Parcel>,
    waker: Arc<Waker>,
    /// The keeper is (about to be) blocked in `poll`: only then does a parcel need the
    /// waker's system call. Under load the keeper is mostly awake and parcels just queue.
    sleeping: Arc<AtomicBool>,
    /// When the keeper's current sleep ends at the latest, in nanoseconds since `epoch`.
    wake_at: Arc<AtomicU64>,
    epoch: Instant,
}

impl KeeperHandle {
    /// Wakes the keeper to look at the load (the acceptor calls it when it queues a
    /// connection while every worker is busy).
    pub fn nudge(&self) {
        let _ = self.waker.wake();
    }

    /// Hands a parcel over and wakes the keeper if it sleeps.
    pub fn send(&self, parcel: Parcel) {
        // The keeper outlives every open connection, so a send fails only after it exited,
        // when dropping the parcel (closing the socket) is the right thing anyway.
        if self.tx.send(parcel).is_ok() {
            // Pairs with the fence in `Keeper::run`: either the keeper sees this parcel
            // before it blocks, or we see that it sleeps and wake it.
            fence(Ordering::SeqCst);
            self.wake_if_sleeping();
        }
    }

    /// Wakes the keeper if it sleeps (it then runs its stall check on the ready queue).
    pub fn wake_if_sleeping(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the keeper: {e}");
            }
        }
    }

    /// Parks a connection. One that is already registered for what it now waits for, whose
    /// socket has not reported readiness while a worker had it, and whose deadline is not
    /// before the keeper's next wake-up, is handed over without waking the keeper: its socket
    /// reports readiness to the keeper by itself, and the parcel is read on that wake-up at
    /// the latest (a wake-up per keep-alive request was 6% of the
    /// server's CPU on one core). Anything else (a first park, a change of interest, an
    /// earlier deadline, a drain) wakes it as [`KeeperHandle::send`] does.
    pub fn park(&self, conn: Conn, limits: &Limits, draining: bool) {
        let wanted = interest_for(&conn);
        let registered = conn.ticket().is_some_and(|t| t.interest == wanted);
        let readied = conn.ticket().map(|t| Arc::clone(&t.readied));
        let deadline = self.nanos(conn.deadline(limits));
        if self.tx.send(Parcel::Wait(conn)).is_err() {
            return;
        }
        // Pairs with the fence in `Keeper::run` after it publishes `wake_at`: either the
        // keeper sees this parcel before it blocks, or we see the `wake_at` of that sleep.
        // Likewise for `readied`: the keeper sets it while handling events, before it drains
        // the parcels; so either we see it set, or the keeper drains this parcel afterwards.
        fence(Ordering::SeqCst);
        let readied = readied.is_some_and(|r| r.load(Ordering::SeqCst) != 0);
        if !registered || readied || draining || deadline < self.wake_at.load(Ordering::SeqCst) {
            self.wake_if_sleeping();
        }
    }

    /// Nanoseconds from `epoch` to `t` (0 before it).
    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

enum Kind {
    Wait(Conn),
    Linger { linger: Lingering, discarded: usize },
}

impl Kind {
    fn ticket(&self) -> Option<&Ticket> {
        match self {
            Kind::Wait(conn) => conn.ticket(),
            Kind::Linger { linger, .. } => linger.ticket.as_ref(),
        }
    }

    fn set_ticket(&mut self, ticket: Ticket) {
        match self {
            Kind::Wait(conn) => conn.set_ticket(ticket),
            Kind::Linger { linger, .. } => linger.ticket = Some(ticket),
        }
    }

    fn set_interest(&mut self, interest: Interest) {
        let ticket = match self {
            Kind::Wait(conn) => conn.ticket_mut(),
            Kind::Linger { linger, .. } => linger.ticket.as_mut(),
        };
        if let Some(t) = ticket {
            t.interest = interest;
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        match self {
            Kind::Wait(conn) => conn.stream().as_raw_fd(),
            Kind::Linger { linger, .. } => linger.stream.as_raw_fd(),
        }
    }

    fn interest(&self) -> Interest {
        match self {
            Kind::Wait(conn) => interest_for(conn),
            Kind::Linger { .. } => Interest::READABLE,
        }
    }
}

/// Writes the canned 503 to a connection that cannot be served (never waiting: its send
/// buffer is empty, so 200 bytes fit) and returns it for a lingering close, so the client
/// reads the answer rather than a reset. Past the descriptor budget (more connections open
/// than the cap and the room allow) it does not linger, since each lingering socket holds a
/// descriptor that the connections within the cap need: it reads away what the client has
/// sent so far (up to one maximal head), so the close sends FIN rather than RST, and closes
/// at once.
pub(crate) fn shed(linger: Lingering, shared: &Shared) -> Option<Lingering> {
    (&linger.stream).write_all(&shared.overloaded).ok()?;
    let cap = shared.config.limits.max_connections;
    if shared.open() > cap + crate::config::room_for(cap) {
        // Bounded by one maximal head: this runs on the acceptor, which must never be held
        // by a client that keeps sending.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < crate::config::MAX_HEAD_BYTES {
            match (&linger.stream).read(&mut sink) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
        return None;
    }
    let _ = linger.stream.shutdown(std::net::Shutdown::Write);
    Some(linger)
}

/// The earlier of a candidate so far and another.
fn oldest(best: Option<(Instant, usize)>, other: (Instant, usize)) -> Option<(Instant, usize)> {
    Some(best.map_or(other, |b| b.min(other)))
}

/// A parked connection in the middle of something: a response to a slow reader, an upload.
/// It is never reclaimed at the cap.
fn working(kind: &Kind) -> bool {
    matches!(kind, Kind::Wait(conn) if matches!(conn.waiting(), Waiting::Write | Waiting::Body))
}

/// What a parked connection's socket is watched for: writability for a response the client
/// stopped taking, readability otherwise.
fn interest_for(conn: &Conn) -> Interest {
    if conn.waiting() == Waiting::Write {
        Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

struct Entry {
    kind: Kind,
    gen: u64,
    deadline: Instant,
}

/// Where a slot's connection is.
// Slots are reused in place; boxing the parked entry would allocate on every park.
#[allow(clippy::large_enum_variant)]
enum State {
    Free,
    /// With a worker (or in the ready queue). Readiness reported meanwhile is recorded in
    /// the slot's `readied` flag.
    Out,
    Parked(Entry),
}

struct Slot {
    /// Registration generation (see [`Ticket`]).
    reg: u32,
    /// What the socket is registered for.
    interest: Interest,
    state: State,
    /// Shared with the connection's ticket: readiness reported while it was out
    /// ([`READIED`], with [`READ_CLOSED`] when the client's end of stream came with it).
    readied: Arc<AtomicU8>,
}

fn token(slot: usize, reg: u32) -> Token {
    Token((reg as usize) << 32 | slot)
}

/// The `(slot, reg)` of a slot's token.
fn untoken(t: Token) -> (usize, u32) {
    (t.0 & 0xffff_ffff, (t.0 >> 32) as u32)
}

struct Keeper {
    poll: Poll,
    sleeping: Arc<AtomicBool>,
    rx: Receiver<Parcel>,
    ready: Arc<ReadyQueue>,
    /// The accept queue, only to see how many new connections wait (never received from).
    new_queue: Receiver<Conn>,
    shared: Arc<Shared>,
    /// For the tickets it hands out.
    me: Arc<KeeperHandle>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slots in the `Parked` state.
    parked: usize,
    /// Of those, connections that are working: a response to a slow reader, an upload.
    parked_working: usize,
    /// Connections accepted at the cap, waiting for a seat, with when they give up.
    room: std::collections::VecDeque<(Conn, Instant)>,
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
    let (mut keeper, handle) = Keeper::new(shared, ready, new_queue)?;
    let thread = std::thread::Builder::new()
        .name("keeper".into())
        .spawn(move || {
            keeper.contained_run();
            let _ = done.send(());
        })?;
    Ok((handle, thread))
}

impl Keeper {
    /// The keeper and the handle that parks connections with it, before its thread runs:
    /// apart from [`start`] so that the tests can drive its state without a thread.
    fn new(
        shared: Arc<Shared>,
        ready: Arc<ReadyQueue>,
        new_queue: Receiver<Conn>,
    ) -> io::Result<(Keeper, KeeperHandle)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        shared.shutdown.add_waker(Arc::clone(&waker));
        let (tx, rx) = crossbeam_channel::unbounded();
        let sleeping = Arc::new(AtomicBool::new(false));
        let handle = KeeperHandle {
            tx,
            waker,
            sleeping: Arc::clone(&sleeping),
            wake_at: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        };
        let keeper = Keeper {
            poll,
            sleeping,
            rx,
            ready,
            new_queue,
            shared,
            me: Arc::new(handle.clone()),
            slots: Vec::new(),
            free: Vec::new(),
            parked: 0,
            parked_working: 0,
            room: std::collections::VecDeque::new(),
            heap: BinaryHeap::new(),
            next_gen: 0,
            draining: false,
            scratch: vec![0; 16 * 1024],
        };
        Ok((keeper, handle))
    }

    /// Runs the loop; a panic is contained. It is logged, the drain starts, and the loop
    /// goes on from the state it left, so that the connections the keeper holds are drained
    /// like in any stop rather than dropped; `run` then returns an error and the process
    /// exits with status 1, for a supervisor to restart it. Should it panic again
    /// ([`KEEPER_PANICS_MAX`]), it gives up: the connections it holds are closed, and their
    /// number is logged.
    fn contained_run(&mut self) {
        let mut panics = 0;
        while let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| self.run())) {
            panics += 1;
            let what = crate::pool::panic_message(&*panic);
            self.shared.keeper_failed.store(true, Ordering::SeqCst);
            if panics >= KEEPER_PANICS_MAX {
                log::error!(
                    "keeper panicked again ({what}): closing the {} connection(s) it holds",
                    self.parked + self.room.len()
                );
                self.ready.exit_all();
                return;
            }
            log::error!("keeper panicked ({what}): draining, then exiting with status 1");
            self.shared.shutdown.trigger();
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut progress = (0, Instant::now());
        loop {
            if let Some(fault) = &self.shared.config.keeper_fault {
                if fault.fire() {
                    panic!("injected keeper fault (test seam)");
                }
            }
            let now = Instant::now();
            self.expire(now);
            self.ready.wake();
            let queued = self.ready.check_stall(&mut progress, now);
            if self.shared.shutdown.is_triggered() && !self.draining {
                self.begin_drain();
                self.ready.wake(); // idle connections with bytes pending went to the workers
            }
            self.seat_waiting(now);
            if self.draining && self.shared.drained() {
                break;
            }
            self.shared.parked.store(self.parked, Ordering::Relaxed);
            self.shared
                .reclaimable
                .store(self.reclaimable(), Ordering::Relaxed);
            self.shared
                .watched
                .store(self.slots.len() - self.free.len(), Ordering::Relaxed);
            let mut timeout = self
                .heap
                .peek()
                .map(|Reverse((d, _, _))| d.saturating_duration_since(now));
            if self.draining {
                timeout = Some(timeout.map_or(DRAIN_TICK, |t| t.min(DRAIN_TICK)));
            }
            if !self.room.is_empty() {
                timeout = Some(timeout.map_or(ROOM_TICK, |t| t.min(ROOM_TICK)));
            }
            if queued {
                timeout = Some(timeout.map_or(STALL_AFTER, |t| t.min(STALL_AFTER)));
                // Jobs wait for the workers: step aside before polling. On a core shared with
                // them (the bench pins everything to one) the workers then run the queued
                // jobs first and the next poll collects what arrived meanwhile in one batch,
                // instead of this thread waking on every packet and preempting them
                // (measured: 9.9 → 8.7 µs of server CPU per keep-alive request, issue 7). With
                // a core to spare, `sched_yield` returns at once.
                std::thread::yield_now();
            }
            let wake_at = timeout.map_or(u64::MAX, |t| self.me.nanos(now + t));
            self.me.wake_at.store(wake_at, Ordering::SeqCst);
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.rx.is_empty() {
                timeout = Some(Duration::ZERO); // a parcel came before the flag was up
            }
            let polled = self.poll.poll(&mut events, timeout);
            self.sleeping.store(false, Ordering::SeqCst);
            self.me.wake_at.store(0, Ordering::SeqCst);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("keeper: poll failed: {e}");
                    std::thread::sleep(DRAIN_TICK);
                }
                continue;
            }
            for event in events.iter() {
                if event.token() != WAKE {
                    let (slot, reg) = untoken(event.token());
                    self.on_ready(slot, reg, event.is_read_closed());
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
        let (mut kind, deadline) = match parcel {
            Parcel::Gone { slot, reg } => {
                let out = self
                    .slots
                    .get(slot)
                    .is_some_and(|s| s.reg == reg && matches!(s.state, State::Out));
                if out {
                    self.free_slot(slot);
                }
                return;
            }
            Parcel::Admit(conn) => {
                self.seat(conn);
                return;
            }
            Parcel::Wait(conn) => {
                if self.draining && conn.waiting() == Waiting::Idle {
                    self.close_idle(conn);
                    return;
                }
                let deadline = conn.deadline(limits);
                (Kind::Wait(conn), deadline)
            }
            Parcel::Linger(linger) => (
                Kind::Linger {
                    linger,
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
        let interest = kind.interest();
        let (slot, ready) = match kind.ticket().map(|t| (t.slot, t.reg)) {
            Some((slot, reg)) => {
                let Some(s) = self.slots.get_mut(slot).filter(|s| s.reg == reg) else {
                    log::error!("keeper: a connection came back with a stale ticket, closing it");
                    return;
                };
                if !matches!(s.state, State::Out) {
                    log::error!("keeper: a connection came back to a slot not out, closing it");
                    return;
                }
                let flags = s.readied.swap(0, Ordering::SeqCst);
                let mut ready = flags != 0;
                if s.interest != interest {
                    // EPOLL_CTL_MOD reports current readiness: an old flag is moot.
                    ready = false;
                    s.interest = interest;
                    kind.set_interest(interest);
                    let fd = kind.fd();
                    if let Err(e) = self.poll.registry().reregister(
                        &mut SourceFd(&fd),
                        token(slot, reg),
                        interest,
                    ) {
                        log::warn!("keeper: cannot watch a connection, closing it: {e}");
                        return; // the ticket frees the slot
                    }
                } else if ready {
                    if let Kind::Wait(mut conn) = kind {
                        // Bytes came while a worker had it: straight back to the workers.
                        if flags & READ_CLOSED != 0 {
                            conn.note_read_closed();
                        }
                        self.ready.push(Job::Serve(conn));
                        return;
                    }
                }
                (slot, ready)
            }
            None => {
                // A fresh flag per registration: the previous one may still be held by the
                // previous connection's ticket until its `Gone` is read.
                let readied = Arc::new(AtomicU8::new(0));
                let slot = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(Slot {
                        reg: 0,
                        interest,
                        state: State::Free,
                        readied: Arc::clone(&readied),
                    });
                    self.slots.len() - 1
                });
                let reg = self.slots[slot].reg;
                let fd = kind.fd();
                if let Err(e) =
                    self.poll
                        .registry()
                        .register(&mut SourceFd(&fd), token(slot, reg), interest)
                {
                    log::warn!("keeper: cannot watch a connection, closing it: {e}");
                    self.free.push(slot);
                    return;
                }
                self.slots[slot].interest = interest;
                self.slots[slot].readied = Arc::clone(&readied);
                kind.set_ticket(Ticket {
                    slot,
                    reg,
                    interest,
                    readied,
                    keeper: Arc::clone(&self.me),
                });
                // EPOLL_CTL_ADD reports a socket that is already ready by itself.
                (slot, false)
            }
        };
        self.park(slot, kind, deadline, ready);
    }

    /// Puts `kind` into its (out or newly registered) slot with its deadline; `was_ready`:
    /// the socket reported readiness while it was out (that edge is spent).
    fn park(&mut self, slot: usize, kind: Kind, deadline: Instant, was_ready: bool) {
        let lingering = matches!(kind, Kind::Linger { .. });
        self.parked_working += usize::from(working(&kind));
        self.next_gen += 1;
        let gen = self.next_gen;
        self.heap.push(Reverse((deadline, slot, gen)));
        self.slots[slot].state = State::Parked(Entry {
            kind,
            gen,
            deadline,
        });
        self.parked += 1;
        // After the slot is filled: the rebuild keeps only entries it finds in `slots`.
        self.compact_heap();
        if lingering && was_ready {
            // Input came while it was out: the edge is spent, so read now.
            let reg = self.slots[slot].reg;
            self.on_ready(slot, reg, false);
        }
    }

    /// Takes a parked entry out; the slot (and the registration) stay with the connection.
    fn take_out(&mut self, slot: usize) -> Option<Kind> {
        let s = self.slots.get_mut(slot)?;
        if !matches!(s.state, State::Parked(_)) {
            return None;
        }
        let State::Parked(entry) = std::mem::replace(&mut s.state, State::Out) else {
            return None;
        };
        self.parked -= 1;
        self.parked_working -= usize::from(working(&entry.kind));
        Some(entry.kind)
    }

    /// Frees a slot whose connection is closed (its descriptor already left epoll).
    fn free_slot(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        s.state = State::Free;
        s.reg = s.reg.wrapping_add(1) & REG_MASK;
        self.free.push(slot);
    }

    /// The heap drops entries lazily (a connection that leaves before its deadline leaves its
    /// entry behind), so under load it would grow with requests × keep-alive timeout (90k
    /// req/s × 30 s is millions of entries). Rebuilding it from the live entries whenever it is
    /// four times larger than needed keeps it proportional to the parked set, at an amortized
    /// O(1) per park.
    fn compact_heap(&mut self) {
        if self.heap.len() <= 4 * self.parked + HEAP_SLACK {
            return;
        }
        self.heap = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| match &s.state {
                State::Parked(e) => Some(Reverse((e.deadline, slot, e.gen))),
                _ => None,
            })
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

    /// A readiness event for a slot's socket. `read_closed`: the event also reported the
    /// client's end of stream (EPOLLRDHUP), which the connection must know, see
    /// [`Conn::note_read_closed`].
    fn on_ready(&mut self, slot: usize, reg: u32, read_closed: bool) {
        let Some(s) = self.slots.get_mut(slot).filter(|s| s.reg == reg) else {
            return; // a closed connection's last event
        };
        match &mut s.state {
            State::Free => {}
            State::Out => {
                let closed = if read_closed { READ_CLOSED } else { 0 };
                s.readied.fetch_or(READIED | closed, Ordering::SeqCst);
            }
            State::Parked(Entry {
                kind: Kind::Wait(_),
                ..
            }) => {
                if let Some(Kind::Wait(mut conn)) = self.take_out(slot) {
                    if read_closed {
                        conn.note_read_closed();
                    }
                    self.ready.push(Job::Serve(conn));
                }
            }
            State::Parked(Entry {
                kind: Kind::Linger { linger, discarded },
                ..
            }) => {
                // Edge-triggered: read until the socket would block, or it is finished.
                let finished = loop {
                    match (&linger.stream).read(&mut self.scratch) {
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
                };
                if finished {
                    self.take_out(slot); // dropped: closes, and the ticket frees the slot
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((deadline, slot, gen))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            let current = matches!(
                self.slots.get(slot),
                Some(Slot { state: State::Parked(e), .. }) if e.gen == gen && e.deadline == deadline
            );
            if !current {
                continue;
            }
            if let Some(Kind::Wait(conn)) = self.take_out(slot) {
                self.shared.metrics.timeout(conn.timeout_kind());
                if conn.waiting() == Waiting::Body {
                    // Its temporary file is removed on a worker: no disk here.
                    self.ready.push(Job::Expire(conn));
                } else if let Some(linger) = connection::expire(conn, &self.shared) {
                    self.admit(Parcel::Linger(linger));
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
            .filter_map(|(slot, s)| match &s.state {
                State::Parked(Entry {
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
            if let Some(Kind::Wait(conn)) = self.take_out(slot) {
                self.close_idle(conn);
            }
        }
    }

    /// Closes an idle keep-alive connection (drain, load, or the cap), unless its next
    /// request has already started to arrive (bytes in the socket we have not been told about
    /// yet): that one goes to a worker and is answered with `Connection: close`. Returns
    /// whether it closed it.
    fn close_idle(&self, conn: Conn) -> bool {
        let pending = matches!(conn.stream().peek(&mut [0u8; 1]), Ok(n) if n > 0);
        if pending {
            self.ready.push(Job::Serve(conn));
        }
        !pending
    }

    /// Parked connections that are not working (idle, silent, partial heads, lingering
    /// closes): what the cap may be reclaimed from, now or once a grace has passed.
    fn reclaimable(&self) -> usize {
        self.parked - self.parked_working
    }

    /// A connection accepted at the cap. It waits in the room for a seat
    /// ([`crate::config::room_for`] the cap at most, each for [`ROOM_WAIT`] at most), unless
    /// every parked connection is working: then there is nothing to reclaim, the load is
    /// real, and it gets 503.
    fn seat(&mut self, conn: Conn) {
        if self.reclaimable() == 0 {
            return self.refuse(conn);
        }
        let now = Instant::now();
        self.room.push_back((conn, now + ROOM_WAIT));
        self.seat_waiting(now);
        let room = crate::config::room_for(self.shared.config.limits.max_connections);
        while self.room.len() > room {
            if let Some((conn, _)) = self.room.pop_back() {
                self.refuse(conn);
            }
        }
    }

    /// Seats the connections waiting in the room, oldest first: in a slot another connection
    /// freed by closing, else in the slot of one reclaimed ([`Keeper::victim`]). Those that
    /// waited [`ROOM_WAIT`] get 503.
    fn seat_waiting(&mut self, now: Instant) {
        let cap = self.shared.config.limits.max_connections;
        while !self.room.is_empty() {
            let held = self.shared.open().saturating_sub(self.room.len());
            if held >= cap && !self.reclaim(now) {
                break;
            }
            if let Some((conn, _)) = self.room.pop_front() {
                self.admit(Parcel::Wait(conn));
            }
        }
        while self.room.front().is_some_and(|(_, until)| *until <= now) {
            if let Some((conn, _)) = self.room.pop_front() {
                self.refuse(conn);
            }
        }
    }

    /// Closes one connection that is not working, to free a seat at the cap: an idle
    /// keep-alive connection first (the one idle longest), else one that has not completed
    /// a head within the reclaim grace (the oldest). Never one with a response or an upload
    /// under way, and never one whose next request has started to arrive.
    fn reclaim(&mut self, now: Instant) -> bool {
        while let Some(slot) = self.victim(now) {
            if let Some(Kind::Wait(conn)) = self.take_out(slot) {
                let idle = conn.waiting() == Waiting::Idle;
                if idle && !self.close_idle(conn) {
                    continue; // its next request came in: it went to the workers
                }
                self.shared.reclaimed.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// The connection [`Keeper::reclaim`] closes next, if any.
    fn victim(&self, now: Instant) -> Option<usize> {
        let limits = &self.shared.config.limits;
        let mut idle: Option<(Instant, usize)> = None;
        let mut silent: Option<(Instant, usize)> = None;
        for (slot, s) in self.slots.iter().enumerate() {
            let State::Parked(Entry {
                kind: Kind::Wait(conn),
                ..
            }) = &s.state
            else {
                continue;
            };
            if conn.waiting() == Waiting::Idle {
                idle = oldest(idle, (conn.idle_since(), slot));
            } else if let Some(since) = conn.head_since(limits) {
                if since + limits.reclaim_grace <= now {
                    silent = oldest(silent, (since, slot));
                }
            }
        }
        idle.or(silent).map(|(_, slot)| slot)
    }

    /// Answers a connection that cannot be seated with the canned 503 (never waiting: its
    /// send buffer is empty) and lets it linger so the client reads it.
    fn refuse(&mut self, conn: Conn) {
        self.shared.shed.fetch_add(1, Ordering::Relaxed);
        if let Some(linger) = shed(conn.into_linger(), &self.shared) {
            self.admit(Parcel::Linger(linger));
        }
    }

    fn begin_drain(&mut self) {
        self.draining = true;
        for slot in 0..self.slots.len() {
            let State::Parked(entry) = &self.slots[slot].state else {
                continue;
            };
            if matches!(&entry.kind, Kind::Wait(conn) if conn.waiting() == Waiting::Idle) {
                if let Some(Kind::Wait(conn)) = self.take_out(slot) {
                    self.close_idle(conn);
                }
                continue;
            }
            let deadline = self.drain_deadline(&entry.kind, entry.deadline);
            if let State::Parked(entry) = &mut self.slots[slot].state {
                if deadline < entry.deadline {
                    entry.deadline = deadline;
                    self.heap.push(Reverse((deadline, slot, entry.gen)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shutdown::Shutdown;
    use std::io::Write;
    use std::net::TcpListener;

    /// Workers the ready queue is built for: the tests take its jobs themselves.
    const WORKERS: usize = 1;
    /// The longest a test waits for the kernel to report a loopback write, which it normally
    /// does before `write` returns: a bound for a failure, never a pause.
    const EVENT_WAIT: Duration = Duration::from_secs(2);
    /// The smallest step between two deadlines (and two `wake_at` values).
    const TICK: Duration = Duration::from_nanos(1);
    /// More than a test's client sends in one go.
    const READ_BUF: usize = 64;

    /// The README's memory figures: a parked connection's keeper slot (the connection
    /// itself, whose read buffer is freed while it waits, and its deadline).
    #[test]
    fn a_parked_connection_costs_a_few_hundred_bytes() {
        let slot = std::mem::size_of::<Slot>();
        let conn = std::mem::size_of::<Conn>();
        eprintln!("slot {slot} bytes, conn {conn} bytes");
        assert!(slot <= 256, "a keeper slot is {slot} bytes");
    }

    /// A keeper without its thread: each test plays both the keeper's loop and the workers,
    /// one step at a time, so every interleaving it checks is the one it wrote down.
    struct Rig {
        keeper: Keeper,
        handle: KeeperHandle,
        ready: Arc<ReadyQueue>,
        shared: Arc<Shared>,
        listener: TcpListener,
    }

    impl Rig {
        fn new() -> Rig {
            Rig::with(|_| {})
        }

        fn with(tweak: impl FnOnce(&mut Config)) -> Rig {
            let mut config = Config {
                workers: WORKERS,
                access_log: crate::config::AccessLog::Off,
                ..Config::default()
            };
            tweak(&mut config);
            let shared = Shared::new(config, Shutdown::new());
            let ready = ReadyQueue::new(WORKERS, Some(WORKERS));
            // Nothing is ever accepted: the keeper only looks at this queue's length.
            let (_, new_queue) = crossbeam_channel::unbounded();
            let (keeper, handle) =
                Keeper::new(Arc::clone(&shared), Arc::clone(&ready), new_queue).unwrap();
            Rig {
                keeper,
                handle,
                ready,
                shared,
                listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            }
        }

        fn limits(&self) -> Limits {
            self.shared.config.limits.clone()
        }

        /// A new connection over a real loopback pair, and the client's end of it.
        fn connect(&self) -> (Conn, TcpStream) {
            let client = TcpStream::connect(self.listener.local_addr().unwrap()).unwrap();
            let (stream, peer) = self.listener.accept().unwrap();
            stream.set_nonblocking(true).unwrap(); // as the acceptor's accept4 does
            (Conn::new(stream, peer, &self.shared).unwrap(), client)
        }

        /// Parks a new connection (its first park, which registers it) and returns its slot,
        /// the slot's registration generation, and the client's end.
        fn park_new(&mut self) -> (usize, u32, TcpStream) {
            let (conn, client) = self.connect();
            let slot = self
                .keeper
                .free
                .last()
                .copied()
                .unwrap_or(self.keeper.slots.len());
            self.keeper.admit(Parcel::Wait(conn));
            assert_eq!(state(&self.keeper, slot), "parked", "a first park parks");
            (slot, self.keeper.slots[slot].reg, client)
        }

        /// Takes a parked connection out, as `on_ready` and the deadlines do.
        fn take_out(&mut self, slot: usize) -> Conn {
            match self.keeper.take_out(slot) {
                Some(Kind::Wait(conn)) => conn,
                _ => panic!("slot {slot} holds no waiting connection"),
            }
        }

        /// Takes the next job off the ready queue, as a worker does.
        fn take_job(&self) -> Conn {
            match self.ready.try_take() {
                Ok(Job::Serve(conn)) => conn,
                other => panic!("expected a connection in the ready queue, got {other:?}"),
            }
        }

        /// Admits every parcel handed over so far, as the keeper's loop does after a poll.
        fn admit_parcels(&mut self) {
            while let Ok(parcel) = self.keeper.rx.try_recv() {
                self.keeper.admit(parcel);
            }
        }

        /// Polls as the keeper's loop does and hands the slots' events to `on_ready`, until
        /// one for `slot` came. The poll returns as soon as an event is there; `EVENT_WAIT`
        /// only bounds a failure.
        fn deliver_events(&mut self, slot: usize) {
            let mut events = Events::with_capacity(EVENTS_PER_POLL);
            let give_up = Instant::now() + EVENT_WAIT;
            loop {
                let left = give_up.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "no readiness event for slot {slot}");
                match self.keeper.poll.poll(&mut events, Some(left)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    polled => polled.unwrap(),
                }
                let mut seen = false;
                for event in events.iter().filter(|e| e.token() != WAKE) {
                    let (s, reg) = untoken(event.token());
                    self.keeper.on_ready(s, reg, event.is_read_closed());
                    seen |= s == slot;
                }
                if seen {
                    return;
                }
            }
        }

        fn readied(&self, slot: usize) -> bool {
            self.keeper.slots[slot].readied.load(Ordering::SeqCst) != 0
        }

        fn sleeping(&self) -> bool {
            self.handle.sleeping.load(Ordering::SeqCst)
        }
    }

    /// Where a slot's connection is, by name (for assertion messages).
    fn state(keeper: &Keeper, slot: usize) -> &'static str {
        match keeper.slots[slot].state {
            State::Free => "free",
            State::Out => "out",
            State::Parked(_) => "parked",
        }
    }

    /// Reads what the client sent, as a worker's read would, so the next bytes are news.
    fn read_all_there_is(conn: &Conn) {
        let mut buf = [0u8; READ_BUF];
        loop {
            match conn.stream().read(&mut buf) {
                Ok(0) => panic!("the client closed"),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    #[test]
    fn readiness_sends_a_parked_connection_out_and_is_remembered_while_it_is_out() {
        let mut rig = Rig::new();
        let (slot, _, mut client) = rig.park_new();
        assert_eq!(rig.ready.len(), 0, "a silent connection stays parked");

        client.write_all(b"G").unwrap();
        rig.deliver_events(slot);
        assert_eq!(rig.ready.len(), 1, "readable: to the workers");
        assert_eq!(state(&rig.keeper, slot), "out");
        assert_eq!(rig.keeper.parked, 0);
        assert!(!rig.readied(slot), "it was parked: nothing to remember");

        // A worker has it, reads the byte, and more bytes come before it parks again.
        let conn = rig.take_job();
        read_all_there_is(&conn);
        client.write_all(b"ET").unwrap();
        rig.deliver_events(slot);
        assert_eq!(rig.ready.len(), 0, "a worker has it: nothing to queue");
        assert_eq!(state(&rig.keeper, slot), "out");
        assert!(rig.readied(slot), "the spent edge is remembered");
        let shared_flag = conn.ticket().unwrap().readied.load(Ordering::SeqCst) != 0;
        assert!(shared_flag, "the ticket sees the same flag");

        // Its park comes back to the workers at once (it would wait forever for an edge
        // that was already spent), and the flag is consumed.
        rig.handle.park(conn, &rig.limits(), false);
        rig.admit_parcels();
        assert_eq!(rig.ready.len(), 1, "readied: straight back to the workers");
        assert_eq!(state(&rig.keeper, slot), "out");
        assert_eq!(rig.keeper.parked, 0);
        assert!(!rig.readied(slot), "handing it back consumed the flag");

        // With the flag clear, the next park parks.
        let conn = rig.take_job();
        read_all_there_is(&conn);
        rig.handle.park(conn, &rig.limits(), false);
        rig.admit_parcels();
        assert_eq!(rig.ready.len(), 0);
        assert_eq!(state(&rig.keeper, slot), "parked");
        assert_eq!(rig.keeper.parked, 1);
    }

    /// When the sleeping keeper's current sleep ends, relative to the connection's deadline.
    #[derive(Debug, Clone, Copy)]
    enum KeeperWakes {
        BeforeDeadline,
        AtDeadline,
        AfterDeadline,
        /// No deadline at all: it sleeps until an event or a wake-up.
        Never,
    }

    #[test]
    fn a_park_wakes_the_sleeping_keeper_only_when_it_must() {
        struct Case {
            name: &'static str,
            first_park: bool,
            interest_changed: bool,
            readied: bool,
            draining: bool,
            keeper_wakes: KeeperWakes,
            wakes: bool,
        }
        let quiet = Case {
            name: "registered, same interest, nothing readied, deadline not before wake_at",
            first_park: false,
            interest_changed: false,
            readied: false,
            draining: false,
            keeper_wakes: KeeperWakes::AtDeadline,
            wakes: false,
        };
        let table = [
            Case {
                name: "the keeper wakes before the deadline anyway",
                keeper_wakes: KeeperWakes::BeforeDeadline,
                ..quiet
            },
            Case {
                name: "first park: needs a registration",
                first_park: true,
                wakes: true,
                ..quiet
            },
            Case {
                name: "interest changed: needs EPOLL_CTL_MOD",
                interest_changed: true,
                wakes: true,
                ..quiet
            },
            Case {
                name: "readied while out: the edge is spent",
                readied: true,
                wakes: true,
                ..quiet
            },
            Case {
                name: "draining",
                draining: true,
                wakes: true,
                ..quiet
            },
            Case {
                name: "deadline before the keeper's wake-up",
                keeper_wakes: KeeperWakes::AfterDeadline,
                wakes: true,
                ..quiet
            },
            Case {
                name: "deadline while the keeper sleeps with none",
                keeper_wakes: KeeperWakes::Never,
                wakes: true,
                ..quiet
            },
            quiet,
        ];
        for case in table {
            let mut rig = Rig::new();
            let (mut conn, _client) = if case.first_park {
                rig.connect()
            } else {
                // Parked once before, and now back from a worker.
                let (slot, _, client) = rig.park_new();
                (rig.take_out(slot), client)
            };
            if let Some(ticket) = conn.ticket_mut() {
                if case.interest_changed {
                    // Registered for a slow reader's writability, now waiting for bytes.
                    ticket.interest = Interest::WRITABLE;
                }
                ticket
                    .readied
                    .store(u8::from(case.readied), Ordering::SeqCst);
            }
            let deadline = rig.handle.nanos(conn.deadline(&rig.limits()));
            let tick = u64::try_from(TICK.as_nanos()).unwrap();
            let wake_at = match case.keeper_wakes {
                KeeperWakes::BeforeDeadline => deadline - tick,
                KeeperWakes::AtDeadline => deadline,
                KeeperWakes::AfterDeadline => deadline + tick,
                KeeperWakes::Never => u64::MAX,
            };
            rig.handle.wake_at.store(wake_at, Ordering::SeqCst);
            rig.handle.sleeping.store(true, Ordering::SeqCst);

            rig.handle.park(conn, &rig.limits(), case.draining);

            assert_eq!(rig.keeper.rx.len(), 1, "{}: handed over", case.name);
            assert_eq!(rig.sleeping(), !case.wakes, "{}", case.name);
        }
    }

    #[test]
    fn a_late_gone_or_event_for_a_reused_slot_leaves_the_new_connection_alone() {
        #[derive(Debug, Clone, Copy)]
        enum Late {
            Gone,
            Event,
        }
        // (what comes late, whether the slot's new connection is out with a worker)
        let table = [
            (Late::Gone, true),
            (Late::Gone, false),
            (Late::Event, true),
            (Late::Event, false),
        ];
        for (late, new_is_out) in table {
            let name = format!("late {late:?}, new connection out: {new_is_out}");
            let mut rig = Rig::new();
            let (slot, old_reg, _old_client) = rig.park_new();
            drop(rig.take_out(slot));
            rig.admit_parcels();
            let (reused, reg, _client) = rig.park_new();
            assert_eq!((reused, state(&rig.keeper, slot)), (slot, "parked"));
            assert_ne!(reg, old_reg, "a reused slot is a new registration");
            let _conn = new_is_out.then(|| rig.take_out(slot));
            let (before, parked) = (state(&rig.keeper, slot), rig.keeper.parked);

            match late {
                Late::Gone => rig.keeper.admit(Parcel::Gone { slot, reg: old_reg }),
                Late::Event => rig.keeper.on_ready(slot, old_reg, false),
            }

            assert_eq!(state(&rig.keeper, slot), before, "{name}");
            assert_eq!(rig.keeper.parked, parked, "{name}");
            assert_eq!(rig.keeper.slots[slot].reg, reg, "{name}");
            assert!(!rig.keeper.free.contains(&slot), "{name}: not freed");
            assert_eq!(rig.ready.len(), 0, "{name}: not sent to the workers");
            assert!(!rig.readied(slot), "{name}: not marked readied");
        }
    }

    #[test]
    fn a_dropped_ticket_frees_its_slot_for_a_new_registration() {
        // (the slot's generation before the close, after it): it wraps within `REG_MASK`,
        // so a token never collides with `WAKE`.
        let table = [(0, 1), (REG_MASK, 0)];
        for (reg, next) in table {
            let mut rig = Rig::new();
            let (slot, _, _client) = rig.park_new();
            let mut conn = rig.take_out(slot);
            rig.keeper.slots[slot].reg = reg;
            conn.ticket_mut().unwrap().reg = reg;

            drop(conn); // closed by a worker: the ticket sends `Gone`
            assert_eq!(
                state(&rig.keeper, slot),
                "out",
                "not before the parcel is read"
            );
            rig.admit_parcels();
            assert_eq!(state(&rig.keeper, slot), "free", "reg {reg}");
            assert_eq!(rig.keeper.slots[slot].reg, next, "reg {reg}: bumped");
            assert_eq!(rig.keeper.free, [slot]);

            let (reused, new_reg, _client) = rig.park_new();
            assert_eq!(
                (reused, new_reg),
                (slot, next),
                "reg {reg}: reused, new generation"
            );
            assert_ne!(token(reused, new_reg), WAKE);
        }
    }

    #[test]
    fn expire_skips_the_deadline_of_a_slots_previous_connection() {
        let mut rig = Rig::new();
        let (slot, _, _old_client) = rig.park_new();
        let old = rig.take_out(slot);
        let stale = old.deadline(&rig.limits());
        drop(old);
        rig.admit_parcels();
        let (reused, _, _client) = rig.park_new();
        assert_eq!(reused, slot);
        let State::Parked(entry) = &rig.keeper.slots[slot].state else {
            unreachable!()
        };
        let current = entry.deadline;
        assert!(
            stale < current,
            "accepted later, so its head deadline is later"
        );
        assert_eq!(rig.keeper.heap.len(), 2, "the old entry is dropped lazily");

        rig.keeper.expire(stale);
        assert_eq!(
            state(&rig.keeper, slot),
            "parked",
            "the old deadline is not its own"
        );
        assert_eq!(rig.shared.metrics.timeouts(), 0);
        assert_eq!(rig.keeper.heap.len(), 1, "the stale entry is gone");

        rig.keeper.expire(current - TICK);
        assert_eq!(state(&rig.keeper, slot), "parked", "not yet");
        rig.keeper.expire(current);
        assert_eq!(
            state(&rig.keeper, slot),
            "out",
            "its own deadline expires it"
        );
        assert_eq!(rig.keeper.parked, 0);
        assert_eq!(rig.shared.metrics.timeouts(), 1);
        rig.admit_parcels();
        assert_eq!(
            state(&rig.keeper, slot),
            "free",
            "closed: its ticket freed the slot"
        );
    }

    #[test]
    fn expire_skips_a_replaced_deadline_of_the_same_park() {
        let mut rig = Rig::new();
        let (slot, _, _client) = rig.park_new();
        let State::Parked(entry) = &rig.keeper.slots[slot].state else {
            unreachable!()
        };
        let (current, gen) = (entry.deadline, entry.gen);
        // What a deadline moved later would leave behind: an entry of the same park (same
        // generation) whose deadline is no longer the slot's. (Today a drain only moves
        // deadlines earlier, and then the new entry comes first.)
        let replaced = current - TICK;
        rig.keeper.heap.push(Reverse((replaced, slot, gen)));

        rig.keeper.expire(replaced);
        assert_eq!(
            state(&rig.keeper, slot),
            "parked",
            "the replaced deadline is skipped"
        );
        assert_eq!(rig.shared.metrics.timeouts(), 0);

        rig.keeper.expire(current);
        assert_eq!(
            state(&rig.keeper, slot),
            "out",
            "the current deadline expires it"
        );
        assert_eq!(rig.shared.metrics.timeouts(), 1);
    }

    /// A pool with nobody else waiting, for driving `connection::serve` by hand.
    struct Quiet;

    impl connection::Load for Quiet {
        fn others_waiting(&self) -> bool {
            false
        }
        fn new_waiting(&self) -> bool {
            false
        }
    }

    /// Issue 15: the keeper never touches the disk. An upload whose deadline passed goes to
    /// a worker, which answers 408 and removes the temporary file.
    #[test]
    fn an_expired_upload_is_handed_to_a_worker() {
        let root = std::env::temp_dir().join(format!("poolserve-keeper-up-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let root = root.canonicalize().unwrap();
        let temp_files = || {
            std::fs::read_dir(&root)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy()
                        .starts_with(crate::resolve::TEMP_PREFIX)
                })
                .count()
        };
        let mut rig = Rig::with(|c| {
            c.root = root.clone();
            c.allow_write = true;
        });
        let (conn, mut client) = rig.connect();
        client
            .write_all(b"PUT /up.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n")
            .unwrap();
        let give_up = Instant::now() + EVENT_WAIT;
        let mut conn = Some(conn);
        let conn = loop {
            match connection::serve(conn.take().unwrap(), &rig.shared, &Quiet) {
                connection::Next::Park(c) if c.waiting() == Waiting::Body => break c,
                connection::Next::Park(c) => conn = Some(c),
                other => panic!("expected a park, got {other:?}"),
            }
            assert!(Instant::now() < give_up, "the PUT head never arrived");
        };
        assert_eq!(temp_files(), 1, "the upload is staged");
        let deadline = conn.deadline(&rig.limits());
        let slot = rig
            .keeper
            .free
            .last()
            .copied()
            .unwrap_or(rig.keeper.slots.len());
        rig.keeper.admit(Parcel::Wait(conn));
        rig.keeper.expire(deadline);
        assert_eq!(state(&rig.keeper, slot), "out");
        assert_eq!(temp_files(), 1, "the keeper left the file alone");
        let conn = match rig.ready.try_take() {
            Ok(Job::Expire(conn)) => conn,
            other => panic!("expected an expiry job, got {other:?}"),
        };
        let linger = connection::expire(conn, &rig.shared).expect("408 written");
        assert_eq!(temp_files(), 0, "the worker removed it");
        drop(linger);
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 408");
        let _ = std::fs::remove_dir_all(&root);
    }
}
