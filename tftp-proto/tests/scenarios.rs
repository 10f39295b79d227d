//! Scenario tests: a client and a server session on a simulated link with a virtual clock.
//! Each test reads as a story about the network; none sleeps or touches a socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tftp_proto::packet::{Options, Packet};
use tftp_proto::testing::{
    CLIENT_ADDR, LinkConfig, Pair, PairConfig, Report, Rng, SERVER_ADDR, TRANSFER_ADDR, Verdict,
    Way,
};
use tftp_proto::{
    ClientSession, Config, ErrorCode, Event, IncomingRequest, Mode, OptionLimits, OptionValues,
    Outcome, Output, ProtocolError, Rollover, ServerSession, TimeoutPolicy, TransferError,
};

fn random_file(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

fn opts(blksize: u16, windowsize: u16) -> OptionValues {
    OptionValues {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: Some(0),
        ..OptionValues::default()
    }
}

fn patient() -> Config {
    let mut c = Config::default();
    c.retries = 30;
    // At 20% loss the final ACK is often lost, and the sender's retransmission of the last
    // block may come seconds later: dally long enough to answer it.
    c.dally = Duration::from_secs(30);
    c
}

fn assert_success(report: &Report, file: &[u8], what: &str) {
    assert!(!report.timed_out, "{what}: ran out of virtual time");
    assert!(
        report.client.is_success(),
        "{what}: client {:?}",
        report.client.outcome
    );
    let server = report.server.as_ref().expect("server session");
    assert!(server.is_success(), "{what}: server {:?}", server.outcome);
    assert!(
        report.received.len() == file.len() && report.received == file,
        "{what}: data differs"
    );
}

fn is_data(bytes: &[u8]) -> bool {
    matches!(Packet::decode(bytes), Ok(Packet::Data { .. }))
}

#[test]
fn random_payloads_arrive_byte_exact_under_loss() {
    let sizes = [0usize, 1, 511, 512, 513, 1468 * 3, 100_000];
    let mut seed = 0;
    for &loss in &[0.0, 0.05, 0.2] {
        for &(blksize, window) in &[(512u16, 1u16), (1468, 1), (1468, 4), (512, 16)] {
            for &size in &sizes {
                for (get, seekable_source) in
                    [(true, false), (true, true), (false, false), (false, true)]
                {
                    seed += 1;
                    let file = random_file(size, seed);
                    let config = PairConfig {
                        file: file.clone(),
                        seekable_source,
                        asked: opts(blksize, window),
                        client: patient(),
                        server: patient(),
                        link: LinkConfig {
                            loss,
                            duplicate: loss / 4.0,
                            reorder: loss / 4.0,
                            seed,
                            ..LinkConfig::default()
                        },
                        ..PairConfig::default()
                    };
                    let mut pair = if get {
                        Pair::get(config)
                    } else {
                        Pair::put(config)
                    };
                    let report = pair.run();
                    let what = format!(
                        "get={get} seekable={seekable_source} size={size} blksize={blksize} window={window} loss={loss}"
                    );
                    assert_success(&report, &file, &what);
                }
            }
        }
    }
}

#[test]
fn seventy_thousand_blocks_roll_over_under_loss() {
    for (i, &loss) in [0.0, 0.05, 0.2].iter().enumerate() {
        for rollover in [Rollover::ToZero, Rollover::ToOne] {
            for window in [1u16, 8] {
                let file = random_file(70_000 * 8 + 3, i as u64);
                let mut config = patient();
                config.rollover = rollover;
                let report = Pair::get(PairConfig {
                    file: file.clone(),
                    asked: opts(8, window),
                    client: config.clone(),
                    server: config,
                    link: LinkConfig {
                        loss,
                        seed: 99 + i as u64,
                        ..LinkConfig::default()
                    },
                    ..PairConfig::default()
                })
                .run();
                assert_success(
                    &report,
                    &file,
                    &format!("{rollover:?} loss={loss} w={window}"),
                );
                assert_eq!(report.server.unwrap().blocks, 70_001);
            }
        }
    }
}

#[test]
fn exact_multiple_of_blksize_ends_with_an_empty_block() {
    let file = random_file(512 * 4, 3);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        filter: Some(Box::new(move |way, _, bytes| {
            if way == Way::ToClient {
                if let Ok(Packet::Data { data, .. }) = Packet::decode(bytes) {
                    assert!(data.len() == 512 || data.is_empty());
                }
            }
            Verdict::Pass
        })),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "multiple");
    assert_eq!(report.server.unwrap().blocks, 5);
}

