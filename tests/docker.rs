//! The Docker executor against a real daemon and builder image. Slow and needing root's daemon:
//! ignored by default; `.ci/run` starts dockerd, creates the image and runs them.

mod common;

use kbuild::exec::docker::{Endpoints, Mounts};
use kbuild::exec::{Cancel, Docker, ExecError, Executor, Invocation};

/// The image `.ci/setup` creates with `kbuild builder create`.
fn builder() -> String {
    std::env::var("KBUILD_TEST_BUILDER").unwrap_or_else(|_| "kbuild/builder:bookworm".into())
}

fn docker_for(dir: &std::path::Path) -> Docker {
    let mounts = Mounts {
        read_only: vec![],
        read_write: vec![dir.to_path_buf()],
    };
    Docker::new(Endpoints::default(), &mounts).unwrap()
}

fn shell(dir: &std::path::Path, script: &str) -> Invocation {
    let mut inv = Invocation::new("sh", dir).arg("-c").arg(script);
    inv.builder = Some(builder());
    inv
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn a_container_streams_output_keeps_the_exit_code_and_owns_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let docker = docker_for(dir.path());
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let inv = shell(
        dir.path(),
        "echo to-out; echo to-err >&2; touch made; exit 3",
    );
    let err = docker.run(&inv, &log, &Cancel::default()).unwrap_err();
    assert!(
        matches!(&err, ExecError::Failed { status, .. } if status == "exit status: 3"),
        "{err:?}"
    );
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("to-out") && text.contains("to-err"),
        "{text:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(dir.path().join("made")).unwrap();
    // SAFETY: getuid cannot fail.
    assert_eq!(made.uid(), unsafe { libc::getuid() });
    let ok = shell(
        dir.path(),
        "test -w . && ! ping -c1 -W1 127.0.0.1 2>/dev/null; true",
    );
    docker.run(&ok, &log, &Cancel::default()).unwrap();
}
