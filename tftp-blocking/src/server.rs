//! The server: listeners and sessions on an epoll loop (mio); handler calls, source reads and
//! sink writes on the I/O thread pool.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket as StdSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tftp_common::server::{ServerOptions, bind_transfer};
use tftp_common::{Decision, HandlerError, Permit, Request, ServerCore, StatsCollector};
use tftp_proto::{ErrorCode, ErrorReply, Event, OptionLimits, Output, RequestKind, ServerSession};

use crate::handler::{Completion, Handler};
use crate::pool::{Mailbox, Pool, lock};

/// Source bytes read ahead, and sink bytes written behind, per session and per pool job.
const CHUNK: usize = 64 * 1024;
const WAKER: Token = Token(usize::MAX);

/// A TFTP server around a [`Handler`] (fbtftp's `BaseServer`), on its own threads.
///
/// ```no_run
/// use tftp_blocking::{DirHandler, Server, ServerOptions};
///
/// let handler = DirHandler::new("/srv/tftp", Default::default())?;
/// let options = ServerOptions::new()
///     .listen("[::]:69".parse().unwrap())
///     .on_stats(|s| println!("{} sessions in the last minute", s.sessions_started));
/// let server = Server::bind(handler, options)?.workers(2);
/// let stop = server.shutdown_handle(); // e.g. for a signal handler thread
/// server.serve()
/// # ; Ok::<(), std::io::Error>(())
/// ```
pub struct Server<H> {
    handler: Arc<H>,
    core: Arc<ServerCore>,
    listeners: Vec<Arc<StdSocket>>,
    workers: usize,
    io_threads: usize,
    shutdown: ShutdownHandle,
}

impl<H> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("core", &self.core)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// Stops a running [`Server`] from any thread: it stops accepting, lets running transfers
/// finish for up to [`tftp_common::ServerConfig::shutdown_grace`], aborts the rest with ERROR
/// "Server shutting down", and [`Server::serve`] returns.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle(Arc<(AtomicBool, Mutex<Vec<Arc<Waker>>>)>);

impl ShutdownHandle {
    /// Begin the graceful shutdown (idempotent).
    pub fn shutdown(&self) {
        self.0.0.store(true, Ordering::SeqCst);
        for waker in lock(&self.0.1).iter() {
            let _ = waker.wake();
        }
    }

    fn triggered(&self) -> bool {
        self.0.0.load(Ordering::SeqCst)
    }
}

impl<H: Handler> Server<H> {
    /// Bind the listeners of `options`. One event loop thread, up to 64 I/O threads.
    pub fn bind(handler: H, options: ServerOptions) -> io::Result<Self> {
        let listeners = options.bind_all()?;
        if listeners.is_empty() {
            let e = "no address to listen on";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        Ok(Server {
            handler: Arc::new(handler),
            core: ServerCore::new(&options),
            listeners,
            workers: 1,
            io_threads: 64,
            shutdown: ShutdownHandle::default(),
        })
    }

    /// Run `n` event loops, each on its own thread, all reading the listeners; a session
    /// stays on the loop that accepted it. Single-port mode always runs one loop (all its
    /// datagrams arrive on one socket).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// At most `n` threads for handler calls and data I/O (started on demand, stopped after
    /// 10 s idle). Each blocked call holds one; beyond `n`, calls wait for a free thread.
    pub fn io_threads(mut self, n: usize) -> Self {
        self.io_threads = n.max(1);
        self
    }

    /// The addresses the listeners are bound to.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.listeners.iter().map(|s| s.local_addr()).collect()
    }

    /// Running totals (for a metrics endpoint).
    pub fn stats(&self) -> &StatsCollector {
        self.core.stats()
    }

