//! Admission of new requests: concurrency limits, per-client limits, duplicate requests.
//!
//! One [`Admission`] per server, shared by its listeners. [`Admission::try_admit`] returns a
//! [`Permit`] that holds the session's place until dropped.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tftp_proto::{ErrorCode, ErrorReply, IncomingRequest};

/// Limits on sessions.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// Sessions running at once; beyond, requests get ERROR 0 "Server busy". Default 10,000.
    pub max_sessions: usize,
    /// Sessions at once from one IP address. Default 64 (a PXE client has one or two).
    pub max_sessions_per_client: usize,
    /// New sessions per second from one IP address (token bucket), `None` for no limit.
    /// Requests over the rate are dropped silently so that a flood gets no answers.
    /// Default 20 per second, with a burst of [`AdmissionConfig::burst_per_client`].
    pub rate_per_client: Option<f64>,
    /// Bucket size of the per-client rate limit. Default 40.
    pub burst_per_client: u32,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_sessions: 10_000,
            max_sessions_per_client: 64,
            rate_per_client: Some(20.0),
            burst_per_client: 40,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The same request from the same client port while its session runs (the client
    /// retransmitted its request): ignore it.
    Duplicate,
    /// The server runs `max_sessions` already.
    ServerBusy,
    /// This client runs `max_sessions_per_client` already.
    ClientBusy,
    /// This client exceeded its request rate: drop silently.
    RateLimited,
}

impl Refusal {
    /// The ERROR to send, if any (none for duplicates and rate limiting).
    pub fn reply(self) -> Option<ErrorReply> {
        match self {
            Refusal::Duplicate | Refusal::RateLimited => None,
            Refusal::ServerBusy => Some(ErrorReply::new(
                ErrorCode::NOT_DEFINED,
                "Server busy, try again later",
            )),
            Refusal::ClientBusy => Some(ErrorReply::new(
                ErrorCode::NOT_DEFINED,
                "Too many transfers from this client",
            )),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Active sessions by client transfer ID: a fingerprint of the request, and the permit's
    /// generation (so that a replaced permit's release does not remove its successor).
    sessions: HashMap<SocketAddr, (u64, u64)>,
    generation: u64,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
}

/// The admission table of one server.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    state: Mutex<State>,
}

/// A session's place; released on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    peer: SocketAddr,
    generation: u64,
    /// Counts the session as active until the permit is dropped, whatever happens to the
    /// task that holds it (even a panic).
    pub(crate) active: Option<Arc<crate::stats::StatsCollector>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.peer, self.generation);
        if let Some(stats) = self.active.take() {
            stats.session_ended();
        }
    }
}

fn fingerprint(request: &IncomingRequest) -> u64 {
    let mut h = DefaultHasher::new();
    request.kind.hash(&mut h);
    request.filename.hash(&mut h);
    request.mode.hash(&mut h);
    request.options.hash(&mut h);
    h.finish()
}

