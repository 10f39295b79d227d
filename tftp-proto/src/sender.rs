//! The sending half of a transfer: a window of DATA blocks kept for retransmission.
//!
//! Memory: one ring of `windowsize × (4 + blksize)` bytes, allocated when DATA starts (after
//! ACK 0 of an OACK) and never grown (bounded by [`crate::OptionLimits::max_window_bytes`]).
//! Each slot holds a complete DATA packet, header included, so sending is one borrowed slice
//! and the source is never read twice. Netascii adds one staging buffer of `blksize` bytes.
//!
//! A source that can be read again at any offset (a file, bytes in memory: see
//! `Session::set_source_seekable`) needs no copy of the window: the ring then holds only the
//! blocks of one batch (`slots`, fewer than `windowsize`), and a block further back that must
//! go again is read again. Blocks `filled - slots .. filled` are always in the ring (one fewer
//! while block `filled` is partly written), and the sender never fills past `next_send +
//! slots`, so what is to be sent next is always there.
//!
//! Window rule (RFC 7440 §4): send up to `windowsize` blocks past the last acknowledged one,
//! then wait. An ACK for block k acknowledges everything up to k; if k is short of the last
//! block sent, the receiver saw a gap and the sender goes back to k + 1. An ACK for an already
//! acknowledged block is a duplicate and changes nothing — retransmission happens only on a
//! timeout (RFC 1123 §4.2.3.1, the Sorcerer's Apprentice rule).

use crate::config::Rollover;
use crate::error::UsageError;
use crate::netascii;
use crate::packet::{HEADER_LEN, write_data_header};
use crate::storage::Storage;
use crate::time::Instant;

/// Most blocks of `blksize` bytes one transmit of `max` blocks and `max_bytes` takes: at least
/// one. Also what a seekable source's ring holds.
pub(crate) fn blocks_per_batch(blksize: usize, max: usize, max_bytes: usize) -> u64 {
    (max_bytes / (HEADER_LEN + blksize)).clamp(1, max.max(1)) as u64
}

#[derive(Debug)]
pub(crate) struct Sender<I, B> {
    /// The ring (`window` slots of `4 + blksize` bytes), then the netascii staging block.
    storage: B,
    blksize: usize,
    window: u16,
    /// Slots in the ring: `window`, or fewer when the source can be read again.
    slots: u16,
    /// The source can be read again: the ring may be given back between sends.
    seekable: bool,
    /// The first block the ring can still hold: blocks before it went with a ring given back
    /// ([`Sender::release_ring`]) and are filled again to be resent.
    held_from: u64,
    /// The first block read again whose length differed from its first reading (0: none).
    changed: u64,
    rollover: Rollover,
    /// First block not yet acknowledged.
    pub(crate) base: u64,
    /// Next block to fill; blocks `base..filled` are complete in the ring.
    filled: u64,
    /// Bytes already in block `filled`.
    fill_pos: usize,
    /// Next block to transmit.
    next_send: u64,
    /// The last block and its payload length, once the source has ended.
    eof: Option<(u64, usize)>,
    /// Netascii translation, when the mode asks for it.
    netascii: Option<NetasciiStage>,
    /// The block whose acknowledgement will give an RTT sample, and when it was sent.
    ///
    /// A window sent again (after a timeout, or going back on a short ACK) is probed too,
    /// from its resending, and an ACK of new blocks resets the backoff (`Session::progress`).
    /// That bends Karn's algorithm (RFC 6298 §3: no sample from a segment sent twice, and
    /// the backed-off timeout kept until a valid sample), on measurement (2026-12-03; tftpd
    /// pinned to one CPU, 10,000 clients × 1 MiB at once):
    /// - Karn's rule alone, no sample from a resent window: 323,000 to 1.2 million DATA
    ///   resent per run against 30,000 to 69,000 as here. A timeout that fires because the
    ///   round trip grew under load is followed by another at the old estimate, and every
    ///   resent block's ACK is ambiguous, so the estimate never learns the longer trip.
    /// - The whole algorithm (backoff kept until a valid sample): 40,000 to 78,000 resent
    ///   at 10,000 clients, no better than this; but on a lossy link the doubled timeouts
    ///   pile up (the scenario harness, 10,000 blocks of 512 bytes, virtual time: ×1.00 at
    ///   1% loss, ×1.10 at 5%, ×3.1 at 20% in lock-step and ×21 with windowsize 8).
    ///
    /// Sampling the resent window costs at most an underestimate after a spurious timeout
    /// (the ACK answered the first sending, and the sample counts from the second), which
    /// the next samples correct.
    probe: Option<(u64, I)>,
    /// Payload bytes acknowledged.
    pub(crate) bytes_acked: u64,
    /// Source bytes taken so far, and how many the source said it would yield (octet mode).
    taken: u64,
    expected: Option<u64>,
}

