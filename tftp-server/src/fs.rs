//! Serving files from a root directory, confined to it.
//!
//! This is the bundled "directory handler" back-end (`tftpd --root DIR`). A [`Root`] holds a
//! [`cap_std::fs::Dir`] handle on the served directory; every lookup goes through that handle,
//! so confinement is enforced by the kernel (`openat2` with `RESOLVE_BENEATH` on Linux, with
//! cap-std's manual resolution as the fallback), not by string checks on paths. A symlink that
//! stays inside the root is followed; one that leads out of it fails to resolve.
//!
//! On top of that, the TFTP file name is normalised first (see [`Root::open_read`]): `\` is a
//! separator, leading `/` is stripped, and any `..` component is refused outright.
//!
//! Only regular files are served. A file with more than one hard link is refused by default
//! ([`RootOptions::follow_hardlinks`]), because a hard link can bring a file from outside the
//! root inside it, where no path check can see it.
//!
//! Uploads ([`Root::create_upload`]) are written to a temporary file created exclusively in the
//! target's directory and moved into place atomically by [`Upload::commit`]; an [`Upload`]
//! dropped without committing removes its temporary file, so a failed transfer never leaves
//! anything under the final name. A temporary file is named `.NAME.tftp-` and 16 hex digits;
//! names of that form are refused to clients (a read would serve a partial upload, a write
//! could replace another client's upload in progress), and the temporary files a crashed
//! server left behind are removed when a root is opened for writing
//! ([`Root::remove_stale_uploads`]).
//!
//! Error messages ([`FsError::message`]) are fixed strings: they never contain a server-side
//! path nor the requested name, so they are safe to send to clients in an ERROR packet. Why a
//! request was refused is for the operator: [`FsError::reason`] (a fixed phrase from
//! [`reason`]), which [`Root::refuse`] logs with the peer and the name, rate-limited.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};
#[cfg(test)]
use case_index::fold;
use case_index::{CaseIndex, Lookup};
use rustix::fs::{OFlags, RenameFlags};
use rustix::io::Errno;
use tftp_proto::ErrorCode;

use crate::log_limit::LogLimit;
use crate::request::{HandlerError, Printable, Request};

mod case_index;

/// Longest TFTP file name accepted, in bytes; longer names are an access violation.
pub const MAX_NAME_LEN: usize = 1024;

/// Most path components accepted in a TFTP file name; more are an access violation.
pub const MAX_COMPONENTS: usize = 64;

/// Longest part of the target name copied into a temporary upload name, in bytes, so the
/// temporary name stays under `NAME_MAX` (255) with its prefix and random suffix.
const TEMP_NAME_STEM_MAX: usize = 200;

/// How many random temporary names to try before giving up on an upload.
const TEMP_NAME_ATTEMPTS: u32 = 16;

/// Mode of uploaded files (before the umask).
const UPLOAD_MODE: u32 = 0o644;

/// Marker between the stem and the random part of a temporary upload name.
const TEMP_MARKER: &str = ".tftp-";

/// Hex digits of the random part of a temporary upload name.
const TEMP_RANDOM_DIGITS: usize = 16;

/// Temporary upload files not modified for this long are removed when a root is opened for
/// writing ([`Root::open`]). An upload in progress writes to its file at every block, and a
/// transfer without progress is abandoned after its retransmissions (well under a minute by
/// default), so a temporary file this old belongs to no running upload, neither of this
/// process nor of another server sharing the root.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// Most directory entries [`Root::remove_stale_uploads`] looks at, so that opening a huge tree
/// stays bounded in time.
const SWEEP_MAX_ENTRIES: usize = 1_000_000;

/// Options of a served [`Root`]. The defaults are the safe, read-only ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootOptions {
    /// If the exact path is not found, match each component case-insensitively (Unicode lower
    /// case) against the directory's entries. When several entries match, the smallest name in
    /// byte order wins, so the choice is deterministic. Default: `false`.
    ///
    /// Each directory is listed once into a case-folded index, kept until the directory
    /// changes (its mtime or ctime, checked with an `fstat` at each lookup), so a miss costs
    /// a binary search rather than a listing of the directory: PXE clients probe many missing
    /// names by design. The indexes take a few MB per 100,000 names, at most 32 MiB and 64
    /// directories per root (least recently used dropped first); a directory changed in the
    /// last two or three seconds is listed again at each miss, because a change within one
    /// timestamp tick would not show.
    pub case_insensitive: bool,
    /// Accept uploads (write requests). When `false`, every upload is refused with
    /// [`ErrorCode::ACCESS_VIOLATION`]. Default: `false`.
    pub allow_write: bool,
    /// Let an upload replace an existing file. When `false`, an upload to an existing name is
    /// refused with [`ErrorCode::FILE_EXISTS`]. Default: `false`.
    pub allow_overwrite: bool,
    /// Largest upload accepted, in bytes; beyond it the upload fails with
    /// [`ErrorCode::DISK_FULL`]. Default: no limit.
    pub max_upload_size: Option<u64>,
    /// Serve regular files that have more than one hard link. When `false`, such files are
    /// refused with [`ErrorCode::ACCESS_VIOLATION`], because a hard link can bring a file from
    /// outside the root inside it. Default: `false`.
    pub follow_hardlinks: bool,
}

/// A directory served over TFTP, every access confined to it.
///
/// `Root` is `Send + Sync`: share one among all sessions in an `Arc`. Its only lock guards
/// the case-insensitive index and is held for a hash lookup and a binary search, never
/// while the file system is accessed.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    options: RootOptions,
    /// Case-folded directory listings, for [`RootOptions::case_insensitive`].
    index: CaseIndex,
    /// The rate limit of [`Root::refuse`]'s log lines.
    refusals: LogLimit,
}

