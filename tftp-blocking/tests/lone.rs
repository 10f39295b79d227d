//! Lone mode: a loop whose only transfer is in lock-step receives its ACKs with blocking
//! `recvfrom`s and skips `epoll_wait`. The loop's other sources must still be served while the
//! peer keeps it busy: new requests on its listener, transfers handed over by another loop,
//! the shutdown. Each test keeps a lone transfer running for seconds with a peer that ACKs at
//! once, and fails if the other source waits for the transfer to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tftp_blocking::{DirHandler, RootOptions, Server, ServerConfig, ServerOptions};

/// How long the busy peer keeps its transfer going (it stops earlier when told).
const BUSY_FOR: Duration = Duration::from_secs(4);
/// The most another source may wait while a lone transfer runs; far above the loop's turn
/// (1 ms) and its blocking receives' timeout (2 ms), far below [`BUSY_FOR`].
const PROMPT: Duration = Duration::from_millis(500);

fn rrq(file: &str) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(file.as_bytes());
    p.extend_from_slice(b"\0octet\0");
    p
}

/// A peer in lock-step: RRQ for `file`, then each DATA ACKed at once, until the transfer
/// ends, [`BUSY_FOR`] passes or `stop` is set. Returns the blocks received.
fn busy_peer(server: SocketAddr, file: &str, started: &AtomicBool, stop: &AtomicBool) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&rrq(file), server).unwrap();
    let mut buf = [0u8; 600];
    let mut blocks = 0u64;
    let end = Instant::now() + BUSY_FOR;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        let (n, from) = socket.recv_from(&mut buf).expect("DATA from the server");
        assert_eq!(&buf[..2], &[0, 3], "DATA");
        socket.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
        blocks += 1;
        if blocks == 100 {
            started.store(true, Ordering::Release);
        }
        if n < 516 {
            panic!("the busy transfer ended early: make its file bigger");
        }
    }
    blocks
}

/// How long an RRQ for `file` waits for its first DATA.
fn first_reply(server: SocketAddr, file: &str) -> Duration {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(BUSY_FOR * 2)).unwrap();
    let asked = Instant::now();
    socket.send_to(&rrq(file), server).unwrap();
    let mut buf = [0u8; 600];
    let (_, from) = socket.recv_from(&mut buf).expect("an answer");
    let waited = asked.elapsed();
    assert_eq!(&buf[..2], &[0, 3], "DATA");
    // The rest of the (one-block) file's transfer: its ACK ends it.
    socket.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
    waited
}

struct Fixture {
    addr: SocketAddr,
    stop: tftp_blocking::ShutdownHandle,
    grace: Duration,
    serving: thread::JoinHandle<std::io::Result<()>>,
    _root: tempfile::TempDir,
}

fn serve(workers: usize) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    // 200 MiB sparse: more blocks of 512 than the busy peer can take in BUSY_FOR.
    let big = std::fs::File::create(root.path().join("big")).unwrap();
    big.set_len(200 << 20).unwrap();
    std::fs::write(root.path().join("small"), b"hello").unwrap();
    let handler = DirHandler::new(root.path(), RootOptions::default()).unwrap();
    let mut config = ServerConfig::default();
    config.shutdown_grace = Duration::from_secs(1);
    // Retransmission deadlines beyond BUSY_FOR: the session's own timer must not be what
    // gives the loop its turns.
    let session = &mut config.session;
    (session.initial_timeout, session.min_timeout) = (BUSY_FOR * 3, BUSY_FOR * 3);
    session.max_timeout = session.max_timeout.max(BUSY_FOR * 3);
    session.give_up_after = session.give_up_after.max(BUSY_FOR * 10);
    let grace = config.shutdown_grace;
    let options = ServerOptions::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .config(config);
    let server = Server::bind(handler, options).unwrap().workers(workers);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());
    Fixture {
        addr,
        stop,
        grace,
        serving,
        _root: root,
    }
}

/// Run the busy peer on its own thread; wait until its transfer is flowing.
fn start_busy(addr: SocketAddr) -> (Arc<AtomicBool>, thread::JoinHandle<u64>) {
    let (started, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let peer = {
        let (started, stop) = (Arc::clone(&started), Arc::clone(&stop));
        thread::spawn(move || busy_peer(addr, "big", &started, &stop))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !started.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline, "the busy transfer did not start");
        thread::sleep(Duration::from_millis(1));
    }
    (stop, peer)
}

#[test]
fn the_listener_is_served_while_its_loop_has_a_lone_transfer() {
    let f = serve(1);
    let (stop, peer) = start_busy(f.addr);
    let waited = first_reply(f.addr, "small");
    stop.store(true, Ordering::Relaxed);
    let blocks = peer.join().unwrap();
    assert!(
        waited < PROMPT,
        "a new request waited {waited:?} behind a lone transfer"
    );
    assert!(blocks > 100);
    f.stop.shutdown();
    f.serving.join().unwrap().unwrap();
}

#[test]
fn a_transfer_handed_to_a_loop_with_a_lone_transfer_starts_promptly() {
    let f = serve(2);
    // Sessions go to the loops in turn: the first to loop 0 (the listener's), the busy one to
    // loop 1, where it is lone; of the next two, the second is handed to loop 1.
    first_reply(f.addr, "small");
    let (stop, peer) = start_busy(f.addr);
    first_reply(f.addr, "small");
    let waited = first_reply(f.addr, "small");
    stop.store(true, Ordering::Relaxed);
    peer.join().unwrap();
    assert!(waited < PROMPT, "a handed-over request waited {waited:?}");
    f.stop.shutdown();
    f.serving.join().unwrap().unwrap();
}

#[test]
fn shutdown_is_seen_while_a_lone_transfer_runs() {
    let f = serve(1);
    let (stop, peer) = start_busy(f.addr);
    // The shutdown lets running transfers finish within the grace period; this one would
    // outlast it, so the server must notice both the shutdown and the end of the grace.
    let asked = Instant::now();
    f.stop.shutdown();
    let grace = f.grace;
    f.serving.join().unwrap().unwrap();
    let took = asked.elapsed();
    stop.store(true, Ordering::Relaxed);
    // The peer sees the ERROR (or silence) and panics or stops: either way it is done.
    let _ = peer.join();
    assert!(
        took < grace + PROMPT,
        "shutdown took {took:?} (grace {grace:?})"
    );
}
