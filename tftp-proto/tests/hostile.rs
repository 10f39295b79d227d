//! Hostile peers: what one forged or malformed datagram can cost a session. Each test is a
//! story of an attack, on a virtual clock, with the packets it may cause counted exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tftp_proto::packet::Packet;
use tftp_proto::testing::{CLIENT_ADDR, SERVER_ADDR, TRANSFER_ADDR};
use tftp_proto::{
    ClientSession, Config, ErrorCode, Event, IncomingRequest, Mode, OptionValues, Outcome, Output,
    ProtocolError, RequestKind, ServerSession, Session, TransferError,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn request(peer: SocketAddr, kind: RequestKind, options: OptionValues) -> IncomingRequest {
    IncomingRequest {
        peer,
        kind,
        filename: "f".into(),
        mode: Mode::Octet,
        options,
    }
}

fn ack(block: u16) -> Vec<u8> {
    let [a, b] = block.to_be_bytes();
    vec![0, 4, a, b]
}

fn data(block: u16, payload: &[u8]) -> Vec<u8> {
    let [a, b] = block.to_be_bytes();
    let mut p = vec![0, 3, a, b];
    p.extend_from_slice(payload);
    p
}

fn error(code: u16, message: &str) -> Vec<u8> {
    let mut p = vec![0, 5];
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(message.as_bytes());
    p.push(0);
    p
}

/// What a session did when drained: datagrams (destination, bytes), fills asked, outcome.
#[derive(Default)]
struct Drained {
    sent: Vec<(SocketAddr, Vec<u8>)>,
    fills: usize,
    finished: Option<Outcome>,
}

/// Drain `s`, filling from `source` (taking at most `fill_limit` fills).
fn drain<R>(s: &mut Session<R>, now: Instant, source: &mut &[u8]) -> Drained {
    let mut d = Drained::default();
    for _ in 0..10_000 {
        match s.poll_output(now) {
            Output::Transmit(t) => {
                for datagram in t.datagrams() {
                    d.sent.push((t.destination, datagram.to_vec()));
                }
            }
            Output::Fill(fill) => {
                d.fills += 1;
                if source.is_empty() {
                    fill.finish()
                } else {
                    let n = fill.write(source);
                    *source = &source[n..];
                }
            }
            Output::Store(store) => store.stored(),
            Output::Event(Event::Finished(stats)) => d.finished = stats.outcome,
            Output::Event(_) => {}
            Output::Wait(_) | Output::Closed => return d,
        }
    }
    panic!("a session that never stops producing output");
}

fn windowed(blksize: u16, windowsize: u16) -> OptionValues {
    OptionValues {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: Some(0),
        ..OptionValues::default()
    }
}

/// Two server sessions mid-transfer, A at `a_addr` serving one client and B at `b_addr`
/// serving another. An attacker sends one datagram to B with A's address as its source. Every
/// datagram either sends to the other is delivered; returns how many went back and forth.
fn ping_pong(spoofed: &[u8]) -> usize {
    let now = Instant::now();
    let (a_addr, b_addr) = (addr("192.0.2.1:50000"), addr("192.0.2.1:50001"));
    let config = Config::default();
    let file = [7u8; 4096];
    let mut a = ServerSession::new(
        &request(
            addr("192.0.2.10:1000"),
            RequestKind::Read,
            OptionValues::default(),
        ),
        &config,
        Some(file.len() as u64),
        now,
    );
    let mut b = ServerSession::new(
        &request(
            addr("192.0.2.11:1000"),
            RequestKind::Read,
            OptionValues::default(),
        ),
        &config,
        Some(file.len() as u64),
        now,
    );
    let _ = drain(&mut a, now, &mut &file[..]);
    let _ = drain(&mut b, now, &mut &file[..]);
    // (from, to, bytes)
    let mut wire = vec![(a_addr, b_addr, spoofed.to_vec())];
    let mut delivered = 0;
    while let Some((from, to, bytes)) = wire.pop() {
        delivered += 1;
        if delivered > 1_000 {
            break;
        }
        let (session, here) = if to == a_addr {
            (&mut a, a_addr)
        } else {
            (&mut b, b_addr)
        };
        session.handle_datagram(now, from, &bytes);
        for (dest, out) in drain(session, now, &mut &[][..]).sent {
            if dest == a_addr || dest == b_addr {
                wire.push((here, dest, out));
            }
        }
    }
    // The spoofed datagram itself is not an answer.
    delivered - 1
}

#[test]
fn one_spoofed_datagram_between_two_sessions_does_not_loop() {
    // CVE-2024-2169: B answers the stranger with ERROR 5; A must not answer that ERROR.
    assert!(ping_pong(&ack(1)) <= 1, "an ACK from a stranger");
    assert_eq!(ping_pong(&error(5, "Unknown transfer ID")), 0, "an ERROR");
    assert_eq!(ping_pong(&data(1, b"x")), 1, "a DATA");
    assert_eq!(ping_pong(b"\0\x09garbage"), 0, "garbage");
}

#[test]
fn a_client_never_answers_a_strangers_error() {
    let now = Instant::now();
    let mut client = ClientSession::get(
        SERVER_ADDR,
        "f",
        Mode::Octet,
        OptionValues::default(),
        &Config::default(),
        now,
    )
    .unwrap();
    let _ = drain(&mut client, now, &mut &[][..]);
    client.handle_datagram(now, TRANSFER_ADDR, &data(1, &[1; 512]));
    let _ = drain(&mut client, now, &mut &[][..]);
    client.handle_datagram(now, addr("192.0.2.77:9"), &error(5, "Unknown transfer ID"));
    assert!(drain(&mut client, now, &mut &[][..]).sent.is_empty());
    assert_eq!(client.stats().stray_packets, 1);
}

#[test]
fn strangers_get_at_most_three_answers_one_per_second() {
    let now = Instant::now();
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Read, OptionValues::default()),
        &Config::default(),
        Some(100_000),
        now,
    );
    let _ = drain(&mut s, now, &mut &[1u8; 100_000][..]);
    let mut answers = 0;
    // A flood of 100 stray ACKs a second for ten seconds, from many addresses; the client
    // keeps the transfer alive meanwhile.
    for second in 0..10u64 {
        for i in 0..100u16 {
            let t = now + Duration::from_millis(second * 1000 + u64::from(i) * 10);
            let from = SocketAddr::new([198, 51, 100, (i % 250) as u8].into(), 1000 + i);
            s.handle_datagram(t, from, &ack(1));
            answers += drain(&mut s, t, &mut &[][..]).sent.len();
        }
    }
    assert_eq!(answers, 3);
    assert_eq!(s.stats().stray_packets, 1000);
}

