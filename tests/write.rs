//! PUT and DELETE behind `--allow-write` (issue 8): off by default; atomic uploads (temporary
//! file, fsync, rename) with 201/204, 411/413/409/412, no temporary file left behind after an
//! error or an abort; DELETE of regular files only; the same path rules as GET.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{config, read_response, Response, TestDir, TestServer};

fn writable(d: &TestDir, tune: impl FnOnce(&mut poolserve::Config)) -> TestServer {
    let mut c = config(&d.path);
    c.allow_write = true;
    tune(&mut c);
    TestServer::with_config(c)
}

fn put(srv: &TestServer, path: &str, extra: &str, body: &[u8]) -> Response {
    let mut s = srv.connect();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    read_response(&mut s, false).expect("a response")
}

fn delete(srv: &TestServer, path: &str, extra: &str) -> Response {
    srv.request(&format!(
        "DELETE {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

/// No `.poolserve-upload-*` file anywhere under `dir` (waits briefly: an abort is noticed by
/// the server a moment after the client closes).
fn assert_no_temp_files(dir: &Path) {
    let t = Instant::now();
    loop {
        let mut temps = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else if name.starts_with(".poolserve-upload-") {
                    temps.push(e.path());
                }
            }
        }
        if temps.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "temporary files left: {temps:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn writes_are_off_by_default() {
    let d = TestDir::new();
    d.file("a.txt", "old\n");
    let srv = TestServer::start(&d.path);
    for r in [
        put(&srv, "/a.txt", "", b"new\n"),
        delete(&srv, "/a.txt", ""),
    ] {
        assert_eq!(r.status, 405);
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
    }
    assert_eq!(
        std::fs::read_to_string(d.path.join("a.txt")).unwrap(),
        "old\n"
    );
    assert!(!d.path.join("new.txt").exists());
}

#[test]
fn put_creates_then_replaces_and_get_sees_it() {
    let d = TestDir::new();
    let srv = writable(&d, |_| {});
    let r = srv.request("OPTIONS /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS, PUT, DELETE"));

    // A 404 is remembered by the cache; the PUT must make it forget.
    assert_eq!(srv.get("/new.txt").status, 404);
    let r = put(&srv, "/new.txt", "", b"first body\n");
    assert_eq!(r.status, 201);
    assert_eq!(srv.get("/new.txt").text(), "first body\n");
    let r = put(&srv, "/new.txt", "", b"second, longer body\n");
    assert_eq!(r.status, 204);
    assert_eq!(srv.get("/new.txt").text(), "second, longer body\n");

    // Chunked, and on a keep-alive connection that goes on afterwards.
    let mut s = srv.connect();
    s.write_all(
        b"PUT /chunked.bin HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: ok\r\n\r\n\
GET /chunked.bin HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 201);
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.text(), "hello world!");

    // Expect: 100-continue gets the interim answer, then the final one.
    let mut s = srv.connect();
    s.write_all(
        b"PUT /e.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 201);
    assert_eq!(srv.get("/e.txt").text(), "abc");
    assert_no_temp_files(&d.path);
}

#[test]
fn refusals_leave_the_old_file_and_no_temporary_file() {
    let d = TestDir::new();
    d.file("a.txt", "old\n");
    d.dir("dir");
    let outside = TestDir::new();
    outside.file("o.txt", "outside\n");
    d.symlink(outside.path.join("o.txt"), "link.txt");
    d.symlink(&outside.path, "out");
    let srv = writable(&d, |c| c.max_upload = 1000);
    let big = vec![b'x'; 1001];
    let rows: Vec<(&str, String, Vec<u8>, u16)> = vec![
        ("/a.txt", String::new(), big.clone(), 413),
        (
            "/a.txt",
            "If-None-Match: *\r\n".into(),
            b"new".to_vec(),
            412,
        ),
        (
            "/a.txt",
            "If-Match: \"nope\"\r\n".into(),
            b"new".to_vec(),
            412,
        ),
        (
            "/missing.txt",
            "If-Match: *\r\n".into(),
            b"new".to_vec(),
            412,
        ),
        ("/no/such/dir/a.txt", String::new(), b"new".to_vec(), 409),
        ("/dir", String::new(), b"new".to_vec(), 409),
        ("/dir/", String::new(), b"new".to_vec(), 409),
        ("/link.txt", String::new(), b"new".to_vec(), 403),
        ("/out/o.txt", String::new(), b"new".to_vec(), 404),
        ("/.env", String::new(), b"new".to_vec(), 404),
        ("/../a.txt", String::new(), b"new".to_vec(), 400),
        ("/%2e%2e/a.txt", String::new(), b"new".to_vec(), 400),
        ("/health", String::new(), b"new".to_vec(), 403),
    ];
    for (path, extra, body, status) in &rows {
        let r = put(&srv, path, extra, body);
        assert_eq!(r.status, *status, "PUT {path} {extra:?}");
    }
    // Without framing: 411.
    let r = srv.request("PUT /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 411);
    // Chunked past the limit: 413 while reading.
    let mut s = srv.connect();
    s.write_all(b"PUT /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let _ = s.write_all(b"200\r\n");
        let _ = s.write_all(&[b'y'; 512]);
        let _ = s.write_all(b"\r\n");
    }
    assert_eq!(read_response(&mut s, false).unwrap().status, 413);
    // An Expect: 100-continue upload that is refused never gets the 100.
    let mut s = srv.connect();
    s.write_all(
        b"PUT /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 413, "the final status, not 100");

    assert_eq!(
        std::fs::read_to_string(d.path.join("a.txt")).unwrap(),
        "old\n"
    );
    assert_eq!(
        std::fs::read_to_string(outside.path.join("o.txt")).unwrap(),
        "outside\n"
    );
    assert!(!d.path.join("missing.txt").exists());
    assert_no_temp_files(&d.path);
}

#[test]
fn conditional_put_lets_exactly_one_writer_win() {
    let d = TestDir::new();
    let srv = writable(&d, |_| {});
    assert_eq!(
        put(&srv, "/c.txt", "If-None-Match: *\r\n", b"v1").status,
        201
    );
    assert_eq!(
        put(&srv, "/c.txt", "If-None-Match: *\r\n", b"v2").status,
        412
    );
    let tag = srv.get("/c.txt").header("ETag").unwrap().to_string();
    let r = put(&srv, "/c.txt", &format!("If-Match: {tag}\r\n"), b"v3");
    assert_eq!(r.status, 204);
    // The same tag again: the file changed, so the second writer loses.
    let r = put(&srv, "/c.txt", &format!("If-Match: {tag}\r\n"), b"v4");
    assert_eq!(r.status, 412);
    assert_eq!(std::fs::read(d.path.join("c.txt")).unwrap(), b"v3");
    // RFC 9110 §5.3: a list sent as two field lines is one list, when the request arrives
    // and again at commit.
    let tag = srv.get("/c.txt").header("ETag").unwrap().to_string();
    let second = |field: &str| format!("{field}: \"stale\"\r\n{field}: {tag}\r\n");
    let r = put(&srv, "/c.txt", &second("If-None-Match"), b"v5");
    assert_eq!(r.status, 412);
    let r = put(&srv, "/c.txt", &second("If-Match"), b"v6");
    assert_eq!(r.status, 204);
    assert_eq!(std::fs::read(d.path.join("c.txt")).unwrap(), b"v6");
}

#[test]
fn aborted_uploads_leave_the_old_file_intact() {
    let d = TestDir::new();
    d.file("a.txt", "old\n");
    let srv = writable(&d, |_| {});
    let mut s = srv.connect();
    s.write_all(b"PUT /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    s.write_all(&[b'z'; 30000]).unwrap();
    drop(s); // gone halfway
    assert_no_temp_files(&d.path);
    assert_eq!(
        std::fs::read_to_string(d.path.join("a.txt")).unwrap(),
        "old\n"
    );
    assert_eq!(srv.get("/a.txt").text(), "old\n");
}

#[test]
fn concurrent_puts_leave_one_complete_body() {
    let d = TestDir::new();
    let srv = writable(&d, |c| c.workers = 4);
    let addr = srv.addr;
    let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 300_000]).collect();
    let threads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
                let head = format!(
                    "PUT /race.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                s.write_all(head.as_bytes()).unwrap();
                // In pieces, so the uploads interleave.
                for piece in body.chunks(10_000) {
                    s.write_all(piece).unwrap();
                }
                read_response(&mut s, false).unwrap().status
            })
        })
        .collect();
    for t in threads {
        let status = t.join().unwrap();
        assert!(status == 201 || status == 204, "{status}");
    }
    let result = std::fs::read(d.path.join("race.bin")).unwrap();
    assert!(bodies.contains(&result), "the file is a mix of uploads");
    assert_no_temp_files(&d.path);
}

