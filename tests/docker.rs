//! The Docker executor against a real daemon and a real builder image. Ignored by default;
//! `.ci/run` starts dockerd, creates the image with `kbuild builder create` and runs them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Ws, wait_until};
use kbuild::exec::docker::container::LABEL;
use kbuild::exec::docker::owner::{self, Owner};
use kbuild::exec::docker::{Endpoints, Mounts};
use kbuild::exec::{Cancel, Docker, ExecError, Executor, Invocation};

/// The image `.ci/setup` creates.
fn builder() -> String {
    std::env::var("KBUILD_TEST_BUILDER").unwrap_or_else(|_| "kbuild/builder:bookworm".into())
}

const MANIFEST_BUILDER: &str = "linuxkit/alpine:1111111111111111111111111111111111111111";

/// The test workspace, built with the docker executor by the manifest's default and `image`.
fn docker_ws(image: &str) -> Ws {
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        &format!("    builder \"{MANIFEST_BUILDER}\""),
        &format!("    builder \"{image}\"\n    executor \"docker\""),
    );
    ws
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The containers kbuild started for this workspace, running or not.
fn containers_of(ws: &Ws) -> Vec<String> {
    let labels = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=org.kbuild.action",
        "--format",
        "{{.ID}} {{.Label \"org.kbuild.action\"}}",
    ]);
    let path = ws.path().display().to_string();
    labels
        .lines()
        .filter(|l| l.contains(&path))
        .map(String::from)
        .collect()
}

/// The containers of this workspace that are running.
fn running_containers_of(ws: &Ws) -> Vec<String> {
    let running = docker(&["ps", "--filter", "status=running", "--format", "{{.ID}}"]);
    containers_of(ws)
        .into_iter()
        .filter(|c| running.lines().any(|id| c.starts_with(id)))
        .collect()
}

