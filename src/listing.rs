//! Directory listings (issue 18), the pure half: the order entries are shown in, and how a
//! file name becomes text on a page and a link. Names come from the file system, so they are
//! bytes, not text: any of them may hold `<script>`, quotes, `&`, a newline, `%`, `#`, `?`
//! or bytes that are not UTF-8. A name is shown with replacement characters where it is not
//! UTF-8 and escaped for HTML, and linked by its real bytes, percent-encoded, so that the
//! link names the file whatever its bytes. Reading directories and serving pages is not here
//! yet; nothing in this module touches the file system.

use std::cmp::Ordering;

/// Natural order, ignoring ASCII case: runs of digits compare by their value (`file2`
/// before `file10`), everything else byte by byte with ASCII letters folded; a tie (`a01`
/// and `a1`, `A` and `a`) is broken by the plain bytes, so the order is total and stable
/// across runs.
pub fn natural_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (da, db) = (digit_run(&a[i..]), digit_run(&b[j..]));
            // Leading zeros do not change a number's value.
            let (na, nb) = (trim_zeros(&a[i..i + da]), trim_zeros(&b[j..j + db]));
            let by_value = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if by_value != Ordering::Equal {
                return by_value;
            }
            i += da;
            j += db;
        } else {
            let (x, y) = (a[i].to_ascii_lowercase(), b[j].to_ascii_lowercase());
            if x != y {
                return x.cmp(&y);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j)).then_with(|| a.cmp(b))
}

/// How many ASCII digits `s` starts with.
fn digit_run(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A digit run without its leading zeros (`"007"` → `"7"`, `"0"` → `""`).
fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|b| **b == b'0').count();
    &digits[zeros..]
}

/// A name as text for a page: UTF-8 where it is, U+FFFD where it is not, escaped for HTML
/// text and attribute values (`&`, `<`, `>`, `"`, `'`); control characters (a newline in a
/// name) are shown as U+FFFD too, so a name stays on one line.
pub fn html_name(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A name as one path segment of a link: every byte but ASCII letters, digits and `-._~`
/// percent-encoded (RFC 3986 §2.3), so `%`, `#`, `?`, `/`, quotes, spaces and bytes that are
/// not UTF-8 reach the server as the name's real bytes, and the result is safe in an HTML
/// attribute as it is.
pub fn href_segment(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    crate::resolve::percent_encode(name, b"-._~", &mut out);
    out
}

/// A size for people, in binary units with one decimal under 10 (`999 B`, `1.5 KiB`,
/// `12 MiB`); the exact byte count goes in a title beside it.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
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
}
