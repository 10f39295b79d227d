//! The retransmission timer: an adaptive estimate of the round trip (RFC 1123 §4.2.3.2, with
//! the estimator of RFC 6298 §2), or a fixed interval when `timeout` was negotiated
//! (RFC 2349).

use core::num::NonZeroU64;
use core::time::Duration;

use crate::config::{Tuning, nanos};

/// Retransmission timeout state of one session: 40 bytes (with `Duration`s and `Option`s,
/// 64), in every session.
#[derive(Debug, Clone)]
pub(crate) struct Rto {
    /// The smoothed round trip and its variation, in nanoseconds (integer arithmetic: a sample
    /// per ACK in lock-step, where `Duration`'s checked multiplications and divisions cost a
    /// few percent of the server's user-space work; saturating, so no sample can overflow).
    /// Meaningful once `sampled`.
    srtt: u64,
    rttvar: u64,
    /// [`Rto::current`] in nanoseconds, worked out when an input changes rather than for every
    /// packet sent. The bounds are the session's [`Tuning`], passed in: not copied here, so
    /// the cache costs no RAM.
    current: u64,
    /// The `timeout` option's interval (RFC 2349: 1 to 255 seconds, never zero).
    fixed: Option<NonZeroU64>,
    /// Consecutive timeouts: the timeout doubles with each (RFC 6298 §5.5), adaptive mode
    /// only; at most 16.
    backoff: u8,
    /// A round trip has been measured (RFC 6298 §2.2: the first sample sets SRTT and RTTVAR).
    sampled: bool,
}

impl Rto {
    pub(crate) fn new(tuning: &Tuning) -> Self {
        let mut rto = Rto {
            srtt: 0,
            rttvar: 0,
            current: 0,
            fixed: None,
            backoff: 0,
            sampled: false,
        };
        rto.update(tuning);
        rto
    }

    /// Retransmit at exactly `secs` seconds from now on (the `timeout` option, RFC 2349); 0,
    /// which the option cannot carry, leaves the timer adaptive.
    pub(crate) fn set_fixed(&mut self, secs: u8, tuning: &Tuning) {
        self.fixed = NonZeroU64::new(u64::from(secs) * 1_000_000_000);
        self.update(tuning);
    }

    /// A round-trip sample from a packet that was sent once (Karn's rule: never sample a
    /// retransmitted packet).
    pub(crate) fn sample(&mut self, rtt: Duration, tuning: &Tuning) {
        let rtt = nanos(rtt);
        if self.sampled {
            // RFC 6298 §2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT <- 7/8 SRTT + 1/8 R'.
            let delta = self.srtt.abs_diff(rtt);
            self.rttvar = self.rttvar.saturating_mul(3).saturating_add(delta) / 4;
            self.srtt = self.srtt.saturating_mul(7).saturating_add(rtt) / 8;
        } else {
            // RFC 6298 §2.2: SRTT <- R, RTTVAR <- R/2.
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.sampled = true;
        }
        if self.fixed.is_none() {
            self.update(tuning);
        }
    }

    /// The peer answered: forget the backoff.
    pub(crate) fn progress(&mut self, tuning: &Tuning) {
        if self.backoff != 0 {
            self.backoff = 0;
            self.update(tuning);
        }
    }

    /// A timeout fired: double the next interval (adaptive mode only).
    pub(crate) fn back_off(&mut self, tuning: &Tuning) {
        self.backoff = self.backoff.saturating_add(1).min(16);
        self.update(tuning);
    }

    /// The interval to wait for an answer to a packet sent now.
    pub(crate) fn current(&self) -> Duration {
        Duration::from_nanos(self.current)
    }

    /// Work out [`Rto::current`] again (after any change of its inputs).
    fn update(&mut self, tuning: &Tuning) {
        self.current = self.compute(tuning);
    }

    fn compute(&self, tuning: &Tuning) -> u64 {
        if let Some(fixed) = self.fixed {
            return fixed.get();
        }
        let min = tuning.min_timeout;
        let max = tuning.max_timeout.max(min);
        // RFC 6298 §2.3: RTO <- SRTT + max(G, 4 RTTVAR), with `min_timeout` in the place of
        // the clock granularity G, as Linux's TCP has its `rto_min` (tcp_rtt_estimator keeps
        // the variance term at rto_min or more, __tcp_set_rto adds that term to SRTT): the
        // least margin over the smoothed round trip, not only a floor. On a LAN (round trips
        // of microseconds) a loss is still resent after ~50 ms; a server with thousands of
        // sessions, whose peers answer tens of milliseconds late and unevenly, no longer
        // resends to them on every late answer (at 10,000 clients an absolute floor resent
        // 50,000-160,000 blocks a run that were not lost). Never less than a clock
        // granularity of 1 ms, whatever `min_timeout` says.
        let margin = min.max(MS);
        let base = if self.sampled {
            self.srtt
                .saturating_add(self.rttvar.saturating_mul(4).max(margin))
        } else {
            tuning.initial_timeout
        };
        let backed_off = base.clamp(min, max).saturating_mul(1 << self.backoff);
        backed_off.min(max)
    }
}