#[derive(Debug)]
struct NetasciiStage {
    encoder: netascii::Encoder,
    /// Staged source bytes `start..end`, in the `blksize` bytes after the ring.
    start: usize,
    end: usize,
    source_done: bool,
}

/// What an ACK meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckResult {
    /// New blocks acknowledged; carries an RTT sample if one was taken.
    Progress(Option<core::time::Duration>),
    /// The last block is acknowledged: the transfer is complete.
    Done(Option<core::time::Duration>),
    /// Already acknowledged: ignore (never retransmit on it).
    Duplicate,
    /// A block number that was never sent.
    Invalid,
}

impl<I: Instant, B: Storage> Sender<I, B> {
    /// A sender whose ring lives in `storage`, which must hold
    /// [`crate::storage::needed`]`(blksize, slots, netascii)` bytes: `slots` is
    /// [`Sender::ring_slots`]`(windowsize, reread)`.
    ///
    /// With `reread` (octet mode only), the ring holds at most that many blocks and a block
    /// further back is filled again from the source to be resent.
    pub(crate) fn new(
        mut storage: B,
        blksize: u16,
        windowsize: u16,
        rollover: Rollover,
        netascii: bool,
        reread: Option<u16>,
    ) -> Self {
        let slots = Self::ring_slots(windowsize, reread.filter(|_| !netascii));
        storage.prepare(crate::storage::needed(blksize, slots, netascii));
        let blksize = usize::from(blksize);
        let window = windowsize.max(1);
        Sender {
            storage,
            blksize,
            window,
            slots,
            seekable: reread.is_some() && !netascii,
            held_from: 1,
            changed: 0,
            rollover,
            base: 1,
            filled: 1,
            fill_pos: 0,
            next_send: 1,
            eof: None,
            netascii: netascii.then(|| NetasciiStage {
                encoder: netascii::Encoder::new(),
                start: 0,
                end: 0,
                source_done: false,
            }),
            probe: None,
            bytes_acked: 0,
            taken: 0,
            expected: None,
        }
    }

    /// Slots of the ring for a window of `windowsize` blocks: all of them, or with a source
    /// that can be read again, at most `reread`.
    pub(crate) fn ring_slots(windowsize: u16, reread: Option<u16>) -> u16 {
        let window = windowsize.max(1);
        reread.map_or(window, |batch| window.min(batch.max(1)))
    }

    /// Bytes of storage in use: the ring, and the netascii staging block.
    pub(crate) fn ring_len(&self) -> usize {
        self.slots_len() + self.netascii.as_ref().map_or(0, |_| self.blksize)
    }

    /// Bytes of the ring's slots (the storage's first bytes).
    fn slots_len(&self) -> usize {
        (HEADER_LEN + self.blksize) * usize::from(self.slots)
    }

    /// Check the source against the `size` it announced (octet mode only).
    pub(crate) fn expecting(mut self, size: Option<u64>) -> Self {
        self.expected = size;
        self
    }

    /// `(announced, taken)` once the source has shown it does not yield its announced size:
    /// it ended short of it, or yielded more.
    pub(crate) fn size_mismatch(&self) -> Option<(u64, u64)> {
        let expected = self.expected?;
        let ended = self.eof.is_some();
        (self.taken > expected || (ended && self.taken != expected))
            .then_some((expected, self.taken))
    }

    /// The offset of a block read again whose length differed from its first reading (the
    /// source changed while being sent).
    pub(crate) fn source_changed(&self) -> Option<u64> {
        (self.changed > 0).then(|| (self.changed - 1) * self.blksize as u64)
    }

    fn slot_range(&self, index: u64) -> core::ops::Range<usize> {
        let slot = HEADER_LEN + self.blksize;
        // Block 1 in slot 0: a whole ring lies in consecutive slots, ready to be sent as one
        // batch.
        let start = (index.saturating_sub(1) % u64::from(self.slots)) as usize * slot;
        start..start + slot
    }

