//! The listening side of a server, sans-IO: what a datagram on a listening port means.
//!
//! As quinn-proto's `Endpoint::handle` does for QUIC, [`Endpoint::handle`] takes a datagram
//! that arrived on a listening socket — with the time, the local address it was sent to and
//! the sender — and says what it is:
//!
//! - [`DatagramEvent::NewRequest`]: a read or write request, parsed, for the application to
//!   accept ([`Endpoint::accept`], then start a [`crate::ServerSession`]) or refuse;
//! - [`DatagramEvent::ForSession`]: in single-port mode, a datagram for the live session of
//!   its sender (feed it to that session's `handle_datagram`);
//! - [`DatagramEvent::Reply`]: send this ERROR back (a malformed request);
//! - [`DatagramEvent::Dropped`]: nothing to do, and why (for the operator's counters).
//!
//! It owns the rules that make a listener safe to expose:
//!
//! - **Only requests are ever answered** (RFC 1350 never acknowledges an ERROR; answering
//!   anything else makes a listener a reflector), and never a request from port 0, an
//!   unspecified, broadcast or multicast address (RFC 1122 §3.2.1.3).
//! - **Duplicate requests**: a client that retransmits its request (its first answer was lost)
//!   sends the same bytes from the same port; while that port has a live session, the repeat is
//!   dropped ([`DropReason::Duplicate`]) — the session's own retransmission answers it.
//! - **Replacement**: a *different* request from a port that has a live session means the
//!   client gave up on the old transfer (a PXE ROM's size probe followed by the download; a
//!   restarted client that got the same port). The new request carries the old session's
//!   handle in [`DatagramEvent::NewRequest::replaces`]: the caller ends that session
//!   ([`crate::Session::abandon`]) — it must not keep running uncounted.
//!
//! - **Answers are bounded**: an answer goes to whatever source address a datagram carries, so
//!   the ERRORs a listener sends — its own, and the caller's refusals, which it asks for with
//!   [`Endpoint::may_reply`] — share one budget ([`EndpointConfig::replies_per_second`]);
//!   beyond it requests go unanswered ([`DropReason::ReplyRateLimited`]).
//!
//! Limits (sessions per client, request rates) are the server's policy, not the protocol's,
//! and stay with the caller.
//!
//! ```
//! use std::time::Instant;
//! use tftp_proto::endpoint::{DatagramEvent, Endpoint, EndpointConfig};
//!
//! let mut endpoint = Endpoint::new(EndpointConfig::default());
//! let (local, peer) = ("192.0.2.1:69".parse()?, "192.0.2.7:2000".parse()?);
//! let now = Instant::now();
//! match endpoint.handle(now, local, peer, b"\0\x01boot.img\0octet\0") {
//!     DatagramEvent::NewRequest { request, replaces, .. } => {
//!         assert_eq!(request.filename, "boot.img");
//!         assert!(replaces.is_none());
//!         let handle = endpoint.accept(&request);
//!         // ... start a ServerSession; when it closes:
//!         endpoint.closed(handle);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use alloc::collections::BTreeMap;
use core::net::SocketAddr;

use crate::time::Instant;

use crate::server::{ErrorReply, IncomingRequest, RequestError};

/// How an [`Endpoint`] classifies datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Every transfer runs on the listening port (NAT, containers): datagrams other than
    /// requests from a client with a live session are routed to that session
    /// ([`DatagramEvent::ForSession`]). Otherwise each transfer has its own port (RFC 1350
    /// §4) and such datagrams are dropped.
    pub single_port: bool,
    /// ERRORs the listening port may send per second, all clients together (a burst of as
    /// many). Default 1,000.
    pub replies_per_second: u32,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            single_port: false,
            replies_per_second: 1000,
        }
    }
}

impl EndpointConfig {
    /// Route non-requests of known clients to their sessions (single-port mode).
    pub fn single_port(mut self, on: bool) -> Self {
        self.single_port = on;
        self
    }

    /// Allow `n` ERRORs a second from the listening port.
    pub fn replies_per_second(mut self, n: u32) -> Self {
        self.replies_per_second = n;
        self
    }
}

/// Names one live session of an [`Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(u64);

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// From port 0, an unspecified, broadcast or multicast address.
    BadSource,
    /// Not a request (an ERROR, OACK, DATA or ACK at the listening port, or not TFTP).
    NotARequest,
    /// A repeat of the request a live session is serving.
    Duplicate,
    /// The endpoint stopped accepting requests ([`Endpoint::stop_accepting`]).
    NotAccepting,
    /// A malformed request that would have been answered, over the reply budget.
    ReplyRateLimited,
}

