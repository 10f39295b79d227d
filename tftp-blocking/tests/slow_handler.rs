//! A slow handler, a slow source and a slow sink do not stall the other transfers on the same
//! event loop: those complete in well under the stall, and the slow ones complete too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tftp_blocking::{
    Client, Handler, HandlerError, Mode, OptionValues, ReadResponse, Request, Server,
    ServerOptions, WriteResponse,
};

const STALL: Duration = Duration::from_secs(3);

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sleeps in `read` before its first bytes.
struct SlowSource(Option<Duration>, io::Cursor<Vec<u8>>);

impl Read for SlowSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(stall) = self.0.take() {
            thread::sleep(stall);
        }
        self.1.read(buf)
    }
}

/// Sleeps in every `write`.
struct SlowSink(Arc<Mutex<Vec<u8>>>);

impl Write for SlowSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        thread::sleep(STALL);
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Stalling {
    uploaded: Arc<Mutex<Vec<u8>>>,
}

impl Handler for Stalling {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let data = content(100_000);
        match request.filename.as_str() {
            "slow-handler" => {
                thread::sleep(STALL);
                Ok(ReadResponse::from_bytes(data))
            }
            "slow-source" => {
                let size = Some(data.len() as u64);
                Ok(ReadResponse::new(
                    SlowSource(Some(STALL), io::Cursor::new(data)),
                    size,
                ))
            }
            "panic" => panic!("a bug in the handler"),
            _ => Ok(ReadResponse::from_bytes(data)),
        }
    }

    fn write(&self, _: &Request) -> Result<WriteResponse, HandlerError> {
        Ok(WriteResponse::new(SlowSink(Arc::clone(&self.uploaded))))
    }
}

fn get(server: SocketAddr, file: &str) -> Vec<u8> {
    let options = OptionValues {
        blksize: Some(1468),
        ..Default::default()
    };
    let mut data = Vec::new();
    Client::new()
        .get(server, file, Mode::Octet, options, &mut data)
        .unwrap();
    data
}

#[test]
fn slow_handlers_sources_and_sinks_do_not_stall_other_transfers() {
    let uploaded = Arc::default();
    let mut options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    options.config.admission.rate_per_client = None;
    let server = Server::bind(
        Stalling {
            uploaded: Arc::clone(&uploaded),
        },
        options,
    )
    .unwrap()
    // One event loop thread (the default is one a CPU): what stalls must not stall it.
    .workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());

    let started = Instant::now();
    let mut slow: Vec<_> = ["slow-handler", "slow-handler", "slow-source", "slow-source"]
        .into_iter()
        .map(|file| thread::spawn(move || (get(addr, file), started.elapsed())))
        .collect();
    let up = thread::spawn(move || {
        let data = content(5000);
        let options = OptionValues::default();
        Client::new()
            .put(addr, "up", Mode::Octet, options, &data[..])
            .unwrap();
        started.elapsed()
    });
    thread::sleep(Duration::from_millis(100));

    // While those wait, 20 other transfers (10 at a time, 100 KB each) run on the same loop.
    let fast_start = Instant::now();
    for _ in 0..2 {
        let batch: Vec<_> = (0..20)
            .map(|_| thread::spawn(move || get(addr, "fast")))
            .collect();
        for t in batch {
            assert_eq!(t.join().unwrap(), content(100_000));
        }
    }
    let fast = fast_start.elapsed();
    println!("20 transfers during the stalls: {fast:?}");
    // Well under the stall, with room for a loaded machine (they take 0.1 to 0.3 s).
    assert!(fast < STALL / 3, "the other transfers took {fast:?}");

    for t in slow.drain(..) {
        let (data, took) = t.join().unwrap();
        println!("stalled transfer: {took:?}");
        assert_eq!(data, content(100_000));
        assert!(took >= STALL, "{took:?}");
    }
    // Blocks are acknowledged as they are buffered; the final ACK waits for the slow write.
    let took = up.join().unwrap();
    println!("upload into a slow sink: {took:?}");
    assert!(took >= STALL, "{took:?}");
    assert_eq!(*uploaded.lock().unwrap(), content(5000));

    // A panicking handler costs its request, not the server.
    let e = Client::new()
        .get(
            addr,
            "panic",
            Mode::Octet,
            OptionValues::default(),
            Vec::new(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("Server error"), "{e}");
    assert_eq!(get(addr, "fast"), content(100_000));
    stop.shutdown();
    serving.join().unwrap().unwrap();
}
