//! The remote cache against real servers on loopback: nginx with WebDAV `PUT` for the HTTP
//! cache protocol, BuildGrid for REAPI over gRPC. Two "CI runners" are two workspaces with
//! their own empty caches and one server between them.
//!
//! The tests that need a server are ignored by default (`cargo test -- --include-ignored` runs
//! them; `KBUILD_SETUP_REAL=1 bash .ci/setup` installs nginx and BuildGrid). Those against a
//! server that is down or answers errors need none and always run.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::servers::{Server, free_port};
use common::{Report, Ws, contents, files_under};

const PATCH_FILE: &str = "kernel/6.6.x/patches/0001-init-say-hello.patch";

/// `kbuild run --format json` with `url` as the remote cache and `extra` options.
fn run_with(ws: &Ws, url: &str, extra: &[&str], labels: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--format", "json"];
    args.extend(extra);
    args.extend(labels);
    ws.command(&args)
        .env("KBUILD_REMOTE_CACHE", url)
        .output()
        .unwrap()
}

fn remote_run(ws: &Ws, url: &str, labels: &[&str]) -> Report {
    common::report(run_with(ws, url, &[], labels), 0)
}

/// Whether the local cache holds each action's entry, the keys planned with the remote.
fn held_locally(ws: &Ws, url: &str) -> std::collections::BTreeMap<String, bool> {
    let out = ws
        .command(&["plan", "--format", "json"])
        .env("KBUILD_REMOTE_CACHE", url)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let key = a["key"].as_str().unwrap();
            let entry = ws
                .cache
                .join(format!("ac/{}/{}.json", &key[..2], &key[2..]));
            (a["name"].as_str().unwrap().to_string(), entry.is_file())
        })
        .collect()
}

