//! A timer queue for many sessions on one thread.
//!
//! A loop that drives thousands of sessions must not scan every [`crate::Session::poll_timeout`]
//! to find the next deadline. [`Timers`] keeps them in a binary heap: after draining a session,
//! [`Timers::schedule`] its `poll_timeout()`; wait until [`Timers::next_deadline`]; then
//! [`Timers::expired`] yields the sessions whose deadline has passed.
//!
//! Entries are never removed early: a session whose deadline moved (it got a datagram and was
//! drained and scheduled again) still has its old entry, which fires early. That is harmless,
//! because [`crate::Session::handle_timeout`] does nothing before the session's real deadline,
//! and cheap: each drain adds at most one entry. To keep the heap from growing with stale
//! entries, schedule only when `poll_timeout()` changed (the caller remembers the last one).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tftp_proto::timers::Timers;
//!
//! let start = Instant::now();
//! let mut timers = Timers::new();
//! timers.schedule(start + Duration::from_secs(2), "b");
//! timers.schedule(start + Duration::from_secs(1), "a");
//! assert_eq!(timers.next_deadline(), Some(start + Duration::from_secs(1)));
//! let due: Vec<_> = timers.expired(start + Duration::from_millis(1500)).collect();
//! assert_eq!(due, ["a"]);
//! assert_eq!(timers.len(), 1);
//! ```

use alloc::collections::BinaryHeap;
use core::cmp::Reverse;

/// Deadlines of type `T` (e.g. `std::time::Instant`) for keys `K` (e.g. a session handle).
#[derive(Debug, Clone)]
pub struct Timers<T: Ord, K: Ord> {
    heap: BinaryHeap<Reverse<(T, K)>>,
}

impl<T: Ord, K: Ord> Default for Timers<T, K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy, K: Ord> Timers<T, K> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wake `key` at `deadline` (for a session: `if let Some(d) = session.poll_timeout()`).
    pub fn schedule(&mut self, deadline: T, key: K) {
        self.heap.push(Reverse((deadline, key)));
    }

    /// The earliest deadline, if any: wait until then (or for a datagram).
    pub fn next_deadline(&self) -> Option<T> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The keys whose deadline is at or before `now`, earliest first, removed from the queue.
    /// Call each one's `handle_timeout(now)` and drain it (a stale entry is a no-op for it).
    pub fn expired(&mut self, now: T) -> impl Iterator<Item = K> + '_ {
        core::iter::from_fn(move || {
            let Reverse((t, _)) = self.heap.peek()?;
            if *t > now {
                return None;
            }
            self.heap.pop().map(|Reverse((_, k))| k)
        })
    }

    /// Entries queued (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_come_out_in_deadline_order_and_only_once() {
        let mut t = Timers::new();
        for (deadline, key) in [(5u64, 'e'), (1, 'a'), (3, 'c'), (2, 'b'), (4, 'd')] {
            t.schedule(deadline, key);
        }
        assert_eq!(t.expired(0).count(), 0);
        assert_eq!(t.expired(3).collect::<Vec<_>>(), ['a', 'b', 'c']);
        assert_eq!(t.expired(3).count(), 0);
        assert_eq!(t.next_deadline(), Some(4));
        assert_eq!(t.expired(10).collect::<Vec<_>>(), ['d', 'e']);
        assert!(t.is_empty());
    }
}
