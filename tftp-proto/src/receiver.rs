//! The receiving half of a transfer: DATA blocks held until the caller has stored them.
//!
//! Memory: one ring of `windowsize × (4 + blksize)` bytes. Blocks are accepted only in order
//! and only inside the current window, so the ring never overflows; each is handed to the
//! caller in order, and an ACK goes out only once every block it covers is stored.
//!
//! ACK rule (RFC 7440 §4): acknowledge after the last block of a window, after the last block
//! of the transfer, and — once per gap — when a block arrives out of order (acknowledging the
//! last in-order block, so the sender resends from there). A repeated copy of the block last
//! acknowledged is answered with that ACK again (RFC 1350: the sender missed it).

use core::ops::Range;

use crate::config::Rollover;
use crate::netascii;
use crate::packet::HEADER_LEN;
use crate::storage::Storage;

#[derive(Debug)]
pub(crate) struct Receiver<B> {
    /// The ring: `window` slots of `4 + blksize` bytes.
    storage: B,
    /// `storage` is prepared: the first block has arrived.
    prepared: bool,
    pub(crate) blksize: usize,
    window: u64,
    rollover: Rollover,
    /// Next block expected from the wire.
    next: u64,
    /// Blocks `1..=stored` are stored by the caller.
    stored: u64,
    /// Last block acknowledged (0: the WRQ/OACK acknowledgement, or nothing yet).
    pub(crate) last_acked: u64,
    /// An ACK to send once `stored` reaches it.
    ack_due: Option<u64>,
    /// A gap has been reported for the current `next`.
    gap_reported: bool,
    /// The last block and its wire length.
    eof: Option<(u64, usize)>,
    netascii: Option<netascii::Decoder>,
    /// The block currently lent to the caller, already translated: (index, range in ring).
    presented: Option<(u64, Range<usize>)>,
    /// Wire payload bytes stored.
    pub(crate) bytes_stored: u64,
}

/// What a DATA packet meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataResult {
    /// The next block, now held for the caller.
    Accepted,
    /// The block last acknowledged, again: answer with that ACK.
    Reack,
    /// A block already held, or outside the window: ignored.
    Duplicate,
    /// A block after a gap: the ACK for the last in-order block is now due.
    Gap,
    /// The payload is larger than the block size.
    TooLarge,
}

impl<B: Storage> Receiver<B> {
    /// A receiver whose ring lives in `storage`, which must hold
    /// [`crate::storage::needed`]`(blksize, windowsize, false)` bytes.
    pub(crate) fn new(
        storage: B,
        blksize: u16,
        windowsize: u16,
        rollover: Rollover,
        netascii: bool,
    ) -> Self {
        let blksize = usize::from(blksize);
        let window = u64::from(windowsize.max(1));
        Receiver {
            // Prepared (allocated) when the first block arrives: a spoofed write request pins
            // nothing.
            storage,
            prepared: false,
            blksize,
            window,
            rollover,
            next: 1,
            stored: 0,
            last_acked: 0,
            ack_due: None,
            gap_reported: false,
            eof: None,
            netascii: netascii.then(netascii::Decoder::new),
            presented: None,
            bytes_stored: 0,
        }
    }

    /// Bytes of the window ring (0 until the first block arrives).
    pub(crate) fn ring_len(&self) -> usize {
        if self.prepared {
            (HEADER_LEN + self.blksize) * self.window as usize
        } else {
            0
        }
    }

    fn slot_start(&self, index: u64) -> usize {
        (index % self.window) as usize * (HEADER_LEN + self.blksize)
    }

    /// Handle DATA `block` with `payload`.
    pub(crate) fn on_data(&mut self, block: u16, payload: &[u8]) -> DataResult {
        if payload.len() > self.blksize {
            return DataResult::TooLarge;
        }
        if self.eof.is_some() {
            // Everything has arrived; only the last block can legitimately come again.
            return if self.eof.is_some_and(|(last, _)| last == self.last_acked)
                && block == self.rollover.wire_block(self.last_acked)
            {
                DataResult::Reack
            } else {
                DataResult::Duplicate
            };
        }
        let window_end = self.last_acked + self.window;
        let lookback = self.next.saturating_sub(self.window + 1);
        if let Some(index) = self.rollover.resolve(block, lookback, window_end) {
            if index == self.next {
                if !self.prepared {
                    self.prepared = true;
                    self.storage.prepare(self.ring_len());
                }
                let start = self.slot_start(index);
                self.storage.as_mut_slice()[start + HEADER_LEN..start + HEADER_LEN + payload.len()]
                    .copy_from_slice(payload);
                if payload.len() < self.blksize {
                    self.eof = Some((index, payload.len()));
                }
                self.next += 1;
                self.gap_reported = false;
                if index == window_end || payload.len() < self.blksize {
                    self.ack_due = Some(index);
                }
                return DataResult::Accepted;
            }
            if index > self.next {
                if self.gap_reported {
                    return DataResult::Duplicate;
                }
                self.gap_reported = true;
                self.ack_due = Some(self.next - 1);
                return DataResult::Gap;
            }
            if index == self.last_acked && index > 0 && self.ack_due.is_none() {
                return DataResult::Reack;
            }
        }
        DataResult::Duplicate
    }

