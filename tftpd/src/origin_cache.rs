//! One origin fetch for many sessions, and a bounded local cache of the origin's files.
//!
//! A boot storm is a thousand machines asking for the same kernel and initrd at once. Without
//! help each TFTP session would open its own HTTP GET; here the sessions share one:
//!
//! - **Coalescing.** The first read of a URL starts a fetch that writes the body into a file;
//!   every read of that URL while the fetch runs (or, without a cache directory, while any
//!   session still reads the copy and it is fresh) reads the same file at its own offset, and
//!   waits on a [`tokio::sync::watch`] of the bytes written so far when it catches up. The
//!   fetch runs at the origin's pace, not the slowest client's; a slow client never holds back
//!   a fast one;
//!   memory stays bounded (the copy is on disk, each session buffers one chunk). When no copy
//!   can be created (a full disk), sessions fetch on their own for a while, as before.
//! - **The cache** (`--origin-cache DIR`): completed bodies are kept as `KEY.data` with a JSON
//!   sidecar `KEY.json` (URL, size, validators, freshness), `KEY` being the SHA-256 of the URL.
//!   A body is written under a temporary name and renamed only once complete and of the
//!   announced `Content-Length`, so a fetch that fails midway never becomes an entry. The
//!   directory is bounded (`--origin-cache-size`): least recently used entries are evicted,
//!   and space is reserved (evicting) before a body is written: whole for a known
//!   `Content-Length`, as it arrives otherwise (evicting as it grows; a body that outgrows the
//!   cache is served but not kept), so the directory stays within the bound.
//! - **HTTP semantics** as a shared cache: `Cache-Control: no-store` and `private` are not
//!   stored, `no-cache` is revalidated each time, `s-maxage`/`max-age` (less `Age`) or
//!   `Expires` give the freshness, nothing means revalidate each time (or
//!   `--origin-default-max-age`). A stale entry is revalidated with a conditional GET
//!   (`If-None-Match`/`If-Modified-Since`); 304 refreshes it. With `stale_if_error` a stale
//!   entry is served when the origin cannot be reached or answers an error.
//! - Entries survive a restart (the sidecars are read back; leftovers of a crash are removed).
//!   A directory belongs to one tftpd process: it is locked (`flock` on `DIR/.lock`) and a
//!   second process refuses to start on it.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tftp_proto::ErrorCode;
use tftp_server::HandlerError;
use tftp_tokio::ReadResponse;
use tokio::sync::watch;
use tokio_util::io::StreamReader;

/// The local cache of an [`crate::HttpOrigin`].
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// Where entries are kept, across restarts. `None`: no cache, only coalescing, through
    /// files in a private temporary directory removed at exit.
    pub dir: Option<PathBuf>,
    /// Bytes the entries may take together (default: 1 GiB).
    pub max_bytes: Option<u64>,
    /// Serve a stale entry when the origin is unreachable or answers 5xx.
    pub stale_if_error: bool,
    /// Seconds a response that states no freshness (no `Cache-Control: max-age`, no
    /// `Expires`) is fresh; 0, the default, revalidates it at every read (and, without a
    /// cache directory, shares its copy only while it is being fetched).
    pub default_max_age: u64,
}

/// The default `--origin-cache-size` (1 GiB; defined with the flag).
pub use tftpd_cli::DEFAULT_CACHE_BYTES;

/// Bytes written to the copy at a time, at most.
const CHUNK: usize = 256 * 1024;
/// Bytes a session reads from the copy at a time.
const READ_CHUNK: u64 = 64 * 1024;

/// What a fetch has got so far, as the sessions reading it see it.
#[derive(Debug, Clone)]
enum State {
    /// No answer from the origin yet.
    Pending,
    /// The body, arriving in `file`.
    Body {
        file: Arc<File>,
        size: Option<u64>,
        written: u64,
        complete: bool,
    },
    Failed(HandlerError),
    /// No shared copy could be made (the disk is full, say): each session fetches on its own.
    Direct,
}

/// A fetch in progress (or, without a cache directory, a copy still being read).
#[derive(Debug)]
struct Fetch {
    state: watch::Sender<State>,
    /// Seconds since the epoch until which the complete copy may be shared (without a cache
    /// directory): the response's freshness.
    fresh_until: AtomicU64,
}

/// What the sidecar of an entry says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    url: String,
    size: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    /// Seconds since the Unix epoch until which the entry is fresh.
    fresh_until: u64,
}

#[derive(Debug)]
struct Entry {
    meta: Meta,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    fetches: HashMap<String, Weak<Fetch>>,
    /// By key.
    entries: HashMap<String, Entry>,
    /// Bytes of the entries plus reservations of fetches in flight.
    used: u64,
    clock: u64,
    /// Until then, no shared copy is tried (the last one could not be created): sessions
    /// fetch on their own.
    direct_until: Option<std::time::Instant>,
}

/// How long sessions fetch on their own after a shared copy could not be created.
const DIRECT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);

