//! `tftp`: fetch or send one file.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::Permissions;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tempfile::NamedTempFile;
use tftp_tokio::tftp_proto::{Config, TransferError};
use tftp_tokio::{Client, ClientError, Mode, OptionValues};
use tokio::io::{AsyncRead, AsyncWriteExt};

/// A TFTP client (RFC 1350 with blksize, timeout, tsize and windowsize options).
#[derive(Debug, Parser)]
#[command(
    name = "tftp",
    version,
    about = "A TFTP client (RFC 1350 with blksize, timeout, tsize and windowsize options): get and put, like tftp-hpa's, or with tftp:// URLs like curl."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
    /// Block size to ask for (8..=65464).
    #[arg(long, short = 'b', global = true)]
    blksize: Option<u16>,
    /// Window size to ask for, in blocks (RFC 7440).
    #[arg(long, short = 'w', global = true)]
    windowsize: Option<u16>,
    /// Retransmit every SECS seconds, and ask the server to do the same (RFC 2349 `timeout`,
    /// 1..=255). Without it the client adapts its timer to the round trip, starting at 1 s
    /// and doubling on each retransmission up to 8 s.
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u8).range(1..))]
    timeout: Option<u8>,
    /// Do not send tsize.
    #[arg(long, global = true)]
    no_tsize: bool,
    /// Netascii (text) mode instead of octet.
    #[arg(long, global = true)]
    netascii: bool,
    /// Retransmissions of the same packet without an answer before giving up.
    #[arg(long, default_value_t = 6, global = true)]
    retries: u32,
    /// Give up on the whole command (name lookup and transfer) after SECONDS, however many
    /// retries are left.
    #[arg(long, global = true, value_name = "SECONDS")]
    deadline: Option<f64>,
    /// No progress bar.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch FILE from HOST into DEST (default: the file's base name; `-` for stdout).
    /// HOST FILE may be given as one URL, `tftp://HOST[:PORT]/FILE`, as curl takes it.
    #[command(
        override_usage = "tftp get [OPTIONS] HOST FILE [DEST]\n       tftp get [OPTIONS] tftp://HOST[:PORT]/FILE [DEST]"
    )]
    Get {
        /// HOST or HOST:PORT (an IPv6 address in brackets), or a tftp:// URL naming the file too.
        host: String,
        /// The file to fetch (with a URL: DEST).
        file: Option<String>,
        /// Where to write it.
        dest: Option<PathBuf>,
        /// Fail the download once it exceeds BYTES (also when the server announces a larger
        /// tsize): a server can send DATA for ever. DEST is left as it was.
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
    },
    /// Send FILE to HOST as NAME (default: the file's base name; FILE `-` for stdin, which
    /// needs a NAME). HOST and NAME may be given as one URL, `tftp://HOST[:PORT]/NAME`.
    #[command(
        override_usage = "tftp put [OPTIONS] HOST FILE [NAME]\n       tftp put [OPTIONS] tftp://HOST[:PORT]/NAME FILE"
    )]
    Put {
        /// HOST or HOST:PORT (an IPv6 address in brackets), or a tftp:// URL naming the upload too.
        host: String,
        /// The file to send (`-`: standard input).
        file: PathBuf,
        /// The name to store it under.
        name: Option<String>,
    },
}

