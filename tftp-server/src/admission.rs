//! Admission of new requests: the listening side ([`tftp_proto::Endpoint`]: what a datagram
//! is, duplicates, replacements, the reply budget) and the server's limits (sessions,
//! sessions per client, request rate per client).
//!
//! One [`Admission`] per server, shared by its listeners. [`Admission::handle`] returns a
//! [`Permit`] with each admitted request, which holds the session's place until dropped.
//!
//! Every permit counts against the limits until it is dropped, whatever replaced it: a new
//! request from a client port that has a session ends that session (its permit's
//! `Permit::replaced` signal fires) but does not get past `max_sessions` or
//! `max_sessions_per_client` while the old one still holds its socket and buffers.
//!
//! Clients are counted by address, IPv6 clients by prefix ([`AdmissionConfig::ipv6_prefix`],
//! /64 by default): one host holds a whole /64 and can pick any address in it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tftp_proto::{
    DatagramEvent, Endpoint, EndpointConfig, ErrorCode, ErrorReply, IncomingRequest, SessionHandle,
};

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
            Refusal::ServerBusy => Some(ErrorReply::server_busy()),
            Refusal::ClientBusy => Some(ErrorReply::new(
                ErrorCode::NOT_DEFINED,
                "Too many transfers from this client",
            )),
        }
    }
}

