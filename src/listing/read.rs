//! Reading a directory for a listing, with the refusals of GET: a name GET would not serve
//! is not listed. Hidden names follow `--hidden`, uploads in progress and the root's rule
//! files never show, FIFOs, sockets and devices never show, and a symbolic link shows only
//! when it leads to a file or a directory inside the root (a link out, or a broken one, is
//! a 404 to GET). One `stat` per entry (`lstat`, from the directory's descriptor), and a
//! `realpath` for links only.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Entry, Selection, View};
use crate::resolve::{Directory, TEMP_PREFIX};
use crate::site_rules::{HEADERS_FILE, REDIRECTS_FILE};

/// Which names GET refuses, as configured.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    /// `--hidden`: dotfiles are served, so they are listed.
    pub hidden: bool,
    /// `--site-rules on`: the root's `_redirects` and `_headers` are never served.
    pub site_rules: bool,
}

impl Filter {
    /// Whether GET refuses `name` in the directory `dir` by its name alone.
    fn refuses(&self, name: &[u8], dir: &Path, root: &Path) -> bool {
        (!self.hidden && name.first() == Some(&b'.'))
            || name.starts_with(TEMP_PREFIX.as_bytes())
            || (self.site_rules
                && (name == HEADERS_FILE.as_bytes() || name == REDIRECTS_FILE.as_bytes())
                && dir == root)
    }
}

/// Entries a listing reads before it counts as big: a small one costs well under a
/// millisecond and little memory, so only a big one asks for a place (see `admit`).
pub const SMALL_LISTING: u64 = 1_000;

/// The entries of `dir` that GET would serve, the first `cap` in `view`'s order, and how
/// many more there were. An entry that vanishes while it is read is skipped; a directory
/// that cannot be read is the error. When the directory turns out to hold more than
/// [`SMALL_LISTING`] entries, `admit` is asked once whether a big listing may go on; `None`
/// when it says no.
pub fn read(
    dir: &Directory,
    root: &Path,
    filter: &Filter,
    view: &View,
    cap: usize,
    admit: &mut dyn FnMut() -> bool,
) -> io::Result<Option<(Vec<Entry>, u64)>> {
    let mut selection = Selection::new(view, cap);
    for (n, item) in dir.entries()?.enumerate() {
        if n as u64 == SMALL_LISTING && !admit() {
            return Ok(None);
        }
        let item = item?;
        let name = item.file_name();
        if filter.refuses(name.as_bytes(), &dir.path, root) {
            continue;
        }
        let Ok(kind) = item.file_type() else {
            continue;
        };
        let meta = if kind.is_symlink() {
            // Followed as GET follows it: to a file or directory, inside the root.
            let path = item.path();
            match (fs::metadata(&path), fs::canonicalize(&path)) {
                (Ok(meta), Ok(real)) if real.starts_with(root) => meta,
                _ => continue,
            }
        } else {
            match item.metadata() {
                Ok(meta) => meta,
                Err(_) => continue,
            }
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        selection.push(Entry {
            name: name.as_bytes().into(),
            is_dir: meta.is_dir(),
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Ok(Some(selection.finish()))
}
