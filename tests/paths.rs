//! Issue 5, "Paths": request targets against a fixture tree with hostile names, over the wire.
//!
//! Each table row is a raw request target and what must come back (status, and the body or the
//! Location where it matters). The document root is `BASE/root`; a sentinel secret sits next to
//! it (`BASE/secret.txt`, `BASE/outside/secret.txt`), and every response of every test is
//! checked never to carry it, nor `/etc/passwd`, nor the server's own paths.

mod support;

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{Response, TestDir, TestServer};

/// The content of the files outside the root; it must never appear in a response.
const SENTINEL: &str = "SENTINEL-c0ffee-outside-the-root";

/// A FIFO request must be answered well within this (the client's own timeout is longer).
const FIFO_DEADLINE: Duration = Duration::from_secs(2);

/// A file name of exactly NAME_MAX (255) bytes, ASCII.
fn name_max_ascii() -> String {
    "n".repeat(251) + ".txt"
}

/// A file name of exactly NAME_MAX (255) bytes, mostly two-byte UTF-8.
fn name_max_utf8() -> String {
    "\u{e9}".repeat(127) + "x"
}

/// Percent-encodes every byte that is not unreserved (RFC 3986 §2.3).
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Each file under the root holds "body of " + its relative path, so a row can tell which
/// file it got.
fn body_of(rel: &str) -> String {
    format!("body of {rel}\n")
}

/// The base directory (removed on drop) and the document root inside it.
struct Site {
    base: TestDir,
    root: PathBuf,
}

impl Site {
    fn put(&self, rel: &str) {
        self.base.file(&format!("root/{rel}"), body_of(rel));
    }

    fn link(&self, target: impl AsRef<Path>, rel: &str) {
        symlink(target, self.root.join(rel)).expect("symlink");
    }
}

fn site() -> Site {
    let base = TestDir::new();
    let root = base.dir("root");
    base.file("secret.txt", SENTINEL);
    base.file("outside/secret.txt", SENTINEL);
    let s = Site { base, root };
    for rel in [
        "index.html",
        "a.txt",
        "a b.txt",
        "a+b.txt",
        "caf\u{e9}.txt",
        "a#b.txt",
        "100%.txt",
        "100%25.txt",
        "dir/index.html",
        "dir/page.txt",
        "my dir/index.html",
        "noindex/listed-name.txt",
        "a/b",
        "a/.hidden/x",
        ".env",
        ".git/config",
        "..;",
    ] {
        s.put(rel);
    }
    s.put(&name_max_ascii());
    s.put(&name_max_utf8());
    // A directory inside whose index is a link to the secret.
    s.base.dir("root/evil-index");
    s.link("../../secret.txt", "evil-index/index.html");
    // Symlinks: inside -> inside works; anything reaching outside is 404.
    s.link("a.txt", "link-in");
    s.link(s.root.join("a.txt"), "link-abs-in");
    s.link("../../root/a.txt", "a/link-up-and-back");
    s.link("dir", "link-dir");
    s.link(".", "link-self");
    s.link("..", "link-up");
    s.link("../secret.txt", "link-out");
    s.link("../../secret.txt", "a/link-out");
    s.link(s.base.path.join("outside"), "link-outdir");
    s.link("loop", "loop");
    s.link("loop2", "loop1");
    s.link("loop1", "loop2");
    s.link("/dev/null", "link-null");
    s.link("/dev/zero", "link-zero");
    s.link("/etc/passwd", "link-passwd");
    s
}

#[derive(Debug)]
enum Want {
    /// 200 with exactly this body.
    Body(String),
    /// 301 with exactly this Location.
    Location(String),
    /// 404 with the generic not-found page.
    NotFound,
    /// 400.
    BadRequest,
    /// 400 or 404: refused either way (for rows where both are reasonable).
    Refused,
}

fn ok(rel: &str) -> Want {
    Want::Body(body_of(rel))
}

fn moved(location: &str) -> Want {
    Want::Location(location.to_string())
}

