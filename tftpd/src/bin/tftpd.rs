//! `tftpd`: serve a directory over TFTP.
//!
//! Start-up order matters for privileges: listening sockets are taken from the service
//! manager (systemd socket activation) or bound first, then `--user` drops root, then the
//! runtime starts and everything else (the root directory, templates, logs) is opened as the
//! unprivileged user. SIGHUP re-reads `--config` and swaps in a new server on the same
//! sockets while transfers in flight finish on the old one; SIGTERM and SIGINT drain.

// No unsafe code but two, each in a module of its own below: `libm`'s `no_mangle`, and the
// `madvise` that gives back start-up's pages of the program (`start_up_pages`).
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tftp_tokio::{MtuPolicy, Server, ServerConfig, ServerOptions, TimeoutPolicy};
use tftpd::engine::OnLoops;
use tftpd::line_queue::LineQueue;
use tftpd::session_log::SessionLog;
use tftpd::{DirHandler, Fallback, NoShadow, RootOptions, Templates};
#[cfg(feature = "http-origin")]
use tftpd::{HttpOrigin, OriginRedirects, OriginTimeouts};
// The command line: a crate of its own, built for size (it runs once, at start).
pub(crate) use tftpd_cli::Args;
use tftpd_cli::{EngineArg, LogFormatArg};

/// `--origin-redirects`.
#[cfg(feature = "http-origin")]
fn redirects(r: tftpd_cli::Redirects) -> OriginRedirects {
    match r {
        tftpd_cli::Redirects::SameOrigin => OriginRedirects::SameOrigin,
        tftpd_cli::Redirects::None => OriginRedirects::None,
    }
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

/// A flag's value in seconds as a [`Duration`]: positive, or with `zero_ok` also zero.
fn secs(value: f64, flag: &str, zero_ok: bool) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| zero_ok || !d.is_zero())
        .ok_or_else(|| match zero_ok {
            true => format!("{flag} must be a non-negative number of seconds"),
            false => format!("{flag} must be a positive number of seconds"),
        })
}

fn config(args: &Args) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::default();
    let s = &mut config.session;
    s.initial_timeout = secs(args.timeout, "--timeout", false)?;
    s.retries = args.retries;
    s.give_up_after = secs(args.give_up_after, "--give-up-after", true)?;
    s.min_timeout = secs(args.min_timeout, "--min-timeout", false)?;
    s.max_timeout = secs(args.max_timeout, "--max-timeout", false)?;
    s.dally = secs(args.dally, "--dally", true)?;
    s.max_transfer_size = args.max_upload_size;
    s.limits.max_blksize = args.max_blksize;
    s.limits.max_windowsize = args.max_windowsize.max(1);
    s.limits.max_window_bytes = args.max_window_bytes;
    if args.honour_timeout {
        s.limits.timeout = TimeoutPolicy::Honour;
    }
    refuse_options(&args.refuse, &mut s.limits)?;
    config.admission.max_sessions = args.max_sessions;
    config.admission.max_sessions_per_client = args.max_sessions_per_client;
    config.admission.rate_per_client = (args.client_rate > 0.0).then_some(args.client_rate);
    config.admission.burst_per_client = args.client_burst.max(1);
    config.admission.ipv6_prefix = args.ipv6_client_prefix;
    config.admission.replies_per_second = args.max_replies.max(0.0);
    config.source_timeout = secs(args.source_timeout, "--source-timeout", false)?;
    config.window_memory = args.max_window_memory;
    config.stats_interval = Duration::from_secs(args.stats_interval.max(1));
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    config.single_port = args.single_port;
    config.mtu = match args.tftp_mtu.as_str() {
        "auto" => MtuPolicy::Interface,
        "off" => MtuPolicy::Off,
        bytes => match bytes.parse::<u32>() {
            // 576: the datagram every IPv4 host must accept (RFC 791).
            Ok(mtu) if (576..=65536).contains(&mtu) => MtuPolicy::Fixed(mtu),
            _ => return Err("--tftp-mtu takes auto, off or an MTU in bytes (576..=65536)".into()),
        },
    };
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

/// Why the command line could not be turned into [`Args`].
#[derive(Debug)]
enum CliError {
    /// From clap: a usage error, or `--help`/`--version` (printed to standard output).
    Usage(clap::Error),
    /// The `--config` file is unreadable or wrong.
    Config(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(e) => write!(f, "{e}"),
            CliError::Config(message) => f.write_str(message),
        }
    }
}

