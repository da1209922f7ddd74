//! Table tests of the pure half of listings.

use super::*;

#[test]
fn natural_order_table() {
    let mut names: Vec<&[u8]> = vec![
        b"file10",
        b"file2",
        b"File1",
        b"file1",
        b"a01",
        b"a1",
        b"b",
        b"B",
        b"10",
        b"9",
        b"x.tar.gz",
        b"x.tar",
        b"img12b",
        b"img12a",
        b"img012a",
        b"",
        b"\xff",
        b"zeta",
    ];
    names.sort_by(|a, b| natural_cmp(a, b));
    let got: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let want = [
        "", "9", "10", "a01", "a1", "B", "b", "File1", "file1", "file2", "file10", "img012a",
        "img12a", "img12b", "x.tar", "x.tar.gz", "zeta", "\u{FFFD}",
    ];
    assert_eq!(got, want);
    // A total order: antisymmetric on every pair.
    for a in &names {
        for b in &names {
            assert_eq!(
                natural_cmp(a, b),
                natural_cmp(b, a).reverse(),
                "{a:?} {b:?}"
            );
        }
    }
    // Numbers longer than any integer type still compare by value.
    assert_eq!(
        natural_cmp(b"v99999999999999999999999", b"v100000000000000000000000"),
        Ordering::Less
    );
}

#[test]
fn hostile_names_are_escaped_for_the_page_and_encoded_for_the_link() {
    for (name, html, href) in [
        (&b"plain.txt"[..], "plain.txt", "plain.txt"),
        (
            b"<script>alert(1)</script>",
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "%3Cscript%3Ealert%281%29%3C%2Fscript%3E",
        ),
        (
            b"a \"q\" & 'b'",
            "a &quot;q&quot; &amp; &#39;b&#39;",
            "a%20%22q%22%20%26%20%27b%27",
        ),
        (b"line\nbreak", "line\u{FFFD}break", "line%0Abreak"),
        (b"100%#?.txt", "100%#?.txt", "100%25%23%3F.txt"),
        (b"caf\xc3\xa9", "caf\u{e9}", "caf%C3%A9"),
        (b"bad\xff\xfe", "bad\u{FFFD}\u{FFFD}", "bad%FF%FE"),
        (b"-._~", "-._~", "-._~"),
        // Noncharacters are valid UTF-8 but a parse error in HTML: shown as U+FFFD, linked
        // by their bytes; their neighbours U+FDCF, U+FDF0 and U+FFFD stay.
        (
            "\u{FDD0}\u{FDEF}\u{FFFE}\u{FFFF}\u{1FFFE}\u{10FFFF}".as_bytes(),
            "\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}",
            "%EF%B7%90%EF%B7%AF%EF%BF%BE%EF%BF%BF%F0%9F%BF%BE%F4%8F%BF%BF",
        ),
        (
            "\u{FDCF}\u{FDF0}\u{FFFD}".as_bytes(),
            "\u{FDCF}\u{FDF0}\u{FFFD}",
            "%EF%B7%8F%EF%B7%B0%EF%BF%BD",
        ),
    ] {
        assert_eq!(html_name(name), html, "{name:?}");
        assert_eq!(href_segment(name), href, "{name:?}");
        assert!(
            href_segment(name)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{name:?}"
        );
    }
}

