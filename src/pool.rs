//! The worker pool: N named threads built before the first accept and never spawned later.
//!
//! A worker takes a job (a connection coming back from the keeper, or a new one from the
//! bounded accept queue, alternating when both wait: see [`next_conn`]), serves it with
//! [`connection::serve`] inside `catch_unwind` so that a panic costs that one connection and
//! never the worker, and then hands the connection on: to the keeper to wait for bytes, back
//! to the ready queue for fairness, to a lingering close, or to nowhere (closed).
//!
//! **Who gets woken.** Workers only `try_recv` from the two queues (connections with bytes
//! ready in [`ReadyQueue`], new ones in the accept queue); sleeping workers wait on a separate
//! doorbell. Whoever queues work (the keeper, the acceptor, a worker that requeues) calls
//! [`ReadyQueue::wake`], which rings enough sleepers that `min(jobs queued in both queues,
//! usable cores)` workers are awake, never more; a worker rung but not yet running counts as
//! awake, or a burst queued before it runs would ring one per job. Blocking on the channels
//! themselves (one wake-up per send) made the keeper's batch of 30 ready connections wake a
//! sleeping worker for almost every one of them; on one core that is two context switches per
//! request (`perf stat`: 0.46 per request before, see the closing note of issue 7). A worker
//! that is awake but stuck (a slow disk, a test's `HoldGate`) would hold the queues up under
//! that rule, so progress is watched: when jobs have waited [`STALL_AFTER`] with none taken,
//! one more worker is rung, and again after each further stall. The keeper watches the ready
//! queue, the acceptor the accept queue (it polls with that timeout only while new
//! connections wait and a worker sleeps); when the acceptor stops it rings every sleeper once
//! for what is left.
//!
//! **New connections ring the doorbell too (issue 16).** Until then sleeping workers also
//! `select!`ed on the accept queue, so every new connection woke a worker of its own:
//! routing them through the doorbell had measured worse (46-51 against 40-43 µs per
//! connection, p99 twice as long), because the one awake worker also took every fresh
//! connection whose request had not arrived yet and parked it. `TCP_DEFER_ACCEPT` (on by
//! default) removed that reason: a connection now reaches the acceptor with its request. The
//! acceptor calls `wake` after each connection it queues, which is free (no system call) once
//! a worker counts as awake, so under load it rings once per accept batch. Ringing once at
//! the end of each batch instead measured the same and delays the first connection of a batch
//! on a machine with cores to spare; yielding the acceptor's core after a batch (as the
//! keeper does) let the worker drain the queue and fall asleep before each next connection,
//! and brought a ring per connection back. Because one worker on one core now takes a burst of
//! new connections in turn, a worker alternates between the queues when both hold work, so
//! keep-alive clients cannot keep the ready queue from emptying and shut new clients out.
//!
//! Measured on the 2-core bench machine, server on CPU 1, `wrk -t1` on CPU 0, 2 KiB file,
//! `--access-log off --max-requests 100000`, previous and this build interleaved, medians of
//! 5 rounds (system calls and switches from `perf stat -e syscalls:sys_enter_*,
//! raw_syscalls:sys_enter,context-switches -p PID` over separate 3 s runs; CPU from
//! `/proc/PID/stat`, the acceptor's share from `/proc/PID/task/*/schedstat`):
//!
//! | S2: `-c32 -d5s -H "Connection: close"` | before | after |
//! |----------------------------------------|--------|-------|
//! | `futex` per connection                  | 2.15   | 0.27  |
//! | system calls per connection             | 6.27   | 4.68  |
//! | context switches per connection         | 1.61   | 0.35  |
//! | server CPU per connection               | 21.1 µs | 19.4 µs |
//! | req/s (wrk is the bottleneck: the server is about half idle) | 26 250 | 25 530 |
//! | p99                                     | 1.03 ms | 1.00 ms |
//! | the acceptor's share of server CPU      | 22%    | 31%   |
//!
//! The acceptor's share rose (4.7 → 6.1 µs per connection) while the workers' fell (16.4 →
//! 13.3 µs): before, the worker a connection woke preempted the acceptor after every hand-off
//! (0.72 involuntary switches per connection), so the acceptor found a longer batch when it
//! got the core back; now it drains the listener, rings, and sleeps in `epoll_wait` (0.20 per
//! connection against 0.05). `accept4` alone is about 2.9 µs per connection (`perf record`), a
//! share near 15% on its own: the 12% needs the accepts off the acceptor thread (say,
//! an awake worker with nothing queued accepting for itself), not a different wake-up rule.
//! S1 (`-c64`, keep-alive) is unchanged: 6.2-6.4 µs per request, `futex` 0.10 → 0.07 per
//! request. With `--defer-accept 0` the old reason shows again, mildly: 36.6 against 35.3 µs
//! per connection in S2 (2 rounds) (fresh connections parked: `epoll_ctl` 0.94 against 0.57 per
//! connection), `futex` 3.2 → 1.7.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use crate::connection::{self, Conn, Load, Next};
use crate::keeper::{KeeperHandle, Parcel};
use crate::state::Shared;

