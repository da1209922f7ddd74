//! The answer to a request: from a parsed head, the peer's address and the shared state to a
//! description of the reply (its status, the bytes or file ranges to send, and whether the
//! connection may stay open after it). What happens on the socket is `connection.rs`'s
//! business; nothing here reads or writes one, waits for a client, or knows the keeper or the
//! pool, so every answer is table-tested on a temporary directory.
//!
//! The pipeline, in order ([`answer`]):
//! 1. method: GET and HEAD are served, OPTIONS lists what is allowed (with the `_headers`
//!    fields of the path: a CORS preflight), DELETE (with `--allow-write`) goes to
//!    [`upload::delete`], anything else is 405 with `Allow`;
//! 2. the health path, answered from the stop token;
//! 3. site rules that come first: the rule files themselves are 404, and a forced
//!    `_redirects` rule (`301!`) applies whether or not the path exists;
//! 4. the small-file cache ([`FileCache::lookup`]): a fresh file or a remembered 404;
//! 5. [`resolve::resolve`]: a file (with `--clean-urls`, an existing `.html` file is sent to
//!    its clean URL, and a missing `/about` is `about.html`), a slash redirect, with
//!    `--list-dirs` a directory to list ([`Ask::listing`], see `listing.rs`), or an error;
//! 6. the representation: a precompressed sidecar if the client takes it
//!    ([`encoding::choose`]), from the cache or from disk;
//! 7. conditionals, then ranges ([`conditional::evaluate`], RFC 9110 §13 and §14);
//! 8. not found: the first matching `_redirects` rule (a redirect, a rewrite served like a
//!    request for its target but never ruled again, or a 404/410/451 page), else the
//!    `--fallback` page for a path without an extension, else the `--404` page, else the
//!    built-in page. Both pages are loaded once and revalidated like cached files
//!    ([`FileCache::page`]), so a deep link of a single-page app costs no system call.
//!
//! Every answer carries the `--header` fields; the answers about a path's file (200, 206,
//! 304, its 404 and the pages of rules) carry its `_headers` blocks too, which may replace
//! the defaults they name, never the framing or the validators ([`site_rules::PROTECTED`]).
//!
//! Request errors become a status in one place, [`HttpError::status`]. The keep-alive flag
//! comes in decided (the rule lives in `connection.rs`); an answer may only narrow it, when
//! an error leaves the framing unknown.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cache::{self, Cached, CachedRep, FileCache, LargeMeta, Lookup, Page, PAGE_MAX_BYTES};
use crate::conditional::{self, Plan, Preconditions};
use crate::config::ZERO_COPY_MIN;
use crate::encoding::{self, Coding};
use crate::error::HttpError;
use crate::listing::{self, Format, View};
use crate::outgoing::{Body, Generate, Outgoing};
use crate::request::{Method, RequestHead, Version};
use crate::resolve::{self, Directory, FileInfo, FileStamp, ResolveOptions, Resolved};
use crate::response::{self, Head, HttpDate, Status, ALLOW, ALLOW_WRITE};
use crate::site_rules::{self, Action, Fields, RuleStatus, SiteRules};
use crate::snapshot::{Snapshot, Snapshots};
use crate::state::{Shared, Slot};
use crate::upload;

/// The interim response that invites an upload's body (RFC 9110 §10.1.1, §15.2.1).
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A reply: the status (for the log), the response, and whether the connection stays open
/// after it (never more than the caller allowed).
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: Status,
    pub out: Outgoing,
    pub keep: bool,
}

/// Answers `head` from `peer`. `keep` is the connection's keep-alive decision so far;
/// `refused` is the error of a PUT that could not start (its answer is that error).
pub(crate) fn answer(
    head: &RequestHead,
    peer: SocketAddr,
    keep: bool,
    refused: Option<HttpError>,
    shared: &Shared,
) -> Reply {
    let rules = shared.rules.current();
    let path = site_rules::match_path(&head.path);
    let host = rules.uses_hosts().then(|| host_of(head)).flatten();
    let ask = Ask {
        head,
        peer,
        keep,
        snapshots: &shared.snapshots,
        rules: &rules,
        path: path.as_deref(),
        host: host.as_deref(),
    };
    let reply = match refused {
        Some(e) => Ok(ask.error(e)),
        None => ask.respond(shared),
    };
    reply.unwrap_or_else(|e| {
        // Reading a small file into the response failed after it was opened.
        log::error!("{peer}: cannot read {:?}: {e}", head.target);
        let status = Status::InternalServerError;
        Reply {
            status,
            out: canned(status, ask.head_only(), Some("close"), &[], &ask.global()),
            keep: false,
        }
    })
}

/// The answer to a PUT whose body was received (or refused): 201 when the file is new, 204
/// when it replaced one, else the error's status.
pub(crate) fn put_reply(
    version: Version,
    keep: bool,
    result: Result<bool, HttpError>,
    fields: &Fields,
) -> Reply {
    match result {
        Ok(created) => {
            let status = if created {
                Status::Created
            } else {
                Status::NoContent
            };
            let mut h = Head::new(status);
            if created {
                h.header("Content-Length", 0u64);
            }
            write_fields(&mut h, fields, &[]);
            connection_header(&mut h, version, keep);
            Reply {
                status,
                out: no_body(h),
                keep,
            }
        }
        Err(e) => error_reply(&e, version, false, keep, &[], fields),
    }
}

