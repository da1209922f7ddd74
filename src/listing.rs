//! Directory listings (`--list-dirs`), the pure half: which view a request asks for
//! (`?sort=`, `?order=`, `?format=`, `Accept`), the order entries are shown in, how a file
//! name becomes text on a page and a link, and the page itself, HTML for people and JSON for
//! scripts, rendered a piece at a time ([`Page`]). Reading the directory, with the same
//! refusals as GET, is [`read`]'s; answering with a page is `handler.rs`'s.
//!
//! Names come from the file system, so they are bytes, not text: any of them may hold
//! `<script>`, quotes, `&`, a newline, `%`, `#`, `?` or bytes that are not UTF-8. A name is
//! shown with replacement characters where it is not UTF-8 and escaped for HTML (or JSON),
//! and linked by its real bytes, percent-encoded, so that the link names the file whatever
//! its bytes.
//!
//! # Big directories
//! A listing holds its entries (about 70 bytes each plus the name) and never the page: the
//! page is rendered twice, once to measure it (so the answer has a `Content-Length`, HEAD
//! and HTTP/1.0 included) and once, 64 KiB at a time, as the socket takes it. At most
//! [`LISTING_MAX_ENTRIES`] entries are kept, the first ones in the page's order (a
//! [`Selection`] keeps at most twice that many while it reads); the rest are counted and the
//! page says how many were left out.

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

pub mod read;

/// Most entries one listing shows. A directory of 100,000 entries (the size the issue asks
/// to list in full) is listed whole; past it the page says how many were left out, so a
/// listing's memory has a bound: about 70 bytes and the name per entry, 7 MB for short
/// names, 30 MB at most (names of 255 bytes, the Linux limit).
pub const LISTING_MAX_ENTRIES: usize = 100_000;

/// Which column the entries are sorted by (`?sort=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Natural order of names, ignoring case.
    Name,
    /// Size in bytes (directories have none and keep their name order).
    Size,
    /// Modification time.
    Time,
}

/// Ascending or descending (`?order=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Smallest, oldest or first by name first.
    Asc,
    /// Largest, newest or last by name first.
    Desc,
}

/// The two forms of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A page for people.
    Html,
    /// An array of `{name, type, size, mtime, url}` for scripts.
    Json,
}

/// What a request asks of a listing: the order, and the form when the query names one
/// (otherwise `Accept` decides, [`wants_json`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The column sorted by.
    pub sort: SortKey,
    /// Its direction.
    pub order: Order,
    /// `?format=html|json`, which wins over `Accept`.
    pub format: Option<Format>,
}

impl Default for View {
    fn default() -> View {
        View {
            sort: SortKey::Name,
            order: Order::Asc,
            format: None,
        }
    }
}

impl View {
    /// The view a query asks for. Other parameters are ignored (a cache-busting `?v=3`
    /// still gets the listing); a known one with a value we do not have is an error, the
    /// text for the log, answered 400.
    pub fn from_query(query: Option<&str>) -> Result<View, &'static str> {
        let mut view = View::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sort" => {
                    view.sort = match value {
                        "name" => SortKey::Name,
                        "size" => SortKey::Size,
                        "time" => SortKey::Time,
                        _ => return Err("listing: sort is name, size or time"),
                    }
                }
                "order" => {
                    view.order = match value {
                        "asc" => Order::Asc,
                        "desc" => Order::Desc,
                        _ => return Err("listing: order is asc or desc"),
                    }
                }
                "format" => {
                    view.format = Some(match value {
                        "html" => Format::Html,
                        "json" => Format::Json,
                        _ => return Err("listing: format is html or json"),
                    })
                }
                _ => {}
            }
        }
        Ok(view)
    }

    /// How the view shows in an ETag: the listing's bytes depend on it as on the directory.
    fn tag(&self, format: Format) -> [u8; 3] {
        [
            match self.sort {
                SortKey::Name => b'n',
                SortKey::Size => b's',
                SortKey::Time => b't',
            },
            match self.order {
                Order::Asc => b'a',
                Order::Desc => b'd',
            },
            match format {
                Format::Html => b'h',
                Format::Json => b'j',
            },
        ]
    }
}

