//! Issue 18, "A real browser": the `--list-dirs` page as Debian's headless Chromium reads it.
//! A folder of hostile names (`<script>`, quotes and `&`, `%#?`, a newline, a space, bytes
//! that are not UTF-8, an emoji) is listed by the real server in-process, Chromium dumps the
//! DOM it built from the page, and every entry must be there in the right order: its link
//! text as a person sees it (U+FFFD for bad bytes and control characters), its href the
//! name's real bytes percent-encoded, and no `<script>` element made from a name. Chromium
//! then follows links taken from that DOM and must get the files' contents. A second test
//! checks the page is valid HTML5 (html5lib, strict) and loads nothing from anywhere.
//!
//! Skipped, with a message, only when Chromium (or python3 with html5lib, for the second
//! test) is not installed or cannot start; CI installs both (`.ci/run`).

mod support;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{config, TestDir, TestServer};

/// Longest one Chromium run may take before it is killed (a run takes about a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// What a fixture entry is.
enum Kind {
    Dir,
    /// A file with these contents (under 1 KiB, so its size shows as `N B`).
    Text(&'static str),
    /// A sparse file of this length, and the size the page shows for it.
    Sized(u64, &'static str),
}

/// The fixture `dir/`: name bytes, kind, and the link text a person sees, in the order the
/// page must show them: directories first, then files, each in natural order ignoring case
/// (`alpha`, `Beta`; `file2`, `file10`). Written out by hand rather than computed, so the
/// test does not share the server's idea of escaping or ordering.
const ENTRIES: &[(&[u8], Kind, &str)] = &[
    (b"alpha", Kind::Dir, "alpha/"),
    (b"Beta", Kind::Dir, "Beta/"),
    (b"my docs", Kind::Dir, "my docs/"),
    (b"zeta", Kind::Dir, "zeta/"),
    (
        b"100%#?.txt",
        Kind::Text("percent hash question\n"),
        "100%#?.txt",
    ),
    (
        b"<script>alert(1)<script>",
        Kind::Text("not a script\n"),
        "<script>alert(1)<script>",
    ),
    (
        b"a \"q\" & 'b'",
        Kind::Text("quotes and ampersand\n"),
        "a \"q\" & 'b'",
    ),
    // A name that looks escaped already: shown as it is, not as `AT&T.txt`.
    (
        b"AT&amp;T.txt",
        Kind::Text("entity lookalike\n"),
        "AT&amp;T.txt",
    ),
    (
        b"bad\xff\xfe.txt",
        Kind::Text("bytes that are not UTF-8\n"),
        "bad\u{FFFD}\u{FFFD}.txt",
    ),
    ("café.txt".as_bytes(), Kind::Text("accent\n"), "café.txt"),
    (b"empty.log", Kind::Text(""), "empty.log"),
    (b"file2", Kind::Text("two\n"), "file2"),
    (b"file10", Kind::Text("ten\n"), "file10"),
    (b"new\nline", Kind::Text("newline\n"), "new\u{FFFD}line"),
    (b"Report.pdf", Kind::Sized(1536, "1.5 KiB"), "Report.pdf"),
    (b"sparse.bin", Kind::Sized(3 << 20, "3.0 MiB"), "sparse.bin"),
    (b"with space", Kind::Text("space\n"), "with space"),
    (
        "\u{1F389} party.txt".as_bytes(),
        Kind::Text("emoji\n"),
        "\u{1F389} party.txt",
    ),
];

/// The server, listing directories, on a root whose `dir/` holds [`ENTRIES`] (and
/// `dir/my docs/inside.txt`, for a link into a directory).
fn serve_fixture(d: &TestDir) -> TestServer {
    let dir = d.dir("dir");
    for (name, kind, _) in ENTRIES {
        let path = dir.join(OsStr::from_bytes(name));
        match kind {
            Kind::Dir => std::fs::create_dir(&path).expect("create dir"),
            Kind::Text(text) => std::fs::write(&path, text).expect("write file"),
            Kind::Sized(len, _) => File::create(&path)
                .and_then(|f| f.set_len(*len))
                .expect("sized file"),
        }
    }
    d.file("dir/my docs/inside.txt", "inside the folder with a space\n");
    let mut c = config(&d.path);
    c.list_dirs = true;
    TestServer::with_config(c)
}

/// Chromium: Debian's `/usr/bin/chromium`, else `chromium` on PATH.
fn chromium() -> Option<PathBuf> {
    let debian = Path::new("/usr/bin/chromium");
    if debian.exists() {
        return Some(debian.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// Headless Chromium's `--dump-dom` of `url`, in a fresh profile: the DOM after load when it
/// exits 0 within [`DEADLINE`], else why not (with the end of its stderr, which is otherwise
/// noise: D-Bus, GPU and the like). Killed, with every process it started, at the deadline.
fn dump_dom(browser: &Path, url: &str) -> Result<String, String> {
    let profile = TestDir::new();
    let stderr_path = profile.path.join("stderr.log");
    let stderr = File::create(&stderr_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.path.join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        // Its own process group, so the deadline can end the renderer and the rest too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", browser.display()))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    // Reading and waiting on a thread, so this one can give up at the deadline.
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let read = stdout.read_to_end(&mut out);
        let status = child.wait();
        let _ = tx.send((read, status, out));
    });
    let tail = || {
        let log = std::fs::read(&stderr_path).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    };
    match rx.recv_timeout(DEADLINE) {
        Ok((Ok(_), Ok(status), out)) if status.success() => {
            String::from_utf8(out).map_err(|e| format!("DOM is not UTF-8: {e}"))
        }
        Ok((read, status, _)) => {
            let how = match (read, status) {
                (Err(e), _) => format!("reading its output: {e}"),
                (_, Err(e)) => format!("waiting for it: {e}"),
                (_, Ok(status)) => status.to_string(),
            };
            Err(format!(
                "chromium failed ({how}) on {url}; its stderr ends:\n{}",
                tail()
            ))
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Err(format!(
                "chromium gave no DOM for {url} within {DEADLINE:?} (killed); its stderr ends:\n{}",
                tail()
            ))
        }
    }
}

/// Chromium when it is installed and can start: it must render a page of its own (no
/// server involved), so a failure after this is the listing's, never the machine's.
fn working_chromium() -> Option<PathBuf> {
    let Some(browser) = chromium() else {
        eprintln!("skipped: chromium not available (not installed: apt-get install chromium)");
        return None;
    };
    match dump_dom(
        &browser,
        "data:text/html,<title>probe</title><p id=probe>ok</p>",
    ) {
        Ok(dom) if dom.contains("<p id=\"probe\">ok</p>") => Some(browser),
        Ok(dom) => {
            eprintln!("skipped: chromium not available (its probe page came back as {dom:?})");
            None
        }
        Err(why) => {
            eprintln!("skipped: chromium not available ({why})");
            None
        }
    }
}

/// Text as it was before Chromium serialized it: `&amp;`, `&lt;`, `&gt;`, `&quot;` and
/// `&nbsp;` are what its serializer writes in text and attribute values. `&amp;` goes
/// last, so `&amp;lt;` comes back as `&lt;`, not `<`.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&nbsp;", "\u{A0}")
        .replace("&amp;", "&")
}

/// One row of the listing's table as the DOM has it: the link's href and text, and the size
/// cell, unescaped.
#[derive(Debug, PartialEq)]
struct Row {
    href: String,
    text: String,
    size: String,
}

/// The rows of the listing's `<tbody>`, in order. String work on Chromium's serialization:
/// attributes in double quotes, `"` in a value and `<` in text always escaped, so `">` ends
/// an href and `</a>` ends a link's text.
fn rows(dom: &str) -> Vec<Row> {
    let start = dom.find("<tbody>").expect("a <tbody> in the DOM") + "<tbody>".len();
    let end = dom[start..].find("</tbody>").expect("a </tbody>") + start;
    let between = |s: &str, open: &str, close: &str| -> String {
        let from = s.find(open).unwrap_or_else(|| panic!("{open} in row {s}")) + open.len();
        let to = s[from..]
            .find(close)
            .unwrap_or_else(|| panic!("{close} in row {s}"))
            + from;
        unescape(&s[from..to])
    };
    dom[start..end]
        .split("<tr>")
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let link = between(r, "<a href=\"", "</a>");
            let (href, text) = link
                .split_once("\">")
                .unwrap_or_else(|| panic!("a link in row {r}"));
            let size_cell = &r[r.find("<td class=\"s\"").expect("a size cell")..];
            Row {
                href: href.to_string(),
                text: text.to_string(),
                size: between(size_cell, ">", "</td>"),
            }
        })
        .collect()
}

/// The bytes an href names, when it is one path segment (a trailing `/` for a directory)
/// with every byte but ASCII letters, digits and `-._~` percent-encoded: nothing in it may
/// be read as a query, a fragment, another segment or markup.
fn href_bytes(href: &str) -> Result<Vec<u8>, String> {
    let segment = href.strip_suffix('/').unwrap_or(href);
    let s = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = segment
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| format!("bad escape in {href:?}"))?;
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                out.push(b);
                i += 1;
            }
            b => return Err(format!("{:?} not percent-encoded in {href:?}", b as char)),
        }
    }
    Ok(out)
}