/// A tag of its own for one test, so that retagging it disturbs no other test.
fn private_tag(ws: &Ws, of: &str) -> String {
    let name = ws
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let tag = format!("kbuild-test/{}:1", name.trim_start_matches('.'));
    docker(&["tag", of, &tag]);
    tag
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn a_container_streams_output_keeps_the_exit_code_and_writes_as_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let mounts = Mounts {
        read_only: vec![],
        read_write: vec![dir.path().to_path_buf()],
    };
    let docker = Docker::new(Endpoints::default(), &mounts).unwrap();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let shell = |script: &str| {
        let mut inv = Invocation::new("sh", dir.path()).arg("-c").arg(script);
        inv.builder = Some(builder());
        inv
    };
    let inv = shell("echo to-out; echo to-err >&2; touch made; exit 3");
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
    // No network: a `none` network has loopback only.
    let offline = shell(r#"test "$(ls /sys/class/net)" = lo"#);
    docker.run(&offline, &log, &Cancel::default()).unwrap();

    // Background work (snapshot, headers) gets the daemon's lowest CPU weight, on cgroup v1
    // (cpu.shares, default 1024) and v2 (cpu.weight, default 100) alike.
    let weight = |background: bool| {
        let mut inv = shell(
            "cat /sys/fs/cgroup/cpu.weight 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.shares \
             || cat /sys/fs/cgroup/cpu,cpuacct/cpu.shares",
        );
        inv.background = background;
        let start = std::fs::metadata(&log_path).unwrap().len() as usize;
        docker.run(&inv, &log, &Cancel::default()).unwrap();
        let text = std::fs::read_to_string(&log_path).unwrap();
        text[start..].trim().parse::<u32>().unwrap()
    };
    let (low, normal) = (weight(true), weight(false));
    assert!(
        low <= 2 && normal >= 100,
        "background {low}, normal {normal}"
    );

    // A daemon that cannot see a path (a builder on another machine) refuses the container.
    let mounts = Mounts {
        read_only: vec![dir.path().join("not-on-the-daemon")],
        read_write: vec![dir.path().to_path_buf()],
    };
    let blind = Docker::new(Endpoints::default(), &mounts).unwrap();
    match blind.run(&shell("true"), &log, &Cancel::default()) {
        Err(ExecError::Unavailable { message, hint }) => {
            assert!(message.contains("does not exist"), "{message}");
            assert!(hint.contains("same paths"), "{hint}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn the_fake_pipeline_builds_in_containers_as_on_the_host() {
    let ws = docker_ws(&builder());
    let r = ws.run(&[], 0);
    assert!(
        r.executed()
            .contains(&"compile //6.6.x:dbg-arm64".to_string())
    );
    assert!(containers_of(&ws).is_empty(), "{:?}", containers_of(&ws));
    let host = Ws::new();
    host.run(&[], 0);
    for file in [
        "6.6.x/amd64/kernel",
        "6.6.x/arm64/kernel",
        "6.6.x/dbg-amd64/kernel-dev.tar",
        "6.6.x/amd64/kernel.tar",
        "6.6.x/amd64/kernel-headers.tar",
    ] {
        let path = format!("out/{file}");
        assert_eq!(
            std::fs::read(ws.path().join(&path)).unwrap(),
            std::fs::read(host.path().join(&path)).unwrap(),
            "{file}"
        );
    }
    // The key holds the image ID; nothing reruns while it stays.
    let again = ws.run(&[], 0);
    assert!(again.executed().is_empty(), "{:?}", again.executed());
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn a_changed_builder_image_reruns_compile_but_not_fetch() {
    let ws = Ws::new();
    let tag = private_tag(&ws, &builder());
    let ws = {
        ws.edit(
            "kernel.kdl",
            &format!("    builder \"{MANIFEST_BUILDER}\""),
            &format!("    builder \"{tag}\"\n    executor \"docker\""),
        );
        ws
    };
    ws.run(&["//6.6.x:amd64"], 0);
    // A new image under the same tag: one more file in it.
    let name = format!("kbuild-test-commit-{}", std::process::id());
    docker(&[
        "run",
        "--name",
        &name,
        &tag,
        "touch",
        "/etc/kbuild-test-marker",
    ]);
    docker(&["commit", &name, &tag]);
    docker(&["rm", &name]);
    let r = ws.run(&["//6.6.x:amd64"], 0);
    let executed = r.executed();
    assert!(executed.contains(&"compile //6.6.x:amd64".to_string()));
    assert!(executed.contains(&"patch //6.6.x".to_string()));
    assert!(
        !executed.iter().any(|n| n.starts_with("fetch")),
        "{executed:?}"
    );
    let why = ws.why("//6.6.x:amd64");
    assert!(
        why.contains(&format!("builder image changed ({tag}@")),
        "{why}"
    );
    docker(&["rmi", &tag]);
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn killing_a_run_mid_compile_leaves_no_container_and_no_entry() {
    // (signal, whether the compile's container is running when it comes). The last is the
    // race CI once lost: kbuild killed as soon as the container exists, perhaps before it
    // started; such a container is not the watcher's to end but the next run's to sweep.
    let cases = [
        (libc::SIGINT, true),
        (libc::SIGKILL, true),
        (libc::SIGKILL, false),
    ];
    for (signal, running) in cases {
        let ws = docker_ws(&builder());
        ws.write(
            "kernel/common/config-dbg",
            "CONFIG_DEBUG_KERNEL=y\nCONFIG_FAKE_SLOW=y\n",
        );
        let mut child = ws
            .command(&["run", "//6.6.x:dbg-amd64"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let compiling = |ws: &Ws| {
            let containers = match running {
                true => running_containers_of(ws),
                false => containers_of(ws),
            };
            containers.iter().any(|c| c.contains(" all"))
        };
        wait_until(
            Instant::now() + Duration::from_secs(60),
            Duration::from_millis(20),
            || compiling(&ws),
            || "compile never started".into(),
        );
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        if signal == libc::SIGINT {
            assert_eq!(status.code(), Some(130));
        }
        // Within 30 s, no container of this workspace is left; `case` says which wait failed.
        let all_removed = |case: String| {
            wait_until(
                Instant::now() + Duration::from_secs(30),
                Duration::from_millis(100),
                || containers_of(&ws).is_empty(),
                || format!("{case}: containers left behind: {:?}", containers_of(&ws)),
            );
        };
        if running {
            all_removed(format!("signal {signal}"));
        }
        // Nothing unfinished was cached: with the hang gone, compile runs.
        ws.write("kernel/common/config-dbg", "CONFIG_DEBUG_KERNEL=y\n");
        let r = ws.run(&["//6.6.x:dbg-amd64"], 0);
        assert!(
            r.executed()
                .contains(&"compile //6.6.x:dbg-amd64".to_string())
        );
        // Whatever the signal left, a running container's own watcher or this run's sweep
        // has removed it.
        all_removed(format!("signal {signal}, running {running}"));
    }
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn a_run_removes_containers_whose_kbuild_died_before_starting_them() {
    let ws = docker_ws(&builder());
    // What a kbuild killed between creating a container and starting it leaves: a container
    // that never ran, owned by a process that has ended.
    let mut dead = Command::new("sleep").arg("60").spawn().unwrap();
    let dead_owner = Owner::of(dead.id()).unwrap().label();
    dead.kill().unwrap();
    dead.wait().unwrap();
    let live_owner = Owner::current().unwrap().label();
    let path = ws.path().display().to_string();
    let create = |owner: &str| {
        docker(&[
            "create",
            "--label",
            &format!("{LABEL}=make -C {path} all"),
            "--label",
            &format!("{}={owner}", owner::LABEL),
            &builder(),
            "true",
        ])
    };
    let orphan = create(&dead_owner);
    let alive = create(&live_owner);
    let elsewhere = create("0b5e55ed-another-boot/1/1");
    assert_eq!(containers_of(&ws).len(), 3);

    ws.run(&["//6.6.x:amd64"], 0);
    let left = containers_of(&ws);
    let left_has = |id: &str| {
        left.iter()
            .any(|c| id.starts_with(c.split(' ').next().unwrap()))
    };
    assert!(!left_has(&orphan), "the orphan is still there: {left:?}");
    assert!(left_has(&alive), "a running kbuild's container was removed");
    assert!(
        left_has(&elsewhere),
        "another machine's container was removed"
    );
    docker(&["rm", &alive, &elsewhere]);
}

/// Whether `needle` is in miette's report, whatever it wrapped where.
fn reports(stderr: &str, needle: &str) -> bool {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '│')
            .collect()
    };
    squash(stderr).contains(&squash(needle))
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn a_missing_image_or_daemon_is_a_clear_error() {
    let ws = docker_ws("kbuild-test/no-such-image:never");
    let out = ws.kbuild(&["run", "//6.6.x:amd64"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        reports(
            &stderr,
            "the builder image `kbuild-test/no-such-image:never` is not on the Docker daemon"
        ),
        "{stderr}"
    );
    assert!(reports(&stderr, "kbuild builder create"), "{stderr}");

    let ws = docker_ws(&builder());
    let out = ws
        .command(&["run", "//6.6.x:amd64"])
        .env("DOCKER_HOST", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        reports(
            &stderr,
            "cannot reach the Docker daemon at tcp://127.0.0.1:1"
        ),
        "{stderr}"
    );
    assert!(reports(&stderr, "--executor host"), "{stderr}");
}

#[test]
#[ignore = "needs a Docker daemon and the builder image"]
fn an_arch_with_a_native_builder_endpoint_is_built_there_without_a_cross_prefix() {
    let ws = docker_ws(&builder());
    // The local daemon stands in for an arm64 machine: the routing and the native toolchain
    // settings are what is under test, the fake kernel does not care which gcc it is.
    let socket = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    let text = ws.read("kernel.kdl");
    ws.write(
        "kernel.kdl",
        &format!("builders {{\n    aarch64 \"{socket}\"\n}}\n{text}"),
    );
    let shown = ws.kbuild(&["builder"]);
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("6.6.x\taarch64")
            && l.contains(&socket)
            && l.contains("native")),
        "{table}"
    );
    ws.run(&["//6.6.x:arm64", "//6.6.x:amd64"], 0);
    let arm = ws.read("out/6.6.x/arm64/kernel");
    assert!(!arm.contains("aarch64-linux-gnu-"), "{arm}");
    // An unreachable native builder fails that arch only, and says where it looked.
    let out = ws
        .command(&["run", "//6.6.x:dbg-arm64"])
        .env("KBUILD_DOCKER_HOST_AARCH64", "tcp://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(reports(&stderr, "tcp://127.0.0.1:1"), "{stderr}");
    // Without the endpoint, arm64 is cross-compiled on the local daemon.
    ws.write("kernel.kdl", &text);
    ws.run(&["//6.6.x:arm64"], 0);
    assert!(
        ws.read("out/6.6.x/arm64/kernel")
            .contains("aarch64-linux-gnu-")
    );
}
