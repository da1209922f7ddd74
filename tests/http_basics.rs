//! GET/HEAD/OPTIONS/405, directories, 404s, headers and MIME types, against the real server
//! in-process on 127.0.0.1:0, in raw bytes.

mod support;

use std::io::Write;
use std::net::TcpStream;

use support::{read_response, TestDir, TestServer};

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("index.html", "<h1>home</h1>\n");
    d.file("style.css", "body{}\n");
    d.file("logo.png", [0x89, b'P', b'N', b'G']);
    d.file("data.unknownext", "x");
    d.file("noext", "x");
    d.file("sub/index.html", "sub index\n");
    d.file("sub/page.txt", "text page\n");
    d.dir("empty");
    d
}

#[test]
fn get_root_serves_index_with_full_headers() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let r = srv.get("/");
    assert_eq!(r.status, 200, "{}", r.head);
    assert_eq!(r.text(), "<h1>home</h1>\n");
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Content-Length"), Some("14"));
    assert!(r.header("Server").unwrap().starts_with("poolserve"));
    let date = r.header("Date").expect("Date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    let lm = r.header("Last-Modified").expect("Last-Modified");
    assert!(poolserve::http_date::parse(lm).is_some(), "{lm}");
    assert_eq!(r.header("Connection"), Some("close"));
}

#[test]
fn head_sends_the_same_headers_and_no_body() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let get = srv.get("/style.css");
    let mut s = srv.connect();
    use std::io::Write;
    // HEAD then GET on one connection: if HEAD sent a body, the GET would read garbage.
    s.write_all(
        b"HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/page.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let head = support::read_response(&mut s, true).unwrap();
    assert_eq!(head.status, 200);
    for name in ["Content-Type", "Content-Length", "Last-Modified"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    let next = support::read_response(&mut s, false).unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "text page\n"));
}

/// RFC 9110 §2.5: a higher minor version of HTTP/1 is served as HTTP/1.1, so the connection
/// persists by default and a second request on it is answered too; the answer says HTTP/1.1.
#[test]
fn a_higher_minor_version_is_served_as_http_1_1() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let mut s = srv.connect();
    s.write_all(b"GET / HTTP/1.7\r\nHost: t\r\n\r\nGET /style.css HTTP/1.9\r\nHost: t\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s, false).unwrap();
    assert!(first.head.starts_with("HTTP/1.1 200 "), "{}", first.head);
    assert_eq!(first.text(), "<h1>home</h1>\n");
    assert_eq!(first.header("Connection"), None, "persistent, as in 1.1");
    let second = read_response(&mut s, false).unwrap();
    assert_eq!((second.status, second.text().as_str()), (200, "body{}\n"));
    // Another major version is still 505.
    let r = srv.request("GET / HTTP/3.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 505);
}

#[test]
fn directories_redirect_then_serve_their_index() {
    let d = site();
    let srv = TestServer::start(&d.path);
    let r = srv.get("/sub");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/sub/"));
    let r = srv.get("/sub?x=1&y=2");
    assert_eq!(
        r.header("Location"),
        Some("/sub/?x=1&y=2"),
        "query string kept"
    );
    let r = srv.get("/sub/");
    assert_eq!((r.status, r.text().as_str()), (200, "sub index\n"));
    let r = srv.get("/sub/?q=1");
    assert_eq!(r.status, 200, "a query never reaches the file system");
    let r = srv.get("/empty/");
    assert_eq!(r.status, 404, "no listings");
}

#[test]
fn missing_files_get_a_small_html_404() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for path in ["/nope.html", "/sub/nope", "/style.css/", "/index.html/x"] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
        assert!(r.text().contains("404 Not Found"));
        assert!(
            !r.text().contains(d.path.to_str().unwrap()),
            "no internal path leaks"
        );
    }
}

#[test]
fn other_methods_get_405_with_allow_and_touch_nothing() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND",
    ] {
        let r = srv.request(&format!(
            "{method} /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"), "{method}");
    }
    assert_eq!(
        std::fs::read_to_string(d.path.join("index.html")).unwrap(),
        "<h1>home</h1>\n"
    );
}

#[test]
fn options_answers_204_with_allow() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for target in ["/", "*", "/index.html"] {
        let r = srv.request(&format!(
            "OPTIONS {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(r.status, 204, "{target}");
        assert_eq!(r.header("Allow"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(
            r.header("Content-Length"),
            None,
            "RFC 9110 §8.6: no Content-Length on 204"
        );
    }
}

#[test]
fn content_types_come_from_the_mime_table() {
    let d = site();
    let srv = TestServer::start(&d.path);
    for (path, ctype) in [
        ("/style.css", "text/css; charset=utf-8"),
        ("/logo.png", "image/png"),
        ("/sub/page.txt", "text/plain; charset=utf-8"),
        ("/data.unknownext", "application/octet-stream"),
        ("/noext", "application/octet-stream"),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("Content-Type"), Some(ctype), "{path}");
        assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    }
}

#[test]
fn nothing_outside_the_root_is_ever_read() {
    let outside = TestDir::new();
    outside.file("secret.txt", "SECRET");
    let d = site();
    d.symlink(outside.path.join("secret.txt"), "link-out.txt");
    d.symlink(&outside.path, "dir-out");
    d.symlink(d.path.join("sub/page.txt"), "link-in.txt");
    let srv = TestServer::start(&d.path);
    for (path, status) in [
        ("/../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/sub/../../secret.txt", 400),
        ("/..%2fsecret.txt", 400),
        ("/%2E%2E%2Fsecret.txt", 400),
        ("/link-out.txt", 404),
        ("/dir-out/secret.txt", 404),
        ("/.hidden", 404),
        ("/%zz", 400),
        ("/index.html%00.txt", 400),
        ("/%", 400),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, status, "{path}");
        assert!(!r.text().contains("SECRET"), "{path}");
    }
    let r = srv.get("/link-in.txt");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "text page\n"),
        "symlinks inside the root work"
    );
    let r = srv.get("/sub/./../sub/page.txt");
    assert_eq!(
        r.status, 200,
        "dot segments that stay inside are normalized"
    );
}

#[test]
fn large_files_are_byte_exact() {
    let d = site();
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    d.file("big.bin", &data);
    let srv = TestServer::start(&d.path);
    let r = srv.get("/big.bin");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
    assert!(r.body == data, "body differs");
}

/// `--addr [::]:PORT` serves IPv6 and, where the host allows dual-stack sockets (Linux's
/// default `net.ipv6.bindv6only = 0`), IPv4 too. Skipped with a message on a host without
/// IPv6, where binding fails with a clear error instead.
#[test]
fn an_ipv6_wildcard_address_serves_both_families() {
    let d = site();
    let mut c = support::config(&d.path);
    c.addr = "[::]:0".parse().unwrap();
    let server = match poolserve::Server::bind(c) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipped: no IPv6 on this host ({e})");
            assert!(e.to_string().starts_with("cannot bind [::]:0"), "{e}");
            return;
        }
    };
    let port = server.local_addr().port();
    let running = server.spawn().unwrap();
    let v6_only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    let mut targets = vec![format!("[::1]:{port}")];
    if !v6_only {
        targets.push(format!("127.0.0.1:{port}"));
    }
    for target in targets {
        let Ok(mut s) = TcpStream::connect(&target) else {
            eprintln!("skipped {target}: loopback not reachable");
            continue;
        };
        s.set_read_timeout(Some(support::IO_TIMEOUT)).unwrap();
        s.write_all(b"GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).unwrap();
        assert_eq!(r.status, 200, "{target}");
    }
    running.stop().unwrap();
}