#[test]
fn chromium_shows_every_hostile_name_as_text_linked_by_its_bytes_in_order() {
    let Some(browser) = working_chromium() else {
        return;
    };
    let d = TestDir::new();
    let srv = serve_fixture(&d);
    let dom = dump_dom(&browser, &format!("http://{}/dir/", srv.addr)).unwrap();

    // The hostile name stayed text: the page has no script at all, so any `<script` in the
    // DOM would be one a name made.
    assert!(
        !dom.to_ascii_lowercase().contains("<script"),
        "a <script> element in the DOM:\n{dom}"
    );

    let rows = rows(&dom);
    // The parent link first, then every entry, nothing more, in the page's order.
    assert_eq!(
        rows.first().map(|r| (r.href.as_str(), r.text.as_str())),
        Some(("../", "../")),
        "{rows:#?}"
    );
    let shown: Vec<&str> = rows[1..].iter().map(|r| r.text.as_str()).collect();
    let expected: Vec<&str> = ENTRIES.iter().map(|(_, _, text)| *text).collect();
    assert_eq!(shown, expected, "entries or their order differ:\n{dom}");

    for (row, (name, kind, _)) in rows[1..].iter().zip(ENTRIES) {
        let is_dir = matches!(kind, Kind::Dir);
        assert_eq!(row.href.ends_with('/'), is_dir, "{row:?}");
        assert_eq!(
            href_bytes(&row.href).as_deref(),
            Ok(*name),
            "the href of {:?} must be its bytes, percent-encoded",
            row.text
        );
        let size = match kind {
            Kind::Dir => "\u{2014}".to_string(),
            Kind::Text(text) => format!("{} B", text.len()),
            Kind::Sized(_, shown) => shown.to_string(),
        };
        assert_eq!(row.size, size, "{row:?}");
    }
    // Spot checks of the encoding itself, as a person would read the page source.
    let href_of = |text: &str| {
        rows.iter()
            .find(|r| r.text == text)
            .map(|r| r.href.as_str())
    };
    assert_eq!(href_of("100%#?.txt"), Some("100%25%23%3F.txt"));
    assert_eq!(href_of("bad\u{FFFD}\u{FFFD}.txt"), Some("bad%FF%FE.txt"));
    assert_eq!(href_of("new\u{FFFD}line"), Some("new%0Aline"));
    assert!(
        dom.contains("<p>4 directories, 14 files.</p>"),
        "the foot counts every entry:\n{dom}"
    );
}

