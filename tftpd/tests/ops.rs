//! Operating tftpd: signals, configuration reloads, socket activation, privilege drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, ack_for_next, curl, free_udp, wait_ready};

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// A transfer held open by a client that acknowledges slowly; returns a thread that finishes
/// it and reports the bytes received.
fn slow_transfer(port: u16, file: &str, pace: Duration) -> std::thread::JoinHandle<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.send_to(
        format!("\x00\x01{file}\x00octet\x00").as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let mut buf = [0u8; 600];
    let (n, tid) = s.recv_from(&mut buf).unwrap();
    let mut data = buf[4..n].to_vec();
    std::thread::spawn(move || {
        let mut block = 1u16;
        let mut last = n;
        while last == 516 {
            std::thread::sleep(pace);
            // A resent copy of this block (this thread late on a loaded machine) is passed
            // over, not appended twice.
            let n = ack_for_next(&s, tid, block, &mut buf);
            block += 1;
            data.extend_from_slice(&buf[4..n]);
            last = n;
        }
        s.send_to(&[0, 4, (block >> 8) as u8, block as u8], tid)
            .unwrap();
        data
    })
}

/// Whether a read request of `f` to `port` is answered with its first DATA within 200 ms
/// (such a transfer is ended at once with an ERROR, so that it holds no drain up).
fn served(port: u16) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.send_to(b"\x00\x01f\x00octet\x00", ("127.0.0.1", port))
        .unwrap();
    let mut buf = [0u8; 600];
    match s.recv_from(&mut buf) {
        Ok((n, tid)) if n >= 4 && buf[..2] == [0, 3] => {
            s.send_to(b"\x00\x05\x00\x00probe\x00", tid).unwrap();
            true
        }
        _ => false,
    }
}

#[test]
fn sigterm_drains_running_transfers_then_exits() {
    let root = tempfile::tempdir().unwrap();
    let file: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    std::fs::write(root.path().join("f"), &file).unwrap();
    let port = free_udp();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--root",
            root.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);
    // 20 ms a block, 79 blocks: 1.6 s, longer than the signal takes to be seen.
    let transfer = slow_transfer(port, "f", Duration::from_millis(20));
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, "TERM");
    // Once the signal is handled (a loaded machine may take a while), a new request goes
    // unserved while the running transfer goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(port) {
        assert!(
            Instant::now() < deadline,
            "new requests were still served 10 s after SIGTERM"
        );
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "tftpd exited before the running transfer finished"
    );
    assert!(
        !curl(port, "f").0,
        "a new request was served while draining"
    );
    assert_eq!(
        transfer.join().unwrap(),
        file,
        "the running transfer finished"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn sighup_reloads_the_config_file_without_dropping_transfers() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let file: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(a.path().join("f"), &file).unwrap();
    std::fs::write(b.path().join("only-in-b"), b"B").unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("root = {:?}\nmax-blksize = 1024\n", a.path()),
    )
    .unwrap();
    let port = free_udp();
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--config",
            config.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Daemon(child);
    wait_ready(port);
    assert!(!curl(port, "only-in-b").0);
    let transfer = slow_transfer(port, "f", Duration::from_millis(10));
    std::fs::write(config.path(), format!("root = {:?}\n", b.path())).unwrap();
    signal(&child.0, "HUP");
    // The new root is served once the reload is done (a loaded machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(port, "only-in-b") != (true, b"B".to_vec()) {
        assert!(Instant::now() < deadline, "SIGHUP did not switch roots");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        transfer.join().unwrap(),
        file,
        "the transfer in flight finished on the old root"
    );
    // A broken file keeps the running configuration.
    std::fs::write(config.path(), "root = [\n").unwrap();
    signal(&child.0, "HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(curl(port, "only-in-b"), (true, b"B".to_vec()));
}

#[test]
fn takes_its_socket_from_the_service_manager() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"activated").unwrap();
    let port = free_udp();
    // Bind the socket the way systemd does and exec tftpd with it as fd 3.
    let script = format!(
        "import os, socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', {port}))\n\
         os.dup2(s.fileno(), 3)\n\
         os.set_inheritable(3, True)\n\
         os.environ['LISTEN_FDS'] = '1'\n\
         os.environ['LISTEN_PID'] = str(os.getpid())\n\
         os.execv({tftpd:?}, [{tftpd:?}, '--root', {root:?}, '--listen', '127.0.0.1:1'])\n",
        tftpd = env!("CARGO_BIN_EXE_tftpd"),
        root = root.path().to_str().unwrap(),
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _d = Daemon(child);
    wait_ready(port);
    assert_eq!(curl(port, "f"), (true, b"activated".to_vec()));
}

