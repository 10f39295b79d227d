//! A single-port listener's system calls allocate nothing: [`RecvBatch::recv`] and
//! [`SendQueue::flush`] run once a batch of datagrams, thousands of times a second at a
//! thousand transfers, and once warm they reuse what they have (counted with a global
//! allocator wrapper, this thread's allocations only).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(target_os = "linux")]

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use tftp_server::batch::{RecvBatch, SendQueue};

#[path = "../../tftp-proto/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// One round: `SendQueue::BATCH` datagrams queued from `server` to `client` (a run with no
/// source address, then runs from 127.0.0.1: two `sendmmsg` with different control
/// messages), flushed, and read back with one or more `recvmmsg`. The datagrams received.
fn round(
    server: &UdpSocket,
    client: &UdpSocket,
    queue: &mut SendQueue,
    batch: &mut RecvBatch,
) -> usize {
    let to = client.local_addr().unwrap();
    let from = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for i in 0..SendQueue::BATCH {
        let block = (i as u16).to_be_bytes();
        let datagram = [0, 3, block[0], block[1], b'x', b'y'];
        queue.push(&datagram, to, if i < 8 { None } else { from });
    }
    assert_eq!(queue.flush(server).unwrap(), SendQueue::BATCH);
    let mut received = 0;
    for _ in 0..200 {
        match batch.recv(client) {
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        if received == SendQueue::BATCH {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    received
}

#[test]
fn batched_sends_and_receives_allocate_nothing_once_warm() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_nonblocking(true).unwrap();
    let mut queue = SendQueue::for_socket(&server).unwrap();
    let mut batch = RecvBatch::new(RecvBatch::MAX, 1500);
    // The first round sizes the queue and this thread's kernel headers.
    assert_eq!(
        round(&server, &client, &mut queue, &mut batch),
        SendQueue::BATCH
    );
    let before = allocations();
    for _ in 0..20 {
        assert_eq!(
            round(&server, &client, &mut queue, &mut batch),
            SendQueue::BATCH
        );
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 20 rounds of 64 datagrams"
    );
}