    /// Block `filled` may be written: inside the window, in a slot whose block was sent (or
    /// is free), and not past the last block once the source has ended.
    fn has_free_slot(&self) -> bool {
        self.filled < self.base + u64::from(self.window)
            && self.filled < self.next_send + u64::from(self.slots)
            && self.eof.is_none_or(|(last, _)| self.filled <= last)
    }

    /// The caller should supply more source bytes.
    pub(crate) fn wants_fill(&self) -> bool {
        match &self.netascii {
            Some(n) => !n.source_done && n.start == n.end && self.has_free_slot(),
            None => self.has_free_slot(),
        }
    }

    /// Index of the block being filled.
    pub(crate) fn fill_block(&self) -> u64 {
        self.filled
    }

    /// Where in the source the bytes of [`Sender::fill_buf`] start: in octet mode, block
    /// `filled`'s offset plus what it holds (it goes back when a block is read again); in
    /// netascii, the source bytes taken so far.
    pub(crate) fn fill_offset(&self) -> u64 {
        match self.netascii {
            Some(_) => self.taken,
            None => (self.filled - 1) * self.blksize as u64 + self.fill_pos as u64,
        }
    }

    /// Give the ring back to its storage ([`Storage::release`]) if nothing in it is still to
    /// be sent: a seekable source's blocks are filled again if they must be resent. A storage
    /// shared by many sessions (one event loop's) then hands the same bytes to the next
    /// session, still in the CPU's cache, instead of each session writing its own.
    pub(crate) fn release_ring(&mut self) {
        if self.seekable
            && self.fill_pos == 0
            && self.filled == self.next_send
            && self.held_from < self.filled
            && self.storage.release()
        {
            self.held_from = self.filled;
        }
    }

    /// The ring, taken from the storage again if it was given back.
    fn ring(&mut self) -> &mut [u8] {
        let len = self.ring_len();
        if self.storage.as_slice().len() < len {
            self.storage.prepare(len);
        }
        self.storage.as_mut_slice()
    }

    /// Where the caller writes source bytes.
    pub(crate) fn fill_buf(&mut self) -> &mut [u8] {
        let range = self.slot_range(self.filled);
        let from = range.start + HEADER_LEN + self.fill_pos;
        let (ring_len, blksize) = (self.slots_len(), self.blksize);
        let staged_end = self.netascii.as_ref().map(|n| n.end);
        let (ring, staged) = self.ring().split_at_mut(ring_len);
        match staged_end {
            Some(end) => &mut staged[end..blksize],
            None => &mut ring[from..range.end],
        }
    }

    /// The caller wrote `n` bytes into [`Sender::fill_buf`].
    pub(crate) fn advance(&mut self, n: usize) -> Result<(), UsageError> {
        // What fill_buf lends, without touching the ring.
        let available = match &self.netascii {
            Some(stage) => self.blksize - stage.end,
            None => self.blksize - self.fill_pos,
        };
        if n > available {
            return Err(UsageError::Overfill {
                advanced: n,
                available,
            });
        }
        match &mut self.netascii {
            Some(stage) => {
                stage.end += n;
                self.taken += n as u64;
                self.pump();
            }
            None => {
                self.fill_pos += n;
                // Bytes read again are not taken again.
                self.taken = self.taken.max(self.fill_offset());
                if self.fill_pos == self.blksize {
                    self.complete_block();
                }
            }
        }
        Ok(())
    }

    /// The source has no more bytes.
    pub(crate) fn finish(&mut self) {
        match &mut self.netascii {
            Some(stage) => {
                stage.source_done = true;
                self.pump();
            }
            None => {
                if self.has_free_slot() {
                    self.complete_block();
                }
            }
        }
    }

