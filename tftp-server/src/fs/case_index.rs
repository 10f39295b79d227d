//! The case-folded index of directories behind [`RootOptions::case_insensitive`].
//!
//! A case-insensitive lookup that misses the exact name must compare the name with every entry
//! of the directory. PXE firmware and pxelinux probe many names that do not exist by design
//! (one per MAC address and IP prefix), so reading the directory at each miss made every probe
//! cost a full listing: 40 ms in a directory of 100,000 files. Instead, each directory is read
//! once into a sorted list of its case-folded names, which later lookups search in
//! `O(log n)`.
//!
//! **Invalidation.** An index is keyed by the directory's device and inode and stamped with its
//! mtime and ctime as seen by `fstat` just before the directory was read. Each lookup `fstat`s
//! the directory again (one cheap system call) and rebuilds the index when the stamp differs.
//! Creating, removing or renaming an entry changes both times; the ctime cannot be set from
//! user space, so a directory whose mtime was put back (`tar`, `rsync -t`) is noticed too.
//! Timestamps have a granularity (a kernel tick, a second or two on some file systems), so a
//! change made in the same tick as the index was built would leave the stamp unchanged: as in
//! git's "racy index" rule, an index of a directory that changed less than
//! [`RACY_WINDOW_SECS`] seconds before it was read is not kept, and the next lookup reads the
//! directory again. This assumes the file system's clock agrees with ours; on a network file
//! system with a skewed clock (or attribute caching), a new name may be missed until the
//! directory changes again. Exact names never go through the index: they are always found.
//!
//! **Memory.** An index costs 16 bytes per entry plus its folded name, plus the real name when
//! it differs: a few MB for 100,000 names. Each [`Root`](super::Root) keeps at most
//! [`MAX_INDEXED_DIRS`] indexes of [`MAX_INDEX_BYTES`] in all, dropping the least recently used
//! first. A directory too large for the budget is not indexed: each miss in it reads it again,
//! as without the index.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cap_std::fs::Dir;

#[cfg(doc)]
use super::RootOptions;

/// Most directories indexed per root.
pub(crate) const MAX_INDEXED_DIRS: usize = 64;

/// Most memory the indexes of one root use, in bytes (approximately: names and offsets).
pub(crate) const MAX_INDEX_BYTES: usize = 32 << 20;

/// An index of a directory whose mtime or ctime is less than this many seconds older than the
/// moment it was read is not kept (see the module documentation). Two seconds cover the
/// coarsest common granularity (FAT's); the comparison is on whole seconds, so the window is
/// two to three seconds.
pub(crate) const RACY_WINDOW_SECS: i64 = 2;

/// The outcome of a lookup in a directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The smallest name (in byte order) equal to the one looked up, ignoring case.
    Found(String),
    /// No entry matches.
    Missing,
    /// The directory has no up-to-date index and the caller did not allow reading it.
    NeedsScan,
}

/// The case-folded indexes of one root's directories.
pub(crate) struct CaseIndex {
    cache: Mutex<Cache>,
    /// Held while a directory is listed: one listing at a time per root. Without it, a burst
    /// of misses in a directory without an up-to-date index listed it once per miss, all at
    /// once (measured: with 20 misses/s in 100,000 entries, hundreds of concurrent listings
    /// starved the server); with it, the misses queued behind the first listing find its
    /// index. Listings are rare (once per change of a directory), so serialising those of
    /// different directories costs little.
    scanning: Mutex<()>,
    scans: AtomicU64,
}

impl fmt::Debug for CaseIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cache = self.lock();
        f.debug_struct("CaseIndex")
            .field("directories", &cache.dirs.len())
            .field("bytes", &cache.bytes)
            .field("scans", &self.scans())
            .finish()
    }
}

impl CaseIndex {
    pub(crate) fn new() -> CaseIndex {
        CaseIndex {
            cache: Mutex::new(Cache::default()),
            scanning: Mutex::new(()),
            scans: AtomicU64::new(0),
        }
    }

