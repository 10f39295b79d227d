//! End to end on tokio, over real sockets: the number of allocations of a transfer does not
//! grow with its number of packets (the steady state allocates nothing per packet).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tftp_tokio::{
    Client, Handler, HandlerError, Mode, OptionValues, ReadResponse, Request, Server, ServerOptions,
};

#[path = "../../tftp-proto/tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

/// Serves `n` bytes of zeros for a file named `n`.
struct Zeros;

impl Handler for Zeros {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let n: u64 = request
            .filename
            .parse()
            .map_err(|_| HandlerError::not_found())?;
        Ok(ReadResponse::new(tokio::io::repeat(0).take_n(n), Some(n)))
    }
}

trait TakeN: Sized {
    fn take_n(self, n: u64) -> tokio::io::Take<Self>;
}

impl<R: tokio::io::AsyncRead> TakeN for R {
    fn take_n(self, n: u64) -> tokio::io::Take<Self> {
        tokio::io::AsyncReadExt::take(self, n)
    }
}

#[test]
fn a_transfer_allocates_nothing_per_packet() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::bind(Zeros, ServerOptions::new().listen("127.0.0.1:0".parse().unwrap())).unwrap();
        let addr = server.local_addrs().unwrap()[0];
        tokio::spawn(server.serve());
        let client = Client::new();
        let count = |blocks: u64, windowsize: u16| {
            let client = client.clone();
            async move {
                let options = OptionValues { blksize: Some(512), windowsize: Some(windowsize), ..OptionValues::default() };
                let before = allocations();
                let stats = client.get(addr, &(blocks * 512 + 1).to_string(), Mode::Octet, options, tokio::io::sink()).await.unwrap();
                assert_eq!(stats.blocks, blocks + 1);
                allocations() - before
            }
        };
        for windowsize in [1, 8] {
            count(100, windowsize).await; // warm up: first-use allocations of the runtime
            let small = count(200, windowsize).await;
            let large = count(4_000, windowsize).await;
            assert!(
                large < small + 50,
                "windowsize {windowsize}: {small} allocations for 200 blocks, {large} for 4,000: something allocates per packet"
            );
        }
    });
}
