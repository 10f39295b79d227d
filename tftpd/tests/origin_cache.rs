//! `tftpd --http-origin` at boot-storm scale: one origin fetch for many sessions, and the
//! bounded `--origin-cache`, against a real web server (nginx, whose access log is the oracle
//! for what reached the origin) and an in-process one for the faults nginx cannot produce.
//!
//! | test | what |
//! |---|---|
//! | `storm_of_1000_is_one_get_then_one_304` | 1,000 `tftp-loadgen` sessions from 250 loopback addresses, 8 MiB, cold cache: one GET; after `max-age`, a second storm: one conditional GET, 304 |
//! | `origin_dropped_mid_body_fails_every_session_and_leaves_nothing` | every waiting session gets "Origin transfer failed", no entry remains, the next read fetches again |
//! | `cache_is_lru_bounded` | filling past `--origin-cache-size` evicts the least recently used; the directory stays within the bound |
//! | `bodies_of_unknown_length_stay_within_the_bound` | a chunked body takes its room as it arrives; one larger than the cache is served, not kept |
//! | `without_room_for_a_copy_each_session_fetches_on_its_own` | the copy cannot be created (an immutable directory): served all the same, one GET per session |
//! | `stale_if_error_serves_a_stale_entry_while_the_origin_is_down` | only with `--origin-stale-if-error`; without, "Origin unavailable" |
//! | `without_a_cache_a_storm_still_fetches_once` | 250 sessions share one GET through the private temporary copy |
//! | `a_stalled_client_holds_back_neither_the_origin_nor_other_clients` | the fetch completes while a session sits on block 1; another session reads the shared copy |
//! | `freshness_without_cache_control_and_of_a_shared_copy` | no Cache-Control: revalidated at every read, or fresh for `--origin-default-max-age`; without a cache a copy being read is shared only while fresh |
//! | `entries_survive_a_restart_and_no_store_is_not_kept` | a restart serves from the entries on disk; `no-store` is fetched each time, never kept; a second process is refused the directory |
//!
//! Needs `nginx` (scripts/test-deps.sh installs `nginx-light`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::{Daemon, free_tcp, free_udp, loadgen, report_number, wait_ready};

fn byte(i: u64, seed: u64) -> u8 {
    ((i ^ seed).wrapping_mul(2_654_435_761) >> 13) as u8
}

fn content(len: u64, seed: u64) -> Vec<u8> {
    (0..len).map(|i| byte(i, seed)).collect()
}

/// nginx on a loopback port, serving `www/` with ETags; `/short/` says `max-age=2`,
/// `/storm/` `max-age=5` (more than a storm's RRQ retransmissions take),
/// `/long/` `max-age=600`, `/nostore/` `no-store`. Each request is one line of `access.log`:
/// `METHOD URI STATUS BYTES`.
struct Nginx {
    _daemon: Daemon,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let www = dir.path().join("www");
        for sub in ["short", "storm", "long", "nostore"] {
            std::fs::create_dir_all(www.join(sub)).unwrap();
        }
        let port = free_tcp();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
    log_format oracle '$request_method $uri $status $body_bytes_sent';
    access_log {d}/access.log oracle;
    client_body_temp_path {d}/tmp;
    etag on;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location /short/ {{ add_header Cache-Control "max-age=2"; }}
        location /storm/ {{ add_header Cache-Control "max-age=5"; }}
        location /long/ {{ add_header Cache-Control "max-age=600"; }}
        location /nostore/ {{ add_header Cache-Control "no-store"; }}
    }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nginx");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is not installed; run scripts/test-deps.sh");
        let daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            _daemon: daemon,
            port,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join("www").join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// The access log's lines for `uri`, as (method, status, bytes).
    fn requests(&self, uri: &str) -> Vec<(String, u16, u64)> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.len() == 4 && f[1] == uri).then(|| {
                    (
                        f[0].to_string(),
                        f[2].parse().unwrap(),
                        f[3].parse().unwrap(),
                    )
                })
            })
            .collect()
    }
}

/// `tftpd --listen 127.0.0.1:PORT ARGS...` with metrics, once it answers.
struct Tftpd {
    _daemon: Daemon,
    port: u16,
    metrics: u16,
}

