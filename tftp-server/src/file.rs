//! Local files as transfer sources: one descriptor per file however many transfers read it,
//! positional reads, and small blocks served from chunks that the file's readers share.
//!
//! A boot storm is thousands of clients fetching the same few files. Opened once per transfer,
//! each file costs a descriptor per client, and descriptors are what runs out first: under a
//! hard limit of 20,000 a server with a socket and a file per transfer serves at most 10,000
//! at once. A [`FileSource`] of a regular file instead shares one open description per file
//! (device and inode) between all its readers, each reading at its own offset (`pread`), so a
//! download holds only its socket.
//!
//! Small blocks are read in chunks, and the chunks are shared: at blksize 512 or 1468 (what
//! PXE ROMs ask for) a read per block is a system call per datagram, a third of what a
//! lock-step transfer costs the kernel. A source reads the file [`READ_AHEAD`] bytes at a time
//! instead, in chunks aligned on multiples of it, and publishes each chunk with its file while
//! any reader holds it: in a boot storm the clients fetch the same file at about the same pace,
//! so one `pread` serves the block to all of them (1,000 clients × 1 MiB at blksize 1468 made
//! 549,344 `pread`s with a read-ahead buffer per transfer under the budget below, and 2,064
//! with shared chunks). Chunks come from a process-wide budget of
//! [`READ_AHEAD_BUDGET`] bytes and go back when their last reader moves on; past the budget
//! sources read block by block, so memory stays bounded at any scale (a transfer holds at most
//! one chunk, shared or not).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use crate::budget::{Reservation, WindowBudget};

/// Bytes read at a time for blocks smaller than half of it (11 blocks of 1468 bytes, 32 of
/// 512), and the size and alignment of a shared chunk.
pub const READ_AHEAD: usize = 16 * 1024;

/// Chunk memory of all sources together (4 MiB: 256 chunks held at once; beyond, sources
/// read block by block, and a session stays a few KiB).
pub const READ_AHEAD_BUDGET: usize = 4 << 20;

static BUDGET: WindowBudget = WindowBudget::new(READ_AHEAD_BUDGET);

/// Chunk buffers kept for the next chunks, at most, by each thread (64 KiB beyond the budget
/// a thread). A transfer lets its chunk go and takes the next every 11 blocks of 1468 bytes: a
/// kept buffer is taken again, not allocated and zeroed again (a 16 KiB `calloc` and `free`
/// per 11 DATA: in a lock-step download, 1% of the server's CPU samples and 37% of its
/// user-space instructions counted by callgrind). Per thread: no lock, and a thread's spares
/// go with it; an event loop reads and lets go of its transfers' chunks itself.
const SPARE_CHUNKS: usize = 4;

thread_local! {
    static SPARE: crate::spares::Spares = const { crate::spares::Spares::new() };
}

/// A [`READ_AHEAD`]-byte buffer for a chunk: a spare one if this thread has one.
fn chunk_buffer() -> Vec<u8> {
    let mut bytes = crate::spares::take(&SPARE).unwrap_or_default();
    // A no-op for a spare: chunks keep their buffer's whole length (see `Chunk::bytes`).
    bytes.resize(READ_AHEAD, 0);
    bytes
}

/// Keep `bytes` for the next chunk (of this thread's [`SPARE_CHUNKS`] spares, the most recent).
fn give_back(bytes: Vec<u8>) {
    if bytes.capacity() == READ_AHEAD {
        crate::spares::keep(&SPARE, bytes, SPARE_CHUNKS);
    }
}

/// The open regular files, by device and inode. Entries die with their last reader; dead
/// ones are swept when the map has doubled since the last sweep.
static OPEN: LazyLock<Mutex<OpenFiles>> = LazyLock::new(Default::default);

type OpenFiles = WeakMap<(u64, u64), SharedFile>;

/// Values by key while something else holds them: entries die with their last holder, and
/// dead ones are swept when the map has doubled since the last sweep.
struct WeakMap<K, V> {
    live: HashMap<K, Weak<V>>,
    swept_at: usize,
}

impl<K, V> Default for WeakMap<K, V> {
    fn default() -> Self {
        let (live, swept_at) = (HashMap::new(), 0);
        WeakMap { live, swept_at }
    }
}