    /// The next block for the caller to store: (index, translated bytes, is last).
    pub(crate) fn pending_block(&mut self) -> Option<(u64, &[u8], bool)> {
        let index = self.stored + 1;
        if index >= self.next {
            return None;
        }
        let last = self.eof.is_some_and(|(l, _)| l == index);
        let range = match &self.presented {
            Some((i, range)) if *i == index => range.clone(),
            _ => {
                let start = self.slot_start(index) + HEADER_LEN;
                let len = match self.eof {
                    Some((l, len)) if l == index => len,
                    _ => self.blksize,
                };
                let range = match &mut self.netascii {
                    Some(decoder) => {
                        let r = decoder.decode_in_place(
                            &mut self.storage.as_mut_slice()[..start + len],
                            start,
                            last,
                        );
                        r.start..r.end
                    }
                    None => start..start + len,
                };
                self.presented = Some((index, range.clone()));
                range
            }
        };
        Some((index, &self.storage.as_slice()[range], last))
    }

    /// The caller stored the block from [`Receiver::pending_block`].
    pub(crate) fn confirm_stored(&mut self) {
        let index = self.stored + 1;
        if index >= self.next {
            return;
        }
        self.presented = None;
        self.stored = index;
        self.bytes_stored += match self.eof {
            Some((l, len)) if l == index => len as u64,
            _ => self.blksize as u64,
        };
    }

    /// Blocks stored so far.
    pub(crate) fn blocks_stored(&self) -> u64 {
        self.stored
    }

    /// The ACK to send now, if one is due and covered by stored blocks.
    pub(crate) fn take_ack(&mut self) -> Option<u16> {
        let due = self.ack_due?;
        if self.stored < due {
            return None;
        }
        self.ack_due = None;
        self.last_acked = due;
        Some(self.rollover.wire_block(due))
    }

    /// Nothing is waiting on the caller and no ACK is pending: the receiver waits for the
    /// peer.
    pub(crate) fn waiting_for_peer(&self) -> bool {
        self.stored + 1 >= self.next && self.ack_due.is_none()
    }

    /// A timeout fired while waiting for the peer: acknowledge the last stored block again.
    pub(crate) fn on_timeout(&mut self) -> u16 {
        self.last_acked = self.stored;
        self.rollover.wire_block(self.stored)
    }

    /// The last block is stored and acknowledged.
    pub(crate) fn is_complete(&self) -> bool {
        self.eof
            .is_some_and(|(last, _)| self.stored == last && self.last_acked == last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_all(r: &mut Receiver<Vec<u8>>) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((_, data, _)) = r.pending_block() {
            out.extend_from_slice(data);
            r.confirm_stored();
        }
        out
    }

    #[test]
    fn lockstep_acks_each_block_after_it_is_stored() {
        let mut r = Receiver::new(Vec::new(), 4, 1, Rollover::ToZero, false);
        assert_eq!(r.on_data(1, b"abcd"), DataResult::Accepted);
        assert_eq!(r.take_ack(), None, "not stored yet");
        assert_eq!(store_all(&mut r), b"abcd");
        assert_eq!(r.take_ack(), Some(1));
        assert_eq!(r.on_data(1, b"abcd"), DataResult::Reack);
        assert_eq!(r.on_data(2, b"ef"), DataResult::Accepted);
        assert_eq!(store_all(&mut r), b"ef");
        assert_eq!(r.take_ack(), Some(2));
        assert!(r.is_complete());
        assert_eq!(r.on_data(2, b"ef"), DataResult::Reack);
    }

    #[test]
    fn window_acks_at_its_end_and_reports_a_gap_once() {
        let mut r = Receiver::new(Vec::new(), 4, 4, Rollover::ToZero, false);
        assert_eq!(r.on_data(1, b"1111"), DataResult::Accepted);
        assert_eq!(r.on_data(3, b"3333"), DataResult::Gap);
        assert_eq!(r.on_data(4, b"4444"), DataResult::Duplicate);
        store_all(&mut r);
        assert_eq!(r.take_ack(), Some(1));
        for b in 2..=5u16 {
            assert_eq!(r.on_data(b, &[b as u8; 4]), DataResult::Accepted);
            if b < 5 {
                assert_eq!(r.take_ack(), None);
            }
        }
        store_all(&mut r);
        assert_eq!(r.take_ack(), Some(5));
        assert_eq!(r.on_data(6, &[0; 5]), DataResult::TooLarge);
        assert_eq!(
            r.on_data(10, &[0; 4]),
            DataResult::Duplicate,
            "beyond the window"
        );
    }

    #[test]
    fn netascii_is_decoded_across_blocks() {
        let mut r = Receiver::new(Vec::new(), 4, 2, Rollover::ToZero, true);
        r.on_data(1, b"ab\r\n");
        r.on_data(2, b"c\r\0\r");
        let mut out = store_all(&mut r);
        r.take_ack();
        r.on_data(3, b"\n");
        out.extend(store_all(&mut r));
        assert_eq!(out, b"ab\nc\r\n");
    }
}