/// Stack size of a worker. Serving is shallow (an iterative parser, no recursion, buffers on
/// the heap), so 512 KiB is many times what a request needs, and reserves 16x less address
/// space than std's 8 MiB default per worker; only touched pages count toward RSS anyway.
const WORKER_STACK: usize = 512 * 1024;

/// How long queued jobs may sit with no worker taking any before one more worker is woken (by
/// the keeper for ready jobs, by the acceptor for new connections). Only reached when every
/// awake worker is stuck inside a request (a slow disk); short enough to be invisible next to
/// a keep-alive round trip over a network.
pub(crate) const STALL_AFTER: Duration = Duration::from_millis(1);

/// A job for the workers.
#[derive(Debug)]
pub(crate) enum Job {
    /// A connection with bytes ready (or buffered).
    Serve(Conn),
    /// An upload whose deadline passed: answer 408 and remove its temporary file, which the
    /// keeper must not do itself (it never touches the disk).
    Expire(Conn),
    /// Everything is closed: the worker may exit.
    Exit,
}

/// Connections with bytes ready (from the keeper, or requeued by a worker), the receiving end
/// of the accept queue, and the doorbell sleeping workers wait on: new connections ring the
/// same doorbell, so the wake-up rule counts both queues. See the module docs for the rule.
#[derive(Debug)]
pub(crate) struct ReadyQueue {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    /// New connections from the acceptor (bounded: a full queue is the acceptor's 503).
    accepted: Receiver<Conn>,
    bell_tx: Sender<()>,
    bell_rx: Receiver<()>,
    /// Workers asleep (or about to sleep) on the doorbell, including those rung whose token
    /// is still in the doorbell.
    idle: AtomicUsize,
    /// Jobs taken from either queue since start: the stall checks' progress signal.
    taken: AtomicU64,
    workers: usize,
    /// Worker threads that can usefully run at once (the cores this process may use).
    cores: usize,
}

impl ReadyQueue {
    /// A queue for `workers` workers on `cores` cores (`None`: those this process may use),
    /// with no accept queue (nothing new ever arrives: the keeper's tests).
    #[cfg(test)]
    pub fn new(workers: usize, cores: Option<usize>) -> Arc<ReadyQueue> {
        // A queue whose sender is gone at once: always empty, and disconnected.
        let (_, accepted) = crossbeam_channel::bounded(0);
        ReadyQueue::with_accept_queue(workers, cores, accepted)
    }

