//! Precompressed sidecars (`FILE.br`, `FILE.gz`) chosen by Accept-Encoding, and the
//! `--404` / `--fallback` pages, on the wire.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{config, read_response, Response, TestDir, TestServer};

const PLAIN: &str = "console.log('plain, the identity representation');\n";
const GZ: &[u8] = b"\x1f\x8b pretend-gzip bytes of app.js";
const BR: &[u8] = b"pretend-brotli";

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("app.js", PLAIN);
    d.file("app.js.gz", GZ);
    d.file("app.js.br", BR);
    d.file("only-gz.css", "body{}");
    d.file("only-gz.css.gz", GZ);
    d.file("plain.txt", "no variants here");
    d
}

fn get(srv: &TestServer, path: &str, extra: &str) -> Response {
    srv.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

#[test]
fn accept_encoding_picks_the_sidecar() {
    let d = site();
    let srv = TestServer::start(&d.path);
    // (path, Accept-Encoding, expected body, expected Content-Encoding)
    let rows: &[(&str, &str, &[u8], Option<&str>)] = &[
        ("/app.js", "", PLAIN.as_bytes(), None),
        (
            "/app.js",
            "Accept-Encoding: gzip, deflate, br\r\n",
            BR,
            Some("br"),
        ),
        ("/app.js", "Accept-Encoding: gzip\r\n", GZ, Some("gzip")),
        (
            "/app.js",
            "Accept-Encoding: GZip;q=1, br;q=0.5\r\n",
            GZ,
            Some("gzip"),
        ),
        (
            "/app.js",
            "Accept-Encoding: br;q=0\r\n",
            PLAIN.as_bytes(),
            None,
        ),
        (
            "/app.js",
            "Accept-Encoding: identity\r\n",
            PLAIN.as_bytes(),
            None,
        ),
        ("/app.js", "Accept-Encoding: *\r\n", BR, Some("br")),
        (
            "/app.js",
            "Accept-Encoding: deflate\r\n",
            PLAIN.as_bytes(),
            None,
        ),
        (
            "/app.js",
            "Accept-Encoding: deflate\r\nAccept-Encoding: gzip\r\n",
            GZ,
            Some("gzip"),
        ),
        (
            "/only-gz.css",
            "Accept-Encoding: br, gzip\r\n",
            GZ,
            Some("gzip"),
        ),
        ("/only-gz.css", "Accept-Encoding: br\r\n", b"body{}", None),
    ];
    for (path, extra, body, coding) in rows {
        let r = get(&srv, path, extra);
        assert_eq!(r.status, 200, "{path} {extra:?}");
        assert_eq!(r.body, *body, "{path} {extra:?}");
        assert_eq!(r.header("Content-Encoding"), *coding, "{path} {extra:?}");
        assert_eq!(
            r.header("Vary"),
            Some("Accept-Encoding"),
            "{path} {extra:?}"
        );
        // The type is the original file's, never application/gzip.
        let want_type = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(
            r.header("Content-Type"),
            Some(want_type),
            "{path} {extra:?}"
        );
    }
    // A file without sidecars says nothing about Accept-Encoding.
    let r = get(&srv, "/plain.txt", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(r.header("Vary"), None);
    assert_eq!(r.header("Content-Encoding"), None);
    // The sidecar itself, asked for by name, is just a file of its own type.
    let r = get(&srv, "/app.js.gz", "Accept-Encoding: gzip\r\n");
    assert_eq!(r.body, GZ);
    assert_eq!(r.header("Content-Encoding"), None);
    assert_eq!(r.header("Content-Type"), Some("application/gzip"));
}

#[test]
fn each_variant_has_its_own_validators_and_ranges() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let plain = get(&srv, "/app.js", "");
    let gz = get(&srv, "/app.js", "Accept-Encoding: gzip\r\n");
    let br = get(&srv, "/app.js", "Accept-Encoding: br\r\n");
    let tags: Vec<&str> = [&plain, &gz, &br]
        .iter()
        .map(|r| r.header("ETag").unwrap())
        .collect();
    assert_ne!(tags[0], tags[1]);
    assert_ne!(tags[0], tags[2]);
    assert_ne!(tags[1], tags[2]);

    // A 304 for the variant the client holds, with Vary; the identity tag does not match it.
    let mut s = srv.connect();
    let rows = [
        (
            format!("Accept-Encoding: gzip\r\nIf-None-Match: {}\r\n", tags[1]),
            304,
        ),
        (
            format!("Accept-Encoding: gzip\r\nIf-None-Match: {}\r\n", tags[0]),
            200,
        ),
        (format!("If-None-Match: {}\r\n", tags[1]), 200),
        (format!("If-None-Match: {}\r\n", tags[0]), 304),
    ];
    for (extra, want) in &rows {
        s.write_all(format!("GET /app.js HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, *want, "{extra:?}");
        assert_eq!(r.header("Vary"), Some("Accept-Encoding"), "{extra:?}");
        if r.status == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("Content-Encoding"), None);
        }
    }

    // Ranges count bytes of the chosen variant (RFC 9110 §14.1.2).
    let r = get(
        &srv,
        "/app.js",
        "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\n",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &GZ[..4]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 0-3/{}", GZ.len()).as_str())
    );
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let r = get(
        &srv,
        "/app.js",
        "Accept-Encoding: br\r\nRange: bytes=100-\r\n",
    );
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes */{}", BR.len()).as_str())
    );
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    // If-Range with the identity tag does not apply to the gzip variant: full 200.
    let r = get(
        &srv,
        "/app.js",
        &format!(
            "Accept-Encoding: gzip\r\nRange: bytes=0-3\r\nIf-Range: {}\r\n",
            tags[0]
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, GZ);

    // HEAD mirrors GET.
    let h = srv.request(
        "HEAD /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(h.header("Content-Encoding"), Some("br"));
    assert_eq!(
        h.header("Content-Length"),
        Some(BR.len().to_string().as_str())
    );
    assert_eq!(h.header("ETag"), Some(tags[2]));
}

#[test]
fn a_sidecar_that_is_a_directory_or_leads_outside_is_ignored() {
    let d = site();
    let outside = TestDir::new();
    let secret = outside.file("secret.gz", "SECRET outside the root");
    d.file("a.html", "<p>a</p>");
    d.dir("a.html.gz");
    d.file("b.html", "<p>b</p>");
    d.symlink(&secret, "b.html.gz");
    let srv = TestServer::start(&d.path);
    for path in ["/a.html", "/b.html"] {
        let r = get(&srv, path, "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.text().starts_with("<p>"), "{path}: {}", r.text());
        assert_eq!(r.header("Content-Encoding"), None, "{path}");
    }
}

#[test]
fn not_found_page_and_spa_fallback() {
    let d = site();
    let pages = TestDir::new();
    let missing = pages.file("missing.html", "<h1>custom missing page</h1>");
    d.file("index.html", "<div id=app></div>");
    d.file("index.html.gz", GZ);
    let mut c = config(&d.path);
    c.not_found_page = Some(missing);
    c.fallback = Some(d.path.join("index.html"));
    let srv = TestServer::with_config(c);

    // (path, status, body)
    let rows: &[(&str, u16, &str)] = &[
        ("/users/42", 200, "<div id=app></div>"),
        ("/deep/link/", 200, "<div id=app></div>"),
        ("/app.js", 200, PLAIN),
        ("/missing.js", 404, "<h1>custom missing page</h1>"),
        ("/img/logo.png", 404, "<h1>custom missing page</h1>"),
        ("/v1.2/x.json", 404, "<h1>custom missing page</h1>"),
    ];
    let mut s = srv.connect();
    for (path, status, body) in rows {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).expect("a response on the same connection");
        assert_eq!(r.status, *status, "{path}");
        assert_eq!(r.text(), *body, "{path}");
        assert_eq!(
            r.header("Content-Type"),
            Some(if path.ends_with(".js") && *status == 200 {
                "text/javascript; charset=utf-8"
            } else {
                "text/html; charset=utf-8"
            }),
            "{path}"
        );
    }
    // The fallback is a full representation: validators, and its gzip sidecar.
    let r = get(&srv, "/route", "Accept-Encoding: gzip\r\n");
    assert_eq!((r.status, r.body.as_slice()), (200, GZ));
    assert!(r.header("ETag").is_some());
    // Errors other than 404 keep their own answers.
    assert_eq!(get(&srv, "/../x", "").status, 400);
    let r = srv.request("HEAD /nope.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("Content-Length"),
        Some("<h1>custom missing page</h1>".len().to_string().as_str())
    );
}

/// Issue 14: the `--404` and `--fallback` pages are loaded once and kept like cached files,
/// so a deep link costs no open: deleting them changes nothing within the revalidation
/// interval.
#[test]
fn configured_pages_are_loaded_once() {
    let d = site();
    let gone = d.file("gone.html", "custom");
    let app = d.file("app.html", "<div id=app>");
    let mut c = config(&d.path);
    c.not_found_page = Some(gone.clone());
    c.fallback = Some(app.clone());
    c.cache_valid = Duration::from_secs(60);
    let srv = TestServer::with_config(c);
    assert_eq!(get(&srv, "/x.txt", "").text(), "custom");
    assert_eq!(get(&srv, "/route", "").text(), "<div id=app>");
    std::fs::remove_file(&gone).unwrap();
    std::fs::remove_file(&app).unwrap();
    for _ in 0..3 {
        let r = get(&srv, "/x.txt", "");
        assert_eq!((r.status, r.text().as_str()), (404, "custom"));
        let r = get(&srv, "/route", "");
        assert_eq!((r.status, r.text().as_str()), (200, "<div id=app>"));
        assert!(
            r.header("ETag").is_some(),
            "the fallback keeps its validators"
        );
    }
}

/// A page deleted after start-up: with the cache off it is opened on every use, so the
/// built-in 404 follows at once; with the cache on, once the interval has passed.
#[test]
fn a_page_deleted_after_start_falls_back_to_the_built_in_404() {
    for valid in [Duration::ZERO, Duration::from_millis(100)] {
        let d = site();
        let page = d.file("gone.html", "custom");
        let mut c = config(&d.path);
        c.not_found_page = Some(page.clone());
        c.cache_valid = valid;
        let srv = TestServer::with_config(c);
        assert_eq!(get(&srv, "/x", "").text(), "custom");
        std::fs::remove_file(&page).unwrap();
        let t = Instant::now();
        let r = loop {
            let r = get(&srv, "/x", "");
            if r.text() != "custom" || valid.is_zero() {
                break r;
            }
            assert!(
                t.elapsed() < support::IO_TIMEOUT,
                "the page was never revalidated"
            );
            std::thread::sleep(valid / 4);
        };
        assert_eq!(r.status, 404);
        assert_ne!(r.text(), "custom", "cache interval {valid:?}");
    }
}

#[test]
fn a_missing_page_fails_at_start_up() {
    let d = site();
    for (not_found, fallback) in [
        (Some(d.path.join("nope.html")), None),
        (None, Some(d.path.join("nope.html"))),
        (Some(d.path.clone()), None),
    ] {
        let mut c = config(&d.path);
        c.not_found_page = not_found;
        c.fallback = fallback;
        let Err(err) = poolserve::Server::bind(c) else {
            panic!("bind must fail")
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("--404") || msg.starts_with("--fallback"),
            "{msg}"
        );
    }
}