impl<K: std::hash::Hash + Eq, V> WeakMap<K, V> {
    fn get(&self, key: &K) -> Option<Arc<V>> {
        self.live.get(key).and_then(Weak::upgrade)
    }

    fn insert(&mut self, key: K, value: &Arc<V>) {
        self.live.insert(key, Arc::downgrade(value));
        if self.live.len() >= 2 * self.swept_at.max(32) {
            self.live.retain(|_, v| v.strong_count() > 0);
            self.swept_at = self.live.len();
        }
    }
}

impl OpenFiles {
    /// The shared file for `key` if it was opened as the file is now (`stamp`), or `file`
    /// made the shared one.
    fn share(&mut self, key: (u64, u64), stamp: Stamp, file: File) -> Arc<SharedFile> {
        if let Some(shared) = self.get(&key).filter(|s| s.stamp == stamp) {
            // `file` is closed here: the transfer reads through the shared description.
            return shared;
        }
        // New, or changed in place since (`cp` over a boot file keeps its inode): the readers
        // of before keep theirs, chunks and all; from now on transfers share this one, so a
        // transfer never mixes chunks of before with blocks of after.
        let file = Arc::new(SharedFile {
            file,
            stamp,
            chunks: Mutex::default(),
        });
        self.insert(key, &file);
        file
    }
}

/// A regular file open once for all its readers, and its chunks that some reader holds.
struct SharedFile {
    file: File,
    /// The file as it was when opened.
    stamp: Stamp,
    chunks: Mutex<Chunks>,
}

/// Size, modification and change times (to the nanosecond): a file written in place since it
/// was shared has another.
type Stamp = (u64, i64, i64, i64, i64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    let (mtime, ctime) = (
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    );
    (meta.size(), mtime.0, mtime.1, ctime.0, ctime.1)
}

/// Published chunks by index (offset / [`READ_AHEAD`]).
type Chunks = WeakMap<u64, Chunk>;

/// `READ_AHEAD` bytes of a file from offset `index × READ_AHEAD` (fewer at the end of the file
/// as it was when read), and their share of the budget.
struct Chunk {
    index: u64,
    /// [`READ_AHEAD`] bytes, of which the first `len` were read. Never shortened: a buffer
    /// cut to a short last chunk was zeroed again to its full length when taken for the
    /// next one (a 16 KiB `memset` per transfer of a file that is not a multiple of 16 KiB,
    /// and of every file at the read that finds its end).
    bytes: Vec<u8>,
    len: usize,
    _reservation: Reservation<'static>,
}

impl Chunk {
    fn data(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Chunk {
    /// The buffer is kept for the next chunk (see [`SPARE_CHUNKS`]).
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.bytes));
    }
}

impl SharedFile {
    /// Chunk `index`: a reader's, or read now and published. `None` when the budget has no
    /// room for another chunk.
    fn chunk(&self, index: u64) -> io::Result<Option<Arc<Chunk>>> {
        let lock = || self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(chunk) = lock().get(&index) {
            return Ok(Some(chunk));
        }
        let Some(reservation) = BUDGET.reserve(READ_AHEAD) else {
            return Ok(None);
        };
        // Read outside the lock; two readers missing at once both read, and the later one
        // is published (the bytes are the same).
        let mut bytes = chunk_buffer();
        let len = read_full(&self.file, &mut bytes, index * READ_AHEAD as u64)?;
        let chunk = Arc::new(Chunk {
            index,
            bytes,
            len,
            _reservation: reservation,
        });
        lock().insert(index, &chunk);
        Ok(Some(chunk))
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
        file: Arc<SharedFile>,
        /// Where the source began (the file's position when handed over).
        start: u64,
        offset: u64,
        /// The chunk being read, if any.
        chunk: Option<Arc<Chunk>>,
        /// The budget had no room when this chunk index was wanted: read block by block until
        /// the next one.
        refused: Option<u64>,
    },
    /// Anything else (a pipe, a device): read as it is.
    Plain(File),
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Shared { offset, chunk, .. } => f
                .debug_struct("FileSource")
                .field("offset", offset)
                .field("chunk", &chunk.as_ref().map(|c| c.index))
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
        let file =
            OPEN.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .share(key, stamp(&meta), file);
        FileSource(Inner::Shared {
            file,
            start: offset,
            offset,
            chunk: None,
            refused: None,
        })
    }
}

