//! The site rules in force, read from `_redirects` and `_headers` at the document root: loaded
//! at start-up (a malformed line stops the server there, as one `file:line: reason`), then
//! re-read when a file's mtime, ctime, length or inode changes, checked at most once per
//! `--cache-valid` interval (and no more often than [`RULES_CHECK_MIN`]) by whichever worker
//! comes first, and swapped in whole. A rule file is read only when it is a regular file no
//! larger than its limit, opened without blocking: a FIFO or `/dev/zero` put there cannot
//! hang or fill a worker. A file that
//! is malformed on reload leaves the old rules in force and logs one warning with its
//! `file:line`; the warning is not repeated until the file changes again. Parsing is
//! `site_rules`'s; this module only knows files, times and the swap.
//!
//! A request takes its own reference to the rules in force (the lock is held only to clone
//! it), so a reload never waits for an answer, and an answer sees one version of both files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, RULES_CHECK_MIN};
use crate::site_rules::{
    self, HeaderRules, Redirects, RuleError, SiteRules, HEADERS_FILE, HEADERS_MAX_BYTES,
    REDIRECTS_FILE, REDIRECTS_MAX_BYTES,
};

/// What tells one version of a rule file from another: its type, device, inode, length,
/// mtime and ctime (which a `chmod` moves, so a file that could not be read is tried again
/// once it can).
type Stamp = Option<(bool, u64, u64, u64, (i64, i64), (i64, i64))>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some((
        m.is_file(),
        m.dev(),
        m.ino(),
        m.len(),
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
    ))
}

/// The bytes of a rule file: `None` when there is none; an error when it is not a regular
/// file, is larger than `max`, or cannot be read. Opened without blocking and checked on
/// the opened handle ([`crate::resolve::open_page`]); read no further than `max`.
fn read_capped(path: &Path, max: usize) -> Result<Option<Vec<u8>>, RuleError> {
    use std::io::Read;
    let file = path.display().to_string();
    let fail = |reason: String| RuleError {
        file: file.clone(),
        line: 0,
        reason,
    };
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string().to_lowercase())),
        Ok(m) if !m.is_file() => return Err(fail("not a regular file".into())),
        Ok(_) => {}
    }
    let opened = crate::resolve::open_page(path)
        .map_err(|e| fail(format!("cannot be opened as a regular file ({e:?})")))?;
    if opened.len > max as u64 {
        return Err(site_rules::oversize(&file, opened.len, max));
    }
    let mut bytes = Vec::with_capacity(opened.len as usize);
    (&opened.file)
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string().to_lowercase()))?;
    Ok(Some(bytes))
}

/// The rules in force and what is needed to reload them.
#[derive(Debug)]
pub(crate) struct RuleFiles {
    /// `--site-rules on`: read the files (otherwise only `--header` applies).
    enabled: bool,
    redirects_path: PathBuf,
    headers_path: PathBuf,
    globals: Vec<String>,
    interval: Duration,
    start: Instant,
    /// Nanoseconds after `start` at which the files are next looked at.
    next_check: AtomicU64,
    /// The stamps last looked at (loaded, or refused with a warning). Held from the look
    /// through the swap, so that an older read can never replace a newer one; a worker that
    /// finds it taken goes on with the rules in force.
    seen: Mutex<(Stamp, Stamp)>,
    current: RwLock<Arc<SiteRules>>,
}

impl RuleFiles {
    /// No rules yet: [`RuleFiles::load`] reads them.
    fn new(config: &Config) -> RuleFiles {
        let redirects_path = config.root.join(REDIRECTS_FILE);
        let headers_path = config.root.join(HEADERS_FILE);
        RuleFiles {
            enabled: config.site_rules,
            seen: Mutex::new((stamp(&redirects_path), stamp(&headers_path))),
            redirects_path,
            headers_path,
            globals: config.headers.clone(),
            interval: config.cache_valid.max(RULES_CHECK_MIN),
            start: Instant::now(),
            next_check: AtomicU64::new(0),
            current: RwLock::new(Arc::new(SiteRules::default())),
        }
    }