/// The answer to a request that could not be parsed (or whose head took too long): the
/// error's status, and always `Connection: close`.
pub(crate) fn malformed(err: &HttpError, fields: &Fields) -> Reply {
    let status = err.status();
    Reply {
        status,
        out: canned(status, false, Some("close"), &[], fields),
        keep: false,
    }
}

/// A GET or HEAD of the health path: answered by [`Ask::health`] and logged at debug only
/// (other methods there are ordinary requests: 405, in the access log).
pub(crate) fn is_health_probe(head: &RequestHead, shared: &Shared) -> bool {
    is_get_of(head, shared.config.health_path.as_deref())
}

/// A GET or HEAD of the metrics path (`--metrics-path`): answered by [`Ask::metrics`].
pub(crate) fn is_scrape(head: &RequestHead, shared: &Shared) -> bool {
    is_get_of(head, shared.config.metrics_path.as_deref())
}

/// A health probe or a metrics scrape: logged at debug only, never in the access log (a
/// monitor asks every few seconds; its lines would drown the visitors').
pub(crate) fn is_probe(head: &RequestHead, shared: &Shared) -> bool {
    is_health_probe(head, shared) || is_scrape(head, shared)
}

fn is_get_of(head: &RequestHead, path: Option<&str>) -> bool {
    matches!(head.method, Method::Get | Method::Head) && path == Some(head.path.as_str())
}

/// What every responder needs to know about the request being answered.
#[derive(Clone, Copy)]
struct Ask<'a> {
    head: &'a RequestHead,
    peer: SocketAddr,
    keep: bool,
    /// Where large bodies are sent from without copying.
    snapshots: &'a Snapshots,
    /// `_redirects`, `_headers` and `--header`, one version for the whole answer.
    rules: &'a SiteRules,
    /// The path as rules match it ([`site_rules::match_path`]), worked out once.
    path: Option<&'a [u8]>,
    /// The request's host as rules match it ([`host_of`]), when a rule names a host.
    host: Option<&'a str>,
}

/// The representation chosen for a request: the file or one of its precompressed sidecars,
/// read from disk or from memory.
struct Chosen {
    len: u64,
    modified: Option<SystemTime>,
    etag: String,
    coding: Option<Coding>,
    /// Sidecars exist, so every answer says `Vary: Accept-Encoding`.
    has_variants: bool,
    content_type: &'static str,
    body: Source,
}

/// Where a representation's bytes come from.
enum Source {
    /// An open file and its stamp at open.
    File(File, FileStamp),
    /// A cached file and the index of the representation in [`Cached::reps`].
    Memory(Arc<Cached>, usize),
    /// A large file's snapshot, found by path in the cache.
    Snapshot(Arc<Snapshot>),
}

/// A configured page, from memory when it fits ([`PAGE_MAX_BYTES`]) and the cache is on.
enum PageRep {
    Memory(Arc<Cached>),
    Disk(FileInfo),
}

impl<'a> Ask<'a> {
    fn head_only(&self) -> bool {
        self.head.method == Method::Head
    }

