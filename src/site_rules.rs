//! Site rules: the `_redirects` and `_headers` files a site built for Netlify, Cloudflare
//! Pages or GitLab Pages carries in its output folder, plus the `--header` fields of the
//! command line. This module owns their parsing (with every limit and every refusal as a
//! `file:line: reason`), their compiled form ([`SiteRules`]), and matching a request path
//! against them; it reads no socket and no file (the text comes in as bytes), so all of it is
//! table-tested. Loading, reloading and applying the rules to answers is `handler`'s and
//! `rules_file`'s business.
//!
//! The `_redirects` format is the "Web _redirects File Specification" of the IPFS gateways
//! (`from to [status]`, first match wins, `:placeholder` segments, a `*` splat), with
//! Netlify's `!` to force a rule over an existing file. The `_headers` format is Netlify's and
//! Cloudflare's: a path pattern alone on a line, then indented `Name: value` lines, and
//! Cloudflare's `! Name` to detach a header a broader block set. Limits are Cloudflare's.
//!
//! Patterns are matched against the request path percent-decoded once and normalized, exactly
//! as `resolve` will look it up, so `/a%2Fb`, `/./a/b` and `//a/b` cannot slip past a rule
//! that `/a/b` meets. Both files are compiled once per load: static paths go into a map,
//! patterns with a fixed first segment into a map by that segment, and only the rest are tried
//! one by one, so a request costs a few hash lookups whatever the number of rules.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::resolve::percent_encode;

/// Most bytes in a `_redirects` file (the IPFS spec's and Cloudflare's 64 KiB).
pub const REDIRECTS_MAX_BYTES: usize = 64 * 1024;
/// Most static redirects (no placeholder, no splat), as on Cloudflare Pages.
pub const MAX_STATIC_REDIRECTS: usize = 2_000;
/// Most dynamic redirects (with a placeholder or a splat), as on Cloudflare Pages: each one
/// may be tried against a request, so they are the expensive kind.
pub const MAX_DYNAMIC_REDIRECTS: usize = 100;
/// Longest line of a `_redirects` file, in characters (Cloudflare's limit).
pub const REDIRECT_LINE_MAX: usize = 1_000;
/// Most blocks (path patterns) in a `_headers` file, as on Cloudflare Pages.
pub const MAX_HEADER_BLOCKS: usize = 100;
/// Longest line of a `_headers` file, in characters (Cloudflare's limit).
pub const HEADER_LINE_MAX: usize = 2_000;
/// Most bytes in a `_headers` file: Cloudflare states none; 100 blocks of security headers
/// (a long Content-Security-Policy each) fit well within this, and a bound keeps a stray
/// multi-megabyte file from being parsed on every change.
pub const HEADERS_MAX_BYTES: usize = 256 * 1024;

/// The two rule files, by their names at the document root.
pub const REDIRECTS_FILE: &str = "_redirects";
/// See [`REDIRECTS_FILE`].
pub const HEADERS_FILE: &str = "_headers";

/// Fields the server alone writes: the message's framing (RFC 9112 §6), its validators (RFC
/// 9110 §8.8), its date and its hop-by-hop connection fields (RFC 9110 §7.6.1). A rule naming
/// one is a malformed line: it could desynchronize a client or a cache, or split a response.
/// `Server` is ours too, and `Location` belongs to redirects.
pub const PROTECTED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-range",
    "content-encoding",
    "etag",
    "last-modified",
    "date",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "trailer",
    "te",
    "server",
    "location",
];

/// Fields that hold one value, not a list (RFC 9110 §5.3): when several blocks set one, the
/// last in file order wins, since joining them with `, ` would make a value no client reads
/// (`text/html, text/plain`, two origins). Cloudflare joins every name alike.
pub const SINGLE_VALUED: &[&str] = &[
    "content-type",
    "content-disposition",
    "content-location",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-max-age",
    "strict-transport-security",
    "x-frame-options",
    "x-content-type-options",
    "expires",
    "retry-after",
    "age",
];

/// A rule file that cannot be used: where and why, displayed as `file:line: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The file (or flag) the error is in.
    pub file: String,
    /// Its 1-based line; 0 for the file as a whole (too large, say).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for RuleError {}

/// One token of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Bytes that must appear as they are.
    Lit(Vec<u8>),
    /// `:name`: one whole path segment, at least one byte, no `/`.
    Seg(String),
    /// `*`: any bytes, `/` included, possibly none (the `:splat`).
    Splat,
}

/// A compiled path pattern: an optional host (`https://host/path` patterns), then tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    host: Option<String>,
    toks: Vec<Tok>,
}

/// The values a match captured: placeholders by name, the splat under `splat`.
pub type Captures<'p> = Vec<(&'p str, &'p [u8])>;

