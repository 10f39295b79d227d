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
//!
//! `tftp-floor --concurrent --root DIR --listen ADDR:PORT`: the floor of the concurrency rows,
//! the least CPU a server with a transfer port per session (RFC 1350's TIDs, as tftpd's
//! default, dnsmasq and tftpd-hpa) can spend per packet on Linux's readiness API. Every
//! transfer at once on one thread: each on its own socket in one level-triggered epoll, one
//! `recvfrom` per ACK and one `sendmsg` per DATA (header and block as two buffers: no copy of
//! the file in user space; files are read whole on their first request and kept), the
//! listener read in bursts, `epoll_wait` amortized over the ready sockets. Resends after 1 s
//! (5 times, then the transfer is dropped), checked every 100 ms. Same options as above.
//! With `--connected` each transfer socket is `connect()`ed to its peer (as tftpd-hpa's are,
//! and tftpd's since its catcher sockets: `tftp_server::connect`), so the kernel routes once
//! per transfer rather than once per DATA; the floor of `run.sh`'s concurrency rows.
//!
//! `tftp-floor --concurrent --connected --uring --root DIR --listen ADDR:PORT`: the same on
//! io_uring (multishot receives into provided buffers, one `io_uring_enter` for the sends and
//! receives of many transfers; see the `uring` module), to measure that engine's floor
//! against epoll's.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

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

/// `p` is the ACK of `block` (counted without rollover: on the wire modulo 65536).
fn acks(p: &[u8], block: usize) -> bool {
    opcode(p) == Some(ACK) && p.len() >= 4 && u16::from_be_bytes([p[2], p[3]]) == block as u16
}

