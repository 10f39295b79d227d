//! Admission of new requests: concurrency limits, per-client limits, duplicate requests.
//!
//! One [`Admission`] per server, shared by its listeners. [`Admission::try_admit`] returns a
//! [`Permit`] that holds the session's place until dropped.
//!
//! Every permit counts against the limits until it is dropped, whatever replaced it: a new
//! request from a client port that has a session ends that session (its permit's
//! [`Permit::replaced`] signal fires) but does not get past `max_sessions` or
//! `max_sessions_per_client` while the old one still holds its socket and buffers.
//!
//! Clients are counted by address, IPv6 clients by prefix ([`AdmissionConfig::ipv6_prefix`],
//! /64 by default): one host holds a whole /64 and can pick any address in it.

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
    /// IPv6 clients are counted (for the per-client limits) by this prefix of their address:
    /// a host is usually given a whole /64 and can send from any address in it. Default 64;
    /// 128 counts every address apart.
    pub ipv6_prefix: u8,
    /// ERROR answers from the listening ports per second, all clients together (refusals:
    /// busy, malformed requests); beyond, requests are dropped unanswered. An answer goes to
    /// whatever source address a request carries, so without a bound a listener reflects a
    /// flood at a spoofed victim. Default 1,000.
    pub replies_per_second: f64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_sessions: 10_000,
            max_sessions_per_client: 64,
            rate_per_client: Some(20.0),
            burst_per_client: 40,
            ipv6_prefix: 64,
            replies_per_second: 1000.0,
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
    /// A short name for logs and metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Duplicate => "duplicate",
            Refusal::ServerBusy => "server_busy",
            Refusal::ClientBusy => "client_busy",
            Refusal::RateLimited => "rate_limited",
        }
    }

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

/// The latest session of a client transfer ID.
#[derive(Debug)]
struct Entry {
    /// A fingerprint of its request (a repeat of the same request is a retransmission).
    print: u64,
    /// Its permit's generation, so that a replaced permit's release does not remove its
    /// successor.
    generation: u64,
    /// Ends the session when dropped (replaced by a new request from the same port).
    _end: crate::runtime::Trigger,
}

#[derive(Debug, Default)]
struct State {
    /// The latest session of each client transfer ID.
    sessions: HashMap<SocketAddr, Entry>,
    generation: u64,
    /// Permits alive, replaced ones included.
    active: usize,
    per_client: HashMap<IpAddr, usize>,
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
    client: IpAddr,
    generation: u64,
    replaced: Arc<crate::runtime::Signal>,
    /// Counts the session as active until the permit is dropped, whatever happens to the
    /// task that holds it (even a panic).
    pub(crate) active: Option<Arc<crate::stats::StatsCollector>>,
}

impl Permit {
    /// Fires when a new request from the same client port replaces this session: the
    /// session should end without a word (the client gave up on it).
    pub(crate) fn replaced(&self) -> Arc<crate::runtime::Signal> {
        Arc::clone(&self.replaced)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission
            .release(self.peer, self.client, self.generation);
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

    /// Sessions admitted and not yet released (replaced ones included until they end).
    pub fn active(&self) -> usize {
        self.lock().active
    }

    /// The key a client is counted under: its address, or its IPv6 prefix.
    pub fn client_key(&self, peer: SocketAddr) -> IpAddr {
        match peer.ip().to_canonical() {
            IpAddr::V6(ip) => {
                let bits = u32::from(self.config.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(ip) & mask).into())
            }
            v4 => v4,
        }
    }

