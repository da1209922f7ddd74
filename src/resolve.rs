//! Maps a request path to a regular file under the document root, safely.
//!
//! This module owns the whole defence between the request target and the file system, in
//! darkhttpd's order: percent-decode exactly once (RFC 3986 §2.1) -> normalize dot segments
//! (RFC 3986 §5.2.4) -> refuse any climb above the root -> refuse hidden names -> join to the
//! canonical root -> stat (directories redirect or serve `index.html`) -> open without blocking
//! -> check the *opened* handle is a regular file -> check the opened file's real path is still
//! inside the root (this is what stops symlinks pointing outside). A directory without
//! `index.html` is a 404, or with `--list-dirs` a [`Directory`], opened and checked the same
//! way, whose entries are read through its descriptor (see `listing::read`). It never writes
//! and never reads file contents: the caller gets an open [`std::fs::File`].

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::encoding::Coding;
use crate::error::HttpError;

/// The file served for a request naming a directory with a trailing slash.
const INDEX_FILE: &str = "index.html";

/// Linux ABI numbers that std does not expose, for the architectures whose values we know
/// (asm-generic `fcntl.h`/`errno.h`, which x86 shares).
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
mod abi {
    /// `O_NONBLOCK`: opening a FIFO for reading with it returns at once instead of waiting for
    /// a writer, so a FIFO swapped in after our `stat` cannot hang a worker; the `fstat` check
    /// then rejects it. Reading a regular file is unaffected by the flag.
    pub const O_NONBLOCK: i32 = 0o4000;
    /// `ELOOP`: a symlink loop under the root is "nothing to serve", not a server failure, and
    /// `io::ErrorKind::FilesystemLoop` is not stable yet.
    pub const ELOOP: Option<i32> = Some(40);
}

/// Elsewhere the values are unknown: no extra open flag (the `stat` check still keeps FIFOs
/// out) and symlink loops fall through to [`HttpError::from_fs`].
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
)))]
mod abi {
    /// No `O_NONBLOCK` value known for this platform.
    pub const O_NONBLOCK: i32 = 0;
    /// No `ELOOP` value known for this platform.
    pub const ELOOP: Option<i32> = None;
}

/// Where `/proc` shows the real path of an open descriptor (Linux); used to check the file
/// actually opened rather than re-resolving its name (no check/use race).
const PROC_FD_DIR: &str = "/proc/self/fd";

/// How paths are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResolveOptions {
    /// Serve dotfiles and files under dot-directories when true (off by default, so `.git/`
    /// and `.env` are never served by accident).
    pub hidden: bool,
    /// The root's `_redirects` and `_headers` are site rules (`--site-rules on`): never
    /// served (404) and never written (403).
    pub site_rules: bool,
    /// A directory without `index.html` is a [`Resolved::Directory`] (`--list-dirs`), not a
    /// 404.
    pub list_dirs: bool,
}

/// A regular file found under the root, already open.
#[derive(Debug)]
pub struct FileInfo {
    /// The file, opened for reading.
    pub file: File,
    /// Canonical path of the file served (inside the root).
    pub path: PathBuf,
    /// Length in bytes, from the opened handle's metadata.
    pub len: u64,
    /// Last modification time, from the opened handle's metadata.
    pub modified: Option<SystemTime>,
    /// Length and change time at open, to tell later whether the file changed under a
    /// response (`outgoing` checks before the last chunk of a zero-copy body).
    pub stamp: FileStamp,
}

/// What tells one version of an open file from a later one: which file it is (device and
/// inode), its length and its modification time, which every write and truncate moves (to
/// the current time; with Linux's multigrain timestamps, 6.13+, a fine-grained one, so two
/// changes in one clock tick are told apart too). Not the ctime, although no call can set it
/// back (a writer could reset mtime with `utimes`): the ctime also moves when the inode's
/// link count does, so a file replaced by rename, the safe way to deploy, would cut every
/// response that had it open (the soak found this, 4 cut bodies in 40 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Device and inode: the file, whatever its path.
    pub id: (u64, u64),
    /// Length in bytes.
    pub len: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    /// The stamp of this metadata.
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            id: (meta.dev(), meta.ino()),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// The stamp of the open file now (one `fstat`).
    pub fn now(file: &File) -> io::Result<FileStamp> {
        file.metadata().map(|m| FileStamp::of(&m))
    }
}

