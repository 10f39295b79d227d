//! The I/O pool: std threads, spawned on demand up to a bound and stopped when idle, that run
//! the calls which may block (handlers, source reads, sink writes, upload completions). Each
//! job's result goes back to the event loop that owns the session, through its [`Inbox`].
//!
//! Growth: up to [`eager`] threads start as soon as a job finds none idle; past that, a
//! watcher thread starts one more only when the oldest queued job has waited [`GRACE`] and
//! fewer than [`eager`] threads are free to take it: a thread whose job has run [`STALLED`]
//! or longer counts as stalled. Most jobs are short (opening a cached file takes microseconds),
//! and a boot storm's thousand requests at once used to start a thread for each request
//! queued behind busy ones (64 threads at 1,000 clients, each with its stack and malloc
//! arena), then one per [`GRACE`] while the queue was long (10 at 1,000 clients on one CPU:
//! a long queue of short jobs on a busy CPU looks old without anything being stuck); now a
//! burst of short jobs is drained by the eager threads, while jobs that stall (an NFS root, a
//! slow disk, a handler that waits) still get fresh threads, one per [`GRACE`] once they
//! have stalled, up to the bound.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tftp_proto::ErrorCode;
use tftp_server::{HandlerError, Request};

use crate::data::{Chunk, Written};
use crate::handler::Response;
use crate::reactor::Waker;

/// How long an idle pool thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

/// How long the oldest queued job waits, with every thread busy and the eager threads
/// started, before the watcher starts one more thread (if [`STALLED`] ones leave fewer than
/// [`eager`] free).
const GRACE: Duration = Duration::from_millis(2);

/// How long a job runs before its thread counts as stalled (blocked on a slow disk, a network
/// file system, a handler that waits) rather than busy: a short job whose thread the CPU's
/// other work preempts takes a few milliseconds at most (the scheduler's latency).
const STALLED: Duration = Duration::from_millis(10);

/// Threads started without waiting: the machine's parallelism (at least 2, so that one job
/// that blocks does not hold up the next until it counts as [`STALLED`]). Short jobs cannot
/// use more threads than there are CPUs; jobs that block get more from the watcher. (At least
/// 4 before: at 1,000 clients on one CPU, 5 I/O threads where 3 now run the same jobs for the
/// same CPU, benches/e2e/results/2026-12-07-evening.txt.)
fn eager(max: usize) -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    cpus.max(2).min(max)
}

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of threads.
#[derive(Debug, Clone)]
pub(crate) struct Pool(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    max: usize,
    eager: usize,
    state: Mutex<State>,
    /// Idle workers wait here for jobs.
    work: Condvar,
    /// The watcher waits here for a queue that does not drain.
    watch: Condvar,
}

#[derive(Default)]
struct State {
    /// Queued jobs, each with when it was queued.
    jobs: VecDeque<(Instant, Job)>,
    /// The workers in a job, each with when its job started.
    busy: Vec<(thread::ThreadId, Instant)>,
    threads: usize,
    idle: usize,
    /// Whether the watcher thread runs.
    watching: bool,
    /// The watcher waits with no backlog to watch: a job that finds no thread wakes it.
    watcher_idle: bool,
}

impl State {
    /// Jobs are queued beyond what idle threads will take, and the bound allows one more.
    fn short(&self, max: usize) -> bool {
        self.jobs.len() > self.idle && self.threads < max
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("State");
        d.field("queued", &self.jobs.len())
            .field("threads", &self.threads);
        d.finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// A pool of at most `max` threads (none started yet).
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Pool(Arc::new(Shared {
            max,
            eager: eager(max),
            state: Mutex::default(),
            work: Condvar::new(),
            watch: Condvar::new(),
        }))
    }

    /// Run `job` on a pool thread: an idle one; a new one if all are busy and fewer than the
    /// eager count run; else the first to become free, or one the watcher starts if none
    /// does within [`GRACE`].
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = lock(&self.0.state);
        state.jobs.push_back((Instant::now(), Box::new(job)));
        if state.short(self.0.max) {
            if state.threads < self.0.eager {
                // On failure the job waits for a busy thread, as past the bound.
                let _ = start_worker(&self.0, &mut state);
            } else if state.watching {
                // A watcher that watches a backlog wakes by itself when the oldest is due.
                if state.watcher_idle {
                    self.0.watch.notify_one();
                }
            } else {
                start_watcher(&self.0, &mut state);
            }
        }
        drop(state);
        self.0.work.notify_one();
    }
}

/// Start a worker thread (counted before it runs); false if the system refused one.
fn start_worker(shared: &Arc<Shared>, state: &mut State) -> bool {
    state.threads += 1;
    let pool = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("tftp-io".into())
        .spawn(move || work(&pool));
    if let Err(e) = spawned {
        state.threads -= 1;
        tracing::warn!(error = %e, threads = state.threads, "cannot start an I/O thread");
        return false;
    }
    true
}

