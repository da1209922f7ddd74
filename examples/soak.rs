//! A soak of the release binary: every kind of client at once, files changing under them,
//! every body byte checked, and the server's descriptors, threads and memory back where they
//! started at the end (issue 15).
//!
//! The one command (10 minutes, from the repository root):
//!
//! ```sh
//! cargo build --release && cargo run --release --example soak -- --minutes 10
//! ```
//!
//! `--seconds 30` for a short run; `--bin PATH` for another binary. Exit status: 0 when there
//! was no failure and the resources came back, 1 otherwise, 2 on bad usage.
//!
//! What it does:
//! - Creates a temporary document root and starts `poolserve --port 0 --access-log off` on
//!   127.0.0.1, reading the bound address from its first stdout line (as `tests/cli.rs`
//!   does); its stderr goes to a file in that root's parent, and every `ERROR` or `panicked`
//!   line in it is a failure (error! means a bug, house style §4.12).
//! - Every byte of every file is a known function of (path, version, offset): 16-byte blocks
//!   that start with the version's number (little-endian u32) followed by 12 bytes of a hash
//!   of (path, version, block). Any body, whole, ranged, multipart or cut short, must match
//!   *one* version that the path has had, at the offsets the response claims; a body with
//!   bytes of no version (zeros, another file, two versions mixed) is a failure.
//! - Meanwhile one thread replaces the `/r/` files by rename (write `.soak-tmp`, rename over:
//!   new versions, new lengths), and another truncates `/t/big.bin` in place and writes it
//!   back (the same bytes, slowly) during downloads. A body may end early (the connection
//!   closes before Content-Length) only for a file changed in place during that request, and
//!   a 200 shorter than the file only then too (the server saw it mid-rewrite), or up to
//!   `--cache-valid` before it for a file small enough for the server's cache.
//! - A half-closed client (request, then shutdown(Write)) must see the close right after its
//!   answers: the server already has its FIN.
//! - Resources are sampled from /proc after a warm-up (all clients, then a settle until the
//!   counts are back at their idle values) and at the end (clients stopped, same settle);
//!   descriptors and threads must match exactly (not counting the server's zero-copy
//!   snapshots, sealed memfds it keeps on purpose: those must stay within
//!   [`SNAPSHOT_MAX_FILES`]), resident memory within
//!   [`RSS_TOLERANCE_KIB`]; the RSS at each tenth of the run is printed, to tell a leak
//!   (steady growth) from the allocator keeping what it was given (a plateau).
//! - Only 127.0.0.1 is ever contacted, and at most a few dozen connections are open at once:
//!   far below `--max-connections` (900), so a 503 is always a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// No response may take longer than this to start or to make progress (a hang): the machine
/// is a shared 2-core VM, so generous, but far below the server's 30 s write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The server's header timeout, passed as `--header-timeout`: shorter than the default (20 s)
/// so that endless slowloris heads get their 408 several times a minute.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the server's descriptors and threads to come back to their idle values
/// once the clients have stopped (lingering closes, parked sockets noticing EOF).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// The counts must hold still this long to count as settled.
const SETTLE_QUIET: Duration = Duration::from_millis(500);
/// How far resident memory may end above its start value. Freed memory is not handed back at
/// once: glibc keeps each worker thread's arena (8 workers here) and its top chunk below
/// `M_TRIM_THRESHOLD` (128 KiB), a worker's 16 KiB read buffer and 64 KiB copy buffer stay,
/// and the small-file cache may hold up to 4 MiB. So 8 MiB: 4 MiB for the cache's bound plus
/// 512 KiB for each of 8 arenas. A leak of 5 bytes per request over the ~1.8 million
/// requests of a 10-minute run exceeds it.
const RSS_TOLERANCE_KIB: u64 = 8 * 1024;
/// Bytes per content block: a 4-byte version tag, then 12 bytes of hash.
const BLOCK: u64 = 16;
/// Failures kept with their details for each kind of client (all are counted): the first
/// few of every kind, so that a frequent one cannot hide a rare one.
const FAILURES_KEPT: usize = 3;
/// Pause between iterations of the fast clients: the soak is about time and variety, not
/// throughput, and the machine is shared.
const PAUSE: Duration = Duration::from_millis(5);
/// The server's small-file cache interval, passed as `--cache-valid` (its default): a file
/// changed on disk may be served as it was up to this long before.
const CACHE_VALID: Duration = Duration::from_secs(1);
/// Scheduling slack on top of [`CACHE_VALID`] (a cache entry is stamped when its read ends).
const CACHE_SLACK: Duration = Duration::from_millis(500);
/// The largest file the server caches (its `cache::INLINE_BODY_MAX`).
const INLINE_BODY_MAX: u64 = 16 * 1024;
/// The server's keep-alive timeout, passed as `--keepalive-timeout` (its default).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str = "\
Usage: cargo run --release --example soak -- [--minutes N | --seconds N] [--bin PATH]

Soak the release binary on 127.0.0.1 with every kind of client at once while files change,
checking every body byte, then require the server's descriptors, threads and memory back.

  --minutes N   how long to run, 1..1440 [default: 10]
  --seconds N   how long to run in seconds, 5..86400 (for short runs)
  --bin PATH    the server binary [default: target/release/poolserve]
  -h, --help    print this help and exit

Exit status: 0 no failure and resources back, 1 failure, 2 bad usage.
";

fn main() {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(msg) => {
            eprintln!("soak: {msg}");
            std::process::exit(2);
        }
    };
    std::process::exit(run(&opts));
}

struct Opts {
    duration: Duration,
    bin: PathBuf,
}

/// `Ok(None)` for `--help`; `Err` is the one-line usage message.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>, String> {
    let mut duration = Duration::from_secs(600);
    let mut bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/poolserve");
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--minutes" => duration = Duration::from_secs(60 * number(&value(&arg)?, 1, 1440)?),
            "--seconds" => duration = Duration::from_secs(number(&value(&arg)?, 5, 86400)?),
            "--bin" => bin = PathBuf::from(value(&arg)?),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if !bin.is_file() {
        return Err(format!(
            "no server binary at {} (run `cargo build --release` or pass --bin)",
            bin.display()
        ));
    }
    Ok(Some(Opts { duration, bin }))
}

