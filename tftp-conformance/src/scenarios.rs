//! The scenarios. Each takes the server adapter `S` and the client adapter `C`.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tftp_proto::{Config, ErrorCode, Mode, OptionValues, Outcome, Packet, TransferError};
use tftp_server::ClientError;

use crate::backend::{SIZES, TEXT};
use crate::raw::{Peer, decode};
use crate::{Adapter, Backend, Reports};

fn opts(blksize: Option<u16>, windowsize: Option<u16>) -> OptionValues {
    OptionValues {
        blksize,
        windowsize,
        tsize: Some(0),
        ..OptionValues::default()
    }
}

fn get<C: Adapter>(
    server: SocketAddr,
    file: &str,
    options: OptionValues,
) -> Result<(Vec<u8>, tftp_proto::SessionStats), ClientError> {
    C::get(&Config::default(), server, file, Mode::Octet, options)
}

fn expect_file<S: Adapter, C: Adapter>(
    backend: &Backend,
    server: SocketAddr,
    file: &str,
    options: OptionValues,
) -> tftp_proto::SessionStats {
    let (data, stats) = get::<C>(server, file, options).unwrap_or_else(|e| {
        panic!(
            "{} client / {} server: get {file} {options:?}: {e}",
            C::NAME,
            S::NAME
        )
    });
    assert!(
        *data == **backend.file(file),
        "{} / {}: {file} {options:?}: content differs ({} bytes)",
        C::NAME,
        S::NAME,
        data.len()
    );
    stats
}

fn peer_error(e: ClientError) -> (ErrorCode, String) {
    match e {
        ClientError::Transfer(TransferError::Peer { code, message }) => (code, message),
        other => panic!("expected an ERROR from the server, got {other}"),
    }
}

/// blksize 8, 512, 1468, 65464 × windowsize 1, 4, 64, with tsize and timeout, both ways.
pub fn option_matrix<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let reports = Reports::default();
    let server = S::serve(Arc::clone(&backend), reports.options());
    let file = "f65465";
    let mut n = 0;
    for blksize in [8u16, 512, 1468, 65464] {
        for windowsize in [1u16, 4, 64] {
            let mut o = opts(Some(blksize), Some(windowsize));
            o.timeout = Some(3);
            let stats = expect_file::<S, C>(&backend, server.addr(), file, o);
            assert_eq!(stats.options.blksize, blksize);
            assert_eq!(
                stats.options.windowsize,
                windowsize
                    .min((256 * 1024 / usize::from(blksize)) as u16)
                    .max(1)
            );
            assert_eq!(stats.options.tsize, Some(65465));
            // The default policy keeps the adaptive timer: timeout is not acknowledged.
            assert_eq!(stats.options.timeout, None);
            let name = format!("up-{blksize}-{windowsize}");
            let data = backend.file(file);
            let mut o = opts(Some(blksize), Some(windowsize));
            o.tsize = Some(data.len() as u64);
            C::put(
                &Config::default(),
                server.addr(),
                &name,
                Mode::Octet,
                o,
                &data,
            )
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
            assert!(
                backend.uploaded(&name).as_deref() == Some(&data[..]),
                "upload {name} differs"
            );
            n += 2;
        }
    }
    // No options at all: plain RFC 1350.
    let stats = expect_file::<S, C>(&backend, server.addr(), file, OptionValues::default());
    assert_eq!((stats.options.blksize, stats.options.windowsize), (512, 1));
    let all = reports.wait_for(n + 1);
    assert_eq!(all.len(), n + 1);
    assert!(
        all.iter()
            .all(|r| r.stats.outcome == Some(Outcome::Completed)),
        "{all:#?}"
    );
}

/// Uploads refused when the handler does not accept them; accepted when it does; an existing
/// name is refused with ERROR 6.
pub fn uploads_on_and_off<S: Adapter, C: Adapter>() {
    let data = crate::backend::content(5000, 9);
    let off = S::serve(Backend::new(false), Reports::default().options());
    let e = C::put(
        &Config::default(),
        off.addr(),
        "new",
        Mode::Octet,
        OptionValues::default(),
        &data,
    )
    .unwrap_err();
    assert_eq!(
        peer_error(e),
        (ErrorCode::ACCESS_VIOLATION, "Write not allowed".to_string())
    );
    let backend = Backend::new(true);
    let on = S::serve(Arc::clone(&backend), Reports::default().options());
    C::put(
        &Config::default(),
        on.addr(),
        "new",
        Mode::Octet,
        OptionValues::default(),
        &data,
    )
    .unwrap();
    assert_eq!(backend.uploaded("new").unwrap(), data);
    let e = C::put(
        &Config::default(),
        on.addr(),
        "f1",
        Mode::Octet,
        OptionValues::default(),
        &data,
    )
    .unwrap_err();
    assert_eq!(peer_error(e).0, ErrorCode::FILE_EXISTS);
}

/// Every size around the 512 and 1468 block boundaries, both ways.
pub fn sizes_around_block_boundaries<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let server = S::serve(Arc::clone(&backend), Reports::default().options());
    for &size in SIZES {
        let file = format!("f{size}");
        for blksize in [None, Some(1468)] {
            let stats = expect_file::<S, C>(&backend, server.addr(), &file, opts(blksize, None));
            let bs = usize::from(blksize.unwrap_or(512));
            assert_eq!(
                stats.blocks,
                (size / bs + 1) as u64,
                "{file}: a size that is a multiple of blksize ends with an empty block"
            );
            let name = format!("up-{size}-{bs}");
            C::put(
                &Config::default(),
                server.addr(),
                &name,
                Mode::Octet,
                opts(blksize, None),
                &backend.file(&file),
            )
            .unwrap();
            assert!(backend.uploaded(&name).as_deref() == Some(&backend.file(&file)[..]));
        }
    }
}