#[test]
fn a_slow_upload_does_not_hold_the_only_worker() {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let srv = writable(&d, |c| c.workers = 1);
    let mut slow = srv.connect();
    slow.write_all(b"PUT /slow.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let t = Instant::now();
    assert_eq!(srv.get("/a.txt").status, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    slow.write_all(b"defghij").unwrap();
    assert_eq!(read_response(&mut slow, false).unwrap().status, 201);
    assert_eq!(srv.get("/slow.txt").text(), "abcdefghij");
}

#[test]
fn delete_removes_regular_files_only() {
    let d = TestDir::new();
    d.file("a.txt", "a\n");
    d.file("b.txt", "b\n");
    d.file(".env", "secret\n");
    d.dir("dir");
    d.symlink(d.path.join("b.txt"), "link.txt");
    let srv = writable(&d, |_| {});
    let tag = srv.get("/b.txt").header("ETag").unwrap().to_string();
    let rows: Vec<(&str, String, u16)> = vec![
        ("/a.txt", String::new(), 204),
        ("/a.txt", String::new(), 404),
        ("/dir", String::new(), 409),
        ("/link.txt", String::new(), 403),
        ("/.env", String::new(), 404),
        ("/../b.txt", String::new(), 400),
        ("/health", String::new(), 403),
        ("/b.txt", "If-Match: \"nope\"\r\n".into(), 412),
        ("/b.txt", format!("If-Match: {tag}\r\n"), 204),
    ];
    for (path, extra, status) in &rows {
        assert_eq!(delete(&srv, path, extra).status, *status, "DELETE {path}");
    }
    assert!(!d.path.join("a.txt").exists() && !d.path.join("b.txt").exists());
    assert!(d.path.join(".env").exists() && d.path.join("dir").is_dir());
    assert_eq!(srv.get("/a.txt").status, 404);
}

#[test]
fn an_empty_put_creates_an_empty_file_at_once() {
    let d = TestDir::new();
    let srv = writable(&d, |_| {});
    let mut s = srv.connect();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(b"PUT /empty.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("answered without waiting for a body");
    assert_eq!(r.status, 201);
    assert_eq!(std::fs::read(d.path.join("empty.txt")).unwrap(), b"");
}

/// A file has many request paths, and the small-file cache is keyed by them: a write through
/// any of them must not leave another serving the old bytes.
#[test]
fn a_write_through_any_path_refreshes_every_cached_path() {
    let d = TestDir::new();
    d.file("a.txt", "old\n");
    d.file("b.txt", "b\n");
    d.file("d/index.html", "old index\n");
    d.file("v.txt", "plain\n");
    d.file("v.txt.gz", "OLDGZ");
    let srv = writable(&d, |c| c.cache_valid = Duration::from_secs(60));
    let gz = "GET /v.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
    // Fill the cache.
    assert_eq!(srv.get("/a.txt").text(), "old\n");
    assert_eq!(srv.get("/b.txt").status, 200);
    assert_eq!(srv.get("/d/").text(), "old index\n");
    assert_eq!(srv.request(gz).text(), "OLDGZ");

    assert_eq!(put(&srv, "/%61.txt", "", b"new\n").status, 204);
    assert_eq!(srv.get("/a.txt").text(), "new\n", "other spelling");
    assert_eq!(put(&srv, "/d/index.html", "", b"new index\n").status, 204);
    assert_eq!(srv.get("/d/").text(), "new index\n", "directory URL");
    assert_eq!(put(&srv, "/v.txt.gz", "", b"NEWGZ").status, 204);
    assert_eq!(srv.request(gz).text(), "NEWGZ", "variant of another path");
    assert_eq!(delete(&srv, "//b.txt", "").status, 204);
    assert_eq!(
        srv.get("/b.txt").status,
        404,
        "deleted through another spelling"
    );
}

/// Issue 15: at start-up, the temporary upload files a crash left (older than an hour) are
/// removed from the whole tree; younger ones (an upload of another process in progress) and
/// other names stay.
#[test]
fn stale_upload_files_are_swept_at_start_up() {
    let d = TestDir::new();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    let stale = d.file("sub/.poolserve-upload-1-0", "left by a crash");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let fresh = d.file(".poolserve-upload-2-0", "in progress");
    let other = d.file("sub/keep.txt", "x");
    let _srv = TestServer::start(&d.path);
    let t = Instant::now();
    while stale.exists() {
        assert!(
            t.elapsed() < support::IO_TIMEOUT,
            "the stale file was never swept"
        );
        std::thread::yield_now();
    }
    assert!(fresh.exists() && other.exists());
}
