//! Proof that `tftp-proto` builds and links without `std`: a `#![no_std]` static library for
//! a bare-metal target (`thumbv7em-none-eabihf` in CI), which runs a whole client/server
//! transfer in memory on [`Millis`] time, both windows in stack buffers. The target has no
//! `std` to link, so a build that succeeds is the proof.
//!
//! Built by `.ci/run`:
//! `cargo build --manifest-path nostd-check/Cargo.toml --target thumbv7em-none-eabihf`.

#![no_std]

extern crate alloc;

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use tftp_proto::time::{Instant as _, Millis};
use tftp_proto::{
    ClientSession, Config, IncomingRequest, Mode, OptionValues, Output, ServerSession,
};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 69);
const TRANSFER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 50_000);
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40_000);

/// Fetch `len` bytes of a generated file from an in-memory server; returns the bytes
/// received, or `u32::MAX` on failure. Exported so that the whole session API is compiled and
/// linked into the static library.
#[unsafe(no_mangle)]
pub extern "C" fn tftp_nostd_check(len: u32) -> u32 {
    run(len).unwrap_or(u32::MAX)
}

fn run(len: u32) -> Option<u32> {
    let config = Config::default();
    let mut now = Millis(0);
    let asked = OptionValues {
        blksize: Some(1468),
        windowsize: Some(4),
        tsize: Some(0),
        ..OptionValues::default()
    };
    // The windows: 4 × (4 + 1468) bytes each, on the stack (a static in real firmware).
    let mut client_ring = [0u8; 4 * 1472];
    let mut server_ring = [0u8; 4 * 1472];
    let mut client: ClientSession<Millis, &mut [u8]> = ClientSession::get_with_storage(
        SERVER,
        "boot.img",
        Mode::Octet,
        asked,
        &config,
        now,
        &mut client_ring[..],
    )
    .ok()?;
    let mut server: Option<ServerSession<Millis, &mut [u8]>> = None;
    let mut server_ring = Some(&mut server_ring[..]);
    let mut sent = 0u32;
    let mut received = 0u32;
    // One datagram in flight each way is enough for a lossless in-memory link.
    let mut to_server = [0u8; 1500];
    let mut to_client = [0u8; 1500];
    for _ in 0..100_000 {
        let mut up = None;
        loop {
            match client.poll_output(now) {
                Output::Transmit(t) => {
                    to_server[..t.contents.len()].copy_from_slice(t.contents);
                    up = Some((t.destination, t.contents.len()));
                    break;
                }
                Output::Store(mut block) => {
                    received += block.data().len() as u32;
                    block.stored();
                }
                Output::Event(_) | Output::Fill(_) => {}
                Output::Wait(_) | Output::Closed => break,
            }
        }
        if let Some((to, n)) = up {
            if to == SERVER {
                let request = IncomingRequest::parse(CLIENT, &to_server[..n]).ok()?;
                let size = Some(u64::from(len));
                let ring = server_ring.take()?;
                server =
                    Some(ServerSession::with_storage(&request, &config, size, now, ring).ok()?);
            } else if let Some(s) = server.as_mut() {
                s.handle_datagram(now, CLIENT, &to_server[..n]);
            }
        }
        let mut down = None;
        if let Some(s) = server.as_mut() {
            loop {
                match s.poll_output(now) {
                    Output::Transmit(t) => {
                        to_client[..t.contents.len()].copy_from_slice(t.contents);
                        down = Some(t.contents.len());
                        break;
                    }
                    Output::Fill(mut fill) => {
                        let n = fill.buf().len().min((len - sent) as usize);
                        if n == 0 {
                            fill.finish();
                        } else {
                            fill.buf()[..n].fill(b'x');
                            sent += n as u32;
                            fill.advance(n).ok()?;
                        }
                    }
                    Output::Event(_) | Output::Store(_) => {}
                    Output::Wait(_) | Output::Closed => break,
                }
            }
        }
        match down {
            Some(n) => client.handle_datagram(now, TRANSFER, &to_client[..n]),
            None if up.is_none() && client.is_closed() => return Some(received),
            None if up.is_none() => {
                now = now.checked_add(Duration::from_millis(100))?;
                client.handle_timeout(now);
                if let Some(s) = server.as_mut() {
                    s.handle_timeout(now);
                }
            }
            None => {}
        }
    }
    None
}

/// A bare-metal target has no unwinding and no `std` panic machinery.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The firmware brings its own heap; this one refuses every allocation. It exists so that the
/// library links: `tftp-proto` needs `alloc`, though sessions on caller-owned buffers allocate
/// nothing (`tftp-proto/tests/caller_storage.rs` counts).
struct NoHeap;

// SAFETY: `alloc` returning null is the documented way to report failure.
unsafe impl core::alloc::GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: core::alloc::Layout) {}
}

#[global_allocator]
static HEAP: NoHeap = NoHeap;
