//! Every kernel image carries its SBOM and SLSA provenance where `linuxkit build` reads them:
//! BuildKit's attestation storage, an extra manifest in the image's index. Read back here by a
//! reader written from that format's description (docs.docker.com, "Image attestation
//! storage"), with none of kbuild's own OCI code.

mod common;

use std::process::Command;

use common::Ws;
use serde_json::Value;

const SPDX: &str = "https://spdx.dev/Document";
const SLSA: &str = "https://slsa.dev/provenance/v1";

fn sha256_hex(bytes: &[u8]) -> String {
    kbuild::digest::Sha256::of_bytes(bytes).to_string()
}

/// A blob of `out/`'s layout, checked against its digest.
fn blob(ws: &Ws, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(ws.path().join("out/blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256_hex(&bytes), hex, "blob {digest} has other content");
    bytes
}

/// The index the layout names by `6.6.71` (the series' plain kernels).
fn index(ws: &Ws, reference: &str) -> Value {
    let layout: Value = serde_json::from_str(&ws.read("out/index.json")).unwrap();
    let entry = (layout["manifests"].as_array().unwrap().iter())
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|r| r == reference)
        })
        .unwrap_or_else(|| panic!("{reference} is not in the layout"));
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    serde_json::from_slice(&blob(ws, entry["digest"].as_str().unwrap())).unwrap()
}

/// For each image of `index`: its platform's architecture and the statements its attestation
/// manifest holds, by predicate type.
fn attestations(ws: &Ws, index: &Value) -> Vec<(String, Vec<(String, Value)>)> {
    let manifests = index["manifests"].as_array().unwrap();
    let images: Vec<&Value> = (manifests.iter())
        .filter(|m| m["platform"]["os"] == "linux")
        .collect();
    let mut found = Vec::new();
    for image in images {
        let digest = image["digest"].as_str().unwrap();
        let attestation: Vec<&Value> = (manifests.iter())
            .filter(|m| {
                m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest"
                    && m["annotations"]["vnd.docker.reference.digest"] == digest
            })
            .collect();
        assert_eq!(
            attestation.len(),
            1,
            "one attestation manifest for {digest}"
        );
        let attestation = attestation[0];
        assert_eq!(
            attestation["platform"],
            serde_json::json!({"architecture": "unknown", "os": "unknown"})
        );
        let manifest: Value =
            serde_json::from_slice(&blob(ws, attestation["digest"].as_str().unwrap())).unwrap();
        // The config must be a valid image config, to be ignored.
        let config: Value =
            serde_json::from_slice(&blob(ws, manifest["config"]["digest"].as_str().unwrap()))
                .unwrap();
        assert_eq!(config["rootfs"]["type"], "layers");
        let mut statements = Vec::new();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            let predicate_type = layer["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
                .to_string();
            let statement: Value =
                serde_json::from_slice(&blob(ws, layer["digest"].as_str().unwrap())).unwrap();
            assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
            assert_eq!(statement["predicateType"], predicate_type.as_str());
            // Every statement is about the image it sits beside.
            assert_eq!(
                format!(
                    "sha256:{}",
                    statement["subject"][0]["digest"]["sha256"]
                        .as_str()
                        .unwrap()
                ),
                digest
            );
            statements.push((predicate_type, statement));
        }
        let arch = image["platform"]["architecture"]
            .as_str()
            .unwrap()
            .to_string();
        found.push((arch, statements));
    }
    found
}

fn predicate<'a>(statements: &'a [(String, Value)], kind: &str) -> &'a Value {
    &(statements.iter().find(|(t, _)| t == kind))
        .unwrap_or_else(|| panic!("no {kind} statement"))
        .1["predicate"]
}

