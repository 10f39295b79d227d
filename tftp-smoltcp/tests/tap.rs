//! The smoltcp adapter against real peers, over a TAP device in a private network namespace
//! (root only: skipped, and says so, without root, `/dev/net/tun`, `unshare` or `ip`).
//!
//! The test re-runs itself under `unshare --net`, so the namespace, the TAP device and its
//! addresses vanish with it. The kernel side of `tap0` is 10.99.0.1; smoltcp is 10.99.0.2.
//! 1. The smoltcp client fetches 1 MiB from `tftpd` (on the kernel side) at blksize 1468 and
//!    windowsize 4, its window in a stack buffer: byte-exact.
//! 2. curl (on the kernel side) fetches the same file from the smoltcp server: byte-exact.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::socket::udp;
use smoltcp::time::{Duration as NetDuration, Instant as NetInstant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use tftp_proto::{ClientSession, Config, Mode, OptionValues};
use tftp_smoltcp::{Client, Poll, Server, delay_until, millis};

const IN_NAMESPACE: &str = "TFTP_SMOLTCP_IN_NETNS";
const TEST: &str = "smoltcp_client_and_server_over_a_tap_device";

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(status.success(), "{args:?}");
}

fn file() -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The `tftpd` binary of this workspace (`cargo test --workspace` builds it before running
/// tests); when this crate is tested alone on a fresh tree, built into a target directory of
/// its own (the running `cargo test` holds the lock of the main one).
fn tftpd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let bin = target.join("tftpd");
    if bin.exists() {
        return bin;
    }
    let own = target.join("tap-test-tftpd");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "tftpd", "--bin", "tftpd", "--target-dir"])
        .arg(&own)
        .status()
        .unwrap();
    assert!(status.success());
    own.join("debug").join("tftpd")
}

struct Net {
    device: TunTapInterface,
    iface: Interface,
}

impl Net {
    fn up() -> Net {
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        sh(&["ip", "link", "set", "tap0", "up"]);
        sh(&["ip", "addr", "add", "10.99.0.1/24", "dev", "tap0"]);
        let mut device = TunTapInterface::new("tap0", Medium::Ethernet).unwrap();
        let config = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress([
            0x02, 0, 0, 0, 0, 0x02,
        ])));
        let mut iface = Interface::new(config, &mut device, NetInstant::now());
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::v4(10, 99, 0, 2), 24))
                .unwrap();
        });
        Net { device, iface }
    }

    /// Wait for a frame or until `deadline`, whichever is first (at most 100 ms).
    fn wait(&mut self, now: NetInstant, sockets: &SocketSet<'_>, deadline: Option<NetInstant>) {
        let mut delay = self
            .iface
            .poll_delay(now, sockets)
            .unwrap_or(NetDuration::from_millis(100))
            .min(NetDuration::from_millis(100));
        if let Some(d) = deadline {
            delay = delay.min(delay_until(now, d));
        }
        phy::wait(self.device.as_raw_fd(), Some(delay)).unwrap();
    }
}

fn udp_socket(datagrams: usize, bytes: usize) -> udp::Socket<'static> {
    udp::Socket::new(
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; datagrams],
            vec![0u8; bytes],
        ),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; datagrams],
            vec![0u8; bytes],
        ),
    )
}

