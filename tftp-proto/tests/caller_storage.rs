//! Sessions on memory the caller owns: with the window in a lent `&mut [u8]`, a whole
//! transfer — request, negotiation, every DATA and ACK, retransmissions after loss, the final
//! event and dropping the sessions — allocates nothing. This is what firmware without a heap
//! needs. Counted with a global allocator wrapper.
//!
//! The one allocation left on the way is [`IncomingRequest::parse`]'s owned file name, made
//! before a server session exists; it is counted and checked separately.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use core::time::Duration;

use tftp_proto::testing::{CLIENT_ADDR, SERVER_ADDR, TRANSFER_ADDR};
use tftp_proto::time::{Instant as _, Millis};
use tftp_proto::{
    ClientSession, Config, Event, IncomingRequest, Mode, OptionValues, Output, ServerSession,
    UsageError,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

struct Run {
    /// Allocations from creating the client to dropping both sessions, minus the parse.
    allocations: u64,
    /// Allocations of `IncomingRequest::parse`.
    parse_allocations: u64,
    received_ok: bool,
    retransmissions: u64,
}

/// A transfer of `file` (a get, or a put when `put`) between a client and a server whose
/// windows live in stack buffers, on a link that drops every `drop_every`-th datagram.
fn transfer(file: &[u8], put: bool, mode: Mode, asked: OptionValues, drop_every: u64) -> Run {
    let config = Config::default();
    let mut now = Millis(0);
    let mut client_ring = [0u8; 8 * (4 + 1468) + 1468];
    let mut server_ring = [0u8; 8 * (4 + 1468) + 1468];
    // Where the receiving side puts the file: sized up front, so extending it never allocates.
    let mut received: Vec<u8> = Vec::with_capacity(file.len() + 1);

    let before = allocations();
    let mut parse_allocations = 0;
    let mut client = if put {
        ClientSession::put_with_storage(
            SERVER_ADDR,
            "f",
            mode,
            asked,
            &config,
            now,
            &mut client_ring[..],
        )
    } else {
        ClientSession::get_with_storage(
            SERVER_ADDR,
            "f",
            mode,
            asked,
            &config,
            now,
            &mut client_ring[..],
        )
    }
    .unwrap();
    let mut server: Option<ServerSession<Millis, &mut [u8]>> = None;
    let mut server_ring = Some(&mut server_ring[..]);
    let mut source = file;
    let mut datagrams = 0u64;
    let mut retransmissions = 0;
    let mut outcomes = 0;
    // Datagrams in flight, at most one each way at a time in this lock-step loop.
    let mut up = [0u8; 1600];
    let mut down = [0u8; 1600];

    for _ in 0..1_000_000 {
        let mut up_len = None;
        loop {
            match client.poll_output(now) {
                Output::Transmit(t) => {
                    datagrams += 1;
                    if datagrams % drop_every != 0 {
                        up[..t.contents.len()].copy_from_slice(t.contents);
                        up_len = Some((t.destination, t.contents.len()));
                    }
                    break;
                }
                Output::Fill(fill) => {
                    if source.is_empty() {
                        fill.finish();
                    } else {
                        let n = fill.write(source);
                        source = &source[n..];
                    }
                }
                Output::Store(mut block) => {
                    received.extend_from_slice(block.data());
                    block.stored();
                }
                Output::Event(Event::Finished(stats)) => {
                    assert!(stats.is_success(), "{:?}", stats.outcome);
                    retransmissions += stats.retransmissions;
                    outcomes += 1;
                }
                Output::Event(_) => {}
                Output::Wait(_) | Output::Closed => break,
            }
        }
        if let Some((to, n)) = up_len {
            if to == SERVER_ADDR {
                if server.is_none() {
                    let parse_before = allocations();
                    let request = IncomingRequest::parse(CLIENT_ADDR, &up[..n]).unwrap();
                    parse_allocations += allocations() - parse_before;
                    let size = (!put).then_some(file.len() as u64);
                    let ring = server_ring.take().unwrap();
                    server = Some(
                        ServerSession::with_storage(&request, &config, size, now, ring).unwrap(),
                    );
                    let drop_before = allocations();
                    drop(request);
                    parse_allocations += allocations() - drop_before;
                }
            } else if let Some(s) = server.as_mut() {
                s.handle_datagram(now, CLIENT_ADDR, &up[..n]);
            }
        }
        let mut down_len = None;
        if let Some(s) = server.as_mut() {
            loop {
                match s.poll_output(now) {
                    Output::Transmit(t) => {
                        datagrams += 1;
                        if datagrams % drop_every != 0 {
                            down[..t.contents.len()].copy_from_slice(t.contents);
                            down_len = Some(t.contents.len());
                        }
                        break;
                    }
                    Output::Fill(fill) => {
                        if source.is_empty() {
                            fill.finish();
                        } else {
                            let n = fill.write(source);
                            source = &source[n..];
                        }
                    }
                    Output::Store(mut block) => {
                        received.extend_from_slice(block.data());
                        block.stored();
                    }
                    Output::Event(Event::Finished(stats)) => {
                        assert!(stats.is_success(), "{:?}", stats.outcome);
                        retransmissions += stats.retransmissions;
                        outcomes += 1;
                    }
                    Output::Event(_) => {}
                    Output::Wait(_) | Output::Closed => break,
                }
            }
        }
        if let Some(n) = down_len {
            client.handle_datagram(now, TRANSFER_ADDR, &down[..n]);
        }
        let server_closed = server.as_ref().is_none_or(|s| s.is_closed());
        if client.is_closed() && server_closed {
            break;
        }
        if up_len.is_none() && down_len.is_none() {
            // Nothing in flight: let time pass to the earliest deadline.
            let next = [
                client.poll_timeout(),
                server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now.checked_add(Duration::from_millis(100)).unwrap());
            now = next.max(now);
            client.handle_timeout(now);
            if let Some(s) = server.as_mut() {
                s.handle_timeout(now);
            }
        }
    }
    assert_eq!(outcomes, 2, "both sides report their outcome");
    drop(client);
    drop(server);
    let total = allocations() - before;
    Run {
        allocations: total - parse_allocations,
        parse_allocations,
        received_ok: received == file,
        retransmissions,
    }
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 300) as u8).collect()
}