/// What a request path resolves to.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file to serve.
    File(FileInfo),
    /// 301 target: the request path (still percent-encoded, exactly as received) + "/" +
    /// ("?" + query if any). A path starting with `//` or `/\` gets a `/.` prefix so the
    /// Location can never be read as a scheme-relative URL pointing at another host.
    Redirect(String),
    /// A directory without `index.html`, to list (only with [`ResolveOptions::list_dirs`]).
    Directory(Directory),
}

/// A directory under the root, already open: what a listing reads.
#[derive(Debug)]
pub struct Directory {
    /// The directory, opened for reading.
    pub file: File,
    /// Its canonical path (inside the root).
    pub path: PathBuf,
    /// Device and inode, from the opened handle.
    pub id: (u64, u64),
    /// Last modification (an entry added, removed or renamed), from the opened handle.
    pub modified: Option<SystemTime>,
    /// The request path, decoded and normalized, one segment each (for the page's links).
    pub segments: Vec<Vec<u8>>,
}

impl Directory {
    /// The entries of the directory that was opened (through its descriptor, so a path
    /// swapped for a link since cannot change which directory is read).
    pub fn entries(&self) -> io::Result<fs::ReadDir> {
        use std::os::unix::io::AsRawFd;
        let by_descriptor = Path::new(PROC_FD_DIR).join(self.file.as_raw_fd().to_string());
        // Without /proc, by the canonical path checked at open.
        fs::read_dir(by_descriptor).or_else(|_| fs::read_dir(&self.path))
    }
}

/// Resolves `path` (the origin-form path exactly as received: percent-encoded, starting with
/// '/') against `root` (already canonical). `query` is only used to build a redirect.
///
/// Errors: [`HttpError::BadRequest`] for a malformed path, [`HttpError::Traversal`] for a climb
/// above the root, [`HttpError::NotFound`] for anything missing, hidden, outside the root or not
/// a regular file, and whatever [`HttpError::from_fs`] says for other I/O failures.
pub fn resolve(
    root: &Path,
    path: &str,
    query: Option<&str>,
    opts: &ResolveOptions,
) -> Result<Resolved, HttpError> {
    if !path.starts_with('/') {
        return Err(HttpError::BadRequest(
            "request path does not start with '/'",
        ));
    }
    // RFC 9112 §3.2: a request-target has no control characters; refusing them here also
    // guarantees the raw path can be echoed into a Location header safely.
    if has_control(path) || query.is_some_and(has_control) {
        return Err(HttpError::BadRequest("control character in request target"));
    }
    let decoded = percent_decode(path)?;
    let segments = normalize(&decoded)?;
    if refused_names(&segments, opts) || is_rule_file(&segments, opts) {
        return Err(HttpError::NotFound);
    }
    let mut full = root.to_path_buf();
    for segment in &segments {
        full.push(OsStr::from_bytes(segment));
    }

    let meta = fs::metadata(&full).map_err(|e| fs_error(&e))?;
    if meta.is_dir() {
        // A directory link pointing outside the root must not even reveal itself by a 301.
        let real = fs::canonicalize(&full).map_err(|e| fs_error(&e))?;
        if !real.starts_with(root) {
            return Err(HttpError::NotFound);
        }
        if !path.ends_with('/') {
            return Ok(Resolved::Redirect(redirect_location(path, query)));
        }
        let dir = full.clone();
        full.push(INDEX_FILE);
        // The index must exist and be a regular file; without one, a listing or nothing.
        match fs::metadata(&full) {
            Ok(index) if index.is_file() => {}
            Err(e) if opts.list_dirs && e.kind() == io::ErrorKind::NotFound => {
                return open_directory(root, &dir, segments).map(Resolved::Directory);
            }
            Ok(_) => return Err(HttpError::NotFound),
            Err(e) => return Err(fs_error(&e)),
        }
    } else if !meta.is_file() || names_directory(&decoded) {
        // FIFOs, sockets and devices are never opened; `/file.txt/` names a directory that
        // is not there (POSIX gives ENOTDIR for it).
        return Err(HttpError::NotFound);
    }
    open_inside(root, &full).map(Resolved::File)
}

/// Where a PUT or DELETE would act: a file name in an existing directory inside the root.
#[derive(Debug)]
pub struct WriteTarget {
    /// The directory, canonical and inside the root (uploads are staged here, so the final
    /// rename stays on one file system and is atomic).
    pub dir: PathBuf,
    /// The file's name in `dir`.
    pub name: std::ffi::OsString,
    /// `dir` joined with `name`.
    pub path: PathBuf,
    /// Length and mtime of the regular file there now; `None` when there is none.
    pub existing: Option<(u64, Option<SystemTime>)>,
}