impl Root {
    /// Open the directory at `path` (resolved normally, with the process's authority) as the
    /// root. Everything afterwards is relative to the directory handle, so renaming or
    /// replacing `path` later does not change what is served.
    ///
    /// With [`RootOptions::allow_write`], this first removes the temporary files of uploads
    /// that a crashed server left behind, if not modified for [`STALE_UPLOAD_AGE`] (see
    /// [`Root::remove_stale_uploads`]; it walks the tree, so it blocks for a moment on a large
    /// one). A failure there is logged, not returned: it does not stop the root from serving.
    pub fn open(path: impl AsRef<Path>, options: RootOptions) -> io::Result<Root> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        check_access(&dir, &options)?;
        let root = Root {
            dir,
            options,
            index: CaseIndex::new(),
            refusals: LogLimit::default(),
        };
        if root.options.allow_write {
            match root.remove_stale_uploads(STALE_UPLOAD_AGE) {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "removed temporary files of interrupted uploads")
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot look for temporary files of interrupted uploads"
                ),
            }
        }
        Ok(root)
    }

    /// Remove the temporary files of uploads that were neither committed nor cleaned up (the
    /// server was killed, or the machine crashed, mid-transfer), if not modified for
    /// `older_than`; returns how many were removed.
    ///
    /// Only regular files whose name has the exact form this module gives temporary files
    /// (`.NAME.tftp-` and 16 lower-case hex digits) are removed; symlinks are not followed,
    /// and directories are visited down to [`MAX_COMPONENTS`] levels (no upload goes deeper),
    /// at most 1,000,000 entries in all. Age rather than "all of them" because another server
    /// may share the root, with uploads in progress; [`STALE_UPLOAD_AGE`] is safe. Directories
    /// that cannot be read are skipped; an error listing the root itself is returned.
    pub fn remove_stale_uploads(&self, older_than: Duration) -> io::Result<usize> {
        let Some(cutoff) = SystemTime::now().checked_sub(older_than) else {
            return Ok(0);
        };
        let mut sweep = Sweep {
            cutoff,
            budget: SWEEP_MAX_ENTRIES,
            removed: 0,
        };
        sweep.dir(&self.dir, 0)?;
        if sweep.budget == 0 {
            tracing::warn!(
                entries = SWEEP_MAX_ENTRIES,
                "stopped looking for temporary files of interrupted uploads: the root is too large"
            );
        }
        Ok(sweep.removed)
    }

    /// The client's error for `request`, refused with `error`; logs why for the operator.
    ///
    /// The reason ([`FsError::reason`]) is logged at info level with the peer and the
    /// requested name (control characters escaped), at most one line per reason every
    /// [`LogLimit::PERIOD`], the next one saying how many were suppressed. "No such file" is
    /// routine (PXE clients probe many names): logged at debug level only. The client gets
    /// the error's fixed message, never the reason.
    pub fn refuse(&self, request: &Request, error: FsError) -> HandlerError {
        let reason = error.reason();
        let file = Printable(&request.filename);
        if error.code == ErrorCode::FILE_NOT_FOUND {
            tracing::debug!(peer = %request.peer, %file, "not found: {reason}");
        } else {
            self.refusals.note(Instant::now(), reason, |suppressed| {
                tracing::info!(peer = %request.peer, %file, suppressed, "refused: {reason}");
            });
        }
        error.into()
    }

    /// How many directory listings case-insensitive lookups have read so far (for tests).
    #[doc(hidden)]
    pub fn directory_scans(&self) -> u64 {
        self.index.scans()
    }

    /// The options this root was opened with.
    pub fn options(&self) -> &RootOptions {
        &self.options
    }

    /// Open the file a read request names, for reading; returns it with its size (for the
    /// RFC 2349 `tsize` option).
    ///
    /// The name is normalised first: `\` is treated as `/`, leading `/` is stripped (as
    /// tftp-hpa does with `--secure`), empty and `.` components are dropped. A `..` component
    /// anywhere, a name over [`MAX_NAME_LEN`] bytes or [`MAX_COMPONENTS`] components, or a NUL
    /// byte is an access violation; an empty name is "file not found". Percent-encoding is not
    /// decoded.
    ///
    /// Errors: missing file → [`ErrorCode::FILE_NOT_FOUND`]; permission denied, a symlink
    /// leading out of the root, anything but a regular file (directory, device, FIFO,
    /// socket), or the name of an upload's temporary file (`.NAME.tftp-` and 16 hex digits,
    /// in any case) → [`ErrorCode::ACCESS_VIOLATION`]. Opening never blocks, even on a FIFO.
    ///
    /// With [`RootOptions::case_insensitive`], a miss may read a directory to build its
    /// case-folded index (see [`RootOptions::case_insensitive`]): call this on a thread that
    /// may block, or try [`Root::open_read_without_scan`] first.
    pub fn open_read(&self, tftp_path: &str) -> Result<(std::fs::File, u64), FsError> {
        let components = normalize(tftp_path)?;
        refuse_temp_name(&components)?;
        self.resolve(&self.dir, &components, |path| self.open_regular(path))
    }

    /// As [`Root::open_read`], but never reads a directory listing: `None` when the
    /// case-insensitive fallback would have to (re)build a directory's index. An async
    /// adapter calls this on its runtime thread (a few system calls, like any open) and
    /// [`Root::open_read`] on a blocking thread only when it returns `None`, which happens
    /// once per change of a directory, not once per miss.
    pub fn open_read_without_scan(
        &self,
        tftp_path: &str,
    ) -> Option<Result<(std::fs::File, u64), FsError>> {
        let components = match normalize(tftp_path).and_then(|c| refuse_temp_name(&c).map(|()| c)) {
            Ok(components) => components,
            Err(e) => return Some(Err(e)),
        };
        self.resolve_with(&self.dir, &components, false, |path| {
            self.open_regular(path)
        })
    }

    /// Start an upload of `tftp_path`; `announced` is the size the client announced with the
    /// RFC 2349 `tsize` option, if any.
    ///
    /// The name is normalised as in [`Root::open_read`]. The parent directory must already
    /// exist. Refused with [`ErrorCode::ACCESS_VIOLATION`] unless
    /// [`RootOptions::allow_write`], or when the target is a directory or a special file (or a
    /// symlink to one), or a symlink leading out of the root, or its parent leads out of the
    /// root, or its name is that of a temporary upload file (as in [`Root::open_read`]); with
    /// [`ErrorCode::FILE_EXISTS`] when the target exists and [`RootOptions::allow_overwrite`]
    /// is off; with [`ErrorCode::DISK_FULL`] when `announced` exceeds
    /// [`RootOptions::max_upload_size`].
    ///
    /// The data goes to a temporary file in the target's directory; nothing appears under the
    /// final name until [`Upload::commit`].
    pub fn create_upload(
        &self,
        tftp_path: &str,
        announced: Option<u64>,
    ) -> Result<Upload, FsError> {
        if !self.options.allow_write {
            return Err(FsError::refused(
                ErrorCode::ACCESS_VIOLATION,
                reason::WRITE_DISABLED,
            ));
        }
        let max_size = self.options.max_upload_size;
        if exceeds(announced, max_size) {
            return Err(FsError::refused(ErrorCode::DISK_FULL, reason::TOO_LARGE));
        }
        let components = normalize(tftp_path)?;
        refuse_temp_name(&components)?;
        let Some((name, parent)) = components.split_last() else {
            return Err(FsError::new(ErrorCode::FILE_NOT_FOUND));
        };
        let parent_dir = if parent.is_empty() {
            self.dir.try_clone().map_err(FsError::from_io)?
        } else {
            self.resolve(&self.dir, parent, |path| {
                self.dir.open_dir(path).map_err(FsError::from_io)
            })?
        };

        // Find the target (case-insensitively if so configured) to apply the overwrite rules.
        let found = self.resolve(&parent_dir, std::slice::from_ref(name), |path| {
            let meta = parent_dir
                .symlink_metadata(path)
                .map_err(FsError::from_io)?;
            Ok((path.as_os_str().to_os_string(), meta))
        });
        let final_name = match found {
            Ok((existing, meta)) => {
                // Resolved case-insensitively to another name: check that one too.
                if existing.to_str().is_some_and(is_temp_name) {
                    return Err(FsError::refused(
                        ErrorCode::ACCESS_VIOLATION,
                        reason::TEMPORARY,
                    ));
                }
                if !(meta.is_file() || meta.is_symlink()) {
                    return Err(FsError::refused(
                        ErrorCode::ACCESS_VIOLATION,
                        cap_kind(meta.file_type()),
                    ));
                }
                if meta.is_symlink() {
                    replaceable_link(&parent_dir, &existing)?;
                }
                if !self.options.allow_overwrite {
                    return Err(FsError::refused(ErrorCode::FILE_EXISTS, reason::EXISTS));
                }
                // Replacing a symlink replaces the link itself (rename does not follow it).
                existing
            }
            Err(e) if e.code == ErrorCode::FILE_NOT_FOUND => OsString::from(*name),
            Err(e) => return Err(e),
        };

        let (file, temp_name) = create_temp(&parent_dir, name)?;
        Ok(Upload {
            dir: parent_dir,
            temp_name,
            final_name,
            file,
            max_size,
            overwrite: self.options.allow_overwrite,
            committed: false,
        })
    }

    /// [`Root::resolve_with`], reading directories as needed.
    fn resolve<T>(
        &self,
        base: &Dir,
        components: &[&str],
        op: impl Fn(&Path) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        self.resolve_with(base, components, true, op)
            // Only `may_scan: false` gives `None`.
            .unwrap_or_else(|| Err(FsError::new(ErrorCode::NOT_DEFINED)))
    }

    /// Run `op` on the exact path; if that finds nothing and the root is case-insensitive,
    /// resolve each component case-insensitively under `base` and run `op` again. `None` if
    /// that needs a directory listing and `may_scan` is false.
    fn resolve_with<T>(
        &self,
        base: &Dir,
        components: &[&str],
        may_scan: bool,
        op: impl Fn(&Path) -> Result<T, FsError>,
    ) -> Option<Result<T, FsError>> {
        let exact: PathBuf = components.iter().collect();
        match op(&exact) {
            Err(e) if e.code == ErrorCode::FILE_NOT_FOUND && self.options.case_insensitive => {
                match self.resolve_case_insensitive(base, components, may_scan) {
                    Ok(Some(resolved)) => Some(op(&resolved)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                }
            }
            result => Some(result),
        }
    }

    /// Resolve `components` under `base`, each one exactly if it exists, else the smallest
    /// entry (in byte order) of its directory that equals it ignoring case, found through the
    /// directory's index. Lookups go through `base`, so symlinks are confined as for any
    /// other access. `None` if a directory's index is out of date and `may_scan` is false.
    fn resolve_case_insensitive(
        &self,
        base: &Dir,
        components: &[&str],
        may_scan: bool,
    ) -> Result<Option<PathBuf>, FsError> {
        let mut resolved = PathBuf::new();
        for &component in components {
            let exact = resolved.join(component);
            match base.symlink_metadata(&exact) {
                Ok(_) => {
                    resolved = exact;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(FsError::from_io(e)),
            }
            let opened;
            let dir = if resolved.as_os_str().is_empty() {
                base
            } else {
                opened = base.open_dir(&resolved).map_err(FsError::from_io)?;
                &opened
            };
            match self
                .index
                .lookup(dir, component, may_scan)
                .map_err(FsError::from_io)?
            {
                Lookup::Found(name) => resolved.push(name),
                Lookup::Missing => return Err(FsError::new(ErrorCode::FILE_NOT_FOUND)),
                Lookup::NeedsScan => return Ok(None),
            }
        }
        Ok(Some(resolved))
    }

    /// Open `path` (relative to the root) if it is a regular file we may serve.
    fn open_regular(&self, path: &Path) -> Result<(std::fs::File, u64), FsError> {
        // Resolved case-insensitively to another name: check that one too.
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(is_temp_name)
        {
            return Err(FsError::refused(
                ErrorCode::ACCESS_VIOLATION,
                reason::TEMPORARY,
            ));
        }
        // Look before opening, so a device node is never opened (opening some has side
        // effects); the check after opening is the authoritative one.
        let meta = self.dir.metadata(path).map_err(FsError::from_io)?;
        if !meta.is_file() {
            return Err(FsError::refused(
                ErrorCode::ACCESS_VIOLATION,
                cap_kind(meta.file_type()),
            ));
        }
        let mut options = OpenOptions::new();
        options.read(true);
        // O_NONBLOCK: a FIFO swapped in after the check must not block the open.
        options.custom_flags((OFlags::NONBLOCK | OFlags::NOCTTY).bits() as i32);
        let file = self
            .dir
            .open_with(path, &options)
            .map_err(FsError::from_io)?
            .into_std();
        let meta = file.metadata().map_err(FsError::from_io)?;
        if !meta.is_file() {
            use std::os::unix::fs::FileTypeExt;
            let t = meta.file_type();
            return Err(FsError::refused(
                ErrorCode::ACCESS_VIOLATION,
                kind(
                    t.is_dir(),
                    t.is_fifo(),
                    t.is_socket(),
                    t.is_char_device(),
                    t.is_block_device(),
                ),
            ));
        }
        if !self.options.follow_hardlinks && std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err(FsError::refused(
                ErrorCode::ACCESS_VIOLATION,
                reason::HARD_LINKED,
            ));
        }
        // Adapters may read with ordinary blocking calls.
        let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| FsError::from_io(e.into()))?;
        rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)
            .map_err(|e| FsError::from_io(e.into()))?;
        Ok((file, meta.len()))
    }
}

