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
//!
//! What makes them pass: the listener learns each request's destination and interface
//! (`tftp_common::udp`, `IP_PKTINFO`/`IPV6_PKTINFO`), binds each transfer socket to the
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

use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/netbed.sh");
/// Held while a test uses the bed, so that two test processes (two worktrees, a rerun) do
/// not share the machine-wide namespace names.
const LOCK_FILE: &str = "/tmp/tftp-netbed.lock";
/// Every process a test starts runs under `timeout` with at most this many seconds.
const PROCESS_LIMIT: &str = "300";
/// A client's limit (seconds): the transfers here take milliseconds.
const CLIENT_LIMIT: &str = "30";

const SERVICE_V4: &str = "198.18.0.2";
const PRIMARY_V4: &str = "198.18.0.1";
const SERVICE_V6: &str = "2001:db8::2";
const PRIMARY_V6: &str = "2001:db8::1";
/// The server's addresses per family, the service address first.
const SERVER_V4: [&str; 2] = [SERVICE_V4, PRIMARY_V4];
const SERVER_V6: [&str; 2] = [SERVICE_V6, PRIMARY_V6];

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

static ONE_TEST: Mutex<()> = Mutex::new(());
/// Tests waiting for [`ONE_TEST`]: the bed comes down when a test ends and none waits.
static WAITING: AtomicUsize = AtomicUsize::new(0);

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn skip(test: &str, why: &str) {
    eprintln!("skipped {test}: {why}");
}

/// The bed, up, for one test at a time; a directory with `root/` (the served files) and the
/// logs. Brings the bed down when dropped if no other test waits for it.
struct Bed {
    dir: tempfile::TempDir,
    _lock: File,
    _one: MutexGuard<'static, ()>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if WAITING.load(Ordering::SeqCst) == 0 {
            let _ = Command::new("bash").args([SCRIPT, "down"]).status();
        }
    }
}

/// `None` (and why) where the bed cannot be built: not root, or no network namespaces.
fn bed(test: &str) -> Option<Bed> {
    if !rustix::process::geteuid().is_root() {
        skip(test, "needs root (network namespaces)");
        return None;
    }
    if !on_path("ip") {
        skip(test, "no `ip` (iproute2): no network namespaces");
        return None;
    }
    for program in [
        "nft", "timeout", "ss", "curl", "busybox", "atftp", "python3", "bash",
    ] {
        assert!(
            on_path(program),
            "{program} is not installed: run scripts/test-deps.sh"
        );
    }
    assert!(
        Path::new("/usr/bin/tftp").exists(),
        "tftp-hpa's /usr/bin/tftp is missing: run scripts/test-deps.sh"
    );
    WAITING.fetch_add(1, Ordering::SeqCst);
    let one = ONE_TEST.lock().unwrap_or_else(|e| e.into_inner());
    WAITING.fetch_sub(1, Ordering::SeqCst);
    let lock = lock_file();
    let out = Command::new("bash").args([SCRIPT, "up"]).output().unwrap();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let _ = Command::new("bash").args([SCRIPT, "down"]).status();
        if err.contains("Operation not permitted") || err.contains("Permission denied") {
            skip(test, &format!("no network namespaces here: {}", err.trim()));
            return None;
        }
        panic!("netbed.sh up failed ({}): {err}", out.status);
    }
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("root")).unwrap();
    Some(Bed {
        dir,
        _lock: lock,
        _one: one,
    })
}

