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

/// Three series on one tarball (one fetch, shared), 6.12.x alone with kasan and perf.
fn three_series() -> Ws {
    let ws = Ws::new();
    let source = ws.source_line();
    for series in ["6.1.x", "6.12.x"] {
        for arch in ["x86_64", "aarch64"] {
            let config = ws.read(&format!("kernel/6.6.x/config-{arch}"));
            ws.write(&format!("kernel/{series}/config-{arch}"), &config);
        }
    }
    ws.write("kernel/common/config-kasan", "CONFIG_KASAN=y\n");
    let kdl = ws.read("kernel.kdl")
        + &format!(
            "variant \"kasan\" {{\n    fragment \"kernel/common/config-kasan\"\n    localversion \"-kasan\"\n}}\n\
             series \"6.1.x\" {{\n    version \"6.1.71\"\n{source}\n    variants \"dbg\"\n}}\n\
             series \"6.12.x\" {{\n    version \"6.12.71\"\n{source}\n    variants \"dbg\" \"kasan\"\n    tools \"perf\"\n}}\n"
        );
    ws.write("kernel.kdl", &kdl);
    ws
}

/// The graph of every target of the workspace, through the kept graph in `cache`, and how
/// it was come by.
fn lower_in(ws: &Ws, cache: &std::path::Path) -> (kbuild::graph::Graph, kbuild::lowered::Lowering) {
    let model = kbuild::manifest::load(ws.path()).unwrap();
    let targets = kbuild::label::resolve(&model, &[]).unwrap();
    let dirs = kbuild::plan::read_patch_dirs(&model, &targets).unwrap();
    let mut stat = kbuild::statcache::StatCache::open(cache).unwrap();
    let goal = kbuild::plan::Goal::Build;
    let patterns: Vec<String> = Vec::new();
    kbuild::lowered::lower(
        &model,
        (&targets, &dirs, goal),
        (cache, &patterns),
        &mut stat,
        &mut |e| panic!("{e}"),
    )
    .unwrap()
}

/// Every action as a line: name, labels, dependencies by role and name, arch, builder and its
/// own part of the key (kind, recipe with the tag hash, environment).
fn describe(graph: &kbuild::graph::Graph) -> Vec<String> {
    (graph.ids())
        .map(|id| {
            let a = graph.action(id);
            let labels: Vec<String> = a.labels.iter().map(ToString::to_string).collect();
            let deps: Vec<String> = (a.deps.iter())
                .map(|d| format!("{}={}", d.role.as_str(), graph.action(d.id).name))
                .collect();
            format!(
                "{} {labels:?} {deps:?} {:?} {:?} {}",
                a.name,
                a.arch,
                a.builder,
                graph.own_part(id)
            )
        })
        .collect()
}

/// Lowers through the kept graph and from nothing (another cache), checks both graphs are the
/// same action for action, and says which series the kept graph's lowering lowered again
/// (`None`: it restored the graph whole).
fn lowered_again(ws: &Ws) -> Option<Vec<String>> {
    let fresh_cache = tempfile::tempdir().unwrap();
    let (fresh, _) = lower_in(ws, fresh_cache.path());
    let (graph, how) = lower_in(ws, &ws.cache);
    assert_eq!(describe(&graph), describe(&fresh), "{how:?}");
    match how {
        kbuild::lowered::Lowering::Restored => None,
        kbuild::lowered::Lowering::Spliced { lowered, .. } => Some(lowered),
    }
}