/// What the admission table made of a datagram on a listening port.
#[derive(Debug)]
pub enum Admitted {
    /// A new request, admitted: keep the permit until its session ends.
    Accept(IncomingRequest, Permit),
    /// Single-port mode: a datagram for the live session of its sender.
    Route,
    /// Send this ERROR to the sender (a malformed request, or a refusal), for this reason.
    Reply(ErrorReply, &'static str),
    /// Drop it, for this reason (a label of `tftp_requests_dropped_total`).
    Drop(&'static str),
}

/// A session's entry in [`State::ends`].
#[derive(Debug)]
#[cfg_attr(not(feature = "async"), allow(dead_code))]
enum End {
    /// Its permit's `Permit::replaced` signal, which fires when this is dropped.
    Waiting(crate::signal::Trigger),
    /// A new request from its client port replaced it (admitted or not): any signal asked
    /// for from now on has fired.
    Replaced,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct State {
    /// The listening side: duplicate requests, replacements, routing, the reply budget.
    endpoint: Endpoint,
    /// The sessions whose permits were asked for their `Permit::replaced` signal, and those
    /// replaced: only these have an entry (tftp-blocking's event loops find a replaced
    /// session by its peer and never ask: their sessions cost no signal and no entry).
    ends: HashMap<SessionHandle, End>,
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
    /// Its client's address is the endpoint's, which returns it when the session closes
    /// (every running session keeps its permit: 24 bytes, not 48).
    handle: SessionHandle,
    /// Counts the session as active until the permit is dropped, whatever happens to the
    /// task that holds it (even a panic).
    pub(crate) active: Option<Arc<crate::stats::StatsCollector>>,
}

impl Permit {
    /// Fires when a new request from the same client port replaces this session: the
    /// session should end without a word (the client gave up on it). Made at the first call
    /// (the async servers' sessions ask once, as they start); already fired if the session
    /// was replaced before.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn replaced(&self) -> Arc<crate::signal::Signal> {
        self.admission.replaced(self.handle)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.handle);
        if let Some(stats) = self.active.take() {
            stats.session_ended();
        }
    }
}

impl Admission {
    /// A table with `config`, for listeners in single-port mode or not.
    pub fn new(config: AdmissionConfig, single_port: bool) -> Arc<Self> {
        let replies = config.replies_per_second.clamp(0.0, f64::from(u32::MAX)) as u32;
        let endpoint = Endpoint::new(
            EndpointConfig::default()
                .single_port(single_port)
                .replies_per_second(replies),
        );
        Arc::new(Admission {
            config,
            state: Mutex::new(State {
                endpoint,
                ends: HashMap::new(),
                active: 0,
                per_client: HashMap::new(),
                buckets: HashMap::new(),
            }),
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

    /// Stop admitting new requests (shutdown); datagrams of live sessions are still routed.
    pub fn stop_accepting(&self) {
        self.lock().endpoint.stop_accepting();
    }

    /// Whether a listening port may send one more ERROR at `now` (the reply budget shared by
    /// every answer of the listeners).
    pub fn may_reply(&self, now: Instant) -> bool {
        self.lock().endpoint.may_reply(now)
    }

    /// Decide on `datagram`, sent by `peer` to the listening address `local`, at `now`: the
    /// [`Endpoint`] classifies it (only requests are answered; duplicates dropped; a different
    /// request from a port with a live session replaces it, and the replaced session's
    /// `Permit::replaced` fires), then the limits apply to a new request.
    ///
    /// A replaced session counts against the limits until its permit is dropped.
    pub fn handle(
        self: &Arc<Self>,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> Admitted {
        let mut s = self.lock();
        let (request, replaces) = match s.endpoint.handle(now, local, peer, datagram) {
            DatagramEvent::NewRequest {
                request, replaces, ..
            } => (request, replaces),
            DatagramEvent::ForSession(_) => return Admitted::Route,
            DatagramEvent::Reply(reply) => return Admitted::Reply(reply, "malformed"),
            DatagramEvent::Dropped(reason) => return Admitted::Drop(reason.as_str()),
        };
        // The client gave up on its old transfer: end it, whatever becomes of this request.
        let ended = replaces.and_then(|old| s.ends.insert(old, End::Replaced));
        let refusal = self.check_limits(&mut s, &request, now);
        let admitted = match refusal {
            Err(refusal) => match refusal.reply() {
                Some(reply) if s.endpoint.may_reply(now) => {
                    Admitted::Reply(reply, refusal.reason())
                }
                Some(_) => Admitted::Drop("reply_rate_limited"),
                None => Admitted::Drop(refusal.reason()),
            },
            Ok(client) => {
                *s.per_client.entry(client).or_default() += 1;
                s.active += 1;
                let handle = s.endpoint.accept(&request);
                let permit = Permit {
                    admission: Arc::clone(self),
                    handle,
                    active: None,
                };
                Admitted::Accept(request, permit)
            }
        };
        drop(s);
        drop(ended);
        admitted
    }

    /// The limits a new request must pass: sessions, sessions of its client, its client's rate.
    fn check_limits(
        &self,
        s: &mut State,
        request: &IncomingRequest,
        now: Instant,
    ) -> Result<IpAddr, Refusal> {
        let client = self.client_key(request.peer);
        if s.active >= self.config.max_sessions {
            return Err(Refusal::ServerBusy);
        }
        if s.per_client.get(&client).copied().unwrap_or(0) >= self.config.max_sessions_per_client {
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
            let b = s.buckets.entry(client).or_insert(Bucket {
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
        Ok(client)
    }

    /// The signal of session `handle`'s replacement (see `Permit::replaced`).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    fn replaced(&self, handle: SessionHandle) -> Arc<crate::signal::Signal> {
        let mut s = self.lock();
        let (trigger, signal) = match s.ends.get(&handle) {
            Some(End::Waiting(trigger)) => return trigger.signal(),
            Some(End::Replaced) => {
                let (trigger, signal) = crate::signal::Signal::new();
                (Some(trigger), signal)
            }
            None => {
                let (trigger, signal) = crate::signal::Signal::new();
                s.ends.insert(handle, End::Waiting(trigger));
                (None, signal)
            }
        };
        drop(s);
        // Fires it (a replaced session's), outside the lock as every trigger.
        drop(trigger);
        signal
    }

    fn release(&self, handle: SessionHandle) {
        let mut s = self.lock();
        s.active = s.active.saturating_sub(1);
        // The key it was counted under: `client_key` of the same peer (canonical either way).
        if let Some(client) = s.endpoint.closed(handle).map(|peer| self.client_key(peer)) {
            if let Some(n) = s.per_client.get_mut(&client) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.per_client.remove(&client);
                }
            }
        }
        let end = s.ends.remove(&handle);
        drop(s);
        drop(end);
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

    const LOCAL: &str = "127.0.0.1:69";

    fn rrq(file: &str, tsize: bool) -> Vec<u8> {
        let mut p = b"\0\x01".to_vec();
        p.extend_from_slice(file.as_bytes());
        p.extend_from_slice(b"\0octet\0");
        if tsize {
            p.extend_from_slice(b"tsize\x000\0");
        }
        p
    }

    fn admit(a: &Arc<Admission>, peer: &str, datagram: &[u8], now: Instant) -> Admitted {
        a.handle(now, LOCAL.parse().unwrap(), peer.parse().unwrap(), datagram)
    }

    fn permit(a: &Arc<Admission>, peer: &str, datagram: &[u8], now: Instant) -> Permit {
        match admit(a, peer, datagram, now) {
            Admitted::Accept(_, p) => p,
            other => panic!("{other:?}"),
        }
    }

    fn reason(admitted: Admitted) -> &'static str {
        match admitted {
            Admitted::Reply(_, r) | Admitted::Drop(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn config(max: usize, per_client: usize) -> AdmissionConfig {
        AdmissionConfig {
            max_sessions: max,
            max_sessions_per_client: per_client,
            rate_per_client: None,
            ..AdmissionConfig::default()
        }
    }

    #[test]
    fn limits_and_duplicates() {
        let now = Instant::now();
        let a = Admission::new(config(3, 2), false);
        let p1 = permit(&a, "10.0.0.1:1000", &rrq("a", false), now);
        assert_eq!(
            reason(admit(&a, "10.0.0.1:1000", &rrq("a", false), now)),
            "duplicate"
        );
        let _p2 = permit(&a, "10.0.0.1:1001", &rrq("a", false), now);
        assert_eq!(
            reason(admit(&a, "10.0.0.1:1002", &rrq("a", false), now)),
            "client_busy"
        );
        let _p3 = permit(&a, "10.0.0.2:1000", &rrq("a", false), now);
        match admit(&a, "10.0.0.3:1000", &rrq("a", false), now) {
            Admitted::Reply(reply, "server_busy") => assert_eq!(reply, ErrorReply::server_busy()),
            other => panic!("{other:?}"),
        }
        drop(p1);
        assert_eq!(a.active(), 2);
        let _p4 = permit(&a, "10.0.0.3:1000", &rrq("a", false), now);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_permit_is_small() {
        // Every running session keeps one (48 bytes with its client's address).
        assert_eq!(std::mem::size_of::<Permit>(), 24);
    }

    #[test]
    fn a_clients_sessions_count_until_their_permits_drop() {
        // A permit does not keep its client's address: the endpoint returns it as the session
        // closes, and the client's count goes down under the key it went up under (an
        // IPv4-mapped address on a dual-stack listener is its IPv4 client).
        let now = Instant::now();
        let a = Admission::new(config(10, 2), false);
        let p1 = permit(&a, "[::ffff:10.0.0.1]:1000", &rrq("a", false), now);
        let p2 = permit(&a, "10.0.0.1:1001", &rrq("a", false), now);
        assert_eq!(
            reason(admit(&a, "10.0.0.1:1002", &rrq("a", false), now)),
            "client_busy"
        );
        drop(p1);
        let p3 = permit(&a, "10.0.0.1:1002", &rrq("a", false), now);
        drop((p2, p3));
        assert_eq!(a.active(), 0);
        let _p4 = permit(&a, "[::ffff:10.0.0.1]:2000", &rrq("a", false), now);
        let _p5 = permit(&a, "10.0.0.1:2001", &rrq("a", false), now);
        assert_eq!(
            reason(admit(&a, "10.0.0.1:2002", &rrq("a", false), now)),
            "client_busy"
        );
    }

    #[test]
    fn a_new_request_from_the_same_port_replaces_the_old() {
        let now = Instant::now();
        let a = Admission::new(AdmissionConfig::default(), false);
        let probe = permit(&a, "10.0.0.1:1000", &rrq("a", true), now);
        assert!(!probe.replaced().is_fired());
        let real = permit(&a, "10.0.0.1:1000", &rrq("a", false), now);
        assert!(
            probe.replaced().is_fired(),
            "the old session is told to end"
        );
        assert!(!real.replaced().is_fired());
        assert_eq!(a.active(), 2, "the old session counts until it has ended");
        drop(probe);
        assert_eq!(a.active(), 1);
        // The new session is still known: its retransmitted request is a duplicate.
        assert_eq!(
            reason(admit(&a, "10.0.0.1:1000", &rrq("a", false), now)),
            "duplicate"
        );
        drop(real);
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn only_sessions_asked_or_replaced_have_an_end() {
        // tftp-blocking's loops never ask for the replacement signal: a thousand sessions
        // leave no entry (and no signal) behind them; a session asked, or replaced, one
        // until it ends.
        let now = Instant::now();
        let a = Admission::new(config(10_000, 10_000), false);
        let peer = |i: usize| format!("10.0.{}.{}:1000", i / 250, i % 250);
        let permits: Vec<_> = (0..1000)
            .map(|i| permit(&a, &peer(i), &rrq("a", false), now))
            .collect();
        assert_eq!(a.lock().ends.len(), 0);
        let asked = permits[0].replaced();
        assert_eq!(a.lock().ends.len(), 1);
        // Replaced before it asks: the signal it gets has fired.
        let second = permit(&a, &peer(1), &rrq("b", false), now);
        assert_eq!(a.lock().ends.len(), 2);
        assert!(permits[1].replaced().is_fired());
        // Asked before it is replaced: the signal fires then.
        assert!(!asked.is_fired());
        let first = permit(&a, &peer(0), &rrq("b", false), now);
        assert!(asked.is_fired());
        assert!(permits[0].replaced().is_fired());
        assert!(!first.replaced().is_fired() && !second.replaced().is_fired());
        drop(permits);
        drop((first, second));
        assert_eq!(a.lock().ends.len(), 0, "every entry goes with its session");
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn replacements_from_one_port_cannot_pass_the_limits() {
        // 300 different requests from one client port: each replaces the last, but while the
        // replaced sessions have not ended they count, so at most 4 exist at once.
        let now = Instant::now();
        let a = Admission::new(config(10_000, 4), false);
        let mut permits = Vec::new();
        let mut busy = 0;
        for i in 0..300 {
            match admit(&a, "10.0.0.1:1000", &rrq(&format!("f{i}"), false), now) {
                Admitted::Accept(_, p) => permits.push(p),
                Admitted::Reply(_, "client_busy") => busy += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(permits.len(), 4);
        assert_eq!(busy, 296);
        assert_eq!(a.active(), 4);
        let fired = permits.iter().filter(|p| p.replaced().is_fired()).count();
        assert_eq!(
            fired, 4,
            "every one was replaced by a later request (the last by a refused one)"
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let now = Instant::now();
        let a = Admission::new(config(10_000, 2), false);
        let _p1 = permit(&a, "[2001:db8:1:2::1]:1000", &rrq("a", false), now);
        let _p2 = permit(&a, "[2001:db8:1:2::2]:1000", &rrq("a", false), now);
        assert_eq!(
            reason(admit(
                &a,
                "[2001:db8:1:2:ffff::3]:1000",
                &rrq("a", false),
                now
            )),
            "client_busy",
            "another address of the same /64"
        );
        let _p3 = permit(&a, "[2001:db8:1:3::1]:1000", &rrq("a", false), now);
        // IPv4 clients, also as mapped addresses, count by address.
        let _p4 = permit(&a, "[::ffff:10.0.0.1]:1000", &rrq("a", false), now);
        let _p5 = permit(&a, "10.0.0.1:1001", &rrq("a", false), now);
        assert_eq!(
            reason(admit(&a, "10.0.0.1:1002", &rrq("a", false), now)),
            "client_busy"
        );
    }

    #[test]
    fn rate_limit_refills() {
        let now = Instant::now();
        let a = Admission::new(
            AdmissionConfig {
                rate_per_client: Some(10.0),
                burst_per_client: 2,
                ..AdmissionConfig::default()
            },
            false,
        );
        let mut permits = Vec::new();
        permits.push(permit(&a, "10.0.0.1:1", &rrq("a", false), now));
        permits.push(permit(&a, "10.0.0.1:2", &rrq("a", false), now));
        assert_eq!(
            reason(admit(&a, "10.0.0.1:3", &rrq("a", false), now)),
            "rate_limited"
        );
        let later = now + refill_time(10.0);
        permits.push(permit(&a, "10.0.0.1:3", &rrq("a", false), later));
        // Another client is unaffected.
        permits.push(permit(&a, "10.0.0.2:3", &rrq("a", false), now));
    }

    #[test]
    fn single_port_routes_and_refusals_share_the_reply_budget() {
        let now = Instant::now();
        let a = Admission::new(
            AdmissionConfig {
                replies_per_second: 2.0,
                ..config(1, 64)
            },
            true,
        );
        let _p = permit(&a, "10.0.0.1:1000", &rrq("a", false), now);
        assert!(matches!(
            admit(&a, "10.0.0.1:1000", b"\0\x04\0\x01", now),
            Admitted::Route
        ));
        assert_eq!(
            reason(admit(&a, "10.0.0.2:1000", b"\0\x04\0\x01", now)),
            "not_a_request"
        );
        assert_eq!(
            reason(admit(&a, "10.0.0.2:1000", &rrq("a", false), now)),
            "server_busy"
        );
        assert_eq!(
            reason(admit(&a, "10.0.0.3:1000", b"\0\x01a\0", now)),
            "malformed"
        );
        assert_eq!(
            reason(admit(&a, "10.0.0.4:1000", &rrq("a", false), now)),
            "reply_rate_limited"
        );
        a.stop_accepting();
        assert_eq!(
            reason(admit(&a, "10.0.0.5:1000", &rrq("a", false), now)),
            "shutting_down"
        );
    }
}
