//! The small-file cache on the wire: cached answers are the same as uncached ones, and a file
//! replaced on disk is seen (new bytes, new ETag) within the revalidation interval.

mod support;

use std::time::{Duration, Instant};

use support::{config, Response, TestDir, TestServer};

fn get(srv: &TestServer, path: &str, extra: &str) -> Response {
    srv.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

fn server(d: &TestDir, valid: Duration) -> TestServer {
    let mut c = config(&d.path);
    c.cache_valid = valid;
    TestServer::with_config(c)
}

/// Everything but the Date line.
fn comparable(r: &Response) -> (String, Vec<u8>) {
    let head: Vec<&str> = r
        .head
        .split("\r\n")
        .filter(|l| !l.starts_with("Date:"))
        .collect();
    (head.join("\r\n"), r.body.clone())
}

#[test]
fn cached_answers_equal_uncached_ones() {
    let d = TestDir::new();
    let text: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    d.file("app.js", &text);
    d.file("app.js.gz", b"\x1f\x8bgz-bytes");
    d.file("dir/index.html", "<p>index</p>");
    let cached = server(&d, Duration::from_secs(60));
    let plain = server(&d, Duration::ZERO);
    let etag = get(&plain, "/app.js", "")
        .header("ETag")
        .unwrap()
        .to_string();
    let lm = get(&plain, "/app.js", "")
        .header("Last-Modified")
        .unwrap()
        .to_string();
    let rows: Vec<(&str, String)> = vec![
        ("/app.js", String::new()),
        ("/app.js", "Accept-Encoding: gzip\r\n".into()),
        ("/app.js", "Accept-Encoding: br;q=1, gzip;q=0.5\r\n".into()),
        ("/app.js", "Range: bytes=10-19\r\n".into()),
        ("/app.js", "Range: bytes=-5\r\n".into()),
        ("/app.js", "Range: bytes=0-1,100-110,2990-\r\n".into()),
        ("/app.js", "Range: bytes=5000-\r\n".into()),
        ("/app.js", format!("If-None-Match: {etag}\r\n")),
        ("/app.js", "If-Match: \"other\"\r\n".to_string()),
        ("/app.js", format!("If-Modified-Since: {lm}\r\n")),
        (
            "/app.js",
            format!("Range: bytes=0-3\r\nIf-Range: {etag}\r\n"),
        ),
        (
            "/app.js",
            "Range: bytes=0-3\r\nIf-Range: \"old\"\r\n".into(),
        ),
        ("/dir/", String::new()),
        ("/dir", String::new()),
        ("/missing", String::new()),
    ];
    for (path, extra) in &rows {
        // Twice on the cached server: the first fills the cache, the second is a hit.
        let _ = get(&cached, path, extra);
        let hit = get(&cached, path, extra);
        let miss = get(&plain, path, extra);
        assert_eq!(comparable(&hit), comparable(&miss), "{path} {extra:?}");
    }
    let head = cached.request("HEAD /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let plain_head = plain.request("HEAD /app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(comparable(&head), comparable(&plain_head));
}

#[test]
fn a_replaced_file_is_seen_within_the_revalidation_interval() {
    let d = TestDir::new();
    d.file("a.txt", "version one\n");
    let valid = Duration::from_secs(2);
    let srv = server(&d, valid);
    let first = get(&srv, "/a.txt", "");
    assert_eq!(first.text(), "version one\n");
    let old_tag = first.header("ETag").unwrap().to_string();

    // Replace it the way deploy tools do: write a new file, rename it over the old one.
    let tmp = d.file("a.txt.new", "version two, longer\n");
    std::fs::rename(&tmp, d.path.join("a.txt")).unwrap();
    let replaced = Instant::now();
    // Within the interval the cached copy may still be served: that is the cache working
    // (and this test would not notice a cache that is never used without it).
    assert_eq!(get(&srv, "/a.txt", "").text(), "version one\n");

    loop {
        let r = get(&srv, "/a.txt", "");
        if r.text() == "version two, longer\n" {
            assert_ne!(r.header("ETag").unwrap(), old_tag, "new bytes, new tag");
            break;
        }
        assert_eq!(r.text(), "version one\n", "never a mix");
        assert!(
            replaced.elapsed() < valid + Duration::from_secs(1),
            "still the old file {:?} after the replacement",
            replaced.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn removed_files_and_new_sidecars_are_seen_too() {
    let d = TestDir::new();
    d.file("a.css", "body{}");
    let valid = Duration::from_millis(300);
    let srv = server(&d, valid);
    assert_eq!(get(&srv, "/a.css", "").header("Vary"), None);
    d.file("a.css.gz", "gz");
    let t = Instant::now();
    while get(&srv, "/a.css", "Accept-Encoding: gzip\r\n").text() != "gz" {
        assert!(
            t.elapsed() < valid + Duration::from_secs(1),
            "sidecar not seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&srv, "/a.css", "").header("Vary"),
        Some("Accept-Encoding")
    );
    std::fs::remove_file(d.path.join("a.css")).unwrap();
    let t = Instant::now();
    while get(&srv, "/a.css", "").status != 404 {
        assert!(
            t.elapsed() < valid + Duration::from_secs(1),
            "removal not seen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn with_the_cache_off_a_change_is_seen_at_once() {
    let d = TestDir::new();
    d.file("a.txt", "one\n");
    let srv = server(&d, Duration::ZERO);
    assert_eq!(get(&srv, "/a.txt", "").text(), "one\n");
    d.file("a.txt", "two\n");
    assert_eq!(get(&srv, "/a.txt", "").text(), "two\n");
}

/// 404s are cached too (no `statx` per 404), for the same interval: a file created at a
/// missing path is served at most one interval later, and with the cache off at once.
#[test]
fn a_file_created_at_a_missing_path_is_served_within_the_interval() {
    let valid = Duration::from_millis(1500);
    let d = TestDir::new();
    let srv = server(&d, valid);
    assert_eq!(get(&srv, "/new.txt", "").status, 404);
    let created = Instant::now();
    d.file("new.txt", "new\n");
    assert_eq!(
        get(&srv, "/new.txt", "").status,
        404,
        "the not-found answer is remembered for the interval"
    );
    loop {
        let r = get(&srv, "/new.txt", "");
        if r.status == 200 {
            assert_eq!(r.text(), "new\n");
            break;
        }
        assert!(
            created.elapsed() < valid + Duration::from_secs(1),
            "still 404 after {:?}",
            created.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let d = TestDir::new();
    let srv = server(&d, Duration::ZERO);
    assert_eq!(get(&srv, "/new.txt", "").status, 404);
    d.file("new.txt", "new\n");
    assert_eq!(
        get(&srv, "/new.txt", "").status,
        200,
        "no cache: seen at once"
    );
}

/// Cached bodies go out in one vectored write with their head; when the socket takes only
/// part of it (a client that pipelines and does not read), the rest must follow byte-exact.
#[test]
fn cached_bodies_survive_partial_writes() {
    use std::io::{Read, Write};
    let d = TestDir::new();
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    d.file("c.bin", &body);
    let srv = server(&d, Duration::from_secs(30));
    assert_eq!(get(&srv, "/c.bin", "").body, body, "warms the cache");
    const N: usize = 600; // 6 MB of answers: far more than the socket buffers hold
    let mut s = srv.connect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..N {
                s.write_all(b"GET /c.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300)); // let the server's socket fill up
    for i in 0..N {
        let r = support::read_response(&mut s, false).expect("a response");
        assert_eq!(r.status, 200, "response {i}");
        assert!(r.body == body, "response {i}: body differs");
    }
    writer.join().unwrap();
    let mut rest = [0u8; 1];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(
        s.read(&mut rest).is_err(),
        "nothing after the last response"
    );
}

/// A large file with a snapshot is remembered by path like a small file: answers from that
/// entry equal uncached ones (ranges and validators too), a replaced file is seen within the
/// interval, and with the cache off at once.
#[test]
fn large_files_are_remembered_by_path_within_the_interval() {
    let d = TestDir::new();
    let one: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    d.file("big.bin", &one);
    let valid = Duration::from_secs(60);
    let cached = server(&d, valid);
    let plain = server(&d, Duration::ZERO);
    // The first answer makes the snapshot, the second remembers the path.
    for _ in 0..2 {
        assert!(get(&cached, "/big.bin", "").body == one);
    }
    let etag = get(&plain, "/big.bin", "")
        .header("ETag")
        .unwrap()
        .to_string();
    for extra in [
        String::new(),
        "Range: bytes=1000-200999\r\n".into(),
        "Range: bytes=0-9,150000-\r\n".into(),
        format!("If-None-Match: {etag}\r\n"),
    ] {
        assert_eq!(
            comparable(&get(&cached, "/big.bin", &extra)),
            comparable(&get(&plain, "/big.bin", &extra)),
            "{extra:?}"
        );
    }
    // Removed: the entry still answers until the interval is over (as for small files),
    // with the bytes of the version it was made from; uncached, the removal shows at once.
    std::fs::remove_file(d.path.join("big.bin")).unwrap();
    assert!(
        get(&cached, "/big.bin", "").body == one,
        "remembered by path"
    );
    assert_eq!(get(&plain, "/big.bin", "").status, 404);
}