/// DATA `block` (from 1, counted without rollover) of `file` cut in blocks of `blksize`:
/// its header (the block number rolls over to 0 after 65535) and its bytes.
fn data_block(file: &[u8], blksize: usize, block: usize) -> ([u8; 4], &[u8]) {
    let start = ((block - 1) * blksize).min(file.len());
    let end = (start + blksize).min(file.len());
    let [d0, d1] = DATA.to_be_bytes();
    let [b0, b1] = (block as u16).to_be_bytes();
    ([d0, d1, b0, b1], &file[start..end])
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
/// The OACK for `req` (its `blksize` and `tsize`, of a file of `size` bytes), if it asked for
/// either.
fn oack(req: &Request, size: usize) -> Option<Vec<u8>> {
    (req.blksize.is_some() || req.tsize).then(|| {
        let mut oack = OACK.to_be_bytes().to_vec();
        if let Some(b) = req.blksize {
            oack.extend_from_slice(format!("blksize\0{b}\0").as_bytes());
        }
        if req.tsize {
            oack.extend_from_slice(format!("tsize\0{size}\0").as_bytes());
        }
        oack
    })
}

/// The ERROR code for a file that could not be read: 1 (not found) or 2 (access violation).
fn error_code(e: &io::Error) -> u16 {
    if e.kind() == ErrorKind::NotFound {
        1
    } else {
        2
    }
}

/// File `name` under `root`, read whole on its first request and kept in `files`.
fn cached(
    files: &mut HashMap<String, std::sync::Arc<[u8]>>,
    root: &Path,
    name: &str,
) -> io::Result<std::sync::Arc<[u8]>> {
    if let Some(file) = files.get(name) {
        return Ok(std::sync::Arc::clone(file));
    }
    let file: std::sync::Arc<[u8]> = std::fs::read(resolve(root, name)?)?.into();
    files.insert(name.to_string(), std::sync::Arc::clone(&file));
    Ok(file)
}

/// What [`next_request`] found on a non-blocking listener.
enum Next {
    /// Nothing more to read now.
    Drained,
    /// A datagram that starts nothing: a client port already served, or not a read request
    /// (refused with ERROR 4).
    Skipped,
    Request(Request),
}

/// The next request on the concurrent floors' listener, `buf` its receive buffer, `peers`
/// the client ports with a transfer running (their resent RRQs start nothing).
fn next_request<V>(listener: &UdpSocket, buf: &mut [u8], peers: &HashMap<SocketAddr, V>) -> Next {
    let (n, peer) = match listener.recv_from(buf) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Drained,
        Err(_) => return Next::Skipped,
    };
    if peers.contains_key(&peer) {
        return Next::Skipped;
    }
    match parse_rrq(&buf[..n], peer) {
        Some(req) => Next::Request(req),
        None => {
            _ = listener.send_to(&error_packet(4, "read requests only"), peer);
            Next::Skipped
        }
    }
}

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
        sock.send_to(&error_packet(error_code(&e), &e.to_string()), peer)?;
        return Err(e);
    }
    let mut buf = vec![0u8; MAX_BLKSIZE + 4];
    let blksize = req.blksize.unwrap_or(512);
    if let Some(oack) = oack(req, data.len() - 4) {
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
    let usage = || {
        io::Error::other(
            "usage: tftp-floor [--concurrent [--connected [--uring] | --single-port]] --root DIR --listen ADDR:PORT",
        )
    };
    let (mut root, mut listen, mut concurrent, mut connected) = (None, None, false, false);
    let (mut uring, mut single_port) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--concurrent" {
            concurrent = true;
            continue;
        }
        if flag == "--uring" {
            uring = true;
            continue;
        }
        if flag == "--single-port" {
            single_port = true;
            continue;
        }
        if flag == "--connected" {
            connected = true;
            continue;
        }
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
    if uring {
        if !(concurrent && connected) {
            return Err(usage());
        }
        return uring::run(listener, &root);
    }
    if single_port {
        if !concurrent || connected {
            return Err(usage());
        }
        return single::run(listener, &root);
    }
    if concurrent {
        return concurrent::run(listener, &root, connected);
    }
    if connected {
        return Err(usage());
    }
    let (mut buf, mut data) = (vec![0u8; 65536], Vec::new());
    // Requests read off the listener while clearing a served client's resends.
    let mut queued: VecDeque<(Vec<u8>, SocketAddr)> = VecDeque::new();
    loop {
        let (n, peer) = match queued.pop_front() {
            Some((datagram, peer)) => {
                buf[..datagram.len()].copy_from_slice(&datagram);
                (datagram.len(), peer)
            }
            None => match listener.recv_from(&mut buf) {
                Ok(received) => received,
                Err(_) => continue,
            },
        };
        let Some(req) = parse_rrq(&buf[..n], peer) else {
            // A write request or junk: refused.
            _ = listener.send_to(&error_packet(4, "read requests only"), peer);
            continue;
        };
        if let Err(e) = serve(&listener, &root, &req, &mut data) {
            eprintln!("tftp-floor: {peer} {}: {e}", req.file);
        }
        // A client resends its RRQ while the floor is busy with another transfer: what its
        // port sent meanwhile is dropped, or the duplicates queue up transfers nobody waits
        // for. (Not "each client port once": a later client that gets the same ephemeral
        // port, as back-to-back transfers in run.sh do now and then, must be served.)
        queued.retain(|(_, from)| *from != peer);
        listener.set_nonblocking(true)?;
        while let Ok((n, from)) = listener.recv_from(&mut buf) {
            if from != peer {
                queued.push_back((buf[..n].to_vec(), from));
            }
        }
        listener.set_nonblocking(false)?;
    }
}

fn main() -> ExitCode {
    let Err(e) = run();
    eprintln!("tftp-floor: {e}");
    ExitCode::FAILURE
}