    /// A queue whose workers also take new connections from `accepted`. Whoever sends on it
    /// must call [`ReadyQueue::wake`] afterwards: sleeping workers wait on the doorbell only.
    pub fn with_accept_queue(
        workers: usize,
        cores: Option<usize>,
        accepted: Receiver<Conn>,
    ) -> Arc<ReadyQueue> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // One token per worker is enough to wake them all; more would only be stale.
        let (bell_tx, bell_rx) = crossbeam_channel::bounded(workers.max(1));
        Arc::new(ReadyQueue {
            tx,
            rx,
            accepted,
            bell_tx,
            bell_rx,
            idle: AtomicUsize::new(0),
            taken: AtomicU64::new(0),
            workers,
            cores: cores.unwrap_or_else(num_cpus::get).clamp(1, workers.max(1)),
        })
    }

    /// Queues a job without waking anyone: call [`ReadyQueue::wake`] after a batch.
    pub fn push(&self, job: Job) {
        // Never disconnected: this struct holds both ends.
        let _ = self.tx.send(job);
    }

    /// Ready jobs waiting right now (new connections not counted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Jobs of either kind waiting right now: ready ones and new connections.
    fn pending(&self) -> usize {
        self.rx.len() + self.accepted.len()
    }

    /// Rings sleeping workers until `min(queued, cores)` are awake, counting both queues.
    /// Cheap when nobody needs ringing (a fence and a few loads, no system call), so callers
    /// may call it after every job they queue.
    pub fn wake(&self) {
        // Pairs with the fence in `sleep`: either that worker sees the job on its re-check,
        // or we see it counted idle here and ring.
        fence(Ordering::SeqCst);
        let queued = self.pending();
        if queued == 0 {
            return;
        }
        let idle = self.idle.load(Ordering::SeqCst);
        // A rung worker counts as idle until it has run and taken its token; it is awake for
        // this rule already, or a burst of jobs queued before it runs (an accept batch on one
        // core) would ring a worker per job.
        let asleep = idle.saturating_sub(self.bell_rx.len());
        let awake = self.workers.saturating_sub(asleep);
        let ring = queued.min(self.cores).saturating_sub(awake).min(asleep);
        self.ring(ring);
    }

    fn ring(&self, n: usize) {
        for _ in 0..n {
            if self.bell_tx.try_send(()).is_err() {
                break; // full: every sleeper already has a token
            }
        }
    }

    /// Queues one `Exit` per worker and wakes them all.
    pub fn exit_all(&self) {
        for _ in 0..self.workers {
            self.push(Job::Exit);
        }
        self.ring(self.workers);
    }

    /// The keeper's stall check, once per loop: `progress` is the last `(taken, when)` it saw.
    /// Rings one more worker when ready jobs have waited [`STALL_AFTER`] with none taken.
    /// Returns whether jobs are still queued (the keeper then polls with a timeout of
    /// `STALL_AFTER`). New connections are the acceptor's to watch
    /// ([`ReadyQueue::check_new_stall`]): the keeper sleeps through a connection-per-request
    /// load, and polling every `STALL_AFTER` while the accept queue is seldom empty would wake
    /// it a thousand times a second.
    pub fn check_stall(&self, progress: &mut (u64, Instant), now: Instant) -> bool {
        self.stalled(progress, now, !self.rx.is_empty())
    }

    /// The acceptor's stall check, after each accept batch: the same as
    /// [`ReadyQueue::check_stall`] for new connections. It returns `true` (look again after
    /// `STALL_AFTER`) only while new connections wait and a worker sleeps that could take
    /// them: with every worker awake, each looks at the queue before it sleeps, and ringing
    /// would find nobody.
    pub fn check_new_stall(&self, progress: &mut (u64, Instant), now: Instant) -> bool {
        let waiting = !self.accepted.is_empty() && self.idle.load(Ordering::SeqCst) > 0;
        self.stalled(progress, now, waiting)
    }

    /// Rings one more worker when jobs are `waiting` and none was taken for [`STALL_AFTER`].
    fn stalled(&self, progress: &mut (u64, Instant), now: Instant, waiting: bool) -> bool {
        let taken = self.taken.load(Ordering::Relaxed);
        if !waiting || taken != progress.0 {
            *progress = (taken, now);
            return waiting;
        }
        if now.duration_since(progress.1) >= STALL_AFTER {
            self.ring(1);
            *progress = (taken, now);
        }
        true
    }

    /// Takes the next ready job, if any, and counts it as progress for the stall checks.
    pub fn try_take(&self) -> Result<Job, TryRecvError> {
        let job = self.rx.try_recv();
        if job.is_ok() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        job
    }

    /// Takes the next new connection, if any, and counts it as progress for the stall checks.
    fn try_take_new(&self) -> Result<Conn, TryRecvError> {
        let conn = self.accepted.try_recv();
        if conn.is_ok() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        conn
    }

    /// Rings every sleeping worker once (the end of accepting: whatever is left in the accept
    /// queue is taken by all the workers there are, and a stuck one holds up nothing).
    pub fn wake_all(&self) {
        self.ring(self.idle.load(Ordering::SeqCst));
    }
}

