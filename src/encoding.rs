//! Choosing a precompressed variant of a file: `Accept-Encoding` negotiation (RFC 9110
//! §12.5.3) over the codings poolserve can serve from sidecar files (`FILE.br`, `FILE.gz`).
//!
//! poolserve never compresses on the fly (that costs CPU per request and reopens BREACH-style
//! questions); it serves what the site's build step compressed, as nginx `gzip_static` and
//! `brotli_static` do. This module is pure: it sees a header value and the codings that exist
//! on disk, and names the one to send, or identity.

/// A content coding we can serve from a sidecar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// Brotli, from `FILE.br` (RFC 7932).
    Br,
    /// gzip, from `FILE.gz` (RFC 9110 §8.4.1.3).
    Gzip,
}

impl Coding {
    /// Every coding, in the order preferred when a client weighs them equally: brotli first,
    /// since it is the smaller of the two for text.
    pub const ALL: [Coding; 2] = [Coding::Br, Coding::Gzip];

    /// The token sent in `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of the sidecar file that holds this coding.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }

    /// Whether an `Accept-Encoding` token names this coding (case-insensitive; `x-gzip` is
    /// gzip, RFC 9110 §8.4.1.3).
    fn matches(self, token: &str) -> bool {
        match self {
            Coding::Br => token.eq_ignore_ascii_case("br"),
            Coding::Gzip => {
                token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip")
            }
        }
    }
}

/// A q-value in thousandths (RFC 9110 §12.4.2: `0` to `1` with up to three decimals).
type Weight = u16;

/// The weight of a coding named without a `q` parameter.
const FULL: Weight = 1000;

/// The coding to send for a request with `Accept-Encoding: accept` when the variants in
/// `available` exist, or `None` for identity (the file itself).
///
/// - No header: identity. RFC 9110 allows any coding then, but a client that says nothing
///   may not decode anything; nginx and Caddy send identity too.
/// - Each available coding gets the weight of its own entry, else of `*`, else 0; weight 0
///   means "not acceptable" (`br;q=0`, `*;q=0`). The heaviest wins; ties go to
///   [`Coding::ALL`]'s order.
/// - Identity wins over a coding only when the client listed `identity` (or `*`, which
///   covers it) with a *higher* weight. When no variant is acceptable the file itself is sent
///   even if `identity;q=0` excluded it: a 200 the client may reject beats a 406 for a file
///   we have (RFC 9110 §12.5.3 allows either; nginx does the same).
/// - Entries with a malformed `q` are ignored, as if absent.
pub fn choose(accept: Option<&str>, available: &[Coding]) -> Option<Coding> {
    let accept = accept?;
    let mut star = None;
    let mut identity = None;
    let mut weights = [None; Coding::ALL.len()];
    for (token, weight) in entries(accept) {
        if token == "*" {
            star = star.or(Some(weight));
        } else if token.eq_ignore_ascii_case("identity") {
            identity = identity.or(Some(weight));
        } else if let Some(i) = Coding::ALL.iter().position(|c| c.matches(token)) {
            weights[i] = weights[i].or(Some(weight));
        }
    }
    let mut best: Option<(Coding, Weight)> = None;
    for (i, coding) in Coding::ALL.iter().enumerate() {
        if !available.contains(coding) {
            continue;
        }
        let weight = weights[i].or(star).unwrap_or(0);
        if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((*coding, weight));
        }
    }
    let (coding, weight) = best?;
    match identity.or(star) {
        Some(id) if id > weight => None,
        _ => Some(coding),
    }
}

/// The `(coding, weight)` entries of an `Accept-Encoding` value; empty list elements and
/// entries with a malformed weight are skipped.
fn entries(value: &str) -> impl Iterator<Item = (&str, Weight)> {
    value.split(',').filter_map(|element| {
        let mut parts = element.split(';');
        let token = parts.next()?.trim();
        if token.is_empty() {
            return None;
        }
        let mut weight = FULL;
        for param in parts {
            let (name, value) = param.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("q") {
                weight = parse_weight(value.trim())?;
            }
        }
        Some((token, weight))
    })
}

