//! One event loop: listeners and transfer sockets on mio, a timer heap, and the results of
//! pool jobs. It never blocks on anything but `Poll::poll`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tftp_common::server::bind_transfer;
use tftp_common::{Decision, HandlerError, Permit, Request, ServerCore};
use tftp_proto::{ErrorCode, ErrorReply, Event, Output, RequestKind, ServerSession};

use crate::data::{Data, Done, Io};
use crate::handler::Handler;
use crate::pool::{Mailbox, Pool, lock};
use crate::server::{Server, ShutdownHandle};

const WAKER: Token = Token(usize::MAX);

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

/// What a loop's sessions share.
struct Ctx {
    core: Arc<ServerCore>,
    pool: Arc<Pool>,
    mailbox: Mailbox,
    listeners: Vec<(UdpSocket, SocketAddr)>,
}

impl Entry {
    /// Drain the session's output (the rules of `tftp_common::drive`): `None` once it closed,
    /// else the deadline to wait for.
    fn drive(&mut self, id: usize, ctx: &Ctx) -> Option<Option<Instant>> {
        let State::Running(session, data) = &mut self.state else {
            return Some(None);
        };
        let now = Instant::now();
        loop {
            let step = match session.poll_output(now) {
                Output::Transmit(t) => {
                    ctx.send(&self.socket, t.destination, t.contents);
                    Ok(())
                }
                Output::Fill(fill) => data.fill(fill),
                Output::Store(store) => data.store(store),
                Output::Event(Event::Finished(stats)) => {
                    ctx.core.session_finished(&self.request, stats);
                    Ok(())
                }
                Output::Event(_) => Ok(()),
                Output::Wait(deadline) => {
                    ctx.pump(id, data);
                    return Some(deadline);
                }
                Output::Closed => return None,
            };
            match step {
                Ok(()) => {}
                // Blocked on the pool, unless a job could be started just now.
                Err(None) if ctx.pump(id, data) => {}
                Err(None) => return Some(session.poll_timeout()),
                Err(Some(e)) => session.abort(now, e.code, &e.message),
            }
        }
    }
}

impl Ctx {
    fn send(&self, socket: &Sock, to: SocketAddr, bytes: &[u8]) {
        let socket = match socket {
            Sock::Own(s) => Some(s),
            Sock::Listener(i) => self.listeners.get(*i).map(|(s, _)| s),
        };
        // A full send buffer is a loss: the retransmission timer covers it.
        if let Some(Err(e)) = socket.map(|s| s.send_to(bytes, to)) {
            tracing::debug!(%to, error = %e, "send failed");
        }
    }

    fn reply(&self, socket: &Sock, to: SocketAddr, reply: &ErrorReply) {
        let mut out = [0u8; 516];
        let n = reply.encode(&mut out);
        self.send(socket, to, &out[..n]);
    }

    /// Start the transfer's due pool job, if any.
    fn pump(&self, id: usize, data: &mut Data) -> bool {
        data.job()
            .map(|job| self.pool.spawn(&self.mailbox, id, job))
            .is_some()
    }
}

/// One event loop: its share of the listeners' requests, and the sessions it accepted.
pub(crate) struct Worker<H> {
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
    /// The first loop calls the statistics callback.
    stats_due: Option<Instant>,
}