/// The coalescing fetcher and, with a directory, the cache. One per directory per process.
pub(crate) struct Cache {
    dir: PathBuf,
    persistent: bool,
    max_bytes: AtomicU64,
    stale_if_error: AtomicBool,
    default_max_age: AtomicU64,
    inner: Mutex<Inner>,
    _private: Option<tempfile::TempDir>,
    _lock: Option<File>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .field("persistent", &self.persistent)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

type Registry = Mutex<HashMap<Option<PathBuf>, Weak<Cache>>>;

/// The caches of this process: a reload (SIGHUP) builds a new handler, which must share the
/// directory (and its lock, and the fetches in flight) with the old one.
fn registry() -> &'static Registry {
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The name of the entry for `url`.
fn key(url: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, url.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a file name in the cache directory is one of the cache's: `KEY.json`, `KEY.data`
/// or `KEY.*.tmp`, KEY being 64 hexadecimal digits.
fn ours(name: &str) -> bool {
    let (key, rest) = name.split_at_checked(64).unwrap_or(("", ""));
    key.len() == 64
        && key.bytes().all(|b| b.is_ascii_hexdigit())
        && (rest == ".json" || rest == ".data" || (rest.starts_with('.') && rest.ends_with(".tmp")))
}

/// The private directory's name starts so, in the temporary directory ($TMPDIR).
const PRIVATE_PREFIX: &str = "tftpd-origin-";
/// The file a private directory's process holds locked. Not a persistent cache's `.lock`,
/// which stays unlocked in its directory while no tftpd runs: a cache an operator named
/// `$TMPDIR/tftpd-origin-…` is never taken for a dead process's copies.
const PRIVATE_LOCK: &str = ".private.lock";

/// Hold a lock on private directory `dir` for as long as the returned file is open: the
/// process's, so that a later tftpd can tell a directory left by one that died (SIGKILL, a
/// crash: no destructor removed it) from one in use ([`sweep_private_dirs`]). The lock file
/// is locked under a name of its own, then renamed: a sweeper never sees [`PRIVATE_LOCK`]
/// unlocked.
fn lock_private_dir(dir: &Path) -> io::Result<File> {
    let staged = dir.join(".private.lock.new");
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&staged)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    std::fs::rename(&staged, dir.join(PRIVATE_LOCK))?;
    Ok(file)
}

/// Remove the private directories in `tmp` that tftpd processes left when they died: their
/// copies of origin files (up to `--origin-cache-size` each) would stay in the temporary
/// directory until the next reboot. A directory is removed only if its [`PRIVATE_LOCK`] could
/// be locked (its process is gone); one without it (an older tftpd's, one being made right
/// now, a persistent cache) is left alone.
fn sweep_private_dirs(tmp: &Path) {
    let Ok(listing) = std::fs::read_dir(tmp) else {
        return;
    };
    for item in listing.flatten() {
        if !item
            .file_name()
            .to_string_lossy()
            .starts_with(PRIVATE_PREFIX)
        {
            continue;
        }
        let dir = item.path();
        // Not followed: a link planted in a shared /tmp leads nowhere. And only this user's.
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
            continue;
        }
        let Ok(lock) = File::open(dir.join(PRIVATE_LOCK)) else {
            continue;
        };
        let free = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if free.is_ok() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "removed the origin copies of a tftpd that died")
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot remove a dead tftpd's origin copies")
                }
            }
        }
    }
}

fn transfer_failed() -> HandlerError {
    HandlerError::new(ErrorCode::NOT_DEFINED, "Origin transfer failed")
}

fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_counter!(
            "tftpd_origin_reads_total",
            "Reads answered by the HTTP origin handler, by how: hit (a fresh cache entry), miss (a new fetch), revalidated (a stale entry the origin confirmed with 304), coalesced (joined a fetch or copy in flight), stale (a stale entry served because the origin failed)"
        );
        metrics::describe_counter!(
            "tftpd_origin_fetches_total",
            "Requests sent to the HTTP origin for reads, by result: full (200, into a shared copy), not_modified (304), direct (200 streamed to one session: no room for a shared copy), failed"
        );
        metrics::describe_counter!(
            "tftpd_origin_bytes_fetched_total",
            "Body bytes received from the HTTP origin"
        );
        metrics::describe_counter!(
            "tftpd_origin_bytes_served_total",
            "Bytes the HTTP origin handler handed to TFTP sessions (from the origin, shared copies and the cache)"
        );
        metrics::describe_counter!(
            "tftpd_origin_cache_evictions_total",
            "Cache entries evicted to stay within --origin-cache-size"
        );
        metrics::describe_gauge!(
            "tftpd_origin_cache_bytes",
            "Bytes of the cache entries, with space reserved for bodies being fetched"
        );
        metrics::describe_gauge!("tftpd_origin_cache_entries", "Entries in the cache");
    });
}

fn count_read(how: &'static str) {
    metrics::counter!("tftpd_origin_reads_total", "result" => how).increment(1);
}

