//! tftpd's command line: its flags (clap's derive), in a crate of its own so that it can be
//! built for size (the workspace's release profile builds this crate, `clap_builder` and
//! `clap_lex` at `opt-level = "z"`). The parser runs once, at start, and then only SIGHUP's
//! re-read of `--config` uses it again; built for speed, its code was a third of what a
//! serving tftpd runs (clap's derive alone: 153 KB, at `z` 34 KB), all of it resident in
//! every tftpd for nothing.
//!
//! The flags are documented in `tftpd --help`, tftpd(8) and the README.

#![forbid(unsafe_code)]
// The flags' doc comments are their `--help` text, which clap shows as written: `[::]:69` and
// `[ADDR][:PORT]` there are addresses, not links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use ipnet::IpNet;

/// The default `--origin-cache-size`: 1 GiB (tftpd's origin cache).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// Serve files over TFTP (RFC 1350 with options: blksize, timeout, tsize, windowsize).
#[derive(Debug, Parser)]
#[command(
    name = "tftpd",
    version,
    about = "Serve files over TFTP (RFC 1350 with options: blksize, timeout, tsize, windowsize).",
    args_override_self = true,
    after_help = "Boolean flags take an optional value: --allow-write, --allow-write=false \
(which overrides `allow-write = true` in --config).\n\nExit status: 0 after a clean shutdown; \
64 for a command-line error; 78 for an error in the --config file; 1 when serving fails \
(binding, privileges, the root)."
)]
pub struct Args {
    /// Read settings from a TOML file whose keys are these flags' long names
    /// (`root = "/srv/tftp"`, `max-blksize = 1468`, `allow-write = true`,
    /// `listen = ["[::]:69"]`). Flags on the command line win. SIGHUP re-reads it.
    #[arg(help_heading = "Operation", long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// After binding the listening sockets, switch to this user (and its group), so that
    /// port 69 can be bound as root without serving as root.
    #[arg(help_heading = "Operation", long, value_name = "NAME")]
    pub user: Option<String>,
    /// Directory to serve; requests cannot reach outside it.
    #[arg(help_heading = "Files", long)]
    pub root: Option<PathBuf>,
    /// Directory of templates rendered per client ({{ip}}, {{ip_hex}}, {{path}}, ...),
    /// looked up before --root.
    #[arg(help_heading = "Files", long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    #[cfg(feature = "http-origin")]
    /// Stream files not found locally from this HTTP(S) origin (URL/path), after --root.
    #[arg(help_heading = "HTTP origin", long, value_name = "URL")]
    pub http_origin: Option<String>,
    #[cfg(feature = "http-origin")]
    /// Which redirects of the origin to follow: `same-origin` (same scheme, host and port, at
    /// most 5 hops) or `none`. Following any would let an open redirect on the origin send
    /// tftpd anywhere.
    #[arg(help_heading = "HTTP origin", long, value_enum, default_value_t = Redirects::SameOrigin, value_name = "POLICY")]
    pub origin_redirects: Redirects,
    #[cfg(feature = "http-origin")]
    /// Keep the origin's files in this directory (one tftpd process per directory), bounded
    /// by --origin-cache-size, honouring Cache-Control and revalidating with conditional GETs.
    /// With or without it, concurrent reads of one file share one fetch.
    #[arg(help_heading = "HTTP origin", long, value_name = "DIR")]
    pub origin_cache: Option<PathBuf>,
    #[cfg(feature = "http-origin")]
    /// Bytes the --origin-cache entries may take; least recently used ones are evicted.
    #[arg(help_heading = "HTTP origin", long, default_value_t = DEFAULT_CACHE_BYTES, value_name = "BYTES")]
    pub origin_cache_size: u64,
    #[cfg(feature = "http-origin")]
    /// Serve a stale --origin-cache entry when the origin is unreachable or fails.
    #[arg(help_heading = "HTTP origin", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub origin_stale_if_error: bool,
    #[cfg(feature = "http-origin")]
    /// Seconds an origin response without Cache-Control max-age or Expires counts as fresh
    /// (0: revalidated at every read).
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 0,
        value_name = "SECS"
    )]
    pub origin_default_max_age: u64,
    #[cfg(feature = "http-origin")]
    /// Seconds to connect to the origin.
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 5.0,
        value_name = "SECS"
    )]
    pub origin_connect_timeout: f64,
    #[cfg(feature = "http-origin")]
    /// Seconds to wait for the origin's headers, and between two chunks of its body.
    #[arg(
        help_heading = "HTTP origin",
        long,
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    pub origin_read_timeout: f64,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 127.0.0.1:9169), at `GET
    /// /metrics`; at most 32 connections, each with 5 s to send its request.
    #[arg(help_heading = "Logging and monitoring", long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Append one JSON line per finished session to this file (`-`: standard output).
    #[arg(help_heading = "Logging and monitoring", long, value_name = "PATH")]
    pub session_log: Option<PathBuf>,
    /// Address to listen on (repeatable). Default: [::]:PORT, which also accepts IPv4.
    #[arg(help_heading = "Network", long = "listen", value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Port for --listen addresses given without one, and for the default address.
    #[arg(help_heading = "Network", long, default_value_t = 69)]
    pub port: u16,
    /// Ports for transfer sockets, e.g. 50000:50999 (default: any ephemeral port).
    #[arg(help_heading = "Network", long, value_name = "LOW:HIGH")]
    pub port_range: Option<String>,
    /// Serve every transfer from the listening port (for NAT, containers, Kubernetes; also the least CPU per packet with many clients).
    #[arg(help_heading = "Network", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub single_port: bool,
    /// Largest block size granted (8..=65464, RFC 2348).
    #[arg(help_heading = "Options and timers", long, default_value_t = 65464, value_parser = clap::value_parser!(u16).range(8..=65464))]
    pub max_blksize: u16,
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
    pub tftp_mtu: String,
    /// Largest window granted, in blocks (1..=65535, RFC 7440).
    #[arg(help_heading = "Options and timers", long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_windowsize: u16,
    /// Largest window in bytes (bounds each session's memory).
    #[arg(help_heading = "Options and timers", long, default_value_t = 256 * 1024)]
    pub max_window_bytes: usize,
    /// Initial retransmission timeout in seconds (adapts to the round trip afterwards).
    #[arg(help_heading = "Options and timers", long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Acknowledge a client's `timeout` option and retransmit at that fixed interval, as
    /// tftpd-hpa does (default: keep the adaptive timer and leave it out of the OACK).
    #[arg(help_heading = "Options and timers", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub honour_timeout: bool,
    /// Retransmissions before a transfer may be abandoned (see --give-up-after).
    #[arg(help_heading = "Options and timers", long, default_value_t = 6)]
    pub retries: u32,
    /// Seconds without progress, on top of --retries, before a transfer is abandoned
    /// (0: the retries alone).
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 20.0,
        value_name = "SECS"
    )]
    pub give_up_after: f64,
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
    pub min_timeout: f64,
    /// Ceiling of the retransmission timeout after backoff, in seconds.
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 8.0,
        value_name = "SECS"
    )]
    pub max_timeout: f64,
    /// Seconds the receiver of an upload's last block keeps answering it again.
    #[arg(
        help_heading = "Options and timers",
        long,
        default_value_t = 1.0,
        value_name = "SECS"
    )]
    pub dally: f64,
    /// Concurrent transfers; more get "Server busy".
    #[arg(help_heading = "Limits", long, default_value_t = 10_000)]
    pub max_sessions: usize,
    /// Concurrent transfers per client address.
    #[arg(help_heading = "Limits", long, default_value_t = 64)]
    pub max_sessions_per_client: usize,
    /// New transfers per second from one client address (0: no limit); requests over the
    /// rate are dropped silently.
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 20.0,
        value_name = "N"
    )]
    pub client_rate: f64,
    /// Burst allowed above --client-rate.
    #[arg(help_heading = "Limits", long, default_value_t = 40, value_name = "N")]
    pub client_burst: u32,
    /// Clients are counted by address; IPv6 clients by this prefix length of theirs (a host
    /// usually holds a whole /64 and may send from any address in it; 128: by address).
    #[arg(help_heading = "Limits", long, default_value_t = 64, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=128))]
    pub ipv6_client_prefix: u8,
    /// ERROR answers per second from the listening ports, all clients together (busy,
    /// malformed requests); beyond, requests are dropped unanswered, so the listener cannot
    /// be used to reflect a flood at a spoofed address.
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 1000.0,
        value_name = "N"
    )]
    pub max_replies: f64,
    /// Seconds a data source (a file, the HTTP origin) may take to supply one block before
    /// its transfer is aborted with "Data source timed out".
    #[arg(
        help_heading = "Limits",
        long,
        default_value_t = 20.0,
        value_name = "SECS"
    )]
    pub source_timeout: f64,
    /// Bytes all transfers' windows may take together (each windowsize × (blksize + 4) once
    /// data flows); a transfer that does not fit gets "Server busy".
    #[arg(help_heading = "Limits", long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_window_memory: usize,
    /// Accept uploads (write requests) into the root. Without --allow-overwrite an upload may
    /// not replace nor hide a file that a read finds (a template, the root's, the origin's;
    /// the origin is asked, and when it cannot answer the upload is refused).
    #[arg(help_heading = "Uploads", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub allow_write: bool,
    /// Let uploads replace existing files (and hide templates' and the origin's).
    #[arg(help_heading = "Uploads", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub allow_overwrite: bool,
    /// Largest upload in bytes.
    #[arg(help_heading = "Uploads", long)]
    pub max_upload_size: Option<u64>,
    /// Match file names case-insensitively when the exact name does not exist.
    #[arg(help_heading = "Files", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub case_insensitive: bool,
    /// Serve files that have more than one hard link (refused by default: a hard link can
    /// bring a file from outside the root into it).
    #[arg(help_heading = "Files", long, num_args = 0..=1, require_equals = true, default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub follow_hardlinks: bool,
    /// Seconds between server statistics log lines.
    #[arg(help_heading = "Logging and monitoring", long, default_value_t = 60)]
    pub stats_interval: u64,
    /// Seconds running transfers get to finish on SIGTERM/SIGINT.
    #[arg(help_heading = "Operation", long, default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Threads serving transfers (0: one per CPU). One thread drives thousands of transfers;
    /// more help only when one CPU is not enough.
    #[arg(
        help_heading = "Operation",
        long,
        default_value_t = 1,
        value_name = "N"
    )]
    pub threads: usize,
    /// What runs the transfers: `epoll` (event loops, one `epoll_wait` for every ready
    /// transfer: the least CPU per packet), `tokio` (a task per transfer), or `auto`: epoll,
    /// unless `--http-origin` is given (an origin's streams wait on the network, which tokio's
    /// tasks do without holding a thread). Handlers run on tokio either way; `--threads` is
    /// the number of event loops or of tokio's workers.
    #[arg(help_heading = "Operation", long, value_enum, default_value_t = EngineArg::Auto, value_name = "ENGINE")]
    pub engine: EngineArg,
    /// More logging (-v: debug, with a line per request; -vv: trace).
    #[arg(help_heading = "Logging and monitoring", short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log lines as `text` (with timestamps), `json` (one object per line) or `journald`
    /// (`<N>` syslog priorities for the systemd journal: `journalctl -p warning` shows the
    /// warnings).
    #[arg(help_heading = "Logging and monitoring", long, value_enum, default_value_t = LogFormatArg::Text, value_name = "FORMAT")]
    pub log_format: LogFormatArg,
    // tftpd-hpa compatibility: new flags, and in.tftpd's short options (see `hpa_compat`).
    /// Remap requested file names with a rules file in tftpd-hpa's format (`-m`; see
    /// README, "Coming from tftpd-hpa"). SIGHUP re-reads it.
    #[arg(help_heading = "Files", long, short = 'm', value_name = "FILE")]
    pub map_file: Option<PathBuf>,
    /// Never acknowledge this option (repeatable): blksize, tsize, timeout, windowsize
    /// (utimeout, rollover, blksize2 are never acknowledged anyway).
    #[arg(long, short = 'r', value_name = "OPTION", value_parser = parse_refused, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Options and timers")]
    pub refuse: Vec<String>,
    /// Umask for uploaded files, in octal (uploads are created 0644 minus the mask: 077
    /// gives 0600). Default: the one tftpd was started with.
    #[arg(long, short = 'U', value_name = "MASK", value_parser = parse_umask, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Uploads")]
    pub umask: Option<u32>,
    /// Serve only clients in this network (repeatable; CIDR or an address, IPv4 or IPv6).
    /// Others get ERROR 2 "Access violation".
    #[arg(long, value_name = "CIDR", value_parser = parse_net, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Limits")]
    pub allow: Vec<ipnet::IpNet>,
    /// Refuse clients in this network (repeatable), even if --allow lets them in.
    #[arg(long, value_name = "CIDR", value_parser = parse_net, help_heading = "tftpd-hpa compatibility")]
    #[arg(help_heading = "Limits")]
    pub deny: Vec<ipnet::IpNet>,
    /// in.tftpd -s: the DIRECTORY argument is the root (--root DIRECTORY).
    #[arg(short = 's', help_heading = "tftpd-hpa compatibility")]
    pub hpa_secure: bool,
    /// in.tftpd's directory argument (with -s).
    #[arg(value_name = "DIRECTORY", hide = true)]
    pub hpa_directories: Vec<PathBuf>,
    /// in.tftpd -c: --allow-write.
    #[arg(short = 'c', help_heading = "tftpd-hpa compatibility")]
    pub hpa_create: bool,
    /// in.tftpd -a [ADDR][:PORT]: --listen.
    #[arg(
        short = 'a',
        value_name = "ADDR",
        help_heading = "tftpd-hpa compatibility"
    )]
    pub hpa_address: Vec<String>,
    /// in.tftpd -u USER: --user.
    #[arg(
        short = 'u',
        value_name = "USER",
        help_heading = "tftpd-hpa compatibility"
    )]
    pub hpa_user: Option<String>,
    /// in.tftpd -B BLKSIZE: --max-blksize (512..=65464).
    #[arg(short = 'B', value_name = "BLKSIZE", value_parser = clap::value_parser!(u16).range(512..=65464), help_heading = "tftpd-hpa compatibility")]
    pub hpa_blocksize: Option<u16>,
    /// in.tftpd -R LOW:HIGH: --port-range.
    #[arg(
        short = 'R',
        value_name = "LOW:HIGH",
        help_heading = "tftpd-hpa compatibility"
    )]
    pub hpa_port_range: Option<String>,
    /// in.tftpd -T MICROSECONDS: the initial retransmission timeout (--timeout in seconds).
    #[arg(short = 'T', value_name = "USECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = "tftpd-hpa compatibility")]
    pub hpa_retransmit: Option<u64>,
    /// in.tftpd -t SECS: how long an inetd-started server waits for more requests; ignored,
    /// as in.tftpd ignores it when standalone.
    #[arg(
        short = 't',
        value_name = "SECS",
        help_heading = "tftpd-hpa compatibility"
    )]
    pub hpa_inetd_timeout: Option<u64>,
    /// in.tftpd -l / -L: standalone (foreground); ignored, tftpd always is.
    #[arg(
        short = 'l',
        short_alias = 'L',
        help_heading = "tftpd-hpa compatibility"
    )]
    pub hpa_listen: bool,
    /// in.tftpd -p: ignored: tftpd makes no checks beyond the system's (no o+r / o+w
    /// requirement), which is what -p asks for.
    #[arg(short = 'p', help_heading = "tftpd-hpa compatibility")]
    pub hpa_permissive: bool,
    /// in.tftpd -4: IPv4 only (listen on 0.0.0.0 when no --listen is given).
    #[arg(short = '4', help_heading = "tftpd-hpa compatibility")]
    pub hpa_ipv4: bool,
    /// in.tftpd -6: IPv6 only (listen on [::] when no --listen is given, IPv4 clients refused).
    #[arg(short = '6', help_heading = "tftpd-hpa compatibility")]
    pub hpa_ipv6: bool,
    /// in.tftpd -P PIDFILE: refused, tftpd writes no pid file (it stays in the foreground
    /// for its service manager).
    #[arg(short = 'P', value_name = "PIDFILE", hide = true)]
    pub hpa_pidfile: Option<PathBuf>,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    Auto,
    Epoll,
    Tokio,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
    Journald,
}