    /// How many times a directory has been read.
    pub(crate) fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// Find the entry of `dir` equal to `name` ignoring case (Unicode lower case; names that
    /// are not UTF-8 never match). With an up-to-date index this is an `fstat` and a binary
    /// search; otherwise, if `may_scan`, the directory is read (and its index kept, memory
    /// and the racy rule permitting), else [`Lookup::NeedsScan`].
    pub(crate) fn lookup(&self, dir: &Dir, name: &str, may_scan: bool) -> io::Result<Lookup> {
        let folded = fold(name);
        let (_, stamp) = now_and_stamp(dir)?;
        if let Some(found) = self.lock().find(&stamp, &folded) {
            return Ok(found);
        }
        if !may_scan {
            return Ok(Lookup::NeedsScan);
        }
        let _scanning = self.scanning.lock().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have listed the directory while this one waited; the directory
        // may have changed meanwhile too: stamp it again.
        let (now, stamp) = now_and_stamp(dir)?;
        if let Some(found) = self.lock().find(&stamp, &folded) {
            return Ok(found);
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let (best, names) = scan(dir, &folded)?;
        match names {
            Some(names) if !stamp.changed_within(RACY_WINDOW_SECS, now) => {
                self.lock().insert(stamp, names);
            }
            _ => {}
        }
        Ok(best.map_or(Lookup::Missing, Lookup::Found))
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Nothing panics while the lock is held; if something did, the cache is still
        // consistent enough to use (at worst an index is missing).
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The time, then the stamp of `dir`. The time is taken first: what matters is whether the
/// directory can still change within the tick of the stamp once it has been read.
fn now_and_stamp(dir: &Dir) -> io::Result<(Duration, Stamp)> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Ok((now, Stamp::of(&rustix::fs::fstat(dir)?)))
}

/// The identity and last-change times of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    // The field types of `struct stat` differ between targets.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn of(stat: &rustix::fs::Stat) -> Stamp {
        Stamp {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        }
    }

    fn key(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Whether the directory changed (mtime or ctime) less than `window` seconds before
    /// `now` (or claims to have changed in the future).
    fn changed_within(&self, window: i64, now: Duration) -> bool {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.mtime.0.max(self.ctime.0) >= now.saturating_sub(window)
    }
}

#[derive(Debug, Default)]
struct Cache {
    dirs: HashMap<(u64, u64), Cached>,
    /// Sum of the indexes' [`FoldedNames::bytes`].
    bytes: usize,
    /// Incremented at each use, for least-recently-used eviction.
    clock: u64,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    names: FoldedNames,
    last_used: u64,
}

impl Cache {
    /// Look `folded` up in the index of the directory `stamp` describes, if it is up to date.
    /// An out-of-date index is left for [`Cache::insert`] to replace: the caller's stamp may
    /// be the older one.
    fn find(&mut self, stamp: &Stamp, folded: &str) -> Option<Lookup> {
        let cached = self.dirs.get_mut(&stamp.key())?;
        if cached.stamp != *stamp {
            return None;
        }
        self.clock += 1;
        cached.last_used = self.clock;
        Some(match cached.names.find(folded) {
            Some(name) => Lookup::Found(name.to_owned()),
            None => Lookup::Missing,
        })
    }

    /// Keep `names` as the index of the directory `stamp` describes, dropping the least
    /// recently used indexes to stay within [`MAX_INDEXED_DIRS`] and [`MAX_INDEX_BYTES`].
    fn insert(&mut self, stamp: Stamp, names: FoldedNames) {
        let bytes = names.bytes();
        if bytes > MAX_INDEX_BYTES {
            return;
        }
        self.remove(stamp.key());
        // Each turn removes an index: at most MAX_INDEXED_DIRS turns.
        while self.dirs.len() >= MAX_INDEXED_DIRS || self.bytes + bytes > MAX_INDEX_BYTES {
            let oldest = self
                .dirs
                .iter()
                .min_by_key(|(_, cached)| cached.last_used)
                .map(|(key, _)| *key);
            match oldest {
                Some(key) => self.remove(key),
                None => break,
            }
        }
        self.clock += 1;
        self.bytes += bytes;
        let cached = Cached {
            stamp,
            names,
            last_used: self.clock,
        };
        self.dirs.insert(stamp.key(), cached);
    }

