//! Paths on the wire against a fixture tree with hostile names (issue 5, "Paths"): names a
//! browser user creates (spaces, UTF-8, `#`, `%`, NAME_MAX), traversal in every encoding,
//! dotfiles, symlinks in and out of the root, and files that are not regular files. A
//! sentinel outside the root must never appear in any answer.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use support::{config, read_response, Response, TestDir, TestServer};

const SECRET: &str = "SENTINEL-OUTSIDE-THE-ROOT";

/// The fixture: `root` inside `base`, with a secret file next to `root`.
struct Fixture {
    base: TestDir,
}

impl Fixture {
    fn new() -> Fixture {
        let base = TestDir::new();
        base.file("secret.txt", SECRET);
        base.file("root/a.txt", "plain a\n");
        base.file("root/a b.txt", "space\n");
        base.file("root/café.txt", "utf-8\n");
        base.file("root/a#b.txt", "hash\n");
        base.file("root/100%.txt", "percent\n");
        base.file("root/100%25.txt", "literal percent-two-five\n");
        base.file("root/a+b.txt", "plus\n");
        base.file("root/dir/index.html", "dir index\n");
        base.dir("root/empty");
        base.file("root/.env", "DOTENV\n");
        base.file("root/.git/config", "GITCONFIG\n");
        base.file("root/sub/.hidden/x.txt", "HIDDEN X\n");
        base.file("root/sub/b.txt", "sub b\n");
        base.file(&format!("root/{}", "n".repeat(255)), "name max\n");
        let root = base.path.join("root");
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("link-in.txt")).unwrap();
        std::os::unix::fs::symlink(base.path.join("secret.txt"), root.join("link-out.txt"))
            .unwrap();
        std::os::unix::fs::symlink(&base.path, root.join("dir-out")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::os::unix::fs::symlink(root.join("loop2"), root.join("loop1")).unwrap();
        std::os::unix::fs::symlink(root.join("loop1"), root.join("loop2")).unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(fifo.success());
        Fixture { base }
    }

    fn root(&self) -> std::path::PathBuf {
        self.base.path.join("root")
    }
}

/// One request line target, one answer (Connection: close).
fn get(srv: &TestServer, target: &str) -> Response {
    srv.request(&format!(
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    ))
}

fn check(srv: &TestServer, rows: &[(&str, u16, Option<&str>)]) {
    for (target, status, body) in rows {
        let r = get(srv, target);
        assert_eq!(r.status, *status, "{target}");
        if let Some(body) = body {
            assert_eq!(r.text(), *body, "{target}");
        }
        assert!(!r.text().contains(SECRET), "{target} leaked the sentinel");
        for leaked in ["DOTENV", "GITCONFIG", "HIDDEN X"] {
            assert!(!r.text().contains(leaked), "{target} leaked a dotfile");
        }
    }
}

#[test]
fn names_a_browser_user_creates() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    let max = format!("/{}", "n".repeat(255));
    let too_long = format!("/{}", "n".repeat(256));
    check(
        &srv,
        &[
            ("/a%20b.txt", 200, Some("space\n")),
            ("/caf%C3%A9.txt", 200, Some("utf-8\n")),
            ("/caf%c3%a9.txt", 200, Some("utf-8\n")),
            ("/a%23b.txt", 200, Some("hash\n")),
            // Decoded exactly once: %25 is '%', so this is `100%.txt`...
            ("/100%25.txt", 200, Some("percent\n")),
            // ...and this is `100%25.txt`, not `100%.txt` decoded twice.
            ("/100%2525.txt", 200, Some("literal percent-two-five\n")),
            // '+' is not a space in a path.
            ("/a+b.txt", 200, Some("plus\n")),
            ("/a%2Bb.txt", 200, Some("plus\n")),
            (&max, 200, Some("name max\n")),
            (&too_long, 404, None),
            ("/a.txt/", 404, None),
            ("/dir/", 200, Some("dir index\n")),
            ("/empty/", 404, None),
            ("/a.txt?x=../../secret.txt", 200, Some("plain a\n")),
            ("/sub/./b.txt", 200, Some("sub b\n")),
            ("/sub/../sub/b.txt", 200, Some("sub b\n")),
            ("//a.txt", 200, Some("plain a\n")),
        ],
    );
    // A literal space cannot be in a request line at all.
    let r = srv.request("GET /a b.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 400);
    // A directory without its slash: 301 to the slash, query kept.
    let r = get(&srv, "/dir?v=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/dir/?v=1"));
}

