//! Maintainer commands on fake-kernel workspaces: update-refs, kconfig, patches, bump,
//! new-series, import-linuxkit.

mod common;

use std::process::Command;

use common::{Ws, make_tarball};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test workspace plus a second, older series (6.1.x) and a deprecated one (5.15.x).
fn two_series() -> Ws {
    let ws = Ws::new();
    let text = ws.read("kernel.kdl");
    let series = &text[text.find("series \"6.6.x\"").unwrap()..];
    let older = series
        .replace("series \"6.6.x\"", "series \"6.1.x\"")
        .replace("version \"6.6.71\"", "version \"6.1.100\"")
        .replace("    tools \"perf\"\n", "");
    let retired = "series \"5.15.x\" {\n    version \"5.15.170\"\n    source \"https://cdn.kernel.org/pub/linux/kernel/v5.x/linux-5.15.170.tar.xz\"\n    deprecated\n}\n";
    ws.write("kernel.kdl", &format!("{text}\n{older}\n{retired}"));
    for arch in ["x86_64", "aarch64"] {
        ws.write(
            &format!("kernel/6.1.x/config-{arch}"),
            &ws.read(&format!("kernel/6.6.x/config-{arch}")),
        );
    }
    ws
}

fn git(ws: &Ws, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(ws.path())
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs kbuild with `args`, which must fail with `says` on stderr.
fn fails_saying(ws: &Ws, args: &[&str], says: &str) {
    let out = ws.kbuild(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
}

fn hash_of(ws: &Ws, label: &str) -> String {
    let out = ws.kbuild(&["tags", "--format", "json", label]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    common::content_hash(&v[0])
}

#[test]
fn update_refs_moves_references_and_nothing_else() {
    let ws = two_series();
    let old = "0".repeat(40);
    let h66 = hash_of(&ws, "//6.6.x:amd64");
    let h61dbg = hash_of(&ws, "//6.1.x:dbg-amd64");
    let perf = hash_of(&ws, "//6.6.x:perf-amd64");
    ws.write(
        "test/cases/000_kernel/test.yml",
        &format!("kernel:\n  image: linuxkit/kernel:6.6.9-{old}\n  # pinned series, dbg, arch: linuxkit/kernel:6.1.9-dbg-{old}-arm64\ninit:\n  - linuxkit/kernel-perf:6.6.9\n  - linuxkit/kernel:6.1.9\n  - notlinuxkit/kernel:6.1.9\n  - linuxkit/kernel:6.1.9-builder\n  - linuxkit/kernel:5.15.9-{old}\n"),
    );
    ws.write(
        "pkg/Dockerfile",
        "FROM linuxkit/kernel:6.1.9 AS ksrc\r\nRUN true\r\n",
    );
    ws.write("vendor/x/test.yml", "image: linuxkit/kernel:6.1.9\n");
    ws.write("docs/README.md", "linuxkit/kernel:6.1.9\n");
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);

    let check = ws.kbuild(&["update-refs", "--check"]);
    assert_eq!(check.status.code(), Some(1), "something would change");
    assert!(
        stdout(&check).contains(&format!(
            "test/cases/000_kernel/test.yml:2: -linuxkit/kernel:6.6.9-{old}"
        )),
        "{}",
        stdout(&check)
    );
    assert!(
        ws.read("pkg/Dockerfile").contains("6.1.9"),
        "--check changes nothing"
    );

    let run = ws.kbuild(&["update-refs"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let yml = ws.read("test/cases/000_kernel/test.yml");
    assert_eq!(
        yml,
        format!(
            "kernel:\n  image: linuxkit/kernel:6.6.71-{h66}\n  # pinned series, dbg, arch: linuxkit/kernel:6.1.100-dbg-{h61dbg}-arm64\ninit:\n  - linuxkit/kernel-perf:6.6.71\n  - linuxkit/kernel:6.6.71\n  - notlinuxkit/kernel:6.1.9\n  - linuxkit/kernel:6.1.9-builder\n  - linuxkit/kernel:5.15.9-{old}\n"
        )
    );
    assert_eq!(
        ws.read("pkg/Dockerfile"),
        "FROM linuxkit/kernel:6.6.71 AS ksrc\r\nRUN true\r\n",
        "CRLF kept"
    );
    assert_eq!(
        ws.read("vendor/x/test.yml"),
        "image: linuxkit/kernel:6.1.9\n"
    );
    assert_eq!(ws.read("docs/README.md"), "linuxkit/kernel:6.1.9\n");
    assert!(!perf.is_empty());
    assert_eq!(
        ws.kbuild(&["update-refs", "--check"]).status.code(),
        Some(0)
    );
}

/// Found by trying update-refs on LinuxKit's tree: digest pins, Docker Hub's long names,
/// files that are not UTF-8, and paths that are not in the workspace.
#[test]
fn update_refs_keeps_pins_reads_docker_io_and_bytes_and_refuses_stray_paths() {
    let ws = two_series();
    let old = "0".repeat(40);
    let h66 = hash_of(&ws, "//6.6.x:amd64");
    let pinned = format!("linuxkit/kernel:6.6.9-{old}@sha256:{}", "1".repeat(64));
    ws.write(
        "a.yml",
        &format!(
            "k: {pinned}
h: docker.io/linuxkit/kernel:6.6.9-{old}
"
        ),
    );
    let mut latin1 = b"# caf\xe9\nimage: linuxkit/kernel:6.1.9\n".to_vec();
    latin1.extend_from_slice(b"\xff\n");
    std::fs::write(ws.path().join("b.yml"), &latin1).unwrap();
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);

    let check = ws.kbuild(&["update-refs", "--check"]);
    assert_eq!(check.status.code(), Some(1), "docker.io refs count");
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains(&format!(
            "a.yml:1: left alone: {pinned} is pinned by its digest"
        )),
        "{err}"
    );
    assert!(
        err.contains("would change 2 reference(s), 1 digest-pinned"),
        "{err}"
    );

    assert!(ws.kbuild(&["update-refs"]).status.success());
    assert_eq!(
        ws.read("a.yml"),
        format!("k: {pinned}\nh: docker.io/linuxkit/kernel:6.6.71-{h66}\n")
    );
    let mut want = b"# caf\xe9\nimage: linuxkit/kernel:6.6.71\n".to_vec();
    want.extend_from_slice(b"\xff\n");
    assert_eq!(std::fs::read(ws.path().join("b.yml")).unwrap(), want);

    fails_saying(
        &ws,
        &["update-refs", "--check", "/tmp"],
        "is outside the workspace",
    );
    fails_saying(
        &ws,
        &["update-refs", "--check", "no/such/dir"],
        "no such file or directory in the workspace",
    );
}

#[test]
fn semver_order_not_string_order() {
    let ws = two_series();
    ws.edit("kernel.kdl", "version \"6.6.71\"", "version \"6.6.9\"");
    ws.edit("kernel.kdl", "version \"6.1.100\"", "version \"6.1.71\"");
    ws.write("a.yml", "image: linuxkit/kernel:6.1.1\n");
    ws.kbuild(&["update-refs"]);
    // 6.6.9 is newer than 6.1.71 although "6.1.71" > "6.6.9" as strings... and 6.6.9 < 6.6.71.
    assert_eq!(ws.read("a.yml"), "image: linuxkit/kernel:6.6.9\n");
}

#[test]
fn kconfig_split_and_diff() {
    let ws = Ws::new();
    let out = ws.kbuild(&[
        "kconfig",
        "split",
        "kernel/6.6.x/config-x86_64",
        "kernel/common/config-dbg",
        "--out",
        "split",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        ws.read("split/split-common").is_empty(),
        "nothing in common with the fragment: {}",
        ws.read("split/split-common")
    );
    assert!(
        ws.read("split/split-config-dbg")
            .contains("CONFIG_DEBUG_KERNEL=y")
    );
    assert!(
        ws.read("split/split-config-x86_64")
            .contains("# CONFIG_DEBUG_KERNEL is not set")
    );
    let diff = ws.kbuild(&[
        "kconfig",
        "diff",
        "kernel/6.6.x/config-x86_64",
        "kernel/6.6.x/config-aarch64",
    ]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "same options: {}",
        stdout(&diff)
    );
    ws.edit(
        "kernel/6.6.x/config-aarch64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=256",
    );
    let diff = ws.kbuild(&[
        "kconfig",
        "diff",
        "kernel/6.6.x/config-x86_64",
        "kernel/6.6.x/config-aarch64",
    ]);
    assert_eq!(diff.status.code(), Some(1));
    assert_eq!(stdout(&diff), "-CONFIG_NR_CPUS=64\n+CONFIG_NR_CPUS=256\n");
}

#[test]
fn patches_check_reports_file_and_line() {
    let ws = two_series();
    let ok = ws.kbuild(&["patches", "check"]);
    assert!(
        ok.status.success(),
        "the fixture patch is good; 6.1.x has no patches: {}",
        stdout(&ok)
    );
    let patch = ws.read("kernel/6.6.x/patches/0001-init-say-hello.patch");
    ws.write("kernel/6.6.x/patches/0001-again.patch", &patch);
    ws.write(
        "kernel/6.6.x/patches/fix.patch",
        &patch.replace("Signed-off-by: Kernel Maintainer <maint@example.org>\n", ""),
    );
    let out = ws.kbuild(&["patches", "check", "6.6.x"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "kernel/6.6.x/patches/0001-again.patch:0: error: order 1 is used by more than one patch"
        ),
        "{text}"
    );
    assert!(
        text.contains("kernel/6.6.x/patches/fix.patch:0: error: the name needs a numeric prefix"),
        "{text}"
    );
    assert!(
        text.contains("kernel/6.6.x/patches/fix.patch:")
            && text.contains("no `Signed-off-by:` line"),
        "{text}"
    );
    assert_eq!(
        ws.kbuild(&["check"]).status.code(),
        Some(2),
        "kbuild check runs the patch lint"
    );
}

/// Found by trying patches check on LinuxKit's trees: which rules fail, what counts as an
/// origin, empty patches, and series that do not exist or are retired.
#[test]
fn patches_check_tells_errors_from_advice() {
    let ws = two_series();
    let patch = ws.read("kernel/6.6.x/patches/0001-init-say-hello.patch");
    let origin = patch
        .lines()
        .find(|l| l.starts_with("Origin:") || l.contains("cherry picked"))
        .expect("the fixture says where it came from")
        .to_string();
    ws.write(
        "kernel/6.6.x/patches/0002-no-origin.patch",
        &patch.replace(&format!("{origin}\n"), "Upstream is where this goes\n"),
    );
    let out = ws.kbuild(&["patches", "check", "6.6.x"]);
    let (text, err) = (
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "advice fails nothing: {text}{err}"
    );
    assert!(
        text.contains("0002-no-origin.patch:1: advice: no origin"),
        "a line starting with Upstream is no origin: {text}"
    );
    assert!(
        err.contains("0 error(s), which fail the check; 1 advice"),
        "{err}"
    );
    let check = ws.kbuild(&["check"]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{err}");
    assert!(
        err.contains("kernel.kdl is valid") && err.contains("1 advice"),
        "{err}"
    );

    let header = &patch[..patch.find("\n---\n").unwrap() + 1];
    ws.write("kernel/6.6.x/patches/0003-empty.patch", header);
    let out = ws.kbuild(&["patches", "check", "6.6.x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("0003-empty.patch:1: error: no diff"),
        "{}",
        stdout(&out)
    );

    fails_saying(
        &ws,
        &["patches", "check", "6.7.x"],
        "kernel.kdl has no series `6.7.x`",
    );
    fails_saying(
        &ws,
        &["patches", "check", "5.15.x"],
        "series `5.15.x` is deprecated",
    );
}

#[test]
fn kconfig_commands_name_the_file_they_cannot_use() {
    let ws = Ws::new();
    let config = ws.read("kernel/6.6.x/config-x86_64");
    ws.write("a/config-x86_64", &config);
    ws.write(
        "b/config-x86_64",
        &config.replace("CONFIG_NET=y", "CONFIG_NET=m"),
    );
    fails_saying(
        &ws,
        &["kconfig", "split", "a/config-x86_64", "b/config-x86_64"],
        "would both be written as split-config-x86_64",
    );
    assert!(!ws.path().join("split-common").exists(), "nothing written");
    fails_saying(
        &ws,
        &["kconfig", "diff", "a/config-x86_64", "missing/config"],
        "missing/config",
    );
    fails_saying(
        &ws,
        &["kconfig", "split", "missing/config", "a/config-x86_64"],
        "missing/config",
    );
}

/// Small ones: a format a command cannot print, a shared fetch's labels, help for every
/// argument of new-series, and a list that leaves no cache behind.
#[test]
fn small_cli_defects_stay_fixed() {
    let ws = two_series();
    let dot = ws.kbuild(&["tags", "--format", "dot", "//6.6.x:amd64"]);
    assert_eq!(dot.status.code(), Some(2), "clap refuses it");
    assert!(String::from_utf8_lossy(&dot.stderr).contains("invalid value 'dot'"));

    let plan = ws.kbuild(&["plan", "--format", "json", "//6.6.x:amd64", "//6.6.x:arm64"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let fetch = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "fetch")
        .unwrap();
    assert_eq!(
        fetch["labels"],
        serde_json::json!(["//6.6.x:amd64", "//6.6.x:arm64"]),
        "{fetch}"
    );

    let help = stdout(&ws.kbuild(&["new-series", "-h"]));
    let lines: Vec<&str> = help.lines().collect();
    for arg in ["--write", "--from", "<NEW>", "<VERSION>"] {
        // clap puts the text beside the argument, or on the next line when options are long.
        let at = lines.iter().position(|l| l.trim_start().starts_with(arg));
        let at = at.unwrap_or_else(|| panic!("{arg} is listed: {help}"));
        let beside = lines[at].trim().len() > arg.len() + 10;
        let below = lines
            .get(at + 1)
            .is_some_and(|l| !l.trim_start().starts_with('-') && l.starts_with("          "));
        assert!(beside || below, "{arg} has help: {help}");
    }

    let fresh = Ws::new();
    std::fs::remove_dir_all(fresh.path().join("cache")).ok();
    assert!(fresh.kbuild(&["list"]).status.success());
    assert!(!fresh.path().join("cache").exists(), "list made cache/");
}

/// Points kernel.kdl's source at the tarball under sources/ by a workspace-relative URL, which
/// bump and new-series edit like a kernel.org one.
fn relative_source(ws: &Ws) {
    let line = ws.source_line();
    let relative = format!(
        "    source \"file://sources/linux-6.6.71.tar\" sha256=\"{}\"",
        ws.source_sha()
    );
    ws.edit("kernel.kdl", &line, &relative);
}

/// A series kept as a minimal config (LinuxKit's defconfig style): only the options it names
/// can drift, no flood of "new" options, and --write says why it writes nothing.
#[test]
fn bump_with_a_minimal_config_reports_only_what_it_names() {
    let ws = Ws::new();
    make_tarball(&ws.path().join("sources"), "6.6.72");
    relative_source(&ws);
    ws.write(
        "kernel/6.6.x/config-x86_64",
        "CONFIG_LOCALVERSION=\"-linuxkit\"\nCONFIG_NET=y\nCONFIG_PANIC_ON_OOPS=y\n",
    );
    let out = ws.kbuild(&["bump", "6.6.x", "6.6.72", "--write"]);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains("//6.6.x:amd64: 0 option(s) drift\n"),
        "{report}"
    );
    assert!(
        report.contains("new options: not listed for a minimal config"),
        "{report}"
    );
    assert!(
        report.contains("not written: kernel/6.6.x/config-x86_64 is a minimal config"),
        "{report}"
    );
    assert_eq!(
        ws.read("kernel/6.6.x/config-x86_64"),
        "CONFIG_LOCALVERSION=\"-linuxkit\"\nCONFIG_NET=y\nCONFIG_PANIC_ON_OOPS=y\n"
    );
}

#[test]
fn bump_pins_the_new_source_and_shows_drift() {
    let ws = Ws::new();
    make_tarball(&ws.path().join("sources"), "6.6.72");
    relative_source(&ws);
    // The fake Kconfig knows CONFIG_FAKE_SLOW; drop it from the committed config so it is "new".
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_FAKE_SLOW is not set\n",
        "",
    );
    let out = ws.kbuild(&["bump", "6.6.x", "6.6.72"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kdl = ws.read("kernel.kdl");
    assert!(
        kdl.contains("version \"6.6.72\"")
            && kdl.contains("source \"file://sources/linux-6.6.72.tar\"\n"),
        "{kdl}"
    );
    assert!(kdl.starts_with("// A test workspace."), "comments are kept");
    assert!(
        ws.read("kernel.lock").contains("linux-6.6.72.tar"),
        "the new source is pinned"
    );
    let report = stdout(&out);
    // An option the committed config never mentions resolves to its default (n): no drift, but
    // listnewconfig names it.
    assert!(
        report.contains("//6.6.x:amd64: 0 option(s) drift\n  new options: CONFIG_FAKE_SLOW=\n"),
        "{report}"
    );
    let write = ws.kbuild(&["bump", "6.6.x", "6.6.72", "--write"]);
    assert!(write.status.success());
    assert!(
        ws.read("kernel/6.6.x/config-x86_64")
            .contains("# CONFIG_FAKE_SLOW is not set")
    );
}

#[test]
fn new_series_copies_configs_and_patches() {
    let ws = Ws::new();
    make_tarball(&ws.path().join("sources"), "6.7.1");
    let text = ws.read("kernel.kdl");
    let line = ws.source_line();
    ws.write(
        "kernel.kdl",
        &text.replace(&line, "    source \"file://sources/linux-6.6.71.tar\""),
    );
    let out = ws.kbuild(&["new-series", "6.7.x", "--from", "6.6.x", "6.7.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.read("kernel.kdl").contains("series \"6.7.x\" {"));
    assert!(
        ws.path()
            .join("kernel/6.7.x/patches/0001-init-say-hello.patch")
            .is_file()
    );
    let list = stdout(&ws.kbuild(&["list"]));
    assert!(list.contains("6.7.x 6.7.1\n  //6.7.x:amd64"), "{list}");
    assert_eq!(
        ws.kbuild(&["new-series", "6.7.x", "--from", "6.6.x", "6.7.1"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn import_linuxkit_maps_a_kernel_directory() {
    let lk = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = lk.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let config = common::FULL_CONFIG;
    w(
        "6.6.x/build-args",
        "KERNEL_VERSION=6.6.71\nKERNEL_SERIES=6.6.x\nBUILD_IMAGE=linuxkit/alpine:0123\n",
    );
    w("6.6.x/config-x86_64", config);
    w("6.6.x/config-aarch64", config);
    w("6.6.x/patches/0001-init-say-hello.patch", common::PATCH);
    w(
        "5.15.x/build-args",
        "KERNEL_VERSION=5.15.170\nKERNEL_SERIES=5.15.x\nBUILD_IMAGE=linuxkit/alpine:0123\n",
    );
    w("5.15.x/config-x86_64", config);
    w("5.15.x/deprecated", "");
    w("6.6.x-rt/patches/0001-rt.patch", common::PATCH);
    w("6.6.x-rt/config-x86_64", "CONFIG_PREEMPT_RT=y\n");
    w("6.6.x-rt/config-aarch64", "CONFIG_PREEMPT_RT=y\n");
    w("common/config-dbg", common::DBG_FRAGMENT);
    w("common/build-args-debug", "DEBUG=-dbg\n");
    w("Makefile", "all:\n");
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(dest.path())
        .arg("import-linuxkit")
        .arg(lk.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout(&out);
    assert!(
        report.contains("mapped: Makefile: ORG=linuxkit and IMAGE=kernel")
            && report
                .contains("mapped: common/config-dbg, common/build-args-debug: variant \"dbg\"")
            && !report.contains("not mapped: Makefile")
            && !report.contains("not mapped: common/build-args-debug"),
        "{report}"
    );
    let kbuild = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kbuild"))
            .arg("-C")
            .arg(dest.path())
            .args(args)
            .output()
            .unwrap()
    };
    let check = kbuild(&["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    let list = stdout(&kbuild(&["list"]));
    assert!(list.contains("6.6.x 6.6.71\n"), "{list}");
    assert!(list.contains("//6.6.x:rt-dbg-arm64"), "{list}");
    assert!(list.contains("5.15.x 5.15.170 (deprecated)\n"), "{list}");
    let kdl = std::fs::read_to_string(dest.path().join("kernel.kdl")).unwrap();
    assert!(kdl.contains("builder \"linuxkit/alpine:0123\""), "{kdl}");
}

/// Writes a LinuxKit-shaped kernel/ directory at `at`: a Makefile with its own org, image,
/// builder and tools, two series with build-args, a retired 5.11.x without any (LinuxKit's rt
/// series), its rt variant, the dbg files and the tool files.
fn linuxkit_tree(at: &std::path::Path) {
    let w = |rel: &str, text: &str| {
        let p = at.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let config = common::FULL_CONFIG;
    let old = config.replace("Linux/x86_64 6.6.71", "Linux/x86 5.11.4");
    w(
        "Makefile",
        "# Name and Org on Hub\nORG?=myorg\nIMAGE?=kern\nIMAGE_BUILDER=linuxkit/alpine:0456\n\
         HASH:=$(shell git ls-tree --full-tree HEAD -- $(CURDIR))\n\
         # we build all tools across all platforms and kernels that we build\nTOOLS=bcc perf\n\
         build-%: buildkernel-% buildtools-%;\n",
    );
    w("Dockerfile", "FROM scratch\n");
    w("Dockerfile.perf", "FROM scratch\n");
    w(
        "Dockerfile.bcc",
        "ARG BUILD_IMAGE\nFROM ${BUILD_IMAGE} AS build\nENV BCC_COMMIT=v0.29.1\nRUN git clone bcc\n",
    );
    w("build-kernel.yml", "image: kern\nnetwork: true\n");
    w("build-perf.yml", "image: kern-perf\nnetwork: true\n");
    w("build-bcc.yml", "image: kern-bcc\nnetwork: true\n");
    w(
        "6.6.x/build-args",
        "KERNEL_VERSION=6.6.71\nKERNEL_SERIES=6.6.x\nBUILD_IMAGE=linuxkit/alpine:0123\n",
    );
    w("6.6.x/config-x86_64", config);
    w("6.6.x/config-aarch64", config);
    w("6.6.x/patches/0001-init-say-hello.patch", common::PATCH);
    w("5.11.x/config-x86_64", &old);
    w(
        "5.11.x/config-aarch64",
        &old.replace("Linux/x86", "Linux/arm64"),
    );
    w("5.11.x-rt/patches/0001-rt.patch", common::PATCH);
    w("5.11.x-rt/config-x86_64", "CONFIG_PREEMPT_RT=y\n");
    w("5.11.x-rt/config-aarch64", "CONFIG_PREEMPT_RT=y\n");
    w("common/config-dbg", common::DBG_FRAGMENT);
    w("common/build-args-debug", "DEBUG=-dbg\n");
}

fn kbuild_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_linuxkit_maps_the_makefile_tools_and_a_series_without_build_args() {
    let lk = tempfile::tempdir().unwrap();
    linuxkit_tree(lk.path());
    let dest = tempfile::tempdir().unwrap();
    let out = kbuild_in(
        dest.path(),
        &["import-linuxkit", lk.path().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout(&out);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("imported series: 5.11.x, 6.6.x") && err.contains("tools: bcc, perf"),
        "{err}"
    );
    for line in [
        "mapped: 5.11.x/: no build-args; version 5.11.4 from the header of config-aarch64, imported as deprecated",
        "mapped: 5.11.x: builder linuxkit/alpine:0456, the Makefile's IMAGE_BUILDER",
        "mapped: Makefile: ORG=myorg and IMAGE=kern",
        "mapped: TOOLS perf, build-perf.yml, Dockerfile.perf: tool \"perf\"",
        "mapped: TOOLS bcc, build-bcc.yml, Dockerfile.bcc: tool \"bcc\" from bcc's v0.29.1 release tarball, built with CMake as myorg/kern-bcc",
        "mapped: Dockerfile: replaced by kbuild's own recipe",
    ] {
        assert!(report.contains(line), "{line}\n{report}");
    }
    for dropped in [
        "Makefile",
        "build-perf.yml",
        "Dockerfile.bcc",
        "common/build-args-debug",
        "5.11.x",
    ] {
        assert!(
            !report.contains(&format!("not mapped: {dropped}\n")),
            "{dropped}\n{report}"
        );
    }
    let check = kbuild_in(dest.path(), &["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    let list = stdout(&kbuild_in(dest.path(), &["list"]));
    assert!(list.contains("5.11.x 5.11.4 (deprecated)\n"), "{list}");
    assert!(list.contains("//6.6.x:perf-amd64"), "{list}");
    // The retired series carries its rt variant: revived, it builds rt and rt-dbg.
    let kdl_path = dest.path().join("kernel.kdl");
    let kdl = std::fs::read_to_string(&kdl_path).unwrap();
    let revived = kdl.replace("    deprecated\n", "");
    assert_ne!(revived, kdl);
    std::fs::write(&kdl_path, &revived).unwrap();
    let list = stdout(&kbuild_in(dest.path(), &["list"]));
    assert!(
        list.contains("//5.11.x:rt-amd64") && list.contains("//5.11.x:rt-dbg-arm64"),
        "{list}"
    );
    std::fs::write(&kdl_path, &kdl).unwrap();
    assert!(
        kdl.contains("org \"myorg\"") && kdl.contains("image \"kern\""),
        "{kdl}"
    );
    let tags = stdout(&kbuild_in(dest.path(), &["tags", "//6.6.x:perf-amd64"]));
    assert!(tags.contains("myorg/kern-perf:6.6.71"), "{tags}");
    // bcc from the release Dockerfile.bcc checks out, built with CMake, as myorg/kern-bcc.
    assert!(
        kdl.contains("releases/download/v0.29.1/bcc-src-with-submodule.tar.gz")
            && kdl.contains("build \"cmake\"")
            && kdl.contains("tools \"perf\" \"bcc\""),
        "{kdl}"
    );
    let tags = stdout(&kbuild_in(dest.path(), &["tags", "//6.6.x:bcc-arm64"]));
    assert!(tags.contains("myorg/kern-bcc:6.6.71"), "{tags}");
}

#[test]
fn import_linuxkit_reports_a_bcc_it_cannot_fetch_a_release_of() {
    for (dockerfile, why) in [
        (
            "FROM x\nENV BCC_COMMIT=3b4fa4a\n",
            "BCC_COMMIT `3b4fa4a` is not a release tag (vX.Y.Z)",
        ),
        ("FROM x\n", "Dockerfile.bcc sets no BCC_COMMIT"),
    ] {
        let lk = tempfile::tempdir().unwrap();
        linuxkit_tree(lk.path());
        std::fs::write(lk.path().join("Dockerfile.bcc"), dockerfile).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let out = kbuild_in(
            dest.path(),
            &["import-linuxkit", lk.path().to_str().unwrap()],
        );
        assert!(out.status.success());
        let report = stdout(&out);
        assert!(
            report.contains(&format!(
                "not mapped: TOOLS bcc, build-bcc.yml, Dockerfile.bcc: {why}"
            )) && report.contains("declare `tool \"bcc\"` with the `source` of its release"),
            "{report}"
        );
        let kdl = std::fs::read_to_string(dest.path().join("kernel.kdl")).unwrap();
        assert!(!kdl.contains("bcc"), "{kdl}");
        assert!(kdl.contains("    tools \"perf\"\n"), "{kdl}");
    }
}

/// Imported into the repository that holds LinuxKit's kernel/, every file stays where it is,
/// byte for byte, and kernel.kdl is the one new file.
#[test]
fn import_linuxkit_in_place_keeps_the_tree() {
    let repo = tempfile::tempdir().unwrap();
    let lk = repo.path().join("kernel");
    linuxkit_tree(&lk);
    let before = common::contents(&lk);
    let out = kbuild_in(repo.path(), &["import-linuxkit", lk.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::contents(&lk), before);
    assert!(repo.path().join("kernel.kdl").is_file());
    let check = kbuild_in(repo.path(), &["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// A reference update-refs moves, in a test YAML.
const OLD_REF: &str = "image: linuxkit/kernel:6.6.9\n";

#[test]
fn update_refs_never_writes_through_a_tracked_symlink() {
    let ws = Ws::new();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("outside.yml");
    std::fs::write(&target, OLD_REF).unwrap();
    std::fs::create_dir_all(ws.path().join("t")).unwrap();
    std::os::unix::fs::symlink(&target, ws.path().join("t/link.yml")).unwrap();
    ws.write("t/real.yml", OLD_REF);
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    let out = ws.kbuild(&["update-refs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("t/link.yml: skipped: a symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), OLD_REF);
    assert!(ws.read("t/real.yml").contains("6.6.71"));
}

#[test]
fn update_refs_checks_every_file_before_writing_any() {
    let ws = Ws::new();
    ws.write("a/first.yml", OLD_REF);
    ws.write("z/gone.yml", OLD_REF);
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    std::fs::remove_file(ws.path().join("z/gone.yml")).unwrap();
    fails_saying(&ws, &["update-refs"], "z/gone.yml");
    fails_saying(&ws, &["update-refs"], "nothing was changed");
    assert_eq!(ws.read("a/first.yml"), OLD_REF, "nothing half-written");
}

#[test]
fn update_refs_in_a_subdirectory_of_a_repository_rewrites_tracked_files_only() {
    let repo = tempfile::tempdir().unwrap();
    let ws = Ws::new();
    // The workspace moved into a repository's subdirectory `kernels/`.
    let sub = repo.path().join("kernels");
    std::fs::rename(ws.path(), &sub).unwrap();
    std::fs::write(sub.join("tracked.yml"), OLD_REF).unwrap();
    std::fs::write(sub.join("untracked.yml"), OLD_REF).unwrap();
    std::fs::write(sub.join("ignored.yml"), OLD_REF).unwrap();
    std::fs::write(repo.path().join(".gitignore"), "ignored.yml\n").unwrap();
    let git_in = |args: &[&str]| {
        let ok = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    git_in(&["init", "-q"]);
    git_in(&[
        "add",
        ".gitignore",
        "kernels/tracked.yml",
        "kernels/kernel.kdl",
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(&sub)
        .arg("update-refs")
        .env("KBUILD_CACHE", sub.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(sub.join(f)).unwrap();
    assert!(read("tracked.yml").contains("6.6.71"));
    assert_eq!(read("untracked.yml"), OLD_REF);
    assert_eq!(read("ignored.yml"), OLD_REF);
    // The same in place: the Ws's temp dir is gone with the move, so keep `repo` alive.
    drop(ws);
}

#[test]
fn update_refs_outside_git_follows_no_directory_link() {
    let ws = Ws::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("far.yml"), OLD_REF).unwrap();
    std::fs::create_dir_all(ws.path().join("t")).unwrap();
    std::os::unix::fs::symlink("..", ws.path().join("t/up")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("t/away")).unwrap();
    ws.write("t/here.yml", OLD_REF);
    let out = ws.kbuild(&["update-refs"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("t/up: skipped: a symlink"), "{err}");
    assert!(err.contains("t/away: skipped: a symlink"), "{err}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("far.yml")).unwrap(),
        OLD_REF
    );
    assert!(ws.read("t/here.yml").contains("6.6.71"));
}

#[test]
fn update_refs_says_when_a_named_file_is_not_tracked() {
    let ws = Ws::new();
    ws.write("test/old.yml", OLD_REF);
    git(&ws, &["init", "-q"]);
    git(&ws, &["add", "-A"]);
    ws.write("test/new.yml", OLD_REF);
    for args in [
        &["update-refs", "test/new.yml"][..],
        &["update-refs", "--check", "test/new.yml"][..],
    ] {
        let out = ws.kbuild(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("test/new.yml: skipped: not tracked by git"),
            "{err}"
        );
    }
    assert_eq!(ws.read("test/new.yml"), OLD_REF);
}

#[test]
fn a_patch_with_a_latin1_byte_passes_the_check_and_applies() {
    let ws = Ws::new();
    let file = ws
        .path()
        .join("kernel/6.6.x/patches/0001-init-say-hello.patch");
    let text = std::fs::read_to_string(&file).unwrap();
    let from = text.lines().find(|l| l.starts_with("From: ")).unwrap();
    let mut bytes = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with(from) {
            bytes.extend_from_slice(b"From: Ren\xe9 Maintainer <maint@example.org>\n");
        } else {
            bytes.extend_from_slice(line.as_bytes());
        }
    }
    std::fs::write(&file, bytes).unwrap();
    let check = ws.kbuild(&["check"]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    ws.run(&["//6.6.x:amd64"], 0);
}

#[test]
fn a_binary_diff_fails_the_patch_check() {
    let ws = Ws::new();
    let patch = ws.read("kernel/6.6.x/patches/0001-init-say-hello.patch");
    let binary = format!(
        "{}diff --git a/logo.bin b/logo.bin\nnew file mode 100644\nindex 0000000..1111111\nGIT binary patch\nliteral 4\nLcmZ?d00001\n\nliteral 0\nHcmV?d00001\n\n",
        patch.split("diff --git").next().unwrap()
    );
    ws.write("kernel/6.6.x/patches/0002-logo.patch", &binary);
    let out = ws.kbuild(&["patches", "check", "6.6.x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("0002-logo.patch:") && stdout(&out).contains("a binary diff"),
        "{}",
        stdout(&out)
    );
}

/// The test workspace with an rt variant whose fragments live in `kernel/6.6.x-rt/`.
fn with_rt() -> Ws {
    let ws = Ws::new();
    let text = ws.read("kernel.kdl").replace(
        "tool \"perf\"",
        "variant \"rt\" {\n    fragment \"kernel/{series}-rt/config-{arch}\"\n    localversion \"-rt\"\n}\n\ntool \"perf\"",
    );
    ws.write(
        "kernel.kdl",
        &text.replace(
            "    variants \"dbg\"\n",
            "    variants \"dbg\" \"rt\" \"rt-dbg\"\n",
        ),
    );
    ws.write("kernel/6.6.x-rt/config-x86_64", "CONFIG_PREEMPT_RT=y\n");
    ws.write("kernel/6.6.x-rt/config-aarch64", "CONFIG_PREEMPT_RT=y\n");
    ws
}

#[test]
fn new_series_copies_the_variants_folders_and_check_says_each_problem_once() {
    let ws = with_rt();
    assert!(ws.kbuild(&["check"]).status.success());
    make_tarball(&ws.path().join("sources"), "6.7.1");
    let out = ws.kbuild(&["new-series", "6.7.x", "--from", "6.6.x", "6.7.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ws.path().join("kernel/6.7.x-rt/config-aarch64").is_file());
    let check = ws.kbuild(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::remove_file(ws.path().join("kernel/6.7.x-rt/config-aarch64")).unwrap();
    let check = ws.kbuild(&["check"]);
    let err = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2));
    assert_eq!(
        err.matches("missing fragment `kernel/6.7.x-rt/config-aarch64`")
            .count(),
        1,
        "{err}"
    );
}