/// Start the watcher thread. If that fails, a worker, so that the job is not left waiting.
fn start_watcher(shared: &Arc<Shared>, state: &mut State) {
    state.watching = true;
    let pool = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("tftp-io-watch".into())
        .spawn(move || watch(&pool));
    if spawned.is_err() {
        state.watching = false;
        let _ = start_worker(shared, state);
    }
}

fn work(shared: &Shared) {
    let me = thread::current().id();
    loop {
        let mut state = lock(&shared.state);
        // The job this thread ran last (if any) is done.
        if let Some(i) = state.busy.iter().position(|&(w, _)| w == me) {
            state.busy.swap_remove(i);
        }
        let job = loop {
            if let Some((_, job)) = state.jobs.pop_front() {
                state.busy.push((me, Instant::now()));
                break job;
            }
            state.idle += 1;
            let (s, waited) = shared
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(|p| p.into_inner());
            state = s;
            state.idle -= 1;
            if waited.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        };
        drop(state);
        // Jobs catch their own panics (see `Jobs::run`); this keeps the thread count right
        // if one slips through.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// The watcher: while jobs wait with no thread free, start a worker each time the oldest has
/// waited [`GRACE`] and fewer than [`eager`] threads are free of a stalled job; exit after
/// [`IDLE`] with nothing to watch.
fn watch(shared: &Arc<Shared>) {
    let mut state = lock(&shared.state);
    loop {
        let wait = if !state.short(shared.max) {
            IDLE
        } else {
            let age = state
                .jobs
                .front()
                .map_or(Duration::ZERO, |(at, _)| at.elapsed());
            let (stalled, next_stall) = stalled(&state.busy);
            if age < GRACE {
                GRACE - age
            } else if state.threads.saturating_sub(stalled) >= shared.eager {
                // The queue is long, not stuck: the threads there are drain it. Look again
                // when the youngest job in progress would count as stalled.
                next_stall
            } else if start_worker(shared, &mut state) {
                shared.work.notify_one();
                GRACE
            } else {
                // Out of threads (the failure is logged): try again later, not every GRACE.
                GRACE * 100
            }
        };
        state.watcher_idle = wait == IDLE;
        let (s, waited) = shared
            .watch
            .wait_timeout(state, wait)
            .unwrap_or_else(|p| p.into_inner());
        state = s;
        state.watcher_idle = false;
        if wait == IDLE && waited.timed_out() && !state.short(shared.max) {
            state.watching = false;
            return;
        }
    }
}

/// How many of the `busy` workers' jobs have run [`STALLED`] or longer, and how long until the
/// next of the others would have (at most [`STALLED`]).
fn stalled(busy: &[(thread::ThreadId, Instant)]) -> (usize, Duration) {
    let mut count = 0;
    let mut next = STALLED;
    for (_, started) in busy {
        let ran = started.elapsed();
        if ran >= STALLED {
            count += 1;
        } else {
            next = next.min(STALLED - ran);
        }
    }
    (count, next.max(Duration::from_micros(100)))
}

/// What a pool job hands back to its loop.
pub(crate) enum Done {
    /// The handler's answer to the session's request.
    Answer(Result<Response, HandlerError>),
    /// A chunk read from the session's source.
    Chunk(Chunk),
    /// A chunk written to the session's sink (and with the last one, the upload completed).
    Written(Written),
}

/// A message to an event loop.
pub(crate) enum Msg {
    /// A pool job of session `key` is done.
    Done(u64, Done),
    /// Serve this accepted request on the receiving loop (multi-port mode, sessions spread
    /// over the loops).
    Start(Box<crate::event_loop::Accepted>),
    /// A new request from this client port was accepted: it replaces the port's session
    /// (see [`tftp_server::admission`]), wherever that runs.
    Replaced(std::net::SocketAddr),
}

/// Where an event loop receives its messages.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    pub(crate) tx: Sender<Msg>,
    pub(crate) waker: Arc<Waker>,
}

impl Inbox {
    /// Deliver `msg` and wake the loop. Returns it if the loop is gone.
    pub(crate) fn send(&self, msg: Msg) -> Result<(), Msg> {
        self.tx.send(msg).map_err(|e| e.0)?;
        self.waker.wake();
        Ok(())
    }
}

/// Pool jobs of one session, reporting to its loop.
pub(crate) struct Jobs<'a> {
    pub(crate) pool: &'a Pool,
    pub(crate) inbox: &'a Inbox,
    pub(crate) key: u64,
}