fn tftpd(args: &[&str]) -> Tftpd {
    tftpd_env(args, &[])
}

fn tftpd_env(args: &[&str], env: &[(&str, &Path)]) -> Tftpd {
    let port = free_udp();
    let metrics = free_tcp();
    let child = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .envs(env.iter().copied())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")])
        .args(args)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_ready(port);
    Tftpd {
        _daemon: daemon,
        port,
        metrics,
    }
}

impl Tftpd {
    fn scrape(&self) -> String {
        support::scrape(self.metrics)
    }

    /// A counter or gauge, `name` with its labels as printed (`x{result="hit"}`).
    fn metric(&self, name: &str) -> u64 {
        support::metric(&self.scrape(), name).unwrap_or(0.0) as u64
    }

    fn get(&self, file: &str, dest: &Path) -> Output {
        support::tftp_get("60", self.port, file, dest, &["-b", "65464", "-w", "4"])
    }
}

/// `clients` sessions of `file` from 250 loopback addresses (4 each at 1,000: well within the
/// per-client limits), every byte compared with `verify`; the JSON report.
fn storm(port: u16, file: &str, clients: u32, verify: &Path) -> String {
    let out = Command::new(loadgen())
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args(["--file", file])
        .args(["--clients", &clients.to_string()])
        .args(["--bind-from", "127.0.1.1-127.0.1.250"])
        .args(["--blksize", "65464", "--windowsize", "4"])
        .args(["--rcvbuf", "1048576"])
        .arg("--verify")
        .arg(verify)
        .args(["--deadline", "90"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tftp-loadgen: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report_number::<f64>(&report, "failures"), 0.0, "{report}");
    assert_eq!(
        report_number::<f64>(&report, "completed"),
        f64::from(clients),
        "{report}"
    );
    report
}

/// Bytes of entries and temporary files in a cache directory.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|l| {
            l.flatten()
                .filter(|e| !e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn entries(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .count()
}

const MIB: u64 = 1 << 20;

#[test]
fn storm_of_1000_is_one_get_then_one_304() {
    let nginx = Nginx::start();
    let data = content(8 * MIB, 1);
    let verify = nginx.put("storm/initrd", &data);
    let cache = tempfile::tempdir().unwrap();
    let server = tftpd(&[
        "--http-origin",
        &nginx.url(),
        "--origin-cache",
        cache.path().to_str().unwrap(),
    ]);

    let started = Instant::now();
    let report = storm(server.port, "storm/initrd", 1000, &verify);
    let first = started.elapsed();
    let requests = nginx.requests("/storm/initrd");
    let gets: Vec<_> = requests.iter().filter(|r| r.0 == "GET").collect();
    let heads = requests.iter().filter(|r| r.0 == "HEAD").count();
    assert_eq!(gets, [&("GET".to_string(), 200, 8 * MIB)], "{requests:?}");
    assert!(heads <= 1, "{requests:?}");
    assert_eq!(
        report_number::<f64>(&report, "bytes"),
        (1000 * 8 * MIB) as f64
    );
    assert_eq!(
        server.metric("tftpd_origin_bytes_fetched_total"),
        8 * MIB,
        "{}",
        server.scrape()
    );
    assert_eq!(
        server.metric("tftpd_origin_bytes_served_total"),
        1000 * 8 * MIB
    );
    let miss = server.metric("tftpd_origin_reads_total{result=\"miss\"}");
    let shared = server.metric("tftpd_origin_reads_total{result=\"coalesced\"}")
        + server.metric("tftpd_origin_reads_total{result=\"hit\"}");
    assert_eq!((miss, shared), (1, 999), "{}", server.scrape());
    eprintln!(
        "cold storm: 1000 × 8 MiB in {:.1} s, origin: {gets:?}",
        first.as_secs_f64()
    );

    // max-age=5 has passed: the next storm revalidates once, and nginx answers 304.
    std::thread::sleep(Duration::from_millis(5500));
    let started = Instant::now();
    storm(server.port, "storm/initrd", 1000, &verify);
    let second = started.elapsed();
    let requests = nginx.requests("/storm/initrd");
    let statuses: Vec<u16> = requests
        .iter()
        .filter(|r| r.0 == "GET")
        .map(|r| r.1)
        .collect();
    assert_eq!(statuses, [200, 304], "{requests:?}");
    assert_eq!(server.metric("tftpd_origin_bytes_fetched_total"), 8 * MIB);
    assert_eq!(
        server.metric("tftpd_origin_reads_total{result=\"revalidated\"}"),
        1
    );
    assert_eq!(
        server.metric("tftpd_origin_fetches_total{result=\"not_modified\"}"),
        1
    );
    eprintln!(
        "warm storm after max-age: 1000 × 8 MiB in {:.1} s, one 304",
        second.as_secs_f64()
    );
    assert_eq!(entries(cache.path(), ".data"), 1);
    assert_eq!(entries(cache.path(), ".tmp"), 0);
    // Every origin metric says what it is.
    let text = server.scrape();
    let types: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("# TYPE tftpd_origin_"))
        .collect();
    assert!(types.len() >= 6, "{text}");
    for line in types {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(text.contains(&format!("# HELP {name} ")), "{name}: no HELP");
    }
}

/// An origin whose `/drop/*` sends the headers of a 4 MiB body, 1 MiB of it slowly (over
/// about a second, so that sessions pile up on the fetch), then closes, and whose
/// `/chunked/LEN` sends LEN bytes without a `Content-Length`; the number of requests it got.
fn dropping_origin() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&requests);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                if let Some(len) = path.strip_prefix("/chunked/") {
                    let data = content(len.parse().unwrap(), 9);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\n"
                    );
                    for chunk in data.chunks(100_000) {
                        let _ = write!(stream, "{:x}\r\n", chunk.len());
                        let _ = stream.write_all(chunk);
                        let _ = write!(stream, "\r\n");
                    }
                    let _ = write!(stream, "0\r\n\r\n");
                    return;
                }
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\n\r\n",
                    4 * MIB
                );
                let data = content(MIB, 2);
                for chunk in data.chunks(64 * 1024) {
                    if stream.write_all(chunk).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(60));
                }
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, requests)
}

