//! Where a server's sessions keep their window rings: bytes their thread lends.
//!
//! A session whose source can be read again (a file, bytes in memory: see
//! `tftp_proto::Session::set_source_seekable`) needs its ring only from a block's fill to its
//! send; between them (waiting for the ACK, which is most of a transfer's life) it gives it
//! back ([`Storage::release`]). The thread hands the same buffer to the next session it
//! drives, still in the CPU's cache, instead of each of ten thousand sessions writing its
//! block into a slot of its own that has left the cache since its last round trip
//! (`benches/e2e/misses.sh`: that copy was half of tftpd's L2 misses per DATA; without it, at
//! 10,000 clients, ×0.92 of the CPU per MB). Other sessions (a reader that is not seekable,
//! an upload) keep theirs to the end.
//!
//! A thread that drives one session at a time says so with [`hold_rings`]: its ring would only
//! come back to that session, so it keeps it while it waits.
//!
//! ```
//! use tftp_proto::storage::Storage;
//! use tftp_server::ring::SpareRing;
//!
//! let mut ring = SpareRing::default();
//! ring.prepare(1472);
//! let bytes = ring.as_slice().as_ptr();
//! assert!(ring.release());
//! let mut next = SpareRing::default();
//! next.prepare(1472);
//! assert_eq!(next.as_slice().as_ptr(), bytes, "the same bytes, for the next session");
//! ```

use std::cell::Cell;

use tftp_proto::storage::Storage;

/// Spare buffers a thread keeps, at most, most recently given back first.
const SPARES: usize = 8;
/// Larger buffers are freed rather than kept (a window of a reader that is not seekable).
const MAX_SPARE: usize = 128 * 1024;

thread_local! {
    static SPARE: crate::spares::Spares = const { crate::spares::Spares::new() };
    static HOLD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the sessions this thread drives keep their rings while they wait for their peers
/// (`true`), or give them back to the thread's spares for the next session to take (`false`:
/// the default). A runtime sets it while a thread drives one session alone (a lock-step
/// transfer, as PXE ROMs make): there the ring could only come back to that session, and the
/// trip through the spares and back, at every DATA, is a twentieth of the work a packet
/// costs the thread in user space (callgrind, blksize 512). A ring given back before stays
/// in the spares; a ring held when this is set back to `false` goes back at its session's
/// next wait.
///
/// ```
/// use tftp_proto::storage::Storage;
/// use tftp_server::ring::{SpareRing, hold_rings};
///
/// let mut ring = SpareRing::default();
/// hold_rings(true);
/// ring.prepare(1472);
/// assert!(!ring.release(), "one session: it keeps its ring");
/// assert_eq!(ring.as_slice().len(), 1472);
/// hold_rings(false);
/// assert!(ring.release());
/// assert!(ring.as_slice().is_empty());
/// ```
pub fn hold_rings(hold: bool) {
    HOLD.set(hold);
}

/// A session's ring: a buffer taken from its thread's spares when the session writes a
/// block, given back when it has nothing in it to send (and when it is dropped). A thread
/// keeps 8 spares at most, of 128 KiB at most.
#[derive(Debug, Default)]
pub struct SpareRing(Option<Vec<u8>>);

impl Storage for SpareRing {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn prepare(&mut self, len: usize) {
        let bytes = self
            .0
            .get_or_insert_with(|| crate::spares::take(&SPARE).unwrap_or_default());
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
    }

    fn as_slice(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or(&mut [])
    }

    fn release(&mut self) -> bool {
        if HOLD.get() {
            return false;
        }
        self.give_back();
        true
    }
}

impl SpareRing {
    fn give_back(&mut self) {
        if let Some(bytes) = self.0.take() {
            keep(bytes);
        }
    }
}

impl Drop for SpareRing {
    fn drop(&mut self) {
        // Whatever `hold_rings` says: the session is over.
        self.give_back();
    }
}

/// Keep `bytes` for the next session of this thread (of its [`SPARES`], the most recent).
fn keep(bytes: Vec<u8>) {
    if bytes.capacity() <= MAX_SPARE {
        crate::spares::keep(&SPARE, bytes, SPARES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_given_back_is_the_next_one_lent() {
        let (mut a, mut b) = (SpareRing::default(), SpareRing::default());
        a.prepare(1472);
        a.as_mut_slice()[0] = 7;
        let lent = a.as_slice().as_ptr();
        assert!(a.release());
        assert!(a.as_slice().is_empty(), "nothing to read once given back");
        b.prepare(1472);
        assert_eq!(
            b.as_slice().as_ptr(),
            lent,
            "the same bytes, still in cache"
        );
        assert_eq!(b.as_slice().len(), 1472);
        // A larger ring grows the spare it took.
        b.release();
        a.prepare(4 * 1472);
        assert_eq!(a.as_slice().len(), 4 * 1472);
        drop(a);
        // Kept at most SPARES, none larger than MAX_SPARE.
        let rings: Vec<SpareRing> = (0..2 * SPARES)
            .map(|_| {
                let mut r = SpareRing::default();
                r.prepare(100);
                r
            })
            .collect();
        drop(rings);
        assert_eq!(SPARE.with(crate::spares::Spares::len), SPARES);
        let mut big = SpareRing::default();
        big.prepare(MAX_SPARE + 1);
        drop(big);
        assert!(
            SPARE
                .with(|s| s.map(Vec::capacity))
                .iter()
                .all(|&c| c <= MAX_SPARE)
        );
    }

    #[test]
    fn a_held_ring_stays_with_its_session_and_goes_back_when_dropped() {
        let mut ring = SpareRing::default();
        ring.prepare(1472);
        let lent = ring.as_slice().as_ptr();
        hold_rings(true);
        assert!(!ring.release(), "held");
        assert_eq!(ring.as_slice().as_ptr(), lent);
        // Dropped while held: back to the spares all the same (not freed, which the
        // allocator could hand out again at the same address).
        drop(ring);
        let kept = SPARE.with(|s| s.map(|b| b.as_ptr()));
        assert_eq!(kept.first(), Some(&lent), "the spares have it");
        hold_rings(false);
        let mut next = SpareRing::default();
        next.prepare(1472);
        assert_eq!(next.as_slice().as_ptr(), lent);
    }
}
