//! The I/O thread pool: runs handler calls, source reads and sink writes off the event loop,
//! and posts each result back to the loop that asked, waking it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use mio::Waker;

use crate::data::Done;

/// How long an idle pool thread waits for work before it exits.
const IDLE: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send>;

/// Where a job's result goes: an event loop's queue (`None`: the job panicked), and its waker.
#[derive(Clone)]
pub(crate) struct Mailbox {
    pub(crate) tx: Sender<(usize, Option<Done>)>,
    pub(crate) waker: Arc<Waker>,
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
}

impl Pool {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Pool {
            state: Mutex::default(),
            work: Condvar::new(),
            max: max.max(1),
        })
    }

    /// Run `job` for session `id` and post its result to `mailbox`.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        mailbox: &Mailbox,
        id: usize,
        job: impl FnOnce() -> Done + Send + 'static,
    ) {
        let mailbox = mailbox.clone();
        self.execute(move || {
            let result = catch_unwind(AssertUnwindSafe(job)).ok();
            // The loop may be gone (shutdown): then nobody wants the result.
            if mailbox.tx.send((id, result)).is_ok() {
                let _ = mailbox.waker.wake();
            }
        });
    }

    /// Run `job`, with no result (e.g. dropping a reader whose `Drop` may block).
    pub(crate) fn execute(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) {
        let mut s = self.lock();
        s.jobs.push_back(Box::new(job));
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
                // A panicking job must not take the thread's count with it.
                let _ = catch_unwind(AssertUnwindSafe(job));
                s = self.lock();
                continue;
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

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
