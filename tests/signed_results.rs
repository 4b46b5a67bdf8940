//! Signed remote-cache results against real servers (nginx for HTTP, BuildGrid for gRPC): a
//! trusted writer signs what it uploads; a reader that trusts its key takes those results and
//! nothing else: not an unsigned one, not one signed by another key, not a well-formed result
//! filed under another action's key. Keys are made by openssl, and a signature is checked by
//! openssl too, from the bytes on the server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use common::servers::Server;
use common::{Report, Ws, contents};
use prost::Message;

/// An ed25519 key pair made by openssl: (private PEM, public PEM).
fn keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub")),
    );
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap()
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl made the key pair");
    (key, public)
}

fn run(ws: &Ws, url: &str, env: &[(&str, &Path)]) -> Report {
    let mut cmd = ws.command(&["run", "--format", "json"]);
    cmd.env("KBUILD_REMOTE_CACHE", url);
    for (name, value) in env {
        cmd.env(name, value);
    }
    common::report(cmd.output().unwrap(), 0)
}

fn warnings(report: &Report) -> Vec<String> {
    (report.stderr.lines())
        .filter(|l| l.contains("warning: remote cache"))
        .map(String::from)
        .collect()
}

/// The writer signs; a reader trusting its key takes everything, says so in `why` and `cache
/// verify`; a reader trusting another key takes nothing, with one warning.
fn signed_round_trip(server: &Server) -> (tempfile::TempDir, PathBuf, Ws) {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "ci");
    let (_, other) = keypair(keys.path(), "other");
    let writer = Ws::new();
    let built = run(&writer, &server.url, &[("KBUILD_REMOTE_SIGN_KEY", &key)]);
    assert!(!built.executed().is_empty());
    assert!(!built.stderr.contains("BEGIN"), "{}", built.stderr);

    let reader = Ws::new();
    let pulled = run(&reader, &server.url, &[("KBUILD_REMOTE_TRUST", &public)]);
    assert_eq!(pulled.executed(), Vec::<String>::new(), "{}", pulled.stderr);
    assert!(warnings(&pulled).is_empty(), "{}", pulled.stderr);
    assert_eq!(
        contents(&reader.path().join("out")),
        contents(&writer.path().join("out"))
    );
    let why = reader
        .command(&["why", "//6.6.x:amd64"])
        .env("KBUILD_REMOTE_CACHE", &server.url)
        .env("KBUILD_REMOTE_TRUST", &public)
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.contains(&format!(
            "package //6.6.x:amd64: up to date (taken from the remote cache {}, signed by ed25519:",
            server.url
        )),
        "{why}"
    );
    let verify = reader.kbuild(&["cache", "verify"]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(stderr.contains("taken from a remote cache"), "{stderr}");
    assert!(stderr.contains("0 problem(s)"), "{stderr}");

    let stranger = Ws::new();
    let alone = run(&stranger, &server.url, &[("KBUILD_REMOTE_TRUST", &other)]);
    assert_eq!(
        alone.names("remote"),
        Vec::<String>::new(),
        "{}",
        alone.stderr
    );
    assert_eq!(alone.executed().len(), built.executed().len());
    let said = warnings(&alone);
    assert_eq!(said.len(), 1, "{}", alone.stderr);
    assert!(said[0].contains("without a valid signature"), "{}", said[0]);
    (keys, public, writer)
}

#[test]
#[ignore = "needs nginx (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn signed_results_over_http_and_a_result_filed_under_another_key() {
    let server = Server::nginx();
    let (keys, public, writer) = signed_round_trip(&server);
    let store = server.storage();

    // openssl checks one signature from the bytes on the server, as kbuild's doc describes them.
    let ac = store.join("ac");
    let entries: Vec<PathBuf> = std::fs::read_dir(&ac)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let first = &entries[0];
    let result = re::ActionResult::decode(std::fs::read(first).unwrap().as_slice()).unwrap();
    let entry = &result
        .execution_metadata
        .as_ref()
        .unwrap()
        .auxiliary_metadata[0];
    let signature = &entry.value[32..];
    let action = first.file_name().unwrap().to_str().unwrap();
    let action_size = std::fs::metadata(store.join("cas").join(action))
        .unwrap()
        .len();
    let show = |d: &re::Digest| format!("{}/{}", d.hash, d.size_bytes);
    let manifest = result.output_files[0].digest.as_ref().unwrap();
    let tree = (result.output_directories.first())
        .map_or("-".to_string(), |d| show(d.tree_digest.as_ref().unwrap()));
    let message = format!(
        "kbuild remote result v1\nSHA-256\n{action}/{action_size}\n{}\n{tree}\n",
        show(manifest)
    );
    std::fs::write(keys.path().join("message"), message).unwrap();
    std::fs::write(keys.path().join("signature"), signature).unwrap();
    let verified = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(&public)
        .arg("-in")
        .arg(keys.path().join("message"))
        .arg("-sigfile")
        .arg(keys.path().join("signature"))
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // Two well-formed, signed results swapped on the server: each is now filed under the other's
    // key. A reader without a trusted key cannot tell; one with it takes neither.
    let mut by_size: Vec<(u64, PathBuf)> = entries
        .iter()
        .map(|p| (std::fs::metadata(p).unwrap().len(), p.clone()))
        .collect();
    by_size.sort();
    let (a, b) = (&by_size[by_size.len() - 1].1, &by_size[by_size.len() - 2].1);
    let (bytes_a, bytes_b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_ne!(bytes_a, bytes_b);
    std::fs::write(a, &bytes_b).unwrap();
    std::fs::write(b, &bytes_a).unwrap();
    let reader = Ws::new();
    let pulled = run(&reader, &server.url, &[("KBUILD_REMOTE_TRUST", &public)]);
    assert!(!pulled.executed().is_empty(), "{}", pulled.stderr);
    assert_eq!(warnings(&pulled).len(), 1, "{}", pulled.stderr);
    assert_eq!(
        contents(&reader.path().join("out")),
        contents(&writer.path().join("out"))
    );
}

#[test]
#[ignore = "needs BuildGrid (KBUILD_SETUP_REAL=1 bash .ci/setup); run with --include-ignored"]
fn signed_results_over_grpc() {
    let server = Server::buildgrid();
    signed_round_trip(&server);
}

#[test]
fn a_key_file_that_is_not_a_key_is_a_clear_error_that_shows_nothing_of_it() {
    let ws = Ws::new();
    let bad = ws.path().join("key.pem");
    std::fs::write(&bad, "s3cret not a key\n").unwrap();
    for var in ["KBUILD_REMOTE_SIGN_KEY", "KBUILD_REMOTE_TRUST"] {
        let out = ws
            .command(&["run"])
            .env("KBUILD_REMOTE_CACHE", "http://127.0.0.1:9")
            .env(var, &bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("key.pem"), "{stderr}");
        assert!(stderr.contains("openssl"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
}
