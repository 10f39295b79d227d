//! A steady-state transfer allocates nothing per packet: all buffers are sized when the
//! session starts. Counted with a global allocator wrapper.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use tftp_proto::testing::{CLIENT_ADDR, SERVER_ADDR, TRANSFER_ADDR};
use tftp_proto::{
    ClientSession, Config, IncomingRequest, Mode, OptionValues, Output, ServerSession,
};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// Allocations made by a whole transfer of `blocks` blocks between two sessions.
fn transfer(blocks: usize, windowsize: u16, netascii: bool) -> u64 {
    let file = vec![b'x'; blocks * 512 + 100];
    let now = Instant::now();
    let config = Config::default();
    let asked = OptionValues {
        windowsize: Some(windowsize),
        tsize: Some(0),
        ..OptionValues::default()
    };
    let mode = if netascii {
        Mode::Netascii
    } else {
        Mode::Octet
    };
    let before = allocations();
    let mut client = ClientSession::get(SERVER_ADDR, "f", mode, asked, &config, now).unwrap();
    let mut server: Option<ServerSession> = None;
    let mut source = &file[..];
    let mut received = 0;
    'outer: loop {
        loop {
            match client.poll_output(now) {
                Output::Transmit(t) => match server.as_mut() {
                    Some(s) => s.handle_datagram(now, CLIENT_ADDR, t.contents),
                    None => {
                        let req = IncomingRequest::parse(CLIENT_ADDR, t.contents).unwrap();
                        server = Some(ServerSession::new(
                            &req,
                            &config,
                            Some(file.len() as u64),
                            now,
                        ));
                    }
                },
                Output::Store(mut s) => {
                    received += s.data().len();
                    s.stored();
                }
                Output::Event(_) => {}
                Output::Fill(_) | Output::Wait(_) | Output::Closed => break,
            }
        }
        let s = server.as_mut().unwrap();
        let mut sent = false;
        loop {
            match s.poll_output(now) {
                Output::Transmit(t) => {
                    sent = true;
                    client.handle_datagram(now, TRANSFER_ADDR, t.contents);
                }
                Output::Fill(fill) => {
                    if source.is_empty() {
                        fill.finish();
                    } else {
                        let n = fill.write(source);
                        source = &source[n..];
                    }
                }
                Output::Event(_) | Output::Store(_) => {}
                Output::Wait(_) => break,
                Output::Closed => break 'outer,
            }
        }
        if !sent {
            break;
        }
    }
    assert_eq!(received, file.len());
    allocations() - before
}

#[test]
fn allocations_do_not_grow_with_the_number_of_packets() {
    for (windowsize, netascii) in [(1, false), (8, false), (1, true)] {
        let small = transfer(100, windowsize, netascii);
        let large = transfer(5_000, windowsize, netascii);
        assert!(
            large <= small,
            "windowsize {windowsize} netascii {netascii}: {small} allocations for 100 blocks, {large} for 5,000"
        );
    }
}