impl Pattern {
    /// Parses a pattern: `/path` with `:name` segments and at most one `*`, or the same after
    /// `https://host` (matched against the request's `Host`, port ignored, as Cloudflare does).
    fn parse(text: &str) -> Result<Pattern, String> {
        let (host, path) = if let Some(rest) = text.strip_prefix("https://") {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            if host.is_empty() || host.contains(':') || !host.bytes().all(is_host_byte) {
                return Err(format!(
                    "{text:?} has no valid host (a port is not allowed)"
                ));
            }
            let path = if path.is_empty() { "/" } else { path };
            (Some(host.to_ascii_lowercase()), path)
        } else {
            (None, text)
        };
        if !path.starts_with('/') {
            return Err(format!("{text:?} must start with / or https://"));
        }
        if path.contains(['?', '#']) {
            return Err(format!(
                "{text:?}: query strings and fragments are not matched, only paths"
            ));
        }
        // Tokens are found in the text as written, so `%2A` and `%3A` stay literal; each
        // literal piece is then percent-decoded once, as request paths are.
        let bytes = path.as_bytes();
        let mut toks: Vec<Tok> = Vec::new();
        let mut shape = Vec::new(); // the decoded path, tokens as `x`: checked below
                                    // A literal is a slice of the text (tokens start at ASCII bytes, so never inside a
                                    // UTF-8 character), decoded as a request path is.
        let flush = |piece: &str, toks: &mut Vec<Tok>, shape: &mut Vec<u8>| {
            if piece.is_empty() {
                return Ok(());
            }
            let lit = crate::resolve::percent_decode(piece)
                .map_err(|_| format!("{text:?} has an invalid percent-escape"))?;
            shape.extend_from_slice(&lit);
            toks.push(Tok::Lit(lit));
            Ok::<(), String>(())
        };
        let mut start = 0; // where the literal being read began
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'*' {
                if toks.contains(&Tok::Splat) {
                    return Err(format!("{text:?} has more than one *"));
                }
                flush(&path[start..i], &mut toks, &mut shape)?;
                toks.push(Tok::Splat);
                shape.push(b'x');
                i += 1;
                start = i;
            } else if b == b':' && bytes[i - 1] == b'/' {
                let name_len = bytes[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                let end = i + 1 + name_len;
                let starts_well = bytes
                    .get(i + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
                if !starts_well || bytes.get(end).is_some_and(|c| *c != b'/') {
                    return Err(format!(
                        "{text:?}: a :placeholder is a whole path segment, a letter or _ then letters, digits and _"
                    ));
                }
                let name = &path[i + 1..end];
                if name == "splat" {
                    return Err(format!("{text:?}: :splat is the name of the * match"));
                }
                flush(&path[start..i], &mut toks, &mut shape)?;
                toks.push(Tok::Seg(name.to_string()));
                shape.push(b'x');
                i = end;
                start = i;
            } else {
                i += 1;
            }
        }
        flush(&path[start..], &mut toks, &mut shape)?;
        // Requests are matched normalized, so a pattern that is not could never match.
        let segments: Vec<&[u8]> = shape[1..].split(|c| *c == b'/').collect();
        let last = segments.len() - 1;
        for (n, seg) in segments.iter().enumerate() {
            if matches!(*seg, b"." | b"..") || (seg.is_empty() && n != last) {
                return Err(format!(
                    "{text:?}: not a normalized path (no //, . or .. segments)"
                ));
            }
        }
        Ok(Pattern { host, toks })
    }

    /// A pattern that is one literal path: looked up in a map by it (a host, if any, is
    /// checked when the candidate is tried).
    fn as_static(&self) -> Option<&[u8]> {
        match self.toks.as_slice() {
            [Tok::Lit(path)] => Some(path),
            _ => None,
        }
    }

    /// The first segment when it is literal and whole (`/assets/*` → `assets`): the key under
    /// which a dynamic pattern is indexed. `None` for `/*`, `/:lang/...`, `/*.js` or a host.
    fn first_segment(&self) -> Option<&[u8]> {
        let Some(Tok::Lit(lit)) = self.toks.first() else {
            return None;
        };
        let rest = &lit[1..];
        match rest.iter().position(|b| *b == b'/') {
            Some(end) if end > 0 => Some(&rest[..end]),
            // `/assets` followed by nothing: static, or by a token: not a whole segment.
            _ => None,
        }
    }

    /// Matches `path` (decoded, normalized) and `host` (lower case, no port), returning the
    /// captures. With one splat the match is unique: the tokens before it are matched from
    /// the start, those after it from the end, and the splat takes what lies between.
    fn matches<'p>(&'p self, host: Option<&str>, path: &'p [u8]) -> Option<Captures<'p>> {
        if let Some(want) = &self.host {
            if host != Some(want.as_str()) {
                return None;
            }
        }
        let mut caps = Vec::new();
        let split = self.toks.iter().position(|t| *t == Tok::Splat);
        let (front, back) = match split {
            Some(at) => (&self.toks[..at], &self.toks[at + 1..]),
            None => (&self.toks[..], &[][..]),
        };
        let mut start = 0;
        for tok in front {
            let rest = &path[start..];
            match tok {
                Tok::Lit(lit) if rest.starts_with(lit) => start += lit.len(),
                Tok::Seg(name) => {
                    let len = rest.iter().position(|b| *b == b'/').unwrap_or(rest.len());
                    if len == 0 {
                        return None;
                    }
                    caps.push((name.as_str(), &rest[..len]));
                    start += len;
                }
                _ => return None,
            }
        }
        if split.is_none() {
            return (start == path.len()).then_some(caps);
        }
        let mut end = path.len();
        for tok in back.iter().rev() {
            let rest = &path[start..end];
            match tok {
                Tok::Lit(lit) if rest.ends_with(lit) => end -= lit.len(),
                Tok::Seg(name) => {
                    let len = rest
                        .iter()
                        .rev()
                        .position(|b| *b == b'/')
                        .unwrap_or(rest.len());
                    if len == 0 {
                        return None;
                    }
                    caps.push((name.as_str(), &rest[rest.len() - len..]));
                    end -= len;
                }
                _ => return None,
            }
        }
        caps.push(("splat", &path[start..end]));
        Some(caps)
    }

    /// The names a match captures: the placeholders, and `splat` when there is a `*`.
    fn names(&self) -> Vec<&str> {
        self.toks
            .iter()
            .filter_map(|t| match t {
                Tok::Seg(n) => Some(n.as_str()),
                Tok::Splat => Some("splat"),
                Tok::Lit(_) => None,
            })
            .collect()
    }

    /// The byte a matching path ends with, when the pattern ends with a literal that is not a
    /// slash (which a redirect's path may lack).
    fn last_byte(&self) -> Option<u8> {
        match self.toks.last() {
            Some(Tok::Lit(lit)) => lit.last().copied().filter(|b| *b != b'/'),
            _ => None,
        }
    }

    /// Whether the pattern ends in `/` or `/*`, so that the path without a trailing slash
    /// may still meet it (redirects only).
    fn ends_in_slash(&self) -> bool {
        let lit = match self.toks.as_slice() {
            [.., Tok::Lit(lit), Tok::Splat] | [.., Tok::Lit(lit)] => lit,
            _ => return false,
        };
        lit.ends_with(b"/")
    }

    /// Whether the pattern has a placeholder or a splat (Cloudflare's "dynamic").
    fn is_dynamic(&self) -> bool {
        self.toks.iter().any(|t| !matches!(t, Tok::Lit(_)))
    }
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// FNV-1a: the index maps are built from the rule files and only looked up with request
/// paths, so no client can fill a bucket, and a path costs a few multiplications instead of
/// SipHash's rounds (bench S5 with rules present).
#[derive(Debug, Default, Clone, Copy)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Pattern lists keyed by bytes, with the lengths of the keys: a key whose length no key has
/// is not hashed at all (most request paths, next to a few thousand `/old-N` rules).
#[derive(Debug, Default)]
struct Map {
    map: HashMap<Vec<u8>, Vec<usize>, std::hash::BuildHasherDefault<Fnv>>,
    /// Bit `n` set: some key is `n` bytes long (bit 255: 255 or more).
    lengths: [u64; 4],
}

impl Map {
    fn push(&mut self, key: &[u8], i: usize) {
        let n = key.len().min(255);
        self.lengths[n / 64] |= 1 << (n % 64);
        self.map.entry(key.to_vec()).or_default().push(i);
    }

    fn get(&self, key: &[u8]) -> &[usize] {
        let n = key.len().min(255);
        if self.lengths[n / 64] & (1 << (n % 64)) == 0 {
            return &[];
        }
        self.map.get(key).map_or(&[], Vec::as_slice)
    }
}

/// Where the patterns of one file are found fast: static paths by the whole path, dynamic
/// ones by their first segment, or else by the last byte of the literal they end with
/// (`/*.js` by `s`), the rest in a list; every list in file order.
#[derive(Debug, Default)]
struct Index {
    by_path: Map,
    by_segment: Map,
    /// 256 lists once a pattern is filed here, indexed by the byte the path must end with.
    by_last: Vec<Vec<usize>>,
    always: Vec<usize>,
    /// Some pattern names a host, so the request's `Host` is needed.
    hosts: bool,
    /// Redirect matching, where a trailing slash is optional: static paths are keyed
    /// without one, and `/blog` is looked up under the segment `blog` too (for `/blog/*`).
    trim_slash: bool,
}

impl Index {
    fn add(&mut self, i: usize, pattern: &Pattern) {
        self.hosts |= pattern.host.is_some();
        if let Some(path) = pattern.as_static() {
            let key = match path {
                [rest @ .., b'/'] if self.trim_slash && !rest.is_empty() => rest,
                _ => path,
            };
            self.by_path.push(key, i);
        } else if let Some(seg) = pattern.first_segment() {
            self.by_segment.push(seg, i);
        } else if let Some(last) = pattern.last_byte() {
            self.by_last.resize_with(256, Vec::new);
            self.by_last[usize::from(last)].push(i);
        } else {
            self.always.push(i);
        }
    }

    /// The patterns that may match `path`, in file order (the three lists merged as they
    /// are walked; nothing is allocated).
    fn candidates(&self, path: &[u8]) -> Candidates<'_> {
        let empty: &[usize] = &[];
        let exact = self.by_path.get(path);
        let segment = first_segment_of(path).or_else(|| {
            // `/blog` may meet `/blog/*` when the trailing slash is optional.
            path.get(1..).filter(|s| self.trim_slash && !s.is_empty())
        });
        let seg = segment.map_or(empty, |s| self.by_segment.get(s));
        let last = path
            .last()
            .and_then(|b| self.by_last.get(usize::from(*b)))
            .map_or(empty, Vec::as_slice);
        Candidates {
            lists: [exact, seg, last, &self.always],
        }
    }
}

/// The merge of an [`Index`]'s sorted lists (each pattern is in one list only).
struct Candidates<'a> {
    lists: [&'a [usize]; 4],
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let (k, first) = self
            .lists
            .iter()
            .enumerate()
            .filter_map(|(k, l)| l.first().map(|v| (k, *v)))
            .min_by_key(|(_, v)| *v)?;
        self.lists[k] = &self.lists[k][1..];
        Some(first)
    }
}

