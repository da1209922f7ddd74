//! The worker pool: N named threads built before the first accept and never spawned later.
//!
//! A worker takes a job (connections coming back from the keeper first, new ones from the
//! bounded accept queue second), serves it with [`connection::serve`] inside `catch_unwind`
//! so that a panic costs that one connection and never the worker, and then hands the
//! connection on: to the keeper to wait for bytes, back to the ready queue for fairness, to a
//! lingering close, or to nowhere (closed).
//!
//! **Who gets woken.** Connections with bytes ready go through [`ReadyQueue`], a crossbeam
//! channel that workers only `try_recv` from; sleeping workers wait on a separate doorbell.
//! Whoever queues work decides how many sleepers to ring: enough that
//! `min(queued jobs, usable cores)` workers are awake, never more. Blocking on the channel
//! itself (one wake-up per send) made the keeper's batch of 30 ready connections wake a
//! sleeping worker for almost every one of them; on one core that is two context switches per
//! request (`perf stat`: 0.46 per request before, see the closing note of issue 7). A worker
//! that is awake but stuck (a slow disk, a test's `HoldGate`) would hold the queue up under
//! that rule, so the keeper also watches progress: when jobs have waited [`STALL_AFTER`] with
//! none taken, it rings one more worker, and again after each further stall.
//!
//! New connections still wake a worker each, through the accept queue that sleeping workers
//! also `select!` on: routing them through the doorbell (one ring per accept batch) measured
//! worse for `Connection: close` traffic (46-51 against 40-43 µs per connection, and a p99
//! twice as long), because one awake worker then also takes every fresh connection whose
//! request has not arrived yet.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};

use crate::connection::{self, Conn, Load, Next};
use crate::keeper::{KeeperHandle, Parcel};
use crate::state::Shared;

/// Stack size of a worker. Serving is shallow (an iterative parser, no recursion, buffers on
/// the heap), so 512 KiB is many times what a request needs, and reserves 16x less address
/// space than std's 8 MiB default per worker; only touched pages count toward RSS anyway.
const WORKER_STACK: usize = 512 * 1024;

/// How long queued ready jobs may sit with no worker taking any before the keeper wakes one
/// more worker. Only reached when every awake worker is stuck inside a request (a slow disk);
/// short enough to be invisible next to a keep-alive round trip over a network.
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

/// Connections with bytes ready (from the keeper, or requeued by a worker), and the doorbell
/// sleeping workers wait on. See the module docs for the wake-up rule.
#[derive(Debug)]
pub(crate) struct ReadyQueue {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    bell_tx: Sender<()>,
    bell_rx: Receiver<()>,
    /// Workers asleep (or about to sleep) on the doorbell.
    idle: AtomicUsize,
    /// Jobs taken since start: the keeper's progress signal.
    taken: AtomicU64,
    workers: usize,
    /// Worker threads that can usefully run at once (the cores this process may use).
    cores: usize,
}