/// Resolves `path` for a write with the same decoding, normalization, traversal and
/// hidden-name rules as [`resolve`], then: the parent directory must exist (else
/// [`HttpError::Conflict`]: no implicit mkdir) and lie inside the root (a directory link out
/// is [`HttpError::NotFound`]); the name must not be a directory (Conflict) nor a symlink,
/// FIFO, socket or device ([`HttpError::Forbidden`]: writes never go through a link).
pub fn resolve_write(
    root: &Path,
    path: &str,
    opts: &ResolveOptions,
) -> Result<WriteTarget, HttpError> {
    if !path.starts_with('/') || has_control(path) {
        return Err(HttpError::BadRequest("bad request path for a write"));
    }
    let decoded = percent_decode(path)?;
    let mut segments = normalize(&decoded)?;
    if refused_names(&segments, opts) {
        return Err(HttpError::NotFound);
    }
    if is_rule_file(&segments, opts) {
        return Err(HttpError::Forbidden);
    }
    if names_directory(&decoded) {
        return Err(HttpError::Conflict);
    }
    let Some(name) = segments.pop() else {
        return Err(HttpError::Conflict); // the root itself
    };
    let mut dir = root.to_path_buf();
    for segment in &segments {
        dir.push(OsStr::from_bytes(segment));
    }
    match fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(HttpError::Conflict),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HttpError::Conflict),
        Err(e) => return Err(fs_error(&e)),
    }
    let dir = fs::canonicalize(&dir).map_err(|e| fs_error(&e))?;
    if !dir.starts_with(root) {
        return Err(HttpError::NotFound);
    }
    let name = OsStr::from_bytes(&name).to_os_string();
    let path = dir.join(&name);
    let existing = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => return Err(HttpError::Forbidden),
        Ok(meta) if meta.is_dir() => return Err(HttpError::Conflict),
        Ok(meta) if !meta.is_file() => return Err(HttpError::Forbidden),
        Ok(meta) => Some((meta.len(), meta.modified().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(fs_error(&e)),
    };
    Ok(WriteTarget {
        dir,
        name,
        path,
        existing,
    })
}

/// Prefix of temporary upload files (see `upload.rs`): a dotfile, so never served while
/// hidden names are refused, and refused by name even with `--hidden`, so a
/// half-written body is never read; recognizable for clean-up after a crash.
pub const TEMP_PREFIX: &str = ".poolserve-upload-";

/// Names never served or written: hidden ones (unless `--hidden`), and uploads in progress
/// (`.poolserve-upload-*`) even with `--hidden`, so a half-written body is never read.
fn refused_names(segments: &[Vec<u8>], opts: &ResolveOptions) -> bool {
    segments.iter().any(|s| {
        (!opts.hidden && s.first() == Some(&b'.')) || s.starts_with(TEMP_PREFIX.as_bytes())
    })
}

/// The root's `_redirects` or `_headers` while they are site rules (decoded and normalized,
/// so `/%5Fheaders` and `/x/../_headers` are the same file).
fn is_rule_file(segments: &[Vec<u8>], opts: &ResolveOptions) -> bool {
    use crate::site_rules::{HEADERS_FILE, REDIRECTS_FILE};
    opts.site_rules
        && matches!(segments, [name] if name == HEADERS_FILE.as_bytes() || name == REDIRECTS_FILE.as_bytes())
}

/// The precompressed sidecars of `file` that exist as regular files (`FILE.br`, `FILE.gz`
/// next to the file actually opened), in [`Coding::ALL`] order. One `stat` per coding: the
/// answer decides `Vary`, which must be sent even when the client takes identity.
pub fn variants(file: &FileInfo) -> Vec<Coding> {
    Coding::ALL
        .into_iter()
        .filter(|c| fs::metadata(sidecar_path(&file.path, *c)).is_ok_and(|m| m.is_file()))
        .collect()
}

/// Opens the `coding` sidecar of `file` with the same checks as the file itself: a regular
/// file, opened without blocking, whose real path is inside `root`.
pub fn open_variant(root: &Path, file: &FileInfo, coding: Coding) -> Result<FileInfo, HttpError> {
    open_inside(root, &sidecar_path(&file.path, coding))
}