/// The first segment of a path with more after it (`/assets/app.js` → `assets`).
fn first_segment_of(path: &[u8]) -> Option<&[u8]> {
    let rest = path.get(1..)?;
    let end = rest.iter().position(|b| *b == b'/')?;
    Some(&rest[..end])
}

/// The path a request is matched by: percent-decoded once and normalized like `resolve` does
/// (a trailing slash is kept). Borrowed when the raw path is already in that form, which is
/// the common case. `None` for a path `resolve` refuses anyway (a bad escape, a climb).
pub fn match_path(raw: &str) -> Option<Cow<'_, [u8]>> {
    let b = raw.as_bytes();
    if is_plain(b) {
        return Some(Cow::Borrowed(b));
    }
    let decoded = crate::resolve::percent_decode(raw).ok()?;
    let segments = crate::resolve::normalize(&decoded).ok()?;
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    let dir = matches!(
        decoded.rsplit(|c| *c == b'/').next(),
        Some(b"" | b"." | b"..")
    );
    if out.is_empty() || dir {
        out.push(b'/');
    }
    Some(Cow::Owned(out))
}

/// Whether a raw path is already decoded and normalized: it starts with `/`, has no `%`, and
/// no segment but the last is empty, `.` or `..` (the last may be empty: a trailing slash).
/// One pass, since every request asks.
fn is_plain(b: &[u8]) -> bool {
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for (i, &c) in b.iter().enumerate().skip(1) {
        if c == b'%' {
            return false;
        }
        if c == b'/' {
            if matches!(&b[start..i], b"" | b"." | b"..") {
                return false;
            }
            start = i + 1;
        }
    }
    !matches!(&b[start..], b"." | b"..")
}

