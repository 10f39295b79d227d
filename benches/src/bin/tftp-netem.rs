//! `tftp-netem`: the impairment proxy of `tftp_conformance::netem` as a program, for the
//! end-to-end benchmark's lossy runs (or by hand, in front of any TFTP server).
//!
//! Clients talk to `--listen`; the proxy relays to `--server`, mirroring each server transfer
//! port with a proxy port of its own (RFC 1350 §4), and drops, duplicates, reorders and delays
//! datagrams with a seeded generator per direction. The counters are written as one JSON
//! object to `--stats FILE` every `--stats-interval-ms` and on SIGTERM/SIGINT, which stop it.
//!
//! ```text
//! tftp-netem --listen 127.0.0.1:7000 --server 127.0.0.1:6969 --loss 0.01 --seed 1 --stats s.json &
//! curl -o f --tftp-blksize 1468 tftp://127.0.0.1:7000/f; kill %1; cat s.json
//! ```

// The module is std-only; it is compiled in here rather than through a dependency on
// tftp-conformance, so the benchmark's build does not pull in every runtime adapter.
#[path = "../../../tftp-conformance/src/netem.rs"]
#[allow(dead_code)]
mod netem;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use netem::{Counters, Impairment, Link, Proxy, Stats};

#[derive(Parser, Debug)]
#[command(about = "UDP impairment proxy for TFTP: seeded loss, duplication, reordering, delay")]
struct Args {
    /// Front address clients send their requests to (port 0: any free port, printed).
    #[arg(long)]
    listen: SocketAddr,
    /// The TFTP server's listening address.
    #[arg(long)]
    server: SocketAddr,
    /// Loss probability each way (0.01 = 1%).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Loss probability client → server (overrides --loss).
    #[arg(long)]
    loss_to_server: Option<f64>,
    /// Loss probability server → client (overrides --loss).
    #[arg(long)]
    loss_to_client: Option<f64>,
    /// Duplication probability each way.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability each way that a datagram is held back by --reorder-delay-ms.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// How long a reordered datagram is held back.
    #[arg(long, default_value_t = 5.0)]
    reorder_delay_ms: f64,
    /// Delay added to every datagram, each way.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Extra uniform delay in 0..J ms, each way.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Seed of the generators (each direction gets its own stream).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the counters here (JSON, replaced atomically) periodically and on exit.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Period of --stats writes.
    #[arg(long, default_value_t = 500)]
    stats_interval_ms: u64,
    /// Exit after this many seconds (default: run until SIGTERM/SIGINT).
    #[arg(long)]
    duration: Option<f64>,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0) / 1000.0)
}

fn counters_json(c: &Counters) -> serde_json::Value {
    serde_json::json!({
        "received": c.received,
        "sent": c.sent,
        "dropped": c.dropped,
        "duplicated": c.duplicated,
        "reordered": c.reordered,
    })
}

fn stats_json(args: &Args, s: &Stats) -> serde_json::Value {
    serde_json::json!({
        "seed": args.seed,
        "to_server": counters_json(&s.to_server),
        "to_client": counters_json(&s.to_client),
        "clients": s.clients,
        "transfer_ports": s.transfer_ports,
        "strays": s.strays,
    })
}

fn write_stats(path: &Path, json: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{json}\n")).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    for (name, p) in [
        ("--loss", args.loss),
        ("--duplicate", args.duplicate),
        ("--reorder", args.reorder),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&p),
            "{name} takes a probability in 0..=1"
        );
    }
    let each_way = Impairment {
        loss: args.loss,
        duplicate: args.duplicate,
        reorder: args.reorder,
        reorder_delay: ms(args.reorder_delay_ms),
        delay: ms(args.delay_ms),
        jitter: ms(args.jitter_ms),
    };
    let mut link = Link::symmetric(each_way, args.seed);
    if let Some(p) = args.loss_to_server {
        link.to_server.loss = p;
    }
    if let Some(p) = args.loss_to_client {
        link.to_client.loss = p;
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGINT,
            on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let proxy = Proxy::bind(args.listen, args.server, link.clone())
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("tftp-netem: {} -> {} ({link:?})", proxy.addr(), args.server);
    let start = Instant::now();
    let interval = Duration::from_millis(args.stats_interval_ms.max(10));
    let mut next_write = start;
    while !STOP.load(Ordering::Relaxed)
        && args
            .duration
            .is_none_or(|d| start.elapsed().as_secs_f64() < d)
    {
        if let Some(path) = args.stats.as_ref().filter(|_| Instant::now() >= next_write) {
            write_stats(path, &stats_json(&args, &proxy.stats()))?;
            next_write += interval;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let json = stats_json(&args, &proxy.stats());
    if let Some(path) = &args.stats {
        write_stats(path, &json)?;
    }
    println!("{json}");
    drop(proxy);
    Ok(())
}
