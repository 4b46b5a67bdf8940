//! The null-build fast path: taken only when nothing a run depended on changed.

mod common;

use common::Ws;

/// Runs `kbuild run` in text mode and returns stderr.
fn run_text(ws: &Ws, labels: &[&str]) -> String {
    let mut args = vec!["run"];
    args.extend(labels);
    let out = ws.kbuild(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn fast(stderr: &str) -> bool {
    stderr.contains("(nothing changed)")
}

#[test]
fn a_second_run_takes_the_fast_path_and_any_change_leaves_it() {
    let ws = Ws::new();
    assert!(!fast(&run_text(&ws, &[])));
    let second = run_text(&ws, &[]);
    assert!(fast(&second), "{second}");
    assert!(
        second.contains("63 actions, 63 cached, 0 executed"),
        "{second}"
    );

    // A new mtime with the same content changes nothing.
    let config = ws.path().join("kernel/6.6.x/config-x86_64");
    let text = std::fs::read(&config).unwrap();
    std::fs::write(&config, &text).unwrap();
    assert!(fast(&run_text(&ws, &[])));

    ws.edit(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        "return 1;",
        "return 3;",
    );
    let after_patch = run_text(&ws, &[]);
    assert!(
        !fast(&after_patch) && after_patch.contains("executed patch //6.6.x"),
        "{after_patch}"
    );
    assert!(fast(&run_text(&ws, &[])));

    // A new patch file changes the directory listing.
    ws.write("kernel/6.6.x/patches/0002-empty.patch", "");
    let added = run_text(&ws, &[]);
    assert!(!fast(&added), "{added}");
}

#[test]
fn manifest_edits_labels_and_missing_outputs_leave_the_fast_path() {
    let ws = Ws::new();
    run_text(&ws, &[]);
    assert!(fast(&run_text(&ws, &[])));
    // Other patterns have their own record.
    assert!(!fast(&run_text(&ws, &["//6.6.x:amd64"])));
    assert!(fast(&run_text(&ws, &["//6.6.x:amd64"])));

    ws.edit(
        "kernel.kdl",
        "// A test workspace.",
        "// A test workspace, edited.",
    );
    assert!(!fast(&run_text(&ws, &[])));

    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    let relinked = run_text(&ws, &[]);
    assert!(!fast(&relinked));
    assert!(
        ws.path().join("out/6.6.x/dbg-arm64/kernel").is_file(),
        "out/ is recreated"
    );

    // An evicted cache entry is noticed before anything is claimed cached. The entry is one
    // the plan names: older keys' entries (from before the edit above) are also in ac/.
    assert!(fast(&run_text(&ws, &[])));
    let plan = ws.kbuild(&["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let image = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "image //6.6.x:amd64")
        .unwrap();
    let key = image["key"].as_str().unwrap();
    let entry = ws
        .cache
        .join(format!("ac/{}/{}.json", &key[..2], &key[2..]));
    std::fs::remove_file(entry).unwrap();
    let rebuilt = run_text(&ws, &[]);
    assert!(
        !fast(&rebuilt) && rebuilt.contains("1 executed"),
        "{rebuilt}"
    );
}

#[test]
fn a_failed_run_clears_the_record() {
    let ws = Ws::new();
    run_text(&ws, &[]);
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_FAIL=y\n",
    );
    let out = ws.kbuild(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    ws.write("kernel/common/config-dbg", common::DBG_FRAGMENT);
    // Back to the recorded inputs, but the record is gone: the full path confirms it.
    let back = run_text(&ws, &[]);
    assert!(!fast(&back), "{back}");
    assert!(fast(&run_text(&ws, &[])));
}

#[test]
fn the_fast_path_knows_the_executor_without_reading_the_manifest_only_when_it_chose_it() {
    let ws = Ws::new();
    run_text(&ws, &["--executor", "host"]);
    // The flag answers a run with the same flag.
    assert!(fast(&run_text(&ws, &["--executor", "host"])));
    // A run without it takes the manifest's choice, which that record cannot vouch for.
    assert!(!fast(&run_text(&ws, &[])));
    // Its own record can: the manifest it chose from is part of the fingerprint.
    assert!(fast(&run_text(&ws, &[])));
    assert!(fast(&run_text(&ws, &["--executor", "host"])));
}