/// An upload in progress: a temporary file in the target's directory.
///
/// Write the data into [`Upload::file`], check the running total with
/// [`Upload::check_size`], then [`Upload::commit`]. Dropping an `Upload` that was not
/// committed removes the temporary file.
#[derive(Debug)]
pub struct Upload {
    /// The target's directory; every operation is relative to it.
    dir: Dir,
    temp_name: OsString,
    final_name: OsString,
    file: std::fs::File,
    max_size: Option<u64>,
    overwrite: bool,
    committed: bool,
}

impl Upload {
    /// The temporary file to write the data into. Adapters may also keep a handle of their
    /// own from [`std::fs::File::try_clone`]; map its write errors with
    /// [`FsError::from_write_error`].
    pub fn file(&mut self) -> &mut std::fs::File {
        &mut self.file
    }

    /// A writer into the temporary file that refuses bytes past
    /// [`RootOptions::max_upload_size`] with [`io::ErrorKind::QuotaExceeded`] (ERROR 3): a
    /// client need not announce the size, so the limit holds whatever `tsize` said. Every
    /// adapter's directory handler writes uploads through it.
    pub fn sink(&mut self) -> io::Result<UploadSink> {
        Ok(UploadSink {
            file: self.file.try_clone()?,
            written: 0,
            max_size: self.max_size,
        })
    }

