//! The engine end to end on a fake kernel: build, rebuild nothing, change one input at a time
//! and see exactly the dependent actions rerun, with `why` naming the change.

mod common;

use common::{Ws, make_tarball, manifest};

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn build_then_rebuild_executes_nothing() {
    let ws = Ws::new();
    let first = ws.run(&[], 0);
    assert_eq!(first.total("failed"), 0);
    assert_eq!(first.total("executed"), first.total("actions"));
    let second = ws.run(&[], 0);
    assert_eq!(second.executed(), Vec::<String>::new());
    assert_eq!(second.total("cached"), second.total("actions"));
    let image = ws.path().join("out/6.6.x/dbg-amd64");
    for file in [
        "kernel",
        "System.map",
        "vmlinux",
        "kernel.tar",
        "kernel-dev.tar",
        "kernel-headers.tar",
        "kernel-builder",
    ] {
        assert!(image.join(file).is_file(), "{file} missing from the image");
    }
    assert!(
        !ws.path().join("out/6.6.x/amd64/vmlinux").exists(),
        "plain images carry no vmlinux"
    );
    let builder = std::fs::read_to_string(image.join("kernel-builder")).unwrap();
    assert_eq!(
        builder,
        "linuxkit/alpine:1111111111111111111111111111111111111111"
    );
}

#[test]
fn changing_a_patch_reruns_the_tree_and_what_builds_from_it() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    ws.edit(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        "return 1;",
        "return 2;",
    );
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert_eq!(
        r.executed(),
        sorted(&[
            "patch //6.6.x",
            "configure //6.6.x:amd64",
            "check-config //6.6.x:amd64",
            "compile //6.6.x:amd64",
            "install //6.6.x:amd64",
            "headers //6.6.x:amd64",
            "snapshot //6.6.x",
            "layer //6.6.x",
            "package //6.6.x:amd64",
            "layer //6.6.x:amd64",
            "image //6.6.x:amd64",
            "index //6.6.x",
            "tag //6.6.x:amd64",
            "sbom //6.6.x:amd64",
            "attest //6.6.x:amd64",
        ])
    );
    let why = ws.why("//6.6.x:amd64");
    assert!(why.contains("patch //6.6.x: up to date; last ran because patch `kernel/6.6.x/patches/0001-init-say-hello.patch` changed (touches init/main.c)"), "{why}");
    assert!(why.contains("compile //6.6.x:amd64: up to date; last ran because dependency `patch //6.6.x` produced a new output"), "{why}");
}

#[test]
fn changing_a_config_line_reruns_that_config_only() {
    let ws = Ws::new();
    ws.run(&[], 0);
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=128",
    );
    let plan = ws.kbuild(&["plan", "//6.6.x:amd64"]);
    let text = String::from_utf8(plan.stdout).unwrap();
    assert!(
        text.contains(
            "run     configure //6.6.x:amd64  (CONFIG_NR_CPUS: 64 → 128 in kernel/6.6.x/config-x86_64)"
        ),
        "{text}"
    );
    let r = ws.run(&[], 0);
    // Building work reruns for the two targets made from config-x86_64 only (the provenance
    // names the file, so every attestation says so).
    let naming = ["tag", "image", "index", "attest"];
    let built: Vec<String> = r
        .executed()
        .into_iter()
        .filter(|n| !naming.iter().any(|k| n.starts_with(k)))
        .collect();
    let mut expected = Vec::new();
    for t in ["amd64", "dbg-amd64"] {
        for kind in [
            "configure",
            "check-config",
            "compile",
            "install",
            "package",
            "layer",
            "sbom",
        ] {
            expected.push(format!("{kind} //6.6.x:{t}"));
        }
    }
    expected.sort();
    assert_eq!(built, expected);
    // The tag hash covers every arch of a series and variant (as LinuxKit's does), so the arm64
    // images are renamed (and relabelled) too, without being rebuilt.
    for name in [
        "tag //6.6.x:arm64",
        "image //6.6.x:dbg-arm64",
        "index //6.6.x",
        "index //6.6.x:dbg",
    ] {
        assert!(r.executed().contains(&name.to_string()), "{name}");
    }
}