#[test]
fn chromium_follows_links_from_the_listing_to_the_files() {
    let Some(browser) = working_chromium() else {
        return;
    };
    let d = TestDir::new();
    let srv = serve_fixture(&d);
    let listing = format!("http://{}/dir/", srv.addr);
    let dom = dump_dom(&browser, &listing).unwrap();
    let rows = rows(&dom);
    // Each href is taken from the DOM Chromium built, resolved against the listing's URL
    // (a relative one-segment reference: appended to the directory), and opened by Chromium.
    // Text files and a directory only: a file Chromium would download (no extension,
    // application/octet-stream) leaves headless Chromium with no page to dump.
    for (text, expect) in [
        ("bad\u{FFFD}\u{FFFD}.txt", "bytes that are not UTF-8"),
        ("100%#?.txt", "percent hash question"),
        ("\u{1F389} party.txt", "emoji"),
        ("my docs/", "inside.txt"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.text == text)
            .unwrap_or_else(|| panic!("no link {text:?} in {rows:#?}"));
        assert!(
            !row.href.starts_with(['/', '.']) && !row.href.contains("://"),
            "{row:?} is not a relative segment"
        );
        let url = format!("{listing}{}", row.href);
        let page = dump_dom(&browser, &url).unwrap();
        assert!(
            page.contains(expect),
            "{url} (the link {text:?}) did not bring {expect:?}:\n{page}"
        );
    }
}

