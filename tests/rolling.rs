//! Issue 8: `deploy/rolling-restart.sh` against the built binary. Three replicas behind
//! HAProxy on loopback, curl loops throughout, each replica restarted in turn with SIGTERM:
//! zero failed and zero truncated requests. Skipped, with a message, when HAProxy or curl is
//! not installed (CI installs both).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

fn installed(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .any(|dir| Path::new(dir).join(tool).exists())
}

#[test]
fn a_rolling_restart_behind_haproxy_loses_no_request() {
    for tool in ["haproxy", "curl"] {
        if !installed(tool) {
            eprintln!("skipped: {tool} is not installed (apt-get install {tool})");
            return;
        }
    }
    // Four free loopback ports, found by binding to port 0 (held together, so distinct).
    let held: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    drop(held);
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/rolling-restart.sh"
        ))
        .env("POOLSERVE_BIN", env!("CARGO_BIN_EXE_poolserve"))
        .env("PORTS", ports.join(" "))
        .env("LOOPS", "6")
        .output()
        .expect("run deploy/rolling-restart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rolling restart failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains("sent="))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}\n{stderr}"));
    assert!(summary.contains("failed=0 truncated=0"), "{summary}");
    let sent: u64 = summary
        .split("sent=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(sent > 100, "too few requests to mean anything: {summary}");
}
