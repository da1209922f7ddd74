//! One PUT upload on disk (`--allow-write`): the body goes into a temporary file in the
//! target's own directory, is fsynced, then renamed over the target, so a reader sees the old
//! file or the new one, never a mix, and a failed or aborted upload leaves the old file as it
//! was. The temporary file is removed whenever the upload does not commit (its `Drop`).
//!
//! The socket side lives in `connection.rs`: it feeds whatever body bytes have arrived and
//! parks the connection with the keeper in between, so a slow uploader holds no worker.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::body::BodyDiscarder;
use crate::error::HttpError;
use crate::request::BodyFraming;
use crate::resolve::WriteTarget;

/// Prefix of temporary upload files: a dotfile, so never served (hidden names are 404), and
/// recognizable for clean-up after a crash.
pub const TEMP_PREFIX: &str = ".poolserve-upload-";

/// Mode of uploaded files (before the umask): readable by all, like files a deploy copies.
const FILE_MODE: u32 = 0o644;

/// Makes temporary names unique within the process (the pid makes them unique across).
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

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
