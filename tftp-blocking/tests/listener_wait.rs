//! Which sockets a loop keeps in epoll. A socket registered with epoll has its wait queue woken
//! by the kernel for each datagram it sends (when the datagram's memory is given back) and
//! receives; so a socket the loop sends much on while nothing else needs epoll is waited on
//! with `poll(2)` instead (see the crate's `reactor` module): a single-port listener, which
//! sends every transfer's DATA, and a lone transfer's own socket (lone mode: the loop's only
//! transfer, its ACKs read with blocking receives). A listener that only takes requests, a
//! transfer among others and a catcher stay in epoll. These tests look at what the loop's
//! epoll instance holds (`/proc/self/fdinfo`, sockets by their inode), and that a server
//! still serves, shuts down and drains while those sockets are outside epoll.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tftp_blocking::{
    Handler, HandlerError, ReadResponse, Request, Server, ServerOptions, ShutdownHandle,
};

struct Bytes;

impl Handler for Bytes {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        // "big": more than a test's lock-step peer asks for (64 MiB, 131,072 blocks of 512).
        let len = if request.filename == "big" {
            64 << 20
        } else {
            1300
        };
        Ok(ReadResponse::from_bytes(vec![5u8; len]))
    }
}

/// The socket (or other file) behind descriptor `fd` of this process: `socket:[inode]`.
fn file_of(fd: &str) -> Option<String> {
    let link = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// Every file registered with any epoll instance of this process.
fn registered_with_epoll() -> Vec<String> {
    let mut files = Vec::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap() {
        let fd = entry.unwrap().file_name().to_string_lossy().into_owned();
        if file_of(&fd).as_deref() != Some("anon_inode:[eventpoll]") {
            continue;
        }
        let Ok(info) = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        // "tfd:        7 events:       19 data: ..." a registered descriptor.
        for line in info.lines() {
            let Some(rest) = line.strip_prefix("tfd:") else {
                continue;
            };
            if let Some(file) = rest.split_whitespace().next().and_then(file_of) {
                files.push(file);
            }
        }
    }
    files
}

/// A client socket (its receives give up after 5 s) that has sent `server` an octet RRQ for
/// `file`.
fn ask(server: SocketAddr, file: &str) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let rrq = [&b"\0\x01"[..], file.as_bytes(), b"\0octet\0"].concat();
    socket.send_to(&rrq, server).unwrap();
    socket
}

/// A lock-step download of the handler's 1,300 bytes from `server`.
fn fetch(server: SocketAddr) -> usize {
    let socket = ask(server, "f");
    let mut buf = [0u8; 600];
    let mut got = 0;
    loop {
        let (n, from) = socket.recv_from(&mut buf).expect("DATA from the server");
        assert_eq!(&buf[..2], &[0, 3], "DATA");
        socket.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
        got += n - 4;
        if n < 516 {
            return got;
        }
    }
}

/// A server of [`Bytes`] on one loop over the given listener.
fn serve(
    listener: UdpSocket,
    single_port: bool,
) -> (SocketAddr, ShutdownHandle, thread::JoinHandle<()>) {
    let mut options = ServerOptions::new().socket(listener);
    options.config.single_port = single_port;
    // Transfers whose peers stopped answering are aborted this long after a shutdown.
    options.config.shutdown_grace = Duration::from_secs(1);
    let server = Server::bind(Bytes, options).unwrap().workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    (addr, stop, thread::spawn(move || server.serve().unwrap()))
}

#[test]
fn only_a_listener_that_does_not_send_the_transfers_is_registered_with_epoll() {
    for single_port in [false, true] {
        let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
        let file = file_of(&listener.as_raw_fd().to_string()).unwrap();
        assert!(file.starts_with("socket:["), "{file}");
        let (addr, stop, serving) = serve(listener, single_port);
        assert_eq!(fetch(addr), 1300, "single-port {single_port}");
        let registered = registered_with_epoll().contains(&file);
        // A transfer port per session: the listener only takes requests, in epoll as ever
        // (which also shows that this test finds what a loop registers).
        assert_eq!(registered, !single_port, "single-port {single_port}");
        // Still served after the look, and shut down on request.
        assert_eq!(fetch(addr), 1300, "single-port {single_port}");
        stop.shutdown();
        serving.join().unwrap();
    }
}

