//! The in-memory file store every adapter's test handler serves.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tftp_proto::{ErrorCode, OptionLimits};
use tftp_server::{HandlerError, Request};

/// Sizes of the `f<size>` files: around the 512 and 1468 block boundaries, one 64 KiB block,
/// and 1 MiB.
pub const SIZES: &[usize] = &[
    0,
    1,
    7,
    8,
    9,
    511,
    512,
    513,
    1467,
    1468,
    1469,
    65464,
    65465,
    1 << 20,
];

/// Deterministic pseudo-random bytes.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A text file with LF line ends and a bare CR, for netascii.
pub const TEXT: &[u8] =
    b"first line\nsecond line\r\nbare\rcarriage return\n\n\nlast line without newline";

/// The files and upload area of a test server.
///
/// Files: `f<size>` for each of [`SIZES`]; `big8` (70,000 × 8 + 3 bytes: more than 65,535
/// blocks at blksize 8); `text.txt` ([`TEXT`]); `small-blocks` (served with `max_blksize` 512
/// whatever the server allows: a per-request policy); `whoami` (generated: the client's
/// address); `whereami` (generated: the server address and port the request was sent to,
/// IPv4 as plain IPv4). Behaviours: `refuse` is refused with ERROR 2 "Not for you"; `broken`
/// fails with an I/O error after 3000 bytes; `slow` (100,000 bytes) yields 1000 bytes, then
/// stalls: an async read stays pending, a blocking read sleeps for [`STALL`] and fails;
/// `panic` makes the handler panic; `panicky` (100,000 bytes) panics in its read after 3000.
#[derive(Debug)]
pub struct Backend {
    files: HashMap<String, Arc<Vec<u8>>>,
    uploads: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    allow_write: bool,
}

impl Backend {
    /// The standard files, uploads allowed or not.
    pub fn new(allow_write: bool) -> Arc<Self> {
        let mut files = HashMap::new();
        for (i, &size) in SIZES.iter().enumerate() {
            files.insert(format!("f{size}"), Arc::new(content(size, i as u64)));
        }
        files.insert("big8".into(), Arc::new(content(70_000 * 8 + 3, 100)));
        files.insert("text.txt".into(), Arc::new(TEXT.to_vec()));
        files.insert("small-blocks".into(), Arc::new(content(10_000, 101)));
        files.insert("broken".into(), Arc::new(content(100_000, 102)));
        files.insert("slow".into(), Arc::new(content(100_000, 103)));
        files.insert("panicky".into(), Arc::new(content(100_000, 104)));
        Arc::new(Backend {
            files,
            uploads: Arc::default(),
            allow_write,
        })
    }

    /// The content of a served file.
    pub fn file(&self, name: &str) -> Arc<Vec<u8>> {
        Arc::clone(&self.files[name])
    }

    /// A completed upload.
    pub fn uploaded(&self, name: &str) -> Option<Vec<u8>> {
        self.uploads.lock().unwrap().get(name).cloned()
    }

    /// Answer a read request: the source, its size, and per-request limits if any.
    pub fn read(
        &self,
        request: &Request,
    ) -> Result<(Source, Option<u64>, Option<OptionLimits>), HandlerError> {
        let name = request.filename.as_str();
        match name {
            "refuse" => {
                return Err(HandlerError::new(
                    ErrorCode::ACCESS_VIOLATION,
                    "Not for you",
                ));
            }
            "panic" => panic!("a handler bug (the conformance suite's `panic` file)"),
            "whoami" | "whereami" => {
                let local =
                    SocketAddr::new(request.local.ip().to_canonical(), request.local.port());
                let data = Arc::new(match name {
                    "whoami" => request.peer.ip().to_string().into_bytes(),
                    _ => local.to_string().into_bytes(),
                });
                let size = data.len() as u64;
                return Ok((
                    Source {
                        data,
                        pos: 0,
                        fail_at: None,
                        stall_at: None,
                        panic_at: None,
                    },
                    Some(size),
                    None,
                ));
            }
            _ => {}
        }
        let data = self.files.get(name).ok_or_else(HandlerError::not_found)?;
        let size = Some(data.len() as u64);
        let fail_at = (name == "broken").then_some(3000);
        let stall_at = (name == "slow").then_some(1000);
        let panic_at = (name == "panicky").then_some(3000);
        let limits = (name == "small-blocks").then_some(OptionLimits {
            max_blksize: 512,
            ..request.limits
        });
        Ok((
            Source {
                data: Arc::clone(data),
                pos: 0,
                fail_at,
                stall_at,
                panic_at,
            },
            size,
            limits,
        ))
    }

    /// Answer a write request with a sink, or refuse it.
    pub fn write(&self, request: &Request) -> Result<Sink, HandlerError> {
        if !self.allow_write {
            return Err(HandlerError::write_not_allowed());
        }
        let name = request.filename.clone();
        if self.files.contains_key(&name) || self.uploads.lock().unwrap().contains_key(&name) {
            return Err(HandlerError::file_exists());
        }
        Ok(Sink {
            name,
            buf: Arc::default(),
            uploads: Arc::clone(&self.uploads),
        })
    }
}

/// How long a blocking read of a stalled source (`slow`) blocks before it fails.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// A served file: a blocking reader over memory (never blocks, except `slow`), failing on
/// request.
#[derive(Debug)]
pub struct Source {
    data: Arc<Vec<u8>>,
    pos: usize,
    fail_at: Option<usize>,
    stall_at: Option<usize>,
    panic_at: Option<usize>,
}

impl Source {
    /// The source has nothing more to give for now (an async reader should stay pending).
    pub fn stalled(&self) -> bool {
        self.stall_at.is_some_and(|at| self.pos >= at)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stalled() {
            std::thread::sleep(STALL);
            return Err(io::Error::other("source stalled"));
        }
        if self.fail_at.is_some_and(|at| self.pos >= at) {
            return Err(io::Error::other("disk on fire"));
        }
        if self.panic_at.is_some_and(|at| self.pos >= at) {
            panic!("a source bug (the conformance suite's `panicky` file)");
        }
        let end = self.data.len().min(self.pos + buf.len());
        let end = self.fail_at.map_or(end, |at| end.min(at.max(self.pos + 1)));
        let end = self
            .stall_at
            .map_or(end, |at| end.min(at.max(self.pos + 1)));
        let end = self
            .panic_at
            .map_or(end, |at| end.min(at.max(self.pos + 1)));
        let n = end - self.pos;
        buf[..n].copy_from_slice(&self.data[self.pos..end]);
        self.pos = end;
        Ok(n)
    }
}

/// An upload in progress; clones share the buffer. [`Sink::commit`] publishes it.
#[derive(Debug, Clone)]
pub struct Sink {
    name: String,
    buf: Arc<Mutex<Vec<u8>>>,
    uploads: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl Sink {
    /// The upload is complete: make it visible under its name.
    pub fn commit(&self) -> Result<(), HandlerError> {
        let data = std::mem::take(&mut *self.buf.lock().unwrap());
        let mut uploads = self.uploads.lock().unwrap();
        if uploads.contains_key(&self.name) {
            return Err(HandlerError::file_exists());
        }
        uploads.insert(self.name.clone(), data);
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