impl Admission {
    /// A table with `config`.
    pub fn new(config: AdmissionConfig) -> Arc<Self> {
        Arc::new(Admission {
            config,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sessions admitted and not yet released.
    pub fn active(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Admit `request` at `now`, or say why not.
    ///
    /// A *different* request from a client port that already has a session is admitted (the
    /// client gave up on the old one); the old entry is replaced, and its permit's release
    /// becomes a no-op for the table.
    pub fn try_admit(
        self: &Arc<Self>,
        request: &IncomingRequest,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        let peer = request.peer;
        let ip = peer.ip().to_canonical();
        let print = fingerprint(request);
        let mut s = self.lock();
        let replacing = match s.sessions.get(&peer) {
            Some(&(p, _)) if p == print => return Err(Refusal::Duplicate),
            Some(_) => true,
            None => false,
        };
        if !replacing {
            if s.sessions.len() >= self.config.max_sessions {
                return Err(Refusal::ServerBusy);
            }
            if s.per_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_sessions_per_client {
                return Err(Refusal::ClientBusy);
            }
        }
        if let Some(rate) = self.config.rate_per_client {
            let burst = f64::from(self.config.burst_per_client.max(1));
            if s.buckets.len() > 4 * self.config.max_sessions.max(1024) {
                // Forget clients whose buckets have refilled: bounded memory under a flood of
                // source addresses.
                s.buckets.retain(|_, b| {
                    (now.saturating_duration_since(b.at).as_secs_f64() * rate + b.tokens) < burst
                });
            }
            let b = s.buckets.entry(ip).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(burst);
            b.at = now;
            if b.tokens < 1.0 {
                return Err(Refusal::RateLimited);
            }
            b.tokens -= 1.0;
        }
        if !replacing {
            *s.per_ip.entry(ip).or_default() += 1;
        }
        s.generation += 1;
        let generation = s.generation;
        s.sessions.insert(peer, (print, generation));
        drop(s);
        Ok(Permit {
            admission: Arc::clone(self),
            peer,
            generation,
            active: None,
        })
    }

    fn release(&self, peer: SocketAddr, generation: u64) {
        let mut s = self.lock();
        if s.sessions.get(&peer).is_some_and(|&(_, g)| g == generation) {
            s.sessions.remove(&peer);
            let ip = peer.ip().to_canonical();
            if let Some(n) = s.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// How long to wait before the next refill of a rate-limited client could admit it; exposed
/// for tests and diagnostics.
pub fn refill_time(rate: f64) -> Duration {
    if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tftp_proto::{Mode, OptionValues, RequestKind};

    fn req(peer: &str, file: &str) -> IncomingRequest {
        IncomingRequest {
            peer: peer.parse().unwrap(),
            kind: RequestKind::Read,
            filename: file.into(),
            mode: Mode::Octet,
            options: OptionValues::default(),
        }
    }

    #[test]
    fn limits_and_duplicates() {
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig {
            max_sessions: 3,
            max_sessions_per_client: 2,
            rate_per_client: None,
            ..AdmissionConfig::default()
        });
        let p1 = a.try_admit(&req("10.0.0.1:1000", "a"), now).unwrap();
        assert_eq!(
            a.try_admit(&req("10.0.0.1:1000", "a"), now).unwrap_err(),
            Refusal::Duplicate
        );
        let _p2 = a.try_admit(&req("10.0.0.1:1001", "a"), now).unwrap();
        assert_eq!(
            a.try_admit(&req("10.0.0.1:1002", "a"), now).unwrap_err(),
            Refusal::ClientBusy
        );
        let _p3 = a.try_admit(&req("10.0.0.2:1000", "a"), now).unwrap();
        assert_eq!(
            a.try_admit(&req("10.0.0.3:1000", "a"), now).unwrap_err(),
            Refusal::ServerBusy
        );
        assert!(Refusal::ServerBusy.reply().is_some());
        drop(p1);
        assert_eq!(a.active(), 2);
        let _p4 = a.try_admit(&req("10.0.0.3:1000", "a"), now).unwrap();
    }

    #[test]
    fn a_new_request_from_the_same_port_replaces_the_old() {
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig::default());
        let probe = a.try_admit(&req("10.0.0.1:1000", "a"), now).unwrap();
        let mut again = req("10.0.0.1:1000", "a");
        again.options.tsize = Some(0);
        let real = a.try_admit(&again, now).unwrap();
        assert_eq!(a.active(), 1);
        drop(probe);
        assert_eq!(
            a.active(),
            1,
            "the old permit does not release the new session"
        );
        drop(real);
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn rate_limit_refills() {
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig {
            rate_per_client: Some(10.0),
            burst_per_client: 2,
            ..AdmissionConfig::default()
        });
        let mut permits = Vec::new();
        permits.push(a.try_admit(&req("10.0.0.1:1", "a"), now).unwrap());
        permits.push(a.try_admit(&req("10.0.0.1:2", "a"), now).unwrap());
        assert_eq!(
            a.try_admit(&req("10.0.0.1:3", "a"), now).unwrap_err(),
            Refusal::RateLimited
        );
        let later = now + refill_time(10.0);
        permits.push(a.try_admit(&req("10.0.0.1:3", "a"), later).unwrap());
        // Another client is unaffected.
        permits.push(a.try_admit(&req("10.0.0.2:3", "a"), now).unwrap());
    }
}