fn count_fetch(result: &'static str) {
    metrics::counter!("tftpd_origin_fetches_total", "result" => result).increment(1);
}

/// What a response says about storing it: whether, and for how long it is fresh.
#[derive(Debug, PartialEq, Eq)]
struct Policy {
    store: bool,
    fresh_for: u64,
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `default_max_age`: the freshness of a response that states none.
fn policy(headers: &reqwest::header::HeaderMap, default_max_age: u64) -> Policy {
    let mut store = true;
    let mut max_age = None;
    let mut s_maxage = None;
    let mut no_cache = false;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim().to_string(), Some(a.trim().trim_matches('"'))),
                None => (directive.clone(), None),
            };
            let secs = arg.and_then(|a| a.parse::<u64>().ok());
            match name.as_str() {
                "no-store" | "private" => store = false,
                "no-cache" => no_cache = true,
                "max-age" => max_age = max_age.or(secs),
                "s-maxage" => s_maxage = s_maxage.or(secs),
                _ => {}
            }
        }
    }
    let age = header(headers, "age")
        .and_then(|a| a.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let fresh_for = if no_cache {
        0
    } else if let Some(secs) = s_maxage.or(max_age) {
        secs.saturating_sub(age)
    } else if let Some(expires) = header(headers, "expires") {
        // An invalid date (e.g. "0") means already expired.
        let date = header(headers, "date")
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .unwrap_or_else(SystemTime::now);
        httpdate::parse_http_date(expires)
            .ok()
            .and_then(|e| e.duration_since(date).ok())
            .map_or(0, |d| d.as_secs())
    } else {
        default_max_age
    };
    Policy { store, fresh_for }
}

/// The client's error for an origin status other than 200 (and 304 when revalidating).
fn status_error(url: &str, code: u16) -> HandlerError {
    match code {
        404 | 410 => HandlerError::not_found(),
        401 | 403 => HandlerError::access_violation(),
        // Not followed (`OriginRedirects::None`, or a status reqwest does not follow).
        301 | 302 | 303 | 307 | 308 => {
            tracing::warn!(%url, code, "origin redirect not followed");
            HandlerError::new(
                ErrorCode::NOT_DEFINED,
                format!("Origin redirect refused (HTTP {code})"),
            )
        }
        code => {
            tracing::warn!(%url, code, "origin error");
            HandlerError::new(
                ErrorCode::NOT_DEFINED,
                format!("Origin error (HTTP {code})"),
            )
        }
    }
}