#[test]
fn changing_a_fragment_reruns_dbg_only() {
    let ws = Ws::new();
    ws.run(&[], 0);
    ws.write(
        "kernel/common/config-dbg",
        &format!("{}CONFIG_KASAN=y\n", common::DBG_FRAGMENT),
    );
    let r = ws.run(&[], 0);
    let executed = r.executed();
    assert!(executed.iter().all(|n| n.contains(":dbg")), "{executed:?}");
    assert_eq!(executed.len(), 21, "{executed:?}");
    assert!(executed.contains(&"tag //6.6.x:dbg-arm64".to_string()));
    let why = ws.why("//6.6.x:dbg-arm64");
    assert!(why.contains("configure //6.6.x:dbg-arm64: up to date; last ran because CONFIG_KASAN: unset → y in kernel/common/config-dbg"), "{why}");
}

#[test]
fn a_comment_that_changes_no_option_stops_at_configure() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:dbg-amd64"], 0);
    ws.write(
        "kernel/common/config-dbg",
        &format!("# debugging aids\n{}", common::DBG_FRAGMENT),
    );
    let r = ws.run(&["//6.6.x:dbg-amd64"], 0);
    // The check reads the fragment too, so it reruns, and the fragment's new content renames the
    // image and enters its provenance; compile sees identical outputs and does not run.
    assert_eq!(
        r.executed(),
        sorted(&[
            "attest //6.6.x:dbg-amd64",
            "configure //6.6.x:dbg-amd64",
            "tag //6.6.x:dbg-amd64",
            "image //6.6.x:dbg-amd64",
            "index //6.6.x:dbg",
            "check-config //6.6.x:dbg-amd64"
        ])
    );
}

#[test]
fn changing_the_version_and_the_builder_reruns_packaging() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:arm64"], 0);
    ws.edit(
        "kernel.kdl",
        "linuxkit/alpine:1111111111111111111111111111111111111111",
        "linuxkit/alpine:2222222222222222222222222222222222222222",
    );
    let r = ws.run(&["//6.6.x:arm64"], 0);
    assert_eq!(
        r.executed(),
        sorted(&[
            "package //6.6.x:arm64",
            "layer //6.6.x:arm64",
            "image //6.6.x:arm64",
            "index //6.6.x",
            "tag //6.6.x:arm64",
            "sbom //6.6.x:arm64",
            "attest //6.6.x:arm64"
        ])
    );
    let why = ws.why("//6.6.x:arm64");
    assert!(why.contains("parameter `builder` changed (`linuxkit/alpine:1111111111111111111111111111111111111111` → `linuxkit/alpine:2222222222222222222222222222222222222222`)"), "{why}");

    // A version bump brings a new tarball: everything from the fetch on reruns.
    let (tar, sha) = make_tarball(&ws.path().join("sources"), "6.6.72");
    let text = manifest(&format!("file://{}", tar.display()), &sha, "6.6.72").replace(
        "linuxkit/alpine:1111111111111111111111111111111111111111",
        "linuxkit/alpine:2222222222222222222222222222222222222222",
    );
    ws.write("kernel.kdl", &text);
    let plan = String::from_utf8(ws.kbuild(&["plan", "//6.6.x:arm64"]).stdout).unwrap();
    assert!(plan.contains("run     fetch linux-6.6.72.tar@"), "{plan}");
    assert!(
        plan.contains("(never built)") || plan.contains("parameter `"),
        "{plan}"
    );
    let r = ws.run(&["//6.6.x:arm64"], 0);
    assert!(
        r.executed()
            .iter()
            .any(|n| n.starts_with("fetch linux-6.6.72.tar"))
    );
    assert!(r.executed().contains(&"tag //6.6.x:arm64".to_string()));
}

