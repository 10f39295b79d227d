//! `tftpd` on a real (if virtual) network: the namespace test bed of `scripts/netbed.sh`,
//! a server with a primary and a secondary ("service", a VIP) address per family, 250
//! client addresses, and a NAT router, all MTU 1500. `tftpd` runs in `tb-srv` on port 69
//! with its default wildcard listener (`[::]:69`); the clients run in `tb-cli` (or in
//! `tb-natcli`, behind the NAT).
//!
//! | test | checks |
//! |---|---|
//! | `reply_address_*` | curl, busybox, atftp and tftp-hpa fetch byte-exact from every server address; the session log's `local` is the asked address; the first reply to a raw RRQ comes from it (a small python client in `tb-cli`), per family, with and without `--single-port` |
//! | `server_ip_template_renders_the_asked_address` | `{{server_ip}}` is the address the client asked |
//! | `blksize_is_clamped_to_the_interface_mtu` | a client asking blksize 65464 on MTU 1500 is granted at most 1468 (IPv4) or 1448 (IPv6) |
//! | `load_from_250_client_addresses` | 1,000 sessions of `tftp-loadgen --bind-from` over 250 addresses at default limits: no failure |
//! | `load_to_the_service_address` | the same, asking at the service address: `tftp-proto`'s client, like PXE ROMs, drops replies from another address |
//! | `nat_works_with_single_port_only` | curl behind the NAT: per-transfer ports fail (the router has no conntrack entry for the new server port), `--single-port` works |
//! | `nat_to_the_service_address` | `--single-port` behind the NAT, asking at the service address: a reply from the primary is an unknown flow to the NAT too |
//! | `smaller_path_mtu_gets_its_blocks_fragmented` | blksize 1468, lock-step and windowsize 8, over a route of MTU 1280 (per-transfer ports and `--single-port`), and through the NAT with its client link at MTU 1280 (learned from ICMP): the DATA leave fragmented, and UDP GSO stays on |
//!
//! What makes them pass: the listener learns each request's destination and interface
//! (`tftp_server::udp`, `IP_PKTINFO`/`IPV6_PKTINFO`), binds each transfer socket to the
//! asked address (or, with `--single-port`, sends from it through the shared socket), and
//! fits the granted block size to the interface's MTU (`--tftp-mtu`). Without that, a
//! wildcard listener's transfers answer from the address the kernel picks (the primary for
//! IPv4, the last added for IPv6), templates see `::`, and block sizes are not clamped.
//!
//! Needs root and `ip netns`; without them every test prints why and passes (skips). As root,
//! a missing tool fails the test: `scripts/test-deps.sh` installs them. The namespaces are
//! shared by the tests of this file, which run one at a time (also across processes: a lock
//! file); the bed comes down when the last waiting test is done, even after a panic. Every
//! process is bounded by `timeout`; the server is stopped when its test ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::IpAddr;

mod support;
use support::netbed::*;
use support::{loadgen, report_number};

/// Prints the address and port of the first reply to an RRQ sent to port 69 of `host`, and
/// its opcode; then aborts the transfer with an ERROR. Exits non-zero without a reply in 5 s.
const FIRST_REPLY_PY: &str = r#"
import socket, sys
host, name = sys.argv[1], sys.argv[2].encode()
family = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"\x00\x01" + name + b"\x00octet\x00", (host, 69))
data, addr = s.recvfrom(65536)
print(addr[0], addr[1], int.from_bytes(data[:2], "big"))
s.sendto(b"\x00\x05\x00\x00done\x00", addr)
"#;

