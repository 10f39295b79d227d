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
//!
//! [`Wheel`] is the same queue as a timing wheel of 1 ms ticks: scheduling and expiring cost
//! the same however many entries are queued, where each heap operation walks its height.
//! With 10,000 transfers on one thread a session's stale entry fires about once per packet
//! (its retransmission timeout is about as long as the time between its packets), so the
//! heap's `pop` alone was 3.7–4.7% of the server's CPU (perf, tftpd single-port mode, 10,000
//! clients × 1 MiB). A wheel wakes its keys up to a tick late, never early.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::time::Duration;

use crate::time::Instant;

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

/// An entry of a [`Wheel`] beyond its reach: ordered by tick, then by when it was scheduled.
#[derive(Debug, Clone)]
struct Far<K> {
    tick: u64,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Far<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.tick, self.seq) == (other.tick, other.seq)
    }
}

impl<K> Eq for Far<K> {}

impl<K> PartialOrd for Far<K> {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Far<K> {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (self.tick, self.seq).cmp(&(other.tick, other.seq))
    }
}

/// Ticks of a [`Wheel`]: its reach, beyond which deadlines wait in a heap.
const SLOTS: usize = 1024;
/// Words of the occupancy bitmap.
const WORDS: usize = SLOTS / 64;
/// Entries a drained slot keeps room for (so memory stays in proportion to what is queued):
/// the least a `Vec` allocates for 8-byte keys. At 32, every slot a thousand transfers'
/// deadlines had passed through kept up to 256 bytes for good (104 kB of a loop's heap at
/// 1,000 clients, heaptrack); a slot that fills again reallocates instead, a few times a
/// millisecond at most.
const RETAINED: usize = 4;

/// A timing wheel of 1 ms ticks for deadlines of an [`Instant`] type `I`, keyed by `K`: the
/// [`Timers`] interface, with constant-time [`Wheel::schedule`] and [`Wheel::expired`].
///
/// A deadline is rounded up to its tick and a key comes out of [`Wheel::expired`] once its
/// tick has passed, so never before its deadline and at most a tick (1 ms) after it when the
/// caller waits until [`Wheel::next_deadline`] (which is a tick boundary: a loop's poll wakes
/// there in any case, `epoll_wait` counts in milliseconds). Keys of one tick come out in the
/// order they were scheduled. Deadlines 1,024 ticks or more ahead wait in a heap and move
/// into the wheel as it turns. Stale entries fire early as with [`Timers`]; a session's
/// `handle_timeout` ignores them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tftp_proto::timers::Wheel;
///
/// let start = Instant::now();
/// let mut wheel = Wheel::new(start);
/// wheel.schedule(start + Duration::from_millis(30), "b");
/// wheel.schedule(start + Duration::from_millis(10), "a");
/// wheel.schedule(start + Duration::from_secs(5), "c");
/// assert_eq!(wheel.next_deadline(), Some(start + Duration::from_millis(10)));
/// let due: Vec<_> = wheel.expired(start + Duration::from_millis(40)).collect();
/// assert_eq!(due, ["a", "b"]);
/// assert_eq!(wheel.next_deadline(), Some(start + Duration::from_secs(5)));
/// assert_eq!(wheel.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Wheel<I, K> {
    /// Tick 0. Every instant the wheel is given must be at or after it (a deadline before it
    /// is due at once).
    origin: I,
    /// The first tick not yet expired: every entry in `slots` is for a tick in
    /// `cursor..cursor + SLOTS`, in slot `tick % SLOTS`, so a slot holds one tick.
    cursor: u64,
    slots: Vec<Vec<K>>,
    /// Bit `i` is set when slot `i` is not empty.
    occupied: [u64; WORDS],
    /// Entries for ticks `cursor + SLOTS` and later (none before `cursor` ever).
    far: BinaryHeap<Reverse<Far<K>>>,
    /// Entries put in `far` so far: their order within a tick.
    seq: u64,
    len: usize,
    /// The keys of the last [`Wheel::expired`] call, handed out from here.
    due: Vec<K>,
}

impl<I: Instant, K> Wheel<I, K> {
    /// An empty wheel whose tick 0 is `origin` (for instance `Instant::now()` when the loop
    /// starts): every deadline and every `now` given to it later must be at or after it.
    pub fn new(origin: I) -> Self {
        let mut slots = Vec::with_capacity(SLOTS);
        slots.resize_with(SLOTS, Vec::new);
        Wheel {
            origin,
            cursor: 0,
            slots,
            occupied: [0; WORDS],
            far: BinaryHeap::new(),
            seq: 0,
            len: 0,
            due: Vec::new(),
        }
    }

    /// Wake `key` at `deadline` (at the end of its tick). A deadline that has passed is due at
    /// the next [`Wheel::expired`] whose `now` is past the last one's tick.
    pub fn schedule(&mut self, deadline: I, key: K) {
        let since = deadline.saturating_duration_since(self.origin);
        // Whole milliseconds, rounded up (in u64: `as_millis` is a u128 division).
        let ms = (since.as_secs().checked_mul(1_000))
            .and_then(|ms| ms.checked_add(u64::from(since.subsec_nanos().div_ceil(1_000_000))));
        let tick = ms.unwrap_or(u64::MAX).max(self.cursor);
        self.len += 1;
        self.place(tick, key);
    }