/// The channels a worker reads from and writes to.
#[derive(Clone)]
pub(crate) struct Queues {
    /// Connections with bytes ready (from the keeper or requeued by a worker), new
    /// connections from the acceptor, and the doorbell.
    pub ready: Arc<ReadyQueue>,
    /// To park connections and hand over lingering closes.
    pub keeper: KeeperHandle,
}

/// Starts `shared.config.workers` threads named `worker-{i}`. Each sends on `done` when it
/// exits (also after a panic), so the server can wait for them with a deadline.
pub(crate) fn start(
    shared: &Arc<Shared>,
    queues: Queues,
    done: Sender<()>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    start_with(shared, queues, done, connection::serve)
}

/// How a worker serves one connection; a parameter so that tests can make it panic.
type ServeFn = fn(Conn, &Shared, &dyn Load) -> Next;

fn start_with(
    shared: &Arc<Shared>,
    queues: Queues,
    done: Sender<()>,
    serve: ServeFn,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..shared.config.workers)
        .map(|i| {
            let shared = Arc::clone(shared);
            let queues = queues.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || {
                    let _done = DoneOnDrop(done);
                    work(&shared, &queues, serve);
                })
        })
        .collect()
}

impl Load for Queues {
    fn others_waiting(&self) -> bool {
        self.ready.pending() > 0
    }

    fn new_waiting(&self) -> bool {
        !self.ready.accepted.is_empty()
    }
}

struct DoneOnDrop(Sender<()>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn work(shared: &Shared, q: &Queues, serve: ServeFn) {
    let mut new_open = true;
    let mut new_first = false;
    while let Some((conn, from)) = next_conn(q, shared, &mut new_open, new_first) {
        // After a ready job, a waiting new connection goes first (see `next_conn`).
        new_first = from == Source::Ready;
        shared.busy_workers.fetch_add(1, Ordering::Relaxed);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| serve(conn, shared, q)));
        shared.busy_workers.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(Next::Park(mut conn)) => {
                conn.shrink();
                q.keeper
                    .park(conn, &shared.config.limits, shared.shutdown.is_triggered());
            }
            Ok(Next::Requeue(conn)) => {
                q.ready.push(Job::Serve(conn));
                q.ready.wake();
                // If the workers that count as awake all get stuck, only the keeper's stall
                // check rescues this job, and the keeper may be asleep until a far deadline.
                q.keeper.wake_if_sleeping();
                new_first = true;
            }
            Ok(Next::Linger(linger)) => q.keeper.send(Parcel::Linger(linger)),
            Ok(Next::Done) => {}
            Err(panic) => {
                let what = panic_message(&*panic);
                log::error!("panic while serving a connection (connection dropped, worker lives on): {what}");
            }
        }
    }
}

/// What a caught panic said.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Which queue a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The ready queue: it has bytes ready (from the keeper) or was requeued.
    Ready,
    /// The accept queue.
    New,
}

