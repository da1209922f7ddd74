//! The site rules in force, read from `_redirects` and `_headers` at the document root: loaded
//! at start-up (a malformed line stops the server there, as one `file:line: reason`), then
//! re-read when a file's mtime, length or inode changes, checked at most once per
//! `--cache-valid` interval by whichever worker comes first, and swapped in whole. A file that
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

use crate::config::Config;
use crate::site_rules::{
    HeaderRules, Redirects, RuleError, SiteRules, HEADERS_FILE, REDIRECTS_FILE,
};

/// What tells one version of a rule file from another: device, inode, length, mtime.
type Stamp = Option<(u64, u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
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
    /// The stamps last looked at (loaded, or refused with a warning).
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
            interval: config.cache_valid,
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
        let text = |path: &Path| -> Result<Option<Vec<u8>>, RuleError> {
            if !self.enabled {
                return Ok(None);
            }
            match fs::read(path) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(RuleError {
                    file: path.display().to_string(),
                    line: 0,
                    reason: e.to_string().to_lowercase(),
                }),
            }
        };
        let name = |p: &Path| p.display().to_string();
        let redirects = match text(&self.redirects_path)? {
            Some(t) => Redirects::parse(&name(&self.redirects_path), &t)?,
            None => Redirects::default(),
        };
        let headers = match text(&self.headers_path)? {
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
        let stamps = (stamp(&self.redirects_path), stamp(&self.headers_path));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == stamps {
                return;
            }
            *seen = stamps;
        }
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