#[test]
fn a_duplicate_ack_never_triggers_a_resend() {
    // Every datagram from the client arrives twice: the server must ignore the copies
    // (RFC 1123 §4.2.3.1, Sorcerer's Apprentice), not answer each with another DATA.
    let file = random_file(512 * 10, 4);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        link: LinkConfig {
            duplicate: 1.0,
            ..LinkConfig::default()
        },
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "dup acks");
    let server = report.server.unwrap();
    assert_eq!(server.retransmissions, 0);
    assert_eq!(
        server.packets_sent, 11,
        "10 full blocks and an empty one, each once"
    );
    assert!(server.duplicates >= 10);
}

#[test]
fn a_lost_data_is_resent_only_when_the_timer_fires() {
    // Drop the third DATA. Nothing can recover it but the server's timeout.
    let file = random_file(512 * 6, 5);
    let mut data_seen = 0;
    let report = Pair::get(PairConfig {
        file: file.clone(),
        link: LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        },
        filter: Some(Box::new(move |way, _, bytes| {
            if way == Way::ToClient && is_data(bytes) {
                data_seen += 1;
                if data_seen == 3 {
                    return Verdict::Drop;
                }
            }
            Verdict::Pass
        })),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "drop third");
    let server = report.server.unwrap();
    assert_eq!(server.retransmissions, 1);
    // The round trip is 2 ms, so the adaptive timer is the round trip plus its 50 ms
    // margin: recovery costs about that, not the 1 s initial timeout.
    assert!(
        server.duration() >= Duration::from_millis(50)
            && server.duration() < Duration::from_millis(200),
        "{:?}",
        server.duration()
    );
}

