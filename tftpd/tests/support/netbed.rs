//! The network test bed of `scripts/netbed.sh`, shared by the tests that use it
//! (`tests/netbed.rs`, and the boots on the bed in `tests/boot.rs`): bringing it up for one
//! test at a time (a lock file across processes), `tftpd` in `tb-srv`, commands in a
//! namespace under `timeout`, the session log; the bed comes down when the last waiting test
//! is done, even after a panic.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub use super::{Session, skip};
use super::{on_path, stop};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/netbed.sh");
/// Held while a test uses the bed, so that two test processes (two worktrees, a rerun) do
/// not share the machine-wide namespace names.
pub const LOCK_FILE: &str = "/tmp/tftp-netbed.lock";
/// Every process a test starts runs under `timeout` with at most this many seconds.
pub const PROCESS_LIMIT: &str = "300";
/// A client's limit (seconds): the transfers here take milliseconds.
pub const CLIENT_LIMIT: &str = "30";

pub const SERVICE_V4: &str = "198.18.0.2";
pub const PRIMARY_V4: &str = "198.18.0.1";
pub const SERVICE_V6: &str = "2001:db8::2";
pub const PRIMARY_V6: &str = "2001:db8::1";
/// The server's addresses per family, the service address first.
pub const SERVER_V4: [&str; 2] = [SERVICE_V4, PRIMARY_V4];
pub const SERVER_V6: [&str; 2] = [SERVICE_V6, PRIMARY_V6];

pub static ONE_TEST: Mutex<()> = Mutex::new(());
/// Tests waiting for [`ONE_TEST`]: the bed comes down when a test ends and none waits.
pub static WAITING: AtomicUsize = AtomicUsize::new(0);

/// The bed, up, for one test at a time; a directory with `root/` (the served files) and the
/// logs. Brings the bed down when dropped if no other test waits for it.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub _lock: File,
    pub _one: MutexGuard<'static, ()>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        if WAITING.load(Ordering::SeqCst) == 0 {
            let _ = Command::new("bash").args([SCRIPT, "down"]).status();
        }
    }
}

/// `None` (and why) where the bed cannot be built: not root, or no network namespaces.
pub fn bed(test: &str) -> Option<Bed> {
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
pub fn lock_file() -> File {
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
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file of `len` pseudo-random bytes in the served root.
    pub fn file(&self, name: &str, len: usize) -> Vec<u8> {
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
    pub fn tftpd(&self, args: &[&str]) -> Tftpd {
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

    pub fn read(&self, name: &str) -> String {
        fs::read(self.path(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Run `program args` in namespace `ns`, in the bed's directory, bounded by
    /// [`CLIENT_LIMIT`].
    pub fn run(&self, ns: &str, program: &str, args: &[&str]) -> Output {
        in_ns(ns, CLIENT_LIMIT, program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// The session log's line for the `n`th (from 0) session on `file`, once written (a
    /// server logs a read when the last ACK arrives, which may be just after the client
    /// exits).
    pub fn session(&self, file: &str, n: usize) -> Session {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Session> = Session::parse_log(&self.read("sessions.log"))
                .into_iter()
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
pub fn in_ns(ns: &str, limit: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "timeout", "-k", "5", limit, program])
        .stdin(Stdio::null());
    c
}

/// `tftpd` in `tb-srv`: stopped (SIGTERM, which `timeout` passes on; then SIGKILL) and
/// reaped on drop, so that port 69 is free for the next test.
pub struct Tftpd {
    pub child: Child,
}

impl Drop for Tftpd {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(10));
    }
}