impl DropReason {
    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadSource => "bad_source",
            DropReason::NotARequest => "not_a_request",
            DropReason::Duplicate => "duplicate",
            DropReason::NotAccepting => "shutting_down",
            DropReason::ReplyRateLimited => "reply_rate_limited",
        }
    }
}

/// What a datagram on a listening port means; from [`Endpoint::handle`].
#[derive(Debug)]
#[must_use]
pub enum DatagramEvent {
    /// A new read or write request. Accept it ([`Endpoint::accept`]) and start a session, or
    /// refuse it with an ERROR from `local`.
    NewRequest {
        /// The request, parsed, with its options.
        request: IncomingRequest,
        /// The local address the request was sent to: answer from it.
        local: SocketAddr,
        /// The live session of the same client port that this request replaces: end it
        /// without a word ([`crate::Session::abandon`]) and call [`Endpoint::closed`] for it.
        replaces: Option<SessionHandle>,
    },
    /// Single-port mode: a datagram for the live session of its sender.
    ForSession(SessionHandle),
    /// Send this ERROR to the sender, from `local` (a malformed request).
    Reply(ErrorReply),
    /// Nothing to do.
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy)]
struct Live {
    handle: SessionHandle,
    fingerprint: u64,
}

/// The listening side of a server: duplicate detection, replacement, single-port routing and
/// the rules for answering; see the [module docs](self).
///
/// `I` is the caller's [`Instant`] type, as for sessions: [`std::time::Instant`] by default
/// (with `std`, where [`Endpoint::new`] makes one), any other through
/// [`Endpoint::with_instant`] (`Endpoint::<Millis>::with_instant(config)`).
#[derive(Debug)]
pub struct Endpoint<#[cfg(feature = "std")] I = std::time::Instant, #[cfg(not(feature = "std"))] I>
{
    config: EndpointConfig,
    accepting: bool,
    /// The live session of each client transfer ID.
    by_peer: BTreeMap<SocketAddr, Live>,
    /// The client transfer ID of each live session (replaced sessions included, until closed).
    by_handle: BTreeMap<SessionHandle, SocketAddr>,
    next: u64,
    /// Reply tokens, in millionths, and when they were last refilled.
    tokens: u64,
    refilled: Option<I>,
}

#[cfg(feature = "std")]
impl Endpoint<std::time::Instant> {
    /// An endpoint with no live sessions, accepting requests, on [`std::time::Instant`].
    pub fn new(config: EndpointConfig) -> Self {
        Self::with_instant(config)
    }
}

impl<I: Instant> Endpoint<I> {
    /// An endpoint with no live sessions, accepting requests, on the instant type `I`.
    pub fn with_instant(config: EndpointConfig) -> Self {
        Endpoint {
            config,
            accepting: true,
            by_peer: BTreeMap::new(),
            by_handle: BTreeMap::new(),
            next: 0,
            tokens: u64::from(config.replies_per_second) * 1_000_000,
            refilled: None,
        }
    }

    /// Whether the listening port may send one more ERROR at `now` (a refusal of the
    /// caller's: server busy, too many transfers); takes it from the budget if so.
    pub fn may_reply(&mut self, now: I) -> bool {
        let rate = u64::from(self.config.replies_per_second);
        let capacity = rate.max(1) * 1_000_000;
        if let Some(last) = self.refilled {
            let micros = now.saturating_duration_since(last).as_micros();
            let gained = u64::try_from(micros)
                .unwrap_or(u64::MAX)
                .saturating_mul(rate);
            self.tokens = self.tokens.saturating_add(gained).min(capacity);
        }
        self.refilled = Some(now);
        match self.tokens.checked_sub(1_000_000) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }

    /// Live sessions (replaced ones included until [`Endpoint::closed`]).
    pub fn sessions(&self) -> usize {
        self.by_handle.len()
    }

    /// The live session serving `peer`, if any.
    pub fn session_of(&self, peer: SocketAddr) -> Option<SessionHandle> {
        self.by_peer.get(&key(peer)).map(|l| l.handle)
    }