    /// Check that `total` bytes received so far are within
    /// [`RootOptions::max_upload_size`]; beyond it, [`ErrorCode::DISK_FULL`].
    pub fn check_size(&self, total: u64) -> Result<(), FsError> {
        if exceeds(Some(total), self.max_size) {
            return Err(FsError::refused(ErrorCode::DISK_FULL, reason::TOO_LARGE));
        }
        Ok(())
    }

    /// Flush the data to disk (`fsync`), then move the file into place atomically.
    ///
    /// Without [`RootOptions::allow_overwrite`] the move never replaces anything
    /// (`renameat2(RENAME_NOREPLACE)`, or `link` then `unlink` on file systems without it),
    /// so of two concurrent uploads of one name exactly one wins and the other gets
    /// [`ErrorCode::FILE_EXISTS`]. With it, a plain `rename`: the last complete upload wins,
    /// whole. On error the temporary file is removed.
    pub fn commit(mut self) -> Result<(), FsError> {
        self.file.sync_all().map_err(FsError::from_write_error)?;
        if self.overwrite {
            rustix::fs::renameat(&self.dir, &self.temp_name, &self.dir, &self.final_name)
                .map_err(|e| FsError::from_write_error(e.into()))?;
            self.committed = true;
        } else {
            match rustix::fs::renameat_with(
                &self.dir,
                &self.temp_name,
                &self.dir,
                &self.final_name,
                RenameFlags::NOREPLACE,
            ) {
                Ok(()) => self.committed = true,
                // The file system does not support RENAME_NOREPLACE.
                Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => self.link_into_place()?,
                Err(e) => return Err(FsError::from_write_error(e.into())),
            }
        }
        // Make the new directory entry durable too. The file is already in place, so a
        // failure here is not reported to the client.
        let _ = sync_dir(&self.dir);
        Ok(())
    }
}

impl Upload {
    /// Move into place without replacing anything, for file systems without
    /// `RENAME_NOREPLACE`: `link` fails if the name exists, then the temporary name is removed.
    /// Until then the file has two links, so a concurrent reader without
    /// [`RootOptions::follow_hardlinks`] may briefly be refused it.
    fn link_into_place(&mut self) -> Result<(), FsError> {
        self.dir
            .hard_link(&self.temp_name, &self.dir, &self.final_name)
            .map_err(FsError::from_write_error)?;
        // If this fails, `drop` tries again.
        if self.dir.remove_file(&self.temp_name).is_ok() {
            self.committed = true;
        }
        Ok(())
    }
}

/// An upload's temporary file, size-limited (see [`Upload::sink`]).
#[derive(Debug)]
pub struct UploadSink {
    file: std::fs::File,
    written: u64,
    max_size: Option<u64>,
}

impl io::Write for UploadSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The rule of `Root::create_upload` and `Upload::check_size`, on the running total.
        let total = self.written.saturating_add(buf.len() as u64);
        if exceeds(Some(total), self.max_size) {
            return Err(io::ErrorKind::QuotaExceeded.into());
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.dir.remove_file(&self.temp_name);
        }
    }
}