/// Opens a configured page (`--404`, `--fallback`) by its canonical path: a regular file,
/// opened without blocking. It may live outside the root: the operator named it.
pub fn open_page(path: &Path) -> Result<FileInfo, HttpError> {
    let (file, meta) = open_regular(path)?;
    Ok(file_info(file, &meta, path.to_path_buf()))
}

/// Whether the last segment of a request path has a file extension (a dot after its first
/// byte): `--fallback` answers only paths without one, so a missing `/app.js` stays a 404
/// while `/users/42` gets the single-page app.
pub fn has_extension(path: &str) -> bool {
    let decoded = percent_decode(path).unwrap_or_default();
    let last = decoded.rsplit(|&b| b == b'/').next().unwrap_or_default();
    last.len() > 1 && last[1..].contains(&b'.')
}

fn sidecar_path(path: &Path, coding: Coding) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(coding.suffix());
    PathBuf::from(name)
}

/// Appends `bytes` with every byte but ASCII letters, digits and `keep` as `%XX` (upper-case
/// hex, RFC 3986 §2.1): the inverse of [`percent_decode`], for links and `Location` values
/// built from names and captured path bytes.
pub fn percent_encode(bytes: &[u8], keep: &[u8], out: &mut String) {
    out.extend(percent_encoded(bytes, keep).map(char::from));
}

/// The bytes of [`percent_encode`]'s text (ASCII), for a byte buffer.
pub fn percent_encoded<'a>(bytes: &'a [u8], keep: &'a [u8]) -> impl Iterator<Item = u8> + 'a {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    bytes.iter().flat_map(move |&b| {
        let (len, out) = if b.is_ascii_alphanumeric() || keep.contains(&b) {
            (1, [b, 0, 0])
        } else {
            (
                3,
                [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]],
            )
        };
        out.into_iter().take(len)
    })
}

/// Percent-decodes exactly once (RFC 3986 §2.1): `%` must be followed by two hex digits (either
/// case). An invalid escape (`%`, `%4`, `%zz`) or a NUL byte (`%00`, or a literal one) is a
/// [`HttpError::BadRequest`], since no file name can contain NUL.
pub fn percent_decode(s: &str) -> Result<Vec<u8>, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let byte = if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    hi << 4 | lo
                }
                _ => return Err(HttpError::BadRequest("invalid percent-escape in path")),
            }
        } else {
            i += 1;
            b
        };
        if byte == 0 {
            return Err(HttpError::BadRequest("NUL byte in path"));
        }
        out.push(byte);
    }
    Ok(out)
}

/// Normalizes a decoded path into its segments (RFC 3986 §5.2.4, remove_dot_segments): empty
/// segments and "." are dropped, ".." pops the previous segment, and a ".." with nothing left
/// to pop would climb above the root, which is [`HttpError::Traversal`] rather than being
/// silently clamped (a client asking for that is probing, not browsing).
pub fn normalize(decoded: &[u8]) -> Result<Vec<Vec<u8>>, HttpError> {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for segment in decoded.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(HttpError::Traversal);
                }
            }
            name => segments.push(name.to_vec()),
        }
    }
    Ok(segments)
}

/// Opens `full` without blocking, requires the opened handle to be a regular file, and requires
/// its real path to lie inside `root` (component-wise); everything else is NotFound.
fn open_inside(root: &Path, full: &Path) -> Result<FileInfo, HttpError> {
    let (file, meta) = open_regular(full)?;
    let path = real_path_inside(root, &file, full)?;
    Ok(file_info(file, &meta, path))
}

/// Opens the directory `full` and checks, on the opened handle, that it is a directory
/// whose real path lies inside `root` (the same checks as [`open_inside`] for a file).
fn open_directory(
    root: &Path,
    full: &Path,
    segments: Vec<Vec<u8>>,
) -> Result<Directory, HttpError> {
    use std::os::unix::fs::MetadataExt;
    // Without blocking, as a file: a FIFO swapped in for the directory after the `stat` (a
    // symlink renamed over another) would otherwise hold the worker until a writer comes.
    let (file, meta) = open_checked(full, fs::Metadata::is_dir)?;
    let path = real_path_inside(root, &file, full)?;
    Ok(Directory {
        file,
        path,
        id: (meta.dev(), meta.ino()),
        modified: meta.modified().ok(),
        segments,
    })
}

/// An opened file with its length and mtime from the *opened* handle (no stat/open race).
fn file_info(file: File, meta: &fs::Metadata, path: PathBuf) -> FileInfo {
    FileInfo {
        file,
        path,
        len: meta.len(),
        modified: meta.modified().ok(),
        stamp: FileStamp::of(meta),
    }
}