impl FileSource {
    /// Whether [`FileSource::read_from`] can read any part again: a regular file can, a pipe
    /// or a device cannot. A transfer of a seekable source keeps no copy of its window (see
    /// `tftp_proto::Session::set_source_seekable`).
    pub fn is_seekable(&self) -> bool {
        matches!(self.0, Inner::Shared { .. })
    }

    /// Where the next read starts, in bytes past where the source began; `None` for a source
    /// that is not seekable (it does not know).
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use tftp_server::file::FileSource;
    ///
    /// let mut source = FileSource::new(std::fs::File::open("/srv/tftp/pxelinux.0")?);
    /// let mut block = [0u8; 512];
    /// source.read_exact(&mut block)?;
    /// assert_eq!(source.position(), Some(512));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn position(&self) -> Option<u64> {
        match &self.0 {
            Inner::Shared { start, offset, .. } => Some(offset.saturating_sub(*start)),
            Inner::Plain(_) => None,
        }
    }

    /// Read from `position` bytes past where the source began, and go on from there (as
    /// [`Read::read`] then does). A source that is not seekable answers an error of kind
    /// `Unsupported`.
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use tftp_server::file::FileSource;
    ///
    /// let mut source = FileSource::new(std::fs::File::open("/srv/tftp/pxelinux.0")?);
    /// let (mut first, mut again) = ([0u8; 512], [0u8; 512]);
    /// source.read_exact(&mut first)?;
    /// // A block lost on the way is read again, from the page cache.
    /// source.read_from(0, &mut again)?;
    /// assert_eq!(first, again);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn read_from(&mut self, position: u64, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Shared { start, offset, .. } => {
                *offset = start.saturating_add(position);
            }
            Inner::Plain(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this source cannot be read again",
                ));
            }
        }
        self.read(out)
    }
}

/// A source read in place where its session asks (see
/// `tftp_proto::Session::set_source_seekable`): a regular file, or bytes in memory. What the
/// adapters' sessions fill from when a handler answers with a file or with bytes.
pub enum Seekable {
    /// A regular file ([`FileSource::is_seekable`]).
    File(FileSource),
    /// Bytes in memory, and where a plain [`Seekable::read`] goes on from.
    Bytes(Box<dyn AsRef<[u8]> + Send>, u64),
}

impl std::fmt::Debug for Seekable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seekable::File(file) => f.debug_tuple("File").field(file).finish(),
            Seekable::Bytes(bytes, _) => write!(f, "Bytes({} bytes)", (**bytes).as_ref().len()),
        }
    }
}

impl Seekable {
    /// `file` if it can be read again at any offset (a regular file), else `file` back.
    pub fn file(file: FileSource) -> Result<Self, FileSource> {
        if file.is_seekable() {
            Ok(Seekable::File(file))
        } else {
            Err(file)
        }
    }

    /// These bytes.
    pub fn bytes(data: impl AsRef<[u8]> + Send + 'static) -> Self {
        Seekable::Bytes(Box::new(data), 0)
    }

    /// Read from `offset` bytes past the source's start (what the session asks), and go on
    /// from there.
    pub fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Seekable::File(file) => file.read_from(offset, out),
            Seekable::Bytes(bytes, position) => {
                let rest = usize::try_from(offset)
                    .ok()
                    .and_then(|at| (**bytes).as_ref().get(at..))
                    .unwrap_or(&[]);
                let n = rest.len().min(out.len());
                out[..n].copy_from_slice(&rest[..n]);
                *position = offset + n as u64;
                Ok(n)
            }
        }
    }

    /// Where the next [`Seekable::read`] starts (see [`FileSource::position`]).
    pub fn position(&self) -> u64 {
        match self {
            Seekable::File(file) => file.position().unwrap_or(0),
            Seekable::Bytes(_, position) => *position,
        }
    }

    /// Read on from where the last read ended.
    pub fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Seekable::File(file) => file.read(out),
            Seekable::Bytes(_, position) => {
                let at = *position;
                self.read_at(at, out)
            }
        }
    }
}