/// A python3 that has html5lib: Debian's first (python3-html5lib installs for it), then
/// whichever `python3` is first on PATH (pyenv and the like).
fn python_with_html5lib() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import html5lib"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// html5lib's strict parser on `html`: Ok, or its first parse error.
fn html5lib_strict(python: &str, html: &[u8]) -> Result<(), String> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import html5lib,sys; html5lib.HTMLParser(strict=True).parse(sys.stdin.buffer.read())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(html)
        .expect("feed html5lib");
    let out = child.wait_with_output().expect("html5lib's verdict");
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.lines().last().unwrap_or("").to_string())
    }
}

#[test]
fn the_listing_is_valid_html5_and_loads_nothing() {
    let Some(python) = python_with_html5lib() else {
        eprintln!(
            "skipped: python3 with html5lib not available (apt-get install python3-html5lib)"
        );
        return;
    };
    // The parser must be able to fail, or a pass would prove nothing.
    assert!(
        html5lib_strict(python, b"<!DOCTYPE html><title>t</title><p></div>").is_err(),
        "html5lib strict accepted a broken page"
    );
    assert_eq!(
        html5lib_strict(python, b"<!DOCTYPE html><title>t</title><p>ok</p>"),
        Ok(())
    );

    let d = TestDir::new();
    let srv = serve_fixture(&d);
    // Noncharacters are valid UTF-8 but not valid in an HTML document: in an entry, and in
    // the title and breadcrumb.
    d.file("odd\u{FFFE}/x\u{FDD0}y\u{10FFFF}.txt", "noncharacters\n");
    for path in [
        "/dir/",
        "/dir/my%20docs/",
        "/dir/?sort=size&order=desc",
        "/",
        "/odd%EF%BF%BE/",
    ] {
        let resp = srv.get(path);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(
            resp.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let html = std::str::from_utf8(&resp.body)
            .unwrap_or_else(|e| panic!("{path}: the page says utf-8 but is not: {e}"));
        if let Err(e) = html5lib_strict(python, &resp.body) {
            panic!("{path} is not valid HTML5: {e}\n{html}");
        }
        for needle in [
            "<!DOCTYPE html>",
            "<html lang=\"en\">",
            "<meta charset=\"utf-8\">",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
            "prefers-color-scheme",
        ] {
            assert!(html.contains(needle), "{path}: no {needle:?} in\n{html}");
        }
        let style = html
            .split_once("<style>")
            .and_then(|(_, rest)| rest.split_once("</style>"))
            .map(|(style, _)| style)
            .unwrap_or_else(|| panic!("{path}: no <style> in\n{html}"));
        assert!(style.contains("prefers-color-scheme"), "{path}: {style}");
        // Nothing fetched from anywhere: no absolute URL, no src, no stylesheet or import.
        let lower = html.to_ascii_lowercase();
        for banned in [
            "http://", "https://", "src=", "url(", "@import", "<link", "<script",
        ] {
            assert!(!lower.contains(banned), "{path}: {banned:?} in\n{html}");
        }
    }
}