/// Two runners and one server: the second executes nothing, and gets what the first built;
/// after a patch change on the second, exactly the dependent actions run, and the first, after
/// pulling the change, gets them from the remote.
fn two_runners(server: &Server) {
    let (first, second) = (Ws::new(), Ws::new());
    let built = remote_run(&first, &server.url, &[]);
    assert_eq!(built.total("failed"), 0);
    assert!(!built.executed().is_empty());
    assert!(built.json["totals"]["bytes_up"].as_u64().unwrap() > 0);
    if server.url.starts_with("http") {
        each_blob_went_up_once(server);
    }

    let plan = second
        .command(&["plan", "//..."])
        .env("KBUILD_REMOTE_CACHE", &server.url)
        .output()
        .unwrap();
    let plan = String::from_utf8(plan.stdout).unwrap();
    assert!(plan.contains("remote  compile //6.6.x:dbg-arm64"), "{plan}");
    assert!(plan.contains("0 to run"), "{plan}");

    let pulled = remote_run(&second, &server.url, &[]);
    assert_eq!(pulled.executed(), Vec::<String>::new(), "{}", pulled.stderr);
    assert_eq!(pulled.names("remote").len(), built.executed().len());
    assert_eq!(
        contents(&second.path().join("out")),
        contents(&first.path().join("out"))
    );
    // Only what out/ holds came down: the patched tree and the compile's outputs stayed remote.
    let local = held_locally(&second, &server.url);
    assert!(local["package //6.6.x:amd64"]);
    assert!(!local["patch //6.6.x"]);
    assert!(!local["compile //6.6.x:amd64"]);
    let (down, up) = (pulled.total("bytes_down"), built.total("bytes_up"));
    assert!(down < up, "downloaded {down} of {up} bytes");

    // One patch changes on the second runner: what depends on it runs, nothing else.
    let local = Ws::new();
    local.run(&[], 0);
    local.edit(PATCH_FILE, "return 1;", "return 2;");
    let alone = local.run(&[], 0).executed();
    second.edit(PATCH_FILE, "return 1;", "return 2;");
    let changed = remote_run(&second, &server.url, &[]);
    assert_eq!(changed.executed(), alone, "{}", changed.stderr);
    assert!(changed.executed().contains(&"patch //6.6.x".to_string()));

    // The first runner pulls the change and builds nothing.
    first.edit(PATCH_FILE, "return 1;", "return 2;");
    let after = remote_run(&first, &server.url, &[]);
    assert_eq!(after.executed(), Vec::<String>::new(), "{}", after.stderr);
    assert_eq!(after.names("remote"), alone);
    assert_eq!(
        contents(&first.path().join("out")),
        contents(&second.path().join("out"))
    );

    // A third runner changes an option: its compile needs the patched tree, which the remote
    // keeps by its manifest alone. The tree is made here, without a warning, it comes out the
    // same, and nothing else runs that a local build of the change would not run.
    let (config, from, to) = (
        "kernel/6.6.x/config-x86_64",
        "CONFIG_NR_CPUS=64",
        "CONFIG_NR_CPUS=128",
    );
    local.edit(config, from, to);
    let mut alone = local.run(&[], 0).executed();
    let third = Ws::new();
    third.edit(PATCH_FILE, "return 1;", "return 2;");
    third.edit(config, from, to);
    let optioned = remote_run(&third, &server.url, &[]);
    assert!(
        !optioned.stderr.contains("warning: remote cache"),
        "{}",
        optioned.stderr
    );
    let mut executed = optioned.executed();
    alone.push("patch //6.6.x".to_string());
    alone.sort();
    executed.sort();
    assert_eq!(executed, alone, "{}", optioned.stderr);
    assert!(!optioned.names("remote").is_empty());
    let clean = Ws::new();
    clean.edit(PATCH_FILE, "return 1;", "return 2;");
    clean.edit(config, from, to);
    clean.run(&[], 0);
    assert_eq!(
        contents(&third.path().join("out")),
        contents(&clean.path().join("out"))
    );
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn two_runners_share_results_over_http() {
    two_runners(&Server::nginx());
}

/// The first run's requests to nginx: each blob went up once, even where trees share it, and
/// only large ones were asked for first.
fn each_blob_went_up_once(server: &Server) {
    let log = std::fs::read_to_string(server.dir.path().join("access.log")).unwrap();
    let mut puts = std::collections::HashMap::<&str, usize>::new();
    for line in log.lines() {
        if let Some(path) = request_path(line, "PUT /cas/") {
            *puts.entry(path).or_default() += 1;
        }
        if let Some(path) = request_path(line, "HEAD /cas/") {
            let size = std::fs::metadata(server.storage().join(&path[1..])).map_or(0, |m| m.len());
            assert!(size >= 16 << 10, "asked for a blob of {size} bytes: {line}");
        }
    }
    assert!(puts.len() > 10, "{log}");
    let again: Vec<_> = puts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(again.is_empty(), "sent more than once: {again:?}");
}

/// The path of an access log line's request if it starts with `prefix` (`METHOD /dir/`).
fn request_path<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let at = line.find(prefix)?;
    let path = &line[at + prefix.find(' ')? + 1..];
    path.split(' ').next()
}

#[test]
#[ignore = "needs BuildGrid (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn two_runners_share_results_over_grpc() {
    two_runners(&Server::buildgrid());
}