/// Opens for reading with `O_NONBLOCK` (so a FIFO cannot block us) and checks the *opened*
/// handle's metadata, so a file swapped after the `stat` is still caught; returns the file
/// and that metadata (one `fstat` per file served).
fn open_regular(full: &Path) -> Result<(File, fs::Metadata), HttpError> {
    open_checked(full, fs::Metadata::is_file)
}

/// Opens `full` for reading without blocking and keeps it only if the *opened* handle's
/// metadata passes `kind` (a regular file, a directory); anything else is NotFound.
fn open_checked(
    full: &Path,
    kind: fn(&fs::Metadata) -> bool,
) -> Result<(File, fs::Metadata), HttpError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(abi::O_NONBLOCK)
        .open(full)
        .map_err(|e| fs_error(&e))?;
    let meta = file.metadata().map_err(|e| fs_error(&e))?;
    if kind(&meta) {
        Ok((file, meta))
    } else {
        Err(HttpError::NotFound)
    }
}

/// The real path of the opened `file` (found at `full`), if it lies inside `root`
/// (component-wise); NotFound otherwise.
fn real_path_inside(root: &Path, file: &File, full: &Path) -> Result<PathBuf, HttpError> {
    let path = opened_path(file, full).map_err(|e| fs_error(&e))?;
    if path.starts_with(root) {
        Ok(path)
    } else {
        Err(HttpError::NotFound)
    }
}

/// The canonical path of the file actually opened: read from `/proc/self/fd` when available
/// (no race with symlinks changing after the open), else by canonicalizing the name we opened.
fn opened_path(file: &File, full: &Path) -> io::Result<PathBuf> {
    use std::os::unix::io::AsRawFd;
    let link = Path::new(PROC_FD_DIR).join(file.as_raw_fd().to_string());
    match fs::read_link(link) {
        Ok(path) if path.is_absolute() => Ok(path),
        _ => fs::canonicalize(full),
    }
}

/// The 301 target: the raw path plus '/', plus the query when the request had one.
fn redirect_location(path: &str, query: Option<&str>) -> String {
    // `//host/x` or `/\host/x` in a Location would be resolved by browsers as another host
    // (RFC 3986 §4.2 network-path reference); `/.` keeps it a path on this server.
    let prefix = if path.starts_with("//") || path.starts_with("/\\") {
        "/."
    } else {
        ""
    };
    match query {
        Some(q) => format!("{prefix}{path}/?{q}"),
        None => format!("{prefix}{path}/"),
    }
}

/// True when the decoded path names a directory: its last segment is empty (trailing '/'),
/// "." or ".." (RFC 3986 §5.2.4 keeps a trailing slash for those).
fn names_directory(decoded: &[u8]) -> bool {
    matches!(
        decoded.rsplit(|&b| b == b'/').next(),
        Some(b"" | b"." | b"..")
    )
}

/// File-system errors as request errors: a symlink loop is NotFound, the rest as
/// [`HttpError::from_fs`] says (ENAMETOOLONG arrives as `InvalidFilename`, also NotFound).
fn fs_error(err: &io::Error) -> HttpError {
    if abi::ELOOP.is_some() && err.raw_os_error() == abi::ELOOP {
        HttpError::NotFound
    } else {
        HttpError::from_fs(err)
    }
}

