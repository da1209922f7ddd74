//! Writes (`--allow-write`): what PUT and DELETE may do to a file, and one PUT upload on disk.
//!
//! The decisions: the target follows the GET path rules ([`resolve::resolve_write`]) and is
//! never the health endpoint; `If-Match`, `If-None-Match` and `If-Unmodified-Since` are
//! evaluated against the file as it is ([`conditional::write_allowed`]), once when the request
//! arrives (so a refused upload never sends its body) and again at commit, under the write
//! lock, against the file the rename replaces.
//!
//! The upload: the body goes into a temporary file in the target's own directory, is fsynced,
//! then renamed over the target, so a reader sees the old file or the new one, never a mix,
//! and a failed or aborted upload leaves the old file as it was. The temporary file is
//! removed whenever the upload does not commit (its `Drop`).
//!
//! A process that dies mid-upload (a crash, SIGKILL, power loss) runs no `Drop`, so its
//! temporary files stay; [`sweep_stale`] removes those at start-up, bounded in depth and in
//! entries, never following a symbolic link.
//!
//! No socket here: `connection.rs` feeds whatever body bytes have arrived and parks the
//! connection with the keeper in between, so a slow uploader holds no worker; `handler.rs`
//! words the answers.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::body::BodyDiscarder;
use crate::conditional::{self, Preconditions};
use crate::error::HttpError;
use crate::request::{BodyFraming, RequestHead};
use crate::resolve::{self, WriteTarget, TEMP_PREFIX};
use crate::state::Shared;

/// Mode of uploaded files (before the umask): readable by all, like files a deploy copies.
const FILE_MODE: u32 = 0o644;

/// Makes temporary names unique within the process (the pid makes them unique across).
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Age past which [`sweep_stale`] takes a temporary upload file for a leftover. An upload in
/// progress writes its file as body bytes arrive, so its mtime stays recent, and one whose
/// body stops arriving is given up after the head timeout (20 s by default, applied to each
/// stall) and its file removed. An hour is far beyond any such stall, so an older file
/// belongs to no live upload, not even one of another poolserve serving the same tree.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(60 * 60);

/// Deepest directory level below the root that [`sweep_stale`] reads. Document trees are a
/// handful of levels deep; the cap ends the walk should a bind mount loop a directory into
/// itself (a cycle that never following symbolic links does not prevent). A leftover deeper
/// down stays, still never served: its name is refused.
const SWEEP_MAX_DEPTH: usize = 32;

/// Most directory entries [`sweep_stale`] examines, each costing at most one `lstat`. A
/// million entries is a very large site and seconds of work; past it the sweep stops, so a
/// huge or slow (network-mounted) tree cannot keep it running without end.
const SWEEP_MAX_ENTRIES: usize = 1_000_000;

/// What [`sweep_stale`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Stale temporary upload files removed.
    pub removed: usize,
    /// Directory entries examined.
    pub examined: usize,
    /// Directories or entries that could not be read, and stale files that could not be
    /// removed: skipped (logged at debug).
    pub skipped: usize,
    /// A bound was reached (the entry cap, or directories too deep to visit), so leftovers
    /// may remain.
    pub truncated: bool,
}

/// Removes the temporary upload files (`.poolserve-upload-*`, see
/// [`TEMP_PREFIX`](crate::resolve::TEMP_PREFIX)) under `root` whose mtime is more than
/// `older_than` ago, normally [`STALE_UPLOAD_AGE`]: the leftovers of a process that died
/// mid-upload. Meant for start-up, off the serving threads.
///
/// Only regular files are removed. Symbolic links are never followed, so nothing outside
/// the tree is touched, and a link itself is never removed. The walk is bounded: entries it
/// cannot read are skipped, it reads directories at most 32 levels below `root`, and it
/// stops after examining 1,000,000 entries ([`SweepReport::truncated`]). A file whose mtime
/// lies in the future is kept.
pub fn sweep_stale(root: &Path, older_than: Duration) -> SweepReport {
    sweep(
        root,
        older_than,
        SystemTime::now(),
        SWEEP_MAX_DEPTH,
        SWEEP_MAX_ENTRIES,
    )
}