    fn remove(&mut self, key: (u64, u64)) {
        if let Some(old) = self.dirs.remove(&key) {
            self.bytes = self.bytes.saturating_sub(old.names.bytes());
        }
    }
}

/// A directory's names, case-folded and sorted, each with its real name: all the text in one
/// string, so an entry costs 16 bytes plus its names, not two heap allocations.
#[derive(Debug, Default)]
struct FoldedNames {
    text: String,
    /// Sorted by folded name, then by real name (in byte order), so the first entry with a
    /// given folded name is the one to serve.
    entries: Vec<Entry>,
}

/// Byte ranges of [`FoldedNames::text`]: `start` and `len`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    folded: (u32, u32),
    real: (u32, u32),
}

impl FoldedNames {
    fn slice(&self, (start, len): (u32, u32)) -> &str {
        let start = start as usize;
        self.text.get(start..start + len as usize).unwrap_or("")
    }

    /// The real name of the smallest entry whose folded name is `folded`.
    fn find(&self, folded: &str) -> Option<&str> {
        let i = self
            .entries
            .partition_point(|e| self.slice(e.folded) < folded);
        let entry = self.entries.get(i)?;
        (self.slice(entry.folded) == folded).then(|| self.slice(entry.real))
    }

    /// Add `real`, whose folded form is `folded`; `false` (and nothing added) if the index
    /// would exceed [`MAX_INDEX_BYTES`].
    fn push(&mut self, folded: &str, real: &str) -> bool {
        let extra = folded.len() + if folded == real { 0 } else { real.len() };
        if self.approximate_bytes() + extra + size_of::<Entry>() > MAX_INDEX_BYTES {
            return false;
        }
        // Within MAX_INDEX_BYTES, far below u32::MAX.
        let (Ok(start), Ok(folded_len), Ok(real_len)) = (
            u32::try_from(self.text.len()),
            u32::try_from(folded.len()),
            u32::try_from(real.len()),
        ) else {
            return false;
        };
        self.text.push_str(folded);
        let real = if folded == real {
            (start, folded_len)
        } else {
            self.text.push_str(real);
            (start + folded_len, real_len)
        };
        self.entries.push(Entry {
            folded: (start, folded_len),
            real,
        });
        true
    }

    fn approximate_bytes(&self) -> usize {
        self.text.len() + self.entries.len() * size_of::<Entry>()
    }

    /// The memory held, in bytes.
    fn bytes(&self) -> usize {
        self.text.capacity() + self.entries.capacity() * size_of::<Entry>()
    }

    fn finish(mut self) -> FoldedNames {
        let mut entries = std::mem::take(&mut self.entries);
        entries.sort_unstable_by(|a, b| {
            (self.slice(a.folded), self.slice(a.real))
                .cmp(&(self.slice(b.folded), self.slice(b.real)))
        });
        self.entries = entries;
        self.entries.shrink_to_fit();
        self.text.shrink_to_fit();
        self
    }
}

/// Read `dir`: the smallest name (in byte order) whose folded form is `folded`, and the index
/// of the whole directory unless it would exceed [`MAX_INDEX_BYTES`].
fn scan(dir: &Dir, folded: &str) -> io::Result<(Option<String>, Option<FoldedNames>)> {
    let mut best: Option<String> = None;
    let mut names = Some(FoldedNames::default());
    let mut entry_folded = String::new();
    // Ends with the directory: readdir returns each entry once.
    for entry in dir.entries()? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        entry_folded.clear();
        entry_folded.extend(name.chars().flat_map(char::to_lowercase));
        if entry_folded == folded && best.as_deref().is_none_or(|b| name < b) {
            best = Some(name.to_owned());
        }
        let kept = names
            .as_mut()
            .is_some_and(|index| index.push(&entry_folded, name));
        if !kept {
            // Too large to keep: free it now rather than at the end of the listing.
            names = None;
        }
    }
    Ok((best, names.map(FoldedNames::finish)))
}