/// `--concurrent`: every transfer at once on one thread, on one level-triggered epoll.
mod concurrent {
    use super::{
        ERROR, Next, RETRIES, Request, TIMEOUT, acks, cached, data_block, error_code, error_packet,
        next_request, oack, opcode,
    };
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::io::{self, IoSlice};
    use std::net::{SocketAddr, UdpSocket};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustix::event::epoll;
    use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};

    /// The listener's key; a transfer's is its slot + 1.
    const LISTENER: u64 = 0;
    /// How often the resend deadlines are looked at.
    const SWEEP: Duration = Duration::from_millis(100);

    struct Transfer {
        sock: UdpSocket,
        peer: SocketAddr,
        file: Arc<[u8]>,
        blksize: usize,
        /// The block whose ACK is awaited (0: the OACK's), counted without rollover.
        block: usize,
        /// The last block's number (the first shorter than blksize).
        last: usize,
        /// The OACK, while it is what was sent last.
        oack: Option<Vec<u8>>,
        sent_at: Instant,
        resends: u32,
        /// `sock` is connected to `peer`: sent to without an address.
        connected: bool,
    }

    impl Transfer {
        /// Send what `block` is: the OACK (0) or DATA.
        fn send(&self) -> io::Result<()> {
            let flags = SendFlags::DONTWAIT;
            if let (0, Some(oack)) = (self.block, &self.oack) {
                match self.connected {
                    true => rustix::net::send(&self.sock, oack, flags)?,
                    false => rustix::net::sendto(&self.sock, oack, flags, &self.peer)?,
                };
                return Ok(());
            }
            let (header, block) = data_block(&self.file, self.blksize, self.block);
            let iov = [IoSlice::new(&header), IoSlice::new(block)];
            let mut control = SendAncillaryBuffer::default();
            match self.connected {
                true => rustix::net::sendmsg(&self.sock, &iov, &mut control, flags)?,
                false => {
                    rustix::net::sendmsg_addr(&self.sock, &self.peer, &iov, &mut control, flags)?
                }
            };
            Ok(())
        }
    }

    struct Floor<'r> {
        root: &'r Path,
        epoll: std::os::fd::OwnedFd,
        listener: UdpSocket,
        slots: Vec<Option<Transfer>>,
        free: Vec<usize>,
        /// The transfer of each client port, while it runs: a resent RRQ starts nothing.
        peers: HashMap<SocketAddr, usize>,
        files: HashMap<String, Arc<[u8]>>,
        buf: Vec<u8>,
        connected: bool,
    }

    pub(super) fn run(listener: UdpSocket, root: &Path, connected: bool) -> io::Result<Infallible> {
        listener.set_nonblocking(true)?;
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let data = epoll::EventData::new_u64(LISTENER);
        epoll::add(&epoll, &listener, data, epoll::EventFlags::IN)?;
        let mut floor = Floor {
            root,
            epoll,
            listener,
            slots: Vec::new(),
            free: Vec::new(),
            peers: HashMap::new(),
            files: HashMap::new(),
            buf: vec![0; 65536],
            connected,
        };
        let mut events = vec![
            epoll::Event {
                flags: epoll::EventFlags::empty(),
                data: epoll::EventData::new_u64(0),
            };
            1024
        ];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: SWEEP.as_nanos() as i64,
        };
        let mut swept = Instant::now();
        loop {
            let n = match epoll::wait(&floor.epoll, &mut events[..], Some(&timeout)) {
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for event in &events[..n] {
                match event.data.u64() {
                    LISTENER => floor.on_listener(),
                    key => floor.on_ack(key as usize - 1),
                }
            }
            if swept.elapsed() >= SWEEP {
                floor.sweep();
                swept = Instant::now();
            }
        }
    }

    impl Floor<'_> {
        /// Requests, in a burst.
        fn on_listener(&mut self) {
            for _ in 0..256 {
                match next_request(&self.listener, &mut self.buf, &self.peers) {
                    Next::Drained => return,
                    Next::Skipped => {}
                    Next::Request(req) => {
                        if let Err(e) = self.start(&req) {
                            eprintln!("tftp-floor: {} {}: {e}", req.peer, req.file);
                        }
                    }
                }
            }
        }

        fn start(&mut self, req: &Request) -> io::Result<()> {
            let sock = UdpSocket::bind(SocketAddr::new(self.listener.local_addr()?.ip(), 0))?;
            sock.set_nonblocking(true)?;
            if self.connected {
                sock.connect(req.peer)?;
            }
            let file = match cached(&mut self.files, self.root, &req.file) {
                Ok(file) => file,
                Err(e) => {
                    sock.send_to(&error_packet(error_code(&e), &e.to_string()), req.peer)?;
                    return Err(e);
                }
            };
            let blksize = req.blksize.unwrap_or(512);
            let oack = oack(req, file.len());
            let last = file.len() / blksize + 1;
            let block = if oack.is_some() { 0 } else { 1 };
            let transfer = Transfer {
                sock,
                peer: req.peer,
                file,
                blksize,
                block,
                last,
                oack,
                sent_at: Instant::now(),
                resends: 0,
                connected: self.connected,
            };
            transfer.send()?;
            let slot = self.free.pop().unwrap_or(self.slots.len());
            let data = epoll::EventData::new_u64(slot as u64 + 1);
            epoll::add(&self.epoll, &transfer.sock, data, epoll::EventFlags::IN)?;
            if slot == self.slots.len() {
                self.slots.push(None);
            }
            self.peers.insert(req.peer, slot);
            self.slots[slot] = Some(transfer);
            Ok(())
        }

        /// One datagram on transfer `slot`'s socket: the next DATA for the awaited ACK.
        fn on_ack(&mut self, slot: usize) {
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return;
            };
            let (n, from) =
                match rustix::net::recvfrom(&t.sock, &mut self.buf[..], RecvFlags::DONTWAIT) {
                    Ok((n, _, Some(from))) => match SocketAddr::try_from(from) {
                        Ok(from) => (n, from),
                        Err(_) => return,
                    },
                    _ => return,
                };
            let p = &self.buf[..n];
            if from != t.peer {
                return; // another port: not this transfer
            }
            match opcode(p) {
                _ if acks(p, t.block) => {
                    if t.block == t.last {
                        return self.end(slot);
                    }
                    t.block += 1;
                    t.oack = None;
                    t.resends = 0;
                    t.sent_at = Instant::now();
                    if t.send().is_err() {
                        self.end(slot);
                    }
                }
                Some(ERROR) => self.end(slot),
                _ => {} // a duplicate ACK (never answered: Sorcerer's Apprentice) or junk
            }
        }

        /// Resend what waited past [`TIMEOUT`]; drop what waited [`RETRIES`] times.
        fn sweep(&mut self) {
            let mut dead = Vec::new();
            for (slot, t) in self.slots.iter_mut().enumerate() {
                let Some(t) = t else { continue };
                if t.sent_at.elapsed() < TIMEOUT {
                    continue;
                }
                t.resends += 1;
                t.sent_at = Instant::now();
                if t.resends > RETRIES || t.send().is_err() {
                    dead.push(slot);
                }
            }
            for slot in dead {
                self.end(slot);
            }
        }

        fn end(&mut self, slot: usize) {
            if let Some(t) = self.slots.get_mut(slot).and_then(Option::take) {
                // Closing the socket takes it out of the epoll set.
                self.peers.remove(&t.peer);
                self.free.push(slot);
            }
        }
    }
}