/// [`sweep_stale`] with its clock and bounds as parameters, so tests can reach the bounds.
fn sweep(
    root: &Path,
    older_than: Duration,
    now: SystemTime,
    max_depth: usize,
    max_entries: usize,
) -> SweepReport {
    let mut report = SweepReport::default();
    // An explicit stack rather than recursion: depth costs heap, not the thread's stack.
    let mut dirs = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                log::debug!("sweep: cannot read {}: {e}", dir.display());
                report.skipped += 1;
                continue;
            }
        };
        for entry in entries {
            if report.examined >= max_entries {
                report.truncated = true;
                return report;
            }
            report.examined += 1;
            // `file_type` is the entry's own type (lstat when the directory does not say):
            // a symbolic link is a link here, whatever it points at, and is never entered.
            let Ok((entry, kind)) = entry.and_then(|e| e.file_type().map(|kind| (e, kind))) else {
                report.skipped += 1;
                continue;
            };
            if kind.is_dir() {
                if depth < max_depth {
                    dirs.push((entry.path(), depth + 1));
                } else {
                    report.truncated = true;
                }
            } else if kind.is_file()
                && entry
                    .file_name()
                    .as_bytes()
                    .starts_with(TEMP_PREFIX.as_bytes())
            {
                sweep_file(&entry, older_than, now, &mut report);
            }
        }
    }
    report
}

/// Removes one temporary upload file if its mtime is more than `older_than` before `now`.
fn sweep_file(
    entry: &fs::DirEntry,
    older_than: Duration,
    now: SystemTime,
    report: &mut SweepReport,
) {
    let path = entry.path();
    // `DirEntry::metadata` does not follow a link either; an mtime in the future is no age.
    let stale = entry.metadata().and_then(|m| m.modified()).map(|modified| {
        now.duration_since(modified)
            .is_ok_and(|age| age > older_than)
    });
    match stale {
        Ok(false) => {}
        // unlink removes a name, never what a link points at, so even a swap since the
        // check cannot reach outside the tree.
        Ok(true) => match fs::remove_file(&path) {
            Ok(()) => {
                log::info!("removed stale upload {}", path.display());
                report.removed += 1;
            }
            Err(e) => {
                log::debug!("sweep: cannot remove {}: {e}", path.display());
                report.skipped += 1;
            }
        },
        Err(e) => {
            log::debug!("sweep: cannot stat {}: {e}", path.display());
            report.skipped += 1;
        }
    }
}

/// A PUT whose checks passed: its upload, and what the commit must check again.
#[derive(Debug)]
pub struct Put {
    upload: Upload,
    /// Owned copies of the precondition fields, evaluated again at commit.
    fields: WriteFields<'static>,
}

impl Put {
    /// Checks a PUT (path, preconditions, framing, size) and opens its temporary file.
    pub fn begin(head: &RequestHead, shared: &Shared) -> Result<Put, HttpError> {
        let target = write_target(head, shared)?;
        let h = &head.headers;
        let fields = WriteFields::of(head);
        check_write(&fields.preconditions(), &target.path)?;
        let mode = if fields.if_none_match.as_deref() == Some("*") {
            Commit::CreateOnly
        } else {
            Commit::Replace
        };
        // `Content-Length: 0` parses as "no body"; for a PUT it is an empty file, not a
        // missing length (411 is only for no framing at all).
        let framing = match head.framing {
            BodyFraming::None if h.get("content-length").is_some() => BodyFraming::Length(0),
            framing => framing,
        };
        let upload = Upload::begin(&target, framing, shared.config.max_upload, mode)?;
        Ok(Put {
            upload,
            fields: fields.into_owned(),
        })
    }