impl CliError {
    /// Print it where it belongs and give the exit status (sysexits: 64 usage, 78 config).
    fn report(self) -> ExitCode {
        match self {
            CliError::Usage(e) => {
                let _ = e.print();
                if e.use_stderr() {
                    ExitCode::from(64)
                } else {
                    ExitCode::SUCCESS
                }
            }
            CliError::Config(message) => {
                eprintln!("tftpd: {message}");
                ExitCode::from(78)
            }
        }
    }
}

/// The command line over the `--config` file's settings: a setting given on the command line
/// replaces the file's (a `listen` list too; `--allow-write=false` turns off the file's
/// `allow-write = true`).
fn parse_args(cli: &[OsString]) -> Result<Args, CliError> {
    use clap::{CommandFactory, FromArgMatches};
    let command = Args::command();
    let matches = command
        .clone()
        .try_get_matches_from(cli)
        .map_err(CliError::Usage)?;
    let args = Args::from_arg_matches(&matches).map_err(CliError::Usage)?;
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let on_command_line =
        |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let mut merged = vec![cli.first().cloned().unwrap_or_else(|| "tftpd".into())];
    merged.extend(config_file_args(&path, &command, on_command_line)?);
    merged.extend(cli.iter().skip(1).cloned());
    Args::try_parse_from(merged).map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
}