    /// A handle that shuts the server down once it serves.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serve on this thread (plus `workers - 1` more) until a [`ShutdownHandle`] is triggered,
    /// then shut down gracefully, report the last partial statistics interval, and return.
    pub fn serve(self) -> io::Result<()> {
        let pool = Pool::new(self.io_threads);
        let n = if self.core.config.single_port {
            1
        } else {
            self.workers
        };
        let mut loops = Vec::new();
        for i in 0..n {
            loops.push(Worker::new(&self, &pool, i == 0)?);
        }
        let mut loops = loops.into_iter();
        let first = loops.next();
        let mut threads = Vec::new();
        let mut result = Ok(());
        for worker in loops {
            let name = "tftp-loop".to_string();
            match std::thread::Builder::new()
                .name(name)
                .spawn(|| worker.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => result = Err(e),
            }
        }
        if let (Ok(()), Some(first)) = (&result, first) {
            result = first.run();
        }
        // Stop the other loops too if this one failed.
        self.shutdown.shutdown();
        for t in threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("event loop panicked")));
            result = result.and(r);
        }
        pool.close();
        if self.core.wants_stats() {
            self.core.report_interval(Instant::now());
        }
        result
    }

    /// Serve until `shutdown` (run on a thread of its own, e.g. waiting for a signal or a
    /// channel) returns; then as [`Server::serve`] after a [`ShutdownHandle`].
    pub fn serve_until(self, shutdown: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let handle = self.shutdown_handle();
        std::thread::Builder::new()
            .name("tftp-shutdown".into())
            .spawn(move || {
                shutdown();
                handle.shutdown();
            })?;
        self.serve()
    }
}

/// A session's data, moved to the pool for each job and back.
enum Io {
    Read(Box<dyn Read + Send>),
    Write(Box<dyn Write + Send>, Option<Completion>),
}

/// A pool job's result: the handler's answer, or a data chunk read (bytes) or written.
enum Done {
    Answer(Result<(Option<u64>, Option<OptionLimits>, Io), HandlerError>),
    /// The I/O back, bytes read, and the end if reached: EOF / completion, or the error.
    Data(Io, Vec<u8>, Option<Result<(), HandlerError>>),
}

/// The read-ahead (sending) or write-behind (receiving) buffer of a session.
struct Data {
    /// `None` while a job has it.
    io: Option<Io>,
    buf: Vec<u8>,
    /// Bytes of `buf` already copied into blocks (sending).
    pos: usize,
    /// The last block is in `buf` or written (receiving).
    last: bool,
    /// The source ended or failed; the upload completed or failed.
    end: Option<Result<(), HandlerError>>,
}

impl Data {
    /// Start a job if one is due: reading when under half a chunk is left, writing a full
    /// chunk, or the rest and the completion after the last block.
    fn pump(&mut self, id: usize, ctx: &Ctx) {
        if self.end.is_some() {
            return;
        }
        match self.io.take() {
            Some(Io::Read(mut reader)) if self.buf.len() - self.pos < CHUNK / 2 => {
                ctx.pool.spawn(&ctx.mailbox, id, move || {
                    let mut chunk = Vec::new();
                    let read = reader.by_ref().take(CHUNK as u64).read_to_end(&mut chunk);
                    let end = match read {
                        Ok(n) if n < CHUNK => Some(Ok(())),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "data source failed");
                            Some(Err(HandlerError::from(&e)))
                        }
                    };
                    Done::Data(Io::Read(reader), chunk, end)
                });
            }
            Some(Io::Write(mut writer, mut complete)) if self.last || self.buf.len() >= CHUNK => {
                let (bytes, last) = (std::mem::take(&mut self.buf), self.last);
                ctx.pool.spawn(&ctx.mailbox, id, move || {
                    let flush =
                        |w: &mut Box<dyn Write + Send>| if last { w.flush() } else { Ok(()) };
                    let r = writer.write_all(&bytes).and_then(|()| flush(&mut writer));
                    let mut r = r.map_err(|e| HandlerError::from(&e));
                    if last && r.is_ok() {
                        r = complete.take().map_or(Ok(()), |f| f());
                    }
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "data sink failed");
                    }
                    let end = (last || r.is_err()).then_some(r);
                    Done::Data(Io::Write(writer, complete), Vec::new(), end)
                });
            }
            io => self.io = io,
        }
    }

    fn done(&mut self, io: Io, bytes: Vec<u8>, end: Option<Result<(), HandlerError>>) {
        self.io = Some(io);
        if self.pos == self.buf.len() {
            self.buf = bytes;
        } else {
            self.buf.drain(..self.pos);
            self.buf.extend_from_slice(&bytes);
        }
        self.pos = 0;
        self.end = end;
    }
}

// Nearly every entry is running: boxing the session would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum State {
    /// The handler has not answered yet.
    Pending,
    Running(ServerSession, Data),
}

/// The transfer's socket: its own (RFC 1350 transfer ID), or a listener (single-port mode).
enum Sock {
    Own(UdpSocket),
    Listener(usize),
}

