//! `kbuild push --sign-key`, `kbuild sign` and `kbuild verify-signature`: cosign-compatible
//! signatures in a real registry (Debian's docker-registry), checked by an independent
//! implementation, the `sigstore` crate's cosign verification, with keys openssl makes.
//! (Debian's skopeo would be the other one, but its build disables sigstore.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Ws;
use common::servers::Registry;

/// An ECDSA P-256 key pair made by openssl: (private, public).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let k = key.to_str().unwrap();
    run(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        k,
    ]);
    run(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (key, public)
}

/// Whether the `sigstore` crate (cosign's verification, in Rust) finds a signature of
/// `reference` by `public` under its `sha256-<hex>.sig` tag, over the manifest the registry
/// serves for it.
fn sigstore_accepts(registry: &Registry, public: &Path, reference: &str) -> (bool, String) {
    use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
    use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = sigstore::registry::ClientConfig {
            protocol: sigstore::registry::ClientProtocol::Http,
            ..Default::default()
        };
        let mut client = ClientBuilder::default()
            .with_oci_client_config(config)
            .build()
            .unwrap();
        let image: sigstore::registry::OciReference =
            format!("{}/linuxkit/kernel:{reference}", registry.host)
                .parse()
                .unwrap();
        let auth = &sigstore::registry::Auth::Anonymous;
        let layers = match client.trusted_signature_layers(auth, &image).await {
            Ok(layers) => layers,
            Err(e) => return (false, e.to_string()),
        };
        if layers.is_empty() {
            return (false, "no signature layers".into());
        }
        let key = std::fs::read(public).unwrap();
        let constraints: VerificationConstraintVec =
            vec![Box::new(PublicKeyVerifier::try_from(&key).unwrap())];
        match verify_constraints(&layers, constraints.iter()) {
            Ok(()) => (true, String::new()),
            Err(e) => (false, format!("{e:?}")),
        }
    })
}

fn verify(ws: &Ws, registry: &Registry, public: &Path, reference: &str) -> (i32, String) {
    let out = ws.kbuild(&[
        "verify-signature",
        "--insecure",
        "--key",
        public.to_str().unwrap(),
        &format!("{}/linuxkit/kernel:{reference}", registry.host),
    ]);
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.into_owned())
}

