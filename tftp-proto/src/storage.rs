//! Where a session keeps its window: on the heap (the default), or in memory the caller owns.
//!
//! A session needs one region of `windowsize × (4 + blksize)` bytes once data flows (plus
//! `blksize` bytes to stage netascii text when it sends in netascii mode): sending, the DATA
//! packets of the current window, kept for retransmission; receiving, the blocks not yet
//! stored. [`Storage`] is that region. `Vec<u8>` allocates it when data starts to flow;
//! `&mut [u8]` is a buffer the caller lends for the session's life, so a session allocates
//! nothing (see [`crate::ServerSession::with_storage`] and
//! [`crate::ClientSession::get_with_storage`]).

use alloc::vec::Vec;
use core::fmt;

/// The memory behind a session's window ring.
///
/// A session asks once, when the transfer parameters are settled, whether the storage can hold
/// what they need ([`Storage::capacity`]), then calls [`Storage::prepare`] once, when data
/// starts to flow, and from then on uses the first `len` bytes of [`Storage::as_mut_slice`].
pub trait Storage: fmt::Debug + Send + Sync {
    /// The most bytes this storage can hold (`usize::MAX` for a growable one).
    fn capacity(&self) -> usize;

    /// Make the first `len` bytes usable (`len <= capacity()`). Contents need not be zeroed.
    fn prepare(&mut self, len: usize);

    /// The bytes, at least `len` of them after [`Storage::prepare`].
    fn as_slice(&self) -> &[u8];

    /// The bytes, mutably.
    fn as_mut_slice(&mut self) -> &mut [u8];

    /// The session has nothing in the ring it needs now (a sender of a seekable source,
    /// between a send and the next fill: see `Session::set_source_seekable`). A storage
    /// shared by many sessions may hand the bytes to another one and return true; the
    /// session then calls [`Storage::prepare`] again before it next writes (and nothing is
    /// read before that: `as_slice` may be empty meanwhile). The default keeps them.
    fn release(&mut self) -> bool {
        false
    }
}

/// Allocated when data starts to flow, at exactly the size the transfer needs, and freed with
/// the session.
impl Storage for Vec<u8> {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn prepare(&mut self, len: usize) {
        if self.len() < len {
            self.resize(len, 0);
        }
    }

    fn as_slice(&self) -> &[u8] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

/// A buffer the caller owns, lent for the session's life.
impl Storage for &mut [u8] {
    fn capacity(&self) -> usize {
        self.len()
    }

    fn prepare(&mut self, _len: usize) {}

    fn as_slice(&self) -> &[u8] {
        self
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
}

/// Bytes of storage a transfer with these parameters needs: the window ring, and the netascii
/// staging block when this side sends in netascii mode.
pub(crate) fn needed(blksize: u16, windowsize: u16, netascii_sender: bool) -> usize {
    let blksize = usize::from(blksize);
    let ring = usize::from(windowsize.max(1)) * (crate::packet::HEADER_LEN + blksize);
    ring + if netascii_sender { blksize } else { 0 }
}

/// A storage shared with other sessions, as a server's thread lends one
/// (`tftp_server::ring::SpareRing`): it takes its bytes back whenever the session allows, and
/// lends garbage when asked again. For the sender's tests and the fuzz harness.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub(crate) struct Lending {
    bytes: Vec<u8>,
    /// Times the bytes were taken back.
    pub(crate) released: u64,
}

#[cfg(any(test, feature = "testing"))]
impl Storage for Lending {
    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn prepare(&mut self, len: usize) {
        self.bytes = alloc::vec![0xEE; len];
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn release(&mut self) -> bool {
        self.bytes = Vec::new();
        self.released += 1;
        true
    }
}
