//! `kbuild worker` against a real cluster: BuildGrid 0.9.1's Execution and Bots services on its
//! SQL scheduler, on a real PostgreSQL 15. Actions go in through REAPI's Execution service, from
//! BuildGrid's own `bgd execute` and from a small client written here from the REAPI protos,
//! never from kbuild's code.
//!
//! Ignored by default (they need BuildGrid and PostgreSQL): `.ci/run` runs them.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use common::reapi::sha256;
use common::servers::{Server, bgd};
use prost::Message;

/// A cluster: PostgreSQL, BuildGrid, and the workers started on it.
struct Cluster {
    server: Server,
    _postgres: Server,
    workers: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Cluster {
    fn start() -> Cluster {
        let postgres = Server::postgres();
        let server = Server::buildgrid_execution(&postgres);
        Cluster {
            server,
            _postgres: postgres,
            workers: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts a `kbuild worker` with `args`; gives its index.
    fn worker(&mut self, args: &[&str]) -> usize {
        let n = self.workers.len();
        let log = std::fs::File::create(self.dir.path().join(format!("worker-{n}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kbuild"))
            .args(["worker", "--server", &self.server.url, "--dir"])
            .arg(self.dir.path().join(format!("worker-{n}")))
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers.push(child);
        n
    }

    fn worker_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{n}.log"))).unwrap_or_default()
    }

    fn worker_dir(&self, n: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("worker-{n}"))
    }

    fn signal(&self, n: usize, signal: i32) {
        // SAFETY: a plain kill of the worker's own process.
        unsafe { libc::kill(self.workers[n].id() as i32, signal) };
    }

    fn client(&self) -> Client {
        Client::connect(&self.server.url)
    }

    /// kbuild's own client on a cache of its own, and an input root of one source file in it.
    fn kbuild_client_with_one_file(
        &self,
    ) -> (
        std::sync::Arc<kbuild::remote::Remote>,
        kbuild::cache::OutputManifest,
    ) {
        let cache = kbuild::cache::Cache::open(&self.dir.path().join("cache")).unwrap();
        let tree = self.dir.path().join("tree");
        std::fs::create_dir_all(tree.join("src")).unwrap();
        std::fs::write(tree.join("src/main.c"), "int main;\n").unwrap();
        let inputs = kbuild::cache::OutputManifest::ingest(&tree, &cache.blobs).unwrap();
        (self.kbuild_client(&cache), inputs)
    }

    /// kbuild's own client of the cluster (`Remote`), on `cache`.
    fn kbuild_client(
        &self,
        cache: &kbuild::cache::Cache,
    ) -> std::sync::Arc<kbuild::remote::Remote> {
        let settings = kbuild::remote::Settings {
            url: self.server.url.clone(),
            instance: String::new(),
            headers: Vec::new(),
            upload: true,
            timeout: Duration::from_secs(60),
            transfers: 4,
            sign_key: None,
            trust: None,
        };
        kbuild::remote::Remote::connect(
            &settings,
            cache,
            std::sync::Arc::new(kbuild::report::Silent),
        )
        .unwrap()
    }
}

/// A REAPI client written from the protos: uploads the messages and blobs of an action, calls
/// Execute and reads the final operation.
struct Client {
    runtime: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
}

/// An action to send: a command line, its input files, its outputs and platform.
#[derive(Default)]
struct Spec {
    args: Vec<&'static str>,
    inputs: Vec<(&'static str, &'static [u8], bool)>,
    outputs: Vec<&'static str>,
    platform: Vec<(&'static str, String)>,
    working_directory: &'static str,
    /// Makes the action unique, so no cached result answers it.
    salt: String,
}

impl Client {
    fn connect(url: &str) -> Client {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let endpoint = format!("http://{}", url.strip_prefix("grpc://").unwrap());
        let channel = runtime.block_on(async {
            tonic::transport::Endpoint::from_shared(endpoint)
                .unwrap()
                .connect()
                .await
                .unwrap()
        });
        Client { runtime, channel }
    }

    fn upload(&self, blobs: Vec<Vec<u8>>) {
        let mut cas = re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        );
        let request = re::BatchUpdateBlobsRequest {
            requests: blobs
                .into_iter()
                .map(|data| re::batch_update_blobs_request::Request {
                    digest: Some(sha256(&data)),
                    data,
                    compressor: 0,
                })
                .collect(),
            ..Default::default()
        };
        let answer = self
            .runtime
            .block_on(cas.batch_update_blobs(request))
            .unwrap();
        for r in answer.into_inner().responses {
            assert_eq!(r.status.unwrap_or_default().code, 0);
        }
    }

    fn read(&self, digest: &re::Digest) -> Vec<u8> {
        let mut cas = re::content_addressable_storage_client::ContentAddressableStorageClient::new(
            self.channel.clone(),
        );
        let request = re::BatchReadBlobsRequest {
            digests: vec![digest.clone()],
            ..Default::default()
        };
        let answer = self
            .runtime
            .block_on(cas.batch_read_blobs(request))
            .unwrap();
        let data = answer.into_inner().responses.remove(0).data;
        assert_eq!(
            sha256(&data),
            *digest,
            "the server's blob matches its digest"
        );
        data
    }

    /// Uploads the action and executes it; the ExecuteResponse, or the gRPC status that ended
    /// the operation.
    fn execute(
        &self,
        spec: &Spec,
    ) -> Result<re::ExecuteResponse, bazel_remote_apis::google::rpc::Status> {
        let mut blobs = Vec::new();
        let mut root = re::Directory::default();
        for (name, data, executable) in &spec.inputs {
            root.files.push(re::FileNode {
                name: name.to_string(),
                digest: Some(sha256(data)),
                is_executable: *executable,
                ..Default::default()
            });
            blobs.push(data.to_vec());
        }
        let root = root.encode_to_vec();
        let command = re::Command {
            arguments: spec.args.iter().map(|a| a.to_string()).collect(),
            output_paths: spec.outputs.iter().map(|a| a.to_string()).collect(),
            working_directory: spec.working_directory.into(),
            environment_variables: vec![re::command::EnvironmentVariable {
                name: "SALT".into(),
                value: spec.salt.clone(),
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let mut platform = vec![re::platform::Property {
            name: "OSFamily".into(),
            value: "Linux".into(),
        }];
        for (name, value) in &spec.platform {
            platform.push(re::platform::Property {
                name: name.to_string(),
                value: value.clone(),
            });
        }
        platform.sort_by(|a, b| a.name.cmp(&b.name));
        let action = re::Action {
            command_digest: Some(sha256(&command)),
            input_root_digest: Some(sha256(&root)),
            platform: Some(re::Platform {
                properties: platform,
            }),
            do_not_cache: true,
            ..Default::default()
        }
        .encode_to_vec();
        let digest = sha256(&action);
        blobs.extend([root, command, action]);
        self.upload(blobs);
        let mut exec = re::execution_client::ExecutionClient::new(self.channel.clone());
        let request = re::ExecuteRequest {
            action_digest: Some(digest),
            skip_cache_lookup: true,
            ..Default::default()
        };
        self.runtime.block_on(async {
            let mut stream = exec.execute(request).await.unwrap().into_inner();
            while let Some(op) = stream.message().await.unwrap() {
                if !op.done {
                    continue;
                }
                use bazel_remote_apis::google::longrunning::operation::Result as R;
                match op.result.unwrap() {
                    R::Error(status) => return Err(status),
                    R::Response(any) => {
                        let response = re::ExecuteResponse::decode(&any.value[..]).unwrap();
                        match response.status.clone().filter(|s| s.code != 0) {
                            Some(status) => return Err(status),
                            None => return Ok(response),
                        }
                    }
                }
            }
            panic!("the operation stream ended before the operation was done")
        })
    }
}

/// kbuild's form of a remote action: `/bin/sh -c SCRIPT` in `src/`, one output directory `out`.
fn shell(script: &str) -> kbuild::remote::RemoteCommand {
    kbuild::remote::RemoteCommand {
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        working_directory: "src".into(),
        outputs: vec!["out".into()],
        platform: [("OSFamily".to_string(), "Linux".to_string())].into(),
        timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

fn salt() -> String {
    format!("{:?}", Instant::now())
}

#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn a_worker_runs_actions_for_bgd_execute_and_for_a_reapi_client() {
    let mut cluster = Cluster::start();
    cluster.worker(&["--executor", "host", "--jobs", "2"]);
    // BuildGrid's own client: an input file in, an executable output file back.
    let root = cluster.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("in.txt"), "hello\n").unwrap();
    let dl = cluster.dir.path().join("dl");
    let out = Command::new(bgd())
        .args(["execute", "--remote"])
        .arg(cluster.server.url.replace("grpc://", "http://"))
        .args([
            "command",
            "-p",
            "OSFamily",
            "Linux",
            "--output-file",
            "up.txt",
        ])
        .arg("--output-directory")
        .arg(&dl)
        .arg(&root)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "tr a-z A-Z < in.txt > up.txt && chmod +x up.txt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("up.txt")).unwrap(),
        "HELLO\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        dl.join("up.txt").metadata().unwrap().permissions().mode() & 0o100,
        0
    );

    // The REAPI client: a tree of outputs, stdout, stderr and the exit code.
    let client = cluster.client();
    let response = client
        .execute(&Spec {
            args: vec!["/bin/sh", "-c", "mkdir -p out/sub && cp tool out/sub/ && ln -s sub/tool out/link && echo said && echo warned >&2 && exit 3"],
            inputs: vec![("tool", b"#!/bin/sh\n", true)],
            outputs: vec!["out"],
            salt: salt(),
            ..Default::default()
        })
        .unwrap();
    let result = response.result.unwrap();
    assert_eq!(result.exit_code, 3);
    assert_eq!(
        client.read(result.stdout_digest.as_ref().unwrap()),
        b"said\n"
    );
    assert_eq!(
        client.read(result.stderr_digest.as_ref().unwrap()),
        b"warned\n"
    );
    let dir = &result.output_directories[0];
    assert_eq!(dir.path, "out");
    let tree = re::Tree::decode(&client.read(dir.tree_digest.as_ref().unwrap())[..]).unwrap();
    let top = tree.root.unwrap();
    assert_eq!(top.symlinks[0].name, "link");
    assert_eq!(top.symlinks[0].target, "sub/tool");
    assert_eq!(top.directories[0].name, "sub");
    let sub = &tree.children[0];
    assert_eq!(sub.files[0].name, "tool");
    assert!(sub.files[0].is_executable);
    assert_eq!(
        client.read(sub.files[0].digest.as_ref().unwrap()),
        b"#!/bin/sh\n"
    );
    assert!(
        result
            .execution_metadata
            .unwrap()
            .worker
            .ends_with(&cluster.workers[0].id().to_string()),
        "the result names the bot"
    );
}

#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn a_worker_refuses_actions_that_reach_outside_their_directory() {
    let mut cluster = Cluster::start();
    cluster.worker(&["--executor", "host"]);
    let client = cluster.client();
    let canary = cluster.dir.path().join("canary");
    for (working_directory, outputs) in [("../..", vec!["x"]), ("", vec!["../../escape"])] {
        let status = client
            .execute(&Spec {
                args: vec!["/bin/sh", "-c", "echo x > x"],
                outputs,
                working_directory,
                salt: salt(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(status.code, 3, "INVALID_ARGUMENT: {}", status.message);
        assert!(status.message.contains("leaves"), "{}", status.message);
    }
    // An input root whose directory names `..`: refused before anything is written.
    let evil = re::Directory {
        files: vec![re::FileNode {
            name: "canary".into(),
            digest: Some(sha256(b"owned")),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let root = re::Directory {
        directories: vec![re::DirectoryNode {
            name: "..".into(),
            digest: Some(sha256(&evil)),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let command = re::Command {
        arguments: vec!["true".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let action = re::Action {
        command_digest: Some(sha256(&command)),
        input_root_digest: Some(sha256(&root)),
        platform: Some(re::Platform {
            properties: vec![re::platform::Property {
                name: "OSFamily".into(),
                value: "Linux".into(),
            }],
        }),
        salt: salt().into_bytes(),
        ..Default::default()
    }
    .encode_to_vec();
    let digest = sha256(&action);
    client.upload(vec![evil, root, command, action, b"owned".to_vec()]);
    let mut exec = re::execution_client::ExecutionClient::new(client.channel.clone());
    let finished = client.runtime.block_on(async {
        let request = re::ExecuteRequest {
            action_digest: Some(digest),
            skip_cache_lookup: true,
            ..Default::default()
        };
        let mut stream = exec.execute(request).await.unwrap().into_inner();
        let mut last = None;
        while let Some(op) = stream.message().await.unwrap() {
            last = Some(op);
        }
        last.unwrap()
    });
    assert!(finished.done);
    assert!(!canary.exists());
    assert!(!cluster.worker_dir(0).join("canary").exists());
    assert!(
        cluster
            .worker_log(0)
            .contains("the tree names an entry `..`"),
        "{}",
        cluster.worker_log(0)
    );
}

/// Waits until a lease's directory appears under the worker's `leases/`.
fn wait_for_lease(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let leases = || {
        std::fs::read_dir(dir.join("leases")).map_or(0, |slots| {
            (slots.flatten())
                .filter(|slot| slot.path().join("lease").exists())
                .count()
        })
    };
    while leases() == 0 {
        assert!(
            Instant::now() < deadline,
            "no lease reached {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn a_killed_worker_s_action_completes_on_another_and_sigterm_finishes_first() {
    let mut cluster = Cluster::start();
    let first = cluster.worker(&["--executor", "host"]);
    let client = cluster.client();
    let spec = Spec {
        args: vec!["/bin/sh", "-c", "sleep 2; echo done > result"],
        outputs: vec!["result"],
        salt: salt(),
        ..Default::default()
    };
    let answer = std::thread::scope(|scope| {
        let running = scope.spawn(|| client.execute(&spec));
        wait_for_lease(&cluster.worker_dir(first));
        cluster.signal(first, libc::SIGKILL);
        let second = cluster.worker(&["--executor", "host"]);
        let answer = running.join().unwrap().unwrap();
        let worker = answer
            .result
            .as_ref()
            .unwrap()
            .execution_metadata
            .as_ref()
            .unwrap();
        assert!(
            worker
                .worker
                .ends_with(&cluster.workers[second].id().to_string())
        );
        answer
    });
    let result = answer.result.unwrap();
    assert_eq!(result.exit_code, 0);
    assert_eq!(
        client.read(result.output_files[0].digest.as_ref().unwrap()),
        b"done\n"
    );

    // SIGTERM while a lease runs: the lease finishes and is reported, then the worker leaves.
    let second = cluster.workers.len() - 1;
    let spec = Spec {
        salt: salt(),
        ..spec
    };
    std::thread::scope(|scope| {
        let running = scope.spawn(|| client.execute(&spec));
        let dir = cluster.worker_dir(second);
        let _ = std::fs::remove_dir_all(dir.join("leases"));
        std::fs::create_dir_all(dir.join("leases")).unwrap();
        wait_for_lease(&dir);
        cluster.signal(second, libc::SIGTERM);
        let answer = running.join().unwrap().unwrap();
        assert_eq!(answer.result.unwrap().exit_code, 0);
    });
    let status = cluster.workers[second].wait().unwrap();
    assert!(status.success(), "{}", cluster.worker_log(second));
}

/// The Docker executor keeps one container per slot and image: a second lease runs in the same
/// container (the same hostname) but sees nothing the first wrote outside its input root (the
/// image is read-only, its scratch emptied), and a worker killed by SIGKILL leaves no container.
#[test]
#[ignore = "needs BuildGrid, PostgreSQL, dockerd and the builder image: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn a_docker_worker_runs_the_action_in_its_container_image() {
    let mut cluster = Cluster::start();
    let image = "kbuild/builder:bookworm";
    let worker = cluster.worker(&["--executor", "docker", "--image", image]);
    let id = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let id = String::from_utf8(id.stdout).unwrap().trim().to_string();
    let client = cluster.client();
    let run = |script: &'static str| {
        let response = client
            .execute(&Spec {
                args: vec!["/bin/sh", "-c", script],
                inputs: vec![("in", b"data", false)],
                outputs: vec!["out"],
                platform: vec![("container-image", format!("docker://{image}@{id}"))],
                salt: salt(),
                ..Default::default()
            })
            .unwrap();
        let result = response.result.unwrap();
        assert_eq!(result.exit_code, 0, "{}", cluster.worker_log(worker));
        String::from_utf8(client.read(result.output_files[0].digest.as_ref().unwrap())).unwrap()
    };
    let first = run(
        "test -f /.dockerenv && cat in > out && hostname >> out && touch /tmp/left /dev/shm/left \
         && ! touch /left 2>/dev/null",
    );
    let mut host = first.strip_prefix("data").unwrap().trim().to_string();
    let second = run("hostname > out; ls -A /tmp /var/tmp /dev/shm >> out");
    assert_eq!(
        second.lines().next(),
        Some(host.as_str()),
        "the second lease ran in another container: {second}"
    );
    assert!(
        !second.contains("left"),
        "the first lease's scratch stayed: {second}"
    );
    let containers = |host: &str| {
        let out = Command::new("docker")
            .args(["ps", "-aq", "--filter", "label=org.kbuild.worker"])
            .args(["--filter", &format!("id={host}")])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert!(!containers(&host).is_empty(), "no worker container found");
    // A lease past its timeout: the worker removes its container, and the command with it.
    let pause = format!("300.{}", std::process::id());
    let (remote, inputs) = cluster.kbuild_client_with_one_file();
    let mut command = shell(&format!("sleep {pause}"));
    command.timeout = Duration::from_secs(3);
    (command.platform).insert("container-image".into(), format!("docker://{image}@{id}"));
    let outcome = remote.execute(&command, (&inputs, Duration::from_secs(60)), &|| false);
    assert!(outcome.is_err(), "a command past its timeout gave a result");
    let log = cluster.worker_log(worker);
    assert!(log.contains("ran past its timeout"), "{log}");
    let sleeping = Command::new("pgrep")
        .args(["-f", &format!("sleep {pause}")])
        .status()
        .unwrap();
    assert!(!sleeping.success(), "the command outlived its lease");
    assert_eq!(
        containers(&host),
        "",
        "the timed-out lease's container stayed"
    );
    // The next lease starts a new container; a worker killed by SIGKILL takes it along.
    let third = run("hostname > out");
    host = third.trim().to_string();
    assert!(!containers(&host).is_empty(), "no worker container found");
    cluster.signal(worker, libc::SIGKILL);
    let until = Instant::now() + Duration::from_secs(30);
    while !containers(&host).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        containers(&host),
        "",
        "the killed worker's container stayed"
    );
}

/// kbuild's own Execute client (`Remote::execute`) against the cluster: an input root from the
/// local cache's blobs, the result and its outputs checked, and a second action on the same
/// tree sending only what is new.
#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn kbuilds_client_executes_on_the_cluster_and_sends_a_tree_once() {
    let mut cluster = Cluster::start();
    cluster.worker(&["--executor", "host", "--jobs", "2"]);
    let cache = kbuild::cache::Cache::open(&cluster.dir.path().join("cache")).unwrap();
    // A tree of 300 files, as the inputs an action gets from its dependencies.
    let tree = cluster.dir.path().join("tree");
    for i in 0..300 {
        let dir = tree.join(format!("src/d{}", i % 7));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int f{i};\n").repeat(50),
        )
        .unwrap();
    }
    std::fs::write(tree.join("src/run.sh"), "#!/bin/sh\ncat d*/*.c | wc -l\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("src/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let inputs = kbuild::cache::OutputManifest::ingest(&tree, &cache.blobs).unwrap();
    let remote = cluster.kbuild_client(&cache);
    let command = shell;
    let cancel = || false;
    let first = remote
        .execute(
            &command("mkdir -p out/x && ./run.sh > out/x/lines && ln -s x/lines out/l && echo hi"),
            (&inputs, Duration::from_secs(60)),
            &cancel,
        )
        .unwrap();
    assert_eq!(
        first.result.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(first.stdout, b"hi\n");
    assert!(
        first.sent_blobs >= 301,
        "the tree went up: {}",
        first.sent_blobs
    );
    let dest = cluster.dir.path().join("outputs");
    remote.fetch_outputs(&first.result, &dest).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("out/x/lines")).unwrap(),
        "15000\n"
    );
    assert_eq!(
        std::fs::read_link(dest.join("out/l")).unwrap(),
        Path::new("x/lines")
    );

    // Another command on the same tree: its Command and Action go up, no file of the tree.
    let second = remote
        .execute(
            &command("echo failing >&2; exit 2"),
            (&inputs, Duration::from_secs(60)),
            &cancel,
        )
        .unwrap();
    assert_eq!(second.result.exit_code, 2, "a failing command is a result");
    assert_eq!(second.stderr, b"failing\n");
    assert!(second.sent_blobs <= 2, "sent {} blobs", second.sent_blobs);
    assert!(
        second.sent_bytes < 1_000,
        "sent {} bytes",
        second.sent_bytes
    );

    // The same action again: the server's action cache answers it.
    let again = remote
        .execute(
            &command("mkdir -p out/x && ./run.sh > out/x/lines && ln -s x/lines out/l && echo hi"),
            (&inputs, Duration::from_secs(60)),
            &cancel,
        )
        .unwrap();
    assert!(again.cached, "the executed result is an action-cache hit");
    assert_eq!(
        again.result.output_directories,
        first.result.output_directories
    );
}

/// The fake workspace's whole matrix in the builder image: once with every action the cluster
/// can run executed by two `kbuild worker`s, once here; out/ must be the same bytes, and a
/// third workspace with an empty cache takes the executed results from the cluster's cache.
#[test]
#[ignore = "needs BuildGrid, PostgreSQL, dockerd and the builder image: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn the_fake_matrix_executed_remotely_equals_a_local_build() {
    let image = "kbuild/builder:bookworm";
    let mut cluster = Cluster::start();
    cluster.worker(&["--executor", "docker", "--image", image, "--jobs", "2"]);
    cluster.worker(&["--executor", "docker", "--image", image, "--jobs", "2"]);
    let in_docker = |ws: &common::Ws| {
        ws.edit(
            "kernel.kdl",
            "    builder \"linuxkit/alpine:1111111111111111111111111111111111111111\"",
            &format!("    builder \"{image}\"\n    executor \"docker\""),
        );
    };
    let remote = common::Ws::new();
    in_docker(&remote);
    let url = cluster.server.url.clone();
    let flags = ["--remote-executor", url.as_str(), "--remote-exec", "always"];
    let plan = remote.kbuild(&[&["plan"][..], &flags[..]].concat());
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.lines()
            .any(|l| l.contains("compile //6.6.x:amd64") && l.contains("run remotely")),
        "{plan}"
    );
    let out = remote.kbuild(&[&["run", "--format", "json"][..], &flags[..]].concat());
    let report = common::report(out, 0);
    let executed = report.executed();
    let compiles = executed
        .iter()
        .filter(|n| n.starts_with("compile "))
        .count();
    assert_eq!(compiles, 4, "{executed:?}");
    let offloaded = executed.iter().filter(|n| {
        ["compile ", "install ", "headers "]
            .iter()
            .any(|k| n.starts_with(k))
    });
    for name in offloaded {
        let (kind, label) = name.split_once(' ').unwrap();
        let log = remote.kbuild(&["log", label, "--action", kind]);
        let text = String::from_utf8_lossy(&log.stdout);
        assert!(text.contains("ran remotely on"), "{name}: {text}");
        // An install is its compile's remote action: an action-cache hit, nothing built again.
        if kind == "install" {
            assert!(text.contains("(cached); sent 0 bytes"), "{name}: {text}");
        }
    }
    let local = common::Ws::new();
    in_docker(&local);
    local.run(&[], 0);
    assert_eq!(
        common::contents(&remote.path().join("out")),
        common::contents(&local.path().join("out")),
        "out/ of the remote build and the local one"
    );

    // Where a kept build directory would only update the build, `auto` keeps it here.
    local.set_amd64_cpus(4);
    let why = local.kbuild(&["why", "//6.6.x:amd64", "--remote-executor", url.as_str()]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.lines()
            .any(|l| l.contains("compile //6.6.x:amd64") && l.contains("run locally: incremental")),
        "{why}"
    );

    // A fresh workspace and cache: every executed result is a hit in the cluster's cache.
    let fresh = common::Ws::new();
    in_docker(&fresh);
    let out = fresh.kbuild(&["run", "--format", "json", "--remote-cache", url.as_str()]);
    let report = common::report(out, 0);
    assert!(
        !report.executed().iter().any(|n| n.starts_with("compile ")),
        "{:?}",
        report.executed()
    );
}

/// What the cluster's faults do to a run: a compile error is the run's failure, with its log;
/// a platform no worker offers times out into a local run with one warning naming it; a server
/// killed mid-run leaves the run to finish here, with one warning.
#[test]
#[ignore = "needs BuildGrid, PostgreSQL, dockerd and the builder image: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn remote_faults_fail_the_build_or_fall_back_with_one_warning() {
    let image = "kbuild/builder:bookworm";
    let mut cluster = Cluster::start();
    let in_docker = |ws: &common::Ws| {
        ws.edit(
            "kernel.kdl",
            "    builder \"linuxkit/alpine:1111111111111111111111111111111111111111\"",
            &format!("    builder \"{image}\"\n    executor \"docker\""),
        );
    };
    let url = cluster.server.url.clone();
    let remote = |ws: &common::Ws, args: &[&str]| {
        let mut all = vec!["run", "--format", "json", "//6.6.x:amd64"];
        all.extend(["--remote-executor", url.as_str(), "--remote-exec", "always"]);
        all.extend(args);
        ws.kbuild(&all)
    };

    // No worker offers the builder image: queued, timed out, built here.
    cluster.worker(&["--executor", "docker"]);
    let ws = common::Ws::new();
    in_docker(&ws);
    let report = common::report(remote(&ws, &["--remote-queue-timeout", "3"]), 0);
    let warnings: Vec<&str> = (report.stderr.lines())
        .filter(|l| l.contains("warning: remote execution failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", report.stderr);
    assert!(warnings[0].contains("no worker took it"), "{}", warnings[0]);
    assert!(
        warnings[0].contains("container-image=docker://"),
        "{}",
        warnings[0]
    );
    assert!(
        report
            .executed()
            .contains(&"compile //6.6.x:amd64".to_string())
    );

    // A compile error on the cluster: the run fails with the remote log, nothing falls back.
    cluster.worker(&["--executor", "docker", "--image", image]);
    let failing = common::Ws::new();
    in_docker(&failing);
    failing.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_FAKE_FAIL is not set",
        "CONFIG_FAKE_FAIL=y",
    );
    let report = common::report(remote(&failing, &[]), 1);
    assert_eq!(report.failed(), ["compile //6.6.x:amd64".to_string()]);
    assert!(
        report.stderr.contains("CONFIG_FAKE_FAIL is set"),
        "{}",
        report.stderr
    );
    assert!(report.stderr.contains("remotely, on"), "{}", report.stderr);
    assert!(
        !report.stderr.contains("warning: remote execution failed"),
        "{}",
        report.stderr
    );

    // The server dies while the compile runs on a worker: the run finishes here.
    let slow = common::Ws::new();
    in_docker(&slow);
    slow.edit(
        "kernel/6.6.x/config-x86_64",
        "# CONFIG_FAKE_PACE is not set",
        "CONFIG_FAKE_PACE=y",
    );
    let worker_dir = cluster.worker_dir(1);
    let _ = std::fs::remove_dir_all(worker_dir.join("leases"));
    std::fs::create_dir_all(worker_dir.join("leases")).unwrap();
    let report = std::thread::scope(|scope| {
        let run = scope.spawn(|| remote(&slow, &[]));
        wait_for_lease(&worker_dir);
        cluster.server.kill();
        common::report(run.join().unwrap(), 0)
    });
    let warnings = (report.stderr.lines())
        .filter(|l| l.contains("warning: remote"))
        .count();
    assert_eq!(warnings, 1, "{}", report.stderr);
    // (The compile counts as cached in the report's last round: the dependencies the dead
    // server held were built again here in further rounds.)
    let log = slow.kbuild(&["log", "//6.6.x:amd64", "--action", "compile"]);
    let log = String::from_utf8_lossy(&log.stdout);
    assert!(log.contains("(remotely)"), "{log}");
    assert!(log.contains("$ make O="), "built here after: {log}");
}

/// A hostile bot on the cluster: it takes every lease and, running nothing, completes it with
/// the ActionResult the test put in `next` (its blobs already in the CAS), as a compromised
/// worker could.
struct HostileBot {
    next: std::sync::Arc<std::sync::Mutex<Option<re::ActionResult>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileBot {
    fn start(url: &str) -> HostileBot {
        use kbuild::worker::proto::{self, BotSession, BotStatus, LeaseState, Property};
        use std::sync::atomic::Ordering;
        let next = std::sync::Arc::new(std::sync::Mutex::new(None::<re::ActionResult>));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let endpoint = format!("http://{}", url.strip_prefix("grpc://").unwrap());
        let (answers, stopped) = (next.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async move {
                let channel = tonic::transport::Endpoint::from_shared(endpoint)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                let mut bots = proto::bots::bots_client::BotsClient::new(channel);
                let worker = proto::Worker {
                    devices: vec![proto::Device {
                        handle: "hostile".into(),
                        properties: vec![Property::new("OSFamily", "Linux")],
                    }],
                    properties: Vec::new(),
                    configs: vec![Property::new("capacity", "1")],
                };
                let mut session = loop {
                    let create = proto::CreateBotSessionRequest {
                        parent: String::new(),
                        bot_session: Some(BotSession {
                            bot_id: "hostile".into(),
                            status: BotStatus::Ok as i32,
                            worker: Some(worker.clone()),
                            ..Default::default()
                        }),
                    };
                    if let Ok(session) = bots.create_bot_session(poll(create)).await {
                        break session.into_inner();
                    }
                };
                while !stopped.load(Ordering::Relaxed) {
                    for lease in &mut session.leases {
                        let open = [LeaseState::Pending as i32, LeaseState::Active as i32];
                        if !open.contains(&lease.state) {
                            continue;
                        }
                        let Some(result) = answers.lock().unwrap().take() else {
                            continue;
                        };
                        lease.state = LeaseState::Completed as i32;
                        lease.status = Some(Default::default());
                        lease.result = Some(prost_types::Any {
                            type_url:
                                "type.googleapis.com/build.bazel.remote.execution.v2.ActionResult"
                                    .into(),
                            value: result.encode_to_vec(),
                        });
                    }
                    let update = proto::UpdateBotSessionRequest {
                        name: session.name.clone(),
                        bot_session: Some(session.clone()),
                        update_mask: None,
                    };
                    if let Ok(answer) = bots.update_bot_session(poll(update)).await {
                        session = answer.into_inner();
                    }
                }
            });
        });
        HostileBot {
            next,
            stop,
            thread: Some(thread),
        }
    }
}

/// A bot's call, long-polling at most two seconds.
fn poll<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(2));
    request
}

impl Drop for HostileBot {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a compromised worker can answer, through a real BuildGrid, to kbuild's own client:
/// outputs that climb out of the output directory, a symlink out with a file written through
/// it (as a result and inside an output tree), a blob the CAS does not have, a tree that is not
/// one. Every answer is refused with what was wrong, and nothing is written outside the
/// directory the outputs go to; a refused result leaves no partial output behind.
#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn a_hostile_worker_s_results_are_refused_and_write_nothing_outside() {
    let cluster = Cluster::start();
    let bot = HostileBot::start(&cluster.server.url);
    let client = cluster.client();
    let (remote, inputs) = cluster.kbuild_client_with_one_file();
    let outside = cluster.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    let payload = b"owned\n".to_vec();
    let file = |path: &str, digest: re::Digest| re::OutputFile {
        path: path.into(),
        digest: Some(digest),
        ..Default::default()
    };
    // A result of one output directory `out`, its Tree at `tree`.
    let dir = |tree: re::Digest| re::ActionResult {
        output_directories: vec![re::OutputDirectory {
            path: "out".into(),
            tree_digest: Some(tree),
            ..Default::default()
        }],
        ..Default::default()
    };
    // An output tree whose root has `link` -> the outside directory and a directory `link`
    // holding `evil`.
    let child = re::Directory {
        files: vec![re::FileNode {
            name: "evil".into(),
            digest: Some(sha256(&payload)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let tree_out = re::Tree {
        root: Some(re::Directory {
            symlinks: vec![re::SymlinkNode {
                name: "link".into(),
                target: outside.display().to_string(),
                ..Default::default()
            }],
            directories: vec![re::DirectoryNode {
                name: "link".into(),
                digest: Some(sha256(&child.encode_to_vec())),
            }],
            ..Default::default()
        }),
        children: vec![child.clone()],
    }
    .encode_to_vec();
    let garbage = b"\xff\xff\xff not a tree".to_vec();
    client.upload(vec![
        payload.clone(),
        child.encode_to_vec(),
        tree_out.clone(),
        garbage.clone(),
    ]);
    let absent = sha256(b"a blob nobody uploaded");
    let cases: Vec<(&str, re::ActionResult)> = vec![
        (
            "names an output `../escape`",
            re::ActionResult {
                output_files: vec![file("../escape", sha256(&payload))],
                ..Default::default()
            },
        ),
        (
            "names an output `/",
            re::ActionResult {
                output_files: vec![file(
                    &outside.join("abs").display().to_string(),
                    sha256(&payload),
                )],
                ..Default::default()
            },
        ),
        (
            "link",
            re::ActionResult {
                output_symlinks: vec![re::OutputSymlink {
                    path: "out/link".into(),
                    target: outside.display().to_string(),
                    ..Default::default()
                }],
                output_files: vec![file("out/link/evil", sha256(&payload))],
                ..Default::default()
            },
        ),
        ("link", dir(sha256(&tree_out))),
        ("the tree of `out`", dir(sha256(&garbage))),
        (
            "kernel",
            re::ActionResult {
                output_files: vec![file("out/kernel", absent)],
                ..Default::default()
            },
        ),
        (
            "bytes free",
            re::ActionResult {
                output_files: vec![file(
                    "out/vmlinux",
                    re::Digest {
                        size_bytes: 1 << 60,
                        ..sha256(b"an exabyte")
                    },
                )],
                ..Default::default()
            },
        ),
    ];
    for (n, (needle, result)) in cases.into_iter().enumerate() {
        *bot.next.lock().unwrap() = Some(result);
        let command = shell(&format!("echo {n} # {}", salt()));
        let executed = remote
            .execute(&command, (&inputs, Duration::from_secs(60)), &|| false)
            .unwrap_or_else(|e| panic!("case {n}: the hostile bot's answer never came: {e}"));
        let dest = cluster.dir.path().join(format!("outputs-{n}"));
        let refused = remote
            .fetch_outputs(&executed.result, &dest)
            .expect_err(&format!("case {n} is refused"));
        assert!(
            refused.to_string().contains(needle),
            "case {n}: {refused} (wanted `{needle}`)"
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "case {n} wrote outside"
        );
        assert!(!cluster.dir.path().join("escape").exists(), "case {n}");
        assert!(
            !dest.exists(),
            "case {n}: a refused result leaves its outputs behind"
        );
    }
}

/// Ctrl-C in the middle of a remote action: kbuild's client gives up at once and cancels the
/// operation it started (CancelOperation); BuildGrid cancels the lease, and the worker kills
/// the command, which never finishes.
#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn ctrl_c_cancels_the_remote_operation_and_the_worker_kills_its_command() {
    use kbuild::remote::RemoteCommand;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cluster = Cluster::start();
    let worker = cluster.worker(&["--executor", "host"]);
    let (remote, inputs) = cluster.kbuild_client_with_one_file();
    let finished = cluster.dir.path().join("finished");
    // A duration nobody else sleeps, to find the process by.
    let pause = format!("300.{}", std::process::id());
    let command = RemoteCommand {
        timeout: Duration::from_secs(600),
        ..shell(&format!("sleep {pause}; touch {}", finished.display()))
    };
    let sleeping = || {
        Command::new("pgrep")
            .args(["-f", &format!("sleep {pause}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    let interrupted = AtomicBool::new(false);
    let (outcome, cancelled_at) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            remote.execute(&command, (&inputs, Duration::from_secs(60)), &|| {
                interrupted.load(Ordering::Relaxed)
            })
        });
        wait_for_lease(&cluster.worker_dir(worker));
        common::wait_until(
            Instant::now() + Duration::from_secs(30),
            Duration::from_millis(100),
            sleeping,
            || "the command never ran".into(),
        );
        interrupted.store(true, Ordering::Relaxed);
        let at = Instant::now();
        (running.join().unwrap(), at)
    });
    assert!(outcome.is_err(), "an interrupted execution gives no result");
    // Not a timing figure: an interrupted run must not wait out a 300 s command (the cancel
    // is asked up to 3 times, 10 s each, of a busy server).
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(60),
        "the client gave up after {:?}",
        cancelled_at.elapsed()
    );
    common::wait_until(
        Instant::now() + Duration::from_secs(120),
        Duration::from_millis(200),
        || !sleeping(),
        || {
            format!(
                "the worker never killed the command: {}\nBuildGrid:\n{}",
                cluster.worker_log(worker),
                cluster.server.log()
            )
        },
    );
    let log = cluster.worker_log(worker);
    assert!(log.contains("cancelled by the server"), "{log}");
    assert!(!finished.exists(), "the command ran to its end");
}

/// Two actions on one new tree submitted at once (a target's headers and compile): both find
/// the tree missing, and its files go up once, the second action waiting for the first's send.
#[test]
#[ignore = "needs BuildGrid and PostgreSQL: KBUILD_SETUP_REAL=1 bash .ci/setup"]
fn two_actions_at_once_send_their_shared_tree_once() {
    let mut cluster = Cluster::start();
    cluster.worker(&["--executor", "host", "--jobs", "2"]);
    let cache = kbuild::cache::Cache::open(&cluster.dir.path().join("cache")).unwrap();
    let tree = cluster.dir.path().join("tree");
    const FILES: u64 = 400;
    for i in 0..FILES {
        let dir = tree.join(format!("src/d{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.c")),
            format!("int g{i};\n").repeat(400),
        )
        .unwrap();
    }
    let inputs = kbuild::cache::OutputManifest::ingest(&tree, &cache.blobs).unwrap();
    let remote = cluster.kbuild_client(&cache);
    let command = shell;
    let (headers, compile) = (
        command("ls d0 > /dev/null"),
        command("cat d1/* > /dev/null"),
    );
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| remote.execute(&headers, (&inputs, Duration::from_secs(60)), &|| false));
        let b = s.spawn(|| remote.execute(&compile, (&inputs, Duration::from_secs(60)), &|| false));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_eq!((a.result.exit_code, b.result.exit_code), (0, 0));
    let blobs = a.sent_blobs + b.sent_blobs;
    // The files once, the directories, and each action's Command and Action.
    assert!(
        (FILES..FILES + 20).contains(&blobs),
        "sent {} + {} blobs for a tree of {FILES} files",
        a.sent_blobs,
        b.sent_blobs
    );
    let tree_bytes: u64 = inputs.entries().iter().map(|e| e.size).sum();
    assert!(
        a.sent_bytes + b.sent_bytes < tree_bytes + 50_000,
        "sent {} + {} bytes for a tree of {tree_bytes}",
        a.sent_bytes,
        b.sent_bytes
    );
}