#[test]
fn origin_dropped_mid_body_fails_every_session_and_leaves_nothing() {
    let (http, requests) = dropping_origin();
    let cache = tempfile::tempdir().unwrap();
    let server = tftpd(&[
        "--http-origin",
        &format!("http://127.0.0.1:{http}/"),
        "--origin-cache",
        cache.path().to_str().unwrap(),
    ]);
    let out = tempfile::tempdir().unwrap();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let dest = out.path().join(format!("out{i}"));
            let port = server.port;
            std::thread::spawn(move || {
                // Staggered: the later ones join a fetch already streaming.
                std::thread::sleep(Duration::from_millis(50 * i));
                let o = support::tftp_get("30", port, "drop/x", &dest, &["-b", "1468"]);
                (o, dest)
            })
        })
        .collect();
    for c in clients {
        let (o, dest) = c.join().unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("Origin transfer failed"), "{err}");
        assert!(!dest.exists(), "a truncated file was left");
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the sessions shared one fetch"
    );
    assert_eq!(
        server.metric("tftpd_origin_reads_total{result=\"coalesced\"}"),
        7
    );
    assert_eq!(entries(cache.path(), ".data"), 0);
    assert_eq!(entries(cache.path(), ".json"), 0);
    assert_eq!(entries(cache.path(), ".tmp"), 0);
    assert_eq!(server.metric("tftpd_origin_cache_bytes"), 0);

    // Not remembered as failed: the next read fetches again.
    let o = support::tftp_get("30", server.port, "drop/x", &out.path().join("again"), &[]);
    assert!(!o.status.success());
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(entries(cache.path(), ".data"), 0);
}

