//! The retransmission timer: an adaptive estimate of the round trip (RFC 1123 §4.2.3.2, with
//! the estimator of RFC 6298 §2), or a fixed interval when `timeout` was negotiated
//! (RFC 2349).

use core::time::Duration;

use crate::config::Config;

/// Retransmission timeout state of one session.
#[derive(Debug, Clone)]
pub(crate) struct Rto {
    /// The smoothed round trip and its variation, in nanoseconds (integer arithmetic: a sample
    /// per ACK in lock-step, where `Duration`'s checked multiplications and divisions cost a
    /// few percent of the server's user-space work; saturating, so no sample can overflow).
    srtt: Option<u64>,
    rttvar: u64,
    /// Consecutive timeouts: the timeout doubles with each (RFC 6298 §5.5), adaptive mode only.
    backoff: u32,
    fixed: Option<Duration>,
    /// [`Rto::current`], worked out when an input changes rather than for every packet sent
    /// (`Duration` arithmetic is a hundred instructions, a packet's user-space work two
    /// thousand). The bounds are the session's [`Config`], passed in: not copied here, so the
    /// cache costs no RAM.
    current: Duration,
}

impl Rto {
    pub(crate) fn new(config: &Config) -> Self {
        let mut rto = Rto {
            srtt: None,
            rttvar: 0,
            backoff: 0,
            fixed: None,
            current: Duration::ZERO,
        };
        rto.update(config);
        rto
    }

    /// Retransmit at exactly `secs` seconds from now on (the `timeout` option, RFC 2349).
    pub(crate) fn set_fixed(&mut self, secs: u8, config: &Config) {
        self.fixed = Some(Duration::from_secs(u64::from(secs)));
        self.update(config);
    }

    /// A round-trip sample from a packet that was sent once (Karn's rule: never sample a
    /// retransmitted packet).
    pub(crate) fn sample(&mut self, rtt: Duration, config: &Config) {
        let rtt = nanos(rtt);
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            // RFC 6298 §2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT <- 7/8 SRTT + 1/8 R'.
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = self.rttvar.saturating_mul(3).saturating_add(delta) / 4;
                self.srtt = Some(srtt.saturating_mul(7).saturating_add(rtt) / 8);
            }
        }
        if self.fixed.is_none() {
            self.update(config);
        }
    }

    /// The peer answered: forget the backoff.
    pub(crate) fn progress(&mut self, config: &Config) {
        if self.backoff != 0 {
            self.backoff = 0;
            self.update(config);
        }
    }

    /// A timeout fired: double the next interval (adaptive mode only).
    pub(crate) fn back_off(&mut self, config: &Config) {
        self.backoff = self.backoff.saturating_add(1).min(16);
        self.update(config);
    }

    /// The interval to wait for an answer to a packet sent now.
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// Work out [`Rto::current`] again (after any change of its inputs).
    fn update(&mut self, config: &Config) {
        self.current = self.compute(config);
    }

    fn compute(&self, config: &Config) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let min = nanos(config.min_timeout);
        let max = nanos(config.max_timeout).max(min);
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
        let base = match self.srtt {
            None => nanos(config.initial_timeout),
            Some(srtt) => srtt.saturating_add(self.rttvar.saturating_mul(4).max(margin)),
        };
        let backed_off = base.clamp(min, max).saturating_mul(1 << self.backoff);
        Duration::from_nanos(backed_off.min(max))
    }
}

/// One millisecond in nanoseconds: the clock granularity G of RFC 6298 §2.3.
const MS: u64 = 1_000_000;

/// `d` in nanoseconds, at most `u64::MAX` (584 years).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapts_to_the_round_trip_within_bounds() {
        let config = Config::default();
        let mut rto = Rto::new(&config);
        assert_eq!(rto.current(), config.initial_timeout);
        for _ in 0..20 {
            rto.sample(Duration::from_micros(100), &config);
        }
        // A LAN's round trip plus the least margin: a loss is resent after ~50 ms.
        let lan = config.min_timeout + Duration::from_micros(100);
        assert_eq!(rto.current(), lan);
        rto.back_off(&config);
        assert_eq!(rto.current(), lan * 2);
        for _ in 0..40 {
            rto.back_off(&config);
        }
        assert_eq!(rto.current(), config.max_timeout);
        rto.progress(&config);
        assert_eq!(rto.current(), lan, "the backoff is forgotten");
        for _ in 0..100 {
            rto.sample(Duration::from_millis(300), &config);
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
        let mut rto = Rto::new(&config);
        for i in 0..200u64 {
            rto.sample(Duration::from_micros(59_000 + (i % 3) * 1_000), &config);
        }
        let c = rto.current();
        assert!(c >= Duration::from_millis(59) + config.min_timeout, "{c:?}");
        assert!(c < Duration::from_millis(120), "{c:?}");
        // A widely varying round trip: 4 RTTVAR is the margin, as RFC 6298 has it.
        for i in 0..200u64 {
            rto.sample(
                Duration::from_millis(if i % 2 == 0 { 20 } else { 220 }),
                &config,
            );
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
        let mut rto = Rto::new(&config);
        for _ in 0..200 {
            rto.sample(Duration::from_micros(100), &config);
        }
        assert_eq!(rto.current(), Duration::from_micros(1_100));
    }

    #[test]
    fn absurd_samples_saturate_within_bounds() {
        let config = Config::default();
        let mut rto = Rto::new(&config);
        for rtt in [Duration::MAX, Duration::ZERO, Duration::MAX, Duration::MAX] {
            rto.sample(rtt, &config);
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
        let mut rto = Rto::new(&config);
        rto.set_fixed(6, &config);
        assert_eq!(rto.current(), Duration::from_secs(6));
        rto.sample(Duration::from_millis(1), &config);
        rto.back_off(&config);
        assert_eq!(rto.current(), Duration::from_secs(6));
    }
}
