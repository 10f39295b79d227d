//! Several event loops: sessions dealt to every loop, readers read ahead on a small pool,
//! uploads, and a shutdown that ends every loop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tftp_blocking::{
    Client, Handler, HandlerError, Mode, OptionValues, ReadResponse, Request, Server,
    ServerOptions, WriteResponse,
};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[derive(Clone, Default)]
struct Store(Arc<Mutex<Vec<u8>>>);

impl Write for Store {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Files(Store);

impl Handler for Files {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let data = content(200_000);
        Ok(match request.filename.as_str() {
            "bytes" => ReadResponse::from_bytes(data),
            _ => ReadResponse::new(io::Cursor::new(data), None),
        })
    }

    fn write(&self, _: &Request) -> Result<WriteResponse, HandlerError> {
        Ok(WriteResponse::new(self.0.clone()))
    }
}

#[test]
fn sessions_run_on_every_loop_and_shutdown_ends_them_all() {
    let store = Store::default();
    let mut options = ServerOptions::new().listen("127.0.0.1:0".parse().unwrap());
    options.config.admission.rate_per_client = None;
    let server = Server::bind(Files(store.clone()), options)
        .unwrap()
        .workers(3)
        .io_threads(2);
    let addr = server.local_addrs().unwrap()[0];
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve());

    let gets: Vec<_> = (0..30)
        .map(|i| {
            thread::spawn(move || {
                let file = if i % 2 == 0 { "bytes" } else { "reader" };
                let options = OptionValues {
                    blksize: Some(1468),
                    windowsize: Some(1 + i % 4),
                    ..Default::default()
                };
                let mut data = Vec::new();
                Client::new()
                    .get(addr, file, Mode::Octet, options, &mut data)
                    .unwrap();
                data
            })
        })
        .collect();
    for get in gets {
        assert_eq!(get.join().unwrap(), content(200_000));
    }
    let upload = content(100_000);
    let options = OptionValues::default();
    Client::new()
        .put(addr, "up", Mode::Octet, options, &upload[..])
        .unwrap();
    assert_eq!(*store.0.lock().unwrap(), upload);

    let started = Instant::now();
    stop.shutdown();
    serving.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