#[test]
fn retries_are_bounded_then_the_transfer_times_out() {
    let file = random_file(2000, 6);
    let mut config = Config::default();
    config.retries = 4;
    config.give_up_after = Duration::ZERO;
    let report = Pair::get(PairConfig {
        file,
        server: config,
        // The client vanishes after its request.
        filter: Some(Box::new(|way, n, _| {
            if way == Way::ToServer && n > 0 {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })),
        ..PairConfig::default()
    })
    .run();
    let server = report.server.unwrap();
    assert_eq!(
        server.outcome,
        Some(Outcome::Failed(TransferError::TimedOut { retries: 4 }))
    );
    assert_eq!(
        server.packets_sent, 5,
        "DATA 1 and four retransmissions, nothing more"
    );
    assert_eq!(server.retransmissions, 4);
}

#[test]
fn a_silent_peer_gets_patience_then_a_bounded_number_of_packets() {
    // A peer that stops answering right after the first DATA: the server keeps trying until
    // both its retries are spent and `give_up_after` has passed without progress, backing off
    // to `max_timeout` between attempts — so a client that restarts a 5 s timer on each
    // repeated block (atftp) still gets a quiet gap longer than its timer.
    let file = random_file(2000, 7);
    let mut config = Config::default();
    config.retries = 3;
    config.give_up_after = Duration::from_secs(12);
    config.initial_timeout = Duration::from_millis(50);
    let sent = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = sent.clone();
    let mut pair = Pair::get(PairConfig {
        file,
        server: config.clone(),
        filter: Some(Box::new(move |way, n, _| {
            if way == Way::ToClient {
                log.borrow_mut().push(n);
            }
            if way == Way::ToServer && n > 0 {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })),
        ..PairConfig::default()
    });
    let report = pair.run();
    let server = report.server.unwrap();
    assert!(matches!(
        server.outcome,
        Some(Outcome::Failed(TransferError::TimedOut { .. }))
    ));
    let took = server.duration();
    assert!(
        took >= Duration::from_secs(12) && took < Duration::from_secs(12) + config.max_timeout * 2,
        "{took:?}"
    );
    // 50, 100, 200, ... ms, up to 8 s: a gap longer than 5 s comes before giving up, and
    // the number of packets stays small.
    assert!(
        server.packets_sent <= 1 + 3 + 12_000 / 50,
        "{}",
        server.packets_sent
    );
    assert!(
        server.packets_sent < 15,
        "{} packets to a silent peer",
        server.packets_sent
    );
}

#[test]
fn the_timeout_option_fixes_the_retransmission_interval() {
    // One DATA lost. With the adaptive timer recovery takes tens of milliseconds; when the
    // server honours `timeout 2`, it waits exactly 2 s (RFC 2349).
    let run = |policy: TimeoutPolicy| {
        let file = random_file(512 * 20, 7);
        let mut server = Config::default();
        server.limits = OptionLimits {
            timeout: policy,
            ..OptionLimits::default()
        };
        let mut n = 0;
        let report = Pair::get(PairConfig {
            file: file.clone(),
            asked: OptionValues {
                timeout: Some(2),
                ..OptionValues::default()
            },
            server,
            filter: Some(Box::new(move |way, _, bytes| {
                if way == Way::ToClient && is_data(bytes) {
                    n += 1;
                    if n == 10 {
                        return Verdict::Drop;
                    }
                }
                Verdict::Pass
            })),
            ..PairConfig::default()
        })
        .run();
        assert_success(&report, &file, "timeout");
        report.server.unwrap()
    };
    let adaptive = run(TimeoutPolicy::Adaptive);
    assert_eq!(adaptive.options.timeout, None);
    assert!(
        adaptive.duration() < Duration::from_millis(200),
        "{:?}",
        adaptive.duration()
    );
    let fixed = run(TimeoutPolicy::Honour);
    assert_eq!(fixed.options.timeout, Some(2));
    assert!(
        fixed.duration() >= Duration::from_secs(2),
        "{:?}",
        fixed.duration()
    );
    assert!(
        fixed.duration() < Duration::from_millis(2100),
        "{:?}",
        fixed.duration()
    );
}

#[test]
fn a_gap_in_a_window_resends_from_the_block_after_the_ack() {
    // Window of 4; block 2 is lost. The client sees 1, 3 and acknowledges 1 at once; the
    // server goes back to 2 without waiting for a timeout (RFC 7440).
    let file = random_file(512 * 12, 8);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        asked: opts(512, 4),
        link: LinkConfig {
            delay: Duration::from_millis(1),
            ..LinkConfig::default()
        },
        filter: Some(Box::new(|way, _, bytes| match Packet::decode(bytes) {
            Ok(Packet::Data { block: 2, .. }) if way == Way::ToClient => {
                // Drop only the first copy.
                static DROPPED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !DROPPED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                }
            }
            _ => Verdict::Pass,
        })),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "gap");
    let server = report.server.unwrap();
    assert!(server.retransmissions >= 1);
    assert!(
        server.duration() < Duration::from_millis(50),
        "recovered by the gap ACK, not the timer: {:?}",
        server.duration()
    );
}

