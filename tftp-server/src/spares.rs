//! Buffers a thread keeps for its own next use, most recently given back first: no lock, and
//! a thread's spares go with it. One pool per kind of buffer (`file`'s chunks, `ring`'s
//! window rings), each a `thread_local!` of its own.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread's spare buffers of one kind.
pub(crate) type Pool = LocalKey<RefCell<Vec<Vec<u8>>>>;

/// The spare given back last, if this thread has one.
pub(crate) fn take(pool: &'static Pool) -> Option<Vec<u8>> {
    pool.try_with(|spare| spare.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
}

/// Keep `bytes` for this thread's next [`take`], if it has fewer than `max` spares.
pub(crate) fn keep(pool: &'static Pool, bytes: Vec<u8>, max: usize) {
    // Not at all while the thread's storage is being torn down.
    let _ = pool.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < max {
                spare.push(bytes);
            }
        }
    });
}
