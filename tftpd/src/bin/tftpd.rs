//! `tftpd`: serve a directory over TFTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tftp_common::session_log::SessionLog;
use tftp_tokio::{Server, ServerConfig, ServerOptions, TimeoutPolicy};
use tftpd::{DirHandler, Fallback, HttpOrigin, OriginTimeouts, RootOptions, Templates};

/// Serve files over TFTP (RFC 1350 with options: blksize, timeout, tsize, windowsize).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory to serve; requests cannot reach outside it.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Directory of templates rendered per client ({{ip}}, {{ip_hex}}, {{path}}, ...),
    /// looked up before --root.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Stream files not found locally from this HTTP(S) origin (URL/path), after --root.
    #[arg(long, value_name = "URL")]
    http_origin: Option<String>,
    /// Seconds to connect to the origin.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    origin_connect_timeout: f64,
    /// Seconds to wait for the origin's headers, and between two chunks of its body.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    origin_read_timeout: f64,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9169).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Append one JSON line per finished session to this file (`-`: standard output).
    #[arg(long, value_name = "PATH")]
    session_log: Option<PathBuf>,
    /// Address to listen on (repeatable). Default: [::]:PORT, which also accepts IPv4.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Port for --listen addresses given without one, and for the default address.
    #[arg(long, default_value_t = 69)]
    port: u16,
    /// Ports for transfer sockets, e.g. 50000:50999 (default: any ephemeral port).
    #[arg(long, value_name = "LOW:HIGH")]
    port_range: Option<String>,
    /// Serve every transfer from the listening port (for NAT, containers, Kubernetes).
    #[arg(long)]
    single_port: bool,
    /// Largest block size granted (8..=65464).
    #[arg(long, default_value_t = 65464)]
    max_blksize: u16,
    /// Largest window granted, in blocks.
    #[arg(long, default_value_t = 64)]
    max_windowsize: u16,
    /// Largest window in bytes (bounds each session's memory).
    #[arg(long, default_value_t = 256 * 1024)]
    max_window_bytes: usize,
    /// Initial retransmission timeout in seconds (adapts to the round trip afterwards).
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Acknowledge a client's `timeout` option and retransmit at that fixed interval, as
    /// tftpd-hpa does (default: keep the adaptive timer and leave it out of the OACK).
    #[arg(long)]
    honour_timeout: bool,
    /// Retransmissions before a transfer is abandoned.
    #[arg(long, default_value_t = 6)]
    retries: u32,
    /// Concurrent transfers; more get "Server busy".
    #[arg(long, default_value_t = 10_000)]
    max_sessions: usize,
    /// Concurrent transfers per client address.
    #[arg(long, default_value_t = 64)]
    max_sessions_per_client: usize,
    /// Accept uploads (write requests) into the root.
    #[arg(long)]
    allow_write: bool,
    /// Let uploads replace existing files.
    #[arg(long)]
    allow_overwrite: bool,
    /// Largest upload in bytes.
    #[arg(long)]
    max_upload_size: Option<u64>,
    /// Match file names case-insensitively when the exact name does not exist.
    #[arg(long)]
    case_insensitive: bool,
    /// Serve files that have more than one hard link (refused by default: a hard link can
    /// bring a file from outside the root into it).
    #[arg(long)]
    follow_hardlinks: bool,
    /// Seconds between server statistics log lines.
    #[arg(long, default_value_t = 60)]
    stats_interval: u64,
    /// Seconds running transfers get to finish on SIGTERM/SIGINT.
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
    /// More logging (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn listen_addrs(args: &Args) -> Result<Vec<SocketAddr>, String> {
    if args.listen.is_empty() {
        return Ok(vec![SocketAddr::from(([0u16; 8], args.port))]);
    }
    args.listen
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>()
                .or_else(|_| {
                    a.trim_matches(['[', ']'])
                        .parse()
                        .map(|ip| SocketAddr::new(ip, args.port))
                })
                .map_err(|_| {
                    format!("--listen {a}: not an address (e.g. 0.0.0.0, [::]:69, 127.0.0.1:6969)")
                })
        })
        .collect()
}