/// `--concurrent --connected --uring`: the concurrency floor on io_uring instead of epoll
/// (issue 15's io_uring lever, measured before an engine is built on it). Every transfer
/// socket (connected) has one multishot `RECV` in the ring, landing ACKs in provided buffers
/// (`PROVIDE_BUFFERS`, each given back once handled, without a completion); an ACK's
/// completion queues the next DATA (`SEND`, header and block copied into the transfer's
/// buffer), and one `io_uring_enter` submits all that was queued and waits for the next
/// completions: no system call of its own per packet. The ring is `SINGLE_ISSUER` and
/// `DEFER_TASKRUN` (completions are worked in the server's `io_uring_enter`, not by task-work
/// interrupts: without it, ×1.22 the epoll floor's CPU at 1,000 clients). The listener is
/// polled (`POLL_ADD`, one-shot) and read in bursts; resends as in `--concurrent`.
///
/// Measured (`benches/e2e/ab.sh concurrency`, against `--concurrent --connected`): ×0.93
/// and ×0.975 of the epoll floor's CPU per MB at 1,000 clients (5 rounds each), ×1.07 and
/// ×1.06 at 10,000 (2 and 3 rounds): not an engine that would lift tftpd past the epoll floor.
mod uring {
    use super::{
        ERROR, Next, RETRIES, Request, TIMEOUT, acks, cached, data_block, error_code, error_packet,
        next_request, oack, opcode,
    };
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use io_uring::{IoUring, opcode as op, squeue, types};

    const SWEEP: Duration = Duration::from_millis(100);
    /// `user_data`: the slot in the high bits, the operation in the low byte.
    const RECV: u64 = 1;
    const SEND: u64 = 2;
    const CANCEL: u64 = 3;
    const LISTENER: u64 = 4;
    const PROVIDE: u64 = 5;
    /// The buffer group of the multishot receives: ACKs land in these until handled.
    const GROUP: u16 = 0;
    const BUFFERS: usize = 8192;
    const BUFFER_LEN: usize = 516;

