//! Sealed in-memory copies of large files ("snapshots"): the source of zero-copy bodies.
//!
//! sendfile(2) from the file itself is what nginx and lighttpd do, and it cannot keep our
//! integrity rule. The socket takes the page-cache pages by reference and the bytes are read
//! from them later: when the segment leaves over a network (and again for a retransmission),
//! or, on loopback, when the client reads its socket, which can be seconds later. A truncate
//! zeroes the page around the new end in place, and a write changes a page in place, under
//! bytes the server has long "sent". A check of the file before the last chunk (issue 16's
//! first idea) does not close the gap: in a loop that truncates and restores a 4 MiB file
//! while clients download it over loopback, 91 to 135 complete bodies had zeros in them with
//! the check in place.
//!
//! So zero-copy reads from a copy that cannot change. A snapshot is a memfd filled once from
//! the open file by one in-kernel copy (sendfile file → memfd) and then sealed
//! (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): the kernel refuses every
//! write, truncate and growth of it, so the pages a socket holds are the file's bytes
//! whoever reads them, whenever. It is kept only if the file still has the stamp it had at
//! open ([`FileStamp`]: inode, length, mtime) after the copy, and is found again by inode and
//! used only while the open file's stamp is the same: a changed file is never answered from
//! an old snapshot, it gets a new one. A response then costs what a plain sendfile costs;
//! the copy is paid once per version of a file, and is one copy where the copy path pays two
//! per response (a read into user space, a write out of it).
//!
//! Bounds, each with its reason:
//! - memory: the bytes of all live snapshots, cached or still being sent after eviction,
//!   stay within `--zero-copy-mem` ([`crate::Config::zero_copy_mem`]). A snapshot that would
//!   not fit after evicting what is only cached is not built; that response goes by copy;
//! - one file: at most a quarter of that ([`Snapshots::file_max`]), so a few large files
//!   cannot take it all, and a build holds its worker for a bounded time: 16 MiB by default,
//!   measured at 8-11 ms to the first byte against 0.3-0.7 ms once built (curl, one client,
//!   on the shared 2-core machine). Meanwhile the other workers serve, and the keeper rings
//!   one more if queued work waits (`pool.rs`);
//! - descriptors: at most [`SNAPSHOT_MAX_FILES`] live snapshots (one memfd each; fewer with
//!   little memory or a low descriptor limit), counted in the descriptor budget
//!   ([`crate::config::FdBudget`]);
//! - one build per file at a time: a burst of requests for a new file does not copy it once
//!   per worker; the others go by copy meanwhile.
//!
//! Memory is shared-memory pages, not in the process's RSS: the `SIGUSR1` line reports it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::SNAPSHOT_MAX_FILES;
use crate::resolve::FileStamp;

/// Bytes and descriptors of the live snapshots.
#[derive(Debug, Default)]
struct Live {
    bytes: AtomicU64,
    files: AtomicUsize,
}

/// A share of [`Live`] taken for one snapshot, given back when it is dropped.
#[derive(Debug)]
struct Held {
    len: u64,
    live: Arc<Live>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live.bytes.fetch_sub(self.len, Ordering::Relaxed);
        self.live.files.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A sealed copy of one version of a file.
#[derive(Debug)]
pub struct Snapshot {
    memfd: File,
    /// Declared after `memfd`: the bytes count as live until the descriptor is closed.
    held: Held,
}

impl Snapshot {
    /// The sealed in-memory file (sendfile's source).
    pub fn file(&self) -> &File {
        &self.memfd
    }

    /// Its length: the file's at the copy.
    pub fn len(&self) -> u64 {
        self.held.len
    }
}

#[derive(Debug)]
struct Entry {
    snapshot: Arc<Snapshot>,
    stamp: FileStamp,
    /// Insertion number, to tell this entry's place in `order` from stale ones.
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(u64, u64), Entry>,
    /// Files in insertion order, oldest first (eviction order).
    order: VecDeque<((u64, u64), u64)>,
    seq: u64,
    /// Files whose snapshot a worker is building right now.
    building: HashSet<(u64, u64)>,
}

/// The snapshots, shared by all workers.
#[derive(Debug)]
pub struct Snapshots {
    budget: u64,
    max_files: usize,
    live: Arc<Live>,
    inner: RwLock<Inner>,
}

impl Snapshots {
    /// Snapshots within `budget` bytes and `max_files` descriptors (zero: none, every body
    /// goes by copy).
    pub fn new(budget: u64, max_files: usize) -> Snapshots {
        Snapshots {
            budget,
            max_files,
            live: Arc::new(Live::default()),
            inner: RwLock::new(Inner::default()),
        }
    }

