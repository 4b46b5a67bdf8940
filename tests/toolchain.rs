//! The host toolchain's identity: every program a recipe runs, resolved on the PATH the action
//! gets and identified by content. Swapping one binutils program, or removing an optional one,
//! reruns exactly what that toolchain builds, and `why` names the program.

mod common;

use common::Ws;

/// A directory put first on PATH holding `programs` (each a copy of a harmless binary with a
/// content of its own), and that PATH.
fn shim(ws: &Ws, programs: &[(&str, &str)]) -> String {
    let dir = ws.path().join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, marker) in programs {
        std::fs::write(dir.join(name), format!("#!/bin/sh\n# {marker}\nexit 0\n")).unwrap();
        std::fs::set_permissions(
            dir.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap())
}

fn run_with(ws: &Ws, path: &str, args: &[&str]) -> std::process::Output {
    ws.command(args).env("PATH", path).output().unwrap()
}

#[test]
fn another_ld_reruns_configure_and_compile_but_not_patch() {
    let ws = Ws::new();
    let plain = std::env::var("PATH").unwrap();
    common::report(
        run_with(&ws, &plain, &["run", "--format", "json", "//6.6.x:amd64"]),
        0,
    );
    let path = shim(&ws, &[("ld", "another ld")]);
    let why = String::from_utf8(run_with(&ws, &path, &["why", "//6.6.x:amd64"]).stdout).unwrap();
    assert!(why.contains("toolchain changed: ld (blake3 "), "{why}");
    let r = common::report(
        run_with(&ws, &path, &["run", "--format", "json", "//6.6.x:amd64"]),
        0,
    );
    let executed = r.executed();
    assert!(
        executed.contains(&"configure //6.6.x:amd64".to_string()),
        "{executed:?}"
    );
    assert!(
        executed.contains(&"compile //6.6.x:amd64".to_string()),
        "{executed:?}"
    );
    assert!(
        !executed
            .iter()
            .any(|a| a.starts_with("patch ") || a.starts_with("fetch ")),
        "{executed:?}"
    );
}

#[test]
fn an_optional_program_that_goes_away_is_a_change_too() {
    let ws = Ws::new();
    let with = shim(&ws, &[("pahole", "pahole v1.24")]);
    common::report(
        run_with(&ws, &with, &["run", "--format", "json", "//6.6.x:amd64"]),
        0,
    );
    std::fs::remove_file(ws.path().join("shim/pahole")).unwrap();
    let why = String::from_utf8(run_with(&ws, &with, &["why", "//6.6.x:amd64"]).stdout).unwrap();
    assert!(why.contains("toolchain changed: pahole (blake3 "), "{why}");
    assert!(why.contains(" → absent)"), "{why}");
    let r = common::report(
        run_with(&ws, &with, &["run", "--format", "json", "//6.6.x:amd64"]),
        0,
    );
    assert!(
        r.executed()
            .contains(&"configure //6.6.x:amd64".to_string())
    );
}

#[test]
fn the_null_build_fast_path_notices_a_toolchain_change() {
    let ws = Ws::new();
    let plain = std::env::var("PATH").unwrap();
    for _ in 0..2 {
        assert!(run_with(&ws, &plain, &["run"]).status.success());
    }
    let again = String::from_utf8(run_with(&ws, &plain, &["run"]).stderr).unwrap();
    assert!(again.contains("(nothing changed)"), "{again}");
    let path = shim(&ws, &[("as", "another as")]);
    let swapped = String::from_utf8(run_with(&ws, &path, &["run"]).stderr).unwrap();
    assert!(!swapped.contains("(nothing changed)"), "{swapped}");
    assert!(!swapped.contains(" 0 executed"), "{swapped}");
}
