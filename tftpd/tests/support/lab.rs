//! What the qemu tests (`boot.rs`, `uboot.rs`) share: a network namespace of their own (or a
//! named one, such as the test bed's) with the processes started in it ([`Lab`]), the tap device, the one-guest lock, `tftpd`'s JSON
//! session log, and the README's "Booting real machines" section.
//!
//! Included by path (`#[path = "support/lab.rs"] mod lab;`), not from `support/mod.rs`: only
//! the qemu tests compile it. It builds on `support/mod.rs` (the session log's [`Session`],
//! stopping a process), so the test also declares `mod support;`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub use crate::support::{Session, skip};
use crate::support::{on_path, stop};

/// Every process a test starts runs under `timeout` with this limit, should the test die.
pub const PROCESS_LIMIT: &str = "300";

// The command lines, run with the test's directory as the working directory (`root/` holds
// the served files). The README shows them verbatim (`tftpd` is the built binary).

/// Namespace set-up shared by every test (after `unshare --net`).
pub const NETNS_SETUP: &[&str] = &["ip link set lo up", "ip addr add 192.0.2.1/32 dev lo"];

/// The tap device for the guests on a real link (after [`NETNS_SETUP`]). The IPv6 address
/// only lets dnsmasq send router advertisements: without them iPXE waits about 15 s for IPv6.
pub const TAP_SETUP: &[&str] = &[
    "ip tuntap add dev tap0 mode tap",
    "ip addr add 192.168.77.1/24 dev tap0",
    "ip -6 addr add fd77::1/64 dev tap0 nodad",
    "ip link set tap0 up",
];

/// `tftpd` with its defaults on port 69 of the tap device's address.
pub const TAP_TFTPD: &str =
    "tftpd --root root --listen 192.168.77.1:69 --session-log sessions.log -v";

static ONE_GUEST: Mutex<()> = Mutex::new(());

/// qemu under TCG wants a core of its own: one guest at a time.
pub fn one_guest() -> MutexGuard<'static, ()> {
    ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A missing tool fails the test: CI installs them all.
pub fn require(programs: &[&str], files: &[&str]) {
    for program in programs {
        assert!(
            on_path(program),
            "{program} is not installed: run scripts/test-deps.sh"
        );
    }
    for file in files {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: run scripts/test-deps.sh"
        );
    }
}

/// A process started in the namespace under `timeout`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(5));
    }
}

/// A network namespace (of its own, held by `unshare --net sleep`, or a named one), a
/// directory with `root/` and the logs, and the processes started in it.
pub struct Lab {
    pub procs: Vec<Proc>,
    dir: PathBuf,
    /// `dir`, when the lab made it: removed with the lab.
    _tmp: Option<tempfile::TempDir>,
    /// `nsenter`'s argument naming the namespace: `--net=FILE`.
    net: String,
    /// `unshare --net sleep`, holding the lab's own namespace.
    holder: Option<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Last started first: qemu, then the servers.
        while let Some(p) = self.procs.pop() {
            drop(p);
        }
        if let Some(holder) = &mut self.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

impl Lab {
    /// `Err` (the reason) where the kernel refuses a network namespace.
    pub fn new() -> Result<Lab, String> {
        require(&["unshare", "nsenter", "timeout", "ip", "ss"], &[]);
        let mut holder = Command::new("unshare")
            .args(["--net", "sleep", PROCESS_LIMIT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare");
        let ours = fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = holder.try_wait().unwrap() {
                let mut err = String::new();
                let _ = holder.stderr.take().unwrap().read_to_string(&mut err);
                let err = format!("`unshare --net` failed ({status}): {}", err.trim());
                if err.contains("Operation not permitted") || err.contains("Permission denied") {
                    return Err(err);
                }
                panic!("{err}");
            }
            if fs::read_link(format!("/proc/{}/ns/net", holder.id())).is_ok_and(|ns| ns != ours) {
                break;
            }
            assert!(Instant::now() < deadline, "unshare --net did not start");
            sleep(Duration::from_millis(10));
        }
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("root")).unwrap();
        let lab = Lab {
            procs: Vec::new(),
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
            net: format!("--net=/proc/{}/ns/net", holder.id()),
            holder: Some(holder),
        };
        for line in NETNS_SETUP {
            lab.run(line)
                .unwrap_or_else(|e| panic!("namespace set-up: {e}"));
        }
        Ok(lab)
    }

    /// A lab in the existing namespace `ns` (`ip netns add`, e.g. one of the test bed's),
    /// working in `dir` (with `root/`), which it neither makes nor removes. Labs in a bed's
    /// namespaces share the bed's directory: one per namespace, all dropped before the bed.
    pub fn in_netns(ns: &str, dir: &Path) -> Lab {
        require(&["nsenter", "timeout", "ip", "ss"], &[]);
        let file = format!("/run/netns/{ns}");
        assert!(Path::new(&file).exists(), "no network namespace {ns}");
        Lab {
            procs: Vec::new(),
            dir: dir.to_path_buf(),
            _tmp: None,
            net: format!("--net={file}"),
            holder: None,
        }
    }