    /// The `Connection` field this answer needs, if any.
    fn connection(&self) -> Option<&'static str> {
        connection_value(self.head.version, self.keep)
    }

    /// Builds the response to the request (steps 1 to 7 of the module docs).
    fn respond(self, shared: &Shared) -> std::io::Result<Reply> {
        let head = self.head;
        let config = &shared.config;
        let allow = if config.allow_write {
            ALLOW_WRITE
        } else {
            ALLOW
        };
        match head.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                // RFC 9110 §9.3.7: OPTIONS (on a path or `*`) lists what we allow; 204 has
                // no Content-Length (RFC 9110 §8.6). A CORS preflight (Fetch standard) gets
                // the fields of the `_headers` blocks that match the path.
                let mut h = Head::new(Status::NoContent);
                h.header("Allow", allow);
                let fields = if head.path == "*" {
                    self.global()
                } else {
                    self.fields()
                };
                write_fields(&mut h, &fields, &[]);
                return Ok(self.empty(h, Status::NoContent));
            }
            Method::Delete if config.allow_write => {
                return Ok(match upload::delete(head, shared) {
                    Ok(()) => {
                        let mut h = Head::new(Status::NoContent);
                        write_fields(&mut h, &self.global(), &[]);
                        self.empty(h, Status::NoContent)
                    }
                    Err(e) => self.error(e),
                });
            }
            _ => {
                // RFC 9110 §15.5.6: 405 lists the methods the resource does allow.
                return Ok(error_reply(
                    &HttpError::MethodNotAllowed,
                    head.version,
                    self.head_only(),
                    self.keep,
                    &[("Allow", allow)],
                    &self.global(),
                ));
            }
        }
        if is_health_probe(head, shared) {
            return Ok(self.health(shared));
        }
        if is_scrape(head, shared) {
            return Ok(self.metrics(shared));
        }
        // The rule files are never served, whatever a catch-all rule says.
        if config.site_rules && self.path.is_some_and(site_rules::names_rule_file) {
            return self.not_found_page(shared);
        }
        // A forced rule (`301!`) applies whether or not the path exists (`find` answers at
        // once when there is none).
        if let Some(action) = self.rule(true) {
            return self.act(action, shared);
        }
        // `--clean-urls`: an `.html` file that exists is sent to its clean URL (308); a
        // missing one goes on to the rules, which may name it (`/old.html /new 301`).
        let clean = config
            .clean_urls
            .then(|| clean_location(&head.path, head.query.as_deref()))
            .flatten();
        // Before the lookup and the resolve: see `FileCache::epoch`.
        let epoch = shared.cache.epoch();
        let lookup = shared.cache.lookup(&head.path);
        if let (Some(location), Lookup::File(_) | Lookup::Large(..)) = (&clean, &lookup) {
            return Ok(self.redirect(Status::PermanentRedirect, location));
        }
        match lookup {
            Lookup::File(entry) => return self.cached(entry),
            Lookup::Large(snapshot, meta) => return self.large(snapshot, &meta),
            Lookup::Missing => return self.missing(shared),
            Lookup::Unknown => {}
        }
        let root = &config.root;
        let resolved = resolve::resolve(root, &head.path, head.query.as_deref(), &options(shared));
        if let (Some(location), Ok(Resolved::File(_))) = (&clean, &resolved) {
            return Ok(self.redirect(Status::PermanentRedirect, location));
        }
        match resolved {
            Ok(Resolved::File(file)) => self.file(file, root, Some((&shared.cache, epoch))),
            Ok(Resolved::Redirect(location)) => {
                Ok(self.redirect(Status::MovedPermanently, &location))
            }
            Ok(Resolved::Directory(dir)) => self.listing(dir, shared),
            Err(HttpError::NotFound) => {
                if let Some(reply) = self.clean_file(shared, epoch)? {
                    return Ok(reply);
                }
                shared.cache.insert_missing(&head.path, epoch);
                self.missing(shared)
            }
            Err(e) => Ok(self.error(e)),
        }
    }

    /// The `_headers` fields for the answer about this path (with `--header`'s).
    fn fields(&self) -> Fields<'a> {
        match self.path {
            Some(path) => self.rules.headers.for_path(self.host, path),
            None => self.global(),
        }
    }

    /// The `--header` fields, which every answer carries.
    fn global(&self) -> Fields<'a> {
        self.rules.headers.global()
    }

    /// The first `_redirects` rule that matches (only the forced ones with `forced_only`).
    fn rule(&self, forced_only: bool) -> Option<Action> {
        let query = self.head.query.as_deref();
        self.rules
            .redirects
            .find(self.host, self.path?, query, forced_only)
    }

    /// A path that does not exist: the first matching `_redirects` rule, else
    /// [`Ask::not_found`].
    fn missing(self, shared: &Shared) -> std::io::Result<Reply> {
        match self.rule(false) {
            Some(action) => self.act(action, shared),
            None => self.not_found(shared),
        }
    }

    /// Carries out a `_redirects` rule. A rewrite serves its target as a request for it
    /// would be served (from the cache, else resolved under the root with every check), but
    /// never applies a rule again: a missing target is a 404, not another rewrite.
    fn act(self, action: Action, shared: &Shared) -> std::io::Result<Reply> {
        let root = &shared.config.root;
        let target = action.target.as_str();
        match action.status {
            RuleStatus::Redirect(code) => Ok(self.redirect(Status::of_rule(code), target)),
            RuleStatus::Rewrite => {
                let epoch = shared.cache.epoch();
                let key = Some((&shared.cache, epoch, target));
                match shared.cache.lookup(target) {
                    Lookup::File(entry) => return self.cached(entry),
                    Lookup::Large(snapshot, meta) => return self.large(snapshot, &meta),
                    Lookup::Missing => return self.not_found_page(shared),
                    Lookup::Unknown => {}
                }
                match resolve::resolve(root, target, None, &options(shared)) {
                    Ok(Resolved::File(file)) => self.file_as(file, root, key),
                    // A target the resolver refuses (one that climbs out of the root, a bad
                    // escape) is the rule's fault, not the request's: it is not there.
                    Err(HttpError::NotFound | HttpError::Traversal | HttpError::BadRequest(_)) => {
                        shared.cache.insert_missing(target, epoch);
                        self.not_found_page(shared)
                    }
                    // A directory is never a rewrite's answer (a listing's links are relative
                    // to the path it is asked for), but it is there: remembered as missing,
                    // a request for it would be a 404 instead of its redirect or listing.
                    Ok(Resolved::Redirect(_) | Resolved::Directory(_)) => {
                        self.not_found_page(shared)
                    }
                    Err(e) => Ok(self.error(e)),
                }
            }
            RuleStatus::Page(code) => {
                let status = Status::of_rule(code);
                match resolve::resolve(root, target, None, &options(shared)) {
                    Ok(Resolved::File(file)) => self.page(PageRep::Disk(file), status),
                    _ => {
                        let fields = self.fields();
                        let out = canned(status, self.head_only(), self.connection(), &[], &fields);
                        Ok(self.reply(status, out))
                    }
                }
            }
        }
    }

    /// `--clean-urls`: a missing `/about` is `/about.html` when that file exists, served as
    /// the answer to `/about` (and cached under it).
    fn clean_file(self, shared: &Shared, epoch: u64) -> std::io::Result<Option<Reply>> {
        let path = &self.head.path;
        if !shared.config.clean_urls || path.ends_with('/') || path.ends_with(".html") {
            return Ok(None);
        }
        let target = format!("{path}.html");
        let root = &shared.config.root;
        match resolve::resolve(root, &target, None, &options(shared)) {
            Ok(Resolved::File(file)) => self
                .file(file, root, Some((&shared.cache, epoch)))
                .map(Some),
            _ => Ok(None),
        }
    }

    /// A redirect with the generated page (and the `--header` fields).
    fn redirect(&self, status: Status, location: &str) -> Reply {
        let extra = [("Location", location)];
        let out = canned(
            status,
            self.head_only(),
            self.connection(),
            &extra,
            &self.global(),
        );
        self.reply(status, out)
    }

    fn reply(&self, status: Status, out: Outgoing) -> Reply {
        Reply {
            status,
            out,
            keep: self.keep,
        }
    }

    /// A response without content (204, OPTIONS), with its `Connection` field.
    fn empty(&self, mut h: Head, status: Status) -> Reply {
        connection_header(&mut h, self.head.version, self.keep);
        self.reply(status, no_body(h))
    }

    /// The answer for a request error, through the one status mapping in
    /// [`HttpError::status`].
    fn error(&self, err: HttpError) -> Reply {
        if err == HttpError::Internal {
            log::error!(
                "{}: internal error serving {:?}",
                self.peer,
                self.head.target
            );
        }
        // The `_headers` blocks apply to the 404 of a path, like to its file.
        let fields = if err == HttpError::NotFound {
            self.fields()
        } else {
            self.global()
        };
        let (version, head_only) = (self.head.version, self.head_only());
        error_reply(&err, version, head_only, self.keep, &[], &fields)
    }

    /// A path that resolves to nothing: the `--fallback` page (200) for an extensionless
    /// path, else the `--404` page, else the built-in 404. A configured page that cannot be
    /// opened now (deleted after start-up) is logged and the built-in answer is sent instead.
    fn not_found(self, shared: &Shared) -> std::io::Result<Reply> {
        let config = &shared.config;
        if let Some(path) = config.fallback.as_deref() {
            if !resolve::has_extension(&self.head.path) {
                match load_page(&shared.cache, Page::Fallback, path) {
                    Ok(PageRep::Memory(entry)) => return self.cached(entry),
                    // Its precompressed sidecars count when they sit beside it.
                    Ok(PageRep::Disk(file)) => {
                        return self.file(file, path.parent().unwrap_or(path), None)
                    }
                    Err(e) => log::warn!("--fallback {}: {e:?}", path.display()),
                }
            }
        }
        self.not_found_page(shared)
    }

    /// The `--404` page, else the built-in 404.
    fn not_found_page(self, shared: &Shared) -> std::io::Result<Reply> {
        if let Some(path) = shared.config.not_found_page.as_deref() {
            match load_page(&shared.cache, Page::NotFound, path) {
                Ok(page) => return self.page(page, Status::NotFound),
                Err(e) => log::warn!("--404 {}: {e:?}", path.display()),
            }
        }
        Ok(self.error(HttpError::NotFound))
    }

    /// `head` then `len` bytes of the representation from `start` (only the head for HEAD).
    fn body_range(
        &self,
        head: Vec<u8>,
        body: Source,
        start: u64,
        len: u64,
    ) -> std::io::Result<Outgoing> {
        let head_only = self.head_only();
        match body {
            Source::File(file, stamp) => Outgoing::file(
                head,
                self.file_body(file, stamp, len),
                start,
                len,
                head_only,
            ),
            Source::Snapshot(snapshot) => {
                Outgoing::file(head, Body::Snapshot(snapshot), start, len, head_only)
            }
            Source::Memory(entry, i) => {
                let from = start as usize;
                let to = if head_only { from } else { from + len as usize };
                Ok(Outgoing::shared(head, entry, i, from, to))
            }
        }
    }

    /// Where a file's bytes are sent from: its snapshot (zero-copy) when one exists for this
    /// version of the file, or is worth building because the response sends at least
    /// [`ZERO_COPY_MIN`] bytes in one range (`longest`); otherwise the file (copy).
    fn file_body(&self, file: File, stamp: FileStamp, longest: u64) -> Body {
        let build = longest >= ZERO_COPY_MIN && !self.head_only();
        match self.snapshots.get(&file, &stamp, build) {
            Some(snapshot) => Body::Snapshot(snapshot),
            None => Body::File(file, stamp),
        }
    }

    /// A page as it is, with `status` (the `--404` page, or the target of a 404, 410 or 451
    /// rule): no validators, no negotiation, the path's `_headers` fields.
    fn page(self, page: PageRep, status: Status) -> std::io::Result<Reply> {
        let (content_type, len) = match &page {
            PageRep::Memory(entry) => (entry.content_type, entry.reps[0].bytes.len() as u64),
            PageRep::Disk(file) => (crate::mime::content_type(&file.path), file.len),
        };
        let fields = self.fields();
        let mut h = Head::new(status);
        h.header("Content-Length", len);
        let defaults = [
            ("Content-Type", content_type),
            ("X-Content-Type-Options", "nosniff"),
        ];
        write_defaults(&mut h, &fields, &defaults);
        write_fields(&mut h, &fields, &[]);
        connection_header(&mut h, self.head.version, self.keep);
        let body = match page {
            PageRep::Memory(entry) => Source::Memory(entry, 0),
            PageRep::Disk(file) => Source::File(file.file, file.stamp),
        };
        let out = self.body_range(h.finish(), body, 0, len)?;
        Ok(self.reply(status, out))
    }

    /// The health endpoint: 200 `ok` while serving, 503 `draining` from the first stop
    /// signal (so a load balancer takes this replica out before connections start closing).
    /// Never cached; logged at debug only, so probes do not flood the access log.
    fn health(&self, shared: &Shared) -> Reply {
        let (status, body) = if shared.shutdown.is_announced() {
            (Status::ServiceUnavailable, "draining\n")
        } else {
            (Status::Ok, "ok\n")
        };
        self.figures(status, "text/plain; charset=utf-8", body)
    }

    /// The metrics endpoint: the Prometheus text format ([`crate::metrics::render`]), read
    /// from atomics without a lock. Never cached; logged at debug only.
    fn metrics(&self, shared: &Shared) -> Reply {
        let workers = shared.config.workers;
        let body = crate::metrics::render(&shared.metrics, &shared.stats(), workers);
        self.figures(Status::Ok, crate::metrics::CONTENT_TYPE, &body)
    }

    /// An answer about the server itself (health, metrics): generated, never cached.
    fn figures(&self, status: Status, content_type: &str, body: &str) -> Reply {
        let mut h = Head::new(status);
        h.header("Content-Type", content_type)
            .header("Content-Length", body.len())
            .header("Cache-Control", "no-store");
        // Its body is ours, so are its type and its caching: a `--header` would make two.
        write_fields(&mut h, &self.global(), &["content-type", "cache-control"]);
        connection_header(&mut h, self.head.version, self.keep);
        let mut bytes = h.finish();
        let head_len = bytes.len();
        if !self.head_only() {
            bytes.extend_from_slice(body.as_bytes());
        }
        self.reply(status, Outgoing::bytes(bytes, head_len))
    }

    /// The client's choice among `available` sidecars ([`encoding::choose`]).
    fn coding(&self, available: &[Coding]) -> Option<Coding> {
        if available.is_empty() {
            return None;
        }
        let accept = self.head.headers.get_list("accept-encoding");
        encoding::choose(accept.as_deref(), available)
    }

    /// Serves an opened file: when precompressed sidecars exist (`FILE.br`, `FILE.gz`, which
    /// must lie inside `root`), the client's `Accept-Encoding` picks one; the chosen file is
    /// then the representation: its own length, validators and ranges, the original's
    /// Content-Type, and `Content-Encoding`. Small files (and sidecars) go into the cache on
    /// the way.
    fn file(
        self,
        file: FileInfo,
        root: &Path,
        cache: Option<(&FileCache, u64)>,
    ) -> std::io::Result<Reply> {
        let key = cache.map(|(c, epoch)| (c, epoch, self.head.path.as_str()));
        self.file_as(file, root, key)
    }

    /// [`Ask::file`], remembered in the cache under `key` (a rewrite's target, not the
    /// request path: the rules decide afresh for every request).
    fn file_as(
        self,
        file: FileInfo,
        root: &Path,
        cache: Option<(&FileCache, u64, &str)>,
    ) -> std::io::Result<Reply> {
        let content_type = crate::mime::content_type(&file.path);
        let available = resolve::variants(&file);
        if let Some((cache, epoch, key)) =
            cache.filter(|(c, _, _)| c.enabled() && cache::cacheable(file.len))
        {
            let max = cache::INLINE_BODY_MAX;
            if let Some(entry) = load(root, &file, &available, content_type, max)? {
                return self.cached(cache.insert(key, entry, epoch));
            }
        }
        let (rep, coding) = match self.coding(&available) {
            Some(coding) => match resolve::open_variant(root, &file, coding) {
                Ok(variant) => (variant, Some(coding)),
                Err(e) => {
                    log::debug!("{}: variant {coding:?} unusable: {e:?}", self.peer);
                    (file, None)
                }
            },
            None => (file, None),
        };
        let etag = match coding {
            Some(c) => conditional::variant_etag(rep.len, rep.modified, c.token()),
            None => conditional::etag(rep.len, rep.modified),
        };
        // A large file whose snapshot exists is remembered by path (see `cache.rs`).
        let snapshot = cache
            .filter(|(c, _, _)| c.enabled() && available.is_empty())
            .and_then(|(c, epoch, key)| {
                let snapshot = self.snapshots.get(&rep.file, &rep.stamp, false)?;
                let meta = LargeMeta {
                    content_type,
                    modified: rep.modified,
                    etag: etag.clone(),
                };
                c.insert_large(key, &snapshot, meta, epoch);
                Some(snapshot)
            });
        self.chosen(Chosen {
            len: rep.len,
            modified: rep.modified,
            etag,
            coding,
            has_variants: !available.is_empty(),
            content_type,
            body: match snapshot {
                Some(snapshot) => Source::Snapshot(snapshot),
                None => Source::File(rep.file, rep.stamp),
            },
        })
    }

    /// Serves a large file from its snapshot, found by path in the cache.
    fn large(self, snapshot: Arc<Snapshot>, meta: &LargeMeta) -> std::io::Result<Reply> {
        self.chosen(Chosen {
            len: snapshot.len(),
            modified: meta.modified,
            etag: meta.etag.clone(),
            coding: None,
            has_variants: false,
            content_type: meta.content_type,
            body: Source::Snapshot(snapshot),
        })
    }

    /// Serves a file from memory: the same negotiation and preconditions as [`Ask::file`].
    fn cached(self, entry: Arc<Cached>) -> std::io::Result<Reply> {
        let codings = entry.codings();
        let coding = self.coding(&codings);
        let index = entry
            .reps
            .iter()
            .position(|r| r.coding == coding)
            .unwrap_or(0);
        let rep = &entry.reps[index];
        let chosen = Chosen {
            len: rep.bytes.len() as u64,
            modified: rep.modified,
            etag: rep.etag.clone(),
            coding: rep.coding,
            has_variants: !codings.is_empty(),
            content_type: entry.content_type,
            body: Source::Memory(Arc::clone(&entry), index),
        };
        self.chosen(chosen)
    }

    /// The preconditions of the request against a representation's validators, then its
    /// `Range` when the representation has a length to take ranges of (`len`).
    fn plan(&self, etag: &str, modified: Option<SystemTime>, len: Option<u64>) -> Plan {
        let h = &self.head.headers;
        // RFC 9110 §5.3: both are lists, so every field line counts, not just the first.
        let (if_match, if_none_match) = (h.get_list("if-match"), h.get_list("if-none-match"));
        let ranges = len.is_some();
        let pre = Preconditions {
            if_match: if_match.as_deref(),
            if_none_match: if_none_match.as_deref(),
            if_modified_since: h.get("if-modified-since"),
            if_unmodified_since: h.get("if-unmodified-since"),
            if_range: h.get("if-range").filter(|_| ranges),
            range: h.get("range").filter(|_| ranges),
        };
        conditional::evaluate(&pre, true, etag, modified, len.unwrap_or(0))
    }

    /// A listing of `dir` (`--list-dirs`, see `listing.rs`): HTML, or JSON when the query
    /// or `Accept` asks for it (RFC 9110 §12.5.1, so every answer says `Vary: Accept`). Its
    /// validators come from the directory and the view, so a revalidation is a 304 without
    /// reading the directory. No ranges: a page made on demand has no stable bytes to take
    /// them from, and RFC 9110 §14.2 lets a server ignore `Range`.
    fn listing(self, dir: Directory, shared: &Shared) -> std::io::Result<Reply> {
        let config = &shared.config;
        let view = match View::from_query(self.head.query.as_deref()) {
            Ok(view) => view,
            Err(why) => return Ok(self.error(HttpError::BadRequest(why))),
        };
        let accept = self.head.headers.get_list("accept");
        let format = match view.format {
            Some(format) => format,
            None if listing::wants_json(accept.as_deref()) => Format::Json,
            None => Format::Html,
        };
        let filter = listing::read::Filter {
            hidden: config.hidden,
            site_rules: config.site_rules,
        };
        let cap = config.list_max;
        let etag = listing::etag(dir.id, dir.modified, &view, format, &filter, cap);
        let status = match self.plan(&etag, dir.modified, None) {
            Plan::PreconditionFailed => return Ok(self.error(HttpError::PreconditionFailed)),
            Plan::NotModified => Status::NotModified,
            _ => Status::Ok,
        };
        let fields = self.fields();
        let mut out = Head::new(status);
        out.header("ETag", &etag);
        if let Some(modified) = dir.modified {
            out.header("Last-Modified", HttpDate(modified));
        }
        out.header("Vary", "Accept");
        if status == Status::NotModified {
            // RFC 9110 §15.4.5: validators and Vary, no content metadata.
            write_fields(&mut out, &fields, &["content-type"]);
            connection_header(&mut out, self.head.version, self.keep);
            return Ok(self.reply(status, no_body(out)));
        }
        // Reading and sorting a big directory is CPU work: a big one needs a place among
        // `builders`, so one worker always stays free for everything else.
        let builders = config.workers.saturating_sub(1).max(1);
        let mut building = None;
        let mut admit = || {
            building = Slot::take(&shared.listing_builds, 1, builders);
            building.is_some()
        };
        let root = &config.root;
        let (entries, left_out) =
            match listing::read::read(&dir, root, &filter, &view, cap, &mut admit) {
                Ok(Some(read)) => read,
                Ok(None) => return Ok(self.error(HttpError::Unavailable)),
                Err(e) => return Ok(self.error(HttpError::from_fs(&e))),
            };
        // Measuring the page renders it once: still the builder's work.
        let page = listing::Page::new(format, view, dir.segments, entries, left_out);
        drop(building);
        let len = page.len();
        // A page too long to go out with its head is held while it is sent, for as long as
        // a slow reader takes: the memory of all such pages together is bounded.
        let held = if Outgoing::keeps_body(len, self.head_only()) {
            match Slot::take(&shared.listing_bytes, page.memory(), LISTING_PAGES_MEMORY) {
                Some(held) => Some(held),
                None => return Ok(self.error(HttpError::Unavailable)),
            }
        } else {
            None
        };
        let content_type = match format {
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        };
        let defaults = [
            ("Content-Type", content_type),
            ("X-Content-Type-Options", "nosniff"),
        ];
        write_defaults(&mut out, &fields, &defaults);
        write_fields(&mut out, &fields, &[]);
        if left_out > 0 {
            out.header("Poolserve-Left-Out", left_out);
        }
        out.header("Content-Length", len);
        connection_header(&mut out, self.head.version, self.keep);
        let made = Box::new(LivePage { page, _held: held });
        let body = Outgoing::made(out.finish(), made, len, self.head_only())?;
        Ok(self.reply(status, body))
    }

    /// Answers with a chosen representation as RFC 9110 §13 and §14 say: conditionals
    /// first, then ranges. Every answer about it carries its validators (ETag,
    /// Last-Modified) and `Accept-Ranges`; every answer about a file with sidecars says
    /// `Vary: Accept-Encoding` (RFC 9110 §12.5.5), identity ones included, so caches keep
    /// the variants apart.
    fn chosen(self, c: Chosen) -> std::io::Result<Reply> {
        let head_only = self.head_only();
        let vary: &[(&str, &str)] = if c.has_variants {
            &[("Vary", "Accept-Encoding")]
        } else {
            &[]
        };
        let plan = self.plan(&c.etag, c.modified, Some(c.len));
        let status = match &plan {
            Plan::Full => Status::Ok,
            Plan::NotModified => Status::NotModified,
            Plan::PreconditionFailed => return Ok(self.error(HttpError::PreconditionFailed)),
            Plan::Partial(_) | Plan::Multipart(_) => Status::PartialContent,
            Plan::Unsatisfiable => {
                let range = format!("bytes */{}", c.len);
                let status = Status::RangeNotSatisfiable;
                let extra = [&[("Content-Range", range.as_str())], vary].concat();
                let out = canned(status, head_only, self.connection(), &extra, &self.global());
                return Ok(self.reply(status, out));
            }
        };
        // The `_headers` fields replace the defaults they name; `Vary` adds a line of its own
        // (a list field, RFC 9110 §5.3), so the sidecars' `Accept-Encoding` always stays.
        let fields = self.fields();
        let multipart = matches!(plan, Plan::Multipart(_));
        let mut out = Head::new(status);
        out.header("ETag", &c.etag);
        if let Some(modified) = c.modified {
            out.header("Last-Modified", HttpDate(modified));
        }
        for (name, value) in vary {
            out.header(name, value);
        }
        // RFC 9110 §15.4.5: a 304 carries the validators and Vary, no content metadata.
        if status != Status::NotModified {
            let defaults = [
                ("Accept-Ranges", "bytes"),
                ("X-Content-Type-Options", "nosniff"),
            ];
            write_defaults(&mut out, &fields, &defaults);
            if let Some(coding) = c.coding {
                out.header("Content-Encoding", coding.token());
            }
            if !multipart {
                write_defaults(&mut out, &fields, &[("Content-Type", c.content_type)]);
            }
        }
        // RFC 9110 §15.4.5: a 304 sends no content metadata (its Content-Type would describe
        // no content); a multipart body's Content-Type carries its boundary, so only ours.
        let ours: &[&str] = if multipart || status == Status::NotModified {
            &["content-type"]
        } else {
            &[]
        };
        write_fields(&mut out, &fields, ours);
        connection_header(&mut out, self.head.version, self.keep);
        let body = match plan {
            Plan::NotModified => no_body(out),
            Plan::Partial(range) => {
                out.header("Content-Length", range.len())
                    .header("Content-Range", range.content_range(c.len));
                self.body_range(out.finish(), c.body, range.start, range.len())?
            }
            Plan::Multipart(ranges) => {
                let boundary = conditional::boundary(&c.etag);
                // Each part has the representation's type: the rules' when they set one.
                let part_type = fields
                    .pairs()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map_or(c.content_type, |(_, v)| v);
                let layout = conditional::multipart_layout(&ranges, c.len, part_type, &boundary);
                out.header(
                    "Content-Type",
                    format!("multipart/byteranges; boundary={boundary}"),
                )
                .header("Content-Length", layout.total_len);
                match c.body {
                    Source::File(file, stamp) => {
                        let longest = layout.parts.iter().map(|(_, r)| r.len()).max();
                        let body = self.file_body(file, stamp, longest.unwrap_or(0));
                        Outgoing::multipart(out.finish(), body, layout, head_only)
                    }
                    Source::Snapshot(snapshot) => {
                        let body = Body::Snapshot(snapshot);
                        Outgoing::multipart(out.finish(), body, layout, head_only)
                    }
                    Source::Memory(entry, i) => {
                        let mut bytes = out.finish();
                        let head_len = bytes.len();
                        if !head_only {
                            let data = &entry.reps[i].bytes;
                            for (part_head, r) in &layout.parts {
                                bytes.extend_from_slice(part_head);
                                bytes.extend_from_slice(&data[r.start as usize..=r.end as usize]);
                            }
                            bytes.extend_from_slice(&layout.trailer);
                        }
                        Outgoing::bytes(bytes, head_len)
                    }
                }
            }
            _ => {
                out.header("Content-Length", c.len);
                self.body_range(out.finish(), c.body, 0, c.len)?
            }
        };
        Ok(self.reply(status, body))
    }
}