/// Whether a request path names one of the rule files at the root (`/_headers`, and also
/// `/%5Fheaders` or `/x/../_headers`).
pub fn is_rule_file(raw: &str) -> bool {
    match_path(raw).is_some_and(|p| names_rule_file(&p))
}

/// [`is_rule_file`] for a path in the [`match_path`] form.
pub fn names_rule_file(path: &[u8]) -> bool {
    path.strip_prefix(b"/")
        .is_some_and(|n| n == HEADERS_FILE.as_bytes() || n == REDIRECTS_FILE.as_bytes())
}

/// What a `_redirects` rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleStatus {
    /// 301, 302, 303, 307 or 308: a redirect to the target.
    Redirect(u16),
    /// 200: the target file is served in place of the path.
    Rewrite,
    /// 404, 410 or 451: the target page is served with this status.
    Page(u16),
}

impl RuleStatus {
    fn parse(s: &str) -> Result<RuleStatus, String> {
        match s {
            "301" | "302" | "303" | "307" | "308" => Ok(RuleStatus::Redirect(s.parse().unwrap_or(301))),
            "200" => Ok(RuleStatus::Rewrite),
            "404" | "410" | "451" => Ok(RuleStatus::Page(s.parse().unwrap_or(404))),
            _ => Err(format!(
                "status {s:?} is not one of 200, 301, 302, 303, 307, 308, 404, 410, 451 (with an optional !)"
            )),
        }
    }
}