/// `tftp://HOST[:PORT]/PATH` as `(HOST[:PORT], PATH)`, the path percent-decoded as curl does;
/// `None` for anything that is not a tftp URL.
fn split_url(arg: &str) -> Option<Result<(String, String), String>> {
    let rest = arg
        .strip_prefix("tftp://")
        .or_else(|| arg.strip_prefix("TFTP://"))?;
    let Some((host, path)) = rest.split_once('/') else {
        return Some(Err(format!("{arg}: no file in the URL (tftp://HOST/FILE)")));
    };
    if host.is_empty() || path.is_empty() {
        return Some(Err(format!(
            "{arg}: a URL needs a host and a file (tftp://HOST/FILE)"
        )));
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut raw = path.bytes();
    while let Some(b) = raw.next() {
        if b != b'%' {
            bytes.push(b);
            continue;
        }
        let hex: Vec<u8> = raw.by_ref().take(2).collect();
        let digit = std::str::from_utf8(&hex)
            .ok()
            .filter(|h| h.len() == 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match digit {
            Some(d) => bytes.push(d),
            None => return Some(Err(format!("{arg}: bad %-escape in the URL"))),
        }
    }
    match String::from_utf8(bytes) {
        Ok(path) => Some(Ok((host.to_string(), path))),
        Err(_) => Some(Err(format!("{arg}: the file name is not UTF-8"))),
    }
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

/// A download into a file: written to a temporary file beside DEST, which replaces DEST only
/// once the transfer is complete.
///
/// Writing into DEST itself would truncate it before the server has said a word: a failed
/// transfer (an ERROR, a timeout, a size limit) would lose a file that was there, write through
/// a symlink into whatever it points at, or (for a device node or a FIFO) block or destroy
/// something that is not a download target at all. The temporary file is in DEST's directory
/// so that the final rename is atomic (same file system); it is removed on every failure,
/// including when the transfer's future is dropped, since [`NamedTempFile`] removes its path
/// when dropped.
struct Download {
    dest: PathBuf,
    temp: NamedTempFile,
    /// The mode DEST ends up with: that of the file it replaces, or (new file) what the umask
    /// leaves of 0666, as `File::create` would.
    mode: Option<Permissions>,
}

impl Download {
    /// Check DEST and create the temporary file. DEST must not exist, or be a regular file, or
    /// a symlink to one (the symlink is then replaced by the downloaded file; its target is
    /// never written). Anything else (a directory, a device, a FIFO, a socket) is refused.
    fn prepare(dest: PathBuf) -> Result<Self, String> {
        let shown = dest.display();
        if dest.as_os_str().is_empty() {
            return Err("no file name to save as: give DEST".to_string());
        }
        let existing = regular_or_absent(&dest)?;
        let Some(name) = dest.file_name() else {
            return Err(format!("{shown}: not a file name"));
        };
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut prefix = OsString::from(".");
        prefix.push(name);
        prefix.push(".tftp-");
        // The file is created with O_EXCL under a random name: nothing that exists is opened.
        // While it fills up it is no more readable than DEST was (or than a new file would be).
        let initial = existing.as_ref().map_or(0o666, |p| p.mode() & 0o777);
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .permissions(Permissions::from_mode(initial))
            .tempfile_in(dir)
            .map_err(|e| {
                format!(
                    "{shown}: cannot create a temporary file in {}: {e}",
                    dir.display()
                )
            })?;
        let mode = existing.map(|p| Permissions::from_mode(p.mode() & 0o777));
        Ok(Download { dest, temp, mode })
    }

    /// A handle on the temporary file to write the download into.
    fn file(&self) -> Result<std::fs::File, String> {
        self.temp
            .as_file()
            .try_clone()
            .map_err(|e| format!("{}: {e}", self.temp.path().display()))
    }

    /// The transfer is complete: make sure every byte is on disk, then rename the temporary
    /// file over DEST. On any error the temporary file is removed and DEST is left as it was.
    async fn finish(self, mut out: tokio::fs::File) -> Result<(), String> {
        let shown = self.dest.display();
        out.flush().await.map_err(|e| format!("{shown}: {e}"))?;
        out.sync_all().await.map_err(|e| format!("{shown}: {e}"))?;
        if let Some(mode) = self.mode {
            // The umask may have narrowed the mode at creation; restore that of the old file.
            std::fs::set_permissions(self.temp.path(), mode)
                .map_err(|e| format!("{shown}: {e}"))?;
        }
        // Checked again: DEST may have changed while the transfer ran.
        regular_or_absent(&self.dest)?;
        self.temp
            .persist(&self.dest)
            .map_err(|e| format!("{shown}: {}", e.error))?;
        Ok(())
    }
}

/// `Ok(None)` if `path` does not exist (or is a dangling symlink), `Ok(Some(permissions))` if
/// it is a regular file or a symlink to one, an error naming what it is otherwise.
fn regular_or_absent(path: &Path) -> Result<Option<Permissions>, String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(Some(meta.permissions()));
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "something else"
    };
    Err(format!(
        "{shown}: not a regular file ({what}); refusing to replace it"
    ))
}

/// What a failure message needs to know about the transfer.
struct Context<'a> {
    server: SocketAddr,
    started: Instant,
    /// Counts the bytes written to DEST or read from FILE, hidden or not.
    progress: &'a ProgressBar,
}

