//! Buffers a thread keeps for its own next use, most recently given back first: no lock, and
//! a thread's spares go with it. One pool per kind of buffer (`file`'s chunks, `ring`'s
//! window rings), each a `thread_local!` of its own.

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

/// A thread's spare buffers of one kind: the one given back last in a slot of its own, the
/// others in a stack. A session that gives its ring back while it waits and takes one again
/// for its next block (every DATA of every seekable transfer) then costs two swaps of a
/// `Cell`, not two `RefCell` borrows and a `Vec` push and pop.
pub(crate) struct Spares {
    last: Cell<Option<Vec<u8>>>,
    more: RefCell<Vec<Vec<u8>>>,
}

impl Spares {
    pub(crate) const fn new() -> Self {
        Spares {
            last: Cell::new(None),
            more: RefCell::new(Vec::new()),
        }
    }

    /// `f` of each kept buffer, the one given back last first.
    #[cfg(test)]
    pub(crate) fn map<T>(&self, f: impl Fn(&Vec<u8>) -> T) -> Vec<T> {
        let last = self.last.take();
        let mapped = last
            .iter()
            .chain(self.more.borrow().iter().rev())
            .map(f)
            .collect();
        self.last.set(last);
        mapped
    }

    /// How many this thread keeps.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map(|_| ()).len()
    }
}

/// A thread's spares of one kind.
pub(crate) type Pool = LocalKey<Spares>;

/// The spare given back last, if this thread has one.
pub(crate) fn take(pool: &'static Pool) -> Option<Vec<u8>> {
    pool.try_with(|spares| match spares.last.take() {
        Some(bytes) => Some(bytes),
        None => spares.more.try_borrow_mut().ok()?.pop(),
    })
    .ok()
    .flatten()
}

/// Keep `bytes` for this thread's next [`take`]. With `max` spares (at least one) kept
/// already, the one given back before it goes instead: the most recent stay.
pub(crate) fn keep(pool: &'static Pool, bytes: Vec<u8>, max: usize) {
    // Not at all while the thread's storage is being torn down.
    let _ = pool.try_with(|spares| {
        let Some(before) = spares.last.replace(Some(bytes)) else {
            return;
        };
        // The one given back before it joins the others, if there is room.
        if let Ok(mut more) = spares.more.try_borrow_mut() {
            if more.len() + 1 < max {
                more.push(before);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static POOL: Spares = const { Spares::new() };
    }

    #[test]
    fn the_last_given_back_comes_first_and_at_most_max_are_kept() {
        for n in 1..=3u8 {
            keep(&POOL, vec![n], 2);
        }
        assert_eq!(POOL.with(Spares::len), 2);
        assert_eq!(take(&POOL), Some(vec![3]));
        assert_eq!(
            take(&POOL),
            Some(vec![1]),
            "the second made room for the third; the first stayed"
        );
        assert_eq!(take(&POOL), None);
        keep(&POOL, vec![4], 1);
        keep(&POOL, vec![5], 1);
        assert_eq!(POOL.with(Spares::len), 1);
        assert_eq!(take(&POOL), Some(vec![5]));
        assert_eq!(take(&POOL), None);
    }
}