#[test]
fn human_sizes_table() {
    for (bytes, want) in [
        (0, "0 B"),
        (999, "999 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024, "10 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (10_188, "9.9 KiB"),
        (10_239, "10 KiB"),
        (1023 * 1024, "1023 KiB"),
        (1024 * 1024, "1.0 MiB"),
        (5 << 30, "5.0 GiB"),
        (u64::MAX, "16 EiB"),
    ] {
        assert_eq!(human_size(bytes), want, "{bytes}");
    }
}

#[test]
fn views_from_queries() {
    use Format::*;
    use Order::*;
    use SortKey::*;
    for (query, want) in [
        (None, Ok((Name, Asc, None))),
        (Some(""), Ok((Name, Asc, None))),
        (Some("sort=size"), Ok((Size, Asc, None))),
        (Some("sort=time&order=desc"), Ok((Time, Desc, None))),
        (Some("order=desc&sort=name"), Ok((Name, Desc, None))),
        (Some("format=json"), Ok((Name, Asc, Some(Json)))),
        (Some("format=html&sort=size"), Ok((Size, Asc, Some(Html)))),
        // Other parameters (a cache buster) do not matter; the last of a repeat wins.
        (Some("v=3&x"), Ok((Name, Asc, None))),
        (Some("sort=size&sort=time"), Ok((Time, Asc, None))),
        (
            Some("sort=SIZE"),
            Err("listing: sort is name, size or time"),
        ),
        (Some("sort="), Err("listing: sort is name, size or time")),
        (Some("sort"), Err("listing: sort is name, size or time")),
        (Some("order=up"), Err("listing: order is asc or desc")),
        (Some("format=xml"), Err("listing: format is html or json")),
    ] {
        let got = View::from_query(query).map(|v| (v.sort, v.order, v.format));
        assert_eq!(got, want, "{query:?}");
    }
}

#[test]
fn accept_decides_json_only_when_it_prefers_it() {
    for (accept, json) in [
        (None, false),
        (Some("*/*"), false),
        (
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            false,
        ),
        (Some("application/json"), true),
        (Some("Application/JSON"), true),
        (Some("application/json, text/plain;q=0.5"), true),
        (Some("application/json;q=0.9, text/html"), false),
        (Some("text/html;q=0.5, application/json"), true),
        (Some("application/*"), true),
        (Some("application/*;q=0.4, text/*;q=0.5"), false),
        (Some("application/json;q=0"), false),
        (Some("application/json;q=0.001"), true),
        (Some("application/json;q=1.5"), false),
        (Some("application/json;q=abc"), false),
        (Some("application/json;q=0.5, */*;q=0.1"), true),
        (Some("application/json;q=0.5, */*;q=0.6"), false),
        // The most specific range decides: json's own 0.1 beats `*/*`'s 1.
        (Some("*/*, application/json;q=0.1"), false),
        (Some("text/plain"), false),
        (Some(""), false),
    ] {
        assert_eq!(wants_json(accept), json, "{accept:?}");
    }
}

fn entry(name: &str, is_dir: bool, size: u64, secs: u64) -> Entry {
    Entry {
        name: name.as_bytes().into(),
        is_dir,
        size,
        modified: Some(UNIX_EPOCH + std::time::Duration::from_secs(secs)),
    }
}

fn names(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect()
}

fn sample() -> Vec<Entry> {
    vec![
        entry("file10", false, 10, 300),
        entry("File2", false, 2000, 100),
        entry("zeta", true, 4096, 50),
        entry("alpha", true, 4096, 900),
        entry("b.txt", false, 2000, 700),
        entry("a.txt", false, 5, 700),
    ]
}

#[test]
fn directories_come_first_in_every_view() {
    use Order::*;
    use SortKey::*;
    for (sort, order, want) in [
        (
            Name,
            Asc,
            ["alpha", "zeta", "a.txt", "b.txt", "File2", "file10"],
        ),
        (
            Name,
            Desc,
            ["zeta", "alpha", "file10", "File2", "b.txt", "a.txt"],
        ),
        // Equal sizes and times fall back to the name (directories have no size).
        (
            Size,
            Asc,
            ["alpha", "zeta", "a.txt", "file10", "b.txt", "File2"],
        ),
        (
            Size,
            Desc,
            ["zeta", "alpha", "File2", "b.txt", "file10", "a.txt"],
        ),
        (
            Time,
            Asc,
            ["zeta", "alpha", "File2", "file10", "a.txt", "b.txt"],
        ),
        (
            Time,
            Desc,
            ["alpha", "zeta", "b.txt", "a.txt", "file10", "File2"],
        ),
    ] {
        let view = View {
            sort,
            order,
            format: None,
        };
        let mut sel = Selection::new(&view, 100);
        sample().into_iter().for_each(|e| sel.push(e));
        let (got, left_out) = sel.finish();
        assert_eq!(names(&got), want, "{sort:?} {order:?}");
        assert_eq!(left_out, 0);
    }
}

#[test]
fn a_selection_keeps_the_first_entries_in_order_within_its_bound() {
    let mut rng = crate::testutil::Rng(7);
    for cap in [0, 1, 3, 10, 64] {
        for (sort, order) in [
            (SortKey::Name, Order::Asc),
            (SortKey::Size, Order::Desc),
            (SortKey::Time, Order::Asc),
        ] {
            let view = View {
                sort,
                order,
                format: None,
            };
            let all: Vec<Entry> = (0..500)
                .map(|i| {
                    // Names in a directory are unique, so the order is total.
                    let name = format!("n{}-{i}", rng.below(1000));
                    entry(
                        &name,
                        rng.below(5) == 0,
                        rng.below(50),
                        rng.below(50) + i % 2,
                    )
                })
                .collect();
            let mut sel = Selection::new(&view, cap);
            for e in all.iter().cloned() {
                sel.push(e);
                assert!(sel.entries.len() < (2 * cap).max(1), "the bound");
            }
            let (got, left_out) = sel.finish();
            let mut want = all.clone();
            want.sort_by(|a, b| compare(a, b, sort, order));
            want.truncate(cap);
            assert_eq!(got, want, "cap {cap} {sort:?} {order:?}");
            assert_eq!(left_out, 500 - cap.min(500) as u64);
        }
    }
}

#[test]
fn the_etag_changes_with_the_directory_the_view_and_the_settings() {
    use read::Filter;
    let t = Some(UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5));
    let later = Some(UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 6));
    let v = View::default();
    let size = View {
        sort: SortKey::Size,
        ..v
    };
    let desc = View {
        order: Order::Desc,
        ..v
    };
    let f = Filter {
        hidden: false,
        site_rules: true,
    };
    let hidden = Filter { hidden: true, ..f };
    let no_rules = Filter {
        site_rules: false,
        ..f
    };
    let base = etag((1, 2), t, &v, Format::Html, &f, 100);
    assert!(base.starts_with("W/\"") && base.ends_with('"'), "{base}");
    let others = [
        etag((1, 3), t, &v, Format::Html, &f, 100),
        etag((9, 2), t, &v, Format::Html, &f, 100),
        etag((1, 2), later, &v, Format::Html, &f, 100),
        etag((1, 2), None, &v, Format::Html, &f, 100),
        etag((1, 2), t, &size, Format::Html, &f, 100),
        etag((1, 2), t, &desc, Format::Html, &f, 100),
        etag((1, 2), t, &v, Format::Json, &f, 100),
        etag((1, 2), t, &v, Format::Html, &hidden, 100),
        etag((1, 2), t, &v, Format::Html, &no_rules, 100),
        etag((1, 2), t, &v, Format::Html, &f, 101),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(&base, other, "{i}");
        assert!(!others[..i].contains(other), "{i}: {other}");
    }
    // The format given by the query or by Accept is the same page, the same tag.
    let json_by_query = View {
        format: Some(Format::Json),
        ..v
    };
    assert_eq!(
        etag((1, 2), t, &json_by_query, Format::Json, &f, 100),
        etag((1, 2), t, &v, Format::Json, &f, 100)
    );
}

