//! A one-shot broadcast between a listener and its sessions (replaced, stop, kill): a flag
//! anyone can check, and with the `async` feature an event to await.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A one-shot broadcast (stop accepting, abort sessions), fired when its [`Trigger`] is
/// dropped. Waiting for it allocates nothing, so a session can wait on it for every packet.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: AtomicBool,
    #[cfg(feature = "async")]
    pub(crate) event: event_listener::Event,
}

impl Signal {
    /// A signal and what fires it.
    pub(crate) fn new() -> (Trigger, Arc<Signal>) {
        let signal = Arc::new(Signal::default());
        (Trigger(Arc::clone(&signal)), signal)
    }

    /// Whether it has fired.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Complete once fired.
    #[cfg(feature = "async")]
    pub(crate) async fn fired(&self) {
        while !self.fired.load(Ordering::SeqCst) {
            event_listener::listener!(self.event => listener);
            if self.fired.load(Ordering::SeqCst) {
                return;
            }
            listener.await;
        }
    }
}

/// A session's standing registration with a [`Signal`] (see [`Fired`]).
#[cfg(feature = "async")]
pub(crate) struct Listening {
    listener: event_listener::EventListener,
    /// The waker `listener` was last polled with.
    waker: std::task::Waker,
}

/// Completes once `signal` (if any) has fired; `listening` keeps the registration across
/// waits.
///
/// A session waits for its kill and replacement signals with every datagram. Polling an
/// [`event_listener::EventListener`] takes its event's lock (the kill signal's is shared by
/// every session of the server, on every thread), so it is polled only to register a new
/// waker: while the registered waker would wake this task, the flag alone says whether the
/// signal fired. That is enough because [`Trigger`] sets the flag before it notifies: a
/// signal that fires after the check wakes the registered waker, and the task looks again.
#[cfg(feature = "async")]
pub(crate) struct Fired<'a> {
    pub(crate) signal: &'a Option<Arc<Signal>>,
    pub(crate) listening: &'a mut Option<Listening>,
}

#[cfg(feature = "async")]
impl std::future::Future for Fired<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let Some(signal) = self.signal else {
            return Poll::Pending;
        };
        loop {
            if signal.is_fired() {
                *self.listening = None;
                return Poll::Ready(());
            }
            let listening = self.listening.get_or_insert_with(|| Listening {
                listener: signal.event.listen(),
                waker: std::task::Waker::noop().clone(),
            });
            if listening.waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
            match std::pin::Pin::new(&mut listening.listener).poll(cx) {
                Poll::Ready(()) => *self.listening = None,
                Poll::Pending => {
                    listening.waker.clone_from(cx.waker());
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Fires its [`Signal`] when dropped.
#[derive(Debug)]
pub(crate) struct Trigger(Arc<Signal>);

impl Trigger {
    /// The signal this fires.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn signal(&self) -> Arc<Signal> {
        Arc::clone(&self.0)
    }
}

impl Drop for Trigger {
    fn drop(&mut self) {
        self.0.fired.store(true, Ordering::SeqCst);
        #[cfg(feature = "async")]
        self.0.event.notify(usize::MAX);
    }
}

#[cfg(all(test, feature = "async"))]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn woken(count: &Count) -> usize {
        count.0.load(Ordering::SeqCst)
    }

    #[test]
    fn a_standing_registration_is_woken_when_the_signal_fires() {
        let (trigger, signal) = Signal::new();
        let signal = Some(signal);
        let mut listening = None;
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (wa, wb) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
        // Many waits with the same task: registered once, then the flag says "not yet".
        for _ in 0..3 {
            let fired = pin!(Fired {
                signal: &signal,
                listening: &mut listening
            });
            assert_eq!(fired.poll(&mut Context::from_waker(&wa)), Poll::Pending);
        }
        // Another task takes the registration over.
        let fired = pin!(Fired {
            signal: &signal,
            listening: &mut listening
        });
        assert_eq!(fired.poll(&mut Context::from_waker(&wb)), Poll::Pending);
        drop(trigger);
        assert_eq!((woken(&a), woken(&b)), (0, 1));
        let fired = pin!(Fired {
            signal: &signal,
            listening: &mut listening
        });
        assert_eq!(fired.poll(&mut Context::from_waker(&wb)), Poll::Ready(()));
        assert!(listening.is_none());
    }

    #[test]
    fn no_signal_never_fires() {
        let mut listening = None;
        let fired = pin!(Fired {
            signal: &None,
            listening: &mut listening
        });
        assert_eq!(
            fired.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Pending
        );
    }
}
