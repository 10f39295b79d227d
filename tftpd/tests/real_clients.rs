//! tftpd's server framework against the TFTP clients users actually run: curl, tftp-hpa's
//! `tftp`, atftp and busybox, on loopback. A missing client fails the test (CI installs
//! them with `scripts/test-deps.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use tftp_tokio::{Server, ServerOptions, SessionReport};
use tftpd::{DirHandler, RootOptions};

mod support;

struct Fixture {
    root: tempfile::TempDir,
    out: tempfile::TempDir,
    addr: SocketAddr,
    reports: Arc<Mutex<Vec<SessionReport>>>,
    _runtime: tokio::runtime::Runtime,
}

fn content(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

const SIZES: &[usize] = &[0, 1, 511, 512, 513, 1 << 20];

fn serve(options: RootOptions) -> Fixture {
    let root = tempfile::tempdir().unwrap();
    for (i, &len) in SIZES.iter().enumerate() {
        std::fs::write(root.path().join(format!("f{len}")), content(len, i as u32)).unwrap();
    }
    // More than 65,535 blocks of 512 bytes: block numbers roll over.
    std::fs::write(root.path().join("big"), content(70_000 * 512 + 7, 99)).unwrap();
    std::fs::write(
        root.path().join("text.txt"),
        b"line one\nline two\n\nlast line, no newline",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reports);
    let handler = DirHandler::new(root.path(), options).unwrap();
    let server = runtime.block_on(async {
        Server::bind(
            handler,
            ServerOptions::new()
                .listen("127.0.0.1:0".parse().unwrap())
                .on_session(move |report| r.lock().unwrap().push(report.clone())),
        )
        .unwrap()
    });
    let addr = server.local_addrs().unwrap()[0];
    runtime.spawn(server.serve());
    Fixture {
        root,
        out: tempfile::tempdir().unwrap(),
        addr,
        reports,
        _runtime: runtime,
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is not installed ({e}); run scripts/test-deps.sh"));
    assert_ne!(
        out.status.code(),
        Some(127),
        "{program} is not installed; run scripts/test-deps.sh"
    );
    out
}

impl Fixture {
    /// The session reports once `ready` holds for them. A client exits when it has the last
    /// block; the server reports the session a moment later (after the final ACK), so tests wait
    /// for the report instead of racing it.
    fn reports_when(
        &self,
        ready: impl Fn(&[SessionReport]) -> bool,
    ) -> std::sync::MutexGuard<'_, Vec<SessionReport>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            if ready(&reports) || std::time::Instant::now() > deadline {
                return reports;
            }
            drop(reports);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    fn port(&self) -> String {
        self.addr.port().to_string()
    }
    fn local(&self, name: &str) -> PathBuf {
        self.out.path().join(name)
    }
    fn assert_same(&self, remote: &str, local: &Path, client: &str) {
        let want = std::fs::read(self.root.path().join(remote)).unwrap();
        let got =
            std::fs::read(local).unwrap_or_else(|e| panic!("{client}: {remote} not fetched: {e}"));
        assert!(
            got == want,
            "{client}: {remote}: {} bytes received, {} expected, or content differs",
            got.len(),
            want.len()
        );
    }
    fn curl_get(&self, remote: &str, blksize: Option<u16>) -> Output {
        let url = format!("tftp://127.0.0.1:{}/{remote}", self.port());
        let local = self.local(&format!("curl-{remote}-{blksize:?}"));
        let mut args = vec!["-sS", "--max-time", "100", "-o", local.to_str().unwrap()];
        let b;
        if let Some(blksize) = blksize {
            b = blksize.to_string();
            args.extend(["--tftp-blksize", &b]);
        }
        args.push(&url);
        let out = run("curl", &args);
        if out.status.success() {
            self.assert_same(remote, &local, &format!("curl blksize {blksize:?}"));
        }
        out
    }
}

#[test]
fn curl_fetches_every_size_at_every_block_size() {
    let f = serve(RootOptions::default());
    for &len in SIZES {
        for blksize in [None, Some(1468), Some(65464)] {
            let out = f.curl_get(&format!("f{len}"), blksize);
            assert!(
                out.status.success(),
                "curl f{len} {blksize:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // The empty file works with curl's defaults because tsize 0 is left out of the OACK.
    let reports = f.reports_when(|r| r.iter().any(|r| r.filename == "f0"));
    let empty = reports
        .iter()
        .find(|r| r.filename == "f0")
        .expect("a report for f0");
    assert!(empty.stats.is_success());
}

#[test]
fn more_than_65535_blocks_roll_over() {
    let f = serve(RootOptions::default());
    let out = f.curl_get("big", None);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local = f.local("hpa-big");
    let out = run(
        "tftp",
        &[
            "-m",
            "binary",
            "127.0.0.1",
            &f.port(),
            "-c",
            "get",
            "big",
            local.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "tftp-hpa: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.assert_same("big", &local, "tftp-hpa");
    let reports = f.reports_when(|r| r.iter().filter(|r| r.filename == "big").count() == 2);
    let big: Vec<_> = reports.iter().filter(|r| r.filename == "big").collect();
    assert_eq!(big.len(), 2, "{reports:#?}");
    assert!(big.iter().all(|r| r.stats.blocks == 70_001), "{big:#?}");
}

#[test]
fn tftp_hpa_fetches_every_size_and_netascii() {
    let f = serve(RootOptions::default());
    for &len in SIZES {
        let name = format!("f{len}");
        let local = f.local(&format!("hpa-{name}"));
        let out = run(
            "tftp",
            &[
                "-m",
                "binary",
                "127.0.0.1",
                &f.port(),
                "-c",
                "get",
                &name,
                local.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        f.assert_same(&name, &local, "tftp-hpa");
    }
    // Netascii: the file goes out as CR LF and tftp-hpa turns it back into LF.
    let local = f.local("text.txt");
    let out = run(
        "tftp",
        &[
            "-m",
            "ascii",
            "127.0.0.1",
            &f.port(),
            "-c",
            "get",
            "text.txt",
            local.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    f.assert_same("text.txt", &local, "tftp-hpa netascii");
    // And the wire carried CR LF: atftp in netascii mode keeps what it receives... so check
    // via our own statistics instead: 3 line feeds became CR LF, 3 more bytes on the wire.
    let reports = f.reports_when(|r| r.iter().any(|r| r.filename == "text.txt"));
    let text = reports
        .iter()
        .find(|r| r.filename == "text.txt")
        .expect("a report for text.txt");
    assert_eq!(
        text.stats.bytes,
        std::fs::metadata(f.root.path().join("text.txt"))
            .unwrap()
            .len()
            + 3
    );
}

#[test]
fn atftp_and_busybox_fetch_with_options() {
    let f = serve(RootOptions::default());
    for &len in SIZES {
        let name = format!("f{len}");
        for blksize in ["512", "1468", "65464"] {
            let local = f.local(&format!("atftp-{name}-{blksize}"));
            let opt = format!("blksize {blksize}");
            let out = run(
                "atftp",
                &[
                    "--option",
                    &opt,
                    "--option",
                    "tsize 0",
                    "-g",
                    "-r",
                    &name,
                    "-l",
                    local.to_str().unwrap(),
                    "127.0.0.1",
                    &f.port(),
                ],
            );
            assert!(
                out.status.success(),
                "atftp {name} {blksize}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            f.assert_same(&name, &local, "atftp");
            let local = f.local(&format!("bb-{name}-{blksize}"));
            let out = run(
                "busybox",
                &[
                    "tftp",
                    "-g",
                    "-b",
                    blksize,
                    "-r",
                    &name,
                    "-l",
                    local.to_str().unwrap(),
                    "127.0.0.1",
                    &f.port(),
                ],
            );
            assert!(
                out.status.success(),
                "busybox {name} {blksize}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            f.assert_same(&name, &local, "busybox");
        }
        // atftp also speaks windowsize (RFC 7440).
        let local = f.local(&format!("atftp-w-{name}"));
        let out = run(
            "atftp",
            &[
                "--option",
                "blksize 1468",
                "--option",
                "windowsize 8",
                "-g",
                "-r",
                &name,
                "-l",
                local.to_str().unwrap(),
                "127.0.0.1",
                &f.port(),
            ],
        );
        assert!(
            out.status.success(),
            "atftp windowsize {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f.assert_same(&name, &local, "atftp windowsize 8");
    }
    // Seven transfers per size: atftp and busybox at three block sizes, atftp windowed.
    let reports = f.reports_when(|r| r.len() >= SIZES.len() * 7);
    assert!(reports.iter().any(|r| r.stats.options.windowsize == 8));
    assert!(reports.iter().all(|r| r.stats.is_success()), "{reports:#?}");
}

#[test]
fn uploads_with_every_client_when_enabled() {
    let f = serve(RootOptions {
        allow_write: true,
        ..RootOptions::default()
    });
    let src = f.local("upload-src");
    let data = content(300_000, 7);
    std::fs::write(&src, &data).unwrap();
    let src = src.to_str().unwrap();
    let port = f.port();
    let url = format!("tftp://127.0.0.1:{port}/up-curl");
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "curl",
            vec!["-sS", "--max-time", "60", "-T", src, &url],
            "up-curl",
        ),
        (
            "tftp",
            vec![
                "-m",
                "binary",
                "127.0.0.1",
                &port,
                "-c",
                "put",
                src,
                "up-hpa",
            ],
            "up-hpa",
        ),
        (
            "atftp",
            vec![
                "--option",
                "blksize 1468",
                "-p",
                "-l",
                src,
                "-r",
                "up-atftp",
                "127.0.0.1",
                &port,
            ],
            "up-atftp",
        ),
        (
            "busybox",
            vec![
                "tftp",
                "-p",
                "-b",
                "1468",
                "-l",
                src,
                "-r",
                "up-bb",
                "127.0.0.1",
                &port,
            ],
            "up-bb",
        ),
    ];
    for (client, args, name) in cases {
        let out = run(client, &args);
        assert!(
            out.status.success(),
            "{client} upload: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stored = std::fs::read(f.root.path().join(name)).unwrap();
        assert!(stored == data, "{client}: upload differs");
    }
    // Without --allow-overwrite an existing name is refused.
    let out = run(
        "busybox",
        &["tftp", "-p", "-l", src, "-r", "f1", "127.0.0.1", &port],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(6)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(f.root.path().join("f1")).unwrap().len(), 1);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(f.root.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tftp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn uploads_are_refused_when_writing_is_disabled() {
    let f = serve(RootOptions::default());
    let src = f.local("src");
    std::fs::write(&src, b"data").unwrap();
    let out = run(
        "busybox",
        &[
            "tftp",
            "-p",
            "-l",
            src.to_str().unwrap(),
            "-r",
            "new",
            "127.0.0.1",
            &f.port(),
        ],
    );
    assert!(!out.status.success());
    // busybox prints the code's standard text: (2) Access violation.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(2)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!f.root.path().join("new").exists());
}

#[test]
fn traversal_is_refused_without_revealing_paths() {
    let f = serve(RootOptions::default());
    for name in ["../etc/passwd", "a/../../etc/passwd", "..\\..\\etc\\passwd"] {
        let local = f.local("stolen");
        let out = run(
            "busybox",
            &[
                "tftp",
                "-g",
                "-r",
                name,
                "-l",
                local.to_str().unwrap(),
                "127.0.0.1",
                &f.port(),
            ],
        );
        assert!(!out.status.success(), "{name} was served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Access violation"), "{name}: {err}");
        assert!(!err.contains(f.root.path().to_str().unwrap()));
    }
    let out = run(
        "busybox",
        &[
            "tftp",
            "-g",
            "-r",
            "missing",
            "-l",
            "/dev/null",
            "127.0.0.1",
            &f.port(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("File not found") && !err.contains(f.root.path().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn our_client_against_tftpd_hpa() {
    let root = tempfile::tempdir().unwrap();
    let data = content(200_000, 3);
    std::fs::write(root.path().join("file"), &data).unwrap();
    std::fs::write(root.path().join("empty"), b"").unwrap();
    // Pick a free port, then let in.tftpd bind it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Command::new("/usr/sbin/in.tftpd")
        .args([
            "--foreground",
            "--address",
            &addr,
            "--secure",
            "--create",
            "--user",
            "root",
        ])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("in.tftpd (tftpd-hpa) is not installed; run scripts/test-deps.sh");
    let _daemon = support::Daemon(daemon);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tftp = env!("CARGO_BIN_EXE_tftp");
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("file");
    let cases: &[&[&str]] = &[&[], &["-b", "1468"], &["-b", "65464"], &["--no-tsize"]];
    for extra in cases {
        let mut args = vec!["get", &addr, "file", dest.to_str().unwrap(), "-q"];
        args.extend_from_slice(extra);
        let out = run(tftp, &args);
        assert!(
            out.status.success(),
            "tftp get {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::read(&dest).unwrap() == data, "{extra:?}");
    }
    let out = run(
        tftp,
        &[
            "get",
            &addr,
            "empty",
            out_dir.path().join("e").to_str().unwrap(),
            "-q",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        tftp,
        &[
            "get",
            &addr,
            "missing",
            out_dir.path().join("m").to_str().unwrap(),
            "-q",
        ],
    );
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("File not found")
    );
    assert!(
        !out_dir.path().join("m").exists(),
        "a failed get leaves no file"
    );
    let out = run(
        tftp,
        &[
            "put",
            &addr,
            dest.to_str().unwrap(),
            "uploaded",
            "-q",
            "-b",
            "1468",
        ],
    );
    assert!(
        out.status.success(),
        "tftp put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(root.path().join("uploaded")).unwrap() == data);
}

/// With `case_insensitive`, a name that is not exact is resolved through the directory's
/// index: built on the blocking pool when missing or out of date, used inline otherwise.
#[test]
fn case_insensitive_names_are_served() {
    let f = serve(RootOptions {
        case_insensitive: true,
        ..RootOptions::default()
    });
    for round in 0..2 {
        let local = f.local(&format!("curl-F513-{round}"));
        let url = format!("tftp://127.0.0.1:{}/F513", f.port());
        let args = [
            "-sS",
            "--max-time",
            "100",
            "-o",
            local.to_str().unwrap(),
            &url,
        ];
        let out = run("curl", &args);
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f.assert_same("f513", &local, "curl F513");
        let url = format!("tftp://127.0.0.1:{}/NOT-THERE", f.port());
        let missing = f.local("missing");
        let args = [
            "-sS",
            "--max-time",
            "100",
            "-o",
            missing.to_str().unwrap(),
            &url,
        ];
        assert!(!run("curl", &args).status.success());
    }
}
