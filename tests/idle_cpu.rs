//! Waiting is not polling: 400 idle connections cost almost no CPU, and a fresh GET is
//! answered at once before and after 10 s of them (issue 6). Alone in its
//! test binary, because it measures the CPU time of the whole process.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{read_response, TestDir, TestServer};

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d
}

/// CPU time (user + system) of this process, in clock ticks, from /proc/self/stat.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn four_hundred_idle_connections_cost_almost_no_cpu() {
    let d = site();
    let mut c = support::config(&d.path);
    c.limits.head_timeout = Duration::from_secs(60);
    c.limits.keep_alive_timeout = Duration::from_secs(60);
    let srv = TestServer::with_config(c);
    let silent: Vec<TcpStream> = (0..200).map(|_| srv.connect()).collect();
    let mut idle = Vec::new();
    for _ in 0..200 {
        let mut s = srv.connect();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut s, false).unwrap().status, 200);
        idle.push(s);
    }
    // A fresh GET is answered at once with 400 connections open...
    let t = Instant::now();
    assert_eq!(srv.get("/a.txt").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_ticks() - before;
    // Ticks are 1/100 s on Linux: 2% of a core over 10 s is 20 ticks.
    assert!(
        used <= 20,
        "{used} ticks of CPU in 10 s with 400 idle connections"
    );
    let t = Instant::now();
    assert_eq!(srv.get("/a.txt").status, 200);
    assert!(t.elapsed() < Duration::from_secs(2));
    drop((silent, idle));
}
