//! The shipped examples stay buildable and in step with the fixtures they are made from.

mod common;

use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// `examples/fake/sources/linux-6.6.71.tar` is the fake kernel fixture, packed deterministically.
/// KBUILD_WRITE_EXAMPLES=1 rewrites it after the fixture changed (then update its sha256).
#[test]
fn fake_example_tarball_matches_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (fresh, sha) = common::make_tarball(dir.path(), "6.6.71");
    let shipped = example("fake/sources/linux-6.6.71.tar");
    if std::env::var_os("KBUILD_WRITE_EXAMPLES").is_some() {
        std::fs::copy(&fresh, &shipped).unwrap();
    }
    assert_eq!(
        std::fs::read(&fresh).unwrap(),
        std::fs::read(&shipped).unwrap(),
        "run with KBUILD_WRITE_EXAMPLES=1"
    );
    let kdl = std::fs::read_to_string(example("fake/kernel.kdl")).unwrap();
    assert!(
        kdl.contains(&sha),
        "examples/fake/kernel.kdl must pin sha256 {sha}"
    );
}

#[test]
fn fake_example_builds() {
    // A copy, so that the run's out/ and cache land in the temp dir, not in the repository.
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("fake");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(example("fake"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(copy.join("out"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kbuild"))
        .arg("-C")
        .arg(&copy)
        .args(["run", "//6.6.x:dbg-amd64"])
        .env("KBUILD_CACHE", work.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
