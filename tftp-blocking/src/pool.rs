//! The I/O thread pool: runs handler calls, source reads and sink writes off the event loop,
//! and posts each result back to the loop that asked, waking it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use mio::Waker;

/// How long an idle pool thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// Where a job's result goes: an event loop's queue, and its waker.
pub(crate) struct Mailbox<T> {
    pub(crate) tx: Sender<(usize, Option<T>)>,
    pub(crate) waker: Arc<Waker>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        let (tx, waker) = (self.tx.clone(), Arc::clone(&self.waker));
        Mailbox { tx, waker }
    }
}

/// A pool that grows while every thread is busy, up to `max` threads, and shrinks when idle:
/// a blocked job holds one thread, never the loop nor the other jobs.
pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    max: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    closed: bool,
}

impl Pool {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Pool {
            state: Mutex::default(),
            work: Condvar::new(),
            max: max.max(1),
        })
    }

    /// Run `job` for session `id` and post its result (`None` if it panicked) to `mailbox`.
    pub(crate) fn spawn<T: Send + 'static>(
        self: &Arc<Self>,
        mailbox: &Mailbox<T>,
        id: usize,
        job: impl FnOnce() -> T + Send + 'static,
    ) {
        let mailbox = mailbox.clone();
        let job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job)).ok();
            // The loop may be gone (shutdown): then nobody wants the result.
            if mailbox.tx.send((id, result)).is_ok() {
                let _ = mailbox.waker.wake();
            }
        });
        let mut s = self.lock();
        s.jobs.push_back(job);
        if s.jobs.len() > s.idle && s.threads < self.max {
            let pool = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("tftp-io".into())
                .spawn(move || pool.run());
            match spawned {
                Ok(_) => s.threads += 1,
                Err(e) => tracing::warn!(error = %e, "cannot start an I/O thread"),
            }
        }
        self.work.notify_one();
    }

    fn run(&self) {
        let mut s = self.lock();
        loop {
            if let Some(job) = s.jobs.pop_front() {
                drop(s);
                job();
                s = self.lock();
                continue;
            }
            if s.closed {
                break;
            }
            s.idle += 1;
            let (guard, wait) = match self.work.wait_timeout(s, IDLE) {
                Ok(r) => r,
                Err(poisoned) => poisoned.into_inner(),
            };
            s = guard;
            s.idle -= 1;
            if wait.timed_out() && s.jobs.is_empty() {
                break;
            }
        }
        s.threads -= 1;
    }

    /// Let idle threads exit now; running jobs finish first.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
