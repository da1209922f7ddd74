//! Framing on the wire (RFC 9112 §6-§9): bodies on GET are skipped or the connection closes,
//! never parsed as the next request; `Expect: 100-continue`; lingering close after an error;
//! long pipelines and many requests on one connection.

mod support;

use std::io::Write;

use support::{is_closed, read_response, TestDir, TestServer};

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d.file("b.txt", "bbb\n");
    d
}

#[test]
fn a_small_get_body_is_skipped_and_the_connection_kept() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for body in [
        "Content-Length: 11\r\n\r\nGET /x HTTP",
        "Transfer-Encoding: chunked\r\n\r\n5;e=1\r\nGET /\r\n0\r\nX-T: 1\r\n\r\n",
    ] {
        let mut s = srv.connect();
        let raw = format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\n{body}GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n"
        );
        s.write_all(raw.as_bytes()).unwrap();
        let first = read_response(&mut s, false).unwrap();
        assert_eq!(
            (first.status, first.text().as_str()),
            (200, "aaa\n"),
            "{body:?}"
        );
        let second = read_response(&mut s, false).unwrap();
        assert_eq!(
            (second.status, second.text().as_str()),
            (200, "bbb\n"),
            "the body was not read as a request"
        );
        assert_eq!(second.header("Connection"), None, "kept alive");
    }
}

#[test]
fn a_body_that_has_not_arrived_closes_the_connection_after_the_answer() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let mut s = srv.connect();
    // 1 GiB announced, nothing sent: answer at once and close; never wait for it.
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\nGET /b.txt HTTP/1.1\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "aaa\n"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(is_closed(&mut s));
    assert_eq!(srv.get("/b.txt").status, 200, "the server keeps serving");
}

#[test]
fn expect_100_continue_gets_a_final_status_without_waiting_for_the_body() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for (method, status) in [("GET", 200), ("POST", 405)] {
        let mut s = srv.connect();
        let raw = format!("{method} /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, status, "{method}");
        assert_eq!(
            r.header("Connection"),
            Some("close"),
            "the unsent body ends the connection"
        );
    }
    let r = srv.request("GET /a.txt HTTP/1.1\r\nHost: t\r\nExpect: something-else\r\n\r\n");
    assert_eq!(r.status, 417);
}

#[test]
fn after_an_error_the_close_lingers_so_the_client_is_not_reset() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s, false).expect("the 400 arrives intact");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(r.text().contains("400 Bad Request"));
    // The client is still sending (say, the body of its bad request). A plain close would
    // answer with a reset and these writes would fail; a lingering close reads and discards
    // them until the client finishes or the linger deadline passes.
    let chunk = vec![b'x'; 16 * 1024];
    for i in 0..8 {
        s.write_all(&chunk)
            .unwrap_or_else(|e| panic!("write {i} after the 400 failed: {e}"));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        is_closed(&mut s),
        "the server closes once the client has finished"
    );
}

#[test]
fn a_long_pipeline_with_a_large_file_in_the_middle_is_byte_exact() {
    let d = site();
    let big: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 241) as u8).collect();
    d.file("big.bin", &big);
    let srv = TestServer::start(&d.path);
    let mut s = srv.connect();
    let mut batch = String::new();
    let mut expect = Vec::new();
    for i in 0..100 {
        let (req, want) = match i % 5 {
            0 => (
                "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n",
                (200, Some(b"aaa\n".to_vec())),
            ),
            1 => ("HEAD /b.txt HTTP/1.1\r\nHost: t\r\n\r\n", (200, None)),
            2 => ("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", (404, None)),
            3 => (
                "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
                (405, None),
            ),
            _ if i == 54 => (
                "GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n",
                (200, Some(big.clone())),
            ),
            _ => (
                "GET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n",
                (200, Some(b"bbb\n".to_vec())),
            ),
        };
        batch.push_str(req);
        expect.push((req.starts_with("HEAD"), want));
    }
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(batch.as_bytes()).unwrap());
    for (i, (head, (status, body))) in expect.into_iter().enumerate() {
        let r = read_response(&mut s, head).unwrap_or_else(|| panic!("response {i} missing"));
        assert_eq!(r.status, status, "response {i}");
        if let Some(body) = body {
            assert!(r.body == body, "response {i}: body differs");
        }
    }
    sender.join().unwrap();
}

#[test]
fn many_requests_on_one_connection() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let mut s = srv.connect();
    for i in 0..100 {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(
            (r.status, r.header("Connection")),
            (200, None),
            "request {i}"
        );
    }
}

/// RFC 9112 §6.1-§6.3 on the wire: every ambiguous framing is refused and the connection
/// closed, so nothing after it can be smuggled in as a second request.
#[test]
fn ambiguous_framing_is_refused_and_closes() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let cases = [
        ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 400),
        ("Content-Length: 1\r\nContent-Length: 2\r\n", 400),
        ("Content-Length: 1, 1\r\n", 400),
        ("Content-Length: +1\r\n", 400),
        ("Transfer-Encoding: chunked, identity\r\n", 400),
        ("Transfer-Encoding: foo, chunked\r\n", 501),
        ("Transfer-Encoding: gzip, chunked\r\n", 501),
    ];
    for (fields, status) in cases {
        let mut s = srv.connect();
        let raw = format!("POST /a.txt HTTP/1.1\r\nHost: t\r\n{fields}\r\n0\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(raw.as_bytes()).unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, status, "{fields:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{fields:?}");
        assert!(
            is_closed(&mut s),
            "{fields:?}: the smuggled GET must not be answered"
        );
    }
    let mut s = srv.connect();
    s.write_all(b"POST /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_response(&mut s, false).unwrap().status,
        400,
        "Transfer-Encoding on HTTP/1.0"
    );
}

/// Garbage and half-sent requests, many at once: each is answered with 400 or closed, and
/// the server keeps serving (issue 6, "Overload").
#[test]
fn garbage_and_half_sent_requests_never_stop_the_server() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..60 {
        let mut s = srv.connect();
        let garbage: Vec<u8> = (0..(next() % 4096 + 1)).map(|_| next() as u8).collect();
        let raw: Vec<u8> = match round % 3 {
            0 => garbage,
            // A head cut off mid-way, then the client closes its side.
            1 => b"GET /a.txt HTTP/1.1\r\nHost: t\r\nX-Half: "[..(next() % 40) as usize].to_vec(),
            // A valid request line followed by binary junk as headers.
            _ => [b"GET /a.txt HTTP/1.1\r\n".as_slice(), &garbage, b"\r\n\r\n"].concat(),
        };
        let _ = s.write_all(&raw);
        let _ = s.shutdown(std::net::Shutdown::Write);
        if let Some(r) = read_response(&mut s, false) {
            assert!(
                r.status == 400 || r.status == 431 || r.status == 414,
                "round {round}: {}",
                r.status
            );
        }
        assert!(is_closed(&mut s), "round {round}: connection left open");
    }
    let r = srv.get("/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "aaa\n"));
}