impl ReadyQueue {
    /// A queue for `workers` workers on `cores` cores (`None`: those this process may use).
    pub fn new(workers: usize, cores: Option<usize>) -> Arc<ReadyQueue> {
        let (tx, rx) = crossbeam_channel::unbounded();
        // One token per worker is enough to wake them all; more would only be stale.
        let (bell_tx, bell_rx) = crossbeam_channel::bounded(workers.max(1));
        Arc::new(ReadyQueue {
            tx,
            rx,
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

    /// Jobs waiting right now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Rings sleeping workers until `min(queued, cores)` are awake.
    pub fn wake(&self) {
        // Pairs with the fence in `sleep`: either that worker sees the job on its re-check,
        // or we see it counted idle here and ring.
        fence(Ordering::SeqCst);
        let queued = self.rx.len();
        if queued == 0 {
            return;
        }
        let idle = self.idle.load(Ordering::SeqCst);
        let awake = self.workers.saturating_sub(idle);
        let ring = queued.min(self.cores).saturating_sub(awake).min(idle);
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
    /// Rings one more worker when jobs have waited [`STALL_AFTER`] with none taken. Returns
    /// whether jobs are still queued (the keeper then polls with a timeout of `STALL_AFTER`).
    pub fn check_stall(&self, progress: &mut (u64, Instant), now: Instant) -> bool {
        let taken = self.taken.load(Ordering::Relaxed);
        if self.rx.is_empty() || taken != progress.0 {
            *progress = (taken, now);
            return !self.rx.is_empty();
        }
        if now.duration_since(progress.1) >= STALL_AFTER {
            self.ring(1);
            *progress = (taken, now);
        }
        true
    }

    /// Takes the next job, if any, and counts it as progress for [`ReadyQueue::check_stall`].
    pub fn try_take(&self) -> Result<Job, TryRecvError> {
        let job = self.rx.try_recv();
        if job.is_ok() {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
        job
    }
}

/// The channels a worker reads from and writes to.
#[derive(Clone)]
pub(crate) struct Queues {
    /// New connections from the acceptor (bounded).
    pub new: Receiver<Conn>,
    /// Connections with bytes ready, from the keeper or requeued by a worker.
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
        self.ready.len() > 0 || !self.new.is_empty()
    }

    fn new_waiting(&self) -> bool {
        !self.new.is_empty()
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
    let mut yielded = false;
    while let Some(conn) = next_conn(q, shared, &mut new_open, yielded) {
        yielded = false;
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
                yielded = true;
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

/// The next connection to serve, preferring those with bytes ready (they carry a request and
/// must never wait behind the accept queue); `None` when the keeper says everything is closed.
/// Right after this worker requeued a connection (`yielded`), a waiting new connection goes
/// first: otherwise the requeued one, alone in the ready queue, would be taken straight back
/// and a long download or pipeline would shut new clients out.
fn next_conn(q: &Queues, shared: &Shared, new_open: &mut bool, yielded: bool) -> Option<Conn> {
    let take_new = |new_open: &mut bool| match q.new.try_recv() {
        Ok(conn) => Some(took_new(q, shared, conn)),
        Err(TryRecvError::Disconnected) => {
            *new_open = false;
            None
        }
        Err(TryRecvError::Empty) => None,
    };
    if yielded && *new_open {
        if let Some(conn) = take_new(new_open) {
            return Some(conn);
        }
    }
    loop {
        match q.ready.try_take() {
            Ok(Job::Serve(conn)) => return Some(conn),
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
            if let Some(conn) = take_new(new_open) {
                return Some(conn);
            }
        }
        if let Some(conn) = sleep(q, shared, new_open) {
            return Some(conn);
        }
    }
}

/// A connection taken off the accept queue: the queue's gauge follows.
fn took_new(q: &Queues, shared: &Shared, conn: Conn) -> Conn {
    shared.queued.store(q.new.len(), Ordering::Relaxed);
    conn
}

/// Waits for the doorbell or a new connection. Returns a new connection if that is what came.
fn sleep(q: &Queues, shared: &Shared, new_open: &mut bool) -> Option<Conn> {
    let ready = &q.ready;
    ready.idle.fetch_add(1, Ordering::SeqCst);
    // Pairs with the fence in `ReadyQueue::wake`.
    fence(Ordering::SeqCst);
    let mut got = None;
    if ready.rx.is_empty() {
        if *new_open {
            select! {
                recv(ready.bell_rx) -> _ => {}
                recv(q.new) -> conn => match conn {
                    Ok(conn) => got = Some(took_new(q, shared, conn)),
                    Err(_) => *new_open = false,
                },
            }
        } else {
            let _ = ready.bell_rx.recv();
        }
    }
    ready.idle.fetch_sub(1, Ordering::SeqCst);
    got
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
        let config = Config {
            workers: 1,
            ..Config::default()
        };
        let shared = Shared::new(config, Shutdown::new());
        let (new_tx, new_rx) = crossbeam_channel::bounded(4);
        let ready = ReadyQueue::new(1, None);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (keeper, _k) = crate::keeper::start(
            Arc::clone(&shared),
            Arc::clone(&ready),
            new_rx.clone(),
            done_tx.clone(),
        )
        .unwrap();
        let queues = Queues {
            new: new_rx,
            ready,
            keeper,
        };
        start_with(&shared, queues, done_tx, panics_once).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut clients = Vec::new();
        for _ in 0..2 {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let (stream, peer) = listener.accept().unwrap();
            stream.set_nonblocking(true).unwrap(); // as the acceptor's accept4 does
            new_tx
                .send(Conn::new(stream, peer, &shared).unwrap())
                .unwrap();
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

        drop(new_tx);
        shared.shutdown.trigger();
        shared.acceptor_done.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            done_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("worker and keeper exit");
        }
    }
}
