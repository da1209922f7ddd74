//! The real binary: --help/--version, bad input (one line, exit 2), and the Ctrl-C drain:
//! SIGINT during a slow download lets it finish byte-exact and exits 0; a second SIGINT
//! exits at once with a non-zero status.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::TestDir;

const BIN: &str = env!("CARGO_BIN_EXE_poolserve");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run poolserve")
}

#[test]
fn help_and_version_print_and_exit_0() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--root",
        "--addr",
        "--port",
        "--workers",
        "--queue",
        "--header-timeout",
        "--shutdown-timeout",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("poolserve {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = TestDir::new();
    let file = d.file("f.txt", "x");
    assert_usage_error(&["--bogus"], "--bogus");
    assert_usage_error(&["--workers", "zero"], "--workers");
    assert_usage_error(
        &["--root", "/definitely/not/here", "--port", "0"],
        "/definitely/not/here",
    );
    assert_usage_error(
        &["--root", file.to_str().unwrap(), "--port", "0"],
        "not a directory",
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    assert_usage_error(
        &["--root", d.path.to_str().unwrap(), "--port", &port],
        "cannot bind",
    );
}

/// Starts the binary on port 0 and reads the address from its one stdout line.
fn start(root: &TestDir, extra: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(["--root", root.path.to_str().unwrap(), "--port", "0"])
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn poolserve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (child, addr)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn sigint_during_a_slow_download_completes_it_and_exits_0() {
    let d = TestDir::new();
    let data: Vec<u8> = (0..(32u32 << 20)).map(|i| (i % 253) as u8).collect();
    d.file("big.bin", &data);
    let (mut child, addr) = start(&d, &["--shutdown-timeout", "20"]);

    let mut dl = TcpStream::connect(addr).unwrap();
    dl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    dl.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = vec![0u8; 64 * 1024];
    let n = dl.read(&mut got).unwrap();
    got.truncate(n);

    signal(&child, "-INT");
    // Read slowly (about 32 MiB/s at most), so the drain really waits for us.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match dl.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("download broke: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        got[split..] == data[..],
        "download not byte-exact ({} bytes)",
        got.len() - split
    );
    assert!(
        TcpStream::connect(addr).is_err(),
        "listener still open after SIGINT"
    );

    let status = wait_with_timeout(&mut child, Duration::from_secs(20)).expect("exit after drain");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("drained 1 connection"), "{log}");
}

#[test]
fn a_second_sigint_exits_at_once() {
    let d = TestDir::new();
    d.file("big.bin", vec![1u8; 64 << 20]);
    let (mut child, addr) = start(&d, &["--shutdown-timeout", "30"]);
    // A client that never reads keeps the drain from finishing.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    stuck
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stuck.read_exact(&mut head).unwrap();

    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "first SIGINT must drain, not exit"
    );
    let t = Instant::now();
    signal(&child, "-INT");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(5)).expect("exit on second SIGINT");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!status.success(), "{status:?}");
}

/// accept() failing with EMFILE must not spin or exit: the server logs it (rate-limited),
/// backs off, and serves again once descriptors are free. The binary runs under
/// `prlimit --nofile` so the limit is real.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let d = TestDir::new();
    d.file("a.txt", "aaa\n");
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=40:40",
            BIN,
            "--root",
            d.path.to_str().unwrap(),
            "--port",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prlimit poolserve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    // Far more connections than 40 descriptors allow; the kernel backlog holds the rest.
    let hogs: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(
        hogs.len() > 40,
        "could only open {} connections",
        hogs.len()
    );
    // Wait until the server has certainly hit the limit (each accepted hog costs it one).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server exited on EMFILE"
    );
    drop(hogs);

    // Once descriptors are free again, a fresh client is served.
    let t = Instant::now();
    let served = loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        if got.starts_with("HTTP/1.1 200 ") || t.elapsed() > Duration::from_secs(10) {
            break got;
        }
    };
    assert!(
        served.starts_with("HTTP/1.1 200 "),
        "not served after recovery: {served:?}"
    );

    signal(&child, "-TERM");
    let status =
        wait_with_timeout(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("accept failed"), "EMFILE not logged: {log}");
    assert!(
        log.lines().filter(|l| l.contains("accept failed")).count() < 20,
        "not rate-limited: {log}"
    );
    assert_eq!(status.code(), Some(0), "{log}");
}