#[test]
fn a_manifest_edit_lowers_again_only_the_series_it_reaches_and_the_graph_is_a_full_lowerings() {
    let ws = three_series();
    let all = || Some(vec!["6.6.x".to_string(), "6.1.x".into(), "6.12.x".into()]);
    let only = |s: &str| Some(vec![s.to_string()]);
    assert_eq!(lowered_again(&ws), all(), "nothing kept yet");
    assert_eq!(lowered_again(&ws), None, "nothing changed");

    // A stable bump of one series.
    ws.edit("kernel.kdl", "version \"6.1.71\"", "version \"6.1.72\"");
    assert_eq!(lowered_again(&ws), only("6.1.x"));
    assert_eq!(lowered_again(&ws), None);

    // A variant only one series builds, and a tool only one series has.
    ws.edit(
        "kernel.kdl",
        "localversion \"-kasan\"",
        "localversion \"-kasan2\"",
    );
    assert_eq!(lowered_again(&ws), only("6.12.x"));
    ws.edit(
        "kernel.kdl",
        "binary \"perf\"",
        "binary \"perf\"\n    args \"V=1\"",
    );
    assert_eq!(
        lowered_again(&ws),
        Some(vec!["6.6.x".into(), "6.12.x".into()])
    );

    // A new patch in one series' directory; a new series; a series gone.
    ws.write("kernel/6.12.x/patches/0001-empty.patch", "");
    assert_eq!(lowered_again(&ws), only("6.12.x"));
    let source = ws.source_line();
    for arch in ["x86_64", "aarch64"] {
        let config = ws.read(&format!("kernel/6.6.x/config-{arch}"));
        ws.write(&format!("kernel/6.18.x/config-{arch}"), &config);
    }
    let grown = ws.read("kernel.kdl")
        + &format!("series \"6.18.x\" {{\n    version \"6.18.1\"\n{source}\n}}\n");
    ws.write("kernel.kdl", &grown);
    assert_eq!(lowered_again(&ws), only("6.18.x"));
    ws.edit(
        "kernel.kdl",
        "series \"6.1.x\" {",
        "series \"6.1.x\" {\n    deprecated #true",
    );
    assert_eq!(
        lowered_again(&ws),
        Some(vec![]),
        "what is left is taken whole"
    );

    // A declaration every series reads: all of them.
    ws.edit("kernel.kdl", "org \"linuxkit\"", "org \"example\"");
    assert_eq!(
        lowered_again(&ws),
        Some(vec!["6.6.x".into(), "6.12.x".into(), "6.18.x".into()])
    );

    // The kept graph answers the CLI's plan too, as a fresh lowering would.
    ws.edit("kernel.kdl", "version \"6.12.71\"", "version \"6.12.72\"");
    assert!(!plan_both(&ws), "lowered again, spliced");
}

#[test]
fn a_series_whose_shared_fetch_another_lowered_otherwise_is_not_spliced() {
    // Two series name the same tarball and pin with other mirrors: one fetch, the first
    // series' (its URLs). The second's own lowering of it differs, so the graph does not hold
    // its segment as lowered, and it is lowered again whenever the graph is put together.
    let ws = three_series();
    let source = ws.source_line();
    let url = source.split('"').nth(1).unwrap().to_string();
    let mirrored = source.replace(
        &format!("\"{url}\""),
        &format!("\"{url}\" \"{url}?mirror\""),
    );
    let text = ws.read("kernel.kdl");
    let at = text.find("series \"6.1.x\"").unwrap();
    let (head, tail) = text.split_at(at);
    ws.write(
        "kernel.kdl",
        &(head.to_string() + &tail.replacen(&source, &mirrored, 1)),
    );
    assert_eq!(lowered_again(&ws).map(|l| l.len()), Some(3));
    ws.edit("kernel.kdl", "version \"6.12.71\"", "version \"6.12.72\"");
    assert_eq!(
        lowered_again(&ws),
        Some(vec!["6.1.x".to_string(), "6.12.x".into()]),
        "6.1.x is never taken from the kept graph"
    );
    // With the first series gone, 6.1.x's fetch is its own: taking its segment as kept (with
    // 6.6.x's fetch) would plan other URLs than a full lowering (checked inside).
    ws.edit(
        "kernel.kdl",
        "series \"6.6.x\" {",
        "series \"6.6.x\" {\n    deprecated #true",
    );
    assert_eq!(lowered_again(&ws), Some(vec!["6.1.x".to_string()]));
}