#[test]
fn plain_and_dbg_share_fetch_and_patch() {
    let ws = Ws::new();
    let out = ws.kbuild(&[
        "plan",
        "--format",
        "json",
        "//6.6.x:amd64",
        "//6.6.x:dbg-amd64",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    let count = |kind: &str| actions.iter().filter(|a| a["kind"] == kind).count();
    assert_eq!(
        (count("fetch"), count("patch"), count("headers")),
        (1, 1, 1)
    );
    assert_eq!((count("configure"), count("compile")), (2, 2));
    let patch = actions.iter().find(|a| a["kind"] == "patch").unwrap();
    assert_eq!(patch["labels"].as_array().unwrap().len(), 2);
    assert!(
        actions
            .iter()
            .all(|a| a["state"] == "run" && a["reason"].is_string())
    );
    let r = ws.run(&["//6.6.x:amd64", "//6.6.x:dbg-amd64"], 0);
    assert_eq!(
        r.executed()
            .iter()
            .filter(|n| n.starts_with("patch "))
            .count(),
        1
    );
}

#[test]
fn a_failing_action_leaves_no_cache_entry_and_is_retried() {
    let ws = Ws::new();
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_FAIL=y\n",
    );
    // One job at a time, so that "the first failure" is one action.
    let r = ws.run(&["-j1"], 1);
    assert_eq!(
        r.failed(),
        sorted(&["compile //6.6.x:dbg-amd64"]),
        "the first failure stops the run"
    );
    assert!(
        r.stderr
            .contains("error: `compile //6.6.x:dbg-amd64` failed"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("CONFIG_FAKE_FAIL is set"),
        "the log tail is shown: {}",
        r.stderr
    );
    let again = ws.run(&["--keep-going"], 1);
    assert_eq!(
        again.failed(),
        sorted(&["compile //6.6.x:dbg-amd64", "compile //6.6.x:dbg-arm64"])
    );
    assert!(
        again.executed().contains(&"tag //6.6.x:amd64".to_string()),
        "keep-going builds the rest"
    );
    let why = ws.why("//6.6.x:dbg-amd64");
    assert!(why.contains("compile //6.6.x:dbg-amd64: will run: its inputs are unchanged but no cache entry exists"), "{why}");
    ws.write("kernel/common/config-dbg", common::DBG_FRAGMENT);
    let fixed = ws.run(&[], 0);
    assert_eq!(fixed.total("failed"), 0);
}

#[test]
fn a_corrupt_blob_is_detected_and_rebuilt() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    // Corrupt the blob of the patched init/main.c, which the compile reads from the tree.
    let mut corrupted = 0;
    for blob in walk(&ws.cache.join("blobs")) {
        if std::fs::read_to_string(&blob).is_ok_and(|t| t.contains("return 1;")) {
            let mut perms = std::fs::metadata(&blob).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&blob, perms).unwrap();
            std::fs::write(&blob, "int start_kernel(void) { return 666; }\n").unwrap();
            corrupted += 1;
        }
    }
    assert_eq!(corrupted, 1);
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=32",
    );
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert!(r.stderr.contains("is corrupt or missing"), "{}", r.stderr);
    assert!(
        r.stderr.contains("evicting `patch //6.6.x`"),
        "{}",
        r.stderr
    );
    assert!(r.executed().contains(&"patch //6.6.x".to_string()));
    let kernel = std::fs::read_to_string(ws.path().join("out/6.6.x/amd64/kernel")).unwrap();
    let clean = Ws::new();
    clean.edit(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=32",
    );
    clean.run(&["//6.6.x:amd64"], 0);
    let expected = std::fs::read_to_string(clean.path().join("out/6.6.x/amd64/kernel")).unwrap();
    assert_eq!(
        kernel, expected,
        "the rebuilt kernel never saw the corrupt file"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

#[test]
fn two_concurrent_runs_on_one_cache_agree() {
    let ws = Ws::new();
    let spawn = || {
        ws.command(&["run", "--format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let keys = |out: &[u8]| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_slice(out).unwrap();
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].to_string(), a["key"].to_string()))
            .collect()
    };
    assert_eq!(keys(&a.stdout), keys(&b.stdout));
    let after = ws.run(&[], 0);
    assert!(after.executed().is_empty());
}