/// Why a file could not be served or stored: the TFTP error code and a fixed message to send
/// to the client (RFC 1350 §5, ERROR packet), with the underlying I/O error if any.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FsError {
    /// The error code for the ERROR packet.
    pub code: ErrorCode,
    /// The message for the ERROR packet. A fixed string per code: never a path nor the
    /// requested name.
    pub message: &'static str,
    /// Why, for the operator (see [`FsError::reason`]).
    reason: Option<&'static str>,
    #[source]
    source: Option<io::Error>,
}

impl FsError {
    /// An error with `code` and its fixed message, without an I/O cause.
    pub fn new(code: ErrorCode) -> FsError {
        FsError {
            code,
            message: message_for(code),
            reason: None,
            source: None,
        }
    }

    /// An error with `code` and its fixed message, refused for `reason` (one of the
    /// [`reason`] constants, or another fixed phrase: it is a key of the refusal log's rate
    /// limit).
    pub fn refused(code: ErrorCode, reason: &'static str) -> FsError {
        FsError {
            reason: Some(reason),
            ..FsError::new(code)
        }
    }

    /// Why the request was refused, for the operator's log (never for the client: it may say
    /// more about the server than a client should learn). A fixed phrase from [`reason`],
    /// such as [`reason::HARD_LINKED`] or [`reason::OUTSIDE_ROOT`]; for an I/O error, one
    /// for its `errno`.
    pub fn reason(&self) -> &'static str {
        if let Some(reason) = self.reason {
            return reason;
        }
        let Some(err) = &self.source else {
            return match self.code {
                ErrorCode::FILE_NOT_FOUND => reason::NOT_FOUND,
                ErrorCode::ACCESS_VIOLATION => reason::PERMISSION,
                ErrorCode::DISK_FULL => reason::NO_SPACE,
                ErrorCode::FILE_EXISTS => reason::EXISTS,
                _ => reason::IO,
            };
        };
        match Errno::from_io_error(err) {
            Some(Errno::NOENT) => reason::NOT_FOUND,
            Some(Errno::NOTDIR) => reason::NOT_A_DIRECTORY,
            Some(Errno::ACCESS | Errno::PERM) => reason::PERMISSION,
            // openat2(RESOLVE_BENEATH): the path left the root.
            Some(Errno::XDEV) => reason::OUTSIDE_ROOT,
            Some(Errno::LOOP) => reason::SYMLINK_LOOP,
            Some(Errno::ISDIR) => reason::DIRECTORY,
            Some(Errno::ROFS) => reason::READ_ONLY,
            Some(Errno::NAMETOOLONG) => reason::NAME_TOO_LONG,
            Some(Errno::NXIO | Errno::NODEV) => reason::DEVICE,
            Some(Errno::TXTBSY) => reason::BUSY,
            Some(Errno::NOSPC | Errno::DQUOT | Errno::FBIG) => reason::NO_SPACE,
            Some(Errno::EXIST) => reason::EXISTS,
            Some(_) => reason::IO,
            // cap-std's own resolution reports an escape from the root as PermissionDenied
            // without an errno.
            None if err.kind() == io::ErrorKind::PermissionDenied => reason::OUTSIDE_ROOT,
            None if err.kind() == io::ErrorKind::NotFound => reason::NOT_FOUND,
            None => reason::IO,
        }
    }

    /// Map an I/O error from a file-system operation to a TFTP error: not found (or a
    /// component not a directory) → [`ErrorCode::FILE_NOT_FOUND`]; permission denied, a path
    /// leading out of the root, a symlink loop, a directory, a socket or device (`ENXIO`, `ENODEV`), a read-only file
    /// system →
    /// [`ErrorCode::ACCESS_VIOLATION`]; no space or quota exceeded →
    /// [`ErrorCode::DISK_FULL`]; already exists → [`ErrorCode::FILE_EXISTS`]; anything else →
    /// [`ErrorCode::NOT_DEFINED`] ("I/O error"). The I/O error is kept as the source.
    pub fn from_io(err: io::Error) -> FsError {
        let code = match Errno::from_io_error(&err) {
            Some(Errno::NOENT | Errno::NOTDIR) => ErrorCode::FILE_NOT_FOUND,
            Some(
                Errno::ACCESS
                | Errno::PERM
                | Errno::XDEV
                | Errno::LOOP
                | Errno::ISDIR
                | Errno::ROFS
                | Errno::NAMETOOLONG
                | Errno::NOTEMPTY
                | Errno::TXTBSY
                | Errno::NXIO
                | Errno::NODEV,
            ) => ErrorCode::ACCESS_VIOLATION,
            Some(Errno::NOSPC | Errno::DQUOT | Errno::FBIG) => ErrorCode::DISK_FULL,
            Some(Errno::EXIST) => ErrorCode::FILE_EXISTS,
            _ => match err.kind() {
                // cap-std reports an escape from the root as PermissionDenied without errno.
                io::ErrorKind::NotFound => ErrorCode::FILE_NOT_FOUND,
                io::ErrorKind::PermissionDenied => ErrorCode::ACCESS_VIOLATION,
                io::ErrorKind::AlreadyExists => ErrorCode::FILE_EXISTS,
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorCode::DISK_FULL,
                _ => ErrorCode::NOT_DEFINED,
            },
        };
        FsError {
            code,
            message: if crate::descriptors::exhausted(&err) {
                crate::request::SERVER_BUSY
            } else {
                message_for(code)
            },
            reason: None,
            source: Some(err),
        }
    }

    /// Map an error from writing an upload (or committing it): `ENOSPC`, `EDQUOT` and
    /// `EFBIG` → [`ErrorCode::DISK_FULL`]; otherwise as [`FsError::from_io`].
    pub fn from_write_error(err: io::Error) -> FsError {
        FsError::from_io(err)
    }

    /// The I/O error behind this one, if any. For the server's log, not for the client: it
    /// may describe server-side details.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }
}