    /// Stop accepting requests (shutdown): new requests are dropped, datagrams for live
    /// sessions are still routed (single-port mode) so they can finish.
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// What the datagram `datagram`, sent by `peer` to the listening address `local`, means
    /// at `now`.
    pub fn handle(
        &mut self,
        now: I,
        local: SocketAddr,
        peer: SocketAddr,
        datagram: &[u8],
    ) -> DatagramEvent {
        let live = self.by_peer.get(&key(peer)).copied();
        let is_request = IncomingRequest::is_request(datagram);
        if !is_request {
            return match live {
                Some(live) if self.config.single_port => DatagramEvent::ForSession(live.handle),
                _ => DatagramEvent::Dropped(DropReason::NotARequest),
            };
        }
        if !self.accepting {
            return DatagramEvent::Dropped(DropReason::NotAccepting);
        }
        let request = match IncomingRequest::parse(peer, datagram) {
            Ok(r) => r,
            Err(e) => {
                return match (e.reply(), e) {
                    (Some(reply), _) if self.may_reply(now) => DatagramEvent::Reply(reply),
                    (Some(_), _) => DatagramEvent::Dropped(DropReason::ReplyRateLimited),
                    (None, RequestError::BadSource) => {
                        DatagramEvent::Dropped(DropReason::BadSource)
                    }
                    (None, _) => DatagramEvent::Dropped(DropReason::NotARequest),
                };
            }
        };
        match live {
            Some(live) if live.fingerprint == fingerprint(&request) => {
                DatagramEvent::Dropped(DropReason::Duplicate)
            }
            _ => DatagramEvent::NewRequest {
                request,
                local,
                replaces: live.map(|l| l.handle),
            },
        }
    }

    /// The application accepted `request` (from [`DatagramEvent::NewRequest`]): a session now
    /// serves its client. Its handle routes the client's datagrams in single-port mode; a
    /// repeat of the request is dropped as a duplicate while the session lives.
    pub fn accept(&mut self, request: &IncomingRequest) -> SessionHandle {
        let handle = SessionHandle(self.next);
        self.next += 1;
        let live = Live {
            handle,
            fingerprint: fingerprint(request),
        };
        self.by_peer.insert(key(request.peer), live);
        self.by_handle.insert(handle, key(request.peer));
        handle
    }

    /// The session `handle` closed (or was abandoned after a replacement): forget it. Returns
    /// the client transfer ID it served (an IPv4-mapped address as IPv4), or `None` when
    /// `handle` is not live (closed already): the caller need not keep the peer of each
    /// session for its own books (per-client counts) beside the handle.
    pub fn closed(&mut self, handle: SessionHandle) -> Option<SocketAddr> {
        let peer = self.by_handle.remove(&handle)?;
        if self.by_peer.get(&peer).is_some_and(|l| l.handle == handle) {
            self.by_peer.remove(&peer);
        }
        Some(peer)
    }
}

