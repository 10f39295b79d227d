//! tftp-blocking under the conformance suite.

use std::net::SocketAddr;
use std::sync::Arc;

use tftp_blocking::{Client, Handler, ReadResponse, Server, WriteResponse};
use tftp_proto::{Config, Mode, OptionValues, SessionStats};
use tftp_server::server::ServerOptions;
use tftp_server::{ClientError, HandlerError, Request};

use crate::{Adapter, Backend, ServerHandle};

/// The blocking adapter (std sockets, epoll loop, no runtime).
#[derive(Debug)]
pub struct Blocking;

struct TestHandler(Arc<Backend>);

impl Handler for TestHandler {
    fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let (source, size, limits) = self.0.read(request)?;
        let response = ReadResponse::new(source, size);
        Ok(match limits {
            Some(l) => response.with_limits(l),
            None => response,
        })
    }

    fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let sink = self.0.write(request)?;
        let commit = sink.clone();
        Ok(WriteResponse::new(sink).on_complete(move || commit.commit()))
    }
}

impl Adapter for Blocking {
    const NAME: &'static str = "blocking";

    fn serve(backend: Arc<Backend>, options: ServerOptions) -> ServerHandle {
        let server = Server::bind(TestHandler(backend), options).unwrap();
        let addrs = server.local_addrs().unwrap();
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.serve().unwrap());
        ServerHandle::new(addrs, move || {
            stop.shutdown();
            let _ = thread.join();
        })
    }

    fn get(
        config: &Config,
        server: SocketAddr,
        file: &str,
        mode: Mode,
        options: OptionValues,
    ) -> Result<(Vec<u8>, SessionStats), ClientError> {
        let mut data = Vec::new();
        let stats =
            Client::with_config(config.clone()).get(server, file, mode, options, &mut data)?;
        Ok((data, stats))
    }

    fn put(
        config: &Config,
        server: SocketAddr,
        name: &str,
        mode: Mode,
        options: OptionValues,
        data: &[u8],
    ) -> Result<SessionStats, ClientError> {
        Client::with_config(config.clone()).put(server, name, mode, options, data)
    }
}