#[test]
fn identical_inputs_in_empty_caches_give_identical_outputs() {
    let (a, b) = (Ws::new(), Ws::new());
    a.run(&["//6.6.x:dbg-arm64"], 0);
    b.run(&["//6.6.x:dbg-arm64"], 0);
    for file in [
        "kernel",
        "kernel.tar",
        "kernel-dev.tar",
        "kernel-headers.tar",
        "vmlinux",
    ] {
        let read =
            |ws: &Ws| std::fs::read(ws.path().join("out/6.6.x/dbg-arm64").join(file)).unwrap();
        assert_eq!(read(&a), read(&b), "{file} differs");
    }
    // And so the images: the same manifest and index digests under the same references.
    assert_eq!(a.read("out/index.json"), b.read("out/index.json"));
}

#[test]
fn dry_run_executor_records_and_fakes_outputs() {
    let ws = Ws::new();
    let out = ws.kbuild(&["run", "--executor", "dry-run", "//6.6.x:perf-amd64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("executed"), "{stderr}");
}

#[test]
fn tags_name_the_image_by_content() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:dbg-amd64"], 0);
    let tags = ws.read("out/6.6.x/dbg-amd64.tags");
    let lines: Vec<&str> = tags.lines().collect();
    assert_eq!(lines[0], "linuxkit/kernel:6.6.71-dbg-amd64");
    assert!(
        lines[1].starts_with("linuxkit/kernel:6.6.71-dbg-")
            && lines[1].ends_with("-amd64")
            && lines[1].len() == "linuxkit/kernel:6.6.71-dbg--amd64".len() + 40
    );
}

#[test]
fn plan_renders_as_dot_and_json() {
    let ws = Ws::new();
    let dot = String::from_utf8(
        ws.kbuild(&["plan", "--format", "dot", "//6.6.x:amd64"])
            .stdout,
    )
    .unwrap();
    assert!(dot.starts_with("digraph kbuild {"), "{dot}");
    assert!(dot.contains("[label=\"compile //6.6.x:amd64\"]"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 32, "{dot}");
    ws.run(&["//6.6.x:amd64"], 0);
    let out = ws.kbuild(&["plan", "--format", "json", "//6.6.x:amd64"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for action in plan["actions"].as_array().unwrap() {
        assert_eq!(action["state"], "cached");
        assert_eq!(action["key"].as_str().unwrap().len(), 64);
        assert!(action["labels"][0] == "//6.6.x:amd64");
    }
}

#[test]
fn a_dropped_fragment_option_is_named_with_its_unmet_dependency() {
    let ws = Ws::new();
    ws.write(
        "kernel/common/config-dbg",
        "CONFIG_DEBUG_KERNEL=y\n# CONFIG_NET is not set\nCONFIG_VETH=y\n",
    );
    let r = ws.run(&["//6.6.x:dbg-amd64"], 1);
    assert_eq!(
        r.failed(),
        vec!["check-config //6.6.x:dbg-amd64".to_string()]
    );
    assert!(
        r.stderr
            .contains("kernel/common/config-dbg:3: CONFIG_VETH=y requested, resolved n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("unmet: depends on NET (off: NET)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_wrong_full_config_fails_with_an_option_level_diff() {
    let ws = Ws::new();
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_DEBUG_INFO is not set",
        "CONFIG_DEBUG_INFO=y",
    );
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(
        r.stderr.contains(
            "`kernel/6.6.x/config-x86_64` is not what Kconfig resolves (1 options differ)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("CONFIG_DEBUG_INFO: wanted y, resolved n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("kbuild config update //6.6.x:amd64"),
        "{}",
        r.stderr
    );
    let dbg = ws.kbuild(&["config", "update", "//6.6.x:dbg-amd64"]);
    assert_eq!(dbg.status.code(), Some(2), "variants are refused");
    let update = ws.kbuild(&["config", "update", "//6.6.x:amd64"]);
    assert!(
        update.status.success(),
        "{}",
        String::from_utf8_lossy(&update.stderr)
    );
    assert!(
        ws.read("kernel/6.6.x/config-x86_64")
            .contains("# CONFIG_DEBUG_INFO is not set")
    );
    ws.run(&["//6.6.x:amd64"], 0);
}

#[test]
fn a_patch_that_does_not_apply_names_the_hunk() {
    let ws = Ws::new();
    ws.edit(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        "-int start_kernel(void) { return 0; }",
        "-int start_kernel(void) { return 9; }",
    );
    let r = ws.run(&["//6.6.x:amd64"], 1);
    assert!(r.stderr.contains("patch `kernel/6.6.x/patches/0001-init-say-hello.patch` does not apply: hunk #1 FAILED at 1 of `init/main.c`"), "{}", r.stderr);
}

#[test]
fn llvm_builds_without_a_cross_prefix() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:arm64"], 0);
    ws.edit(
        "kernel.kdl",
        "    org \"linuxkit\"",
        "    org \"linuxkit\"\n    llvm #true",
    );
    let plan = String::from_utf8(ws.kbuild(&["plan", "//6.6.x:arm64"]).stdout).unwrap();
    assert!(plan.contains("run     configure //6.6.x:arm64  (environment `CROSS_COMPILE` changed (aarch64-linux-gnu- → unset))"), "{plan}");
    assert!(
        !plan.contains("run     patch"),
        "unpacking and patching do not use the compiler: {plan}"
    );
}

#[test]
fn tag_hashes_follow_content_not_edits() {
    let ws = Ws::new();
    let tags = |ws: &Ws| -> serde_json::Value {
        serde_json::from_slice(
            &ws.kbuild(&[
                "tags",
                "--format",
                "json",
                "//6.6.x:amd64",
                "//6.6.x:dbg-amd64",
            ])
            .stdout,
        )
        .unwrap()
    };
    let before = tags(&ws);
    assert_eq!(before[0]["index"][0], "linuxkit/kernel:6.6.71");
    assert_eq!(before[1]["arch"][0], "linuxkit/kernel:6.6.71-dbg-amd64");
    let hash = |v: &serde_json::Value, i: usize| common::content_hash(&v[i]);
    assert_ne!(hash(&before, 0), hash(&before, 1), "plain and dbg differ");

    // Two different edits give two different hashes; undoing an edit gives the old hash back.
    ws.edit(
        "kernel/6.6.x/config-aarch64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=8",
    );
    let first = tags(&ws);
    ws.edit(
        "kernel/6.6.x/config-aarch64",
        "CONFIG_NR_CPUS=8",
        "CONFIG_NR_CPUS=16",
    );
    let second = tags(&ws);
    assert_ne!(
        hash(&first, 0),
        hash(&before, 0),
        "an arm64 config edit renames the whole series' images"
    );
    assert_ne!(hash(&first, 0), hash(&second, 0));
    ws.edit(
        "kernel/6.6.x/config-aarch64",
        "CONFIG_NR_CPUS=16",
        "CONFIG_NR_CPUS=64",
    );
    assert_eq!(hash(&tags(&ws), 0), hash(&before, 0));

    // Read off the whole graph (everything requested) or lowered for the group alone: the same.
    ws.run(&[], 0);
    let written = ws.read("out/6.6.x/amd64.tags");
    assert!(
        written.contains(&format!(
            "linuxkit/kernel:6.6.71-{}-amd64",
            hash(&before, 0)
        )),
        "{written}"
    );
}

#[test]
fn a_config_edit_that_resolves_the_same_does_not_compile() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    // The same options, written as a minimal defconfig: configure and the check run (differently),
    // the resolved config is the same, so compile does not run.
    ws.write(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_VETH=y\nCONFIG_BRIDGE=y\nCONFIG_OVERLAY_FS=y\n",
    );
    let r = ws.run(&["//6.6.x:amd64"], 0);
    let executed = r.executed();
    assert!(
        executed.contains(&"check-config //6.6.x:amd64".to_string()),
        "{executed:?}"
    );
    assert!(
        !executed
            .iter()
            .any(|n| n.starts_with("compile") || n.starts_with("install")),
        "{executed:?}"
    );
}

#[test]
fn cache_verify_finds_and_removes_corrupt_blobs() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    assert_eq!(ws.kbuild(&["cache", "verify"]).status.code(), Some(0));
    let blob = walk(&ws.cache.join("blobs"))
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("return 1;")))
        .unwrap();
    let mut perms = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&blob, perms).unwrap();
    std::fs::write(&blob, "garbage").unwrap();
    // Found and repaired is exit 0; only what cannot be repaired is 1.
    let out = ws.kbuild(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("removed:") && stdout.contains("blob does not hold"),
        "{stdout}"
    );
    assert!(!blob.exists());
    let again = ws.kbuild(&["cache", "verify"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains(" 0 problem(s)"));
}

#[test]
fn targets_of_one_tree_share_a_source_tree_linked_to_the_cache() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64", "//6.6.x:dbg-amd64"], 0);
    let builds: Vec<_> = std::fs::read_dir(ws.cache.join("build"))
        .unwrap()
        .map(|e| e.unwrap().path().join("6.6.x"))
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    let series = &builds[0];
    assert!(!series.join("amd64/src").exists());
    assert!(series.join("amd64/obj").is_dir());
    assert!(series.join("dbg-amd64/obj").is_dir());
    let main_c = series.join("src/init/main.c");
    let links = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().nlink()
    };
    assert!(
        links(&main_c) > 1,
        "the first fill links files from the cache"
    );
    let before: Vec<String> = ["amd64", "dbg-amd64"]
        .iter()
        .map(|t| ws.read(&format!("out/6.6.x/{t}/kernel")))
        .collect();

    // A changed file becomes a private copy, and both targets see it.
    ws.write(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        &common::PATCH.replace("return 1;", "return 2;"),
    );
    ws.run(&["//6.6.x:amd64", "//6.6.x:dbg-amd64"], 0);
    assert_eq!(links(&main_c), 1);
    assert!(
        std::fs::read_to_string(&main_c)
            .unwrap()
            .contains("return 2;")
    );
    for (t, old) in ["amd64", "dbg-amd64"].iter().zip(before) {
        assert_ne!(ws.read(&format!("out/6.6.x/{t}/kernel")), old, "{t}");
    }
}

