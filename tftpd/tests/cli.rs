//! The `tftpd` binary as an operator runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

mod support;
use support::{curl, tftpd};

#[test]
fn serves_the_bundled_example_root() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../example-root");
    let (_d, port) = tftpd(&["--root", root]);
    let (ok, body) = curl(port, "hello.txt");
    assert!(ok);
    assert!(body.starts_with(b"Hello from tftpd!"));
}

#[test]
fn templates_are_rendered_per_client_before_the_root() {
    let templates = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("grub.cfg"),
        "linux /vmlinuz ip={{ip}} # {{ip_hex}} {{path}}\n",
    )
    .unwrap();
    std::fs::write(root.path().join("grub.cfg"), "shadowed").unwrap();
    std::fs::write(root.path().join("kernel"), "KERNEL").unwrap();
    let (_d, port) = tftpd(&[
        "--templates",
        templates.path().to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    let (ok, body) = curl(port, "grub.cfg");
    assert!(ok);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "linux /vmlinuz ip=127.0.0.1 # 7F000001 grub.cfg\n"
    );
    assert_eq!(curl(port, "kernel"), (true, b"KERNEL".to_vec()));
    assert!(!curl(port, "missing").0);
}

#[test]
fn refuses_to_start_with_nothing_to_serve_or_a_bad_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to serve"));
    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", ".", "--port-range", "9:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port-range"));
    for mtu in ["12", "jumbo", "70000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(["--root", ".", "--tftp-mtu", mtu])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--tftp-mtu {mtu}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--tftp-mtu"));
    }
}

#[test]
fn a_privileged_port_says_how_to_get_past_it() {
    // Only meaningful when not allowed to bind port 69: run as an unprivileged user if we can.
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "true"])
        .status();
    if !nobody.is_ok_and(|s| s.success()) {
        eprintln!("skipped: setpriv cannot drop privileges here");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_tftpd"),
            "--root",
            "/",
            "--listen",
            "127.0.0.1:69",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAP_NET_BIND_SERVICE") && err.contains("6969"),
        "{err}"
    );
}

#[test]
fn uploads_through_the_binary() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), vec![42u8; 100_000]).unwrap();
    let put = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_tftp"))
            .args([
                "put",
                &format!("127.0.0.1:{port}"),
                src.path().to_str().unwrap(),
                "up",
                "-q",
            ])
            .output()
            .unwrap()
    };
    let (_d, port) = tftpd(&["--root", root.path().to_str().unwrap()]);
    let out = put(port);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Write not allowed")
    );
    let (_d2, port) = tftpd(&["--root", root.path().to_str().unwrap(), "--allow-write"]);
    let out = put(port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(root.path().join("up")).unwrap(),
        vec![42u8; 100_000]
    );
    let out = put(port);
    assert!(String::from_utf8_lossy(&out.stderr).contains("File already exists"));
    let (_d3, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--allow-write",
        "--allow-overwrite",
        "--max-upload-size",
        "50000",
    ]);
    let out = put(port);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(root.path().join("up")).unwrap().len(),
        100_000,
        "the old file is intact"
    );
}

#[test]
fn help_and_version_go_to_standard_output_and_succeed() {
    for flag in ["--help", "--version"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}: {:?}", out.status);
        assert!(!out.stdout.is_empty(), "{flag} printed nothing on stdout");
        assert!(out.stderr.is_empty(), "{flag} wrote to stderr");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("Exit status"), "{help}");
}

#[test]
fn exit_status_tells_usage_config_and_runtime_errors_apart() {
    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    // A documented range is enforced, not silently adjusted.
    assert_eq!(status(&["--root", ".", "--max-blksize", "2"]), Some(64));
    assert_eq!(status(&["--no-such-flag"]), Some(64));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus-key = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `bogus-key`"), "{err}");
    assert!(
        !err.contains("--user"),
        "no tip naming a key the file forbids: {err}"
    );
    // Serving fails: nothing to serve.
    assert_eq!(status(&["--listen", "127.0.0.1:0"]), Some(1));
}

#[test]
fn the_command_line_replaces_the_config_files_settings() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let file_port = support::free_udp();
    let config = dir.path().join("tftpd.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:{file_port}\"]\nallow-write = true\nroot = \"{}\"\n",
            root.path().display()
        ),
    )
    .unwrap();
    // The helper adds `--listen 127.0.0.1:PORT`: that list replaces the file's.
    let (_d, port) = tftpd(&["--config", config.to_str().unwrap(), "--allow-write=false"]);
    assert!(
        std::net::UdpSocket::bind(("127.0.0.1", file_port)).is_ok(),
        "the file's listen address is not used"
    );
    let upload = dir.path().join("up.txt");
    std::fs::write(&upload, "data").unwrap();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-T", upload.to_str().unwrap()])
        .arg(format!("tftp://127.0.0.1:{port}/up.txt"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "--allow-write=false overrides the file"
    );
    assert!(!root.path().join("up.txt").exists());
}

/// `--log-format journald`: each line starts with its syslog priority, so that the journal
/// files warnings as warnings (`journalctl -p warning`).
#[test]
fn journald_format_marks_warnings_for_the_journal() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), vec![7u8; 100_000]).unwrap();
    let port = support::free_udp();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "journald",
        ])
        .args(["--root", root.path().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_ready(port);
    // A transfer the client aborts: "session failed" is a warning.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(b"\0\x01f\0octet\0", ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 1024];
    let (_, tid) = client.recv_from(&mut buf).unwrap();
    client.send_to(b"\0\x05\0\0stop\0", tid).unwrap();
    // Read the log as it is written until the warning shows (10 s at most: a loaded
    // machine), then stop the server.
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = Vec::new();
    while !log
        .iter()
        .any(|l: &String| l.starts_with("<4>") && l.contains("session failed"))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => panic!("no <4> session failed line in 10 s:\n{}", log.join("\n")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.join("\n");
    assert!(log.lines().any(|l| l.starts_with("<6>")), "{log}");
    assert!(log.lines().all(|l| l.starts_with('<')), "{log}");
}

/// Each binary says what it is, not the crate's description.
#[test]
fn each_binary_has_its_own_about() {
    for (bin, expected) in [
        (env!("CARGO_BIN_EXE_tftpd"), "Serve files over TFTP"),
        (env!("CARGO_BIN_EXE_tftp"), "A TFTP client"),
    ] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.starts_with(expected), "{bin}: {help}");
    }
}

/// `tftpd --help` groups its flags the way an operator looks for them.
#[test]
fn help_groups_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let headings: Vec<&str> = help
        .lines()
        .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        .collect();
    for group in [
        "Network:",
        "Files:",
        "Uploads:",
        "Options and timers:",
        "Limits:",
        "Logging and monitoring:",
        "tftpd-hpa compatibility:",
    ] {
        assert!(headings.contains(&group), "{group} missing in {headings:?}");
    }
    // Under its heading: the network flags together.
    let network = help.split("Network:").nth(1).unwrap();
    let network = network.split("\n\n").next().unwrap();
    for flag in ["--listen", "--port ", "--single-port", "--tftp-mtu"] {
        assert!(
            network.contains(flag),
            "{flag} not under Network:\n{network}"
        );
    }
}
