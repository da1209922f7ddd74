//! Validators, conditional requests and ranges on the wire (RFC 9110 §13, §14).

mod support;

use std::io::Write;

use support::{read_response, TestDir, TestServer};

fn site() -> (TestDir, Vec<u8>) {
    let d = TestDir::new();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    d.file("data.bin", &data);
    (d, data)
}

fn get(srv: &TestServer, extra: &str) -> support::Response {
    srv.request(&format!(
        "GET /data.bin HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    ))
}

#[test]
fn responses_carry_validators_and_revalidate_to_304() {
    let (d, _) = site();
    let srv = TestServer::start(&d.path);
    let r = get(&srv, "");
    let etag = r.header("ETag").expect("ETag").to_string();
    let lm = r
        .header("Last-Modified")
        .expect("Last-Modified")
        .to_string();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));

    // Several revalidations on one connection: a 304 must have no body, or the next response
    // would be read from the wrong place.
    let mut s = srv.connect();
    for extra in [
        format!("If-None-Match: {etag}\r\n"),
        format!("If-None-Match: \"nope\", W/{etag}\r\n"),
        // RFC 9110 §5.3: two field lines are one list.
        format!("If-None-Match: \"nope\"\r\nIf-None-Match: {etag}\r\n"),
        "If-None-Match: *\r\n".to_string(),
        format!("If-Modified-Since: {lm}\r\n"),
    ] {
        s.write_all(format!("GET /data.bin HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 304, "{extra}");
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert!(r.header("Date").is_some() && r.header("Last-Modified").is_some());
    }
    s.write_all(b"GET /data.bin HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s, false).unwrap().status, 200);
    let r = get(&srv, "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    assert_eq!(r.status, 200);
    let r = get(&srv, "If-Modified-Since: not a date\r\n");
    assert_eq!(r.status, 200, "an invalid date is ignored");
}

#[test]
fn failed_preconditions_give_412() {
    let (d, _) = site();
    let srv = TestServer::start(&d.path);
    let etag = get(&srv, "").header("ETag").unwrap().to_string();
    assert_eq!(get(&srv, "If-Match: \"other\"\r\n").status, 412);
    assert_eq!(
        get(&srv, &format!("If-Match: W/{etag}\r\n")).status,
        412,
        "weak never matches"
    );
    assert_eq!(get(&srv, &format!("If-Match: {etag}\r\n")).status, 200);
    assert_eq!(
        get(
            &srv,
            &format!("If-Match: \"other\"\r\nIf-Match: {etag}\r\n")
        )
        .status,
        200,
        "RFC 9110 §5.3: the tag on a second field line counts"
    );
    assert_eq!(
        get(
            &srv,
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
        )
        .status,
        412
    );
    assert_eq!(
        get(&srv, "If-Unmodified-Since: garbage\r\n").status,
        200,
        "never 412 on a bad date"
    );
}

#[test]
fn single_ranges_are_exact() {
    let (d, data) = site();
    let srv = TestServer::start(&d.path);
    for (range, start, end) in [
        ("bytes=0-99", 0, 99),
        ("bytes=0-1", 0, 1),
        ("bytes=0-0", 0, 0),
        ("bytes=99990-", 99_990, 99_999),
        ("bytes=-10", 99_990, 99_999),
        ("bytes=50000-999999", 50_000, 99_999),
    ] {
        let r = get(&srv, &format!("Range: {range}\r\n"));
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {start}-{end}/100000").as_str())
        );
        assert!(r.body == data[start..=end], "{range}: body differs");
    }
    let r = get(&srv, "Range: bytes=100000-\r\n");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Content-Range"), Some("bytes */100000"));
    for ignored in ["Range: bytes=abc\r\n", "Range: lines=1-2\r\n"] {
        let r = get(&srv, ignored);
        assert_eq!((r.status, r.body.len()), (200, 100_000), "{ignored}");
    }
}

#[test]
fn if_range_honours_the_range_only_when_it_matches() {
    let (d, _) = site();
    let srv = TestServer::start(&d.path);
    let first = get(&srv, "");
    let etag = first.header("ETag").unwrap();
    let lm = first.header("Last-Modified").unwrap();
    assert_eq!(
        get(&srv, &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n")).status,
        206
    );
    assert_eq!(
        get(&srv, &format!("Range: bytes=0-9\r\nIf-Range: {lm}\r\n")).status,
        206
    );
    assert_eq!(
        get(&srv, "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n").status,
        200
    );
}

#[test]
fn several_ranges_come_as_multipart_byteranges() {
    let (d, data) = site();
    let srv = TestServer::start(&d.path);
    let r = get(&srv, "Range: bytes=0-9, 20-29, 25-39\r\n");
    assert_eq!(r.status, 206);
    let ctype = r.header("Content-Type").unwrap();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(ctype);
    let body = &r.body;
    let text = String::from_utf8_lossy(body);
    assert_eq!(
        text.matches(&format!("--{boundary}\r\n")).count(),
        2,
        "overlaps coalesced"
    );
    assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    for (start, end) in [(0usize, 9usize), (20, 39)] {
        let marker = format!("Content-Range: bytes {start}-{end}/100000\r\n\r\n");
        let at = body
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .expect(&marker)
            + marker.len();
        assert!(body[at..=at + end - start] == data[start..=end]);
    }
    // Amplification guard: ranges adding up to more than the file get the file.
    let r = get(&srv, "Range: bytes=0-99999, 0-99999\r\n");
    assert_eq!((r.status, r.body.len()), (200, 100_000));
}

#[test]
fn head_of_a_range_mirrors_get() {
    let (d, _) = site();
    let srv = TestServer::start(&d.path);
    let get = get(&srv, "Range: bytes=10-19\r\n");
    let head = srv.request(
        "HEAD /data.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 206);
    for name in ["Content-Range", "Content-Length", "ETag", "Content-Type"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert!(head.body.is_empty());
}

/// Replicas behind a balancer: two trees with the same files and the same mtimes (what
/// `cp -p`, `rsync -a` or one container image give) yield the same ETag and Last-Modified,
/// though every inode differs, so a revalidation succeeds on whichever replica it reaches.
#[test]
fn replicas_with_preserved_mtimes_agree_on_validators() {
    let a = TestDir::new();
    let b = TestDir::new();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    for d in [&a, &b] {
        let p = d.file("app.css", "body{color:red}\n");
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let (sa, sb) = (TestServer::start(&a.path), TestServer::start(&b.path));
    let (ra, rb) = (sa.get("/app.css"), sb.get("/app.css"));
    assert_eq!(ra.header("ETag"), rb.header("ETag"));
    assert_eq!(ra.header("Last-Modified"), rb.header("Last-Modified"));
    let tag = ra.header("ETag").unwrap();
    let r = sb.request(&format!(
        "GET /app.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(
        r.status, 304,
        "a tag from replica A revalidates on replica B"
    );
}
