//! The handler's answers, table-tested on a temporary directory with no socket: a raw head is
//! parsed, answered, and the reply pumped into a `Vec`.

use std::path::PathBuf;

use super::*;
use crate::config::Config;
use crate::request::Parse;
use crate::shutdown::Shutdown;

/// A document root of its own, removed on drop.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir =
            std::env::temp_dir().join(format!("poolserve-handler-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(dir.join("a.txt"), "0123456789").unwrap();
        std::fs::write(dir.join("docs/index.html"), "docs").unwrap();
        std::fs::write(dir.join(".secret"), "no").unwrap();
        std::fs::write(dir.join("app.html"), "<div id=app>").unwrap();
        std::fs::write(dir.join("missing.html"), "custom 404").unwrap();
        Root(dir.canonicalize().unwrap())
    }

    fn shared(&self, tweak: impl FnOnce(&mut Config)) -> Arc<Shared> {
        let mut config = Config {
            root: self.0.clone(),
            ..Config::default()
        };
        tweak(&mut config);
        Shared::new(config, Shutdown::new())
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn head(raw: &str) -> RequestHead {
    let limits = crate::config::Limits::default();
    match crate::request::parse(raw.as_bytes(), &mut 0, &limits) {
        Ok(Parse::Complete { head, .. }) => head,
        other => panic!("{raw:?} does not parse: {other:?}"),
    }
}

fn peer() -> SocketAddr {
    "127.0.0.1:9".parse().unwrap()
}

/// The reply as bytes on the wire, and its keep-alive verdict.
fn wire(mut reply: Reply) -> (String, bool) {
    let mut bytes = Vec::new();
    let sent = reply.out.pump(&mut bytes, u64::MAX).unwrap();
    assert_eq!(sent, crate::outgoing::Sent::Done);
    (String::from_utf8_lossy(&bytes).into_owned(), reply.keep)
}

fn ask(shared: &Shared, raw: &str, keep: bool) -> (u16, String, bool) {
    let reply = answer(&head(raw), peer(), keep, None, shared);
    let status = reply.status.code();
    let (text, keep) = wire(reply);
    (status, text, keep)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
}

#[test]
fn answers_by_method_path_and_validators() {
    let root = Root::new("table");
    let shared = root.shared(|_| {});
    let etag = conditional::etag(
        10,
        std::fs::metadata(root.0.join("a.txt"))
            .unwrap()
            .modified()
            .ok(),
    );
    let if_none_match = format!("If-None-Match: {etag}\r\n");
    // RFC 9110 §5.3: a list sent as several field lines is one list; the current tag on the
    // second line counts as much as on the first.
    let if_none_match_2nd = format!("If-None-Match: \"x\"\r\nIf-None-Match: {etag}\r\n");
    let if_match_2nd = format!("If-Match: \"other\"\r\nIf-Match: {etag}\r\n");
    // (request, status, what the wire must contain, what it must not)
    let table: Vec<(String, u16, Vec<&str>, Vec<&str>)> = vec![
        (
            get("/a.txt", ""),
            200,
            vec!["Content-Length: 10\r\n", "ETag: ", "\r\n\r\n0123456789"],
            vec!["Connection:"],
        ),
        (
            get("/", ""),
            200,
            vec!["<h1>home</h1>", "text/html"],
            vec![],
        ),
        (
            "HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            200,
            vec!["Content-Length: 10\r\n"],
            vec!["0123456789"],
        ),
        (
            get("/a.txt", "Range: bytes=2-4\r\n"),
            206,
            vec!["Content-Range: bytes 2-4/10", "\r\n\r\n234"],
            vec!["2345"],
        ),
        (
            get("/a.txt", "Range: bytes=20-\r\n"),
            416,
            vec!["Content-Range: bytes */10"],
            vec![],
        ),
        (
            get("/a.txt", &if_none_match),
            304,
            vec!["ETag: "],
            vec!["Content-Length", "0123456789"],
        ),
        (
            get("/a.txt", "If-Match: \"other\"\r\n"),
            412,
            vec![],
            vec!["0123456789"],
        ),
        (
            get("/a.txt", &if_none_match_2nd),
            304,
            vec!["ETag: "],
            vec!["Content-Length", "0123456789"],
        ),
        (
            get("/a.txt", "If-None-Match: \"x\"\r\nIf-None-Match: \"y\"\r\n"),
            200,
            vec!["\r\n\r\n0123456789"],
            vec![],
        ),
        (
            get("/a.txt", &if_match_2nd),
            200,
            vec!["\r\n\r\n0123456789"],
            vec![],
        ),
        (
            get("/a.txt", "If-Match: \"other\"\r\nIf-Match: \"x\"\r\n"),
            412,
            vec![],
            vec!["0123456789"],
        ),
        (get("/docs", ""), 301, vec!["Location: /docs/\r\n"], vec![]),
        (get("/docs/", ""), 200, vec!["\r\n\r\ndocs"], vec![]),
        (get("/nope.txt", ""), 404, vec!["Not Found"], vec![]),
        (get("/.secret", ""), 404, vec![], vec!["no"]),
        (get("/../a.txt", ""), 400, vec![], vec!["0123456789"]),
        (
            "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            204,
            vec!["Allow: GET, HEAD, OPTIONS\r\n"],
            vec!["Content-Length"],
        ),
        (
            "POST /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            405,
            vec!["Allow: GET, HEAD, OPTIONS\r\n"],
            vec![],
        ),
        (
            "DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            405,
            vec!["Allow: GET, HEAD, OPTIONS\r\n"],
            vec![],
        ),
    ];
    for (raw, status, has, lacks) in table {
        let (got, text, keep) = ask(&shared, &raw, true);
        assert_eq!(got, status, "{raw:?}\n{text}");
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?}\n{text}"
        );
        for want in has {
            assert!(text.contains(want), "{raw:?} lacks {want:?}\n{text}");
        }
        for unwanted in lacks {
            assert!(!text.contains(unwanted), "{raw:?} has {unwanted:?}\n{text}");
        }
        assert!(
            keep,
            "{raw:?}: none of these errors leaves the framing unknown"
        );
    }
    assert!(
        root.0.join("a.txt").exists(),
        "DELETE without --allow-write touched nothing"
    );
}

