//! The Content-Type of a served file, chosen from its extension alone (RFC 9110 §8.3).
//!
//! This module owns the extension → media type table and nothing else: it never reads the
//! file and never sniffs its bytes (we send `X-Content-Type-Options: nosniff`, so the type we
//! name is the type the browser uses). Unknown or missing extensions are
//! `application/octet-stream`, which RFC 9110 §8.3 names as the safe default.
//!
//! # Charset policy
//! `; charset=utf-8` is added to every `text/*` type and to nothing else:
//! - `text/*` without a charset may be decoded as windows-1252 by browsers, mangling UTF-8
//!   (and RFC 7763 makes `charset` required for `text/markdown`).
//! - JSON types (`application/json`, `+json`) define no charset parameter: JSON exchanged
//!   between systems is always UTF-8 (RFC 8259 §8.1, §11).
//! - XML types (`application/xml`, `+xml`, so SVG, RSS, Atom, XHTML) describe their own
//!   encoding in the XML declaration; a charset parameter would override it (RFC 7303 §3.2),
//!   so a file declared as another encoding would be misread.
//! - YAML and TOML are UTF-8 by definition and their registrations define no charset.
//!
//! Source code (`.rs`, `.py`, `.sh`, ...) is `text/plain` so browsers show it instead of
//! downloading it. `.ts` is an MPEG transport stream (HLS segments), not TypeScript: that is
//! what a static server most often meets under that name.

use std::cmp::Ordering;
use std::path::Path;

/// The type for unknown, missing or non-UTF-8 extensions (RFC 9110 §8.3).
pub const DEFAULT: &str = "application/octet-stream";

/// Plain text, used for logs, configuration and source code so browsers display it.
const PLAIN: &str = "text/plain; charset=utf-8";

