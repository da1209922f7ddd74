//! A 100 MiB PUT is streamed to disk in bounded memory (issue 8). Alone in its test binary,
//! because it reads the peak resident memory of the whole process.

mod support;

use std::io::Write;

use support::{config, read_response, TestDir, TestServer};

/// (VmRSS, VmHWM) of this process in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn a_100_mib_upload_streams_in_bounded_memory() {
    const SIZE: usize = 100 << 20;
    const PIECE: usize = 64 << 10;
    let d = TestDir::new();
    let mut c = config(&d.path);
    c.allow_write = true;
    c.max_upload = SIZE as u64;
    let srv = TestServer::with_config(c);
    let (rss_before, _) = memory_kib();

    let mut s = srv.connect();
    s.write_all(
        format!("PUT /big.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut piece = vec![0u8; PIECE];
    for i in 0..SIZE / PIECE {
        piece.fill((i % 251) as u8);
        s.write_all(&piece).unwrap();
    }
    let r = read_response(&mut s, false).unwrap();
    assert_eq!(r.status, 201);

    let (_, peak) = memory_kib();
    let grown_mib = peak.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 32,
        "peak memory grew by {grown_mib} MiB for a 100 MiB upload"
    );
    let meta = std::fs::metadata(d.path.join("big.bin")).unwrap();
    assert_eq!(meta.len(), SIZE as u64);
    let data = std::fs::read(d.path.join("big.bin")).unwrap();
    for (i, chunk) in data.chunks(PIECE).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == (i % 251) as u8),
            "piece {i} differs"
        );
    }
}