#[test]
fn drops_privileges_after_binding() {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
    {
        eprintln!("skipped: not running as root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.path().join("f"), b"as nobody").unwrap();
    let port = free_udp();
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args([
            "--root",
            root.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--user",
            "nobody",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    wait_ready(port);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.0.id())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );
    assert_eq!(curl(port, "f"), (true, b"as nobody".to_vec()));
}

/// The names of process `pid`'s threads (Linux: `/proc/PID/task/*/comm`, what `top -H` and
/// `ps -L` show).
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let comm = |task: std::fs::DirEntry| std::fs::read_to_string(task.path().join("comm"));
    let names = tasks.filter_map(|t| comm(t.ok()?).ok());
    names.map(|name| name.trim_end().to_owned()).collect()
}

#[test]
fn its_event_loops_show_in_the_thread_list_by_name() {
    // The first loop ran on a thread of tokio's blocking pool, named as tokio names those:
    // `top -H` showed the data plane as a tokio worker, and with one loop (the default) no
    // `tftp-loop` at all.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f"), b"served").unwrap();
    for loops in [1, 2] {
        let (daemon, port) = support::tftpd(&[
            "--root",
            root.path().to_str().unwrap(),
            "--engine",
            "epoll",
            "--threads",
            &loops.to_string(),
        ]);
        let names = thread_names(daemon.0.id());
        let named = names.iter().filter(|n| *n == "tftp-loop").count();
        assert_eq!(named, loops, "--threads {loops}: {names:?}");
        assert_eq!(curl(port, "f"), (true, b"served".to_vec()));
    }
}

#[test]
fn a_burst_of_downloads_starts_no_io_thread() {
    // Reads of local files are answered on the event loop (OnLoops::reads_on_loops): they
    // went to the I/O pool, which a burst of requests grew to 3 threads and a watcher (7
    // threads at 1,000 clients where 4 serve them now).
    let root = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.path().join("boot.img"), &data).unwrap();
    let (daemon, port) = support::tftpd(&["--root", root.path().to_str().unwrap()]);
    let out = Command::new(support::loadgen())
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--file", "boot.img", "--clients", "200"])
        .args(["--bind-from", "127.0.1.1-127.0.1.200", "--blksize", "1468"])
        .arg("--verify")
        .arg(root.path().join("boot.img"))
        .args(["--deadline", "60"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        support::report_number::<u64>(&report, "failures"),
        0,
        "{report}"
    );
    // Pool threads stay 10 s after their last job: they would be here.
    let names = thread_names(daemon.0.id());
    assert!(
        !names.iter().any(|n| n.starts_with("tftp-io")),
        "pool threads after a burst of file downloads: {names:?}"
    );
    // Not found, and refused, on the loop too.
    assert!(!curl(port, "missing").0);
    assert!(!curl(port, "../etc/passwd").0);
    assert_eq!(curl(port, "boot.img"), (true, data));
    let names = thread_names(daemon.0.id());
    assert!(!names.iter().any(|n| n.starts_with("tftp-io")), "{names:?}");
}

/// Resident kB of `pid`'s own code: its executable's `r-xp` mappings (`/proc/PID/smaps`).
fn code_resident_kb(pid: u32) -> u64 {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_str().unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut counting = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            counting = fields.get(1) == Some(&"r-xp") && line.trim_end().ends_with(exe);
        } else if counting && fields.first() == Some(&"Rss:") {
            kb += fields[1].parse::<u64>().unwrap();
        }
    }
    kb
}

#[test]
fn gives_back_the_code_only_start_up_ran_once_it_serves() {
    // The pages of its code that start-up mapped (the command line's parser, the
    // configuration, the runtime's construction) stayed resident for tftpd's life; a second
    // after it serves, it drops its code's pages and serving maps back only what it runs
    // (`start_up_pages` in src/bin/tftpd.rs). Against a tftpd that keeps them.
    let root = tempfile::tempdir().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("f"), &content).unwrap();
    let root = root.path().to_str().unwrap();
    let (keeps, _) =
        support::tftpd_with_env(&["--root", root], &[("TFTPD_KEEP_START_UP_PAGES", "1")]);
    let (gives_back, port) = support::tftpd(&["--root", root]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut kept, mut given_back) = (0, u64::MAX);
    while Instant::now() < deadline {
        kept = code_resident_kb(keeps.0.id());
        given_back = code_resident_kb(gives_back.0.id());
        if given_back * 2 < kept {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        given_back * 2 < kept,
        "code resident: {given_back} kB, against {kept} kB in a tftpd that keeps it"
    );
    // And it serves, mapping what it runs back in.
    assert_eq!(curl(port, "f"), (true, content));
}
