//! Session configuration shared by servers and clients.

use core::time::Duration;

use crate::options::OptionLimits;

/// What block number follows 65535 (RFC 1350 does not say).
///
/// The de-facto rule (tftp-hpa, iPXE, most clients) is 0; a few implementations use 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Rollover {
    /// 65535 is followed by 0.
    #[default]
    ToZero,
    /// 65535 is followed by 1.
    ToOne,
}

impl Rollover {
    /// The wire block number of the `index`-th block (block 1 is the first DATA; 0 is the
    /// acknowledgement of an OACK or WRQ).
    pub fn wire_block(self, index: u64) -> u16 {
        match self {
            Rollover::ToZero => index as u16,
            Rollover::ToOne if index == 0 => 0,
            Rollover::ToOne => ((index - 1) % 65535 + 1) as u16,
        }
    }

    /// The block index in `lo..=hi` whose wire number is `wire`, if there is one. When the
    /// range spans more than one cycle, the highest match wins.
    ///
    /// Constant time whatever the range: the highest match is found by arithmetic, not by
    /// stepping a cycle at a time (`resolve(w, 0, u64::MAX)` took 2^48 steps).
    pub fn resolve(self, wire: u16, lo: u64, hi: u64) -> Option<u64> {
        if lo > hi {
            return None;
        }
        // The first index at or after `lo` with wire number `wire`, and the cycle's length.
        let (first, period) = match self {
            Rollover::ToZero => (
                lo.checked_add(u64::from(wire.wrapping_sub(lo as u16)))?,
                65_536,
            ),
            Rollover::ToOne => {
                if wire == 0 {
                    return (lo == 0).then_some(0);
                }
                let start = lo.max(1);
                let at = u64::from(self.wire_block(start));
                let off = (u64::from(wire) + 65_535 - at) % 65_535;
                (start.checked_add(off)?, 65_535)
            }
        };
        if first > hi {
            return None;
        }
        // The highest match: whole cycles on from the first (a division only for a range
        // longer than a cycle, which no window is: an ACK or a DATA costs none).
        let beyond = hi - first;
        Some(match beyond < period {
            true => first,
            false => first + beyond / period * period,
        })
    }
}

/// Timers, retries and limits of a session.
///
/// ```
/// use core::time::Duration;
/// use tftp_proto::Config;
///
/// let mut config = Config::default();
/// config.retries = 10;
/// config.min_timeout = Duration::from_millis(20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// In this order (`repr(C)`): what every ACK and transmit of a session reads first (its first 61
// bytes on x86-64, within the session's per-packet lines); no padding on 32- or 64-bit targets.
#[repr(C)]
pub struct Config {
    /// The least margin the adaptive timeout keeps over the smoothed round trip, and so also
    /// its floor: `RTO = SRTT + max(4 RTTVAR, min_timeout)` (RFC 6298 §2.3 with this in the
    /// place of the clock granularity G, as Linux's TCP has `rto_min`). On a LAN a loss is
    /// resent after about this long; a peer that answers late, but steadily, is not resent
    /// to on every late answer. Default 50 ms.
    pub min_timeout: Duration,
    /// Ceiling of the adaptive timeout, also after exponential backoff. Default 8 s: above
    /// the 5 s that some clients (atftp) wait, and restart, before they acknowledge again, so
    /// that backing off does leave them a quiet gap to answer in.
    pub max_timeout: Duration,
    /// The transfer fails only once `retries` retransmissions are spent *and* the peer has
    /// made no progress for this long. With an adaptive timeout of tens of milliseconds, six
    /// retries alone span a few seconds: less than some clients pause, and less than a
    /// client that restarts its own 5-second timer on every repeated block (atftp) needs
    /// before it acknowledges again. Default 20 s; `Duration::ZERO` for retries alone.
    pub give_up_after: Duration,
    /// Hand out up to this many consecutive DATA packets of a window as one
    /// [`crate::Transmit`] (with [`crate::Transmit::segment_size`] set), for adapters that
    /// send them with one system call (UDP GSO, `sendmmsg`). 1 (the default): one datagram
    /// per transmit.
    pub max_batch: usize,
    /// Retransmissions of the same packet before the transfer may fail with a timeout (see
    /// also [`Config::give_up_after`]). Default 6.
    pub retries: u32,
    /// Block number after 65535.
    pub rollover: Rollover,
    /// Server side: option limits (ignored by clients).
    pub limits: OptionLimits,
    /// Retransmission timeout before any round trip has been measured (RFC 6298 §2.1's
    /// 1 second). Default 1 s.
    pub initial_timeout: Duration,
    /// How long the receiver of the last DATA keeps answering a repeated last DATA with its
    /// final ACK (RFC 1350 §6, "dallying"). Default 1 s; never shorter than a negotiated
    /// `timeout`.
    pub dally: Duration,
    /// The largest transfer a receiving session accepts; beyond it the session sends ERROR 3.
    /// Checked against an announced `tsize` up front and against the bytes as they arrive.
    pub max_transfer_size: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            retries: 6,
            give_up_after: Duration::from_secs(20),
            initial_timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(50),
            max_timeout: Duration::from_secs(8),
            dally: Duration::from_secs(1),
            rollover: Rollover::ToZero,
            max_transfer_size: None,
            limits: OptionLimits::default(),
            max_batch: 1,
        }
    }
}