/// One piece of a rule's target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A placeholder of the source, or `splat`; `true` when it stands in the query, where
    /// `&`, `=` and `+` are encoded too, so a value cannot add a parameter.
    Var(String, bool),
}

/// One `_redirects` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Redirect {
    from: Pattern,
    to: Vec<Part>,
    /// The target has its own query string, so the request's is not carried over.
    to_has_query: bool,
    /// The target is a path starting with a single `/`: a value that makes it start with `//`
    /// or `/\` is kept a path (see [`location_guard`]).
    to_is_path: bool,
    status: RuleStatus,
    force: bool,
}

/// What a matching `_redirects` rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Redirect, rewrite or page.
    pub status: RuleStatus,
    /// The `Location` of a redirect (with the query carried over), or the path (percent-
    /// encoded, no query) of the file to serve.
    pub target: String,
}

/// The compiled `_redirects` file.
#[derive(Debug, Default)]
pub struct Redirects {
    rules: Vec<Redirect>,
    index: Index,
    forced: bool,
}

impl Redirects {
    /// Parses a `_redirects` file (`file` names it in errors).
    pub fn parse(file: &str, text: &[u8]) -> Result<Redirects, RuleError> {
        let err = |line: usize, reason: String| rule_error(file, line, reason);
        let mut out = Redirects::default();
        out.index.trim_slash = true;
        let (mut statics, mut dynamics) = (0, 0);
        for (n, line) in checked_lines(file, text, REDIRECTS_MAX_BYTES, REDIRECT_LINE_MAX)? {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let rule = parse_redirect(line).map_err(|r| err(n, r))?;
            if rule.from.is_dynamic() {
                dynamics += 1;
                if dynamics > MAX_DYNAMIC_REDIRECTS {
                    return Err(err(n, format!("more than {MAX_DYNAMIC_REDIRECTS} dynamic rules (with :placeholders or *)")));
                }
            } else {
                statics += 1;
                if statics > MAX_STATIC_REDIRECTS {
                    return Err(err(
                        n,
                        format!("more than {MAX_STATIC_REDIRECTS} static rules"),
                    ));
                }
            }
            out.forced |= rule.force;
            out.index.add(out.rules.len(), &rule.from);
            out.rules.push(rule);
        }
        Ok(out)
    }

    /// How many rules were loaded.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule is forced (`!`): only then must an existing path be checked too.
    pub fn any_forced(&self) -> bool {
        self.forced
    }

    /// The first rule (in file order) that matches the request; with `forced_only`, the
    /// first forced one (the path exists, so the others do not apply). `path` is the
    /// [`match_path`] form; a trailing slash is optional for a match, as on Netlify, and
    /// `/blog/*` also matches `/blog`.
    pub fn find(
        &self,
        host: Option<&str>,
        path: &[u8],
        query: Option<&str>,
        forced_only: bool,
    ) -> Option<Action> {
        if self.rules.is_empty() || (forced_only && !self.forced) {
            return None;
        }
        let trimmed = match path {
            [rest @ .., b'/'] if !rest.is_empty() => rest,
            _ => path,
        };
        // The path with a trailing slash, made only for a rule that ends in one.
        let mut slashed: Option<Vec<u8>> = None;
        for i in self.index.candidates(trimmed) {
            let rule = &self.rules[i];
            if forced_only && !rule.force {
                continue;
            }
            // The path as sent first, so `/docs/*` gives `guide/` for `/docs/guide/`.
            let caps = rule.from.matches(host, path);
            if let Some(caps) = caps.or_else(|| rule.from.matches(host, trimmed)) {
                return Some(rule.action(&caps, query));
            }
            if trimmed.len() > 1 && rule.from.ends_in_slash() {
                let with_slash = slashed.get_or_insert_with(|| [trimmed, b"/"].concat());
                if let Some(caps) = rule.from.matches(host, with_slash) {
                    return Some(rule.action(&caps, query));
                }
            }
        }
        None
    }
}

impl Redirect {
    fn action(&self, caps: &Captures<'_>, query: Option<&str>) -> Action {
        let mut target = String::new();
        render_parts(&self.to, caps, false, &mut target);
        if self.to_is_path {
            location_guard(&mut target);
        }
        if let RuleStatus::Redirect(_) = self.status {
            if let (Some(q), false) = (query, self.to_has_query) {
                // Before the target's fragment, not into it (a captured `#` is encoded).
                let at = target.find('#').unwrap_or(target.len());
                target.insert_str(at, &format!("?{q}"));
            }
        }
        Action {
            status: self.status,
            target,
        }
    }
}

/// A path `Location` that came out as `//host...` or `/\host...` would be read by browsers
/// as another host (RFC 3986 §4.2); `/.` in front keeps it a path here (as `resolve` does).
pub fn location_guard(target: &mut String) {
    if target.starts_with("//") || target.starts_with("/\\") {
        target.insert_str(0, "/.");
    }
}

