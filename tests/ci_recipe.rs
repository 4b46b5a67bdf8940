//! The CI recipe of doc/ci.md: the workflow files pass real linters, and the sequence of
//! commands they run works here, each job a workspace with an empty cache, one remote cache
//! (nginx) and one registry between them. Ignored by default: they need the linters, nginx and
//! docker-registry that `KBUILD_SETUP_REAL=1 bash .ci/setup` installs.

mod common;

use std::process::Command;

use common::servers::{Registry, Server};
use common::{Ws, files_under};

/// Where .ci/setup installs actionlint and check-jsonschema (PyPI).
fn linter(name: &str) -> String {
    let dir = std::env::var("KBUILD_LINT").unwrap_or_else(|_| "/opt/kbuild-lint/bin".into());
    format!("{dir}/{name}")
}

fn lint(program: &str, args: &[&str]) {
    let out = Command::new(linter(program))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (KBUILD_SETUP_REAL=1 bash .ci/setup)"));
    assert!(
        out.status.success(),
        "{program} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "needs actionlint and check-jsonschema (KBUILD_SETUP_REAL=1 bash .ci/setup)"]
fn the_workflow_files_pass_their_linters() {
    lint("actionlint", &["examples/ci/github-actions.yml"]);
    lint(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.github-workflows",
            "examples/ci/github-actions.yml",
        ],
    );
    lint(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.gitlab-ci",
            "examples/ci/gitlab-ci.yml",
        ],
    );
}

/// A job: a fresh checkout with an empty cache, the remote cache in its environment.
fn job(remote: &Server, upload: bool, args: &[&str]) -> (Ws, std::process::Output) {
    let ws = Ws::new();
    let out = ws
        .command(args)
        .env("KBUILD_REMOTE_CACHE", &remote.url)
        .env("KBUILD_REMOTE_UPLOAD", upload.to_string())
        .output()
        .unwrap();
    (ws, out)
}

fn matrix(remote: &Server) -> Vec<String> {
    let (_, out) = job(remote, true, &["plan", "--format", "matrix"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    m["target"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "needs nginx and docker-registry (KBUILD_SETUP_REAL=1 bash .ci/setup)"]
fn the_ci_sequence_builds_each_target_once_and_pushes_from_the_cache() {
    let remote = Server::nginx();
    let registry = Registry::start();

    // The planning job: everything has work to do on an empty cache.
    let targets = matrix(&remote);
    assert_eq!(targets.len(), 6, "{targets:?}");
    assert!(targets.contains(&"//6.6.x:dbg-arm64".to_string()));

    // A pull request's jobs read the cache and write nothing.
    let before = files_under(&remote.storage()).len();
    let (_, out) = job(&remote, false, &["run", "--locked", &targets[0]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files_under(&remote.storage()).len(), before);

    // One build job per target, each from an empty cache.
    for target in &targets {
        let (_, out) = job(
            &remote,
            true,
            &["run", "--locked", "--format", "json", target],
        );
        let report = common::report(out, 0);
        assert_eq!(report.total("failed"), 0, "{target}");
    }

    // Planning again: no build jobs.
    assert_eq!(matrix(&remote), Vec::<String>::new());

    // The push job: every target is a hit; only the multi-arch indexes, which need every
    // arch's image, are made here (from cached images, in milliseconds); every image is pushed.
    let (ws, out) = job(&remote, true, &["run", "--format", "json"]);
    let report = common::report(out, 0);
    let executed = report.executed();
    assert!(
        executed.iter().all(|a| a.starts_with("index ")),
        "{executed:?}"
    );
    let out = ws
        .command(&["push", "--registry", &registry.host, "--insecure"])
        .env("KBUILD_REMOTE_CACHE", &remote.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two images and their two attestation manifests.
    let index = registry.manifest("linuxkit/kernel", "6.6.71-dbg");
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4);
    registry.manifest("linuxkit/kernel-perf", "6.6.71");
}
