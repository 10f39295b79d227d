//! Local files as transfer sources: one descriptor per file however many transfers read it,
//! positional reads, and a read-ahead buffer while a process-wide budget allows.
//!
//! A boot storm is thousands of clients fetching the same few files. Opened once per transfer,
//! each file costs a descriptor per client, and descriptors are what runs out first: under a
//! hard limit of 20,000 a server with a socket and a file per transfer serves at most 10,000
//! at once. A [`FileSource`] of a regular file instead shares one open description per file
//! (device and inode) between all its readers, each reading at its own offset (`pread`), so a
//! download holds only its socket.
//!
//! Small blocks are read ahead: at blksize 512 or 1468 (what PXE ROMs ask for) a read per
//! block is a system call per datagram, a third of what a lock-step transfer costs the
//! kernel. A source reads [`READ_AHEAD`] bytes at a time instead, into a buffer taken from a
//! process-wide budget of [`READ_AHEAD_BUDGET`] bytes (256 transfers at once) and given back
//! at the end of the file; transfers beyond the budget read block by block, so memory per
//! transfer stays bounded at any scale.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use crate::budget::{Reservation, WindowBudget};

/// Bytes read at a time for blocks smaller than half of it (11 blocks of 1468 bytes, 32 of
/// 512).
pub const READ_AHEAD: usize = 16 * 1024;

/// Read-ahead memory of all sources together (4 MiB: 256 transfers; at a thousand at once the
/// rest read block by block, and a session stays a few KiB).
pub const READ_AHEAD_BUDGET: usize = 4 << 20;

static BUDGET: WindowBudget = WindowBudget::new(READ_AHEAD_BUDGET);

/// The open regular files, by device and inode. Entries die with their last reader; dead
/// ones are swept when the map has doubled since the last sweep.
static OPEN: LazyLock<Mutex<OpenFiles>> = LazyLock::new(Default::default);

#[derive(Default)]
struct OpenFiles {
    files: HashMap<(u64, u64), Weak<File>>,
    swept_at: usize,
}

impl OpenFiles {
    /// The shared file for `key`, or `file` made the shared one.
    fn share(&mut self, key: (u64, u64), file: File) -> Arc<File> {
        if let Some(shared) = self.files.get(&key).and_then(Weak::upgrade) {
            // `file` is closed here: the transfer reads through the shared description.
            return shared;
        }
        let file = Arc::new(file);
        self.files.insert(key, Arc::downgrade(&file));
        if self.files.len() >= 2 * self.swept_at.max(32) {
            self.files.retain(|_, f| f.strong_count() > 0);
            self.swept_at = self.files.len();
        }
        file
    }
}

/// Read a local file for a transfer (see the [module](self) documentation): from the
/// position it was at when handed over, to its end.
///
/// ```no_run
/// use std::io::Read;
/// use tftp_server::file::FileSource;
///
/// let mut source = FileSource::new(std::fs::File::open("/srv/tftp/pxelinux.0")?);
/// let mut block = [0u8; 512];
/// let n = source.read(&mut block)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FileSource(Inner);

enum Inner {
    /// A regular file, shared, read at `offset`.
    Shared {
        file: Arc<File>,
        offset: u64,
        ahead: Ahead,
    },
    /// Anything else (a pipe, a device): read as it is.
    Plain(File),
}

/// A source's read-ahead buffer: `buf[pos..len]` is unread.
#[derive(Default)]
struct Ahead {
    buf: Option<(Box<[u8]>, Reservation<'static>)>,
    pos: usize,
    len: usize,
    /// No buffer could be had, or the end was reached: read block by block from now on
    /// (asking the budget again for every block would cost more than it saves).
    refused: bool,
}

impl Ahead {
    /// The read-ahead buffer, taken from the budget on first use; `None` once the budget said
    /// no (or the end was reached).
    fn buffer(&mut self) -> Option<&mut [u8]> {
        if self.refused {
            return None;
        }
        if self.buf.is_none() {
            let Some(reservation) = BUDGET.reserve(READ_AHEAD) else {
                self.refused = true;
                return None;
            };
            self.buf = Some((vec![0; READ_AHEAD].into_boxed_slice(), reservation));
        }
        self.buf.as_mut().map(|(buf, _)| &mut buf[..])
    }
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Shared { offset, ahead, .. } => f
                .debug_struct("FileSource")
                .field("offset", offset)
                .field("read_ahead", &ahead.buf.is_some())
                .finish_non_exhaustive(),
            Inner::Plain(_) => f.debug_struct("FileSource").finish_non_exhaustive(),
        }
    }
}

impl FileSource {
    /// A source reading `file` from its current position. A regular file is shared with
    /// every other source of the same file (`file` itself is closed then); anything else is
    /// read as it is.
    pub fn new(mut file: File) -> Self {
        let Ok(meta) = file.metadata() else {
            return FileSource(Inner::Plain(file));
        };
        if !meta.is_file() {
            return FileSource(Inner::Plain(file));
        }
        let Ok(offset) = file.stream_position() else {
            return FileSource(Inner::Plain(file));
        };
        let key = (meta.dev(), meta.ino());
        let file = OPEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .share(key, file);
        FileSource(Inner::Shared {
            file,
            offset,
            ahead: Ahead::default(),
        })
    }
}