    /// Netascii: translate staged bytes into free slots.
    fn pump(&mut self) {
        while self.has_free_slot() {
            let range = self.slot_range(self.filled);
            let out_from = range.start + HEADER_LEN + self.fill_pos;
            let ring_len = self.slots_len();
            let Some(stage) = self.netascii.as_mut() else {
                return;
            };
            let (ring, staged) = self.storage.as_mut_slice().split_at_mut(ring_len);
            let (consumed, written) = stage.encoder.encode(
                &staged[stage.start..stage.end],
                &mut ring[out_from..range.end],
            );
            stage.start += consumed;
            if stage.start == stage.end {
                stage.start = 0;
                stage.end = 0;
            }
            let drained = stage.start == stage.end && !stage.encoder.has_pending();
            let done = drained && stage.source_done;
            self.fill_pos += written;
            if self.fill_pos == self.blksize || done {
                self.complete_block();
            } else if drained || written == 0 {
                return;
            }
        }
    }

    fn complete_block(&mut self) {
        let range = self.slot_range(self.filled);
        let len = self.fill_pos;
        let wire = self.rollover.wire_block(self.filled);
        write_data_header(&mut self.ring()[range.clone()], wire);
        let end = (self.filled - 1) * self.blksize as u64 + len as u64;
        match self.eof {
            // Once the end is known every block is one read again: as long as it was.
            Some((last, last_len)) => {
                let was = if last == self.filled {
                    last_len
                } else {
                    self.blksize
                };
                if len != was {
                    self.source_changed_at(self.filled);
                }
            }
            // A short block read again where the source once went further.
            None if len < self.blksize && self.netascii.is_none() && self.taken > end => {
                self.source_changed_at(self.filled);
            }
            None if len < self.blksize => self.eof = Some((self.filled, len)),
            None => {}
        }
        self.filled += 1;
        self.fill_pos = 0;
    }

    fn source_changed_at(&mut self, block: u64) {
        if self.changed == 0 {
            self.changed = block;
        }
    }

    /// Whether the blocks filled and not yet sent already make what one
    /// [`Sender::next_transmit`] of `max` blocks and `max_bytes` would take (or the next block
    /// to fill starts the ring again, so cannot join them): time to send them before filling
    /// more, while their bytes are still in the CPU's cache. Filling a whole window first would
    /// write 64 × 65468 bytes (4 MiB, more than a core's L2 cache) before sending the first.
    pub(crate) fn batch_filled(&self, max: usize, max_bytes: usize) -> bool {
        // Nothing unsent (lock-step, after each ACK) is never a full batch: no division then.
        let unsent = self.filled.saturating_sub(self.next_send);
        unsent > 0 && (self.in_first_slot(self.filled) || unsent >= self.batch_len(max, max_bytes))
    }

    /// Most blocks one transmit of `max` blocks and `max_bytes` takes: at least one.
    fn batch_len(&self, max: usize, max_bytes: usize) -> u64 {
        blocks_per_batch(self.blksize, max, max_bytes)
    }

    /// Block `index` lies in the ring's first slot: the ring starts again there, so it cannot
    /// join the blocks before it in one transmit.
    fn in_first_slot(&self, index: u64) -> bool {
        index.saturating_sub(1) % u64::from(self.slots) == 0
    }

    /// A DATA packet is ready and the window allows sending it.
    pub(crate) fn can_transmit(&self) -> bool {
        self.next_send < self.filled && self.next_send < self.base + u64::from(self.window)
    }

    /// The next DATA packets to send: up to `max` consecutive blocks that lie in consecutive
    /// slots and total at most `max_bytes`, as one slice (each block `4 + blksize` bytes, the
    /// last possibly shorter), with the index of the first and the count. At least one block
    /// is returned whenever the window allows one.
    pub(crate) fn next_transmit(
        &mut self,
        now: I,
        max: usize,
        max_bytes: usize,
    ) -> Option<(&[u8], u64, usize)> {
        if !self.can_transmit() {
            return None;
        }
        let first = self.next_send;
        let limit = self.filled.min(self.base + u64::from(self.window));
        // One block ready (lock-step) is a batch of one: no division then.
        let batch = match first + 1 < limit {
            true => self.batch_len(max, max_bytes),
            false => 1,
        };
        let mut count = 1u64;
        while count < batch && first + count < limit && !self.in_first_slot(first + count) {
            count += 1;
        }
        self.next_send = first + count;
        let last = first + count - 1;
        let window_end =
            (self.base + u64::from(self.window) - 1).min(self.eof.map_or(u64::MAX, |e| e.0));
        if (first..=last).contains(&window_end) && self.probe.is_none() {
            self.probe = Some((window_end, now));
        }
        let start = self.slot_range(first).start;
        let last_len = match self.eof {
            Some((eof, len)) if eof == last => len,
            _ => self.blksize,
        };
        let end = self.slot_range(last).start + HEADER_LEN + last_len;
        self.storage
            .as_slice()
            .get(start..end)
            .map(|p| (p, first, count as usize))
    }

