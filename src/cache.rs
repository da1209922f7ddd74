//! The small-file cache: the bytes and validators of small files (and of their precompressed
//! sidecars), kept for a short revalidation interval, so that a hot asset costs a hash lookup
//! instead of five `stat`s, an `open`, a `readlink`, a `read` and a `close` per request.
//!
//! nginx's `open_file_cache` keeps descriptors; we keep the bytes instead, and only of files up
//! to [`INLINE_BODY_MAX`]: those are the ones whose cost is all system calls (a large file's
//! cost is the transfer), holding no descriptor means the cache can never push the process
//! into `EMFILE`, and a file replaced on disk cannot be half-read through a stale handle.
//!
//! Revalidation is a full, uncached resolve (every check of [`crate::resolve`]) once an
//! entry is older than the configured interval ([`crate::Config::cache_valid`], 1 s by
//! default, `--cache-valid 0` turns the cache off): a changed, replaced, removed or newly
//! compressed file is seen at most that long after the change. Entries are bounded in number
//! and in bytes and leave oldest first. Lookups take a read lock that writers hold only to
//! insert, about once per interval per hot file.
//!
//! Paths that resolved to nothing (404) are remembered too, for the same interval (nginx's
//! `open_file_cache_errors`): a 404 otherwise costs a `statx` of the missing path, 9% of the
//! server's CPU on a stream of 404s (issue 7). A file created at such a path is served at
//! most one interval later. Not-found paths have their own, smaller bound, so a flood of
//! random missing paths cannot push the hot files out.
//!
//! Large files that have a snapshot (`snapshot.rs`: a sealed copy sent by sendfile) are
//! remembered by path too, for the same interval, so a hot download costs a hash lookup
//! instead of four `statx`, an `open`, an `fstat`, a `readlink` and a `close` per request
//! (bench S3). The entry holds the snapshot weakly: the snapshot store alone decides what
//! stays in memory, and an evicted snapshot makes the entry a miss. Only files without
//! sidecars are remembered this way.
//!
//! The configured pages (`--fallback`, `--404`) have a slot each ([`FileCache::page`]), apart
//! from the request paths and with their own size bound ([`PAGE_MAX_BYTES`]): a single-page
//! app answers every deep link with its fallback, which would otherwise cost an open, an
//! `fstat`, a `readlink` and two `stat`s per request. They are revalidated on the same
//! interval and dropped by the same [`FileCache::clear`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::encoding::Coding;
use crate::snapshot::Snapshot;

/// Files up to this size are cached, and read into the response buffer and sent with the
/// head in one `write` when served from disk (see `outgoing.rs`): one system call instead of
/// two, and one packet for small assets.
pub const INLINE_BODY_MAX: u64 = 16 * 1024;

/// Most entries kept: a site's hot set of small assets, not its whole tree.
pub const CACHE_MAX_ENTRIES: usize = 1024;
/// Most body bytes kept, all entries together (the bound on the cache's memory).
pub const CACHE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most not-found paths remembered (apart from the files; see the module docs).
pub const CACHE_MAX_MISSING: usize = 256;

/// Most bytes a configured page (`--fallback`, `--404`), each of its sidecars alike, may have
/// to be kept in memory. Larger than a cached file: a single-page app's `index.html` with
/// inlined styles is often tens of KiB, and there are only two pages. A larger page is opened
/// on every use.
pub const PAGE_MAX_BYTES: u64 = 512 * 1024;

/// A configured page, kept apart from the request paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `--fallback`: the single-page app's entry point, with its sidecars.
    Fallback,
    /// `--404`: the not-found page.
    NotFound,
}

impl Page {
    fn slot(self) -> usize {
        match self {
            Page::Fallback => 0,
            Page::NotFound => 1,
        }
    }
}

/// What the cache knows about a request path.
#[derive(Debug)]
pub enum Lookup {
    /// A small file, fresh.
    File(Arc<Cached>),
    /// A large file's snapshot, fresh, and what a response about it needs.
    Large(Arc<Snapshot>, Arc<LargeMeta>),
    /// Nothing there, as of less than an interval ago.
    Missing,
    /// Not known (or stale): resolve it.
    Unknown,
}