/// Checks what every response must satisfy: nothing from outside the root, no internal path.
fn assert_no_leak(site: &Site, what: &str, r: &Response) {
    let all = format!("{}{}", r.head, r.text());
    assert!(!all.contains(SENTINEL), "{what}: leaked the secret: {all}");
    assert!(!all.contains("root:x:0:"), "{what}: leaked /etc/passwd");
    let base = site.base.path.to_string_lossy();
    assert!(!all.contains(&*base), "{what}: leaked the server path");
}

/// Sends `GET {target}` on a new connection and checks the row.
fn check_row(srv: &TestServer, site: &Site, target: &str, want: &Want) {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = srv.request(&raw);
    let what = format!("GET {target}");
    assert_no_leak(site, &what, &r);
    match want {
        Want::Body(body) => {
            assert_eq!(r.status, 200, "{what}: {}", r.head);
            assert_eq!(r.text(), *body, "{what}");
        }
        Want::Location(loc) => {
            assert_eq!(r.status, 301, "{what}: {}", r.head);
            assert_eq!(r.header("Location"), Some(loc.as_str()), "{what}");
        }
        Want::NotFound => {
            assert_eq!(r.status, 404, "{what}: {}{}", r.head, r.text());
            assert!(r.text().contains("404 Not Found"), "{what}: {}", r.text());
        }
        Want::BadRequest => assert_eq!(r.status, 400, "{what}: {}{}", r.head, r.text()),
        Want::Refused => assert!(
            matches!(r.status, 400 | 404),
            "{what}: {}{}",
            r.head,
            r.text()
        ),
    }
}

fn check_table(srv: &TestServer, site: &Site, rows: &[(String, Want)]) {
    for (target, want) in rows {
        check_row(srv, site, target, want);
    }
}

/// Builds rows from string literals.
fn rows<const N: usize>(rows: [(&str, Want); N]) -> Vec<(String, Want)> {
    rows.into_iter().map(|(t, w)| (t.to_string(), w)).collect()
}

#[test]
fn hostile_names_are_decoded_exactly_once() {
    use Want::*;
    let s = site();
    let srv = TestServer::start(&s.root);
    let mut table = rows([
        ("/a.txt", ok("a.txt")),
        // Spaces: encoded is the file; a literal space breaks the request line.
        ("/a%20b.txt", ok("a b.txt")),
        ("/a b.txt", BadRequest),
        // A plus is a plus (no form decoding in paths), and an encoded plus is the same file.
        ("/a+b.txt", ok("a+b.txt")),
        ("/a%2Bb.txt", ok("a+b.txt")),
        ("/a%2bb.txt", ok("a+b.txt")),
        // UTF-8 in either hex case; raw UTF-8 on the wire is refused; no Unicode folding.
        ("/caf%C3%A9.txt", ok("caf\u{e9}.txt")),
        ("/caf%c3%a9.txt", ok("caf\u{e9}.txt")),
        ("/cafe%CC%81.txt", NotFound),
        ("/caf\u{e9}.txt", BadRequest),
        // `#` in a name is only reachable encoded; a literal one is a fragment.
        ("/a%23b.txt", ok("a#b.txt")),
        ("/a#b.txt", BadRequest),
        // `%` decoded exactly once.
        ("/100%25.txt", ok("100%.txt")),
        ("/100%2525.txt", ok("100%25.txt")),
        ("/100%252525.txt", NotFound),
        ("/100%.txt", BadRequest),
        // Malformed escapes and NUL.
        ("/a.txt%00", BadRequest),
        ("/%00", BadRequest),
        ("/%zz", BadRequest),
        ("/a.txt%", BadRequest),
        ("/a.txt%4", BadRequest),
        ("/%4g.txt", BadRequest),
        // A query never reaches the file system.
        ("/a.txt?x=../../etc", ok("a.txt")),
        ("/a.txt?../../secret.txt", ok("a.txt")),
        ("/a.txt?%zz", ok("a.txt")),
        ("/?../secret.txt", ok("index.html")),
        ("/a.txt?", ok("a.txt")),
    ]);
    // NAME_MAX: 255 bytes is a name like any other; 256 cannot exist and is 404, not 500.
    let ascii = name_max_ascii();
    let utf8 = name_max_utf8();
    assert_eq!((ascii.len(), utf8.len()), (255, 255));
    table.push((format!("/{ascii}"), ok(&ascii)));
    table.push((format!("/{}", encode(&utf8)), ok(&utf8)));
    table.push((format!("/n{ascii}"), NotFound));
    table.push((format!("/{}", encode(&format!("{utf8}x"))), NotFound));
    table.push((format!("/dir/{ascii}x/a.txt"), NotFound));
    // Longer than PATH_MAX (4096) but within the request-line limit: 404, not 500.
    let deep = vec!["d".repeat(200); 25].join("/");
    table.push((format!("/{deep}"), NotFound));
    check_table(&srv, &s, &table);
}