/// Why a request was refused: the operator-facing phrases of [`FsError::reason`]. Logged,
/// never sent to the client.
pub mod reason {
    /// No such file (or no such parent directory).
    pub const NOT_FOUND: &str = "no such file";
    /// A component of the path is not a directory.
    pub const NOT_A_DIRECTORY: &str = "a component of the path is not a directory";
    /// The name has no component (empty, or only `/` and `.`).
    pub const EMPTY: &str = "an empty file name";
    /// The name has a `..` component.
    pub const DOT_DOT: &str = "a `..` component in the name";
    /// The name has a NUL byte.
    pub const NUL: &str = "a NUL byte in the name";
    /// The name (or one of its components) is too long.
    pub const NAME_TOO_LONG: &str = "the name is too long";
    /// The name has more than [`MAX_COMPONENTS`](super::MAX_COMPONENTS) components.
    pub const TOO_DEEP: &str = "the name has too many components";
    /// The name is that of an upload's temporary file.
    pub const TEMPORARY: &str = "the name of an upload's temporary file";
    /// The file has more than one hard link, and
    /// [`RootOptions::follow_hardlinks`](super::RootOptions::follow_hardlinks) is off.
    pub const HARD_LINKED: &str =
        "a file with more than one hard link (refused unless hard links are followed)";
    /// A symlink (or `..` in one) leads out of the root.
    pub const OUTSIDE_ROOT: &str = "a symlink leading out of the root";
    /// Too many levels of symbolic links.
    pub const SYMLINK_LOOP: &str = "a symlink loop";
    /// The server's user may not read (or search) the file or a directory on its path.
    pub const PERMISSION: &str = "permission denied to the server's user";
    /// A directory.
    pub const DIRECTORY: &str = "a directory, not a regular file";
    /// A FIFO.
    pub const FIFO: &str = "a FIFO, not a regular file";
    /// A socket.
    pub const SOCKET: &str = "a socket, not a regular file";
    /// A device node.
    pub const DEVICE: &str = "a device, not a regular file";
    /// Anything else but a regular file.
    pub const SPECIAL: &str = "not a regular file";
    /// The file is being executed (`ETXTBSY`).
    pub const BUSY: &str = "the file is busy";
    /// An upload onto a symlink that cannot be replaced.
    pub const LINK_NOT_REPLACEABLE: &str =
        "an upload onto a symlink to a directory, a special file, or out of the root";
    /// Uploads are off ([`RootOptions::allow_write`](super::RootOptions::allow_write)).
    pub const WRITE_DISABLED: &str = "uploads are not allowed";
    /// An upload onto an existing file without
    /// [`RootOptions::allow_overwrite`](super::RootOptions::allow_overwrite).
    pub const EXISTS: &str = "the file exists (overwriting is not allowed)";
    /// An upload over [`RootOptions::max_upload_size`](super::RootOptions::max_upload_size).
    pub const TOO_LARGE: &str = "the upload is over the size limit";
    /// No space left, quota exceeded, or file too large for the file system.
    pub const NO_SPACE: &str = "no space left on the file system (or quota exceeded)";
    /// A read-only file system.
    pub const READ_ONLY: &str = "a read-only file system";
    /// Another I/O error.
    pub const IO: &str = "an I/O error";
}

/// The reason for refusing a file of this kind (anything but a regular file).
fn kind(dir: bool, fifo: bool, socket: bool, char_dev: bool, block_dev: bool) -> &'static str {
    if dir {
        reason::DIRECTORY
    } else if fifo {
        reason::FIFO
    } else if socket {
        reason::SOCKET
    } else if char_dev || block_dev {
        reason::DEVICE
    } else {
        reason::SPECIAL
    }
}

/// [`kind`] of a cap-std file type.
fn cap_kind(t: cap_std::fs::FileType) -> &'static str {
    use cap_std::fs::FileTypeExt;
    kind(
        t.is_dir(),
        t.is_fifo(),
        t.is_socket(),
        t.is_char_device(),
        t.is_block_device(),
    )
}

/// The fixed client-facing message for `code`.
fn message_for(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::FILE_NOT_FOUND => "File not found",
        ErrorCode::ACCESS_VIOLATION => "Access violation",
        ErrorCode::DISK_FULL => "Disk full or allocation exceeded",
        ErrorCode::FILE_EXISTS => "File already exists",
        _ => "I/O error",
    }
}

fn exceeds(size: Option<u64>, max: Option<u64>) -> bool {
    matches!((size, max), (Some(size), Some(max)) if size > max)
}

/// Split a TFTP file name into the components of a path relative to the root (also used
/// to map names onto other namespaces, such as an HTTP origin's paths).
///
/// `\` and `/` both separate; empty and `.` components are dropped (which also strips
/// leading `/`). `..` anywhere, NUL, or a name over the limits is an access violation; a
/// name with no component left is "file not found".
pub fn normalize(tftp_path: &str) -> Result<Vec<&str>, FsError> {
    if tftp_path.len() > MAX_NAME_LEN {
        return Err(FsError::refused(
            ErrorCode::ACCESS_VIOLATION,
            reason::NAME_TOO_LONG,
        ));
    }
    if tftp_path.contains('\0') {
        return Err(FsError::refused(ErrorCode::ACCESS_VIOLATION, reason::NUL));
    }
    let mut components = Vec::new();
    for component in tftp_path.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => {
                return Err(FsError::refused(
                    ErrorCode::ACCESS_VIOLATION,
                    reason::DOT_DOT,
                ));
            }
            c => components.push(c),
        }
    }
    if components.len() > MAX_COMPONENTS {
        return Err(FsError::refused(
            ErrorCode::ACCESS_VIOLATION,
            reason::TOO_DEEP,
        ));
    }
    if components.is_empty() {
        return Err(FsError::refused(ErrorCode::FILE_NOT_FOUND, reason::EMPTY));
    }
    Ok(components)
}

