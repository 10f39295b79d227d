//! Lines written on a thread of their own, at most a bound of them waiting: what tftpd's log
//! (stderr) and its session log go through, so that an output that stops taking lines (a pipe
//! whose reader stalled, a hung network file system) costs lines, counted, and never a
//! transfer (dnsmasq's `--log-async`).
//!
//! The queue holds memory for the lines in it only: a std channel, which allocates its slots
//! 31 at a time as lines come and frees them as the thread takes them, with the bound kept by a
//! count beside it. A bounded channel (`sync_channel`, crossbeam's `bounded`, tracing-appender's
//! writer) allocates and writes every slot when it is made: 4,096 slots of 32 bytes, 128 KiB
//! resident from start to end for each of tftpd's two logs, most of which never hold a line.
//!
//! ```
//! use std::time::Duration;
//! use tftpd::line_queue::LineQueue;
//!
//! let queue = LineQueue::spawn("my-log", std::io::stdout(), 1024, |_error| {})?;
//! queue.push(b"one line\n".to_vec()).expect("room for it");
//! assert_eq!(queue.dropped(), 0);
//! // Written in order; finish() waits for the thread to write what is queued.
//! assert!(queue.finish(Duration::from_secs(2)));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The sending side of a queue of lines for a writer thread: cheap to clone, shared by
/// reference between threads. See the [module](self).
#[derive(Debug, Clone)]
pub struct LineQueue {
    lines: Sender<Msg>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
enum Msg {
    Line(Vec<u8>),
    /// Write what came before, flush, and stop.
    Finish,
}

#[derive(Debug)]
struct Shared {
    /// Lines sent and not yet taken by the thread.
    queued: AtomicUsize,
    limit: usize,
    dropped: AtomicU64,
    /// Signalled (or hung up) by the thread when it stops.
    done: Mutex<Receiver<()>>,
}

/// Why [`LineQueue::push`] dropped a line (counted in [`LineQueue::dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The queue holds its limit of lines: the output is not taking them.
    Full,
    /// The writer thread has stopped ([`LineQueue::finish`], or it panicked).
    Closed,
}