/// Peers compare by canonical address: a dual-stack socket reports IPv4 clients as mapped
/// IPv6 addresses.
fn key(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// A 64-bit FNV-1a hash of what makes a request the same request: a client retransmitting
/// sends the same kind, name, mode and options. (A collision only makes a different request
/// from the same port look like a retransmission of the first.)
fn fingerprint(request: &IncomingRequest) -> u64 {
    use core::hash::{Hash, Hasher};
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    request.kind.hash(&mut h);
    request.filename.hash(&mut h);
    request.mode.hash(&mut h);
    request.options.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ErrorCode;
    use std::time::Instant;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LOCAL: &str = "192.0.2.1:69";

    fn new_request(
        e: &mut Endpoint,
        peer: &str,
        bytes: &[u8],
    ) -> (IncomingRequest, Option<SessionHandle>) {
        match e.handle(Instant::now(), addr(LOCAL), addr(peer), bytes) {
            DatagramEvent::NewRequest {
                request,
                local,
                replaces,
            } => {
                assert_eq!(local, addr(LOCAL));
                (request, replaces)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_retransmitted_request_is_a_duplicate_while_its_session_lives() {
        let mut e = Endpoint::new(EndpointConfig::default());
        let rrq = b"\0\x01f\0octet\0tsize\x000\0";
        let (request, replaces) = new_request(&mut e, "192.0.2.7:2000", rrq);
        assert!(replaces.is_none());
        let handle = e.accept(&request);
        let now = Instant::now();
        assert!(matches!(
            e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), rrq),
            DatagramEvent::Dropped(DropReason::Duplicate)
        ));
        // The same request from the same client as a mapped address: still the same client.
        assert!(matches!(
            e.handle(now, addr(LOCAL), addr("[::ffff:192.0.2.7]:2000"), rrq),
            DatagramEvent::Dropped(DropReason::Duplicate)
        ));
        // It returns the client it served, once.
        assert_eq!(e.closed(handle), Some(addr("192.0.2.7:2000")));
        assert_eq!(e.closed(handle), None);
        assert_eq!(e.sessions(), 0);
        let (_, replaces) = new_request(&mut e, "192.0.2.7:2000", rrq);
        assert!(
            replaces.is_none(),
            "a new transfer once the old one is over"
        );
    }

    #[test]
    fn a_different_request_from_the_same_port_replaces_the_session() {
        // UEFI: a size probe, then the download, from the same port.
        let mut e = Endpoint::new(EndpointConfig::default());
        let probe = b"\0\x01f\0octet\0tsize\x000\0blksize\x001468\0";
        let download = b"\0\x01f\0octet\0blksize\x001468\0";
        let (request, _) = new_request(&mut e, "192.0.2.7:2000", probe);
        let first = e.accept(&request);
        let (request, replaces) = new_request(&mut e, "192.0.2.7:2000", download);
        assert_eq!(replaces, Some(first));
        let second = e.accept(&request);
        assert_eq!(
            e.sessions(),
            2,
            "the replaced session counts until it has closed"
        );
        assert_eq!(e.session_of(addr("192.0.2.7:2000")), Some(second));
        // The old session closing does not forget the new one.
        e.closed(first);
        assert_eq!(e.session_of(addr("192.0.2.7:2000")), Some(second));
        assert_eq!(e.sessions(), 1);
    }

    #[test]
    fn single_port_routes_a_known_clients_datagrams_to_its_session() {
        let mut e = Endpoint::new(EndpointConfig::default().single_port(true));
        let now = Instant::now();
        let (request, _) = new_request(&mut e, "192.0.2.7:2000", b"\0\x01f\0octet\0");
        let handle = e.accept(&request);
        for datagram in [&b"\0\x04\0\x01"[..], b"\0\x05\0\x00bye\0", b"\0\x04"] {
            assert!(matches!(
                e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), datagram),
                DatagramEvent::ForSession(h) if h == handle
            ));
        }
        // A stranger's ACK goes nowhere.
        assert!(matches!(
            e.handle(now, addr(LOCAL), addr("192.0.2.8:2000"), b"\0\x04\0\x01"),
            DatagramEvent::Dropped(DropReason::NotARequest)
        ));
        // Shutdown: no new requests, routing goes on.
        e.stop_accepting();
        assert!(matches!(
            e.handle(
                now,
                addr(LOCAL),
                addr("192.0.2.9:2000"),
                b"\0\x01f\0octet\0"
            ),
            DatagramEvent::Dropped(DropReason::NotAccepting)
        ));
        assert!(matches!(
            e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), b"\0\x04\0\x02"),
            DatagramEvent::ForSession(_)
        ));
    }

    #[test]
    fn only_requests_are_answered() {
        let mut e = Endpoint::new(EndpointConfig::default());
        let now = Instant::now();
        for junk in [
            &b"\0\x05\0\x01no nul"[..],
            b"\0\x05\0\x01fine\0",
            b"\0\x06blksize\x00512\0",
            b"\0\x03\0\x01data",
            b"\0\x04\0\x01",
            b"\0",
            b"",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert!(
                matches!(
                    e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), junk),
                    DatagramEvent::Dropped(DropReason::NotARequest)
                ),
                "{junk:?}"
            );
        }
        match e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), b"\0\x01f\0") {
            DatagramEvent::Reply(reply) => assert_eq!(reply.code, ErrorCode::ILLEGAL_OPERATION),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            e.handle(now, addr(LOCAL), addr("192.0.2.255:0"), b"\0\x01f\0octet\0"),
            DatagramEvent::Dropped(DropReason::BadSource)
        ));
    }

    #[test]
    fn answers_share_a_budget_that_refills() {
        let mut e = Endpoint::new(EndpointConfig::default().replies_per_second(10));
        let now = Instant::now();
        let malformed = b"\0\x01f\0";
        let mut replies = 0;
        for _ in 0..100 {
            match e.handle(now, addr(LOCAL), addr("192.0.2.7:2000"), malformed) {
                DatagramEvent::Reply(_) => replies += 1,
                DatagramEvent::Dropped(DropReason::ReplyRateLimited) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(replies, 10, "a burst of one second's worth");
        assert!(!e.may_reply(now), "the caller's refusals share it");
        let later = now + core::time::Duration::from_millis(500);
        let refilled = (0..10).filter(|_| e.may_reply(later)).count();
        assert_eq!(refilled, 5, "ten a second");
    }
}