#[test]
fn traversal_in_every_encoding_never_leaves_the_root() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    check(
        &srv,
        &[
            ("/../secret.txt", 400, None),
            ("/a/../../secret.txt", 400, None),
            ("/%2e%2e/secret.txt", 400, None),
            ("/%2E%2E%2Fsecret.txt", 400, None),
            ("/..%2fsecret.txt", 400, None),
            ("/dir/%2e%2e/%2e%2e/secret.txt", 400, None),
            ("/.%2e/secret.txt", 400, None),
            ("/%2e./secret.txt", 400, None),
            ("/..%5csecret.txt", 404, None),
            ("/..\\secret.txt", 404, None),
            ("//../secret.txt", 400, None),
            ("/%00", 400, None),
            ("/a.txt%00.html", 400, None),
            ("/%zz", 400, None),
            ("/%", 400, None),
            ("/%2", 400, None),
            ("http://t/../secret.txt", 400, None),
            ("http://t/a.txt", 200, Some("plain a\n")),
        ],
    );
    // A `//host` style path must not become a redirect to another host.
    std::fs::create_dir_all(f.root().join("evil.example")).unwrap();
    let r = get(&srv, "//evil.example");
    assert_eq!(r.status, 301);
    let location = r.header("Location").unwrap();
    assert!(!location.starts_with("//"), "{location}");
}

#[test]
fn dotfiles_are_404_unless_hidden_is_on() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    let rows: &[(&str, u16, Option<&str>)] = &[
        ("/.env", 404, None),
        ("/%2eenv", 404, None),
        ("/%2Eenv", 404, None),
        ("/.git/config", 404, None),
        ("/%2Egit/config", 404, None),
        ("/.git/", 404, None),
        ("/sub/.hidden/x.txt", 404, None),
        ("/sub/%2ehidden/x.txt", 404, None),
    ];
    check(&srv, rows);

    let mut c = config(&f.root());
    c.hidden = true;
    let srv = TestServer::with_config(c);
    for (target, body) in [
        ("/.env", "DOTENV\n"),
        ("/%2eenv", "DOTENV\n"),
        ("/.git/config", "GITCONFIG\n"),
        ("/sub/.hidden/x.txt", "HIDDEN X\n"),
    ] {
        let r = get(&srv, target);
        assert_eq!((r.status, r.text().as_str()), (200, body), "{target}");
    }
    // --hidden serves dotfiles, never a climb out of the root.
    assert_eq!(get(&srv, "/../secret.txt").status, 400);
}

#[test]
fn symlinks_work_inside_and_are_404_outside() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    check(
        &srv,
        &[
            ("/link-in.txt", 200, Some("plain a\n")),
            ("/link-out.txt", 404, None),
            ("/dir-out/secret.txt", 404, None),
            // A directory link out of the root must not even answer with a redirect.
            ("/dir-out", 404, None),
            ("/dir-out/", 404, None),
            ("/loop1", 404, None),
            ("/zero", 404, None),
        ],
    );
}

#[test]
fn a_fifo_is_404_at_once_and_the_server_keeps_serving() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    let t = Instant::now();
    assert_eq!(get(&srv, "/fifo").status, 404);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "opening a FIFO must not wait for a writer: {:?}",
        t.elapsed()
    );
    assert_eq!(get(&srv, "/a.txt").status, 200);
}

#[test]
fn not_found_and_bad_paths_keep_the_connection_alive() {
    let f = Fixture::new();
    let srv = TestServer::start(&f.root());
    let mut s = srv.connect();
    for (target, status) in [
        ("/nope", 404),
        ("/.env", 404),
        ("/link-out.txt", 404),
        ("/a.txt", 200),
    ] {
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).expect("answered on the same connection");
        assert_eq!(r.status, status, "{target}");
        assert_eq!(r.header("Connection"), None, "{target} must not close");
    }
}