/// `--origin-redirects`.
#[cfg(feature = "http-origin")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Redirects {
    SameOrigin,
    None,
}

/// `--umask` (in.tftpd -U): octal, at most 0777.
pub fn parse_umask(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal umask (e.g. 022, 077)"))
}

/// The options `--refuse` knows (in.tftpd's list).
pub const REFUSABLE: [&str; 7] = [
    "blksize",
    "tsize",
    "timeout",
    "windowsize",
    "utimeout",
    "rollover",
    "blksize2",
];

/// A `--refuse` value: one of [`REFUSABLE`], any case.
pub fn parse_refused(s: &str) -> Result<String, String> {
    let name = s.to_ascii_lowercase();
    match REFUSABLE.contains(&name.as_str()) {
        true => Ok(name),
        false => Err(format!("not an option ({})", REFUSABLE.join(", "))),
    }
}

/// A network as `--allow`/`--deny` take it: `ADDR/LEN` or a bare address (a single host).
/// Host bits are cleared (`10.1.2.3/8` is `10.0.0.0/8`); an IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`) is the IPv4 one.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!(
                "`{s}` is not an address or network (e.g. 192.0.2.0/24, 2001:db8::/32, 10.1.2.3)"
            )
        })?,
    };
    Ok(canonical(net).trunc())
}

pub fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own checks of the definitions (two flags with one short name, a default that
    /// its parser refuses, ...), which otherwise only fail when that flag is used.
    #[test]
    fn the_flags_are_consistent() {
        Args::command().debug_assert();
    }

    /// The flags are tftpd's, whatever this crate is named: `tftpd --help`, `tftpd --version`.
    #[test]
    fn the_command_is_named_tftpd() {
        let command = Args::command();
        assert_eq!(command.get_name(), "tftpd");
        assert_eq!(command.get_version(), Some(env!("CARGO_PKG_VERSION")));
        let args = Args::try_parse_from(["tftpd", "--root", "/srv/tftp", "-U", "022"]);
        let args = args
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.root, Some(PathBuf::from("/srv/tftp")));
        assert_eq!(args.umask, Some(0o22));
    }

    #[test]
    fn refused_options_and_umasks_are_checked() {
        assert_eq!(parse_refused("BLKSIZE").as_deref(), Ok("blksize"));
        assert!(parse_refused("bogus").is_err());
        assert_eq!(parse_umask("077"), Ok(0o77));
        assert!(parse_umask("0778").is_err());
        assert!(parse_umask("1000").is_err());
    }
}