/// Appends `bytes` percent-encoded for a path: RFC 3986 `pchar` and `/` stay as they are
/// except `%`, `?`, `#`, `\` and anything outside visible ASCII, so a captured value can
/// neither end the path, nor add a header line, nor turn into another host.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    percent_encode(bytes, b"-._~!$&'()*+,;=:@/", out);
}

/// Appends `bytes` percent-encoded for a query value: only unreserved bytes and `/` stay, so
/// a value cannot end the query nor add a parameter (`&`, `=`) to it.
fn encode_query_into(bytes: &[u8], out: &mut String) {
    percent_encode(bytes, b"-._~/", out);
}

fn parse_redirect(line: &str) -> Result<Redirect, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (from, to, status) = match fields.as_slice() {
        [from, to] => (*from, *to, None),
        [from, to, status] => (*from, *to, Some(*status)),
        [_] => return Err("a rule needs a source and a target".into()),
        _ => {
            return Err(
                "more than three fields: query-string matches and conditions (Country=, Language=, Role=) are not supported".into(),
            )
        }
    };
    let (status, force) = match status {
        None => (RuleStatus::Redirect(301), false),
        Some(s) => match s.strip_suffix('!') {
            Some(s) => (RuleStatus::parse(s)?, true),
            None => (RuleStatus::parse(s)?, false),
        },
    };
    let from = Pattern::parse(from)?;
    let absolute = to.starts_with("https://") || to.starts_with("http://");
    if !absolute && !to.starts_with('/') {
        return Err(format!(
            "target {to:?} must start with /, http:// or https://"
        ));
    }
    if absolute && !matches!(status, RuleStatus::Redirect(_)) {
        return Err(format!(
            "target {to:?}: a {} rule serves a file under the root; proxying to another host is not supported",
            match status {
                RuleStatus::Rewrite => 200,
                RuleStatus::Page(c) | RuleStatus::Redirect(c) => c,
            }
        ));
    }
    // A 200 or 404 rule serves a file: a query or a fragment in its target is no part of the
    // path (the `Action` is the path alone).
    let to = match status {
        RuleStatus::Redirect(_) => to,
        _ => to.split(['?', '#']).next().unwrap_or(to),
    };
    if to.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "target {to:?} must be visible ASCII (percent-encode the rest)"
        ));
    }
    let names = from.names();
    let parts = template(to, &names, |name| {
        Err(format!(
            "target uses :{name}, which the source {:?} does not capture",
            fields[0]
        ))
    })?;
    Ok(Redirect {
        from,
        to_has_query: to.split('#').next().is_some_and(|p| p.contains('?')),
        to_is_path: !absolute && !to.starts_with("//"),
        to: parts,
        status,
        force,
    })
}

/// Splits a target or a header value into text and `:name` parts, where `names` are what the
/// pattern captures. A `:` not followed by a name (`https:`, a port, `data:`) is text; an
/// unknown name is what `unknown` says (an error in a redirect target, text in a header
/// value).
fn template(
    text: &str,
    names: &[&str],
    unknown: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(':') {
        let after = &rest[at + 1..];
        let len = after
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        let name = &after[..len];
        let is_name = len > 0 && !name.as_bytes()[0].is_ascii_digit();
        if !is_name || !names.contains(&name) {
            // `/wiki/Help:Contents` is text; `/:nmae` is a typo worth an error.
            let segment_start = (at == 0 && plain.ends_with('/')) || rest[..at].ends_with('/');
            if is_name && segment_start {
                unknown(name)?;
            }
            plain.push_str(&rest[..=at]);
            rest = after;
            continue;
        }
        plain.push_str(&rest[..at]);
        let in_query = parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains('?')))
            || plain.contains('?');
        if !plain.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut plain)));
        }
        parts.push(Part::Var(name.to_string(), in_query));
        rest = &after[len..];
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        parts.push(Part::Text(plain));
    }
    Ok(parts)
}

/// Renders template `parts` with the captures of a match, each value percent-encoded: for a
/// path ([`encode_into`]), or like a query value ([`encode_query_into`]) where it stands in a
/// target's query or, with `header`, anywhere in a header value, so that it cannot add a
/// parameter, an attribute (`;`, `=`) or an item (`,`), nor end a quoted string.
fn render_parts(parts: &[Part], caps: &Captures<'_>, header: bool, out: &mut String) {
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Var(name, in_query) => {
                let value = caps
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&[][..], |c| c.1);
                if *in_query || header {
                    encode_query_into(value, out);
                } else {
                    encode_into(value, out);
                }
            }
        }
    }
}