    struct Transfer {
        sock: UdpSocket,
        peer: SocketAddr,
        file: Arc<[u8]>,
        blksize: usize,
        block: usize,
        last: usize,
        oack: Option<Vec<u8>>,
        sent_at: Instant,
        resends: u32,
        /// The packet being sent (header and block): the kernel reads it until its `SEND`
        /// completes.
        out: Vec<u8>,
        recv_armed: bool,
        send_pending: bool,
        /// Over: the slot is freed once no operation is in flight.
        ended: bool,
    }

    struct Floor<'r> {
        root: &'r Path,
        ring: IoUring,
        listener: UdpSocket,
        slots: Vec<Option<Box<Transfer>>>,
        free: Vec<usize>,
        peers: HashMap<SocketAddr, usize>,
        files: HashMap<String, Arc<[u8]>>,
        buf: Vec<u8>,
        /// The provided buffers, `BUFFERS` × `BUFFER_LEN`; never freed while the ring lives.
        input: Vec<u8>,
    }

    pub(super) fn run(listener: UdpSocket, root: &Path) -> io::Result<Infallible> {
        listener.set_nonblocking(true)?;
        let ring = IoUring::builder()
            .setup_cqsize(65536)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(16384)?;
        let mut floor = Floor {
            root,
            ring,
            listener,
            slots: Vec::new(),
            free: Vec::new(),
            peers: HashMap::new(),
            files: HashMap::new(),
            buf: vec![0; 65536],
            input: vec![0; BUFFERS * BUFFER_LEN],
        };
        let entry = op::ProvideBuffers::new(
            floor.input.as_mut_ptr(),
            BUFFER_LEN as i32,
            BUFFERS as u16,
            GROUP,
            0,
        )
        .build()
        .user_data(PROVIDE);
        // SAFETY: `input` lives as long as the ring (the function never returns but by error).
        unsafe { floor.push(entry) }?;
        floor.arm_listener()?;
        let timeout = types::Timespec::from(SWEEP);
        let mut swept = Instant::now();
        let mut done = Vec::with_capacity(4096);
        loop {
            let args = types::SubmitArgs::new().timespec(&timeout);
            match floor.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(
                floor
                    .ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, result, flags) in &done {
                let slot = (data >> 8) as usize;
                match data & 0xff {
                    LISTENER => {
                        floor.on_listener();
                        floor.arm_listener()?;
                    }
                    RECV => floor.on_recv(slot, result, flags)?,
                    PROVIDE if result < 0 => {
                        return Err(io::Error::from_raw_os_error(-result));
                    }
                    SEND => floor.on_send(slot, result),
                    _ => {}
                }
            }
            if swept.elapsed() >= SWEEP {
                floor.sweep()?;
                swept = Instant::now();
            }
        }
    }

    impl Floor<'_> {
        /// Queue `entry`, submitting what is queued first if the ring is full.
        ///
        /// # Safety
        /// What `entry` points to must stay valid until its completion.
        unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
            loop {
                // SAFETY: the caller's promise.
                if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                    return Ok(());
                }
                self.ring.submit()?;
            }
        }

        fn arm_listener(&mut self) -> io::Result<()> {
            let fd = types::Fd(self.listener.as_raw_fd());
            let entry = op::PollAdd::new(fd, libc::POLLIN as u32)
                .build()
                .user_data(LISTENER);
            // SAFETY: a poll points to no memory; the listener lives as long as the ring.
            unsafe { self.push(entry) }
        }

        fn arm_recv(&mut self, slot: usize) -> io::Result<()> {
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return Ok(());
            };
            let fd = types::Fd(t.sock.as_raw_fd());
            let entry = op::RecvMulti::new(fd, GROUP)
                .build()
                .user_data((slot as u64) << 8 | RECV);
            t.recv_armed = true;
            // SAFETY: the receive lands in the provided buffers, which live with the ring.
            unsafe { self.push(entry) }
        }

        /// Send what `block` is: the OACK (0) or DATA.
        fn send(&mut self, slot: usize) -> io::Result<()> {
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return Ok(());
            };
            if t.send_pending {
                return Ok(()); // a resend while the last send is in flight: skipped
            }
            t.out.clear();
            if let (0, Some(oack)) = (t.block, &t.oack) {
                t.out.extend_from_slice(oack);
            } else {
                let (header, block) = data_block(&t.file, t.blksize, t.block);
                t.out.extend_from_slice(&header);
                t.out.extend_from_slice(block);
            }
            let fd = types::Fd(t.sock.as_raw_fd());
            let entry = op::Send::new(fd, t.out.as_ptr(), t.out.len() as u32)
                .build()
                .user_data((slot as u64) << 8 | SEND);
            t.send_pending = true;
            // SAFETY: `out` is not touched again until this send completes (`send_pending`),
            // and the box lives until then.
            unsafe { self.push(entry) }
        }

        fn on_listener(&mut self) {
            for _ in 0..256 {
                match next_request(&self.listener, &mut self.buf, &self.peers) {
                    Next::Drained => return,
                    Next::Skipped => {}
                    Next::Request(req) => {
                        if let Err(e) = self.start(&req) {
                            eprintln!("tftp-floor: {} {}: {e}", req.peer, req.file);
                        }
                    }
                }
            }
        }

        fn start(&mut self, req: &Request) -> io::Result<()> {
            let sock = UdpSocket::bind(SocketAddr::new(self.listener.local_addr()?.ip(), 0))?;
            sock.set_nonblocking(true)?;
            sock.connect(req.peer)?;
            let file = match cached(&mut self.files, self.root, &req.file) {
                Ok(file) => file,
                Err(e) => {
                    sock.send(&error_packet(error_code(&e), &e.to_string()))?;
                    return Err(e);
                }
            };
            let blksize = req.blksize.unwrap_or(512);
            let oack = oack(req, file.len());
            let last = file.len() / blksize + 1;
            let block = if oack.is_some() { 0 } else { 1 };
            let transfer = Box::new(Transfer {
                sock,
                peer: req.peer,
                file,
                blksize,
                block,
                last,
                oack,
                sent_at: Instant::now(),
                resends: 0,
                out: Vec::with_capacity(4 + blksize),
                recv_armed: false,
                send_pending: false,
                ended: false,
            });
            let slot = self.free.pop().unwrap_or(self.slots.len());
            if slot == self.slots.len() {
                self.slots.push(None);
            }
            self.peers.insert(req.peer, slot);
            self.slots[slot] = Some(transfer);
            self.send(slot)?;
            self.arm_recv(slot)
        }

        fn on_recv(&mut self, slot: usize, result: i32, flags: u32) -> io::Result<()> {
            let more = io_uring::cqueue::more(flags);
            let bid = io_uring::cqueue::buffer_select(flags);
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return Ok(());
            };
            if !more {
                t.recv_armed = false;
            }
            let mut over = t.ended || (result < 0 && result != -libc::ENOBUFS);
            if let (Some(bid), false, true) = (bid, over, result >= 0) {
                let n = (result as usize).min(BUFFER_LEN);
                let at = usize::from(bid) * BUFFER_LEN;
                let p = &self.input[at..at + n];
                match opcode(p) {
                    _ if acks(p, t.block) => {
                        if t.block == t.last {
                            over = true;
                        } else {
                            t.block += 1;
                            t.oack = None;
                            t.resends = 0;
                            t.sent_at = Instant::now();
                            self.send(slot)?;
                        }
                    }
                    Some(ERROR) => over = true,
                    _ => {} // a duplicate ACK or junk
                }
            }
            if let Some(bid) = bid {
                let ptr = self.input[usize::from(bid) * BUFFER_LEN..].as_mut_ptr();
                let entry = op::ProvideBuffers::new(ptr, BUFFER_LEN as i32, 1, GROUP, bid)
                    .build()
                    .user_data(PROVIDE)
                    .flags(squeue::Flags::SKIP_SUCCESS);
                // SAFETY: the buffers live with the ring.
                unsafe { self.push(entry) }?;
            }
            if over {
                self.end(slot);
                return Ok(());
            }
            if !more {
                self.arm_recv(slot)?;
            }
            Ok(())
        }

        fn on_send(&mut self, slot: usize, result: i32) {
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return;
            };
            t.send_pending = false;
            if t.ended || result < 0 {
                self.end(slot);
            }
        }

        fn sweep(&mut self) -> io::Result<()> {
            let mut due = Vec::new();
            for (slot, t) in self.slots.iter_mut().enumerate() {
                let Some(t) = t else { continue };
                if t.ended || t.sent_at.elapsed() < TIMEOUT {
                    continue;
                }
                t.resends += 1;
                t.sent_at = Instant::now();
                due.push((slot, t.resends > RETRIES));
            }
            for (slot, dead) in due {
                if dead {
                    self.end(slot);
                } else {
                    self.send(slot)?;
                }
            }
            Ok(())
        }

        /// Over: cancel the armed `RECV`, and free the slot once nothing is in flight.
        fn end(&mut self, slot: usize) {
            let Some(Some(t)) = self.slots.get_mut(slot) else {
                return;
            };
            if !t.ended {
                t.ended = true;
                self.peers.remove(&t.peer);
            }
            if t.recv_armed {
                let entry = op::AsyncCancel::new((slot as u64) << 8 | RECV)
                    .build()
                    .user_data((slot as u64) << 8 | CANCEL);
                // SAFETY: a cancellation points to no memory.
                if unsafe { self.push(entry) }.is_err() {
                    eprintln!("tftp-floor: cannot cancel a receive");
                }
                return;
            }
            if !t.send_pending {
                self.slots[slot] = None;
                self.free.push(slot);
            }
        }
    }
}

