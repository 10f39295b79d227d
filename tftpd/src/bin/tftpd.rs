//! `tftpd`: serve a directory over TFTP.
//!
//! Start-up order matters for privileges: listening sockets are taken from the service
//! manager (systemd socket activation) or bound first, then `--user` drops root, then the
//! runtime starts and everything else (the root directory, templates, logs) is opened as the
//! unprivileged user. SIGHUP re-reads `--config` and swaps in a new server on the same
//! sockets while transfers in flight finish on the old one; SIGTERM and SIGINT drain.

// No unsafe code; the one unsafe attribute is `libm`'s `no_mangle`, below.
#![deny(unsafe_code)]

use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
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

/// Serve files over TFTP (RFC 1350 with options: blksize, timeout, tsize, windowsize).
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Serve files over TFTP (RFC 1350 with options: blksize, timeout, tsize, windowsize).",
    args_override_self = true,
    after_help = "Boolean flags take an optional value: --allow-write, --allow-write=false \
(which overrides `allow-write = true` in --config).\n\nExit status: 0 after a clean shutdown; \
64 for a command-line error; 78 for an error in the --config file; 1 when serving fails \
(binding, privileges, the root)."
)]
pub(crate) struct Args {
    /// Read settings from a TOML file whose keys are these flags' long names
    /// (`root = "/srv/tftp"`, `max-blksize = 1468`, `allow-write = true`,
    /// `listen = ["[::]:69"]`). Flags on the command line win. SIGHUP re-reads it.
    #[arg(help_heading = "Operation", long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// After binding the listening sockets, switch to this user (and its group), so that
    /// port 69 can be bound as root without serving as root.
    #[arg(help_heading = "Operation", long, value_name = "NAME")]
    user: Option<String>,
    /// Directory to serve; requests cannot reach outside it.
    #[arg(help_heading = "Files", long)]
    root: Option<PathBuf>,
    /// Directory of templates rendered per client ({{ip}}, {{ip_hex}}, {{path}}, ...),
    /// looked up before --root.
    #[arg(help_heading = "Files", long, value_name = "DIR")]
    templates: Option<PathBuf>,
    #[cfg(feature = "http-origin")]
    /// Stream files not found locally from this HTTP(S) origin (URL/path), after --root.
    #[arg(help_heading = "HTTP origin", long, value_name = "URL")]
    http_origin: Option<String>,
    #[cfg(feature = "http-origin")]
    /// Which redirects of the origin to follow: `same-origin` (same scheme, host and port, at
    /// most 5 hops) or `none`. Following any would let an open redirect on the origin send
    /// tftpd anywhere.
    #[arg(help_heading = "HTTP origin", long, value_enum, default_value_t = Redirects::SameOrigin, value_name = "POLICY")]
    origin_redirects: Redirects,
    #[cfg(feature = "http-origin")]
    /// Keep the origin's files in this directory (one tftpd process per directory), bounded
    /// by --origin-cache-size, honouring Cache-Control and revalidating with conditional GETs.
    /// With or without it, concurrent reads of one file share one fetch.
    #[arg(help_heading = "HTTP origin", long, value_name = "DIR")]
    origin_cache: Option<PathBuf>,
    #[cfg(feature = "http-origin")]
    /// Bytes the --origin-cache entries may take; least recently used ones are evicted.
    #[arg(help_heading = "HTTP origin", long, default_value_t = tftpd::DEFAULT_CACHE_BYTES, value_name = "BYTES")]
    origin_cache_size: u64,
    #[cfg(feature = "http-origin")]
    /// Serve a stale --origin-cache entry when the origin is unreachable or fails.
    #[arg(help_heading = "HTTP origin", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    origin_stale_if_error: bool,
    #[cfg(feature = "http-origin")]
    /// Seconds an origin response without Cache-Control max-age or Expires counts as fresh
    /// (0: revalidated at every read).
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 0,
        value_name = "SECS"
    )]
    origin_default_max_age: u64,
    #[cfg(feature = "http-origin")]
    /// Seconds to connect to the origin.
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 5.0,
        value_name = "SECS"
    )]
    origin_connect_timeout: f64,
    #[cfg(feature = "http-origin")]
    /// Seconds to wait for the origin's headers, and between two chunks of its body.
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    origin_read_timeout: f64,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9169), at `GET
    /// /metrics`; at most 32 connections, each with 5 s to send its request.
    #[arg(help_heading = "Logging and monitoring", long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Append one JSON line per finished session to this file (`-`: standard output).
    #[arg(help_heading = "Logging and monitoring", long, value_name = "PATH")]
    session_log: Option<PathBuf>,
    /// Address to listen on (repeatable). Default: [::]:PORT, which also accepts IPv4.
    #[arg(help_heading = "Network", long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Port for --listen addresses given without one, and for the default address.
    #[arg(help_heading = "Network", long, default_value_t = 69)]
    port: u16,
    /// Ports for transfer sockets, e.g. 50000:50999 (default: any ephemeral port).
    #[arg(help_heading = "Network", long, value_name = "LOW:HIGH")]
    port_range: Option<String>,
    /// Serve every transfer from the listening port (for NAT, containers, Kubernetes; also the least CPU per packet with many clients).
    #[arg(help_heading = "Network", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    single_port: bool,
    /// Largest block size granted (8..=65464, RFC 2348).
    #[arg(help_heading = "Options and timers", long, default_value_t = 65464, value_parser = clap::value_parser!(u16).range(8..=65464))]
    max_blksize: u16,
    /// Fit granted block sizes to an MTU, so that DATA is not fragmented: `auto` (the MTU of
    /// the interface each request arrived on: 1468 for IPv4 and 1448 for IPv6 on a 1500
    /// link; loopback's 65536 allows 65464), `off` (only --max-blksize), or a number of bytes
    /// (that MTU everywhere, e.g. 1400 for a tunnel). The OACK tells the client.
    #[arg(
        help_heading = "Network",
        long,
        default_value = "auto",
        value_name = "auto|off|BYTES"
    )]
    tftp_mtu: String,
    /// Largest window granted, in blocks (1..=65535, RFC 7440).
    #[arg(help_heading = "Options and timers", long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    max_windowsize: u16,
    /// Largest window in bytes (bounds each session's memory).
    #[arg(help_heading = "Options and timers", long, default_value_t = 256 * 1024)]
    max_window_bytes: usize,
    /// Initial retransmission timeout in seconds (adapts to the round trip afterwards).
    #[arg(help_heading = "Options and timers", long, default_value_t = 1.0)]
    timeout: f64,
    /// Acknowledge a client's `timeout` option and retransmit at that fixed interval, as
    /// tftpd-hpa does (default: keep the adaptive timer and leave it out of the OACK).
    #[arg(help_heading = "Options and timers", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    honour_timeout: bool,
    /// Retransmissions before a transfer may be abandoned (see --give-up-after).
    #[arg(help_heading = "Options and timers", long, default_value_t = 6)]
    retries: u32,
    /// Seconds without progress, on top of --retries, before a transfer is abandoned
    /// (0: the retries alone).
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 20.0,
        value_name = "SECS"
    )]
    give_up_after: f64,
    /// Least margin of the adaptive retransmission timeout over the measured round trip, in
    /// seconds (RTO = round trip + max(4 × its variation, this)): on a LAN a loss is resent
    /// about this soon, and a client that stalls longer than its usual round trip plus this
    /// is sent the block twice (1: tftpd-hpa's pace).
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 0.05,
        value_name = "SECS"
    )]
    min_timeout: f64,
    /// Ceiling of the retransmission timeout after backoff, in seconds.
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 8.0,
        value_name = "SECS"
    )]
    max_timeout: f64,
    /// Seconds the receiver of an upload's last block keeps answering it again.
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 1.0,
        value_name = "SECS"
    )]
    dally: f64,
    /// Concurrent transfers; more get "Server busy".
    #[arg(help_heading = "Limits", long, default_value_t = 10_000)]
    max_sessions: usize,
    /// Concurrent transfers per client address.
    #[arg(help_heading = "Limits", long, default_value_t = 64)]
    max_sessions_per_client: usize,
    /// New transfers per second from one client address (0: no limit); requests over the
    /// rate are dropped silently.
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 20.0,
        value_name = "N"
    )]
    client_rate: f64,
    /// Burst allowed above --client-rate.
    #[arg(help_heading = "Limits", long, default_value_t = 40, value_name = "N")]
    client_burst: u32,
    /// Clients are counted by address; IPv6 clients by this prefix length of theirs (a host
    /// usually holds a whole /64 and may send from any address in it; 128: by address).
    #[arg(help_heading = "Limits", long, default_value_t = 64, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=128))]
    ipv6_client_prefix: u8,
    /// ERROR answers per second from the listening ports, all clients together (busy,
    /// malformed requests); beyond, requests are dropped unanswered, so the listener cannot
    /// be used to reflect a flood at a spoofed address.
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 1000.0,
        value_name = "N"
    )]
    max_replies: f64,
    /// Seconds a data source (a file, the HTTP origin) may take to supply one block before
    /// its transfer is aborted with "Data source timed out".
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 20.0,
        value_name = "SECS"
    )]
    source_timeout: f64,
    /// Bytes all transfers' windows may take together (each windowsize × (blksize + 4) once
    /// data flows); a transfer that does not fit gets "Server busy".
    #[arg(help_heading = "Limits", long, default_value_t = 1 << 30, value_name = "BYTES")]
    max_window_memory: usize,
    /// Accept uploads (write requests) into the root. Without --allow-overwrite an upload may
    /// not replace nor hide a file that a read finds (a template, the root's, the origin's;
    /// the origin is asked, and when it cannot answer the upload is refused).
    #[arg(help_heading = "Uploads", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    allow_write: bool,
    /// Let uploads replace existing files (and hide templates' and the origin's).
    #[arg(help_heading = "Uploads", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    allow_overwrite: bool,
    /// Largest upload in bytes.
    #[arg(help_heading = "Uploads", long)]
    max_upload_size: Option<u64>,
    /// Match file names case-insensitively when the exact name does not exist.
    #[arg(help_heading = "Files", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    case_insensitive: bool,
    /// Serve files that have more than one hard link (refused by default: a hard link can
    /// bring a file from outside the root into it).
    #[arg(help_heading = "Files", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    follow_hardlinks: bool,
    /// Seconds between server statistics log lines.
    #[arg(help_heading = "Logging and monitoring", long, default_value_t = 60)]
    stats_interval: u64,
    /// Seconds running transfers get to finish on SIGTERM/SIGINT.
    #[arg(help_heading = "Operation", long, default_value_t = 10)]
    shutdown_grace: u64,
    /// Threads serving transfers (0: one per CPU). One thread drives thousands of transfers;
    /// more help only when one CPU is not enough.
    #[arg(
        help_heading = "Operation",
        long,
        default_value_t = 1,
        value_name = "N"
    )]
    threads: usize,
    /// What runs the transfers: `epoll` (event loops, one `epoll_wait` for every ready
    /// transfer: the least CPU per packet), `tokio` (a task per transfer), or `auto`: epoll,
    /// unless `--http-origin` is given (an origin's streams wait on the network, which tokio's
    /// tasks do without holding a thread). Handlers run on tokio either way; `--threads` is
    /// the number of event loops or of tokio's workers.
    #[arg(help_heading = "Operation", long, value_enum, default_value_t = EngineArg::Auto, value_name = "ENGINE")]
    engine: EngineArg,
    /// More logging (-v: debug, with a line per request; -vv: trace).
    #[arg(help_heading = "Logging and monitoring", short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as `text` (with timestamps), `json` (one object per line) or `journald`
    /// (`<N>` syslog priorities for the systemd journal: `journalctl -p warning` shows the
    /// warnings).
    #[arg(help_heading = "Logging and monitoring", long, value_enum, default_value_t = LogFormatArg::Text, value_name = "FORMAT")]
    log_format: LogFormatArg,
    // tftpd-hpa compatibility: new flags, and in.tftpd's short options (see `hpa_compat`).
    /// Remap requested file names with a rules file in tftpd-hpa's format (`-m`; see
    /// README, "Coming from tftpd-hpa"). SIGHUP re-reads it.
    #[arg(help_heading = "Files", long, short = 'm', value_name = "FILE")]
    map_file: Option<PathBuf>,
    /// Never acknowledge this option (repeatable): blksize, tsize, timeout, windowsize
    /// (utimeout, rollover, blksize2 are never acknowledged anyway).
    #[arg(long, short = 'r', value_name = "OPTION", value_parser = parse_refused, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Options and timers")]
    refuse: Vec<String>,
    /// Umask for uploaded files, in octal (uploads are created 0644 minus the mask: 077
    /// gives 0600). Default: the one tftpd was started with.
    #[arg(long, short = 'U', value_name = "MASK", value_parser = parse_umask, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Uploads")]
    umask: Option<u32>,
    /// Serve only clients in this network (repeatable; CIDR or an address, IPv4 or IPv6).
    /// Others get ERROR 2 "Access violation".
    #[arg(long, value_name = "CIDR", value_parser = tftpd::access::parse_net, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Limits")]
    allow: Vec<ipnet::IpNet>,
    /// Refuse clients in this network (repeatable), even if --allow lets them in.
    #[arg(long, value_name = "CIDR", value_parser = tftpd::access::parse_net, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Limits")]
    deny: Vec<ipnet::IpNet>,
    /// in.tftpd -s: the DIRECTORY argument is the root (--root DIRECTORY).
    #[arg(short = 's', help_heading = "tftpd-hpa compatibility")]
    hpa_secure: bool,
    /// in.tftpd's directory argument (with -s).
    #[arg(value_name = "DIRECTORY", hide = true)]
    hpa_directories: Vec<PathBuf>,
    /// in.tftpd -c: --allow-write.
    #[arg(short = 'c', help_heading = "tftpd-hpa compatibility")]
    hpa_create: bool,
    /// in.tftpd -a [ADDR][:PORT]: --listen.
    #[arg(
        short = 'a',
        value_name = "ADDR",
        help_heading = "tftpd-hpa compatibility"
    )]
    hpa_address: Vec<String>,
    /// in.tftpd -u USER: --user.
    #[arg(
        short = 'u',
        value_name = "USER",
        help_heading = "tftpd-hpa compatibility"
    )]
    hpa_user: Option<String>,
    /// in.tftpd -B BLKSIZE: --max-blksize (512..=65464).
    #[arg(short = 'B', value_name = "BLKSIZE", value_parser = clap::value_parser!(u16).range(512..=65464), help_heading = "tftpd-hpa compatibility")]
    hpa_blocksize: Option<u16>,
    /// in.tftpd -R LOW:HIGH: --port-range.
    #[arg(
        short = 'R',
        value_name = "LOW:HIGH",
        help_heading = "tftpd-hpa compatibility"
    )]
    hpa_port_range: Option<String>,
    /// in.tftpd -T MICROSECONDS: the initial retransmission timeout (--timeout in seconds).
    #[arg(short = 'T', value_name = "USECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "tftpd-hpa compatibility")]
    hpa_retransmit: Option<u64>,
    /// in.tftpd -t SECS: how long an inetd-started server waits for more requests; ignored,
    /// as in.tftpd ignores it when standalone.
    #[arg(
        short = 't',
        value_name = "SECS",
        help_heading = "tftpd-hpa compatibility"
    )]
    hpa_inetd_timeout: Option<u64>,
    /// in.tftpd -l / -L: standalone (foreground); ignored, tftpd always is.
    #[arg(
        short = 'l',
        short_alias = 'L',
        help_heading = "tftpd-hpa compatibility"
    )]
    hpa_listen: bool,
    /// in.tftpd -p: ignored: tftpd makes no checks beyond the system's (no o+r / o+w
    /// requirement), which is what -p asks for.
    #[arg(short = 'p', help_heading = "tftpd-hpa compatibility")]
    hpa_permissive: bool,
    /// in.tftpd -4: IPv4 only (listen on 0.0.0.0 when no --listen is given).
    #[arg(short = '4', help_heading = "tftpd-hpa compatibility")]
    hpa_ipv4: bool,
    /// in.tftpd -6: IPv6 only (listen on [::] when no --listen is given, IPv4 clients refused).
    #[arg(short = '6', help_heading = "tftpd-hpa compatibility")]
    hpa_ipv6: bool,
    /// in.tftpd -P PIDFILE: refused, tftpd writes no pid file (it stays in the foreground
    /// for its service manager).
    #[arg(short = 'P', value_name = "PIDFILE", hide = true)]
    hpa_pidfile: Option<PathBuf>,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineArg {
    Auto,
    Epoll,
    Tokio,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
    Journald,
}