impl Read for FileSource {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let (file, offset, ahead) = match &mut self.0 {
            Inner::Plain(file) => return file.read(out),
            Inner::Shared {
                file,
                offset,
                ahead,
            } => (file, offset, ahead),
        };
        if out.is_empty() {
            return Ok(0);
        }
        if ahead.pos == ahead.len {
            let buffer = if out.len() >= READ_AHEAD / 2 {
                None
            } else {
                ahead.buffer()
            };
            let Some(buffer) = buffer else {
                let n = read_at(file, out, *offset)?;
                *offset += n as u64;
                return Ok(n);
            };
            let n = read_at(file, buffer, *offset)?;
            *offset += n as u64;
            (ahead.pos, ahead.len) = (0, n);
            if n == 0 {
                // The end (for now: a file that grows is read on, block by block): the
                // buffer goes back to the budget.
                ahead.buf = None;
                ahead.refused = true;
                return Ok(0);
            }
        }
        let Some((buf, _)) = &ahead.buf else {
            return Ok(0);
        };
        let n = out.len().min(ahead.len - ahead.pos);
        out[..n].copy_from_slice(&buf[ahead.pos..ahead.pos + n]);
        ahead.pos += n;
        Ok(n)
    }
}

/// `pread`, retried when interrupted.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use super::*;

    /// The budget is process-wide: tests that take from it take turns.
    static BUDGET_TESTS: Mutex<()> = Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        BUDGET_TESTS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn file_of(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    fn read_all(source: &mut FileSource, block: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; block];
        loop {
            let n = source.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn readers_of_one_file_share_a_descriptor_and_keep_their_own_offsets() {
        let _turn = turn();
        let (f, data) = file_of(100_000);
        let mut a = FileSource::new(File::open(f.path()).unwrap());
        let mut b = FileSource::new(File::open(f.path()).unwrap());
        let mut c = FileSource::new(File::open(f.path()).unwrap());
        let shared = |s: &FileSource| match &s.0 {
            Inner::Shared { file, .. } => Arc::clone(file),
            Inner::Plain(_) => panic!("a regular file is shared"),
        };
        assert!(Arc::ptr_eq(&shared(&a), &shared(&b)) && Arc::ptr_eq(&shared(&a), &shared(&c)));
        // The three sources and this one: the descriptors handed over were closed.
        assert_eq!(Arc::strong_count(&shared(&a)), 4);
        let mut first = vec![0; 1468];
        assert_eq!(a.read(&mut first).unwrap(), 1468);
        assert_eq!(read_all(&mut b, 512), data);
        assert_eq!(read_all(&mut c, 65_464), data);
        let mut rest = read_all(&mut a, 1468);
        first.append(&mut rest);
        assert_eq!(first, data);
    }

    #[test]
    fn a_source_starts_where_its_file_was() {
        let _turn = turn();
        let (f, data) = file_of(10_000);
        let mut file = File::open(f.path()).unwrap();
        file.seek(SeekFrom::Start(1_000)).unwrap();
        assert_eq!(read_all(&mut FileSource::new(file), 512), data[1_000..]);
    }

    #[test]
    fn read_ahead_memory_is_given_back_at_the_end() {
        let _turn = turn();
        let (f, data) = file_of(3 * READ_AHEAD + 5);
        let mut source = FileSource::new(File::open(f.path()).unwrap());
        let mut buf = [0; 512];
        source.read_exact(&mut buf).unwrap();
        assert!(matches!(&source.0, Inner::Shared { ahead, .. } if ahead.buf.is_some()));
        let rest = read_all(&mut source, 512);
        assert_eq!(buf.len() + rest.len(), data.len());
        assert!(matches!(&source.0, Inner::Shared { ahead, .. } if ahead.buf.is_none()));
    }

    #[test]
    fn past_the_budget_sources_read_block_by_block() {
        let _turn = turn();
        let (f, data) = file_of(READ_AHEAD + 1);
        // Hold the whole budget (other tests' buffers may hold some of it).
        let held: Vec<_> = std::iter::from_fn(|| BUDGET.reserve(READ_AHEAD)).collect();
        assert!(BUDGET.reserve(READ_AHEAD).is_none());
        let mut source = FileSource::new(File::open(f.path()).unwrap());
        assert_eq!(read_all(&mut source, 1468), data);
        assert!(
            matches!(&source.0, Inner::Shared { ahead, .. } if ahead.refused && ahead.buf.is_none())
        );
        drop(held);
    }

    #[test]
    fn a_file_that_grows_is_read_on() {
        let _turn = turn();
        let (mut f, mut data) = file_of(1_000);
        let mut source = FileSource::new(File::open(f.path()).unwrap());
        assert_eq!(read_all(&mut source, 512), data);
        f.write_all(&[9; 700]).unwrap();
        data.extend_from_slice(&[9; 700]);
        assert_eq!(read_all(&mut source, 512), data[1_000..]);
    }

    #[test]
    fn a_device_is_read_as_it_is() {
        let mut source = FileSource::new(File::open("/dev/zero").unwrap());
        assert!(matches!(source.0, Inner::Plain(_)));
        let mut buf = [1u8; 512];
        assert_eq!(source.read(&mut buf).unwrap(), 512);
        assert_eq!(buf, [0u8; 512]);
    }
}