/// A TOML file as command-line arguments: `key = value` becomes `--key value`, `key = true`
/// becomes `--key=true`, arrays repeat the flag. Keys the command line sets are left out.
fn config_file_args(
    path: &Path,
    command: &clap::Command,
    on_command_line: impl Fn(&str) -> bool,
) -> Result<Vec<OsString>, CliError> {
    let fail = |message: String| CliError::Config(format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("--config {}: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e| fail(format!("{e}")))?;
    let mut out = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        if matches!(long.as_str(), "config" | "user" | "help" | "version") {
            return Err(fail(format!(
                "`{key}` can only be given on the command line"
            )));
        }
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            return Err(fail(format!(
                "unknown key `{key}` (the keys are the long flags of `tftpd --help`)"
            )));
        };
        if on_command_line(arg.get_id().as_str()) {
            continue;
        }
        let flag = format!("--{long}");
        let values = match value {
            toml::Value::Array(items) => items,
            other => vec![other],
        };
        for v in values {
            match v {
                toml::Value::Boolean(b) => out.push(format!("{flag}={b}").into()),
                toml::Value::String(s) => out.extend([flag.clone().into(), s.into()]),
                toml::Value::Integer(i) => out.extend([flag.clone().into(), i.to_string().into()]),
                toml::Value::Float(f) => out.extend([flag.clone().into(), f.to_string().into()]),
                _ => return Err(fail(format!("`{key}` has an unsupported value"))),
            }
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc_arenas::one();
    let cli: Vec<OsString> = std::env::args_os().collect();
    let args = match load_args(&cli) {
        Ok(args) => args,
        Err(e) => return e.report(),
    };
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Log lines are written to stderr on a thread of their own, at most LOG_QUEUE of them
    // waiting (dnsmasq's --log-async): the transfers log from the event loop, and a stderr
    // that stops taking lines (a pipe or journald stream whose reader stalled) must cost log
    // lines, counted, and never the transfers. When main returns, what is queued is written
    // (for up to a second). A write to stderr that fails has nowhere to be reported.
    let stderr = match LineQueue::spawn("tftpd-log", std::io::stderr(), LOG_QUEUE, |_| {}) {
        Ok(queue) => queue,
        Err(e) => {
            eprintln!("tftpd: cannot start the log's thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr.clone());
    match args.log_format {
        LogFormatArg::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormatArg::Json => log.json().init(),
        LogFormatArg::Journald => log
            .with_ansi(false)
            .event_format(tftpd::logging::Journald)
            .init(),
    }
    let code = match run(args, cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftpd: {e}");
            ExitCode::FAILURE
        }
    };
    if stderr.dropped() > 0 {
        tracing::warn!(
            dropped = stderr.dropped(),
            "log lines dropped: stderr did not take them"
        );
    }
    stderr.finish(Duration::from_secs(1));
    code
}

/// The most log lines waiting for stderr; past it, lines are dropped and counted.
const LOG_QUEUE: usize = 4096;

/// Listening sockets: from the service manager (systemd socket activation, `LISTEN_FDS`), or
/// bound from `--listen`/`--port`.
fn listeners(args: &Args) -> Result<Vec<UdpSocket>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    for i in 0..fds.len() {
        match fds.take_udp_socket(i) {
            Ok(Some(socket)) => sockets.push(socket),
            Ok(None) => {}
            Err(e) => return Err(format!("socket {i} from the service manager: {e}")),
        }
    }
    if !sockets.is_empty() {
        tracing::info!(
            count = sockets.len(),
            "using sockets from the service manager"
        );
        return Ok(sockets);
    }
    // Sized before privileges are dropped (SO_RCVBUFFORCE needs them).
    let buffer = tftp_server::server::listener_buffer(&config(args)?);
    listen_addrs(args)?
        .into_iter()
        .map(|addr| {
            tftp_server::server::bind_listener_sized(addr, buffer).map_err(|e| e.to_string())
        })
        .collect()
}

/// Become `name` for good: supplementary groups, group, then user.
fn drop_privileges(name: &str) -> Result<(), String> {
    use nix::unistd::{User, setgid, setgroups, setuid};
    let user = User::from_name(name)
        .map_err(|e| format!("--user {name}: {e}"))?
        .ok_or_else(|| format!("--user {name}: no such user"))?;
    setgroups(&[user.gid]).map_err(|e| format!("--user {name}: setgroups: {e}"))?;
    setgid(user.gid).map_err(|e| format!("--user {name}: setgid: {e}"))?;
    setuid(user.uid).map_err(|e| format!("--user {name}: setuid: {e}"))?;
    tracing::info!(user = name, uid = user.uid.as_raw(), "dropped privileges");
    Ok(())
}

fn run(args: Args, cli: Vec<OsString>) -> Result<(), String> {
    // As root, before dropping privileges: raise the hard descriptor limit too (the server
    // caps its concurrent sessions to what the limit allows).
    tftp_server::descriptors::raise_fd_limit(true);
    let sockets = listeners(&args)?;
    // Before any thread exists: setuid must apply to the whole process.
    if let Some(user) = &args.user {
        drop_privileges(user)?;
    }
    let threads = threads(&args);
    // One thread: a current-thread runtime, no hand-offs between workers.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(serve(args, cli, sockets))
}

/// `--threads`, with 0 as one per CPU.
fn threads(args: &Args) -> usize {
    match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// A server built by [`build`], on the engine `--engine` chose.
enum Built<H: tftp_tokio::Handler> {
    Tokio(Server<H>),
    Epoll(tftp_blocking::Server<OnLoops<H>>),
}

/// A server serving: how to stop it (gracefully), and its end.
struct Running {
    stop: Box<dyn FnOnce() + Send>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<H: tftp_tokio::Handler> Built<H> {
    fn local_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Built::Tokio(server) => server.local_addrs(),
            Built::Epoll(server) => server.local_addrs(),
        }
    }

    /// Serve: tokio's on a task, the event loops on threads of their own, all named
    /// `tftp-loop` (as tftp-blocking names the loops it starts besides its caller's), so that
    /// `top -H`, `ps -L` and profilers show the data plane as that, not as a thread of
    /// tokio's blocking pool.
    fn start(self) -> Running {
        match self {
            Built::Tokio(server) => {
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let done = tokio::spawn(server.serve_until(async {
                    let _ = stopped.await;
                }));
                let stop = Box::new(move || {
                    let _ = stop.send(());
                });
                Running { stop, done }
            }
            Built::Epoll(server) => {
                let handle = server.shutdown_handle();
                let (served, ended) = tokio::sync::oneshot::channel();
                let spawned =
                    std::thread::Builder::new()
                        .name("tftp-loop".into())
                        .spawn(move || {
                            let _ = served.send(server.serve());
                        });
                let done = tokio::spawn(async move {
                    spawned?;
                    // Dropped unsent: the loop panicked.
                    (ended.await)
                        .unwrap_or_else(|_| Err(std::io::Error::other("event loop panicked")))
                });
                let stop = Box::new(move || handle.shutdown());
                Running { stop, done }
            }
        }
    }
}

enum Signal {
    Stop,
    Reload,
}

async fn next_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return Signal::Stop;
    };
    tokio::select! {
        _ = term.recv() => Signal::Stop,
        _ = tokio::signal::ctrl_c() => Signal::Stop,
        _ = hup.recv() => Signal::Reload,
    }
}

async fn serve(mut args: Args, cli: Vec<OsString>, sockets: Vec<UdpSocket>) -> Result<(), String> {
    if let Some(addr) = args.metrics {
        // The exporter crate only records; the endpoint is ours, bounded against hostile
        // clients (see `tftpd::metrics_http`).
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("tftp_session_duration_seconds".into()),
                &[
                    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            )
            .and_then(|b| b.install_recorder())
            .map_err(|e| format!("--metrics {addr}: {e}"))?;
        tftp_server::stats::describe_metrics();
        // The recorder's upkeep (draining histograms), which its own exporter ran every 5 s.
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        tokio::spawn(tftpd::metrics_http::serve(
            listener,
            tftpd::metrics_http::Limits::default(),
            move || handle.render(),
        ));
        tracing::info!(%addr, "serving Prometheus metrics");
    }
    let mut draining = Vec::new();
    loop {
        let clones = sockets
            .iter()
            .map(UdpSocket::try_clone)
            .collect::<Result<Vec<_>, _>>();
        let running = build(&args, clones.map_err(|e| e.to_string())?)?.start();
        notify_ready();
        // Once the threads it started have settled, what this start (or reload) ran and
        // serving does not leaves tftpd's memory (see `start_up_pages`).
        tokio::spawn(async {
            if std::env::var_os(start_up_pages::KEEP).is_some() {
                return;
            }
            tokio::time::sleep(start_up_pages::SETTLE).await;
            match start_up_pages::release() {
                Ok(bytes) => tracing::debug!(
                    kib = bytes / 1024,
                    "start-up's pages of the program released"
                ),
                Err(e) => tracing::debug!(error = %e, "start-up's pages of the program kept"),
            }
        });
        loop {
            match next_signal().await {
                Signal::Stop => {
                    tracing::info!("draining");
                    notify_stopping();
                    (running.stop)();
                    let _ = running.done.await;
                    for old in draining {
                        let _ = old.await;
                    }
                    return Ok(());
                }
                Signal::Reload => {
                    notify_reloading();
                    let reloaded = load_args(&cli).map_err(|e| e.to_string());
                    match reloaded.and_then(|new| build(&new, Vec::new()).map(|_| new)) {
                        Ok(new) => {
                            tracing::info!(config = ?new.config, "reloading; transfers in flight finish on the old configuration");
                            if new.listen != args.listen
                                || new.port != args.port
                                || new.metrics != args.metrics
                            {
                                tracing::warn!(
                                    "--listen, --port and --metrics changes take effect at the next restart"
                                );
                            }
                            args = new;
                            (running.stop)();
                            draining.push(running.done);
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "reload failed; keeping the running configuration");
                            notify_ready();
                        }
                    }
                }
            }
        }
    }
}

