//! The worker pool: N named threads built before the first accept and never spawned later.
//!
//! A worker takes a job (connections coming back from the keeper first, new ones from the
//! bounded accept queue second), serves it with [`connection::serve`] inside `catch_unwind`
//! so that a panic costs that one connection and never the worker, and then hands the
//! connection on: to the keeper to wait for bytes, back to the ready queue for fairness, to a
//! lingering close, or to nowhere (closed).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{select, Receiver, Sender, TryRecvError};

use crate::connection::{self, Conn, Load, Next};
use crate::keeper::{Job, KeeperHandle, Parcel};
use crate::state::Shared;

/// Stack size of a worker. Serving is shallow (an iterative parser, no recursion, buffers on
/// the heap), so 512 KiB is many times what a request needs, and reserves 16x less address
/// space than std's 8 MiB default per worker; only touched pages count toward RSS anyway.
const WORKER_STACK: usize = 512 * 1024;

/// The channels a worker reads from and writes to.
pub(crate) struct Queues {
    /// New connections from the acceptor (bounded).
    pub new: Receiver<Conn>,
    /// Connections with bytes ready, from the keeper or requeued by a worker.
    pub ready: Receiver<Job>,
    /// For requeueing a connection that still has buffered requests.
    pub requeue: Sender<Job>,
    /// To park connections and hand over lingering closes.
    pub keeper: KeeperHandle,
}

impl Clone for Queues {
    fn clone(&self) -> Self {
        Queues {
            new: self.new.clone(),
            ready: self.ready.clone(),
            requeue: self.requeue.clone(),
            keeper: self.keeper.clone(),
        }
    }
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
        !self.ready.is_empty() || !self.new.is_empty()
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
                q.keeper.send(Parcel::Wait(conn));
            }
            Ok(Next::Requeue(conn)) => {
                let _ = q.requeue.send(Job::Serve(conn));
                yielded = true;
            }
            Ok(Next::Linger(stream, open)) => q.keeper.send(Parcel::Linger(stream, open)),
            Ok(Next::Done) => {}
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                log::error!("panic while serving a connection (connection dropped, worker lives on): {what}");
            }
        }
    }
}

/// The next connection to serve, preferring those with bytes ready (they carry a request and
/// must never wait behind the accept queue); `None` when the keeper says everything is closed.
/// Right after this worker requeued a connection (`yielded`), a waiting new connection goes
/// first: otherwise the requeued one, alone in the ready queue, would be taken straight back
/// and a long download or pipeline would shut new clients out.
fn next_conn(q: &Queues, shared: &Shared, new_open: &mut bool, yielded: bool) -> Option<Conn> {
    if yielded && *new_open {
        if let Ok(conn) = q.new.try_recv() {
            shared.queued.store(q.new.len(), Ordering::Relaxed);
            return Some(conn);
        }
    }
    loop {
        match q.ready.try_recv() {
            Ok(Job::Serve(conn)) => return Some(conn),
            Ok(Job::Exit) | Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if !*new_open {
            return match q.ready.recv() {
                Ok(Job::Serve(conn)) => Some(conn),
                _ => None,
            };
        }
        select! {
            recv(q.ready) -> job => return match job {
                Ok(Job::Serve(conn)) => Some(conn),
                _ => None,
            },
            recv(q.new) -> conn => match conn {
                Ok(conn) => {
                    shared.queued.store(q.new.len(), Ordering::Relaxed);
                    return Some(conn);
                }
                Err(_) => *new_open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shutdown::Shutdown;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

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
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let (keeper, _k) = crate::keeper::start(
            Arc::clone(&shared),
            ready_tx.clone(),
            new_rx.clone(),
            done_tx.clone(),
        )
        .unwrap();
        let queues = Queues {
            new: new_rx,
            ready: ready_rx,
            requeue: ready_tx,
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
