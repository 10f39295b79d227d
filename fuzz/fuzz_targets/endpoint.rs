//! The listening side (`tftp_proto::Endpoint`) driven by arbitrary datagrams from a few peers,
//! with sessions accepted and closed along the way. Checked: no panic; only requests are
//! answered; a datagram is routed only in single-port mode to a peer with a live session; a
//! duplicate only from a peer with a live session; the live count matches the accepted and
//! not yet closed sessions; answers stay within the reply budget.
#![no_main]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tftp_proto::{DatagramEvent, DropReason, Endpoint, EndpointConfig, SessionHandle};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let single_port = flags & 1 != 0;
    let budget = u32::from(flags >> 1) % 8;
    let config = EndpointConfig::default()
        .single_port(single_port)
        .replies_per_second(budget);
    let mut endpoint = Endpoint::new(config);
    let local: SocketAddr = "192.0.2.1:69".parse().unwrap();
    let start = Instant::now();
    let mut now = start;
    // Live sessions: handle → peer (the latest per peer is what the endpoint routes to).
    let mut live: BTreeMap<SessionHandle, SocketAddr> = BTreeMap::new();
    let mut latest: BTreeMap<SocketAddr, SessionHandle> = BTreeMap::new();
    let mut replies = 0u64;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        match op % 4 {
            // Time passes.
            0 => now += Duration::from_millis(u64::from(op) * 10),
            // Close the oldest live session.
            1 => {
                if let Some((&handle, &peer)) = live.iter().next() {
                    // It returns the client the session served, once.
                    assert_eq!(endpoint.closed(handle), Some(peer));
                    assert_eq!(endpoint.closed(handle), None);
                    live.remove(&handle);
                    if latest.get(&peer) == Some(&handle) {
                        latest.remove(&peer);
                    }
                }
            }
            // A datagram from one of 4 peers.
            _ => {
                let Some((&len, tail)) = rest.split_first() else {
                    return;
                };
                let len = usize::from(len).min(tail.len());
                let (datagram, tail) = tail.split_at(len);
                rest = tail;
                let peer = SocketAddr::from(([198, 51, 100, op >> 6], 1000 + u16::from(op >> 6)));
                let known = latest.get(&peer).copied();
                match endpoint.handle(now, local, peer, datagram) {
                    DatagramEvent::NewRequest {
                        request, replaces, ..
                    } => {
                        assert!(matches!(datagram, [0, 1 | 2, ..]));
                        assert_eq!(replaces, known, "replaces the peer's live session");
                        if op & 8 != 0 {
                            let handle = endpoint.accept(&request);
                            live.insert(handle, peer);
                            latest.insert(peer, handle);
                        }
                    }
                    DatagramEvent::ForSession(handle) => {
                        assert!(single_port, "routed in multi-port mode");
                        assert_eq!(Some(handle), known);
                        assert!(!matches!(datagram, [0, 1 | 2, ..]));
                    }
                    DatagramEvent::Reply(_) => {
                        assert!(matches!(datagram, [0, 1 | 2, ..]), "answered a non-request");
                        replies += 1;
                    }
                    DatagramEvent::Dropped(DropReason::Duplicate) => assert!(known.is_some()),
                    DatagramEvent::Dropped(_) => {}
                }
            }
        }
        assert_eq!(endpoint.sessions(), live.len());
    }
    // A burst of one second's worth, then `budget` a second.
    let seconds = now.saturating_duration_since(start).as_secs();
    assert!(
        replies <= u64::from(budget) * (seconds + 2),
        "{replies} replies"
    );
});