/// The `--http-origin` handler, with its timeouts and redirect policy, if one is given.
#[cfg(feature = "http-origin")]
fn origin(args: &Args) -> Result<Option<HttpOrigin>, String> {
    let timeouts = OriginTimeouts {
        connect: secs(
            args.origin_connect_timeout,
            "--origin-connect-timeout",
            false,
        )?,
        read: secs(args.origin_read_timeout, "--origin-read-timeout", false)?,
    };
    if args.origin_cache.is_some() && args.http_origin.is_none() {
        return Err("--origin-cache needs --http-origin".into());
    }
    args.http_origin
        .as_ref()
        .map(|url| {
            HttpOrigin::with_redirects(url, timeouts, redirects(args.origin_redirects))
                .map_err(|e| format!("--http-origin {e}"))?
                .with_cache(&tftpd::CacheOptions {
                    dir: args.origin_cache.clone(),
                    max_bytes: Some(args.origin_cache_size),
                    stale_if_error: args.origin_stale_if_error,
                    default_max_age: args.origin_default_max_age,
                })
        })
        .transpose()
}

/// Built without the `http-origin` feature: never an origin (any `Lookup` type will do).
#[cfg(not(feature = "http-origin"))]
fn origin(_args: &Args) -> Result<Option<DirHandler>, String> {
    Ok(None)
}

/// `--http-origin`, when this build has it and it is given.
fn origin_url(args: &Args) -> Option<&str> {
    #[cfg(feature = "http-origin")]
    return args.http_origin.as_deref();
    #[cfg(not(feature = "http-origin"))]
    {
        let _ = args;
        None
    }
}