    /// [`TAP_SETUP`]: `Err` (the reason) where there is no `/dev/net/tun` or the kernel
    /// refuses a tap device.
    pub fn add_tap(&self) -> Result<(), String> {
        self.add_tap_with(TAP_SETUP)
    }

    /// A tap device by `setup`, whose first line creates it (`ip tuntap add ...`): `Err`
    /// (the reason) where there is no `/dev/net/tun` or the kernel refuses a tap device.
    pub fn add_tap_with(&self, setup: &[&str]) -> Result<(), String> {
        if !Path::new("/dev/net/tun").exists() {
            return Err("no /dev/net/tun".to_string());
        }
        if let Err(e) = self.run(setup[0]) {
            if e.contains("Operation not permitted") || e.contains("No such device") {
                return Err(format!("no tap device: {e}"));
            }
            panic!("stage 0 failed: {e}");
        }
        for line in &setup[1..] {
            self.run(line)
                .unwrap_or_else(|e| panic!("stage 0 failed: {e}"));
        }
        Ok(())
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `nsenter` into the namespace, in the lab's directory.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([&self.net, "--"])
            .arg(program)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, line: &str) -> Result<String, String> {
        let words = words(line);
        let out = self.command(words[0]).args(&words[1..]).output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`{line}`: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `line` under `timeout` in the namespace (`tftpd` is the built binary).
    fn process(&self, line: &str) -> Command {
        let mut words = words(line);
        let tftpd = env!("CARGO_BIN_EXE_tftpd");
        if words[0] == "tftpd" {
            words[0] = tftpd;
        }
        let mut c = self.command("timeout");
        c.args(["-k", "5", PROCESS_LIMIT]).args(&words);
        c
    }

    /// Start `line` in the namespace; its output goes to `<name>.log`.
    pub fn spawn(&mut self, name: &'static str, line: &str) {
        let log = File::create(self.path(&format!("{name}.log"))).unwrap();
        let child = self
            .process(line)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push(Proc { name, child });
    }

    /// Start `line` (qemu with `-serial stdio`) in the namespace: what it writes to stdout
    /// goes to `serial.log`, its stderr to `<name>.log`; the console's input is returned.
    pub fn spawn_console(&mut self, name: &'static str, line: &str) -> ChildStdin {
        let serial = File::create(self.path("serial.log")).unwrap();
        let log = File::create(self.path(&format!("{name}.log"))).unwrap();
        let mut child = self
            .process(line)
            .stdin(Stdio::piped())
            .stdout(serial)
            .stderr(log)
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        self.procs.push(Proc { name, child });
        input
    }

    pub fn read(&self, name: &str) -> String {
        fs::read(self.path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Wait until a UDP socket is bound to `port` in the namespace.
    pub fn wait_for_udp_port(&mut self, port: u16, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let bound = self.run("ss -Hlun").unwrap_or_else(|e| panic!("{e}"));
            if bound.lines().any(|l| {
                l.split_whitespace()
                    .any(|w| w.ends_with(&format!(":{port}")))
            }) {
                return;
            }
            let proc = self.procs.last_mut().unwrap();
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!(
                    "stage 0 failed: {what} exited ({status}) before listening on port {port}\n{}",
                    self.diagnostics()
                );
            }
            assert!(
                Instant::now() < deadline,
                "stage 0 failed: {what} is not listening on port {port} after 20 s\n{}",
                self.diagnostics()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// The session log, once every file in `files` has a finished transfer (tftpd writes the
    /// line when the last ACK arrives, which may be just after the guest reports success).
    pub fn sessions(&self, files: &[&str]) -> Vec<Session> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions = Session::parse_log(&self.read("sessions.log"));
            if files.iter().all(|f| {
                sessions
                    .iter()
                    .any(|s| s.file == *f && s.outcome != "size_probe")
            }) {
                for s in &sessions {
                    eprintln!("  {s}");
                }
                return sessions;
            }
            assert!(
                Instant::now() < deadline,
                "the guest finished, but tftpd's session log lacks one of {files:?}\n{}",
                self.diagnostics()
            );
            sleep(Duration::from_millis(100));
        }
    }

    pub fn diagnostics(&self) -> String {
        let mut out = format!("--- in {}", self.dir.display());
        for name in ["serial", "qemu", "tftpd", "dnsmasq", "sessions"] {
            let file = format!("{name}.log");
            if !self.path(&file).exists() {
                continue;
            }
            let text = printable(&self.read(&file));
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out += &format!(
                "\n--- {file} (last {} lines)\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        let running: Vec<_> = self.procs.iter().map(|p| p.name).collect();
        out + &format!("\n--- started: {running:?}")
    }
}

/// The console without terminal escape sequences and carriage returns.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // ESC [ params letter, or ESC and one character.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

pub fn file_size(lab: &Lab, name: &str) -> u64 {
    fs::metadata(lab.path("root").join(name)).unwrap().len()
}

/// The README's "Booting real machines" section, as written.
pub fn readme_section() -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("## Booting real machines")
        .expect("README has the section");
    let end = readme[start + 3..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + 3 + i);
    readme[start..end].to_string()
}

/// Shell text flattened for comparison: line continuations undone, quotes dropped, one space
/// between words.
pub fn flat(s: &str) -> String {
    words(&s.replace("\\\n", " ").replace('\'', "")).join(" ")
}
