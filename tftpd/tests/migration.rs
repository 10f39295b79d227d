//! Coming from tftpd-hpa: remap rules, refused options, umask, client networks and in.tftpd's
//! flag spellings, through the `tftpd` binary and real clients (curl, raw UDP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, curl, free_udp, tftpd, wait_ready};

const SAMPLE_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/remap/sample.rules");

/// `tftpd ARGS...` (which must say where to listen) with its log in `log`, once `port` answers.
fn tftpd_logged(args: &[&str], log: &Path, port: u16) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(args)
        .stderr(std::fs::File::create(log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_ready(port);
    daemon
}

/// Poll `path` (up to 10 s) until its text satisfies `done`; the text.
fn wait_for_text(path: &Path, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `curl -T file tftp://127.0.0.1:PORT/NAME`: whether it succeeded.
fn curl_put(port: u16, file: &Path, name: &str) -> bool {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "-T", file.to_str().unwrap()])
        .arg(format!("tftp://127.0.0.1:{port}/{name}"))
        .status()
        .unwrap()
        .success()
}

/// Send a read request for `file` with `options`; the first answer and where it came from.
fn rrq(port: u16, file: &str, options: &[(&str, &str)]) -> (Vec<u8>, SocketAddr, UdpSocket) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut packet = vec![0, 1];
    for part in [file, "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        packet.extend_from_slice(part.as_bytes());
        packet.push(0);
    }
    socket.send_to(&packet, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 70_000];
    let (n, from) = socket.recv_from(&mut buf).unwrap();
    buf.truncate(n);
    (buf, from, socket)
}

/// End a transfer from the client's side.
fn abort(socket: &UdpSocket, to: SocketAddr) {
    let _ = socket.send_to(b"\x00\x05\x00\x00done\x00", to);
}

/// The options an OACK carries (`None`: the answer is not an OACK).
fn oack(packet: &[u8]) -> Option<Vec<(String, String)>> {
    if packet.get(..2) != Some(&[0, 6]) {
        return None;
    }
    let fields: Vec<String> = packet[2..]
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).to_lowercase())
        .collect();
    Some(
        fields
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv.get(1).cloned().unwrap_or_default()))
            .collect(),
    )
}

fn option_names(packet: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = oack(packet)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names
}

#[test]
fn tftpd_hpa_sample_rules_remap_curl_downloads() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for (path, body) in [
        ("vmlinuz", "ROOT"),
        ("tftpboot/vmlinuz", "TFTPBOOT"),
        ("tftpboot/a@b", "HASH"),
        ("tftpboot/keys.pvt", "SECRET"),
        ("ok/x", "OK"),
    ] {
        std::fs::create_dir_all(r.join(path).parent().unwrap()).unwrap();
        std::fs::write(r.join(path), body).unwrap();
    }
    let log = tempfile::NamedTempFile::new().unwrap();
    let sessions = tempfile::NamedTempFile::new().unwrap();
    let port = free_udp();
    let listen = format!("127.0.0.1:{port}");
    let _d = tftpd_logged(
        &[
            "--listen",
            &listen,
            "-m",
            SAMPLE_RULES,
            "--session-log",
            sessions.path().to_str().unwrap(),
            "-s",
            r.to_str().unwrap(),
        ],
        log.path(),
        port,
    );
    // `r ^[^/] /tftpboot/\0`: relative names go to /tftpboot.
    assert_eq!(curl(port, "vmlinuz"), (true, b"TFTPBOOT".to_vec()));
    // `ri ^[a-z]:` then `rg \\ /`: a drive letter and backslashes.
    assert_eq!(curl(port, "C:%5Cvmlinuz"), (true, b"ROOT".to_vec()));
    // `rg \# @`.
    assert_eq!(curl(port, "a%23b"), (true, b"HASH".to_vec()));
    // `e ^ok/`: left alone.
    assert_eq!(curl(port, "ok/x"), (true, b"OK".to_vec()));
    // `a \.pvt$`: refused, though the file exists.
    assert!(!curl(port, "keys.pvt").0);

    let text = wait_for_text(sessions.path(), |t| t.lines().count() >= 5);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_file = |f: &str| {
        lines
            .iter()
            .find(|l| l["file"] == f)
            .unwrap_or_else(|| panic!("no session line for {f}: {text}"))
    };
    assert_eq!(by_file("vmlinuz")["remapped"], "/tftpboot/vmlinuz");
    assert_eq!(by_file("a#b")["remapped"], "/tftpboot/a@b");
    assert!(by_file("ok/x").get("remapped").is_none());
    assert_eq!(by_file("keys.pvt")["outcome"], "refused");
    assert_eq!(by_file("keys.pvt")["error"]["code"], 2);

    let stderr = wait_for_text(log.path(), |t| t.contains("refused by the remap rules"));
    assert!(stderr.contains("remapped"), "{stderr}");
    assert!(stderr.contains("/tftpboot/vmlinuz"), "{stderr}");
    assert!(stderr.contains("refused by the remap rules"), "{stderr}");
}