/// Check that the server's user may use the root: search it (look names up in it), and with
/// [`RootOptions::case_insensitive`] also list it. Opening the root does not check (an
/// `O_PATH` handle), so without this a root the user cannot read would be served with every
/// request refused. A writable root the user cannot write into is only warned about: uploads
/// may go to its subdirectories.
fn check_access(dir: &Dir, options: &RootOptions) -> io::Result<()> {
    use rustix::fs::{Access, AtFlags, accessat};
    let uid = rustix::process::geteuid().as_raw();
    let (need, what) = match options.case_insensitive {
        true => (Access::EXEC_OK | Access::READ_OK, "search and list"),
        false => (Access::EXEC_OK, "search"),
    };
    accessat(dir, ".", need, AtFlags::EACCESS).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("the server's user (uid {uid}) may not {what} the directory ({e})"),
        )
    })?;
    if options.allow_write && accessat(dir, ".", Access::WRITE_OK, AtFlags::EACCESS).is_err() {
        tracing::warn!(
            uid,
            "uploads are allowed, but the server's user may not write into the root itself"
        );
    }
    Ok(())
}

/// Create a new temporary file for an upload of `name` in `dir`, exclusively (`O_EXCL`, so
/// never through an existing file or symlink).
fn create_temp(dir: &Dir, name: &str) -> Result<(std::fs::File, OsString), FsError> {
    let mut stem_len = name.len().min(TEMP_NAME_STEM_MAX);
    while !name.is_char_boundary(stem_len) {
        stem_len -= 1;
    }
    let stem = &name[..stem_len];
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(UPLOAD_MODE);
    let mut last_error = None;
    for _ in 0..TEMP_NAME_ATTEMPTS {
        let temp_name = OsString::from(format!(".{stem}{TEMP_MARKER}{:016x}", random_u64()));
        match dir.open_with(&temp_name, &options) {
            Ok(file) => return Ok((file.into_std(), temp_name)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(FsError::from_write_error(e)),
        }
    }
    Err(match last_error {
        Some(e) => FsError::from_write_error(e),
        None => FsError::new(ErrorCode::NOT_DEFINED),
    })
}

/// Whether an upload may replace the symlink `name` in `dir` (by the link itself, since rename
/// does not follow it): only if its target resolves, confined to the root, to a regular file
/// or to nothing (a dangling link inside). A link to a directory or a special file is refused
/// as they are, and so is a link leading out of the root (to a file, a directory or nothing:
/// what is outside is not looked at): it cannot be read, so it cannot be overwritten either,
/// and with `allow_overwrite` the administrator's link to, say, an image directory elsewhere
/// would otherwise become a regular file.
fn replaceable_link(dir: &Dir, name: &OsString) -> Result<(), FsError> {
    let replaceable = match dir.metadata(name) {
        Ok(target) => target.is_file(),
        Err(e) => FsError::from_io(e).code == ErrorCode::FILE_NOT_FOUND,
    };
    if !replaceable {
        return Err(FsError::refused(
            ErrorCode::ACCESS_VIOLATION,
            reason::LINK_NOT_REPLACEABLE,
        ));
    }
    Ok(())
}

/// Whether `name` has the form of a temporary upload file: `.`, a stem of at least one byte,
/// [`TEMP_MARKER`], then [`TEMP_RANDOM_DIGITS`] hex digits. ASCII case is ignored, because a
/// case-insensitive root would resolve `.X.TFTP-ABC…` to `.x.tftp-abc…`; only names of the
/// exact form [`create_temp`] makes are removed as stale ([`is_exact_temp_name`]).
fn is_temp_name(name: &str) -> bool {
    temp_suffix(name).is_some_and(|(marker, digits)| {
        marker.eq_ignore_ascii_case(TEMP_MARKER.as_bytes())
            && digits.iter().all(u8::is_ascii_hexdigit)
    })
}

/// Whether `name` is exactly of the form [`create_temp`] makes (lower-case hex digits).
fn is_exact_temp_name(name: &str) -> bool {
    temp_suffix(name).is_some_and(|(marker, digits)| {
        marker == TEMP_MARKER.as_bytes()
            && digits
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    })
}

/// The marker and the digits at the end of `name`, if it starts with `.` and has room for a
/// stem of at least one byte before them.
fn temp_suffix(name: &str) -> Option<(&[u8], &[u8])> {
    let rest = name.strip_prefix('.')?.as_bytes();
    let suffix_len = TEMP_MARKER.len() + TEMP_RANDOM_DIGITS;
    let start = rest.len().checked_sub(suffix_len).filter(|&s| s > 0)?;
    rest.get(start..)
        .map(|suffix| suffix.split_at(TEMP_MARKER.len()))
}

/// Refuse a request whose last component names a temporary upload file (only files are
/// temporary, so the other components need no check).
fn refuse_temp_name(components: &[&str]) -> Result<(), FsError> {
    if components.last().is_some_and(|name| is_temp_name(name)) {
        return Err(FsError::refused(
            ErrorCode::ACCESS_VIOLATION,
            reason::TEMPORARY,
        ));
    }
    Ok(())
}

/// The walk of [`Root::remove_stale_uploads`].
struct Sweep {
    cutoff: SystemTime,
    /// Entries left to look at.
    budget: usize,
    removed: usize,
}

impl Sweep {
    /// Remove the stale temporary files in `dir`, `depth` levels below the root, and below it.
    fn dir(&mut self, dir: &Dir, depth: usize) -> io::Result<()> {
        for entry in dir.entries()? {
            if self.budget == 0 {
                return Ok(());
            }
            self.budget -= 1;
            let Ok(entry) = entry else { continue };
            // From the directory entry itself: a symlink is a symlink, not its target.
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                // A file at depth MAX_COMPONENTS - 1 is the deepest an upload can write.
                if depth + 1 < MAX_COMPONENTS {
                    // Opened beneath `dir`: an entry swapped for a symlink meanwhile cannot
                    // lead out of it. A directory that cannot be read is skipped.
                    if let Ok(sub) = entry.open_dir() {
                        let _ = self.dir(&sub, depth + 1);
                    }
                }
            } else if file_type.is_file() {
                let name = entry.file_name();
                if name.to_str().is_some_and(is_exact_temp_name) {
                    let stale = dir.symlink_metadata(&name).is_ok_and(|meta| {
                        meta.is_file() && meta.modified().is_ok_and(|m| m.into_std() < self.cutoff)
                    });
                    if stale && dir.remove_file(&name).is_ok() {
                        self.removed += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `fsync` a directory. cap-std's `Dir` handles are `O_PATH` descriptors, which cannot be
/// synced, so this opens the directory itself for reading first.
fn sync_dir(dir: &Dir) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .custom_flags(OFlags::DIRECTORY.bits() as i32);
    dir.open_with(".", &options)?.sync_all()
}

/// A random-enough number for temporary names: std's randomly keyed SipHash over a counter.
/// Uniqueness is enforced by `O_EXCL`, not by this.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("/pxelinux.0").ok(), Some(vec!["pxelinux.0"]));
        assert_eq!(normalize("a//b").ok(), Some(vec!["a", "b"]));
        assert_eq!(normalize("a\\b").ok(), Some(vec!["a", "b"]));
        assert_eq!(normalize("./a/./b/").ok(), Some(vec!["a", "b"]));
        assert_eq!(normalize("%2e%2e/x").ok(), Some(vec!["%2e%2e", "x"]));
        assert_eq!(normalize("...").ok(), Some(vec!["..."]));
        for bad in [
            "..",
            "../x",
            "a/../b",
            "a/..",
            "..\\x",
            "a\\..\\..\\x",
            "a\0b",
        ] {
            assert_eq!(
                normalize(bad).err().map(|e| e.code),
                Some(ErrorCode::ACCESS_VIOLATION)
            );
        }
        for empty in ["", "/", "//", ".", "\\", "./"] {
            assert_eq!(
                normalize(empty).err().map(|e| e.code),
                Some(ErrorCode::FILE_NOT_FOUND)
            );
        }
        assert!(normalize(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(normalize(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(normalize(&["a"; MAX_COMPONENTS].join("/")).is_ok());
        assert!(normalize(&["a"; MAX_COMPONENTS + 1].join("/")).is_err());
    }

    #[test]
    fn case_folding() {
        assert_eq!(fold("PXELinux.0"), fold("pxelinux.0"));
        assert_eq!(fold("ÄB"), fold("äb"));
        assert_ne!(fold("ab"), fold("abc"));
    }

    /// The fallback for file systems without `RENAME_NOREPLACE` never replaces either.
    #[test]
    fn link_fallback_never_replaces() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let root = Root::open(
            tmp.path(),
            RootOptions {
                allow_write: true,
                ..RootOptions::default()
            },
        )?;
        let mut first = root.create_upload("f", None)?;
        let mut second = root.create_upload("f", None)?;
        std::io::Write::write_all(first.file(), b"first")?;
        std::io::Write::write_all(second.file(), b"second")?;
        first.link_into_place()?;
        let lost = second.link_into_place().err().map(|e| e.code);
        assert_eq!(lost, Some(ErrorCode::FILE_EXISTS));
        drop((first, second));
        assert_eq!(std::fs::read(tmp.path().join("f"))?, b"first");
        assert_eq!(
            std::fs::read_dir(tmp.path())?.count(),
            1,
            "no temporary file left"
        );
        assert_eq!(std::fs::metadata(tmp.path().join("f"))?.len(), 5);
        Ok(())
    }

    #[test]
    fn temporary_names() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        for name in [
            "a",
            "boot.img",
            ".hidden",
            &"é".repeat(127),
            &"n".repeat(255),
        ] {
            let (_file, temp) = create_temp(&dir, name)?;
            let temp = temp.to_str().ok_or("not UTF-8")?;
            assert!(is_exact_temp_name(temp), "{temp}");
            assert!(is_temp_name(temp), "{temp}");
            assert!(temp.len() <= 255, "{temp}");
        }
        assert!(is_exact_temp_name(".x.tftp-0123456789abcdef"));
        assert!(is_temp_name(".X.TFTP-0123456789ABCDEF"));
        assert!(!is_exact_temp_name(".X.TFTP-0123456789ABCDEF"));
        for not_temp in [
            "x.tftp-0123456789abcdef",
            ".tftp-0123456789abcdef",
            ".x.tftp-0123456789abcde",
            ".x.tftp-0123456789abcdeg",
            ".x.tftp-0123456789abcdef0",
            ".x.tftp_0123456789abcdef",
            ".x.tftp-0123456789abcdéf",
            "",
            ".",
        ] {
            assert!(!is_temp_name(not_temp), "{not_temp}");
            assert!(!is_exact_temp_name(not_temp), "{not_temp}");
        }
        Ok(())
    }

    #[test]
    fn directories_can_be_synced() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir(tmp.path().join("sub"))?;
        let root = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        sync_dir(&root)?;
        sync_dir(&root.open_dir("sub")?)?;
        Ok(())
    }

    #[test]
    fn io_error_mapping() {
        let code = |errno: Errno| FsError::from_io(errno.into()).code;
        assert_eq!(code(Errno::NOENT), ErrorCode::FILE_NOT_FOUND);
        assert_eq!(code(Errno::ACCESS), ErrorCode::ACCESS_VIOLATION);
        assert_eq!(code(Errno::NOSPC), ErrorCode::DISK_FULL);
        assert_eq!(code(Errno::DQUOT), ErrorCode::DISK_FULL);
        assert_eq!(code(Errno::EXIST), ErrorCode::FILE_EXISTS);
        assert_eq!(code(Errno::IO), ErrorCode::NOT_DEFINED);
        let escape = io::Error::new(io::ErrorKind::PermissionDenied, "a path led outside");
        assert_eq!(FsError::from_io(escape).code, ErrorCode::ACCESS_VIOLATION);
        assert_eq!(
            FsError::from_io(Errno::NOSPC.into()).message,
            "Disk full or allocation exceeded"
        );
    }
}