impl Cache {
    /// The cache for `options` in this process: the existing one for the same directory
    /// (taking the new size and `stale_if_error`), or a new one.
    pub(crate) fn open(options: &CacheOptions) -> Result<Arc<Cache>, String> {
        describe_metrics();
        let dir = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("--origin-cache {}: {e}", dir.display()))?;
                Some(
                    dir.canonicalize()
                        .map_err(|e| format!("--origin-cache {}: {e}", dir.display()))?,
                )
            }
            None => None,
        };
        let max = options.max_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
        let mut registry = lock(registry());
        registry.retain(|_, c| c.strong_count() > 0);
        if let Some(cache) = registry.get(&dir).and_then(Weak::upgrade) {
            cache.max_bytes.store(max, Ordering::Relaxed);
            cache
                .stale_if_error
                .store(options.stale_if_error, Ordering::Relaxed);
            cache
                .default_max_age
                .store(options.default_max_age, Ordering::Relaxed);
            cache.evict(&mut lock(&cache.inner), 0);
            return Ok(cache);
        }
        let cache = Arc::new(match &dir {
            Some(d) => Cache::persistent(d, max, options)?,
            None => {
                sweep_private_dirs(&std::env::temp_dir());
                let private = tempfile::Builder::new()
                    .prefix(PRIVATE_PREFIX)
                    .tempdir()
                    .map_err(|e| format!("a temporary directory for origin copies: {e}"))?;
                let lock = lock_private_dir(private.path())
                    .map_err(|e| format!("a temporary directory for origin copies: {e}"))?;
                Cache {
                    dir: private.path().to_path_buf(),
                    persistent: false,
                    max_bytes: AtomicU64::new(max),
                    stale_if_error: AtomicBool::new(false),
                    default_max_age: AtomicU64::new(options.default_max_age),
                    inner: Mutex::default(),
                    _private: Some(private),
                    _lock: Some(lock),
                }
            }
        });
        registry.insert(dir, Arc::downgrade(&cache));
        Ok(cache)
    }

    fn persistent(dir: &Path, max: u64, options: &CacheOptions) -> Result<Cache, String> {
        let shown = dir.display();
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .map_err(|e| format!("--origin-cache {shown}: {e}"))?;
        rustix::fs::flock(
            &lock_file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )
        .map_err(|e| format!("--origin-cache {shown}: in use by another tftpd process ({e})"))?;
        let mut inner = Inner::default();
        let mut found = Vec::new();
        let listing = std::fs::read_dir(dir).map_err(|e| format!("--origin-cache {shown}: {e}"))?;
        for item in listing.flatten() {
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            // Only our own files are touched: KEY.json, KEY.data, KEY.*.tmp.
            if !ours(&name) {
                continue;
            }
            let Some(key) = name.strip_suffix(".json") else {
                // Data files are looked at with their sidecar; a temporary file is a leftover
                // of a fetch cut short by a crash.
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            let data = dir.join(format!("{key}.data"));
            let meta = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            let stat = std::fs::metadata(&data).ok();
            match (meta, stat) {
                (Some(meta), Some(stat))
                    if stat.len() == meta.size && key == self::key(&meta.url) =>
                {
                    let used = stat.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((used, key.to_string(), meta));
                }
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|(used, _, _)| *used);
        for (_, key, meta) in found {
            inner.clock += 1;
            inner.used += meta.size;
            let last_used = inner.clock;
            inner.entries.insert(key, Entry { meta, last_used });
        }
        // Data files without a sidecar.
        if let Ok(listing) = std::fs::read_dir(dir) {
            for item in listing.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                if let Some(key) = name.strip_suffix(".data") {
                    if ours(&name) && !inner.entries.contains_key(key) {
                        let _ = std::fs::remove_file(item.path());
                    }
                }
            }
        }
        tracing::info!(dir = %shown, entries = inner.entries.len(), bytes = inner.used, "origin cache opened");
        let cache = Cache {
            dir: dir.to_path_buf(),
            persistent: true,
            max_bytes: AtomicU64::new(max),
            stale_if_error: AtomicBool::new(options.stale_if_error),
            default_max_age: AtomicU64::new(options.default_max_age),
            inner: Mutex::new(inner),
            _private: None,
            _lock: Some(lock_file),
        };
        cache.evict(&mut lock(&cache.inner), 0);
        Ok(cache)
    }

    fn data_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.data"))
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    fn gauges(&self, inner: &Inner) {
        metrics::gauge!("tftpd_origin_cache_bytes").set(inner.used as f64);
        metrics::gauge!("tftpd_origin_cache_entries").set(inner.entries.len() as f64);
    }

    /// Evict least recently used entries until `need` more bytes fit; false if they cannot.
    fn evict(&self, inner: &mut Inner, need: u64) -> bool {
        let max = self.max_bytes.load(Ordering::Relaxed);
        if need > max {
            return false;
        }
        while inner.used + need > max {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove_entry(inner, &oldest);
            metrics::counter!("tftpd_origin_cache_evictions_total").increment(1);
            tracing::debug!(key = %oldest, "origin cache entry evicted");
        }
        self.gauges(inner);
        inner.used + need <= max
    }

    /// Forget an entry and remove its files (sessions reading it keep their descriptor).
    fn remove_entry(&self, inner: &mut Inner, key: &str) {
        if let Some(entry) = inner.entries.remove(key) {
            inner.used = inner.used.saturating_sub(entry.meta.size);
        }
        // The sidecar first: a data file without one is a leftover.
        let _ = std::fs::remove_file(self.meta_path(key));
        let _ = std::fs::remove_file(self.data_path(key));
    }

    /// Answer a read of `url`: from a fresh entry, by joining a fetch in flight, or by
    /// starting one.
    pub(crate) async fn read(
        self: &Arc<Self>,
        client: &reqwest::Client,
        url: String,
    ) -> Result<ReadResponse, HandlerError> {
        let response = match self.lookup(client, url.clone()) {
            Found::Entry(file, size) => {
                // The LRU order across restarts.
                let _ = file.set_modified(SystemTime::now());
                Self::respond(watch::channel(complete(file, size)).1, None).await?
            }
            Found::Fetch(fetch) => Self::respond(fetch.state.subscribe(), Some(fetch)).await?,
            Found::Direct => None,
        };
        match response {
            Some(response) => Ok(response),
            None => direct_read(client, &url).await,
        }
    }

    fn lookup(self: &Arc<Self>, client: &reqwest::Client, url: String) -> Found {
        let mut inner = lock(&self.inner);
        if let Some(fetch) = inner.fetches.get(&url).and_then(Weak::upgrade) {
            // In flight, or (without a cache directory) complete, read and still fresh.
            let joinable = match &*fetch.state.borrow() {
                State::Failed(_) => false,
                State::Body { complete: true, .. } => {
                    fetch.fresh_until.load(Ordering::Relaxed) > now_secs()
                }
                _ => true,
            };
            if joinable {
                count_read("coalesced");
                return Found::Fetch(fetch);
            }
        }
        let key = key(&url);
        if inner
            .direct_until
            .is_some_and(|t| std::time::Instant::now() < t)
            && !inner.entries.contains_key(&key)
        {
            return Found::Direct;
        }
        let mut stale = None;
        if let Some(entry) = inner.entries.get(&key).filter(|e| e.meta.url == url) {
            let meta = entry.meta.clone();
            if meta.fresh_until > now_secs() {
                match File::open(self.data_path(&key)) {
                    Ok(file) => {
                        inner.clock += 1;
                        let tick = inner.clock;
                        if let Some(e) = inner.entries.get_mut(&key) {
                            e.last_used = tick;
                        }
                        count_read("hit");
                        return Found::Entry(file, meta.size);
                    }
                    Err(e) => {
                        tracing::warn!(%url, error = %e, "origin cache entry unreadable");
                        self.remove_entry(&mut inner, &key);
                    }
                }
            } else {
                stale = Some(meta);
            }
        }
        let fetch = Arc::new(Fetch {
            state: watch::Sender::new(State::Pending),
            fresh_until: AtomicU64::new(u64::MAX),
        });
        inner.fetches.retain(|_, f| f.strong_count() > 0);
        inner.fetches.insert(url.clone(), Arc::downgrade(&fetch));
        let task = Fetcher {
            cache: Arc::clone(self),
            client: client.clone(),
            url,
            key,
            fetch: Arc::clone(&fetch),
            reserved: 0,
        };
        tokio::spawn(task.run(stale));
        Found::Fetch(fetch)
    }

    /// Once the origin has answered: the session's reader of the copy.
    /// `None`: no shared copy, the session must fetch on its own.
    async fn respond(
        mut rx: watch::Receiver<State>,
        fetch: Option<Arc<Fetch>>,
    ) -> Result<Option<ReadResponse>, HandlerError> {
        let state = rx
            .wait_for(|s| !matches!(s, State::Pending))
            .await
            .map_err(|_| transfer_failed())?
            .clone();
        let size = match state {
            State::Pending => None,
            State::Body { size, .. } => size,
            State::Failed(e) => return Err(e),
            State::Direct => return Ok(None),
        };
        let reader = CopyReader {
            rx,
            offset: 0,
            _fetch: fetch,
        };
        let stream = futures_util::stream::unfold(reader, |mut r| async move {
            match r.next().await {
                Ok(Some(bytes)) => Some((Ok(bytes), r)),
                Ok(None) => None,
                Err(e) => Some((Err(e), r)),
            }
        });
        Ok(Some(ReadResponse::new(StreamReader::new(stream), size)))
    }
}