/// The entry names of a tar blob in the layout, gunzipped when its media type says so.
fn layer_entries(ws: &Ws, layer: &serde_json::Value) -> Vec<String> {
    let hex = layer["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let file = std::fs::File::open(ws.path().join("out/blobs/sha256").join(hex)).unwrap();
    let reader: Box<dyn std::io::Read> = if layer["mediaType"].as_str().unwrap().ends_with("+gzip")
    {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn images_of_one_tree_share_an_uncompressed_source_layer() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64", "//6.6.x:dbg-arm64"], 0);
    let mut sources = Vec::new();
    for name in [
        "linuxkit/kernel:6.6.71-amd64",
        "linuxkit/kernel:6.6.71-dbg-arm64",
    ] {
        let manifest = ws.layout_blob(ws.layout_entry(name)["digest"].as_str().unwrap());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2, "{manifest}");
        assert_eq!(
            layers[0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar"
        );
        assert_eq!(
            layers[1]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(layer_entries(&ws, &layers[0]), ["linux.tar.xz"]);
        let own = layer_entries(&ws, &layers[1]);
        assert!(own.iter().any(|e| e == "kernel") && !own.iter().any(|e| e == "linux.tar.xz"));
        // The config lists the layers' uncompressed digests in the same order.
        let config = ws.layout_blob(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["rootfs"]["diff_ids"][0], layers[0]["digest"]);
        assert_ne!(config["rootfs"]["diff_ids"][1], layers[1]["digest"]);
        sources.push(layers[0]["digest"].clone());
    }
    assert_eq!(sources[0], sources[1], "one source layer for both");
}

#[test]
fn without_the_source_snapshot_an_image_is_one_layer_and_no_xz_runs() {
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        "    org \"linuxkit\"\n",
        "    org \"linuxkit\"\n    source-snapshot #false\n",
    );
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        !r.executed()
            .iter()
            .any(|n| n.starts_with("snapshot") || n == "layer //6.6.x"),
        "{:?}",
        r.executed()
    );
    assert!(!ws.path().join("out/6.6.x/amd64/linux.tar.xz").exists());
    assert!(ws.path().join("out/6.6.x/amd64/kernel.tar").exists());
    let entry = ws.layout_entry("linuxkit/kernel:6.6.71-amd64");
    let manifest = ws.layout_blob(entry["digest"].as_str().unwrap());
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let files = layer_entries(&ws, &layers[0]);
    assert!(files.iter().any(|e| e == "kernel") && !files.iter().any(|e| e == "linux.tar.xz"));
}

/// A manifest with `rt` and `dbg`, declared in either order, building both composed.
fn rt_and_dbg(ws: &Ws, rt_first: bool) {
    let rt = "variant \"rt\" {\n    fragment \"kernel/{series}-rt/config-{arch}\"\n    localversion \"-rt\"\n}\n\n";
    let mut kdl = ws.read("kernel.kdl");
    let at = kdl.find("variant \"dbg\"").unwrap();
    if rt_first {
        kdl.insert_str(at, rt);
    } else {
        let tool = kdl.find("tool \"perf\"").unwrap();
        kdl.insert_str(tool, rt);
    }
    let kdl = kdl.replace(
        "    variants \"dbg\"\n",
        "    variants \"dbg\" \"dbg-rt\"\n",
    );
    ws.write("kernel.kdl", &kdl);
    for arch in ["x86_64", "aarch64"] {
        ws.write(
            &format!("kernel/6.6.x-rt/config-{arch}"),
            "CONFIG_BRIDGE=y\n",
        );
    }
}

/// Labels, tags and LOCALVERSION spell a composed set as LinuxKit does, `rt-dbg`, whether rt or
/// dbg comes first in kernel.kdl (doc/manifest.md).
#[test]
fn composed_variants_are_spelled_rt_dbg_in_any_declaration_order() {
    for rt_first in [true, false] {
        let ws = Ws::new();
        rt_and_dbg(&ws, rt_first);
        let out = ws.kbuild(&["list"]);
        let list = String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            list.contains("//6.6.x:rt-dbg-amd64") && !list.contains("dbg-rt"),
            "{list}"
        );
        let tags = ws.kbuild(&["tags", "//6.6.x:dbg-rt-amd64"]);
        let tags = String::from_utf8(tags.stdout).unwrap() + &String::from_utf8_lossy(&tags.stderr);
        assert!(
            tags.contains("linuxkit/kernel:6.6.71-rt-dbg-amd64"),
            "{tags}"
        );
        ws.run(&["//6.6.x:rt-dbg-amd64"], 0);
        let kernel_tar =
            std::fs::read(ws.path().join("out/6.6.x/rt-dbg-amd64/kernel.tar")).unwrap();
        let mut archive = tar::Archive::new(kernel_tar.as_slice());
        let release = archive
            .entries()
            .unwrap()
            .filter_map(|e| {
                let path = e.unwrap().path().unwrap().into_owned();
                let mut parts = path.iter().map(|p| p.to_string_lossy().into_owned());
                (parts.next()? == "lib" && parts.next()? == "modules").then(|| parts.next())?
            })
            .next()
            .unwrap();
        assert_eq!(release, "6.6.71-linuxkit-rt-dbg", "rt first: {rt_first}");
    }
}