impl LineQueue {
    /// Starts thread `name` writing the lines pushed, in order, to `out`, flushing whenever
    /// none are waiting; at most `limit` lines wait. `on_error` hears of each failed write or
    /// flush (on the writer thread: it must not push to this queue and wait).
    pub fn spawn<W, E>(name: &str, mut out: W, limit: usize, on_error: E) -> io::Result<Self>
    where
        W: Write + Send + 'static,
        E: Fn(io::Error) + Send + 'static,
    {
        let (lines, queued) = mpsc::channel();
        let (finished, done) = mpsc::channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            limit,
            dropped: AtomicU64::new(0),
            done: Mutex::new(done),
        });
        let counts = Arc::clone(&shared);
        thread::Builder::new().name(name.into()).spawn(move || {
            write_lines(&mut out, &queued, &counts, &on_error);
            // Hung up before saying so: once finish() returns, a push finds no thread.
            drop(queued);
            let _ = finished.send(());
        })?;
        Ok(LineQueue { lines, shared })
    }

    /// Queues `line` for the thread and returns at once; drops it (counted) when `limit`
    /// lines are waiting already or the thread has stopped.
    pub fn push(&self, line: Vec<u8>) -> Result<(), Dropped> {
        let shared = &self.shared;
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= shared.limit {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped::Full);
        }
        if self.lines.send(Msg::Line(line)).is_err() {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped::Closed);
        }
        Ok(())
    }

    /// Lines dropped so far, by every clone of this queue.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The most lines that wait.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Tells the thread to write what is queued (lines pushed after this are dropped), flush
    /// and stop, and waits up to `within` for it: true if it has stopped (at once, once it
    /// has).
    pub fn finish(&self, within: Duration) -> bool {
        let _ = self.lines.send(Msg::Finish);
        let done = match self.shared.done.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match done.recv_timeout(within) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

/// The writer thread: every line in turn, a flush whenever the queue runs empty, until
/// [`Msg::Finish`] or every sender is gone.
fn write_lines(
    out: &mut impl Write,
    queued: &Receiver<Msg>,
    shared: &Shared,
    on_error: &impl Fn(io::Error),
) {
    while let Ok(first) = queued.recv() {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(line) => {
                    shared.queued.fetch_sub(1, Ordering::AcqRel);
                    if let Err(e) = out.write_all(&line) {
                        on_error(e);
                    }
                }
                Msg::Finish => {
                    if let Err(e) = out.flush() {
                        on_error(e);
                    }
                    // Lines pushed since finish() are dropped, and counted.
                    for msg in queued.try_iter() {
                        if let Msg::Line(_) = msg {
                            shared.queued.fetch_sub(1, Ordering::AcqRel);
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    return;
                }
            }
            next = queued.try_recv().ok();
        }
        if let Err(e) = out.flush() {
            on_error(e);
        }
    }
}

/// A log writer for `tracing-subscriber`'s `fmt` layer, which formats each event into one
/// buffer and writes it whole: one line a push, dropped (counted) rather than waited for.
impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineQueue {
    type Writer = &'a LineQueue;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Write for &LineQueue {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A dropped line is counted, never an error: the event's caller must go on.
        let _ = self.push(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::sync::Condvar;
    use std::time::Instant;

    /// Takes nothing until opened, then keeps what it is given.
    #[derive(Clone, Default)]
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        into: Arc<Mutex<Vec<u8>>>,
    }

    impl Gate {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.into.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_costs_lines_past_the_limit_never_a_wait() {
        let gate = Gate::default();
        let queue = LineQueue::spawn("test-lines", gate.clone(), 8, |_| {}).unwrap();
        let t0 = Instant::now();
        let results: Vec<_> = (0..20)
            .map(|i| queue.push(format!("{i}\n").into_bytes()))
            .collect();
        assert!(t0.elapsed() < Duration::from_secs(5));
        // The thread holds one line (blocked writing it) or none yet; 8 wait.
        let queued = results.iter().filter(|r| r.is_ok()).count();
        assert!((8..=9).contains(&queued), "{queued} queued");
        assert!(results[queued..].iter().all(|r| *r == Err(Dropped::Full)));
        assert_eq!(queue.dropped(), (20 - queued) as u64);
        assert!(
            !queue.finish(Duration::from_millis(50)),
            "finished while blocked"
        );
        gate.open();
        assert!(queue.finish(Duration::from_secs(5)));
        let text = String::from_utf8(gate.into.lock().unwrap().clone()).unwrap();
        let expected: String = (0..queued).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected, "written in order, nothing after a drop");
        assert_eq!(queue.push(b"late\n".to_vec()), Err(Dropped::Closed));
    }

    #[test]
    fn the_limit_counts_lines_waiting_not_lines_ever_sent() {
        let gate = Gate::default();
        gate.open();
        let queue = LineQueue::spawn("test-lines", gate.clone(), 4, |_| {}).unwrap();
        for i in 0..1000 {
            // Never more than 4 waiting when the thread keeps up: wait for it.
            while queue.shared.queued.load(Ordering::Acquire) >= 4 {
                thread::yield_now();
            }
            queue.push(format!("{i}\n").into_bytes()).unwrap();
        }
        assert!(queue.finish(Duration::from_secs(5)));
        assert_eq!(queue.dropped(), 0);
        assert_eq!(
            gate.into.lock().unwrap().len(),
            (0..1000)
                .map(|i: i32| i.to_string().len() + 1)
                .sum::<usize>()
        );
    }

    #[test]
    fn write_errors_are_reported_and_the_thread_goes_on() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let errors = Arc::new(Mutex::new(0));
        let seen = Arc::clone(&errors);
        let queue = LineQueue::spawn("test-lines", Failing, 8, move |_| {
            *seen.lock().unwrap() += 1;
        })
        .unwrap();
        queue.push(b"a\n".to_vec()).unwrap();
        queue.push(b"b\n".to_vec()).unwrap();
        assert!(queue.finish(Duration::from_secs(5)));
        assert_eq!(*errors.lock().unwrap(), 2);
    }

    #[test]
    fn nothing_is_allocated_for_an_empty_queue() {
        // A bounded channel of this limit would allocate limit × 32 bytes (half the address
        // space) when made, and abort.
        let limit = usize::MAX / 64;
        let queue = LineQueue::spawn("test-lines", io::sink(), limit, |_| {}).unwrap();
        queue.push(b"x\n".to_vec()).unwrap();
        assert!(queue.finish(Duration::from_secs(5)));
        assert_eq!(queue.limit(), limit);
    }
}
