#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Criterion benchmarks of tftp-proto alone: the codec, and whole transfers between a client
//! and a server session in memory (no sockets), which bounds what any adapter can reach.
//!
//! Run: `cargo bench -p tftp-benches --bench proto`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tftp_proto::packet::{Mode, Options, Packet, Request};
use tftp_proto::testing::{CLIENT_ADDR, SERVER_ADDR, TRANSFER_ADDR};
use tftp_proto::{ClientSession, Config, IncomingRequest, OptionValues, Output, ServerSession};

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let payload = vec![0xA5u8; 1468];
    let data = Packet::Data {
        block: 4242,
        data: &payload,
    };
    let mut data_buf = vec![0u8; data.encoded_len()];
    let n = data.encode(&mut data_buf).unwrap_or(0);
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("decode DATA 1468", |b| {
        b.iter(|| Packet::decode(black_box(&data_buf)))
    });
    let mut out = vec![0u8; 1472];
    g.bench_function("encode DATA 1468", |b| {
        b.iter(|| black_box(&data).encode(&mut out))
    });
    g.throughput(Throughput::Elements(1));
    let ack = [0u8, 4, 0x10, 0x92];
    g.bench_function("decode ACK", |b| b.iter(|| Packet::decode(black_box(&ack))));
    let ack_p = Packet::Ack { block: 4242 };
    let mut ack_out = [0u8; 4];
    g.bench_function("encode ACK", |b| {
        b.iter(|| black_box(&ack_p).encode(&mut ack_out))
    });
    let pairs = [("tsize", "0"), ("blksize", "1468"), ("windowsize", "4")];
    let rrq = Packet::Rrq(Request {
        filename: "pxelinux.cfg/01-52-54-00-12-34-56",
        mode: Mode::Octet,
        options: Options::from_pairs(&pairs),
    });
    let mut rrq_buf = vec![0u8; rrq.encoded_len()];
    let _ = rrq.encode(&mut rrq_buf);
    g.bench_function("decode RRQ", |b| {
        b.iter(|| Packet::decode(black_box(&rrq_buf)))
    });
    g.bench_function("parse RRQ request", |b| {
        b.iter(|| IncomingRequest::parse(CLIENT_ADDR, black_box(&rrq_buf)))
    });
    let mut rrq_out = vec![0u8; 128];
    g.bench_function("encode RRQ", |b| {
        b.iter(|| black_box(&rrq).encode(&mut rrq_out))
    });
    g.finish();
}

/// Move `file` from a server session to a client session, handing each datagram straight
/// from one to the other (zero copies outside the sessions). Returns bytes received.
fn transfer(file: &[u8], blksize: u16, windowsize: u16) -> usize {
    let now = Instant::now();
    let mut config = Config::default();
    config.limits.max_window_bytes = usize::MAX;
    let asked = OptionValues {
        blksize: Some(blksize),
        windowsize: Some(windowsize),
        tsize: Some(0),
        ..OptionValues::default()
    };
    let Ok(mut client) = ClientSession::get(SERVER_ADDR, "f", Mode::Octet, asked, &config, now)
    else {
        return 0;
    };
    let mut server: Option<ServerSession> = None;
    let mut source = file;
    let mut received = 0usize;
    loop {
        let mut idle = true;
        loop {
            match client.poll_output(now) {
                Output::Transmit(t) => {
                    idle = false;
                    match server.as_mut() {
                        Some(s) => s.handle_datagram(now, CLIENT_ADDR, t.contents),
                        None => {
                            let Ok(req) = IncomingRequest::parse(CLIENT_ADDR, t.contents) else {
                                return received;
                            };
                            server = Some(ServerSession::new(
                                &req,
                                &config,
                                Some(file.len() as u64),
                                now,
                            ));
                        }
                    }
                }
                Output::Store(mut store) => {
                    received += black_box(store.data()).len();
                    store.stored();
                }
                Output::Closed => return received,
                Output::Event(_) => {}
                Output::Fill(_) | Output::Wait(_) => break,
            }
        }
        if let Some(s) = server.as_mut() {
            loop {
                match s.poll_output(now) {
                    Output::Transmit(t) => {
                        idle = false;
                        client.handle_datagram(now, TRANSFER_ADDR, t.contents);
                    }
                    Output::Fill(fill) => {
                        idle = false;
                        if source.is_empty() {
                            fill.finish();
                        } else {
                            let n = fill.write(source);
                            source = &source[n..];
                        }
                    }
                    Output::Event(_) | Output::Store(_) => {}
                    Output::Wait(_) | Output::Closed => break,
                }
            }
        }
        if idle {
            // Done: the client is dallying. Nothing is lost in memory, so stop here.
            return received;
        }
    }
}

fn transfers(c: &mut Criterion) {
    let file: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i * 2_654_435_761) as u8)
        .collect();
    let mut g = c.benchmark_group("transfer 64 MiB in memory");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(file.len() as u64));
    for blksize in [512u16, 1468, 65464] {
        for windowsize in [1u16, 16] {
            let id = BenchmarkId::from_parameter(format!("blksize {blksize} window {windowsize}"));
            g.bench_with_input(id, &(blksize, windowsize), |b, &(blk, w)| {
                b.iter(|| {
                    let n = transfer(&file, blk, w);
                    assert_eq!(n, file.len());
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec, transfers);
criterion_main!(benches);