fn number(s: &str, min: u64, max: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, got {s:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Content: every byte a function of (path, version, offset).

/// The splitmix64 finalizer: a cheap, good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Block `b` of version `vid` of path number `path`.
fn block_bytes(path: u32, vid: u32, b: u64) -> [u8; BLOCK as usize] {
    let key = mix((u64::from(path) << 32) | u64::from(vid));
    let h = mix(key ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let h2 = mix(h);
    let mut out = [0u8; BLOCK as usize];
    out[..4].copy_from_slice(&vid.to_le_bytes());
    out[4..12].copy_from_slice(&h.to_le_bytes());
    out[12..].copy_from_slice(&h2.to_le_bytes()[..4]);
    out
}

/// Calls `each(index into the span, expected bytes)` for the content of `len` bytes at
/// `offset`, a block (or the part of one inside the span) at a time; stops when it returns
/// false.
fn for_blocks(
    path: u32,
    vid: u32,
    offset: u64,
    len: usize,
    mut each: impl FnMut(usize, &[u8]) -> bool,
) {
    let mut i = 0usize;
    while i < len {
        let o = offset + i as u64;
        let within = (o % BLOCK) as usize;
        let blk = block_bytes(path, vid, o / BLOCK);
        let n = (BLOCK as usize - within).min(len - i);
        if !each(i, &blk[within..within + n]) {
            return;
        }
        i += n;
    }
}

/// Writes the content of `buf.len()` bytes at `offset` into `buf`.
fn fill(path: u32, vid: u32, offset: u64, buf: &mut [u8]) {
    for_blocks(path, vid, offset, buf.len(), |i, want| {
        buf[i..i + want.len()].copy_from_slice(want);
        true
    });
}

/// The first index where `data` (at `offset`) differs from version `vid`, with the byte
/// that should be there.
fn first_mismatch(path: u32, vid: u32, offset: u64, data: &[u8]) -> Option<(usize, u8)> {
    let mut found = None;
    for_blocks(path, vid, offset, data.len(), |i, want| {
        let got = &data[i..i + want.len()];
        if got == want {
            return true;
        }
        let k = got.iter().zip(want).position(|(g, w)| g != w).unwrap_or(0);
        found = Some((i + k, want[k]));
        false
    });
    found
}

/// The version tag of the first whole tag inside `data` at `offset`, with its offset.
fn tag_in(offset: u64, data: &[u8]) -> Option<(u64, u32)> {
    let first = offset.div_ceil(BLOCK) * BLOCK;
    let at = usize::try_from(first - offset).ok()?;
    let bytes = data.get(at..at + 4)?;
    Some((first, u32::from_le_bytes(bytes.try_into().ok()?)))
}

// ---------------------------------------------------------------------------------------
// The site: files, their versions, and the mutators.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Written once.
    Stable,
    /// Replaced by rename with new versions (new lengths) all the time.
    Replaced,
    /// Truncated in place and written back (the same version) all the time.
    Truncated,
}

struct SiteFile {
    url: String,
    disk: PathBuf,
    id: u32,
    kind: Kind,
    /// Length of the first version; later ones are up to a quarter longer.
    base: u64,
    /// (version, length) in the order written; version numbers increase.
    versions: RwLock<Vec<(u32, u64)>>,
    /// In-place changes: odd while one is under way (two per truncation).
    changes: AtomicU64,
    /// When the last in-place change ended, in nanoseconds since the site's `epoch`.
    changed_at: AtomicU64,
}

impl SiteFile {
    fn version_len(&self, vid: u32) -> Option<u64> {
        let v = self.versions.read().unwrap();
        v.binary_search_by_key(&vid, |&(id, _)| id)
            .ok()
            .map(|i| v[i].1)
    }

    /// Whether an in-place change overlapped a request that started at change count `c0`.
    fn changed_since(&self, c0: u64) -> bool {
        c0 % 2 == 1 || self.changes.load(Ordering::SeqCst) != c0
    }

    /// Whether an answer of a `total`-byte representation to a request sent at `sent` (change
    /// count `c0`) may show the file mid-change. A file up to [`INLINE_BODY_MAX`] bytes may
    /// come from the server's cache, which revalidates every [`CACHE_VALID`] (documented:
    /// a change is seen at most that late), so a change that ended up to that long before
    /// the request counts too.
    fn may_show_change(&self, c0: u64, sent: Duration, total: u64) -> bool {
        let ended = Duration::from_nanos(self.changed_at.load(Ordering::SeqCst));
        let cached = total <= INLINE_BODY_MAX && ended + CACHE_VALID + CACHE_SLACK >= sent;
        self.changed_since(c0) || cached
    }
}

struct Site {
    /// The origin of [`SiteFile::changed_at`] and [`Ask::sent`].
    epoch: Instant,
    files: Vec<SiteFile>,
    next_vid: AtomicU32,
    replacements: AtomicU64,
    truncations: AtomicU64,
}

/// (url, kind, length of the first version).
const LAYOUT: &[(&str, Kind, u64)] = &[
    ("/s/tiny.bin", Kind::Stable, 100),
    ("/s/small.bin", Kind::Stable, 3000),
    ("/s/inline-max.bin", Kind::Stable, 16 * 1024),
    ("/s/inline-max-plus-1.bin", Kind::Stable, 16 * 1024 + 1),
    ("/s/medium.bin", Kind::Stable, 200 * 1024),
    ("/s/big.bin", Kind::Stable, 8 << 20),
    ("/r/a.bin", Kind::Replaced, 500),
    ("/r/b.bin", Kind::Replaced, 4000),
    ("/r/c.bin", Kind::Replaced, 12_000),
    ("/r/d.bin", Kind::Replaced, 20_000),
    ("/r/e.bin", Kind::Replaced, 100 * 1024),
    ("/r/f.bin", Kind::Replaced, 300 * 1024),
    ("/t/big.bin", Kind::Truncated, 8 << 20),
];

impl Site {
    fn create(root: &Path) -> io::Result<Site> {
        let site = Site {
            epoch: Instant::now(),
            files: LAYOUT
                .iter()
                .enumerate()
                .map(|(i, &(url, kind, base))| SiteFile {
                    url: url.to_string(),
                    disk: root.join(&url[1..]),
                    id: i as u32 + 1,
                    kind,
                    base,
                    versions: RwLock::new(Vec::new()),
                    changes: AtomicU64::new(0),
                    changed_at: AtomicU64::new(0),
                })
                .collect(),
            next_vid: AtomicU32::new(1),
            replacements: AtomicU64::new(0),
            truncations: AtomicU64::new(0),
        };
        for f in &site.files {
            fs::create_dir_all(f.disk.parent().unwrap())?;
            site.write_version(f, f.base, &f.disk)?;
        }
        Ok(site)
    }

    /// Writes a new version of `f`, `len` bytes long, to `to`, and records it (before anyone
    /// can see it).
    fn write_version(&self, f: &SiteFile, len: u64, to: &Path) -> io::Result<()> {
        let vid = self.next_vid.fetch_add(1, Ordering::SeqCst);
        f.versions.write().unwrap().push((vid, len));
        let mut out = File::create(to)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0;
        while at < len {
            let n = (len - at).min(buf.len() as u64) as usize;
            fill(f.id, vid, at, &mut buf[..n]);
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Replaces a random `/r/` file by rename, every few milliseconds.
    fn replacer(&self, stop: &AtomicBool, rng: &mut Rng) -> io::Result<()> {
        let replaced: Vec<&SiteFile> = self
            .files
            .iter()
            .filter(|f| f.kind == Kind::Replaced)
            .collect();
        while !stop.load(Ordering::SeqCst) {
            let f = replaced[rng.below(replaced.len() as u64) as usize];
            let tmp = f.disk.with_file_name(".soak-tmp");
            self.write_version(f, f.base + rng.below(f.base / 4 + 1), &tmp)?;
            fs::rename(&tmp, &f.disk)?;
            self.replacements.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5 + rng.below(25)));
        }
        Ok(())
    }

    /// Truncates `/t/big.bin` in place (to zero or to a random length) and writes the lost
    /// part back in 64 KiB pieces with a pause between them, so downloads run into it.
    fn truncator(&self, stop: &AtomicBool, rng: &mut Rng) -> io::Result<()> {
        let f = self
            .files
            .iter()
            .find(|f| f.kind == Kind::Truncated)
            .unwrap();
        let (vid, len) = f.versions.read().unwrap()[0];
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::SeqCst) {
            sleep_unless(stop, Duration::from_millis(300 + rng.below(1200)));
            if stop.load(Ordering::SeqCst) {
                break;
            }
            f.changes.fetch_add(1, Ordering::SeqCst);
            let file = OpenOptions::new().write(true).open(&f.disk)?;
            let cut = if rng.chance(25) { 0 } else { rng.below(len) };
            file.set_len(cut)?;
            self.truncations.fetch_add(1, Ordering::SeqCst);
            let mut at = cut;
            while at < len {
                let n = (len - at).min(buf.len() as u64) as usize;
                fill(f.id, vid, at, &mut buf[..n]);
                file.write_all_at(&buf[..n], at)?;
                at += n as u64;
                thread::sleep(Duration::from_micros(500));
            }
            let now = self.epoch.elapsed().as_nanos() as u64;
            f.changed_at.store(now, Ordering::SeqCst);
            f.changes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

// ---------------------------------------------------------------------------------------
// Checking bodies against versions.

/// What a checked body turned out to be.
enum Checked {
    /// One version, at the length it has.
    Whole,
    /// One version, served while the file was shorter (mid-rewrite in place).
    Snapshot,
}

impl Site {
    /// Checks that `parts` (offset, bytes) all match one version of `f`. `total` is the
    /// representation length the response claims (Content-Length of a 200, the total of a
    /// Content-Range), `None` for a body cut short (then only the bytes are checked).
    fn verify(
        &self,
        f: &SiteFile,
        parts: &[(u64, &[u8])],
        total: Option<u64>,
    ) -> Result<Checked, String> {
        let fits = |len: u64| match (total, f.kind) {
            (None, _) => Some(Checked::Whole),
            (Some(t), Kind::Truncated) if t < len => Some(Checked::Snapshot),
            (Some(t), _) if t == len => Some(Checked::Whole),
            _ => None,
        };
        if let Some(&(offset, data)) = parts.iter().max_by_key(|(_, d)| d.len()) {
            if let Some(end) = total {
                if parts.iter().any(|(o, d)| o + d.len() as u64 > end) {
                    return Err(format!("{}: a part runs past the length {end}", f.url));
                }
            }
            if let Some((at, vid)) = tag_in(offset, data) {
                let Some(len) = f.version_len(vid) else {
                    return Err(format!(
                        "{}: bytes at {at} carry version tag {vid:#x}, never written to this path{}",
                        f.url,
                        zeros_note(offset, data, at)
                    ));
                };
                let fit = fits(len).ok_or_else(|| {
                    format!(
                        "{}: length {total:?} but version {vid} has {len} bytes",
                        f.url
                    )
                })?;
                for &(o, d) in parts {
                    if let Some((i, want)) = first_mismatch(f.id, vid, o, d) {
                        let at = o + i as u64;
                        return Err(format!(
                            "{}: byte {at} is {:#04x}, version {vid} has {want:#04x}{}",
                            f.url,
                            d[i],
                            zeros_note(o, d, at)
                        ));
                    }
                }
                return Ok(fit);
            }
        }
        // No whole tag in any part (only tiny parts): try every version, newest first.
        let versions = f.versions.read().unwrap();
        for &(vid, len) in versions.iter().rev() {
            if let Some(fit) = fits(len) {
                if parts
                    .iter()
                    .all(|&(o, d)| first_mismatch(f.id, vid, o, d).is_none())
                {
                    return Ok(fit);
                }
            }
        }
        let shown: Vec<String> = parts
            .iter()
            .map(|(o, d)| format!("{o}+{}:{:02x?}", d.len(), &d[..d.len().min(8)]))
            .collect();
        Err(format!(
            "{}: bytes match none of its {} versions (length {total:?}; parts {})",
            f.url,
            versions.len(),
            shown.join(" ")
        ))
    }
}

/// ", N zero bytes from there" when the bytes at `at` are zeros.
fn zeros_note(offset: u64, data: &[u8], at: u64) -> String {
    let from = (at - offset) as usize;
    let zeros = data[from..].iter().take_while(|&&b| b == 0).count();
    if zeros > 1 {
        format!(" ({zeros} zero bytes from there)")
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client over one socket.

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
enum RecvErr {
    /// The connection closed before any byte of a response.
    Closed,
    /// No byte within the read timeout.
    Timeout,
    /// A socket error (reset...).
    Io(io::ErrorKind),
    /// Not a well-formed response head.
    Bad(String),
}

impl std::fmt::Display for RecvErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvErr::Closed => write!(f, "closed without a response"),
            RecvErr::Timeout => write!(f, "no response within {} s", IO_TIMEOUT.as_secs()),
            RecvErr::Io(k) => write!(f, "socket error {k:?}"),
            RecvErr::Bad(what) => write!(f, "malformed response: {what}"),
        }
    }
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }
}

/// A body as it arrived.
enum Body {
    Complete(Vec<u8>),
    /// Ended before Content-Length: the bytes that came, and why it ended.
    Cut(Vec<u8>, String),
    /// The client stopped reading (end of the run).
    Stopped,
}

/// How a body is read: all at once, or a slow reader's pieces and pauses.
#[derive(Clone, Copy)]
struct Pace {
    piece: usize,
    pause: Duration,
}

const FAST: Pace = Pace {
    piece: 256 * 1024,
    pause: Duration::ZERO,
};

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Conn {
    fn open(addr: SocketAddr) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    /// Reads once more into the buffer: the count (0 at the end of the stream).
    fn more(&mut self, max: usize) -> io::Result<usize> {
        let old = self.buf.len();
        self.buf.resize(old + max, 0);
        let r = self.s.read(&mut self.buf[old..]);
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }

    fn head(&mut self) -> Result<Head, RecvErr> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = parse_head(&self.buf[..end]);
                self.buf.drain(..end + 4);
                return head;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(RecvErr::Bad("head over 64 KiB".into()));
            }
            match self.more(16 * 1024) {
                Ok(0) if self.buf.is_empty() => return Err(RecvErr::Closed),
                Ok(0) => {
                    return Err(RecvErr::Bad(format!(
                        "end of stream in a head: {}",
                        shown(&self.buf)
                    )))
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(RecvErr::Timeout),
                Err(e) => return Err(RecvErr::Io(e.kind())),
            }
        }
    }

    /// Reads a body of `len` bytes at `pace`, giving up when `stop` is set (for slow readers).
    fn body(&mut self, len: u64, pace: Pace, stop: &AtomicBool) -> Body {
        let len = len as usize;
        let first = self.buf.len().min(len);
        let mut body: Vec<u8> = self.buf.drain(..first).collect();
        body.reserve(len - body.len());
        while body.len() < len {
            if pace.pause > Duration::ZERO {
                if stop.load(Ordering::SeqCst) {
                    return Body::Stopped;
                }
                thread::sleep(pace.pause);
            }
            let old = body.len();
            let want = (len - old).min(pace.piece);
            body.resize(old + want, 0);
            match self.s.read(&mut body[old..]) {
                Ok(0) => {
                    body.truncate(old);
                    return Body::Cut(body, "end of stream".into());
                }
                Ok(n) => body.truncate(old + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => body.truncate(old),
                Err(e) => {
                    body.truncate(old);
                    let why = if is_timeout(&e) {
                        format!("no byte for {} s (a hang)", IO_TIMEOUT.as_secs())
                    } else {
                        format!("{:?}", e.kind())
                    };
                    return Body::Cut(body, why);
                }
            }
        }
        Body::Complete(body)
    }

    /// Whether the server closes the connection within the read timeout, with no more bytes.
    fn closes_quietly(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "{} unexpected bytes: {}",
                self.buf.len(),
                shown(&self.buf)
            ));
        }
        match self.more(4096) {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!("unexpected bytes: {}", shown(&self.buf))),
            Err(e) if is_timeout(&e) => Err("not closed within the read timeout".to_string()),
            Err(_) => Ok(()),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
    format!("{s:?}")
}

