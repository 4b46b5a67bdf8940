//! `kbuild import-linuxkit` on every layout LinuxKit's kernel/ has had, as fixtures modelled on
//! its public history: the flat layout (until 2023: `config-<series>-<arch>`, `patches-<series>/`,
//! versions in the Makefile's `$(call kernel,…)` lines), series folders with the shared files at
//! the top (2024 and 2025), and the shared files under `common/` (since). Every file gets a
//! verdict with a reason, and an import that finds no series fails.

mod common;

use std::path::Path;
use std::process::Command;

fn write(at: &Path, rel: &str, text: &str) {
    let p = at.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn kbuild_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Imports `lk` into a fresh workspace: (workspace, report on stdout, stderr, exit code).
fn import(lk: &Path) -> (tempfile::TempDir, String, String, Option<i32>) {
    let dest = tempfile::tempdir().unwrap();
    let out = kbuild_in(dest.path(), &["import-linuxkit", lk.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (dest, stdout(&out), err, out.status.code())
}

/// A series folder of the later layouts.
fn series(at: &Path, name: &str, version: &str) {
    write(
        at,
        &format!("{name}/build-args"),
        &format!(
            "KERNEL_VERSION={version}\nKERNEL_SERIES={name}\nBUILD_IMAGE=linuxkit/alpine:0123\n"
        ),
    );
    write(at, &format!("{name}/config-x86_64"), common::FULL_CONFIG);
    write(at, &format!("{name}/config-aarch64"), common::FULL_CONFIG);
    write(
        at,
        &format!("{name}/patches/0001-init-say-hello.patch"),
        common::PATCH,
    );
}

/// The shared files under `prefix` (`common/` now, the top before).
fn shared_files(at: &Path, prefix: &str, bcc_dockerfile: &str) {
    let w = |rel: &str, text: &str| write(at, &format!("{prefix}{rel}"), text);
    w("Dockerfile", "FROM scratch\n");
    w("Dockerfile.perf", "FROM scratch\n");
    w("Dockerfile.bcc", bcc_dockerfile);
    w("Dockerfile.kconfig", "FROM scratch\n");
    w("Dockerfile.kconfigx", "FROM scratch\n");
    w("Dockerfile.zfs", "FROM scratch\n");
    w("build-kernel.yml", "image: kernel\nnetwork: true\n");
    w("build-perf.yml", "image: kernel-perf-x\nnetwork: true\n");
    w("build-bcc.yml", "image: kernel-bcc\nnetwork: true\n");
    w("keys.asc", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n");
    w("config-dbg", common::DBG_FRAGMENT);
    w("build-args-debug", "DEBUG=-dbg\n");
}

const MAKEFILE: &str = "ORG?=linuxkit\nIMAGE?=kernel\nTOOLS=bcc perf\n";
const ALPINE_BCC: &str = "FROM alpine AS build\nRUN apk add bcc-tools bcc-dev\n";

/// Every `not mapped:` line says why, and no line shows a path of this machine.
fn every_verdict_has_a_reason(report: &str, lk: &Path) {
    for line in report.lines() {
        let rest = line
            .strip_prefix("not mapped: ")
            .or_else(|| line.strip_prefix("mapped: "))
            .unwrap_or_else(|| panic!("a line without a verdict: {line}"));
        assert!(rest.contains(": "), "no reason: {line}");
    }
    assert!(!report.contains(&lk.display().to_string()), "{report}");
}

#[test]
fn the_current_layout_with_shared_files_under_common() {
    let lk = tempfile::tempdir().unwrap();
    write(lk.path(), "Makefile", MAKEFILE);
    shared_files(lk.path(), "common/", ALPINE_BCC);
    series(lk.path(), "6.12.x", "6.12.44");
    series(lk.path(), "6.6.x", "6.6.103");
    let (ws, report, err, code) = import(lk.path());
    assert_eq!(code, Some(0), "{err}");
    every_verdict_has_a_reason(&report, lk.path());
    for line in [
        "mapped: common/Dockerfile: replaced by kbuild's own recipe",
        "mapped: common/Dockerfile.kconfig: replaced by `kbuild config update`",
        "mapped: common/Dockerfile.kconfigx: replaced by `kbuild config update`",
        "mapped: common/keys.asc: replaced by the pins of kernel.kdl",
        "mapped: TOOLS perf, common/build-perf.yml, common/Dockerfile.perf: tool \"perf\"",
        "not mapped: common/build-perf.yml: image `kernel-perf-x`",
        "mapped: common/config-dbg, common/build-args-debug: variant \"dbg\"",
        "not mapped: TOOLS bcc, common/build-bcc.yml, common/Dockerfile.bcc: common/Dockerfile.bcc installs bcc from Alpine's packages",
        "not mapped: common/Dockerfile.zfs: the ZFS module image is built out of tree",
    ] {
        assert!(report.contains(line), "{line}\n{report}");
    }
    assert!(!report.contains("build-kernel.yml: image"), "{report}");
    assert!(err.contains("imported series: 6.12.x, 6.6.x"), "{err}");
    let check = kbuild_in(ws.path(), &["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let list = stdout(&kbuild_in(ws.path(), &["list"]));
    assert!(list.contains("//6.12.x:dbg-amd64"), "{list}");
}

#[test]
fn the_layouts_of_2024_and_2025_with_shared_files_at_the_top() {
    let lk = tempfile::tempdir().unwrap();
    write(lk.path(), "Makefile", MAKEFILE);
    shared_files(
        lk.path(),
        "",
        "FROM x\nENV BCC_COMMIT=v0.29.1\nRUN git clone bcc\n",
    );
    series(lk.path(), "6.6.x", "6.6.13");
    let (ws, report, err, code) = import(lk.path());
    assert_eq!(code, Some(0), "{err}");
    every_verdict_has_a_reason(&report, lk.path());
    assert!(
        report.contains("mapped: config-dbg, build-args-debug: variant \"dbg\""),
        "{report}"
    );
    assert!(
        report.contains(
            "mapped: TOOLS bcc, build-bcc.yml, Dockerfile.bcc: tool \"bcc\" from bcc's v0.29.1"
        ),
        "{report}"
    );
    let list = stdout(&kbuild_in(ws.path(), &["list"]));
    assert!(list.contains("//6.6.x:dbg-amd64"), "{list}");
    assert!(list.contains("//6.6.x:dbg-arm64"), "{list}");
}

#[test]
fn the_flat_layout_of_2023() {
    let lk = tempfile::tempdir().unwrap();
    write(
        lk.path(),
        "Makefile",
        "ORG?=linuxkit\nIMAGE?=kernel\nIMAGE_BUILDER=linuxkit/alpine:0456\n\
         $(eval $(call kernel,6.1.59,6.1.x,$(EXTRA),$(DEBUG)))\n\
         $(eval $(call kernel,5.15.137,5.15.x,$(EXTRA),$(DEBUG)))\n\
         $(eval $(call kernel,6.1.59,6.1.x,-rt,))\n",
    );
    let old = common::FULL_CONFIG.replace("6.6.71", "6.1.59");
    write(lk.path(), "config-6.1.x-x86_64", &old);
    write(lk.path(), "config-6.1.x-aarch64", &old);
    write(lk.path(), "config-6.1.x-x86_64-rt", "CONFIG_PREEMPT_RT=y\n");
    write(
        lk.path(),
        "config-6.1.x-aarch64-rt",
        "CONFIG_PREEMPT_RT=y\n",
    );
    write(lk.path(), "patches-6.1.x-rt/0001-rt.patch", common::PATCH);
    write(lk.path(), "config-5.15.x-x86_64", common::FULL_CONFIG);
    write(
        lk.path(),
        "patches-6.1.x/0001-init-say-hello.patch",
        common::PATCH,
    );
    write(lk.path(), "config-dbg", common::DBG_FRAGMENT);
    write(lk.path(), "Dockerfile", "FROM scratch\n");
    let (ws, report, err, code) = import(lk.path());
    assert_eq!(code, Some(0), "{err}\n{report}");
    every_verdict_has_a_reason(&report, lk.path());
    assert!(err.contains("imported series: 5.15.x, 6.1.x"), "{err}");
    assert!(
        report.contains("mapped: Makefile: $(call kernel,6.1.59,6.1.x,…), config-6.1.x-x86_64, config-6.1.x-aarch64, patches-6.1.x/: series 6.1.x at 6.1.59"),
        "{report}"
    );
    assert!(
        report.contains("variant \"rt\" of series 6.1.x"),
        "{report}"
    );
    assert!(
        ws.path()
            .join("kernel/6.1.x/patches/0001-init-say-hello.patch")
            .is_file()
    );
    assert!(ws.path().join("kernel/6.1.x-rt/config-aarch64").is_file());
    let check = kbuild_in(ws.path(), &["check"]);
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    let list = stdout(&kbuild_in(ws.path(), &["list"]));
    assert!(list.contains("6.1.x 6.1.59\n"), "{list}");
    assert!(list.contains("//6.1.x:rt-dbg-arm64"), "{list}");
    assert!(list.contains("//5.15.x:dbg-amd64"), "{list}");
}

#[test]
fn an_import_that_finds_no_series_fails() {
    let lk = tempfile::tempdir().unwrap();
    write(lk.path(), "Makefile", MAKEFILE);
    write(lk.path(), "README.md", "# kernels\n");
    let (ws, _, err, code) = import(lk.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("found no kernel series"), "{err}");
    assert!(!ws.path().join("kernel.kdl").exists());
}

#[test]
fn a_variant_folder_is_read_file_by_file_and_tags_name_the_builder() {
    let lk = tempfile::tempdir().unwrap();
    write(
        lk.path(),
        "Makefile",
        MAKEFILE.replace("bcc perf", "perf").as_str(),
    );
    series(lk.path(), "6.6.x", "6.6.13");
    write(lk.path(), "6.6.x-rt/config-x86_64", "CONFIG_PREEMPT_RT=y\n");
    write(
        lk.path(),
        "6.6.x-rt/config-aarch64",
        "CONFIG_PREEMPT_RT=y\n",
    );
    write(lk.path(), "6.6.x-rt/deprecated", "");
    write(lk.path(), "6.6.x-rt/notes.txt", "x\n");
    let (ws, report, err, code) = import(lk.path());
    assert_eq!(code, Some(0), "{err}");
    every_verdict_has_a_reason(&report, lk.path());
    assert!(
        report.contains("mapped: 6.6.x-rt/deprecated: not copied"),
        "{report}"
    );
    assert!(
        report.contains("not mapped: 6.6.x-rt/notes.txt: "),
        "{report}"
    );
    assert!(!ws.path().join("kernel/6.6.x-rt/deprecated").exists());
    let tags = stdout(&kbuild_in(ws.path(), &["tags", "//6.6.x:amd64"]));
    assert!(tags.contains("linuxkit/kernel:6.6.13-builder"), "{tags}");
}