    /// Loads the rules for `config` (its root must be canonical already): the files when site
    /// rules are on and they exist, and the `--header` fields.
    pub fn load(config: &Config) -> Result<RuleFiles, RuleError> {
        let files = RuleFiles::new(config);
        let rules = files.read()?;
        if files.enabled {
            log::info!(
                "site rules: {} redirects, {} header blocks, {} --header fields",
                rules.redirects.len(),
                rules.headers.blocks(),
                files.globals.len()
            );
        }
        files
            .next_check
            .store(files.interval_ns(), Ordering::Relaxed);
        *files.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(files)
    }

    /// [`RuleFiles::load`], or no rules at all when that fails (logged): for tests and
    /// embedders building the shared state directly; `Server::bind` refuses to start instead.
    #[cfg(test)]
    pub fn load_or_none(config: &Config) -> RuleFiles {
        RuleFiles::load(config).unwrap_or_else(|e| {
            log::warn!("site rules ignored: {e}");
            RuleFiles::new(config)
        })
    }

    fn interval_ns(&self) -> u64 {
        let now = self.start.elapsed() + self.interval;
        u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Reads and compiles both files (a missing file is no rules).
    fn read(&self) -> Result<SiteRules, RuleError> {
        let text = |path: &Path, max: usize| match self.enabled {
            true => read_capped(path, max),
            false => Ok(None),
        };
        let name = |p: &Path| p.display().to_string();
        let redirects = match text(&self.redirects_path, REDIRECTS_MAX_BYTES)? {
            Some(t) => Redirects::parse(&name(&self.redirects_path), &t)?,
            None => Redirects::default(),
        };
        let headers = match text(&self.headers_path, HEADERS_MAX_BYTES)? {
            Some(t) => HeaderRules::parse(&name(&self.headers_path), &t)?,
            None => HeaderRules::default(),
        };
        Ok(SiteRules {
            redirects,
            headers: headers.with_global(&self.globals)?,
        })
    }

    /// The rules in force, after a reload when the interval has passed and a file changed.
    /// The caller holds its own reference, never the lock: an answer may build a snapshot
    /// of a large file meanwhile, and a reload must not wait for that (nor make every other
    /// worker wait behind it, as a queued writer of `RwLock` does).
    pub fn current(&self) -> Arc<SiteRules> {
        if self.enabled {
            self.maybe_reload();
        }
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn maybe_reload(&self) {
        let now = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let due = self.next_check.load(Ordering::Relaxed);
        if now < due
            || self
                .next_check
                .compare_exchange(
                    due,
                    self.interval_ns(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return; // not yet, or another worker is looking
        }
        let mut seen = match self.seen.try_lock() {
            Ok(seen) => seen,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let stamps = (stamp(&self.redirects_path), stamp(&self.headers_path));
        if *seen == stamps {
            return;
        }
        *seen = stamps;
        match self.read() {
            Ok(rules) => {
                log::info!(
                    "site rules reloaded: {} redirects, {} header blocks",
                    rules.redirects.len(),
                    rules.headers.blocks()
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
            }
            Err(e) => log::warn!("{e}; the previous site rules stay in force"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_root(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("poolserve-rules-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `--cache-valid 0` does not mean two `statx` per request: the files are looked at no
    /// more often than every `RULES_CHECK_MIN`; a longer interval is kept as it is.
    #[test]
    fn the_files_are_looked_at_no_more_often_than_the_minimum() {
        let root = temp_root("interval");
        for (valid, want) in [
            (Duration::ZERO, RULES_CHECK_MIN),
            (Duration::from_millis(1), RULES_CHECK_MIN),
            (Duration::from_secs(3), Duration::from_secs(3)),
        ] {
            let config = Config {
                root: root.clone(),
                cache_valid: valid,
                ..Config::default()
            };
            assert_eq!(
                RuleFiles::load(&config).unwrap().interval,
                want,
                "{valid:?}"
            );
        }
        fs::remove_dir_all(root).unwrap();
    }

    /// A `chmod` changes no content, length or mtime, but a file that could not be read
    /// before must be tried again: the stamp holds the ctime.
    #[test]
    fn a_permission_change_is_a_new_stamp() {
        let root = temp_root("ctime");
        let path = root.join(REDIRECTS_FILE);
        fs::write(&path, "/a /b\n").unwrap();
        let before = stamp(&path);
        // The ctime ticks with the clock: wait until a change is sure to show.
        std::thread::sleep(Duration::from_millis(20));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(stamp(&path), before);
        fs::remove_dir_all(root).unwrap();
    }
}