    /// The largest file that gets a snapshot: a quarter of the budget.
    pub fn file_max(&self) -> u64 {
        self.budget / 4
    }

    /// Bytes and count of the live snapshots (for the `SIGUSR1` line and tests).
    pub fn usage(&self) -> (u64, usize) {
        (
            self.live.bytes.load(Ordering::Relaxed),
            self.live.files.load(Ordering::Relaxed),
        )
    }

    /// The snapshot of the open `file`, whose stamp at open is `stamp`: the cached one if it
    /// is of this very version, else (with `build`) a new one when the file's size is in range
    /// and it fits. `None` sends the body by copy: no snapshot and none to build, the file is
    /// too small or too large, zero-copy is off or not available here, the budget is taken,
    /// another worker is building this file's, or the file changed during the copy.
    pub fn get(&self, file: &File, stamp: &FileStamp, build: bool) -> Option<Arc<Snapshot>> {
        if !self.eligible(stamp.len) {
            return None;
        }
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = inner.map.get(&stamp.id) {
                if entry.stamp == *stamp {
                    return Some(Arc::clone(&entry.snapshot));
                }
            }
        }
        if !build {
            return None;
        }
        let (held, _building) = self.reserve(stamp)?;
        match copy(file, stamp, held) {
            Ok(snapshot) => Some(self.insert(snapshot, *stamp)),
            Err(e) => {
                log::debug!("no snapshot ({e}); the body goes by copy");
                None
            }
        }
    }

    fn eligible(&self, len: u64) -> bool {
        #[cfg(target_os = "linux")]
        let here = crate::sys::sendfile_reaches(len);
        #[cfg(not(target_os = "linux"))]
        let here = false;
        here && len >= crate::config::ZERO_COPY_MIN && len <= self.file_max()
    }

    /// Takes room for a snapshot of `stamp`'s file and marks the file as being built. Room is
    /// made by evicting cached snapshots oldest first, but only those no response holds
    /// (evicting one in use frees nothing; it counts as recently used and stays).
    fn reserve(&self, stamp: &FileStamp) -> Option<(Held, Building<'_>)> {
        let mut evicted = Vec::new();
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.building.contains(&stamp.id) {
            return None;
        }
        // Under the write lock nobody can take a new holder of a cached snapshot, so one
        // whose only holder is the cache is freed once it is dropped.
        let mut freed = (0u64, 0usize);
        let mut evict = |inner: &mut Inner, id: &(u64, u64), freed: &mut (u64, usize)| {
            if let Some(old) = inner.map.remove(id) {
                if Arc::strong_count(&old.snapshot) == 1 {
                    freed.0 += old.snapshot.len();
                    freed.1 += 1;
                }
                evicted.push(old.snapshot);
            }
        };
        // A stale snapshot of this file goes first, held or not: it is never found again.
        evict(&mut inner, &stamp.id, &mut freed);
        let fits = |freed: (u64, usize)| {
            let bytes = self.live.bytes.load(Ordering::Relaxed) - freed.0;
            let files = self.live.files.load(Ordering::Relaxed) - freed.1;
            bytes + stamp.len <= self.budget && files < self.max_files
        };
        let mut looks = inner.order.len();
        while !fits(freed) && looks > 0 {
            looks -= 1;
            let Some((id, seq)) = inner.order.pop_front() else {
                break;
            };
            match inner.map.get(&id) {
                Some(e) if e.seq == seq && Arc::strong_count(&e.snapshot) == 1 => {
                    evict(&mut inner, &id, &mut freed)
                }
                Some(e) if e.seq == seq => inner.order.push_back((id, seq)),
                _ => {} // a stale position
            }
        }
        let room = fits(freed);
        if room {
            self.live.bytes.fetch_add(stamp.len, Ordering::Relaxed);
            self.live.files.fetch_add(1, Ordering::Relaxed);
            inner.building.insert(stamp.id);
        }
        drop(inner);
        // Closed outside the lock: freeing megabytes of pages takes a moment.
        drop(evicted);
        room.then(|| {
            let held = Held {
                len: stamp.len,
                live: Arc::clone(&self.live),
            };
            (
                held,
                Building {
                    of: self,
                    id: stamp.id,
                },
            )
        })
    }