fn parse_head(raw: &[u8]) -> Result<Head, RecvErr> {
    let text =
        std::str::from_utf8(raw).map_err(|_| RecvErr::Bad(format!("not UTF-8: {}", shown(raw))))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let status = match (words.next(), words.next()) {
        (Some("HTTP/1.1"), Some(code)) if code.len() == 3 => code.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| RecvErr::Bad(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| RecvErr::Bad(format!("header line {line:?}")))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head { status, headers })
}

// ---------------------------------------------------------------------------------------
// Ranges: what the client asks, and what the answer must be.

#[derive(Debug, Clone, Copy)]
enum Spec {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

impl Spec {
    fn text(self) -> String {
        match self {
            Spec::FromTo(a, b) => format!("{a}-{b}"),
            Spec::From(a) => format!("{a}-"),
            Spec::Suffix(n) => format!("-{n}"),
        }
    }

    /// The bytes (inclusive) this asks of a `len`-byte representation; `None` when it is not
    /// satisfiable (RFC 9110 §14.1.2).
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        let last = len.checked_sub(1)?;
        match self {
            Spec::FromTo(a, _) | Spec::From(a) if a > last => None,
            Spec::FromTo(a, b) => Some((a, b.min(last))),
            Spec::From(a) => Some((a, last)),
            Spec::Suffix(0) => None,
            Spec::Suffix(n) => Some((len.saturating_sub(n), last)),
        }
    }
}

/// What a range request must get for a `len`-byte representation: 416 (`None`), the whole
/// file when the satisfiable ranges ask for more bytes than it has (Some(empty)), else the
/// sorted, coalesced ranges.
fn expected_ranges(specs: &[Spec], len: u64) -> Option<Vec<(u64, u64)>> {
    let mut ranges: Vec<(u64, u64)> = specs.iter().filter_map(|s| s.resolve(len)).collect();
    if ranges.is_empty() {
        return None;
    }
    if ranges.iter().map(|(a, b)| b - a + 1).sum::<u64>() > len {
        return Some(Vec::new());
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Some(merged)
}

/// `bytes A-B/T` → (A, B, T); `bytes */T` → (0, 0, T) with `star`.
fn content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?, total.parse().ok()?))
}

/// The parts of a `multipart/byteranges` body: (first, last, total, data range in `body`).
type Part = (u64, u64, u64, std::ops::Range<usize>);

fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("\r\n--{boundary}");
    let mut at = 0;
    let mut parts = Vec::new();
    loop {
        if !body[at..].starts_with(delim.as_bytes()) {
            return Err(format!("no delimiter at {at}: {}", shown(&body[at..])));
        }
        at += delim.len();
        if body[at..] == *b"--\r\n" {
            return Ok(parts);
        }
        if !body[at..].starts_with(b"\r\n") {
            return Err(format!("bad delimiter line at {at}"));
        }
        at += 2;
        let end = find(&body[at..], b"\r\n\r\n").ok_or("part head without its end")? + at;
        let head = std::str::from_utf8(&body[at..end]).map_err(|_| "part head not UTF-8")?;
        let range = head
            .split("\r\n")
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-range")
                    .then(|| content_range(v.trim()))?
            })
            .ok_or_else(|| format!("part head without Content-Range: {head:?}"))?;
        at = end + 4;
        let (a, b, total) = range;
        let n = usize::try_from(b - a + 1).map_err(|_| "huge part")?;
        if b < a || at + n > body.len() {
            return Err(format!("part {a}-{b} runs past the body"));
        }
        parts.push((a, b, total, at..at + n));
        at += n;
    }
}

// ---------------------------------------------------------------------------------------
// Statistics, shared by nobody: each client thread keeps its own and they are added up.