/// One millisecond in nanoseconds: the clock granularity G of RFC 6298 §2.3.
const MS: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn adapts_to_the_round_trip_within_bounds() {
        let config = Config::default();
        let t = Tuning::from(&config);
        let mut rto = Rto::new(&t);
        assert_eq!(rto.current(), config.initial_timeout);
        for _ in 0..20 {
            rto.sample(Duration::from_micros(100), &t);
        }
        // A LAN's round trip plus the least margin: a loss is resent after ~50 ms.
        let lan = config.min_timeout + Duration::from_micros(100);
        assert_eq!(rto.current(), lan);
        rto.back_off(&t);
        assert_eq!(rto.current(), lan * 2);
        for _ in 0..40 {
            rto.back_off(&t);
        }
        assert_eq!(rto.current(), config.max_timeout);
        rto.progress(&t);
        assert_eq!(rto.current(), lan, "the backoff is forgotten");
        for _ in 0..100 {
            rto.sample(Duration::from_millis(300), &t);
        }
        let c = rto.current();
        assert!(
            c >= Duration::from_millis(300) && c < Duration::from_millis(400),
            "{c:?}"
        );
    }

    /// A busy server's peers answer steadily but late (at 10,000 lock-step clients, ~60 ms
    /// after each DATA, give or take a few): the timeout keeps `min_timeout` over the smoothed
    /// round trip, so an answer 20 ms later than usual is not taken for a loss. With the floor
    /// alone (SRTT + 4 RTTVAR, at least 50 ms) it was 62 ms, and every such answer
    /// cost a block sent twice and its duplicate ACK.
    #[test]
    fn keeps_a_margin_over_a_slow_steady_round_trip() {
        let config = Config::default();
        let t = Tuning::from(&config);
        let mut rto = Rto::new(&t);
        for i in 0..200u64 {
            rto.sample(Duration::from_micros(59_000 + (i % 3) * 1_000), &t);
        }
        let c = rto.current();
        assert!(c >= Duration::from_millis(59) + config.min_timeout, "{c:?}");
        assert!(c < Duration::from_millis(120), "{c:?}");
        // A widely varying round trip: 4 RTTVAR is the margin, as RFC 6298 has it.
        for i in 0..200u64 {
            rto.sample(Duration::from_millis(if i % 2 == 0 { 20 } else { 220 }), &t);
        }
        let c = rto.current();
        assert!(
            c > Duration::from_millis(120) + 4 * Duration::from_millis(50),
            "{c:?}"
        );
    }

    /// `min_timeout` zero: the margin is still the clock granularity (1 ms), so a steady
    /// round trip does not make the timeout fire at the very moment the answer is due.
    #[test]
    fn no_margin_below_the_clock_granularity() {
        let config = Config {
            min_timeout: Duration::ZERO,
            ..Config::default()
        };
        let t = Tuning::from(&config);
        let mut rto = Rto::new(&t);
        for _ in 0..200 {
            rto.sample(Duration::from_micros(100), &t);
        }
        assert_eq!(rto.current(), Duration::from_micros(1_100));
    }

    #[test]
    fn absurd_samples_saturate_within_bounds() {
        let config = Config::default();
        let t = Tuning::from(&config);
        let mut rto = Rto::new(&t);
        for rtt in [Duration::MAX, Duration::ZERO, Duration::MAX, Duration::MAX] {
            rto.sample(rtt, &t);
            let c = rto.current();
            assert!(c >= config.min_timeout && c <= config.max_timeout, "{c:?}");
        }
        assert_eq!(rto.current(), config.max_timeout);
        assert_eq!(nanos(Duration::from_millis(1)), MS);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }

    #[test]
    fn fixed_timeout_ignores_samples_and_backoff() {
        let config = Config::default();
        let t = Tuning::from(&config);
        let mut rto = Rto::new(&t);
        rto.set_fixed(6, &t);
        assert_eq!(rto.current(), Duration::from_secs(6));
        rto.sample(Duration::from_millis(1), &t);
        rto.back_off(&t);
        assert_eq!(rto.current(), Duration::from_secs(6));
    }
}