    fn insert(&self, snapshot: Snapshot, stamp: FileStamp) -> Arc<Snapshot> {
        let snapshot = Arc::new(snapshot);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.seq += 1;
        let seq = inner.seq;
        inner.order.push_back((stamp.id, seq));
        let entry = Entry {
            snapshot: Arc::clone(&snapshot),
            stamp,
            seq,
        };
        let stale = inner.map.insert(stamp.id, entry);
        // Stale positions (rebuilt files) would otherwise pile up.
        if inner.order.len() > 2 * SNAPSHOT_MAX_FILES {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(id, seq)| map.get(id).is_some_and(|e| e.seq == *seq));
        }
        drop(inner);
        drop(stale);
        snapshot
    }
}

/// A file marked as being built; unmarked when dropped, also if the build panics.
struct Building<'a> {
    of: &'a Snapshots,
    id: (u64, u64),
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        let mut inner = self.of.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.building.remove(&self.id);
    }
}

/// Copies `file` (open, with `stamp` at open) into a new memfd and seals it; an error if the
/// file changed meanwhile: shorter than its stamp, or another stamp after the copy.
#[cfg(target_os = "linux")]
fn copy(file: &File, stamp: &FileStamp, held: Held) -> io::Result<Snapshot> {
    use crate::sys;
    let memfd = sys::memfd(c"poolserve-snapshot")?;
    let mut done = 0u64;
    while done < stamp.len {
        let want = usize::try_from(stamp.len - done).unwrap_or(usize::MAX);
        match sys::sendfile(&memfd, file, done, want)? {
            0 => return Err(changed()),
            n => done += n as u64,
        }
    }
    if FileStamp::now(file)? != *stamp {
        return Err(changed());
    }
    sys::seal(&memfd)?;
    Ok(Snapshot { memfd, held })
}

/// Off Linux there are no snapshots ([`Snapshots::get`] never gets here).
#[cfg(not(target_os = "linux"))]
fn copy(_file: &File, _stamp: &FileStamp, _held: Held) -> io::Result<Snapshot> {
    Err(io::ErrorKind::Unsupported.into())
}