#[test]
fn cache_is_lru_bounded() {
    let nginx = Nginx::start();
    let files: Vec<Vec<u8>> = (0..6).map(|i| content(MIB, 10 + i)).collect();
    for (i, f) in files.iter().enumerate() {
        nginx.put(&format!("long/f{i}"), f);
    }
    let cache = tempfile::tempdir().unwrap();
    let bound = 3 * MIB + MIB / 2;
    let server = tftpd(&[
        "--http-origin",
        &nginx.url(),
        "--origin-cache",
        cache.path().to_str().unwrap(),
        "--origin-cache-size",
        &bound.to_string(),
    ]);
    // Watch the directory all along.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, peak, dir) = (
            Arc::clone(&stop),
            Arc::clone(&peak),
            cache.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(dir_bytes(&dir), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let out = tempfile::tempdir().unwrap();
    let get = |i: usize| {
        let dest = out.path().join(format!("f{i}"));
        let o = server.get(&format!("long/f{i}"), &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&dest).unwrap() == files[i]);
    };
    let gets = |i: usize| {
        nginx
            .requests(&format!("/long/f{i}"))
            .iter()
            .filter(|r| r.0 == "GET")
            .count()
    };
    for i in 0..3 {
        get(i);
    }
    get(0); // f0 is now more recent than f1 and f2
    assert_eq!(gets(0), 1, "f0 came from the cache");
    get(3); // 4 MiB > 3.5 MiB: the least recently used (f1) goes
    get(0);
    assert_eq!(gets(0), 1, "f0 was kept");
    get(2);
    assert_eq!(gets(2), 1, "f2 was kept");
    get(1);
    assert_eq!(gets(1), 2, "f1 was evicted");
    // Several at once: the directory still stays within the bound.
    std::thread::scope(|s| {
        for i in [4, 5, 3, 0] {
            s.spawn(move || get(i));
        }
    });
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= bound, "the directory reached {peak} bytes");
    assert_eq!(entries(cache.path(), ".data"), 3);
    assert!(server.metric("tftpd_origin_cache_evictions_total") >= 3);
    assert!(server.metric("tftpd_origin_cache_bytes") <= bound);
}

#[test]
fn entries_survive_a_restart_and_no_store_is_not_kept() {
    let nginx = Nginx::start();
    let kernel = content(3 * MIB, 3);
    nginx.put("long/vmlinuz", &kernel);
    let secret = content(MIB, 4);
    nginx.put("nostore/token", &secret);
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "--http-origin",
        &nginx.url(),
        "--origin-cache",
        cache.path().to_str().unwrap(),
    ];
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f");
    let server = tftpd(&args);
    for _ in 0..2 {
        let o = server.get("long/vmlinuz", &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&dest).unwrap() == kernel);
        let o = server.get("nostore/token", &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&dest).unwrap() == secret);
    }
    assert_eq!(nginx.requests("/long/vmlinuz").len(), 1);
    assert_eq!(nginx.requests("/nostore/token").len(), 2);
    assert_eq!(entries(cache.path(), ".data"), 1);

    // A second process may not share the directory.
    let second = Command::new(env!("CARGO_BIN_EXE_tftpd"))
        .args(["--listen", &format!("127.0.0.1:{}", free_udp())])
        .args(args)
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("in use by another tftpd"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // Restarted: served from the entry on disk. A crash's temporary file is removed, a file
    // that is not the cache's is left alone.
    drop(server);
    let leftover = cache.path().join(format!("{}.x1y2.tmp", "ab".repeat(32)));
    std::fs::write(&leftover, b"partial").unwrap();
    std::fs::write(cache.path().join("notes.txt"), b"mine").unwrap();
    let server = tftpd(&args);
    assert!(!leftover.exists());
    assert!(cache.path().join("notes.txt").exists());
    let o = server.get("long/vmlinuz", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dest).unwrap() == kernel);
    assert_eq!(nginx.requests("/long/vmlinuz").len(), 1);
    assert_eq!(server.metric("tftpd_origin_reads_total{result=\"hit\"}"), 1);
}

