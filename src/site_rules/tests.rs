//! Table tests for parsing and matching the site rules.

use super::*;

#[test]
fn the_rule_files_are_named_however_the_path_is_spelled() {
    for (path, want) in [
        ("/_headers", true),
        ("/_redirects", true),
        ("/%5Fheaders", true),
        ("/x/../_redirects", true),
        ("//_headers", true),
        ("/_headers/", false), // a directory that is not there: 404 anyway
        ("/a/_headers", false),
        ("/_headers.txt", false),
        ("/", false),
    ] {
        assert_eq!(is_rule_file(path), want, "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The display of the error a `_redirects` text gives, or how many rules it parsed into.
fn redirects_outcome(text: &[u8]) -> String {
    match Redirects::parse("_redirects", text) {
        Ok(r) => format!("{} rules", r.len()),
        Err(e) => e.to_string(),
    }
}

/// The display of the error a `_headers` text gives, or how many blocks it parsed into.
fn headers_outcome(text: &[u8]) -> String {
    match HeaderRules::parse("_headers", text) {
        Ok(h) => format!("{} blocks", h.blocks()),
        Err(e) => e.to_string(),
    }
}

fn redirects(text: &str) -> Redirects {
    Redirects::parse("_redirects", text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn headers(text: &str, global: &[&str]) -> HeaderRules {
    let global: Vec<String> = global.iter().map(|g| g.to_string()).collect();
    HeaderRules::parse("_headers", text.as_bytes())
        .and_then(|h| h.with_global(&global))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The status code of a rule, which names its kind too (200 is only ever a rewrite, 404,
/// 410 and 451 only pages).
fn code(status: RuleStatus) -> u16 {
    match status {
        RuleStatus::Redirect(c) | RuleStatus::Page(c) => c,
        RuleStatus::Rewrite => 200,
    }
}

/// `find` for a raw request path, as the handler calls it.
fn find(
    r: &Redirects,
    host: Option<&str>,
    raw: &str,
    query: Option<&str>,
    forced_only: bool,
) -> Option<(u16, String)> {
    let path = match_path(raw).unwrap_or_else(|| panic!("{raw}: match_path refused it"));
    r.find(host, &path, query, forced_only)
        .map(|a| (code(a.status), a.target))
}

/// What `find` must answer, worked out by trying every rule in file order with no index.
fn find_by_trying_all(
    r: &Redirects,
    host: Option<&str>,
    path: &[u8],
    query: Option<&str>,
    forced_only: bool,
) -> Option<Action> {
    let trimmed = match path {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => path,
    };
    let slashed = [trimmed, b"/"].concat();
    r.rules
        .iter()
        .filter(|rule| !forced_only || rule.force)
        .find_map(|rule| {
            let caps = rule.from.matches(host, path);
            let caps = caps
                .or_else(|| rule.from.matches(host, trimmed))
                .or_else(|| {
                    (trimmed.len() > 1)
                        .then(|| rule.from.matches(host, &slashed))
                        .flatten()
                })?;
            Some(rule.action(&caps, query))
        })
}

/// The fields a set of header rules gives a path, worked out by trying every block in file
/// order with no index.
fn fields_by_trying_all<'a>(h: &'a HeaderRules, host: Option<&str>, path: &[u8]) -> Fields<'a> {
    let mut f = h.global();
    for block in &h.blocks {
        if let Some(caps) = block.pattern.matches(host, path) {
            f.apply(&block.entries, &caps);
        }
    }
    f
}

/// `Name: value` pairs in order, joined by ` | `.
fn render(f: &Fields<'_>) -> String {
    f.pairs()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

const BAD_STATUS: &str =
    "is not one of 200, 301, 302, 303, 307, 308, 404, 410, 451 (with an optional !)";
const PLACEHOLDER: &str =
    "a :placeholder is a whole path segment, a letter or _ then letters, digits and _";

// ---------------------------------------------------------------------------------------------
// `_redirects`: parsing

#[test]
fn redirects_errors_name_the_file_and_line() {
    let long = |chars: usize| format!("/{} /b", "a".repeat(chars - 4));
    let rows: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty file", b"".to_vec(), "0 rules".into()),
        (
            "comments and blank lines only",
            b"# a\n\n   \n\t# b\n".to_vec(),
            "0 rules".into(),
        ),
        ("two fields", b"/a /b".to_vec(), "1 rules".into()),
        ("three fields", b"/a /b 302".to_vec(), "1 rules".into()),
        (
            "tabs and runs of spaces separate fields",
            b"  /a\t\t/b   302  ".to_vec(),
            "1 rules".into(),
        ),
        (
            "one field",
            b"/a".to_vec(),
            "_redirects:1: a rule needs a source and a target".into(),
        ),
        (
            "one field after a comment and a blank line",
            b"# rules\n\n/a /b\n/c\n".to_vec(),
            "_redirects:4: a rule needs a source and a target".into(),
        ),
        (
            "one field after CRLF lines",
            b"# rules\r\n\r\n/a /b\r\n/c\r\n".to_vec(),
            "_redirects:4: a rule needs a source and a target".into(),
        ),
        (
            "four fields: a condition",
            b"/a /b\n/a /b 302 Country=us".to_vec(),
            "_redirects:2: more than three fields: query-string matches and conditions \
             (Country=, Language=, Role=) are not supported"
                .into(),
        ),
        (
            "four fields: a query match",
            b"\n\n/store id=:id /blog/:id 301".to_vec(),
            "_redirects:3: more than three fields: query-string matches and conditions \
             (Country=, Language=, Role=) are not supported"
                .into(),
        ),
        (
            "status 300",
            b"/a /b 300".to_vec(),
            format!("_redirects:1: status \"300\" {BAD_STATUS}"),
        ),
        (
            "status abc",
            b"/a /b abc".to_vec(),
            format!("_redirects:1: status \"abc\" {BAD_STATUS}"),
        ),
        (
            "status 200!!: one ! is stripped, the rest is the status",
            b"/a /b 200!!".to_vec(),
            format!("_redirects:1: status \"200!\" {BAD_STATUS}"),
        ),
        (
            "status ! alone",
            b"/a /b !".to_vec(),
            format!("_redirects:1: status \"\" {BAD_STATUS}"),
        ),
        (
            "source without a leading /",
            b"a /b".to_vec(),
            "_redirects:1: \"a\" must start with / or https://".into(),
        ),
        (
            "source with http:// (only https:// names a host)",
            b"http://example.com/a /b".to_vec(),
            "_redirects:1: \"http://example.com/a\" must start with / or https://".into(),
        ),
        (
            "source host with a port",
            b"https://example.com:8080/a /b".to_vec(),
            "_redirects:1: \"https://example.com:8080/a\" has no valid host (a port is not allowed)"
                .into(),
        ),
        (
            "source with an empty host",
            b"https:///a /b".to_vec(),
            "_redirects:1: \"https:///a\" has no valid host (a port is not allowed)".into(),
        ),
        (
            "source with a query",
            b"/a?x=1 /b".to_vec(),
            "_redirects:1: \"/a?x=1\": query strings and fragments are not matched, only paths"
                .into(),
        ),
        (
            "source with a bad escape",
            b"/a%zz /b".to_vec(),
            "_redirects:1: \"/a%zz\" has an invalid percent-escape".into(),
        ),
        (
            "target without a leading /",
            b"/a b".to_vec(),
            "_redirects:1: target \"b\" must start with /, http:// or https://".into(),
        ),
        (
            "target with another scheme",
            b"/a ftp://x/b".to_vec(),
            "_redirects:1: target \"ftp://x/b\" must start with /, http:// or https://".into(),
        ),
        (
            "200 to an absolute URL",
            b"/a https://other.example/b 200".to_vec(),
            "_redirects:1: target \"https://other.example/b\": a 200 rule serves a file under \
             the root; proxying to another host is not supported"
                .into(),
        ),
        (
            "forced 200 to an absolute URL",
            b"/a http://other.example/b 200!".to_vec(),
            "_redirects:1: target \"http://other.example/b\": a 200 rule serves a file under \
             the root; proxying to another host is not supported"
                .into(),
        ),
        (
            "404 to an absolute URL",
            b"/a https://other.example/404.html 404".to_vec(),
            "_redirects:1: target \"https://other.example/404.html\": a 404 rule serves a \
             file under the root; proxying to another host is not supported"
                .into(),
        ),
        (
            "301 to an absolute URL is fine",
            b"/a https://other.example/b 301".to_vec(),
            "1 rules".into(),
        ),
        (
            "target placeholder the source lacks",
            b"/a/:x /b/:y".to_vec(),
            "_redirects:1: target uses :y, which the source \"/a/:x\" does not capture".into(),
        ),
        (
            "target :splat with no * in the source",
            b"/a/:x /b/:splat".to_vec(),
            "_redirects:1: target uses :splat, which the source \"/a/:x\" does not capture".into(),
        ),
        (
            "a port in an absolute target is not a placeholder",
            b"/a https://example.com:8443/b".to_vec(),
            "1 rules".into(),
        ),
        (
            "placeholder not a whole segment",
            b"/a/:b.html /c".to_vec(),
            format!("_redirects:1: \"/a/:b.html\": {PLACEHOLDER}"),
        ),
        (
            "placeholder with no name",
            b"/a/:/b /c".to_vec(),
            format!("_redirects:1: \"/a/:/b\": {PLACEHOLDER}"),
        ),
        (
            "placeholder followed by a splat",
            b"/a/:b* /c".to_vec(),
            format!("_redirects:1: \"/a/:b*\": {PLACEHOLDER}"),
        ),
        (
            "two splats",
            b"/a/*/b/* /c".to_vec(),
            "_redirects:1: \"/a/*/b/*\" has more than one *".into(),
        ),
        (
            ":splat as a placeholder name",
            b"/a/:splat /c/:splat".to_vec(),
            "_redirects:1: \"/a/:splat\": :splat is the name of the * match".into(),
        ),
        (
            "target not visible ASCII",
            "/a /caf\u{e9}".as_bytes().to_vec(),
            "_redirects:1: target \"/caf\u{e9}\" must be visible ASCII (percent-encode the rest)"
                .into(),
        ),
        (
            "non-UTF-8 line",
            b"/a /b\n/c\xff /d\n".to_vec(),
            "_redirects:2: the line is not UTF-8".into(),
        ),
        (
            "non-UTF-8 in a comment",
            b"# \xc3\n/a /b\n".to_vec(),
            "_redirects:1: the line is not UTF-8".into(),
        ),
        ("a 1000-character line", long(1000).into_bytes(), "1 rules".into()),
        (
            "a 1000-character line ended by CRLF",
            format!("{}\r\n", long(1000)).into_bytes(),
            "1 rules".into(),
        ),
        (
            "a 1001-character line",
            format!("/a /b\n{}", long(1001)).into_bytes(),
            "_redirects:2: 1001 characters, more than the 1000 allowed".into(),
        ),
        (
            "1000 characters of two bytes each",
            format!("#{}", "\u{e9}".repeat(999)).into_bytes(),
            "0 rules".into(),
        ),
        (
            "1001 characters of two bytes each",
            format!("#{}", "\u{e9}".repeat(1000)).into_bytes(),
            "_redirects:1: 1001 characters, more than the 1000 allowed".into(),
        ),
        (
            "NUL in a line",
            b"/a /b\n/c\0 /d".to_vec(),
            "_redirects:2: control character '\\0' in the line".into(),
        ),
        (
            "stray CR mid-line",
            b"/a /b\r/c /d\n".to_vec(),
            "_redirects:1: control character '\\r' in the line".into(),
        ),
        (
            "two CRs before the LF",
            b"/a /b\r\r\n".to_vec(),
            "_redirects:1: control character '\\r' in the line".into(),
        ),
        (
            "escape character in a comment",
            b"\n# \x1b[31m\n".to_vec(),
            "_redirects:2: control character '\\u{1b}' in the line".into(),
        ),
        (
            "DEL in a line",
            b"/a /b\x7f".to_vec(),
            "_redirects:1: control character '\\u{7f}' in the line".into(),
        ),
        (
            "tab inside a line is fine",
            b"/a\t/b\t302".to_vec(),
            "1 rules".into(),
        ),
        (
            "64 KiB exactly",
            "#\n".repeat(REDIRECTS_MAX_BYTES / 2).into_bytes(),
            "0 rules".into(),
        ),
        (
            "one byte over 64 KiB: the file, no line",
            format!("{}\n", "#\n".repeat(REDIRECTS_MAX_BYTES / 2)).into_bytes(),
            "_redirects: 65537 bytes, more than the 65536 allowed".into(),
        ),
    ];
    for (name, text, want) in &rows {
        assert_eq!(&redirects_outcome(text), want, "{name}");
    }
}

#[test]
fn redirects_limits_count_static_and_dynamic_rules_apart() {
    // A comment and a blank line first, so the rule's number is not its line's.
    let file = |statics: usize, dynamics: usize| {
        let mut t = String::from("# limits\n\n");
        for i in 0..dynamics {
            t.push_str(&format!("/d{i}/* /x/:splat\n"));
        }
        for i in 0..statics {
            t.push_str(&format!("/s{i} /x\n"));
        }
        t
    };
    for (statics, dynamics, want) in [
        (2000, 0, "2000 rules".to_string()),
        (
            2001,
            0,
            "_redirects:2003: more than 2000 static rules".to_string(),
        ),
        (0, 100, "100 rules".to_string()),
        (
            0,
            101,
            "_redirects:103: more than 100 dynamic rules (with :placeholders or *)".to_string(),
        ),
        // Each limit on its own: the most of both kinds at once is fine.
        (2000, 100, "2100 rules".to_string()),
        (
            2001,
            100,
            "_redirects:2103: more than 2000 static rules".to_string(),
        ),
    ] {
        let text = file(statics, dynamics);
        assert!(text.len() <= REDIRECTS_MAX_BYTES, "{statics}/{dynamics}");
        assert_eq!(
            redirects_outcome(text.as_bytes()),
            want,
            "{statics} static, {dynamics} dynamic"
        );
    }
}

#[test]
fn redirect_statuses_and_force() {
    for (status, want, forced) in [
        ("", RuleStatus::Redirect(301), false),
        ("301", RuleStatus::Redirect(301), false),
        ("302", RuleStatus::Redirect(302), false),
        ("303", RuleStatus::Redirect(303), false),
        ("307", RuleStatus::Redirect(307), false),
        ("308", RuleStatus::Redirect(308), false),
        ("200", RuleStatus::Rewrite, false),
        ("404", RuleStatus::Page(404), false),
        ("410", RuleStatus::Page(410), false),
        ("451", RuleStatus::Page(451), false),
        ("302!", RuleStatus::Redirect(302), true),
        ("200!", RuleStatus::Rewrite, true),
        ("404!", RuleStatus::Page(404), true),
    ] {
        let r = redirects(&format!("/a /b {status}"));
        assert_eq!(r.any_forced(), forced, "{status:?}");
        let got = r.find(None, b"/a", None, false).map(|a| a.status);
        assert_eq!(got, Some(want), "{status:?}");
        let got = r.find(None, b"/a", None, true).map(|a| a.status);
        assert_eq!(got, forced.then_some(want), "{status:?}, forced only");
    }
}

// ---------------------------------------------------------------------------------------------
// `_redirects`: matching

/// One file for the matching table: the comment on each rule says what it is there to show.
const RULES: &str = "\
# First match wins in file order, whatever the index puts a rule under.
/dyn-first/* /dyn/:splat 302
/dyn-first/x /static-loses 302
/static /static-target
/static /second-static-loses 302
/old/:year/:slug /new/:slug/:year 301
/a/*/b /ab/:splat 302
/*.php /php/:splat 308
/blog/special /special 302
/blog/* /posts/:splat
/blog/never /never 302
/trail/ /trail-target 302
/notrail /notrail-target 302
/q /with-query?x=1 302
/rw/* /files/:splat 200
/gone/* /gone.html 410
/missing/* /404.html 404
/go* /:splat 302
/bs /\\evil.example 302
/away https://other.example/x 301
/sr //other.example/x 302
https://Example.com/host /host-target 302
/both /not-forced 302
/both /forced 302!
/forced /forced-target 200!
/force-r/* /fr/:splat 302!
/cap/:v /v/:v 302
/splat/* /s/:splat 302
/place/:a/x/:b /p/:b/:a 302
/end/*/:last /e/:last/:splat 302
";

/// Checks one request against [`RULES`]: the answer (`"code target"`), the answer of trying
/// every rule with no index, and that the target is visible ASCII and (but for the one rule
/// whose static target is scheme-relative on purpose) cannot name another host.
fn check_find(
    r: &Redirects,
    host: Option<&str>,
    raw: &str,
    query: Option<&str>,
    forced_only: bool,
    want: Option<&str>,
) {
    let row = format!("{host:?} {raw} ?{query:?} forced only {forced_only}");
    let got = find(r, host, raw, query, forced_only).map(|(c, t)| format!("{c} {t}"));
    assert_eq!(got.as_deref(), want, "{row}");
    let path = match_path(raw).unwrap();
    assert_eq!(
        r.find(host, &path, query, forced_only),
        find_by_trying_all(r, host, &path, query, forced_only),
        "{row}: the index changed the result"
    );
    if let Some(target) = got.as_deref().and_then(|g| g.split_once(' ')).map(|g| g.1) {
        assert!(
            target.bytes().all(|b| b.is_ascii_graphic()),
            "{row}: {target:?}"
        );
        if raw != "/sr" {
            assert!(
                !target.starts_with("//") && !target.starts_with("/\\"),
                "{row}: {target:?} would name another host"
            );
        }
    }
}

#[test]
fn redirects_find_table() {
    let r = redirects(RULES);
    assert_eq!(r.len(), 29);
    assert!(r.any_forced());
    // (request path, query, answer)
    let rows: &[(&str, Option<&str>, Option<&str>)] = &[
        // A dynamic rule earlier than a static one for the same path wins, and the other way.
        ("/dyn-first/x", None, Some("302 /dyn/x")),
        ("/dyn-first/x/", None, Some("302 /dyn/x/")), // the splat keeps the slash
        ("/blog/special", None, Some("302 /special")),
        ("/blog/never", None, Some("301 /posts/never")),
        // Of two static rules for one path, the first.
        ("/static", None, Some("301 /static-target")),
        // Trailing slash optional both ways.
        ("/static/", None, Some("301 /static-target")),
        ("/trail", None, Some("302 /trail-target")),
        ("/trail/", None, Some("302 /trail-target")),
        ("/notrail/", None, Some("302 /notrail-target")),
        ("/notrail//", None, Some("302 /notrail-target")),
        // Placeholders, in any order in the target.
        ("/old/2020/hello", None, Some("301 /new/hello/2020")),
        ("/old/2020/hello/", None, Some("301 /new/hello/2020")),
        ("/old/2020", None, None),
        ("/old/2020/hello/more", None, None),
        ("/place/1/x/2", None, Some("302 /p/2/1")),
        ("/place/1/y/2", None, None),
        // A splat at the end, in the middle, with a suffix, before a placeholder.
        ("/splat/a/b/c", None, Some("302 /s/a/b/c")),
        ("/splat/", None, Some("302 /s/")),
        ("/a/x/b", None, Some("302 /ab/x")),
        ("/a/x/y/b", None, Some("302 /ab/x/y")),
        ("/a/b", None, None),
        ("/a/x/bb", None, None),
        ("/index.php", None, Some("308 /php/index")),
        ("/x/y.php", None, Some("308 /php/x/y")),
        ("/x/y.phps", None, None),
        ("/blog/x.php", None, Some("308 /php/blog/x")),
        ("/end/a/b/c", None, Some("302 /e/c/a/b")),
        ("/end/c", None, None),
        // `/blog/*` matches `/blog` too.
        ("/blog/post", None, Some("301 /posts/post")),
        ("/blog", None, Some("301 /posts/")),
        ("/blog/", None, Some("301 /posts/")),
        ("/blogs", None, None),
        ("/gone", None, Some("410 /gone.html")),
        // The query: carried over for redirects unless the target has one, never for
        // rewrites and pages.
        ("/static", Some("a=1&b"), Some("301 /static-target?a=1&b")),
        ("/blog/a/b", Some("p=2"), Some("301 /posts/a/b?p=2")),
        ("/q", None, Some("302 /with-query?x=1")),
        ("/q", Some("a=1"), Some("302 /with-query?x=1")),
        ("/rw/a/b", Some("a=1"), Some("200 /files/a/b")),
        ("/gone/x", Some("a=1"), Some("410 /gone.html")),
        ("/missing/x", Some("z"), Some("404 /404.html")),
        ("/away", None, Some("301 https://other.example/x")),
        (
            "/away",
            Some("a=1"),
            Some("301 https://other.example/x?a=1"),
        ),
        // A splat that starts with `/` cannot turn `/:splat` into another host.
        ("/go/evil.example", None, Some("302 /.//evil.example")),
        ("/go//evil.example", None, Some("302 /.//evil.example")),
        ("/go/%2Fevil.example", None, Some("302 /.//evil.example")),
        ("/go%5Cevil.example", None, Some("302 /%5Cevil.example")),
        ("/go/%5Cevil.example", None, Some("302 /.//%5Cevil.example")),
        (
            "/go/evil.example",
            Some("a"),
            Some("302 /.//evil.example?a"),
        ),
        ("/golf", None, Some("302 /lf")),
        ("/go", None, Some("302 /")),
        // A static `/\` target is kept a path too; a static `//` or absolute target is the
        // rule's own business and left as it is.
        ("/bs", None, Some("302 /./\\evil.example")),
        ("/sr", None, Some("302 //other.example/x")),
        // Captured values are percent-encoded.
        (
            "/cap/-._~!$&'()*+,;=:@",
            None,
            Some("302 /v/-._~!$&'()*+,;=:@"),
        ),
        ("/cap/a%20b", None, Some("302 /v/a%20b")),
        ("/cap/%25", None, Some("302 /v/%25")),
        ("/cap/%3F", None, Some("302 /v/%3F")),
        ("/cap/%23", None, Some("302 /v/%23")),
        ("/cap/%5C", None, Some("302 /v/%5C")),
        (
            "/cap/%22%3C%3E%60%7B%7D",
            None,
            Some("302 /v/%22%3C%3E%60%7B%7D"),
        ),
        ("/cap/caf%C3%A9", None, Some("302 /v/caf%C3%A9")),
        ("/cap/caf\u{e9}", None, Some("302 /v/caf%C3%A9")),
        ("/cap/%FF%80", None, Some("302 /v/%FF%80")),
        (
            "/cap/a%0D%0ASet-Cookie:%20x",
            None,
            Some("302 /v/a%0D%0ASet-Cookie:%20x"),
        ),
        ("/cap/%09%7F", None, Some("302 /v/%09%7F")),
        ("/splat/a%20b/c%0A", None, Some("302 /s/a%20b/c%0A")),
        ("/cap/a%2Fb", None, None), // `%2F` is a `/` here: two segments
        ("/host", None, None),
        ("/nothing", None, None),
        ("/", None, None),
    ];
    for (raw, query, want) in rows {
        check_find(&r, None, raw, *query, false, *want);
    }
}

#[test]
fn redirects_find_host_patterns() {
    let r = redirects(RULES);
    // (host as the caller passes it: lower case, no port; request path; answer)
    let rows: &[(Option<&str>, &str, Option<&str>)] = &[
        (Some("example.com"), "/host", Some("302 /host-target")),
        (Some("example.com"), "/host/", Some("302 /host-target")),
        (None, "/host", None),
        (Some("other.example"), "/host", None),
        (Some("www.example.com"), "/host", None),
        (Some("example.com.evil"), "/host", None),
        (Some("example.com"), "/host/x", None),
        // A pattern with no host is for every host.
        (Some("example.com"), "/static", Some("301 /static-target")),
        (Some("other.example"), "/blog/x", Some("301 /posts/x")),
    ];
    for (host, raw, want) in rows {
        check_find(&r, *host, raw, None, false, *want);
    }
}

#[test]
fn redirects_find_forced_only() {
    let r = redirects(RULES);
    // (request path, query, answer with `forced_only`)
    let rows: &[(&str, Option<&str>, Option<&str>)] = &[
        // The first forced match, skipping an earlier rule that is not forced.
        ("/both", None, Some("302 /forced")),
        ("/forced", None, Some("200 /forced-target")),
        ("/forced/", Some("q"), Some("200 /forced-target")),
        ("/force-r/x", Some("q"), Some("302 /fr/x?q")),
        ("/force-r", None, Some("302 /fr/")),
        ("/static", None, None),
        ("/blog/x", None, None),
        ("/nothing", None, None),
    ];
    for (raw, query, want) in rows {
        check_find(&r, None, raw, *query, true, *want);
    }
    // Without `forced_only`, the earlier rule.
    check_find(&r, None, "/both", None, false, Some("302 /not-forced"));
}

#[test]
fn the_first_rule_in_file_order_wins_whatever_its_kind() {
    // (rules, request path, expected target): static rules are found by path, `/a/*` by its
    // first segment, `/*` and `/*.html` by trying; the order is the file's all the same.
    let rows: &[(&str, &str, &str)] = &[
        ("/* /all 302\n/ /root 302", "/", "/all"),
        ("/ /root 302\n/* /all 302", "/", "/root"),
        ("/a/* /dyn 302\n/a/b /static 302", "/a/b", "/dyn"),
        ("/a/b /static 302\n/a/* /dyn 302", "/a/b", "/static"),
        (
            "/*.html /always 302\n/a/b.html /static 302\n/a/* /seg 302",
            "/a/b.html",
            "/always",
        ),
        (
            "/a/* /seg 302\n/*.html /always 302\n/a/b.html /static 302",
            "/a/b.html",
            "/seg",
        ),
        (
            "/a/b.html /static 302\n/a/* /seg 302\n/*.html /always 302",
            "/a/b.html",
            "/static",
        ),
        // The other spelling of the trailing slash counts as a match in its place.
        ("/a/ /slash 302\n/a /no-slash 302", "/a", "/slash"),
        ("/a /no-slash 302\n/a/ /slash 302", "/a/", "/no-slash"),
        ("/a/* /seg 302\n/a /static 302", "/a", "/seg"),
        ("/a /static 302\n/a/* /seg 302", "/a/", "/static"),
        // CRLF lines: the CR is no part of the target.
        ("/a /b 302\r\n/c /d\r\n", "/c", "/d"),
    ];
    for (rules, raw, want) in rows {
        let r = redirects(rules);
        let got = find(&r, None, raw, None, false).map(|(_, t)| t);
        assert_eq!(got.as_deref(), Some(*want), "{rules:?} for {raw}");
        let path = match_path(raw).unwrap();
        assert_eq!(
            r.find(None, &path, None, false),
            find_by_trying_all(&r, None, &path, None, false),
            "{rules:?} for {raw}: the index changed the result"
        );
    }
}

#[test]
fn redirects_without_forced_rules_answer_nothing_when_forced_only() {
    let r = redirects("/a /b 302\n/c/* /d 200\n");
    assert!(!r.any_forced());
    assert!(!r.is_empty());
    for (raw, want) in [("/a", Some((302, "/b"))), ("/c/x", Some((200, "/d")))] {
        let want = want.map(|(c, t)| (c, t.to_string()));
        assert_eq!(find(&r, None, raw, None, false), want, "{raw}");
        assert_eq!(find(&r, None, raw, None, true), None, "{raw}, forced only");
    }
    let empty = redirects("# nothing\n");
    assert!(empty.is_empty());
    assert_eq!(empty.len(), 0);
    assert!(!empty.any_forced());
    assert_eq!(find(&empty, None, "/a", None, false), None);
}

#[test]
fn redirect_targets_with_their_own_query_or_fragment() {
    // (rules, request path, request query, expected target)
    let rows: &[(&str, &str, Option<&str>, &str)] = &[
        ("/f /b#top 302", "/f", None, "/b#top"),
        // The request's query goes before the target's fragment, not into it.
        ("/f /b#top 302", "/f", Some("x=1"), "/b?x=1#top"),
        ("/f /b?y=2#top 302", "/f", Some("x=1"), "/b?y=2#top"),
        // A `?` in the fragment is not a query.
        ("/f /b#a?b 302", "/f", Some("x=1"), "/b?x=1#a?b"),
        ("/f/:x /b#:x 302", "/f/a%23b", Some("q"), "/b?q#a%23b"),
        (
            "/f https://o.example/#x 301",
            "/f",
            Some("q"),
            "https://o.example/?q#x",
        ),
        // A rewrite or a page serves a file: the target's query and fragment are not part of
        // its path.
        ("/f /b?x=1 200", "/f", None, "/b"),
        ("/f /b#top 200", "/f", Some("q"), "/b"),
        ("/f/* /b/:splat?x=:splat 200", "/f/c", None, "/b/c"),
        ("/f /404.html?x=1 404", "/f", None, "/404.html"),
    ];
    for (rules, raw, query, want) in rows {
        let r = redirects(rules);
        let got = find(&r, None, raw, *query, false).map(|(_, t)| t);
        assert_eq!(got.as_deref(), Some(*want), "{rules} for {raw} ?{query:?}");
    }
}

#[test]
fn a_host_pattern_needs_the_host() {
    let rules = |redirects_text: &str, headers_text: &str| SiteRules {
        redirects: redirects(redirects_text),
        headers: headers(headers_text, &[]),
    };
    for (r, h, want) in [
        ("", "", false),
        ("/a /b", "/a\n  X-A: 1", false),
        ("https://example.com/a /b", "", true),
        ("", "https://example.com/*\n  X-A: 1", true),
        ("https://example.com /b", "/a\n  X-A: 1", true),
    ] {
        assert_eq!(rules(r, h).uses_hosts(), want, "{r:?} / {h:?}");
    }
}

#[test]
fn pattern_matches_table() {
    // (pattern, host, path, captures sorted by name, or None)
    let rows: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        ("/a", None, "/a", Some("")),
        ("/a", None, "/a/", None), // `find` tries both spellings, not `matches`
        ("/a", None, "/ab", None),
        ("/:x", None, "/abc", Some("x=abc")),
        ("/:x", None, "/", None),
        ("/:x", None, "/a/b", None),
        ("/a/:x/:y", None, "/a/1/2", Some("x=1 y=2")),
        ("/:x_1/:Y2", None, "/a/b", Some("Y2=b x_1=a")),
        ("/*", None, "/", Some("splat=")),
        ("/*", None, "/a/b", Some("splat=a/b")),
        ("/a/*/b", None, "/a/x/y/b", Some("splat=x/y")),
        ("/a/*/b", None, "/a/b", None),
        ("/*.php", None, "/x/y.php", Some("splat=x/y")),
        ("/*.php", None, "/x.phps", None),
        ("/*/:name", None, "/a/b/c", Some("name=c splat=a/b")),
        ("/*/:name", None, "/c", None),
        ("/:lang/*", None, "/en/x/y", Some("lang=en splat=x/y")),
        ("/a*a", None, "/a", None), // what is before and after the splat cannot overlap
        ("/a*a", None, "/aa", Some("splat=")),
        ("/a*a", None, "/aba", Some("splat=b")),
        ("/a:b", None, "/a:b", Some("")), // a colon inside a segment is literal
        ("/a%20b", None, "/a b", Some("")), // the pattern is decoded like the path
        ("/caf%C3%A9", None, "/caf\u{e9}", Some("")),
        ("https://example.com/x", Some("example.com"), "/x", Some("")),
        ("https://example.com/x", None, "/x", None),
        ("https://example.com/x", Some("example.org"), "/x", None),
        ("https://EXAMPLE.com", Some("example.com"), "/", Some("")),
        (
            "https://example.com/*",
            Some("example.com"),
            "/a",
            Some("splat=a"),
        ),
        ("/x", Some("example.com"), "/x", Some("")), // no host in the pattern: any host
    ];
    for (pattern, host, path, want) in rows {
        let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        let got = p.matches(*host, path.as_bytes()).map(|caps| {
            let mut caps: Vec<String> = caps
                .iter()
                .map(|(n, v)| format!("{n}={}", String::from_utf8_lossy(v)))
                .collect();
            caps.sort();
            caps.join(" ")
        });
        assert_eq!(got.as_deref(), *want, "{pattern} on {host:?} {path}");
    }
}

#[test]
fn patterns_are_indexed_by_path_first_segment_or_not_at_all() {
    // (pattern, where the index puts it, dynamic)
    for (pattern, want, dynamic) in [
        ("/static", "path /static", false),
        ("/", "path /", false),
        ("/a/b/", "path /a/b/", false),
        ("/a%2Fb", "path /a/b", false),
        ("/assets/*", "segment assets", true),
        ("/a/b/*", "segment a", true),
        ("/a/b*", "segment a", true),
        ("/assets/:x/y", "segment assets", true),
        ("/*", "always", true),
        ("/*.js", "always", true),
        ("/:lang/x", "always", true),
        ("/assets*", "always", true),
        // A host is checked when the candidate is tried: the path indexes it as usual.
        ("https://example.com/x", "path /x", false),
        ("https://example.com/assets/*", "segment assets", true),
    ] {
        let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{e}"));
        let got = match (p.as_static(), p.first_segment()) {
            (Some(path), _) => format!("path {}", String::from_utf8_lossy(path)),
            (None, Some(seg)) => format!("segment {}", String::from_utf8_lossy(seg)),
            (None, None) => "always".to_string(),
        };
        assert_eq!(got, want, "{pattern}");
        assert_eq!(p.is_dynamic(), dynamic, "{pattern}: dynamic");
    }
}

// ---------------------------------------------------------------------------------------------
// `match_path`, `location_guard`, `encode_into`

#[test]
fn match_path_table() {
    // (raw, normalized, borrowed)
    let rows: &[(&str, Option<&str>, bool)] = &[
        ("/", Some("/"), true),
        ("/a/b", Some("/a/b"), true),
        ("/a/b/", Some("/a/b/"), true),
        ("/..a/b.", Some("/..a/b."), true),
        ("/caf\u{e9}", Some("/caf\u{e9}"), true),
        ("/a%2Fb", Some("/a/b"), false),
        ("/a%2fb%2F", Some("/a/b/"), false),
        ("/a%20b", Some("/a b"), false),
        ("/caf%C3%A9", Some("/caf\u{e9}"), false),
        ("/./a/b", Some("/a/b"), false),
        ("//a//b", Some("/a/b"), false),
        ("//a//b//", Some("/a/b/"), false),
        ("/a/../b", Some("/b"), false),
        ("/a/b/..", Some("/a/"), false),
        ("/a/..", Some("/"), false),
        ("/a/.", Some("/a/"), false),
        ("/a/./", Some("/a/"), false),
        ("/.", Some("/"), false),
        ("/%2E%2E%2Fx", None, false),
        ("/a/%2e%2e/b", Some("/b"), false),
        ("/%2Fa", Some("/a"), false),
        ("/..", None, false),
        ("/../a", None, false),
        ("/a/../..", None, false),
        ("/a%zz", None, false),
        ("/a%2", None, false),
        ("/a%", None, false),
        ("/a%00b", None, false),
    ];
    for (raw, want, borrowed) in rows {
        let got = match_path(raw);
        assert_eq!(
            got.as_deref(),
            want.map(str::as_bytes),
            "{raw}: {:?}",
            got.as_deref().map(String::from_utf8_lossy)
        );
        if want.is_some() {
            assert_eq!(
                matches!(got, Some(Cow::Borrowed(_))),
                *borrowed,
                "{raw}: borrowed"
            );
        }
    }
}

#[test]
fn location_guard_table() {
    for (target, want) in [
        ("//evil.example", "/.//evil.example"),
        ("/\\evil.example", "/./\\evil.example"),
        ("//", "/.//"),
        ("/", "/"),
        ("/a//b", "/a//b"),
        ("/./x", "/./x"),
        ("https://other.example/x", "https://other.example/x"),
        ("", ""),
    ] {
        let mut t = target.to_string();
        location_guard(&mut t);
        assert_eq!(t, want, "{target:?}");
    }
}

#[test]
fn encode_into_table() {
    let rows: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"abcXYZ019", "abcXYZ019"),
        (b"-._~", "-._~"),
        (b"!$&'()*+,;=", "!$&'()*+,;="),
        (b":@/", ":@/"),
        (b"a b", "a%20b"),
        (b"%", "%25"),
        (b"%41", "%2541"),
        (b"?", "%3F"),
        (b"#", "%23"),
        (b"\\", "%5C"),
        (b"\"<>[]^`{|}", "%22%3C%3E%5B%5D%5E%60%7B%7C%7D"),
        (b"\r\n", "%0D%0A"),
        (b"\0\t\x1b\x7f", "%00%09%1B%7F"),
        ("caf\u{e9}".as_bytes(), "caf%C3%A9"),
        (b"\x80\xff", "%80%FF"),
    ];
    for (bytes, want) in rows {
        // Appends: what is in the string already stays.
        let mut out = String::from("/x/");
        encode_into(bytes, &mut out);
        assert_eq!(out, format!("/x/{want}"), "{bytes:?}");
    }
    // Every byte comes out visible ASCII, and only the kept ones come out as themselves.
    for b in 0..=255u8 {
        let mut out = String::new();
        encode_into(&[b], &mut out);
        assert!(out.bytes().all(|c| c.is_ascii_graphic()), "{b:#x}: {out:?}");
        let kept = out.len() == 1;
        let unreserved_or_sub_delim =
            b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        assert_eq!(kept, unreserved_or_sub_delim, "{b:#x}: {out:?}");
        if !kept {
            assert_eq!(out, format!("%{b:02X}"), "{b:#x}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `_headers`: parsing

#[test]
fn headers_errors_name_the_file_and_line() {
    let long = |chars: usize| format!("/x\n  X-A: {}\n", "v".repeat(chars - 7));
    let blocks = |n: usize| -> String { (0..n).map(|i| format!("/b{i}\n  X-A: {i}\n")).collect() };
    let rows: Vec<(&str, Vec<u8>, String)> = vec![
        ("empty file", b"".to_vec(), "0 blocks".into()),
        ("a block", b"/a\n  X-A: 1\n".to_vec(), "1 blocks".into()),
        ("a block with no lines", b"/a\n".to_vec(), "1 blocks".into()),
        (
            "comments, blank lines, tabs and CRLF",
            b"# c\r\n/a\r\n\r\n\t  # indented comment\r\n\tX-A: 1\r\n  ! X-B\r\n".to_vec(),
            "1 blocks".into(),
        ),
        (
            "header line before any pattern",
            b"# c\n\n  X-A: 1\n/a\n".to_vec(),
            "_headers:3: a header line before any path pattern".into(),
        ),
        (
            "pattern line with a space",
            b"/a\n  X-A: 1\n/b X-B: 2\n".to_vec(),
            "_headers:3: a path pattern stands alone on its line; indent header lines".into(),
        ),
        (
            "header line not indented",
            b"/a\nX-A: 1\n".to_vec(),
            "_headers:2: a path pattern stands alone on its line; indent header lines".into(),
        ),
        (
            "pattern without a leading /",
            b"a\n  X-A: 1\n".to_vec(),
            "_headers:1: \"a\" must start with / or https://".into(),
        ),
        (
            "pattern with a port",
            b"/a\nhttps://example.com:8080/*\n".to_vec(),
            "_headers:2: \"https://example.com:8080/*\" has no valid host (a port is not allowed)"
                .into(),
        ),
        (
            "pattern with two splats",
            b"/*/*\n".to_vec(),
            "_headers:1: \"/*/*\" has more than one *".into(),
        ),
        (
            "pattern placeholder not a segment",
            b"/:a.js\n".to_vec(),
            format!("_headers:1: \"/:a.js\": {PLACEHOLDER}"),
        ),
        (
            "name with a space",
            b"/a\n  Bad Name: x\n".to_vec(),
            "_headers:2: \"Bad Name\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "name with parentheses",
            b"/a\n  X(y): z\n".to_vec(),
            "_headers:2: \"X(y)\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "empty name",
            b"/a\n  : z\n".to_vec(),
            "_headers:2: \"\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "non-ASCII name",
            "/a\n  X-\u{e9}: z\n".as_bytes().to_vec(),
            "_headers:2: \"X-\u{e9}\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "empty detach",
            b"/a\n  !\n".to_vec(),
            "_headers:2: \"\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "detach with a value",
            b"/a\n  ! X-A: b\n".to_vec(),
            "_headers:2: \"X-A: b\" is not a header name (RFC 9110 \u{a7}5.6.2 token)".into(),
        ),
        (
            "no colon",
            b"/a\n  X-A b\n".to_vec(),
            "_headers:2: \"X-A b\" is not Name: value (or ! Name)".into(),
        ),
        (
            "every token character is fine in a name, an empty value too",
            b"/a\n  A!#$%&'*+-.^_`|~09zZ: v\n  X-Empty:\n  X-Sp :  v  \n".to_vec(),
            "1 blocks".into(),
        ),
        (
            "non-UTF-8",
            b"/a\n  X-A: \xe9t\xe9\n".to_vec(),
            "_headers:2: the line is not UTF-8".into(),
        ),
        (
            "NUL in a value",
            b"/a\n  X-A: a\0b\n".to_vec(),
            "_headers:2: control character '\\0' in the line".into(),
        ),
        (
            "CR in a value",
            b"/a\n  X-A: a\rSet-Cookie: x\n".to_vec(),
            "_headers:2: control character '\\r' in the line".into(),
        ),
        (
            "a 2000-character line",
            long(2000).into_bytes(),
            "1 blocks".into(),
        ),
        (
            "a 2001-character line",
            long(2001).into_bytes(),
            "_headers:2: 2001 characters, more than the 2000 allowed".into(),
        ),
        ("100 blocks", blocks(100).into_bytes(), "100 blocks".into()),
        (
            "101 blocks",
            blocks(101).into_bytes(),
            "_headers:201: more than 100 blocks".into(),
        ),
        (
            "the most bytes",
            "#\n".repeat(HEADERS_MAX_BYTES / 2).into_bytes(),
            "0 blocks".into(),
        ),
        (
            "one byte more: the file, no line",
            format!("{}\n", "#\n".repeat(HEADERS_MAX_BYTES / 2)).into_bytes(),
            "_headers: 262145 bytes, more than the 262144 allowed".into(),
        ),
    ];
    for (name, text, want) in &rows {
        assert_eq!(&headers_outcome(text), want, "{name}");
    }
}

#[test]
fn protected_names_are_refused_however_spelled() {
    for name in PROTECTED {
        let upper = name.to_ascii_uppercase();
        let title: String = name
            .split('-')
            .map(|w| {
                let (first, rest) = w.split_at(1);
                format!("{}{rest}", first.to_ascii_uppercase())
            })
            .collect::<Vec<_>>()
            .join("-");
        for spelled in [name.to_string(), upper, title] {
            let why = format!("{spelled} is written by the server and cannot be set or removed");
            for (line, want) in [
                (format!("  {spelled}: x"), format!("_headers:2: {why}")),
                (format!("  {spelled} : x"), format!("_headers:2: {why}")),
                (format!("  ! {spelled}"), format!("_headers:2: {why}")),
                (format!("\t!{spelled}"), format!("_headers:2: {why}")),
            ] {
                let text = format!("/*\n{line}\n");
                assert_eq!(headers_outcome(text.as_bytes()), want, "{line:?}");
            }
            let field = format!("{spelled}: x");
            assert_eq!(check_header(&field), Err(why.clone()), "{field}");
            let err = HeaderRules::default()
                .with_global(std::slice::from_ref(&field))
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(err, Err(format!("--header: {field:?}: {why}")), "{field}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `_headers`: matching

const HEADERS: &str = "\
/*
  X-All: 1
/assets/*
  Cache-Control: public, max-age=31536000
  x-all: 2
/assets/private/*
  ! Cache-Control
  X-Private: yes
/*.js
  X-Js: 1
/:lang/about
  X-Lang: 1
/static
  X-Static: 1
/assets/private/again/*
  Cache-Control: no-store
https://example.com/*
  X-Host: 1
/embed/*
  ! X-Frame-Options
/static
  X-Static: 2
";

#[test]
fn header_fields_for_paths() {
    let h = headers(
        HEADERS,
        &["X-Global: g", "X-All: 0", "X-Frame-Options: DENY"],
    );
    assert_eq!(h.blocks(), 10);
    let g = "X-Global: g | X-All: 0";
    let xfo = "X-Frame-Options: DENY";
    let rows: &[(Option<&str>, &str, String)] = &[
        (None, "/", format!("{g}, 1 | {xfo}")),
        (None, "/index.html", format!("{g}, 1 | {xfo}")),
        (None, "/app.js", format!("{g}, 1 | {xfo} | X-Js: 1")),
        (None, "/assets", format!("{g}, 1 | {xfo}")),
        (
            None,
            "/assets/",
            format!("{g}, 1, 2 | {xfo} | Cache-Control: public, max-age=31536000"),
        ),
        (
            None,
            "/assets/app.js",
            format!("{g}, 1, 2 | {xfo} | Cache-Control: public, max-age=31536000 | X-Js: 1"),
        ),
        (
            None,
            "/assets/private/key.txt",
            format!("{g}, 1, 2 | {xfo} | X-Private: yes"),
        ),
        (
            None,
            "/assets/private/again/x",
            format!("{g}, 1, 2 | {xfo} | X-Private: yes | Cache-Control: no-store"),
        ),
        (None, "/en/about", format!("{g}, 1 | {xfo} | X-Lang: 1")),
        (None, "/en/about/", format!("{g}, 1 | {xfo}")),
        (None, "/en/about/x", format!("{g}, 1 | {xfo}")),
        (None, "/static", format!("{g}, 1 | {xfo} | X-Static: 1, 2")),
        (None, "/static/", format!("{g}, 1 | {xfo}")),
        (None, "/static.js", format!("{g}, 1 | {xfo} | X-Js: 1")),
        (
            Some("example.com"),
            "/x",
            format!("{g}, 1 | {xfo} | X-Host: 1"),
        ),
        (Some("example.org"), "/x", format!("{g}, 1 | {xfo}")),
        (None, "/embed/x", format!("{g}, 1")),
        (
            Some("example.com"),
            "/embed/a.js",
            format!("{g}, 1 | X-Js: 1 | X-Host: 1"),
        ),
    ];
    for (host, path, want) in rows {
        let got = h.for_path(*host, path.as_bytes());
        assert_eq!(&render(&got), want, "{host:?} {path}");
        assert_eq!(
            got,
            fields_by_trying_all(&h, *host, path.as_bytes()),
            "{host:?} {path}: the index changed the result"
        );
    }
    // `global()` is the `--header` fields alone, whatever the blocks say.
    assert_eq!(render(&h.global()), format!("{g} | {xfo}"));
}

#[test]
fn the_index_finds_what_trying_every_block_finds() {
    let h = headers(HEADERS, &[]);
    let paths = [
        "/",
        "/a",
        "/a/",
        "/assets",
        "/assets/",
        "/assets/a",
        "/assets/a/b.js",
        "/assets/private",
        "/assets/private/",
        "/assets/private/again",
        "/assets/private/again/",
        "/static",
        "/static/",
        "/static/x",
        "/x.js",
        "/x/y.js",
        "/.js",
        "/en/about",
        "/fr/about",
        "/en/about.js",
        "/about",
        "/embed",
        "/embed/",
        "/embed/x/y",
    ];
    for host in [None, Some("example.com"), Some("example.org")] {
        for path in paths {
            assert_eq!(
                h.for_path(host, path.as_bytes()),
                fields_by_trying_all(&h, host, path.as_bytes()),
                "{host:?} {path}"
            );
        }
    }
}

#[test]
fn detached_and_joined_fields() {
    // (file, --header fields, path, pairs, names named, names not named)
    type Row<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
    );
    let rows: &[Row] = &[
        ("", &[], "/a", "", &[], &["x-a"]),
        ("/a\n", &[], "/a", "", &[], &["x-a"]),
        // Values of one name, however spelled, are joined in order; the first spelling stays.
        (
            "/*\n  x-a: 2\n/a\n  X-A: 3\n",
            &["X-A: 1"],
            "/a",
            "X-A: 1, 2, 3",
            &["X-A", "x-a"],
            &["X-B"],
        ),
        (
            "/a\n  X-A: 1\n  X-A: 2\n",
            &[],
            "/a",
            "X-A: 1, 2",
            &["x-a"],
            &[],
        ),
        // A detached name is named (the server leaves its default out) but not written.
        (
            "/*\n  ! X-Content-Type-Options\n",
            &[],
            "/a",
            "",
            &["x-content-type-options"],
            &["content-type"],
        ),
        // It removes what earlier blocks and `--header` set, whatever the case.
        (
            "/*\n  X-A: 1\n  X-B: 1\n/a\n  ! x-a\n",
            &["X-A: 0"],
            "/a",
            "X-B: 1",
            &["X-A", "x-b"],
            &[],
        ),
        // A later block may set it again, from scratch, at the end.
        (
            "/*\n  X-A: 1\n  X-B: 1\n/a\n  ! X-A\n/a\n  X-A: 2\n",
            &[],
            "/a",
            "X-B: 1 | X-A: 2",
            &["x-a", "x-b"],
            &[],
        ),
        // Within a block too, in line order.
        ("/a\n  X-A: 1\n  ! X-A\n", &[], "/a", "", &["x-a"], &[]),
        (
            "/a\n  ! X-A\n  X-A: 1\n",
            &[],
            "/a",
            "X-A: 1",
            &["x-a"],
            &[],
        ),
        // A block that does not match does nothing.
        ("/b\n  ! X-A\n", &["X-A: 0"], "/a", "X-A: 0", &["x-a"], &[]),
    ];
    for (file, global, path, pairs, named, not_named) in rows {
        let h = headers(file, global);
        let f = h.for_path(None, path.as_bytes());
        let row = format!("{file:?} with {global:?} for {path}");
        assert_eq!(render(&f), *pairs, "{row}");
        for name in *named {
            assert!(f.names(name), "{row}: {name} should be named");
        }
        for name in *not_named {
            assert!(!f.names(name), "{row}: {name} should not be named");
        }
        assert_eq!(
            f.is_empty(),
            pairs.is_empty() && named.is_empty(),
            "{row}: is_empty"
        );
    }
}

#[test]
fn global_fields_come_first_and_apply_everywhere() {
    let h = headers(
        "/a\n  X-B: 1\n",
        &["X-A: 1", "  X-C:2  ", "x-a: 3", "X-Empty:"],
    );
    let globals = "X-A: 1, 3 | X-C: 2 | X-Empty: ";
    assert_eq!(render(&h.global()), globals);
    for (path, want) in [
        ("/", globals.to_string()),
        ("/a", format!("{globals} | X-B: 1")),
        ("/b/c", globals.to_string()),
    ] {
        assert_eq!(render(&h.for_path(None, path.as_bytes())), want, "{path}");
    }
    // No `_headers` blocks at all: still the globals.
    let only = headers("", &["X-A: 1"]);
    assert_eq!(render(&only.for_path(None, b"/x")), "X-A: 1");
    let none = headers("", &[]);
    assert!(none.global().is_empty());
    assert!(none.for_path(None, b"/x").is_empty());
}

// ---------------------------------------------------------------------------------------------
// `--header`

#[test]
fn check_header_table() {
    let t = "is not a header name (RFC 9110 \u{a7}5.6.2 token)";
    let rows: &[(&str, Result<(), String>)] = &[
        ("X-A: b", Ok(())),
        ("X-A:b", Ok(())),
        ("X-Empty:", Ok(())),
        ("  X-A :  b  ", Ok(())),
        ("X-A: b: c", Ok(())),
        ("X-A: caf\u{e9}", Ok(())),
        ("X-A:\tb", Ok(())),
        ("! X-A", Err("a --header sets a field (Name: value)".into())),
        ("!X-A", Err("a --header sets a field (Name: value)".into())),
        ("X-A", Err("\"X-A\" is not Name: value (or ! Name)".into())),
        ("", Err("\"\" is not Name: value (or ! Name)".into())),
        (": b", Err(format!("\"\" {t}"))),
        ("X A: b", Err(format!("\"X A\" {t}"))),
        (
            "Set-Cookie\0: x",
            Err("control character '\\0' in the line".into()),
        ),
        (
            "X: a\r\nSet-Cookie: x",
            Err("control character '\\r' in the line".into()),
        ),
        (
            "X: a\nSet-Cookie: x",
            Err("control character '\\n' in the line".into()),
        ),
        ("X: a\0", Err("control character '\\0' in the line".into())),
        ("X: a\r", Err("control character '\\r' in the line".into())),
        (
            "Location: /x",
            Err("Location is written by the server and cannot be set or removed".into()),
        ),
        (
            "content-length: 0",
            Err("content-length is written by the server and cannot be set or removed".into()),
        ),
    ];
    for (field, want) in rows {
        assert_eq!(&check_header(field), want, "{field:?}");
        // `with_global` refuses exactly what `check_header` refuses.
        let global = HeaderRules::default().with_global(&[field.to_string()]);
        match (global, want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(reason)) => {
                assert_eq!(
                    e.to_string(),
                    format!("--header: {field:?}: {reason}"),
                    "{field:?}"
                );
            }
            (got, _) => panic!("{field:?}: with_global gave {got:?}"),
        }
    }
    let long = format!("X-A: {}", "v".repeat(HEADER_LINE_MAX - 5));
    assert_eq!(check_header(&long), Ok(()));
    assert_eq!(
        check_header(&format!("{long}v")),
        Err("2001 characters, more than the 2000 allowed".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Sources as written: escapes stay literal, unnormalized paths and odd names are refused

#[test]
fn escaped_tokens_stay_literal_and_sources_must_be_normalized() {
    let r = redirects("/a%2A /star 302\n/b/%3Aname /colon 302\n/c/:x /cx 302\n");
    // `%2A` is a literal `*` (which a request spells `%2A` or `*`), not a splat.
    assert_eq!(
        find(&r, None, "/a%2A", None, false),
        Some((302, "/star".into()))
    );
    assert_eq!(
        find(&r, None, "/a*", None, false),
        Some((302, "/star".into()))
    );
    assert_eq!(find(&r, None, "/aXYZ", None, false), None);
    assert_eq!(
        find(&r, None, "/b/:name", None, false),
        Some((302, "/colon".into()))
    );
    assert_eq!(find(&r, None, "/b/other", None, false), None);
    assert_eq!(
        find(&r, None, "/c/y", None, false),
        Some((302, "/cx".into()))
    );
    for (source, reason) in [
        ("/a/./b", "not a normalized path (no //, . or .. segments)"),
        ("/a/../b", "not a normalized path (no //, . or .. segments)"),
        ("//a", "not a normalized path (no //, . or .. segments)"),
        ("/a//*", "not a normalized path (no //, . or .. segments)"),
        (
            "/%2E%2E/x",
            "not a normalized path (no //, . or .. segments)",
        ),
        ("/:1", PLACEHOLDER),
    ] {
        let text = format!("{source} /x\n");
        let want = format!("_redirects:1: {source:?}: {reason}");
        assert_eq!(redirects_outcome(text.as_bytes()), want, "{source}");
    }
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_line() {
    assert_eq!(redirects_outcome(b"\xEF\xBB\xBF/a /b\n"), "1 rules");
    assert_eq!(headers_outcome(b"\xEF\xBB\xBF/*\n  X-A: 1\n"), "1 blocks");
}

#[test]
fn an_empty_value_adds_nothing_to_a_joined_field() {
    let h = headers("/*\n  X-A:\n  X-B: 1\n/a\n  X-A: 2\n  X-B:\n", &[]);
    assert_eq!(render(&h.for_path(None, b"/a")), "X-A: 2 | X-B: 1");
    assert_eq!(render(&h.for_path(None, b"/b")), "X-A:  | X-B: 1");
}

#[test]
fn header_values_use_what_the_pattern_captures() {
    let h = headers(
        "/movies/:title\n  X-Movie: watching :title\n  X-Other: :nope stays, https://a:1/x\n\
         /files/*\n  Content-Disposition: attachment; filename=\":splat\"\n",
        &[],
    );
    let f = h.for_path(None, b"/movies/up");
    assert_eq!(
        render(&f),
        "X-Movie: watching up | X-Other: :nope stays, https://a:1/x"
    );
    // A captured value is percent-encoded: no CR, LF or quote can reach the field.
    let f = h.for_path(None, b"/files/a b\r\nSet-Cookie: x\"y");
    assert_eq!(
        render(&f),
        "Content-Disposition: attachment; filename=\"a%20b%0D%0ASet-Cookie%3A%20x%22y\""
    );
}

#[test]
fn single_valued_fields_take_the_last_value_and_cookies_keep_their_own_lines() {
    let h = headers(
        "/*\n  Content-Type: text/plain\n  Access-Control-Allow-Origin: https://a.example\n  Set-Cookie: a=1\n  Cache-Control: public\n\
         /x\n  Content-Type: text/html\n  Access-Control-Allow-Origin: https://b.example\n  Set-Cookie: b=2\n  Cache-Control: max-age=9\n",
        &[],
    );
    assert_eq!(
        render(&h.for_path(None, b"/x")),
        "Content-Type: text/html | Access-Control-Allow-Origin: https://b.example | Set-Cookie: a=1 \
         | Cache-Control: public, max-age=9 | Set-Cookie: b=2"
    );
}

#[test]
fn target_text_with_colons_and_captures_in_queries() {
    let r = redirects(
        "/help /wiki/Help:Contents 301\n/s/:q /search?q=:q&x=1 302\n/p/:q /page/:q 302\n",
    );
    assert_eq!(
        find(&r, None, "/help", None, false),
        Some((301, "/wiki/Help:Contents".into()))
    );
    // In the query a captured `&`, `=` or `+` cannot add a parameter; in the path they stay.
    assert_eq!(
        find(&r, None, "/s/a&admin=1+2", None, false),
        Some((302, "/search?q=a%26admin%3D1%2B2&x=1".into()))
    );
    assert_eq!(
        find(&r, None, "/p/a&b=c", None, false),
        Some((302, "/page/a&b=c".into()))
    );
    // A name that starts a segment must be captured: a typo is an error.
    assert_eq!(
        redirects_outcome(b"/a/:id /b/:ib 301\n"),
        "_redirects:1: target uses :ib, which the source \"/a/:id\" does not capture"
    );
}

#[test]
fn captures_cannot_add_attributes_to_a_header_value() {
    let h = headers("/:lang/*\n  Set-Cookie: lang=:lang; Path=/\n", &[]);
    let f = h.for_path(None, b"/x;Domain=example.com;Max-Age=9,y/a");
    assert_eq!(
        render(&f),
        "Set-Cookie: lang=x%3BDomain%3Dexample.com%3BMax-Age%3D9%2Cy; Path=/"
    );
}

#[test]
fn literal_non_ascii_sources_match_their_requests() {
    let r = redirects("/café /x.html 302\n/ünï/* /u/:splat 302\n");
    assert_eq!(
        find(&r, None, "/caf%C3%A9", None, false),
        Some((302, "/x.html".into()))
    );
    assert_eq!(
        find(&r, None, "/%C3%BCn%C3%AF/%C3%A9", None, false),
        Some((302, "/u/%C3%A9".into()))
    );
    let h = headers("/café\n  X-A: 1\n", &[]);
    assert_eq!(render(&h.for_path(None, "/café".as_bytes())), "X-A: 1");
}

#[test]
fn a_splat_keeps_the_trailing_slash_it_was_sent_with() {
    let r = redirects("/docs/* /v2/:splat 200\n/old/* /v2/:splat 301\n/page /p 301\n");
    assert_eq!(
        find(&r, None, "/docs/guide/", None, false),
        Some((200, "/v2/guide/".into()))
    );
    assert_eq!(
        find(&r, None, "/old/guide/", None, false),
        Some((301, "/v2/guide/".into()))
    );
    assert_eq!(
        find(&r, None, "/old/guide", None, false),
        Some((301, "/v2/guide".into()))
    );
    assert_eq!(
        find(&r, None, "/page/", None, false),
        Some((301, "/p".into()))
    );
}