#[test]
fn a_whole_transfer_on_caller_storage_allocates_nothing() {
    let cases = [
        // Lock-step RFC 1350, no options at all.
        (false, Mode::Octet, OptionValues::default()),
        // The firmware case: big blocks, a window, the size up front.
        (
            false,
            Mode::Octet,
            OptionValues {
                blksize: Some(1468),
                windowsize: Some(4),
                tsize: Some(0),
                ..OptionValues::default()
            },
        ),
        // Uploads, and netascii translation both ways.
        (
            true,
            Mode::Octet,
            OptionValues {
                blksize: Some(1024),
                windowsize: Some(8),
                ..OptionValues::default()
            },
        ),
        (
            false,
            Mode::Netascii,
            OptionValues {
                windowsize: Some(2),
                ..OptionValues::default()
            },
        ),
        (
            true,
            Mode::Netascii,
            OptionValues {
                blksize: Some(1468),
                ..OptionValues::default()
            },
        ),
    ];
    let data = file(200_000);
    let text: Vec<u8> = b"line one\nline two\r\nbare\rcr\n\n".repeat(5_000);
    for (put, mode, asked) in cases {
        let file = if mode == Mode::Netascii { &text } else { &data };
        // Lossless, then every 13th datagram lost (retransmissions, go-back, re-ACKs).
        for drop_every in [u64::MAX, 13] {
            let run = transfer(file, put, mode, asked, drop_every);
            let what = format!("put {put}, {mode:?}, {asked:?}, drop every {drop_every}");
            assert!(run.received_ok, "{what}: the file arrives intact");
            assert_eq!(run.allocations, 0, "{what}: no allocation");
            assert_eq!(
                run.parse_allocations, 1,
                "{what}: only the request's file name"
            );
            if drop_every != u64::MAX {
                assert!(run.retransmissions > 0, "{what}: loss was recovered");
            }
        }
    }
}