/// Whether `Accept` prefers JSON to HTML (RFC 9110 §12.5.1): `application/json` must have
/// a higher weight than `text/html`, each taken from its most specific match (`type/*`,
/// `*/*`). A browser's `Accept` (`text/html,...,*/*;q=0.8`) and curl's `*/*` get HTML;
/// `Accept: application/json` gets JSON.
pub fn wants_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    weight(accept, "application", "json") > weight(accept, "text", "html")
}

/// The weight (in thousandths) `accept` gives `main/sub`: from the most specific range
/// that matches, 0 when none does.
fn weight(accept: &str, main: &str, sub: &str) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for element in accept.split(',') {
        let mut params = element.split(';');
        let range = params.next().unwrap_or("").trim();
        let (m, s) = range.split_once('/').unwrap_or((range, ""));
        let specificity = match (m, s) {
            _ if m.eq_ignore_ascii_case(main) && s.eq_ignore_ascii_case(sub) => 2,
            _ if m.eq_ignore_ascii_case(main) && s == "*" => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = params
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, v)| qvalue(v.trim()));
        if best.is_none_or(|(spec, _)| specificity > spec) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths; a malformed one counts as 0.
fn qvalue(v: &str) -> u16 {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let thousandths = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match int {
        "0" => thousandths,
        "1" if thousandths == 0 => 1000,
        _ => 0,
    }
}

/// One entry of a listing: a file or a directory that GET would serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The name's bytes, as the file system has them.
    pub name: Box<[u8]>,
    /// A directory (linked with a trailing slash) or a regular file.
    pub is_dir: bool,
    /// Size in bytes (shown for files only).
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// The page's order: directories first, then files; each by the view's column in its
/// direction, ties by name in natural order (so the order is total, whatever the column).
pub fn compare(a: &Entry, b: &Entry, sort: SortKey, order: Order) -> Ordering {
    let by_key = match sort {
        SortKey::Name => Ordering::Equal,
        SortKey::Size if a.is_dir && b.is_dir => Ordering::Equal,
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Time => a.modified.cmp(&b.modified),
    }
    .then_with(|| natural_cmp(&a.name, &b.name));
    let by_key = match order {
        Order::Asc => by_key,
        Order::Desc => by_key.reverse(),
    };
    b.is_dir.cmp(&a.is_dir).then(by_key)
}

/// The first `cap` entries in a view's order out of any number offered, holding at most
/// `2 × cap` at a time: when the buffer is full, it is cut back to its first `cap`
/// (a partial sort, linear), so a directory of millions costs the memory of `2 × cap`.
#[derive(Debug)]
pub struct Selection {
    entries: Vec<Entry>,
    cap: usize,
    offered: u64,
    sort: SortKey,
    order: Order,
}

impl Selection {
    /// An empty selection of at most `cap` entries in `view`'s order.
    pub fn new(view: &View, cap: usize) -> Selection {
        Selection {
            entries: Vec::new(),
            cap,
            offered: 0,
            sort: view.sort,
            order: view.order,
        }
    }

    /// Offers one entry.
    pub fn push(&mut self, entry: Entry) {
        self.offered += 1;
        self.entries.push(entry);
        if self.entries.len() >= self.cap.saturating_mul(2).max(1) {
            self.cut();
        }
    }

    /// Keeps the first `cap` entries.
    fn cut(&mut self) {
        let (sort, order) = (self.sort, self.order);
        if self.entries.len() > self.cap {
            if self.cap > 0 {
                self.entries
                    .select_nth_unstable_by(self.cap - 1, |a, b| compare(a, b, sort, order));
            }
            self.entries.truncate(self.cap);
        }
    }

    /// The kept entries in order, and how many were left out.
    pub fn finish(mut self) -> (Vec<Entry>, u64) {
        self.cut();
        let (sort, order) = (self.sort, self.order);
        self.entries
            .sort_unstable_by(|a, b| compare(a, b, sort, order));
        // The page holds them while it is sent: no room left over from reading.
        self.entries.shrink_to_fit();
        let left_out = self.offered - self.entries.len() as u64;
        (self.entries, left_out)
    }
}