#[derive(Default)]
struct Stats {
    /// (kind, outcome) → count; an outcome is a status code or a word (cut, reset, ...).
    by: BTreeMap<(&'static str, String), u64>,
    /// Bytes of complete bodies checked.
    bytes_complete: u64,
    bodies_complete: u64,
    /// Bytes checked in bodies cut short or dropped on purpose.
    bytes_partial: u64,
    /// Cut bodies (allowed ones) by path.
    cuts: BTreeMap<String, u64>,
    /// 200s or 206s of a file served mid-rewrite, shorter than it is.
    snapshots: u64,
    /// Failures by the kind of client (or "soak"/"server") that saw them.
    failures: BTreeMap<&'static str, u64>,
    /// The first [`FAILURES_KEPT`] of each kind: when, which kind, what.
    kept: Vec<(Duration, &'static str, String)>,
}

impl Stats {
    fn add(&mut self, other: Stats) {
        for (k, n) in other.by {
            *self.by.entry(k).or_default() += n;
        }
        for (k, n) in other.cuts {
            *self.cuts.entry(k).or_default() += n;
        }
        self.bytes_complete += other.bytes_complete;
        self.bodies_complete += other.bodies_complete;
        self.bytes_partial += other.bytes_partial;
        self.snapshots += other.snapshots;
        for (k, n) in other.failures {
            *self.failures.entry(k).or_default() += n;
        }
        self.kept.extend(other.kept);
        self.kept.sort_by_key(|(t, _, _)| *t);
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        self.kept.retain(|(_, kind, _)| {
            let n = seen.entry(kind).or_default();
            *n += 1;
            *n <= FAILURES_KEPT
        });
    }

    fn fail(&mut self, at: Duration, kind: &'static str, detail: String) {
        let n = self.failures.entry(kind).or_default();
        *n += 1;
        if *n as usize <= FAILURES_KEPT {
            self.kept.push((at, kind, detail));
        }
    }

    fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A client thread's world.
struct Ctx {
    site: Arc<Site>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    t0: Instant,
    rng: Rng,
    stats: Stats,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn count(&mut self, kind: &'static str, outcome: impl Into<String>) {
        *self.stats.by.entry((kind, outcome.into())).or_default() += 1;
    }

    fn fail(&mut self, kind: &'static str, detail: String) {
        self.stats.fail(self.t0.elapsed(), kind, detail);
    }

    fn file(&self, i: usize) -> &SiteFile {
        &self.site.files[i]
    }

    /// A file index: `big` in a hundred from the 8 MiB ones, the rest from the others.
    fn pick(&mut self, big_percent: u64) -> usize {
        let big = self.rng.chance(big_percent);
        let choices: Vec<usize> = (0..self.site.files.len())
            .filter(|&i| (self.site.files[i].base >= 1 << 20) == big)
            .collect();
        choices[self.rng.below(choices.len() as u64) as usize]
    }

    fn pick_big(&mut self) -> usize {
        self.pick(100)
    }

    fn connect(&mut self, kind: &'static str) -> Option<Conn> {
        match Conn::open(self.addr) {
            Ok(c) => Some(c),
            Err(e) => {
                self.count(kind, "connect error");
                self.fail(kind, format!("cannot connect: {e}"));
                thread::sleep(Duration::from_millis(100));
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// One request and its checks, shared by most client kinds.

/// A request for a file (or a missing path), and what it asks.
struct Ask {
    /// `None`: a path that does not exist.
    file: Option<usize>,
    head: bool,
    ranges: Vec<Spec>,
    close: bool,
    /// Change count of the file when the request went out.
    c0: u64,
    /// When the request went out, since the site's epoch.
    sent: Duration,
}

impl Ask {
    fn new(ctx: &Ctx, file: Option<usize>) -> Ask {
        Ask {
            file,
            head: false,
            ranges: Vec::new(),
            close: false,
            c0: file.map_or(0, |i| ctx.file(i).changes.load(Ordering::SeqCst)),
            sent: ctx.site.epoch.elapsed(),
        }
    }

    fn bytes(&self, ctx: &Ctx) -> Vec<u8> {
        let path = match self.file {
            Some(i) => ctx.file(i).url.clone(),
            None => "/missing/nothing-here.bin".to_string(),
        };
        let mut r = format!(
            "{} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: soak\r\n",
            if self.head { "HEAD" } else { "GET" }
        );
        if !self.ranges.is_empty() {
            let specs: Vec<String> = self.ranges.iter().map(|s| s.text()).collect();
            let _ = write!(r, "Range: bytes={}\r\n", specs.join(","));
        }
        if self.close {
            r.push_str("Connection: close\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    fn describe(&self, ctx: &Ctx) -> String {
        let path = self
            .file
            .map_or("/missing/nothing-here.bin", |i| &ctx.file(i).url);
        let specs: Vec<String> = self.ranges.iter().map(|s| s.text()).collect();
        format!(
            "{} {path}{}",
            if self.head { "HEAD" } else { "GET" },
            if specs.is_empty() {
                String::new()
            } else {
                format!(" Range: bytes={}", specs.join(","))
            }
        )
    }
}

/// Random range specs for a file whose shortest version has `len` bytes.
fn random_ranges(rng: &mut Rng, len: u64, multi: bool) -> Vec<Spec> {
    let n = if multi { 2 + rng.below(5) } else { 1 };
    (0..n)
        .map(|_| {
            let a = rng.below(len);
            let span = if rng.chance(50) {
                1 + rng.below(64)
            } else {
                1 + rng.below(len / 4 + 1)
            };
            match rng.below(6) {
                0 => Spec::From(len - 1 - rng.below(len.min(4096))),
                1 => Spec::Suffix(1 + rng.below(len.min(4096))),
                _ => Spec::FromTo(a, (a + span - 1).min(len + 10)),
            }
        })
        .collect()
}

/// Whether the connection may carry another request after an exchange.
#[derive(PartialEq, Eq)]
enum Next {
    /// The answer was complete and the connection stays open.
    Again,
    /// The answer was complete and said `Connection: close`.
    Closed,
    /// No complete answer (cut, stopped, or a failure already recorded).
    Broken,
}

/// Reads and checks the response to `ask` on `conn` at `pace`.
fn exchange(ctx: &mut Ctx, kind: &'static str, conn: &mut Conn, ask: &Ask, pace: Pace) -> Next {
    let head = match conn.head() {
        Ok(h) => h,
        Err(e) => {
            ctx.count(kind, "no response");
            ctx.fail(kind, format!("{}: {e}", ask.describe(ctx)));
            return Next::Broken;
        }
    };
    ctx.count(kind, head.status.to_string());
    let next = if head.closes() {
        Next::Closed
    } else {
        Next::Again
    };
    let has_body = !ask.head && head.status != 304 && head.status >= 200;
    let body = match (has_body, head.content_length()) {
        (false, _) => Body::Complete(Vec::new()),
        (true, Some(n)) => conn.body(n, pace, &ctx.stop.clone()),
        (true, None) => {
            ctx.fail(
                kind,
                format!(
                    "{}: {} without Content-Length",
                    ask.describe(ctx),
                    head.status
                ),
            );
            return Next::Broken;
        }
    };
    let body = match body {
        Body::Complete(b) => b,
        Body::Stopped => {
            ctx.count(kind, "stopped");
            return Next::Broken;
        }
        Body::Cut(got, why) => {
            cut_body(ctx, kind, ask, &head, &got, &why);
            return Next::Broken;
        }
    };
    if let Err(e) = check_answer(ctx, ask, &head, &body) {
        ctx.fail(
            kind,
            format!("{} → {}: {e}", ask.describe(ctx), head.status),
        );
    }
    next
}

/// A body that ended before its Content-Length: allowed only for a file changed in place
/// during the request; its bytes must still be right.
fn cut_body(ctx: &mut Ctx, kind: &'static str, ask: &Ask, head: &Head, got: &[u8], why: &str) {
    ctx.count(kind, "cut");
    let Some(i) = ask.file else {
        ctx.fail(kind, format!("{}: body cut ({why})", ask.describe(ctx)));
        return;
    };
    let site = Arc::clone(&ctx.site);
    let f = &site.files[i];
    if !f.changed_since(ask.c0) {
        ctx.fail(
            kind,
            format!(
                "{} → {}: body cut after {} of {:?} bytes ({why}) though the file did not change",
                ask.describe(ctx),
                head.status,
                got.len(),
                head.content_length()
            ),
        );
        return;
    }
    *ctx.stats.cuts.entry(f.url.clone()).or_default() += 1;
    // The bytes before the cut: a whole 200's start at 0, a single range's at its start.
    let start = match head.status {
        200 => Some(0),
        206 => head
            .get("content-range")
            .and_then(content_range)
            .map(|r| r.0),
        _ => None,
    };
    if let Some(start) = start {
        if let Err(e) = site.verify(f, &[(start, got)], None) {
            ctx.fail(kind, format!("{} (cut): {e}", ask.describe(ctx)));
        }
        ctx.stats.bytes_partial += got.len() as u64;
    }
}

/// Checks a complete response to `ask`.
fn check_answer(ctx: &mut Ctx, ask: &Ask, head: &Head, body: &[u8]) -> Result<(), String> {
    let Some(i) = ask.file else {
        return match head.status {
            404 => Ok(()),
            s => Err(format!("expected 404, got {s}")),
        };
    };
    let site = Arc::clone(&ctx.site);
    let f = &site.files[i];
    let moved = |total: u64| f.may_show_change(ask.c0, ask.sent, total);
    let record = |ctx: &mut Ctx, checked: Checked, bytes: u64, total: u64| {
        ctx.stats.bytes_complete += bytes;
        ctx.stats.bodies_complete += 1;
        if let Checked::Snapshot = checked {
            ctx.stats.snapshots += 1;
            if !moved(total) {
                return Err("shorter than the file, which did not change".to_string());
            }
        }
        Ok(())
    };
    if head.status >= 500 {
        return Err(format!("server error, body {}", shown(body)));
    }
    if head.get("etag").is_none() && matches!(head.status, 200 | 206) {
        return Err("no ETag".into());
    }
    if ask.head {
        if head.status != 200 {
            return Err("HEAD must get 200".into());
        }
        let len = head.content_length().ok_or("HEAD without Content-Length")?;
        let lens = f.versions.read().unwrap().iter().any(|&(_, l)| l == len);
        return match (lens, f.kind) {
            (true, _) => Ok(()),
            (false, Kind::Truncated) if moved(len) && len < f.base => Ok(()),
            _ => Err(format!("HEAD Content-Length {len} is no version's length")),
        };
    }
    if ask.ranges.is_empty() {
        if head.status != 200 {
            return Err("expected 200".into());
        }
        let checked = site.verify(f, &[(0, body)], Some(body.len() as u64))?;
        return record(ctx, checked, body.len() as u64, body.len() as u64);
    }
    // A range request: the answer's own total says which length the server saw.
    let total = match head.status {
        200 => body.len() as u64,
        206 | 416 => {
            let cr = head.get("content-range");
            match (
                cr.and_then(content_range),
                cr.and_then(|v| v.strip_prefix("bytes */")),
            ) {
                (Some((_, _, t)), _) => t,
                (None, Some(t)) => t.parse().map_err(|_| "bad Content-Range")?,
                (None, None) => multipart_total(head, body)?,
            }
        }
        s => return Err(format!("unexpected status {s} for a range request")),
    };
    let expected = expected_ranges(&ask.ranges, total);
    match (head.status, expected) {
        (416, None) => {
            let lens = f.versions.read().unwrap().iter().any(|&(_, l)| l == total);
            if lens || (f.kind == Kind::Truncated && moved(total)) {
                Ok(())
            } else {
                Err(format!("416 for length {total}, no version's length"))
            }
        }
        (200, Some(v)) if v.is_empty() => {
            let checked = site.verify(f, &[(0, body)], Some(total))?;
            record(ctx, checked, body.len() as u64, total)
        }
        (206, Some(want)) if want.len() == 1 => {
            let (a, b, _) = head
                .get("content-range")
                .and_then(content_range)
                .ok_or("206 without Content-Range")?;
            if (a, b) != want[0] || body.len() as u64 != b - a + 1 {
                return Err(format!(
                    "got {a}-{b} ({} bytes), expected {:?} of {total}",
                    body.len(),
                    want[0]
                ));
            }
            let checked = site.verify(f, &[(a, body)], Some(total))?;
            record(ctx, checked, body.len() as u64, total)
        }
        (206, Some(want)) if want.len() > 1 => {
            let ctype = head.get("content-type").unwrap_or_default();
            let boundary = ctype
                .strip_prefix("multipart/byteranges; boundary=")
                .ok_or_else(|| format!("Content-Type {ctype:?}"))?;
            let parts = parse_multipart(body, boundary)?;
            let got: Vec<(u64, u64)> = parts.iter().map(|p| (p.0, p.1)).collect();
            if got != want || parts.iter().any(|p| p.2 != total) {
                return Err(format!("parts {got:?} of {total}, expected {want:?}"));
            }
            let slices: Vec<(u64, &[u8])> =
                parts.iter().map(|p| (p.0, &body[p.3.clone()])).collect();
            let checked = site.verify(f, &slices, Some(total))?;
            let bytes = slices.iter().map(|(_, d)| d.len() as u64).sum();
            record(ctx, checked, bytes, total)
        }
        (s, want) => Err(format!(
            "status {s} but for length {total} expected {want:?}"
        )),
    }
}

/// The total length claimed by the first part of a multipart body.
fn multipart_total(head: &Head, body: &[u8]) -> Result<u64, String> {
    let ctype = head.get("content-type").unwrap_or_default();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .ok_or_else(|| format!("206 without Content-Range, Content-Type {ctype:?}"))?;
    let parts = parse_multipart(body, boundary)?;
    parts
        .first()
        .map(|p| p.2)
        .ok_or_else(|| "multipart without parts".to_string())
}

// ---------------------------------------------------------------------------------------
// The client kinds. Each function is one session (one connection, usually).

/// Keep-alive: up to 200 GETs of random files (2% of them 8 MiB, 5% missing) on one
/// connection, sequentially, while the server keeps it open.
fn keep_alive(ctx: &mut Ctx) {
    const KIND: &str = "keep-alive GET";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    for _ in 0..1 + ctx.rng.below(200) {
        if ctx.stopped() {
            return;
        }
        let file = if ctx.rng.chance(5) {
            None
        } else {
            Some(ctx.pick(2))
        };
        let ask = Ask::new(ctx, file);
        if let Err(e) = conn.send(&ask.bytes(ctx)) {
            ctx.count(KIND, "send error");
            ctx.fail(
                KIND,
                format!(
                    "{}: send failed on a kept-alive connection: {e}",
                    ask.describe(ctx)
                ),
            );
            return;
        }
        if exchange(ctx, KIND, &mut conn, &ask, FAST) != Next::Again {
            return;
        }
        thread::sleep(PAUSE);
    }
}

/// Pipelined bursts: 2 to 16 requests (GET, HEAD, ranges, missing paths) in one write, the
/// answers read in order; the last one sometimes asks to close.
fn pipelined(ctx: &mut Ctx) {
    const KIND: &str = "pipelined";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    for _ in 0..1 + ctx.rng.below(10) {
        let n = 2 + ctx.rng.below(15) as usize;
        let mut asks = Vec::with_capacity(n);
        for k in 0..n {
            let file = if ctx.rng.chance(5) {
                None
            } else {
                Some(ctx.pick(0))
            };
            let mut ask = Ask::new(ctx, file);
            ask.head = ctx.rng.chance(20);
            if let Some(i) = file.filter(|_| !ask.head) {
                if ctx.rng.chance(20) {
                    let multi = ctx.rng.chance(30);
                    let base = ctx.file(i).base;
                    ask.ranges = random_ranges(&mut ctx.rng, base, multi);
                }
            }
            ask.close = k == n - 1 && ctx.rng.chance(30);
            asks.push(ask);
        }
        let burst: Vec<u8> = asks.iter().flat_map(|a| a.bytes(ctx)).collect();
        if let Err(e) = conn.send(&burst) {
            ctx.count(KIND, "send error");
            ctx.fail(KIND, format!("burst of {n}: send failed: {e}"));
            return;
        }
        for (k, ask) in asks.iter().enumerate() {
            if exchange(ctx, KIND, &mut conn, ask, FAST) != Next::Again {
                // The server may close after any answer it marks `Connection: close`
                // (adaptive keep-alive, the request cap); the rest go unanswered.
                for _ in k + 1..n {
                    ctx.count(KIND, "unanswered after close");
                }
                return;
            }
        }
        thread::sleep(PAUSE * 4); // a burst is up to 16 requests
    }
}

/// Byte ranges: single (`a-b`, `a-`, `-n`) and multiple (2 to 6, overlapping or not) on
/// every kind of file, on one keep-alive connection.
fn ranges(ctx: &mut Ctx) {
    let Some(mut conn) = ctx.connect("ranges") else {
        return;
    };
    for _ in 0..1 + ctx.rng.below(100) {
        if ctx.stopped() {
            return;
        }
        let i = ctx.pick(20);
        let mut ask = Ask::new(ctx, Some(i));
        let multi = ctx.rng.chance(50);
        let base = ctx.file(i).base;
        ask.ranges = random_ranges(&mut ctx.rng, base, multi);
        let kind = if multi {
            "ranges (multiple)"
        } else {
            "ranges (single)"
        };
        if conn.send(&ask.bytes(ctx)).is_err()
            || exchange(ctx, kind, &mut conn, &ask, FAST) != Next::Again
        {
            return;
        }
        thread::sleep(PAUSE);
    }
}

/// Resets: a GET of a large file dropped after a random part of its body (the unread bytes
/// make the kernel send RST), sometimes before any of it. The bytes that came are checked.
fn reset(ctx: &mut Ctx) {
    const KIND: &str = "reset mid-body";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    let i = if ctx.rng.chance(70) {
        ctx.pick_big()
    } else {
        ctx.pick(0)
    };
    let ask = Ask::new(ctx, Some(i));
    if conn.send(&ask.bytes(ctx)).is_err() {
        ctx.fail(KIND, "send failed".into());
        return;
    }
    if ctx.rng.chance(10) {
        ctx.count(KIND, "dropped before the answer");
        return;
    }
    let head = match conn.head() {
        Ok(h) => h,
        Err(e) => {
            ctx.count(KIND, "no response");
            ctx.fail(KIND, format!("{}: {e}", ask.describe(ctx)));
            return;
        }
    };
    let len = head.content_length().unwrap_or(0);
    let keep = ctx.rng.below(len.max(1));
    match conn.body(keep, FAST, &ctx.stop.clone()) {
        Body::Complete(got) | Body::Cut(got, _) => {
            ctx.count(KIND, format!("{} dropped", head.status));
            let site = Arc::clone(&ctx.site);
            if head.status == 200 {
                if let Err(e) = site.verify(&site.files[i], &[(0, &got)], None) {
                    ctx.fail(
                        KIND,
                        format!("{} (before the reset): {e}", ask.describe(ctx)),
                    );
                }
                ctx.stats.bytes_partial += got.len() as u64;
            } else {
                ctx.fail(
                    KIND,
                    format!("{}: status {}", ask.describe(ctx), head.status),
                );
            }
        }
        Body::Stopped => {}
    }
    drop(conn); // with unread bytes in the socket: RST
    thread::sleep(PAUSE * 10); // each one moves up to 8 MiB
}

/// Slow readers: a whole 8 MiB file read 16 KiB at a time with 5-30 ms pauses (0.5 to 3
/// MB/s), checked byte for byte.
fn slow_reader(ctx: &mut Ctx) {
    const KIND: &str = "slow reader";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    let i = ctx.pick_big();
    let mut ask = Ask::new(ctx, Some(i));
    ask.close = true;
    if conn.send(&ask.bytes(ctx)).is_err() {
        ctx.fail(KIND, "send failed".into());
        return;
    }
    let pace = Pace {
        piece: 16 * 1024,
        pause: Duration::from_millis(5 + ctx.rng.below(26)),
    };
    exchange(ctx, KIND, &mut conn, &ask, pace);
}

/// Slowloris: a head sent a byte at a time. Half of them finish within half the header
/// timeout and must get their file; the others never finish and must get 408 at the header
/// timeout (not before), then the close.
fn slowloris(ctx: &mut Ctx) {
    const KIND: &str = "slowloris";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    let i = ctx.pick(0);
    let finish = ctx.rng.chance(50);
    let mut ask = Ask::new(ctx, Some(i));
    ask.close = true;
    let bytes = if finish {
        ask.bytes(ctx)
    } else {
        format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ",
            ctx.file(i).url
        )
        .into_bytes()
    };
    let per_byte = if finish {
        HEADER_TIMEOUT / 2 / bytes.len() as u32
    } else {
        Duration::from_millis(300)
    };
    let started = Instant::now();
    let _ = conn
        .s
        .set_read_timeout(Some(per_byte.max(Duration::from_millis(1))));
    let mut sent = 0usize;
    loop {
        if ctx.stopped() {
            ctx.count(KIND, "stopped");
            return;
        }
        let byte = bytes.get(sent).copied().unwrap_or(b'a');
        if finish && sent == bytes.len() {
            break;
        }
        if conn.s.write_all(&[byte]).is_err() {
            break; // the server closed: read what it said
        }
        sent += 1;
        match conn.more(4096) {
            Ok(_) => break,
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
    let _ = conn.s.set_read_timeout(Some(IO_TIMEOUT));
    if finish {
        let kind = "slowloris (finishes)";
        exchange(ctx, kind, &mut conn, &ask, FAST);
        return;
    }
    let kind = "slowloris (endless)";
    let took = started.elapsed();
    match conn.head() {
        Ok(h) => {
            ctx.count(kind, h.status.to_string());
            if h.status != 408 {
                ctx.fail(
                    kind,
                    format!("expected 408, got {} after {took:?}", h.status),
                );
            } else if took + Duration::from_millis(500) < HEADER_TIMEOUT {
                ctx.fail(
                    kind,
                    format!("408 after {took:?}, before the header timeout"),
                );
            }
        }
        Err(e) => {
            // The 408 can be lost when our next drip byte met the closed socket (RST).
            let near = took + Duration::from_secs(1) >= HEADER_TIMEOUT;
            ctx.count(
                kind,
                if near {
                    "closed at the timeout"
                } else {
                    "closed early"
                },
            );
            if !near {
                ctx.fail(
                    kind,
                    format!("{e} after {took:?}, before the header timeout"),
                );
            }
        }
    }
}

/// Garbage: random bytes, random text, and malformed heads of many kinds. The answer must
/// be a 4xx, 501 or 505 (or no answer and a close); never another 5xx, never a hang.
fn garbage(ctx: &mut Ctx) {
    const KIND: &str = "garbage";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    let rng = &mut ctx.rng;
    let valid = b"GET /s/small.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
    let bytes: Vec<u8> = match rng.below(10) {
        0 => (0..1 + rng.below(512)).map(|_| rng.next() as u8).collect(),
        1 => (0..1 + rng.below(2048))
            .map(|_| match rng.below(20) {
                0 => b'\n',
                1 => b'\r',
                _ => 0x20 + rng.below(95) as u8,
            })
            .collect(),
        2 => {
            let mut v = valid.to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(v.len() as u64) as usize;
                v[at] = rng.next() as u8;
            }
            v
        }
        3 => format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(10_000)
        )
        .into_bytes(),
        4 => format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000)).into_bytes(),
        5 => b"GET / HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
        6 => b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
        7 => b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"
            .to_vec(),
        8 => b"GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n".to_vec(),
        _ => b"GET /\x00/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    };
    let half_close = rng.chance(80);
    let _ = conn.s.set_read_timeout(Some(HEADER_TIMEOUT + IO_TIMEOUT));
    if conn.send(&bytes).is_err() {
        ctx.count(KIND, "refused early");
        return;
    }
    if half_close {
        let _ = conn.s.shutdown(Shutdown::Write);
    }
    match conn.head() {
        Ok(h) => {
            ctx.count(KIND, h.status.to_string());
            if h.status >= 500 && !matches!(h.status, 501 | 505) {
                ctx.fail(KIND, format!("{} for {}", h.status, shown(&bytes)));
            }
        }
        Err(RecvErr::Closed) | Err(RecvErr::Io(_)) => ctx.count(KIND, "closed"),
        Err(e) => {
            ctx.count(KIND, "no response");
            ctx.fail(KIND, format!("{e} for {}", shown(&bytes)));
        }
    }
    thread::sleep(Duration::from_millis(5));
}

/// Half-closed: one to three requests, then shutdown(Write), then read every answer; the
/// server must answer them all and then close.
fn half_closed(ctx: &mut Ctx) {
    const KIND: &str = "half-closed";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    let n = 1 + ctx.rng.below(3);
    let asks: Vec<Ask> = (0..n)
        .map(|_| {
            let i = ctx.pick(5);
            Ask::new(ctx, Some(i))
        })
        .collect();
    let burst: Vec<u8> = asks.iter().flat_map(|a| a.bytes(ctx)).collect();
    if conn.send(&burst).is_err() || conn.s.shutdown(Shutdown::Write).is_err() {
        ctx.fail(KIND, "send failed".into());
        return;
    }
    for (k, ask) in asks.iter().enumerate() {
        if exchange(ctx, KIND, &mut conn, ask, FAST) != Next::Again {
            // Announced (adaptive keep-alive) or after a cut the file's change allowed: the
            // server closes by itself, the FIN plays no part.
            for _ in k + 1..asks.len() {
                ctx.count(KIND, "unanswered after close");
            }
            return;
        }
    }
    // The client's FIN is already there: the close should follow the last answer at once.
    // The first late close is waited out to measure it; later ones only for 3 s.
    static MEASURED: AtomicBool = AtomicBool::new(false);
    let answered = Instant::now();
    let wait = if MEASURED.load(Ordering::SeqCst) {
        Duration::from_secs(3)
    } else {
        KEEPALIVE_TIMEOUT + IO_TIMEOUT
    };
    let _ = conn.s.set_read_timeout(Some(wait));
    let closed = conn.closes_quietly();
    let took = answered.elapsed();
    match closed {
        Err(e) => {
            ctx.count(KIND, "close late");
            ctx.fail(
                KIND,
                format!("{n} request(s) then FIN: all answered, then {e} ({took:.1?})"),
            );
        }
        Ok(()) if took > Duration::from_secs(2) => {
            MEASURED.store(true, Ordering::SeqCst);
            ctx.count(KIND, "close late");
            ctx.fail(
                KIND,
                format!(
                    "{n} request(s) then FIN: all answered, but the server closed only {:.1} s later",
                    took.as_secs_f64()
                ),
            );
        }
        Ok(()) => {}
    }
    thread::sleep(PAUSE);
}

/// HEAD: HEAD then GET of the same file, alternately, on one connection (a HEAD answer with
/// a body would break the framing of the next answer).
fn heads(ctx: &mut Ctx) {
    const KIND: &str = "HEAD";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    for _ in 0..1 + ctx.rng.below(100) {
        if ctx.stopped() {
            return;
        }
        let i = ctx.pick(10);
        let mut ask = Ask::new(ctx, Some(i));
        ask.head = true;
        if conn.send(&ask.bytes(ctx)).is_err()
            || exchange(ctx, KIND, &mut conn, &ask, FAST) != Next::Again
        {
            return;
        }
        let ask = Ask::new(ctx, Some(i));
        if conn.send(&ask.bytes(ctx)).is_err()
            || exchange(ctx, "GET after HEAD", &mut conn, &ask, FAST) != Next::Again
        {
            return;
        }
        thread::sleep(PAUSE);
    }
}

/// Revalidation: GET a file, then If-None-Match with its ETag, then If-Modified-Since with
/// its Last-Modified (304, or 200 with the new version for a file that changed), then a
/// non-matching If-None-Match with a matching If-Modified-Since (must be 200: RFC 9110
/// §13.2.2 evaluates If-None-Match first and then ignores If-Modified-Since).
fn revalidate(ctx: &mut Ctx) {
    const KIND: &str = "revalidate";
    let Some(mut conn) = ctx.connect(KIND) else {
        return;
    };
    for _ in 0..1 + ctx.rng.below(50) {
        if ctx.stopped() {
            return;
        }
        let i = ctx.pick(3);
        let ask = Ask::new(ctx, Some(i));
        if conn.send(&ask.bytes(ctx)).is_err() {
            return;
        }
        let Some((etag, modified)) = get_validators(ctx, &mut conn, &ask) else {
            return;
        };
        let url = ctx.file(i).url.clone();
        let stable = ctx.file(i).kind == Kind::Stable;
        for (label, field, must) in [
            ("If-None-Match", format!("If-None-Match: {etag}\r\n"), None),
            (
                "If-Modified-Since",
                format!("If-Modified-Since: {modified}\r\n"),
                None,
            ),
            (
                "If-None-Match (other) + If-Modified-Since",
                format!("If-None-Match: \"soak-other\"\r\nIf-Modified-Since: {modified}\r\n"),
                Some(200),
            ),
        ] {
            let ask = Ask::new(ctx, Some(i));
            let req = format!("GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n{field}\r\n");
            if conn.send(req.as_bytes()).is_err() {
                return;
            }
            let head = match conn.head() {
                Ok(h) => h,
                Err(e) => {
                    ctx.fail(KIND, format!("{label} {url}: {e}"));
                    return;
                }
            };
            ctx.count(KIND, format!("{label} {}", head.status));
            let want = must.or(if stable { Some(304) } else { None });
            let ok = match (head.status, want) {
                (s, Some(w)) => s == w,
                (s, None) => s == 304 || s == 200,
            };
            if !ok {
                ctx.fail(
                    KIND,
                    format!("{label} {url}: got {}, expected {want:?}", head.status),
                );
            }
            if head.status == 304 {
                if head.content_length().is_some_and(|n| n > 0) {
                    ctx.fail(KIND, format!("{label} {url}: 304 with a body"));
                    return;
                }
                if label == "If-None-Match" && head.get("etag") != Some(etag.as_str()) {
                    ctx.fail(
                        KIND,
                        format!(
                            "{label} {url}: 304 with ETag {:?}, sent {etag}",
                            head.get("etag")
                        ),
                    );
                }
            } else if head.status == 200 {
                if label == "If-None-Match" && head.get("etag") == Some(etag.as_str()) {
                    ctx.fail(
                        KIND,
                        format!("{label} {url}: 200 with the ETag that was sent ({etag})"),
                    );
                }
                let n = head.content_length().unwrap_or(0);
                match conn.body(n, FAST, &ctx.stop.clone()) {
                    Body::Complete(body) => {
                        if let Err(e) = check_answer(ctx, &ask, &head, &body) {
                            ctx.fail(KIND, format!("{label} {url} → 200: {e}"));
                        }
                    }
                    Body::Cut(got, why) => {
                        cut_body(ctx, KIND, &ask, &head, &got, &why);
                        return;
                    }
                    Body::Stopped => return,
                }
            } else {
                return;
            }
            if head.closes() {
                return;
            }
        }
        thread::sleep(PAUSE);
    }
}

/// Reads a GET's answer, checks it, and returns its ETag and Last-Modified.
fn get_validators(ctx: &mut Ctx, conn: &mut Conn, ask: &Ask) -> Option<(String, String)> {
    const KIND: &str = "revalidate";
    let head = match conn.head() {
        Ok(h) => h,
        Err(e) => {
            ctx.fail(KIND, format!("{}: {e}", ask.describe(ctx)));
            return None;
        }
    };
    ctx.count(KIND, format!("plain {}", head.status));
    let n = head.content_length()?;
    match conn.body(n, FAST, &ctx.stop.clone()) {
        Body::Complete(body) => {
            if let Err(e) = check_answer(ctx, ask, &head, &body) {
                ctx.fail(
                    KIND,
                    format!("{} → {}: {e}", ask.describe(ctx), head.status),
                );
            }
        }
        Body::Cut(got, why) => {
            cut_body(ctx, KIND, ask, &head, &got, &why);
            return None;
        }
        Body::Stopped => return None,
    }
    if head.status != 200 || head.closes() {
        return None;
    }
    Some((
        head.get("etag")?.to_string(),
        head.get("last-modified")?.to_string(),
    ))
}

// ---------------------------------------------------------------------------------------
// Running: the server, the phases, the resources.

/// A small, fast generator (splitmix64); each thread gets its own.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One session of a client kind (one connection, usually).
type Session = fn(&mut Ctx);

/// The client kinds and how many threads run each at once (22 connections at most).
const CLIENTS: &[(&str, Session, usize)] = &[
    ("keepalive", keep_alive, 3),
    ("pipelined", pipelined, 2),
    ("ranges", ranges, 2),
    ("reset", reset, 2),
    ("slowreader", slow_reader, 3),
    ("slowloris", slowloris, 6),
    ("garbage", garbage, 1),
    ("halfclosed", half_closed, 1),
    ("head", heads, 1),
    ("revalidate", revalidate, 1),
];

/// Runs every client kind and both mutators for `length`, then stops them and adds up their
/// statistics (a mutator's I/O error is a failure of the soak itself).
fn phase(site: &Arc<Site>, addr: SocketAddr, length: Duration, t0: Instant, seed: u64) -> Stats {
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    let mut n = 0u64;
    for &(name, session, count) in CLIENTS {
        for k in 0..count {
            n += 1;
            let mut ctx = Ctx {
                site: Arc::clone(site),
                addr,
                stop: Arc::clone(&stop),
                t0,
                rng: Rng(mix(seed ^ n)),
                stats: Stats::default(),
            };
            let handle = thread::Builder::new()
                .name(format!("soak-{name}-{k}"))
                .spawn(move || {
                    while !ctx.stopped() {
                        session(&mut ctx);
                    }
                    ctx.stats
                })
                .expect("spawn a client thread");
            clients.push(handle);
        }
    }
    let mutators: Vec<_> = [("replacer", 0u64), ("truncator", 1)]
        .into_iter()
        .map(|(name, which)| {
            let (site, stop) = (Arc::clone(site), Arc::clone(&stop));
            let mut rng = Rng(mix(seed ^ (1000 + which)));
            thread::Builder::new()
                .name(format!("soak-{name}"))
                .spawn(move || match which {
                    0 => site.replacer(&stop, &mut rng),
                    _ => site.truncator(&stop, &mut rng),
                })
                .expect("spawn a mutator thread")
        })
        .collect();
    thread::sleep(length);
    stop.store(true, Ordering::SeqCst);
    let mut stats = Stats::default();
    for c in clients {
        match c.join() {
            Ok(s) => stats.add(s),
            Err(_) => stats.fail(t0.elapsed(), "soak", "a client thread panicked".into()),
        }
    }
    for m in mutators {
        if let Ok(Err(e)) | Err(e) = m.join().map_err(|_| io::Error::other("panicked")) {
            stats.fail(t0.elapsed(), "soak", format!("a file mutator failed: {e}"));
        }
    }
    stats
}

/// Most zero-copy snapshots the server keeps (poolserve's `config::SNAPSHOT_MAX_FILES`): a
/// cache of sealed memfds, bounded, and not a leak.
const SNAPSHOT_MAX_FILES: usize = 64;

/// The server's descriptors (zero-copy snapshots apart), threads, resident and peak resident
/// memory (KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Sample {
    fds: usize,
    snapshots: usize,
    threads: usize,
    rss_kib: u64,
    hwm_kib: u64,
}

fn sample(pid: u32) -> io::Result<Sample> {
    let count = |dir: &str| fs::read_dir(format!("/proc/{pid}/{dir}")).map(|d| d.count());
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let snapshots = fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            target
                .to_string_lossy()
                .starts_with("/memfd:poolserve-snapshot")
        })
        .count();
    Ok(Sample {
        fds: count("fd")?.saturating_sub(snapshots),
        snapshots,
        threads: count("task")?,
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// Polls until the descriptors and threads are at most `target`'s (if any) and have held
/// still for [`SETTLE_QUIET`], or [`SETTLE_LIMIT`] passes; returns the last sample and the
/// wait.
fn settle(pid: u32, target: Option<Sample>) -> io::Result<(Sample, Duration)> {
    let t = Instant::now();
    let mut last = sample(pid)?;
    let mut since = Instant::now();
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = sample(pid)?;
        if (now.fds, now.threads) != (last.fds, last.threads) {
            since = Instant::now();
        }
        last = now;
        let low = target.is_none_or(|t| last.fds <= t.fds && last.threads <= t.threads);
        if (low && since.elapsed() >= SETTLE_QUIET) || t.elapsed() >= SETTLE_LIMIT {
            return Ok((last, t.elapsed()));
        }
    }
}

/// The server process, killed if the soak ends without stopping it.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &Path, root: &Path, log: &Path) -> Result<Server, String> {
    let err = File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = Command::new(bin)
        .args(["--root", root.to_str().ok_or("root path not UTF-8")?])
        .args(["--addr", "127.0.0.1:0", "--access-log", "off"])
        .args(["--header-timeout", &HEADER_TIMEOUT.as_secs().to_string()])
        .args([
            "--keepalive-timeout",
            &KEEPALIVE_TIMEOUT.as_secs().to_string(),
        ])
        .args(["--cache-valid", &CACHE_VALID.as_secs().to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    // The first stdout line carries the address; later lines (there should be none with the
    // access log off) are drained so the server can never block on a full pipe.
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    thread::Builder::new()
        .name("soak-server-stdout".into())
        .spawn(move || {
            let mut lines = BufReader::new(out).lines();
            let _ = tx.send(lines.next());
            lines.for_each(drop);
        })
        .map_err(|e| e.to_string())?;
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        log: log.to_path_buf(),
    };
    let line = match rx.recv_timeout(IO_TIMEOUT) {
        Ok(Some(Ok(line))) => line,
        _ => {
            return Err(format!(
                "no address line from the server; see {}",
                log.display()
            ))
        }
    };
    server.addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    if !server.addr.ip().is_loopback() {
        return Err(format!(
            "the server listens on {}, not loopback",
            server.addr
        ));
    }
    Ok(server)
}

/// SIGTERM (a graceful drain), then the exit status within a bound.
fn stop_server(server: &mut Server) -> Result<(), String> {
    let pid = server.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    if !sent.is_ok_and(|s| s.success()) {
        return Err("cannot send SIGTERM to the server".into());
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("the server exited with {status} after SIGTERM"))
            };
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err("the server did not exit within 30 s of SIGTERM".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn run(opts: &Opts) -> i32 {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let base = std::env::temp_dir().join(format!("poolserve-soak-{}", std::process::id()));
    let root = base.join("root");
    let result = soak(opts, &base, &root, seed);
    let _ = fs::remove_dir_all(&base);
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("soak: {e}");
            1
        }
    }
}

/// The whole soak; `Ok(passed)`, or `Err` when it could not run.
fn soak(opts: &Opts, base: &Path, root: &Path, seed: u64) -> Result<bool, String> {
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let site = Arc::new(Site::create(root).map_err(|e| format!("cannot write the site: {e}"))?);
    let mut server = start_server(&opts.bin, root, &base.join("server.log"))?;
    let pid = server.child.id();
    let addr = server.addr;
    let io = |e: io::Error| format!("cannot read /proc/{pid}: {e}");
    // Idle: after one request (the pool and keeper are up) the counts hold still.
    let mut probe = Conn::open(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    probe
        .send(b"GET /s/tiny.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .and_then(|()| probe.s.read_to_end(&mut Vec::new()))
        .map_err(|e| format!("first request: {e}"))?;
    drop(probe);
    let (idle, _) = settle(pid, None).map_err(io)?;
    let warm = (opts.duration / 10).clamp(Duration::from_secs(3), Duration::from_secs(10));
    println!(
        "soak: {} s (after a {} s warm-up) against http://{addr}/ ({}, pid {pid}), seed {seed:#x}",
        opts.duration.as_secs(),
        warm.as_secs(),
        opts.bin.display()
    );
    let t0 = Instant::now();
    let mut stats = phase(&site, addr, warm, t0, seed);
    let (start, waited) = settle(pid, Some(idle)).map_err(io)?;
    println!(
        "start: {} descriptors, {} threads, RSS {} (settled in {:.1} s after the warm-up)",
        start.fds,
        start.threads,
        mib(start.rss_kib),
        waited.as_secs_f64()
    );
    let mut problems = Vec::new();
    if start.fds > idle.fds || start.threads > idle.threads {
        problems.push(format!(
            "after the warm-up the server kept {} descriptors and {} threads (idle before it: {} and {})",
            start.fds, start.threads, idle.fds, idle.threads
        ));
    }

    // The soak proper, with a sampler for the peaks.
    let peaks = Arc::new(Mutex::new(start));
    let sampling = Arc::new(AtomicBool::new(true));
    // RSS at every tenth of the run, to tell a leak (steady growth) from an allocator that
    // keeps what it was given (a plateau).
    let trend = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (peaks, sampling) = (Arc::clone(&peaks), Arc::clone(&sampling));
        let trend = Arc::clone(&trend);
        let step = opts.duration / 10;
        thread::Builder::new()
            .name("soak-sampler".into())
            .spawn(move || {
                let mut mark = Instant::now() + step;
                while sampling.load(Ordering::SeqCst) {
                    if let Ok(s) = sample(pid) {
                        let mut p = peaks.lock().unwrap();
                        p.fds = p.fds.max(s.fds);
                        p.snapshots = p.snapshots.max(s.snapshots);
                        p.threads = p.threads.max(s.threads);
                        p.rss_kib = p.rss_kib.max(s.rss_kib);
                        if Instant::now() >= mark {
                            trend.lock().unwrap().push(s.rss_kib);
                            mark += step;
                        }
                    }
                    thread::sleep(Duration::from_millis(250));
                }
            })
            .map_err(|e| e.to_string())?
    };
    let main = phase(&site, addr, opts.duration, t0, mix(seed));
    stats.add(main);
    let (end, waited) = settle(pid, Some(start)).map_err(io)?;
    sampling.store(false, Ordering::SeqCst);
    let _ = sampler.join();
    let peak = *peaks.lock().unwrap();
    let trend: Vec<String> = trend
        .lock()
        .unwrap()
        .iter()
        .map(|&k| format!("{:.1}", k as f64 / 1024.0))
        .collect();

    if peak.snapshots > SNAPSHOT_MAX_FILES {
        problems.push(format!(
            "{} zero-copy snapshots at once, more than the {SNAPSHOT_MAX_FILES} allowed",
            peak.snapshots
        ));
    }
    if (end.fds, end.threads) != (start.fds, start.threads) {
        problems.push(format!(
            "descriptors {} → {}, threads {} → {} (waited {:.1} s for them to settle)",
            start.fds,
            end.fds,
            start.threads,
            end.threads,
            waited.as_secs_f64()
        ));
    }
    if end.rss_kib > start.rss_kib + RSS_TOLERANCE_KIB {
        problems.push(format!(
            "RSS grew from {} to {} (tolerance {})",
            mib(start.rss_kib),
            mib(end.rss_kib),
            mib(RSS_TOLERANCE_KIB)
        ));
    }
    // A clean drain, and a diagnostic log free of bugs.
    if let Err(e) = stop_server(&mut server) {
        problems.push(e);
    }
    let log = fs::read_to_string(&server.log).unwrap_or_default();
    let warns = log.lines().filter(|l| l.contains(" WARN ")).count();
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR ") || l.contains("panicked"))
        .collect();
    for e in errors.iter().take(3) {
        problems.push(format!("server log: {e}"));
    }
    if errors.len() > 3 {
        problems.push(format!(
            "server log: {} more ERROR/panic lines",
            errors.len() - 3
        ));
    }

    report(&site, &stats, start, end, peak, warns, errors.len());
    println!(
        "server RSS at each tenth of the run (MiB): {}",
        trend[..trend.len().min(10)].join(" ")
    );
    let failures = stats.failure_count() + problems.len() as u64;
    let by_kind: Vec<String> = stats
        .failures
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .chain((!problems.is_empty()).then(|| format!("at the end: {}", problems.len())))
        .collect();
    if failures == 0 {
        println!("failures: 0");
    } else {
        println!("failures: {failures} ({})", by_kind.join(", "));
    }
    for (t, kind, detail) in &stats.kept {
        println!("  [{:7.1} s] {kind}: {detail}", t.as_secs_f64());
    }
    for p in &problems {
        println!("  [    end] {p}");
    }
    println!(
        "{}",
        if failures == 0 {
            "soak: PASS"
        } else {
            "soak: FAIL"
        }
    );
    Ok(failures == 0)
}

fn report(
    site: &Site,
    stats: &Stats,
    start: Sample,
    end: Sample,
    peak: Sample,
    warns: usize,
    errors: usize,
) {
    println!("requests by kind and outcome:");
    let mut kinds: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    for ((kind, outcome), n) in &stats.by {
        kinds.entry(kind).or_default().push((outcome.clone(), *n));
    }
    let mut total = 0;
    for (kind, outcomes) in &kinds {
        let sum: u64 = outcomes.iter().map(|(_, n)| n).sum();
        total += sum;
        let list: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}: {n}")).collect();
        println!("  {kind:<28} {sum:>9}  ({})", list.join(", "));
    }
    println!("  {:<28} {total:>9}", "total");
    println!(
        "bytes checked: {} in {} complete bodies, {} more in cut or dropped ones",
        stats.bytes_complete, stats.bodies_complete, stats.bytes_partial
    );
    let cuts: Vec<String> = stats
        .cuts
        .iter()
        .map(|(p, n)| format!("{n} on {p}"))
        .collect();
    println!(
        "cut bodies (file changed in place during the download): {}{}; short 200/206 of a file mid-rewrite: {}",
        stats.cuts.values().sum::<u64>(),
        if cuts.is_empty() {
            String::new()
        } else {
            format!(" ({})", cuts.join(", "))
        },
        stats.snapshots
    );
    println!(
        "file changes: {} replacements by rename ({} versions in all), {} in-place truncations",
        site.replacements.load(Ordering::SeqCst),
        site.next_vid.load(Ordering::SeqCst) - 1,
        site.truncations.load(Ordering::SeqCst)
    );
    println!(
        "server: descriptors {} → {} (peak {}; zero-copy snapshots apart, {} → {}, peak {}), threads {} → {} (peak {}), RSS {} → {} (peak sampled {}, VmHWM {}); log: {warns} WARN, {errors} ERROR",
        start.fds,
        end.fds,
        peak.fds,
        start.snapshots,
        end.snapshots,
        peak.snapshots,
        start.threads,
        end.threads,
        peak.threads,
        mib(start.rss_kib),
        mib(end.rss_kib),
        mib(peak.rss_kib),
        mib(end.hwm_kib)
    );
}
