//! A global allocator that counts the allocations of each thread (the test harness's own
//! threads allocate too), for the tests that a steady-state transfer allocates nothing per
//! packet. Shared by `tftp-proto/tests/alloc.rs`, `tftp-tokio/tests/alloc.rs` and
//! `tftp-server/tests/batch_alloc.rs`, which include this file with `#[path]`.

use std::alloc::{GlobalAlloc, Layout, System};

struct Counting;

thread_local! {
    /// Allocations made by this thread: the test harness's own threads allocate too.
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Bytes this thread allocated and has not freed (frees of other threads' blocks count
    /// against the thread that frees them).
    static LIVE_BYTES: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Bytes allocated by the calling thread and not yet freed.
#[allow(dead_code)]
pub fn live_bytes() -> i64 {
    LIVE_BYTES.with(|a| a.get())
}

fn add_live(delta: i64) {
    let _ = LIVE_BYTES.try_with(|a| a.set(a.get() + delta));
}

/// Allocations made by the calling thread so far.
#[allow(dead_code)]
pub fn allocations() -> u64 {
    ALLOCATIONS.with(|a| a.get())
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        add_live(layout.size() as i64);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        add_live(new_size as i64 - layout.size() as i64);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
