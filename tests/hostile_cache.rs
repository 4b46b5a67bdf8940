//! A hostile remote cache: a small HTTP server of the test's own on loopback that serves what an
//! attacker would (a tree that writes through its own symlink, redirects that would carry the
//! headers elsewhere, endless and crawling answers). Every run must end as a clean local build
//! with one warning, and nothing may be written outside the workspace and the cache.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use common::reapi::{action_digest, sha256};
use common::servers::Server;
use common::{Ws, contents};
use prost::Message;

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

/// What the server answers.
enum Answer {
    Bytes(u16, Vec<(String, String)>, Vec<u8>),
    /// A 200 whose body never ends (until the client hangs up).
    Endless,
    /// A 200 dribbled at `rate` bytes a second.
    Slow(Vec<u8>, usize),
    /// The status after a pause.
    Late(u16, Duration),
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// Serves `handler` on loopback for at most two minutes; the requests it saw.
fn serve(handler: Handler) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let (handler, log) = (handler.clone(), log.clone());
            std::thread::spawn(move || {
                stream.set_nonblocking(false).unwrap();
                let _ = answer(stream, &*handler, &log);
            });
        }
    });
    (url, seen)
}

fn answer(
    stream: std::net::TcpStream,
    handler: &(dyn Fn(&Seen) -> Answer + Send + Sync),
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? <= 2 {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
            if name == "content-length" {
                len = value.parse().unwrap_or(0);
            }
            headers.push((name, value));
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let seen = Seen {
        method,
        path,
        headers,
    };
    log.lock().unwrap().push(seen.clone());
    let mut stream = stream;
    match handler(&seen) {
        Answer::Bytes(status, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body)?;
        }
        Answer::Endless => {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4000000000\r\nConnection: close\r\n\r\n",
            )?;
            let chunk = vec![0x0a; 1 << 16];
            loop {
                stream.write_all(&chunk)?;
            }
        }
        Answer::Slow(body, rate) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes())?;
            for chunk in body.chunks(rate.max(1) / 10 + 1) {
                std::thread::sleep(Duration::from_millis(100));
                stream.write_all(chunk)?;
            }
        }
        Answer::Late(status, pause) => {
            std::thread::sleep(pause);
            let head =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes())?;
        }
    }
    Ok(())
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A well-formed result whose output tree holds the symlink `a` -> `outside` and the file
/// `a/victim` (claimed alike by its kbuild manifest): written naively, the file lands in
/// `outside`. Returns the `/ac/` body and the CAS blobs by hash.
/// Without `with_file`, the tree is the escaping symlink alone.
fn symlink_trick(
    outside: &std::path::Path,
    with_file: bool,
) -> (Vec<u8>, HashMap<String, Vec<u8>>) {
    let payload = b"written by a hostile cache\n".to_vec();
    let target = outside.to_str().unwrap().to_string();
    let manifest = serde_json::json!({
        "entries": [
            {"path": "a", "digest": blake3_hex(target.as_bytes()), "size": 0, "symlink": target},
            {"path": "a/victim", "digest": blake3_hex(&payload), "size": payload.len()},
        ]
    });
    let mut manifest = manifest;
    if !with_file {
        manifest["entries"].as_array_mut().unwrap().pop();
    }
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let sub = re::Directory {
        files: vec![re::FileNode {
            name: "victim".into(),
            digest: Some(sha256(&payload)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let tree = re::Tree {
        root: Some(re::Directory {
            directories: vec![re::DirectoryNode {
                name: "a".into(),
                digest: Some(sha256(&sub.encode_to_vec())),
            }]
            .into_iter()
            .filter(|_| with_file)
            .collect(),
            symlinks: vec![re::SymlinkNode {
                name: "a".into(),
                target: target.clone(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        children: vec![sub],
    };
    let tree = tree.encode_to_vec();
    let result = hit(&manifest, &tree);
    let blobs = [manifest, tree, payload]
        .into_iter()
        .map(|b| (sha256(&b).hash, b))
        .collect();
    (result, blobs)
}

/// A kbuild action's result as the action cache holds it: its manifest and its `out` tree.
fn hit(manifest: &[u8], tree: &[u8]) -> Vec<u8> {
    re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "kbuild-manifest.json".into(),
            digest: Some(sha256(manifest)),
            ..Default::default()
        }],
        output_directories: vec![re::OutputDirectory {
            path: "out".into(),
            tree_digest: Some(sha256(tree)),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

/// Runs the fake workspace against `url` and checks it ended as a clean local build with one
/// warning containing `needle`; the report's stderr.
fn builds_clean_despite(url: &str, extra: &[&str], needle: &str) -> String {
    let clean = Ws::new();
    clean.run(&[], 0);
    let ws = Ws::new();
    let mut args = vec!["run", "--format", "json"];
    args.extend(extra);
    let out = ws
        .command(&args)
        .env("KBUILD_REMOTE_CACHE", url)
        .env("KBUILD_REMOTE_HEADERS", "X-Cache-Token: s3cret-token")
        .output()
        .unwrap();
    let report = common::report(out, 0);
    let warnings: Vec<&str> = report
        .stderr
        .lines()
        .filter(|l| l.contains("warning: remote cache"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {}", report.stderr);
    assert!(warnings[0].contains(needle), "{}", report.stderr);
    assert!(!report.stderr.contains("s3cret"), "{}", report.stderr);
    assert_eq!(report.total("failed"), 0);
    assert_eq!(
        contents(&ws.path().join("out")),
        contents(&clean.path().join("out"))
    );
    report.stderr
}

#[test]
fn a_tree_that_writes_through_its_own_symlink_writes_nothing_outside() {
    refused_tree(true, "as the directory of `a/victim`");
}

#[test]
fn a_tree_with_a_symlink_leading_outside_is_refused() {
    refused_tree(false, "leads outside the tree");
}

fn refused_tree(with_file: bool, needle: &str) {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "precious\n").unwrap();
    let (result, blobs) = symlink_trick(outside.path(), with_file);
    let tree = re::ActionResult::decode(result.as_slice())
        .unwrap()
        .output_directories[0]
        .tree_digest
        .clone()
        .unwrap()
        .hash;
    let (url, seen) = serve(Arc::new(move |s: &Seen| {
        if s.method != "GET" {
            return Answer::Bytes(201, vec![], vec![]);
        }
        if s.path.starts_with("/ac/") {
            return Answer::Bytes(200, vec![], result.clone());
        }
        let hash = s.path.trim_start_matches("/cas/");
        match blobs.get(hash) {
            Some(b) => Answer::Bytes(200, vec![], b.clone()),
            None => Answer::Bytes(404, vec![], vec![]),
        }
    }));
    builds_clean_despite(&url, &[], needle);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "precious\n"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    // The server misbehaved once: no other action's tree is fetched from it (every action
    // names the same tree here, so a fetch per action would ask for it again and again).
    let fetched = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.ends_with(&tree))
        .count();
    assert!(
        fetched <= 2,
        "{fetched} fetches after the server misbehaved"
    );
}

#[test]
fn a_redirect_is_not_followed_and_carries_no_header() {
    let (elsewhere, taken) = serve(Arc::new(|_: &Seen| Answer::Bytes(404, vec![], vec![])));
    let (url, seen) = serve(Arc::new(move |s: &Seen| {
        let to = format!("{elsewhere}{}", s.path);
        Answer::Bytes(307, vec![("Location".into(), to)], vec![])
    }));
    let stderr = builds_clean_despite(&url, &[], "redirect");
    assert!(stderr.contains("follows no redirect"), "{stderr}");
    assert!(
        taken.lock().unwrap().is_empty(),
        "the other origin was asked: {:?}",
        taken.lock().unwrap()
    );
    let seen = seen.lock().unwrap();
    assert!(seen.len() <= 2, "{} requests after a redirect", seen.len());
    assert!(
        seen[0]
            .headers
            .iter()
            .any(|(n, v)| n == "x-cache-token" && v == "s3cret-token"),
        "the header goes to the named server: {:?}",
        seen[0]
    );
}

#[test]
fn an_endless_action_cache_answer_is_cut_off_and_asked_once() {
    let (url, seen) = serve(Arc::new(|s: &Seen| {
        if s.path.starts_with("/ac/") {
            Answer::Endless
        } else {
            Answer::Bytes(404, vec![], vec![])
        }
    }));
    builds_clean_despite(&url, &[], "larger than");
    let asked = seen.lock().unwrap().len();
    assert!(asked <= 2, "{asked} requests to a server that misbehaved");
}

#[test]
fn a_crawling_server_is_cut_off_by_the_runs_budget() {
    // 2,000 bytes at 100 B/s: 20 s a call, against a budget of 3 s for the whole run.
    let (url, seen) = serve(Arc::new(|s: &Seen| {
        if s.path.starts_with("/ac/") {
            Answer::Slow(vec![b'x'; 2000], 100)
        } else {
            Answer::Bytes(404, vec![], vec![])
        }
    }));
    builds_clean_despite(&url, &["--remote-timeout", "3"], "building without it");
    let asked = seen.lock().unwrap().len();
    assert!(asked <= 3, "{asked} requests to a crawling server");
}

#[test]
fn slow_misses_add_up_to_the_budget_and_turn_the_remote_off() {
    // Every look-up answers a miss after 1.6 s: each call is charged 0.6 s beyond the grace,
    // so a budget of 2 s is spent after a handful, not after every action of the run.
    let (url, seen) = serve(Arc::new(|s: &Seen| {
        if s.method == "GET" || s.method == "HEAD" {
            Answer::Late(404, Duration::from_millis(1600))
        } else {
            Answer::Bytes(201, vec![], vec![])
        }
    }));
    builds_clean_despite(&url, &["--remote-timeout", "2"], "--remote-timeout");
    let asked = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.starts_with("/ac/"))
        .count();
    assert!(asked < 12, "{asked} look-ups against a budget of 2 s");
}

#[test]
#[ignore = "needs BuildGrid (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn the_symlink_trick_through_a_real_grpc_server_writes_nothing_outside() {
    use re::action_cache_client::ActionCacheClient;
    use re::content_addressable_storage_client::ContentAddressableStorageClient;
    let server = Server::buildgrid();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), "precious\n").unwrap();
    let (result, blobs) = symlink_trick(outside.path(), true);
    let result = re::ActionResult::decode(result.as_slice()).unwrap();

    // Every action whose key a fresh workspace knows (the fetches) gets the hostile result.
    let ws = Ws::new();
    let plan = ws.kbuild(&["plan", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut uploads: Vec<Vec<u8>> = blobs.into_values().collect();
    let mut actions = Vec::new();
    for action in plan["actions"].as_array().unwrap() {
        let Some(key) = action["key"].as_str() else {
            continue;
        };
        let schema = action["record"]["schema"].as_u64().unwrap();
        let (digest, messages) = action_digest(action["kind"].as_str().unwrap(), key, schema);
        actions.push(digest);
        uploads.extend(messages);
    }
    assert!(!actions.is_empty());
    let endpoint = server.url.replace("grpc://", "http://");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut cas = ContentAddressableStorageClient::connect(endpoint.clone())
            .await
            .unwrap();
        let requests = uploads
            .iter()
            .map(|b| re::batch_update_blobs_request::Request {
                digest: Some(sha256(b)),
                data: b.clone(),
                ..Default::default()
            })
            .collect();
        cas.batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests,
            ..Default::default()
        })
        .await
        .unwrap();
        let mut ac = ActionCacheClient::connect(endpoint).await.unwrap();
        for action in &actions {
            ac.update_action_result(re::UpdateActionResultRequest {
                action_digest: Some(action.clone()),
                action_result: Some(result.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        }
    });

    builds_clean_despite(&server.url, &[], "as the directory of `a/victim`");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("victim")).unwrap(),
        "precious\n"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

/// A hit whose tree and manifest agree on a file of an exabyte: refused before a byte is
/// written (its size against the cache filesystem's free space), so a server cannot fill the
/// disk under the other builds here; the build goes on locally.
#[test]
fn a_hit_declaring_more_than_the_disk_holds_is_refused() {
    let size: u64 = 1 << 60;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "entries": [{"path": "vmlinux", "digest": blake3_hex(b"huge"), "size": size}]
    }))
    .unwrap();
    let tree = re::Tree {
        root: Some(re::Directory {
            files: vec![re::FileNode {
                name: "vmlinux".into(),
                digest: Some(re::Digest {
                    size_bytes: size as i64,
                    ..sha256(b"huge")
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        children: Vec::new(),
    }
    .encode_to_vec();
    let result = hit(&manifest, &tree);
    let blobs: HashMap<String, Vec<u8>> = [manifest, tree]
        .into_iter()
        .map(|b| (sha256(&b).hash, b))
        .collect();
    let (url, seen) = serve(Arc::new(move |s: &Seen| {
        if s.method != "GET" {
            return Answer::Bytes(201, vec![], vec![]);
        }
        if s.path.starts_with("/ac/") {
            return Answer::Bytes(200, vec![], result.clone());
        }
        match blobs.get(s.path.trim_start_matches("/cas/")) {
            Some(b) => Answer::Bytes(200, vec![], b.clone()),
            None => Answer::Bytes(404, vec![], vec![]),
        }
    }));
    builds_clean_despite(&url, &[], "bytes free on the cache's filesystem");
    let huge = sha256(b"huge").hash;
    let asked = (seen.lock().unwrap().iter())
        .filter(|s| s.path.ends_with(&huge))
        .count();
    assert_eq!(asked, 0, "the exabyte was asked for");
}