#[test]
#[ignore = "needs docker-registry and openssl; run with --include-ignored"]
fn pushed_images_indexes_and_attestations_are_signed_and_checked_by_sigstore() {
    let registry = Registry::start();
    let ws = Ws::new();
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(keys.path(), "cosign");
    let (_, other) = key_pair(keys.path(), "other");
    let push = |ws: &Ws| {
        ws.kbuild(&[
            "push",
            "--registry",
            &registry.host,
            "--insecure",
            "--sign-key",
            key.to_str().unwrap(),
            "//6.6.x:amd64",
            "//6.6.x:arm64",
        ])
    };
    let out = push(&ws);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kbuild: signed "), "{stderr}");
    assert!(
        !stderr.contains(key.to_str().unwrap()),
        "the key file is not named in the log"
    );

    // The independent verifier accepts the per-arch image and the index.
    for reference in ["6.6.71-amd64", "6.6.71"] {
        let (ok, why) = sigstore_accepts(&registry, &public, reference);
        assert!(ok, "{reference}: {why}");
        let (code, text) = verify(&ws, &registry, &public, reference);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("verified: "), "{text}");
    }
    // Every attestation manifest of the index has its signature too.
    let index = registry.manifest("linuxkit/kernel", "6.6.71");
    for m in index["manifests"].as_array().unwrap() {
        let tag = m["digest"].as_str().unwrap().replace(':', "-") + ".sig";
        let signatures = registry.manifest("linuxkit/kernel", &tag);
        assert_eq!(
            signatures["layers"][0]["mediaType"],
            "application/vnd.dev.cosign.simplesigning.v1+json"
        );
    }

    // Another key: refused by both.
    let (ok, _) = sigstore_accepts(&registry, &other, "6.6.71-amd64");
    assert!(!ok, "sigstore accepted a signature by another key");
    let (code, text) = verify(&ws, &registry, &other, "6.6.71-amd64");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a signature by this key"), "{text}");

    // Pushing again signs nothing new: the signatures are deterministic and already there.
    let before = registry.get("/v2/linuxkit/kernel/manifests/6.6.71").1;
    let sig_tag = format!(
        "{}.sig",
        serde_json::from_str::<serde_json::Value>(&before).unwrap()["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .replace(':', "-")
    );
    let sig_before = registry
        .get(&format!("/v2/linuxkit/kernel/manifests/{sig_tag}"))
        .1;
    let again = push(&ws);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(!stderr.contains("kbuild: signed "), "{stderr}");
    assert_eq!(
        registry
            .get(&format!("/v2/linuxkit/kernel/manifests/{sig_tag}"))
            .1,
        sig_before
    );

    // The image replaced under its tag (another build pushed unsigned): no signature holds.
    ws.edit(
        "kernel.kdl",
        "linuxkit/alpine:1111111111111111111111111111111111111111",
        "linuxkit/alpine:2222222222222222222222222222222222222222",
    );
    let unsigned = ws.kbuild(&[
        "push",
        "--registry",
        &registry.host,
        "--insecure",
        "//6.6.x:amd64",
    ]);
    assert!(unsigned.status.success());
    let (ok, _) = sigstore_accepts(&registry, &public, "6.6.71-amd64");
    assert!(!ok, "sigstore accepted a replaced image");
    let (code, text) = verify(&ws, &registry, &public, "6.6.71-amd64");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("there is no signature image"), "{text}");

    // A hostile copy of another manifest's signature under this one's tag is no signature.
    let arm = registry.get("/v2/linuxkit/kernel/manifests/6.6.71-arm64").1;
    let arm_sig = format!(
        "/v2/linuxkit/kernel/manifests/sha256-{}.sig",
        kbuild::digest::Sha256::of_bytes(arm.as_bytes())
    );
    let stolen = registry.get(&arm_sig).1;
    let amd = registry.get("/v2/linuxkit/kernel/manifests/6.6.71-amd64").1;
    let amd_sig = format!(
        "sha256-{}.sig",
        kbuild::digest::Sha256::of_bytes(amd.as_bytes())
    );
    let status = ureq::put(&format!(
        "http://{}/v2/linuxkit/kernel/manifests/{amd_sig}",
        registry.host
    ))
    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .send(stolen.as_bytes())
    .unwrap()
    .status();
    assert_eq!(status.as_u16(), 201);
    let (code, text) = verify(&ws, &registry, &public, "6.6.71-amd64");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not this manifest"), "{text}");
    let (ok, _) = sigstore_accepts(&registry, &public, "6.6.71-amd64");
    assert!(!ok, "sigstore accepted a signature of another manifest");

    // `kbuild sign` signs it now; both verifiers accept it.
    let out = ws.kbuild(&[
        "sign",
        "--insecure",
        "--key",
        key.to_str().unwrap(),
        &format!("{}/linuxkit/kernel:6.6.71-amd64", registry.host),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("signed: "));
    let (ok, why) = sigstore_accepts(&registry, &public, "6.6.71-amd64");
    assert!(ok, "{why}");
    assert_eq!(verify(&ws, &registry, &public, "6.6.71-amd64").0, 0);
}

#[test]
fn a_bad_key_stops_the_push_before_anything_is_built() {
    let ws = Ws::new();
    ws.write("not-a-key.pem", "hello\n");
    let out = ws.kbuild(&[
        "push",
        "--registry",
        "127.0.0.1:9",
        "--insecure",
        "--sign-key",
        "not-a-key.pem",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not an unencrypted ECDSA P-256 private key"),
        "{stderr}"
    );
    assert!(stderr.contains("openssl genpkey"), "{stderr}");
    assert!(!ws.path().join("out").exists(), "nothing was built");
}