/// 70,001 blocks of 8 bytes: the block number wraps to 0 and goes on; both ways, lock-step and
/// windowed.
pub fn more_than_65535_blocks<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let reports = Reports::default();
    let server = S::serve(Arc::clone(&backend), reports.options());
    for windowsize in [1, 16] {
        let stats = expect_file::<S, C>(
            &backend,
            server.addr(),
            "big8",
            opts(Some(8), Some(windowsize)),
        );
        assert_eq!(stats.blocks, 70_001);
        let name = format!("big-up-{windowsize}");
        C::put(
            &Config::default(),
            server.addr(),
            &name,
            Mode::Octet,
            opts(Some(8), Some(windowsize)),
            &backend.file("big8"),
        )
        .unwrap();
        assert!(backend.uploaded(&name).as_deref() == Some(&backend.file("big8")[..]));
    }
}

/// Netascii: LF becomes CR LF on the wire and LF again on the other side, both ways.
pub fn netascii_both_ways<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let reports = Reports::default();
    let server = S::serve(Arc::clone(&backend), reports.options());
    for blksize in [Some(8), None] {
        let (data, _) = C::get(
            &Config::default(),
            server.addr(),
            "text.txt",
            Mode::Netascii,
            opts(blksize, None),
        )
        .unwrap();
        assert_eq!(data, TEXT);
        let name = format!("text-up-{blksize:?}");
        C::put(
            &Config::default(),
            server.addr(),
            &name,
            Mode::Netascii,
            opts(blksize, None),
            TEXT,
        )
        .unwrap();
        assert_eq!(backend.uploaded(&name).unwrap(), TEXT);
    }
    let lf = TEXT.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64;
    let all = reports.wait_for(4);
    assert!(
        all.iter().all(|r| r.stats.bytes == TEXT.len() as u64 + lf),
        "wire bytes include the CR LF / CR NUL expansion"
    );
}

/// A datagram from another port at the transfer port gets ERROR 5; the transfer goes on.
pub fn wrong_transfer_id<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let server = S::serve(Arc::clone(&backend), reports.options());
    let client = Peer::new(server.addr());
    let stranger = Peer::new(server.addr());
    client.rrq(server.addr(), "f1469", &[]);
    let mut data = Vec::new();
    let (first, tid) = client.recv();
    let Packet::Data { block: 1, data: d } = decode(&first) else {
        panic!("expected DATA 1")
    };
    data.extend_from_slice(d);
    stranger.ack(tid, 1);
    let (reply, from) = stranger.recv();
    assert_eq!(from, tid);
    assert!(matches!(
        decode(&reply),
        Packet::Error {
            code: ErrorCode::UNKNOWN_TRANSFER_ID,
            ..
        }
    ));
    lockstep_rest(&client, tid, &mut data);
    assert!(data == **backend.file("f1469"));
    let r = reports.wait_for(1);
    assert_eq!(r[0].stats.outcome, Some(Outcome::Completed));
    assert_eq!(r[0].stats.stray_packets, 1);
}

/// The states of this network namespace's IPv4 UDP sockets bound to local port `port`, from
/// `/proc/net/udp`: "01" (established) for a connected socket, "07" for an unconnected one.
fn udp_states_on(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (port_of(fields.get(1)?)? == port).then(|| fields.get(3).map(|s| s.to_string()))?
        })
        .collect()
}

/// Having received DATA 1 (512-byte blocks) from `tid`, acknowledge and receive the rest in
/// lock-step into `data`, checking every block comes from `tid` in order.
fn lockstep_rest(client: &Peer, tid: SocketAddr, data: &mut Vec<u8>) {
    let mut block = 1;
    loop {
        client.ack(tid, block);
        let (bytes, from) = client.recv();
        assert_eq!(from, tid);
        let Packet::Data { block: b, data: d } = decode(&bytes) else {
            panic!("expected DATA")
        };
        assert_eq!(b, block.wrapping_add(1));
        block = b;
        data.extend_from_slice(d);
        if d.len() < 512 {
            client.ack(tid, block);
            return;
        }
    }
}

/// A client that vanishes mid-transfer: the session gives up after its retries, reports a
/// timeout and frees its transfer port.
pub fn vanishing_client_frees_the_session<S: Adapter, C: Adapter>() {
    let reports = Reports::default();
    let mut options = reports.options();
    options.config.session.initial_timeout = Duration::from_millis(50);
    options.config.session.retries = 3;
    options.config.session.give_up_after = Duration::ZERO;
    let server = S::serve(Backend::new(false), options);
    let client = Peer::new(server.addr());
    client.rrq(server.addr(), "f1469", &[]);
    let (_, tid) = client.recv();
    drop(client);
    let r = reports.wait_for(1);
    assert_eq!(r.len(), 1, "the session ended");
    assert_eq!(
        r[0].stats.outcome,
        Some(Outcome::Failed(TransferError::TimedOut { retries: 3 }))
    );
    assert_eq!(
        r[0].stats.packets_sent, 4,
        "DATA 1 and three retransmissions"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        std::net::UdpSocket::bind(tid).is_ok(),
        "transfer port {tid} is free again"
    );
}

