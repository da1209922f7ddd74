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
        (1024 * 1024 - 1, "1024 KiB"),
        (1024 * 1024, "1.0 MiB"),
        (5 << 30, "5.0 GiB"),
        (u64::MAX, "16 EiB"),
    ] {
        assert_eq!(human_size(bytes), want, "{bytes}");
    }
}
