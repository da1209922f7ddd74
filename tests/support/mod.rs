//! Test support: a unique temporary document root ([`TestDir`]), the real server started
//! in-process on 127.0.0.1:0 ([`TestServer`], stopped on drop), and a raw-bytes client that
//! reads responses framed by Content-Length so keep-alive and pipelining can be checked.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use poolserve::{Config, Running, Server};

/// The only guard in tests: no read waits longer than this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits (bounded) until `n` workers stand at the gate.
/// A server with two workers on one (pretended) core, whose requests for `/held.txt` wait
/// at the returned gate: the wake-up rule keeps one worker awake, so a request held there
/// makes a stuck worker. `/a.txt` is served as usual.
pub fn one_core_with_a_gate(d: &TestDir) -> (TestServer, poolserve::HoldGate) {
    d.file("held.txt", "held\n");
    d.file("a.txt", "aaa\n");
    let gate = poolserve::HoldGate::new("/held.txt");
    let mut c = config(&d.path);
    c.workers = 2;
    c.cores = Some(1);
    c.hold = Some(gate.clone());
    (TestServer::with_config(c), gate)
}

pub fn wait_until_held(gate: &poolserve::HoldGate, n: usize) {
    let t = std::time::Instant::now();
    while gate.held() < n {
        assert!(t.elapsed() < IO_TIMEOUT, "no worker reached the gate");
        std::thread::yield_now();
    }
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A unique directory under the system temp dir, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new() -> TestDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("poolserve-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test dir");
        TestDir { path }
    }

    /// Writes a file (creating parent directories).
    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, contents).expect("write file");
        p
    }

    pub fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).expect("create dir");
        p
    }

    pub fn symlink(&self, target: impl AsRef<Path>, rel: &str) {
        std::os::unix::fs::symlink(target, self.path.join(rel)).expect("symlink");
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A config for tests: the given root, port 0, few workers, short timeouts.
pub fn config(root: &Path) -> Config {
    let mut c = Config {
        root: root.to_path_buf(),
        addr: "127.0.0.1:0".parse().unwrap(),
        workers: 4,
        queue: 1024,
        // In-process servers would write access lines to the test harness's stdout.
        access_log: poolserve::AccessLog::Off,
        ..Config::default()
    };
    c.limits.head_timeout = Duration::from_secs(2);
    c.limits.keep_alive_timeout = Duration::from_secs(2);
    c.limits.write_timeout = Duration::from_secs(5);
    c.limits.shutdown_timeout = Duration::from_secs(5);
    c.limits.linger_timeout = Duration::from_millis(500);
    c
}

/// The real server, in-process, stopped (and drained) on drop.
pub struct TestServer {
    pub running: Option<Running>,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start(root: &Path) -> TestServer {
        TestServer::with_config(config(root))
    }

    pub fn with_config(config: Config) -> TestServer {
        let server = Server::bind(config).expect("bind");
        let addr = server.local_addr();
        let running = server.spawn().expect("spawn");
        TestServer {
            running: Some(running),
            addr,
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn request(&self, raw: &str) -> Response {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).unwrap();
        read_response(&mut s, raw.starts_with("HEAD ")).expect("a response")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        ))
    }

    pub fn stop(mut self) -> Result<(), poolserve::Error> {
        self.running.take().expect("running").stop()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop();
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads the binary's first stdout line; returns the reader for the rest of its stdout (the
/// access log), the line, and the address in it (`... listening on http://ADDR/ ...`).
pub fn first_line(child: &mut Child) -> (BufReader<ChildStdout>, String, SocketAddr) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    (out, line, addr)
}

/// Reads one response; the body is framed by Content-Length (none for HEAD, 1xx, 204, 304).
pub fn read_response(s: &mut impl Read, head_request: bool) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            // A signal landed on this thread (a test nearby ran a child process): not the
            // server's doing, so read again, as `read_exact` does.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
    let head = String::from_utf8(head).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header colon");
            (n.to_string(), v.trim().to_string())
        })
        .collect();
    let mut resp = Response {
        status,
        head: head.clone(),
        headers,
        body: Vec::new(),
    };
    let no_body = head_request || status < 200 || status == 204 || status == 304;
    if !no_body {
        if let Some(len) = resp.header("Content-Length") {
            let len: usize = len.parse().expect("numeric Content-Length");
            let mut body = vec![0u8; len];
            s.read_exact(&mut body).ok()?;
            resp.body = body;
        }
    }
    Some(resp)
}

/// Reads until EOF (or the IO timeout, which fails the test).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("read to EOF within the timeout");
    out
}

/// True when the peer has closed: a read returns EOF (or a reset) within the IO timeout.
pub fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}