/// The handler's refusal reaches the client with its code and message.
pub fn handler_error_reaches_the_client<S: Adapter, C: Adapter>() {
    let reports = Reports::default();
    let server = S::serve(Backend::new(false), reports.options());
    let e = get::<C>(server.addr(), "refuse", OptionValues::default()).unwrap_err();
    assert_eq!(
        peer_error(e),
        (ErrorCode::ACCESS_VIOLATION, "Not for you".into())
    );
    let e = get::<C>(server.addr(), "missing", opts(Some(1468), None)).unwrap_err();
    assert_eq!(
        peer_error(e),
        (ErrorCode::FILE_NOT_FOUND, "File not found".into())
    );
    let r = reports.wait_for(2);
    assert!(r.iter().all(|r| matches!(
        r.stats.outcome,
        Some(Outcome::Failed(TransferError::Local { .. }))
    )));
}

/// The data source fails mid-transfer: the client gets ERROR 0, never a truncated file.
pub fn source_failure_mid_transfer<S: Adapter, C: Adapter>() {
    let reports = Reports::default();
    let server = S::serve(Backend::new(false), reports.options());
    let e = get::<C>(server.addr(), "broken", opts(Some(512), Some(4))).unwrap_err();
    let (code, message) = peer_error(e);
    assert_eq!(code, ErrorCode::NOT_DEFINED);
    assert!(!message.contains('/'), "no paths in messages: {message}");
    let r = reports.wait_for(1);
    assert!(matches!(
        r[0].stats.outcome,
        Some(Outcome::Failed(TransferError::Local { .. }))
    ));
}

/// The session callback runs once per session with correct figures; the server callback
/// sums them per interval.
pub fn stats_once_per_session<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let reports = Reports::default();
    let (options, intervals) = reports.options_with_intervals(Duration::from_millis(100));
    let server = S::serve(Arc::clone(&backend), options);
    expect_file::<S, C>(
        &backend,
        server.addr(),
        "f1048576",
        opts(Some(1468), Some(4)),
    );
    expect_file::<S, C>(&backend, server.addr(), "f0", opts(None, None));
    get::<C>(server.addr(), "missing", OptionValues::default()).unwrap_err();
    C::put(
        &Config::default(),
        server.addr(),
        "up",
        Mode::Octet,
        OptionValues::default(),
        &[1; 1000],
    )
    .unwrap();
    let r = reports.wait_for(4);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reports.all().len(), 4, "exactly one report per session");
    let big = r.iter().find(|r| r.filename == "f1048576").unwrap();
    assert_eq!(big.stats.bytes, 1 << 20);
    assert_eq!(big.stats.blocks, (1 << 20) / 1468 + 1);
    assert_eq!(
        (big.stats.options.blksize, big.stats.options.windowsize),
        (1468, 4)
    );
    assert_eq!(big.stats.options.tsize, Some(1 << 20));
    assert_eq!(
        big.stats.packets_sent,
        1 + big.stats.blocks + big.stats.retransmissions
    );
    let up = r.iter().find(|r| r.filename == "up").unwrap();
    assert_eq!((up.stats.bytes, up.stats.blocks), (1000, 2));
    assert_eq!(up.kind, tftp_proto::RequestKind::Write);
    drop(server);
    let intervals = intervals.lock().unwrap();
    let sum = |f: fn(&tftp_server::ServerStats) -> u64| intervals.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.sessions_started), 4, "{intervals:#?}");
    assert_eq!(sum(|s| s.sessions_completed), 3);
    assert_eq!(sum(|s| s.requests_refused), 1);
    assert_eq!(sum(|s| s.bytes_sent), 1 << 20);
    assert_eq!(sum(|s| s.bytes_received), 1000);
}