/// The run completes locally with one warning, and its `out/` is a clean build's.
fn builds_locally_despite(url: &str, needle: &str) {
    let clean = Ws::new();
    clean.run(&[], 0);
    let ws = Ws::new();
    let report = remote_run(&ws, url, &[]);
    let warnings: Vec<&str> = report
        .stderr
        .lines()
        .filter(|l| l.contains("warning: remote cache"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {}", report.stderr);
    assert!(warnings[0].contains(needle), "{}", report.stderr);
    assert_eq!(report.total("failed"), 0);
    assert_eq!(
        contents(&ws.path().join("out")),
        contents(&clean.path().join("out"))
    );
}

#[test]
fn a_server_that_is_down_is_one_warning() {
    let port = free_port();
    builds_locally_despite(&format!("grpc://127.0.0.1:{port}"), "GetCapabilities");
    builds_locally_despite(&format!("http://127.0.0.1:{port}"), "building without it");
}

/// Answers every request with HTTP 500, for 60 s at most.
fn failing_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn a_server_answering_500_is_one_warning() {
    builds_locally_despite(
        &format!("http://127.0.0.1:{}", failing_server()),
        "HTTP 500",
    );
}

#[test]
fn a_malformed_remote_url_is_a_usage_error() {
    let ws = Ws::new();
    let out = run_with(&ws, "ftp://cache.example", &[], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`ftp://cache.example` is no remote cache URL"),
        "{stderr}"
    );
}

/// The blobs of one runner's results on an nginx server: (path, bytes) of every CAS file.
fn cas_files(server: &Server) -> Vec<PathBuf> {
    files_under(&server.storage().join("cas"))
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn a_corrupt_or_missing_blob_on_the_server_is_a_miss() {
    let server = Server::nginx();
    let first = Ws::new();
    let built = remote_run(&first, &server.url, &[]);
    // Flip a byte of every blob larger than a message: the outputs themselves.
    let mut flipped = 0;
    for blob in cas_files(&server) {
        let mut bytes = std::fs::read(&blob).unwrap();
        if bytes.len() > 4096 {
            bytes[100] ^= 0xff;
            std::fs::write(&blob, bytes).unwrap();
            flipped += 1;
        }
    }
    assert!(
        flipped > 0,
        "no output blob reached the server: {:?}\n{}\nnginx: {}",
        cas_files(&server),
        built.stderr,
        std::fs::read_to_string(server.dir.path().join("error.log")).unwrap_or_default()
    );
    let second = Ws::new();
    let report = remote_run(&second, &server.url, &[]);
    assert!(
        report.stderr.contains("does not match its digest"),
        "{}",
        report.stderr
    );
    assert!(
        !report.executed().is_empty(),
        "what is corrupt is built here"
    );
    assert_eq!(
        contents(&second.path().join("out")),
        contents(&first.path().join("out"))
    );
    // Nothing corrupt entered the local cache: verify finds nothing to remove.
    let verify = second.kbuild(&["cache", "verify"]);
    let text = String::from_utf8_lossy(&verify.stdout).into_owned()
        + &String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{text}");
    assert!(!text.contains("corrupt,"), "{text}");

    // An action cache entry naming blobs the server no longer has.
    for blob in cas_files(&server) {
        std::fs::remove_file(blob).unwrap();
    }
    let third = Ws::new();
    let report = remote_run(&third, &server.url, &[]);
    assert!(
        report.stderr.contains("lacks the blob"),
        "{}",
        report.stderr
    );
    assert_eq!(
        contents(&third.path().join("out")),
        contents(&first.path().join("out"))
    );
}

#[test]
#[ignore = "needs nginx and BuildGrid (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn a_read_only_runner_writes_nothing() {
    for server in [Server::nginx(), Server::buildgrid()] {
        let before = files_under(&server.storage()).len();
        let ws = Ws::new();
        let report = common::report(
            run_with(&ws, &server.url, &["--remote-upload=false"], &[]),
            0,
        );
        assert!(!report.executed().is_empty());
        assert_eq!(report.json["totals"]["bytes_up"], 0);
        assert_eq!(
            files_under(&server.storage()).len(),
            before,
            "{}",
            server.url
        );
        // The same runner with uploads on does write.
        let ws = Ws::new();
        remote_run(&ws, &server.url, &[]);
        assert!(
            files_under(&server.storage()).len() > before,
            "{}",
            server.url
        );
    }
}

#[test]
#[ignore = "needs BuildGrid (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn a_server_killed_between_runs_is_a_warning_and_a_local_build() {
    let server = Server::buildgrid();
    let url = server.url.clone();
    let first = Ws::new();
    remote_run(&first, &url, &[]);
    drop(server);
    let second = Ws::new();
    let report = remote_run(&second, &url, &[]);
    assert!(
        report.stderr.contains("building without it"),
        "{}",
        report.stderr
    );
    assert_eq!(report.names("remote"), Vec::<String>::new());
    assert_eq!(report.executed().len(), report.total("actions") as usize);
    assert_eq!(
        contents(&second.path().join("out")),
        contents(&first.path().join("out"))
    );
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn a_bearer_token_appears_in_no_output_log_key_or_plan() {
    const TOKEN: &str = "s3cr3t-t0ken-do-not-print";
    let server = Server::nginx();
    let ws = Ws::new();
    let with_token = |args: &[&str]| {
        let out = ws
            .command(args)
            .env("KBUILD_REMOTE_CACHE", &server.url)
            .env(
                "KBUILD_REMOTE_HEADERS",
                format!("Authorization: Bearer {TOKEN}"),
            )
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let mut seen = with_token(&["run", "--format", "json"]);
    seen += &with_token(&["plan", "--format", "json"]);
    seen += &with_token(&["why", "--key"]);
    seen += &with_token(&["run", "--remote-cache", "grpc://127.0.0.1:1"]);
    assert!(!seen.contains(TOKEN), "the token was printed");
    for file in files_under(&ws.cache) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let found = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
        assert!(!found, "the token is in {}", file.display());
    }
    // It was sent: nginx saw requests carrying it (the header is not logged, the requests are).
    let access = std::fs::read_to_string(server.dir.path().join("access.log")).unwrap();
    assert!(access.contains("PUT /ac/"), "{access}");
}

#[test]
fn kernel_local_kdl_names_this_machines_remote_cache_and_the_flag_wins() {
    let ws = Ws::new();
    let port = free_port();
    ws.write(
        "kernel.local.kdl",
        &format!("remote-cache \"grpc://127.0.0.1:{port}\" upload=#false\n"),
    );
    let out = ws.kbuild(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("remote cache grpc://127.0.0.1:{port}")),
        "{stderr}"
    );
    // Planning is the same with or without it: the remote enters no key.
    let other = Ws::new();
    other.run(&[], 0);
    assert_eq!(
        contents(&ws.path().join("out")),
        contents(&other.path().join("out"))
    );

    let ws = Ws::new();
    ws.write("kernel.local.kdl", "remote-cache \"grpc://127.0.0.1:1\"\n");
    let out = run_with(&ws, &format!("http://127.0.0.1:{port}"), &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("grpc://127.0.0.1:1"), "{stderr}");

    ws.write(
        "kernel.local.kdl",
        "remote-cache \"a\"\nremote-cache \"b\"\n",
    );
    let out = ws.kbuild(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`remote-cache` is given twice"));
}

/// kernel.local.kdl's `remote-executor` is the machine's cluster: `plan` says where each action
/// would run; an empty KBUILD_REMOTE_EXECUTOR turns it off; a wrong node is an error naming it.
#[test]
fn kernel_local_kdl_names_this_machines_remote_executor() {
    let ws = Ws::new();
    let plan = |env: &[(&str, &str)]| {
        let mut command = ws.command(&["plan"]);
        command.env_remove("KBUILD_REMOTE_EXECUTOR");
        command.envs(env.iter().copied());
        command.output().unwrap()
    };
    let text = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text(&plan(&[])).contains("run locally"));
    ws.write(
        "kernel.local.kdl",
        "remote-executor \"grpc://127.0.0.1:1\"\n",
    );
    let out = plan(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The host executor has no builder image to name as the workers' platform.
    assert!(
        text(&out).contains("run locally: no builder image"),
        "{}",
        text(&out)
    );
    assert!(!text(&plan(&[("KBUILD_REMOTE_EXECUTOR", "")])).contains("run locally"));
    ws.write(
        "kernel.local.kdl",
        "remote-executor \"grpc://127.0.0.1:1\" jobs=4\n",
    );
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kernel.local.kdl") && stderr.contains("jobs"),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn a_server_that_dies_mid_run_is_one_warning_and_a_local_build() {
    let server = Server::nginx();
    let first = Ws::new();
    remote_run(&first, &server.url, &[]);
    // A copy of what nginx holds, served for a few requests only: then the port is closed,
    // in the middle of the second runner's lookups and downloads.
    let store = server.storage();
    let files: Vec<(String, Vec<u8>)> = files_under(&store)
        .into_iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&store)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (format!("/{rel}"), std::fs::read(&f).unwrap())
        })
        .collect();
    for requests in [3, 12] {
        let port = common::serve(files.clone(), requests);
        let ws = Ws::new();
        let url = format!("http://127.0.0.1:{port}");
        let report = common::report(run_with(&ws, &url, &["--remote-upload=false"], &[]), 0);
        let warnings = report
            .stderr
            .lines()
            .filter(|l| l.contains("warning: remote cache"))
            .count();
        assert_eq!(warnings, 1, "{}", report.stderr);
        assert_eq!(report.total("failed"), 0);
        assert_eq!(
            contents(&ws.path().join("out")),
            contents(&first.path().join("out"))
        );
    }
}
