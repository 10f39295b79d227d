//! Connected transfer sockets (`ServerConfig::connect_transfers`, see `tftp_server::connect`):
//! the transfer socket is connected to its peer, and strangers writing to its port are still
//! answered with one ERROR 5 per burst and counted, through the catcher socket on the port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tftp_blocking::tftp_proto::Outcome;
use tftp_blocking::{DirHandler, RootOptions, Server, ServerConfig, ServerOptions, SessionReport};

struct Fixture {
    addr: SocketAddr,
    stop: tftp_blocking::ShutdownHandle,
    serving: thread::JoinHandle<std::io::Result<()>>,
    reports: Arc<Mutex<Vec<SessionReport>>>,
    _root: tempfile::TempDir,
}

fn serve(connect: bool) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), vec![7u8; 1200]).unwrap();
    let handler = DirHandler::new(root.path(), RootOptions::default()).unwrap();
    let mut config = ServerConfig::default();
    config.connect_transfers = connect;
    // Far fewer sessions than any descriptor limit allows: descriptors to spare for catchers.
    config.admission.max_sessions = 16;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reports);
    let options = ServerOptions::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .config(config)
        .on_session(move |report| r.lock().unwrap().push(report.clone()));
    let server = Server::bind(handler, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());
    Fixture {
        addr,
        stop,
        serving,
        reports,
        _root: root,
    }
}

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// The UDP sockets of this network namespace on local port `port`: (remote port, state),
/// from `/proc/net/udp` (state 01 is a connected socket, 07 an unconnected one).
fn sockets_on(port: u16) -> Vec<(u16, String)> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let hex_port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (hex_port(fields[1]) == port).then(|| (hex_port(fields[2]), fields[3].to_string()))
        })
        .collect()
}

/// The transfer: RRQ, DATA 1 (where the transfer ID is learnt), a stranger's burst, then
/// the rest in lock-step. Returns the transfer ID, the sockets on its port while it ran, and
/// the answers the stranger got.
fn transfer_with_a_stranger(f: &Fixture) -> (SocketAddr, Vec<(u16, String)>, Vec<Vec<u8>>) {
    let (client, stranger) = (socket(), socket());
    client.send_to(b"\x00\x01f\x00octet\x00", f.addr).unwrap();
    let mut buf = [0u8; 600];
    let (n, tid) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..4], n), (&[0u8, 3, 0, 1][..], 516));
    let sockets = sockets_on(tid.port());
    // An ERROR is never answered; 20 ACKs get one ERROR 5.
    stranger
        .send_to(b"\x00\x05\x00\x05Unknown transfer ID\x00", tid)
        .unwrap();
    for _ in 0..20 {
        stranger.send_to(&[0, 4, 0, 1], tid).unwrap();
    }
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answers = Vec::new();
    while let Ok((n, from)) = stranger.recv_from(&mut buf) {
        assert_eq!(from, tid, "answered from the transfer's port");
        answers.push(buf[..n].to_vec());
    }
    // The rest of the transfer, undisturbed (DATA 1 may have been resent meanwhile).
    let mut expected = 1u16;
    loop {
        client.send_to(&[0, 4, 0, expected as u8], tid).unwrap();
        let (n, from) = loop {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            if buf[2..4] != expected.to_be_bytes() {
                break (n, from);
            }
        };
        assert_eq!(from, tid);
        expected += 1;
        assert_eq!(&buf[..4], &[0, 3, 0, expected as u8]);
        if n < 516 {
            client.send_to(&[0, 4, 0, expected as u8], tid).unwrap();
            break;
        }
    }
    assert_eq!(expected, 3);
    (tid, sockets, answers)
}

fn report(f: &Fixture) -> SessionReport {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(r) = f.reports.lock().unwrap().first() {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no session report");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_connected_transfer_still_answers_and_counts_strangers() {
    let f = serve(true);
    let (_, sockets, answers) = transfer_with_a_stranger(&f);
    // The transfer socket, connected to the client, and the catcher on the same port.
    let mut states: Vec<&str> = sockets.iter().map(|(_, st)| st.as_str()).collect();
    states.sort();
    assert_eq!(states, ["01", "07"], "{sockets:?}");
    assert_eq!(answers.len(), 1, "one ERROR for a burst of strays");
    assert_eq!(&answers[0][..4], &[0, 5, 0, 5], "ERROR 5");
    let r = report(&f);
    assert_eq!(r.stats.outcome, Some(Outcome::Completed));
    assert_eq!(r.stats.stray_packets, 21);
    f.stop.shutdown();
    f.serving.join().unwrap().unwrap();
}

#[test]
fn connect_transfers_off_leaves_one_unconnected_socket() {
    let f = serve(false);
    let (_, sockets, answers) = transfer_with_a_stranger(&f);
    assert_eq!(sockets, [(0, "07".to_string())]);
    assert_eq!(answers.len(), 1);
    let r = report(&f);
    assert_eq!(r.stats.outcome, Some(Outcome::Completed));
    assert_eq!(r.stats.stray_packets, 21);
    f.stop.shutdown();
    f.serving.join().unwrap().unwrap();
}