    /// A field from each part of the sender that handling an ACK and filling and sending
    /// the next blocks read (see `Session::prefetch`).
    pub(crate) fn hot(&self) -> (u64, u64, u64, usize, u64, bool, bool, u16) {
        (
            self.base,
            self.next_send,
            self.filled,
            self.fill_pos,
            self.bytes_acked,
            self.probe.is_some(),
            self.eof.is_some(),
            self.slots,
        )
    }

    /// Blocks were sent and are not yet acknowledged.
    pub(crate) fn outstanding(&self) -> bool {
        self.next_send > self.base
    }

    /// Handle ACK `block`.
    pub(crate) fn on_ack(&mut self, block: u16, now: I) -> AckResult {
        let Some(index) = self
            .rollover
            .resolve(block, self.base - 1, self.next_send - 1)
        else {
            return AckResult::Invalid;
        };
        if index < self.base {
            return AckResult::Duplicate;
        }
        let sample = match self.probe {
            Some((probe, sent)) if index >= probe => {
                self.probe = None;
                Some(now.saturating_duration_since(sent))
            }
            _ => None,
        };
        for acked in self.base..=index {
            self.bytes_acked += match self.eof {
                Some((last, len)) if last == acked => len as u64,
                _ => self.blksize as u64,
            };
        }
        self.base = index + 1;
        if self.eof.is_some_and(|(last, _)| last == index) {
            return AckResult::Done(sample);
        }
        // An ACK short of what was sent means the receiver lost a block: go back (RFC 7440).
        if self.next_send > self.base {
            self.go_back();
        }
        if self.netascii.is_some() {
            self.pump();
        }
        AckResult::Progress(sample)
    }

    /// A timeout fired: send the unacknowledged blocks again (go-back-N).
    pub(crate) fn on_timeout(&mut self) {
        self.go_back();
    }

    /// Send again from the first unacknowledged block: from the ring if it still holds it,
    /// else (a ring smaller than the window) filled again from the source.
    fn go_back(&mut self) {
        self.next_send = self.base;
        self.probe = None;
        // A partly written block has taken the slot of the oldest one.
        let held = u64::from(self.slots) - u64::from(self.fill_pos > 0);
        if self.filled - self.base > held || self.base < self.held_from {
            self.filled = self.base;
            self.fill_pos = 0;
        }
    }

