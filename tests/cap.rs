//! The connection cap (issue 15): held by idle, silent and slowloris connections it is
//! reclaimed for new clients, oldest idle first, then heads that missed the grace; `503`
//! stays for real load, when every connection held is working.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{config, read_response, TestDir, TestServer, IO_TIMEOUT};

const CAP: usize = 64;
/// How often a blocked attacker looks at the stop flag, and a slowloris sends a byte.
const TICK: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum Attacker {
    /// One request, then idle on the keep-alive connection.
    Idle,
    /// Connects and sends nothing.
    Silent,
    /// A head that never ends, one header line per tick.
    Slowloris,
}

/// Holds one connection of its kind, and reconnects at once whenever it is closed.
fn attack(addr: SocketAddr, kind: Attacker, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        s.set_read_timeout(Some(TICK)).unwrap();
        let _ = match kind {
            Attacker::Idle => s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
            Attacker::Silent => Ok(()),
            Attacker::Slowloris => s.write_all(b"GET /a.txt HTTP/1.1\r\n"),
        };
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break, // closed (reclaimed, or a 503): reconnect
                Ok(_) => {}     // the response (or the 503), then wait for the close
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Attacker::Slowloris = kind {
                        if s.write_all(b"X-Slow: 1\r\n").is_err() {
                            break;
                        }
                    }
                }
                Err(_) => break,
            }
        }
    }
}

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d.file("big.bin", vec![7u8; 16 * 1024 * 1024]);
    d
}

fn capped(d: &TestDir) -> TestServer {
    let mut c = config(&d.path);
    c.limits.max_connections = CAP;
    // Only the cap may free a seat: no attacker times out during the test.
    c.limits.head_timeout = Duration::from_secs(60);
    c.limits.keep_alive_timeout = Duration::from_secs(60);
    c.limits.write_timeout = Duration::from_secs(60);
    TestServer::with_config(c)
}

fn stats(srv: &TestServer) -> poolserve::Stats {
    srv.running.as_ref().unwrap().handle().stats()
}

/// Waits (bounded) until the keeper holds `n` parked connections.
fn until_parked(srv: &TestServer, n: usize) {
    let t = Instant::now();
    while stats(srv).idle < n {
        assert!(t.elapsed() < IO_TIMEOUT, "only {} parked", stats(srv).idle);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_cap_held_by_idle_silent_and_slowloris_connections_still_seats_a_new_client() {
    seats_a_new_client(&[Attacker::Idle, Attacker::Silent, Attacker::Slowloris]);
}

/// Without idle connections to take first, the seat comes from a head that missed the grace.
#[test]
fn a_cap_held_by_silent_and_slowloris_connections_still_seats_a_new_client() {
    seats_a_new_client(&[Attacker::Silent, Attacker::Slowloris]);
}

fn seats_a_new_client(kinds: &[Attacker]) {
    let d = site();
    let srv = capped(&d);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..CAP)
        .map(|i| {
            let (addr, stop, kind) = (srv.addr, Arc::clone(&stop), kinds[i % kinds.len()]);
            std::thread::spawn(move || attack(addr, kind, &stop))
        })
        .collect();
    until_parked(&srv, CAP);

    for round in 0..10 {
        let t = Instant::now();
        let mut s = srv.connect();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let r = read_response(&mut s, false).expect("an answer");
        let took = t.elapsed();
        assert_eq!(r.status, 200, "round {round}: {}", r.head);
        assert!(took < Duration::from_secs(1), "round {round}: {took:?}");
        // Let the attackers settle again (reconnect, age past the grace).
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    assert!(stats(&srv).reclaimed >= 10, "{}", stats(&srv));
}

#[test]
fn at_the_cap_with_every_connection_working_a_new_client_gets_503() {
    const HELD: usize = 4;
    let d = site();
    let mut c = config(&d.path);
    c.limits.max_connections = HELD;
    let srv = TestServer::with_config(c);
    // Slow readers: each asks for a large file and reads nothing, so its response waits
    // with the keeper for writability. They are working; none may be reclaimed.
    let readers: Vec<TcpStream> = (0..HELD)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    until_parked(&srv, HELD);
    let r = srv.get("/a.txt");
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    assert_eq!(stats(&srv).reclaimed, 0);
    // The slow readers still get every byte.
    for mut s in readers {
        let head = read_response(&mut s, true).expect("the head");
        assert_eq!(head.status, 200);
        let want: usize = head.header("Content-Length").unwrap().parse().unwrap();
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        while got < want {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "cut at {got} of {want}");
            got += n;
        }
    }
}
