//! `tftpd::engine::OnLoops`: async (tokio) handlers, readers, writers and completions behind
//! tftp-blocking's event loops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tftp_blocking::{Client, Mode, OptionValues, Server, ServerOptions};
use tftp_tokio::{Handler, HandlerError, ReadResponse, Request, WriteResponse};
use tftpd::engine::OnLoops;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Streams `size` bytes through a pipe fed by a task that sleeps between chunks (the
/// reader's wake-ups come from the runtime's timer and another task); uploads go through a
/// pipe whose far end is drained by a task, and the completion checks what arrived there,
/// which it can only see whole once the sink was closed.
struct Piped {
    size: usize,
    uploads: Uploads,
}

/// Completed uploads: name and bytes.
type Uploads = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

fn pattern(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}

impl Handler for Piped {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        if request.filename == "bytes" {
            return Ok(ReadResponse::from_bytes(b"in memory".to_vec()));
        }
        if request.filename != "stream" {
            return Err(HandlerError::not_found());
        }
        let (mut tx, rx) = tokio::io::duplex(4096);
        let data = pattern(self.size);
        tokio::spawn(async move {
            for chunk in data.chunks(10_000) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                if tx.write_all(chunk).await.is_err() {
                    return;
                }
            }
        });
        Ok(ReadResponse::new(rx, Some(self.size as u64)))
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let (tx, mut rx) = tokio::io::duplex(4096);
        let (done, arrived) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut all = Vec::new();
            let _ = rx.read_to_end(&mut all).await;
            let _ = done.send(all);
        });
        let (name, uploads) = (request.filename.clone(), Arc::clone(&self.uploads));
        Ok(WriteResponse::new(tx).on_complete(move || async move {
            // Ends only when the sink was shut down (closed) before the completion.
            let all = tokio::time::timeout(Duration::from_secs(5), arrived)
                .await
                .map_err(|_| HandlerError::new(tftp_tokio::ErrorCode::NOT_DEFINED, "not closed"))?
                .map_err(|_| HandlerError::new(tftp_tokio::ErrorCode::NOT_DEFINED, "lost"))?;
            if name == "refuse" {
                return Err(HandlerError::new(
                    tftp_tokio::ErrorCode::DISK_FULL,
                    "no room",
                ));
            }
            uploads.lock().unwrap().push((name, all));
            Ok(())
        }))
    }
}

fn serve(runtime: &tokio::runtime::Runtime, handler: Piped) -> (SocketAddr, impl FnOnce()) {
    let handler = OnLoops::new(handler, runtime.handle().clone());
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap();
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = std::thread::spawn(move || server.serve());
    (addr, move || {
        stop.shutdown();
        serving.join().unwrap().unwrap();
    })
}

#[test]
fn async_readers_and_bytes_are_served_on_the_loops() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let size = 300_000;
    let uploads = Arc::default();
    let (addr, stop) = serve(&runtime, Piped { size, uploads });
    let options = OptionValues {
        blksize: Some(1468),
        tsize: Some(0),
        ..Default::default()
    };
    let mut got = Vec::new();
    Client::new()
        .get(addr, "stream", Mode::Octet, options, &mut got)
        .unwrap();
    assert_eq!(got, pattern(size));
    let mut got = Vec::new();
    Client::new()
        .get(addr, "bytes", Mode::Octet, Default::default(), &mut got)
        .unwrap();
    assert_eq!(got, b"in memory");
    let missing = Client::new().get(addr, "nope", Mode::Octet, Default::default(), Vec::new());
    assert!(missing.unwrap_err().to_string().contains("not found"));
    stop();
}

#[test]
fn async_uploads_are_closed_before_their_completion_runs() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let uploads: Uploads = Arc::default();
    let handler = Piped {
        size: 0,
        uploads: Arc::clone(&uploads),
    };
    let (addr, stop) = serve(&runtime, handler);
    let data = pattern(100_000);
    Client::new()
        .put(addr, "up", Mode::Octet, Default::default(), &data[..])
        .unwrap();
    assert_eq!(
        *uploads.lock().unwrap(),
        vec![("up".to_string(), data.clone())]
    );
    // A completion's error is the client's.
    let refused = Client::new().put(addr, "refuse", Mode::Octet, Default::default(), &data[..]);
    assert!(refused.unwrap_err().to_string().contains("no room"));
    assert_eq!(uploads.lock().unwrap().len(), 1);
    stop();
}

/// Records the thread each read is answered on: `now` answers at its first poll, `later`
/// after a timer of the runtime's, `spawned` after handing its bytes through a task it spawns.
struct Where(Arc<Mutex<Vec<(String, String)>>>);

impl Handler for Where {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        match request.filename.as_str() {
            "later" => tokio::time::sleep(Duration::from_millis(20)).await,
            "spawned" => {
                let task = tokio::spawn(async { b"from a task".to_vec() });
                let bytes = task.await.map_err(|_| HandlerError::not_found())?;
                return Ok(ReadResponse::from_bytes(bytes));
            }
            _ => {}
        }
        let thread = std::thread::current().name().unwrap_or("").to_string();
        self.0
            .lock()
            .unwrap()
            .push((request.filename.clone(), thread));
        Ok(ReadResponse::from_bytes(
            request.filename.clone().into_bytes(),
        ))
    }
}

fn answered_on(on_loops: bool) -> Vec<(String, String)> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::default();
    let handler =
        OnLoops::new(Where(Arc::clone(&seen)), runtime.handle().clone()).reads_on_loops(on_loops);
    let options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(handler, options).unwrap().workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = std::thread::Builder::new()
        .name("the-loop".into())
        .spawn(move || server.serve())
        .unwrap();
    for (file, expected) in [
        ("now", &b"now"[..]),
        ("later", b"later"),
        ("spawned", b"from a task"),
    ] {
        let mut got = Vec::new();
        Client::new()
            .get(addr, file, Mode::Octet, Default::default(), &mut got)
            .unwrap();
        assert_eq!(got, expected, "{file}");
    }
    stop.shutdown();
    serving.join().unwrap().unwrap();
    seen.lock().unwrap().clone()
}

#[test]
fn reads_ready_at_their_first_poll_are_answered_on_the_loop() {
    let pair = |file: &str, thread: &str| (file.to_string(), thread.to_string());
    // A read that waits (a timer) is asked again on the pool, from the start; one that spawns
    // a task runs in the runtime's context on the loop too.
    assert_eq!(
        answered_on(true),
        [pair("now", "the-loop"), pair("later", "tftp-io")]
    );
    // Off (the default): every read on the pool.
    assert_eq!(
        answered_on(false),
        [pair("now", "tftp-io"), pair("later", "tftp-io")]
    );
}
