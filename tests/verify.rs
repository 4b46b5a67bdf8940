//! `kbuild verify`: every action of a target rebuilt with the cache bypassed (fresh build
//! directories, another -j and umask) and compared with the cached result, or with the remote
//! cache's (`--against remote`, against a real nginx); a difference is named, both trees kept.

mod common;

use common::Ws;
use common::servers::Server;

fn verify(ws: &Ws, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["verify"];
    all.extend(args);
    let out = ws.kbuild(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_reproducible_target_verifies_and_a_clock_in_the_kernel_is_caught() {
    let ws = Ws::new();
    let (code, stdout, stderr) = verify(&ws, &["//6.6.x:amd64"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for action in [
        "patch //6.6.x",
        "compile //6.6.x:amd64",
        "package //6.6.x:amd64",
        "attest //6.6.x:amd64",
    ] {
        assert!(
            stdout.contains(&format!("same     {action} (")),
            "{action}: {stdout}"
        );
    }
    assert!(
        !stdout.contains("fetch "),
        "fetches are checked by their pin: {stdout}"
    );
    assert!(
        stderr.contains(" 0 differ, 0 failed to rebuild"),
        "{stderr}"
    );

    // A kernel build that writes the time: the compile is named with the file, both trees kept.
    ws.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_FAKE_CLOCK is not set",
        "CONFIG_FAKE_CLOCK=y",
    );
    let (code, stdout, stderr) = verify(&ws, &["//6.6.x:amd64"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = (stdout.lines())
        .find(|l| l.starts_with("DIFFERS  compile //6.6.x:amd64: "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.ends_with(": kernel"), "{line}");
    let kept = (stdout.lines())
        .find_map(|l| l.trim().strip_prefix("both trees kept in "))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        kept.starts_with(ws.path().join("cache/verify")),
        "{}",
        kept.display()
    );
    // diffoscope (Debian's diffoscope-minimal, from .ci/setup) shows how, when installed.
    if std::process::Command::new("diffoscope")
        .arg("--version")
        .output()
        .is_ok()
    {
        assert!(stdout.contains("         | --- "), "{stdout}");
    }
    let (cached, rebuilt) = (
        std::fs::read(kept.join("cached/kernel")).unwrap(),
        std::fs::read(kept.join("rebuilt/kernel")).unwrap(),
    );
    assert_ne!(cached, rebuilt);
    // Each action is judged alone, from the cached outputs of its dependencies: what builds on
    // the compile reproduces.
    assert!(
        stdout.contains("same     install //6.6.x:amd64 ("),
        "{stdout}"
    );
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn against_the_remote_cache_a_replaced_entry_is_caught() {
    let server = Server::nginx();
    let ws = Ws::new();
    let remote = ["--remote-cache", server.url.as_str()];
    let mut args = remote.to_vec();
    args.extend(["run", "//6.6.x:amd64", "//6.6.x:arm64"]);
    let out = ws.kbuild(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut args = remote.to_vec();
    args.extend(["verify", "--against", "remote", "//6.6.x:amd64"]);
    let out = ws.kbuild(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("same     compile //6.6.x:amd64 ("),
        "{stdout}"
    );

    // The server's entry for the amd64 compile replaced by a well-formed one: the arm64
    // compile's, which a reader without a trusted key cannot tell from the right one.
    let key = |label: &str| {
        let plan = ws.kbuild(&["plan", "--format", "json", label]);
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let action = (plan["actions"].as_array().unwrap().iter())
            .find(|a| a["name"] == format!("compile {label}"))
            .unwrap()
            .clone();
        action["key"].as_str().unwrap().to_string()
    };
    let schema = kbuild::key::SCHEMA as u64;
    let ac = |label: &str| {
        let (digest, _) = common::reapi::action_digest("compile", &key(label), schema);
        server.storage().join("ac").join(digest.hash)
    };
    let (amd, arm) = (ac("//6.6.x:amd64"), ac("//6.6.x:arm64"));
    std::fs::copy(&arm, &amd).unwrap();
    let out = ws.kbuild(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("DIFFERS  compile //6.6.x:amd64: "),
        "{stdout}"
    );
}