#[test]
fn a_window_is_sent_whole_then_the_sender_waits() {
    let now = Instant::now();
    let asked = opts(512, 4);
    let request = request(asked);
    let file = random_file(512 * 10, 9);
    let mut server = ServerSession::new(&request, &Config::default(), Some(file.len() as u64), now);
    let mut source = &file[..];
    let sent = drain(&mut server, now, &mut source);
    assert!(matches!(Packet::decode(&sent[0]), Ok(Packet::Oack(_))));
    server.handle_datagram(now, CLIENT_ADDR, &ack(0));
    let sent = drain(&mut server, now, &mut source);
    assert_eq!(blocks(&sent), [1, 2, 3, 4], "a whole window, then nothing");
    server.handle_datagram(now, CLIENT_ADDR, &ack(4));
    let sent = drain(&mut server, now, &mut source);
    assert_eq!(blocks(&sent), [5, 6, 7, 8]);
    // An ACK for 6: the receiver missed 7. Go back to 7; the window now reaches 10.
    server.handle_datagram(now, CLIENT_ADDR, &ack(6));
    let sent = drain(&mut server, now, &mut source);
    assert_eq!(blocks(&sent), [7, 8, 9, 10]);
    // A late duplicate of ACK 4 changes nothing.
    server.handle_datagram(now, CLIENT_ADDR, &ack(4));
    assert!(drain(&mut server, now, &mut source).is_empty());
}

/// What a batching server session asks for after ACK 0, in order: `F` a block to fill,
/// `T<n>` a transmit of `n` DATA packets.
fn batch_trace(blksize: u16, windowsize: u16, max_batch: usize) -> Vec<String> {
    let now = Instant::now();
    let mut config = Config::default().max_batch(max_batch);
    config.limits.max_window_bytes = 8 << 20;
    let file = random_file(usize::from(blksize) * usize::from(windowsize) * 2, 5);
    let mut server = ServerSession::new(
        &request(opts(blksize, windowsize)),
        &config,
        Some(file.len() as u64),
        now,
    );
    let mut source = &file[..];
    let oack = drain(&mut server, now, &mut source);
    assert!(matches!(Packet::decode(&oack[0]), Ok(Packet::Oack(_))));
    server.handle_datagram(now, CLIENT_ADDR, &ack(0));
    let mut trace = Vec::new();
    loop {
        match server.poll_output(now) {
            Output::Transmit(t) => trace.push(format!("T{}", t.datagrams().count())),
            Output::Fill(fill) => {
                trace.push("F".to_string());
                let n = fill.write(source);
                source = &source[n..];
            }
            Output::Event(_) => {}
            Output::Wait(_) | Output::Closed | Output::Store(_) => return trace,
        }
    }
}

/// `F` `n` times then `T<n>`, as many times as given.
fn fill_then_send(batches: &[usize]) -> Vec<String> {
    let mut trace = Vec::new();
    for &n in batches {
        trace.extend(std::iter::repeat_n("F".to_string(), n));
        trace.push(format!("T{n}"));
    }
    trace
}

#[test]
fn a_big_window_is_filled_and_sent_a_batch_at_a_time() {
    // 64 blocks of 65464 bytes: 4 MiB, more than a core's L2 cache. Each block goes out
    // right after it is read (a batch holds one block of this size), while its bytes are
    // still in cache; filling the whole window first read 4 MiB before sending any.
    assert_eq!(batch_trace(65464, 64, 64), fill_then_send(&[1; 64]));
    // 1468-byte blocks: a batch is 44 of them (65,000 bytes, one UDP GSO send).
    assert_eq!(batch_trace(1468, 64, 64), fill_then_send(&[44, 20]));
    // A window smaller than a batch is filled whole, then sent in one transmit.
    assert_eq!(batch_trace(512, 8, 64), fill_then_send(&[8]));
    // 8192-byte blocks: 7 a batch; the window's last 2 make the last one.
    assert_eq!(batch_trace(8192, 16, 64), fill_then_send(&[7, 7, 2]));
    // Without batching, each block is sent as soon as it is filled.
    assert_eq!(batch_trace(1468, 8, 1), fill_then_send(&[1; 8]));
}

