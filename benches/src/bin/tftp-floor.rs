//! `tftp-floor --root DIR --listen ADDR:PORT`: the kernel floor of the end-to-end benchmark,
//! the least CPU a TFTP server can spend per packet, measured in the same run as the servers.
//!
//! Read requests only, one transfer at a time, lock-step (windowsize 1): on an RRQ the file is
//! read whole into memory, a new socket is bound (a new transfer port, as TFTP requires), and
//! each ACK gets the next DATA with one blocking `recv_from` and one `send_to`; nothing else
//! (no threads, no poll, no timers but the socket's 1 s receive timeout, after which the last
//! packet is resent, at most 5 times). Only `blksize` and `tsize` are negotiated (an OACK when
//! either is asked); other options are ignored. Block numbers roll over to 0 after 65535.
//! Modes are not told apart (octet). Not a server to deploy: no limits, no concurrency.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;
const MAX_BLKSIZE: usize = 65464;
const TIMEOUT: Duration = Duration::from_secs(1);
const RETRIES: u32 = 5;

/// A parsed read request.
struct Request {
    peer: SocketAddr,
    file: String,
    /// The blksize asked for, clamped to 8..=65464; None: not asked (or unusable).
    blksize: Option<usize>,
    tsize: bool,
}

fn opcode(p: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*p.first()?, *p.get(1)?]))
}

/// `RRQ file\0 mode\0 [option\0 value\0]*`; None for anything else or malformed.
fn parse_rrq(p: &[u8], peer: SocketAddr) -> Option<Request> {
    if opcode(p)? != RRQ {
        return None;
    }
    let mut fields = std::str::from_utf8(&p[2..]).ok()?.split('\0');
    let file = fields.next()?.to_string();
    let _mode = fields.next()?;
    let (mut blksize, mut tsize) = (None, false);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if name.eq_ignore_ascii_case("blksize") {
            let b: usize = value.parse().unwrap_or(0);
            blksize = (b >= 8).then(|| b.min(MAX_BLKSIZE));
        } else if name.eq_ignore_ascii_case("tsize") {
            tsize = true;
        }
    }
    Some(Request {
        peer,
        file,
        blksize,
        tsize,
    })
}

/// `root/file`, refusing absolute paths' escapes and `..`.
fn resolve(root: &Path, file: &str) -> io::Result<PathBuf> {
    let rel = Path::new(file.trim_start_matches('/'));
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(root.join(rel))
    } else {
        Err(io::Error::other("path outside the root"))
    }
}

fn error_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = [ERROR.to_be_bytes(), code.to_be_bytes()].concat();
    p.extend_from_slice(msg.as_bytes());
    p.push(0);
    p
}

/// Sends `p` and waits for the ACK of `blk` from `to`, resending on timeout.
fn exchange(s: &UdpSocket, to: SocketAddr, p: &[u8], blk: u16, buf: &mut [u8]) -> io::Result<()> {
    s.send_to(p, to)?;
    let mut resends = 0;
    loop {
        match s.recv_from(buf) {
            Ok((n, from)) if from == to => match opcode(&buf[..n]) {
                Some(ACK) if n >= 4 && u16::from_be_bytes([buf[2], buf[3]]) == blk => return Ok(()),
                Some(ERROR) => return Err(io::Error::other("the client sent an ERROR")),
                _ => {} // a duplicate ACK (never answered: Sorcerer's Apprentice) or junk
            },
            Ok(_) => {} // another port: not this transfer
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                resends += 1;
                if resends > RETRIES {
                    return Err(io::Error::other(format!("no ACK {blk}")));
                }
                s.send_to(p, to)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// One transfer, from the RRQ to the last ACK. `data` is the file's buffer, kept from one
/// transfer to the next (a fresh allocation would page-fault on every transfer): 4 spare
/// bytes, then the file. Each DATA is sent from it in place, its header written over the last
/// 4 bytes of the block before (acknowledged: never sent again), so the file is copied once
/// into memory and once into the kernel, as a server that reads a block and sends it.
fn serve(listener: &UdpSocket, root: &Path, req: &Request, data: &mut Vec<u8>) -> io::Result<()> {
    let peer = req.peer;
    let sock = UdpSocket::bind(SocketAddr::new(listener.local_addr()?.ip(), 0))?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    data.clear();
    data.extend_from_slice(&[0; 4]);
    if let Err(e) = resolve(root, &req.file).and_then(|path| File::open(path)?.read_to_end(data)) {
        let code = if e.kind() == ErrorKind::NotFound {
            1
        } else {
            2
        };
        sock.send_to(&error_packet(code, &e.to_string()), peer)?;
        return Err(e);
    }
    let mut buf = vec![0u8; MAX_BLKSIZE + 4];
    let blksize = req.blksize.unwrap_or(512);
    if req.blksize.is_some() || req.tsize {
        let mut oack = OACK.to_be_bytes().to_vec();
        if let Some(b) = req.blksize {
            oack.extend_from_slice(format!("blksize\0{b}\0").as_bytes());
        }
        if req.tsize {
            oack.extend_from_slice(format!("tsize\0{}\0", data.len() - 4).as_bytes());
        }
        exchange(&sock, peer, &oack, 0, &mut buf)?;
    }
    // Blocks 1..=n; the last is shorter than blksize (empty when the size is a multiple).
    let len = data.len() - 4;
    for i in 1..=len / blksize + 1 {
        let wire = (i % 65536) as u16; // rolls over to 0
        let (start, end) = ((i - 1) * blksize, 4 + (i * blksize).min(len));
        data[start..start + 2].copy_from_slice(&DATA.to_be_bytes());
        data[start + 2..start + 4].copy_from_slice(&wire.to_be_bytes());
        exchange(&sock, peer, &data[start..end], wire, &mut buf)?;
    }
    Ok(())
}

fn run() -> io::Result<Infallible> {
    let usage = || io::Error::other("usage: tftp-floor --root DIR --listen ADDR:PORT");
    let (mut root, mut listen) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--root", Some(v)) => root = Some(PathBuf::from(v)),
            ("--listen", Some(v)) => listen = Some(v.parse::<SocketAddr>().map_err(|_| usage())?),
            _ => return Err(usage()),
        }
    }
    let (Some(root), Some(listen)) = (root, listen) else {
        return Err(usage());
    };
    let listener = UdpSocket::bind(listen)?;
    let (mut buf, mut data, mut served) = (vec![0u8; 65536], Vec::new(), HashMap::new());
    loop {
        let Ok((n, peer)) = listener.recv_from(&mut buf) else {
            continue;
        };
        let Some(req) = parse_rrq(&buf[..n], peer) else {
            // A write request or junk: refused.
            _ = listener.send_to(&error_packet(4, "read requests only"), peer);
            continue;
        };
        // A client resends its RRQ while the floor is busy with another transfer: serve each
        // client port once, or the duplicates queue up transfers nobody waits for.
        served.retain(|_, at: &mut Instant| at.elapsed() < Duration::from_secs(60));
        if served.insert(peer, Instant::now()).is_none()
            && let Err(e) = serve(&listener, &root, &req, &mut data)
        {
            eprintln!("tftp-floor: {peer} {}: {e}", req.file);
        }
    }
}

fn main() -> ExitCode {
    let Err(e) = run();
    eprintln!("tftp-floor: {e}");
    ExitCode::FAILURE
}