/// One representation of a cached file: the file itself or one precompressed sidecar.
#[derive(Debug)]
pub struct CachedRep {
    /// `None` for the file itself.
    pub coding: Option<Coding>,
    /// The body.
    pub bytes: Vec<u8>,
    /// Modification time, for Last-Modified and date preconditions.
    pub modified: Option<SystemTime>,
    /// The entity-tag (per variant, see [`crate::conditional::variant_etag`]).
    pub etag: String,
}

/// A cached file and its sidecars.
#[derive(Debug)]
pub struct Cached {
    /// The original file's Content-Type (variants share it).
    pub content_type: &'static str,
    /// The identity representation first, then each sidecar that exists.
    pub reps: Vec<CachedRep>,
    loaded: Instant,
}

impl Cached {
    /// A new entry, fresh as of now.
    pub fn new(content_type: &'static str, reps: Vec<CachedRep>) -> Cached {
        Cached {
            content_type,
            reps,
            loaded: Instant::now(),
        }
    }

    /// The codings of the sidecars.
    pub fn codings(&self) -> Vec<Coding> {
        self.reps.iter().filter_map(|r| r.coding).collect()
    }

    fn size(&self) -> usize {
        self.reps.iter().map(|r| r.bytes.len()).sum()
    }
}

/// What a response about a large file needs besides its bytes.
#[derive(Debug)]
pub struct LargeMeta {
    /// Content-Type.
    pub content_type: &'static str,
    /// Modification time, for Last-Modified and date preconditions.
    pub modified: Option<SystemTime>,
    /// The entity-tag.
    pub etag: String,
}

/// A large file remembered by path: its snapshot, held weakly.
#[derive(Debug)]
struct Large {
    snapshot: std::sync::Weak<Snapshot>,
    meta: Arc<LargeMeta>,
    loaded: Instant,
}

/// Most large files remembered by path: as many as there can be snapshots.
const CACHE_MAX_LARGE: usize = crate::config::SNAPSHOT_MAX_FILES;

/// Whether a file of `len` bytes may be cached.
pub fn cacheable(len: u64) -> bool {
    len <= INLINE_BODY_MAX
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Arc<Cached>>,
    /// Keys in insertion order, for eviction (a key may appear again after a refresh; stale
    /// positions are skipped).
    order: VecDeque<(String, Instant)>,
    bytes: usize,
    /// Not-found paths and when they were found missing.
    missing: HashMap<String, Instant>,
    missing_order: VecDeque<(String, Instant)>,
    /// The configured pages, by [`Page::slot`].
    pages: [Option<Arc<Cached>>; 2],
    /// Large files with a snapshot, and their keys in insertion order.
    large: HashMap<String, Large>,
    large_order: VecDeque<(String, Instant)>,
}

impl Inner {
    /// Drops what is known of `key` as a file, small or large.
    fn forget_file(&mut self, key: &str) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.size();
        }
        self.large.remove(key);
    }
}

/// The cache, shared by all workers.
#[derive(Debug)]
pub struct FileCache {
    valid: Duration,
    inner: RwLock<Inner>,
    /// Bumped by every [`FileCache::clear`]. A request reads it before it resolves a path and
    /// stores what it found only if no write cleared the cache meanwhile: otherwise a GET
    /// racing a PUT could store the file's old bytes, or its absence, after the PUT's clear.
    epoch: std::sync::atomic::AtomicU64,
}

impl FileCache {
    /// A cache whose entries are trusted for `valid` (zero: nothing is ever cached).
    pub fn new(valid: Duration) -> FileCache {
        FileCache {
            valid,
            inner: RwLock::new(Inner::default()),
            epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The current epoch: read it before resolving, and pass it to the insert.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the cache is on.
    pub fn enabled(&self) -> bool {
        !self.valid.is_zero()
    }

    /// The entry for request path `key`, if it is younger than the revalidation interval.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        match self.lookup(key) {
            Lookup::File(entry) => Some(entry),
            _ => None,
        }
    }