/// systemd `Type=notify` readiness (`sd_notify(3)`): each is a no-op without `NOTIFY_SOCKET`.
/// READY=1 once the server answers on its sockets (again after a reload), RELOADING=1 when
/// SIGHUP arrives, STOPPING=1 when draining starts.
fn notify_ready() {
    notify(&[sd_notify::NotifyState::Ready]);
}

fn notify_reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => notify(&[sd_notify::NotifyState::Reloading]),
    }
}

fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The server for `args` on `sockets` (with no sockets: only check that `args` are usable).
fn build(args: &Args, sockets: Vec<UdpSocket>) -> Result<Built<impl tftp_tokio::Handler>, String> {
    if !sockets.is_empty() {
        apply_umask(args);
    }
    let root_options = RootOptions {
        case_insensitive: args.case_insensitive,
        allow_write: args.allow_write,
        allow_overwrite: args.allow_overwrite,
        max_upload_size: args.max_upload_size,
        follow_hardlinks: args.follow_hardlinks,
    };
    if args.root.is_none() && args.templates.is_none() && origin_url(args).is_none() {
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
    let origin = origin(args)?;
    // Uploads land in the root, but may not hide a file that a read finds elsewhere in the
    // chain (a template, the origin) unless overwriting is allowed.
    let handler = NoShadow::new(Fallback::new(templates, Fallback::new(dir, origin)))
        .active(args.allow_write && !args.allow_overwrite && args.root.is_some());
    let (handler, remaps) = hpa_handler(args, handler)?;
    let mut options = ServerOptions::new().config(config(args)?).on_stats(|s| {
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
    if let Some(path) = &args.session_log {
        // Opened at every (re)load, so SIGHUP also reopens a rotated log.
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
        // On a thread of its own: a log that stops taking lines (a pipe whose reader
        // stalled) costs lines, counted, never the transfers (the callback runs on the loop).
        let log = SessionLog::new(out)
            .with_remaps(remaps)
            .in_background()
            .map_err(|e| format!("--session-log: cannot start its writer thread: {e}"))?;
        options = options.on_session(move |report| log.record(report));
    }
    let validating = sockets.is_empty();
    if validating {
        // Validation only: a throwaway listener.
        options = options.listen(SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    for socket in sockets {
        options = options.socket(socket);
    }
    let epoll = match args.engine {
        EngineArg::Epoll => true,
        EngineArg::Tokio => false,
        EngineArg::Auto => origin_url(args).is_none(),
    };
    let server = if epoll {
        // Without an origin every read is local (files, templates): answered on the loops.
        let handler = OnLoops::new(handler, tokio::runtime::Handle::current())
            .reads_on_loops(origin_url(args).is_none());
        let server = tftp_blocking::Server::bind(handler, options).map_err(|e| e.to_string())?;
        Built::Epoll(server.workers(threads(args)))
    } else {
        Built::Tokio(Server::bind(handler, options).map_err(|e| e.to_string())?)
    };
    if !validating {
        // One line per address and source, for the operator: what is served where.
        for addr in server.local_addrs().map_err(|e| e.to_string())? {
            if let Some(t) = &args.templates {
                tracing::info!("serving templates {} on {addr}", t.display());
            }
            if let Some(root) = &args.root {
                let write = if args.allow_write {
                    " (uploads allowed)"
                } else {
                    ""
                };
                tracing::info!("serving {} on {addr}{write}", root.display());
            }
            if let Some(origin) = origin_url(args) {
                tracing::info!("serving HTTP origin {origin} on {addr}");
            }
        }
    }
    Ok(server)
}

// ---- tftpd-hpa compatibility ----

/// The command line (over the `--config` file), with in.tftpd's spellings turned into ours.
fn load_args(cli: &[OsString]) -> Result<Args, CliError> {
    let args = parse_args(cli)?;
    hpa_compat(args).map_err(|message| {
        use clap::CommandFactory;
        CliError::Usage(Args::command().error(clap::error::ErrorKind::ArgumentConflict, message))
    })
}

/// in.tftpd's short options as the flags they stand for.
fn hpa_compat(mut args: Args) -> Result<Args, String> {
    if let Some(path) = &args.hpa_pidfile {
        return Err(format!(
            "-P {}: tftpd writes no pid file; it stays in the foreground for its service manager \
             (systemd knows its pid)",
            path.display()
        ));
    }
    match (args.hpa_secure, args.hpa_directories.as_slice()) {
        (_, []) => {}
        (true, [dir]) => args.root = Some(dir.clone()),
        (true, _) => return Err("-s takes exactly one DIRECTORY (the root)".into()),
        (false, _) => {
            return Err(
                "a DIRECTORY argument needs -s: tftpd serves one root, as in.tftpd -s \
                        DIRECTORY does (or give --root DIRECTORY); in.tftpd without -s serves \
                        full paths under several directories, which tftpd does not"
                    .into(),
            );
        }
    }
    if args.hpa_create {
        args.allow_write = true;
    }
    if let Some(user) = args.hpa_user.take() {
        args.user = Some(user);
    }
    if let Some(blksize) = args.hpa_blocksize {
        args.max_blksize = blksize;
    }
    if let Some(range) = args.hpa_port_range.take() {
        args.port_range = Some(range);
    }
    if let Some(usecs) = args.hpa_retransmit {
        // in.tftpd -T is in microseconds; --timeout in seconds.
        args.timeout = usecs as f64 / 1_000_000.0;
    }
    let any = if args.hpa_ipv4 { "0.0.0.0" } else { "[::]" };
    for address in std::mem::take(&mut args.hpa_address) {
        // in.tftpd -a [ADDR][:PORT]: ":PORT" is every address.
        args.listen.push(match address.strip_prefix(':') {
            Some(port) if !port.contains(':') => format!("{any}:{port}"),
            _ => address,
        });
    }
    if args.hpa_ipv4 && args.hpa_ipv6 {
        return Err("-4 and -6 exclude each other".into());
    }
    if args.listen.is_empty() && args.hpa_ipv4 {
        args.listen.push("0.0.0.0".into());
    }
    if args.hpa_ipv6 {
        // [::] also receives IPv4 (as IPv4-mapped addresses): refuse those clients.
        args.deny.push(ipnet::IpNet::V4(ipnet::Ipv4Net::default()));
    }
    Ok(args)
}

/// Set the process umask (uploads are created 0644 minus it).
fn apply_umask(args: &Args) {
    if let Some(mask) = args.umask {
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(mask));
    }
}

/// `--refuse` (in.tftpd -r): options never acknowledged.
fn refuse_options(names: &[String], limits: &mut tftp_tokio::OptionLimits) -> Result<(), String> {
    for name in names {
        match name.as_str() {
            "blksize" => limits.blksize = false,
            "windowsize" => limits.windowsize = false,
            "tsize" => limits.tsize = false,
            // Adaptive: `timeout` is left out of the OACK (even with --honour-timeout).
            "timeout" => limits.timeout = TimeoutPolicy::Adaptive,
            "utimeout" | "rollover" | "blksize2" => {
                tracing::warn!(option = %name, "--refuse: tftpd never acknowledges this option anyway")
            }
            _ => return Err(format!("--refuse {name}: not an option")),
        }
    }
    Ok(())
}

/// The handler behind `--allow`/`--deny` (outermost: a refused client's request goes no
/// further) and `--map-file`; and the notes of remapped names for the session log.
fn hpa_handler<H: tftp_tokio::Handler>(
    args: &Args,
    inner: H,
) -> Result<(tftpd::Access<tftpd::Remap<H>>, tftpd::RemapNotes), String> {
    let rules = match &args.map_file {
        Some(path) => {
            let rules = tftpd::RemapRules::load(path).map_err(|e| format!("--map-file {e}"))?;
            tracing::debug!(file = %path.display(), rules = rules.len(), "remap rules loaded");
            rules
        }
        None => tftpd::RemapRules::default(),
    };
    let notes = tftpd::RemapNotes::default();
    let mut remap = tftpd::Remap::new(rules, inner);
    if args.session_log.is_some() {
        remap = remap.with_notes(notes.clone());
    }
    let filter = tftpd::ClientFilter::new(args.allow.clone(), args.deny.clone());
    Ok((tftpd::Access::new(filter, remap), notes))
}

/// The five functions of the C math library that tftpd's dependencies call (the Prometheus
/// recorder's summaries, tokio's multi-threaded scheduler), defined here from the `libm`
/// crate (Rust's port of musl's, within 1 ulp) so that tftpd does not load glibc's libm.so:
/// with no symbol left to take from it, the linker (`--as-needed`) drops it, and the loader
/// no longer maps it and runs its IFUNC resolvers at every start, which left 166 kB of it
/// resident in each tftpd (`benches/e2e`, memory at rest and at 1,000 clients). Where any
/// other function of libm comes in, libm.so is loaded again as before: `tests/libm.rs`
/// says which.
#[allow(unsafe_code)]
mod libm_functions {
    /// `e^x`.
    #[unsafe(no_mangle)]
    extern "C" fn exp(x: f64) -> f64 {
        libm::exp(x)
    }

    /// The natural logarithm.
    #[unsafe(no_mangle)]
    extern "C" fn log(x: f64) -> f64 {
        libm::log(x)
    }

    /// `ln(1 + x)`.
    #[unsafe(no_mangle)]
    extern "C" fn log1p(x: f64) -> f64 {
        libm::log1p(x)
    }

    /// The base-2 logarithm.
    #[unsafe(no_mangle)]
    extern "C" fn log2(x: f64) -> f64 {
        libm::log2(x)
    }

    /// `x^y`.
    #[unsafe(no_mangle)]
    extern "C" fn pow(x: f64, y: f64) -> f64 {
        libm::pow(x, y)
    }
}

/// One malloc arena for all of tftpd's threads.
///
/// glibc's malloc gives threads arenas of their own (up to 8 a CPU), and each keeps what it
/// once held: tftpd's threads (the event loop, the I/O pool's, the log writers) left ~0.1 MB
/// of its memory in theirs at the peak of 1,000 transfers
/// (`benches/e2e/results/2026-12-07-start-up-pages.txt`). Its allocations are per request and per transfer, not
/// per packet, most of them on the event loop: one arena is enough for them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod malloc_arenas {
    /// Before any thread starts.
    pub(crate) fn one() {
        // SAFETY: mallopt(3) sets one of the allocator's parameters, here the most arenas it
        // makes (M_ARENA_MAX); it takes no pointer, and the allocator applies it to arenas
        // it has yet to make.
        unsafe { nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1) };
    }
}

/// Start-up's share of tftpd's memory, given back once it serves.
///
/// A program's code and read-only data are mapped from its file, and every page a thread
/// touches stays in the process's page tables for its life, counted in its RSS and PSS: the
/// kernel maps them 64 KiB at a time around each page asked for. Start-up runs and reads
/// much that serving never does (the command line's parser, the configuration, the
/// runtime's construction, the handlers' set-up): ~0.55 MB of code and read-only data that a
/// serving tftpd would otherwise carry to the end, at rest and at the peak of 1,000 clients
/// (`benches/e2e/results/2026-12-07-start-up-pages.txt`). [`release`] drops the program's own read-only pages from the page tables;
/// they stay in the page cache, and what serving runs maps back in at its first use (a
/// minor fault each 64 KiB: tftpd's layout keeps what serves together, `warm-text.ld`).
/// With [`KEEP`] in its environment, tftpd keeps them (to measure what this saves).
#[allow(unsafe_code)]
mod start_up_pages {
    use std::io;
    use std::ops::Range;
    use std::time::Duration;

    /// How long after a (re)start [`release`] runs: the event loops and their threads are up
    /// and waiting by then.
    pub(crate) const SETTLE: Duration = Duration::from_secs(1);

    /// The environment variable that keeps the pages (any value).
    pub(crate) const KEEP: &str = "TFTPD_KEEP_START_UP_PAGES";

    /// Drops the pages of this program's own read-only file mappings from its page tables;
    /// returns the bytes of the mappings released.
    pub(crate) fn release() -> io::Result<usize> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let exe = exe.to_str().ok_or_else(|| io::Error::other("not UTF-8"))?;
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut released = 0;
        for range in untouched(&smaps, exe) {
            let len = range.end - range.start;
            // SAFETY: `range` is a whole private mapping of the program's file, mapped
            // without write permission and holding no page of its own (`untouched`): every
            // page in it is the file's page from the page cache, never written. With
            // MADV_DONTNEED the kernel unmaps them; the next access to any of them maps the
            // same page of the file again (a private file mapping's pages come back from
            // the file, RSS only). No byte a reference points at changes, no other mapping
            // is touched, and nothing in tftpd writes to or re-protects its own code or
            // read-only data. (A file changed in place under a running program changes the
            // pages it has not mapped yet whether or not this runs: install by rename.)
            unsafe {
                rustix::mm::madvise(
                    range.start as *mut std::ffi::c_void,
                    len,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            }?;
            released += len;
        }
        Ok(released)
    }

    /// The mappings in `smaps` (`/proc/self/smaps`) of the file `exe` that are readable, not
    /// writable, private, and hold no anonymous or swapped page (no page copied on a write:
    /// the relocated read-only data after `mprotect`, RELRO, holds them, and is left alone).
    pub(crate) fn untouched(smaps: &str, exe: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        // The mapping being read, while it may qualify; `clean` until a field says otherwise.
        let mut current: Option<(Range<usize>, bool)> = None;
        let mut finish = |current: &mut Option<(Range<usize>, bool)>| {
            if let Some((range, true)) = current.take() {
                found.push(range);
            }
        };
        for line in smaps.lines() {
            if let Some(range) = header(line, exe) {
                finish(&mut current);
                current = range.map(|r| (r, true));
                continue;
            }
            if let Some((_, clean)) = &mut current {
                let mut fields = line.split_whitespace();
                if let (Some("Anonymous:" | "Swap:"), Some(kb)) = (fields.next(), fields.next()) {
                    *clean &= kb == "0";
                }
            }
        }
        finish(&mut current);
        found
    }

    /// For a mapping's first line (`start-end perms offset dev inode path`): `Some` with the
    /// mapping's range if it is a read-only private mapping of `exe`, `Some(None)` for any
    /// other mapping; `None` for a field line.
    fn header(line: &str, exe: &str) -> Option<Option<Range<usize>>> {
        let mut fields = line.splitn(6, ' ');
        let range = fields.next()?;
        let (start, end) = range.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let perms = fields.next()?.as_bytes();
        let path = fields.nth(3).map_or("", str::trim);
        let read_only =
            perms.len() == 4 && perms[0] == b'r' && perms[1] == b'-' && perms[3] == b'p';
        Some((read_only && path == exe && start < end).then_some(start..end))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        const EXE: &str = "/usr/sbin/tftpd";

        fn mapping(range: &str, perms: &str, path: &str, anonymous: u64, swap: u64) -> String {
            format!(
                "{range} {perms} 00000000 fd:01 1234                       {path}\n\
                 Size:                132 kB\nRss:                  64 kB\n\
                 Anonymous:      {anonymous:>8} kB\nSwap:           {swap:>8} kB\n\
                 VmFlags: rd mr mw me\n"
            )
        }

        #[test]
        fn only_the_programs_own_clean_read_only_mappings() {
            let smaps = [
                mapping("1000-3000", "r--p", EXE, 0, 0),
                mapping("3000-8000", "r-xp", EXE, 0, 0),
                // RELRO: read-only now, written by the loader before.
                mapping("8000-9000", "r--p", EXE, 8, 0),
                // The same, swapped out.
                mapping("9000-a000", "r--p", EXE, 0, 4),
                mapping("a000-b000", "rw-p", EXE, 0, 0),
                mapping(
                    "b000-c000",
                    "r-xp",
                    "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    0,
                    0,
                ),
                mapping("c000-d000", "r-xs", EXE, 0, 0),
                mapping("d000-e000", "r--p", "/usr/sbin/tftpd.old", 0, 0),
                mapping("e000-f000", "rw-p", "", 0, 0),
                mapping("f000-10000", "r--p", EXE, 0, 0),
            ]
            .concat();
            assert_eq!(
                untouched(&smaps, EXE),
                [0x1000..0x3000, 0x3000..0x8000, 0xf000..0x10000]
            );
        }

        #[test]
        fn a_path_with_spaces_and_the_deleted_mark() {
            let exe = "/opt/my tftpd/tftpd (deleted)";
            let smaps = [
                mapping("1000-2000", "r-xp", exe, 0, 0),
                mapping("2000-3000", "r-xp", "/opt/my tftpd/tftpd", 0, 0),
            ]
            .concat();
            assert_eq!(untouched(&smaps, exe), vec![(0x1000..0x2000)]);
            assert!(untouched("", EXE).is_empty());
            assert!(untouched("garbage\nAnonymous: 0 kB\n", EXE).is_empty());
        }

        #[test]
        fn releasing_keeps_the_program_running() {
            // This test binary's own pages: released, then run and read again.
            let before = std::hint::black_box(path_of_this());
            let released = release().unwrap();
            assert!(released > 0, "nothing released");
            assert_eq!(std::hint::black_box(path_of_this()), before);
        }

        fn path_of_this() -> String {
            format!("{}:{}", file!(), line!())
        }
    }
}
