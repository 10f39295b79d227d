//! Rate-limited log lines: at most one line per reason every [`LogLimit::PERIOD`], saying how
//! many were left out, so that a flood of refusals does not flood the log too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one log line per reason every [`LogLimit::PERIOD`]; the next one says how many
/// were suppressed in between.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tftp_server::log_limit::LogLimit;
/// let limit = LogLimit::default();
/// let t0 = Instant::now();
/// let mut lines = Vec::new();
/// for ms in [0, 10, 20, 10_500] {
///     limit.note(t0 + Duration::from_millis(ms), "a directory", |suppressed| {
///         lines.push(suppressed)
///     });
/// }
/// assert_eq!(lines, [0, 2]);
/// ```
#[derive(Debug, Default)]
pub struct LogLimit {
    state: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimit {
    /// The shortest time between two lines for one reason.
    pub const PERIOD: Duration = Duration::from_secs(10);

    /// Call `log` with the number of lines suppressed since the last one for `reason`, if
    /// one is due at `now`; otherwise count this one as suppressed.
    pub fn note(&self, now: Instant, reason: &'static str, log: impl FnOnce(u64)) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.get_mut(reason) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < Self::PERIOD => {
                *suppressed += 1;
            }
            Some((last, suppressed)) => {
                let n = std::mem::take(suppressed);
                *last = now;
                drop(s);
                log(n);
            }
            None => {
                s.insert(reason, (now, 0));
                drop(s);
                log(0);
            }
        }
    }
}