#[test]
fn directories_redirect_serve_their_index_and_never_list() {
    use Want::*;
    let s = site();
    let srv = TestServer::start(&s.root);
    let table = rows([
        ("/", ok("index.html")),
        ("/dir", moved("/dir/")),
        ("/dir?x=1&y=2", moved("/dir/?x=1&y=2")),
        ("/dir?", moved("/dir/?")),
        ("/dir/", ok("dir/index.html")),
        ("/dir/?q=1", ok("dir/index.html")),
        ("/dir/page.txt", ok("dir/page.txt")),
        ("/dir//page.txt", ok("dir/page.txt")),
        ("/dir%2Fpage.txt", ok("dir/page.txt")),
        // The Location keeps the path as received (still encoded).
        ("/my%20dir", moved("/my%20dir/")),
        ("/my%20dir/", ok("my dir/index.html")),
        ("/%64ir", moved("/%64ir/")),
        // Never a scheme-relative Location (`//dir/` would name the host "dir").
        ("//dir", moved("/.//dir/")),
        // No index: 404, and no listing (checked below).
        ("/noindex", moved("/noindex/")),
        ("/noindex/", NotFound),
        ("/noindex/?C=M;O=D", NotFound),
        ("/noindex/listed-name.txt", ok("noindex/listed-name.txt")),
        // A file named as a directory.
        ("/a.txt/", NotFound),
        ("/a.txt%2F", NotFound),
        ("/a.txt/.", NotFound),
        ("/a.txt/x", NotFound),
        ("/dir/page.txt/", NotFound),
        ("/missing", NotFound),
        ("/missing/", NotFound),
    ]);
    check_table(&srv, &s, &table);
    let r = srv.get("/noindex/");
    assert!(!r.text().contains("listed-name"), "a listing: {}", r.text());
}