impl Read for FileSource {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let (file, offset, chunk, refused) = match &mut self.0 {
            Inner::Plain(file) => return file.read(out),
            Inner::Shared {
                file,
                offset,
                chunk,
                refused,
                ..
            } => (file, offset, chunk, refused),
        };
        if out.is_empty() {
            return Ok(0);
        }
        let index = *offset / READ_AHEAD as u64;
        let within = (*offset % READ_AHEAD as u64) as usize;
        if out.len() < READ_AHEAD / 2 && *refused != Some(index) {
            if chunk.as_ref().is_none_or(|c| c.index != index) {
                // The one held is behind: let it go before taking the next (budget).
                *chunk = None;
                *chunk = file.chunk(index)?;
                if chunk.is_none() {
                    *refused = Some(index);
                }
            }
            if let Some(c) = chunk
                .as_ref()
                .map(|c| c.data())
                .filter(|c| within < c.len())
            {
                let n = out.len().min(c.len() - within);
                out[..n].copy_from_slice(&c[within..within + n]);
                *offset += n as u64;
                return Ok(n);
            }
            // Past a chunk cut short by the end of the file when it was read: the file is
            // read as it is now (it may have grown), and the chunk let go.
            *chunk = None;
        }
        let n = read_at(&file.file, out, *offset)?;
        *offset += n as u64;
        Ok(n)
    }
}

