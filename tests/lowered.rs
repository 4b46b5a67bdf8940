//! The kept lowered graph: after an edit lowering cannot see (a config, a fragment, a patch's
//! content) a plan restores the last graph instead of lowering; anything lowering reads makes
//! it lower again. Either way the plan is exactly the one a fresh lowering gives.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::Ws;

fn append(ws: &Ws, rel: &str, text: &str) {
    ws.write(rel, &(ws.read(rel) + text));
}

/// The hash in the tags of the plain kernel, as a plan shows it.
fn tag_hash(plan: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(plan).unwrap();
    let tag = (v["actions"].as_array().unwrap().iter())
        .find(|a| a["name"] == "tag //6.6.x:amd64")
        .expect("the plan tags the plain kernel");
    tag["record"]["params"]["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The kept graph files in the workspace's cache.
fn kept(ws: &Ws) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ws.cache.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lowered"))
        .collect();
    files.sort();
    files
}

/// The inode of the one kept graph: a graph written again is a new file (atomic rename).
fn kept_inode(ws: &Ws) -> u64 {
    let files = kept(ws);
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::metadata(&files[0]).unwrap().ino()
}

/// `kbuild plan --format json` with the kept graph as the last command left it.
fn plan(ws: &Ws, labels: &[&str]) -> String {
    let mut args = vec!["plan", "--format", "json"];
    args.extend(labels);
    let out = ws.kbuild(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The same plan from a fresh lowering (every kept graph removed first); the kept graph the
/// fresh lowering writes is removed again and the one before it put back, so that the caller
/// sees what a restore does.
fn fresh_plan(ws: &Ws, labels: &[&str]) -> String {
    let saved: Vec<(PathBuf, Vec<u8>)> = (kept(ws).into_iter())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    for (path, _) in &saved {
        std::fs::remove_file(path).unwrap();
    }
    let plan = plan(ws, labels);
    for path in kept(ws) {
        std::fs::remove_file(path).unwrap();
    }
    for (path, bytes) in saved {
        std::fs::write(path, bytes).unwrap();
    }
    plan
}

/// Plans with the kept graph and from scratch, and checks they agree; says whether the plan
/// restored the kept graph (the file was not written again).
fn plan_both(ws: &Ws) -> bool {
    let fresh = fresh_plan(ws, &[]);
    let before = kept_inode(ws);
    let restored = plan(ws, &[]);
    let after = kept_inode(ws);
    assert_eq!(restored, fresh, "the kept graph planned otherwise");
    before == after
}

#[test]
fn edits_lowering_cannot_see_restore_the_graph_and_plan_exactly_as_lowering() {
    let ws = Ws::new();
    ws.run(&[], 0);
    assert!(plan_both(&ws), "nothing changed");
    let before = plan(&ws, &[]);

    // A config: its configure, check, compile … and the tags of its series change.
    append(&ws, "kernel/6.6.x/config-x86_64", "# edited\n");
    assert!(plan_both(&ws), "config edit");
    let after = plan(&ws, &[]);
    assert_ne!(after, before);
    let old = tag_hash(&before);
    assert!(
        !after.contains(&format!("\"revision\": \"{old}\""))
            && after.contains(&format!("parameter `revision` changed (`{old}` → ")),
        "the edit reaches the tags: {after}"
    );

    // A fragment and a patch's content.
    append(&ws, "kernel/common/config-dbg", "# dbg edit\n");
    assert!(plan_both(&ws), "fragment edit");
    ws.edit(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        "return 1;",
        "return 3;",
    );
    assert!(plan_both(&ws), "patch content edit");

    // Built, then planned again: every action cached, on the restored graph.
    ws.run(&[], 0);
    assert!(plan_both(&ws), "after the run");
}

#[test]
fn what_lowering_reads_makes_it_lower_again() {
    let ws = Ws::new();
    ws.run(&[], 0);
    plan(&ws, &[]);

    // A new patch file changes the directory listing, and so the patch action.
    ws.write("kernel/6.6.x/patches/0002-empty.patch", "");
    assert!(!plan_both(&ws), "a new patch");

    // The manifest.
    ws.edit("kernel.kdl", "force-off \"CONFIG_PANIC_ON_OOPS\"", "");
    assert!(!plan_both(&ws), "a manifest edit");
    assert!(plan_both(&ws), "the same manifest again");

    // Another pattern keeps a graph of its own, and plans as lowering does.
    plan(&ws, &["//6.6.x:amd64"]);
    assert_eq!(kept(&ws).len(), 2);
    append(&ws, "kernel/6.6.x/config-x86_64", "# edited\n");
    assert_eq!(
        plan(&ws, &["//6.6.x:amd64"]),
        fresh_plan(&ws, &["//6.6.x:amd64"])
    );
}

#[test]
fn a_damaged_kept_graph_is_lowered_again() {
    let ws = Ws::new();
    ws.run(&[], 0);
    let good = plan(&ws, &[]);
    let files = kept(&ws);
    assert_eq!(files.len(), 1);
    let bytes = std::fs::read(&files[0]).unwrap();
    for damaged in [
        Vec::new(),
        bytes[..bytes.len() / 2].to_vec(),
        bytes.iter().map(|b| b ^ 0x5a).collect(),
    ] {
        std::fs::write(&files[0], damaged).unwrap();
        assert_eq!(plan(&ws, &[]), good);
    }
    // The graph is kept again after the damaged one.
    let before = kept_inode(&ws);
    assert_eq!(plan(&ws, &[]), good);
    assert_eq!(kept_inode(&ws), before, "restored");
}