#[test]
fn traversal_never_reaches_outside_the_root() {
    use Want::*;
    let s = site();
    let srv = TestServer::start(&s.root);
    // Every target here would name BASE/secret.txt (or a system file) if the climb worked.
    let table = rows([
        ("/../secret.txt", BadRequest),
        ("/..", BadRequest),
        ("/../", BadRequest),
        ("/a/../../secret.txt", BadRequest),
        ("/dir/../../secret.txt", BadRequest),
        ("/./../secret.txt", BadRequest),
        ("/%2e%2e/secret.txt", BadRequest),
        ("/%2E%2E/secret.txt", BadRequest),
        ("/.%2e/secret.txt", BadRequest),
        ("/%2e./secret.txt", BadRequest),
        ("/%2E%2E%2Fsecret.txt", BadRequest),
        ("/..%2fsecret.txt", BadRequest),
        ("/..%2Fsecret.txt", BadRequest),
        ("/a/%2e%2e/%2e%2e/secret.txt", BadRequest),
        ("/a/..%2F..%2Fsecret.txt", BadRequest),
        ("/dir/%2e%2e%2f%2e%2e%2fsecret.txt", BadRequest),
        ("/a/../../../../../../etc/passwd", BadRequest),
        ("/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", BadRequest),
        ("/.%00./secret.txt", BadRequest),
        // Old-IIS-style escapes: not dots to us (decoded once, no %u, no overlong UTF-8).
        ("/%252e%252e/secret.txt", NotFound),
        ("/%252e%252e%252fsecret.txt", NotFound),
        ("/%u002e%u002e/secret.txt", BadRequest),
        ("/%c0%ae%c0%ae/secret.txt", NotFound),
        // Backslash is not a separator: these are names (starting with a dot, so hidden).
        ("/..\\secret.txt", NotFound),
        ("/..%5csecret.txt", NotFound),
        ("/..%5Csecret.txt", NotFound),
        ("/%2e%2e%5csecret.txt", NotFound),
        ("/a\\..\\..\\secret.txt", NotFound),
        ("/%5c..%5c..%5csecret.txt", NotFound),
        ("/\\..\\secret.txt", NotFound),
        // Absolute paths stay under the root.
        ("//etc/passwd", NotFound),
        ("///etc/passwd", NotFound),
        ("/%2fetc/passwd", NotFound),
        ("/%2F%2Fetc%2Fpasswd", NotFound),
        // `..` that stays inside is just normalization.
        ("/a/../a.txt", ok("a.txt")),
        ("/dir/%2e%2e/a.txt", ok("a.txt")),
        ("/a/./b", ok("a/b")),
        ("/./a//b", ok("a/b")),
        // Absolute-form is reduced to its path, then the same rules apply.
        ("http://t/a.txt", ok("a.txt")),
        ("http://t/../secret.txt", BadRequest),
        ("http://t/%2e%2e/secret.txt", BadRequest),
        ("http://t/a/../../secret.txt", BadRequest),
        ("HTTP://t/..%2Fsecret.txt", BadRequest),
        ("http://t//etc/passwd", NotFound),
        ("http://../secret.txt", Refused),
    ]);
    check_table(&srv, &s, &table);
}

/// Dot-names (and their encoded forms), denied by default and served with `hidden`.
fn dotfile_rows(hidden: bool) -> Vec<(String, Want)> {
    use Want::*;
    let pick = |served: Want| if hidden { served } else { NotFound };
    rows([
        ("/.env", pick(ok(".env"))),
        ("/%2eenv", pick(ok(".env"))),
        ("/%2Eenv", pick(ok(".env"))),
        ("/.git/config", pick(ok(".git/config"))),
        ("/%2Egit/config", pick(ok(".git/config"))),
        ("/%2egit%2fconfig", pick(ok(".git/config"))),
        ("/.git", pick(moved("/.git/"))),
        ("/.git/", NotFound),
        ("/a/.hidden/x", pick(ok("a/.hidden/x"))),
        ("/a/%2ehidden/x", pick(ok("a/.hidden/x"))),
        ("/a/./.hidden/x", pick(ok("a/.hidden/x"))),
        ("/dir/../.env", pick(ok(".env"))),
        ("/..;", pick(ok("..;"))),
        ("/.missing", NotFound),
        // `.` segments are normalization, not hidden names.
        ("/a/./b", ok("a/b")),
        ("/./a.txt", ok("a.txt")),
        // Hidden or not, the root stays the limit.
        ("/.env/../../secret.txt", BadRequest),
        ("/%2e%2e/secret.txt", BadRequest),
        ("/..\\secret.txt", NotFound),
        ("/link-out", NotFound),
        ("/link-outdir", NotFound),
        ("/link-outdir/secret.txt", NotFound),
    ])
}

#[test]
fn dotfiles_are_not_found_by_default() {
    let s = site();
    let srv = TestServer::start(&s.root);
    check_table(&srv, &s, &dotfile_rows(false));
}

#[test]
fn dotfiles_are_served_with_hidden() {
    let s = site();
    let mut config = support::config(&s.root);
    config.hidden = true;
    let srv = TestServer::with_config(config);
    check_table(&srv, &s, &dotfile_rows(true));
}