#[test]
fn a_bad_rules_file_stops_tftpd_with_its_line() {
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules.path(), "# fine\nr ^a b\nx ^c d\n").unwrap();
    // Bounded: a tftpd that ignored the rules would serve forever.
    let out = Command::new("timeout")
        .args(["10", env!("CARGO_BIN_EXE_tftpd")])
        .args(["--listen", "127.0.0.1:0", "--root", ".", "--map-file"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
}

#[test]
fn refused_options_are_left_out_of_the_oack() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), vec![7u8; 3000]).unwrap();
    let root = root.path().to_str().unwrap();
    let asked = [
        ("blksize", "1024"),
        ("tsize", "0"),
        ("timeout", "3"),
        ("windowsize", "4"),
    ];

    let (_d, port) = tftpd(&["--root", root, "--honour-timeout"]);
    let (reply, from, socket) = rrq(port, "f", &asked);
    abort(&socket, from);
    assert_eq!(
        option_names(&reply),
        ["blksize", "timeout", "tsize", "windowsize"]
    );

    let (_d, port) = tftpd(&[
        "--root",
        root,
        "--honour-timeout",
        "--refuse",
        "blksize",
        "-r",
        "TSIZE",
        "-r",
        "timeout",
        "-r",
        "utimeout",
    ]);
    let (reply, from, socket) = rrq(port, "f", &asked);
    abort(&socket, from);
    assert_eq!(option_names(&reply), ["windowsize"]);
    // curl asks for tsize, blksize (with --tftp-blksize) and gets the file all the same.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--tftp-blksize", "1024"])
        .arg(format!("tftp://127.0.0.1:{port}/f"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, vec![7u8; 3000]);

    // Everything refused: no OACK at all, DATA straight away (RFC 1350).
    let (_d, port) = tftpd(&[
        "--root",
        root,
        "-r",
        "blksize",
        "-r",
        "tsize",
        "-r",
        "windowsize",
    ]);
    let (reply, from, socket) = rrq(port, "f", &asked);
    abort(&socket, from);
    assert_eq!(reply.get(..4), Some(&[0u8, 3, 0, 1][..]), "{reply:?}");
    assert_eq!(reply.len(), 4 + 512);

    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", ".", "--refuse", "multicast"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn umask_applies_to_uploads() {
    let root = tempfile::tempdir().unwrap();
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), b"uploaded").unwrap();
    let (_d, port) = tftpd(&[
        "--root",
        root.path().to_str().unwrap(),
        "--allow-write",
        "--umask",
        "077",
    ]);
    assert!(curl_put(port, src.path(), "up.bin"));
    let meta = std::fs::metadata(root.path().join("up.bin")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // in.tftpd's spelling: -c -U 027.
    let (_d, port) = tftpd(&["--root", root.path().to_str().unwrap(), "-c", "-U", "027"]);
    assert!(curl_put(port, src.path(), "up2.bin"));
    let meta = std::fs::metadata(root.path().join("up2.bin")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);

    let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--root", ".", "--umask", "999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn clients_are_allowed_and_denied_by_network() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), "F").unwrap();
    let root = root.path().to_str().unwrap();
    let ok = |port| curl(port, "f") == (true, b"F".to_vec());

    let (_d, port) = tftpd(&[
        "--root",
        root,
        "--allow",
        "127.0.0.1/32",
        "--deny",
        "10.0.0.0/8",
    ]);
    assert!(ok(port));
    let (_d, port) = tftpd(&["--root", root, "--allow", "10.0.0.0/8", "--allow", "::1"]);
    assert!(!ok(port), "not in an --allow network");
    let (_d, port) = tftpd(&[
        "--root",
        root,
        "--allow",
        "127.0.0.0/8",
        "--deny",
        "127.0.0.1",
    ]);
    assert!(!ok(port), "--deny wins over --allow");
    let (_d, port) = tftpd(&["--root", root, "--deny", "2001:db8::/32"]);
    assert!(ok(port));

    // Refused with ERROR 2 and a log line with the reason.
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_udp();
    let listen = format!("127.0.0.1:{port}");
    let _d = tftpd_logged(
        &["--listen", &listen, "--root", root, "--deny", "127.0.0.0/8"],
        log.path(),
        port,
    );
    let (reply, _, _) = rrq(port, "f", &[]);
    assert_eq!(reply.get(..4), Some(&[0u8, 5, 0, 2][..]), "{reply:?}");
    let text = wait_for_text(log.path(), |t| t.contains("client refused"));
    assert!(text.contains("127.0.0.0/8"), "{text}");

    // On a dual-stack listener IPv4 clients arrive as ::ffff:127.0.0.1: matched as IPv4.
    let port = free_udp();
    let listen = format!("[::]:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let _d = tftpd_logged(
        &["--listen", &listen, "--root", root, "--deny", "127.0.0.1"],
        log.path(),
        port,
    );
    assert!(!ok(port));
    let port = free_udp();
    let listen = format!("[::]:{port}");
    let _d = tftpd_logged(
        &[
            "--listen",
            &listen,
            "--root",
            root,
            "--allow",
            "127.0.0.0/8",
        ],
        log.path(),
        port,
    );
    assert!(ok(port));
}