/// The machine-wide lock, waited for up to 10 minutes (another process's tests).
fn lock_file() -> File {
    use rustix::fs::{FlockOperation, flock};
    let file = File::create(LOCK_FILE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_err() {
        assert!(
            Instant::now() < deadline,
            "{LOCK_FILE} held by another process for 10 minutes"
        );
        sleep(Duration::from_millis(100));
    }
    file
}

impl Bed {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file of `len` pseudo-random bytes in the served root.
    fn file(&self, name: &str, len: usize) -> Vec<u8> {
        let mut x: u32 = 0x2545_f491;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        fs::write(self.path("root").join(name), &bytes).unwrap();
        bytes
    }

    /// `tftpd --root root --session-log sessions.log --shutdown-grace 0 ARGS` in `tb-srv`,
    /// listening on its default `[::]:69`.
    fn tftpd(&self, args: &[&str]) -> Tftpd {
        let _ = fs::remove_file(self.path("sessions.log"));
        let log = File::create(self.path("tftpd.log")).unwrap();
        let child = in_ns("tb-srv", PROCESS_LIMIT, env!("CARGO_BIN_EXE_tftpd"))
            .args(["--root", "root", "--session-log", "sessions.log"])
            .args(["--shutdown-grace", "0"])
            .args(args)
            .current_dir(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut tftpd = Tftpd { child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = in_ns("tb-srv", "10", "ss").arg("-Hlun").output().unwrap();
            let listening = String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.split_whitespace().any(|w| w.ends_with(":69")));
            if listening {
                return tftpd;
            }
            if let Some(status) = tftpd.child.try_wait().unwrap() {
                panic!(
                    "tftpd exited ({status}) before listening:\n{}",
                    self.read("tftpd.log")
                );
            }
            assert!(
                Instant::now() < deadline,
                "tftpd is not listening on port 69 after 20 s"
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn read(&self, name: &str) -> String {
        fs::read(self.path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Run `program args` in namespace `ns`, in the bed's directory, bounded by
    /// [`CLIENT_LIMIT`].
    fn run(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        in_ns(ns, CLIENT_LIMIT, program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// The session log's line for the `n`th (from 0) session on `file`, once written (a
    /// server logs a read when the last ACK arrives, which may be just after the client
    /// exits).
    fn session(&self, file: &str, n: usize) -> Session {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Session> = self
                .read("sessions.log")
                .lines()
                .map(Session::parse)
                .filter(|s| s.file == file)
                .collect();
            if let Some(s) = found.into_iter().nth(n) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no session {n} for {file} in the session log after 10 s:\n{}",
                self.read("sessions.log")
            );
            sleep(Duration::from_millis(50));
        }
    }
}

/// `ip netns exec NS timeout -k 5 LIMIT PROGRAM`.
fn in_ns(ns: &str, limit: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "timeout", "-k", "5", limit, program])
        .stdin(Stdio::null());
    c
}

/// `tftpd` in `tb-srv`: stopped (SIGTERM, which `timeout` passes on; then SIGKILL) and
/// reaped on drop, so that port 69 is free for the next test.
struct Tftpd {
    child: Child,
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One line of `--session-log` (the fields these tests need).
#[derive(Debug)]
struct Session {
    file: String,
    local: SocketAddr,
    outcome: String,
    bytes: u64,
    blksize: u64,
    line: String,
}

impl Session {
    fn parse(line: &str) -> Session {
        fn raw<'a>(json: &'a str, key: &str) -> Option<&'a str> {
            let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
            let rest = &json[at..];
            if let Some(s) = rest.strip_prefix('"') {
                return s.find('"').map(|end| &s[..end]);
            }
            Some(&rest[..rest.find([',', '}']).unwrap_or(rest.len())])
        }
        // `requested` comes last; the granted values are found before it.
        let top = line.split("\"requested\":").next().unwrap_or(line);
        let field = |key: &str| {
            raw(top, key)
                .unwrap_or_else(|| panic!("no {key} in {line}"))
                .to_string()
        };
        Session {
            file: field("file"),
            local: field("local").parse().unwrap(),
            outcome: field("outcome"),
            bytes: field("bytes").parse().unwrap(),
            blksize: field("blksize").parse().unwrap(),
            line: line.to_string(),
        }
    }
}

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
    let Some(bed) = bed(test) else { return };
    let want = bed.file("hello.bin", 100_000);
    let args: &[&str] = if single_port { &["--single-port"] } else { &[] };
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

/// `tftp-loadgen` (built if needed: it belongs to the `tftp-benches` package).
fn loadgen() -> PathBuf {
    let tftpd = Path::new(env!("CARGO_BIN_EXE_tftpd"));
    let profile_dir = tftpd.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let mut build = Command::new("timeout");
    build
        .args([
            "600",
            option_env!("CARGO").unwrap_or("cargo"),
            "build",
            "-q",
        ])
        .args([
            "-p",
            "tftp-benches",
            "--bin",
            "tftp-loadgen",
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building tftp-loadgen failed: {status}");
    profile_dir.join("tftp-loadgen")
}

/// 1,000 sessions from 250 client addresses of `tb-cli`, at `server`; the JSON report.
fn load(bed: &Bed, server: &str) -> String {
    let loadgen = loadgen();
    bed.file("load.bin", 100_000);
    let verify = bed.path("root/load.bin");
    let out = bed.run(
        "tb-cli",
        loadgen.to_str().unwrap(),
        &[
            "--server",
            &format!("{server}:69"),
            "--file",
            "load.bin",
            "--clients",
            "1000",
            "--threads",
            "1",
            "--bind-from",
            "198.18.1.1-198.18.1.250",
            "--blksize",
            "1468",
            "--verify",
            verify.to_str().unwrap(),
            "--deadline",
            "25",
        ],
    );
    assert!(
        out.status.success(),
        "tftp-loadgen: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A number in the loadgen's pretty JSON report.
fn report_number(report: &str, key: &str) -> u64 {
    let at = report
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {report}"));
    let rest = &report[at + key.len() + 4..];
    rest[..rest.find([',', '\n']).unwrap()].parse().unwrap()
}

fn assert_no_failure(report: &str) {
    assert_eq!(report_number(report, "client_addresses"), 250);
    assert_eq!(report_number(report, "sessions"), 1000, "{report}");
    assert_eq!(report_number(report, "failures"), 0, "{report}");
    assert_eq!(report_number(report, "completed"), 1000, "{report}");
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
        report_number(&report, "retransmissions")
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

/// curl from `tb-natcli` through the NAT at `server`; whether it got the file intact.
fn curl_through_nat(bed: &Bed, server: &str, file: &str, want: &[u8]) -> Result<(), String> {
    let _ = fs::remove_file(bed.path("out"));
    let url = format!("tftp://{server}/{file}");
    let out = bed.run(
        "tb-natcli",
        "curl",
        &["-sS", "--max-time", "8", "-o", "out", &url],
    );
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
        let result = curl_through_nat(&bed, PRIMARY_V4, "nat.bin", &want);
        eprintln!("through the NAT, per-transfer ports: {result:?}");
        assert!(
            result.is_err(),
            "a transfer from a new server port passed the NAT: the bed no longer models a \
             NAT without a TFTP conntrack helper"
        );
    }
    let _tftpd = bed.tftpd(&["--single-port"]);
    let result = curl_through_nat(&bed, PRIMARY_V4, "nat.bin", &want);
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
    curl_through_nat(&bed, SERVICE_V4, "nat.bin", &want).unwrap();
}
