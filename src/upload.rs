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
//! No socket here: `connection.rs` feeds whatever body bytes have arrived and parks the
//! connection with the keeper in between, so a slow uploader holds no worker; `handler.rs`
//! words the answers.

use std::borrow::Cow;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::body::BodyDiscarder;
use crate::conditional::{self, Preconditions};
use crate::error::HttpError;
use crate::request::{BodyFraming, RequestHead};
use crate::resolve::{self, ResolveOptions, WriteTarget, TEMP_PREFIX};
use crate::state::Shared;

/// Mode of uploaded files (before the umask): readable by all, like files a deploy copies.
const FILE_MODE: u32 = 0o644;

/// Makes temporary names unique within the process (the pid makes them unique across).
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

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
    let opts = ResolveOptions {
        hidden: config.hidden,
    };
    resolve::resolve_write(&config.root, &head.path, &opts)
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
