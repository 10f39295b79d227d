//! A server-wide budget for window memory.
//!
//! Each session's window ring takes `windowsize × (4 + blksize)` bytes once data flows: 4 MiB
//! at blksize 65464 and windowsize 64. Option limits bound one session; this bounds them all,
//! so a crowd of clients asking for the largest windows cannot take the host's memory. A
//! session whose window does not fit is aborted with "Server busy" when its data would start.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Window memory shared by the sessions of one server.
#[derive(Debug)]
pub struct WindowBudget {
    limit: usize,
    used: AtomicUsize,
}

/// A session's share of a [`WindowBudget`], given back on drop.
#[derive(Debug)]
#[must_use = "the share is given back when the reservation is dropped"]
pub struct Reservation<'a> {
    budget: &'a WindowBudget,
    bytes: usize,
}

impl WindowBudget {
    /// A budget of `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        WindowBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Take `bytes`, or `None` if they do not fit.
    pub fn reserve(&self, bytes: usize) -> Option<Reservation<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()
            .map(|_| Reservation {
                budget: self,
                bytes,
            })
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_or_are_refused_and_come_back() {
        let budget = WindowBudget::new(10);
        let a = budget.reserve(6).unwrap();
        assert!(budget.reserve(5).is_none());
        let b = budget.reserve(4).unwrap();
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 4);
        assert!(budget.reserve(6).is_some());
        drop(b);
        assert_eq!(budget.used(), 0);
        assert!(budget.reserve(usize::MAX).is_none());
    }
}