#[test]
fn the_receiver_dallies_and_reacks_a_repeated_last_data() {
    // The client's final ACK is lost; the server resends the last DATA; the dallying client
    // acknowledges it again, and both sides complete.
    let file = random_file(1000, 10);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        filter: Some(Box::new(|way, n, bytes| {
            // ToServer: 0 RRQ, 1 ACK 1, 2 ACK 2 (final).
            if way == Way::ToServer && n == 2 {
                assert_eq!(Packet::decode(bytes), Ok(Packet::Ack { block: 2 }));
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "dally");
    assert_eq!(report.server.unwrap().retransmissions, 1);
    assert_eq!(report.sent_to_server, 4, "RRQ, ACK 1, ACK 2, ACK 2 again");
}

#[test]
fn a_stranger_gets_error_5_and_the_transfer_goes_on() {
    let stranger: SocketAddr = "192.0.2.99:1234".parse().unwrap();
    let file = random_file(512 * 8, 11);
    let mut error5 = 0;
    let mut pair = Pair::get(PairConfig {
        file: file.clone(),
        filter: Some(Box::new(move |way, _, bytes| {
            if way == Way::ToClient
                && matches!(
                    Packet::decode(bytes),
                    Ok(Packet::Error {
                        code: ErrorCode::UNKNOWN_TRANSFER_ID,
                        ..
                    })
                )
            {
                error5 += 1;
                assert_eq!(error5, 1);
            }
            Verdict::Pass
        })),
        ..PairConfig::default()
    });
    for _ in 0..6 {
        pair.step();
    }
    // A stray ACK at the server's transfer port, and a stray DATA at the client from the
    // server's address but another port.
    pair.inject(stranger, TRANSFER_ADDR, &ack(3));
    let wrong_port: SocketAddr = "192.0.2.1:50001".parse().unwrap();
    pair.inject(wrong_port, CLIENT_ADDR, b"\x00\x03\x00\x04junk");
    let report = pair.run();
    assert_success(&report, &file, "stray");
    assert_eq!(report.server.unwrap().stray_packets, 1);
    assert_eq!(report.client.stray_packets, 1);
}

#[test]
fn an_error_after_the_oack_is_a_size_probe() {
    for (asked, expect_probe) in [
        (opts(1468, 4), true),
        (
            OptionValues {
                blksize: Some(1468),
                ..Default::default()
            },
            false,
        ),
    ] {
        let now = Instant::now();
        let mut server = ServerSession::new(&request(asked), &Config::default(), Some(4096), now);
        let sent = drain(&mut server, now, &mut &[0u8; 4096][..]);
        assert!(matches!(Packet::decode(&sent[0]), Ok(Packet::Oack(_))));
        let mut buf = [0u8; 32];
        let n = Packet::Error {
            code: ErrorCode::OPTION_REFUSED,
            message: "size check",
        }
        .encode(&mut buf)
        .unwrap();
        server.handle_datagram(now, CLIENT_ADDR, &buf[..n]);
        let stats = finished(&mut server, now);
        if expect_probe {
            assert_eq!(stats.outcome, Some(Outcome::SizeProbe));
            assert!(stats.is_success());
        } else {
            assert!(matches!(
                stats.outcome,
                Some(Outcome::Failed(TransferError::Peer {
                    code: ErrorCode::OPTION_REFUSED,
                    ..
                }))
            ));
        }
        assert!(server.is_closed());
    }
}

#[test]
fn netascii_is_translated_both_ways() {
    let text = b"line one\nline two\r\nbare\rcr\n\n".repeat(100);
    for get in [true, false] {
        for window in [1, 3] {
            let config = PairConfig {
                file: text.clone(),
                mode: Mode::Netascii,
                asked: opts(16, window),
                link: LinkConfig {
                    loss: 0.1,
                    seed: 12,
                    ..LinkConfig::default()
                },
                client: patient(),
                server: patient(),
                ..PairConfig::default()
            };
            let report = if get {
                Pair::get(config)
            } else {
                Pair::put(config)
            }
            .run();
            assert_success(&report, &text, &format!("netascii get={get} w={window}"));
        }
    }
}

#[test]
fn netascii_wire_form_uses_cr_lf_and_cr_nul() {
    let text = b"a\nb\rc".to_vec();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen2 = seen.clone();
    let report = Pair::get(PairConfig {
        file: text.clone(),
        mode: Mode::Netascii,
        filter: Some(Box::new(move |way, _, bytes| {
            if way == Way::ToClient {
                if let Ok(Packet::Data { data, .. }) = Packet::decode(bytes) {
                    seen2.borrow_mut().extend_from_slice(data);
                }
            }
            Verdict::Pass
        })),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &text, "wire form");
    assert_eq!(&seen.borrow()[..], b"a\r\nb\r\0c");
}

#[test]
fn session_statistics_add_up() {
    let file = random_file(1468 * 10 + 100, 13);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        asked: opts(1468, 4),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "stats");
    let server = report.server.unwrap();
    assert_eq!(server.bytes, file.len() as u64);
    assert_eq!(server.blocks, 11);
    assert_eq!(server.options.blksize, 1468);
    assert_eq!(server.options.windowsize, 4);
    assert_eq!(server.options.tsize, Some(file.len() as u64));
    assert_eq!(server.packets_sent, 1 + 11, "OACK and 11 DATA");
    assert_eq!(
        server.packets_received,
        1 + 3,
        "ACK 0 and one ACK per window (4, 8, 11)"
    );
    assert_eq!(
        server.retransmissions + server.duplicates + server.stray_packets,
        0
    );
    assert!(server.finished >= server.started);
    let client = report.client;
    assert_eq!(client.bytes, file.len() as u64);
    assert_eq!(client.blocks, 11);
    assert_eq!(client.options, server.options);
}

#[test]
fn the_client_refuses_an_oack_it_did_not_ask_for() {
    let now = Instant::now();
    let asked = OptionValues {
        blksize: Some(512),
        ..Default::default()
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
    let pairs = [("blksize", "1024")];
    let mut buf = [0u8; 64];
    let n = Packet::Oack(Options::from_pairs(&pairs))
        .encode(&mut buf)
        .unwrap();
    client.handle_datagram(now, TRANSFER_ADDR, &buf[..n]);
    let sent = drain(&mut client, now, &mut &[][..]);
    assert!(matches!(
        Packet::decode(&sent[0]),
        Ok(Packet::Error {
            code: ErrorCode::OPTION_REFUSED,
            ..
        })
    ));
    assert!(matches!(
        client.outcome(),
        Some(Outcome::Failed(TransferError::Protocol(
            ProtocolError::BadOack(_)
        )))
    ));
}

#[test]
fn a_server_that_ignores_options_gets_plain_rfc1350() {
    let file = random_file(3000, 14);
    let mut server = Config::default();
    server.limits = OptionLimits {
        blksize: false,
        windowsize: false,
        tsize: false,
        ..OptionLimits::default()
    };
    let report = Pair::get(PairConfig {
        file: file.clone(),
        asked: opts(1468, 8),
        server,
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "plain");
    assert_eq!(report.client.options.blksize, 512);
    assert_eq!(report.client.options.windowsize, 1);
}

#[test]
fn an_oversized_block_is_a_protocol_error() {
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
    let mut big = vec![0u8, 3, 0, 1];
    big.extend_from_slice(&[0u8; 513]);
    client.handle_datagram(now, TRANSFER_ADDR, &big);
    let sent = drain(&mut client, now, &mut &[][..]);
    assert!(matches!(
        Packet::decode(&sent[0]),
        Ok(Packet::Error {
            code: ErrorCode::ILLEGAL_OPERATION,
            ..
        })
    ));
    assert!(matches!(
        client.outcome(),
        Some(Outcome::Failed(TransferError::Protocol(
            ProtocolError::BlockTooLarge { .. }
        )))
    ));
}

#[test]
fn uploads_beyond_the_size_limit_get_error_3() {
    let file = random_file(10_000, 15);
    let mut server = Config::default();
    server.max_transfer_size = Some(5000);
    // Announced with tsize: refused before any data.
    let report = Pair::put(PairConfig {
        file: file.clone(),
        asked: opts(512, 1),
        server: server.clone(),
        ..PairConfig::default()
    })
    .run();
    let s = report.server.unwrap();
    assert_eq!(
        s.outcome,
        Some(Outcome::Failed(TransferError::TooLarge { limit: 5000 }))
    );
    assert_eq!(s.bytes, 0);
    assert!(matches!(
        report.client.outcome,
        Some(Outcome::Failed(TransferError::Peer {
            code: ErrorCode::DISK_FULL,
            ..
        }))
    ));
    // Not announced: refused once the limit is crossed, having stored no more than it.
    let report = Pair::put(PairConfig {
        file,
        server,
        ..PairConfig::default()
    })
    .run();
    let s = report.server.unwrap();
    assert_eq!(
        s.outcome,
        Some(Outcome::Failed(TransferError::TooLarge { limit: 5000 }))
    );
    assert!(s.bytes <= 5000);
    assert!(matches!(
        report.client.outcome,
        Some(Outcome::Failed(TransferError::Peer {
            code: ErrorCode::DISK_FULL,
            ..
        }))
    ));
}

#[test]
fn a_spurious_timeout_is_a_no_op() {
    let now = Instant::now();
    let mut server = ServerSession::new(
        &request(OptionValues::default()),
        &Config::default(),
        Some(100),
        now,
    );
    let sent = drain(&mut server, now, &mut &[1u8; 100][..]);
    assert_eq!(blocks(&sent), [1]);
    let deadline = server.poll_timeout().unwrap();
    server.handle_timeout(deadline - Duration::from_millis(1));
    assert!(drain(&mut server, now, &mut &[][..]).is_empty());
    server.handle_timeout(deadline);
    assert_eq!(blocks(&drain(&mut server, deadline, &mut &[][..])), [1]);
    assert_eq!(server.stats().retransmissions, 1);
}

#[test]
fn an_ack_zero_repeated_by_a_slow_client_is_ignored() {
    let now = Instant::now();
    let mut server =
        ServerSession::new(&request(opts(512, 1)), &Config::default(), Some(2000), now);
    let mut src = &[7u8; 2000][..];
    drain(&mut server, now, &mut src);
    server.handle_datagram(now, CLIENT_ADDR, &ack(0));
    assert_eq!(blocks(&drain(&mut server, now, &mut src)), [1]);
    server.handle_datagram(now, CLIENT_ADDR, &ack(0));
    assert!(drain(&mut server, now, &mut src).is_empty());
    assert_eq!(server.stats().duplicates, 1);
}

#[test]
fn abort_sends_the_callers_error_once() {
    let now = Instant::now();
    let mut server = ServerSession::new(
        &request(OptionValues::default()),
        &Config::default(),
        None,
        now,
    );
    server.abort(now, ErrorCode::NOT_DEFINED, "origin unavailable");
    let sent = drain(&mut server, now, &mut &[][..]);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        Packet::decode(&sent[0]),
        Ok(Packet::Error {
            code: ErrorCode::NOT_DEFINED,
            message: "origin unavailable"
        })
    );
    assert!(server.is_closed());
    server.handle_timeout(now + Duration::from_secs(100));
    server.handle_datagram(now, CLIENT_ADDR, &ack(1));
    assert!(drain(&mut server, now, &mut &[][..]).is_empty());
}

// ---- helpers for hand-driven sessions ----

fn request(options: OptionValues) -> IncomingRequest {
    IncomingRequest {
        peer: CLIENT_ADDR,
        kind: tftp_proto::RequestKind::Read,
        filename: "f".into(),
        mode: Mode::Octet,
        options,
    }
}

fn ack(block: u16) -> [u8; 4] {
    let [a, b] = block.to_be_bytes();
    [0, 4, a, b]
}

fn blocks(sent: &[Vec<u8>]) -> Vec<u16> {
    sent.iter()
        .filter_map(|p| match Packet::decode(p) {
            Ok(Packet::Data { block, .. }) => Some(block),
            _ => None,
        })
        .collect()
}

/// Drain a session, filling from `source`; returns the datagrams sent.
fn drain<R>(s: &mut tftp_proto::Session<R>, now: Instant, source: &mut &[u8]) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    loop {
        match s.poll_output(now) {
            Output::Transmit(t) => sent.push(t.contents.to_vec()),
            Output::Fill(fill) => {
                if source.is_empty() {
                    fill.finish()
                } else {
                    let n = fill.write(source);
                    *source = &source[n..];
                }
            }
            Output::Store(store) => store.stored(),
            Output::Event(_) => {}
            Output::Wait(_) | Output::Closed => return sent,
        }
    }
}

fn finished<R>(s: &mut tftp_proto::Session<R>, now: Instant) -> tftp_proto::SessionStats {
    let mut result = None;
    loop {
        match s.poll_output(now) {
            Output::Event(Event::Finished(stats)) => result = Some(stats),
            Output::Wait(_) | Output::Closed => break,
            Output::Fill(_) | Output::Store(_) | Output::Event(_) | Output::Transmit(_) => {}
        }
    }
    result.unwrap_or_else(|| s.stats().clone())
}

#[test]
fn abandon_ends_without_a_word() {
    let now = Instant::now();
    let mut server = ServerSession::new(
        &request(OptionValues::default()),
        &Config::default(),
        Some(100),
        now,
    );
    let _ = drain(&mut server, now, &mut &[1u8; 100][..]);
    server.abandon(now);
    let stats = finished(&mut server, now);
    assert!(matches!(
        stats.outcome,
        Some(Outcome::Failed(TransferError::Local { .. }))
    ));
    assert!(drain(&mut server, now, &mut &[][..]).is_empty());
    assert!(server.is_closed());
}

#[test]
fn the_outcome_is_absent_until_decided() {
    let now = Instant::now();
    let fresh = tftp_proto::SessionStats::new(now);
    assert_eq!(fresh.outcome, None);
    assert!(!fresh.is_finished() && !fresh.is_success() && fresh.error().is_none());

    // Fresh sessions, and sessions under way, have no outcome yet.
    let mut server = ServerSession::new(
        &request(OptionValues::default()),
        &Config::default(),
        Some(1000),
        now,
    );
    let mut client = ClientSession::get(
        SERVER_ADDR,
        "f",
        Mode::Octet,
        OptionValues::default(),
        &Config::default(),
        now,
    )
    .unwrap();
    for stats in [server.stats(), client.stats()] {
        assert_eq!(stats.outcome, None);
        assert!(!stats.is_finished() && !stats.is_success() && stats.error().is_none());
    }
    assert_eq!(server.outcome(), None);
    assert_eq!(client.outcome(), None);
    assert!(!drain(&mut server, now, &mut &[7u8; 1000][..]).is_empty());
    assert!(!drain(&mut client, now, &mut &[][..]).is_empty());
    assert_eq!(
        server.stats().outcome,
        None,
        "DATA 1 sent, not yet acknowledged"
    );
    assert_eq!(
        client.stats().outcome,
        None,
        "request sent, not yet answered"
    );

    // A failed session reports its error.
    server.abandon(now);
    let stats = finished(&mut server, now);
    assert!(stats.is_finished() && !stats.is_success());
    assert!(matches!(stats.error(), Some(TransferError::Local { .. })));
    assert_eq!(server.outcome(), stats.outcome.as_ref());

    // A completed transfer reports Completed on both sides.
    let file = random_file(2000, 21);
    let report = Pair::get(PairConfig {
        file: file.clone(),
        ..PairConfig::default()
    })
    .run();
    assert_success(&report, &file, "outcome");
    let server = report.server.expect("server session");
    for stats in [&report.client, &server] {
        assert_eq!(stats.outcome, Some(Outcome::Completed));
        assert!(stats.is_finished() && stats.is_success() && stats.error().is_none());
    }
}