/// The lines of a file with their 1-based numbers; `\n` or `\r\n` ends a line. A UTF-8
/// byte-order mark (which some Windows editors write) is not part of the first line.
fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    text.split(|b| *b == b'\n').enumerate().map(|(i, l)| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        (i + 1, l)
    })
}

/// The error for `line` of `file` (0: the file as a whole).
fn rule_error(file: &str, line: usize, reason: String) -> RuleError {
    RuleError {
        file: file.to_string(),
        line,
        reason,
    }
}

/// The error for a rule file of `len` bytes, more than `max`.
pub fn oversize(file: &str, len: u64, max: usize) -> RuleError {
    rule_error(file, 0, format!("{len} bytes, more than the {max} allowed"))
}

/// The numbered lines of a rule file, each checked by [`check_line`], when the file is at
/// most `max_bytes` long.
fn checked_lines<'t>(
    file: &str,
    text: &'t [u8],
    max_bytes: usize,
    max_chars: usize,
) -> Result<Vec<(usize, &'t str)>, RuleError> {
    if text.len() > max_bytes {
        return Err(oversize(file, text.len() as u64, max_bytes));
    }
    lines(text)
        .map(|(n, line)| {
            check_line(line, max_chars)
                .map(|l| (n, l))
                .map_err(|r| rule_error(file, n, r))
        })
        .collect()
}

/// A line as text: UTF-8, at most `max` characters, and no control character but tab (a
/// stray CR or a NUL could split a response or hide a rule).
fn check_line(line: &[u8], max: usize) -> Result<&str, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the line is not UTF-8".to_string())?;
    let count = text.chars().count();
    if count > max {
        return Err(format!("{count} characters, more than the {max} allowed"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(format!("control character {c:?} in the line"));
    }
    Ok(text)
}

/// One line of a `_headers` block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `Name: value`.
    Set(String, String),
    /// `Name: value` where the value uses what the pattern captures (`:name`, `:splat`),
    /// as on Cloudflare; the values are percent-encoded, so they add no control character.
    SetFrom(String, Vec<Part>),
    /// `! Name`: removes what broader blocks (and the server's defaults) set.
    Detach(String),
}

/// A `_headers` block: a pattern and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    pattern: Pattern,
    entries: Vec<Entry>,
}

/// The compiled `_headers` file, with the `--header` fields as an implicit first block that
/// matches every response.
#[derive(Debug, Default)]
pub struct HeaderRules {
    global: Vec<Entry>,
    blocks: Vec<Block>,
    index: Index,
}

impl HeaderRules {
    /// Parses a `_headers` file (`file` names it in errors).
    pub fn parse(file: &str, text: &[u8]) -> Result<HeaderRules, RuleError> {
        let err = |line: usize, reason: String| rule_error(file, line, reason);
        let mut blocks: Vec<Block> = Vec::new();
        for (n, line) in checked_lines(file, text, HEADERS_MAX_BYTES, HEADER_LINE_MAX)? {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                let Some(block) = blocks.last_mut() else {
                    return Err(err(n, "a header line before any path pattern".into()));
                };
                let entry = match parse_entry(trimmed).map_err(|r| err(n, r))? {
                    Entry::Set(name, value) if value.contains(':') => {
                        let parts = template(&value, &block.pattern.names(), |_| Ok(()))
                            .map_err(|r| err(n, r))?;
                        if parts.iter().any(|p| matches!(p, Part::Var(..))) {
                            Entry::SetFrom(name, parts)
                        } else {
                            Entry::Set(name, value)
                        }
                    }
                    entry => entry,
                };
                block.entries.push(entry);
            } else {
                if blocks.len() == MAX_HEADER_BLOCKS {
                    return Err(err(n, format!("more than {MAX_HEADER_BLOCKS} blocks")));
                }
                if trimmed.contains(char::is_whitespace) {
                    return Err(err(
                        n,
                        "a path pattern stands alone on its line; indent header lines".into(),
                    ));
                }
                let pattern = Pattern::parse(trimmed).map_err(|r| err(n, r))?;
                blocks.push(Block {
                    pattern,
                    entries: Vec::new(),
                });
            }
        }
        let mut index = Index::default();
        for (i, b) in blocks.iter().enumerate() {
            index.add(i, &b.pattern);
        }
        Ok(HeaderRules {
            global: Vec::new(),
            blocks,
            index,
        })
    }

    /// Adds the `--header` fields (each `Name: value`), which every response carries.
    pub fn with_global(mut self, global: &[String]) -> Result<HeaderRules, RuleError> {
        self.global = parse_globals(global)?;
        Ok(self)
    }

    /// How many blocks the file has.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The fields for a response that is not a file's: the `--header` ones.
    pub fn global(&self) -> Fields<'_> {
        let mut f = Fields::default();
        f.apply(&self.global, &Vec::new());
        f
    }

    /// The fields for the answer about `path` (the [`match_path`] form): `--header`, then
    /// every matching block in file order.
    pub fn for_path(&self, host: Option<&str>, path: &[u8]) -> Fields<'_> {
        let mut f = self.global();
        if self.blocks.is_empty() {
            return f;
        }
        for i in self.index.candidates(path) {
            let block = &self.blocks[i];
            if let Some(caps) = block.pattern.matches(host, path) {
                f.apply(&block.entries, &caps);
            }
        }
        f
    }
}