    /// Blocks acknowledged so far.
    pub(crate) fn blocks_acked(&self) -> u64 {
        self.base - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Packet;
    use crate::storage::Lending;
    use std::time::Instant;

    fn fill(s: &mut Sender<Instant, Vec<u8>>, data: &[u8]) -> usize {
        let buf = s.fill_buf();
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        s.advance(n).unwrap();
        n
    }

    fn data_of(p: &[u8]) -> (u16, Vec<u8>) {
        match Packet::decode(p).unwrap() {
            Packet::Data { block, data } => (block, data.to_vec()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exact_multiple_ends_with_empty_block() {
        let now = Instant::now();
        let mut s = Sender::new(Vec::new(), 8, 1, Rollover::ToZero, false, None);
        assert_eq!(fill(&mut s, b"12345678"), 8);
        assert!(!s.wants_fill());
        assert_eq!(
            data_of(s.next_transmit(now, 1, usize::MAX).unwrap().0),
            (1, b"12345678".to_vec())
        );
        assert!(s.next_transmit(now, 1, usize::MAX).is_none());
        assert_eq!(
            s.on_ack(1, now),
            AckResult::Progress(Some(Default::default()))
        );
        assert!(s.wants_fill());
        s.finish();
        assert_eq!(
            data_of(s.next_transmit(now, 1, usize::MAX).unwrap().0),
            (2, vec![])
        );
        assert_eq!(s.on_ack(1, now), AckResult::Duplicate);
        assert!(
            s.next_transmit(now, 1, usize::MAX).is_none(),
            "no resend on a duplicate ACK"
        );
        assert!(matches!(s.on_ack(2, now), AckResult::Done(_)));
    }

    #[test]
    fn window_goes_back_on_partial_ack() {
        let now = Instant::now();
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, None);
        for _ in 0..4 {
            fill(&mut s, &[7; 8]);
        }
        assert!(!s.wants_fill());
        let sent: Vec<u16> = (0..4)
            .map(|_| data_of(s.next_transmit(now, 1, usize::MAX).unwrap().0).0)
            .collect();
        assert_eq!(sent, [1, 2, 3, 4]);
        assert!(s.next_transmit(now, 1, usize::MAX).is_none());
        assert_eq!(s.on_ack(2, now), AckResult::Progress(None));
        assert!(s.wants_fill());
        fill(&mut s, &[1; 8]);
        fill(&mut s, &[2; 3]);
        assert!(s.wants_fill(), "a short write is not the end of the source");
        s.finish();
        assert!(!s.wants_fill());
        let sent: Vec<u16> =
            std::iter::from_fn(|| s.next_transmit(now, 1, usize::MAX).map(|p| data_of(p.0).0))
                .collect();
        assert_eq!(sent, [3, 4, 5, 6]);
        assert_eq!(s.on_ack(9, now), AckResult::Invalid);
        assert!(matches!(s.on_ack(6, now), AckResult::Done(_)));
        assert_eq!(s.bytes_acked, 5 * 8 + 3);
    }

    #[test]
    fn netascii_expands_across_blocks() {
        let now = Instant::now();
        let mut s = Sender::new(Vec::new(), 8, 2, Rollover::ToZero, true, None);
        let mut text: &[u8] = b"a\nb\nc\nd\ne\n";
        while !text.is_empty() {
            assert!(s.wants_fill());
            let n = fill(&mut s, text);
            text = &text[n..];
        }
        s.finish();
        let mut wire = Vec::new();
        let mut blocks = 0;
        while let Some((p, _, _)) = s.next_transmit(now, 1, usize::MAX) {
            wire.extend(data_of(p).1);
            blocks += 1;
            if blocks % 2 == 0 {
                s.on_ack(blocks, now);
            }
        }
        s.on_ack(blocks, now);
        assert_eq!(wire, b"a\r\nb\r\nc\r\nd\r\ne\r\n");
        assert_eq!(blocks, 2, "15 bytes: one full block of 8, then 7");
    }

    #[test]
    fn a_window_goes_out_as_one_batch_until_the_ring_wraps() {
        let now = Instant::now();
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, None);
        for b in 1..=4u8 {
            fill(&mut s, &[b; 8]);
        }
        let (batch, first, count) = s.next_transmit(now, 64, usize::MAX).unwrap();
        assert_eq!((first, count, batch.len()), (1, 4, 4 * 12));
        let blocks: Vec<(u16, Vec<u8>)> = batch.chunks(12).map(data_of).collect();
        assert_eq!(blocks[3], (4, vec![4; 8]));
        // ACK 2: blocks 3 and 4 are resent, then 5 and 6 follow in the freed slots 0 and 1.
        s.on_ack(2, now);
        fill(&mut s, &[5; 8]);
        fill(&mut s, &[6; 3]);
        s.finish();
        let (batch, first, count) = s.next_transmit(now, 64, usize::MAX).unwrap();
        assert_eq!((first, count), (3, 2), "slots 2 and 3, then the ring wraps");
        assert_eq!(batch.len(), 24);
        let (batch, first, count) = s.next_transmit(now, 64, usize::MAX).unwrap();
        assert_eq!(
            (first, count, batch.len()),
            (5, 2, 12 + 7),
            "the last block is short"
        );
        // Limits: count and bytes.
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, None);
        for b in 1..=4u8 {
            fill(&mut s, &[b; 8]);
        }
        assert_eq!(s.next_transmit(now, 3, usize::MAX).unwrap().2, 3);
        assert_eq!(
            s.next_transmit(now, 3, 5).unwrap().2,
            1,
            "at least one block"
        );
    }

    /// Fill from `file` at the offset asked for, as a seekable source must.
    fn fill_at<B: Storage>(s: &mut Sender<Instant, B>, file: &[u8], most: usize) {
        let at = usize::try_from(s.fill_offset()).unwrap();
        if at >= file.len() {
            s.finish();
            return;
        }
        let buf = s.fill_buf();
        let n = buf.len().min(file.len() - at).min(most);
        buf[..n].copy_from_slice(&file[at..at + n]);
        s.advance(n).unwrap();
    }

    #[test]
    fn a_seekable_source_is_read_again_to_resend() {
        let now = Instant::now();
        let file: Vec<u8> = (0..36u8).collect();
        // Window 4, a ring of 2 slots; blocks 1 to 4 full, 5 of 4 bytes.
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, Some(2));
        assert_eq!(s.ring_len(), 2 * 12);
        let mut sent = Vec::new();
        let step = |s: &mut Sender<Instant, Vec<u8>>, sent: &mut Vec<(u16, Vec<u8>)>| {
            if s.wants_fill() {
                fill_at(s, &file, usize::MAX);
                true
            } else if let Some((p, _, _)) = s.next_transmit(now, 1, usize::MAX) {
                sent.push(data_of(p));
                true
            } else {
                false
            }
        };
        while step(&mut s, &mut sent) {}
        let blocks: Vec<u16> = sent.iter().map(|b| b.0).collect();
        assert_eq!(
            blocks,
            [1, 2, 3, 4],
            "the whole window goes out through 2 slots"
        );
        // Block 2 lost: ACK 1. Blocks 2..=4 are out of the ring and are read again.
        assert_eq!(s.on_ack(1, now), AckResult::Progress(None));
        assert_eq!(s.fill_offset(), 8, "back to block 2");
        sent.clear();
        while step(&mut s, &mut sent) {}
        assert_eq!(sent.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
        for (block, data) in &sent {
            let at = (usize::from(*block) - 1) * 8;
            assert_eq!(data[..], file[at..(at + 8).min(36)], "block {block}");
        }
        assert_eq!(s.taken, 36, "bytes read again are not taken again");
        // Timeout with 2..=5 outstanding: read again from 2; the end is known already.
        s.on_timeout();
        sent.clear();
        while step(&mut s, &mut sent) {}
        assert_eq!(sent.iter().map(|b| b.0).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(sent[3].1, file[32..]);
        assert!(matches!(s.on_ack(4, now), AckResult::Progress(_)));
        // Lost ACK of the last block: 4 and 5 are both in the ring, nothing read again.
        s.on_timeout();
        assert!(!s.wants_fill());
        let (p, first, count) = s.next_transmit(now, 1, usize::MAX).unwrap();
        assert_eq!((data_of(p), first, count), ((5, file[32..].to_vec()), 5, 1));
        assert!(matches!(s.on_ack(5, now), AckResult::Done(_)));
        assert_eq!(s.source_changed(), None);
        assert_eq!(s.size_mismatch(), None);
    }

    #[test]
    fn a_seekable_source_that_changes_length_is_caught() {
        let now = Instant::now();
        let file: Vec<u8> = (0..20u8).collect();
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, Some(1));
        for _ in 0..3 {
            while s.wants_fill() {
                fill_at(&mut s, &file, usize::MAX);
            }
            s.next_transmit(now, 1, usize::MAX).unwrap();
        }
        assert_eq!(s.eof, Some((3, 4)));
        s.on_timeout();
        // The file shrank to 12 bytes: block 2 comes out short.
        let shorter = &file[..12];
        while s.wants_fill() && s.source_changed().is_none() {
            fill_at(&mut s, shorter, usize::MAX);
            let _ = s.next_transmit(now, 1, usize::MAX);
        }
        assert_eq!(s.source_changed(), Some(8));
        // Shrunk before the end was known: block 2 comes out short where block 3 was read.
        let long: Vec<u8> = (0..40u8).collect();
        let mut s = Sender::new(Vec::new(), 8, 4, Rollover::ToZero, false, Some(1));
        for _ in 0..3 {
            fill_at(&mut s, &long, usize::MAX);
            s.next_transmit(now, 1, usize::MAX).unwrap();
        }
        assert_eq!(s.eof, None);
        s.on_timeout();
        while s.wants_fill() && s.source_changed().is_none() {
            fill_at(&mut s, &long[..10], usize::MAX);
            let _ = s.next_transmit(now, 1, usize::MAX);
        }
        assert_eq!((s.source_changed(), s.eof), (Some(8), None));
        // Grown: the last block comes out full.
        let mut s = Sender::new(Vec::new(), 8, 2, Rollover::ToZero, false, Some(1));
        for _ in 0..2 {
            while s.wants_fill() {
                fill_at(&mut s, &file[..12], usize::MAX);
            }
            s.next_transmit(now, 1, usize::MAX).unwrap();
        }
        assert_eq!(s.eof, Some((2, 4)));
        s.on_timeout();
        while s.wants_fill() && s.source_changed().is_none() {
            fill_at(&mut s, &file, usize::MAX);
            let _ = s.next_transmit(now, 1, usize::MAX);
        }
        assert_eq!(s.source_changed(), Some(8));
    }

    /// A model check: random windows, rings, block and short reads, losses and timeouts; every
    /// DATA sent carries its block's bytes, and every transfer completes with the file.
    #[test]
    fn seekable_or_not_every_block_sent_is_the_right_one() {
        model_check(Vec::new, 0x9e37_79b9_7f4a_7c15);
    }

    /// The same with a ring given back whenever the sender allows it (at random moments, more
    /// often than a session does): a seekable source fills what it must resend again.
    #[test]
    fn a_ring_given_back_is_filled_again() {
        let released = model_check(Lending::default, 0x2545_f491_4f6c_dd1d);
        assert!(released > 1_000, "rings given back: {released}");
    }

    /// Returns how many times the senders gave their rings back.
    fn model_check<B: Storage + Released>(storage: impl Fn() -> B, seed: u64) -> u64 {
        let now = Instant::now();
        let mut seed = seed;
        let mut released = 0;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2_000 {
            let blksize = 1 + rand(9) as u16;
            let window = 1 + rand(6) as u16;
            let reread = (rand(3) > 0).then(|| 1 + rand(4) as u16);
            let len = rand(120) as usize;
            let file: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut s = Sender::new(storage(), blksize, window, Rollover::ToZero, false, reread);
            let mut received = 0u64; // blocks the receiver holds in order
            let mut done = false;
            for _ in 0..10_000 {
                if rand(3) == 0 {
                    s.release_ring();
                }
                if s.wants_fill() && rand(4) > 0 {
                    fill_at(&mut s, &file, 1 + rand(10) as usize);
                    continue;
                }
                if let Some((batch, first, count)) =
                    s.next_transmit(now, 1 + rand(3) as usize, usize::MAX)
                {
                    let slot = 4 + usize::from(blksize);
                    for (i, p) in batch.chunks(slot).enumerate() {
                        let (block, data) = data_of(p);
                        let index = first + i as u64;
                        assert_eq!(u64::from(block), index % 65_536);
                        let at = (index as usize - 1) * usize::from(blksize);
                        let end = (at + usize::from(blksize)).min(len);
                        assert_eq!(data[..], file[at..end], "block {index}, reread {reread:?}");
                        // Lost one time in five.
                        if rand(5) > 0 && index == received + 1 {
                            received = index;
                        }
                    }
                    assert!(count >= 1);
                    if rand(3) == 0 {
                        match s.on_ack(received as u16, now) {
                            AckResult::Done(_) => {
                                done = true;
                                break;
                            }
                            AckResult::Invalid => panic!("ACK {received} invalid"),
                            _ => {}
                        }
                    }
                    continue;
                }
                // Nothing to send: the receiver acknowledges, or the timer fires.
                match s.on_ack(received as u16, now) {
                    AckResult::Done(_) => {
                        done = true;
                        break;
                    }
                    AckResult::Duplicate if !s.wants_fill() => s.on_timeout(),
                    _ => {}
                }
            }
            assert!(
                done,
                "blksize {blksize} window {window} reread {reread:?} len {len}"
            );
            assert_eq!(s.bytes_acked, len as u64);
            assert_eq!(s.source_changed(), None);
            assert_eq!(s.taken, len as u64);
            released += s.storage.released();
        }
        released
    }

    trait Released {
        fn released(&self) -> u64;
    }

    impl Released for Vec<u8> {
        fn released(&self) -> u64 {
            0
        }
    }

    impl Released for Lending {
        fn released(&self) -> u64 {
            self.released
        }
    }

    #[test]
    fn overfill_is_a_usage_error() {
        let mut s: Sender<Instant, Vec<u8>> =
            Sender::new(Vec::new(), 8, 1, Rollover::ToZero, false, None);
        assert!(matches!(s.advance(9), Err(UsageError::Overfill { .. })));
        assert!(s.wants_fill());
    }
}