#[test]
fn the_keep_alive_verdict_is_only_narrowed() {
    let root = Root::new("keep");
    let shared = root.shared(|_| {});
    // (request, keep in, keep out, Connection field)
    let table = [
        (get("/a.txt", ""), true, true, None),
        (get("/a.txt", ""), false, false, Some("close")),
        (
            "GET /a.txt HTTP/1.0\r\n\r\n".to_string(),
            true,
            true,
            Some("keep-alive"),
        ),
        (
            "GET /a.txt HTTP/1.0\r\n\r\n".to_string(),
            false,
            false,
            Some("close"),
        ),
        (get("/nope", ""), true, true, None),
        (get("/nope", ""), false, false, Some("close")),
    ];
    for (raw, keep_in, keep_out, field) in table {
        let (_, text, keep) = ask(&shared, &raw, keep_in);
        assert_eq!(keep, keep_out, "{raw:?}");
        let header = text.lines().find_map(|l| l.strip_prefix("Connection: "));
        assert_eq!(header, field, "{raw:?}\n{text}");
    }
    // An error that leaves the framing unknown closes whatever the caller allowed.
    let reply = answer(
        &head(&get("/a.txt", "")),
        peer(),
        true,
        Some(HttpError::PayloadTooLarge),
        &shared,
    );
    assert_eq!(reply.status, Status::PayloadTooLarge);
    let (text, keep) = wire(reply);
    assert!(!keep && text.contains("Connection: close\r\n"), "{text}");
    let (text, keep) = wire(malformed(&HttpError::HeadTimeout, &Fields::default()));
    assert!(!keep && text.starts_with("HTTP/1.1 408 ") && text.contains("Connection: close\r\n"));
}

#[test]
fn writes_are_decided_beside_the_upload_code() {
    let root = Root::new("write");
    let shared = root.shared(|c| {
        c.allow_write = true;
        c.health_path = Some("/health".into());
    });
    let delete = |path: &str, extra: &str| {
        ask(
            &shared,
            &format!("DELETE {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"),
            true,
        )
        .0
    };
    assert_eq!(delete("/a.txt", "If-Match: \"nope\"\r\n"), 412);
    // RFC 9110 §5.3: the current tag on a second field line counts.
    let app = std::fs::metadata(root.0.join("app.html")).unwrap();
    let tag = conditional::etag(app.len(), app.modified().ok());
    let second = |field: &str| format!("{field}: \"nope\"\r\n{field}: {tag}\r\n");
    assert_eq!(delete("/app.html", &second("If-None-Match")), 412);
    assert!(root.0.join("app.html").exists());
    assert_eq!(delete("/app.html", &second("If-Match")), 204);
    assert!(!root.0.join("app.html").exists());
    assert!(root.0.join("a.txt").exists());
    assert_eq!(delete("/a.txt", ""), 204);
    assert!(!root.0.join("a.txt").exists());
    assert_eq!(delete("/a.txt", ""), 404);
    assert_eq!(delete("/docs", ""), 409, "never a directory");
    assert_eq!(delete("/health", ""), 403, "the health path is not a file");
    let (_, text, _) = ask(&shared, "OPTIONS / HTTP/1.1\r\nHost: t\r\n\r\n", true);
    assert!(
        text.contains("Allow: GET, HEAD, OPTIONS, PUT, DELETE\r\n"),
        "{text}"
    );
    // PUT answers: 201 with an empty body, 204, or the refusal's status.
    let (text, _) = wire(put_reply(
        Version::Http11,
        true,
        Ok(true),
        &Fields::default(),
    ));
    assert!(text.starts_with("HTTP/1.1 201 ") && text.contains("Content-Length: 0\r\n"));
    let (text, keep) = wire(put_reply(
        Version::Http11,
        true,
        Ok(false),
        &Fields::default(),
    ));
    assert!(text.starts_with("HTTP/1.1 204 ") && keep);
    let (text, keep) = wire(put_reply(
        Version::Http11,
        true,
        Err(HttpError::PreconditionFailed),
        &Fields::default(),
    ));
    assert!(text.starts_with("HTTP/1.1 412 ") && keep);
}

