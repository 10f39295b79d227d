//! Serve a directory with the blocking (epoll) server: the benchmark's `tftpd-blocking`.
//!
//! ```sh
//! cargo run --release -p tftp-blocking --example serve_dir -- --root example-root --listen 127.0.0.1:6969 [--workers N] [--max-sessions N] [--default-limits]
//! ```
//!
//! `--workers`: event loops (default: the framework's, one a CPU, as tftpd's `--threads 0`).
//!
//! The admission limits are lifted (all of a benchmark's load comes from one address) unless
//! `--default-limits` keeps the framework's defaults (`AdmissionConfig::default()`). Lifted,
//! at most `--max-sessions` transfers run at once (default 100,000, cut to what the descriptor
//! limit allows); a transfer is connected to its peer only with a descriptor to spare beyond
//! them (`tftp_server::connect`), so a benchmark under a low hard limit passes its largest row.

use std::process::ExitCode;

use tftp_blocking::{DirHandler, RootOptions, Server, ServerOptions};

const USAGE: &str = "usage: serve_dir --root DIR --listen ADDR:PORT [--workers N] \
     [--max-sessions N] [--default-limits]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut root, mut listen, mut workers, mut default_limits) = (None, None, None, false);
    let mut max_sessions = 100_000usize;
    while let Some(flag) = args.next() {
        if flag == "--default-limits" {
            default_limits = true;
            continue;
        }
        let value = args.next();
        match (flag.as_str(), value) {
            ("--root", Some(v)) => root = Some(v),
            ("--listen", Some(v)) => listen = v.parse().ok(),
            ("--workers", Some(v)) => match v.parse::<usize>() {
                Ok(n) if n > 0 => workers = Some(n),
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            ("--max-sessions", Some(v)) => match v.parse::<usize>() {
                Ok(n) if n > 0 => max_sessions = n,
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    let (Some(root), Some(listen)) = (root, listen) else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    // A benchmark server: all the load comes from 127.0.0.1, so the per-client limits are off
    // (unless --default-limits), and windows may be as large as tftpd --max-window-bytes
    // 8388608 allows.
    let mut options = ServerOptions::new().listen(listen);
    if !default_limits {
        options.config.admission.rate_per_client = None;
        options.config.admission.max_sessions_per_client = usize::MAX;
        options.config.admission.max_sessions = max_sessions;
    }
    options.config.session.limits.max_window_bytes = 8 << 20;
    let result = DirHandler::new(&root, RootOptions::default())
        .and_then(|h| Server::bind(h, options))
        .and_then(|s| match workers {
            Some(n) => s.workers(n).serve(),
            None => s.serve(),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_dir: {e}");
            ExitCode::FAILURE
        }
    }
}