/// (lower-case extension, Content-Type), sorted by extension for [`slice::binary_search_by`].
/// A test checks the order, uniqueness, lower case and the charset policy above.
static TABLE: &[(&str, &str)] = &[
    ("3gp", "video/3gpp"),
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("apng", "image/apng"),
    ("atom", "application/atom+xml"),
    ("avi", "video/x-msvideo"),
    ("avif", "image/avif"),
    ("bash", PLAIN),
    ("bmp", "image/bmp"),
    ("br", "application/x-brotli"),
    ("bz2", "application/x-bzip2"),
    ("c", PLAIN),
    ("cc", PLAIN),
    ("cfg", PLAIN),
    ("cjs", "text/javascript; charset=utf-8"),
    ("conf", PLAIN),
    ("cpp", PLAIN),
    ("cs", PLAIN),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("diff", PLAIN),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("eot", "application/vnd.ms-fontobject"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("glb", "model/gltf-binary"),
    ("gltf", "model/gltf+json"),
    ("go", PLAIN),
    ("gz", "application/gzip"),
    ("h", PLAIN),
    ("heic", "image/heic"),
    ("heif", "image/heif"),
    ("hpp", PLAIN),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    // image/x-icon, not the registered image/vnd.microsoft.icon: every browser accepts it,
    // some older ones accept only it, and it is what WHATWG, nginx and Apache use.
    ("ico", "image/x-icon"),
    ("ics", "text/calendar; charset=utf-8"),
    ("ini", PLAIN),
    ("jar", "application/java-archive"),
    ("java", PLAIN),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    // RFC 9239 §6: text/javascript is the one type for JavaScript, modules included.
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("jxl", "image/jxl"),
    ("log", PLAIN),
    ("lua", PLAIN),
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("m4a", "audio/mp4"),
    ("m4v", "video/mp4"),
    // Source maps are JSON (ECMA-426).
    ("map", "application/json"),
    ("markdown", "text/markdown; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpd", "application/dash+xml"),
    ("mpeg", "video/mpeg"),
    ("mpg", "video/mpeg"),
    ("odp", "application/vnd.oasis.opendocument.presentation"),
    ("ods", "application/vnd.oasis.opendocument.spreadsheet"),
    ("odt", "application/vnd.oasis.opendocument.text"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    // Opus files are Ogg-encapsulated (RFC 7845 §9); audio/opus is the RTP payload type.
    ("opus", "audio/ogg"),
    ("otf", "font/otf"),
    ("patch", PLAIN),
    ("pdf", "application/pdf"),
    ("pl", PLAIN),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("py", PLAIN),
    ("rar", "application/vnd.rar"),
    ("rb", PLAIN),
    ("rs", PLAIN),
    ("rss", "application/rss+xml"),
    ("rtf", "application/rtf"),
    ("sh", PLAIN),
    // SubRip has no registered type; text/plain lets browsers show it (players use .vtt).
    ("srt", PLAIN),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("tgz", "application/gzip"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("toml", "application/toml"),
    ("ts", "video/mp2t"),
    ("tsv", "text/tab-separated-values; charset=utf-8"),
    ("ttf", "font/ttf"),
    ("txt", PLAIN),
    ("vtt", "text/vtt; charset=utf-8"),
    ("wasm", "application/wasm"),
    // audio/wav is what browsers recognise; IANA's audio/vnd.wave is not played by all.
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("xml", "application/xml"),
    ("xz", "application/x-xz"),
    // RFC 9512 registered application/yaml.
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// Content-Type for a file path, from its extension (ASCII case-insensitive). Text types
/// carry `; charset=utf-8` (see the module docs for which). Unknown, missing or non-UTF-8
/// extension, a dotfile such as `.bashrc`, or a trailing dot: [`DEFAULT`]. Never sniffs.
/// Only the last extension counts, so `archive.tar.gz` is `application/gzip`.
pub fn content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return DEFAULT;
    };
    TABLE
        .binary_search_by(|(key, _)| cmp_lowercased(key, ext))
        .map_or(DEFAULT, |i| TABLE[i].1)
}

/// Orders a lower-case table key against `ext` as if `ext` were lower-cased, without
/// allocating a lower-case copy on every request.
fn cmp_lowercased(key: &str, ext: &str) -> Ordering {
    key.bytes().cmp(ext.bytes().map(|b| b.to_ascii_lowercase()))
}

/// Whether a Content-Type names text: `text/*`, JSON and XML types (`+json`, `+xml`
/// suffixes, RFC 6839), JavaScript, YAML and TOML. Parameters and case are ignored. Useful to
/// decide whether a body is worth compressing or may carry a charset.
pub fn is_text(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || (kind == "application"
            && matches!(subtype, "json" | "xml" | "javascript" | "yaml" | "toml"))
        || subtype.ends_with("+json")
        || subtype.ends_with("+xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_lowercase() {
        for pair in TABLE.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{:?} must sort strictly before {:?}",
                pair[0].0,
                pair[1].0
            );
        }
        for (ext, _) in TABLE {
            assert!(
                !ext.is_empty()
                    && ext
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{ext:?} must be non-empty lower-case ASCII"
            );
        }
    }

    #[test]
    fn charset_only_on_text_types() {
        for (ext, ty) in TABLE {
            let has_charset = ty.ends_with("; charset=utf-8");
            assert_eq!(
                has_charset,
                ty.starts_with("text/"),
                "{ext}: charset must be on text/* and nowhere else, got {ty:?}"
            );
            assert!(
                !ty.contains(' ') || has_charset,
                "{ext}: stray space in {ty:?}"
            );
        }
    }

    #[test]
    fn every_table_entry_is_found() {
        for (ext, ty) in TABLE {
            let name = format!("f.{ext}");
            assert_eq!(content_type(Path::new(&name)), *ty, "{name}");
            let upper = name.to_ascii_uppercase();
            assert_eq!(content_type(Path::new(&upper)), *ty, "{upper}");
        }
    }

    #[test]
    fn representative_paths() {
        let cases: &[(&str, &str)] = &[
            ("index.html", "text/html; charset=utf-8"),
            ("A.HTML", "text/html; charset=utf-8"),
            ("page.Htm", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("mod.mjs", "text/javascript; charset=utf-8"),
            ("data.json", "application/json"),
            ("app.js.map", "application/json"),
            ("site.webmanifest", "application/manifest+json"),
            ("m.wasm", "application/wasm"),
            ("logo.svg", "image/svg+xml"),
            ("feed.rss", "application/rss+xml"),
            ("README.md", "text/markdown; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("main.rs", "text/plain; charset=utf-8"),
            ("run.sh", "text/plain; charset=utf-8"),
            ("photo.JPG", "image/jpeg"),
            ("photo.jpeg", "image/jpeg"),
            ("pic.avif", "image/avif"),
            ("favicon.ico", "image/x-icon"),
            ("font.woff2", "font/woff2"),
            ("doc.pdf", "application/pdf"),
            ("clip.mp4", "video/mp4"),
            ("clip.webm", "video/webm"),
            ("song.mp3", "audio/mpeg"),
            ("archive.tar.gz", "application/gzip"),
            ("archive.tgz", "application/gzip"),
            ("archive.zip", "application/zip"),
            ("cfg.yml", "application/yaml"),
            ("sub/dir/deep.CSS", "text/css; charset=utf-8"),
            ("dir.html/file", DEFAULT),
            ("Makefile", DEFAULT),
            (".bashrc", DEFAULT),
            (".hidden.txt", "text/plain; charset=utf-8"),
            ("file.", DEFAULT),
            ("file.unknownext", DEFAULT),
            ("file.htmlx", DEFAULT),
            ("file.ht", DEFAULT),
            ("", DEFAULT),
            ("file.h\u{0130}ml", DEFAULT),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(Path::new(path)), *want, "{path:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_extension_is_default() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(OsStr::from_bytes(b"file.ht\xffml"));
        assert_eq!(content_type(path), DEFAULT);
    }

    #[test]
    fn is_text_table() {
        let cases: &[(&str, bool)] = &[
            ("text/html; charset=utf-8", true),
            ("TEXT/PLAIN", true),
            ("application/json", true),
            ("application/manifest+json", true),
            ("image/svg+xml", true),
            ("application/xml ; charset=x", true),
            ("application/yaml", true),
            ("image/png", false),
            ("application/octet-stream", false),
            ("application/gzip", false),
            ("application/jsonx", false),
            ("text", false),
            ("", false),
        ];
        for (ty, want) in cases {
            assert_eq!(is_text(ty), *want, "{ty:?}");
        }
    }
}
