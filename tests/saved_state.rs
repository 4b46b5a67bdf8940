//! Saved state between runs: a file of a newer layout is a clear error naming it, never read as
//! garbage nor silently overwritten; a damaged or older one only costs the work it saved.

mod common;

use common::Ws;

/// The files of `state/` whose name ends with `suffix`.
fn state_files(ws: &Ws, suffix: &str) -> Vec<std::path::PathBuf> {
    let dir = ws.cache.join("state");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Rewrites the layout version in a saved-state file's header.
fn set_layout(path: &std::path::Path, kind: &str, version: u32) {
    let bytes = std::fs::read(path).unwrap();
    let header = format!("kbuild-state\n{kind} ");
    assert!(bytes.starts_with(header.as_bytes()), "{}", path.display());
    let end = bytes
        .iter()
        .skip(header.len())
        .position(|&b| b == b'\n')
        .unwrap()
        + header.len();
    let mut out = format!("{header}{version}").into_bytes();
    out.extend_from_slice(&bytes[end..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_last_run_of_a_newer_kbuild_is_an_error_naming_the_file() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let [last] = state_files(&ws, ".last-run").try_into().unwrap();
    set_layout(&last, "last-run", 99);
    for args in [
        &["plan", "//6.6.x:amd64"][..],
        &["run", "//6.6.x:amd64", "--format", "json"],
    ] {
        let out = ws.kbuild(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("written by a newer kbuild"), "{stderr}");
        assert!(stderr.contains("last-run layout 99"), "{stderr}");
        assert!(
            stderr.contains(&last.file_name().unwrap().to_string_lossy().to_string()),
            "{stderr}"
        );
    }
    // gc cannot tell what that kbuild uses: it stops too, and removes nothing.
    let out = ws.kbuild(&["cache", "gc", "--max-size", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("written by a newer kbuild"), "{stderr}");
}

#[test]
fn older_or_damaged_state_is_made_again() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    for (suffix, kind) in [
        (".last-run", "last-run"),
        (".lowered", "lowered"),
        (".manifest", "manifest"),
    ] {
        for file in state_files(&ws, suffix) {
            set_layout(&file, kind, 0);
        }
    }
    std::fs::write(ws.cache.join("state/stat"), b"not postcard at all").unwrap();
    // Nothing to rebuild: the cache's entries are found again by their keys.
    let report = ws.run(&["//6.6.x:amd64"], 0);
    assert!(report.executed().is_empty(), "{}", report.stderr);
    assert_eq!(report.total("cached"), report.total("actions"));
}
