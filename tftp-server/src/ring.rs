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

use std::cell::RefCell;

use tftp_proto::storage::Storage;

/// Spare buffers a thread keeps, at most, most recently given back first.
const SPARES: usize = 8;
/// Larger buffers are freed rather than kept (a window of a reader that is not seekable).
const MAX_SPARE: usize = 128 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
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
        if let Some(bytes) = self.0.take() {
            keep(bytes);
        }
        true
    }
}

impl Drop for SpareRing {
    fn drop(&mut self) {
        self.release();
    }
}

/// Keep `bytes` for the next session of this thread, if there is room.
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
        assert_eq!(SPARE.with(|s| s.borrow().len()), SPARES);
        let mut big = SpareRing::default();
        big.prepare(MAX_SPARE + 1);
        drop(big);
        assert!(SPARE.with(|s| s.borrow().iter().all(|b| b.capacity() <= MAX_SPARE)));
    }
}
