//! Connect/close cycles and aborted downloads leak no descriptor (issue 6). Alone in its test
//! binary, because it counts the descriptors of the whole process.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{read_response, TestDir, TestServer};

fn site() -> TestDir {
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    d
}

/// Resident memory of this process in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn connect_close_cycles_and_aborted_downloads_leak_nothing() {
    let d = site();
    d.file("big.bin", vec![3u8; 8 << 20]);
    let srv = TestServer::start(&d.path);
    assert_eq!(srv.get("/a.txt").status, 200);
    let baseline = open_fds();
    let rss_before = rss_kib();
    for i in 0..500 {
        let mut s = srv.connect();
        if i % 2 == 0 {
            s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            read_response(&mut s, false).unwrap();
        }
    }
    let aborters: Vec<_> = (0..20)
        .map(|_| {
            let mut s = srv.connect();
            std::thread::spawn(move || {
                s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                    .unwrap();
                // Read about half of it, in small pieces, then drop the connection.
                let mut chunk = [0u8; 16 * 1024];
                let mut got = 0;
                while got < 4 << 20 {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                // dropped here: the download is aborted halfway
            })
        })
        .collect();
    for a in aborters {
        a.join().unwrap();
    }
    assert_eq!(srv.get("/a.txt").status, 200, "the server keeps serving");
    // The server closes its ends as it notices; give it until the write timeout at most.
    // A cached snapshot of big.bin (zero-copy) is one descriptor, on purpose.
    let held = || baseline + srv.running.as_ref().unwrap().handle().stats().zero_copy.1;
    let t = Instant::now();
    while open_fds() > held() && t.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every socket left the keeper's slots too (a slot lives from a socket's first park to its
    // close, whatever closed it: the client, a timeout, an abort mid-download).
    let stats = || srv.running.as_ref().unwrap().handle().stats();
    while stats().watched > 0 && t.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats().watched, 0, "keeper slots still taken: {}", stats());
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 16 * 1024, "resident memory grew by {grown} KiB");
    assert_eq!(stats().zero_copy.1, 1, "big.bin's snapshot is cached");
    assert!(
        open_fds() <= held(),
        "{} descriptors open, {baseline} before and one snapshot",
        open_fds()
    );
}
