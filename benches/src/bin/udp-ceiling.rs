//! `udp-ceiling`: the raw UDP ceiling on loopback for a TFTP-like exchange.
//!
//! A sender thread moves `--bytes` in datagrams of `--size` bytes to a receiver thread over
//! 127.0.0.1. Lock-step (`--window 1`): send one datagram, wait for a 4-byte reply, as TFTP
//! does with windowsize 1. Windowed (`--window W`): W datagrams, then one reply, as RFC 7440.
//! No file, no protocol state: what is left is the kernel's cost per datagram and per wake-up,
//! which no TFTP server can beat with the same datagram size and window.
//!
//! Loss (a full receive buffer) is repaired go-back-N: the receiver only takes the next
//! datagram in order and the sender resends the window after 200 ms without a reply.
//! `--cpus 0` pins both threads to one CPU (like `taskset -c 0`); without it they float.
//!
//! ```text
//! udp-ceiling --size 1468 --window 1 --bytes 268435456 --cpus 0
//! ```

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tftp_benches::sys::{self, CpuTime};

/// How long the sender waits for a reply before resending the window.
const RESEND_AFTER: Duration = Duration::from_millis(200);
/// Resends in a row before giving up.
const MAX_RESENDS: u32 = 50;

#[derive(Parser, Debug)]
#[command(about = "Raw loopback UDP ceiling: lock-step or windowed datagrams, MB/s")]
struct Args {
    /// Datagram payload size in bytes (TFTP: blksize + 4).
    #[arg(long)]
    size: usize,
    /// Datagrams per reply (1: lock-step).
    #[arg(long, default_value_t = 1)]
    window: u32,
    /// Bytes to move.
    #[arg(long, default_value_t = 256 << 20)]
    bytes: u64,
    /// Pin both threads to these CPUs (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    deadline: f64,
    /// Free-form label copied into the JSON.
    #[arg(long)]
    label: Option<String>,
    /// Also write the JSON to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    label: Option<String>,
    size: usize,
    window: u32,
    cpus: Vec<usize>,
    datagrams: u64,
    bytes: u64,
    secs: f64,
    /// bytes / secs in MB/s (10^6 bytes per second).
    mb_per_sec: f64,
    datagrams_per_sec: f64,
    resends: u64,
    complete: bool,
    cpu: CpuTime,
    cpu_secs: f64,
}

fn receiver(sock: UdpSocket, size: usize, window: u32, total: u64) -> Result<()> {
    let mut buf = vec![0u8; size.max(8) + 1];
    let mut expected = 0u64;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let reply = |sock: &UdpSocket, seq: u64| sock.send(&(seq as u32).to_be_bytes());
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            // Done and nothing repeated for a while, or the sender is gone.
            Err(_) if expected == total => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if n < 8 {
            continue;
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&buf[..8]);
        let seq = u64::from_le_bytes(seq_bytes);
        let window_end = (seq + 1) % u64::from(window) == 0 || seq + 1 == total;
        if seq == expected {
            expected += 1;
            if window_end {
                reply(&sock, seq)?;
            }
            if expected == total {
                // Linger briefly to re-answer a repeated last window.
                sock.set_read_timeout(Some(Duration::from_millis(300)))?;
            }
        } else if seq < expected && window_end {
            reply(&sock, expected - 1)?;
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(8..=65507).contains(&args.size) {
        bail!("--size must be in 8..=65507");
    }
    if args.window == 0 {
        bail!("--window must be at least 1");
    }
    if !(args.deadline > 0.0 && args.deadline <= 3600.0) {
        bail!("--deadline must be in (0, 3600] seconds");
    }
    if !args.cpus.is_empty() {
        sys::pin_to_cpus(&args.cpus).context("pinning to --cpus")?;
    }
    let total = args.bytes.div_ceil(args.size as u64).max(1);
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.connect(tx.local_addr()?)?;
    // Room for a whole window (loopback charges about twice the payload per datagram).
    let room = (args.size * args.window as usize * 4).max(256 << 10);
    sys::set_socket_buffer(rx.as_raw_fd(), true, room)?;
    sys::set_socket_buffer(tx.as_raw_fd(), false, room)?;
    tx.set_read_timeout(Some(RESEND_AFTER))?;

    let (size, window) = (args.size, args.window);
    let recv_thread = thread::spawn(move || receiver(rx, size, window, total));

    let cpu0 = sys::process_cpu()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.deadline);
    let mut packet = vec![0u8; args.size];
    let mut reply = [0u8; 16];
    let mut acked = 0u64; // datagrams confirmed
    let mut resends = 0u64;
    let mut stalls = 0u32;
    let mut complete = true;
    while acked < total {
        if Instant::now() >= deadline {
            complete = false;
            break;
        }
        let end = (acked + u64::from(args.window)).min(total);
        for seq in acked..end {
            packet[..8].copy_from_slice(&seq.to_le_bytes());
            tx.send(&packet)?;
        }
        // Wait for the reply that confirms this window.
        loop {
            match tx.recv(&mut reply) {
                Ok(4) => {
                    let got =
                        u64::from(u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]));
                    // Replies carry the low 32 bits of the last in-order sequence number.
                    if got == (end - 1) & 0xffff_ffff {
                        acked = end;
                        stalls = 0;
                        break;
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    resends += 1;
                    stalls += 1;
                    if stalls > MAX_RESENDS {
                        bail!("no reply after {MAX_RESENDS} resends");
                    }
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = sys::process_cpu()?.since(&cpu0);
    if complete {
        recv_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
    }
    let bytes = acked * args.size as u64;
    let report = Report {
        label: args.label.clone(),
        size: args.size,
        window: args.window,
        cpus: args.cpus.clone(),
        datagrams: acked,
        bytes,
        secs,
        mb_per_sec: bytes as f64 / secs / 1e6,
        datagrams_per_sec: acked as f64 / secs,
        resends,
        complete,
        cpu,
        cpu_secs: cpu.total(),
    };
    let json = serde_json::to_string(&report)?;
    println!("{json}");
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
