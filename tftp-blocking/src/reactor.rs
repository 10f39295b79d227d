//! Readiness of many sockets on one thread: epoll, level-triggered, plus an eventfd that other
//! threads write to wake the loop (the I/O pool's results, the shutdown).
//!
//! Level-triggered, so a readable socket costs one `recv` per datagram: nothing is re-armed
//! and no read runs until `EAGAIN`. Built on `rustix::event::epoll` (the backend of the
//! `polling` crate) because its registration is safe (`AsFd`), where `polling` 3's `add` is
//! `unsafe` (this crate forbids unsafe code) and `mio` is edge-triggered only.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{EventfdFlags, epoll};

/// The key the waker's readiness is reported under.
pub(crate) const WAKER: u64 = u64::MAX;
/// The most readiness events one wait returns.
pub(crate) const EVENTS: usize = 256;

/// An epoll instance and its waker.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    waker: Arc<Waker>,
}

/// What one [`Poller::wait`] returns: made once by the thread that waits (an epoll event's
/// data may be a pointer, so it stays on that thread), not zeroed again for every wait.
pub(crate) struct Events(Vec<epoll::Event>);

impl Events {
    pub(crate) fn new() -> Self {
        let event = epoll::Event {
            flags: epoll::EventFlags::empty(),
            data: epoll::EventData::new_u64(0),
        };
        Events(vec![event; EVENTS])
    }
}

/// Wakes a [`Poller`] from any thread.
#[derive(Debug)]
pub(crate) struct Waker(OwnedFd);

impl Waker {
    /// Make the poller's next (or current) wait return.
    pub(crate) fn wake(&self) {
        // EAGAIN only if the counter is near overflow: the loop is awake then anyway.
        let _ = rustix::io::write(&self.0, &1u64.to_ne_bytes());
    }
}

impl Poller {
    pub(crate) fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
        let waker = Arc::new(Waker(rustix::event::eventfd(0, flags)?));
        let data = epoll::EventData::new_u64(WAKER);
        epoll::add(&epoll, &waker.0, data, epoll::EventFlags::IN)?;
        Ok(Poller { epoll, waker })
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Report `source`'s readability under `key` until it is closed or deleted.
    pub(crate) fn add(&self, source: impl AsFd, key: u64) -> io::Result<()> {
        let data = epoll::EventData::new_u64(key);
        Ok(epoll::add(
            &self.epoll,
            source,
            data,
            epoll::EventFlags::IN,
        )?)
    }

    /// Stop reporting `source`.
    pub(crate) fn delete(&self, source: impl AsFd) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, source)?)
    }

    /// Wait until a source is ready or `timeout` passes (`None`: no limit); put the keys of
    /// the ready sources in `keys` (the waker's is [`WAKER`]; it is reset here).
    pub(crate) fn wait(
        &self,
        events: &mut Events,
        keys: &mut Vec<u64>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        keys.clear();
        let events = &mut events.0;
        // Milliseconds, rounded up: waking before the deadline only costs another wait.
        let timeout = timeout.map(|t| {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
            rustix::event::Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        let n = match epoll::wait(&self.epoll, &mut events[..], timeout.as_ref()) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for event in &events[..n] {
            let key = event.data.u64();
            if key == WAKER {
                let mut count = [0u8; 8];
                let _ = rustix::io::read(&self.waker.0, &mut count);
            }
            keys.push(key);
        }
        Ok(())
    }
}