/// The validator of a listing (RFC 9110 §8.8.3): the directory (device, inode) and its
/// mtime, which moves whenever an entry is added, removed or renamed, plus the view and the
/// settings that change which entries show (`filter`, `cap`), so that a restart with other
/// settings never revalidates an old page. Weak: a file changed in place changes its size
/// and time in the listing but not the directory's mtime.
pub fn etag(
    id: (u64, u64),
    modified: Option<SystemTime>,
    view: &View,
    format: Format,
    filter: &read::Filter,
    cap: usize,
) -> String {
    let (secs, nanos) = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
    let tag = view.tag(format);
    let tag = std::str::from_utf8(&tag).unwrap_or("");
    let hidden = if filter.hidden { "h" } else { "" };
    let rules = if filter.site_rules { "r" } else { "" };
    format!(
        "W/\"d{:x}.{:x}-{secs:x}.{nanos:x}-{tag}{hidden}{rules}-{cap:x}\"",
        id.0, id.1
    )
}

/// Natural order, ignoring ASCII case: runs of digits compare by their value (`file2`
/// before `file10`), everything else byte by byte with ASCII letters folded; a tie (`a01`
/// and `a1`, `A` and `a`) is broken by the plain bytes, so the order is total and stable
/// across runs.
pub fn natural_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (da, db) = (digit_run(&a[i..]), digit_run(&b[j..]));
            // Leading zeros do not change a number's value.
            let (na, nb) = (trim_zeros(&a[i..i + da]), trim_zeros(&b[j..j + db]));
            let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if by_value != Ordering::Equal {
                return by_value;
            }
            i += da;
            j += db;
        } else {
            let (x, y) = (a[i].to_ascii_lowercase(), b[j].to_ascii_lowercase());
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j)).then_with(|| a.cmp(b))
}

/// How many ASCII digits `s` starts with.
fn digit_run(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A digit run without its leading zeros (`"007"` → `"7"`, `"0"` → `""`).
fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|b| **b == b'0').count();
    &digits[zeros..]
}

/// A name as text for a page: UTF-8 where it is, U+FFFD where it is not, escaped for HTML
/// text and attribute values (`&`, `<`, `>`, `"`, `'`); control characters (a newline in a
/// name) are shown as U+FFFD too, so a name stays on one line, and so are noncharacters
/// (U+FDD0 to U+FDEF, U+FFFE and U+FFFF in every plane), which valid UTF-8 may hold but an
/// HTML document may not (HTML §13.2.3.5, `noncharacter-in-input-stream`).
pub fn html_name(name: &[u8]) -> String {
    let mut out = Vec::with_capacity(name.len());
    push_html_name(name, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// [`html_name`], appended to a page.
fn push_html_name(name: &[u8], out: &mut Vec<u8>) {
    for c in String::from_utf8_lossy(name).chars() {
        let escaped: &[u8] = match c {
            '&' => b"&amp;",
            '<' => b"&lt;",
            '>' => b"&gt;",
            '"' => b"&quot;",
            '\'' => b"&#39;",
            c if c.is_control() || is_noncharacter(c) => "\u{FFFD}".as_bytes(),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        };
        out.extend_from_slice(escaped);
    }
}

/// A Unicode noncharacter: U+FDD0 to U+FDEF, or the last two code points of a plane.
fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// A name as one path segment of a link: every byte but ASCII letters, digits and `-._~`
/// percent-encoded (RFC 3986 §2.3), so `%`, `#`, `?`, `/`, quotes, spaces and bytes that are
/// not UTF-8 reach the server as the name's real bytes, and the result is safe in an HTML
/// attribute as it is.
pub fn href_segment(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    crate::resolve::percent_encode(name, UNRESERVED, &mut out);
    out
}

/// The bytes besides letters and digits a link keeps as they are (RFC 3986 §2.3).
const UNRESERVED: &[u8] = b"-._~";

/// [`href_segment`], appended to a page.
fn push_href(name: &[u8], out: &mut Vec<u8>) {
    out.extend(crate::resolve::percent_encoded(name, UNRESERVED));
}

/// A size for people, in binary units with one decimal under 10 (`999 B`, `1.5 KiB`,
/// `12 MiB`); the exact byte count goes in a title beside it.
pub fn human_size(bytes: u64) -> String {
    HumanSize(bytes).to_string()
}

/// [`human_size`] as it is written into a page.
struct HumanSize(u64);

impl std::fmt::Display for HumanSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        // Under 10 a unit shows one decimal; a value that rounds up to 1024 of a unit is
        // 1.0 of the next (1,048,575 bytes is 1.0 MiB, not 1024 KiB).
        const ONE_DECIMAL_BELOW: f64 = 9.95;
        let bytes = self.0;
        if bytes < 1024 {
            return write!(f, "{bytes} B");
        }
        let mut value = bytes as f64 / 1024.0;
        let mut unit = 0;
        while value.round() >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if value < ONE_DECIMAL_BELOW {
            write!(f, "{value:.1} {}", UNITS[unit])
        } else {
            write!(f, "{value:.0} {}", UNITS[unit])
        }
    }
}

