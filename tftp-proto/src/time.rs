//! Time as a session sees it: an instant the caller passes in, never read from a clock.
//!
//! A session is generic over its [`Instant`] type. With the `std` feature the default is
//! [`std::time::Instant`], so `ServerSession` and `ClientSession` mean what they always did.
//! Firmware without `std` passes [`Millis`] (a monotonic millisecond count from its tick
//! timer), or its own type implementing [`Instant`], and names it:
//! `ClientSession<Millis>`.
//!
//! Without `std` there is no default: a default that changed with a Cargo feature would make
//! `ClientSession` mean different types depending on what else in the build enables `std`.

use core::fmt;
use core::time::Duration;

/// A point in monotonic time, as the caller's clock reports it.
///
/// Only differences matter: a session compares instants, adds its timeouts to them, and
/// measures round trips between them. The clock must not go backwards. (`Send + Sync`, as any
/// plain value is, so that sessions and the handles they lend move between threads.)
pub trait Instant: Copy + Ord + fmt::Debug + Send + Sync {
    /// `self + duration`, or `None` if that is not representable (then no deadline is set:
    /// a deadline past the end of time never fires).
    fn checked_add(&self, duration: Duration) -> Option<Self>;

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    fn saturating_duration_since(&self, earlier: Self) -> Duration;
}

#[cfg(feature = "std")]
impl Instant for std::time::Instant {
    fn checked_add(&self, duration: Duration) -> Option<Self> {
        std::time::Instant::checked_add(self, duration)
    }

    fn saturating_duration_since(&self, earlier: Self) -> Duration {
        std::time::Instant::saturating_duration_since(self, earlier)
    }
}

/// A monotonic millisecond count: the instant type for firmware, where a tick timer (a
/// SysTick handler, `smoltcp::time::Instant::total_millis`, an RTOS tick) is the clock.
///
/// Durations are rounded up to whole milliseconds when added, so a deadline is never earlier
/// than the session asked for.
///
/// ```
/// use core::time::Duration;
/// use tftp_proto::time::{Instant, Millis};
///
/// let t = Millis(1_000);
/// assert_eq!(t.checked_add(Duration::from_micros(1_500)), Some(Millis(1_002)));
/// assert_eq!(Millis(1_250).saturating_duration_since(t), Duration::from_millis(250));
/// assert_eq!(t.saturating_duration_since(Millis(2_000)), Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Instant for Millis {
    fn checked_add(&self, duration: Duration) -> Option<Self> {
        let whole = u64::try_from(duration.as_millis()).ok()?;
        let ms = if duration.subsec_nanos() % 1_000_000 == 0 {
            whole
        } else {
            whole.checked_add(1)?
        };
        self.0.checked_add(ms).map(Millis)
    }

    fn saturating_duration_since(&self, earlier: Self) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}