#[test]
fn a_never_acknowledged_windowed_request_pins_no_window() {
    // blksize 65464 × windowsize 64 is a 4 MiB window. A spoofed RRQ never sends ACK 0: only
    // the OACK may go out, no source byte may be read, and the session must stay small.
    let now = Instant::now();
    let mut config = Config::default();
    config.limits.max_window_bytes = 64 << 20;
    let before = counting_alloc::live_bytes();
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Read, windowed(65464, 64)),
        &config,
        Some(100 << 20),
        now,
    );
    let d = drain(&mut s, now, &mut &[0u8; 1 << 20][..]);
    let pinned = counting_alloc::live_bytes() - before;
    assert_eq!(d.sent.len(), 1, "the OACK alone");
    assert!(matches!(Packet::decode(&d.sent[0].1), Ok(Packet::Oack(_))));
    assert_eq!(d.fills, 0, "no source byte before ACK 0");
    assert!(
        pinned < 4096,
        "{pinned} bytes pinned by a never-acknowledged request"
    );
    assert_eq!(s.max_datagram_len(), 517, "only control packets can arrive");
    // ACK 0 starts the window.
    s.handle_datagram(now, CLIENT_ADDR, &ack(0));
    let d = drain(&mut s, now, &mut &[0u8; 1 << 20][..]);
    assert!(d.fills > 0);
    assert_eq!(
        d.sent.len(),
        17,
        "1 MiB in 65464-byte blocks, the last short"
    );
    drop(s);
}

#[test]
fn a_spoofed_write_request_pins_no_window() {
    let now = Instant::now();
    let mut config = Config::default();
    config.limits.max_window_bytes = 64 << 20;
    let before = counting_alloc::live_bytes();
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Write, windowed(65464, 64)),
        &config,
        None,
        now,
    );
    let d = drain(&mut s, now, &mut &[][..]);
    let pinned = counting_alloc::live_bytes() - before;
    assert_eq!(d.sent.len(), 1, "the OACK alone");
    assert!(
        pinned < 4096,
        "{pinned} bytes pinned by a never-answered write request"
    );
    assert_eq!(s.max_datagram_len(), 4 + 65464 + 1);
}

#[test]
fn a_download_cut_short_of_its_tsize_fails() {
    // A receive buffer smaller than the negotiated block (or a middlebox) cuts DATA 1 to 512
    // bytes: that looks like the last block. The OACK said 1 MiB: it is not a success.
    let now = Instant::now();
    let asked = OptionValues {
        blksize: Some(1468),
        tsize: Some(0),
        ..OptionValues::default()
    };
    let mut client = ClientSession::get(
        SERVER_ADDR,
        "f",
        Mode::Octet,
        asked,
        &Config::default(),
        now,
    )
    .unwrap();
    let _ = drain(&mut client, now, &mut &[][..]);
    client.handle_datagram(
        now,
        TRANSFER_ADDR,
        b"\0\x06blksize\x001468\0tsize\x001048576\0",
    );
    let _ = drain(&mut client, now, &mut &[][..]);
    client.handle_datagram(now, TRANSFER_ADDR, &data(1, &[0; 512]));
    let d = drain(&mut client, now, &mut &[][..]);
    assert_eq!(
        d.finished,
        Some(Outcome::Failed(TransferError::SizeMismatch {
            expected: 1 << 20,
            actual: 512
        }))
    );
    assert!(
        d.sent.iter().all(|(_, p)| p[..2] == [0, 5]),
        "an ERROR, never the final ACK: {:?}",
        d.sent
    );
}