/// 500 transfers at once, all complete.
pub fn five_hundred_concurrent_transfers<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let mut options = reports.options();
    options.config.admission.rate_per_client = None;
    options.config.admission.max_sessions_per_client = 1000;
    let server = S::serve(Arc::clone(&backend), options);
    let addr = server.addr();
    let threads: Vec<_> = (0..500)
        .map(|i| {
            let backend = Arc::clone(&backend);
            std::thread::spawn(move || {
                let file = if i % 2 == 0 { "f65465" } else { "f1469" };
                expect_file::<S, C>(
                    &backend,
                    addr,
                    file,
                    opts(Some(1468), Some(if i % 3 == 0 { 4 } else { 1 })),
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = reports.wait_for(500);
    assert_eq!(r.len(), 500);
    assert!(
        r.iter()
            .all(|r| r.stats.outcome == Some(Outcome::Completed))
    );
}

/// The PXE/UEFI size check: tsize asked, OACK received, ERROR sent; then the real download.
/// Counted as a probe, not a failure.
pub fn size_probe_is_counted_as_a_probe<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let (options, intervals) = reports.options_with_intervals(Duration::from_millis(50));
    let server = S::serve(Arc::clone(&backend), options);
    let firmware = Peer::new(server.addr());
    firmware.rrq(
        server.addr(),
        "f65465",
        &[("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")],
    );
    let (oack, tid) = firmware.recv();
    let Packet::Oack(o) = decode(&oack) else {
        panic!("expected OACK")
    };
    assert_eq!(o.get("tsize"), Some("65465"));
    firmware.error(tid, ErrorCode::OPTION_REFUSED, "size check");
    expect_file::<S, C>(&backend, server.addr(), "f65465", opts(Some(1468), Some(4)));
    let r = reports.wait_for(2);
    assert_eq!(
        r.iter()
            .filter(|r| r.stats.outcome == Some(Outcome::SizeProbe))
            .count(),
        1
    );
    assert_eq!(
        r.iter()
            .filter(|r| r.stats.outcome == Some(Outcome::Completed))
            .count(),
        1
    );
    drop(server);
    let intervals = intervals.lock().unwrap();
    assert_eq!(intervals.iter().map(|s| s.size_probes).sum::<u64>(), 1);
    assert_eq!(intervals.iter().map(|s| s.sessions_failed).sum::<u64>(), 0);
}

/// A handler may tighten option limits for one request.
pub fn per_request_limits<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let server = S::serve(Arc::clone(&backend), Reports::default().options());
    let stats = expect_file::<S, C>(
        &backend,
        server.addr(),
        "small-blocks",
        opts(Some(1468), None),
    );
    assert_eq!(stats.options.blksize, 512);
    let stats = expect_file::<S, C>(&backend, server.addr(), "f65465", opts(Some(1468), None));
    assert_eq!(stats.options.blksize, 1468);
}

/// Single-port mode: every transfer is served from the listening port.
pub fn single_port_mode<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let reports = Reports::default();
    let mut options = reports.options();
    options.config.single_port = true;
    let server = S::serve(Arc::clone(&backend), options);
    let raw = Peer::new(server.addr());
    raw.rrq(server.addr(), "f1", &[]);
    let (_, from) = raw.recv();
    assert_eq!(from, server.addr(), "answered from the listening port");
    raw.ack(from, 1);
    let addr = server.addr();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let backend = Arc::clone(&backend);
            std::thread::spawn(move || {
                expect_file::<S, C>(
                    &backend,
                    addr,
                    "f65465",
                    opts(Some(1468), Some(if i % 2 == 0 { 4 } else { 1 })),
                );
                // Blocks larger than a batched receive's slot would be are cut, if it were
                // sized for ACKs: uploads of 8 KiB blocks too.
                let (blksize, file) = if i % 2 == 0 {
                    (512, "f1469")
                } else {
                    (8192, "f65465")
                };
                let name = format!("sp-{i}");
                C::put(
                    &Config::default(),
                    addr,
                    &name,
                    Mode::Octet,
                    opts(Some(blksize), None),
                    &backend.file(file),
                )
                .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for i in 0..8 {
        let file = if i % 2 == 0 { "f1469" } else { "f65465" };
        assert!(backend.uploaded(&format!("sp-{i}")).as_deref() == Some(&backend.file(file)[..]));
    }
    let r = reports.wait_for(17);
    assert!(
        r.iter()
            .all(|r| r.stats.outcome == Some(Outcome::Completed)),
        "{r:#?}"
    );
}

/// Shutdown stops accepting and lets a running transfer finish within the grace period;
/// past it, the transfer is aborted with an ERROR.
pub fn graceful_shutdown_lets_transfers_finish<S: Adapter, C: Adapter>() {
    for (grace, finishes, single_port) in [
        (Duration::from_secs(10), true, false),
        (Duration::from_millis(200), false, false),
        (Duration::from_secs(10), true, true),
    ] {
        let reports = Reports::default();
        let mut options = reports.options();
        options.config.shutdown_grace = grace;
        options.config.single_port = single_port;
        let server = S::serve(Backend::new(false), options);
        let addr = server.addr();
        let client = Peer::new(addr);
        client.rrq(addr, "f65465", &[]);
        let (_, tid) = client.recv();
        let stopper = std::thread::spawn(move || {
            let t = Instant::now();
            server.stop();
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        // New requests get no answer.
        let late = Peer::new(addr);
        late.timeout(Duration::from_millis(300));
        late.rrq(addr, "f1", &[]);
        assert!(
            late.try_recv().is_none(),
            "a request during shutdown was answered"
        );
        // Read the rest slowly: 128 blocks, 5 ms each.
        let mut block = 1u16;
        let mut aborted = false;
        loop {
            std::thread::sleep(Duration::from_millis(5));
            client.ack(tid, block);
            let Some((bytes, _)) = client.try_recv() else {
                break;
            };
            match decode(&bytes) {
                Packet::Data { block: b, data } => {
                    block = b;
                    if data.len() < 512 {
                        client.ack(tid, block);
                        break;
                    }
                }
                Packet::Error { message, .. } => {
                    assert_eq!(message, "Server shutting down");
                    aborted = true;
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let waited = stopper.join().unwrap();
        assert_eq!(aborted, !finishes, "grace {grace:?}");
        if finishes {
            assert_eq!(block, 128);
            assert_eq!(reports.all()[0].stats.outcome, Some(Outcome::Completed));
        } else {
            assert!(waited < Duration::from_secs(2), "{waited:?}");
        }
    }
}

/// Transfer sockets come from the configured port range.
pub fn port_range<S: Adapter, C: Adapter>() {
    let mut options = Reports::default().options();
    options.config.port_range = Some(47_000..=47_019);
    let backend = Backend::new(false);
    let server = S::serve(Arc::clone(&backend), options);
    for _ in 0..5 {
        let raw = Peer::new(server.addr());
        raw.rrq(server.addr(), "f1", &[]);
        let (_, tid) = raw.recv();
        assert!((47_000..=47_019).contains(&tid.port()), "{tid}");
        raw.ack(tid, 1);
    }
    expect_file::<S, C>(&backend, server.addr(), "f65465", opts(Some(1468), None));
}

/// IPv6, and a dual-stack `[::]` listener serving IPv4 clients.
pub fn ipv6_and_dual_stack<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let mut options = reports.options();
    options.listen = vec!["[::1]:0".parse().unwrap()];
    let server = S::serve(Arc::clone(&backend), options);
    expect_file::<S, C>(&backend, server.addr(), "f65465", opts(Some(1468), Some(4)));
    let (data, _) = get::<C>(server.addr(), "whoami", OptionValues::default()).unwrap();
    assert_eq!(data, b"::1");
    let mut options = reports.options();
    options.listen = vec!["[::]:0".parse().unwrap()];
    let server = S::serve(Arc::clone(&backend), options);
    let v4: SocketAddr = ([127, 0, 0, 1], server.addr().port()).into();
    expect_file::<S, C>(&backend, v4, "f65465", opts(Some(1468), None));
}

/// A wildcard listener answers from the address it was asked at (RFC 1122 §4.1.3.5; PXE ROMs
/// and NATs drop anything else): a client of 127.0.0.1 asking at 127.0.0.2 hears every reply
/// from 127.0.0.2 (the first DATA, the listener's own refusal, a whole transfer with
/// windows), with per-transfer ports and in single-port mode, on an IPv4 and a dual-stack
/// listener; the handler sees the asked address as the request's `local`.
pub fn replies_from_the_asked_address<S: Adapter, C: Adapter>() {
    for (listen, single_port) in [
        ("0.0.0.0:0", false),
        ("0.0.0.0:0", true),
        ("[::]:0", false),
        ("[::]:0", true),
    ] {
        let backend = Backend::new(false);
        let mut options = Reports::default().options();
        options.listen = vec![listen.parse().unwrap()];
        options.config.single_port = single_port;
        let server = S::serve(Arc::clone(&backend), options);
        let asked = SocketAddr::from(([127, 0, 0, 2], server.addr().port()));
        let case = format!("{} on {listen}, single-port {single_port}", S::NAME);
        let raw = Peer::new(asked);
        raw.rrq(asked, "f1", &[]);
        let (data, from) = raw.recv();
        assert!(
            matches!(decode(&data), Packet::Data { block: 1, .. }),
            "{case}"
        );
        assert_eq!(from.ip(), asked.ip(), "{case}: answered from {from}");
        assert_eq!(from.port() == asked.port(), single_port, "{case}: {from}");
        raw.ack(from, 1);
        // The listener's own answer: a request in an unknown mode is refused from port 69.
        raw.send(asked, b"\x00\x01f1\x00mail\x00");
        let (data, from) = raw.recv();
        assert!(matches!(decode(&data), Packet::Error { .. }), "{case}");
        assert_eq!(from, asked, "{case}: refused from {from}");
        // Our client, like PXE ROMs, drops replies from another address than it asked.
        let (data, _) = get::<C>(asked, "whereami", OptionValues::default()).unwrap();
        assert_eq!(String::from_utf8_lossy(&data), asked.to_string(), "{case}");
        expect_file::<S, C>(&backend, asked, "f65465", opts(Some(1468), Some(4)));
        // The primary keeps answering from itself.
        let primary = SocketAddr::from(([127, 0, 0, 1], asked.port()));
        let (data, _) = get::<C>(primary, "whereami", OptionValues::default()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&data),
            primary.to_string(),
            "{case}"
        );
    }
}

/// Granted block sizes fit the MTU policy: a fixed MTU of 1500 grants 1468 over IPv4 and 1448
/// over IPv6 to a client asking 65464; `Off` and loopback's own MTU (65536) grant 65464.
pub fn blksize_fits_the_mtu<S: Adapter, C: Adapter>() {
    use tftp_server::MtuPolicy;
    let backend = Backend::new(false);
    for (listen, mtu, want) in [
        ("127.0.0.1:0", MtuPolicy::Fixed(1500), 1468),
        ("[::1]:0", MtuPolicy::Fixed(1500), 1448),
        ("127.0.0.1:0", MtuPolicy::Interface, 65464),
        ("[::1]:0", MtuPolicy::Off, 65464),
    ] {
        let mut options = Reports::default().options();
        options.listen = vec![listen.parse().unwrap()];
        options.config.mtu = mtu;
        let server = S::serve(Arc::clone(&backend), options);
        let stats = expect_file::<S, C>(&backend, server.addr(), "f65465", opts(Some(65464), None));
        assert_eq!(stats.options.blksize, want, "{listen} {mtu:?}");
    }
    // A handler's own limits still apply under the clamp.
    let mut options = Reports::default().options();
    options.config.mtu = MtuPolicy::Fixed(1500);
    let server = S::serve(Arc::clone(&backend), options);
    let stats = expect_file::<S, C>(
        &backend,
        server.addr(),
        "small-blocks",
        opts(Some(65464), None),
    );
    assert_eq!(stats.options.blksize, 512);
}

/// Past `max_sessions`, requests get an ERROR, not silence.
pub fn server_busy_gets_an_error<S: Adapter, C: Adapter>() {
    let mut options = Reports::default().options();
    options.config.admission.max_sessions = 1;
    let server = S::serve(Backend::new(false), options);
    let first = Peer::new(server.addr());
    first.rrq(server.addr(), "f65465", &[]);
    let (_, tid) = first.recv();
    let e = get::<C>(server.addr(), "f1", OptionValues::default()).unwrap_err();
    let (code, message) = peer_error(e);
    assert_eq!(code, ErrorCode::NOT_DEFINED);
    assert!(message.contains("busy"), "{message}");
    first.error(tid, ErrorCode::NOT_DEFINED, "bye");
    std::thread::sleep(Duration::from_millis(100));
    get::<C>(server.addr(), "f1", OptionValues::default()).unwrap();
}

fn run_tool(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert_ne!(
        out.status.code(),
        Some(127),
        "{program} is not installed; run scripts/test-deps.sh"
    );
    out
}

/// curl, tftp-hpa, atftp and busybox against this adapter's server.
pub fn real_clients_fetch_and_upload<S: Adapter, C: Adapter>() {
    let backend = Backend::new(true);
    let server = S::serve(Arc::clone(&backend), Reports::default().options());
    let port = server.addr().port().to_string();
    let dir = std::env::temp_dir().join(format!(
        "tftp-conformance-{}-{}",
        S::NAME,
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("curl");
    let url = format!("tftp://127.0.0.1:{port}/f1048576");
    let r = run_tool(
        "curl",
        &[
            "-sS",
            "--tftp-blksize",
            "1468",
            "-o",
            out.to_str().unwrap(),
            &url,
        ],
    );
    assert!(
        r.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == **backend.file("f1048576"));
    let url = format!("tftp://127.0.0.1:{port}/f0");
    let r = run_tool("curl", &["-sS", "-o", out.to_str().unwrap(), &url]);
    assert!(
        r.status.success(),
        "curl, empty file: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let out = dir.join("hpa");
    let r = run_tool(
        "tftp",
        &[
            "-m",
            "binary",
            "127.0.0.1",
            &port,
            "-c",
            "get",
            "f65465",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        r.status.success(),
        "tftp-hpa: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == **backend.file("f65465"));
    let out = dir.join("atftp");
    let r = run_tool(
        "atftp",
        &[
            "--option",
            "blksize 1468",
            "--option",
            "windowsize 8",
            "-g",
            "-r",
            "f1048576",
            "-l",
            out.to_str().unwrap(),
            "127.0.0.1",
            &port,
        ],
    );
    assert!(
        r.status.success(),
        "atftp: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == **backend.file("f1048576"));
    let src = dir.join("src");
    std::fs::write(&src, &**backend.file("f65465")).unwrap();
    let r = run_tool(
        "busybox",
        &[
            "tftp",
            "-p",
            "-b",
            "1468",
            "-l",
            src.to_str().unwrap(),
            "-r",
            "bb-up",
            "127.0.0.1",
            &port,
        ],
    );
    assert!(
        r.status.success(),
        "busybox put: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(backend.uploaded("bb-up").as_deref() == Some(&backend.file("f65465")[..]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gets and puts through the seeded impairment proxy ([`crate::netem`]) at 1%, 5% and 10%
/// loss each way, lock-step and windowed, then with duplication and reordering on top: every
/// byte arrives, and the proxy's counters add up.
pub fn lossy_link<S: Adapter, C: Adapter>() {
    use crate::netem::{Impairment, Link, Proxy};

    let backend = Backend::new(true);
    let reports = Reports::default();
    let mut options = reports.options();
    // 10% each way loses a round trip one time in five; 12 retries make a spurious failure
    // (13 losses in a row) about 4e-10 per block.
    options.config.session.retries = 12;
    // An upload's final ACK can be lost too: the client then resends its last window when its
    // own timer fires, which after losses (and under a loaded machine) backs off towards 8 s.
    // The server must still be there to answer: dally past the client's longest timer.
    options.config.session.dally = Duration::from_secs(10);
    // Do not wait for dallying sessions at shutdown.
    options.config.shutdown_grace = Duration::from_millis(100);
    let server = S::serve(Arc::clone(&backend), options);
    let mut config = Config::default();
    config.retries = 12;
    let file = "f65465"; // 128 blocks of 512 bytes
    let data = backend.file(file);
    let shaken = Impairment {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
        delay: Duration::ZERO,
        jitter: Duration::from_micros(500),
    };
    let mut links = Vec::new();
    for loss in [0.01, 0.05, 0.10] {
        links.push(Impairment::loss(loss));
    }
    links.push(shaken);
    let (mut dropped, mut duplicated, mut reordered) = (0, 0, 0);
    let mut uploads = Vec::new();
    for (i, impairment) in links.into_iter().enumerate() {
        for windowsize in [1u16, 8] {
            let seed = 0x1055 + 10 * i as u64 + u64::from(windowsize);
            let proxy = Proxy::start(server.addr(), Link::symmetric(impairment, seed)).unwrap();
            let what = format!(
                "{} client / {} server, {impairment:?}, windowsize {windowsize}, seed {seed}",
                C::NAME,
                S::NAME
            );
            let o = opts(Some(512), Some(windowsize));
            let (got, stats) = C::get(&config, proxy.addr(), file, Mode::Octet, o)
                .unwrap_or_else(|e| panic!("get through {what}: {e}"));
            assert!(got == *data, "get through {what}: content differs");
            assert_eq!(stats.options.windowsize, windowsize, "{what}");
            let name = format!("lossy-{i}-{windowsize}");
            let mut o = opts(Some(512), Some(windowsize));
            o.tsize = Some(data.len() as u64);
            C::put(&config, proxy.addr(), &name, Mode::Octet, o, &data)
                .unwrap_or_else(|e| panic!("put through {what}: {e}"));
            assert!(
                backend.uploaded(&name).as_deref() == Some(&data[..]),
                "put through {what}: upload differs"
            );
            uploads.push(name);
            let s = proxy.stats();
            for c in [s.to_server, s.to_client] {
                assert_eq!(
                    c.sent,
                    c.received - c.dropped + c.duplicated,
                    "{what}: {s:?}"
                );
            }
            assert_eq!(s.strays, 0, "{what}: {s:?}");
            dropped += s.to_server.dropped + s.to_client.dropped;
            duplicated += s.to_server.duplicated + s.to_client.duplicated;
            reordered += s.to_server.reordered + s.to_client.reordered;
        }
    }
    assert!(
        dropped > 0 && duplicated > 0 && reordered > 0,
        "the link was impaired: {dropped} dropped, {duplicated} duplicated, {reordered} reordered"
    );
    // The server completed every upload. (A get's server session that never hears the final
    // ACK retries until it times out, after the client has the file: not checked here.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let uploads_completed = || {
        let all = reports.all();
        let done = |name: &String| {
            all.iter()
                .any(|r| &r.filename == name && r.stats.outcome == Some(Outcome::Completed))
        };
        uploads.iter().all(done)
    };
    while !uploads_completed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(uploads_completed(), "{:#?}", reports.all());
}

/// A stranger at a transfer port: its ERROR is never answered (answering ERRORs is how one
/// spoofed datagram makes two transfers loop, CVE-2024-2169), and a flood of its ACKs gets
/// one ERROR 5, not one per datagram; the transfer goes on and counts every stray. The
/// transfer socket is connected to its peer (`ServerConfig::connect_transfers`), so the
/// stranger's datagrams reach the session through the catcher socket on the same port
/// (`tftp_server::connect`): every adapter connects its transfers and reads its catchers.
pub fn strangers_get_bounded_answers<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let mut options = reports.options();
    // Far fewer sessions than any descriptor limit: descriptors to spare for catchers.
    options.config.admission.max_sessions = 16;
    let server = S::serve(Arc::clone(&backend), options);
    let client = Peer::new(server.addr());
    let stranger = Peer::new(server.addr());
    stranger.timeout(Duration::from_millis(300));
    client.rrq(server.addr(), "f1469", &[]);
    let (first, tid) = client.recv();
    let Packet::Data { block: 1, data: d } = decode(&first) else {
        panic!("expected DATA 1")
    };
    let mut data = d.to_vec();
    let mut states = udp_states_on(tid.port());
    states.sort();
    assert_eq!(
        states,
        ["01", "07"],
        "a connected transfer socket and its catcher"
    );
    stranger.error(tid, ErrorCode::UNKNOWN_TRANSFER_ID, "Unknown transfer ID");
    assert!(stranger.try_recv().is_none(), "an ERROR was answered");
    for _ in 0..20 {
        stranger.ack(tid, 1);
    }
    let mut answers = 0;
    while let Some((reply, from)) = stranger.try_recv() {
        assert_eq!(from, tid);
        assert!(matches!(
            decode(&reply),
            Packet::Error {
                code: ErrorCode::UNKNOWN_TRANSFER_ID,
                ..
            }
        ));
        answers += 1;
    }
    assert_eq!(answers, 1, "one answer to a burst of 20 strays");
    // The session may have resent DATA 1 meanwhile (its timer ran while we waited).
    client.timeout(Duration::from_millis(1));
    while let Some((bytes, _)) = client.try_recv() {
        assert!(matches!(decode(&bytes), Packet::Data { block: 1, .. }));
    }
    client.timeout(Duration::from_secs(5));
    lockstep_rest(&client, tid, &mut data);
    assert!(data == **backend.file("f1469"));
    let r = reports.wait_for(1);
    assert_eq!(r[0].stats.outcome, Some(Outcome::Completed));
    assert_eq!(r[0].stats.stray_packets, 21);
}

/// 300 different requests from one client port, each replacing the one before: the replaced
/// sessions end, and while they have not, they count, so the per-client limit holds (in both
/// multi-port and single-port mode).
pub fn replacements_stay_within_the_limits<S: Adapter, C: Adapter>() {
    for single_port in [false, true] {
        let reports = Reports::default();
        let mut options = reports.options();
        options.config.single_port = single_port;
        options.config.admission.max_sessions_per_client = 4;
        options.config.admission.rate_per_client = None;
        let server = S::serve(Backend::new(false), options);
        let flood = Peer::new(server.addr());
        flood.timeout(Duration::from_millis(300));
        let mut admitted = 0;
        let mut busy = 0;
        for i in 0..300u32 {
            let blksize = (512 + i).to_string();
            flood.rrq(server.addr(), "f65465", &[("blksize", &blksize)]);
            // Read what came back so far without waiting.
            flood.timeout(Duration::from_millis(if i % 50 == 49 { 50 } else { 1 }));
            while let Some((reply, _)) = flood.try_recv() {
                match decode(&reply) {
                    Packet::Oack(_) => admitted += 1,
                    Packet::Error { .. } => busy += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        flood.timeout(Duration::from_millis(300));
        while let Some((reply, _)) = flood.try_recv() {
            match decode(&reply) {
                Packet::Oack(_) => admitted += 1,
                Packet::Error { .. } => busy += 1,
                // Retransmitted OACKs of the surviving session.
                _ => {}
            }
        }
        assert!(admitted >= 1, "single_port {single_port}");
        // Every replaced session has ended (reported) but the last: at most 4 ran at once,
        // and now one does.
        let deadline = Instant::now() + Duration::from_secs(5);
        while reports.all().len() + 1 < admitted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ended = reports.all().len();
        assert!(
            admitted - ended <= 1,
            "single_port {single_port}: {admitted} admitted, {ended} ended, {busy} refused"
        );
        assert!(
            busy > 0 || admitted == 300,
            "single_port {single_port}: {admitted} admitted"
        );
    }
}

/// A source that stalls mid-block never wedges its session: the OACK goes out before the
/// source is asked for anything; while the source is pending the client's ERROR still ends
/// the transfer at once; a per-block deadline aborts it with an ERROR; and shutdown past its
/// grace period is not held up by it.
pub fn a_stalled_source_does_not_wedge_its_session<S: Adapter, C: Adapter>() {
    let started = Instant::now();
    // The client gives up while the source is stalled.
    let reports = Reports::default();
    let mut options = reports.options();
    options.config.shutdown_grace = Duration::from_millis(200);
    let server = S::serve(Backend::new(false), options);
    let client = Peer::new(server.addr());
    client.timeout(Duration::from_secs(2));
    client.rrq(server.addr(), "slow", &[("blksize", "1468")]);
    let (oack, tid) = client.recv();
    assert!(
        matches!(decode(&oack), Packet::Oack(_)),
        "the OACK comes first"
    );
    client.ack(tid, 0);
    std::thread::sleep(Duration::from_millis(200));
    client.error(tid, ErrorCode::NOT_DEFINED, "changed my mind");
    let r = reports.wait_for(1);
    assert!(
        matches!(
            r[0].stats.outcome,
            Some(Outcome::Failed(TransferError::Peer { .. }))
        ),
        "{:?}",
        r[0].stats.outcome
    );
    // A second stalled transfer, left running, does not hold up shutdown.
    client.rrq(server.addr(), "slow", &[("blksize", "1468")]);
    let (_, tid) = client.recv();
    client.ack(tid, 0);
    std::thread::sleep(Duration::from_millis(100));
    let stopping = Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let aborted = client.recv();
    assert!(matches!(decode(&aborted.0), Packet::Error { .. }));

    // The per-block deadline.
    let reports = Reports::default();
    let mut options = reports.options();
    options.config.source_timeout = Duration::from_millis(300);
    let server = S::serve(Backend::new(false), options);
    let client = Peer::new(server.addr());
    client.timeout(Duration::from_secs(3));
    client.rrq(server.addr(), "slow", &[("blksize", "1468")]);
    let (_, tid) = client.recv();
    client.ack(tid, 0);
    let (bytes, from) = client.recv();
    assert_eq!(from, tid);
    match decode(&bytes) {
        Packet::Error { message, .. } => assert_eq!(message, "Data source timed out"),
        other => panic!("{other:?}"),
    }
    let r = reports.wait_for(1);
    assert!(matches!(
        r[0].stats.outcome,
        Some(Outcome::Failed(TransferError::Local { .. }))
    ));
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// Windows exist only once data flows: requests for the largest window that are never
/// acknowledged take nothing of the server's window memory, and a window that does not fit
/// in what is left gets "Server busy" when its data would start.
pub fn window_memory_is_taken_only_when_data_flows<S: Adapter, C: Adapter>() {
    let reports = Reports::default();
    let mut options = reports.options();
    // Room for one 64 × 65468-byte window (4 MiB), not two.
    options.config.window_memory = 6 << 20;
    options.config.session.limits.max_window_bytes = 8 << 20;
    let server = S::serve(Backend::new(false), options);
    let big = [("blksize", "65464"), ("windowsize", "64")];
    // Twenty never-acknowledged requests all get their OACK.
    let idle: Vec<Peer> = (0..20).map(|_| Peer::new(server.addr())).collect();
    for peer in &idle {
        peer.rrq(server.addr(), "f1048576", &big);
    }
    for peer in &idle {
        assert!(matches!(decode(&peer.recv().0), Packet::Oack(_)));
    }
    // The first client to acknowledge gets its data.
    let first = Peer::new(server.addr());
    first.rrq(server.addr(), "f1048576", &big);
    let (_, tid1) = first.recv();
    first.ack(tid1, 0);
    assert!(matches!(
        decode(&first.recv().0),
        Packet::Data { block: 1, .. }
    ));
    // A second window does not fit while the first is held.
    let second = Peer::new(server.addr());
    second.rrq(server.addr(), "f1048576", &big);
    let (_, tid2) = second.recv();
    second.ack(tid2, 0);
    match decode(&second.recv().0) {
        Packet::Error { message, .. } => assert_eq!(message, "Server busy, try again later"),
        other => panic!("{other:?}"),
    }
}

/// A handler or a data source that panics fails its own request with ERROR 0 "Server error"
/// and a session report, at once (the client does not wait for its retries to run out); the
/// server goes on serving.
pub fn a_panic_fails_only_its_own_request<S: Adapter, C: Adapter>() {
    let backend = Backend::new(false);
    let reports = Reports::default();
    let server = S::serve(Arc::clone(&backend), reports.options());
    let started = Instant::now();
    let (code, message) =
        peer_error(get::<C>(server.addr(), "panic", OptionValues::default()).unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::NOT_DEFINED, "Server error")
    );
    let e = get::<C>(server.addr(), "panicky", OptionValues::default()).unwrap_err();
    let (code, _) = peer_error(e);
    assert_eq!(code, ErrorCode::NOT_DEFINED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let r = reports.wait_for(2);
    assert!(
        r.iter().all(|r| matches!(
            r.stats.outcome,
            Some(Outcome::Failed(TransferError::Local { .. }))
        )),
        "{r:#?}"
    );
    expect_file::<S, C>(&backend, server.addr(), "f1469", OptionValues::default());
}
