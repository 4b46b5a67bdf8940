//! Hostile or broken manifests: refused with a spanned error and exit 2, never a crash.

mod common;

use std::os::unix::ffi::OsStrExt;

use common::Ws;

fn check(ws: &Ws) -> (Option<i32>, String) {
    let out = ws.kbuild(&["check"]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_manifest_nested_1500_levels_deep_is_refused_not_a_stack_overflow() {
    let ws = Ws::new();
    let deep = format!("{}{}\n", "a {".repeat(1500), "}".repeat(1500));
    ws.write("kernel.kdl", &deep);
    let (code, stderr) = check(&ws);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("blocks nest deeper than 32 levels"),
        "{stderr}"
    );
    assert!(stderr.contains("kernel.kdl:1:"), "spanned: {stderr}");
}

fn refused(ws: &Ws, needle: &str) {
    let (code, stderr) = check(ws);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(needle), "{needle}: {stderr}");
    assert!(stderr.contains("kernel.kdl:"), "spanned: {stderr}");
}

#[test]
fn paths_that_leave_the_workspace_are_refused() {
    for (from, to, needle) in [
        (
            "fragment \"kernel/common/config-dbg\"",
            "fragment \"../../../../etc/passwd\"",
            "fragment `../../../../etc/passwd` leaves the workspace",
        ),
        (
            "fragment \"kernel/common/config-dbg\"",
            "fragment \"/etc/passwd\"",
            "fragment `/etc/passwd` leaves the workspace",
        ),
        (
            "    tools \"perf\"\n",
            "    tools \"perf\"\n    config \"/etc/hostname\"\n",
            "config `/etc/hostname` leaves the workspace",
        ),
        (
            "    tools \"perf\"\n",
            "    tools \"perf\"\n    patches \"../elsewhere\"\n",
            "patch directory `../elsewhere` leaves the workspace",
        ),
        (
            "    dir \"tools/perf\"",
            "    dir \"../../../bin\"",
            "tool directory `../../../bin` leaves the workspace",
        ),
    ] {
        let ws = Ws::new();
        ws.edit("kernel.kdl", from, to);
        refused(&ws, needle);
    }
}

#[test]
fn repeats_that_would_silently_override_are_refused() {
    for (from, to, needle) in [
        (
            "    version \"6.6.71\"\n",
            "    version \"6.6.71\"\n    version \"6.6.72\"\n",
            "`version` is given twice in a `series`",
        ),
        (
            "variant \"dbg\"",
            "defaults {\n    org \"other\"\n}\nvariant \"dbg\"",
            "a second `defaults` block",
        ),
        (
            "    org \"linuxkit\"\n",
            "    org \"linuxkit\"\n    org \"other\"\n",
            "`org` is given twice in `defaults`",
        ),
        (
            "    localversion \"-dbg\"\n",
            "    localversion \"-dbg\"\n    localversion \"-debug\"\n",
            "`localversion` is given twice in a `variant`",
        ),
    ] {
        let ws = Ws::new();
        ws.edit("kernel.kdl", from, to);
        refused(&ws, needle);
    }
    let ws = Ws::new();
    let line = ws.source_line();
    let sha = line.split("sha256=\"").nth(1).unwrap()[..64].to_string();
    ws.edit("kernel.kdl", &line, &format!("{line} sha256=\"{sha}\""));
    refused(&ws, "property `sha256` is given twice on `source`");
}

#[test]
fn an_org_that_is_no_image_name_is_refused() {
    for org in ["../../evil", "Linuxkit", "a b", "-x"] {
        let ws = Ws::new();
        ws.edit("kernel.kdl", "org \"linuxkit\"", &format!("org \"{org}\""));
        refused(&ws, &format!("`{org}` is not a valid image org"));
    }
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        "org \"linuxkit\"",
        "org \"registry.example/team\"",
    );
    assert_eq!(check(&ws).0, Some(0));
}

#[test]
fn thousands_of_problems_are_capped_with_a_count() {
    let ws = Ws::new();
    let bogus: String = (0..35_000).map(|i| format!("bogus{i}\n")).collect();
    ws.write("kernel.kdl", &format!("{}{bogus}", ws.read("kernel.kdl")));
    let (code, stderr) = check(&ws);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("and 34980 more problems, starting here: unknown node `bogus20`"),
        "{}",
        &stderr[stderr.len().saturating_sub(2000)..]
    );
    assert_eq!(stderr.matches("unknown node `bogus").count(), 21);
}

#[test]
fn a_manifest_of_70000_tools_is_read() {
    // Linear, not quadratic, in the number of nodes (figures in doc/benchmarks.md).
    let ws = Ws::new();
    let tools: String = (0..70_000).map(|i| format!("tool \"t{i}\"\n")).collect();
    ws.write("kernel.kdl", &format!("{}{tools}", ws.read("kernel.kdl")));
    let (code, stderr) = check(&ws);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn every_summary_line_ends_with_a_newline() {
    // The shell prompt must not start on kbuild's last line, on stdout or stderr.
    let ws = Ws::new();
    ws.run(&[], 0);
    for args in [
        vec!["check"],
        vec!["list"],
        vec!["plan"],
        vec!["plan", "--format", "json"],
        vec!["run"],
        vec!["why", "//6.6.x:amd64"],
        vec!["tags"],
        vec!["cache", "verify"],
    ] {
        let out = ws.kbuild(&args);
        assert!(out.status.success(), "{args:?}");
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                bytes.is_empty() || bytes.ends_with(b"\n"),
                "{args:?} {stream} ends without a newline: {:?}",
                String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..])
            );
        }
    }
}

/// A file that exists but cannot be read is never taken for an absent one. (Tests run as root,
/// which reads anything: a directory where a file belongs, or a file where a directory belongs,
/// is what stays unreadable.)
#[test]
fn unreadable_inputs_are_errors_not_absent() {
    let ws = Ws::new();
    std::fs::remove_dir_all(ws.path().join("kernel/6.6.x/patches")).unwrap();
    ws.write("kernel/6.6.x/patches", "not a directory");
    let out = ws.kbuild(&["run", "//6.6.x:amd64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read the patch directory `kernel/6.6.x/patches`"),
        "{stderr}"
    );
    assert!(
        !ws.cache.join("ac").exists()
            || std::fs::read_dir(ws.cache.join("ac")).unwrap().count() == 0
    );
    // Every command that reads patches says so, none takes the directory for empty: the
    // patch check, and the config update (which lowers without the run's own checks).
    for args in [
        &["patches", "check"][..],
        &["config", "update", "//6.6.x:amd64"][..],
    ] {
        let out = ws.kbuild(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{args:?}: {stdout}{stderr}");
        assert!(
            format!("{stdout}{stderr}")
                .contains("cannot read the patch directory `kernel/6.6.x/patches`"),
            "{args:?}: {stdout}{stderr}"
        );
    }

    let ws = Ws::new();
    let bad = std::ffi::OsStr::from_bytes(b"0002-\xff.patch");
    std::fs::write(ws.path().join("kernel/6.6.x/patches").join(bad), "x").unwrap();
    let out = ws.kbuild(&["plan", "//6.6.x:amd64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("whose name is not UTF-8"), "{stderr}");

    for file in ["kernel.lock", "kernel.local.kdl"] {
        let ws = Ws::new();
        std::fs::create_dir(ws.path().join(file)).unwrap();
        let out = ws.kbuild(&["run", "//6.6.x:amd64"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("cannot read `{}", ws.path().join(file).display())),
            "{stderr}"
        );
        assert!(ws.path().join(file).is_dir(), "{file} was not replaced");
    }
}
