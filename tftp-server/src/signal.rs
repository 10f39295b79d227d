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

/// Fires its [`Signal`] when dropped.
#[derive(Debug)]
pub(crate) struct Trigger(Arc<Signal>);

impl Drop for Trigger {
    fn drop(&mut self) {
        self.0.fired.store(true, Ordering::SeqCst);
        #[cfg(feature = "async")]
        self.0.event.notify(usize::MAX);
    }
}