fn dependency<'a>(provenance: &'a Value, name: &str) -> &'a Value {
    (provenance["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter())
    .find(|d| d["name"] == name)
    .unwrap_or_else(|| panic!("{name} is not a resolved dependency: {provenance}"))
}

#[test]
fn each_image_of_the_index_carries_its_sbom_and_provenance_the_same_from_two_caches() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64", "//6.6.x:arm64"], 0);
    let index_value = index(&ws, "linuxkit/kernel:6.6.71");
    let found = attestations(&ws, &index_value);
    assert_eq!(
        found
            .iter()
            .map(|(arch, _)| arch.as_str())
            .collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    let patch = "kernel/6.6.x/patches/0001-init-say-hello.patch";
    let patch_sha = sha256_hex(ws.read(patch).as_bytes());
    for (arch, statements) in &found {
        assert_eq!(statements.len(), 2, "{arch}: an SBOM and a provenance");
        let sbom = predicate(statements, SPDX);
        assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
        let source = (sbom["packages"].as_array().unwrap().iter())
            .find(|p| p["SPDXID"] == "SPDXRef-Package-source")
            .unwrap();
        assert_eq!(source["checksums"][0]["checksumValue"], ws.source_sha());
        let provenance = predicate(statements, SLSA);
        let definition = &provenance["buildDefinition"];
        assert_eq!(
            definition["externalParameters"]["target"],
            format!("//6.6.x:{arch}")
        );
        assert_eq!(
            dependency(provenance, "source")["digest"]["sha256"],
            ws.source_sha()
        );
        assert_eq!(
            dependency(provenance, patch)["digest"]["sha256"],
            patch_sha.as_str()
        );
        let config = if arch == "amd64" {
            "config-x86_64"
        } else {
            "config-aarch64"
        };
        let config = format!("kernel/6.6.x/{config}");
        let config_sha = sha256_hex(ws.read(&config).as_bytes());
        assert_eq!(
            dependency(provenance, &config)["digest"]["sha256"],
            config_sha.as_str()
        );
        assert_eq!(
            provenance["runDetails"]["builder"]["id"],
            "https://kbuild.invalid/builders/unnamed"
        );
        // Nothing of the clock, so the statement is as reproducible as the image.
        assert!(provenance["runDetails"].get("metadata").is_none());
    }

    // Another workspace and cache, the same inputs: the same index, attestations and all.
    let again = Ws::new();
    again.run(&["//6.6.x:amd64", "//6.6.x:arm64"], 0);
    assert_eq!(index(&again, "linuxkit/kernel:6.6.71"), index_value);
}

#[test]
fn the_builder_id_of_kernel_local_kdl_is_in_the_provenance_and_renames_no_image() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:amd64"], 0);
    let before = index(&ws, "linuxkit/kernel:6.6.71");
    let tags = ws.read("out/6.6.x/amd64.tags");
    ws.write(
        "kernel.local.kdl",
        "builder-id \"https://ci.example.org/runners/7\"\n",
    );
    let r = ws.run(&["//6.6.x:amd64"], 0);
    // Only the attestation and the index over it are made again; the tags stay.
    assert_eq!(r.executed(), ["attest //6.6.x:amd64", "index //6.6.x"]);
    assert_eq!(ws.read("out/6.6.x/amd64.tags"), tags);
    let after = index(&ws, "linuxkit/kernel:6.6.71");
    assert_eq!(
        before["manifests"][0], after["manifests"][0],
        "the same image"
    );
    let found = attestations(&ws, &after);
    assert_eq!(
        predicate(&found[0].1, SLSA)["runDetails"]["builder"]["id"],
        "https://ci.example.org/runners/7"
    );

    // Not a URI: said with its place, nothing built.
    ws.write("kernel.local.kdl", "builder-id \"runner seven\"\n");
    let out = ws.kbuild(&["run", "//6.6.x:amd64"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`builder-id` must be a URI"), "{stderr}");
    assert!(stderr.contains("kernel.local.kdl"), "{stderr}");
}

/// Where .ci/setup installs PyPI's in-toto-attestation (its Statement and SLSA v1 messages).
fn python() -> String {
    let dir = std::env::var("KBUILD_LINT").unwrap_or_else(|_| "/opt/kbuild-lint/bin".into());
    format!("{dir}/python")
}

/// Parses each statement file strictly into in-toto's own Statement message (unknown fields
/// are errors) and validates it; a provenance's predicate into SLSA v1's Provenance message.
const VALIDATE: &str = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

for path in sys.argv[1:]:
    doc = json.load(open(path))
    pb = json_format.ParseDict(doc, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    if doc["predicateType"] == "https://slsa.dev/provenance/v1":
        p = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
        if not p.build_definition.build_type:
            raise ValueError("buildType required")
        if not p.run_details.builder.id:
            raise ValueError("builder.id required")
        for d in p.build_definition.resolved_dependencies:
            ResourceDescriptor.copy_from_pb(d).validate()
    print("valid", path)
"#;

#[test]
#[ignore = "needs in-toto-attestation (KBUILD_SETUP_REAL=1 bash .ci/setup)"]
fn in_totos_own_messages_accept_the_statements_and_reject_a_broken_one() {
    let ws = Ws::new();
    ws.run(&["//6.6.x:dbg-amd64"], 0);
    let found = attestations(&ws, &index(&ws, "linuxkit/kernel:6.6.71-dbg"));
    let mut files = Vec::new();
    for (i, (_, statement)) in found[0].1.iter().enumerate() {
        let file = ws.path().join(format!("statement-{i}.json"));
        std::fs::write(&file, statement.to_string()).unwrap();
        files.push(file);
    }
    let validate = |files: &[std::path::PathBuf]| {
        Command::new(python())
            .arg("-c")
            .arg(VALIDATE)
            .args(files)
            .output()
            .unwrap()
    };
    let out = validate(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    // The validator can say no: a subject without its digest, a misspelt provenance field.
    for broken in [
        |s: &mut Value| {
            s["subject"][0]
                .as_object_mut()
                .unwrap()
                .remove("digest")
                .map(drop)
        },
        |s: &mut Value| {
            let predicate = s["predicate"].as_object_mut().unwrap();
            let definition = predicate.remove("buildDefinition");
            predicate.insert("buildDefinitions".into(), definition.unwrap());
            Some(())
        },
    ] {
        let (_, statement) = (found[0].1.iter()).find(|(t, _)| t == SLSA).unwrap();
        let mut statement = statement.clone();
        broken(&mut statement).unwrap();
        std::fs::write(&files[0], statement.to_string()).unwrap();
        assert!(!validate(&files[..1]).status.success(), "{statement}");
    }
}

#[test]
fn kbuild_attestations_lists_what_the_image_carries() {
    let ws = Ws::new();
    let out = ws.kbuild(&["attestations", "//6.6.x:arm64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // What the independent reader finds in the layout is what the command says.
    let kernel = index(&ws, "linuxkit/kernel:6.6.71");
    let image = (kernel["manifests"].as_array().unwrap().iter())
        .find(|m| m["platform"]["architecture"] == "arm64")
        .unwrap();
    let digest = image["digest"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("//6.6.x:arm64: image {digest}\n")),
        "{text}"
    );
    for (_, statements) in attestations(&ws, &kernel) {
        for (predicate_type, _) in statements {
            assert_eq!(text.matches(predicate_type.as_str()).count(), 2, "{text}");
        }
    }
    assert!(
        text.contains(&format!("OCI 1.1 referrers of {digest}")),
        "{text}"
    );

    // A tool image carries its own.
    let out = ws.kbuild(&["attestations", "//6.6.x:perf-amd64"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("https://slsa.dev/provenance/v1"), "{text}");
    let perf = index(&ws, "linuxkit/kernel-perf:6.6.71");
    let found = attestations(&ws, &perf);
    let sbom = predicate(&found[0].1, SPDX);
    assert_eq!(sbom["packages"][0]["name"], "perf");
}