/// `--concurrent --single-port`: every transfer on the listening socket itself (dnsmasq's
/// `--tftp-single-port`, tftpd's `--single-port`), so the ACKs of many clients are read with
/// one `recvmmsg` and their DATA sent with one `sendmmsg`: issue 15's batching lever, the
/// least a single-port server can spend per packet. The receive blocks for the first datagram
/// (`MSG_WAITFORONE`, [`SWEEP`] at most) and takes what else is queued, up to [`BATCH`]; each
/// datagram is looked up by its sender (a transfer's ACK, else a request); the answers go
/// out together. Resends as in `--concurrent`.
mod single {
    use super::{
        ERROR, RETRIES, TIMEOUT, acks, cached, data_block, error_code, error_packet, oack, opcode,
        parse_rrq,
    };
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const SWEEP: Duration = Duration::from_millis(100);
    /// Datagrams a `recvmmsg` takes, and DATA a `sendmmsg` sends, at most.
    const BATCH: usize = 64;
    /// A request fits (RFC 2347 options included); an ACK is 4 bytes. A line more than 2 KiB,
    /// so that the batch's slots do not start in two cache sets only (as tftpd's
    /// `RecvBatch` slots, which measured fewer misses so).
    const SLOT: usize = 2048 + 64;

    struct Transfer {
        file: Arc<[u8]>,
        blksize: usize,
        block: usize,
        last: usize,
        oack: Option<Vec<u8>>,
        sent_at: Instant,
        resends: u32,
    }

