//! A panic in the keeper is contained (issue 15): it is logged, the server drains the
//! connections the keeper holds like in any stop (a response in flight finishes byte-exact),
//! and `run` returns an error, so the binary exits with status 1 for a supervisor to restart.

mod support;

use std::io::{Read, Write};
use std::time::Instant;

use poolserve::config::KeeperFault;
use support::{config, is_closed, read_response, TestDir, TestServer, IO_TIMEOUT};

fn body_byte(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn a_keeper_panic_drains_and_stops_with_an_error() {
    const BIG: usize = 8 * 1024 * 1024;
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d.file("big.bin", (0..BIG).map(body_byte).collect::<Vec<u8>>());
    let fault = KeeperFault::default();
    let mut c = config(&d.path);
    c.keeper_fault = Some(fault.clone());
    let srv = TestServer::with_config(c);
    let stats = || srv.running.as_ref().unwrap().handle().stats();

    // A slow reader: its response waits with the keeper for writability.
    let mut slow = srv.connect();
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // An idle keep-alive connection, parked with the keeper too.
    let mut idle = srv.connect();
    idle.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).unwrap().status, 200);
    let t = Instant::now();
    while stats().idle < 2 {
        assert!(t.elapsed() < IO_TIMEOUT, "{}", stats());
        std::thread::yield_now();
    }

    fault.arm();
    // A new connection's first park wakes the keeper, which then panics.
    let _wake = srv.connect();

    let head = read_response(&mut slow, true).expect("the head");
    assert_eq!(head.status, 200);
    let mut body = Vec::with_capacity(BIG);
    slow.read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), BIG, "the response in flight finished");
    assert!(body.iter().enumerate().all(|(i, &b)| b == body_byte(i)));
    assert!(is_closed(&mut idle), "the drain closed the idle connection");
    match srv.stop() {
        Err(poolserve::Error::KeeperFailed) => {}
        other => panic!("expected the keeper failure, got {other:?}"),
    }
}