    /// Admit `request` at `now`, or say why not.
    ///
    /// A *different* request from a client port that already has a session replaces it (the
    /// client gave up on the old one): the old permit's [`Permit::replaced`] signal fires.
    /// The new request is subject to every limit like any other, and the old session counts
    /// until it has ended.
    pub fn try_admit(
        self: &Arc<Self>,
        request: &IncomingRequest,
        now: Instant,
    ) -> Result<Permit, Refusal> {
        let peer = request.peer;
        let ip = self.client_key(peer);
        let print = fingerprint(request);
        let mut s = self.lock();
        if s.sessions.get(&peer).is_some_and(|e| e.print == print) {
            return Err(Refusal::Duplicate);
        }
        if s.active >= self.config.max_sessions {
            return Err(Refusal::ServerBusy);
        }
        if s.per_client.get(&ip).copied().unwrap_or(0) >= self.config.max_sessions_per_client {
            return Err(Refusal::ClientBusy);
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
        *s.per_client.entry(ip).or_default() += 1;
        s.active += 1;
        s.generation += 1;
        let generation = s.generation;
        let (end, replaced) = crate::runtime::Signal::new();
        let entry = Entry {
            print,
            generation,
            _end: end,
        };
        // Dropping the replaced entry fires its session's signal.
        let old = s.sessions.insert(peer, entry);
        drop(s);
        drop(old);
        Ok(Permit {
            admission: Arc::clone(self),
            peer,
            client: ip,
            generation,
            replaced,
            active: None,
        })
    }

    fn release(&self, peer: SocketAddr, client: IpAddr, generation: u64) {
        let mut s = self.lock();
        s.active = s.active.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(&client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_client.remove(&client);
            }
        }
        let current = s
            .sessions
            .get(&peer)
            .is_some_and(|e| e.generation == generation);
        let ended = if current {
            s.sessions.remove(&peer)
        } else {
            None
        };
        drop(s);
        drop(ended);
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
        assert!(!probe.replaced().is_fired());
        let real = a.try_admit(&again, now).unwrap();
        assert!(
            probe.replaced().is_fired(),
            "the old session is told to end"
        );
        assert!(!real.replaced().is_fired());
        assert_eq!(a.active(), 2, "the old session counts until it has ended");
        drop(probe);
        assert_eq!(a.active(), 1);
        // The new session is still known: its retransmitted request is a duplicate.
        assert_eq!(a.try_admit(&again, now).unwrap_err(), Refusal::Duplicate);
        drop(real);
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn replacements_from_one_port_cannot_pass_the_limits() {
        // 300 different requests from one client port: each replaces the last, but while the
        // replaced sessions have not ended they count, so at most 4 exist at once.
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig {
            max_sessions_per_client: 4,
            rate_per_client: None,
            ..AdmissionConfig::default()
        });
        let mut permits = Vec::new();
        let mut busy = 0;
        for i in 0..300 {
            match a.try_admit(&req("10.0.0.1:1000", &format!("f{i}")), now) {
                Ok(p) => permits.push(p),
                Err(Refusal::ClientBusy) => busy += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(permits.len(), 4);
        assert_eq!(busy, 296);
        assert_eq!(a.active(), 4);
        let fired = permits.iter().filter(|p| p.replaced().is_fired()).count();
        assert_eq!(fired, 3, "all but the latest are told to end");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig {
            max_sessions_per_client: 2,
            rate_per_client: None,
            ..AdmissionConfig::default()
        });
        let _p1 = a
            .try_admit(&req("[2001:db8:1:2::1]:1000", "a"), now)
            .unwrap();
        let _p2 = a
            .try_admit(&req("[2001:db8:1:2::2]:1000", "a"), now)
            .unwrap();
        assert_eq!(
            a.try_admit(&req("[2001:db8:1:2:ffff::3]:1000", "a"), now)
                .unwrap_err(),
            Refusal::ClientBusy,
            "another address of the same /64"
        );
        let _p3 = a
            .try_admit(&req("[2001:db8:1:3::1]:1000", "a"), now)
            .unwrap();
        // IPv4 clients, also as mapped addresses, count by address.
        let _p4 = a
            .try_admit(&req("[::ffff:10.0.0.1]:1000", "a"), now)
            .unwrap();
        let _p5 = a.try_admit(&req("10.0.0.1:1001", "a"), now).unwrap();
        assert_eq!(
            a.try_admit(&req("10.0.0.1:1002", "a"), now).unwrap_err(),
            Refusal::ClientBusy
        );
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