    /// What is known about request path `key`, younger than the revalidation interval.
    pub fn lookup(&self, key: &str) -> Lookup {
        if !self.enabled() {
            return Lookup::Unknown;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = inner.map.get(key) {
            if entry.loaded.elapsed() < self.valid {
                return Lookup::File(Arc::clone(entry));
            }
        } else if let Some(large) = inner.large.get(key) {
            if large.loaded.elapsed() < self.valid {
                if let Some(snapshot) = large.snapshot.upgrade() {
                    return Lookup::Large(snapshot, Arc::clone(&large.meta));
                }
            }
        } else if let Some(when) = inner.missing.get(key) {
            if when.elapsed() < self.valid {
                return Lookup::Missing;
            }
        }
        Lookup::Unknown
    }

    /// The write lock for an insert whose resolve began at `epoch`; `None` when the cache is
    /// off or was cleared since.
    fn write_at(&self, epoch: u64) -> Option<std::sync::RwLockWriteGuard<'_, Inner>> {
        if !self.enabled() {
            return None;
        }
        let inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        (self.epoch() == epoch).then_some(inner)
    }

    /// Remembers that request path `key` resolved to nothing, unless the cache was cleared
    /// since `epoch` was read.
    pub fn insert_missing(&self, key: &str, epoch: u64) {
        let now = Instant::now();
        let Some(mut inner) = self.write_at(epoch) else {
            return;
        };
        // A file entry for the key is stale now (the file was removed).
        inner.forget_file(key);
        let Inner {
            missing,
            missing_order,
            ..
        } = &mut *inner;
        while missing.len() >= CACHE_MAX_MISSING && !missing.contains_key(key) {
            let Some((oldest, when)) = missing_order.pop_front() else {
                break;
            };
            if missing.get(&oldest) == Some(&when) {
                missing.remove(&oldest);
            }
        }
        missing.insert(key.to_string(), now);
        missing_order.push_back((key.to_string(), now));
        if missing_order.len() > 2 * CACHE_MAX_MISSING {
            missing_order.retain(|(k, t)| missing.get(k) == Some(t));
        }
    }