#[test]
fn smoltcp_client_and_server_over_a_tap_device() {
    if std::env::var_os(IN_NAMESPACE).is_none() {
        if !(is_root() && Path::new("/dev/net/tun").exists() && have("unshare") && have("ip")) {
            eprintln!("skipped: needs root, /dev/net/tun, unshare and ip");
            return;
        }
        let tftpd = tftpd_binary();
        let status = Command::new("unshare")
            .args(["--net", "--"])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(IN_NAMESPACE, tftpd)
            .status()
            .unwrap();
        assert!(status.success(), "the test inside the namespace failed");
        return;
    }
    let tftpd = PathBuf::from(std::env::var_os(IN_NAMESPACE).unwrap());
    let file = file();
    let mut net = Net::up();

    // ---- 1. The smoltcp client fetches from tftpd ----
    let root = std::env::temp_dir().join(format!("tftp-smoltcp-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("image.bin"), &file).unwrap();
    let mut server = Command::new(&tftpd)
        .arg("--root")
        .arg(&root)
        .args(["--listen", "10.99.0.1:69"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // tftpd needs a moment to bind; the client's first RRQ is retransmitted anyway.
    std::thread::sleep(Duration::from_millis(300));

    let mut sockets = SocketSet::new(vec![]);
    let mut socket = udp_socket(8, 8 * 1500);
    socket.bind(40_000).unwrap();
    let handle = sockets.add(socket);
    let mut ring = [0u8; 4 * (4 + 1468)];
    let asked = OptionValues {
        blksize: Some(1468),
        windowsize: Some(4),
        tsize: Some(0),
        ..OptionValues::default()
    };
    let tftpd_addr: SocketAddr = "10.99.0.1:69".parse().unwrap();
    let session = ClientSession::get_with_storage(
        tftpd_addr,
        "image.bin",
        Mode::Octet,
        asked,
        &Config::default(),
        millis(NetInstant::now()),
        &mut ring[..],
    )
    .unwrap();
    let mut client = Client::new(session, handle);
    let mut received = Vec::new();
    let started = Instant::now();
    let stats = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "client timed out"
        );
        let now = NetInstant::now();
        net.iface.poll(now, &mut net.device, &mut sockets);
        let deadline = match client.poll(now, &mut sockets, |data| received.extend_from_slice(data))
        {
            Poll::Pending(deadline) => deadline,
            Poll::Done(stats) => break stats,
        };
        net.iface.poll(now, &mut net.device, &mut sockets);
        net.wait(now, &sockets, deadline);
    };
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&root);
    eprintln!(
        "smoltcp client: {} bytes in {:?}, options {:?}, {} retransmissions",
        received.len(),
        started.elapsed(),
        stats.options,
        stats.retransmissions
    );
    assert!(stats.is_success(), "{:?}", stats.outcome);
    assert_eq!(stats.options.blksize, 1468);
    assert_eq!(stats.options.windowsize, 4);
    assert!(received == file, "the file arrived changed");
    drop(client);

    // ---- 2. curl fetches from the smoltcp server ----
    let mut sockets = SocketSet::new(vec![]);
    let mut listen = udp_socket(8, 8 * 600);
    listen.bind((IpAddress::v4(10, 99, 0, 2), 69)).unwrap();
    let listen = sockets.add(listen);
    let mut server = Server::new(listen, Config::default(), 4, |name: &str| {
        (name == "image.bin").then_some(&file[..])
    });
    let out = std::env::temp_dir().join(format!("tftp-smoltcp-{}.out", std::process::id()));
    let mut curl = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--tftp-blksize", "1468", "-o"])
        .arg(&out)
        .arg("tftp://10.99.0.2/image.bin")
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = curl.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "curl timed out"
        );
        let now = NetInstant::now();
        net.iface.poll(now, &mut net.device, &mut sockets);
        let deadline = server.poll(now, &mut sockets);
        net.iface.poll(now, &mut net.device, &mut sockets);
        net.wait(now, &sockets, deadline);
    };
    // Let the server see the last ACK and close the transfer.
    let until = Instant::now() + Duration::from_secs(2);
    while server.transfers() > 0 && Instant::now() < until {
        let now = NetInstant::now();
        net.iface.poll(now, &mut net.device, &mut sockets);
        let deadline = server.poll(now, &mut sockets);
        net.iface.poll(now, &mut net.device, &mut sockets);
        net.wait(now, &sockets, deadline);
    }
    let fetched = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let finished = server.take_finished();
    eprintln!(
        "curl from the smoltcp server: {} bytes in {:?}; server sessions: {:?}",
        fetched.len(),
        started.elapsed(),
        finished
            .iter()
            .map(|s| (&s.outcome, s.options))
            .collect::<Vec<_>>()
    );
    assert!(status.success(), "curl: {status}");
    assert!(fetched == file, "curl's copy differs");
    assert!(finished.iter().any(|s| s.is_success()));
}