/// Requests and ACKs of several clients at once on a polled listener, then a shutdown while
/// transfers run: the loop drains them from the listener it no longer takes requests on.
#[test]
fn a_polled_listener_serves_many_clients_and_drains_at_shutdown() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (addr, stop, serving) = serve(listener, true);
    let clients: Vec<_> = (0..16)
        .map(|_| thread::spawn(move || fetch(addr)))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 1300);
    }
    // One transfer held half-way (the first DATA unacknowledged) while the shutdown starts.
    let socket = ask(addr, "f");
    let mut buf = [0u8; 600];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    assert_eq!((n, &buf[..4]), (516, &[0u8, 3, 0, 1][..]));
    stop.shutdown();
    thread::sleep(Duration::from_millis(50));
    let mut got = n - 4;
    let mut block = 1u16;
    loop {
        socket
            .send_to(&[0, 4, (block >> 8) as u8, block as u8], from)
            .unwrap();
        if got == 1300 {
            break;
        }
        let (n, _) = socket
            .recv_from(&mut buf)
            .expect("the rest, after the shutdown began");
        assert_eq!(&buf[..2], &[0, 3], "DATA");
        // A retransmitted block is ACKed again, not counted again.
        let this = u16::from_be_bytes([buf[2], buf[3]]);
        if this == block + 1 {
            block = this;
            got += n - 4;
        }
    }
    assert_eq!(got, 1300);
    serving.join().unwrap();
}

/// The inode of the UDP socket of this process bound to local port `port` and, if `peer` is
/// given, connected to it (`/proc/net/udp` and `udp6`: "sl local_address rem_address st ...
/// inode", addresses as hex `ADDR:PORT`).
fn udp_socket(port: u16, peer: Option<SocketAddr>) -> Option<String> {
    // An unconnected socket's remote port is 0.
    let (local_port, remote_port) = (
        format!("{port:04X}"),
        format!("{:04X}", peer.map_or(0, |p| p.port())),
    );
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        let text = fs::read_to_string(table).ok()?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            if local.rsplit(':').next() == Some(&local_port)
                && remote.rsplit(':').next() == Some(&remote_port)
            {
                return Some(format!("socket:[{inode}]"));
            }
        }
    }
    None
}

/// A lock-step peer of "big" on its own thread: ACKs every DATA at once until `stop`, then
/// stops answering (the server gives up on it later). Returns the server's transfer address
/// once 100 blocks came, and the peer's own address.
fn busy_peer(server: SocketAddr, stop: Arc<AtomicBool>) -> (SocketAddr, SocketAddr) {
    let socket = ask(server, "big");
    let me = socket.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 600];
        let mut blocks = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let (_, from) = socket.recv_from(&mut buf).expect("DATA from the server");
            assert_eq!(&buf[..2], &[0, 3], "DATA");
            socket.send_to(&[0, 4, buf[2], buf[3]], from).unwrap();
            blocks += 1;
            if blocks == 100 {
                tx.send(from).unwrap();
            }
        }
    });
    (rx.recv_timeout(Duration::from_secs(10)).unwrap(), me)
}

#[test]
fn a_lone_transfer_leaves_epoll_and_its_loop_still_serves_others() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (addr, stop_server, serving) = serve(listener, false);
    let stop = Arc::new(AtomicBool::new(false));
    let (transfer, peer) = busy_peer(addr, Arc::clone(&stop));
    // Connected to its peer (with a catcher for strays) or not, the transfer's own socket.
    let own = udp_socket(transfer.port(), Some(peer))
        .or_else(|| udp_socket(transfer.port(), None))
        .expect("the transfer socket");
    // Lone mode reads its ACKs with blocking receives; give it a few turns of its loop.
    let deadline = Instant::now() + Duration::from_secs(5);
    while registered_with_epoll().contains(&own) {
        assert!(
            Instant::now() < deadline,
            "the lone transfer's socket stayed in epoll"
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Out of epoll, the loop still takes requests and serves them beside it, promptly.
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(fetch(addr), 1300);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    // A second transfer is in epoll (the first one stays out until it ends).
    let stop_second = Arc::new(AtomicBool::new(false));
    let (second, second_peer) = busy_peer(addr, Arc::clone(&stop_second));
    let other = udp_socket(second.port(), Some(second_peer))
        .or_else(|| udp_socket(second.port(), None))
        .expect("the second transfer socket");
    let registered = registered_with_epoll();
    assert!(registered.contains(&other) && !registered.contains(&own));
    stop.store(true, Ordering::Relaxed);
    stop_second.store(true, Ordering::Relaxed);
    stop_server.shutdown();
    serving.join().unwrap();
}
