//! Rate-limited log lines: a client must not be able to flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_second` lines a second; the first line let through after some were held back
/// carries how many.
#[derive(Debug)]
pub struct LogLimit {
    per_second: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window: Instant,
    lines: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of `per_second` lines a second.
    pub fn new(per_second: u32) -> Self {
        LogLimit {
            per_second,
            state: Mutex::new(State {
                window: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(lines left out since the last one logged)` if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now.duration_since(s.window) >= Duration::from_secs(1) {
            s.window = now;
            s.lines = 0;
        }
        if s.lines >= self.per_second {
            s.suppressed += 1;
            return None;
        }
        s.lines += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_through_per_second_then_counts() {
        let limit = LogLimit::new(2);
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        std::thread::sleep(Duration::from_millis(1010));
        assert_eq!(limit.allow(), Some(2));
    }
}