    fn place(&mut self, tick: u64, key: K) {
        if tick - self.cursor >= SLOTS as u64 {
            let seq = self.seq;
            self.seq += 1;
            self.far.push(Reverse(Far { tick, seq, key }));
            return;
        }
        let slot = (tick % SLOTS as u64) as usize;
        self.slots[slot].push(key);
        self.occupied[slot / 64] |= 1 << (slot % 64);
    }

    /// Move the heap's entries that came within reach (as the wheel turned) onto the wheel,
    /// in the order they were scheduled, ahead of any scheduled after this.
    fn migrate(&mut self) {
        while let Some(Reverse(far)) = self.far.peek() {
            if far.tick >= self.cursor + SLOTS as u64 {
                break;
            }
            if let Some(Reverse(far)) = self.far.pop() {
                self.place(far.tick, far.key);
            }
        }
    }

    /// The instant of tick `tick`, if representable.
    fn at(&self, tick: u64) -> Option<I> {
        self.origin.checked_add(Duration::from_millis(tick))
    }

    /// The first occupied tick of the wheel (not the heap), if any.
    fn first_tick(&self) -> Option<u64> {
        let start = (self.cursor % SLOTS as u64) as usize;
        // The words from the cursor's slot round to it again; the first word is looked at
        // twice, its bits from the cursor on first and the ones before it last.
        for step in 0..=WORDS {
            let word = (start / 64 + step) % WORDS;
            let mut bits = self.occupied[word];
            if step == 0 {
                bits &= u64::MAX << (start % 64);
            } else if step == WORDS {
                bits &= !(u64::MAX << (start % 64));
            }
            if bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                let ahead = (slot + SLOTS - start) % SLOTS;
                return Some(self.cursor + ahead as u64);
            }
        }
        None
    }

    /// The earliest tick with an entry, as an instant: wait until then (or for a datagram).
    /// `None` when nothing is queued (or the tick is past what `I` can represent).
    pub fn next_deadline(&self) -> Option<I> {
        let far = self.far.peek().map(|Reverse(far)| far.tick);
        let tick = match (self.first_tick(), far) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        self.at(tick)
    }

    /// The keys whose tick has passed at `now`, removed from the wheel: tick by tick, and in
    /// the order they were scheduled within a tick. Call each one's `handle_timeout(now)` and
    /// drain it (a stale entry is a no-op for it).
    pub fn expired(&mut self, now: I) -> impl Iterator<Item = K> + '_ {
        self.due.clear();
        // Tick `t` has passed once `now` is at least `origin + t` ms.
        let elapsed = now.saturating_duration_since(self.origin);
        let ms = (elapsed.as_secs().checked_mul(1_000))
            .and_then(|ms| ms.checked_add(u64::from(elapsed.subsec_millis())));
        let now_tick = ms.unwrap_or(u64::MAX).min(u64::MAX - 2 * SLOTS as u64);
        // Invariants: wheel entries are for ticks `cursor..cursor + SLOTS`, the heap's at or
        // after `cursor` (and after the first step below, at or after `cursor + SLOTS`).
        while self.cursor <= now_tick {
            self.migrate();
            match self.first_tick() {
                Some(tick) if tick <= now_tick => {
                    let slot = (tick % SLOTS as u64) as usize;
                    self.due.append(&mut self.slots[slot]);
                    if self.slots[slot].capacity() > RETAINED {
                        // A burst (a thousand requests in the same millisecond, timing out
                        // together) leaves no slot holding its memory for good.
                        self.slots[slot] = Vec::new();
                    }
                    self.occupied[slot / 64] &= !(1 << (slot % 64));
                    self.cursor = tick + 1;
                }
                // Nothing on the wheel is due: on to the heap's first tick if that is due
                // (the wheel's entries are all later), else past `now`.
                _ => match self.far.peek() {
                    Some(Reverse(far)) if far.tick <= now_tick => self.cursor = far.tick,
                    _ => self.cursor = now_tick + 1,
                },
            }
        }
        self.migrate();
        self.len -= self.due.len();
        self.due.drain(..)
    }

    /// Entries queued (stale ones included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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

    use crate::testing::WheelModel;
    use crate::time::Millis;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[test]
    fn a_wheel_never_wakes_a_key_early_and_rounds_up_to_its_tick() {
        let start = std::time::Instant::now();
        let mut w = Wheel::new(start);
        let at = start + Duration::from_micros(10_400);
        w.schedule(at, 'a');
        assert_eq!(w.next_deadline(), Some(start + Duration::from_millis(11)));
        assert_eq!(w.expired(start + Duration::from_micros(10_900)).count(), 0);
        assert_eq!(
            w.expired(start + Duration::from_millis(11))
                .collect::<Vec<_>>(),
            ['a']
        );
        assert!(w.is_empty() && w.next_deadline().is_none());
    }

    #[test]
    fn a_wheel_keeps_far_deadlines_and_passed_ones() {
        let mut w = Wheel::new(Millis(100));
        w.schedule(Millis(100 + 5_000), 'f');
        w.schedule(Millis(100 + 1_023), 'n');
        w.schedule(Millis(100 + 1_024), 'o');
        w.schedule(Millis(50), 'p'); // before the origin: due at once
        assert_eq!(w.len(), 4);
        assert_eq!(w.next_deadline(), Some(Millis(100)));
        assert_eq!(w.expired(Millis(100)).collect::<Vec<_>>(), ['p']);
        // Slept well past the wheel's reach: everything due comes out, tick by tick.
        assert_eq!(
            w.expired(Millis(100 + 4_000)).collect::<Vec<_>>(),
            ['n', 'o']
        );
        assert_eq!(w.next_deadline(), Some(Millis(5_100)));
        w.schedule(Millis(3_000), 'q'); // passed: due at the next tick
        assert_eq!(w.next_deadline(), Some(Millis(4_101)));
        assert_eq!(w.expired(Millis(4_100)).count(), 0);
        assert_eq!(w.expired(Millis(9_000)).collect::<Vec<_>>(), ['q', 'f']);
        assert!(w.is_empty());
    }

    #[test]
    fn a_wheel_keeps_time_after_49_days() {
        // Past 2^32 ms of uptime (a u32 millisecond count would wrap here).
        let mut w = Wheel::new(Millis(0));
        let late = (1u64 << 32) + 5;
        assert_eq!(w.expired(Millis(late - 10)).count(), 0);
        w.schedule(Millis(late), 'a');
        assert_eq!(w.next_deadline(), Some(Millis(late)));
        assert_eq!(w.expired(Millis(late)).collect::<Vec<_>>(), ['a']);
    }

    #[test]
    fn a_deadline_past_the_end_of_time_waits_and_never_fires() {
        let mut w = Wheel::new(Millis(0));
        w.schedule(Millis(u64::MAX), 'x');
        assert_eq!(w.len(), 1);
        assert_eq!(w.expired(Millis(u64::MAX - 1)).count(), 0);
        assert_eq!(w.len(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A deadline this far from `now` (less 100 ms: some have passed).
        Schedule(u64),
        /// A deadline this many 100 ms after the origin (so that many share a tick, some
        /// scheduled while it is beyond the wheel's reach and some while within it).
        ScheduleAt(u64),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (0u64..4_000).prop_map(Op::Schedule),
            2 => (0u64..80).prop_map(Op::ScheduleAt),
            1 => (0u64..1_500).prop_map(Op::Advance),
            1 => (0u64..3).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a model: with whole-millisecond instants a key is due once `now` reaches
        /// its deadline (or, scheduled for a tick already expired, the next tick), and keys
        /// come out by tick, then in the order they were scheduled.
        #[test]
        fn a_wheel_matches_its_model(
            origin in 0u64..1_000_000,
            ops in proptest::collection::vec(op(), 1..200),
        ) {
            let mut w = Wheel::new(Millis(origin));
            let mut model = WheelModel::new(Millis(origin));
            let (mut now, mut next_key) = (origin, 0usize);
            for op in ops {
                match op.clone() {
                    Op::Schedule(_) | Op::ScheduleAt(_) => {
                        let at = match op {
                            Op::Schedule(ahead) => (now + ahead).saturating_sub(100),
                            Op::ScheduleAt(n) => origin + n * 100,
                            Op::Advance(_) => unreachable!(),
                        };
                        w.schedule(Millis(at), next_key);
                        model.schedule(Millis(at), next_key);
                        next_key += 1;
                    }
                    Op::Advance(by) => {
                        now += by;
                        let got: Vec<usize> = w.expired(Millis(now)).collect();
                        prop_assert_eq!(got, model.expired(Millis(now)));
                    }
                }
                prop_assert_eq!(w.len(), model.len());
                prop_assert_eq!(w.next_deadline(), model.next_deadline());
            }
        }
    }

    #[test]
    fn drained_slots_give_their_room_back() {
        // Every slot of the wheel fills with a burst of deadlines and drains: what stays
        // allocated is at most the least a vector of keys allocates (4) a slot, not each
        // slot's largest burst.
        let mut wheel = Wheel::new(crate::time::Millis(0));
        for round in 0..2u64 {
            for tick in 0..SLOTS as u64 {
                for key in 0..20u64 {
                    wheel.schedule(crate::time::Millis(round * SLOTS as u64 + tick), key);
                }
            }
            let end = crate::time::Millis((round + 1) * SLOTS as u64);
            assert_eq!(wheel.expired(end).count(), 20 * SLOTS);
        }
        assert!(wheel.is_empty());
        let kept: usize = wheel.slots.iter().map(Vec::capacity).sum();
        assert!(kept <= 4 * SLOTS, "room for {kept} keys kept");
    }
}