/// The value of one hex digit, either case.
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when `s` holds an ASCII control character (CTL in RFC 5234 Appendix B.1).
fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// How long a FIFO open may take before the test calls it a hang.
    const HANG_TIMEOUT: Duration = Duration::from_secs(5);

    const BR: fn(&'static str) -> HttpError = HttpError::BadRequest;

    fn bad(r: Result<Vec<u8>, HttpError>) -> bool {
        matches!(r, Err(HttpError::BadRequest(_)))
    }

    #[test]
    fn extension_table() {
        let rows = [
            ("/", false),
            ("/users/42", false),
            ("/app.js", true),
            ("/a/b.c/d", false),
            ("/.env", false),
            ("/dir/.hidden.txt", true),
            ("/v1.2/", false),
            ("/a%2Ejs", true),
            ("/x.", true),
        ];
        for (path, want) in rows {
            assert_eq!(has_extension(path), want, "{path}");
        }
    }

    #[test]
    fn percent_decode_table() {
        let ok: &[(&str, &[u8])] = &[
            ("/", b"/"),
            ("/a.txt", b"/a.txt"),
            ("/a%20b", b"/a b"),
            ("/%2e%2E%2f", b"/../"),
            ("/%41%4a%4A", b"/AJJ"),
            ("/%2541", b"/%41"),
            ("/%23", b"/#"),
            ("/caf%C3%A9", "/café".as_bytes()),
            ("/café", "/café".as_bytes()),
            ("/%ff%FE", b"/\xff\xfe"),
            ("/a+b", b"/a+b"),
            ("", b""),
        ];
        for (input, want) in ok {
            assert_eq!(percent_decode(input).as_deref(), Ok(*want), "{input:?}");
        }
        for input in [
            "%", "/%", "/%4", "/%zz", "/%4g", "/%g4", "/a%2", "/%%41", "/%00", "/a%00b", "/a\0",
        ] {
            assert!(bad(percent_decode(input)), "{input:?} should be BadRequest");
        }
    }

    #[test]
    fn normalize_table() {
        let ok: &[(&[u8], &[&[u8]])] = &[
            (b"/", &[]),
            (b"", &[]),
            (b"/a", &[b"a"]),
            (b"/a/b/", &[b"a", b"b"]),
            (b"/./a//b/", &[b"a", b"b"]),
            (b"/a/../b", &[b"b"]),
            (b"/a/b/..", &[b"a"]),
            (b"/a/./../b/.", &[b"b"]),
            (b"/a/..", &[]),
            (b"/...", &[b"..."]),
            (b"/.hidden/x", &[b".hidden", b"x"]),
            (b"/a\\..\\b", &[b"a\\..\\b"]),
        ];
        for (input, want) in ok {
            let got = normalize(input).expect("should normalize");
            let want: Vec<Vec<u8>> = want.iter().map(|s| s.to_vec()).collect();
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
        for input in [
            &b"/.."[..],
            b"/../a",
            b"/a/../../b",
            b"/./../a",
            b"..",
            b"/a//../..",
        ] {
            assert_eq!(
                normalize(input),
                Err(HttpError::Traversal),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn decoded_slash_is_a_separator_for_the_climb_check() {
        for raw in ["/%2e%2e%2fetc", "/..%2f..%2fetc", "/a%2F..%2F..%2Fb"] {
            let decoded = percent_decode(raw).expect("valid escapes");
            assert_eq!(normalize(&decoded), Err(HttpError::Traversal), "{raw}");
        }
    }

    #[test]
    fn helpers_table() {
        for (decoded, want) in [
            (&b"/a/"[..], true),
            (b"/a/.", true),
            (b"/a/..", true),
            (b"/", true),
            (b"/a", false),
            (b"/a.", false),
            (b"/a/..b", false),
        ] {
            assert_eq!(names_directory(decoded), want, "{decoded:?}");
        }
        for (path, query, want) in [
            ("/sub", None, "/sub/"),
            ("/sub", Some("x=1"), "/sub/?x=1"),
            ("/sub", Some(""), "/sub/?"),
            ("/a%20b", None, "/a%20b/"),
            ("//evil.example", None, "/.//evil.example/"),
            ("/\\evil.example", None, "/./\\evil.example/"),
        ] {
            assert_eq!(redirect_location(path, query), want, "{path} {query:?}");
        }
    }

    static FIXTURE_COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A unique temp dir holding `root/` (the document root) and `outside/` (a sibling the
    /// symlinks escape to); removed on drop.
    struct Fixture {
        base: PathBuf,
        root: PathBuf,
        fifo: bool,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    fn long_name(len: usize) -> String {
        "n".repeat(len - 4) + ".txt"
    }

    /// Files under the root; each file's content is its own relative path, so a test can
    /// check it got the right one.
    fn fixture_files() -> Vec<String> {
        [
            "index.html",
            "a.txt",
            "sub/index.html",
            "sub/page.txt",
            ".hidden",
            ".git/config",
            "with space.txt",
            "café.txt",
            "a#b.txt",
            "%41.txt",
            "dirindex/index.html/inner.txt",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([long_name(255)])
        .collect()
    }

    fn write(path: &Path, content: &str) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(path, content).expect("write fixture file");
    }

    fn fixture() -> Fixture {
        use std::os::unix::fs::symlink;
        let n = FIXTURE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let base =
            std::env::temp_dir().join(format!("poolserve-resolve-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("root/empty")).expect("create root");
        for rel in fixture_files() {
            write(&base.join("root").join(&rel), &rel);
        }
        write(&base.join("outside/secret.txt"), "secret");
        let root = fs::canonicalize(base.join("root")).expect("canonical root");
        symlink("a.txt", root.join("link-a")).expect("symlink inside");
        symlink("sub", root.join("link-sub")).expect("symlink dir inside");
        symlink(base.join("outside/secret.txt"), root.join("link-out")).expect("symlink out");
        symlink(base.join("outside"), root.join("link-outdir")).expect("symlink dir out");
        symlink("loop", root.join("loop")).expect("symlink loop");
        symlink("/dev/null", root.join("link-null")).expect("symlink device");
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        Fixture { base, root, fifo }
    }

    #[derive(Debug)]
    enum Want<'a> {
        File(&'a str),
        Redirect(&'a str),
        Err(HttpError),
    }

    fn check(fx: &Fixture, path: &str, query: Option<&str>, hidden: bool, want: &Want<'_>) {
        let opts = ResolveOptions {
            hidden,
            site_rules: true,
            list_dirs: false,
        };
        let got = resolve(&fx.root, path, query, &opts);
        let ctx = format!("{path} {query:?} hidden={hidden}");
        match (got, want) {
            (Ok(Resolved::File(mut info)), Want::File(rel)) => {
                assert_eq!(info.path, fx.root.join(rel), "{ctx}");
                let mut body = String::new();
                info.file
                    .read_to_string(&mut body)
                    .expect("read served file");
                assert_eq!(body, *rel, "{ctx}");
                assert_eq!(info.len, rel.len() as u64, "{ctx}");
                assert!(info.modified.is_some(), "{ctx}");
            }
            (Ok(Resolved::Redirect(loc)), Want::Redirect(want)) => assert_eq!(loc, *want, "{ctx}"),
            (Err(e), Want::Err(want)) => assert_eq!(&e, want, "{ctx}"),
            (got, want) => panic!("{ctx}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn resolve_table() {
        use Want::*;
        let fx = fixture();
        let nf = || Err(HttpError::NotFound);
        let long255 = format!("/{}", long_name(255));
        let long256 = format!("/{}", long_name(256));
        let long_file = long_name(255);
        let rows: Vec<(&str, Option<&str>, bool, Want)> = vec![
            ("/", None, false, File("index.html")),
            ("/index.html", None, false, File("index.html")),
            ("/a.txt", None, false, File("a.txt")),
            ("/a.txt", Some("v=1"), false, File("a.txt")),
            ("/sub", None, false, Redirect("/sub/")),
            ("/sub", Some("x=1"), false, Redirect("/sub/?x=1")),
            ("/sub/", None, false, File("sub/index.html")),
            ("/sub/page.txt", None, false, File("sub/page.txt")),
            ("/sub//page.txt", None, false, File("sub/page.txt")),
            ("/sub/./page.txt", None, false, File("sub/page.txt")),
            ("/sub/../a.txt", None, false, File("a.txt")),
            ("/sub/%2e%2e/a.txt", None, false, File("a.txt")),
            ("/sub%2Fpage.txt", None, false, File("sub/page.txt")),
            ("/%73ub/", None, false, File("sub/index.html")),
            ("//sub", None, false, Redirect("/.//sub/")),
            ("/empty", None, false, Redirect("/empty/")),
            ("/empty/", None, false, nf()),
            ("/dirindex/", None, false, nf()),
            ("/a.txt/", None, false, nf()),
            ("/a.txt%2F", None, false, nf()),
            ("/a.txt/.", None, false, nf()),
            ("/a.txt/x", None, false, nf()),
            ("/missing", None, false, nf()),
            ("/missing/", None, false, nf()),
            ("/%2e%2e/etc/passwd", None, false, Err(HttpError::Traversal)),
            (
                "/..%2f..%2fetc/passwd",
                None,
                false,
                Err(HttpError::Traversal),
            ),
            ("/%2E%2E%2Fa.txt", None, false, Err(HttpError::Traversal)),
            ("/../a.txt", None, false, Err(HttpError::Traversal)),
            ("/sub/../../a.txt", None, false, Err(HttpError::Traversal)),
            ("/..", None, true, Err(HttpError::Traversal)),
            ("/a.txt%00", None, false, Err(BR("NUL byte in path"))),
            (
                "/%zz",
                None,
                false,
                Err(BR("invalid percent-escape in path")),
            ),
            (
                "/a.txt%",
                None,
                false,
                Err(BR("invalid percent-escape in path")),
            ),
            (
                "a.txt",
                None,
                false,
                Err(BR("request path does not start with '/'")),
            ),
            (
                "/a\r\nX: y",
                None,
                false,
                Err(BR("control character in request target")),
            ),
            (
                "/sub",
                Some("a\nb"),
                false,
                Err(BR("control character in request target")),
            ),
            ("/.hidden", None, false, nf()),
            ("/.git/config", None, false, nf()),
            ("/.git/", None, false, nf()),
            ("/sub/../.hidden", None, false, nf()),
            ("/%2ehidden", None, false, nf()),
            ("/.hidden", None, true, File(".hidden")),
            ("/.git/config", None, true, File(".git/config")),
            ("/.git", None, true, Redirect("/.git/")),
            ("/with%20space.txt", None, false, File("with space.txt")),
            ("/caf%C3%A9.txt", None, false, File("café.txt")),
            ("/caf%c3%a9.txt", None, false, File("café.txt")),
            ("/café.txt", None, false, File("café.txt")),
            ("/a%23b.txt", None, false, File("a#b.txt")),
            ("/%2541.txt", None, false, File("%41.txt")),
            ("/%41.txt", None, false, nf()),
            (&long255, None, false, File(&long_file)),
            (&long256, None, false, nf()),
            ("/link-a", None, false, File("a.txt")),
            ("/link-sub", None, false, Redirect("/link-sub/")),
            ("/link-sub/page.txt", None, false, File("sub/page.txt")),
            ("/link-out", None, false, nf()),
            ("/link-outdir", None, false, nf()),
            ("/link-outdir/", None, false, nf()),
            ("/link-outdir/secret.txt", None, false, nf()),
            ("/loop", None, false, nf()),
            ("/link-null", None, false, nf()),
        ];
        for (path, query, hidden, want) in &rows {
            check(&fx, path, *query, *hidden, want);
        }
    }

    #[test]
    fn path_longer_than_path_max_is_not_found() {
        let fx = fixture();
        let path = format!("/{}", vec!["d".repeat(200); 30].join("/"));
        check(&fx, &path, None, false, &Want::Err(HttpError::NotFound));
    }

    /// Runs `f` on another thread and fails (instead of hanging) if it takes too long.
    fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(HANG_TIMEOUT)
            .expect("opening a FIFO blocked the worker")
    }

    #[test]
    fn fifo_is_not_found_and_never_blocks() {
        let fx = fixture();
        if !fx.fifo {
            println!("note: mkfifo unavailable, FIFO rows skipped");
            return;
        }
        let root = fx.root.clone();
        let got = within_timeout(move || {
            resolve(&root, "/fifo", None, &ResolveOptions::default()).map(|_| ())
        });
        assert_eq!(got, Err(HttpError::NotFound));
        // The open layer alone (as if the FIFO were swapped in after the stat): O_NONBLOCK
        // makes the open return at once and the fstat check rejects it.
        let fifo = fx.root.join("fifo");
        let got = within_timeout(move || open_regular(&fifo).map(|_| ()));
        assert_eq!(got, Err(HttpError::NotFound));
    }

    #[test]
    fn a_fifo_swapped_in_for_a_listed_directory_never_blocks() {
        let fx = fixture();
        if !fx.fifo {
            println!("note: mkfifo unavailable, FIFO rows skipped");
            return;
        }
        // As if `/sw/` was a link to a directory at the `stat` and to the FIFO at the open.
        let (root, fifo) = (fx.root.clone(), fx.root.join("fifo"));
        let got = within_timeout(move || open_directory(&root, &fifo, Vec::new()).map(|_| ()));
        assert_eq!(got, Err(HttpError::NotFound));
        let (root, dir) = (fx.root.clone(), fx.root.join("empty"));
        let got = within_timeout(move || open_directory(&root, &dir, Vec::new()).map(|d| d.path));
        assert_eq!(got, Ok(fx.root.join("empty")));
    }

    #[test]
    fn open_inside_checks_containment_of_the_opened_file() {
        let fx = fixture();
        // Bypassing the earlier layers: the real path of the opened file decides.
        let got = open_inside(&fx.root, &fx.root.join("link-out")).map(|i| i.path);
        assert_eq!(got, Err(HttpError::NotFound));
        let got = open_inside(&fx.root, &fx.root.join("link-a")).map(|i| i.path);
        assert_eq!(got, Ok(fx.root.join("a.txt")));
        let got = open_inside(&fx.root, &fx.root.join("sub")).map(|i| i.path);
        assert_eq!(got, Err(HttpError::NotFound));
    }
}