/// A failed transfer in words.
fn describe(e: ClientError, cx: &Context<'_>) -> String {
    match e {
        ClientError::Transfer(TransferError::TooLarge { limit }) => {
            format!("the file is larger than --max-size {limit} bytes; download abandoned")
        }
        ClientError::Transfer(TransferError::TimedOut { retries }) => {
            let secs = cx.started.elapsed().as_secs_f64();
            match cx.progress.position() {
                0 => format!(
                    "timed out: no answer from {} after {retries} retransmissions ({secs:.1} s)",
                    cx.server
                ),
                bytes => format!(
                    "timed out: {} stopped answering after {bytes} bytes \
                     ({retries} retransmissions, {secs:.1} s in all)",
                    cx.server
                ),
            }
        }
        e => e.to_string(),
    }
}

/// Why a transfer was cut short from outside.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// `--deadline` passed.
    Deadline,
    /// SIGINT (Ctrl-C).
    Interrupted,
}

/// Run `fut` until it completes, `deadline` passes or Ctrl-C is pressed. Cut short, `fut` is
/// dropped: a download's temporary file goes with it.
async fn within<T>(deadline: Option<Instant>, fut: impl Future<Output = T>) -> Result<T, Cut> {
    let expiry = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    // Installed before `fut` first runs (so before the request goes out): `ctrl_c()` would
    // install its handler only when first polled. Without a handler (it could not be
    // installed), SIGINT keeps its default action.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let interrupt = async {
        match sigint.as_mut() {
            Some(s) => drop(s.recv().await),
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        out = fut => Ok(out),
        () = expiry => Err(Cut::Deadline),
        () = interrupt => Err(Cut::Interrupted),
    }
}

/// Why the command failed: the message, and the exit status.
#[derive(Debug)]
struct Failure {
    message: String,
    status: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { message, status: 1 }
    }
}

impl Cut {
    /// The failure; `what` says what was not done, given "within N s (--deadline)".
    fn failure(self, what: impl FnOnce(&str) -> String, deadline: Option<f64>) -> Failure {
        match self {
            Cut::Deadline => Failure {
                message: what(&format!(
                    "within {} s (--deadline)",
                    deadline.unwrap_or_default()
                )),
                status: 1,
            },
            Cut::Interrupted => Failure {
                message: "interrupted".to_string(),
                status: 130,
            },
        }
    }
}

/// A flag's value in seconds as a [`Duration`]: positive and finite.
fn secs(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{flag} must be a positive number of seconds"))
}