/// A session's own fetch, streamed as it arrives: when no shared copy can be made.
async fn direct_read(client: &reqwest::Client, url: &str) -> Result<ReadResponse, HandlerError> {
    use futures_util::TryStreamExt;
    let response = client.get(url).send().await.map_err(|e| {
        tracing::warn!(%url, error = %e, "origin request failed");
        count_fetch("failed");
        crate::http::request_error(&e)
    })?;
    let code = response.status().as_u16();
    if code != 200 {
        count_fetch("failed");
        return Err(status_error(url, code));
    }
    count_fetch("direct");
    let size = response.content_length();
    let body = response
        .bytes_stream()
        .map_ok(|chunk| {
            let len = chunk.len() as u64;
            metrics::counter!("tftpd_origin_bytes_fetched_total").increment(len);
            metrics::counter!("tftpd_origin_bytes_served_total").increment(len);
            chunk
        })
        .map_err(|e| {
            tracing::warn!(error = %e, "origin body failed");
            io::Error::other(transfer_failed())
        });
    Ok(ReadResponse::new(StreamReader::new(body), size))
}

fn complete(file: File, size: u64) -> State {
    State::Body {
        file: Arc::new(file),
        size: Some(size),
        written: size,
        complete: true,
    }
}

/// Where a read is served from.
enum Found {
    Entry(File, u64),
    Fetch(Arc<Fetch>),
    /// The session's own fetch (no room for shared copies).
    Direct,
}

/// A session's position in a copy.
struct CopyReader {
    rx: watch::Receiver<State>,
    offset: u64,
    /// Keeps a copy without a cache entry alive (and joinable) while it is read.
    _fetch: Option<Arc<Fetch>>,
}

impl CopyReader {
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            let state = self.rx.borrow_and_update().clone();
            match state {
                State::Failed(e) => return Err(io::Error::other(e)),
                State::Direct => return Err(io::Error::other(transfer_failed())),
                State::Pending => {}
                State::Body {
                    file,
                    written,
                    complete,
                    ..
                } => {
                    if self.offset < written {
                        let len = (written - self.offset).min(READ_CHUNK);
                        let offset = self.offset;
                        let bytes = tokio::task::spawn_blocking(move || {
                            let mut buf = vec![0u8; len as usize];
                            file.read_exact_at(&mut buf, offset).map(|()| buf)
                        })
                        .await
                        .map_err(io::Error::other)?
                        .map_err(|e| {
                            tracing::warn!(error = %e, "reading the origin copy failed");
                            io::Error::other(transfer_failed())
                        })?;
                        self.offset += len;
                        metrics::counter!("tftpd_origin_bytes_served_total").increment(len);
                        return Ok(Some(Bytes::from(bytes)));
                    }
                    if complete {
                        return Ok(None);
                    }
                }
            }
            if self.rx.changed().await.is_err() {
                // The fetch ended without saying how: only if its task panicked.
                return Err(io::Error::other(transfer_failed()));
            }
        }
    }
}