    /// Stores `entry` under `key` (replacing an older one), evicting the oldest entries until
    /// both bounds hold. An entry larger than the whole budget is not stored, nor one read
    /// before a clear (`epoch` is from before the resolve).
    pub fn insert(&self, key: &str, entry: Cached, epoch: u64) -> Arc<Cached> {
        let entry = Arc::new(entry);
        let size = entry.size();
        if !self.enabled() || size > CACHE_MAX_BYTES {
            return entry;
        }
        let Some(mut inner) = self.write_at(epoch) else {
            return entry;
        };
        inner.missing.remove(key);
        inner.forget_file(key);
        while inner.map.len() >= CACHE_MAX_ENTRIES || inner.bytes + size > CACHE_MAX_BYTES {
            let Some((oldest, loaded)) = inner.order.pop_front() else {
                break;
            };
            // Only the position recorded with the entry's own load time counts.
            if inner.map.get(&oldest).is_some_and(|e| e.loaded == loaded) {
                if let Some(old) = inner.map.remove(&oldest) {
                    inner.bytes -= old.size();
                }
            }
        }
        inner.bytes += size;
        inner.order.push_back((key.to_string(), entry.loaded));
        inner.map.insert(key.to_string(), Arc::clone(&entry));
        // Stale positions (refreshed keys) would otherwise pile up in `order`.
        if inner.order.len() > 2 * CACHE_MAX_ENTRIES {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, t)| map.get(k).is_some_and(|e| e.loaded == *t));
        }
        entry
    }

    /// Remembers that request path `key` is a large file with `snapshot` (unless the cache
    /// was cleared since `epoch` was read), evicting the oldest such entry at the bound.
    pub fn insert_large(&self, key: &str, snapshot: &Arc<Snapshot>, meta: LargeMeta, epoch: u64) {
        let now = Instant::now();
        let Some(mut inner) = self.write_at(epoch) else {
            return;
        };
        inner.missing.remove(key);
        inner.forget_file(key);
        let Inner {
            large, large_order, ..
        } = &mut *inner;
        while large.len() >= CACHE_MAX_LARGE && !large.contains_key(key) {
            let Some((oldest, when)) = large_order.pop_front() else {
                break;
            };
            if large.get(&oldest).is_some_and(|l| l.loaded == when) {
                large.remove(&oldest);
            }
        }
        let entry = Large {
            snapshot: Arc::downgrade(snapshot),
            meta: Arc::new(meta),
            loaded: now,
        };
        large.insert(key.to_string(), entry);
        large_order.push_back((key.to_string(), now));
        if large_order.len() > 2 * CACHE_MAX_LARGE {
            large_order.retain(|(k, t)| large.get(k).is_some_and(|l| l.loaded == *t));
        }
    }

    /// A configured page, if its copy is younger than the revalidation interval.
    pub fn page(&self, page: Page) -> Option<Arc<Cached>> {
        if !self.enabled() {
            return None;
        }
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.pages[page.slot()]
            .as_ref()
            .filter(|entry| entry.loaded.elapsed() < self.valid)
            .map(Arc::clone)
    }

    /// Stores a configured page's copy, unless the cache was cleared since `epoch` was read
    /// (the caller bounds its size, [`PAGE_MAX_BYTES`]).
    pub fn insert_page(&self, page: Page, entry: Cached, epoch: u64) -> Arc<Cached> {
        let entry = Arc::new(entry);
        if !self.enabled() {
            return entry;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch() == epoch {
            inner.pages[page.slot()] = Some(Arc::clone(&entry));
        }
        entry
    }

    /// Forgets everything (after a PUT or DELETE: a file has many request paths).
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        *inner = Inner::default();
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Entries and body bytes held now.
    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let inner = self.inner.read().unwrap();
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(len: usize) -> Cached {
        Cached::new(
            "text/plain",
            vec![CachedRep {
                coding: None,
                bytes: vec![b'x'; len],
                modified: None,
                etag: "\"t\"".into(),
            }],
        )
    }

    #[test]
    fn fresh_entries_hit_and_stale_ones_miss() {
        let c = FileCache::new(Duration::from_millis(50));
        assert!(c.get("/a").is_none());
        c.insert("/a", entry(3), 0);
        assert_eq!(c.get("/a").unwrap().reps[0].bytes.len(), 3);
        std::thread::sleep(Duration::from_millis(60));
        assert!(c.get("/a").is_none(), "older than the interval: revalidate");
    }

    #[test]
    fn pages_are_kept_apart_revalidated_and_cleared() {
        let c = FileCache::new(Duration::from_secs(60));
        assert!(c.page(Page::Fallback).is_none());
        c.insert_page(Page::Fallback, entry(5), c.epoch());
        assert_eq!(c.page(Page::Fallback).unwrap().reps[0].bytes.len(), 5);
        assert!(c.page(Page::NotFound).is_none(), "one slot per page");
        assert!(c.get("/").is_none(), "no request path sees a page");
        assert_eq!(
            c.usage(),
            (0, 0),
            "pages do not count against the file bounds"
        );
        let before = c.epoch();
        c.clear();
        assert!(
            c.page(Page::Fallback).is_none(),
            "a write drops the pages too"
        );
        c.insert_page(Page::NotFound, entry(1), before);
        assert!(
            c.page(Page::NotFound).is_none(),
            "read before a clear: not stored"
        );

        let c = FileCache::new(Duration::from_millis(50));
        c.insert_page(Page::NotFound, entry(2), c.epoch());
        assert!(c.page(Page::NotFound).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            c.page(Page::NotFound).is_none(),
            "older than the interval: reload"
        );

        let off = FileCache::new(Duration::ZERO);
        off.insert_page(Page::NotFound, entry(2), off.epoch());
        assert!(
            off.page(Page::NotFound).is_none(),
            "cache off: opened every time"
        );
    }

    #[test]
    fn a_zero_interval_turns_the_cache_off() {
        let c = FileCache::new(Duration::ZERO);
        c.insert("/a", entry(3), 0);
        assert!(c.get("/a").is_none());
        assert_eq!(c.usage(), (0, 0));
    }

    #[test]
    fn both_bounds_hold_and_the_oldest_leave_first() {
        let c = FileCache::new(Duration::from_secs(60));
        for i in 0..CACHE_MAX_ENTRIES + 10 {
            c.insert(&format!("/{i}"), entry(1), 0);
        }
        assert_eq!(c.usage().0, CACHE_MAX_ENTRIES);
        assert!(c.get("/0").is_none() && c.get("/9").is_none());
        assert!(c.get(&format!("/{}", CACHE_MAX_ENTRIES + 9)).is_some());

        let c = FileCache::new(Duration::from_secs(60));
        let big = INLINE_BODY_MAX as usize;
        let fit = CACHE_MAX_BYTES / big;
        for i in 0..fit + 3 {
            c.insert(&format!("/{i}"), entry(big), 0);
        }
        let (n, bytes) = c.usage();
        assert!(
            bytes <= CACHE_MAX_BYTES && n == fit,
            "{n} entries, {bytes} bytes"
        );
        assert!(c.get("/0").is_none() && c.get(&format!("/{}", fit + 2)).is_some());
    }

    #[test]
    fn not_found_paths_are_remembered_for_the_interval_and_bounded_apart() {
        let c = FileCache::new(Duration::from_millis(50));
        assert!(matches!(c.lookup("/gone"), Lookup::Unknown));
        c.insert_missing("/gone", 0);
        assert!(matches!(c.lookup("/gone"), Lookup::Missing));
        // A file found there later replaces the memory of its absence.
        c.insert("/gone", entry(2), 0);
        assert!(matches!(c.lookup("/gone"), Lookup::File(_)));
        c.insert_missing("/x", 0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            matches!(c.lookup("/x"), Lookup::Unknown),
            "stale: resolve again"
        );

        // A flood of missing paths keeps its own bound and leaves the files alone.
        let c = FileCache::new(Duration::from_secs(60));
        c.insert("/hot", entry(1), 0);
        for i in 0..10 * CACHE_MAX_MISSING {
            c.insert_missing(&format!("/m{i}"), 0);
        }
        assert!(matches!(c.lookup("/hot"), Lookup::File(_)));
        let inner = c.inner.read().unwrap();
        assert_eq!(inner.missing.len(), CACHE_MAX_MISSING);
        assert!(inner.missing_order.len() <= 2 * CACHE_MAX_MISSING + 1);
        assert!(inner
            .missing
            .contains_key(&format!("/m{}", 10 * CACHE_MAX_MISSING - 1)));
        drop(inner);
        c.clear();
        assert!(matches!(c.lookup("/hot"), Lookup::Unknown));
        // What was read before a clear is not stored after it.
        c.insert_missing("/late", 0);
        c.insert("/late2", entry(1), 0);
        assert!(matches!(c.lookup("/late"), Lookup::Unknown));
        assert!(matches!(c.lookup("/late2"), Lookup::Unknown));
        c.insert_missing("/late", c.epoch());
        assert!(matches!(c.lookup("/late"), Lookup::Missing));
        assert!(matches!(
            c.lookup(&format!("/m{}", 10 * CACHE_MAX_MISSING - 1)),
            Lookup::Unknown
        ));
    }

    #[test]
    fn refreshing_a_key_keeps_the_accounting_exact() {
        let c = FileCache::new(Duration::from_secs(60));
        for len in [10, 20, 5] {
            c.insert("/a", entry(len), 0);
        }
        assert_eq!(c.usage(), (1, 5));
        for i in 0..3 * CACHE_MAX_ENTRIES {
            c.insert("/hot", entry(1), 0);
            c.insert(&format!("/cold{}", i % 4), entry(1), 0);
        }
        assert_eq!(c.usage(), (6, 5 + 5));
        let inner = c.inner.read().unwrap();
        assert!(inner.order.len() <= 2 * CACHE_MAX_ENTRIES + 1);
    }
}
