//! Images against real tools: a real registry (Debian's docker-registry, started per test on a
//! free port), skopeo and umoci as independent checkers. They need those three installed
//! (`KBUILD_SETUP_REAL=1 bash .ci/setup`), so they are ignored by default; `.ci/run` runs them
//! with `cargo test -- --include-ignored`.

mod common;

use std::process::Command;

use common::Ws;
use common::servers::Registry;

fn push(ws: &Ws, registry: &Registry, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["push", "--registry", &registry.host, "--insecure"];
    args.extend(extra);
    let out = ws.kbuild(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (apt install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every attestation manifest of `index` names an image of it, and is in the registry with
/// its statements.
fn attestations_name_images_of(registry: &Registry, index: &serde_json::Value) {
    let manifests = index["manifests"].as_array().unwrap();
    for m in manifests
        .iter()
        .filter(|m| m["platform"]["os"] == "unknown")
    {
        assert_eq!(
            m["annotations"]["vnd.docker.reference.type"],
            "attestation-manifest"
        );
        let subject = &m["annotations"]["vnd.docker.reference.digest"];
        assert!(manifests.iter().any(|i| &i["digest"] == subject), "{m}");
        // The same statements as OCI 1.1 referrers of the image, listed under the tag-schema
        // fallback (docker-registry has no referrers API).
        let subject = subject.as_str().unwrap();
        let listed = registry.manifest("linuxkit/kernel", &subject.replace(':', "-"));
        let referrers = listed["manifests"].as_array().unwrap();
        let mut types: Vec<&str> = (referrers.iter())
            .map(|r| {
                r["annotations"]["in-toto.io/predicate-type"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        types.sort();
        assert_eq!(
            types,
            [
                "https://slsa.dev/provenance/v1",
                "https://spdx.dev/Document"
            ]
        );
        for r in referrers {
            assert_eq!(r["artifactType"], "application/vnd.in-toto+json");
            let referrer = registry.manifest("linuxkit/kernel", r["digest"].as_str().unwrap());
            assert_eq!(referrer["subject"]["digest"], subject);
            assert_eq!(referrer["artifactType"], "application/vnd.in-toto+json");
            assert_eq!(
                referrer["config"]["mediaType"],
                "application/vnd.oci.empty.v1+json"
            );
        }
        let attestation = registry.manifest("linuxkit/kernel", m["digest"].as_str().unwrap());
        for layer in attestation["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            let (status, _) = registry.get(&format!(
                "/v2/linuxkit/kernel/blobs/{}",
                layer["digest"].as_str().unwrap()
            ));
            assert_eq!(status, 200);
        }
    }
}

fn platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            match p["variant"].as_str() {
                Some(v) => format!("{}/{}", p["architecture"].as_str().unwrap(), v),
                None => p["architecture"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

#[test]
#[ignore = "needs docker-registry and skopeo; run with --include-ignored"]
fn push_publishes_every_tag_and_a_second_push_uploads_nothing() {
    let registry = Registry::start();
    let ws = Ws::new();
    let (code, stderr) = push(&ws, &registry, &[]);
    assert_eq!(code, 0, "{stderr}");
    let index = registry.manifest("linuxkit/kernel", "6.6.71-dbg");
    // Each image, then its attestation manifest (BuildKit's `unknown/unknown`).
    assert_eq!(
        platforms(&index),
        ["amd64", "arm64/v8", "unknown", "unknown"]
    );
    attestations_name_images_of(&registry, &index);
    let refs: serde_json::Value = serde_json::from_slice(
        &ws.kbuild(&["tags", "--format", "json", "//6.6.x:dbg-arm64"])
            .stdout,
    )
    .unwrap();
    let hash_tag = refs[0]["index"][1]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        registry.manifest("linuxkit/kernel", &hash_tag),
        index,
        "the content tag names the same index"
    );
    let arm = registry.manifest("linuxkit/kernel", "6.6.71-dbg-arm64");
    assert_eq!(
        arm["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let image = format!(
        "docker://{}/linuxkit/kernel:6.6.71-dbg-arm64",
        registry.host
    );
    let inspect = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        &image,
    ]);
    assert_eq!(inspect["Architecture"], "arm64");
    assert_eq!(
        inspect["Labels"]["org.mobyproject.linuxkit.kernel.buildimage"],
        "linuxkit/alpine:1111111111111111111111111111111111111111"
    );
    assert_eq!(
        inspect["Labels"]["org.opencontainers.image.version"],
        "6.6.71"
    );
    assert_eq!(
        inspect["Created"], "2023-11-14T22:13:20Z",
        "the source date, not the clock"
    );
    // A tool's index carries its images' attestations too.
    let perf = registry.manifest("linuxkit/kernel-perf", "6.6.71");
    assert_eq!(
        platforms(&perf),
        ["amd64", "arm64/v8", "unknown", "unknown"]
    );

    // The registry holds exactly what the local layout holds.
    let local = ws.layout_entry("linuxkit/kernel:6.6.71-dbg");
    let remote = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/linuxkit/kernel:6.6.71-dbg", registry.host),
    ]);
    assert_eq!(
        platforms(&remote),
        ["amd64", "arm64/v8", "unknown", "unknown"]
    );
    let (_, body) = registry.get("/v2/linuxkit/kernel/manifests/6.6.71-dbg");
    assert_eq!(
        local["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(body.as_bytes()))
    );

    let (code, again) = push(&ws, &registry, &[]);
    assert_eq!(code, 0, "{again}");
    assert!(
        again.contains(": 0 blob(s) uploaded (0 bytes), 0 mounted,"),
        "{again}"
    );
    assert!(again.contains("; 0 manifest(s);"), "{again}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
#[ignore = "needs docker-registry; run with --include-ignored"]
fn an_interrupted_push_completes_when_run_again() {
    let registry = Registry::start();
    let ws = Ws::new();
    let out = ws
        .command(&["push", "--registry", &registry.host, "--insecure"])
        .env("KBUILD_PUSH_STOP_AFTER_BLOBS", "3")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("push stopped after 3 blob uploads"));
    let (status, _) = registry.get("/v2/linuxkit/kernel/manifests/6.6.71");
    assert_eq!(status, 404, "no index is published before its images");
    let (code, stderr) = push(&ws, &registry, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("3 already there"), "{stderr}");
    // Consistent: every tag resolves, and every blob of every manifest is there.
    for tag in [
        "6.6.71",
        "6.6.71-amd64",
        "6.6.71-arm64",
        "6.6.71-dbg",
        "6.6.71-dbg-amd64",
    ] {
        let m = registry.manifest("linuxkit/kernel", tag);
        for layer in m["layers"].as_array().into_iter().flatten() {
            let (status, _) = registry.get(&format!(
                "/v2/linuxkit/kernel/blobs/{}",
                layer["digest"].as_str().unwrap()
            ));
            assert_eq!(status, 200);
        }
    }
}

#[test]
#[ignore = "needs docker-registry; run with --include-ignored"]
fn one_more_arch_merges_into_the_index_and_no_move_keeps_the_version_tag() {
    let registry = Registry::start();
    let ws = Ws::new();
    assert_eq!(push(&ws, &registry, &["//6.6.x:amd64"]).0, 0);
    assert_eq!(
        platforms(&registry.manifest("linuxkit/kernel", "6.6.71")),
        ["amd64", "unknown"]
    );
    assert_eq!(push(&ws, &registry, &["//6.6.x:arm64"]).0, 0);
    let merged = registry.manifest("linuxkit/kernel", "6.6.71");
    assert_eq!(
        platforms(&merged),
        ["amd64", "arm64/v8", "unknown", "unknown"],
        "merged, not skipped, the attestations of both kept"
    );
    attestations_name_images_of(&registry, &merged);
    // The same index a build of both arches at once gives.
    ws.run(&["//6.6.x:amd64", "//6.6.x:arm64"], 0);
    let entry = ws.layout_entry("linuxkit/kernel:6.6.71");
    assert_eq!(ws.layout_blob(entry["digest"].as_str().unwrap()), merged);

    // A new build of the same version: --no-move keeps the version tag, a plain push moves it.
    let before = registry.get("/v2/linuxkit/kernel/manifests/6.6.71").1;
    ws.edit(
        "kernel.kdl",
        "linuxkit/alpine:1111111111111111111111111111111111111111",
        "linuxkit/alpine:2222222222222222222222222222222222222222",
    );
    let (code, stderr) = push(&ws, &registry, &["--no-move", "//6.6.x:amd64"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("kept ") && stderr.contains("linuxkit/kernel:6.6.71 (--no-move)"),
        "{stderr}"
    );
    assert_eq!(
        registry.get("/v2/linuxkit/kernel/manifests/6.6.71").1,
        before
    );
    assert_eq!(push(&ws, &registry, &["//6.6.x:amd64"]).0, 0);
    assert_ne!(
        registry.get("/v2/linuxkit/kernel/manifests/6.6.71").1,
        before,
        "moved"
    );
}

#[test]
#[ignore = "needs skopeo and umoci; run with --include-ignored"]
fn the_layout_is_readable_by_skopeo_and_umoci() {
    let ws = Ws::new();
    ws.run(&[], 0);
    let layout = format!(
        "oci:{}:linuxkit/kernel:6.6.71-dbg-arm64",
        ws.path().join("out").display()
    );
    let inspect = skopeo(&["inspect", "--override-arch", "arm64", &layout]);
    assert_eq!(inspect["Architecture"], "arm64");
    let bundle = tempfile::tempdir().unwrap();
    let target = bundle.path().join("b");
    let status = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:linuxkit/kernel:6.6.71-dbg-amd64",
            ws.path().join("out").display()
        ))
        .arg(&target)
        .status()
        .expect("umoci (apt install umoci)");
    assert!(status.success());
    for file in [
        "kernel",
        "System.map",
        "kernel.tar",
        "kernel-headers.tar",
        "kernel-dev.tar",
        "linux.tar.xz",
        "kernel-builder",
        "kernel-source-info",
        "vmlinux",
    ] {
        assert!(target.join("rootfs").join(file).is_file(), "{file}");
    }
    // A cache hit recreates the layout without executing anything.
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    let r = ws.run(&[], 0);
    assert!(r.executed().is_empty());
    assert!(ws.path().join("out/index.json").is_file());
    skopeo(&["inspect", "--override-arch", "arm64", &layout]);
}

#[test]
#[ignore = "needs docker-registry, skopeo and a Docker daemon; run with --include-ignored"]
fn push_publishes_the_builder_image_under_version_builder() {
    // A one-file image stands in for the builder: the export and the push are under test.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hello"), "builder\n").unwrap();
    let tar = root.path().join("root.tar");
    let tag = format!("kbuild-test/small-builder:{}", std::process::id());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {0} -cf {1} hello && docker import {1} {tag} >/dev/null",
            root.path().display(),
            tar.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let id = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &tag])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();

    let registry = Registry::start();
    let ws = Ws::new();
    ws.edit(
        "kernel.kdl",
        "linuxkit/alpine:1111111111111111111111111111111111111111",
        &tag,
    );
    let (code, stderr) = push(&ws, &registry, &["//6.6.x:amd64"]);
    assert_eq!(code, 0, "{stderr}");
    let manifest = registry.manifest("linuxkit/kernel", "6.6.71-builder");
    // The config is the daemon's own: its digest is the image ID.
    assert_eq!(manifest["config"]["digest"], id.as_str(), "{manifest}");
    let reference = format!("docker://{}/linuxkit/kernel:6.6.71-builder", registry.host);
    let inspected = skopeo(&["inspect", "--tls-verify=false", &reference]);
    assert_eq!(inspected["Architecture"], "amd64", "{inspected}");
    let (code, stderr) = push(&ws, &registry, &["//6.6.x:amd64"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(": 0 blob(s) uploaded"), "{stderr}");
    let _ = Command::new("docker").args(["rmi", &tag]).output();
}
