//! Readiness of many sockets on one thread: epoll, level-triggered, plus an eventfd that other
//! threads write to wake the loop (the I/O pool's results, the shutdown).
//!
//! Level-triggered, so a readable socket costs one `recv` per datagram: nothing is re-armed
//! and no read runs until `EAGAIN`. Built on `rustix::event::epoll` (the backend of the
//! `polling` crate) because its registration is safe (`AsFd`), where `polling` 3's `add` is
//! `unsafe` (this crate forbids unsafe code) and `mio` is edge-triggered only.
//!
//! A socket the loop also *sends* much on (a single-port listener: every transfer's DATA
//! leaves through it; a lone transfer's own socket, whose ACKs the loop reads with blocking
//! receives) is better not registered with epoll at all, but waited on with `poll(2)`
//! together with the epoll instance ([`Poller::wait`]'s `polled`). An epoll registration is an
//! entry on the socket's wait queue for as long as it lasts, and Linux wakes that queue
//! whenever a sent datagram's memory is given back (`sock_wfree` → `sk_write_space`, under the
//! queue's spinlock with interrupts off, then epoll's callback under its own lock, which finds
//! no `EPOLLOUT` interest and returns) and whenever a datagram arrives: two lock round trips
//! a packet. `poll(2)` puts its entries on the queue only while it sleeps, when the loop sends
//! nothing, and takes them off when it returns, so a busy loop's packets find the queue empty
//! — as dnsmasq's (`poll`) and a blocking `recvmmsg` loop's (`benches`' floor-single) do. Measured
//! at 10,000 clients, single-port: the `sock_wfree` wake-ups were 3.7% of the server's CPU
//! samples, where the floor had none; a lone lock-step transfer at blksize 512 (pinned) spent
//! ×0.984 of the CPU per MB out of epoll.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, epoll};
use smallvec::SmallVec;

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
    /// the ready sources in `keys` (the waker's is [`WAKER`]; it is reset here). `polled` are
    /// sources not registered with epoll, each with its key, waited on with `poll(2)` together
    /// with the epoll instance (see the module's documentation); their keys come first.
    pub(crate) fn wait(
        &self,
        events: &mut Events,
        keys: &mut Vec<u64>,
        polled: &[(BorrowedFd<'_>, u64)],
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        keys.clear();
        // Milliseconds, rounded up: waking before the deadline only costs another wait.
        let timeout = timeout.map(|t| {
            let ms = t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i64;
            rustix::event::Timespec {
                tv_sec: ms / 1000,
                tv_nsec: (ms % 1000) * 1_000_000,
            }
        });
        let epoll_timeout = if polled.is_empty() {
            timeout
        } else {
            let mut fds: SmallVec<[PollFd<'_>; 8]> = SmallVec::new();
            fds.push(PollFd::new(&self.epoll, PollFlags::IN));
            for (fd, _) in polled {
                fds.push(PollFd::from_borrowed_fd(*fd, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            // Any event counts (an error or hang-up too): the reader finds out what it is,
            // as it does for epoll's, which reports those unasked.
            for (fd, (_, key)) in fds[1..].iter().zip(polled) {
                if !fd.revents().is_empty() {
                    keys.push(*key);
                }
            }
            if fds[0].revents().is_empty() {
                return Ok(());
            }
            // Something registered with epoll is ready: collect it without waiting.
            Some(rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            })
        };
        let events = &mut events.0;
        let n = match epoll::wait(&self.epoll, &mut events[..], epoll_timeout.as_ref()) {
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
