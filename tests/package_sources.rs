//! Sources that a distribution package installs (`package=`), pinned per machine in
//! kernel.local.lock, and committed pins, which never move by themselves: a changed tarball
//! under them is an error until `kbuild pin` accepts it.

mod common;

use std::path::Path;

use common::Ws;

/// The fake kernel packed as `<dir>/<name>`, claiming release 6.6.`sublevel`; returns its sha256.
fn fake_tarball(dir: &Path, name: &str, sublevel: u32) -> String {
    let tree = tempfile::tempdir().unwrap();
    copy_tree(&common::fixture(), tree.path());
    let makefile = tree.path().join("Makefile");
    let text = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(
        &makefile,
        text.replace("SUBLEVEL = 71", &format!("SUBLEVEL = {sublevel}")),
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let tar = dir.join(name);
    kbuild::archive::write_tar(tree.path(), &tar, "linux-source-6.6", 1_700_000_000).unwrap();
    kbuild::digest::Sha256::of_file(&tar).unwrap().to_string()
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// The workspace's series follows a package: no `version`, `package=` on the source.
fn follow_package(ws: &Ws, url: &str, package: &str) {
    let line = ws.source_line();
    ws.edit(
        "kernel.kdl",
        &line,
        &format!("    source \"{url}\" package=\"{package}\""),
    );
    ws.edit("kernel.kdl", "    version \"6.6.71\"\n", "");
}

/// A directory whose `dpkg-query` fails: on this PATH kbuild sees a machine without dpkg.
fn without_dpkg(ws: &Ws) -> String {
    let shim = ws.path().join("no-dpkg");
    std::fs::create_dir_all(&shim).unwrap();
    let fake = shim.join("dpkg-query");
    std::fs::write(&fake, "#!/bin/sh\nexit 127\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    format!("{}:{}", shim.display(), std::env::var("PATH").unwrap())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn version_of(ws: &Ws, path: &str) -> String {
    let out = ws.command(&["list"]).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().next().unwrap().to_string()
}

#[test]
fn a_committed_pin_refuses_a_changed_local_tarball_until_kbuild_pin_accepts_it() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let before = ws.read("kernel.kdl");
    // The same path now holds other bytes, as after a package update.
    let changed = fake_tarball(&ws.path().join("sources"), "linux-6.6.71.tar", 71);
    assert!(!before.contains(&changed));
    // A new key for everything would rebuild; the fetch must refuse first.
    let cache = ws.cache.clone();
    std::fs::remove_dir_all(&cache).unwrap();
    let r = ws.run(&["//6.6.x:amd64"], 1);
    let file = ws.path().join("sources/linux-6.6.71.tar");
    assert!(r.stderr.contains("sha256 mismatch"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("file     {}", file.display())),
        "names the file: {}",
        r.stderr
    );
    let command = format!("kbuild -C {} pin 6.6.x", ws.path().display());
    assert!(
        r.stderr.contains(&command),
        "gives the command: {}",
        r.stderr
    );
    assert_eq!(ws.read("kernel.kdl"), before, "a run never moves a pin");

    let out = ws.kbuild(&["pin", "6.6.x"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("re-pinned in kernel.kdl"),
        "{}",
        text(&out.stdout)
    );
    let old_sha = before.split("sha256=\"").nth(1).unwrap()[..64].to_string();
    assert_eq!(ws.read("kernel.kdl"), before.replace(&old_sha, &changed));
    let r = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        r.executed().iter().any(|a| a.starts_with("fetch ")),
        "{:?}",
        r.executed()
    );
}

#[test]
fn a_kernel_lock_pin_is_renewed_only_by_kbuild_pin() {
    let ws = Ws::new();
    let line = ws.source_line();
    let unpinned = line[..line.find(" sha256=").unwrap()].to_string();
    ws.edit("kernel.kdl", &line, &unpinned);
    ws.run(&["//6.6.x:amd64"], 0);
    let lock = ws.read("kernel.lock");
    fake_tarball(&ws.path().join("sources"), "linux-6.6.71.tar", 72);
    let r = ws.run(&["--locked", "//6.6.x:amd64"], 1);
    assert!(r.stderr.contains("sha256 mismatch"), "{}", r.stderr);
    assert_eq!(ws.read("kernel.lock"), lock);
    let out = ws.kbuild(&["pin"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("re-pinned in kernel.lock"),
        "{}",
        text(&out.stdout)
    );
    let relock = ws.read("kernel.lock");
    assert_ne!(relock, lock);
    let lines = relock.lines().filter(|l| l.starts_with("source "));
    assert_eq!(lines.count(), 1, "{relock}");
    ws.run(&["--locked", "//6.6.x:amd64"], 0);
}

#[test]
fn without_dpkg_a_package_source_is_pinned_on_first_use_and_a_change_needs_kbuild_pin() {
    let ws = Ws::new();
    follow_package(&ws, "file://sources/linux-6.6.71.tar", "linux-source-6.6");
    let path = without_dpkg(&ws);
    let check = ws.command(&["check"]).env("PATH", &path).output().unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stderr).contains(
            "pinned file://sources/linux-6.6.71.tar from linux-source-6.6 (no dpkg) (Linux 6.6.71"
        ),
        "{}",
        text(&check.stderr)
    );
    let lock = ws.read("kernel.local.lock");
    assert!(lock.contains("version=\"6.6.71\""), "{lock}");
    assert_eq!(version_of(&ws, &path), "6.6.x 6.6.71");
    let run = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));

    // The package "moved": without dpkg nothing can vouch for the new file.
    fake_tarball(&ws.path().join("sources"), "linux-6.6.71.tar", 72);
    let run = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("changed since it was pinned"), "{stderr}");
    assert!(
        stderr.contains(&format!("kbuild -C {} pin 6.6.x", ws.path().display())),
        "{stderr}"
    );
    assert_eq!(
        ws.read("kernel.local.lock"),
        lock,
        "nothing re-pinned by itself"
    );

    let pin = ws
        .command(&["pin", "6.6.x"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(pin.status.success(), "{}", text(&pin.stderr));
    assert!(
        text(&pin.stdout).contains("pinned in kernel.local.lock"),
        "{}",
        text(&pin.stdout)
    );
    assert_eq!(
        version_of(&ws, &path),
        "6.6.x 6.6.72",
        "the version follows the tarball"
    );
    let out = ws
        .command(&["run", "--format", "json", "//6.6.x:amd64"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let executed = common::report(out, 0).executed();
    assert!(
        executed.iter().any(|a| a.starts_with("fetch ")),
        "{executed:?}"
    );
    assert!(
        executed.iter().any(|a| a.starts_with("compile ")),
        "{executed:?}"
    );
}

#[test]
fn a_package_source_refuses_a_pin_in_kernel_kdl_and_remote_urls() {
    let ws = Ws::new();
    let line = ws.source_line();
    ws.edit(
        "kernel.kdl",
        &line,
        &format!("{line} package=\"linux-source-6.6\""),
    );
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a `package=` source is pinned on each machine"),
        "{}",
        text(&out.stderr)
    );
    let ws = Ws::new();
    follow_package(
        &ws,
        "https://example.invalid/linux.tar.xz",
        "linux-source-6.6",
    );
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("a `package=` source is one file:// URL"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_package_source_dpkg_does_not_own_is_refused() {
    if !kbuild::dpkg::available() {
        eprintln!("no dpkg here: the refusal needs dpkg to ask");
        return;
    }
    let ws = Ws::new();
    follow_package(&ws, "file://sources/linux-6.6.71.tar", "base-files");
    let out = ws.kbuild(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("was not installed by the package `base-files`"),
        "{stderr}"
    );
    assert!(!ws.path().join("kernel.local.lock").exists());
}

#[test]
fn a_missing_package_file_says_which_package_to_install() {
    let ws = Ws::new();
    follow_package(
        &ws,
        "file:///nonexistent/linux-source-6.6.tar.xz",
        "linux-source-6.6",
    );
    let out = ws.kbuild(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(
        stderr.contains("apt-get install linux-source-6.6"),
        "{stderr}"
    );
}

const PACKAGE: &str = "kbuild-test-linux-source-6.6";
const PACKAGE_FILE: &str = "/usr/src/kbuild-test-linux-source-6.6.tar";

/// Builds a real Debian package with dpkg-deb that ships a kernel tarball at [`PACKAGE_FILE`],
/// and installs (or upgrades to) it with dpkg.
fn install_package(version: &str, sublevel: u32) {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("pkg");
    let name = Path::new(PACKAGE_FILE)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    fake_tarball(&src.join("usr/src"), name, sublevel);
    std::fs::create_dir_all(src.join("DEBIAN")).unwrap();
    std::fs::write(
        src.join("DEBIAN/control"),
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: all\nMaintainer: kbuild tests <tests@kbuild.invalid>\nDescription: a fake kernel source tarball for kbuild's tests\n"
        ),
    )
    .unwrap();
    let deb = root.path().join("test.deb");
    let built = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&src)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let installed = std::process::Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .output()
        .unwrap();
    assert!(installed.status.success(), "{}", text(&installed.stderr));
}

/// Purges the test package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["--purge", PACKAGE])
            .output();
    }
}

#[test]
#[ignore = "installs a Debian package with dpkg (root): run with --include-ignored"]
fn a_package_source_follows_a_real_package_update_and_refuses_a_tampered_file() {
    let ws = Ws::new();
    let _purge = Purge;
    install_package("6.6.71-1", 71);
    follow_package(&ws, &format!("file://{PACKAGE_FILE}"), PACKAGE);
    let path = std::env::var("PATH").unwrap();
    let first = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        first
            .stderr
            .contains(&format!("from {PACKAGE} 6.6.71-1 (Linux 6.6.71")),
        "{}",
        first.stderr
    );
    assert_eq!(version_of(&ws, &path), "6.6.x 6.6.71");
    assert_eq!(ws.run(&["//6.6.x:amd64"], 0).executed().len(), 0);

    // The distribution updates the package: the workspace follows without anyone editing a pin.
    install_package("6.6.72-1", 72);
    let second = ws.run(&["//6.6.x:amd64"], 0);
    assert!(
        second
            .stderr
            .contains("the package moved from 6.6.71-1 (Linux 6.6.71"),
        "{}",
        second.stderr
    );
    let compiled = second.executed().iter().any(|a| a.starts_with("compile "));
    assert!(compiled, "{:?}", second.executed());
    assert_eq!(version_of(&ws, &path), "6.6.x 6.6.72");
    let again = ws.run(&["//6.6.x:amd64"], 0);
    assert_eq!(again.executed().len(), 0, "and is a null build again");

    // The same path rewritten behind dpkg's back is not a package update.
    let lock = ws.read("kernel.local.lock");
    let mut bytes = std::fs::read(PACKAGE_FILE).unwrap();
    bytes.extend_from_slice(&[0; 512]);
    std::fs::write(PACKAGE_FILE, bytes).unwrap();
    let out = ws.kbuild(&["run", "//6.6.x:amd64"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("dpkg --verify reports it modified"),
        "{stderr}"
    );
    let reinstall = format!("apt-get install --reinstall {PACKAGE}");
    assert!(stderr.contains(&reinstall), "{stderr}");
    assert_eq!(ws.read("kernel.local.lock"), lock);
}