#[test]
fn symlinks_work_inside_the_root_only() {
    use Want::*;
    let s = site();
    let srv = TestServer::start(&s.root);
    let table = rows([
        ("/link-in", ok("a.txt")),
        ("/link-abs-in", ok("a.txt")),
        ("/a/link-up-and-back", ok("a.txt")),
        ("/link-dir", moved("/link-dir/")),
        ("/link-dir/", ok("dir/index.html")),
        ("/link-dir/page.txt", ok("dir/page.txt")),
        ("/link-self/a.txt", ok("a.txt")),
        ("/link-self/link-self/dir/page.txt", ok("dir/page.txt")),
        // Out through `..` and back into the root is inside; staying out is not.
        ("/link-up/root/a.txt", ok("a.txt")),
        ("/link-up", NotFound),
        ("/link-up/", NotFound),
        ("/link-up/secret.txt", NotFound),
        // The index of an inside directory may itself be a link out.
        ("/evil-index/", NotFound),
        ("/link-out", NotFound),
        ("/a/link-out", NotFound),
        // A directory outside: not even a 301 that would reveal it exists.
        ("/link-outdir", NotFound),
        ("/link-outdir/", NotFound),
        ("/link-outdir/secret.txt", NotFound),
        ("/link-outdir?x=1", NotFound),
        ("/loop", NotFound),
        ("/loop1", NotFound),
        ("/loop/x", NotFound),
        ("/link-passwd", NotFound),
        ("/link-null", NotFound),
        ("/link-zero", NotFound),
    ]);
    check_table(&srv, &s, &table);
}

#[test]
fn non_regular_files_are_not_found_and_never_block_a_worker() {
    let s = site();
    let made = std::process::Command::new("mkfifo")
        .arg(s.root.join("fifo"))
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    s.link("fifo", "link-fifo");
    let _sock = std::os::unix::net::UnixListener::bind(s.root.join("sock")).expect("bind socket");
    let srv = TestServer::start(&s.root);
    // Twice as many FIFO requests as workers, all at once: if a request blocked its worker,
    // the pool would be exhausted and the GET after them would time out.
    let workers = support::config(&s.root).workers;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers * 2)
            .map(|i| {
                let target = if i % 2 == 0 { "/fifo" } else { "/link-fifo" };
                let srv = &srv;
                scope.spawn(move || {
                    let start = Instant::now();
                    let r = srv.get(target);
                    (target, r.status, start.elapsed())
                })
            })
            .collect();
        for h in handles {
            let (target, status, took) = h.join().expect("FIFO client");
            assert_eq!(status, 404, "GET {target}");
            assert!(took < FIFO_DEADLINE, "GET {target} took {took:?}");
        }
    });
    for target in ["/sock", "/link-null", "/link-zero"] {
        check_row(&srv, &s, target, &Want::NotFound);
    }
    check_row(&srv, &s, "/a.txt", &ok("a.txt"));
}

#[test]
fn keep_alive_survives_not_found_and_traversal() {
    let s = site();
    let srv = TestServer::start(&s.root);
    let mut conn = srv.connect();
    let targets = [
        ("/missing", 404),
        ("/.env", 404),
        ("/link-out", 404),
        ("/link-outdir", 404),
        ("/loop", 404),
        ("/a.txt/", 404),
        ("/noindex/", 404),
        ("/../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/dir", 301),
        ("/a.txt", 200),
    ];
    for (target, status) in targets {
        conn.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .expect("send on the kept connection");
        let r = support::read_response(&mut conn, false)
            .unwrap_or_else(|| panic!("GET {target}: connection closed"));
        assert_no_leak(&s, target, &r);
        assert_eq!(r.status, status, "GET {target}: {}", r.head);
        assert_ne!(r.header("Connection"), Some("close"), "GET {target}");
    }
    // Pipelined: three misses and a hit in one write, answered in order on the same connection.
    let mut burst = String::new();
    for target in ["/nope1", "/.git/config", "/link-null", "/dir/page.txt"] {
        burst.push_str(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    conn.write_all(burst.as_bytes()).expect("send burst");
    for status in [404, 404, 404] {
        let r = support::read_response(&mut conn, false).expect("pipelined 404");
        assert_eq!(r.status, status, "{}", r.head);
    }
    let r = support::read_response(&mut conn, false).expect("pipelined 200");
    assert_eq!((r.status, r.text()), (200, body_of("dir/page.txt")));
}