/// Builder-style setters, since `#[non_exhaustive]` rules out struct-update syntax outside
/// this crate:
///
/// ```
/// use std::time::Duration;
/// use tftp_proto::Config;
///
/// let config = Config::default()
///     .retries(10)
///     .initial_timeout(Duration::from_millis(200))
///     .max_transfer_size(Some(64 << 20));
/// assert_eq!(config.retries, 10);
/// ```
impl Config {
    /// Retransmissions of one packet before the transfer may fail ([`Config::retries`]).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Patience without progress before failing ([`Config::give_up_after`]).
    pub fn give_up_after(mut self, give_up_after: Duration) -> Self {
        self.give_up_after = give_up_after;
        self
    }

    /// Retransmission timeout before a round trip is measured ([`Config::initial_timeout`]).
    pub fn initial_timeout(mut self, initial_timeout: Duration) -> Self {
        self.initial_timeout = initial_timeout;
        self
    }

    /// Least margin of the adaptive timeout over the round trip ([`Config::min_timeout`]).
    pub fn min_timeout(mut self, min_timeout: Duration) -> Self {
        self.min_timeout = min_timeout;
        self
    }

    /// Ceiling of the adaptive timeout ([`Config::max_timeout`]).
    pub fn max_timeout(mut self, max_timeout: Duration) -> Self {
        self.max_timeout = max_timeout;
        self
    }

    /// How long the receiver of the last DATA re-acknowledges it ([`Config::dally`]).
    pub fn dally(mut self, dally: Duration) -> Self {
        self.dally = dally;
        self
    }

    /// Block number after 65535 ([`Config::rollover`]).
    pub fn rollover(mut self, rollover: Rollover) -> Self {
        self.rollover = rollover;
        self
    }

    /// Largest transfer a receiving session accepts ([`Config::max_transfer_size`]).
    pub fn max_transfer_size(mut self, max_transfer_size: Option<u64>) -> Self {
        self.max_transfer_size = max_transfer_size;
        self
    }

    /// Server option limits ([`Config::limits`]).
    pub fn limits(mut self, limits: OptionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Most DATA packets in one transmit ([`Config::max_batch`]).
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }
}

/// What a session keeps of its [`Config`]: the durations in nanoseconds (8 bytes each rather
/// than a `Duration`'s 16; at most `u64::MAX`, 584 years), `max_transfer_size` with `u64::MAX`
/// for no limit, and without the [`OptionLimits`] only the negotiation at the start reads. 64
/// bytes, where a copy of the `Config` was 128: every session carries one (at 10,000 sessions,
/// 640 KB less), and the timer's arithmetic takes its nanoseconds as they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub(crate) min_timeout: u64,
    pub(crate) max_timeout: u64,
    pub(crate) initial_timeout: u64,
    pub(crate) give_up_after: u64,
    pub(crate) dally: u64,
    /// `u64::MAX`: no limit (no transfer can exceed it).
    pub(crate) max_transfer_size: u64,
    pub(crate) max_batch: usize,
    pub(crate) retries: u32,
    pub(crate) rollover: Rollover,
}