/// `name` in Unicode lower case: two names are equal ignoring case when their folded forms
/// are equal.
pub(crate) fn fold(name: &str) -> String {
    name.chars().flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(names: &[&str]) -> FoldedNames {
        let mut index = FoldedNames::default();
        for name in names {
            assert!(index.push(&fold(name), name));
        }
        index.finish()
    }

    #[test]
    fn finds_the_smallest_matching_name() {
        let index = index(&["b", "README", "Readme", "readme.txt", "ÄB", "x"]);
        assert_eq!(index.find("readme"), Some("README"));
        assert_eq!(index.find("äb"), Some("ÄB"));
        assert_eq!(index.find("b"), Some("b"));
        assert_eq!(index.find("readme.txt"), Some("readme.txt"));
        assert_eq!(index.find("read"), None);
        assert_eq!(index.find("z"), None);
        assert_eq!(index.find(""), None);
    }

    #[test]
    fn names_already_in_lower_case_are_stored_once() {
        let index = index(&["abc", "ABC"]);
        assert_eq!(index.text, "abcabcABC");
    }

    #[test]
    fn recent_changes_are_racy() {
        let stamp = |secs| Stamp {
            dev: 1,
            ino: 2,
            mtime: (secs, 0),
            ctime: (100, 0),
        };
        let now = Duration::from_secs(1_000);
        assert!(stamp(999).changed_within(2, now));
        assert!(stamp(998).changed_within(2, now));
        assert!(!stamp(997).changed_within(2, now));
        assert!(stamp(5_000).changed_within(2, now), "in the future");
        let ctime_recent = Stamp {
            ctime: (999, 0),
            ..stamp(100)
        };
        assert!(ctime_recent.changed_within(2, now));
    }

    #[test]
    fn cache_stays_within_its_bounds() {
        let mut cache = Cache::default();
        let stamp = |ino| Stamp {
            dev: 1,
            ino,
            mtime: (1, 0),
            ctime: (1, 0),
        };
        for ino in 0..(MAX_INDEXED_DIRS as u64 * 2) {
            cache.insert(stamp(ino), index(&["a"]));
            // Keep inode 0 in use: it must survive.
            assert!(cache.find(&stamp(0), "a").is_some());
        }
        assert_eq!(cache.dirs.len(), MAX_INDEXED_DIRS);
        assert!(cache.dirs.contains_key(&(1, 0)));
        let total: usize = cache.dirs.values().map(|c| c.names.bytes()).sum();
        assert_eq!(cache.bytes, total);
        // An index with another stamp is not used, and is replaced.
        let changed = Stamp {
            ctime: (2, 0),
            ..stamp(0)
        };
        assert!(cache.find(&changed, "a").is_none());
        cache.insert(changed, index(&["b", "c"]));
        assert_eq!(cache.find(&changed, "b"), Some(Lookup::Found("b".into())));
        assert_eq!(cache.find(&changed, "a"), Some(Lookup::Missing));
        assert_eq!(cache.dirs.len(), MAX_INDEXED_DIRS);
        let total: usize = cache.dirs.values().map(|c| c.names.bytes()).sum();
        assert_eq!(cache.bytes, total);
    }

    #[test]
    fn an_index_over_budget_is_refused() {
        let mut index = FoldedNames::default();
        let name = "n".repeat(255);
        let mut pushed = 0usize;
        while index.push(&name, &name) {
            pushed += 1;
            assert!(pushed < MAX_INDEX_BYTES, "never refused");
        }
        assert!(index.approximate_bytes() <= MAX_INDEX_BYTES);
    }
}