/// Memory for the entries of all the listing pages being sent at once (those that wait for
/// their readers, [`Outgoing::keeps_body`]): 64 MiB is eight pages of 100,000
/// short names (about 8 MB each), or thousands of small ones. A page that would pass it is
/// 503 with `Retry-After`; a slow reader holds its share for at most the write timeout
/// between progress.
const LISTING_PAGES_MEMORY: usize = 64 << 20;

/// A listing page on its way out, holding its share of [`LISTING_PAGES_MEMORY`].
#[derive(Debug)]
struct LivePage {
    page: listing::Page,
    _held: Option<Slot>,
}

impl Generate for LivePage {
    fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> bool {
        self.page.fill(out, want)
    }
}

/// A configured page (`--fallback` with its sidecars, `--404` alone), from memory while its
/// copy is fresh, else opened again: the same revalidation interval as cached files, and
/// the same checks as at start-up ([`resolve::open_page`]). A page larger than
/// [`PAGE_MAX_BYTES`], or any page with the cache off, is opened on every use.
fn load_page(cache: &FileCache, page: Page, path: &Path) -> Result<PageRep, HttpError> {
    // Before the open: see `FileCache::epoch`.
    let epoch = cache.epoch();
    if let Some(entry) = cache.page(page) {
        return Ok(PageRep::Memory(entry));
    }
    let file = resolve::open_page(path)?;
    if !cache.enabled() || file.len > PAGE_MAX_BYTES {
        return Ok(PageRep::Disk(file));
    }
    let available = match page {
        Page::Fallback => resolve::variants(&file),
        Page::NotFound => Vec::new(),
    };
    let dir = path.parent().unwrap_or(path);
    let content_type = crate::mime::content_type(&file.path);
    match load(dir, &file, &available, content_type, PAGE_MAX_BYTES) {
        Ok(Some(entry)) => Ok(PageRep::Memory(cache.insert_page(page, entry, epoch))),
        // A sidecar too large or unusable, or a read that failed (the file changed under
        // us): serve it from disk this time.
        Ok(None) | Err(_) => Ok(PageRep::Disk(file)),
    }
}