/// A variant for some arches only: its sets are targets on those, its fragments are needed only
/// there, and a label for another arch names no target.
#[test]
fn a_variant_with_arches_builds_only_there() {
    let ws = Ws::new();
    rt_and_dbg(&ws, true);
    ws.edit(
        "kernel.kdl",
        "    localversion \"-rt\"\n",
        "    localversion \"-rt\"\n    arches \"x86_64\"\n",
    );
    std::fs::remove_file(ws.path().join("kernel/6.6.x-rt/config-aarch64")).unwrap();
    let out = ws.kbuild(&["list"]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        list.contains("//6.6.x:rt-dbg-amd64")
            && !list.contains("rt-arm64")
            && !list.contains("rt-dbg-arm64"),
        "{list}"
    );
    let out = ws.kbuild(&["plan", "//6.6.x:rt-arm64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no target matches `//6.6.x:rt-arm64`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `.done` stamp of the cache's patched tree (the one holding `tree/`) and its mtime: the
/// stamp moves when the tree was hashed again.
fn patched_tree_stamp(ws: &Ws) -> std::time::SystemTime {
    let trees = ws.cache.join("trees");
    let tree = std::fs::read_dir(&trees)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("tree").is_dir())
        .expect("a patched tree");
    let stamp = trees.join(format!("{}.done", tree.file_name().to_string_lossy()));
    std::fs::metadata(stamp).unwrap().modified().unwrap()
}

/// The kept source tree hard-links the patched tree's files, which changes their ctime; the
/// next run must not take that for a change and hash the whole tree (1.3 GB for a real kernel)
/// again.
#[test]
fn the_kept_source_tree_does_not_make_the_next_run_hash_the_tree_again() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let before = patched_tree_stamp(&ws);
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=65",
    );
    let report = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        report
            .executed()
            .contains(&"compile //6.6.x:amd64".to_string())
    );
    assert_eq!(patched_tree_stamp(&ws), before, "the tree was hashed again");
}