struct Entry {
    request: Request,
    started: Instant,
    _permit: Permit,
    socket: Sock,
    state: State,
    /// The deadline of this session's live entry in the timer heap.
    armed: Option<Instant>,
}

impl Entry {
    /// Drain the session's output: `None` once it closed, else the deadline to wait for.
    fn drive(&mut self, id: usize, ctx: &Ctx) -> Option<Option<Instant>> {
        let State::Running(session, data) = &mut self.state else {
            return Some(None);
        };
        let now = Instant::now();
        let deadline = loop {
            match session.poll_output(now) {
                Output::Transmit(t) => ctx.send(&self.socket, t.destination, t.contents),
                Output::Fill(fill) if data.pos < data.buf.len() => {
                    data.pos += fill.write(&data.buf[data.pos..]);
                }
                Output::Fill(fill) => match &data.end {
                    Some(Ok(())) => fill.finish(),
                    Some(Err(e)) => session.abort(now, e.code, &e.message),
                    None => {
                        data.pump(id, ctx);
                        break session.poll_timeout();
                    }
                },
                Output::Store(mut store) => match &data.end {
                    Some(Ok(())) => store.stored(),
                    Some(Err(e)) => session.abort(now, e.code, &e.message),
                    None if data.last || data.buf.len() >= CHUNK => {
                        data.pump(id, ctx);
                        if data.last || data.buf.len() >= CHUNK {
                            break session.poll_timeout();
                        }
                    }
                    None => {
                        data.buf.extend_from_slice(store.data());
                        data.last = store.is_last();
                        if !data.last {
                            store.stored();
                        }
                    }
                },
                Output::Event(Event::Finished(stats)) => {
                    ctx.core.session_finished(&self.request, stats);
                }
                Output::Event(_) => {}
                Output::Wait(deadline) => {
                    data.pump(id, ctx);
                    break deadline;
                }
                Output::Closed => return None,
            }
        };
        Some(deadline)
    }
}

/// What a loop's sessions share.
struct Ctx {
    core: Arc<ServerCore>,
    pool: Arc<Pool>,
    mailbox: Mailbox<Done>,
    listeners: Vec<(UdpSocket, SocketAddr)>,
}

