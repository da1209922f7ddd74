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
