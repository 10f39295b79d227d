//! The I/O pool: std threads, spawned on demand up to a bound and stopped when idle, that run
//! the calls which may block (handlers, source reads, sink writes, upload completions). Each
//! job's result goes back to the event loop that owns the session, through its [`Inbox`].

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use tftp_proto::ErrorCode;
use tftp_server::{HandlerError, Request};

use crate::data::{Chunk, Written};
use crate::handler::Response;
use crate::reactor::Waker;

/// How long an idle pool thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// A bounded pool of threads.
#[derive(Debug, Clone)]
pub(crate) struct Pool(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    max: usize,
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
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
        Pool(Arc::new(Shared {
            max: max.max(1),
            state: Mutex::default(),
            work: Condvar::new(),
        }))
    }

    /// Run `job` on a pool thread: an idle one, a new one if all are busy and the bound
    /// allows, or else the first to become free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = lock(&self.0.state);
        state.jobs.push_back(Box::new(job));
        if state.jobs.len() > state.idle && state.threads < self.0.max {
            state.threads += 1;
            let shared = Arc::clone(&self.0);
            let spawned = thread::Builder::new()
                .name("tftp-io".into())
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                state.threads -= 1;
                tracing::warn!(error = %e, threads = state.threads, "cannot start an I/O thread");
            }
        }
        drop(state);
        self.0.work.notify_one();
    }
}

fn work(shared: &Shared) {
    loop {
        let mut state = lock(&shared.state);
        let job = loop {
            if let Some(job) = state.jobs.pop_front() {
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