#[test]
fn in_tftpd_spellings() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), vec![1u8; 2000]).unwrap();
    let dir = root.path().to_str().unwrap();
    let port = free_udp();
    let address = format!(":{port}");
    // in.tftpd -l -L -p -t 900 -B 1024 -R LOW:HIGH -T 300000 -a :PORT -s DIR
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "-l",
            "-L",
            "-p",
            "-t",
            "900",
            "-B",
            "1024",
            "-R",
            "47000:47099",
        ])
        .args(["-T", "300000", "-a", &address, "-s", dir])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _d = Daemon(child);
    wait_ready(port);
    assert_eq!(curl(port, "f"), (true, vec![1u8; 2000]));

    // -B: the largest block size granted; -R: the transfer port.
    let (reply, from, socket) = rrq(port, "f", &[("blksize", "1468")]);
    abort(&socket, from);
    assert_eq!(oack(&reply).unwrap(), [("blksize".into(), "1024".into())]);
    assert!((47000..=47099).contains(&from.port()), "{from}");

    // -T 300000: the first retransmission after 0.3 s (not the default 1 s).
    let (reply, from, socket) = rrq(port, "f", &[]);
    let first = Instant::now();
    assert_eq!(reply.get(..4), Some(&[0u8, 3, 0, 1][..]));
    let mut buf = [0u8; 600];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    let again = first.elapsed();
    abort(&socket, from);
    assert_eq!(&buf[..4], &[0, 3, 0, 1], "{:?}", &buf[..n]);
    assert!(again < Duration::from_millis(800), "{again:?}");

    // A directory without -s, and -P, are refused with the reason.
    for args in [
        vec![dir],
        vec!["-s", dir, dir],
        vec!["-P", "/run/tftpd.pid", "-s", dir],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tftpd"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("-s") || stderr.contains("pid"), "{stderr}");
    }
}

#[test]
fn rules_and_networks_come_from_the_config_file_and_sighup_rereads_the_rules() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("one"), "ONE").unwrap();
    std::fs::write(root.path().join("two"), "TWO").unwrap();
    let etc = tempfile::tempdir().unwrap();
    let rules = etc.path().join("tftpd.rules");
    std::fs::write(&rules, "r ^default$ one\n").unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "map-file = {:?}\nallow = [\"127.0.0.0/8\", \"::1\"]\nrefuse = [\"tsize\"]\numask = \"077\"\n",
            rules.to_str().unwrap()
        ),
    )
    .unwrap();
    let (daemon, port) = tftpd(&[
        "--config",
        config.path().to_str().unwrap(),
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(curl(port, "default"), (true, b"ONE".to_vec()));
    let (reply, from, socket) = rrq(port, "one", &[("tsize", "0"), ("blksize", "1024")]);
    abort(&socket, from);
    assert_eq!(option_names(&reply), ["blksize"]);

    std::fs::write(&rules, "r ^default$ two\n").unwrap();
    let pid = daemon.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(port, "default") != (true, b"TWO".to_vec()) {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not re-read the rules"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
