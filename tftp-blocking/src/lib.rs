//! The tftp-rs server framework and client for programs without an async runtime: plain
//! blocking handlers ([`std::io::Read`] sources, [`std::io::Write`] sinks), std UDP sockets
//! in non-blocking mode on epoll event loops, one thread serving thousands of concurrent
//! transfers, no executor. Also for the fbtftp process model (one process, one loop, many
//! transfers).
//!
//! The concepts and names are those of `tftp-tokio`: you decide what each request gets by
//! implementing [`Handler`] (returning a [`std::io::Read`] and its size, or a
//! [`std::io::Write`]), and receive per-session and periodic server statistics through
//! callbacks ([`ServerOptions::on_session`], [`ServerOptions::on_stats`]). All protocol
//! behaviour comes from [`tftp_proto`] (each transfer is a sans-IO
//! [`ServerSession`](tftp_proto::ServerSession), its deadlines on a loop's
//! [`Wheel`](tftp_proto::timers::Wheel) of 1 ms ticks); admission, limits, refusals, statistics and
//! confined file access from [`tftp_server`] ([`ServerCore`](tftp_server::ServerCore), the
//! same decisions its async server makes). This crate is only the event loop around them.
//!
//! # Threading model
//!
//! - **Event loops**: [`Server::serve`] runs an event loop on the calling thread, and
//!   [`Server::workers`]`(n)` `n - 1` more on threads of their own (by default one loop a
//!   CPU the process may run on). Each loop owns an epoll instance (level-triggered: a
//!   datagram costs one `recv`, nothing is re-armed), a timing wheel of its sessions'
//!   deadlines ([`tftp_proto::timers::Wheel`]) and one 64 KiB receive buffer (in single-port
//!   mode a batch of them for `recvmmsg`). Each transfer has its own socket
//!   and ephemeral port (the RFC 1350 transfer ID; sessions are dealt to the loops in turn
//!   and stay there), or shares the listener in single-port mode (it then runs on its
//!   listener's loop). A loop never calls user code that may block: only the reads a
//!   handler says it answers without waiting ([`Handler::read_on_loop`]; [`DirHandler`]'s
//!   files), and the session and statistics callbacks.
//! - **Connected transfer sockets**: a transfer's socket is `connect()`ed to its peer, as
//!   tftpd-hpa's are, so the kernel routes once per transfer rather than once per DATA (×0.96
//!   of the CPU per lock-step packet). Strangers' datagrams to its port, which RFC 1350 §4
//!   answers with an ERROR and the session counts, arrive on a second socket bound to the same
//!   port (`SO_REUSEPORT`; the kernel gives the peer's datagrams to the connected one), in the
//!   same epoll under the session's key with a flag bit, read into the same session. That
//!   second descriptor is taken only from descriptors beyond one per `max_sessions`
//!   ([`tftp_server::connect`]); [`ServerConfig::connect_transfers`] turns it off
//!   (`tests/connected.rs`).
//! - **Lone mode**: a loop whose only transfer is waiting for its peer (one PXE client in
//!   lock-step, a lone `curl`) stops asking epoll: it receives on that transfer's socket with
//!   a blocking `recvfrom` of at most 2 ms, so a packet costs two system calls, the ACK's
//!   receive and the next DATA's send, as the least a server can spend (`benches/e2e`'s
//!   kernel floor) rather than three. The loop still looks at its other sources (a listener,
//!   transfers handed over by other loops, the pool's results, the timers, the shutdown)
//!   every millisecond and whenever the peer is silent for 2 ms; a peer slower than that
//!   sends the loop back to epoll for 16 to 1,024 turns (`tests/lone.rs`).
//! - **I/O pool**: handler calls (but reads answered by [`Handler::read_on_loop`]), source
//!   reads, sink writes and upload completions run on a pool of std threads, started on
//!   demand up to [`Server::io_threads`] and stopped after
//!   10 s idle; each result goes back to its loop through a channel and an eventfd. The
//!   first few threads (the CPU count, at least 2) start as soon as a call finds none free;
//!   past them, one more starts when the oldest waiting call has waited 2 ms while calls
//!   that have run 10 ms or longer (stalled: a slow disk, a network file system, a handler
//!   that waits) leave fewer than that many threads free, so a thousand requests at once
//!   are answered by a handful of threads when the handler is quick, and by more when it
//!   stalls.
//! - The session and statistics callbacks run on the loop threads: keep them quick (hand slow
//!   work to a channel).
//!
//! # A slow handler does not stall other transfers
//!
//! A `read` that takes seconds (an HTTP origin, a database) holds one pool thread while the
//! other sessions go on; its session starts when the answer comes back. A handler's reader is
//! read on the pool in small chunks (8 KiB, or 4 blocks if larger), one chunk ahead (the next
//! is read while the current one is sent), so a session copies blocks from memory and hops to
//! the pool once per chunk, not per block; a source that stalls stalls only its own transfer,
//! which keeps answering its peer (an ERROR ends it) and retransmitting, and is aborted with
//! "Data source timed out" after [`ServerConfig::source_timeout`] on one block. Files
//! ([`ReadResponse::file`], what [`DirHandler`] serves) and bytes
//! ([`ReadResponse::from_bytes`]) are read in place on the loop, straight into the session's
//! window: the page cache, as tftpd-hpa reads. Uploads are buffered and written in chunks of
//! 16 KiB (or 8 blocks) on the pool; the final ACK waits for the last write, the flush and
//! the completion. A handler, reader or writer that panics fails its own request with "Server
//! error". (`tests/slow_handler.rs` stalls a handler, a source and a sink for 3 s while 40
//! other transfers complete on the same loop.)
//!
//! # Memory per transfer
//!
//! The session (see [`tftp_proto`]: its window ring, `windowsize × (4 + blksize)` bytes once
//! data flows, plus about 2.5 KiB), the loop's bookkeeping (the request, the socket: about
//! 0.5 KiB), and for a handler's reader at most two read-ahead chunks (16 KiB at blksize
//! 1468; a small source costs its size), for a writer one chunk (16 KiB). Bytes need no
//! buffer; a file's small blocks come from 16 KiB chunks its readers share (a transfer holds
//! at most one, 4 MiB for all: see [`FileSource`](tftp_server::file::FileSource)). Receive
//! buffers are one per loop, not per transfer. Measured with
//! `examples/serve_dir.rs` and 1,000 concurrent lock-step downloads of 1 MiB at blksize 1468
//! (`tftp-loadgen`): peak RSS 7.6 MiB (2.5 MiB idle), about 5 KiB per transfer; the same
//! files given as readers ([`ReadResponse::new`], read ahead on the pool): 22.6 MiB, about
//! 21 KiB per transfer. (The async-io server this crate had before: 159 MiB, 160 KiB per
//! transfer.)
//!
//! # Laying out the per-packet code
//!
//! Every DATA runs through the same few dozen functions (the loop's, the session's, the file
//! source's), which the compiler scatters over a program's code. On a CPU whose TLB forgets
//! a process's pages at each switch (no PCID), a lock-step transfer pays a page walk per page
//! of that code per packet. This crate's `hot-text.ld` is a linker script that places them
//! together in one section ahead of the rest (26 pages of tftpd's code a packet became 13, and
//! its CPU per lock-step MB ×0.95). Its build script passes it to the linker for its own
//! examples, and on Linux with GNU ld or LLD (the toolchain's default linker there) hands
//! its path to the build script of a crate that depends on this one directly, as
//! `DEP_TFTP_HOT_TEXT_SCRIPT`; your server's `build.rs` passes it on for its binaries, as
//! tftpd's does:
//!
//! ```no_run
//! // The `main` of your crate's build.rs:
//! println!("cargo::rerun-if-env-changed=DEP_TFTP_HOT_TEXT_SCRIPT");
//! if let Ok(script) = std::env::var("DEP_TFTP_HOT_TEXT_SCRIPT") {
//!     println!("cargo::rustc-link-arg-bins=-Wl,-T,{script}");
//! }
//! ```
//!
//! The variable is not set elsewhere, nor when the crate is built with `TFTP_NO_HOT_TEXT=1`
//! (for a linker that refuses the script, or to profile with callgrind, which names no
//! function outside `.text`; perf does). The script only adds a section: nothing moves when
//! a pattern matches nothing. Its patterns match the functions under either symbol mangling,
//! the legacy one and v0 (`-Csymbol-mangling-version=v0`, which tftpd's workspace builds
//! with), so your build's flags do not matter.
//!
//! # A server and a client
//!
//! Serving a greeting on loopback and fetching it:
//!
//! ```
//! use tftp_blocking::{Client, Handler, HandlerError, Mode, ReadResponse, Request, Server, ServerOptions};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
//!         let text = format!("hello {}, you asked for {}\n", request.peer.ip(), request.filename);
//!         Ok(ReadResponse::from_bytes(text.into_bytes()))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::bind(Hello, ServerOptions::new().listen("127.0.0.1:0".parse()?))?;
//! let addr = server.local_addrs()?[0];
//! let stop = server.shutdown_handle(); // callable from any thread, e.g. on a signal
//! let serving = std::thread::spawn(move || server.serve());
//!
//! let mut text = Vec::new();
//! Client::new().get(addr, "motd", Mode::Octet, Default::default(), &mut text)?;
//! assert_eq!(text, b"hello 127.0.0.1, you asked for motd\n");
//! stop.shutdown(); // graceful: running transfers may finish
//! serving.join().unwrap()?;
//! # Ok(())
//! # }
//! ```
//!
//! Serving a directory on port 69 with two event loops, and uploading to it:
//!
//! ```no_run
//! use tftp_blocking::{Client, DirHandler, Mode, OptionValues, RootOptions, Server, ServerOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = RootOptions { allow_write: true, ..Default::default() };
//! let options = ServerOptions::new()
//!     .listen("[::]:69".parse()?)
//!     .on_session(|r| println!("{} {} {:?}", r.peer, r.filename, r.stats.outcome));
//! let server = Server::bind(DirHandler::new("/srv/tftp", root)?, options)?.workers(2);
//! std::thread::spawn(move || server.serve());
//!
//! let file = std::fs::File::open("notes.txt")?;
//! let options = OptionValues { blksize: Some(1468), tsize: Some(file.metadata()?.len()), ..Default::default() };
//! Client::new().put("127.0.0.1:69".parse()?, "notes.txt", Mode::Octet, options, file)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod client;
mod data;
mod dir;
mod event_loop;
mod handler;
mod pool;
mod reactor;
mod server;
mod sip;
mod slab;

pub use client::Client;
pub use handler::{Handler, ReadResponse, WriteResponse};
pub use server::{Server, ShutdownHandle};
pub use tftp_proto::{
    self, ErrorCode, Mode, OptionLimits, OptionValues, RequestKind, SessionStats, TimeoutPolicy,
};
pub use tftp_server::DirHandler;
pub use tftp_server::fs::RootOptions;
pub use tftp_server::server::ServerOptions;
pub use tftp_server::{
    ClientError, HandlerError, MtuPolicy, Request, ServerConfig, ServerStats, SessionReport,
};