/// A listing page, HTML or JSON, rendered a piece at a time: the head, one piece per entry,
/// the foot. Its length is measured once when it is made, by rendering every piece into a
/// scratch buffer, so the page can promise a `Content-Length` it then keeps.
#[derive(Debug)]
pub struct Page {
    format: Format,
    view: View,
    /// The directory's path, decoded, one segment each.
    segments: Vec<Vec<u8>>,
    /// Its URL path, percent-encoded, with a slash at the end (the JSON urls start with it).
    base: String,
    entries: Vec<Entry>,
    left_out: u64,
    /// Pieces rendered so far (0: none; the head is piece 0, entry `i` piece `i + 1`).
    next: usize,
    len: u64,
}

/// Style of the HTML page: readable on a phone (the name column wraps, sizes and times do
/// not), light or dark as the reader's system is (`prefers-color-scheme`); nothing loaded
/// from anywhere.
const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1f2328;--bg:#fff;--mute:#59636e;--line:#d1d9e0;\
--link:#0969da;--row:#f6f8fa}\
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--mute:#9198a1;\
--line:#30363d;--link:#4493f8;--row:#151b23}}\
body{margin:0 auto;max-width:64rem;padding:1rem;font:16px/1.5 system-ui,-apple-system,\
'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}\
h1{font-size:1.2rem;font-weight:600;margin:.25rem 0 1rem;overflow-wrap:anywhere}\
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}\
table{width:100%;border-collapse:collapse}\
th,td{padding:.4rem .5rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}\
th{font-weight:600;white-space:nowrap}th a{color:var(--fg)}\
td:first-child{width:100%;overflow-wrap:anywhere}\
.s,.t{white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--mute)}.s{text-align:right}\
tbody tr:hover{background:var(--row)}\
p{color:var(--mute);font-size:.9rem}\
@media (max-width:40rem){body{padding:.5rem;font-size:15px}th,td{padding:.35rem .3rem}\
.t{font-size:.8rem;white-space:normal;min-width:6.2em}}";

impl Page {
    /// The page for the directory at `segments` (its decoded path under the root) with
    /// `entries` in their order, of which `left_out` more were not kept.
    pub fn new(
        format: Format,
        view: View,
        segments: Vec<Vec<u8>>,
        entries: Vec<Entry>,
        left_out: u64,
    ) -> Page {
        let mut base = String::new();
        push_base(&segments, &mut base);
        let mut page = Page {
            format,
            view,
            segments,
            base,
            entries,
            left_out,
            next: 0,
            len: 0,
        };
        let mut scratch = Vec::new();
        for i in 0..page.pieces() {
            scratch.clear();
            page.piece(i, &mut scratch);
            page.len += scratch.len() as u64;
        }
        page
    }

    /// The page's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// About how much memory the page's entries hold: each entry and its name, with the
    /// allocator's overhead of a small block.
    pub fn memory(&self) -> usize {
        const BLOCK_OVERHEAD: usize = 16;
        let names: usize = self.entries.iter().map(|e| e.name.len()).sum();
        self.entries.len() * (std::mem::size_of::<Entry>() + BLOCK_OVERHEAD) + names
    }

    /// Whether the page has no bytes (never: even an empty listing has its head).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the next pieces to `out` until it holds at least `want` bytes or the page is
    /// done; false once nothing is left.
    pub fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool {
        while out.len() < want && self.next < self.pieces() {
            self.piece(self.next, out);
            self.next += 1;
        }
        self.next < self.pieces()
    }

    /// The whole page at once (from the start, whatever was filled before).
    pub fn render(mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        self.fill(&mut out, usize::MAX);
        out
    }

    fn pieces(&self) -> usize {
        self.entries.len() + 2
    }

    fn piece(&self, i: usize, out: &mut Vec<u8>) {
        match (self.format, i) {
            (Format::Html, 0) => self.html_head(out),
            (Format::Json, 0) => out.push(b'['),
            (Format::Html, i) if i <= self.entries.len() => {
                self.html_row(&self.entries[i - 1], out)
            }
            (Format::Json, i) if i <= self.entries.len() => {
                if i > 1 {
                    out.push(b',');
                }
                self.json_row(&self.entries[i - 1], out);
            }
            (Format::Html, _) => self.html_foot(out),
            (Format::Json, _) => out.extend_from_slice(b"\n]\n"),
        }
    }

    fn html_head(&self, out: &mut Vec<u8>) {
        let mut title = String::from("/");
        for segment in &self.segments {
            title.push_str(&html_name(segment));
            title.push('/');
        }
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"color-scheme\" content=\"light dark\">\n\
             <title>Index of {title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
             <h1>Index of <a href=\"/\">/</a>"
        );
        // The breadcrumb: every ancestor, linked by its own path.
        for depth in 1..=self.segments.len() {
            s.push_str("<a href=\"");
            push_base(&self.segments[..depth], &mut s);
            s.push_str("\">");
            s.push_str(&html_name(&self.segments[depth - 1]));
            s.push_str("</a>/");
        }
        s.push_str("</h1>\n<table>\n<thead><tr>");
        for (key, label, class) in [
            (SortKey::Name, "Name", ""),
            (SortKey::Size, "Size", " class=\"s\""),
            (SortKey::Time, "Modified (UTC)", " class=\"t\""),
        ] {
            self.sort_header(key, label, class, &mut s);
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        if !self.segments.is_empty() {
            s.push_str(
                "<tr><td><a href=\"../\">../</a></td><td class=\"s\"></td><td class=\"t\"></td></tr>\n",
            );
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// A column's header: a link that sorts by it, the other way round when it already
    /// does (names start A to Z, sizes and times largest and newest first).
    fn sort_header(&self, key: SortKey, label: &str, class: &str, s: &mut String) {
        let current = self.view.sort == key;
        let next = match (current, self.view.order, key) {
            (true, Order::Asc, _) | (false, _, SortKey::Size | SortKey::Time) => "desc",
            _ => "asc",
        };
        let name = match key {
            SortKey::Name => "name",
            SortKey::Size => "size",
            SortKey::Time => "time",
        };
        let (aria, arrow) = match (current, self.view.order) {
            (false, _) => ("", ""),
            (true, Order::Asc) => (" aria-sort=\"ascending\"", " \u{25B2}"),
            (true, Order::Desc) => (" aria-sort=\"descending\"", " \u{25BC}"),
        };
        s.push_str(&format!(
            "<th{class}{aria}><a href=\"?sort={name}&amp;order={next}\">{label}{arrow}</a></th>"
        ));
    }

    fn html_row(&self, e: &Entry, out: &mut Vec<u8>) {
        use std::io::Write;
        // Written straight into the page: a listing of 100,000 rows is rendered twice.
        let slash: &[u8] = if e.is_dir { b"/" } else { b"" };
        out.extend_from_slice(b"<tr><td><a href=\"");
        push_href(&e.name, out);
        out.extend_from_slice(slash);
        out.extend_from_slice(b"\">");
        push_html_name(&e.name, out);
        out.extend_from_slice(slash);
        out.extend_from_slice(b"</a></td>");
        if e.is_dir {
            out.extend_from_slice("<td class=\"s\">\u{2014}</td>".as_bytes());
        } else {
            let (exact, human) = (Grouped(e.size), HumanSize(e.size));
            let _ = write!(out, "<td class=\"s\" title=\"{exact} bytes\">{human}</td>");
        }
        out.extend_from_slice(b"<td class=\"t\">");
        if let Some(t) = e.modified {
            // The exact time (ISO 8601, UTC) for machines, to the minute for people
            // (`2026-03-14 09:12`), which on a phone wraps between date and time.
            out.extend_from_slice(b"<time datetime=\"");
            let exact = out.len();
            crate::http_date::rfc3339_into(t, out);
            let len = out.len() - exact;
            out.extend_from_slice(b"\">");
            if len == 20 {
                out.extend_from_within(exact..exact + 10);
                out.push(b' ');
                out.extend_from_within(exact + 11..exact + 16);
            } else {
                // A year outside 0000-9999: shown whole.
                out.extend_from_within(exact..exact + len);
            }
            out.extend_from_slice(b"</time>");
        }
        out.extend_from_slice(b"</td></tr>\n");
    }

    fn html_foot(&self, out: &mut Vec<u8>) {
        let dirs = self.entries.iter().filter(|e| e.is_dir).count() as u64;
        let files = self.entries.len() as u64 - dirs;
        let mut s = format!(
            "</tbody>\n</table>\n<p>{} {}, {} {}.",
            group(dirs),
            plural(dirs, "directory", "directories"),
            group(files),
            plural(files, "file", "files")
        );
        if self.left_out > 0 {
            s.push_str(&format!(
                " {} {} left out: a listing shows at most {}.",
                group(self.left_out),
                plural(self.left_out, "entry", "entries"),
                group(self.entries.len() as u64)
            ));
        }
        s.push_str("</p>\n</body>\n</html>\n");
        out.extend_from_slice(s.as_bytes());
    }

    fn json_row(&self, e: &Entry, out: &mut Vec<u8>) {
        use std::io::Write;
        out.extend_from_slice(b"\n{\"name\":");
        json_string(&e.name, out);
        if e.is_dir {
            out.extend_from_slice(b",\"type\":\"directory\",\"size\":null");
        } else {
            let _ = write!(out, ",\"type\":\"file\",\"size\":{}", e.size);
        }
        out.extend_from_slice(b",\"mtime\":");
        match e.modified {
            Some(t) => {
                out.push(b'"');
                crate::http_date::rfc3339_into(t, out);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        // Percent-encoded: nothing in it needs a JSON escape.
        out.extend_from_slice(b",\"url\":\"");
        out.extend_from_slice(self.base.as_bytes());
        push_href(&e.name, out);
        if e.is_dir {
            out.push(b'/');
        }
        out.extend_from_slice(b"\"}");
    }
}

/// A directory's URL path: `/`, then each of `segments` percent-encoded and a slash.
fn push_base(segments: &[Vec<u8>], out: &mut String) {
    out.push('/');
    for segment in segments {
        crate::resolve::percent_encode(segment, UNRESERVED, out);
        out.push('/');
    }
}

/// `n` with a comma between groups of three digits (`100,000`).
fn group(n: u64) -> String {
    Grouped(n).to_string()
}

/// [`group`] as it is written into a page.
struct Grouped(u64);

impl std::fmt::Display for Grouped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits = [0u8; 20];
        let mut n = self.0;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in (0..len).rev() {
            f.write_str(char::from(digits[i]).encode_utf8(&mut [0; 4]))?;
            if i > 0 && i % 3 == 0 {
                f.write_str(",")?;
            }
        }
        Ok(())
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// A name as a JSON string (RFC 8259 §7): UTF-8 where it is, U+FFFD where it is not (JSON
/// text is Unicode; the entry's `url` has the real bytes), quotes, backslashes and control
/// characters escaped.
fn json_string(name: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for c in String::from_utf8_lossy(name).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests;
