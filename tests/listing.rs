//! Directory listings (`--list-dirs`) through the real server: off by default (404 as
//! before), `index.html` and the slash redirect still first, the HTML page and the JSON
//! array, sorting and natural order, what is never listed (hidden names, uploads in
//! progress, the rule files, links out of the root, broken links, FIFOs) and what is never
//! listed at all (a hidden directory, a link out), a table of hostile names whose links all
//! work, names that are not UTF-8, validators (304, HEAD), site rules on listings, and the
//! share-a-folder command line. In-process on 127.0.0.1:0, in raw bytes; the big-directory
//! figures are in `listing_big.rs` (and `bench/listing.sh`), the browser in `browser.rs`.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use poolserve::Config;
use support::{config, Response, TestDir, TestServer};

/// A server on `d` with listings on and the test config changed by `tune`.
fn serve(d: &TestDir, tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut c = config(&d.path);
    c.list_dirs = true;
    tune(&mut c);
    TestServer::with_config(c)
}

/// A request with `method`, `path` and extra header lines (each ending in `\r\n`).
fn ask(srv: &TestServer, method: &str, path: &str, extra: &str) -> Response {
    srv.request(&format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

/// The links of the page's rows, in order (the parent link left out).
fn rows(r: &Response) -> Vec<String> {
    let text = r.text();
    text.split("<tr><td><a href=\"")
        .skip(1)
        .map(|row| row.split('"').next().unwrap().to_string())
        .filter(|href| href != "../")
        .collect()
}

/// The `url` of every entry of a JSON listing, in order.
fn urls(r: &Response) -> Vec<String> {
    r.text()
        .split("\"url\":\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// A file with `name`'s raw bytes in `dir`.
fn raw_file(dir: &Path, name: &[u8], contents: &[u8]) {
    std::fs::write(dir.join(std::ffi::OsStr::from_bytes(name)), contents).unwrap();
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn listings_are_off_by_default_and_index_html_and_the_slash_redirect_come_first() {
    let d = TestDir::new();
    d.file("sub/a.txt", "a");
    d.file("site/index.html", "the index");
    let off = TestServer::with_config(config(&d.path));
    assert_eq!(off.get("/sub/").status, 404);
    assert_eq!(off.get("/").status, 404);
    assert_eq!(off.get("/sub/?format=json").status, 404);
    drop(off);

    let on = serve(&d, |_| {});
    let index = on.get("/site/");
    assert_eq!((index.status, index.text().as_str()), (200, "the index"));
    assert_eq!(index.header("Vary"), None, "a file, not a listing");
    let redirect = on.get("/sub?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("Location"), Some("/sub/?x=1"));
    assert_eq!(on.get("/sub/").status, 200);
    assert_eq!(on.get("/").status, 200);
    assert_eq!(on.get("/missing/").status, 404);
    // A file is not a directory: `/sub/a.txt/` stays a 404.
    assert_eq!(on.get("/sub/a.txt/").status, 404);
}

#[test]
fn the_html_page_lists_directories_first_in_natural_order_with_sizes_and_times() {
    let d = TestDir::new();
    d.file("share/file10.txt", "ten");
    d.file("share/file2.txt", vec![b'x'; 1536]);
    d.file("share/File1.txt", "");
    d.file("share/b.bin", "b");
    d.dir("share/zz-dir");
    d.dir("share/Alpha");
    let srv = serve(&d, |_| {});
    let r = srv.get("/share/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Vary"), Some("Accept"));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert!(r.header("ETag").unwrap().starts_with("W/\""));
    assert!(r.header("Last-Modified").is_some());
    assert_eq!(r.header("Accept-Ranges"), None, "a listing takes no ranges");
    assert_eq!(
        r.header("Content-Length").unwrap(),
        r.body.len().to_string()
    );
    assert_eq!(
        rows(&r),
        [
            "Alpha/",
            "zz-dir/",
            "b.bin",
            "File1.txt",
            "file2.txt",
            "file10.txt"
        ]
    );
    let page = r.text();
    assert!(page.contains("<a href=\"../\">../</a>"), "a parent link");
    assert!(page.contains("<h1>Index of <a href=\"/\">/</a><a href=\"/share/\">share</a>/</h1>"));
    assert!(page.contains("<td class=\"s\" title=\"1,536 bytes\">1.5 KiB</td>"));
    // The times are the files' own, ISO 8601 in UTC.
    let meta = std::fs::metadata(d.path.join("share/b.bin")).unwrap();
    let secs = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let json = ask(&srv, "GET", "/share/?format=json", "");
    let b_entry = json
        .text()
        .lines()
        .find(|l| l.contains("\"name\":\"b.bin\""))
        .unwrap()
        .to_string();
    let mtime = b_entry.split("\"mtime\":\"").nth(1).unwrap();
    assert_eq!(&mtime[..20], iso8601(secs), "{b_entry}");
    let shown = format!("{} {}", &iso8601(secs)[..10], &iso8601(secs)[11..16]);
    let cell = format!(
        "<td class=\"t\"><time datetime=\"{}\">{shown}</time></td>",
        iso8601(secs)
    );
    assert!(page.contains(&cell), "no {cell}");
    assert!(page.contains("<p>2 directories, 4 files.</p>"));
    // At the root there is no parent.
    assert!(!srv.get("/").text().contains("href=\"../\""));
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, by the `date` command (an oracle
/// independent of the server's own formatter).
fn iso8601(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn json_is_served_for_accept_or_the_query_and_html_otherwise() {
    let d = TestDir::new();
    d.file("s/a.txt", "aaa");
    d.dir("s/d");
    let srv = serve(&d, |_| {});
    let browser = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n";
    for (path, extra, json) in [
        ("/s/", "", false),
        ("/s/", "Accept: */*\r\n", false),
        ("/s/", browser, false),
        ("/s/", "Accept: application/json\r\n", true),
        ("/s/", "Accept: text/html;q=0.5, application/json\r\n", true),
        ("/s/?format=json", "", true),
        ("/s/?format=json", browser, true),
        ("/s/?format=html", "Accept: application/json\r\n", false),
    ] {
        let r = ask(&srv, "GET", path, extra);
        assert_eq!(r.status, 200, "{path} {extra:?}");
        assert_eq!(r.header("Vary"), Some("Accept"), "{path} {extra:?}");
        let want = if json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        };
        assert_eq!(r.header("Content-Type"), Some(want), "{path} {extra:?}");
        assert_eq!(r.text().starts_with('['), json, "{path} {extra:?}");
    }
    let r = ask(&srv, "GET", "/s/?format=json", "");
    assert_eq!(
        r.text(),
        format!(
            "[\n{{\"name\":\"d\",\"type\":\"directory\",\"size\":null,\"mtime\":\"{}\",\"url\":\"/s/d/\"}},\n\
             {{\"name\":\"a.txt\",\"type\":\"file\",\"size\":3,\"mtime\":\"{}\",\"url\":\"/s/a.txt\"}}\n]\n",
            mtime_of(&d.path.join("s/d")),
            mtime_of(&d.path.join("s/a.txt")),
        )
    );
    // Every url works as it is.
    for url in urls(&r) {
        assert_eq!(srv.get(&url).status, 200, "{url}");
    }
}

fn mtime_of(path: &Path) -> String {
    let secs = std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    iso8601(secs)
}

#[test]
fn columns_sort_both_ways_directories_first_and_bad_views_are_400() {
    let d = TestDir::new();
    let set = |name: &str, size: usize, secs: u64| {
        let path = d.file(&format!("s/{name}"), vec![b'x'; size]);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    set("small-new", 1, 3_000_000);
    set("big-old", 300, 1_000_000);
    set("mid-mid", 20, 2_000_000);
    d.dir("s/dir");
    let srv = serve(&d, |_| {});
    for (query, want) in [
        ("", ["dir/", "big-old", "mid-mid", "small-new"]),
        (
            "?sort=name&order=desc",
            ["dir/", "small-new", "mid-mid", "big-old"],
        ),
        ("?sort=size", ["dir/", "small-new", "mid-mid", "big-old"]),
        (
            "?sort=size&order=desc",
            ["dir/", "big-old", "mid-mid", "small-new"],
        ),
        (
            "?sort=time&order=asc",
            ["dir/", "big-old", "mid-mid", "small-new"],
        ),
        (
            "?sort=time&order=desc",
            ["dir/", "small-new", "mid-mid", "big-old"],
        ),
        (
            "?order=desc&v=2",
            ["dir/", "small-new", "mid-mid", "big-old"],
        ),
    ] {
        let r = srv.get(&format!("/s/{query}"));
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(rows(&r), want, "{query}");
        let json = srv.get(&format!(
            "/s/{query}{}format=json",
            if query.is_empty() { "?" } else { "&" }
        ));
        let json_names: Vec<String> = urls(&json)
            .iter()
            .map(|u| u.trim_start_matches("/s/").to_string())
            .collect();
        assert_eq!(json_names, want, "{query} as JSON");
    }
    // The header of the column sorted by flips it; sorting needs no script.
    let page = srv.get("/s/?sort=time&order=desc").text();
    assert!(page.contains("<a href=\"?sort=time&amp;order=asc\">Modified (UTC) \u{25BC}</a>"));
    assert!(!page.contains("<script"));
    for query in ["?sort=owner", "?order=random", "?format=xml", "?sort"] {
        assert_eq!(srv.get(&format!("/s/{query}")).status, 400, "{query}");
    }
}

#[test]
fn what_get_refuses_is_never_listed() {
    let d = TestDir::new();
    let outside = TestDir::new();
    outside.file("secret.txt", "outside");
    outside.dir("secret-dir");
    d.file("_redirects", "/old /new 301\n");
    d.file("_headers", "/*\n  X-Rules: yes\n");
    d.file("shown.txt", "s");
    d.file(".env", "SECRET=1");
    d.file(".git/config", "c");
    d.file(".poolserve-upload-123", "half");
    d.file("sub/_headers", "not a rule file here");
    d.file("sub/.hidden", "h");
    d.dir("dir");
    d.symlink("shown.txt", "link-in");
    d.symlink("dir", "link-dir-in");
    d.symlink(outside.path.join("secret.txt"), "link-out");
    d.symlink(outside.path.join("secret-dir"), "link-dir-out");
    d.symlink("nowhere", "link-broken");
    d.symlink("link-loop", "link-loop");
    mkfifo(&d.path.join("fifo"));

    let srv = serve(&d, |_| {});
    let root = srv.get("/");
    assert_eq!(
        rows(&root),
        ["dir/", "link-dir-in/", "sub/", "link-in", "shown.txt"],
        "{}",
        root.text()
    );
    assert_eq!(rows(&srv.get("/sub/")), ["_headers"]);
    // What is listed is served; what is not listed is not.
    for href in rows(&root) {
        assert_eq!(srv.get(&format!("/{href}")).status, 200, "{href}");
    }
    for refused in [
        "/.git/",
        "/link-dir-out/",
        "/link-broken/",
        "/.env",
        "/link-out",
    ] {
        assert_eq!(srv.get(refused).status, 404, "{refused}");
    }
    // The page names nothing outside the root, not even the outside directory's path.
    let page = root.text();
    let outside_name = outside.path.file_name().unwrap().to_str().unwrap();
    assert!(!page.contains(outside_name) && !page.contains("secret"));

    let hidden = serve(&d, |c| c.hidden = true);
    assert_eq!(
        rows(&hidden.get("/")),
        [
            ".git/",
            "dir/",
            "link-dir-in/",
            "sub/",
            ".env",
            "link-in",
            "shown.txt"
        ]
    );
    assert_eq!(hidden.get("/.git/").status, 200);
    assert_eq!(rows(&hidden.get("/sub/")), [".hidden", "_headers"]);

    // With the rules off, the rule files are plain files, and listed.
    let plain = serve(&d, |c| c.site_rules = false);
    assert_eq!(
        rows(&plain.get("/")),
        [
            "dir/",
            "link-dir-in/",
            "sub/",
            "_headers",
            "_redirects",
            "link-in",
            "shown.txt"
        ]
    );
}

/// Names that must come through as text and as working links: markup, quotes, `&`,
/// newlines, `%`, `#`, `?`, spaces, a leading dash, non-ASCII, bytes that are not UTF-8.
const HOSTILE: &[(&[u8], &str, &str)] = &[
    (
        b"<script>alert(1)<script>",
        "&lt;script&gt;alert(1)&lt;script&gt;",
        "%3Cscript%3Ealert%281%29%3Cscript%3E",
    ),
    (
        b"\"><img onerror=x>",
        "&quot;&gt;&lt;img onerror=x&gt;",
        "%22%3E%3Cimg%20onerror%3Dx%3E",
    ),
    (
        b"a 'q' & b",
        "a &#39;q&#39; &amp; b",
        "a%20%27q%27%20%26%20b",
    ),
    (b"line\nbreak", "line\u{FFFD}break", "line%0Abreak"),
    (b"tab\there", "tab\u{FFFD}here", "tab%09here"),
    (b"100%#?.txt", "100%#?.txt", "100%25%23%3F.txt"),
    (b"%2e%2e", "%2e%2e", "%252e%252e"),
    (b"-rf", "-rf", "-rf"),
    (
        b"javascript:alert(1)",
        "javascript:alert(1)",
        "javascript%3Aalert%281%29",
    ),
    (b"caf\xc3\xa9.txt", "caf\u{e9}.txt", "caf%C3%A9.txt"),
    (
        b"\xf0\x9f\x93\x81 box",
        "\u{1F4C1} box",
        "%F0%9F%93%81%20box",
    ),
    (
        b"bad\xff\xfe.txt",
        "bad\u{FFFD}\u{FFFD}.txt",
        "bad%FF%FE.txt",
    ),
    (b"latin1-caf\xe9", "latin1-caf\u{FFFD}", "latin1-caf%E9"),
    (b"back\\slash", "back\\slash", "back%5Cslash"),
];

#[test]
fn hostile_names_are_escaped_linked_by_their_real_bytes_and_their_links_work() {
    let d = TestDir::new();
    let dir = d.dir("h");
    for (i, (name, _, _)) in HOSTILE.iter().enumerate() {
        raw_file(&dir, name, format!("file {i}").as_bytes());
    }
    let srv = serve(&d, |_| {});
    let r = srv.get("/h/");
    assert_eq!(r.status, 200);
    let page = r.text();
    for (i, (name, text, href)) in HOSTILE.iter().enumerate() {
        let row = format!("<tr><td><a href=\"{href}\">{text}</a></td>");
        assert!(page.contains(&row), "{name:?}: no {row:?} in\n{page}");
        // The link, resolved against the listing's URL, names the file.
        let got = srv.get(&format!("/h/{href}"));
        assert_eq!(
            (got.status, got.text()),
            (200, format!("file {i}")),
            "{name:?} by {href}"
        );
    }
    assert_eq!(rows(&r).len(), HOSTILE.len());
    // No name became markup: the only tags are the page's own.
    assert!(!page.contains("<script") && !page.contains("<img"));
    // JSON: text with U+FFFD and escapes, the url with the real bytes.
    let json = srv.get("/h/?format=json");
    let text = json.text();
    assert!(text.contains("\"name\":\"line\\u000abreak\""), "{text}");
    assert!(text.contains("\"name\":\"\\\"><img onerror=x>\""), "{text}");
    assert!(
        text.contains("\"name\":\"bad\u{FFFD}\u{FFFD}.txt\",")
            && text.contains("\"url\":\"/h/bad%FF%FE.txt\"")
    );
    for url in urls(&json) {
        assert_eq!(srv.get(&url).status, 200, "{url}");
    }
    // A directory whose own name is hostile: the breadcrumb and the title are escaped too.
    let nested = dir.join(std::ffi::OsStr::from_bytes(b"<i>\xff"));
    std::fs::create_dir(&nested).unwrap();
    let r = srv.get("/h/%3Ci%3E%FF/");
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(
        page.contains("<title>Index of /h/&lt;i&gt;\u{FFFD}/</title>"),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/h/%3Ci%3E%FF/\">&lt;i&gt;\u{FFFD}</a>/</h1>"),
        "{page}"
    );
    assert!(!page.contains("<i>"));
}

#[test]
fn revalidation_gets_304_head_mirrors_get_and_the_validators_follow_the_directory() {
    let d = TestDir::new();
    d.file("s/a.txt", "a");
    let srv = serve(&d, |_| {});
    let get = srv.get("/s/");
    let etag = get.header("ETag").unwrap().to_string();
    let modified = get.header("Last-Modified").unwrap().to_string();

    let head = ask(&srv, "HEAD", "/s/", "");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for name in [
        "ETag",
        "Last-Modified",
        "Content-Length",
        "Content-Type",
        "Vary",
    ] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }

    for (extra, want) in [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: \"x\", {etag}\r\n"), 304),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
        ("If-None-Match: \"other\"\r\n".to_string(), 200),
        // A weak tag never passes a strong comparison (RFC 9110 §13.1.1).
        (format!("If-Match: {etag}\r\n"), 412),
        ("Range: bytes=0-3\r\n".to_string(), 200),
    ] {
        for method in ["GET", "HEAD"] {
            let r = ask(&srv, method, "/s/", &extra);
            assert_eq!(r.status, want, "{method} {extra:?}");
            if want == 304 {
                assert_eq!(r.header("ETag"), Some(etag.as_str()));
                assert_eq!(r.header("Vary"), Some("Accept"));
                assert_eq!(r.header("Content-Type"), None);
                assert!(r.body.is_empty());
            }
        }
    }
    // Another view or form is another representation, with its own tag.
    let by_size = srv.get("/s/?sort=size").header("ETag").unwrap().to_string();
    let json = ask(&srv, "GET", "/s/", "Accept: application/json\r\n");
    let json_tag = json.header("ETag").unwrap().to_string();
    assert!(by_size != etag && json_tag != etag && json_tag != by_size);
    let r = ask(
        &srv,
        "GET",
        "/s/",
        &format!("If-None-Match: {json_tag}\r\n"),
    );
    assert_eq!(r.status, 200, "the JSON tag does not match the HTML page");
    // A new entry moves the directory's mtime, so the tag changes and the page is new.
    std::thread::sleep(std::time::Duration::from_millis(20));
    d.file("s/b.txt", "b");
    let r = ask(&srv, "GET", "/s/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!(r.status, 200);
    assert_ne!(r.header("ETag"), Some(etag.as_str()));
    assert_eq!(rows(&r), ["a.txt", "b.txt"]);
}

#[test]
fn site_rules_and_header_fields_apply_to_listings() {
    let d = TestDir::new();
    d.file("pub/a.txt", "a");
    d.file("old/a.txt", "a");
    d.file(
        "_headers",
        "/pub/*\n  Cache-Control: no-cache\n  X-Listing: yes\n/*\n  ! X-Content-Type-Options\n",
    );
    d.file("_redirects", "/old/ /pub/ 301!\n/gone/* /pub/ 200\n");
    d.dir("gone/x");
    let srv = serve(&d, |c| c.headers = vec!["X-Served-By: test".into()]);
    let r = srv.get("/pub/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Cache-Control"), Some("no-cache"));
    assert_eq!(r.header("X-Listing"), Some("yes"));
    assert_eq!(r.header("X-Served-By"), Some("test"));
    assert_eq!(
        r.header("X-Content-Type-Options"),
        None,
        "detached by the rules"
    );
    let not_modified = ask(
        &srv,
        "GET",
        "/pub/",
        &format!("If-None-Match: {}\r\n", r.header("ETag").unwrap()),
    );
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("X-Listing"), Some("yes"));
    // A forced redirect wins over the listing.
    let moved = srv.get("/old/");
    assert_eq!(
        (moved.status, moved.header("Location")),
        (301, Some("/pub/"))
    );
    // The rule files are not listed at the root.
    assert_eq!(rows(&srv.get("/")), ["gone/", "old/", "pub/"]);
    // A rewrite never answers with a listing (its links would be relative to another
    // path), and an existing directory is listed before any non-forced rule.
    assert_eq!(srv.get("/gone/x/").status, 200);
    assert_eq!(srv.get("/gone/y").status, 404);
}

#[test]
fn raw_paths_are_listed_under_their_normalized_name() {
    let d = TestDir::new();
    d.file("a/b/f.txt", "f");
    let srv = serve(&d, |_| {});
    for path in ["/a/b/", "/a//b/", "/a/./b/", "/a/x/../b/", "/%61/b/"] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.text()
                .contains("<h1>Index of <a href=\"/\">/</a><a href=\"/a/\">a</a>/<a href=\"/a/b/\">b</a>/</h1>"),
            "{path}"
        );
        let json = srv.get(&format!("{path}?format=json"));
        assert_eq!(urls(&json), ["/a/b/f.txt"], "{path}");
    }
    assert_eq!(srv.get("/a/../../").status, 400);
}

#[test]
fn only_a_big_listing_asks_for_a_place_and_none_means_no_listing() {
    use poolserve::listing::read::{read, Filter, SMALL_LISTING};
    use poolserve::resolve::{resolve, ResolveOptions, Resolved};
    let d = TestDir::new();
    for i in 0..SMALL_LISTING {
        d.file(&format!("s/f{i}"), "");
    }
    let root = d.path.canonicalize().unwrap();
    let opts = ResolveOptions {
        list_dirs: true,
        ..ResolveOptions::default()
    };
    let open = || match resolve(&root, "/s/", None, &opts) {
        Ok(Resolved::Directory(dir)) => dir,
        other => panic!("{other:?}"),
    };
    let filter = Filter {
        hidden: false,
        site_rules: true,
    };
    let view = poolserve::listing::View::default();
    let mut asked = 0;
    let mut refuse = || {
        asked += 1;
        false
    };
    let small = read(&open(), &root, &filter, &view, 10, &mut refuse).unwrap();
    let (entries, left_out) = small.expect("a small listing needs no place");
    assert_eq!((entries.len(), left_out), (10, SMALL_LISTING - 10));
    assert_eq!(asked, 0);
    d.file("s/one-more", "");
    let mut refuse = || {
        asked += 1;
        false
    };
    assert!(read(&open(), &root, &filter, &view, 10, &mut refuse)
        .unwrap()
        .is_none());
    assert_eq!(asked, 1);
    let mut admit = || true;
    let (entries, left_out) = read(&open(), &root, &filter, &view, 10, &mut admit)
        .unwrap()
        .unwrap();
    assert_eq!((entries.len(), left_out), (10, SMALL_LISTING + 1 - 10));
}

#[test]
fn a_rewrite_to_a_directory_does_not_hide_it_from_a_request_for_it() {
    let d = TestDir::new();
    d.file("docs/a.txt", "a");
    d.file("_redirects", "/x /docs/ 200\n/y /docs 200\n");
    let srv = serve(&d, |c| c.cache_valid = std::time::Duration::from_secs(60));
    assert_eq!(
        srv.get("/x").status,
        404,
        "a rewrite never answers with a listing"
    );
    assert_eq!(srv.get("/y").status, 404, "nor with a redirect");
    // The directory is there: its listing and its slash redirect, not a remembered 404.
    let listing = srv.get("/docs/");
    assert_eq!(
        (listing.status, rows(&listing)),
        (200, vec!["a.txt".to_string()])
    );
    let moved = srv.get("/docs");
    assert_eq!(
        (moved.status, moved.header("Location")),
        (301, Some("/docs/"))
    );
}

#[test]
fn a_capped_listing_says_what_it_left_out_and_keeps_its_length_promise() {
    let d = TestDir::new();
    for i in 0..40 {
        d.file(&format!("s/f{i:02}-{}", "n".repeat(200)), "x".repeat(i));
    }
    d.dir("s/d1");
    d.dir("s/d2");
    for (cap, shown, left_out) in [
        (0, 0, 42),
        (1, 1, 41),
        (3, 3, 39),
        (42, 42, 0),
        (100, 42, 0),
    ] {
        let srv = serve(&d, |c| c.list_max = cap);
        for (query, accept) in [
            ("", ""),
            ("?format=json", ""),
            ("?sort=size&order=desc", ""),
        ]
        .into_iter()
        .chain([("", "Accept: application/json\r\n")])
        {
            let path = format!("/s/{query}");
            let get = ask(&srv, "GET", &path, accept);
            let head = ask(&srv, "HEAD", &path, accept);
            let ctx = format!("cap {cap} {path} {accept:?}");
            assert_eq!(get.status, 200, "{ctx}");
            let len: usize = get.header("Content-Length").unwrap().parse().unwrap();
            assert_eq!(len, get.body.len(), "{ctx}");
            for name in [
                "Content-Length",
                "ETag",
                "Poolserve-Left-Out",
                "Content-Type",
            ] {
                assert_eq!(head.header(name), get.header(name), "{ctx} {name}");
            }
            let want = (left_out > 0).then(|| left_out.to_string());
            assert_eq!(get.header("Poolserve-Left-Out"), want.as_deref(), "{ctx}");
            let n = if get.header("Content-Type") == Some("application/json") {
                urls(&get).len()
            } else {
                rows(&get).len()
            };
            assert_eq!(n, shown, "{ctx}");
        }
    }
}