    /// Feeds body bytes to the upload (see [`Upload::feed`]).
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), HttpError> {
        self.upload.feed(buf)
    }

    /// Commits a complete upload, the preconditions checked again under the write lock
    /// against the file the rename replaces. Returns whether the file is new (201) rather
    /// than replaced (204).
    pub fn commit(self, shared: &Shared) -> Result<bool, HttpError> {
        let Put { upload, fields } = self;
        let target = upload.target.clone();
        let check = || check_write(&fields.preconditions(), &target);
        let result = upload.commit(&shared.write_lock, check);
        // The cache is keyed by request path, and one file has many (`/%61.txt`, `//a.txt`,
        // the directory URL of an `index.html`, the original of a sidecar): forget them all.
        shared.cache.clear();
        result
    }
}

/// DELETE: a regular file under the root, by the same path rules, never a directory, a link
/// or a hidden name; `If-Match` and friends apply.
pub fn delete(head: &RequestHead, shared: &Shared) -> Result<(), HttpError> {
    let target = write_target(head, shared)?;
    let fields = WriteFields::of(head);
    let pre = fields.preconditions();
    let _guard = shared.write_lock.lock().unwrap_or_else(|p| p.into_inner());
    let Some((etag, modified)) = current_validators(&target.path) else {
        return Err(HttpError::NotFound);
    };
    if !conditional::write_allowed(&pre, Some((&etag, modified))) {
        return Err(HttpError::PreconditionFailed);
    }
    fs::remove_file(&target.path).map_err(|e| HttpError::from_fs(&e))?;
    shared.cache.clear(); // every path that named it (see `Put::commit`)
    Ok(())
}

/// The target of a PUT or DELETE: the GET path rules ([`resolve::resolve_write`]), and
/// never the health endpoint, which is not a file.
fn write_target(head: &RequestHead, shared: &Shared) -> Result<WriteTarget, HttpError> {
    let config = &shared.config;
    if config.health_path.as_deref() == Some(head.path.as_str()) {
        return Err(HttpError::Forbidden);
    }
    resolve::resolve_write(&config.root, &head.path, &crate::handler::options(shared))
}

/// The precondition fields of a PUT or DELETE. `If-Match` and `If-None-Match` are lists, so
/// RFC 9110 §5.3 counts every field line: repeated lines are joined ([`Headers::get_list`]),
/// a single line is borrowed as sent. `If-Unmodified-Since` is one date: its first line.
///
/// [`Headers::get_list`]: crate::request::Headers::get_list
#[derive(Debug)]
struct WriteFields<'a> {
    if_match: Option<Cow<'a, str>>,
    if_none_match: Option<Cow<'a, str>>,
    if_unmodified_since: Option<Cow<'a, str>>,
}

impl WriteFields<'_> {
    /// The fields `head` carries.
    fn of(head: &RequestHead) -> WriteFields<'_> {
        let h = &head.headers;
        WriteFields {
            if_match: h.get_list("if-match"),
            if_none_match: h.get_list("if-none-match"),
            if_unmodified_since: h.get("if-unmodified-since").map(Cow::Borrowed),
        }
    }

    /// Owned copies, kept by a [`Put`] until its commit checks them again.
    fn into_owned(self) -> WriteFields<'static> {
        let own = |f: Option<Cow<'_, str>>| f.map(|v| Cow::Owned(v.into_owned()));
        WriteFields {
            if_match: own(self.if_match),
            if_none_match: own(self.if_none_match),
            if_unmodified_since: own(self.if_unmodified_since),
        }
    }

    /// The preconditions to evaluate ([`conditional::write_allowed`]).
    fn preconditions(&self) -> Preconditions<'_> {
        Preconditions {
            if_match: self.if_match.as_deref(),
            if_none_match: self.if_none_match.as_deref(),
            if_modified_since: None,
            if_unmodified_since: self.if_unmodified_since.as_deref(),
            if_range: None,
            range: None,
        }
    }
}

