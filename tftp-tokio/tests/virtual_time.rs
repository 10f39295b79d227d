//! The server runs on tokio's clock ([`tftp_server::runtime::Runtime::now`]): under paused
//! time, deadlines, session durations and statistics periods are virtual, so minutes of server
//! behaviour are tested in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tftp_tokio::{
    Handler, HandlerError, ReadResponse, Request, Server, ServerConfig, ServerOptions, ServerStats,
    SessionReport,
};
use tokio::net::UdpSocket;

type Serving = tokio::task::JoinHandle<std::io::Result<()>>;

/// `handler` served on loopback under `options`, and a raw client (no timers of its own) that
/// has sent it a read request for `f`: the client, what stops the server, the server's task.
async fn serve_and_ask(
    handler: impl Handler,
    options: ServerOptions,
) -> (UdpSocket, tokio::sync::oneshot::Sender<()>, Serving) {
    let server = Server::bind(handler, options.listen("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_until(async move {
        let _ = stopped.await;
    }));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rrq = b"\x00\x01f\x00octet\x00";
    client.send_to(rrq, addr).await.unwrap();
    (client, stop, serving)
}

/// Takes 100 s (of tokio's clock) to decide, then serves one byte.
struct Slow;

impl Handler for Slow {
    async fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
        tokio::time::sleep(Duration::from_secs(100)).await;
        Ok(ReadResponse::from_bytes(b"x".to_vec()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_session_and_the_statistics_run_on_tokio_time() {
    let real = std::time::Instant::now();
    let reports = Arc::new(Mutex::new(Vec::<SessionReport>::new()));
    let periods = Arc::new(Mutex::new(Vec::<ServerStats>::new()));
    let (r, p) = (Arc::clone(&reports), Arc::clone(&periods));
    let mut config = ServerConfig::default();
    config.stats_interval = Duration::from_secs(60);
    let options = ServerOptions::new()
        .config(config)
        .on_session(move |report| r.lock().unwrap().push(report.clone()))
        .on_stats(move |stats| p.lock().unwrap().push(stats.clone()));
    // The request, the one DATA, its ACK.
    let (client, stop, serving) = serve_and_ask(Slow, options).await;
    let mut buf = [0u8; 600];
    let (n, from) = client.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"\x00\x03\x00\x01x", "DATA 1");
    client.send_to(b"\x00\x04\x00\x01", from).await.unwrap();
    while reports.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Three more statistics periods, on tokio's clock.
    tokio::time::sleep(Duration::from_secs(180)).await;
    drop(stop);
    serving.await.unwrap().unwrap();

    let reports = reports.lock().unwrap();
    let took = reports[0].stats.duration();
    assert!(reports[0].stats.is_success(), "{reports:#?}");
    assert!(
        took >= Duration::from_secs(100),
        "the session took {took:?} of tokio's time"
    );
    let periods = periods.lock().unwrap();
    assert!(periods.len() >= 3, "{} statistics periods", periods.len());
    assert_eq!(periods.iter().map(|p| p.sessions_completed).sum::<u64>(), 1);
    for period in &periods[..periods.len() - 1] {
        let off = period.period.abs_diff(Duration::from_secs(60));
        assert!(
            off < Duration::from_secs(1),
            "a period of {:?}",
            period.period
        );
    }
    assert!(
        real.elapsed() < Duration::from_secs(20),
        "{:?} of real time",
        real.elapsed()
    );
}

/// Never answers within the test: holds its request past any grace period.
struct Stuck;

impl Handler for Stuck {
    async fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
        tokio::time::sleep(Duration::from_secs(10_000)).await;
        Ok(ReadResponse::from_bytes(b"late".to_vec()))
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_out_the_grace_period_on_tokio_time() {
    let real = std::time::Instant::now();
    let mut config = ServerConfig::default();
    config.shutdown_grace = Duration::from_secs(30);
    let options = ServerOptions::new().config(config);
    let (client, stop, serving) = serve_and_ask(Stuck, options).await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let asked = tokio::time::Instant::now();
    drop(stop);
    serving.await.unwrap().unwrap();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(40),
        "shutdown took {waited:?} of tokio's time, the grace is 30 s"
    );
    // The request still deciding when the grace ran out is answered, not left to time out.
    let mut buf = [0u8; 600];
    let (n, _) = client.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..4], b"\x00\x05\x00\x00", "ERROR 0: {:?}", &buf[..n]);
    assert!(buf[4..n].starts_with(b"Server shutting down"));
    assert!(
        real.elapsed() < Duration::from_secs(20),
        "{:?} of real time",
        real.elapsed()
    );
}