#[test]
fn stale_if_error_serves_a_stale_entry_while_the_origin_is_down() {
    let nginx = Nginx::start();
    let data = content(MIB, 5);
    nginx.put("short/pxelinux.0", &data);
    let url = nginx.url();
    let (with, without) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stale_ok = tftpd(&[
        "--http-origin",
        &url,
        "--origin-cache",
        with.path().to_str().unwrap(),
        "--origin-stale-if-error",
        "--origin-connect-timeout",
        "1",
    ]);
    let strict = tftpd(&[
        "--http-origin",
        &url,
        "--origin-cache",
        without.path().to_str().unwrap(),
        "--origin-connect-timeout",
        "1",
    ]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f");
    for server in [&stale_ok, &strict] {
        let o = server.get("short/pxelinux.0", &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The origin goes away, and the entries (max-age=2) go stale.
    drop(nginx);
    std::thread::sleep(Duration::from_millis(2500));
    let _ = std::fs::remove_file(&dest);
    let o = stale_ok.get("short/pxelinux.0", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(
        stale_ok.metric("tftpd_origin_reads_total{result=\"stale\"}"),
        1
    );
    let _ = std::fs::remove_file(&dest);
    let o = strict.get("short/pxelinux.0", &dest);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Origin unavailable"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn without_a_cache_a_storm_still_fetches_once() {
    let nginx = Nginx::start();
    let data = content(8 * MIB, 6);
    let verify = nginx.put("long/kernel", &data);
    let server = tftpd(&["--http-origin", &nginx.url()]);
    storm(server.port, "long/kernel", 250, &verify);
    let requests = nginx.requests("/long/kernel");
    assert_eq!(
        requests,
        [("GET".to_string(), 200, 8 * MIB)],
        "one fetch for the sessions reading meanwhile"
    );
    assert_eq!(server.metric("tftpd_origin_bytes_fetched_total"), 8 * MIB);
    assert_eq!(
        server.metric("tftpd_origin_reads_total{result=\"coalesced\"}"),
        249
    );
}

#[test]
fn a_stalled_client_holds_back_neither_the_origin_nor_other_clients() {
    let nginx = Nginx::start();
    let data = content(8 * MIB, 7);
    nginx.put("long/big", &data);
    let server = tftpd(&["--http-origin", &nginx.url()]);
    // A client that takes block 1 and never acknowledges it.
    let stalled = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stalled
        .send_to(b"\x00\x01long/big\x00octet\x00", ("127.0.0.1", server.port))
        .unwrap();
    let mut buf = [0u8; 600];
    let (n, _) = stalled.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..4], b"\x00\x03\x00\x01");
    assert!(buf[4..n] == data[..512]);
    // The origin's body arrives whole all the same.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("tftpd_origin_bytes_fetched_total") < 8 * MIB {
        assert!(
            Instant::now() < deadline,
            "the fetch waited for the stalled client"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And another client reads the same copy at its own pace.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("big");
    let started = Instant::now();
    let o = server.get("long/big", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dest).unwrap() == data);
    eprintln!(
        "beside a stalled session: 8 MiB in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(nginx.requests("/long/big").len(), 1);
    assert_eq!(
        server.metric("tftpd_origin_reads_total{result=\"coalesced\"}"),
        1
    );
}

#[test]
fn freshness_without_cache_control_and_of_a_shared_copy() {
    let nginx = Nginx::start();
    let data = content(MIB, 8);
    for name in ["plain-a", "plain-b", "short/copy"] {
        nginx.put(name, &data);
    }
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f");
    let statuses = |uri: &str| -> Vec<u16> { nginx.requests(uri).iter().map(|r| r.1).collect() };

    // No Cache-Control from the origin: revalidated at every read...
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let strict = tftpd(&[
        "--http-origin",
        &nginx.url(),
        "--origin-cache",
        a.path().to_str().unwrap(),
    ]);
    // ...or fresh for --origin-default-max-age.
    let lenient = tftpd(&[
        "--http-origin",
        &nginx.url(),
        "--origin-cache",
        b.path().to_str().unwrap(),
        "--origin-default-max-age",
        "60",
    ]);
    for _ in 0..2 {
        for (server, file) in [(&strict, "plain-a"), (&lenient, "plain-b")] {
            let o = server.get(file, &dest);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(std::fs::read(&dest).unwrap() == data);
        }
    }
    assert_eq!(statuses("/plain-a"), [200, 304]);
    assert_eq!(statuses("/plain-b"), [200]);

    // Without a cache, a copy still being read is shared only while fresh (max-age=2).
    let server = tftpd(&["--http-origin", &nginx.url()]);
    let stalled = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stalled
        .send_to(
            b"\x00\x01short/copy\x00octet\x00",
            ("127.0.0.1", server.port),
        )
        .unwrap();
    let mut buf = [0u8; 600];
    let _ = stalled.recv_from(&mut buf).unwrap();
    let o = server.get("short/copy", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(statuses("/short/copy"), [200], "shared while fresh");
    std::thread::sleep(Duration::from_millis(2200));
    let o = server.get("short/copy", &dest);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(
        statuses("/short/copy"),
        [200, 200],
        "fetched again once stale"
    );
}

#[test]
fn bodies_of_unknown_length_stay_within_the_bound() {
    let (http, requests) = dropping_origin();
    let cache = tempfile::tempdir().unwrap();
    let bound = 3 * MIB / 2;
    let server = tftpd(&[
        "--http-origin",
        &format!("http://127.0.0.1:{http}/"),
        "--origin-cache",
        cache.path().to_str().unwrap(),
        "--origin-cache-size",
        &bound.to_string(),
    ]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("f");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, peak, dir) = (
            Arc::clone(&stop),
            Arc::clone(&peak),
            cache.path().to_path_buf(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(dir_bytes(&dir), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // The 2 MiB body evicts the 1 MiB entry as it grows, then outgrows the cache.
    for (len, kept) in [(MIB, 1), (2 * MIB, 0), (MIB, 1), (MIB, 1)] {
        let o = server.get(&format!("chunked/{len}"), &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&dest).unwrap() == content(len, 9));
        assert_eq!(entries(cache.path(), ".data"), kept, "after {len}");
    }
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= bound, "the directory reached {peak} bytes");
    // The last read is a hit.
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert_eq!(entries(cache.path(), ".tmp"), 0);
}

#[test]
fn a_dead_tftpd_leaves_its_origin_copies_to_the_next_one_to_remove() {
    let nginx = Nginx::start();
    nginx.put("long/left", &content(256 * 1024, 12));
    let tmp = tempfile::tempdir().unwrap();
    let private = || {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tftpd-origin-"))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    };
    // One without a lock (an older tftpd's, or one being made this moment) stays.
    let unlocked = tmp.path().join("tftpd-origin-unlocked");
    std::fs::create_dir(&unlocked).unwrap();
    // Nor does a persistent cache an operator named so, whose `.lock` no process holds while
    // no tftpd runs.
    let cache = tmp.path().join("tftpd-origin-cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join(".lock"), b"").unwrap();
    let start = || tftpd_env(&["--http-origin", &nginx.url()], &[("TMPDIR", tmp.path())]);
    let dead = start();
    let out = tempfile::tempdir().unwrap();
    let o = dead.get("long/left", &out.path().join("left"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = private();
    assert_eq!(first.len(), 3, "{first:?}");
    // SIGKILL: no destructor removes its directory.
    drop(dead);
    assert_eq!(private(), first);
    let alive = start();
    let second = private();
    assert_eq!(second.len(), 3, "the dead one's copies removed: {second:?}");
    assert!(second.contains(&unlocked) && second.contains(&cache));
    let _third = start();
    let third = private();
    assert_eq!(third.len(), 4, "a live one's copies kept: {third:?}");
    assert!(second.iter().all(|d| third.contains(d)));
    // The live one still serves from them.
    let o = alive.get("long/left", &out.path().join("again"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `chattr -i` on drop.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn without_room_for_a_copy_each_session_fetches_on_its_own() {
    let nginx = Nginx::start();
    let data = content(2 * MIB, 10);
    nginx.put("long/direct", &data);
    let tmp = tempfile::tempdir().unwrap();
    let server = tftpd_env(&["--http-origin", &nginx.url()], &[("TMPDIR", tmp.path())]);
    let private = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("tftpd-origin-"))
        .expect("tftpd's private directory for copies")
        .path();
    // An immutable directory: not even root may create a file in it (as on a full disk).
    let made = Command::new("chattr").arg("+i").arg(&private).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: chattr +i is not available here");
        return;
    }
    let _undo = Immutable(private);
    let out = tempfile::tempdir().unwrap();
    for i in 0..2 {
        let dest = out.path().join(format!("f{i}"));
        let o = server.get("long/direct", &dest);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(std::fs::read(&dest).unwrap() == data);
    }
    assert_eq!(
        nginx.requests("/long/direct").len(),
        3,
        "the first, dropped, and one per session"
    );
    assert_eq!(
        server.metric("tftpd_origin_fetches_total{result=\"direct\"}"),
        2
    );
}