/// The next connection to serve; `None` when the keeper says everything is closed.
///
/// Connections with bytes ready go first (they carry a request; being in their own unbounded
/// queue they are never answered 503), except that with `new_first` (this worker's last job
/// came from the ready queue, or it requeued a connection) a waiting new connection does. So
/// when both queues hold work a worker alternates between them. Without that, on one core the
/// single awake worker (the wake-up rule wakes no more) would leave new connections waiting
/// for as long as keep-alive clients keep the ready queue from emptying, and a requeued
/// connection, alone in the ready queue, would be taken straight back, shutting new clients
/// out of a long download or pipeline.
fn next_conn(
    q: &Queues,
    shared: &Shared,
    new_open: &mut bool,
    new_first: bool,
) -> Option<(Conn, Source)> {
    let take_new = |new_open: &mut bool| match q.ready.try_take_new() {
        Ok(conn) => Some((took_new(q, shared, conn), Source::New)),
        Err(TryRecvError::Disconnected) => {
            *new_open = false;
            None
        }
        Err(TryRecvError::Empty) => None,
    };
    if new_first && *new_open {
        if let Some(got) = take_new(new_open) {
            return Some(got);
        }
    }
    loop {
        match q.ready.try_take() {
            Ok(Job::Serve(conn)) => return Some((conn, Source::Ready)),
            Ok(Job::Expire(conn)) => {
                if let Some(linger) = connection::expire(conn, shared) {
                    q.keeper.send(Parcel::Linger(linger));
                }
                continue;
            }
            Ok(Job::Exit) | Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if *new_open {
            if let Some(got) = take_new(new_open) {
                return Some(got);
            }
        }
        sleep(&q.ready);
    }
}

/// A connection taken off the accept queue: the queue's gauge follows.
fn took_new(q: &Queues, shared: &Shared, conn: Conn) -> Conn {
    shared
        .queued
        .store(q.ready.accepted.len(), Ordering::Relaxed);
    conn
}

/// Waits for the doorbell, unless a job of either kind came meanwhile. The wait has no
/// deadline on purpose: an idle server must cost no CPU (tests/idle_cpu.rs); every job is
/// followed by [`ReadyQueue::wake`], and the keeper's and the acceptor's stall checks ring
/// one more worker when the awake ones are stuck.
fn sleep(ready: &ReadyQueue) {
    ready.idle.fetch_add(1, Ordering::SeqCst);
    // Pairs with the fence in `ReadyQueue::wake`.
    fence(Ordering::SeqCst);
    if ready.pending() == 0 {
        // `Select`, not `recv` (nor a one-armed `select!`, which is `recv`): a bounded
        // channel's `recv` spins and then calls `sched_yield` a few times before it parks
        // (measured: 0.65 yields per connection in the connection-per-request load, each a
        // system call and, on one core, a context switch), while `Select` parks at once.
        let mut bell = Select::new();
        bell.recv(&ready.bell_rx);
        let _ = bell.select().recv(&ready.bell_rx);
    }
    ready.idle.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shutdown::Shutdown;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;

    /// Rings waiting in the doorbell.
    fn rings(q: &ReadyQueue) -> usize {
        q.bell_rx.len()
    }

    fn some_jobs(q: &ReadyQueue, n: usize) {
        for _ in 0..n {
            q.push(Job::Exit);
        }
    }

    #[test]
    fn wake_rings_until_min_of_jobs_and_cores_are_awake() {
        // (workers, cores, idle, queued) → rings
        let table = [
            (4, 1, 4, 0, 0),
            (4, 1, 4, 1, 1),
            (4, 1, 4, 30, 1), // one core: one worker drains the batch
            (4, 2, 4, 30, 2),
            (4, 2, 4, 1, 1),
            (4, 2, 3, 30, 1), // one already awake
            (4, 2, 2, 30, 0),
            (8, 8, 8, 3, 3),
            (2, 16, 2, 30, 2), // cores clamp to workers
        ];
        for (workers, cores, idle, queued, want) in table {
            let q = ReadyQueue::new(workers, Some(cores));
            q.idle.store(idle, Ordering::SeqCst);
            some_jobs(&q, queued);
            q.wake();
            assert_eq!(
                rings(&q),
                want,
                "workers {workers} cores {cores} idle {idle} queued {queued}"
            );
        }
    }

    #[test]
    fn new_connections_count_toward_the_rule_and_a_burst_rings_once() {
        let (new_tx, new_rx) = crossbeam_channel::bounded(64);
        let shared = Shared::new(Config::default(), Shutdown::new());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // (cores, connections queued one by one with a wake after each) → rings
        for (cores, burst, want) in [(1, 12, 1), (2, 12, 2), (4, 3, 3), (8, 12, 4)] {
            let q = ReadyQueue::with_accept_queue(4, Some(cores), new_rx.clone());
            q.idle.store(4, Ordering::SeqCst); // everyone asleep, and nobody runs meanwhile
            let mut clients = Vec::new();
            for _ in 0..burst {
                let (conn, client) = loopback(&listener, &shared);
                new_tx.send(conn).unwrap();
                clients.push(client);
                q.wake();
            }
            assert_eq!(rings(&q), want, "cores {cores}, a burst of {burst}");
            while new_rx.try_recv().is_ok() {}
        }
    }

    #[test]
    fn a_rung_worker_counts_as_awake_before_it_runs() {
        let q = ReadyQueue::new(4, Some(1));
        q.idle.store(4, Ordering::SeqCst);
        for _ in 0..30 {
            q.push(Job::Exit);
            q.wake();
        }
        assert_eq!(rings(&q), 1, "one core: one worker for the whole batch");
        let _ = q.bell_rx.try_recv(); // that worker runs...
        q.idle.store(3, Ordering::SeqCst); // ...and is no longer idle
        q.wake();
        assert_eq!(rings(&q), 0, "still enough");
    }

    #[test]
    fn the_acceptor_watches_new_connections_only_while_a_worker_sleeps() {
        let (new_tx, new_rx) = crossbeam_channel::bounded(4);
        let shared = Shared::new(Config::default(), Shutdown::new());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let q = ReadyQueue::with_accept_queue(2, Some(1), new_rx);
        let t0 = Instant::now();
        let mut progress = (0, t0);
        assert!(!q.check_new_stall(&mut progress, t0), "nothing queued");
        let (conn, _client) = loopback(&listener, &shared);
        new_tx.send(conn).unwrap();
        assert!(
            !q.check_new_stall(&mut progress, t0),
            "both workers awake: each looks at the queue before it sleeps"
        );
        q.idle.store(1, Ordering::SeqCst); // one awake (and, say, stuck), one asleep
        q.wake();
        assert_eq!(rings(&q), 0, "one core, one awake: nobody else is rung");
        assert!(q.check_new_stall(&mut progress, t0));
        assert!(q.check_new_stall(&mut progress, t0 + STALL_AFTER / 2));
        assert_eq!(rings(&q), 0, "not stalled yet");
        assert!(q.check_new_stall(&mut progress, t0 + STALL_AFTER));
        assert_eq!(rings(&q), 1, "stalled: the sleeping worker is rung");
        assert!(q.try_take_new().is_ok());
        assert!(!q.check_new_stall(&mut progress, t0 + STALL_AFTER * 2));
    }

    #[test]
    fn a_worker_alternates_between_ready_and_new_connections() {
        let (shared, queues, new_tx, done) = rig(1);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        let mut name = std::collections::HashMap::new();
        for i in 0..3 {
            let (conn, client) = loopback(&listener, &shared);
            name.insert(client.local_addr().unwrap(), format!("ready{i}"));
            queues.ready.push(Job::Serve(conn));
            clients.push(client);
        }
        for i in 0..2 {
            let (conn, client) = loopback(&listener, &shared);
            name.insert(client.local_addr().unwrap(), format!("new{i}"));
            new_tx.send(conn).unwrap();
            clients.push(client);
        }
        let mut order = Vec::new();
        let (mut new_open, mut new_first) = (true, false);
        while order.len() < 5 {
            let (conn, from) = next_conn(&queues, &shared, &mut new_open, new_first).unwrap();
            new_first = from == Source::Ready;
            order.push(name[&conn.stream().peer_addr().unwrap()].clone());
        }
        assert_eq!(order, ["ready0", "new0", "ready1", "new1", "ready2"]);
        drop(clients);
        stop(&shared, new_tx, &done, 1);
    }

    /// A connection over loopback, as the acceptor makes it, and the client's end.
    fn loopback(listener: &TcpListener, shared: &Arc<Shared>) -> (Conn, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (stream, peer) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap(); // as the acceptor's accept4 does
        (Conn::new(stream, peer, shared).unwrap(), client)
    }

    /// A pool's state and queues with a running keeper, for `workers` workers (not started),
    /// and the channel on which threads report that they are done.
    fn rig(workers: usize) -> (Arc<Shared>, Queues, Sender<Conn>, Done) {
        let config = Config {
            workers,
            ..Config::default()
        };
        let shared = Shared::new(config, Shutdown::new());
        let (new_tx, new_rx) = crossbeam_channel::bounded(4);
        let ready = ReadyQueue::with_accept_queue(workers, None, new_rx.clone());
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (keeper, _k) = crate::keeper::start(
            Arc::clone(&shared),
            Arc::clone(&ready),
            new_rx,
            done_tx.clone(),
        )
        .unwrap();
        (shared, Queues { ready, keeper }, new_tx, (done_tx, done_rx))
    }

    type Done = (Sender<()>, Receiver<()>);

    /// Stops a [`rig`] and waits for `threads` threads (workers and the keeper) to be done.
    fn stop(shared: &Shared, new_tx: Sender<Conn>, (_, done_rx): &Done, threads: usize) {
        drop(new_tx);
        shared.shutdown.trigger();
        shared.acceptor_done.store(true, Ordering::SeqCst);
        for _ in 0..threads {
            done_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("workers and keeper exit");
        }
    }

    #[test]
    fn a_stall_rings_one_more_worker_each_time() {
        let q = ReadyQueue::new(4, Some(1));
        q.idle.store(3, Ordering::SeqCst); // one worker awake (and, say, stuck)
        some_jobs(&q, 2);
        q.wake();
        assert_eq!(rings(&q), 0, "one core, one awake: nobody else is rung");
        let t0 = Instant::now();
        let mut progress = (0, t0);
        assert!(q.check_stall(&mut progress, t0));
        assert!(q.check_stall(&mut progress, t0 + STALL_AFTER / 2));
        assert_eq!(rings(&q), 0, "not stalled yet");
        assert!(q.check_stall(&mut progress, t0 + STALL_AFTER));
        assert_eq!(rings(&q), 1, "stalled: one more worker");
        assert!(q.check_stall(&mut progress, t0 + STALL_AFTER * 3 / 2));
        assert_eq!(rings(&q), 1, "the stall clock restarted");
        assert!(q.check_stall(&mut progress, t0 + STALL_AFTER * 2));
        assert_eq!(rings(&q), 2, "still stalled: another");
        // Progress (a job taken) resets the clock.
        let _ = q.try_take();
        assert!(q.check_stall(&mut progress, t0 + STALL_AFTER * 5));
        assert_eq!(rings(&q), 2);
        let _ = q.try_take();
        assert!(!q.check_stall(&mut progress, t0 + STALL_AFTER * 9));
        assert_eq!(rings(&q), 2, "nothing queued, nothing rung");
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    /// Panics on its first call, then answers "ok" and closes.
    fn panics_once(conn: Conn, _: &Shared, _: &dyn Load) -> Next {
        if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("injected panic");
        }
        let mut stream = conn.stream();
        let _ = stream.write_all(b"ok");
        Next::Done
    }

    #[test]
    fn a_panic_costs_one_connection_not_the_worker() {
        let (shared, queues, new_tx, done) = rig(1);
        let ready = Arc::clone(&queues.ready);
        start_with(&shared, queues, done.0.clone(), panics_once).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (conn, client) = loopback(&listener, &shared);
            new_tx.send(conn).unwrap();
            ready.wake(); // as the acceptor does
            clients.push(client);
        }
        let mut first = Vec::new();
        clients[0].read_to_end(&mut first).unwrap();
        assert!(first.is_empty(), "the panicking connection is just closed");
        let mut second = Vec::new();
        clients[1].read_to_end(&mut second).unwrap();
        assert_eq!(
            second, b"ok",
            "the only worker survived the panic and served the next one"
        );
        stop(&shared, new_tx, &done, 2);
    }
}
