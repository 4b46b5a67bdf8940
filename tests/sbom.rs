//! `kbuild sbom`: the SPDX 2.3 document of a kernel image says what went into it (the source
//! pin, each patch, the resolved config, every file of the image), the same bytes from two
//! empty caches, and passes a real validator (PyPI's spdx-tools, from .ci/setup).

mod common;

use std::process::Command;

use common::Ws;

fn sbom(ws: &Ws, label: &str) -> String {
    let out = ws.kbuild(&["sbom", label]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    kbuild::digest::Sha256::of_bytes(bytes).to_string()
}

#[test]
fn the_sbom_names_source_patches_config_and_files_and_is_the_same_from_two_caches() {
    let ws = Ws::new();
    let text = sbom(&ws, "//6.6.x:amd64");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    // The source, by its pin.
    let source = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Package-source")
        .unwrap();
    assert_eq!(source["checksums"][0]["checksumValue"], ws.source_sha());
    // The patch, by content; each file of the image as out/ has it.
    let files = doc["files"].as_array().unwrap();
    let sha_of = |name: &str| {
        files
            .iter()
            .find(|f| f["fileName"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the SBOM"))["checksums"][1]["checksumValue"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let patch = ws.read("kernel/6.6.x/patches/0001-init-say-hello.patch");
    assert_eq!(
        sha_of("./kernel/6.6.x/patches/0001-init-say-hello.patch"),
        sha256_hex(patch.as_bytes())
    );
    for file in ["kernel", "kernel.tar", "System.map"] {
        let bytes = std::fs::read(ws.path().join("out/6.6.x/amd64").join(file)).unwrap();
        assert_eq!(sha_of(&format!("./{file}")), sha256_hex(&bytes), "{file}");
    }
    assert!(text.contains("CONFIG_NR_CPUS=64"));

    // Another workspace and cache, the same inputs: the same document, byte for byte.
    let again = Ws::new();
    assert_eq!(sbom(&again, "//6.6.x:amd64"), text);

    // A patch edit is in the next SBOM.
    ws.write(
        "kernel/6.6.x/patches/0001-init-say-hello.patch",
        &patch.replace("hello", "hallo"),
    );
    assert_ne!(sbom(&ws, "//6.6.x:amd64"), text);
}

#[test]
fn a_tool_image_has_its_own_sbom() {
    let ws = Ws::new();
    let text = sbom(&ws, "//6.6.x:perf-amd64");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let packages = doc["packages"].as_array().unwrap();
    let main = &packages[0];
    assert_eq!(main["name"], "perf");
    assert_eq!(main["licenseDeclared"], "GPL-2.0-only");
    assert_eq!(main["primaryPackagePurpose"], "APPLICATION");
    // Built from the plain kernel tree: its source and patches, no config.
    let source = (packages.iter())
        .find(|p| p["SPDXID"] == "SPDXRef-Package-source")
        .unwrap();
    assert_eq!(source["name"], "linux");
    assert_eq!(source["checksums"][0]["checksumValue"], ws.source_sha());
    assert!(text.contains("\"PATCH_APPLIED\""));
    assert!(!text.contains("./.config"));
    let files: Vec<&str> = (doc["files"].as_array().unwrap().iter())
        .filter_map(|f| f["fileName"].as_str())
        .collect();
    assert!(files.contains(&"./usr/bin/perf"), "{files:?}");
    let out = ws.kbuild(&["sbom", "//6.6.x"]);
    assert_eq!(out.status.code(), Some(2), "one image at a time");
}

/// Where .ci/setup installs spdx-tools (PyPI).
fn pyspdxtools() -> String {
    let dir = std::env::var("KBUILD_LINT").unwrap_or_else(|_| "/opt/kbuild-lint/bin".into());
    format!("{dir}/pyspdxtools")
}

#[test]
#[ignore = "needs spdx-tools (KBUILD_SETUP_REAL=1 bash .ci/setup)"]
fn spdx_tools_validates_the_sbom_and_rejects_a_broken_one() {
    let ws = Ws::new();
    let file = ws.path().join("sbom.spdx.json");
    let mut text = String::new();
    for label in ["//6.6.x:perf-amd64", "//6.6.x:amd64"] {
        text = sbom(&ws, label);
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(pyspdxtools())
            .arg("-i")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{label}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator can say no: a file without its SHA1.
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["files"][0]["checksums"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = Command::new(pyspdxtools())
        .arg("-i")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The SHA1 and SHA256 of an image's files are remembered by content (`cache/sums`): a rebuild
/// of another config states the new kernel's sums, never those remembered for the old one, and
/// `cache gc` drops the sums of the blobs it drops.
#[test]
fn remembered_sums_follow_the_content_and_go_with_their_blobs() {
    use sha1::Digest as _;
    let ws = Ws::new();
    sbom(&ws, "//6.6.x:amd64");
    let sums = ws.cache.join("sums");
    let remembered = common::files_under(&sums).len();
    assert!(remembered >= 3, "{remembered} sums remembered");

    ws.set_amd64_cpus(32);
    let doc: serde_json::Value = serde_json::from_str(&sbom(&ws, "//6.6.x:amd64")).unwrap();
    let files = doc["files"].as_array().unwrap();
    for name in ["kernel", "kernel.tar", "System.map"] {
        let bytes = std::fs::read(ws.path().join("out/6.6.x/amd64").join(name)).unwrap();
        let entry = (files.iter())
            .find(|f| f["fileName"] == format!("./{name}"))
            .unwrap();
        let sum = |algorithm: &str| {
            (entry["checksums"].as_array().unwrap().iter())
                .find(|c| c["algorithm"] == algorithm)
                .unwrap()["checksumValue"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(sum("SHA256"), sha256_hex(&bytes), "{name}");
        assert_eq!(
            sum("SHA1"),
            hex::encode(sha1::Sha1::digest(&bytes)),
            "{name}"
        );
    }
    let before = common::files_under(&sums);
    assert!(before.len() > remembered);

    // gc keeps what the last run uses (the new kernel) and drops the old config's outputs: the
    // sums left are those of blobs still stored, and the old kernel's went with it.
    let out = ws.kbuild(&["cache", "gc", "--max-size", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let after = common::files_under(&sums);
    assert!(
        after.len() < before.len(),
        "{} of {}",
        after.len(),
        before.len()
    );
    for kept in &after {
        let shard = kept.parent().unwrap().file_name().unwrap();
        let blob = ws
            .cache
            .join("blobs")
            .join(shard)
            .join(kept.file_name().unwrap());
        let mut executable = blob.clone().into_os_string();
        executable.push(".x");
        assert!(
            blob.exists() || std::path::Path::new(&executable).exists(),
            "{} has no blob",
            kept.display()
        );
    }
}