#[test]
fn a_server_sizes_the_window_to_the_storage_it_is_given() {
    let config = Config::default();
    // Three slots of 4 + 1468 bytes: the client asks for 8, the OACK says 3 (RFC 7440 lets a
    // server answer smaller).
    let mut ring = [0u8; 3 * (4 + 1468) + 100];
    let request = IncomingRequest::parse(
        CLIENT_ADDR,
        b"\0\x01f\0octet\0blksize\x001468\0windowsize\x008\0",
    )
    .unwrap();
    let mut server =
        ServerSession::with_storage(&request, &config, Some(1), Millis(0), &mut ring[..]).unwrap();
    assert_eq!(server.options().windowsize, 3);
    assert_eq!(server.options().blksize, 1468);
    match server.poll_output(Millis(0)) {
        Output::Transmit(t) => assert_eq!(t.contents, b"\0\x06blksize\x001468\0windowsize\x003\0"),
        other => panic!("{other:?}"),
    }

    // 600 bytes hold one 512-byte block but not 1468: blksize is answered smaller (RFC 2348).
    let mut small = [0u8; 600];
    let server =
        ServerSession::with_storage(&request, &config, Some(1), Millis(0), &mut small[..]).unwrap();
    assert_eq!(server.options().blksize, 596);
    assert_eq!(server.options().windowsize, 1);

    // Less than a plain RFC 1350 block: refused up front, nothing sent.
    let mut tiny = [0u8; 515];
    assert_eq!(
        ServerSession::with_storage(&request, &config, Some(1), Millis(0), &mut tiny[..])
            .unwrap_err(),
        UsageError::StorageTooSmall {
            needed: 516,
            available: 515
        }
    );
}

#[test]
fn a_client_needs_storage_for_everything_it_asks_for() {
    let config = Config::default();
    let asked = OptionValues {
        blksize: Some(1468),
        windowsize: Some(4),
        ..OptionValues::default()
    };
    let mut ring = [0u8; 4 * (4 + 1468) - 1];
    let err = ClientSession::get_with_storage(
        SERVER_ADDR,
        "f",
        Mode::Octet,
        asked,
        &config,
        Millis(0),
        &mut ring[..],
    )
    .unwrap_err();
    assert_eq!(
        err,
        UsageError::StorageTooSmall {
            needed: 4 * 1472,
            available: 4 * 1472 - 1
        }
    );
    // A small blksize asked is no saving: a server that ignores options sends 512-byte blocks.
    let small = OptionValues {
        blksize: Some(100),
        ..OptionValues::default()
    };
    let mut ring = [0u8; 515];
    assert!(matches!(
        ClientSession::get_with_storage(
            SERVER_ADDR,
            "f",
            Mode::Octet,
            small,
            &config,
            Millis(0),
            &mut ring[..]
        ),
        Err(UsageError::StorageTooSmall { needed: 516, .. })
    ));
}

/// The RAM figures in the crate docs and the README ("In firmware"): a session's own state,
/// measured here on a 64-bit host (on `thumbv7em-none-eabihf` it is 680 bytes), plus the
/// ring the caller lends.
#[test]
fn a_session_needs_about_0_7_kib_of_state_besides_its_ring() {
    use std::mem::size_of;
    let firmware = size_of::<ClientSession<Millis, &mut [u8]>>();
    assert_eq!(firmware, size_of::<ServerSession<Millis, &mut [u8]>>());
    // 88 of it is the inline control packet (request, OACK, ACK or ERROR): 720 bytes here
    // (856 with a 128-byte control packet, the timer's and the tuning's `Duration`s).
    assert!(firmware <= 720, "{firmware} bytes");
    let std_default = size_of::<ServerSession>();
    assert!(std_default <= 760, "{std_default} bytes");
}
