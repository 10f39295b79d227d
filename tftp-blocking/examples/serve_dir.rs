//! Serve a directory with the blocking (epoll) server: the benchmark's `tftpd-blocking`.
//!
//! ```sh
//! cargo run --release -p tftp-blocking --example serve_dir -- --root example-root --listen 127.0.0.1:6969 [--workers 2]
//! ```

use std::process::ExitCode;

use tftp_blocking::{DirHandler, RootOptions, Server, ServerOptions};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut root, mut listen, mut workers) = (None, None, 1usize);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--root", Some(v)) => root = Some(v),
            ("--listen", Some(v)) => listen = v.parse().ok(),
            ("--workers", Some(v)) => workers = v.parse().unwrap_or(1),
            _ => {
                eprintln!("usage: serve_dir --root DIR --listen ADDR:PORT [--workers N]");
                return ExitCode::FAILURE;
            }
        }
    }
    let (Some(root), Some(listen)) = (root, listen) else {
        eprintln!("usage: serve_dir --root DIR --listen ADDR:PORT [--workers N]");
        return ExitCode::FAILURE;
    };
    let result = DirHandler::new(&root, RootOptions::default())
        .and_then(|h| Server::bind(h, ServerOptions::new().listen(listen)))
        .and_then(|s| s.workers(workers).serve());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve_dir: {e}");
            ExitCode::FAILURE
        }
    }
}