#[test]
fn the_health_path_answers_from_the_stop_token() {
    let root = Root::new("health");
    let shared = root.shared(|c| c.health_path = Some("/health".into()));
    let (status, text, _) = ask(&shared, &get("/health", ""), true);
    assert_eq!(status, 200);
    assert!(text.ends_with("\r\n\r\nok\n") && text.contains("Cache-Control: no-store"));
    assert!(is_health_probe(&head(&get("/health", "")), &shared));
    assert!(!is_health_probe(
        &head("POST /health HTTP/1.1\r\nHost: t\r\n\r\n"),
        &shared
    ));
    shared.shutdown.announce();
    let (status, text, _) = ask(&shared, &get("/health", ""), true);
    assert_eq!(status, 503);
    assert!(text.ends_with("draining\n"));
}

#[test]
fn pages_are_loaded_once_and_answer_misses() {
    let root = Root::new("pages");
    let shared = root.shared(|c| {
        c.fallback = Some(root.0.join("app.html"));
        c.not_found_page = Some(root.0.join("missing.html"));
        c.cache_valid = std::time::Duration::from_secs(60);
    });
    // (path, status, body)
    let table = [
        ("/users/42", 200, "<div id=app>"),
        ("/deep/link/", 200, "<div id=app>"),
        ("/app.js", 404, "custom 404"),
        ("/a.txt", 200, "0123456789"),
    ];
    for round in 0..2 {
        for (path, status, body) in table {
            let (got, text, _) = ask(&shared, &get(path, ""), true);
            assert_eq!(got, status, "{path} round {round}");
            assert!(text.ends_with(body), "{path} round {round}\n{text}");
        }
        // Gone from disk after the first round: the copies in memory still answer.
        std::fs::remove_file(root.0.join("app.html")).unwrap_or_default();
        std::fs::remove_file(root.0.join("missing.html")).unwrap_or_default();
    }
    assert!(shared.cache.page(Page::Fallback).is_some());
    assert!(shared.cache.page(Page::NotFound).is_some());
    // A write clears them: the next miss opens the pages again, finds them gone, and falls
    // back to the built-in answer.
    shared.cache.clear();
    let (status, text, _) = ask(&shared, &get("/users/42", ""), true);
    assert_eq!(status, 404);
    assert!(!text.contains("custom 404") && !text.contains("<div id=app>"));
}

#[test]
fn a_page_larger_than_the_bound_is_read_from_disk_each_time() {
    let root = Root::new("bigpage");
    let big = vec![b'x'; PAGE_MAX_BYTES as usize + 1];
    std::fs::write(root.0.join("app.html"), &big).unwrap();
    let shared = root.shared(|c| c.fallback = Some(root.0.join("app.html")));
    let (status, text, _) = ask(&shared, &get("/route", ""), true);
    assert_eq!(status, 200);
    assert!(text.ends_with(&"x".repeat(64)));
    assert!(
        shared.cache.page(Page::Fallback).is_none(),
        "not kept in memory"
    );
}

#[test]
fn listing_pages_waiting_for_readers_share_a_bounded_memory() {
    let root = Root::new("listing-memory");
    for i in 0..300 {
        std::fs::write(root.0.join(format!("docs/f{i:03}.txt")), "x").unwrap();
    }
    std::fs::remove_file(root.0.join("docs/index.html")).unwrap();
    std::fs::create_dir(root.0.join("tiny")).unwrap();
    let shared = root.shared(|c| c.list_dirs = true);
    let held = || {
        shared
            .listing_bytes
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let big = head(&get("/docs/", ""));
    // A page too long to go out with its head holds its entries' share until it is sent.
    let reply = answer(&big, peer(), true, None, &shared);
    assert_eq!(reply.status, Status::Ok);
    let share = held();
    assert!(
        share > 300 * std::mem::size_of::<listing::Entry>(),
        "{share}"
    );
    let (text, _) = wire(reply);
    assert!(text.len() as u64 > crate::cache::INLINE_BODY_MAX && text.contains("f299.txt"));
    assert_eq!(held(), 0, "given back once sent");
    // With the memory taken by other pages, one more is 503 (and takes nothing); HEAD and a
    // page that goes out with its head hold nothing, so they are still answered.
    let filler = Slot::take(
        &shared.listing_bytes,
        LISTING_PAGES_MEMORY - share + 1,
        LISTING_PAGES_MEMORY,
    )
    .expect("room for the filler");
    let refused = answer(&big, peer(), true, None, &shared);
    assert_eq!(refused.status, Status::ServiceUnavailable);
    assert!(wire(refused).0.contains("Retry-After: 1"));
    let head_only = head("HEAD /docs/ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        answer(&head_only, peer(), true, None, &shared).status,
        Status::Ok
    );
    assert_eq!(ask(&shared, &get("/tiny/", ""), true).0, 200);
    drop(filler);
    assert_eq!(answer(&big, peer(), true, None, &shared).status, Status::Ok);
    assert_eq!(held(), 0, "a reply dropped unsent gives its share back too");
}
