//! Slowloris heads get 408 at the head deadline and starve nobody (issue 6).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{TestDir, TestServer};

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d
}

#[test]
fn slowloris_heads_get_408_at_the_deadline_and_starve_nobody() {
    let d = site();
    let mut c = support::config(&d.path);
    c.workers = 4;
    c.limits.head_timeout = Duration::from_millis(1500);
    let srv = TestServer::with_config(c);
    let mut slow: Vec<TcpStream> = (0..32).map(|_| srv.connect()).collect();
    for s in &mut slow {
        s.write_all(b"GET /a.txt HTTP/1.1\r\n").unwrap();
    }
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    // Trickle one header line per connection every 250 ms, and keep asking on fresh ones.
    while start.elapsed() < Duration::from_millis(1200) {
        for (i, s) in slow.iter_mut().enumerate() {
            let _ = s.write_all(format!("X-Slow-{i}: still here\r\n").as_bytes());
        }
        let t = Instant::now();
        assert_eq!(srv.get("/a.txt").status, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(worst < Duration::from_secs(2), "a fresh GET took {worst:?}");
    for s in &mut slow {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    }
    let all = start.elapsed();
    assert!(
        all < Duration::from_secs(4),
        "408s came at {all:?}, long after the 1.5 s deadline"
    );
}

/// With deferred accept (on by default) a silent connection waits in the kernel, costing the
/// process nothing; about a second later the kernel hands it over and the keeper deals with it
/// like any silent connection: closed quietly at its head deadline. Requests that arrive
/// meanwhile are answered at once (issue 16).
#[test]
fn silent_connections_wait_in_the_kernel_then_the_keeper_closes_them() {
    let d = site();
    let mut c = support::config(&d.path);
    c.workers = 2;
    c.defer_accept = 1;
    c.limits.head_timeout = Duration::from_millis(500);
    let srv = TestServer::with_config(c);
    let stats = || srv.running.as_ref().unwrap().handle().stats();
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = (0..8).map(|_| srv.connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stats().accepted,
        0,
        "silent connections are still in the kernel"
    );
    let t = Instant::now();
    assert_eq!(srv.get("/a.txt").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    for s in &mut silent {
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("closed, not left hanging");
        assert!(got.is_empty(), "a quiet close");
    }
    let closed = start.elapsed();
    assert!(
        closed >= Duration::from_millis(1400) && closed < Duration::from_secs(4),
        "closed after {closed:?}: handed over at ~1 s, then the 0.5 s head deadline"
    );
    let s = stats();
    assert_eq!((s.accepted, s.timeouts), (9, 8), "{s}");
}