/// Every tree's stamp, by tree: a check that hashed a file again moves its tree's stamp.
fn tree_stamps(ws: &Ws) -> std::collections::BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(ws.cache.join("trees"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".done"))
        .map(|e| {
            let made = e.metadata().unwrap().modified().unwrap();
            (e.file_name().to_string_lossy().into_owned(), made)
        })
        .collect()
}

/// Packaging links `linux.tar.xz` and `kernel-headers.tar` out of their trees, an image links
/// the source layer, storing outputs unlinks them, and `out/` links the layers: each moves the
/// file's ctime. The ledger of those ctimes (src/ledger.rs) keeps the next run from taking them
/// for changes and hashing the files again; a file changed behind kbuild's back still is.
#[test]
fn kbuilds_own_links_do_not_make_the_next_run_hash_trees_again() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let option = |n: u32| {
        let text = ws.read("kernel/6.6.x/config-x86_64");
        let start = text.find("CONFIG_NR_CPUS=").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        ws.edit(
            "kernel/6.6.x/config-x86_64",
            &text[start..end],
            &format!("CONFIG_NR_CPUS={n}"),
        );
    };
    option(65);
    ws.run(&["//6.6.x:amd64"], 0);
    let before = tree_stamps(&ws);
    std::thread::sleep(std::time::Duration::from_millis(20));
    option(66);
    let report = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        report
            .executed()
            .contains(&"package //6.6.x:amd64".to_string())
    );
    let after = tree_stamps(&ws);
    let moved: Vec<&String> = before
        .iter()
        .filter(|(tree, made)| after.get(*tree) != Some(made))
        .map(|(tree, _)| tree)
        .collect();
    let listing: Vec<String> = moved
        .iter()
        .flat_map(|t| {
            common::files_under(&ws.cache.join("trees").join(t.trim_end_matches(".done")))
        })
        .map(|p| p.display().to_string())
        .take(10)
        .collect();
    assert!(
        moved.is_empty(),
        "trees hashed again: {moved:?} {listing:?}"
    );

    // A link made behind kbuild's back is not vouched for: that tree is hashed again.
    let snapshot = common::files_under(&ws.cache.join("trees"))
        .into_iter()
        .find(|p| p.ends_with("linux.tar.xz"))
        .unwrap();
    std::fs::hard_link(&snapshot, ws.path().join("stray-link")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    option(67);
    ws.run(&["//6.6.x:amd64"], 0);
    let again = tree_stamps(&ws);
    let moved = after
        .iter()
        .filter(|(tree, made)| again.get(*tree) != Some(made))
        .count();
    assert!(
        moved >= 1,
        "a tree holding the stray link was checked by hashing"
    );
}
