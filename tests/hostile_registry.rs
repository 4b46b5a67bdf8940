//! A registry that answers garbage must get an error from `kbuild push`, never a panic: a
//! malformed `--registry`, a realm or upload Location the HTTP client cannot use, a token with
//! bytes no header may carry. The registry here is a small server in the test.

mod common;

use std::io::{BufRead, BufReader, Write};

use common::Ws;

/// Serves `respond(method, path)` (a raw HTTP response) to every request, for 60 s at most.
fn serve(respond: fn(&str, &str, u16) -> String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            let mut stream = stream;
            let _ = stream.write_all(respond(method, path, port).as_bytes());
        }
    });
    port
}

fn push_to(ws: &Ws, registry: &str) -> (Option<i32>, String) {
    let out = ws
        .command(&[
            "push",
            "//6.6.x:amd64",
            "--registry",
            registry,
            "--insecure",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

fn fails_cleanly(ws: &Ws, registry: &str, needle: &str) {
    let (code, stderr) = push_to(ws, registry);
    assert!(matches!(code, Some(1) | Some(2)), "exit {code:?}: {stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

#[test]
fn a_malformed_registry_argument_is_an_error() {
    let ws = Ws::new();
    fails_cleanly(&ws, "bad host:5000", "registry `bad host:5000`");
}

#[test]
fn a_realm_the_client_cannot_use_is_an_error() {
    let ws = Ws::new();
    let port = serve(|_, _, _| {
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://in valid/tok en\",service=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
    });
    fails_cleanly(&ws, &format!("127.0.0.1:{port}"), "registry `127.0.0.1:");
}

#[test]
fn a_token_with_invalid_header_bytes_is_an_error() {
    let ws = Ws::new();
    let port = serve(|_, path, port| {
        if path.starts_with("/token") {
            let body = "{\"token\":\"abc\\ndef\"}";
            return format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    });
    fails_cleanly(&ws, &format!("127.0.0.1:{port}"), "registry `127.0.0.1:");
}

#[test]
fn an_upload_location_the_client_cannot_use_is_an_error() {
    let ws = Ws::new();
    let port = serve(|method, _, _| {
        match method {
        "POST" => "HTTP/1.1 202 Accepted\r\nLocation: /v2/up load/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        "HEAD" => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        _ => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".into(),
    }
    });
    fails_cleanly(&ws, &format!("127.0.0.1:{port}"), "registry `127.0.0.1:");
}

#[test]
fn a_reply_cut_short_is_an_error_not_a_shorter_document() {
    let ws = Ws::new();
    // Says 100 bytes, sends 9 and closes: the client must not take `{"short"` for the answer.
    let port = serve(|method, _, _| {
        match method {
        "HEAD" => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        _ => "HTTP/1.1 202 Accepted\r\nLocation: /v2/x/blobs/uploads/1\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"short\"".into(),
    }
    });
    fails_cleanly(&ws, &format!("127.0.0.1:{port}"), "cut short");
}

#[test]
fn a_manifest_digest_that_is_no_sha256_is_refused() {
    let ws = Ws::new();
    // Every blob is there; every manifest "exists" under a digest no OCI registry gives.
    let port = serve(|method, path, _| {
        match (method, path.contains("/manifests/")) {
        ("HEAD", true) => "HTTP/1.1 200 OK\r\nDocker-Content-Digest: md5:0123\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        ("HEAD", false) => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        _ => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    }
    });
    fails_cleanly(&ws, &format!("127.0.0.1:{port}"), "no sha256 digest");
}

/// Pushes with a docker config whose credential helper for the registry is `script`.
fn push_with_helper(script: &str) -> (Option<i32>, String, String) {
    let ws = Ws::new();
    let port = serve(|_, _, _| {
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into()
    });
    let host = format!("127.0.0.1:{port}");
    let config = tempfile::tempdir().unwrap();
    let helper = config.path().join("docker-credential-locked");
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        config.path().join("config.json"),
        format!("{{\"credHelpers\": {{\"{host}\": \"locked\"}}}}"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        config.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = ws
        .command(&["push", "//6.6.x:amd64", "--registry", &host, "--insecure"])
        .env("DOCKER_CONFIG", config.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr, host)
}

#[test]
fn a_credential_helper_that_fails_is_an_error_not_anonymous_access() {
    // A helper that exists and fails, as one whose keychain is locked does.
    let (code, stderr, host) =
        push_with_helper("#!/bin/sh\nread host\necho 'the keychain is locked' >&2\nexit 1\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read the credentials for registry `{host}`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("docker-credential-locked"), "{stderr}");
    assert!(stderr.contains("the keychain is locked"), "{stderr}");
    // One that exits before it reads the host: kbuild's write to it meets a closed pipe, which
    // must be the same clear error, never a death by SIGPIPE.
    for _ in 0..3 {
        let (code, stderr, host) = push_with_helper("#!/bin/sh\nexit 1\n");
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot read the credentials for registry `{host}`"
            )),
            "{stderr}"
        );
    }
}