impl Jobs<'_> {
    /// Run `f` on the pool and send `done(result)` to the loop; a panic in `f` comes back as
    /// `Err(_)`, which the session answers with ERROR 0 "Server error".
    pub(crate) fn run<T: 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
        done: fn(thread::Result<T>) -> Done,
    ) {
        let (inbox, key) = (self.inbox.clone(), self.key);
        self.pool.spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            // If the loop is gone, what the job returns is dropped here, off any loop.
            let _ = inbox.send(Msg::Done(key, done(result)));
        });
    }

    /// Ask the handler about `request` on the pool.
    pub(crate) fn ask<H: crate::Handler>(&self, handler: &Arc<H>, request: &Request) {
        let (handler, request) = (Arc::clone(handler), request.clone());
        let ask = move || match request.kind {
            tftp_proto::RequestKind::Read => handler.read(&request).map(|r| r.0),
            tftp_proto::RequestKind::Write => handler.write(&request).map(|r| r.0),
        };
        self.run(ask, |r| {
            Done::Answer(r.unwrap_or_else(|_| Err(server_error())))
        });
    }
}

/// What a panicking handler, reader or writer costs its request.
pub(crate) fn server_error() -> HandlerError {
    HandlerError::new(ErrorCode::NOT_DEFINED, "Server error")
}

/// Drop `value` on the pool: dropping a reader or writer may block (closing a connection).
pub(crate) fn drop_on(pool: &Pool, value: impl Send + 'static) {
    pool.spawn(move || drop(value));
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::mpsc;

    use super::*;

    /// The threads that ran `jobs` jobs of `each` on `pool`, all queued at once.
    fn burst(pool: &Pool, jobs: usize, each: Duration) -> HashSet<thread::ThreadId> {
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs {
            let tx = tx.clone();
            pool.spawn(move || {
                thread::sleep(each);
                let _ = tx.send(thread::current().id());
            });
        }
        drop(tx);
        rx.iter().collect()
    }

    #[test]
    fn a_burst_of_short_jobs_does_not_start_a_thread_each() {
        // 400 jobs of 0.5 ms at once, bound 512: the pool that started a thread for each job
        // queued behind busy ones ran them on 128 threads (2 vCPUs), the one that started
        // one more each time the oldest queued job had waited GRACE on 19; the eager threads
        // drain them now, for no job stalls.
        let pool = Pool::new(512);
        let threads = burst(&pool, 400, Duration::from_micros(500));
        assert!(
            threads.len() <= pool.0.eager + 4,
            "{} threads ran 400 short jobs ({} eager)",
            threads.len(),
            pool.0.eager
        );
    }

    #[test]
    fn a_stalled_job_gets_one_thread_in_its_place() {
        // One job blocks until released, behind it 400 short ones: one thread starts for the
        // stalled one, not one for every GRACE the queue is long.
        let pool = Pool::new(512);
        let (release, stall) = mpsc::channel::<()>();
        let (started, starts) = mpsc::channel();
        pool.spawn(move || {
            let _ = started.send(());
            let _ = stall.recv();
        });
        (starts.recv_timeout(Duration::from_secs(5))).expect("the stalled job started");
        let threads = burst(&pool, 400, Duration::from_micros(500));
        drop(release);
        assert!(
            threads.len() <= pool.0.eager + 4,
            "{} threads ran 400 short jobs beside a stalled one ({} eager)",
            threads.len(),
            pool.0.eager
        );
    }

    /// Stall `stalled` jobs, then check that one more still runs; release the stalled ones.
    fn behind_stalled(pool: &Pool, stalled: usize) {
        let (release, stall) = mpsc::channel::<()>();
        let stall = Arc::new(Mutex::new(stall));
        let (started, starts) = mpsc::channel();
        for _ in 0..stalled {
            let (stall, started) = (Arc::clone(&stall), started.clone());
            pool.spawn(move || {
                let _ = started.send(());
                let _ = lock(&stall).recv();
            });
        }
        for _ in 0..stalled {
            (starts.recv_timeout(Duration::from_secs(5))).expect("a stalled job started");
        }
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || {
            let _ = tx.send(());
        });
        // Well within the watcher's IDLE wait (10 s), so a watcher that is not woken fails.
        (rx.recv_timeout(Duration::from_secs(5))).expect("a job behind stalled ones ran");
        drop(release);
    }

    #[test]
    fn stalled_jobs_do_not_hold_up_the_others() {
        // Every eager thread and then some blocked: the next job still runs, on a thread the
        // watcher starts; and again once the watcher has nothing left to watch and waits.
        let pool = Pool::new(512);
        behind_stalled(&pool, pool.0.eager + 3);
        thread::sleep(GRACE * 10);
        let busy = lock(&pool.0.state).threads;
        behind_stalled(&pool, busy + 2);
    }

    #[test]
    fn the_bound_holds() {
        // Past the bound, jobs wait for a thread instead of starting one.
        let pool = Pool::new(2);
        let threads = burst(&pool, 20, Duration::from_millis(5));
        assert!(
            threads.len() <= 2,
            "{} threads with a bound of 2",
            threads.len()
        );
    }
}