impl<H: Handler> Worker<H> {
    pub(crate) fn new(server: &Server<H>, pool: &Arc<Pool>, first: bool) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        lock(&server.shutdown.0.1).push(Arc::clone(&waker));
        let mut listeners = Vec::new();
        for (i, s) in server.listeners.iter().enumerate() {
            let mut socket = UdpSocket::from_std(s.try_clone()?);
            let token = Token(i);
            poll.registry()
                .register(&mut socket, token, Interest::READABLE)?;
            listeners.push((socket, s.local_addr()?));
        }
        let (tx, inbox) = mpsc::channel();
        let core = Arc::clone(&server.core);
        let stats_due = (first && core.wants_stats()).then(|| Instant::now() + period(&core));
        Ok(Worker {
            handler: Arc::clone(&server.handler),
            next_id: listeners.len(),
            ctx: Ctx {
                core,
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
            stats_due,
        })
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut kill_at = None;
        loop {
            let now = Instant::now();
            if kill_at.is_none() && self.shutdown.triggered() {
                kill_at = Some(now + self.ctx.core.config.shutdown_grace);
            }
            if let Some(due) = self.stats_due.filter(|&due| now >= due) {
                self.ctx.core.report_interval(now);
                self.stats_due = Some(due.max(now) + period(&self.ctx.core));
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
            match self.poll.poll(&mut events, timeout) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
            let accepting = !self.shutdown.triggered();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.inbox(),
                    Token(i) if i < self.ctx.listeners.len() => self.listen(i, accepting),
                    Token(id) => self.receive(id),
                }
            }
        }
    }

    /// Drain a listener (edge-triggered: until it would block).
    fn listen(&mut self, i: usize, accepting: bool) {
        while let Some((socket, local)) = self.ctx.listeners.get(i) {
            let local = *local;
            let (n, peer) = match socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::debug!(error = %e, "listener recv failed");
                    continue;
                }
            };
            let route = self.routes.get(&peer).copied();
            let now = Instant::now();
            match (self.ctx.core).on_datagram(
                local,
                peer,
                &self.buf[..n],
                now,
                route.is_some(),
                accepting,
            ) {
                Decision::Ignore => {}
                Decision::Route => {
                    if let Some(id) = route {
                        self.deliver(id, peer, n);
                    }
                }
                Decision::Reply(reply) => self.ctx.reply(&Sock::Listener(i), peer, &reply),
                Decision::Accept(request, permit) => self.accept(i, local, request, permit),
            }
        }
    }

    /// Open the transfer, and ask the handler on the pool.
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
                let token = Token(id);
                self.poll
                    .registry()
                    .register(&mut s, token, Interest::READABLE)?;
                Ok(s)
            });
            match opened {
                Ok(s) => Sock::Own(s),
                Err(e) => {
                    let reply = self.ctx.core.no_transfer_socket(&request, &e);
                    return self.ctx.reply(&Sock::Listener(listener), peer, &reply);
                }
            }
        };
        let (handler, asked) = (Arc::clone(&self.handler), request.clone());
        self.ctx.pool.spawn(&self.ctx.mailbox, id, move || {
            Done::Answer(match asked.kind {
                RequestKind::Read => {
                    (handler.read(&asked)).map(|r| (r.size, r.limits, Io::Read(r.reader)))
                }
                RequestKind::Write => (handler.write(&asked))
                    .map(|w| (None, w.limits, Io::Write(w.writer, w.complete))),
            })
        });
        let (state, armed, _permit, started) = (State::Pending, None, permit, now);
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
        while let Some(Sock::Own(socket)) = self.sessions.get(&id).map(|e| &e.socket) {
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
                // The session is gone: drop its reader or writer off the loop.
                self.ctx.pool.execute(move || drop(done));
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
                    e.state = State::Running(session, Data::new(io));
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
                (State::Running(_, data), _) => data.fail(panicked()),
            }
            self.drive(id);
        }
    }

    fn drive(&mut self, id: usize) {
        let Some(e) = self.sessions.get_mut(&id) else {
            return;
        };
        match e.drive(id, &self.ctx) {
            Some(Some(deadline)) if e.armed.is_none_or(|armed| deadline < armed) => {
                e.armed = Some(deadline);
                self.timers.push(Reverse((deadline, id)));
            }
            Some(_) => {}
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
        if let State::Running(_, data) = e.state {
            // Its `Drop` may block (an upload removes its temporary file).
            self.ctx.pool.execute(move || drop(data));
        }
    }

    /// The grace period is over: abort every transfer, and refuse the requests whose handler
    /// has not answered.
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
    }
}

/// The statistics period (a zero period would spin).
fn period(core: &ServerCore) -> Duration {
    core.config.stats_interval.max(Duration::from_millis(1))
}