    /// What to send: a transfer's current packet (by peer), or a refusal.
    enum Out {
        Transfer(SocketAddr),
        Refusal(SocketAddr, Vec<u8>),
    }

    fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match s.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the family says it holds a sockaddr_in.
                let sin = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says it holds a sockaddr_in6.
                let sin6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }

    pub(super) fn run(listener: UdpSocket, root: &Path) -> io::Result<Infallible> {
        listener.set_read_timeout(Some(SWEEP))?;
        let fd = listener.as_raw_fd();
        let mut transfers: HashMap<SocketAddr, Transfer> = HashMap::new();
        let mut files = HashMap::new();
        let mut bufs = vec![[0u8; SLOT]; BATCH];
        // SAFETY: all-zero sockaddr_storage values are valid.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut outs: Vec<Out> = Vec::with_capacity(BATCH);
        let mut swept = Instant::now();
        loop {
            let mut iovs: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: SLOT,
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                .map(|i| {
                    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive it.
                    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                    hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
                    hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                    hdr.msg_iov = &mut iovs[i];
                    hdr.msg_iovlen = 1;
                    libc::mmsghdr {
                        msg_hdr: hdr,
                        msg_len: 0,
                    }
                })
                .collect();
            // SAFETY: `msgs` points into `names`, `iovs` and `bufs`, alive for the call.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            let n = if n < 0 { 0 } else { n as usize };
            let now = Instant::now();
            for i in 0..n {
                let len = (msgs[i].msg_len as usize).min(SLOT);
                let Some(peer) = from_sockaddr(&names[i]) else {
                    continue;
                };
                let p = &bufs[i][..len];
                if let Some(t) = transfers.get_mut(&peer) {
                    match opcode(p) {
                        _ if acks(p, t.block) => {
                            if t.block == t.last {
                                transfers.remove(&peer);
                                continue;
                            }
                            t.block += 1;
                            t.oack = None;
                            t.resends = 0;
                            t.sent_at = now;
                            outs.push(Out::Transfer(peer));
                        }
                        Some(ERROR) => {
                            transfers.remove(&peer);
                        }
                        _ => {} // a duplicate ACK, a resent RRQ, or junk
                    }
                    continue;
                }
                let Some(req) = parse_rrq(p, peer) else {
                    outs.push(Out::Refusal(peer, error_packet(4, "read requests only")));
                    continue;
                };
                let file = match cached(&mut files, root, &req.file) {
                    Ok(file) => file,
                    Err(e) => {
                        let refusal = error_packet(error_code(&e), &e.to_string());
                        outs.push(Out::Refusal(peer, refusal));
                        continue;
                    }
                };
                let blksize = req.blksize.unwrap_or(512);
                let oack = oack(&req, file.len());
                let last = file.len() / blksize + 1;
                let block = if oack.is_some() { 0 } else { 1 };
                let t = Transfer {
                    file,
                    blksize,
                    block,
                    last,
                    oack,
                    sent_at: now,
                    resends: 0,
                };
                transfers.insert(peer, t);
                outs.push(Out::Transfer(peer));
            }
            if swept.elapsed() >= SWEEP {
                let mut dead = Vec::new();
                for (peer, t) in &mut transfers {
                    if t.sent_at.elapsed() < TIMEOUT {
                        continue;
                    }
                    t.resends += 1;
                    t.sent_at = Instant::now();
                    if t.resends > RETRIES {
                        dead.push(*peer);
                    } else {
                        outs.push(Out::Transfer(*peer));
                    }
                }
                for peer in dead {
                    transfers.remove(&peer);
                }
                swept = Instant::now();
            }
            for chunk in outs.chunks(BATCH) {
                send_batch(fd, chunk, &transfers);
            }
            outs.clear();
        }
    }

    /// One `sendmmsg` (more if the kernel takes fewer) for `outs`.
    fn send_batch(fd: libc::c_int, outs: &[Out], transfers: &HashMap<SocketAddr, Transfer>) {
        let mut headers = [[0u8; 4]; BATCH];
        let mut addrs = Vec::with_capacity(outs.len());
        let mut iovs: Vec<[libc::iovec; 2]> = Vec::with_capacity(outs.len());
        for (i, out) in outs.iter().enumerate() {
            let (peer, parts): (&SocketAddr, [&[u8]; 2]) = match out {
                Out::Refusal(peer, p) => (peer, [p, &[]]),
                Out::Transfer(peer) => {
                    let Some(t) = transfers.get(peer) else {
                        continue;
                    };
                    match (t.block, &t.oack) {
                        (0, Some(oack)) => (peer, [oack, &[]]),
                        _ => {
                            let (header, block) = data_block(&t.file, t.blksize, t.block);
                            headers[i] = header;
                            (peer, [&headers[i][..], block])
                        }
                    }
                }
            };
            addrs.push(sockaddr(peer));
            iovs.push(parts.map(|part| libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            }));
        }
        let mut msgs: Vec<libc::mmsghdr> = (0..iovs.len())
            .map(|i| {
                // SAFETY: an all-zero msghdr is valid; the pointers set below outlive it.
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_name = (&mut addrs[i].0 as *mut libc::sockaddr_storage).cast();
                hdr.msg_namelen = addrs[i].1;
                hdr.msg_iov = iovs[i].as_mut_ptr();
                hdr.msg_iovlen = if iovs[i][1].iov_len == 0 { 1 } else { 2 };
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        let mut sent = 0;
        while sent < msgs.len() {
            // SAFETY: `msgs` points into `addrs`, `iovs`, `headers` and the files, alive here.
            let n = unsafe {
                libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (msgs.len() - sent) as u32, 0)
            };
            if n <= 0 {
                // A failed datagram is a loss: skip it, the resend covers it.
                sent += 1;
            } else {
                sent += n as usize;
            }
        }
    }
}