/// Parses a q-value (RFC 9110 §12.4.2): `0`, `0.` + up to 3 digits, `1`, `1.` + up to 3 zeros.
fn parse_weight(s: &str) -> Option<Weight> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: Weight = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(FULL),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Coding] = &[Coding::Br, Coding::Gzip];
    const GZ: &[Coding] = &[Coding::Gzip];
    const BR: &[Coding] = &[Coding::Br];

    #[test]
    fn negotiation_table() {
        use Coding::{Br, Gzip};
        let rows: &[(Option<&str>, &[Coding], Option<Coding>)] = &[
            (None, BOTH, None),
            (Some(""), BOTH, None),
            (Some("gzip, deflate, br"), BOTH, Some(Br)),
            (Some("gzip, deflate, br"), GZ, Some(Gzip)),
            (Some("gzip, deflate, br"), BR, Some(Br)),
            (Some("gzip, deflate, br"), &[], None),
            (Some("gzip"), BOTH, Some(Gzip)),
            (Some("GZIP"), BOTH, Some(Gzip)),
            (Some("x-gzip"), GZ, Some(Gzip)),
            (Some("Br"), BOTH, Some(Br)),
            (Some("deflate"), BOTH, None),
            (Some("br;q=0.5, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=0.5, gzip;q=0.5"), BOTH, Some(Br)),
            (Some("br;q=0, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=0, gzip;q=0"), BOTH, None),
            (Some("*"), BOTH, Some(Br)),
            (Some("*"), GZ, Some(Gzip)),
            (Some("*;q=0"), BOTH, None),
            (Some("*;q=0, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=0, *"), BOTH, Some(Gzip)),
            (Some("gzip;q=0.2, identity;q=0.5"), GZ, None),
            (Some("gzip;q=0.5, identity;q=0.5"), GZ, Some(Gzip)),
            (Some("gzip;q=0.5"), GZ, Some(Gzip)),
            (Some("gzip, identity;q=0"), GZ, Some(Gzip)),
            (Some("identity;q=0"), GZ, None),
            (Some("identity"), BOTH, None),
            (Some("*;q=0.9, br;q=0.1"), BOTH, Some(Gzip)),
            (Some(" gzip ; q = 1 , br ; q=0.999"), BOTH, Some(Gzip)),
            (Some("gzip;Q=0.7,br;q=0.8"), BOTH, Some(Br)),
            (Some(",,gzip,,"), BOTH, Some(Gzip)),
            (Some("br;level=5"), BOTH, Some(Br)),
            // Malformed weights drop the entry, never the whole header.
            (Some("br;q=2, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=abc, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=0.1234"), BOTH, None),
            (Some("br;q, gzip"), BOTH, Some(Gzip)),
            (Some("br;q=-1"), BOTH, None),
            // The first entry for a coding counts.
            (Some("br;q=0, br"), BOTH, None),
            (Some("gzipped, brotli"), BOTH, None),
        ];
        for (accept, available, want) in rows {
            assert_eq!(
                choose(*accept, available),
                *want,
                "Accept-Encoding {accept:?} with {available:?}"
            );
        }
    }

    #[test]
    fn weights() {
        let rows: &[(&str, Option<Weight>)] = &[
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.001", Some(1)),
            ("0.999", Some(999)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("2", None),
            ("0.1234", None),
            ("", None),
            (".5", None),
            ("0.5x", None),
            ("+0.5", None),
        ];
        for (s, want) in rows {
            assert_eq!(parse_weight(s), *want, "q={s:?}");
        }
    }

    #[test]
    fn tokens_and_suffixes() {
        assert_eq!(Coding::Br.token(), "br");
        assert_eq!(Coding::Gzip.token(), "gzip");
        assert_eq!(Coding::Br.suffix(), ".br");
        assert_eq!(Coding::Gzip.suffix(), ".gz");
    }
}