/// Checks one `--header` value: a `_headers` line that sets a field.
pub fn check_header(field: &str) -> Result<(), String> {
    global_entry(field).map(drop)
}

/// A `--header` value as the entry it sets.
fn global_entry(field: &str) -> Result<Entry, String> {
    check_line(field.as_bytes(), HEADER_LINE_MAX)?;
    match parse_entry(field.trim())? {
        Entry::Detach(_) => Err("a --header sets a field (Name: value)".into()),
        set => Ok(set),
    }
}

/// The `--header` fields as entries.
fn parse_globals(global: &[String]) -> Result<Vec<Entry>, RuleError> {
    global
        .iter()
        .map(|h| global_entry(h).map_err(|r| rule_error("--header", 0, format!("{h:?}: {r}"))))
        .collect()
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    if let Some(name) = line.strip_prefix('!') {
        let name = name.trim();
        check_name(name)?;
        return Ok(Entry::Detach(name.to_string()));
    }
    let Some((name, value)) = line.split_once(':') else {
        return Err(format!("{line:?} is not Name: value (or ! Name)"));
    };
    let name = name.trim_end();
    check_name(name)?;
    Ok(Entry::Set(name.to_string(), value.trim().to_string()))
}

/// A field name is an RFC 9110 §5.6.2 token, and not one the server alone writes.
fn check_name(name: &str) -> Result<(), String> {
    if !crate::request::is_token(name.as_bytes()) {
        return Err(format!(
            "{name:?} is not a header name (RFC 9110 §5.6.2 token)"
        ));
    }
    if PROTECTED.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "{name} is written by the server and cannot be set or removed"
        ));
    }
    Ok(())
}

/// The header fields a set of rules gives one response: the names set (values of one name
/// joined with `, `, RFC 9110 §5.3) and the names detached. The server leaves out a default
/// field of its own (`X-Content-Type-Options`, `Content-Type`, ...) whenever the rules name it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields<'a> {
    set: Vec<(&'a str, Cow<'a, str>)>,
    detached: Vec<&'a str>,
}

impl<'a> Fields<'a> {
    fn apply(&mut self, entries: &'a [Entry], caps: &Captures<'_>) {
        for e in entries {
            match e {
                Entry::Set(name, value) => self.set(name, Cow::Borrowed(value)),
                Entry::SetFrom(name, parts) => {
                    let mut value = String::new();
                    render_parts(parts, caps, true, &mut value);
                    self.set(name, Cow::Owned(value));
                }
                Entry::Detach(name) => {
                    self.set.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    self.detached.push(name);
                }
            }
        }
    }

    /// Sets `name`, or adds `value` to the values it has: joined with `, ` for a list, in
    /// place of them for a [`SINGLE_VALUED`] field, and as a field line of its own for
    /// `Set-Cookie` (RFC 9110 §5.3: its values cannot be joined).
    fn set(&mut self, name: &'a str, value: Cow<'a, str>) {
        if name.eq_ignore_ascii_case("set-cookie") {
            if !value.is_empty() {
                self.set.push((name, value));
            }
            return;
        }
        let single = SINGLE_VALUED.iter().any(|s| s.eq_ignore_ascii_case(name));
        match self
            .set
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            // An empty value adds nothing to a list (RFC 9110 §5.6.1).
            Some((_, v)) if v.is_empty() || single => *v = value,
            Some(_) if value.is_empty() => {}
            Some((_, v)) => {
                let joined = v.to_mut();
                joined.push_str(", ");
                joined.push_str(&value);
            }
            None => self.set.push((name, value)),
        }
    }

    /// Whether the rules set or detach `name`, so the server's default for it is left out.
    pub fn names(&self, name: &str) -> bool {
        self.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            || self.detached.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The fields to write, in the order the rules first set them.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set.iter().map(|(n, v)| (*n, v.as_ref()))
    }

    /// Whether there is nothing to add or leave out.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.detached.is_empty()
    }
}

/// Both rule files, compiled.
#[derive(Debug, Default)]
pub struct SiteRules {
    /// `_redirects`.
    pub redirects: Redirects,
    /// `_headers` and `--header`.
    pub headers: HeaderRules,
}

impl SiteRules {
    /// Whether a pattern names a host (`https://host/path`), so matching needs `Host`.
    pub fn uses_hosts(&self) -> bool {
        self.redirects.index.hosts || self.headers.index.hosts
    }
}

#[cfg(test)]
mod tests;