impl Ctx {
    fn send(&self, socket: &Sock, to: SocketAddr, bytes: &[u8]) {
        let socket = match socket {
            Sock::Own(s) => s,
            Sock::Listener(i) => match self.listeners.get(*i) {
                Some((s, _)) => s,
                None => return,
            },
        };
        // A full send buffer is a loss: the retransmission timer covers it.
        if let Err(e) = socket.send_to(bytes, to) {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    fn reply(&self, socket: &Sock, to: SocketAddr, reply: &ErrorReply) {
        let mut out = [0u8; 516];
        let n = reply.encode(&mut out);
        self.send(socket, to, &out[..n]);
    }
}

/// One event loop: its share of the listeners' requests, and the sessions it accepted.
struct Worker<H> {
    handler: Arc<H>,
    ctx: Ctx,
    poll: Poll,
    inbox: Receiver<(usize, Option<Done>)>,
    sessions: HashMap<usize, Entry>,
    /// Single-port mode: the session of each client transfer ID.
    routes: HashMap<SocketAddr, usize>,
    /// (deadline, session), lazily invalidated: an entry counts only if it is still `armed`.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    next_id: usize,
    buf: Vec<u8>,
    shutdown: ShutdownHandle,
    stats_due: Option<Instant>,
}

impl<H: Handler> Worker<H> {
    fn new(server: &Server<H>, pool: &Arc<Pool>, first: bool) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        lock(&server.shutdown.0.1).push(Arc::clone(&waker));
        let (tx, inbox) = mpsc::channel();
        let mut listeners = Vec::new();
        for (i, s) in server.listeners.iter().enumerate() {
            let mut socket = UdpSocket::from_std(s.try_clone()?);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            listeners.push((socket, s.local_addr()?));
        }
        let period = server
            .core
            .config
            .stats_interval
            .max(Duration::from_millis(1));
        Ok(Worker {
            handler: Arc::clone(&server.handler),
            stats_due: (first && server.core.wants_stats()).then(|| Instant::now() + period),
            next_id: listeners.len(),
            ctx: Ctx {
                core: Arc::clone(&server.core),
                pool: Arc::clone(pool),
                mailbox: Mailbox { tx, waker },
                listeners,
            },
            poll,
            inbox,
            sessions: HashMap::new(),
            routes: HashMap::new(),
            timers: BinaryHeap::new(),
            buf: vec![0; 65536],
            shutdown: server.shutdown.clone(),
        })
    }

    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut kill_at = None;
        loop {
            let now = Instant::now();
            if kill_at.is_none() && self.shutdown.triggered() {
                kill_at = Some(now + self.ctx.core.config.shutdown_grace);
            }
            if let Some(due) = self.stats_due.filter(|&due| now >= due) {
                self.ctx.core.report_interval(now);
                self.stats_due = Some(due.max(now) + self.ctx.core.config.stats_interval);
            }
            while let Some(&Reverse((deadline, id))) = self.timers.peek() {
                if deadline > now {
                    break;
                }
                self.timers.pop();
                let Some(e) = self.sessions.get_mut(&id) else {
                    continue;
                };
                if e.armed == Some(deadline) {
                    e.armed = None;
                    if let State::Running(session, _) = &mut e.state {
                        session.handle_timeout(now);
                    }
                    self.drive(id);
                }
            }
            if let Some(kill) = kill_at {
                if now >= kill {
                    self.kill(now);
                }
                if self.sessions.is_empty() {
                    return Ok(());
                }
            }
            let next = self.timers.peek().map(|t| t.0.0);
            let next = [next, self.stats_due, kill_at].into_iter().flatten().min();
            let timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let stopping = kill_at.is_some() || self.shutdown.triggered();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.inbox(),
                    Token(i) if i < self.ctx.listeners.len() => self.listen(i, stopping),
                    Token(id) => self.receive(id),
                }
            }
        }
    }

    /// Drain a listener (edge-triggered: until it would block).
    fn listen(&mut self, i: usize, stopping: bool) {
        let single_port = self.ctx.core.config.single_port;
        loop {
            let Some((socket, local)) = self.ctx.listeners.get(i) else {
                return;
            };
            let local = *local;
            let (n, peer) = match socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "listener recv failed");
                    continue;
                }
            };
            let is_request = matches!(self.buf[..n], [0, 1 | 2, ..]);
            if single_port && !is_request {
                if let Some(&id) = self.routes.get(&peer) {
                    self.deliver(id, peer, n);
                }
                continue;
            }
            if stopping {
                continue;
            }
            let now = Instant::now();
            match self.ctx.core.on_datagram(local, peer, &self.buf[..n], now) {
                Decision::Ignore => {}
                Decision::Reply(reply) => self.ctx.reply(&Sock::Listener(i), peer, &reply),
                Decision::Accept(request, permit) => self.accept(i, local, request, permit),
            }
        }
    }

    /// Open the transfer and ask the handler, on the pool.
    fn accept(&mut self, listener: usize, local: SocketAddr, request: Request, permit: Permit) {
        let (id, peer, now) = (self.next_id, request.peer, Instant::now());
        self.next_id += 1;
        let socket = if self.ctx.core.config.single_port {
            if let Some(old) = self.routes.insert(peer, id) {
                // Admission replaced the client's old transfer: drop it silently.
                if let Some(State::Running(s, _)) =
                    self.sessions.get_mut(&old).map(|e| &mut e.state)
                {
                    s.abandon(now);
                }
                self.drive(old);
            }
            Sock::Listener(listener)
        } else {
            let range = self.ctx.core.config.port_range.as_ref();
            let opened = bind_transfer(local.ip(), range).and_then(|s| {
                let mut s = UdpSocket::from_std(s);
                self.poll
                    .registry()
                    .register(&mut s, Token(id), Interest::READABLE)?;
                Ok(s)
            });
            match opened {
                Ok(s) => Sock::Own(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a transfer socket");
                    let msg = "Server busy, try again later";
                    let error = HandlerError::new(ErrorCode::NOT_DEFINED, msg);
                    self.ctx
                        .reply(&Sock::Listener(listener), peer, &error.reply());
                    self.ctx.core.refused(&request, &error, now);
                    return;
                }
            }
        };
        let (handler, asked) = (Arc::clone(&self.handler), request.clone());
        self.ctx.pool.spawn(&self.ctx.mailbox, id, move || {
            Done::Answer(match asked.kind {
                RequestKind::Read => handler
                    .read(&asked)
                    .map(|r| (r.size, r.limits, Io::Read(r.reader))),
                RequestKind::Write => handler
                    .write(&asked)
                    .map(|w| (None, w.limits, Io::Write(w.writer, w.complete))),
            })
        });
        let state = State::Pending;
        let (_permit, started, armed) = (permit, now, None);
        let entry = Entry {
            request,
            started,
            _permit,
            socket,
            state,
            armed,
        };
        self.sessions.insert(id, entry);
    }

    /// Drain a session's own socket.
    fn receive(&mut self, id: usize) {
        loop {
            let Some(Sock::Own(socket)) = self.sessions.get(&id).map(|e| &e.socket) else {
                return;
            };
            match socket.recv_from(&mut self.buf) {
                Ok((n, from)) => self.deliver(id, from, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors surface here on some systems; they are not the peer's words.
                Err(e) => tracing::debug!(error = %e, "recv failed"),
            }
        }
    }

    /// Feed the datagram in `buf[..n]` to session `id`. While the handler has not answered,
    /// nobody knows the transfer port, and a routed datagram is a repeat: drop it.
    fn deliver(&mut self, id: usize, from: SocketAddr, n: usize) {
        if let Some(State::Running(s, _)) = self.sessions.get_mut(&id).map(|e| &mut e.state) {
            s.handle_datagram(Instant::now(), from, &self.buf[..n]);
            self.drive(id);
        }
    }

    /// Results from the pool.
    fn inbox(&mut self) {
        while let Ok((id, done)) = self.inbox.try_recv() {
            let Some(e) = self.sessions.get_mut(&id) else {
                continue;
            };
            let panicked = || HandlerError::new(ErrorCode::NOT_DEFINED, "Server error");
            match (&mut e.state, done) {
                (State::Pending, Some(Done::Answer(Ok((size, limits, io))))) => {
                    let core = &self.ctx.core;
                    let mut session = core.start_session(&e.request, size, limits, e.started);
                    if core.config.single_port && self.routes.get(&e.request.peer) != Some(&id) {
                        session.abandon(Instant::now());
                    }
                    let (buf, pos, last, end) = (Vec::new(), 0, false, None);
                    let io = Some(io);
                    e.state = State::Running(
                        session,
                        Data {
                            io,
                            buf,
                            pos,
                            last,
                            end,
                        },
                    );
                }
                (State::Pending, done) => {
                    let error = match done {
                        Some(Done::Answer(Err(error))) => error,
                        _ => panicked(),
                    };
                    self.ctx.reply(&e.socket, e.request.peer, &error.reply());
                    self.ctx.core.refused(&e.request, &error, e.started);
                    self.close(id);
                    continue;
                }
                (State::Running(_, data), Some(Done::Data(io, bytes, end))) => {
                    data.done(io, bytes, end);
                }
                (State::Running(_, data), _) => data.end = Some(Err(panicked())),
            }
            self.drive(id);
        }
    }

    fn drive(&mut self, id: usize) {
        let Some(e) = self.sessions.get_mut(&id) else {
            return;
        };
        match e.drive(id, &self.ctx) {
            Some(Some(deadline)) => {
                if e.armed.is_none_or(|armed| deadline < armed) {
                    e.armed = Some(deadline);
                    self.timers.push(Reverse((deadline, id)));
                }
            }
            Some(None) => {}
            None => self.close(id),
        }
    }

    fn close(&mut self, id: usize) {
        let Some(mut e) = self.sessions.remove(&id) else {
            return;
        };
        if self.routes.get(&e.request.peer) == Some(&id) {
            self.routes.remove(&e.request.peer);
        }
        if let Sock::Own(s) = &mut e.socket {
            let _ = self.poll.registry().deregister(s);
        }
    }

    /// The grace period is over: abort every transfer.
    fn kill(&mut self, now: Instant) {
        let error = HandlerError::new(ErrorCode::NOT_DEFINED, "Server shutting down");
        let ids: Vec<usize> = self.sessions.keys().copied().collect();
        for id in ids {
            let Some(e) = self.sessions.get_mut(&id) else {
                continue;
            };
            if let State::Running(session, _) = &mut e.state {
                session.abort(now, error.code, &error.message);
                self.drive(id);
            } else {
                self.ctx.reply(&e.socket, e.request.peer, &error.reply());
                self.ctx.core.refused(&e.request, &error, e.started);
                self.close(id);
            }
        }
        // An aborted session closes at once; this only guards against a busy loop.
        self.sessions.clear();
    }
}
