//! Thousands of concurrent transfers on one event loop thread. The clients are tftp-proto
//! sessions driven by a mio loop of their own in the test thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use tftp_blocking::tftp_proto::{ClientSession, Config, Event, Output};
use tftp_blocking::{
    Handler, HandlerError, Mode, OptionValues, ReadResponse, Request, Server, ServerOptions,
};

const CLIENTS: usize = 2000;
const SIZE: usize = 8000;

struct Fixed;

impl Handler for Fixed {
    fn read(&self, _: &Request) -> Result<ReadResponse, HandlerError> {
        Ok(ReadResponse::from_bytes(vec![7u8; SIZE]))
    }
}

struct Transfer {
    session: ClientSession,
    socket: UdpSocket,
    data: Vec<u8>,
    finished: bool,
    deadline: Option<Instant>,
}

impl Transfer {
    fn drain(&mut self) {
        loop {
            match self.session.poll_output(Instant::now()) {
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(t.contents, t.destination);
                }
                Output::Store(mut block) => {
                    self.data.extend_from_slice(block.data());
                    block.stored();
                }
                Output::Event(Event::Finished(stats)) => {
                    assert!(stats.is_success(), "{:?}", stats.outcome);
                    self.finished = true;
                }
                Output::Event(_) | Output::Fill(_) => {}
                Output::Wait(deadline) => {
                    self.deadline = deadline;
                    return;
                }
                Output::Closed => {
                    self.deadline = None;
                    return;
                }
            }
        }
    }
}

#[test]
fn thousands_of_concurrent_transfers_on_one_loop() {
    concurrent_transfers(false);
}

/// Single-port mode: every client's ACKs come in on the listener, read in batches of up to
/// 64 a `recvmmsg`, the DATA they cause sent with one `sendmmsg` a batch.
#[test]
fn thousands_of_concurrent_transfers_on_one_single_port_loop() {
    concurrent_transfers(true);
}

fn concurrent_transfers(single_port: bool) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = Arc::clone(&reports);
    let mut options = ServerOptions::new()
        .listen("127.0.0.1:0".parse().unwrap())
        .on_session(move |report| r.lock().unwrap().push(report.stats.outcome.clone()));
    options.config.admission.rate_per_client = None;
    options.config.admission.max_sessions_per_client = CLIENTS;
    options.config.single_port = single_port;
    // One event loop thread (the default is one a CPU): all of them on it.
    let server = Server::bind(Fixed, options).unwrap().workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());

    let started = Instant::now();
    let mut poll = Poll::new().unwrap();
    let config = Config::default();
    let options = OptionValues {
        blksize: Some(512),
        ..Default::default()
    };
    let mut transfers: Vec<Transfer> = (0..CLIENTS)
        .map(|i| {
            let mut socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)
                .unwrap();
            let session =
                ClientSession::get(addr, "f", Mode::Octet, options, &config, Instant::now())
                    .unwrap();
            let (data, finished, deadline) = (Vec::new(), false, None);
            Transfer {
                session,
                socket,
                data,
                finished,
                deadline,
            }
        })
        .collect();
    transfers.iter_mut().for_each(Transfer::drain);

    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    let mut most_active = 0;
    while transfers.iter().any(|t| !t.finished) {
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for event in &events {
            let t = &mut transfers[event.token().0];
            while let Ok((n, from)) = t.socket.recv_from(&mut buf) {
                t.session.handle_datagram(Instant::now(), from, &buf[..n]);
                t.drain();
            }
        }
        let now = Instant::now();
        for t in transfers
            .iter_mut()
            .filter(|t| t.deadline.is_some_and(|d| d <= now))
        {
            t.session.handle_timeout(now);
            t.drain();
        }
        // Transfers under way: answered by the server, not finished.
        let under_way = transfers
            .iter()
            .filter(|t| !t.finished && t.session.stats().packets_received > 0);
        most_active = most_active.max(under_way.count());
    }
    let took = started.elapsed();
    println!("{CLIENTS} transfers of {SIZE} bytes: {took:?}, up to {most_active} at once");
    assert!(transfers.iter().all(|t| t.data == vec![7u8; SIZE]));
    if single_port {
        let port = addr.port();
        assert!(transfers.iter().all(|t| t.session.peer().port() == port));
    }
    stop.shutdown();
    serving.join().unwrap().unwrap();
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), CLIENTS);
    assert!(
        reports
            .iter()
            .all(|o| o.as_ref().is_some_and(|o| o.is_success()))
    );
    assert!(most_active >= CLIENTS / 2, "only {most_active} at once");
}