fn page(
    format: Format,
    view: View,
    segments: &[&[u8]],
    entries: Vec<Entry>,
    left_out: u64,
) -> Page {
    let segments = segments.iter().map(|s| s.to_vec()).collect();
    Page::new(format, view, segments, entries, left_out)
}

#[test]
fn a_page_is_the_length_it_promises_however_it_is_filled() {
    let hostile = vec![
        entry("<b>&\"'", false, 1, 1),
        Entry {
            name: b"bad\xff\n".to_vec().into(),
            is_dir: true,
            size: 0,
            modified: None,
        },
    ];
    for format in [Format::Html, Format::Json] {
        for (segments, entries) in [
            (&[][..], Vec::new()),
            (&[&b"a b"[..], b"\xfe<"][..], sample()),
            (&[&b"x"[..]][..], hostile.clone()),
        ] {
            let whole = page(format, View::default(), segments, entries.clone(), 3).render();
            for want in [1, 7, 100, 4096] {
                let mut p = page(format, View::default(), segments, entries.clone(), 3);
                assert_eq!(p.len(), whole.len() as u64);
                let mut got = Vec::new();
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    let more = p.fill(&mut buf, want);
                    assert!(
                        !buf.is_empty() || !more,
                        "a fill that makes nothing must end"
                    );
                    got.extend_from_slice(&buf);
                    if !more {
                        break;
                    }
                }
                assert!(got == whole, "{format:?} in fills of {want}");
            }
        }
    }
}

