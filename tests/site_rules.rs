//! Site rules through the real server: `_redirects` (redirects, rewrites, status pages,
//! forced rules, placeholders and splats, the IPFS specification's own fixture), `_headers`
//! (merging, detaching, replacing our defaults, on every kind of file answer, CORS and
//! Cache-Control recipes), `--header`, the rule files themselves (never served, never
//! written), `--clean-urls`, start-up errors (in-process and from the binary), reloads, the
//! limits, and injection attempts. In-process on 127.0.0.1:0, in raw bytes.

mod support;

use std::fs::File;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use poolserve::{Config, Server};
use support::{config, Response, TestDir, TestServer};

/// A server on `d` with the test config changed by `tune`.
fn serve(d: &TestDir, tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = config(&d.path);
    tune(&mut c);
    TestServer::with_config(c)
}

/// A request with `method`, `path` and extra header lines (each ending in `\r\n`).
fn ask(srv: &TestServer, method: &str, path: &str, extra: &str) -> Response {
    srv.request(&format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

/// A GET with extra header lines.
fn get_with(srv: &TestServer, path: &str, extra: &str) -> Response {
    ask(srv, "GET", path, extra)
}

/// A request with a body (PUT).
fn put(srv: &TestServer, path: &str, body: &str) -> Response {
    srv.request(&format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

/// Every value of `name` on the wire, in order.
fn all<'r>(r: &'r Response, name: &str) -> Vec<&'r str> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The one value of `name`: fails when the field is missing or repeated.
fn one<'r>(r: &'r Response, name: &str) -> &'r str {
    match all(r, name).as_slice() {
        [v] => v,
        other => panic!("{name}: want one field, got {other:?} in\n{}", r.head),
    }
}

/// `Server::bind`'s error for this configuration, displayed; fails when it starts.
fn bind_error(d: &TestDir, tune: impl FnOnce(&mut Config)) -> String {
    let mut c = config(&d.path);
    tune(&mut c);
    match Server::bind(c) {
        Ok(_) => panic!("the server started"),
        Err(e) => e.to_string(),
    }
}

/// Writes `text` to `rel` under `d` and sets its mtime to `secs` after the epoch, so that a
/// rewrite is always seen as a change (whatever the file system's timestamp granularity).
fn rewrite(d: &TestDir, rel: &str, text: &str, secs: u64) {
    let path = d.file(rel, text);
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// [`rewrite`] atomically: the new version is written beside the file and renamed over it,
/// so the server can never read it half-written (an empty file is a valid one: no rules).
fn replace(d: &TestDir, rel: &str, text: &str, secs: u64) {
    let temp = format!("{rel}.next");
    rewrite(d, &temp, text, secs);
    std::fs::rename(d.path.join(temp), d.path.join(rel)).unwrap();
}

/// Polls until `check` holds for a fresh response, or fails after 5 s.
fn eventually(what: &str, mut probe: impl FnMut() -> Response, check: impl Fn(&Response) -> bool) {
    let t = Instant::now();
    loop {
        let r = probe();
        if check(&r) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{what}: not seen within 5 s; last answer:\n{}{}",
            r.head,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that `check` holds on every poll for `span` (a change that must not happen).
fn throughout(
    what: &str,
    span: Duration,
    mut probe: impl FnMut() -> Response,
    check: impl Fn(&Response) -> bool,
) {
    let t = Instant::now();
    while t.elapsed() < span {
        let r = probe();
        assert!(check(&r), "{what}:\n{}{}", r.head, r.text());
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// _redirects
// ---------------------------------------------------------------------------------------

/// The fixture of the IPFS "Web _redirects File Specification" (its `examples` site), and
/// the answers the specification gives for it.
#[test]
fn the_specification_fixture_answers_as_the_specification_says() {
    let d = TestDir::new();
    for (name, body) in [
        ("404.html", "my 404\n"),
        ("410.html", "my 410\n"),
        ("451.html", "my 451\n"),
        ("index.html", "my index\n"),
        ("one.html", "my one\n"),
        ("two.html", "my two\n"),
        ("redirected-splat/one.html", "splat one\n"),
        ("articles/index.html", "articles\n"),
    ] {
        d.file(name, body);
    }
    d.file(
        "_redirects",
        "/redirect-one /one.html\n\
         /301-redirect-one /one.html 301\n\
         /302-redirect-two /two.html 302\n\
         /200-index /index.html 200\n\
         /posts/:year/:month/:day/:title /articles/:year/:month/:day/:title 301\n\
         /splat/* /redirected-splat/:splat 301\n\
         /not-found/* /404.html 404\n\
         /gone/* /410.html 410\n\
         /unavail/* /451.html 451\n\
         /* /index.html 200\n",
    );
    let srv = TestServer::start(&d.path);
    // (path, status, Location, body)
    let table: &[(&str, u16, Option<&str>, Option<&str>)] = &[
        ("/redirect-one", 301, Some("/one.html"), None),
        ("/301-redirect-one", 301, Some("/one.html"), None),
        ("/302-redirect-two", 302, Some("/two.html"), None),
        ("/200-index", 200, None, Some("my index\n")),
        (
            "/posts/2022/06/15/hello-world",
            301,
            Some("/articles/2022/06/15/hello-world"),
            None,
        ),
        (
            "/splat/one.html",
            301,
            Some("/redirected-splat/one.html"),
            None,
        ),
        ("/not-found/foo", 404, None, Some("my 404\n")),
        ("/gone/foo", 410, None, Some("my 410\n")),
        ("/unavail/foo", 451, None, Some("my 451\n")),
        ("/anything-else", 200, None, Some("my index\n")),
        ("/deep/anything/else", 200, None, Some("my index\n")),
        // Existing files are not intercepted.
        ("/one.html", 200, None, Some("my one\n")),
        ("/two.html", 200, None, Some("my two\n")),
        ("/redirected-splat/one.html", 200, None, Some("splat one\n")),
    ];
    for _round in 0..2 {
        // Twice: the second time the existing files come from the cache.
        for (path, status, location, body) in table {
            let r = srv.get(path);
            assert_eq!(r.status, *status, "{path}:\n{}", r.head);
            assert_eq!(r.header("Location"), *location, "{path}");
            if let Some(body) = body {
                assert_eq!(r.text(), *body, "{path}");
            }
        }
    }
}

#[test]
fn redirects_carry_their_status_and_location() {
    let d = TestDir::new();
    d.file(
        "_redirects",
        "/r301 /t\n/r302 /t 302\n/r303 /t 303\n/r307 /t 307\n/r308 /t 308\n\
         /abs https://example.com/x 302\n",
    );
    let srv = TestServer::start(&d.path);
    for (path, line) in [
        ("/r301", "HTTP/1.1 301 Moved Permanently\r\n"),
        ("/r302", "HTTP/1.1 302 Found\r\n"),
        ("/r303", "HTTP/1.1 303 See Other\r\n"),
        ("/r307", "HTTP/1.1 307 Temporary Redirect\r\n"),
        ("/r308", "HTTP/1.1 308 Permanent Redirect\r\n"),
    ] {
        let r = srv.get(path);
        assert!(r.head.starts_with(line), "{path}:\n{}", r.head);
        assert_eq!(one(&r, "Location"), "/t", "{path}");
    }
    let r = srv.get("/abs");
    assert_eq!(
        (r.status, one(&r, "Location")),
        (302, "https://example.com/x")
    );
    // HEAD: the same head, no body.
    let r = ask(&srv, "HEAD", "/r307", "");
    assert_eq!((r.status, one(&r, "Location")), (307, "/t"));
    assert!(r.body.is_empty());
}

#[test]
fn placeholders_splats_queries_and_trailing_slashes() {
    let d = TestDir::new();
    d.file("people.txt", "people\n");
    d.file(
        "_redirects",
        "/u/:id/profile /people/:id 302\n\
         /shop/:a/:b /store/:b/:a 301\n\
         /files/* /archive/:splat 301\n\
         /keep /kept 301\n\
         /own /target?from=own 301\n\
         /blog /news 301\n\
         /docs/ /manual 301\n\
         /rw /people.txt 200\n\
         /caf%C3%A9 /cafe 301\n\
         /a%20b /c 301\n",
    );
    let srv = TestServer::start(&d.path);
    for (path, status, location) in [
        ("/u/42/profile", 302, Some("/people/42")),
        ("/u/42/profile/", 302, Some("/people/42")),
        // A placeholder is one whole segment.
        ("/u/42/x/profile", 404, None),
        ("/u//profile", 404, None),
        ("/shop/shoes/red", 301, Some("/store/red/shoes")),
        ("/shop/shoes", 404, None),
        ("/files/a/b/c.pdf", 301, Some("/archive/a/b/c.pdf")),
        // The query string is carried over, unless the target has its own.
        ("/keep?x=1&y=2", 301, Some("/kept?x=1&y=2")),
        ("/files/a.pdf?v=3", 301, Some("/archive/a.pdf?v=3")),
        ("/u/7/profile?tab=2", 302, Some("/people/7?tab=2")),
        ("/own?x=1", 301, Some("/target?from=own")),
        // Trailing slash optional, both ways.
        ("/blog/", 301, Some("/news")),
        ("/blog", 301, Some("/news")),
        ("/docs", 301, Some("/manual")),
        ("/docs/", 301, Some("/manual")),
        ("/blogs", 404, None),
        // Sources and requests are compared decoded; captures are encoded again.
        ("/caf%C3%A9", 301, Some("/cafe")),
        ("/caf%c3%a9", 301, Some("/cafe")),
        ("/a%20b", 301, Some("/c")),
        ("/u/a%20b/profile", 302, Some("/people/a%20b")),
        (
            "/files/%C3%A9t%C3%A9.pdf",
            301,
            Some("/archive/%C3%A9t%C3%A9.pdf"),
        ),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, status, "{path}:\n{}", r.head);
        assert_eq!(r.header("Location"), location, "{path}");
    }
    // A rewrite keeps the query to itself: the file is served.
    let r = srv.get("/rw?x=1");
    assert_eq!((r.status, r.text().as_str()), (200, "people\n"));
    assert_eq!(r.header("Location"), None);
}

/// A 200 rule serves its target as the target itself would be served: its own validators, so
/// a conditional GET gets 304 and a Range gets 206, from the cache (small) and from disk.
#[test]
fn a_rewrite_serves_the_target_with_its_own_validators() {
    let d = TestDir::new();
    d.file("app.html", "<p>the app</p>\n");
    let big: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    d.file("big.bin", &big);
    d.file("_redirects", "/app/* /app.html 200\n/big/* /big.bin 200\n");
    let srv = TestServer::start(&d.path);
    for (target, rewritten, bytes) in [
        ("/app.html", "/app/users/42", &b"<p>the app</p>\n"[..]),
        ("/big.bin", "/big/any", &big[..]),
    ] {
        let direct = srv.get(target);
        assert_eq!(direct.status, 200);
        let etag = one(&direct, "ETag").to_string();
        let modified = one(&direct, "Last-Modified").to_string();
        for _round in 0..2 {
            let r = srv.get(rewritten);
            assert_eq!(r.status, 200, "{rewritten}:\n{}", r.head);
            assert_eq!(r.body, bytes, "{rewritten}");
            assert_eq!(one(&r, "ETag"), etag, "{rewritten}");
            assert_eq!(one(&r, "Last-Modified"), modified, "{rewritten}");
            assert_eq!(
                one(&r, "Content-Type"),
                direct.header("Content-Type").unwrap()
            );

            let r = get_with(&srv, rewritten, &format!("If-None-Match: {etag}\r\n"));
            assert_eq!(r.status, 304, "{rewritten}:\n{}", r.head);
            assert_eq!(one(&r, "ETag"), etag);
            assert!(r.body.is_empty());

            let r = get_with(
                &srv,
                rewritten,
                &format!("If-Modified-Since: {modified}\r\n"),
            );
            assert_eq!(r.status, 304, "{rewritten}: If-Modified-Since");

            let r = get_with(&srv, rewritten, "Range: bytes=2-9\r\n");
            assert_eq!(r.status, 206, "{rewritten}:\n{}", r.head);
            assert_eq!(
                one(&r, "Content-Range"),
                format!("bytes 2-9/{}", bytes.len())
            );
            assert_eq!(r.body, &bytes[2..10]);

            let r = get_with(
                &srv,
                rewritten,
                &format!("Range: bytes=0-3\r\nIf-Range: {etag}\r\n"),
            );
            assert_eq!((r.status, &r.body[..]), (206, &bytes[..4]), "{rewritten}");
        }
    }
}

#[test]
fn status_pages_serve_their_target_or_the_built_in_page() {
    let d = TestDir::new();
    d.file("pages/404.html", "custom 404\n");
    d.file("pages/410.html", "custom 410\n");
    d.file("pages/451.html", "custom 451\n");
    d.file(
        "_redirects",
        "/nf/* /pages/404.html 404\n\
         /gone/* /pages/410.html 410\n\
         /legal/* /pages/451.html 451\n\
         /nf-missing /pages/none.html 404\n\
         /gone-missing /pages/none.html 410\n\
         /legal-missing /pages/none.html 451\n",
    );
    let srv = TestServer::start(&d.path);
    for (path, line, body) in [
        ("/nf/x", "HTTP/1.1 404 Not Found\r\n", "custom 404\n"),
        ("/gone/x/y", "HTTP/1.1 410 Gone\r\n", "custom 410\n"),
        (
            "/legal/x",
            "HTTP/1.1 451 Unavailable For Legal Reasons\r\n",
            "custom 451\n",
        ),
    ] {
        let r = srv.get(path);
        assert!(r.head.starts_with(line), "{path}:\n{}", r.head);
        assert_eq!(r.text(), body, "{path}");
        assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
        assert_eq!(one(&r, "Content-Length"), body.len().to_string());
        let r = ask(&srv, "HEAD", path, "");
        assert!(r.head.starts_with(line), "HEAD {path}:\n{}", r.head);
        assert!(r.body.is_empty());
    }
    for (path, status, title) in [
        ("/nf-missing", 404, "404 Not Found"),
        ("/gone-missing", 410, "410 Gone"),
        ("/legal-missing", 451, "451 Unavailable For Legal Reasons"),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, status, "{path}");
        assert!(r.text().contains(title), "{path}: {}", r.text());
        assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
    }
}

#[test]
fn an_existing_file_wins_unless_the_rule_is_forced() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    d.file("real.txt", "real\n");
    d.file("plain.txt", "plain\n");
    d.file("forced.txt", "forced file\n");
    d.file("moved.txt", "moved file\n");
    d.file("sub/index.html", "sub\n");
    d.file(
        "_redirects",
        "/plain.txt /index.html 200\n\
         /forced.txt /index.html 200!\n\
         /moved.txt /new.txt 301!\n\
         /sub/ /elsewhere 302\n\
         /* /index.html 200\n",
    );
    let srv = TestServer::start(&d.path);
    for _round in 0..2 {
        // The second round finds the files in the cache: a forced rule still wins.
        for (path, status, location, body) in [
            ("/real.txt", 200, None, "real\n"),
            ("/plain.txt", 200, None, "plain\n"),
            ("/sub/", 200, None, "sub\n"),
            ("/forced.txt", 200, None, "index\n"),
            ("/moved.txt", 301, Some("/new.txt"), ""),
            ("/missing.txt", 200, None, "index\n"),
            ("/", 200, None, "index\n"),
        ] {
            let r = srv.get(path);
            assert_eq!(r.status, status, "{path}:\n{}", r.head);
            assert_eq!(r.header("Location"), location, "{path}");
            if status == 200 {
                assert_eq!(r.text(), body, "{path}");
            }
        }
    }
}

/// A rewrite whose target is missing is a 404: no other rule, no `--fallback`, no loop.
#[test]
fn a_rewrite_never_chains() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    d.file("app.html", "app shell\n");
    d.file(
        "_redirects",
        "/a /b.html 200\n/b.html /index.html 200\n/loop /loop 200\n/* /index.html 200\n",
    );
    let srv = serve(&d, |c| c.fallback = Some(d.path.join("app.html")));
    for _round in 0..2 {
        for path in ["/a", "/loop"] {
            let r = srv.get(path);
            assert_eq!(r.status, 404, "{path}:\n{}", r.head);
            assert!(r.text().contains("404 Not Found"), "{path}: {}", r.text());
        }
    }
    // The rules themselves still work.
    assert_eq!(srv.get("/b.html").text(), "index\n");
    drop(srv);
    // With `--404`, the missing target gets that page.
    d.file("404.html", "my 404 page\n");
    let srv = serve(&d, |c| c.not_found_page = Some(d.path.join("404.html")));
    let r = srv.get("/a");
    assert_eq!((r.status, r.text().as_str()), (404, "my 404 page\n"));
}

/// A rewrite's target is a path under the root, resolved with every check: no climbing out
/// (plain or encoded), no hidden files, no links out of the root.
#[test]
fn a_rewrite_cannot_leave_the_root_or_serve_a_hidden_file() {
    let outside = TestDir::new();
    outside.file("secret.txt", "outside secret\n");
    let d = TestDir::new();
    d.file("index.html", "index\n");
    d.file(".env", "TOKEN=hidden\n");
    d.file(".git/config", "hidden config\n");
    d.symlink(outside.path.join("secret.txt"), "link.txt");
    let climb = format!(
        "/{}",
        outside
            .path
            .join("secret.txt")
            .to_str()
            .unwrap()
            .trim_start_matches('/')
    );
    let up = "/..".repeat(outside.path.components().count() + 2);
    d.file(
        "_redirects",
        format!(
            "/x1 /../../../../etc/passwd 200\n\
             /x2 /%2E%2E/%2E%2E/%2E%2E/etc/passwd 200\n\
             /x3 /a/..%2F..%2F..%2F..%2Fetc%2Fpasswd 200\n\
             /x4 {up}{climb} 200\n\
             /x5 /.env 200\n\
             /x6 /%2Eenv 200\n\
             /x7 /.git/config 200\n\
             /x8 /link.txt 200\n\
             /p1 /../../../../etc/passwd 404\n\
             /p2 /.env 410\n\
             /s/* /:splat 200\n\
             /* /index.html 200\n"
        ),
    );
    let srv = TestServer::start(&d.path);
    for path in [
        "/x1",
        "/x2",
        "/x3",
        "/x4",
        "/x5",
        "/x6",
        "/x7",
        "/x8",
        "/s/.env",
        "/s/%2Eenv",
        "/s/.git/config",
        "/s/%252E%252E/%252E%252E/etc/passwd",
        "/s/link.txt",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}:\n{}{}", r.head, r.text());
        let text = r.text();
        for leak in ["root:", "TOKEN", "hidden config", "outside secret"] {
            assert!(!text.contains(leak), "{path} leaked {leak}");
        }
    }
    for (path, status) in [("/p1", 404), ("/p2", 410)] {
        let r = srv.get(path);
        assert_eq!(r.status, status, "{path}");
        assert!(r.text().contains(&format!("{status} ")), "built-in page");
        assert!(!r.text().contains("root:") && !r.text().contains("TOKEN"));
    }
    // A request that climbs out itself is refused before any rule is looked at.
    for path in ["/s/..%2F..%2Fetc%2Fpasswd", "/s/../../etc/passwd"] {
        let r = srv.get(path);
        assert_eq!(r.status, 400, "{path}:\n{}", r.head);
    }
    // The catch-all still answers ordinary paths.
    assert_eq!(srv.get("/s/index.html").text(), "index\n");
}

// ---------------------------------------------------------------------------------------
// _headers
// ---------------------------------------------------------------------------------------

#[test]
fn header_blocks_merge_join_and_detach() {
    let d = TestDir::new();
    d.file("other.txt", "other\n");
    d.file("docs/a.txt", "a\n");
    d.file("docs/private/p.txt", "p\n");
    d.file(
        "_headers",
        "# every block that matches applies\n\
         /*\n  X-Site: all\n  X-Multi: a\n\
         \n\
         /docs/*\n  X-Multi: b\n  X-Docs: yes\n  X-Multi: c\n\
         /docs/private/*\n  ! X-Site\n  ! X-Content-Type-Options\n  X-Private: 1\n",
    );
    let srv = TestServer::start(&d.path);
    let r = srv.get("/other.txt");
    assert_eq!(r.status, 200);
    assert_eq!(one(&r, "X-Site"), "all");
    assert_eq!(one(&r, "X-Multi"), "a");
    assert_eq!(r.header("X-Docs"), None);
    assert_eq!(one(&r, "X-Content-Type-Options"), "nosniff");

    let r = srv.get("/docs/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "a\n"));
    assert_eq!(one(&r, "X-Site"), "all");
    assert_eq!(one(&r, "X-Multi"), "a, b, c");
    assert_eq!(one(&r, "X-Docs"), "yes");
    assert_eq!(r.header("X-Private"), None);

    let r = srv.get("/docs/private/p.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "p\n"));
    assert_eq!(r.header("X-Site"), None, "detached:\n{}", r.head);
    assert_eq!(
        r.header("X-Content-Type-Options"),
        None,
        "our default detached"
    );
    assert_eq!(one(&r, "X-Multi"), "a, b, c");
    assert_eq!(one(&r, "X-Private"), "1");
}

/// A block naming `Content-Type`, `Accept-Ranges` or `X-Content-Type-Options` replaces ours:
/// exactly one field of each on the wire.
#[test]
fn header_blocks_replace_our_defaults() {
    let d = TestDir::new();
    d.file("typed/data.json", "{}\n");
    d.file("typed/page.html", "<p>page</p>\n");
    d.file("plain.txt", "plain\n");
    d.file(
        "_headers",
        "/typed/*\n  Content-Type: application/x-custom\n  Accept-Ranges: none\n  \
         X-Content-Type-Options: NoSniff\n\
         /typed/page.html\n  content-type: text/plain; charset=utf-8\n",
    );
    let srv = TestServer::start(&d.path);
    let r = srv.get("/plain.txt");
    assert_eq!(one(&r, "Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(one(&r, "Accept-Ranges"), "bytes");
    assert_eq!(one(&r, "X-Content-Type-Options"), "nosniff");
    for _round in 0..2 {
        let r = srv.get("/typed/data.json");
        assert_eq!((r.status, r.text().as_str()), (200, "{}\n"));
        assert_eq!(one(&r, "Content-Type"), "application/x-custom");
        assert_eq!(one(&r, "Accept-Ranges"), "none");
        assert_eq!(one(&r, "X-Content-Type-Options"), "NoSniff");
        let r = ask(&srv, "HEAD", "/typed/data.json", "");
        assert_eq!(one(&r, "Content-Type"), "application/x-custom");
        // Two blocks set it: one value (a type is not a list), the later block's.
        let r = srv.get("/typed/page.html");
        assert_eq!(one(&r, "Content-Type"), "text/plain; charset=utf-8");
    }
    // The built-in 404 page is ours: it keeps our Content-Type (one field), but the
    // other fields apply.
    let r = srv.get("/typed/missing");
    assert_eq!(r.status, 404);
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_eq!(one(&r, "X-Content-Type-Options"), "NoSniff");
}

#[test]
fn protected_fields_make_the_headers_file_malformed() {
    let d = TestDir::new();
    for name in [
        "Content-Length",
        "Transfer-Encoding",
        "Content-Range",
        "Content-Encoding",
        "ETag",
        "Last-Modified",
        "Date",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "Trailer",
        "Server",
        "Location",
        "content-length",
        "SERVER",
    ] {
        for line in [format!("  {name}: x"), format!("  ! {name}")] {
            d.file("_headers", format!("# c\n/*\n  X-Ok: 1\n{line}\n"));
            let err = bind_error(&d, |_| {});
            assert!(err.contains("_headers:4: "), "{line:?}: {err}");
        }
    }
}

/// The blocks apply to every answer about a file: 200, 206 (one range and multipart), 304,
/// from the small-file cache, from disk (> 16 KiB) and zero-copy (> 128 KiB), GET and HEAD.
#[test]
fn header_blocks_apply_to_every_file_answer() {
    let d = TestDir::new();
    let small = b"0123456789abcdefghij".to_vec();
    let mid: Vec<u8> = (0..20 * 1024u32).map(|i| (i % 251) as u8).collect();
    let big: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 241) as u8).collect();
    d.file("files/small.txt", &small);
    d.file("files/mid.bin", &mid);
    d.file("files/big.bin", &big);
    d.file(
        "_headers",
        "/files/*\n  X-Files: yes\n  Cache-Control: no-cache\n  Content-Type: application/x-test\n",
    );
    let srv = TestServer::start(&d.path);
    for (path, bytes) in [
        ("/files/small.txt", &small),
        ("/files/mid.bin", &mid),
        ("/files/big.bin", &big),
    ] {
        // Three rounds: the first opens the file, later ones find it in the cache (or its
        // snapshot, for the large one).
        for round in 0..3 {
            let ctx = format!("{path} round {round}");
            let r = srv.get(path);
            assert_eq!(r.status, 200, "{ctx}");
            assert!(r.body == *bytes, "{ctx}: body");
            assert_eq!(one(&r, "X-Files"), "yes", "{ctx}");
            assert_eq!(one(&r, "Cache-Control"), "no-cache", "{ctx}");
            assert_eq!(one(&r, "Content-Type"), "application/x-test", "{ctx}");
            let etag = one(&r, "ETag").to_string();

            let r = ask(&srv, "HEAD", path, "");
            assert_eq!((r.status, one(&r, "X-Files")), (200, "yes"), "{ctx} HEAD");

            let r = get_with(&srv, path, "Range: bytes=1-4\r\n");
            assert_eq!(r.status, 206, "{ctx}");
            assert_eq!(r.body, &bytes[1..5], "{ctx}");
            assert_eq!(one(&r, "X-Files"), "yes", "{ctx} 206");
            assert_eq!(one(&r, "Content-Type"), "application/x-test", "{ctx} 206");

            let r = get_with(&srv, path, &format!("If-None-Match: {etag}\r\n"));
            assert_eq!(r.status, 304, "{ctx}");
            assert_eq!(one(&r, "X-Files"), "yes", "{ctx} 304");
            assert_eq!(one(&r, "Cache-Control"), "no-cache", "{ctx} 304");
            // RFC 9110 §15.4.5: no content metadata on a 304, the rule's type included.
            assert_eq!(r.header("Content-Type"), None, "{ctx} 304");

            let r = get_with(&srv, path, "Range: bytes=0-1,4-5\r\n");
            assert_eq!(r.status, 206, "{ctx} multipart");
            let ct = one(&r, "Content-Type");
            assert!(
                ct.starts_with("multipart/byteranges; boundary="),
                "{ctx}: multipart keeps its own type, got {ct:?}"
            );
            let boundary = ct.split("boundary=").nth(1).unwrap();
            assert!(
                r.text().contains(&format!("--{boundary}\r\n")),
                "{ctx}: body"
            );
            assert_eq!(one(&r, "X-Files"), "yes", "{ctx} multipart");
            assert_eq!(one(&r, "Cache-Control"), "no-cache", "{ctx} multipart");
        }
    }
}

/// Rewrites, the 404/410/451 rule pages, the `--404` page and the built-in 404 get the
/// blocks of the request path; redirects do not.
#[test]
fn header_blocks_apply_to_rewrites_and_pages_but_not_redirects() {
    let d = TestDir::new();
    d.file("target.txt", "target\n");
    d.file("410.html", "gone page\n");
    d.file("404.html", "nf page\n");
    d.file("451.html", "legal page\n");
    d.file(
        "_redirects",
        "/rw /target.txt 200\n/gone /410.html 410\n/legal /451.html 451\n\
         /nf /404.html 404\n/moved /target.txt 301\n/moved-temp /target.txt 307\n",
    );
    d.file(
        "_headers",
        "/*\n  X-All: 1\n/rw\n  X-Rw: 1\n/gone\n  X-Gone: 1\n/moved\n  X-Moved: 1\n",
    );
    d.dir("dir");
    let srv = TestServer::start(&d.path);
    for _round in 0..2 {
        let r = srv.get("/rw");
        assert_eq!((r.status, r.text().as_str()), (200, "target\n"));
        assert_eq!((one(&r, "X-All"), one(&r, "X-Rw")), ("1", "1"));
        let r = get_with(&srv, "/rw", "Range: bytes=0-1\r\n");
        assert_eq!((r.status, one(&r, "X-Rw")), (206, "1"));
    }
    for (path, status, body) in [
        ("/gone", 410, "gone page\n"),
        ("/legal", 451, "legal page\n"),
        ("/nf", 404, "nf page\n"),
    ] {
        let r = srv.get(path);
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
        assert_eq!(one(&r, "X-All"), "1", "{path}");
    }
    assert_eq!(one(&srv.get("/gone"), "X-Gone"), "1");
    let r = srv.get("/nope");
    assert_eq!((r.status, one(&r, "X-All")), (404, "1"));
    for path in ["/moved", "/moved-temp", "/dir"] {
        let r = srv.get(path);
        assert!(matches!(r.status, 301 | 307), "{path}: {}", r.head);
        assert_eq!(r.header("X-All"), None, "{path}:\n{}", r.head);
        assert_eq!(r.header("X-Moved"), None, "{path}");
    }
    drop(srv);
    // The `--404` page, for a path no rule names.
    let srv = serve(&d, |c| c.not_found_page = Some(d.path.join("404.html")));
    let r = srv.get("/nope");
    assert_eq!((r.status, r.text().as_str()), (404, "nf page\n"));
    assert_eq!(one(&r, "X-All"), "1");
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
}

/// The README's CORS recipe: OPTIONS on a path is a preflight answered 204 with the
/// matching blocks' fields; GET carries them too.
#[test]
fn the_cors_recipe_answers_preflights() {
    let d = TestDir::new();
    d.file("api/data.json", "[]\n");
    d.file(
        "_headers",
        "/*\n  Access-Control-Allow-Origin: *\n  Access-Control-Allow-Headers: *\n",
    );
    let srv = TestServer::start(&d.path);
    for path in ["/api/data.json", "/api/missing", "/"] {
        let r = ask(
            &srv,
            "OPTIONS",
            path,
            "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: x-token\r\n",
        );
        assert!(
            r.head.starts_with("HTTP/1.1 204 No Content\r\n"),
            "{path}:\n{}",
            r.head
        );
        assert_eq!(one(&r, "Access-Control-Allow-Origin"), "*", "{path}");
        assert_eq!(one(&r, "Access-Control-Allow-Headers"), "*", "{path}");
        assert_eq!(one(&r, "Allow"), "GET, HEAD, OPTIONS");
        assert_eq!(r.header("Content-Length"), None);
    }
    let r = get_with(&srv, "/api/data.json", "Origin: https://app.example\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "[]\n"));
    assert_eq!(one(&r, "Access-Control-Allow-Origin"), "*");
    // `OPTIONS *` is about the server, not a path.
    let r = srv.request("OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
}

/// The README's caching recipe: hashed assets immutable, HTML revalidated.
#[test]
fn the_cache_control_recipe() {
    let d = TestDir::new();
    d.file("index.html", "home\n");
    d.file("about.html", "about\n");
    d.file("assets/app.3f2a.js", "js\n");
    d.file("robots.txt", "robots\n");
    d.file(
        "_headers",
        "/assets/*\n  Cache-Control: public, max-age=31536000, immutable\n\
         /*.html\n  Cache-Control: no-cache\n\
         /\n  Cache-Control: no-cache\n",
    );
    let srv = TestServer::start(&d.path);
    for (path, want) in [
        (
            "/assets/app.3f2a.js",
            Some("public, max-age=31536000, immutable"),
        ),
        ("/index.html", Some("no-cache")),
        ("/about.html", Some("no-cache")),
        ("/", Some("no-cache")),
        ("/robots.txt", None),
    ] {
        for _round in 0..2 {
            let r = srv.get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(
                all(&r, "Cache-Control"),
                want.into_iter().collect::<Vec<_>>(),
                "{path}"
            );
            // The 304 that revalidates carries it too.
            let etag = one(&r, "ETag").to_string();
            let r = get_with(&srv, path, &format!("If-None-Match: {etag}\r\n"));
            assert_eq!(r.status, 304, "{path}");
            assert_eq!(r.header("Cache-Control"), want, "{path} 304");
        }
    }
}

// ---------------------------------------------------------------------------------------
// --header
// ---------------------------------------------------------------------------------------

#[test]
fn header_flag_fields_are_on_every_response() {
    let d = TestDir::new();
    d.file("index.html", "home\n");
    d.file("blocked/f.txt", "blocked\n");
    d.file("added/f.txt", "added\n");
    d.dir("sub");
    d.file("_redirects", "/go /index.html 302\n");
    d.file(
        "_headers",
        "/blocked/*\n  ! X-Global\n/added/*\n  X-Global: more\n",
    );
    let srv = serve(&d, |c| {
        c.headers = vec![
            "X-Global: g".into(),
            "Strict-Transport-Security: max-age=63072000".into(),
        ]
    });
    let etag = one(&srv.get("/index.html"), "ETag").to_string();
    let cases: Vec<(String, u16)> = vec![
        ("GET /index.html HTTP/1.1\r\n".into(), 200),
        ("HEAD /index.html HTTP/1.1\r\n".into(), 200),
        (
            format!("GET /index.html HTTP/1.1\r\nIf-None-Match: {etag}\r\n"),
            304,
        ),
        (
            "GET /index.html HTTP/1.1\r\nRange: bytes=1-2\r\n".into(),
            206,
        ),
        (
            "GET /index.html HTTP/1.1\r\nRange: bytes=99-\r\n".into(),
            416,
        ),
        (
            "GET /index.html HTTP/1.1\r\nIf-Match: \"nope\"\r\n".into(),
            412,
        ),
        ("GET /nope HTTP/1.1\r\n".into(), 404),
        ("GET /sub HTTP/1.1\r\n".into(), 301),
        ("GET /go HTTP/1.1\r\n".into(), 302),
        (
            "POST /index.html HTTP/1.1\r\nContent-Length: 0\r\n".into(),
            405,
        ),
        ("DELETE /index.html HTTP/1.1\r\n".into(), 405),
        ("GET /health HTTP/1.1\r\n".into(), 200),
        ("OPTIONS /index.html HTTP/1.1\r\n".into(), 204),
        ("OPTIONS * HTTP/1.1\r\n".into(), 204),
        ("GET /%zz HTTP/1.1\r\n".into(), 400),
        ("GET /../etc/passwd HTTP/1.1\r\n".into(), 400),
        ("GET /_redirects HTTP/1.1\r\n".into(), 404),
    ];
    for (start, status) in &cases {
        let r = srv.request(&format!("{start}Host: t\r\nConnection: close\r\n\r\n"));
        assert_eq!(r.status, *status, "{start:?}:\n{}", r.head);
        assert_eq!(one(&r, "X-Global"), "g", "{start:?}");
        assert_eq!(
            one(&r, "Strict-Transport-Security"),
            "max-age=63072000",
            "{start:?}"
        );
    }
    // A request that does not parse: answered by the connection, with the fields too.
    for raw in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
    ] {
        let r = srv.request(raw);
        assert_eq!(r.status, 400, "{raw:?}:\n{}", r.head);
        assert_eq!(one(&r, "X-Global"), "g", "{raw:?}");
    }
    // Blocks detach it from, or add to it on, a file's answers.
    let r = srv.get("/blocked/f.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Global"), None, "{}", r.head);
    assert_eq!(one(&r, "Strict-Transport-Security"), "max-age=63072000");
    let r = srv.get("/added/f.txt");
    assert_eq!(one(&r, "X-Global"), "g, more");
}

#[test]
fn header_flag_fields_are_on_write_answers_too() {
    let d = TestDir::new();
    let srv = serve(&d, |c| {
        c.allow_write = true;
        c.headers = vec!["X-Global: g".into()];
    });
    let r = put(&srv, "/new.txt", "abc");
    assert_eq!((r.status, one(&r, "X-Global")), (201, "g"));
    let r = put(&srv, "/new.txt", "abcd");
    assert_eq!((r.status, one(&r, "X-Global")), (204, "g"));
    let r = ask(&srv, "DELETE", "/new.txt", "");
    assert_eq!((r.status, one(&r, "X-Global")), (204, "g"));
    let r = put(&srv, "/_redirects", "/a /b\n");
    assert_eq!((r.status, one(&r, "X-Global")), (403, "g"));
}

// ---------------------------------------------------------------------------------------
// The rule files themselves
// ---------------------------------------------------------------------------------------

#[test]
fn the_rule_files_are_never_served_nor_written() {
    let d = TestDir::new();
    let redirects = "/* /index.html 200\n";
    let headers = "/*\n  X-A: 1\n";
    d.file("index.html", "index\n");
    d.file("_redirects", redirects);
    d.file("_headers", headers);
    let srv = serve(&d, |c| c.allow_write = true);
    for path in [
        "/_redirects",
        "/_headers",
        "/%5Fheaders",
        "/%5fredirects",
        "/_%72edirects",
        "/x/../_redirects",
        "/./_headers",
        "//_headers",
    ] {
        for method in ["GET", "HEAD"] {
            let r = ask(&srv, method, path, "");
            assert_eq!(r.status, 404, "{method} {path}:\n{}", r.head);
            if method == "GET" {
                assert!(r.text().contains("404 Not Found"), "{path}: {}", r.text());
            }
        }
        let r = put(&srv, path, "/* /evil 301\n");
        assert_eq!(r.status, 403, "PUT {path}:\n{}", r.head);
        let r = ask(&srv, "DELETE", path, "");
        assert_eq!(r.status, 403, "DELETE {path}:\n{}", r.head);
    }
    assert_eq!(
        std::fs::read_to_string(d.path.join("_redirects")).unwrap(),
        redirects
    );
    assert_eq!(
        std::fs::read_to_string(d.path.join("_headers")).unwrap(),
        headers
    );
    // Nor created where there is none.
    std::fs::remove_file(d.path.join("_headers")).unwrap();
    let r = put(&srv, "/_headers", "/*\n  X-Evil: 1\n");
    assert_eq!(r.status, 403);
    assert!(!d.path.join("_headers").exists());
    // Only the root's: elsewhere they are ordinary names.
    d.file("sub/_redirects", "not rules\n");
    let r = srv.get("/sub/_redirects");
    assert_eq!((r.status, r.text().as_str()), (200, "not rules\n"));
}

#[test]
fn site_rules_off_ignores_the_files_and_serves_them() {
    let d = TestDir::new();
    let redirects = "/a /index.html 301\n/* /index.html 200\n";
    let headers = "/*\n  X-A: 1\n";
    d.file("index.html", "index\n");
    d.file("_redirects", redirects);
    d.file("_headers", headers);
    let srv = serve(&d, |c| {
        c.site_rules = false;
        c.headers = vec!["X-Global: g".into()];
    });
    let r = srv.get("/a");
    assert_eq!(r.status, 404, "{}", r.head);
    assert_eq!(r.header("Location"), None);
    let r = srv.get("/index.html");
    assert_eq!(r.header("X-A"), None);
    assert_eq!(
        one(&r, "X-Global"),
        "g",
        "--header applies whatever --site-rules says"
    );
    let r = srv.get("/_redirects");
    assert_eq!((r.status, r.text().as_str()), (200, redirects));
    let r = srv.get("/_headers");
    assert_eq!((r.status, r.text().as_str()), (200, headers));
    let r = srv.get("/%5Fheaders");
    assert_eq!((r.status, r.text().as_str()), (200, headers));
    // And a malformed one does not stop it from starting.
    d.file("_redirects", "/a /b 999\n");
    drop(srv);
    let srv = serve(&d, |c| c.site_rules = false);
    assert_eq!(srv.get("/_redirects").status, 200);
}

// ---------------------------------------------------------------------------------------
// --clean-urls
// ---------------------------------------------------------------------------------------

#[test]
fn clean_urls_serve_and_redirect() {
    let d = TestDir::new();
    d.file("index.html", "home\n");
    d.file("about.html", "about\n");
    d.file("dir/index.html", "dir\n");
    d.file("dir/page.html", "dir page\n");
    d.file("notes.txt", "notes\n");
    let srv = serve(&d, |c| c.clean_urls = true);
    for _round in 0..2 {
        for (path, status, location, body) in [
            ("/about", 200, None, Some("about\n")),
            ("/dir/page", 200, None, Some("dir page\n")),
            ("/dir/", 200, None, Some("dir\n")),
            ("/", 200, None, Some("home\n")),
            ("/notes.txt", 200, None, Some("notes\n")),
            ("/about.html", 308, Some("/about"), None),
            ("/dir/page.html", 308, Some("/dir/page"), None),
            ("/dir/index.html", 308, Some("/dir/"), None),
            ("/index.html", 308, Some("/"), None),
            ("/about.html?x=1", 308, Some("/about?x=1"), None),
            ("/index.html?a=b&c", 308, Some("/?a=b&c"), None),
            ("/missing", 404, None, None),
        ] {
            let r = srv.get(path);
            assert_eq!(r.status, status, "{path}:\n{}", r.head);
            assert_eq!(r.header("Location"), location, "{path}");
            if let Some(body) = body {
                assert_eq!(r.text(), body, "{path}");
            }
            if status == 308 {
                assert!(r.head.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"));
            }
        }
    }
    // A path that would read as another host stays a path.
    d.file("evil.example/x.html", "x\n");
    d.file("evil.example/index.html", "i\n");
    for path in ["//evil.example/x.html", "//evil.example/index.html"] {
        let r = srv.get(path);
        assert_eq!(r.status, 308, "{path}");
        let loc = one(&r, "Location");
        assert!(
            loc.starts_with('/') && !loc.starts_with("//"),
            "{path}: {loc}"
        );
    }
    let r = srv.get("/about");
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
    let r = ask(&srv, "HEAD", "/about", "");
    assert_eq!((r.status, one(&r, "Content-Length")), (200, "6"));
}

/// An `.html` URL is sent to its clean form only when the file exists: a missing one goes to
/// the rules, so the old `.html` addresses of a migrated site can still be redirected.
#[test]
fn clean_urls_leave_missing_html_paths_to_the_rules() {
    let d = TestDir::new();
    d.file("new.html", "new\n");
    d.file("_redirects", "/old.html /new 301\n");
    let srv = serve(&d, |c| c.clean_urls = true);
    for _round in 0..2 {
        let r = srv.get("/old.html");
        assert_eq!(
            (r.status, r.header("Location")),
            (301, Some("/new")),
            "{}",
            r.head
        );
        assert_eq!(srv.get("/gone.html").status, 404);
        let r = srv.get("/new.html");
        assert_eq!((r.status, r.header("Location")), (308, Some("/new")));
        assert_eq!(srv.get("/new").text(), "new\n");
    }
}

#[test]
fn clean_urls_are_off_by_default() {
    let d = TestDir::new();
    d.file("about.html", "about\n");
    d.file("dir/index.html", "dir\n");
    let srv = TestServer::start(&d.path);
    assert_eq!(srv.get("/about").status, 404);
    let r = srv.get("/about.html");
    assert_eq!((r.status, r.text().as_str()), (200, "about\n"));
    let r = srv.get("/dir/index.html");
    assert_eq!((r.status, r.text().as_str()), (200, "dir\n"));
}

// ---------------------------------------------------------------------------------------
// Start-up errors, reloads, limits
// ---------------------------------------------------------------------------------------

#[test]
fn a_malformed_rule_file_stops_the_server_at_start_up() {
    let d = TestDir::new();
    for (text, line) in [
        ("/a /b 999\n", 1),
        ("# comment\n\n/a /b 302\n/c\n", 4),
        ("/a /b\r\n/c /d 301 extra\r\n", 2),
        ("/a b 301\n", 1),
        ("/a/:x /b/:y 301\n", 1),
        ("/x /y 200\n/*/* /z 301\n", 2),
        ("/x https://elsewhere.example/ 200\n", 1),
    ] {
        d.file("_redirects", text);
        let err = bind_error(&d, |_| {});
        assert!(
            err.contains(&format!("_redirects:{line}: ")),
            "{text:?}: {err}"
        );
    }
    std::fs::remove_file(d.path.join("_redirects")).unwrap();
    for (text, line) in [
        ("  X-A: 1\n", 1),
        ("/*\n  X-A: 1\n/b c\n", 3),
        ("/*\n  X-A 1\n", 2),
        ("/*\n\n  X A: 1\n", 3),
        ("/*\n  ! X:A\n", 2),
        ("/*\n  : v\n", 2),
        ("/*\n  X-A: a\rSet-Cookie: x\n", 2),
        ("/*\n  X-A: a\0b\n", 2),
        ("/*\n  X-A: a\x0bb\n", 2),
    ] {
        d.file("_headers", text);
        let err = bind_error(&d, |_| {});
        assert!(
            err.contains(&format!("_headers:{line}: ")),
            "{text:?}: {err}"
        );
    }
    std::fs::remove_file(d.path.join("_headers")).unwrap();
    for field in [
        "X-A: a\r\nSet-Cookie: x",
        "X-A: a\nSet-Cookie: x",
        "X A: v",
        "X-A",
        "Content-Length: 5",
        "! X-A",
    ] {
        let err = bind_error(&d, |c| c.headers = vec![field.into()]);
        assert!(err.contains("--header"), "{field:?}: {err}");
    }
    // And the good ones start.
    d.file("_redirects", "/a /b\n");
    d.file("_headers", "/*\n  X-A: 1\n");
    let srv = serve(&d, |c| c.headers = vec!["X-B: 2".into()]);
    let r = srv.get("/a");
    assert_eq!(
        (r.status, one(&r, "Location"), one(&r, "X-B")),
        (301, "/b", "2")
    );
}

#[test]
fn a_changed_redirects_file_is_reloaded_and_a_malformed_one_is_not() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    rewrite(&d, "_redirects", "/old /a 301\n", 1_000_000);
    let srv = serve(&d, |c| c.cache_valid = Duration::from_millis(50));
    let r = srv.get("/old");
    assert_eq!((r.status, one(&r, "Location")), (301, "/a"));

    rewrite(&d, "_redirects", "/new /b 302\n", 1_000_010);
    eventually("the new rule", || srv.get("/new"), |r| r.status == 302);
    assert_eq!(one(&srv.get("/new"), "Location"), "/b");
    assert_eq!(srv.get("/old").status, 404, "the old rule is gone");

    // Malformed: the rules in force stay, for several intervals, and the server serves.
    replace(&d, "_redirects", "/bad /c 302\n/worse /d 999\n", 1_000_020);
    throughout(
        "a malformed file leaves the rules in force",
        Duration::from_millis(300),
        || srv.get("/new"),
        |r| r.status == 302 && r.header("Location") == Some("/b"),
    );
    assert_eq!(srv.get("/bad").status, 404);
    assert_eq!(srv.get("/index.html").text(), "index\n");

    // A later good file is picked up again.
    rewrite(&d, "_redirects", "/third /c 307\n", 1_000_030);
    eventually("the fixed file", || srv.get("/third"), |r| r.status == 307);
    assert_eq!(srv.get("/new").status, 404);

    // Replaced by a rename, with the same length and mtime: a new inode is a new version.
    replace(&d, "_redirects", "/forth /d 303\n", 1_000_030);
    eventually(
        "the renamed file",
        || srv.get("/forth"),
        |r| r.status == 303,
    );

    // Removed: no rules.
    std::fs::remove_file(d.path.join("_redirects")).unwrap();
    eventually(
        "no file, no rules",
        || srv.get("/forth"),
        |r| r.status == 404,
    );
}

#[test]
fn a_changed_headers_file_is_reloaded_and_a_malformed_one_is_not() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    rewrite(&d, "_headers", "/*\n  X-V: 1\n", 1_000_000);
    let srv = serve(&d, |c| c.cache_valid = Duration::from_millis(50));
    assert_eq!(one(&srv.get("/index.html"), "X-V"), "1");

    rewrite(&d, "_headers", "/*\n  X-V: 2\n", 1_000_010);
    eventually(
        "the new value",
        || srv.get("/index.html"),
        |r| r.header("X-V") == Some("2"),
    );

    replace(
        &d,
        "_headers",
        "/*\n  X-V: 3\n  Content-Length: 1\n",
        1_000_020,
    );
    throughout(
        "a malformed file leaves the rules in force",
        Duration::from_millis(300),
        || srv.get("/index.html"),
        |r| r.status == 200 && all(r, "X-V") == ["2"] && r.text() == "index\n",
    );

    rewrite(&d, "_headers", "/*\n  X-V: 4\n", 1_000_030);
    eventually(
        "the fixed file",
        || srv.get("/index.html"),
        |r| r.header("X-V") == Some("4"),
    );
}

#[test]
fn the_largest_rule_files_load_and_one_more_rule_does_not() {
    let d = TestDir::new();
    let statics: String = (0..2000).map(|i| format!("/s{i} /t{i} 301\n")).collect();
    let dynamics: String = (0..100)
        .map(|i| format!("/d{i}/* /e{i}/:splat 302\n"))
        .collect();
    d.file("_redirects", format!("{statics}{dynamics}"));
    let srv = TestServer::start(&d.path);
    for (path, status, location) in [
        ("/s0", 301, "/t0"),
        ("/s1999", 301, "/t1999"),
        ("/d0/x", 302, "/e0/x"),
        ("/d99/y/z", 302, "/e99/y/z"),
    ] {
        let r = srv.get(path);
        assert_eq!(
            (r.status, one(&r, "Location")),
            (status, location),
            "{path}"
        );
    }
    assert_eq!(srv.get("/s2000").status, 404);
    drop(srv);

    d.file("_redirects", format!("{statics}/s2000 /t 301\n"));
    let err = bind_error(&d, |_| {});
    assert!(err.contains("_redirects:2001: "), "{err}");
    d.file("_redirects", format!("{dynamics}/d100/* /e 301\n"));
    let err = bind_error(&d, |_| {});
    assert!(err.contains("_redirects:101: "), "{err}");
    std::fs::remove_file(d.path.join("_redirects")).unwrap();

    let blocks: String = (0..100).map(|i| format!("/b{i}\n  X-B: {i}\n")).collect();
    d.file("_headers", &blocks);
    d.file("b99", "last\n");
    let srv = TestServer::start(&d.path);
    assert_eq!(one(&srv.get("/b0"), "X-B"), "0");
    let r = srv.get("/b99");
    assert_eq!((r.status, one(&r, "X-B")), (200, "99"));
    drop(srv);
    d.file("_headers", format!("{blocks}/b100\n  X-B: 100\n"));
    let err = bind_error(&d, |_| {});
    assert!(err.contains("_headers:201: "), "{err}");
}

// ---------------------------------------------------------------------------------------
// Injection attempts
// ---------------------------------------------------------------------------------------

#[test]
fn captured_bytes_cannot_split_or_redirect_off_site() {
    let d = TestDir::new();
    d.file(
        "_redirects",
        "/inj/* /dest/:splat 301\n/p/:v /dest/:v 302\n/go/* /:splat 301\n/gp/:v /:v 301\n\
         /h* /:splat 301\n",
    );
    let srv = TestServer::start(&d.path);
    let r = srv.get("/inj/a%0D%0ASet-Cookie:%20x=1");
    assert_eq!(r.status, 301, "{}", r.head);
    assert_eq!(one(&r, "Location"), "/dest/a%0D%0ASet-Cookie:%20x=1");
    assert_eq!(r.header("Set-Cookie"), None, "{}", r.head);
    let r = srv.get("/p/a%0D%0ASet-Cookie:%20x");
    assert_eq!(one(&r, "Location"), "/dest/a%0D%0ASet-Cookie:%20x");
    assert_eq!(r.header("Set-Cookie"), None);
    let r = srv.get("/p/a%0Ab%09c%7F%C3%A9");
    assert_eq!(one(&r, "Location"), "/dest/a%0Ab%09c%7F%C3%A9");

    for path in [
        "/go/%2F%2Fevil.example",
        "/go/%2F%2Fevil.example/x",
        "/go//evil.example",
        "/go/%5Cevil.example",
        "/go/%5C%5Cevil.example",
        "/go/%2F%5Cevil.example",
        "/gp/%2F%2Fevil.example",
        "/gp/%5C%5Cevil.example",
        // The splat of `/h*` starts with the slash: `/` + `/evil.example`.
        "/h/evil.example",
        "/h//evil.example",
        "/h/%2Fevil.example",
        "/h/%5Cevil.example",
    ] {
        let r = srv.get(path);
        let loc = r.header("Location").unwrap_or("");
        assert!(
            r.status == 404 || (r.status == 301 && loc.starts_with('/')),
            "{path}:\n{}",
            r.head
        );
        assert!(!loc.starts_with("//"), "{path}: Location {loc:?}");
        assert!(
            !loc.starts_with("/\\") && !loc.contains('\\'),
            "{path}: {loc:?}"
        );
    }
    let r = srv.get("/go/%2F%2Fevil.example");
    assert_eq!((r.status, one(&r, "Location")), (301, "/evil.example"));
    let r = srv.get("/go/%5Cevil.example");
    assert_eq!((r.status, one(&r, "Location")), (301, "/%5Cevil.example"));
}

// ---------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_poolserve");

/// Runs the binary on `root` (port 0) with `args`; it must exit 2 within 10 s with one line
/// on stderr containing `needle`.
fn assert_refused(root: &TestDir, args: &[&str], needle: &str) {
    let mut child = Command::new(BIN)
        .args(["--root", root.path.to_str().unwrap(), "--port", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run poolserve");
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("{args:?}: still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn the_binary_refuses_malformed_rules_with_exit_2_and_one_line() {
    let d = TestDir::new();
    d.file("_redirects", "# ok\n/a /b 301\n\n/c /d 302 extra\n");
    assert_refused(&d, &[], "_redirects:4: ");
    d.file("_redirects", "/a /b 301\n");
    d.file("_headers", "/*\n  X-A: 1\n  ETag: x\n");
    assert_refused(&d, &[], "_headers:3: ");
    std::fs::remove_file(d.path.join("_headers")).unwrap();
    for field in [
        "Bad Name: x",
        "X-A: a\r\nSet-Cookie: x",
        "X-A: a\rb",
        "Server: me",
    ] {
        assert_refused(&d, &["--header", field], "--header");
    }
    // The same field from the environment.
    let out = Command::new(BIN)
        .args(["--root", d.path.to_str().unwrap(), "--port", "0"])
        .env("POOLSERVE_HEADER", "X-A: a\r\nSet-Cookie: x")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("POOLSERVE_HEADER"), "{err}");
    // With --site-rules off, the malformed files are not read at all.
    d.file("_redirects", "/a /b 999\n");
    let mut child = Command::new(BIN)
        .args([
            "--root",
            d.path.to_str().unwrap(),
            "--port",
            "0",
            "--site-rules",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on http://"), "{line:?}");
}

#[test]
fn the_binary_applies_header_flags() {
    let d = TestDir::new();
    d.file("index.html", "home\n");
    d.file("about.html", "about\n");
    d.file("_redirects", "/old /about 301\n");
    let mut child = Command::new(BIN)
        .args([
            "--root",
            d.path.to_str().unwrap(),
            "--port",
            "0",
            "--clean-urls",
        ])
        .args(["--header", "X-One: 1", "--header=X-Two: 2"])
        .env("POOLSERVE_HEADER", "X-Env: a\nX-Env2: b\n")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        support::read_response(&mut s, false).unwrap()
    };
    let r = get("/about");
    let r2 = get("/old");
    let r3 = get("/about.html");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((r.status, r.text().as_str()), (200, "about\n"));
    for (name, value) in [
        ("X-One", "1"),
        ("X-Two", "2"),
        ("X-Env", "a"),
        ("X-Env2", "b"),
    ] {
        assert_eq!(one(&r, name), value, "{name}");
        assert_eq!(one(&r2, name), value, "{name}");
    }
    assert_eq!((r2.status, one(&r2, "Location")), (301, "/about"));
    assert_eq!((r3.status, one(&r3, "Location")), (308, "/about"));
}

// ---------------------------------------------------------------------------------------
// Odds and ends
// ---------------------------------------------------------------------------------------

/// The first rule in file order wins, whether it is static, indexed by its first segment,
/// or tried against every path.
#[test]
fn the_first_matching_rule_wins() {
    let d = TestDir::new();
    d.file(
        "_redirects",
        "/x/* /first 301
/x/y /second 301
/y /third 301
/* /all 302
/z /never 301
         /y/:a /never 301
",
    );
    let srv = TestServer::start(&d.path);
    for (path, status, location) in [
        ("/x/y", 301, "/first"),
        ("/x", 301, "/first"),
        ("/y", 301, "/third"),
        ("/y/1", 302, "/all"),
        ("/z", 302, "/all"),
        ("/", 302, "/all"),
    ] {
        let r = srv.get(path);
        assert_eq!(
            (r.status, one(&r, "Location")),
            (status, location),
            "{path}"
        );
    }
}

/// Every kind of rule answer on one keep-alive connection, pipelined: each is framed
/// right, so the next one parses.
#[test]
fn rule_answers_are_framed_for_keep_alive() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    d.file("410.html", "gone\n");
    d.file(
        "_redirects",
        "/r /index.html 302\n/g /410.html 410\n/m /none.html 451\n/* /index.html 200\n",
    );
    d.file("_headers", "/*\n  X-A: 1\n");
    let srv = serve(&d, |c| c.headers = vec!["X-G: g".into()]);
    let etag = one(&srv.get("/index.html"), "ETag").to_string();
    let requests = [
        ("GET /r", "", 302, ""),
        ("GET /g", "", 410, "gone\n"),
        ("HEAD /g", "", 410, ""),
        ("GET /m", "", 451, "451 Unavailable"),
        ("GET /deep/link", "", 200, "index\n"),
        ("HEAD /deep/link", "", 200, ""),
        (
            "GET /deep/link",
            &*format!("If-None-Match: {etag}\r\n"),
            304,
            "",
        ),
        ("GET /deep/link", "Range: bytes=1-2\r\n", 206, "nd"),
        ("OPTIONS /deep/link", "", 204, ""),
        ("GET /_redirects", "", 404, "404 Not Found"),
        ("GET /index.html", "", 200, "index\n"),
    ];
    let mut raw = String::new();
    for (start, extra, _, _) in &requests {
        raw.push_str(&format!("{start} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"));
    }
    let mut s = srv.connect();
    s.write_all(raw.as_bytes()).unwrap();
    for (start, _, status, body) in requests {
        let r = support::read_response(&mut s, start.starts_with("HEAD ")).expect(start);
        assert_eq!(r.status, status, "{start}:\n{}", r.head);
        assert!(r.text().contains(body), "{start}: {}", r.text());
        assert_eq!(r.header("Connection"), None, "{start}: stays open");
        assert_eq!(one(&r, "X-G"), "g", "{start}");
    }
}

/// A forced rule applies over an existing file whatever its kind, but never exposes the
/// rule files.
#[test]
fn forced_rules_of_every_kind() {
    let d = TestDir::new();
    d.file("index.html", "index\n");
    d.file("secret.txt", "secret\n");
    d.file("legal.txt", "legal\n");
    d.file("404.html", "nf\n");
    d.file(
        "_redirects",
        "/secret.txt /404.html 404!\n/legal.txt /none.html 451!\n/* /index.html 200!\n",
    );
    let srv = TestServer::start(&d.path);
    let r = srv.get("/secret.txt");
    assert_eq!((r.status, r.text().as_str()), (404, "nf\n"));
    let r = srv.get("/legal.txt");
    assert_eq!(r.status, 451);
    assert!(r.text().contains("451 Unavailable For Legal Reasons"));
    for path in ["/404.html", "/anything", "/"] {
        let r = srv.get(path);
        assert_eq!((r.status, r.text().as_str()), (200, "index\n"), "{path}");
    }
    for path in ["/_redirects", "/_headers", "/%5Fredirects"] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.text().contains("404 Not Found"), "{path}: {}", r.text());
    }
}

/// A `--header` or `_headers` Content-Type never makes two fields, and the parts of a
/// multipart answer carry the type the rules give the representation.
#[test]
fn a_content_type_rule_is_the_one_content_type() {
    let d = TestDir::new();
    d.file("f.bin", vec![7u8; 100]);
    d.file("_headers", "/f.bin\n  Content-Type: application/x-rule\n");
    let srv = serve(&d, |c| c.headers = vec!["X-G: g".into()]);
    let r = get_with(&srv, "/f.bin", "Range: bytes=0-1,4-5\r\n");
    assert_eq!(r.status, 206);
    assert!(one(&r, "Content-Type").starts_with("multipart/byteranges; boundary="));
    let text = r.text();
    assert_eq!(
        text.matches("\r\nContent-Type: application/x-rule\r\n")
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("octet-stream"), "{text}");
    assert_eq!(one(&r, "Content-Length"), r.body.len().to_string());
    drop(srv);

    let srv = serve(&d, |c| {
        c.headers = vec!["Content-Type: text/x-global".into()]
    });
    let r = srv.get("/health");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(one(&r, "Content-Type"), "text/plain; charset=utf-8");
    let r = srv.get("/nope");
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
}

/// A rule file is read only when it is a regular file within its limit: a FIFO cannot hang
/// the start-up (nor a reload), and an oversized file is refused with its real size, before
/// it is read.
#[test]
fn rule_files_that_are_not_small_regular_files_are_refused_without_reading_them() {
    let d = TestDir::new();
    let fifo = d.path.join("_redirects");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let t = Instant::now();
        let e = bind_error(&d, |_| {});
        assert!(e.ends_with("_redirects: not a regular file"), "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        std::fs::remove_file(&fifo).unwrap();
    }
    let big = "/a /b\n".repeat(20_000); // 120,000 bytes
    d.file("_redirects", &big);
    let e = bind_error(&d, |_| {});
    assert!(
        e.ends_with("_redirects: 120000 bytes, more than the 65536 allowed"),
        "{e}"
    );
    // On reload the same refusal keeps the rules in force.
    d.file("_redirects", "/a /b 302\n");
    let srv = serve(&d, |c| c.cache_valid = Duration::from_millis(50));
    assert_eq!(srv.get("/a").status, 302);
    replace(&d, "_redirects", &big, 1_000);
    std::thread::sleep(Duration::from_millis(300)); // two checks at least
    assert_eq!(srv.get("/a").status, 302);
}

/// A `--header` field never doubles a field the answer writes itself (`Allow` on a 405,
/// `Location` is refused outright, the page's `Content-Type`).
#[test]
fn header_flag_fields_do_not_double_an_answers_own_fields() {
    let d = TestDir::new();
    d.file("a.txt", "a\n");
    let srv = serve(&d, |c| {
        c.headers = vec!["Allow: NOPE".into(), "Content-Type: x/y".into()];
    });
    let r = ask(&srv, "POST", "/a.txt", "Content-Length: 0\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(one(&r, "Allow"), "GET, HEAD, OPTIONS");
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
    let r = srv.get("/missing");
    assert_eq!(one(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_eq!(one(&r, "Allow"), "NOPE");
}