/// The task that fetches one URL into a copy, and publishes it as an entry.
struct Fetcher {
    cache: Arc<Cache>,
    client: reqwest::Client,
    url: String,
    key: String,
    fetch: Arc<Fetch>,
    /// Bytes reserved in the cache for this body.
    reserved: u64,
}

/// How a fetch ended.
enum Fetched {
    /// A body, complete, to keep in the cache (a temporary file) or not.
    Body(Option<tempfile::NamedTempFile>, u64, Meta),
    /// 304: the stale entry is fresh again.
    NotModified(Meta),
    /// No copy could be made.
    Direct,
}

impl Fetcher {
    async fn run(mut self, stale: Option<Meta>) {
        let result = self.fetch(stale.as_ref()).await;
        let state = match result {
            Ok(state) => state,
            Err(e) => {
                // Only before any byte of a new body reached a session.
                let untouched = matches!(*self.fetch.state.borrow(), State::Pending);
                let served = match &stale {
                    Some(meta)
                        if untouched && self.cache.stale_if_error.load(Ordering::Relaxed) =>
                    {
                        File::open(self.cache.data_path(&self.key))
                            .ok()
                            .map(|f| (f, meta.size))
                    }
                    _ => None,
                };
                match served {
                    Some((file, size)) if e.code == ErrorCode::NOT_DEFINED => {
                        tracing::warn!(url = %self.url, error = %e, "origin failed; serving the stale cache entry");
                        count_read("stale");
                        complete(file, size)
                    }
                    _ => State::Failed(e),
                }
            }
        };
        let failed = matches!(state, State::Failed(_) | State::Direct);
        {
            let mut inner = lock(&self.cache.inner);
            inner.used = inner.used.saturating_sub(self.reserved);
            self.reserved = 0;
            // Published (or failed): later reads look at the entries, or fetch anew. Without
            // a cache directory, the complete copy stays joinable while it is read.
            if matches!(state, State::Direct) {
                inner.direct_until = Some(std::time::Instant::now() + DIRECT_BACKOFF);
            }
            if failed || self.cache.persistent {
                let ours = inner
                    .fetches
                    .get(&self.url)
                    .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.fetch)));
                if ours {
                    inner.fetches.remove(&self.url);
                }
            }
            self.cache.gauges(&inner);
        }
        self.fetch.state.send_modify(|s| match (s, state) {
            // Keep the file the sessions already read from.
            (
                State::Body {
                    written, complete, ..
                },
                State::Body {
                    written: w,
                    complete: c,
                    ..
                },
            ) => {
                *written = w;
                *complete = c;
            }
            (s, state) => *s = state,
        });
    }

    /// Fetch, write the copy, publish it; the final state.
    async fn fetch(&mut self, stale: Option<&Meta>) -> Result<State, HandlerError> {
        match self.request(stale).await? {
            Fetched::NotModified(meta) => {
                count_fetch("not_modified");
                count_read("revalidated");
                match File::open(self.cache.data_path(&self.key)) {
                    Ok(file) => {
                        self.write_meta(&meta);
                        let size = meta.size;
                        let mut inner = lock(&self.cache.inner);
                        inner.clock += 1;
                        let tick = inner.clock;
                        if let Some(e) = inner.entries.get_mut(&self.key) {
                            e.meta = meta;
                            e.last_used = tick;
                        }
                        drop(inner);
                        let _ = file.set_modified(SystemTime::now());
                        Ok(complete(file, size))
                    }
                    // Evicted meanwhile: fetch it whole.
                    Err(_) => match self.request(None).await? {
                        Fetched::Body(temp, size, meta) => self.publish(temp, size, meta),
                        Fetched::NotModified(_) => Err(transfer_failed()),
                        Fetched::Direct => Ok(State::Direct),
                    },
                }
            }
            Fetched::Body(temp, size, meta) => self.publish(temp, size, meta),
            Fetched::Direct => Ok(State::Direct),
        }
    }

    /// Send the GET (conditional with `stale`'s validators) and, for a 200, write the body.
    async fn request(&mut self, stale: Option<&Meta>) -> Result<Fetched, HandlerError> {
        let url = &self.url;
        let mut request = self.client.get(url);
        if let Some(meta) = stale {
            if let Some(etag) = &meta.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &meta.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, lm);
            }
        }
        let mut response = request.send().await.map_err(|e| {
            tracing::warn!(%url, error = %e, "origin request failed");
            count_fetch("failed");
            crate::http::request_error(&e)
        })?;
        let code = response.status().as_u16();
        let headers = response.headers().clone();
        let policy = policy(&headers, self.cache.default_max_age.load(Ordering::Relaxed));
        let fresh_until = now_secs().saturating_add(policy.fresh_for);
        if code == 304 {
            if let Some(meta) = stale {
                let mut meta = meta.clone();
                meta.fresh_until = fresh_until;
                if let Some(etag) = header(&headers, "etag") {
                    meta.etag = Some(etag.to_string());
                }
                if let Some(lm) = header(&headers, "last-modified") {
                    meta.last_modified = Some(lm.to_string());
                }
                return Ok(Fetched::NotModified(meta));
            }
        }
        if code != 200 {
            count_fetch("failed");
            return Err(status_error(url, code));
        }
        count_read("miss");
        let shared_until = if policy.store { fresh_until } else { 0 };
        self.fetch
            .fresh_until
            .store(shared_until, Ordering::Relaxed);
        let size = response.content_length();
        let mut store = self.cache.persistent && policy.store;
        if store {
            if let Some(len) = size {
                let mut inner = lock(&self.cache.inner);
                store = self.cache.evict(&mut inner, len);
                if store {
                    inner.used += len;
                    self.reserved = len;
                    self.cache.gauges(&inner);
                }
            }
        }
        // A body kept: a named temporary file renamed when complete. Not kept: an unnamed
        // one, gone with its last reader.
        let copy = if store {
            tempfile::Builder::new()
                .prefix(&format!("{}.", self.key))
                .suffix(".tmp")
                .tempfile_in(&self.cache.dir)
                .and_then(|temp| {
                    let file = temp.as_file().try_clone()?;
                    Ok((Some(temp), file))
                })
        } else {
            tempfile::tempfile_in(&self.cache.dir).map(|file| (None, file))
        };
        let (mut temp, file) = match copy {
            Ok(copy) => copy,
            Err(e) => {
                // Still served, as before there were shared copies: each session on its own.
                tracing::warn!(dir = %self.cache.dir.display(), error = %e, "no room for a shared copy of an origin file; sessions fetch it on their own");
                return Ok(Fetched::Direct);
            }
        };
        let file = Arc::new(file);
        self.fetch.state.send_replace(State::Body {
            file: Arc::clone(&file),
            size,
            written: 0,
            complete: false,
        });
        let mut written = 0u64;
        let mut buf = Vec::with_capacity(CHUNK);
        let mut end = false;
        while !end {
            // Wait for one chunk, then take what else has arrived already (up to CHUNK):
            // sessions see bytes as soon as they come, and a fast origin is written in large
            // pieces.
            let mut next = Some(response.chunk().await);
            while let Some(chunk) = next.take() {
                let chunk = chunk.map_err(|e| {
                    tracing::warn!(%url, error = %e, "origin body failed");
                    count_fetch("failed");
                    transfer_failed()
                })?;
                match chunk {
                    Some(chunk) => {
                        metrics::counter!("tftpd_origin_bytes_fetched_total")
                            .increment(chunk.len() as u64);
                        buf.extend_from_slice(&chunk);
                        if buf.len() < CHUNK {
                            next = response.chunk().now_or_never();
                        }
                    }
                    None => end = true,
                }
            }
            if buf.is_empty() {
                continue;
            }
            let len = buf.len() as u64;
            if size.is_some_and(|s| written + len > s) {
                tracing::warn!(%url, "origin body longer than its Content-Length");
                count_fetch("failed");
                return Err(transfer_failed());
            }
            if temp.is_some() && size.is_none() {
                // A body of unknown length takes its room in the cache as it comes; one that
                // outgrows the cache is still served but no longer kept (its name goes, the
                // sessions keep reading the open file).
                let mut inner = lock(&self.cache.inner);
                if self.cache.evict(&mut inner, len) {
                    inner.used += len;
                    self.reserved += len;
                } else {
                    inner.used = inner.used.saturating_sub(self.reserved);
                    self.reserved = 0;
                    self.cache.gauges(&inner);
                    drop(inner);
                    tracing::info!(%url, "origin body larger than --origin-cache-size: not kept");
                    temp = None;
                }
            }
            let out = Arc::clone(&file);
            let at = written;
            buf = tokio::task::spawn_blocking(move || out.write_all_at(&buf, at).map(|()| buf))
                .await
                .map_err(|e| self.local_error(&io::Error::other(e)))?
                .map_err(|e| self.local_error(&e))?;
            buf.clear();
            written += len;
            self.fetch.state.send_modify(|s| {
                if let State::Body { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        if size.is_some_and(|s| s != written) {
            tracing::warn!(%url, written, "origin body shorter than its Content-Length");
            count_fetch("failed");
            return Err(transfer_failed());
        }
        count_fetch("full");
        let meta = Meta {
            url: url.clone(),
            size: written,
            etag: header(&headers, "etag").map(str::to_string),
            last_modified: header(&headers, "last-modified").map(str::to_string),
            fresh_until,
        };
        Ok(Fetched::Body(temp, written, meta))
    }

    fn local_error(&self, e: &io::Error) -> HandlerError {
        tracing::error!(dir = %self.cache.dir.display(), error = %e, "origin copy: local I/O failed");
        HandlerError::new(ErrorCode::NOT_DEFINED, "Origin copy failed")
    }

    fn write_meta(&self, meta: &Meta) {
        let result = serde_json::to_vec(meta)
            .map_err(io::Error::other)
            .and_then(|json| {
                let mut temp = tempfile::Builder::new()
                    .prefix(&format!("{}.", self.key))
                    .suffix(".tmp")
                    .tempfile_in(&self.cache.dir)?;
                io::Write::write_all(&mut temp, &json)?;
                temp.persist(self.cache.meta_path(&self.key))
                    .map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, "origin cache: writing an entry's sidecar failed");
        }
    }

    /// The copy is complete: make it the entry (if kept), then tell the sessions.
    fn publish(
        &mut self,
        temp: Option<tempfile::NamedTempFile>,
        size: u64,
        meta: Meta,
    ) -> Result<State, HandlerError> {
        let file = match &*self.fetch.state.borrow() {
            State::Body { file, .. } => Arc::clone(file),
            _ => return Err(transfer_failed()),
        };
        if let Some(temp) = temp {
            // On disk before it is named, outside the lock.
            if let Err(e) = temp.as_file().sync_data() {
                return Err(self.local_error(&e));
            }
            let mut inner = lock(&self.cache.inner);
            // The old entry (if any) goes first: its sidecar must not describe the new data.
            self.cache.remove_entry(&mut inner, &self.key);
            // Its room was reserved as it came (an empty body needs none).
            inner.used = inner.used.saturating_sub(self.reserved);
            self.reserved = 0;
            let room = self.cache.evict(&mut inner, size);
            if room {
                let kept = temp
                    .persist(self.cache.data_path(&self.key))
                    .map(drop)
                    .map_err(|e| e.error);
                match kept {
                    Ok(()) => {
                        self.write_meta(&meta);
                        inner.clock += 1;
                        let last_used = inner.clock;
                        inner.used += size;
                        inner
                            .entries
                            .insert(self.key.clone(), Entry { meta, last_used });
                        tracing::debug!(url = %self.url, size, "origin cache entry stored");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "origin cache: storing an entry failed")
                    }
                }
            }
            self.cache.gauges(&inner);
        }
        Ok(State::Body {
            file,
            size: Some(size),
            written: size,
            complete: true,
        })
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        if self.reserved > 0 {
            let mut inner = lock(&self.cache.inner);
            inner.used = inner.used.saturating_sub(self.reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> reqwest::header::HeaderMap {
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cache_control_is_read_as_a_shared_cache() {
        let p = |pairs: &[(&'static str, &str)]| policy(&headers(pairs), 0);
        assert_eq!(
            p(&[]),
            Policy {
                store: true,
                fresh_for: 0
            }
        );
        assert_eq!(
            p(&[("cache-control", "public, max-age=60")]),
            Policy {
                store: true,
                fresh_for: 60
            }
        );
        assert_eq!(
            p(&[("cache-control", "max-age=60, s-maxage=5"), ("age", "2")]),
            Policy {
                store: true,
                fresh_for: 3
            }
        );
        assert!(!p(&[("cache-control", "no-store")]).store);
        assert!(!p(&[("cache-control", "private, max-age=10")]).store);
        assert_eq!(p(&[("cache-control", "no-cache, max-age=60")]).fresh_for, 0);
        assert_eq!(
            p(&[
                ("date", "Wed, 02 Dec 2026 06:00:00 GMT"),
                ("expires", "Wed, 02 Dec 2026 06:01:00 GMT")
            ])
            .fresh_for,
            60
        );
        assert_eq!(p(&[("expires", "0")]).fresh_for, 0);
        // --origin-default-max-age applies only when the response says nothing.
        let h = headers(&[]);
        assert_eq!(policy(&h, 30).fresh_for, 30);
        let h = headers(&[("cache-control", "max-age=5")]);
        assert_eq!(policy(&h, 30).fresh_for, 5);
        let h = headers(&[("cache-control", "no-cache")]);
        assert_eq!(policy(&h, 30).fresh_for, 0);
    }

    #[test]
    fn only_the_caches_own_files_are_touched() {
        let k = key("http://a/b");
        assert!(ours(&format!("{k}.json")));
        assert!(ours(&format!("{k}.data")));
        assert!(ours(&format!("{k}.a1B2c3.tmp")));
        for other in [
            ".lock",
            "README",
            "notes.json",
            "x.data",
            &format!("{k}.bak"),
            &k[..63],
        ] {
            assert!(!ours(other), "{other}");
        }
    }

    #[test]
    fn keys_are_stable_hex() {
        assert_eq!(key("http://a/b").len(), 64);
        assert_eq!(key("http://a/b"), key("http://a/b"));
        assert_ne!(key("http://a/b"), key("http://a/c"));
    }
}