#[test]
fn the_html_page_links_escapes_and_sorts() {
    let view = View {
        sort: SortKey::Size,
        order: Order::Desc,
        format: None,
    };
    let entries = vec![
        entry("sub dir", true, 4096, 0),
        entry("<script>x", false, 1536, 1_700_000_000),
        Entry {
            name: b"caf\xe9 \"q\".txt".to_vec().into(),
            is_dir: false,
            size: 7,
            modified: None,
        },
    ];
    let html = page(Format::Html, view, &[b"a&b", b"c\xff"], entries, 0).render();
    let html = String::from_utf8(html).expect("the page is UTF-8");
    for want in [
        "<!DOCTYPE html>\n<html lang=\"en\">",
        "<meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "prefers-color-scheme:dark",
        "<title>Index of /a&amp;b/c\u{FFFD}/</title>",
        // The breadcrumb: each ancestor by its own path, encoded from its real bytes.
        "<h1>Index of <a href=\"/\">/</a><a href=\"/a%26b/\">a&amp;b</a>/<a href=\"/a%26b/c%FF/\">c\u{FFFD}</a>/</h1>",
        // Sorted by size, descending: its header says so and flips; the others start over.
        "<th class=\"s\" aria-sort=\"descending\"><a href=\"?sort=size&amp;order=asc\">Size \u{25BC}</a></th>",
        "<th><a href=\"?sort=name&amp;order=asc\">Name</a></th>",
        "<th class=\"t\"><a href=\"?sort=time&amp;order=desc\">Modified (UTC)</a></th>",
        "<tr><td><a href=\"../\">../</a></td>",
        "<tr><td><a href=\"sub%20dir/\">sub dir/</a></td><td class=\"s\">\u{2014}</td><td class=\"t\"><time datetime=\"1970-01-01T00:00:00Z\">1970-01-01 00:00</time></td></tr>",
        "<tr><td><a href=\"%3Cscript%3Ex\">&lt;script&gt;x</a></td><td class=\"s\" title=\"1,536 bytes\">1.5 KiB</td><td class=\"t\"><time datetime=\"2023-11-14T22:13:20Z\">2023-11-14 22:13</time></td></tr>",
        "<tr><td><a href=\"caf%E9%20%22q%22.txt\">caf\u{FFFD} &quot;q&quot;.txt</a></td><td class=\"s\" title=\"7 bytes\">7 B</td><td class=\"t\"></td></tr>",
        "<p>1 directory, 2 files.</p>\n</body>\n</html>\n",
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
    let order: Vec<usize> = ["sub%20dir/", "%3Cscript%3Ex", "caf%E9"]
        .iter()
        .map(|h| html.find(&format!("href=\"{h}")).expect(h))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(!html.contains("<script"), "no markup from a name");
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src="));
    // At the root: no parent link; left-out entries are counted.
    let root = page(
        Format::Html,
        View::default(),
        &[],
        vec![entry("f", false, 1, 1)],
        123_456,
    );
    let root = String::from_utf8(root.render()).unwrap();
    assert!(!root.contains("href=\"../\""));
    assert!(root.contains("<h1>Index of <a href=\"/\">/</a></h1>"));
    assert!(
        root.contains(
            "<p>0 directories, 1 file. 123,456 entries left out: a listing shows at most 1.</p>"
        ),
        "{root}"
    );
}

#[test]
fn the_json_listing_is_an_array_of_entries_with_real_urls() {
    let entries = vec![
        entry("d", true, 4096, 0),
        Entry {
            name: b"a\"\\\n\x01\xff\xc3\xa9.txt".to_vec().into(),
            is_dir: false,
            size: 12,
            modified: Some(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
        },
        Entry {
            name: b"none".to_vec().into(),
            is_dir: false,
            size: 0,
            modified: None,
        },
    ];
    let json = page(Format::Json, View::default(), &[b"s p"], entries, 9).render();
    let json = String::from_utf8(json).unwrap();
    assert_eq!(
        json,
        "[\n{\"name\":\"d\",\"type\":\"directory\",\"size\":null,\"mtime\":\"1970-01-01T00:00:00Z\",\"url\":\"/s%20p/d/\"},\n\
         {\"name\":\"a\\\"\\\\\\u000a\\u0001\u{FFFD}\u{e9}.txt\",\"type\":\"file\",\"size\":12,\"mtime\":\"2023-11-14T22:13:20Z\",\"url\":\"/s%20p/a%22%5C%0A%01%FF%C3%A9.txt\"},\n\
         {\"name\":\"none\",\"type\":\"file\",\"size\":0,\"mtime\":null,\"url\":\"/s%20p/none\"}\n]\n"
    );
    let empty = page(Format::Json, View::default(), &[], Vec::new(), 0).render();
    assert_eq!(empty, b"[\n]\n");
}

#[test]
fn numbers_are_grouped_by_thousands() {
    for (n, want) in [
        (0, "0"),
        (999, "999"),
        (1000, "1,000"),
        (100_000, "100,000"),
        (1_234_567, "1,234,567"),
        (u64::MAX, "18,446,744,073,709,551,615"),
    ] {
        assert_eq!(group(n), want);
    }
}
