//! A TFTP server on the standard library alone: one UDP socket, tftp-proto's [`Endpoint`] for
//! the listening side, one [`ServerSession`] per transfer, and a [`Timers`] queue so that
//! thousands of sessions on one thread never scan each other's deadlines. Single-port mode
//! (every transfer on the listening port, as behind NAT), read-only, files from a directory.
//!
//! ```sh
//! cargo run -p tftp-proto --example std_server -- 127.0.0.1:6969 example-root
//! curl -o hello.txt tftp://127.0.0.1:6969/hello.txt
//! ```
//!
//! Buffers: the listening socket's receive buffer takes any datagram (65,536 bytes); each
//! session's window ring is its own (`windowsize × (4 + blksize)`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tftp_proto::timers::Timers;
use tftp_proto::{
    Config, DatagramEvent, Endpoint, EndpointConfig, ErrorCode, ErrorReply, Event, IncomingRequest,
    Output, RequestKind, ServerSession, SessionHandle,
};

/// Serve the files under `root` on `socket` until `stop` is set.
pub fn serve(socket: &UdpSocket, root: &Path, stop: &AtomicBool) -> io::Result<()> {
    let local = socket.local_addr()?;
    let mut server = Server {
        socket,
        endpoint: Endpoint::new(EndpointConfig::default().single_port(true)),
        config: Config::default(),
        sessions: HashMap::new(),
        timers: Timers::new(),
    };
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Wake for the next deadline, and at least every 100 ms to see `stop`.
        let wait = server
            .timers
            .next_deadline()
            .map_or(Duration::MAX, |d| d.saturating_duration_since(now))
            .clamp(Duration::from_millis(1), Duration::from_millis(100));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => server.on_datagram(local, peer, &buf[..n], root),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // ICMP errors from an earlier send surface here on Linux: not fatal.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        let due: Vec<SessionHandle> = server.timers.expired(now).collect();
        for handle in due {
            if let Some((session, _)) = server.sessions.get_mut(&handle) {
                session.handle_timeout(now);
                server.drain(handle);
            }
        }
    }
    Ok(())
}

struct Server<'a> {
    socket: &'a UdpSocket,
    endpoint: Endpoint,
    config: Config,
    sessions: HashMap<SessionHandle, (ServerSession, File)>,
    timers: Timers<Instant, SessionHandle>,
}

impl Server<'_> {
    fn on_datagram(&mut self, local: SocketAddr, peer: SocketAddr, datagram: &[u8], root: &Path) {
        let now = Instant::now();
        match self.endpoint.handle(now, local, peer, datagram) {
            DatagramEvent::NewRequest {
                request, replaces, ..
            } => {
                if let Some(old) = replaces {
                    if let Some((mut session, _)) = self.sessions.remove(&old) {
                        session.abandon(now);
                    }
                    self.endpoint.closed(old);
                }
                match open(root, &request) {
                    Ok((file, size)) => {
                        let handle = self.endpoint.accept(&request);
                        let session = ServerSession::new(&request, &self.config, Some(size), now);
                        self.sessions.insert(handle, (session, file));
                        self.drain(handle);
                    }
                    Err(reply) => {
                        if self.endpoint.may_reply(now) {
                            let _ = self.socket.send_to(&reply.to_vec(), peer);
                        }
                    }
                }
            }
            DatagramEvent::ForSession(handle) => {
                if let Some((session, _)) = self.sessions.get_mut(&handle) {
                    session.handle_datagram(now, peer, datagram);
                    self.drain(handle);
                }
            }
            DatagramEvent::Reply(reply) => {
                let _ = self.socket.send_to(&reply.to_vec(), peer);
            }
            DatagramEvent::Dropped(_) => {}
        }
    }

    /// Drain a session's outputs until it waits or closes.
    fn drain(&mut self, handle: SessionHandle) {
        let now = Instant::now();
        let Some((session, file)) = self.sessions.get_mut(&handle) else {
            return;
        };
        loop {
            match session.poll_output(now) {
                Output::Transmit(t) => {
                    for datagram in t.datagrams() {
                        // A lost send is a lost datagram: the session retransmits.
                        let _ = self.socket.send_to(datagram, t.destination);
                    }
                }
                Output::Fill(mut fill) => match file.read(fill.buf()) {
                    Ok(0) => fill.finish(),
                    Ok(n) => {
                        let _ = fill.advance(n);
                    }
                    Err(_) => session.abort(now, ErrorCode::NOT_DEFINED, "Read error"),
                },
                // Read-only: write requests are refused before a session exists.
                Output::Store(_) => session.abort(now, ErrorCode::ACCESS_VIOLATION, "Read-only"),
                Output::Event(Event::Finished(stats)) => {
                    eprintln!(
                        "{} {:?} ({} bytes)",
                        session.peer(),
                        stats.outcome,
                        stats.bytes
                    );
                }
                Output::Event(_) => {}
                Output::Wait(Some(deadline)) => {
                    self.timers.schedule(deadline, handle);
                    return;
                }
                Output::Wait(None) => return,
                Output::Closed => {
                    self.sessions.remove(&handle);
                    self.endpoint.closed(handle);
                    return;
                }
            }
        }
    }
}

/// Open the file a read request names under `root`, or the ERROR refusing it.
fn open(root: &Path, request: &IncomingRequest) -> Result<(File, u64), ErrorReply> {
    if request.kind == RequestKind::Write {
        return Err(ErrorReply::new(
            ErrorCode::ACCESS_VIOLATION,
            "Read-only server",
        ));
    }
    let denied = || ErrorReply::new(ErrorCode::ACCESS_VIOLATION, "Access violation");
    // Confine the name to `root`: plain components only (`\` separates too, as on Windows).
    let mut path = PathBuf::from(root);
    for part in request.filename.split(['/', '\\']) {
        match Path::new(part).components().next() {
            None | Some(Component::CurDir) => {}
            Some(Component::Normal(c)) if Path::new(part).components().count() == 1 => path.push(c),
            _ => return Err(denied()),
        }
    }
    let file = File::open(&path).map_err(|_| ErrorReply::not_found())?;
    let meta = file.metadata().map_err(|_| denied())?;
    if !meta.is_file() {
        return Err(denied());
    }
    Ok((file, meta.len()))
}

#[allow(dead_code)]
fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6969".into());
    let root = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let socket = UdpSocket::bind(&addr)?;
    eprintln!("serving {} on {}", root.display(), socket.local_addr()?);
    serve(&socket, &root, &AtomicBool::new(false))
}
