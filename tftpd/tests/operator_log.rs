//! What `tftpd` tells the operator: what it serves where at start-up, why it refused a
//! request (the client only gets the terse TFTP error), and why it will not start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::UdpSocket;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, free_udp, wait_ready};

/// Send an RRQ for `name` to 127.0.0.1:`port`; the ERROR's code and message.
fn refused(port: u16, name: &[u8]) -> (u16, String) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = b"\x00\x01".to_vec();
    rrq.extend_from_slice(name);
    rrq.extend_from_slice(b"\x00octet\x00");
    s.send_to(&rrq, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = s.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..2], b"\x00\x05", "an ERROR packet");
    let code = u16::from_be_bytes([buf[2], buf[3]]);
    let message = String::from_utf8_lossy(&buf[4..n - 1]).into_owned();
    (code, message)
}

/// The log's lines containing every one of `needles`, waited for (up to 5 s) until there
/// is at least one.
fn lines_with(log: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        let found: Vec<String> = text
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refusals_are_logged_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(tmp.path().join("secret"), b"outside").unwrap();
    fs::write(root.join("ok.txt"), b"fine").unwrap();
    fs::hard_link(tmp.path().join("secret"), root.join("hl")).unwrap();
    symlink("../secret", root.join("out")).unwrap();
    fs::create_dir(root.join("dir")).unwrap();

    let log = tmp.path().join("tftpd.log");
    let port = free_udp();
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
            .arg(&root)
            .stderr(fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(port);
    let serving = format!("serving {} on 127.0.0.1:{port}", root.display());
    assert_eq!(lines_with(&log, &[&serving]).len(), 1, "start-up line");

    // The client learns nothing but the code and the fixed message.
    for name in ["hl", "out", "dir", "hl", "hl"] {
        assert_eq!(
            refused(port, name.as_bytes()),
            (2, "Access violation".to_string()),
            "{name}"
        );
    }
    assert_eq!(
        refused(port, b"a\x1b[31m/../x").1,
        "Access violation",
        "a `..` component"
    );

    for (file, reason) in [
        ("hl", "refused: a file with more than one hard link"),
        ("out", "refused: a symlink leading out of the root"),
        ("dir", "refused: a directory, not a regular file"),
        // Control characters in the name are escaped: no terminal escape reaches the log.
        ("a\\u{1b}[31m/../x", "refused: a `..` component in the name"),
    ] {
        let lines = lines_with(&log, &[reason, &format!("file={file} ")]);
        // Three refused hard links, one line: at most one per reason every 10 s.
        assert_eq!(lines.len(), 1, "{reason}: {lines:#?}");
        assert!(lines[0].contains(" INFO "), "{}", lines[0]);
        assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
        assert!(lines[0].contains("suppressed=0"), "{}", lines[0]);
    }
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\x1b'), "a raw ESC in the log:\n{text}");
    // The reason's line is the refusal's only one at info level: the server's own report of
    // a handler's refusal ("request refused" with the file) is at debug level.
    let twice: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("request refused") && l.contains("file="))
        .collect();
    assert!(twice.is_empty(), "refusals logged twice: {twice:#?}");
}

/// As root with `--user nobody`, a root directory only root may enter: `tftpd` says so and
/// exits non-zero at once, instead of refusing every request.
#[test]
fn a_root_the_user_cannot_read_fails_at_start() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (to drop privileges with --user)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The path up to the root is open to everyone; the root itself is not.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("boot.img"), b"image").unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();

    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["20", env!("CARGO_BIN_EXE_tftpd")])
        .args(["--listen", "127.0.0.1:0", "--user", "nobody", "--root"])
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("dropped privileges"), "{stderr}");
    assert!(
        stderr.contains(&format!("tftpd: cannot serve {}: ", root.display())),
        "{stderr}"
    );
    assert!(stderr.contains("may not search the directory"), "{stderr}");

    // Readable by everyone: the same command serves it.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_udp();
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--user", "nobody", "--root"])
            .arg(&root)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(port);
}