/// The current ETag and mtime of the file at `path`, if it is a regular file.
fn current_validators(path: &Path) -> Option<(String, Option<SystemTime>)> {
    let meta = fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| {
        let modified = meta.modified().ok();
        (conditional::etag(meta.len(), modified), modified)
    })
}

/// Evaluates write preconditions against the file at `path` as it is now: whether a file
/// exists there, or 412.
fn check_write(pre: &Preconditions, path: &Path) -> Result<bool, HttpError> {
    let current = current_validators(path);
    if conditional::write_allowed(pre, current.as_ref().map(|(t, m)| (t.as_str(), *m))) {
        Ok(current.is_some())
    } else {
        Err(HttpError::PreconditionFailed)
    }
}

/// What the upload asked for at commit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Replace whatever is there (or create).
    Replace,
    /// Create only: `If-None-Match: *`. Committed with a hard link, which fails atomically
    /// when the name exists, so two such uploads cannot both win.
    CreateOnly,
}

/// An upload in progress.
#[derive(Debug)]
pub struct Upload {
    decoder: BodyDiscarder,
    file: File,
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
    mode: Commit,
    committed: bool,
}

impl Upload {
    /// Starts an upload to `target` of a body framed as `framing` (no framing: 411), at most
    /// `max` bytes (more, announced or found while reading: 413).
    pub fn begin(
        target: &WriteTarget,
        framing: BodyFraming,
        max: u64,
        mode: Commit,
    ) -> Result<Upload, HttpError> {
        if framing == BodyFraming::None {
            return Err(HttpError::LengthRequired);
        }
        let decoder = BodyDiscarder::new(framing, max)?;
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let temp = target
            .dir
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)
            .map_err(|e| HttpError::from_fs(&e))?;
        Ok(Upload {
            decoder,
            file,
            temp,
            target: target.path.clone(),
            dir: target.dir.clone(),
            mode,
            committed: false,
        })
    }

    /// Writes the body bytes at the start of `buf` to the temporary file; returns how many
    /// bytes of `buf` belonged to the body and whether it is complete.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), HttpError> {
        let file = &mut self.file;
        self.decoder.feed_data(buf, &mut |data| {
            file.write_all(data).map_err(|e| {
                log::error!("upload: writing the temporary file failed: {e}");
                HttpError::Internal
            })
        })
    }

    /// Makes the upload the file: fsync, then rename over the target (or link, for
    /// create-only), then fsync the directory so the new name survives a crash. `check` runs
    /// under `lock` right before, so that a precondition (`If-Match`) is evaluated against the
    /// file the rename replaces, not one another upload has replaced since. Returns whether
    /// the file is new (201) rather than replaced (204).
    pub fn commit(
        mut self,
        lock: &Mutex<()>,
        check: impl FnOnce() -> Result<bool, HttpError>,
    ) -> Result<bool, HttpError> {
        let fs_err = |e: io::Error| {
            log::error!("upload: {e}");
            HttpError::from_fs(&e)
        };
        self.file.sync_all().map_err(fs_err)?;
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let existed = check()?;
        match self.mode {
            Commit::Replace => fs::rename(&self.temp, &self.target).map_err(fs_err)?,
            Commit::CreateOnly => match fs::hard_link(&self.temp, &self.target) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(HttpError::PreconditionFailed)
                }
                Err(e) => return Err(fs_err(e)),
            },
        }
        self.committed = true;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(!existed)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own under the system temp dir, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str) -> Tree {
            let dir =
                std::env::temp_dir().join(format!("poolserve-sweep-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Tree(dir)
        }

        /// Writes `rel` (creating its directories) with its mtime `age` ago.
        fn file(&self, rel: &str, age: Duration) -> PathBuf {
            let path = self.0.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = File::create(&path).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
            path
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const OLD: Duration = Duration::from_secs(2 * 60 * 60);
    const FRESH: Duration = Duration::ZERO;

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let tree = Tree::new("table");
        let outside = Tree::new("outside");
        let out_temp = outside.file(".poolserve-upload-7-0", OLD);
        // (file, mtime age, removed)
        let table = [
            (".poolserve-upload-1-0", OLD, true),
            ("a/b/c/.poolserve-upload-1-1", OLD, true),
            (".poolserve-upload-dir/.poolserve-upload-1-2", OLD, true),
            (".poolserve-upload-1-3", FRESH, false), // an upload in progress
            ("a/.poolserve-upload-1-4", FRESH, false),
            ("a/b/old.txt", OLD, false),
            ("x.poolserve-upload-1-5", OLD, false), // the prefix starts the name
            (".poolserve-upload", OLD, false),      // not the whole prefix
            (".poolserve-upload-dir2/keep.txt", OLD, false),
        ];
        let paths: Vec<PathBuf> = table.iter().map(|(f, age, _)| tree.file(f, *age)).collect();
        let future = tree.file(".poolserve-upload-1-6", FRESH);
        File::options()
            .write(true)
            .open(&future)
            .unwrap()
            .set_modified(SystemTime::now() + OLD)
            .unwrap();
        // Links are never followed nor removed: one to a directory outside that holds an
        // old temporary file, one named like a temporary file pointing at that file.
        std::os::unix::fs::symlink(&outside.0, tree.0.join("a/out")).unwrap();
        let link = tree.0.join(".poolserve-upload-link");
        std::os::unix::fs::symlink(&out_temp, &link).unwrap();

        let report = sweep_stale(&tree.0, STALE_UPLOAD_AGE);

        for ((file, _, removed), path) in table.iter().zip(&paths) {
            assert_eq!(!path.exists(), *removed, "{file}");
        }
        assert!(future.exists(), "an mtime in the future is no age");
        assert!(out_temp.exists(), "nothing outside the tree is touched");
        assert!(link.symlink_metadata().is_ok(), "a link is not removed");
        assert!(
            tree.0.join(".poolserve-upload-dir").is_dir(),
            "nor a directory"
        );
        assert_eq!(report.removed, 3, "{report:?}");
        assert_eq!((report.skipped, report.truncated), (0, false), "{report:?}");
        // 10 files, 2 links, 5 directories (a, a/b, a/b/c and the two dotted ones).
        assert_eq!(report.examined, 17, "{report:?}");
    }

    #[test]
    fn the_walk_is_bounded_in_depth_and_entries() {
        let tree = Tree::new("bounds");
        let now = SystemTime::now();
        let levels: Vec<PathBuf> = (0..5)
            .map(|depth| {
                let dir = "d/".repeat(depth);
                tree.file(&format!("{dir}.poolserve-upload-2-{depth}"), OLD)
            })
            .collect();
        // Directories down to level 2 are read; the rest is left and reported.
        let report = sweep(&tree.0, STALE_UPLOAD_AGE, now, 2, usize::MAX);
        let removed: Vec<bool> = levels.iter().map(|p| !p.exists()).collect();
        assert_eq!(removed, [true, true, true, false, false]);
        assert!(report.truncated && report.removed == 3, "{report:?}");

        // At most `max_entries` entries are examined, then the sweep stops.
        let report = sweep(&tree.0, STALE_UPLOAD_AGE, now, 32, 1);
        assert_eq!((report.examined, report.truncated), (1, true), "{report:?}");
        let report = sweep(&tree.0, STALE_UPLOAD_AGE, now, 32, usize::MAX);
        assert!(!report.truncated && report.removed == 2, "{report:?}");
        assert!(levels.iter().all(|p| !p.exists()));

        // A root that cannot be read is skipped, not an error.
        let report = sweep_stale(&tree.0.join("missing"), STALE_UPLOAD_AGE);
        assert_eq!(
            report,
            SweepReport {
                skipped: 1,
                ..SweepReport::default()
            }
        );
    }
}