/// `pread` until `buf` is full or the end of the file.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match read_at(file, &mut buf[n..], offset + n as u64)? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
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
    fn a_short_last_chunk_gives_back_a_whole_buffer() {
        let _turn = turn();
        let (f, data) = file_of(READ_AHEAD + 100);
        let mut source = FileSource::new(File::open(f.path()).unwrap());
        assert_eq!(read_all(&mut source, 1468), data);
        drop(source);
        let spares = SPARE.with(|s| s.map(Vec::len));
        assert!(!spares.is_empty(), "the chunks went back to this thread");
        assert!(
            spares.iter().all(|&len| len == READ_AHEAD),
            "spares of {spares:?} bytes would be zeroed again when taken"
        );
    }

    #[test]
    fn a_source_knows_where_its_next_read_starts() {
        let _turn = turn();
        let (f, _) = file_of(10_000);
        // Counted from where the file was when handed over.
        let mut handed = f.reopen().unwrap();
        handed.seek(SeekFrom::Start(1_000)).unwrap();
        let mut source = FileSource::new(handed);
        assert_eq!(source.position(), Some(0));
        let mut block = [0; 1468];
        assert_eq!(source.read(&mut block).unwrap(), 1468);
        assert_eq!(source.position(), Some(1468));
        assert_eq!(source.read_from(512, &mut block[..512]).unwrap(), 512);
        assert_eq!(source.position(), Some(1024));
        let mut seekable = Seekable::bytes(vec![0u8; 100]);
        assert_eq!(seekable.read_at(40, &mut block).unwrap(), 60);
        assert_eq!(seekable.position(), 100);
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
    fn a_source_reads_again_from_where_it_began() {
        let _turn = turn();
        let (f, data) = file_of(3 * READ_AHEAD + 7);
        let mut file = File::open(f.path()).unwrap();
        file.seek(SeekFrom::Start(100)).unwrap();
        let mut source = FileSource::new(file);
        assert!(source.is_seekable());
        let whole = read_all(&mut source, 1468);
        assert_eq!(whole, data[100..]);
        // Back into an earlier chunk, a block at a time and a large block.
        let mut block = [0u8; 1468];
        assert_eq!(source.read_from(1468 * 3, &mut block).unwrap(), 1468);
        assert_eq!(block[..], data[100 + 1468 * 3..][..1468]);
        assert_eq!(source.read(&mut block).unwrap(), 1468, "and on from there");
        assert_eq!(block[..], data[100 + 1468 * 4..][..1468]);
        let mut large = vec![0u8; 65_464];
        let n = source.read_from(0, &mut large).unwrap();
        assert_eq!(large[..n], data[100..100 + n]);
        // Past the end: nothing.
        assert_eq!(source.read_from(1 << 20, &mut block).unwrap(), 0);
        let pipe = FileSource::new(File::open("/dev/null").unwrap());
        assert!(!pipe.is_seekable());
        let mut pipe = pipe;
        let e = pipe.read_from(0, &mut block).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn readers_at_the_same_place_share_one_chunk() {
        let _turn = turn();
        let (f, data) = file_of(2 * READ_AHEAD + 100);
        let open = || FileSource::new(File::open(f.path()).unwrap());
        let (mut a, mut b) = (open(), open());
        let chunk = |s: &FileSource| match &s.0 {
            Inner::Shared { chunk, .. } => chunk.clone(),
            Inner::Plain(_) => panic!("a regular file is shared"),
        };
        let (mut x, mut y) = ([0u8; 1468], [0u8; 1468]);
        a.read_exact(&mut x).unwrap();
        b.read_exact(&mut y).unwrap();
        assert_eq!((&x[..], &y[..]), (&data[..1468], &data[..1468]));
        let (ca, cb) = (chunk(&a).unwrap(), chunk(&b).unwrap());
        assert!(
            Arc::ptr_eq(&ca, &cb),
            "the second reader found the first one's chunk"
        );
        drop((ca, cb));
        // `a` moves on to the next chunks; `b`, behind, still reads its own and then shares.
        let rest_a = read_all(&mut a, 1468);
        let rest_b = read_all(&mut b, 512);
        assert_eq!(rest_a, data[1468..]);
        assert_eq!(rest_b, data[1468..]);
        assert!(
            chunk(&a).is_none() && chunk(&b).is_none(),
            "given back at the end"
        );
    }

    #[test]
    fn a_file_written_in_place_is_not_mixed_with_the_chunks_of_before() {
        let _turn = turn();
        let (mut f, data) = file_of(3 * READ_AHEAD);
        let mut before = FileSource::new(File::open(f.path()).unwrap());
        let mut first = [0u8; 512];
        before.read_exact(&mut first).unwrap();
        // Rewritten in place, same size: `before` holds chunk 0 of the old bytes.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let new: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
        f.as_file_mut().write_all_at(&new, 0).unwrap();
        let mut after = FileSource::new(File::open(f.path()).unwrap());
        assert_eq!(
            read_all(&mut after, 512),
            new,
            "a transfer that starts now sees the new file"
        );
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
        assert!(matches!(&source.0, Inner::Shared { chunk: Some(_), .. }));
        let rest = read_all(&mut source, 512);
        assert_eq!(buf.len() + rest.len(), data.len());
        assert!(matches!(&source.0, Inner::Shared { chunk: None, .. }));
    }

    #[test]
    fn chunk_buffers_are_kept_for_the_next_chunks_and_no_more() {
        let _turn = turn();
        // The spares are this thread's: what other tests do meanwhile does not count here.
        let spare = || SPARE.with(crate::spares::Spares::len);
        // A short file leaves a short chunk; the buffer it gives back serves a whole one.
        let (short, short_data) = file_of(100);
        let (long, long_data) = file_of(3 * READ_AHEAD + 7);
        for _ in 0..3 {
            let mut source = FileSource::new(File::open(short.path()).unwrap());
            assert_eq!(read_all(&mut source, 512), short_data);
            assert!(spare() >= 1, "the short chunk's buffer is kept");
            let mut source = FileSource::new(File::open(long.path()).unwrap());
            assert_eq!(read_all(&mut source, 1468), long_data);
        }
        // Many chunks at once give back no more than SPARE_CHUNKS buffers.
        let (many, many_data) = file_of(10 * READ_AHEAD);
        let mut readers: Vec<_> = (0..10)
            .map(|i| {
                let mut file = File::open(many.path()).unwrap();
                file.seek(SeekFrom::Start((i * READ_AHEAD) as u64)).unwrap();
                FileSource::new(file)
            })
            .collect();
        for (i, reader) in readers.iter_mut().enumerate() {
            let mut block = [0u8; 512];
            reader.read_exact(&mut block).unwrap();
            assert_eq!(block[..], many_data[i * READ_AHEAD..i * READ_AHEAD + 512]);
        }
        drop(readers);
        assert_eq!(spare(), SPARE_CHUNKS);
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
        assert!(matches!(
            &source.0,
            Inner::Shared {
                chunk: None,
                refused: Some(_),
                ..
            }
        ));
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