/// `--origin-redirects`.
#[cfg(feature = "http-origin")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Redirects {
    SameOrigin,
    None,
}

#[cfg(feature = "http-origin")]
impl From<Redirects> for OriginRedirects {
    fn from(r: Redirects) -> Self {
        match r {
            Redirects::SameOrigin => OriginRedirects::SameOrigin,
            Redirects::None => OriginRedirects::None,
        }
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
            HttpOrigin::with_redirects(url, timeouts, args.origin_redirects.into())
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
        let handler = OnLoops::new(handler, tokio::runtime::Handle::current());
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

/// `--umask` (in.tftpd -U): octal, at most 0777.
fn parse_umask(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal umask (e.g. 022, 077)"))
}

/// Set the process umask (uploads are created 0644 minus it).
fn apply_umask(args: &Args) {
    if let Some(mask) = args.umask {
        rustix::process::umask(rustix::fs::Mode::from_bits_truncate(mask));
    }
}

/// The options `--refuse` knows (in.tftpd's list).
const REFUSABLE: [&str; 7] = [
    "blksize",
    "tsize",
    "timeout",
    "windowsize",
    "utimeout",
    "rollover",
    "blksize2",
];

/// A `--refuse` value: one of [`REFUSABLE`], any case.
fn parse_refused(s: &str) -> Result<String, String> {
    let name = s.to_ascii_lowercase();
    match REFUSABLE.contains(&name.as_str()) {
        true => Ok(name),
        false => Err(format!("not an option ({})", REFUSABLE.join(", "))),
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