#[test]
fn an_upload_that_differs_from_its_tsize_fails() {
    let now = Instant::now();
    let asked = OptionValues {
        tsize: Some(3000),
        ..OptionValues::default()
    };
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Write, asked),
        &Config::default(),
        None,
        now,
    );
    let _ = drain(&mut s, now, &mut &[][..]);
    s.handle_datagram(now, CLIENT_ADDR, &data(1, &[1; 100]));
    let d = drain(&mut s, now, &mut &[][..]);
    assert!(matches!(
        d.finished,
        Some(Outcome::Failed(TransferError::SizeMismatch {
            expected: 3000,
            actual: 100
        }))
    ));
}

#[test]
fn a_source_that_shrinks_or_grows_is_not_sent_as_complete() {
    for (announced, real) in [(10_000usize, 5_000usize), (1_000, 5_000), (1_024, 0)] {
        let now = Instant::now();
        let mut s = ServerSession::new(
            &request(CLIENT_ADDR, RequestKind::Read, OptionValues::default()),
            &Config::default(),
            Some(announced as u64),
            now,
        );
        let file = vec![9u8; real];
        let mut source = &file[..];
        let mut finished = None;
        let mut last_data_len = None;
        for block in 1..100u16 {
            let d = drain(&mut s, now, &mut source);
            for (_, p) in &d.sent {
                if p[..2] == [0, 3] {
                    last_data_len = Some(p.len() - 4);
                }
            }
            if d.finished.is_some() {
                finished = d.finished;
                break;
            }
            s.handle_datagram(now, CLIENT_ADDR, &ack(block));
        }
        assert!(
            matches!(
                finished,
                Some(Outcome::Failed(TransferError::SizeMismatch { .. }))
            ),
            "{announced} announced, {real} real: {finished:?}"
        );
        assert_eq!(
            last_data_len,
            (real >= 512).then_some(512),
            "no short last block"
        );
    }
}

#[test]
fn the_receive_buffer_size_is_said_and_an_oversized_block_is_seen() {
    let now = Instant::now();
    let asked = OptionValues {
        blksize: Some(1468),
        ..OptionValues::default()
    };
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Write, asked),
        &Config::default(),
        None,
        now,
    );
    let _ = drain(&mut s, now, &mut &[][..]);
    let len = s.max_datagram_len();
    assert_eq!(len, 4 + 1468 + 1);
    // A 1500-byte payload read into a buffer of that size arrives cut to 1469 bytes: still
    // more than a block, so a protocol error, not a full block of the wrong bytes.
    let big = data(1, &[3; 1500]);
    s.handle_datagram(now, CLIENT_ADDR, &big[..len]);
    let d = drain(&mut s, now, &mut &[][..]);
    assert!(matches!(
        d.finished,
        Some(Outcome::Failed(TransferError::Protocol(
            ProtocolError::BlockTooLarge { .. }
        )))
    ));
}

#[test]
fn a_long_error_cut_by_the_buffer_is_still_the_peers_error() {
    // At blksize 8 the receive buffer is 517 bytes; a client's 1,000-byte ERROR arrives cut.
    let now = Instant::now();
    let mut s = ServerSession::new(
        &request(CLIENT_ADDR, RequestKind::Read, OptionValues::default()),
        &Config::default(),
        Some(100_000),
        now,
    );
    let _ = drain(&mut s, now, &mut &[0u8; 100_000][..]);
    let long = error(0, &"x".repeat(1000));
    s.handle_datagram(now, CLIENT_ADDR, &long[..s.max_datagram_len()]);
    let d = drain(&mut s, now, &mut &[][..]);
    match d.finished {
        Some(Outcome::Failed(TransferError::Peer { code, message })) => {
            assert_eq!(code, ErrorCode::NOT_DEFINED);
            assert_eq!(message.len(), 513);
        }
        other => panic!("{other:?}"),
    }
    assert!(d.sent.is_empty(), "an ERROR is never answered");
}

#[test]
fn an_unterminated_oack_fails_the_client_at_once() {
    let now = Instant::now();
    let asked = OptionValues {
        blksize: Some(1468),
        ..OptionValues::default()
    };
    let mut client = ClientSession::get(
        SERVER_ADDR,
        "f",
        Mode::Octet,
        asked,
        &Config::default(),
        now,
    )
    .unwrap();
    let _ = drain(&mut client, now, &mut &[][..]);
    client.handle_datagram(now, TRANSFER_ADDR, b"\0\x06blksize\x001468");
    let d = drain(&mut client, now, &mut &[][..]);
    assert!(
        matches!(
            d.finished,
            Some(Outcome::Failed(TransferError::Protocol(
                ProtocolError::Malformed(_)
            )))
        ),
        "{:?}",
        d.finished
    );
}