impl From<&Config> for Tuning {
    fn from(config: &Config) -> Self {
        Tuning {
            min_timeout: nanos(config.min_timeout),
            max_timeout: nanos(config.max_timeout),
            initial_timeout: nanos(config.initial_timeout),
            give_up_after: nanos(config.give_up_after),
            dally: nanos(config.dally),
            max_transfer_size: config.max_transfer_size.unwrap_or(u64::MAX),
            max_batch: config.max_batch,
            retries: config.retries,
            rollover: config.rollover,
        }
    }
}

impl Tuning {
    /// [`Config::give_up_after`].
    pub(crate) fn give_up_after(&self) -> Duration {
        Duration::from_nanos(self.give_up_after)
    }

    /// [`Config::dally`].
    pub(crate) fn dally(&self) -> Duration {
        Duration::from_nanos(self.dally)
    }

    /// [`Config::max_transfer_size`].
    pub(crate) fn max_transfer_size(&self) -> Option<u64> {
        (self.max_transfer_size != u64::MAX).then_some(self.max_transfer_size)
    }
}

/// `d` in nanoseconds, at most `u64::MAX` (584 years).
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_wrap() {
        assert_eq!(Rollover::ToZero.wire_block(65535), 65535);
        assert_eq!(Rollover::ToZero.wire_block(65536), 0);
        assert_eq!(Rollover::ToZero.wire_block(65537), 1);
        assert_eq!(Rollover::ToOne.wire_block(65535), 65535);
        assert_eq!(Rollover::ToOne.wire_block(65536), 1);
        assert_eq!(Rollover::ToOne.wire_block(0), 0);
    }

    #[test]
    fn resolve_inverts_wire_block() {
        for r in [Rollover::ToZero, Rollover::ToOne] {
            for lo in [0u64, 1, 65530, 65535, 131_070, 200_000] {
                for hi in [lo, lo + 1, lo + 7, lo + 64] {
                    for idx in lo..=hi {
                        assert_eq!(r.resolve(r.wire_block(idx), lo, hi), Some(idx));
                    }
                }
                assert_eq!(r.resolve(r.wire_block(lo + 100), lo, lo + 10), None);
            }
        }
        assert_eq!(Rollover::ToOne.resolve(0, 1, 10), None);
        assert_eq!(Rollover::ToZero.resolve(3, 5, 4), None);
        // At the end of the index space: no overflow, no panic.
        for r in [Rollover::ToZero, Rollover::ToOne] {
            let hi = u64::MAX;
            assert_eq!(r.resolve(r.wire_block(hi), hi - 3, hi), Some(hi));
            assert_eq!(r.resolve(r.wire_block(hi - 10), hi - 3, hi), None);
            assert_eq!(r.resolve(r.wire_block(hi - 2), 0, hi), Some(hi - 2));
        }
    }

    /// The highest index in `lo..=hi` whose wire number is `wire`, by looking at each.
    fn resolve_by_scan(r: Rollover, wire: u16, lo: u64, hi: u64) -> Option<u64> {
        (lo..=hi).rev().find(|&i| r.wire_block(i) == wire)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn resolve_matches_a_scan(
            one in proptest::bool::ANY,
            wire in proptest::prelude::any::<u16>(),
            lo in 0u64..300_000,
            span in proptest::prop_oneof![0u64..70, 0u64..200_000],
        ) {
            let r = if one { Rollover::ToOne } else { Rollover::ToZero };
            let hi = lo + span;
            proptest::prop_assert_eq!(r.resolve(wire, lo, hi), resolve_by_scan(r, wire, lo, hi));
            // The wire number of an index in range always resolves to it (or a later cycle's).
            let idx = lo + span / 2;
            let got = r.resolve(r.wire_block(idx), lo, hi);
            proptest::prop_assert!(got.is_some_and(|g| g >= idx && r.wire_block(g) == r.wire_block(idx)));
        }
    }
}