/// `text` safe to print on a terminal: control characters (C0, DEL, C1) and the Unicode
/// characters that reorder or hide text (bidi controls, zero-width characters, line and
/// paragraph separators) are written as escapes (`\n`, `\x1b`, `\u{9b}`, `\u{202e}`).
///
/// Error lines can carry a server's ERROR message (RFC 1350 §5: "an error message intended
/// for human consumption", i.e. whatever the server chose to send). Printed raw, a newline
/// forges further lines of output and an escape sequence drives the terminal.
fn escape_controls(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            '\0'..='\x1f' | '\x7f' => write!(out, "\\x{:02x}", u32::from(c)),
            '\u{80}'..='\u{9f}'
            | '\u{61c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}' => write!(out, "\\u{{{:x}}}", u32::from(c)),
            c => out.write_char(c),
        };
    }
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tftp: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args));
    // A read of stdin (`put -`) cut short by --deadline or Ctrl-C stays blocked in the
    // runtime's blocking pool; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftp: {}", escape_controls(&e.message));
            ExitCode::from(e.status)
        }
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let started = Instant::now();
    let deadline = match args.deadline {
        Some(d) => Some(started + secs(d, "--deadline")?),
        None => None,
    };
    let mut config = Config::default();
    config.retries = args.retries;
    // `give_up_after` keeps a server retrying a slow client past its retries; a client has
    // one transfer and a person waiting: `--retries N` means N retransmissions, then failure.
    config.give_up_after = Duration::ZERO;
    if let Some(t) = args.timeout {
        // The interval asked of the server (RFC 2349) is also ours, from the request on:
        // fixed, without backoff, so that a silent server fails after (retries + 1) * SECS.
        let t = Duration::from_secs(u64::from(t));
        config.initial_timeout = t;
        config.min_timeout = t;
        config.max_timeout = t;
    }
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
    if let Command::Get { max_size, .. } = args.command {
        config.max_transfer_size = max_size;
    }
    let client = Client::with_config(config).on_negotiated(move |o| {
        if let Some(size) = o.tsize {
            p.set_length(size);
        }
    });
    // Where to, and what: `HOST FILE` or one tftp:// URL.
    let (host, remote) = match &args.command {
        Command::Get { host, .. } | Command::Put { host, .. } => match split_url(host) {
            Some(url) => {
                let (host, path) = url?;
                (host, Some(path))
            }
            None => (host.clone(), None),
        },
    };
    let server = within(deadline, resolve(&host)).await.map_err(|cut| {
        cut.failure(
            |within| format!("{host}: not resolved {within}"),
            args.deadline,
        )
    })??;
    let cx = Context {
        server,
        started,
        progress: &progress,
    };
    let describe = |e| describe(e, &cx);
    let transfer = async {
        Ok::<_, Failure>(match args.command {
            Command::Get { file, dest, .. } => {
                if !args.no_tsize {
                    options.tsize = Some(0);
                }
                // With a URL the second word is DEST.
                let (file, dest) = match (remote, file, dest) {
                    (Some(path), Some(_), Some(_)) => {
                        return Err(format!("{path}: with a URL, give at most DEST").into());
                    }
                    (Some(path), second, None) => (path, second.map(PathBuf::from)),
                    (Some(path), None, dest) => (path, dest),
                    (None, Some(file), dest) => (file, dest),
                    (None, None, _) => {
                        return Err("get needs FILE (or a tftp:// URL)".to_string().into());
                    }
                };
                let dest = dest.unwrap_or_else(|| {
                    PathBuf::from(file.rsplit(['/', '\\']).next().unwrap_or(&file))
                });
                if dest.as_os_str() == "-" {
                    let writer = progress.wrap_async_write(tokio::io::stdout());
                    client
                        .get(server, &file, mode, options, writer)
                        .await
                        .map_err(describe)?
                } else {
                    let target = Download::prepare(dest)?;
                    let mut out = tokio::fs::File::from_std(target.file()?);
                    let stats = client
                        .get(
                            server,
                            &file,
                            mode,
                            options,
                            progress.wrap_async_write(&mut out),
                        )
                        .await
                        .map_err(describe)?;
                    target.finish(out).await?;
                    stats
                }
            }
            Command::Put { file, name, .. } => {
                let name = match (remote, name) {
                    (Some(_), Some(name)) => {
                        return Err(format!("{name}: the URL names the upload already").into());
                    }
                    (Some(path), None) | (None, Some(path)) => path,
                    // Standard input has no name to store it under: an upload named `-` is
                    // never what was meant.
                    (None, None) if file.as_os_str() == "-" => {
                        return Err("put - needs NAME, the name to store standard input under"
                            .to_string()
                            .into());
                    }
                    (None, None) => file
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
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
                    .map_err(describe)?
            }
        })
    };
    let stats = within(deadline, transfer).await.map_err(|cut| {
        cut.failure(
            |within| match progress.position() {
                0 => format!("no answer {within} from {server}"),
                n => format!("transfer with {server} not finished {within} ({n} bytes so far)"),
            },
            args.deadline,
        )
    })??;
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