fn changed() -> io::Error {
    io::Error::other("the file changed during the copy")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::config::ZERO_COPY_MIN;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "poolserve-snap-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn data(len: u64, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn open(path: &std::path::Path) -> (File, FileStamp) {
        let f = File::open(path).unwrap();
        let s = FileStamp::now(&f).unwrap();
        (f, s)
    }

    fn contents(s: &Snapshot) -> Vec<u8> {
        let mut got = vec![0; s.len() as usize];
        s.file().read_exact_at(&mut got, 0).unwrap();
        got
    }

    #[test]
    fn a_snapshot_is_the_files_bytes_sealed_and_found_again_for_the_same_version() {
        let d = dir();
        let path = d.0.join("a.bin");
        let bytes = data(3 * ZERO_COPY_MIN, 7);
        std::fs::write(&path, &bytes).unwrap();
        let snaps = Snapshots::new(64 << 20, SNAPSHOT_MAX_FILES);
        let (f, stamp) = open(&path);
        let s = snaps.get(&f, &stamp, true).expect("a snapshot");
        assert!(contents(&s) == bytes);
        assert!(crate::sys::is_sealed(s.file()).unwrap());
        assert_eq!(snaps.usage(), (bytes.len() as u64, 1));
        // Another open of the same version finds the same snapshot.
        let (f2, stamp2) = open(&path);
        assert!(Arc::ptr_eq(&s, &snaps.get(&f2, &stamp2, true).unwrap()));
        // Changed in place: a new version, a new snapshot; the old one keeps its bytes.
        let g = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        g.write_all_at(&[0xEE; 100], 1000).unwrap();
        let (f3, stamp3) = open(&path);
        let s3 = snaps.get(&f3, &stamp3, true).unwrap();
        assert!(!Arc::ptr_eq(&s, &s3));
        assert!(contents(&s) == bytes, "the old version is intact");
        assert_eq!(&contents(&s3)[1000..1100], &[0xEE; 100][..]);
        // The old one still counts while a response holds it, and not after.
        assert_eq!(snaps.usage().1, 2);
        drop(s);
        assert_eq!(snaps.usage(), (bytes.len() as u64, 1));
    }

    #[test]
    fn sizes_out_of_range_and_a_zero_budget_go_by_copy() {
        let d = dir();
        let snaps = Snapshots::new(4 << 20, SNAPSHOT_MAX_FILES);
        // (length, gets a snapshot) with a 1 MiB per-file maximum
        for (len, want) in [
            (ZERO_COPY_MIN - 1, false),
            (ZERO_COPY_MIN, true),
            (1 << 20, true),
            ((1 << 20) + 1, false),
        ] {
            let path = d.0.join(format!("f{len}"));
            std::fs::write(&path, data(len, 1)).unwrap();
            let (f, stamp) = open(&path);
            assert_eq!(snaps.get(&f, &stamp, true).is_some(), want, "{len}");
        }
        let off = Snapshots::new(0, SNAPSHOT_MAX_FILES);
        let path = d.0.join(format!("f{}", ZERO_COPY_MIN));
        let (f, stamp) = open(&path);
        assert!(off.get(&f, &stamp, true).is_none());
    }

    #[test]
    fn the_budget_evicts_oldest_first_but_not_what_responses_hold() {
        let d = dir();
        let one = 1u64 << 20;
        let snaps = Snapshots::new(4 * one, SNAPSHOT_MAX_FILES);
        let files: Vec<_> = (0..6u8)
            .map(|i| {
                let path = d.0.join(format!("{i}.bin"));
                std::fs::write(&path, data(one, i)).unwrap();
                open(&path)
            })
            .collect();
        let get = |i: usize| snaps.get(&files[i].0, &files[i].1, true);
        // 0 is held by a response; 1, 2 and 3 are only cached.
        let held = get(0).unwrap();
        for i in 1..4 {
            get(i).unwrap();
        }
        assert_eq!(snaps.usage(), (4 * one, 4));
        // 4 evicts the oldest that frees memory: 1, not the held 0.
        let four = get(4).unwrap();
        assert_eq!(snaps.usage(), (4 * one, 4));
        assert!(
            Arc::ptr_eq(&held, &get(0).unwrap()),
            "the held one is still cached"
        );
        // Everything held: no room, and nothing cached is lost for it.
        let (two, three) = (get(2).unwrap(), get(3).unwrap());
        assert!(get(5).is_none(), "no room while every snapshot is held");
        assert_eq!(snaps.usage(), (4 * one, 4));
        assert!(Arc::ptr_eq(&two, &get(2).unwrap()));
        drop((held, two, three, four));
        assert!(get(5).is_some());
        assert_eq!(snaps.usage(), (4 * one, 4));
    }

    #[test]
    fn a_file_changed_during_the_copy_gets_no_snapshot() {
        let d = dir();
        let path = d.0.join("c.bin");
        std::fs::write(&path, data(2 * ZERO_COPY_MIN, 3)).unwrap();
        let snaps = Snapshots::new(64 << 20, SNAPSHOT_MAX_FILES);
        // Opened, then changed before the copy: the stamp after the copy differs.
        let (f, stamp) = open(&path);
        let mut g = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        g.write_all(b"more").unwrap();
        assert!(snaps.get(&f, &stamp, true).is_none());
        // Shortened: the copy comes up short.
        let (f, stamp) = open(&path);
        g.set_len(ZERO_COPY_MIN).unwrap();
        assert!(snaps.get(&f, &stamp, true).is_none());
        assert_eq!(snaps.usage(), (0, 0), "nothing held after failed builds");
        // One build per file at a time: while it is marked, others go by copy.
        let (f, stamp) = open(&path);
        let mark = snaps.reserve(&stamp).unwrap();
        assert!(snaps.get(&f, &stamp, true).is_none());
        drop(mark);
        assert!(snaps.get(&f, &stamp, true).is_some());
    }
}
