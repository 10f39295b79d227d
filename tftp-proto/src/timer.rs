//! The retransmission timer: an adaptive estimate of the round trip (RFC 1123 §4.2.3.2, with
//! the estimator of RFC 6298 §2), or a fixed interval when `timeout` was negotiated
//! (RFC 2349).

use core::time::Duration;

use crate::config::Config;

/// Retransmission timeout state of one session.
#[derive(Debug, Clone)]
pub(crate) struct Rto {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Consecutive timeouts: the timeout doubles with each (RFC 6298 §5.5), adaptive mode only.
    backoff: u32,
    fixed: Option<Duration>,
    initial: Duration,
    min: Duration,
    max: Duration,
}

impl Rto {
    pub(crate) fn new(config: &Config) -> Self {
        Rto {
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            fixed: None,
            initial: config.initial_timeout,
            min: config.min_timeout,
            max: config.max_timeout.max(config.min_timeout),
        }
    }

    /// Retransmit at exactly `secs` seconds from now on (the `timeout` option, RFC 2349).
    pub(crate) fn set_fixed(&mut self, secs: u8) {
        self.fixed = Some(Duration::from_secs(u64::from(secs)));
    }

    /// A round-trip sample from a packet that was sent once (Karn's rule: never sample a
    /// retransmitted packet).
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The peer answered: forget the backoff.
    pub(crate) fn progress(&mut self) {
        self.backoff = 0;
    }

    /// A timeout fired: double the next interval (adaptive mode only).
    pub(crate) fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1).min(16);
    }

    /// The interval to wait for an answer to a packet sent now.
    pub(crate) fn current(&self) -> Duration {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        let base = match self.srtt {
            None => self.initial,
            Some(srtt) => srtt + (self.rttvar * 4).max(Duration::from_millis(1)),
        };
        let base = base.clamp(self.min, self.max);
        base.saturating_mul(1 << self.backoff).min(self.max)
    }
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
            rto.sample(Duration::from_micros(100));
        }
        assert_eq!(rto.current(), config.min_timeout);
        rto.back_off();
        assert_eq!(rto.current(), config.min_timeout * 2);
        for _ in 0..40 {
            rto.back_off();
        }
        assert_eq!(rto.current(), config.max_timeout);
        rto.progress();
        for _ in 0..100 {
            rto.sample(Duration::from_millis(300));
        }
        let c = rto.current();
        assert!(
            c >= Duration::from_millis(300) && c < Duration::from_millis(400),
            "{c:?}"
        );
    }

    #[test]
    fn fixed_timeout_ignores_samples_and_backoff() {
        let mut rto = Rto::new(&Config::default());
        rto.set_fixed(6);
        rto.sample(Duration::from_millis(1));
        rto.back_off();
        assert_eq!(rto.current(), Duration::from_secs(6));
    }
}
