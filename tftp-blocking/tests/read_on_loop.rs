//! `Handler::read_on_loop`: a read the handler answers on the event loop costs no pool thread;
//! `None` still goes to `read` on the pool; a panic there fails only its own request. (The
//! bundled `DirHandler`'s reads: `tests/dir_on_loop.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::thread;

use tftp_blocking::{
    Client, ClientError, Handler, HandlerError, Mode, OptionValues, ReadResponse, Request, Server,
    ServerOptions, ShutdownHandle,
};

/// Which method answered, on which thread: (method, thread name).
type Calls = Arc<Mutex<Vec<(&'static str, String)>>>;

/// Answers `quick` on the loop, `slow` on the pool (its `read_on_loop` says `None`), and
/// panics on the loop for `boom`.
struct Split(Calls);

fn here() -> String {
    thread::current().name().unwrap_or("").to_string()
}

impl Handler for Split {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        self.0.lock().unwrap().push(("read", here()));
        Ok(ReadResponse::from_bytes(
            request.filename.clone().into_bytes(),
        ))
    }

    fn read_on_loop(&self, request: &Request) -> Option<Result<ReadResponse, HandlerError>> {
        match request.filename.as_str() {
            "quick" => {
                self.0.lock().unwrap().push(("read_on_loop", here()));
                Some(Ok(ReadResponse::from_bytes(
                    b"answered on the loop".to_vec(),
                )))
            }
            "boom" => panic!("a handler bug"),
            _ => None,
        }
    }
}

fn serve(handler: impl Handler) -> (std::net::SocketAddr, ShutdownHandle, thread::JoinHandle<()>) {
    let mut options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    // One client port asks many times in a row.
    options.config.admission.rate_per_client = None;
    let server = Server::bind(handler, options).unwrap().workers(1);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::Builder::new()
        .name("the-loop".into())
        .spawn(move || server.serve().unwrap())
        .unwrap();
    (addr, stop, serving)
}

fn get(addr: std::net::SocketAddr, file: &str) -> Result<Vec<u8>, ClientError> {
    let mut data = Vec::new();
    Client::new().get(addr, file, Mode::Octet, OptionValues::default(), &mut data)?;
    Ok(data)
}

#[test]
fn a_read_answered_on_the_loop_skips_the_pool_and_none_goes_to_it() {
    let calls = Calls::default();
    let (addr, stop, serving) = serve(Split(Arc::clone(&calls)));

    assert_eq!(get(addr, "quick").unwrap(), b"answered on the loop");
    assert_eq!(
        calls.lock().unwrap().as_slice(),
        [("read_on_loop", "the-loop".to_string())],
        "answered by read_on_loop on the loop, read never called"
    );

    calls.lock().unwrap().clear();
    assert_eq!(get(addr, "slow").unwrap(), b"slow");
    assert_eq!(
        calls.lock().unwrap().as_slice(),
        [("read", "tftp-io".to_string())],
        "None: read on a pool thread"
    );

    stop.shutdown();
    serving.join().unwrap();
}

#[test]
fn a_panic_on_the_loop_fails_its_request_and_the_loop_serves_on() {
    let (addr, stop, serving) = serve(Split(Calls::default()));
    match get(addr, "boom") {
        Err(ClientError::Transfer(e)) => {
            let text = format!("{e:?}");
            assert!(text.contains("Server error"), "{text}");
        }
        other => panic!("expected ERROR 0 Server error, got {other:?}"),
    }
    assert_eq!(get(addr, "quick").unwrap(), b"answered on the loop");
    assert_eq!(get(addr, "slow").unwrap(), b"slow");
    stop.shutdown();
    serving.join().unwrap();
}

#[test]
fn the_same_request_again_right_after_its_transfer_is_a_new_one() {
    // A client that fetches a file again from the same port as soon as the last ACK is out:
    // the request reaches the listener with that ACK still unread on the transfer's socket.
    // Read first, it ended that transfer; read after, the request looked like a repeat of the
    // one the transfer serves and was dropped (answered only by the client's retransmission,
    // a second later). Answers on the loop come quickly enough for the race to happen.
    let (addr, stop, serving) = serve(Split(Calls::default()));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_millis(900)))
        .unwrap();
    let mut buf = [0u8; 600];
    for i in 0..200 {
        s.send_to(b"\x00\x01quick\x00octet\x00", addr).unwrap();
        let Ok((n, tid)) = s.recv_from(&mut buf) else {
            panic!("request {i}: not answered");
        };
        assert_eq!(
            &buf[..n],
            b"\x00\x03\x00\x01answered on the loop",
            "request {i}"
        );
        s.send_to(b"\x00\x04\x00\x01", tid).unwrap();
    }
    stop.shutdown();
    serving.join().unwrap();
}