/// Reads a file and its sidecars into a cache entry; `None` when a sidecar is larger than
/// `max` or cannot be opened (then the file is served from disk).
fn load(
    root: &Path,
    file: &FileInfo,
    available: &[Coding],
    content_type: &'static str,
    max: u64,
) -> std::io::Result<Option<Cached>> {
    let mut reps = Vec::with_capacity(1 + available.len());
    for coding in available {
        let Ok(v) = resolve::open_variant(root, file, *coding) else {
            return Ok(None);
        };
        if v.len > max {
            return Ok(None);
        }
        reps.push(CachedRep {
            coding: Some(*coding),
            bytes: read_all(&v.file, v.len)?,
            modified: v.modified,
            etag: conditional::variant_etag(v.len, v.modified, coding.token()),
        });
    }
    reps.insert(
        0,
        CachedRep {
            coding: None,
            bytes: read_all(&file.file, file.len)?,
            modified: file.modified,
            etag: conditional::etag(file.len, file.modified),
        },
    );
    Ok(Some(Cached::new(content_type, reps)))
}

/// Reads exactly `len` bytes from the start of `file` (a shorter file is an error: it
/// changed under us, and the next revalidation will see it).
fn read_all(file: &File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// The generated page for `err` (its one status, [`HttpError::status`]), with `Connection:
/// close` when the error leaves the framing unknown.
fn error_reply(
    err: &HttpError,
    version: Version,
    head_only: bool,
    keep: bool,
    extra: &[(&str, &str)],
    fields: &Fields,
) -> Reply {
    let status = err.status();
    let keep = keep && !err.closes_connection();
    // RFC 9110 §10.2.3: a 503 says when to come back (the acceptor's canned one does too).
    let retry;
    let extra = if status == Status::ServiceUnavailable {
        retry = [extra, &[("Retry-After", "1")]].concat();
        &retry[..]
    } else {
        extra
    };
    let out = canned(
        status,
        head_only,
        connection_value(version, keep),
        extra,
        fields,
    );
    Reply { status, out, keep }
}

/// A generated status page as an [`Outgoing`], with the rules' `fields` (but its own
/// `Content-Type` and `extra` fields: [`response::status_response_with`]).
fn canned(
    status: Status,
    head_only: bool,
    connection: Option<&str>,
    extra: &[(&str, &str)],
    fields: &Fields,
) -> Outgoing {
    let more = fields.pairs();
    let (bytes, body) = response::status_response_with(status, head_only, connection, extra, more);
    let head_len = bytes.len() - body as usize;
    Outgoing::bytes(bytes, head_len)
}

/// Writes the server's `defaults` into a head, but for the names the rules set or detach
/// (their own values follow in [`write_fields`]).
fn write_defaults(h: &mut Head, fields: &Fields, defaults: &[(&str, &str)]) {
    for (name, value) in defaults {
        if !fields.names(name) {
            h.header(name, value);
        }
    }
}

/// Writes the rules' fields into a head, but for the names in `ours` (lower case), which
/// this answer writes itself.
fn write_fields(h: &mut Head, fields: &Fields, ours: &[&str]) {
    for (name, value) in fields.pairs() {
        if !ours.iter().any(|o| o.eq_ignore_ascii_case(name)) {
            h.header(name, value);
        }
    }
}

/// The request's host, lower case and without the port, as `https://host/...` patterns
/// are matched (Cloudflare ignores the port too).
fn host_of(head: &RequestHead) -> Option<String> {
    let host = head.headers.get("host")?;
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    Some(name.to_ascii_lowercase())
}

/// How request paths are resolved under this configuration.
pub(crate) fn options(shared: &Shared) -> ResolveOptions {
    ResolveOptions {
        hidden: shared.config.hidden,
        site_rules: shared.config.site_rules,
        list_dirs: shared.config.list_dirs,
    }
}

/// `--clean-urls`: where a request for an `.html` file is sent (RFC 9110 §15.4.9, 308):
/// `/about.html` to `/about`, `/dir/index.html` to `/dir/`, the query kept.
fn clean_location(path: &str, query: Option<&str>) -> Option<String> {
    let mut location = match path.strip_suffix("/index.html") {
        Some(dir) => format!("{dir}/"),
        None => path
            .strip_suffix(".html")
            .filter(|stem| !stem.ends_with('/'))?
            .to_string(),
    };
    site_rules::location_guard(&mut location);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    Some(location)
}

/// A response head with no content (201/204, 304 and OPTIONS).
fn no_body(h: Head) -> Outgoing {
    let bytes = h.finish();
    let len = bytes.len();
    Outgoing::bytes(bytes, len)
}

/// The `Connection` field value for a response (RFC 9112 §9.6): `close` whenever we will
/// close; `keep-alive` for an HTTP/1.0 client that asked for it.
fn connection_value(version: Version, keep: bool) -> Option<&'static str> {
    match (keep, version) {
        (false, _) => Some("close"),
        (true, Version::Http10) => Some("keep-alive"),
        (true, Version::Http11) => None,
    }
}

/// Adds `Connection` to a response head when [`connection_value`] says one is due.
fn connection_header(out: &mut Head, version: Version, keep: bool) {
    if let Some(c) = connection_value(version, keep) {
        out.header("Connection", c);
    }
}

#[cfg(test)]
mod tests;
