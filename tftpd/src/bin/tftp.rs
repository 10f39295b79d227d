//! `tftp`: fetch or send one file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tftp_tokio::tftp_proto::Config;
use tftp_tokio::{Client, Mode, OptionValues};
use tokio::io::{AsyncRead, AsyncWrite};

/// A TFTP client (RFC 1350 with blksize, timeout, tsize and windowsize options).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Block size to ask for (8..=65464).
    #[arg(long, short = 'b', global = true)]
    blksize: Option<u16>,
    /// Window size to ask for, in blocks (RFC 7440).
    #[arg(long, short = 'w', global = true)]
    windowsize: Option<u16>,
    /// Ask the server to retransmit every SECS seconds (RFC 2349).
    #[arg(long, global = true)]
    timeout: Option<u8>,
    /// Do not send tsize.
    #[arg(long, global = true)]
    no_tsize: bool,
    /// Netascii (text) mode instead of octet.
    #[arg(long, global = true)]
    netascii: bool,
    /// Retransmissions before giving up.
    #[arg(long, default_value_t = 6, global = true)]
    retries: u32,
    /// No progress bar.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch FILE from HOST into DEST (default: the file's base name; `-` for stdout).
    Get {
        host: String,
        file: String,
        dest: Option<PathBuf>,
    },
    /// Send FILE to HOST as NAME (default: the file's base name; FILE `-` for stdin).
    Put {
        host: String,
        file: PathBuf,
        name: Option<String>,
    },
}

/// `ip`, `ip:port`, `[v6]`, `[v6]:port`, `name` or `name:port` (default port 69).
async fn resolve(host: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 69));
    }
    let target = match host.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host.to_string(),
        _ => format!("{host}:69"),
    };
    tokio::net::lookup_host(&target)
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))
}

fn bar(quiet: bool) -> ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftp: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mut config = Config::default();
    config.retries = args.retries;
    let mode = if args.netascii {
        Mode::Netascii
    } else {
        Mode::Octet
    };
    let mut options = OptionValues {
        blksize: args.blksize,
        windowsize: args.windowsize,
        timeout: args.timeout,
        tsize: None,
    };
    let progress = bar(args.quiet);
    let p = progress.clone();
    let client = Client::with_config(config).on_negotiated(move |o| {
        if let Some(size) = o.tsize {
            p.set_length(size);
        }
    });
    let started = std::time::Instant::now();
    let stats = match args.command {
        Command::Get { host, file, dest } => {
            let server = resolve(&host).await?;
            if !args.no_tsize {
                options.tsize = Some(0);
            }
            let dest = dest
                .unwrap_or_else(|| PathBuf::from(file.rsplit(['/', '\\']).next().unwrap_or(&file)));
            let writer: Box<dyn AsyncWrite + Send + Unpin> = if dest.as_os_str() == "-" {
                Box::new(tokio::io::stdout())
            } else {
                Box::new(
                    tokio::fs::File::create(&dest)
                        .await
                        .map_err(|e| format!("{}: {e}", dest.display()))?,
                )
            };
            let result = client
                .get(
                    server,
                    &file,
                    mode,
                    options,
                    progress.wrap_async_write(writer),
                )
                .await;
            if result.is_err() && dest.as_os_str() != "-" {
                let _ = tokio::fs::remove_file(&dest).await;
            }
            result.map_err(|e| e.to_string())?
        }
        Command::Put { host, file, name } => {
            let server = resolve(&host).await?;
            let name = name.unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let reader: Box<dyn AsyncRead + Send + Unpin> = if file.as_os_str() == "-" {
                Box::new(tokio::io::stdin())
            } else {
                let f = tokio::fs::File::open(&file)
                    .await
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                if !args.no_tsize && mode == Mode::Octet {
                    options.tsize = f.metadata().await.ok().map(|m| m.len());
                    if let Some(size) = options.tsize {
                        progress.set_length(size);
                    }
                }
                Box::new(f)
            };
            client
                .put(
                    server,
                    &name,
                    mode,
                    options,
                    progress.wrap_async_read(reader),
                )
                .await
                .map_err(|e| e.to_string())?
        }
    };
    progress.finish_and_clear();
    if !args.quiet {
        let secs = started
            .elapsed()
            .max(Duration::from_micros(1))
            .as_secs_f64();
        eprintln!(
            "{} bytes in {:.3} s ({:.1} MB/s), blksize {}, windowsize {}, {} retransmissions",
            stats.bytes,
            secs,
            stats.bytes as f64 / secs / 1e6,
            stats.options.blksize,
            stats.options.windowsize,
            stats.retransmissions
        );
    }
    Ok(())
}