fn config(args: &Args) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::default();
    let s = &mut config.session;
    s.initial_timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--timeout must be a positive number of seconds")?;
    s.retries = args.retries;
    s.max_transfer_size = args.max_upload_size;
    s.limits.max_blksize = args.max_blksize;
    s.limits.max_windowsize = args.max_windowsize.max(1);
    s.limits.max_window_bytes = args.max_window_bytes;
    if args.honour_timeout {
        s.limits.timeout = TimeoutPolicy::Honour;
    }
    config.admission.max_sessions = args.max_sessions;
    config.admission.max_sessions_per_client = args.max_sessions_per_client;
    config.stats_interval = Duration::from_secs(args.stats_interval.max(1));
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    config.single_port = args.single_port;
    if let Some(range) = &args.port_range {
        let (lo, hi) = range
            .split_once(':')
            .and_then(|(l, h)| Some((l.parse::<u16>().ok()?, h.parse::<u16>().ok()?)))
            .filter(|(l, h)| l <= h && *l > 0)
            .ok_or("--port-range takes LOW:HIGH, e.g. 50000:50999")?;
        config.port_range = Some(lo..=hi);
    }
    Ok(config)
}

/// Many concurrent transfers need many sockets: raise the descriptor limit to the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftpd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    raise_fd_limit();
    let root_options = RootOptions {
        case_insensitive: args.case_insensitive,
        allow_write: args.allow_write,
        allow_overwrite: args.allow_overwrite,
        max_upload_size: args.max_upload_size,
        follow_hardlinks: args.follow_hardlinks,
    };
    if args.root.is_none() && args.templates.is_none() && args.http_origin.is_none() {
        return Err(
            "nothing to serve: give --root DIR (and/or --templates DIR, --http-origin URL)".into(),
        );
    }
    let dir = match &args.root {
        Some(root) => Some(
            DirHandler::new(root, root_options)
                .map_err(|e| format!("cannot serve {}: {e}", root.display()))?,
        ),
        None => None,
    };
    let templates = match &args.templates {
        Some(t) => Some(
            Templates::new(t, args.case_insensitive)
                .map_err(|e| format!("cannot use templates in {}: {e}", t.display()))?,
        ),
        None => None,
    };
    let secs = |s: f64, flag: &str| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or(format!("{flag} must be a positive number of seconds"))
    };
    let timeouts = OriginTimeouts {
        connect: secs(args.origin_connect_timeout, "--origin-connect-timeout")?,
        read: secs(args.origin_read_timeout, "--origin-read-timeout")?,
    };
    let origin = match &args.http_origin {
        Some(url) => {
            Some(HttpOrigin::new(url, timeouts).map_err(|e| format!("--http-origin {e}"))?)
        }
        None => None,
    };
    let handler = Fallback::new(templates, Fallback::new(dir, origin));
    if let Some(addr) = args.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("tftp_session_duration_seconds".into()),
                &[
                    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            )
            .and_then(|b| b.install())
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        tracing::info!(%addr, "serving Prometheus metrics");
    }
    let mut options = ServerOptions::new().config(config(&args)?).on_stats(|s| {
        tracing::info!(
            started = s.sessions_started,
            completed = s.sessions_completed,
            failed = s.sessions_failed,
            aborted = s.sessions_aborted_by_client,
            probes = s.size_probes,
            bytes_sent = s.bytes_sent,
            bytes_received = s.bytes_received,
            retransmissions = s.retransmissions,
            active = s.active_sessions,
            "stats"
        );
    });
    for addr in listen_addrs(&args)? {
        options = options.listen(addr);
    }
    if let Some(path) = &args.session_log {
        let out: Box<dyn std::io::Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--session-log {}: {e}", path.display()))?,
            )
        };
        let log = SessionLog::new(out);
        options = options.on_session(move |report| log.record(report));
    }
    let server = Server::bind(handler, options).map_err(|e| e.to_string())?;
    for addr in server.local_addrs().map_err(|e| e.to_string())? {
        tracing::info!(%addr, root = ?args.root, templates = ?args.templates, origin = ?args.http_origin, write = args.allow_write, "listening");
    }
    server
        .serve_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