/// A TFTP URL's host part.
fn url_host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Fetch `file` from `server` with each real client in `tb-cli`; each copy byte-exact, and
/// each session's `local` (in the session log) the asked address. `seen` counts the
/// sessions on `file` so far.
fn fetch_with_every_client(bed: &Bed, server: &str, file: &str, want: &[u8], seen: &mut usize) {
    let url = format!("tftp://{}/{file}", url_host(server));
    let clients: [(&str, &str, Vec<&str>); 4] = [
        ("curl", "curl", vec!["-sS", "-g", "-o", "out", &url]),
        (
            "busybox",
            "busybox",
            vec!["tftp", "-g", "-r", file, "-l", "out", server],
        ),
        (
            "atftp",
            "atftp",
            vec!["-g", "-r", file, "-l", "out", server],
        ),
        (
            "tftp-hpa",
            "/usr/bin/tftp",
            vec![server, "-m", "binary", "-c", "get", file, "out"],
        ),
    ];
    for (name, program, args) in clients {
        let _ = fs::remove_file(bed.path("out"));
        let out = bed.run("tb-cli", program, &args);
        assert!(
            out.status.success(),
            "{name} from {server}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got = fs::read(bed.path("out")).unwrap_or_default();
        assert!(got == want, "{name} from {server}: the copy differs");
        let s = bed.session(file, *seen);
        *seen += 1;
        assert_eq!(s.outcome, "completed", "{name} from {server}: {}", s.line);
        assert_eq!(
            s.local.ip().to_canonical(),
            server.parse::<IpAddr>().unwrap(),
            "{name} from {server}: the session log's local address is not the asked one: {}",
            s.line
        );
    }
}

/// The source of the first reply to a raw RRQ sent from `tb-cli` to `server`:69.
fn first_reply(bed: &Bed, server: &str, file: &str) -> (IpAddr, u16, u16) {
    let out = bed.run("tb-cli", "python3", &["-c", FIRST_REPLY_PY, server, file]);
    assert!(
        out.status.success(),
        "no reply from {server}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(words.len(), 3, "unexpected output: {text}");
    (
        words[0].parse().unwrap(),
        words[1].parse().unwrap(),
        words[2].parse().unwrap(),
    )
}

fn reply_address(test: &str, servers: [&str; 2], single_port: bool) {
    let args: &[&str] = if single_port { &["--single-port"] } else { &[] };
    reply_address_with(test, servers, single_port, args);
}

/// [`reply_address`] with tftpd's `args` (say, another engine).
fn reply_address_with(test: &str, servers: [&str; 2], single_port: bool, args: &[&str]) {
    let Some(bed) = bed(test) else { return };
    let want = bed.file("hello.bin", 100_000);
    let _tftpd = bed.tftpd(args);
    let mut seen = 0;
    for server in servers {
        let (ip, port, opcode) = first_reply(&bed, server, "hello.bin");
        assert_eq!(opcode, 3, "a DATA packet first");
        assert_eq!(
            ip,
            server.parse::<IpAddr>().unwrap(),
            "asked at {server}, answered from {ip}"
        );
        assert_eq!(port == 69, single_port, "answered from port {port}");
        // The aborted transfer is logged too.
        bed.session("hello.bin", seen);
        seen += 1;
        fetch_with_every_client(&bed, server, "hello.bin", &want, &mut seen);
    }
}

#[test]
fn reply_address_ipv4() {
    reply_address("reply_address_ipv4", SERVER_V4, false);
}

#[test]
fn reply_address_ipv6() {
    reply_address("reply_address_ipv6", SERVER_V6, false);
}

/// The tokio engine (tftpd's with `--http-origin`): its transfer sockets are connected to
/// their clients too, each beside a catcher, on the asked address of a multi-address host.
#[test]
fn reply_address_ipv4_tokio_engine() {
    let args = ["--engine", "tokio"];
    reply_address_with("reply_address_ipv4_tokio_engine", SERVER_V4, false, &args);
}

#[test]
fn reply_address_ipv6_tokio_engine() {
    let args = ["--engine", "tokio"];
    reply_address_with("reply_address_ipv6_tokio_engine", SERVER_V6, false, &args);
}

#[test]
fn reply_address_ipv4_single_port() {
    reply_address("reply_address_ipv4_single_port", SERVER_V4, true);
}

#[test]
fn reply_address_ipv6_single_port() {
    reply_address("reply_address_ipv6_single_port", SERVER_V6, true);
}

#[test]
fn server_ip_template_renders_the_asked_address() {
    let Some(bed) = bed("server_ip_template_renders_the_asked_address") else {
        return;
    };
    fs::create_dir(bed.path("templates")).unwrap();
    fs::write(
        bed.path("templates/whoami.txt"),
        "server={{server_ip}} client={{ip}}\n",
    )
    .unwrap();
    let _tftpd = bed.tftpd(&["--templates", "templates"]);
    for server in [SERVICE_V4, PRIMARY_V4, SERVICE_V6, PRIMARY_V6] {
        let url = format!("tftp://{}/whoami.txt", url_host(server));
        let out = bed.run("tb-cli", "curl", &["-sS", "-g", &url]);
        assert!(out.status.success(), "curl {url}: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("server={server} ")),
            "asked at {server}, the template rendered: {text}"
        );
    }
}

#[test]
fn blksize_is_clamped_to_the_interface_mtu() {
    let Some(bed) = bed("blksize_is_clamped_to_the_interface_mtu") else {
        return;
    };
    let want = bed.file("big.bin", 300_000);
    let _tftpd = bed.tftpd(&[]);
    // MTU 1500 less the IP (20 or 40 bytes), UDP (8) and TFTP DATA (4) headers.
    for (n, (server, most)) in [(PRIMARY_V4, 1468), (PRIMARY_V6, 1448)]
        .into_iter()
        .enumerate()
    {
        let _ = fs::remove_file(bed.path("out"));
        let out = bed.run(
            "tb-cli",
            "busybox",
            &[
                "tftp", "-b", "65464", "-g", "-r", "big.bin", "-l", "out", server,
            ],
        );
        assert!(
            out.status.success(),
            "busybox from {server}: {}",
            out.status
        );
        assert!(
            fs::read(bed.path("out")).unwrap() == want,
            "the copy differs"
        );
        let s = bed.session("big.bin", n);
        assert_eq!(s.bytes, want.len() as u64, "{}", s.line);
        assert!(
            s.blksize <= most,
            "asked 65464 at {server} over MTU 1500, granted {} (at most {most} fits): {}",
            s.blksize,
            s.line
        );
    }
}

/// `tftp-loadgen` in `tb-cli`: `clients` sessions reading `file` (verified against the served
/// root's copy) at blksize 1468 from port 69 of `server`, from the client addresses `from`,
/// with `more` options.
fn loadgen_from_cli(
    bed: &Bed,
    server: &str,
    file: &str,
    clients: &str,
    from: &str,
    more: &[&str],
) -> std::process::Output {
    let loadgen = loadgen();
    let verify = bed.path("root").join(file);
    let server = format!("{server}:69");
    let mut args = vec![
        "--server",
        &server,
        "--file",
        file,
        "--clients",
        clients,
        "--bind-from",
        from,
        "--blksize",
        "1468",
        "--verify",
        verify.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    bed.run("tb-cli", loadgen.to_str().unwrap(), &args)
}

/// 1,000 sessions from 250 client addresses of `tb-cli`, at `server`; the JSON report.
fn load(bed: &Bed, server: &str) -> String {
    bed.file("load.bin", 100_000);
    let out = loadgen_from_cli(
        bed,
        server,
        "load.bin",
        "1000",
        "198.18.1.1-198.18.1.250",
        &["--threads", "1", "--deadline", "25"],
    );
    assert!(
        out.status.success(),
        "tftp-loadgen: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_no_failure(report: &str) {
    assert_eq!(report_number::<u64>(report, "client_addresses"), 250);
    assert_eq!(report_number::<u64>(report, "sessions"), 1000, "{report}");
    assert_eq!(report_number::<u64>(report, "failures"), 0, "{report}");
    assert_eq!(report_number::<u64>(report, "completed"), 1000, "{report}");
}

/// At the primary address: the reply address is right without the listener's help (the
/// kernel picks the primary), so this holds today; limits are the defaults (4 sessions per
/// client address, well under the per-client rate and burst).
#[test]
fn load_from_250_client_addresses() {
    let Some(bed) = bed("load_from_250_client_addresses") else {
        return;
    };
    let _tftpd = bed.tftpd(&[]);
    let report = load(&bed, PRIMARY_V4);
    assert_no_failure(&report);
    eprintln!(
        "1000 sessions from 250 addresses: {} retransmissions",
        report_number::<u64>(&report, "retransmissions")
    );
}

#[test]
fn load_to_the_service_address() {
    let Some(bed) = bed("load_to_the_service_address") else {
        return;
    };
    let _tftpd = bed.tftpd(&[]);
    assert_no_failure(&load(&bed, SERVICE_V4));
}

/// curl (with `options`) from `tb-natcli` through the NAT at `server`; whether it got the
/// file intact.
fn curl_through_nat(
    bed: &Bed,
    server: &str,
    file: &str,
    want: &[u8],
    options: &[&str],
) -> Result<(), String> {
    let _ = fs::remove_file(bed.path("out"));
    let url = format!("tftp://{server}/{file}");
    let mut args = vec!["-sS", "--max-time", "8", "-o", "out"];
    args.extend_from_slice(options);
    args.push(&url);
    let out = bed.run("tb-natcli", "curl", &args);
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match fs::read(bed.path("out")) {
        Ok(got) if got == want => Ok(()),
        _ => Err(format!("curl {url}: the copy differs")),
    }
}

/// A masquerading NAT knows the flow client:P -> server:69. Per-transfer ports (RFC 1350
/// §4) answer from server:T, a flow the router never saw: it answers ICMP port unreachable
/// and the transfer fails. `--single-port` answers from port 69 and passes.
#[test]
fn nat_works_with_single_port_only() {
    let Some(bed) = bed("nat_works_with_single_port_only") else {
        return;
    };
    let want = bed.file("nat.bin", 50_000);
    {
        let _tftpd = bed.tftpd(&[]);
        let result = curl_through_nat(&bed, PRIMARY_V4, "nat.bin", &want, &[]);
        eprintln!("through the NAT, per-transfer ports: {result:?}");
        assert!(
            result.is_err(),
            "a transfer from a new server port passed the NAT: the bed no longer models a \
             NAT without a TFTP conntrack helper"
        );
    }
    let _tftpd = bed.tftpd(&["--single-port"]);
    let result = curl_through_nat(&bed, PRIMARY_V4, "nat.bin", &want, &[]);
    eprintln!("through the NAT, --single-port: {result:?}");
    result.unwrap();
    let s = bed.session("nat.bin", 0);
    assert_eq!(s.outcome, "completed", "{}", s.line);
}

#[test]
fn nat_to_the_service_address() {
    let Some(bed) = bed("nat_to_the_service_address") else {
        return;
    };
    let want = bed.file("nat.bin", 50_000);
    let _tftpd = bed.tftpd(&["--single-port"]);
    curl_through_nat(&bed, SERVICE_V4, "nat.bin", &want, &[]).unwrap();
}

/// Puts back what [`smaller_path_mtu_gets_its_blocks_fragmented`] changes in the bed, even
/// after a panic: the route, the router's link MTU, and the path MTU `tb-srv` learned.
struct PathMtuReset;

impl Drop for PathMtuReset {
    fn drop(&mut self) {
        for args in [
            &["-n", "tb-srv", "route", "del", "198.18.1.200/32"][..],
            &["-n", "tb-nat", "link", "set", "eth1", "mtu", "1500"][..],
            &["-n", "tb-srv", "route", "flush", "cache"][..],
        ] {
            let _ = std::process::Command::new("ip").args(args).status();
        }
    }
}

/// A path whose MTU is below the interface's (a tunnel, a smaller link beyond a router):
/// the block size fits the interface (1468 on MTU 1500), so each DATA is longer than the
/// path allows and must leave in fragments, lock-step and in windows (which UDP GSO sends:
/// the kernel refuses segments longer than the path, and that must cost only that send,
/// not GSO for every peer). Two paths: a route with `mtu 1280` on the server (its first
/// DATA already too long), and the router's link to its clients at MTU 1280, which the
/// server learns from the router's ICMP "fragmentation needed" (RFC 1191) after its first
/// DATA is dropped.
#[test]
fn smaller_path_mtu_gets_its_blocks_fragmented() {
    let Some(bed) = bed("smaller_path_mtu_gets_its_blocks_fragmented") else {
        return;
    };
    let want = bed.file("mtu.bin", 200_000);
    let _reset = PathMtuReset;
    let ip = |args: &[&str]| {
        let status = std::process::Command::new("ip")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "ip {args:?}: {status}");
    };
    ip(&[
        "-n",
        "tb-srv",
        "route",
        "replace",
        "198.18.1.200/32",
        "dev",
        "eth0",
        "mtu",
        "1280",
    ]);
    ip(&["-n", "tb-nat", "link", "set", "eth1", "mtu", "1280"]);
    for args in [&[][..], &["--single-port"][..]] {
        let _tftpd = bed.tftpd(args);
        // Lock-step, then windows of 8 (sent with UDP GSO where the path allows).
        for (n, window) in ["1", "8"].into_iter().enumerate() {
            let out = loadgen_from_cli(
                &bed,
                PRIMARY_V4,
                "mtu.bin",
                "1",
                "198.18.1.200-198.18.1.200",
                &["--windowsize", window, "--deadline", "15"],
            );
            let report = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && report_number::<u64>(&report, "failures") == 0,
                "{args:?}, windowsize {window}, over a route of MTU 1280: {}: {report} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            // The session log starts anew with each server.
            let s = bed.session("mtu.bin", n);
            assert_eq!(
                (s.blksize, s.windowsize, s.bytes),
                (1468, window.parse().unwrap(), want.len() as u64),
                "{}",
                s.line
            );
        }
        // A window too long for one peer's path is that send's business: GSO stays on for
        // every other peer (it was turned off for the whole process, and a forged ICMP
        // "fragmentation needed" could do that).
        let log = bed.read("tftpd.log");
        assert!(!log.contains("GSO unavailable"), "{args:?}: {log}");
    }
    // Only single-port mode passes a NAT (see `nat_works_with_single_port_only`).
    let _tftpd = bed.tftpd(&["--single-port"]);
    let blksize = ["--tftp-blksize", "1468"];
    curl_through_nat(&bed, PRIMARY_V4, "mtu.bin", &want, &blksize)
        .map_err(|e| format!("through a router with an MTU 1280 link: {e}"))
        .unwrap();
    let s = bed.session("mtu.bin", 0);
    assert_eq!(s.blksize, 1468, "{}", s.line);
}
