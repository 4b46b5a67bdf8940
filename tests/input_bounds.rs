//! Inputs that try to reach outside the workspace, or that the command line cannot spell as
//! UTF-8: each is a clear error naming the cause, never a panic, never a host file read.

mod common;

use std::os::unix::ffi::OsStrExt;

use common::Ws;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn arguments_that_are_not_utf8_are_errors_not_panics() {
    let ws = Ws::new();
    let label = std::ffi::OsStr::from_bytes(b"//6.6.x:\xff");
    let out = ws.command(&["plan"]).arg(label).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("invalid UTF-8"), "{}", stderr(&out));
    let dir = std::ffi::OsStr::from_bytes(b"/nonexistent/\xfe");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(dir)
        .arg("plan")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("pass an existing directory to -C"));
}

/// The test workspace with a tool whose source is `source`.
fn with_tool_source(source: &str) -> Ws {
    let ws = Ws::new();
    let text = ws.read("kernel.kdl").replace(
        "tool \"perf\" {\n    dir \"tools/perf\"",
        &format!("tool \"perf\" {{\n    source {source}\n    dir \"tools/perf\""),
    );
    ws.write("kernel.kdl", &text);
    ws
}

#[test]
fn a_tool_source_may_not_read_an_unpinned_host_file() {
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "root:s3cret-line\n").unwrap();
    let ws = with_tool_source(&format!("\"file://{}\"", secret.path().display()));
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("outside the workspace, without a pin"),
        "{}",
        stderr(&out)
    );
    let run = ws.kbuild(&["run"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(!stderr(&run).contains("s3cret-line"), "{}", stderr(&run));
    assert!(!ws.cache.join("blobs").exists() || !common::files_under(&ws.cache).iter().any(
        |f| std::fs::read(f).is_ok_and(|b| b.windows(11).any(|w| w == b"s3cret-line"))
    ));

    let ws = with_tool_source("\"file://../../../etc/passwd\"");
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("leaves the workspace"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_tool_source_inside_the_workspace_needs_no_pin_of_its_own() {
    // A relative URL inside the workspace needs no pin of its own (kernel.lock pins it).
    let ws = with_tool_source("\"file://sources/linux-6.6.71.tar\"");
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn workspace_files_that_are_symlinks_to_outside_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    // A fragment linked to a file elsewhere.
    let ws = Ws::new();
    let fragment = ws.path().join("kernel/common/config-dbg");
    std::fs::copy(&fragment, outside.path().join("config-dbg")).unwrap();
    std::fs::remove_file(&fragment).unwrap();
    std::os::unix::fs::symlink(outside.path().join("config-dbg"), &fragment).unwrap();
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("`kernel/common/config-dbg` leads outside the workspace"),
        "{text}"
    );
    assert!(
        text.contains(&outside.path().canonicalize().unwrap().display().to_string()),
        "{text}"
    );

    // A patch directory linked to a directory elsewhere.
    let ws = Ws::new();
    let patches = ws.path().join("kernel/6.6.x/patches");
    let elsewhere = outside.path().join("patches");
    std::fs::rename(&patches, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &patches).unwrap();
    let out = ws.kbuild(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("leads outside the workspace"),
        "{}",
        stderr(&out)
    );

    // One patch linked to a file elsewhere.
    let ws = Ws::new();
    let patch = ws
        .path()
        .join("kernel/6.6.x/patches/0001-init-say-hello.patch");
    std::fs::rename(&patch, outside.path().join("p.patch")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("p.patch"), &patch).unwrap();
    let out = ws.kbuild(&["plan"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0001-init-say-hello.patch` leads outside"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_error_about_a_source_never_quotes_its_contents() {
    use sha2::Digest as _;
    let text = "root:s3cret-line:0:0:root:/root:/bin/bash\n".repeat(40);
    let sha: String = sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ws = with_tool_source(&format!("\"file://secret.txt\" sha256=\"{sha}\""));
    ws.write("secret.txt", &text);
    let run = ws.kbuild(&["run"]);
    assert_ne!(run.status.code(), Some(0));
    assert!(!stderr(&run).contains("s3cret"), "{}", stderr(&run));
    assert!(
        !String::from_utf8_lossy(&run.stdout).contains("s3cret"),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}
