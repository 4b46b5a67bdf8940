//! SPDX 2.3 software bills of materials, as JSON: what went into one kernel or tool image,
//! written so that the same inputs give the same bytes. The creation time is the source date, never the
//! clock; element IDs come from names and positions, the document's namespace from the digest
//! of everything else, so an SBOM is content-addressed like the image it describes.

use serde_json::{Value, json};

/// The license of the kernel and its files, as SPDX spells it.
pub const KERNEL_LICENSE: &str = "GPL-2.0-only WITH Linux-syscall-note";

/// Everything one image's SBOM says.
#[derive(Clone, Debug, Default)]
pub struct Bill {
    /// The image's target label (`//6.1.x:amd64`), the document's name.
    pub target: String,
    /// What the image holds: the kernel, or a tool.
    pub main: Main,
    /// Seconds since the epoch: the source date, the document's creation time.
    pub created: u64,
    pub source: SourceFacts,
    /// Each patch applied, in order.
    pub patches: Vec<Patch>,
    /// A kernel's resolved config; a tool has none.
    pub config: Option<Config>,
    /// Libraries built from their own sources into a tool (libtraceevent for perf).
    pub libraries: Vec<SourceFacts>,
    /// Who ran the build: a builder image by digest, or host programs by blake3.
    pub environment: Environment,
    /// The image's files.
    pub files: Vec<FileSum>,
}

/// The package an image holds.
#[derive(Clone, Debug, Default)]
pub struct Main {
    /// `linux`, `perf`, `bcc`.
    pub name: String,
    /// A kernel's `kernel.release`; a tool's version as its source names it.
    pub version: String,
    pub license: String,
    /// SPDX's primary purpose: `OPERATING-SYSTEM` for a kernel, `APPLICATION` for a tool.
    pub purpose: String,
}

/// The resolved config: its SHA1 and SHA256, and its settings (`CONFIG_X`, `y`).
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub sha1: String,
    pub sha256: String,
    pub settings: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct SourceFacts {
    /// What the tarball is the source of (`linux`, `bcc`, `libtraceevent`), and its version.
    pub name: String,
    pub version: String,
    /// Its license when known (the kernel's); else `NOASSERTION`.
    pub license: String,
    pub url: String,
    pub sha256: String,
    /// The Debian package the tarball came from (`linux-source-6.1`): its version is this
    /// machine's, pinned by the tarball's sha256 above.
    pub package: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Patch {
    pub name: String,
    pub sha1: String,
    pub sha256: String,
    /// Where it came from, as its header says (`Origin:`, `Link:`, an upstream commit).
    pub origin: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Environment {
    /// (program, blake3 hex, or `None` when absent from the machine)
    Host(Vec<(String, Option<String>)>),
    Image {
        reference: String,
        id: String,
    },
}

impl Default for Environment {
    fn default() -> Self {
        Environment::Host(Vec::new())
    }
}

#[derive(Clone, Debug, Default)]
pub struct FileSum {
    pub path: String,
    pub sha1: String,
    pub sha256: String,
}

/// An SPDX element ID: `SPDXRef-` and letters, digits, `.` and `-` only.
fn id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

/// ISO 8601 in UTC, as SPDX wants its dates (the OCI configs' form), from seconds since the
/// epoch.
pub fn date(seconds: u64) -> String {
    crate::oci::rfc3339(seconds)
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({ "spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to })
}

fn sha256(value: &str) -> Value {
    json!({ "algorithm": "SHA256", "checksumValue": value })
}

/// SPDX asks every file for a SHA1, beside the SHA256 that says more.
fn sums(sha1: &str, sha256_hex: &str) -> Value {
    json!([{ "algorithm": "SHA1", "checksumValue": sha1 }, sha256(sha256_hex)])
}

/// Where SPDX may say a package was downloaded from: a network URL; a local file (`file://`)
/// is no download location, and its URL goes to `sourceInfo` instead.
fn download_location(url: &str) -> Option<&str> {
    ["https://", "http://", "ftp://"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
        .then_some(url)
}

/// The package verification code of SPDX 2.3 (7.9): the SHA1 of the sorted SHA1s of its files.
fn verification_code(files: &[FileSum]) -> String {
    use sha1::Digest as _;
    let mut sums: Vec<&str> = files.iter().map(|f| f.sha1.as_str()).collect();
    sums.sort_unstable();
    hex::encode(sha1::Sha1::digest(sums.concat().as_bytes()))
}

/// A source package: the tarball by its pin, and the Debian package it came from.
fn source_package(facts: &SourceFacts, source: &str) -> Value {
    let mut source_package = json!({
        "SPDXID": source,
        "name": facts.name,
        "versionInfo": facts.version,
        "downloadLocation": download_location(&facts.url).unwrap_or("NOASSERTION"),
        "sourceInfo": format!("the tarball {}", facts.url),
        "checksums": [sha256(&facts.sha256)],
        "filesAnalyzed": false,
        "licenseConcluded": facts.license,
        "licenseDeclared": facts.license,
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "SOURCE",
    });
    if facts.sha256.is_empty() {
        // Not pinned yet: no checksum to state.
        source_package
            .as_object_mut()
            .map(|p| p.remove("checksums"));
    }
    if let Some(name) = &facts.package {
        let info = format!("the tarball {} of the Debian package {name}", facts.url);
        source_package["sourceInfo"] = json!(info);
        source_package["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:deb/debian/{name}"),
        }]);
    }
    source_package
}

/// The image's package, its source and libraries, and the packages of the build environment.
fn packages(bill: &Bill, kernel: &str, source: &str) -> (Vec<Value>, Vec<Value>) {
    let main = &bill.main;
    let mut packages = vec![
        json!({
            "SPDXID": kernel,
            "name": main.name,
            "versionInfo": main.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": true,
            "packageVerificationCode": { "packageVerificationCodeValue": verification_code(&bill.files) },
            "licenseConcluded": main.license,
            "licenseDeclared": main.license,
            "licenseInfoFromFiles": ["NOASSERTION"],
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": main.purpose,
            "comment": format!("the {} of {}", main.name, bill.target),
        }),
        source_package(&bill.source, source),
    ];
    let mut relations = vec![relationship(kernel, "GENERATED_FROM", source)];
    for library in &bill.libraries {
        let element = id("Library", &library.name);
        packages.push(source_package(library, &element));
        relations.push(relationship(kernel, "STATIC_LINK", &element));
    }
    match &bill.environment {
        Environment::Image {
            reference,
            id: digest,
        } => {
            let builder = id("Builder", reference);
            packages.push(json!({
                "SPDXID": builder,
                "name": reference,
                "versionInfo": digest,
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "primaryPackagePurpose": "CONTAINER",
                "comment": "the builder image that ran the build",
            }));
            relations.push(relationship(&builder, "BUILD_TOOL_OF", kernel));
        }
        Environment::Host(programs) => {
            for (i, (program, digest)) in programs.iter().enumerate() {
                let tool = id("Tool", &format!("{i}-{program}"));
                let mut package = json!({
                    "SPDXID": tool,
                    "name": program,
                    "downloadLocation": "NOASSERTION",
                    "filesAnalyzed": false,
                    "primaryPackagePurpose": "APPLICATION",
                });
                // In a comment: SPDX's BLAKE3 checksum is longer than the blake3 kbuild keys by.
                package["comment"] = json!(match digest {
                    Some(hex) => format!("blake3 {hex}"),
                    None => "absent from the build machine".to_string(),
                });
                packages.push(package);
                relations.push(relationship(&tool, "BUILD_TOOL_OF", kernel));
            }
        }
    }
    (packages, relations)
}

/// The files: the image's, each patch (applied to the source) and the resolved config.
fn files(bill: &Bill, kernel: &str, source: &str) -> (Vec<Value>, Vec<Value>) {
    let mut files = Vec::new();
    let mut relations = Vec::new();
    for file in &bill.files {
        let element = id("File", &file.path);
        files.push(json!({
            "SPDXID": element,
            "fileName": format!("./{}", file.path),
            "checksums": sums(&file.sha1, &file.sha256),
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        relations.push(relationship(kernel, "CONTAINS", &element));
    }
    for (i, patch) in bill.patches.iter().enumerate() {
        let element = id("Patch", &format!("{}-{}", i + 1, patch.name));
        let mut file = json!({
            "SPDXID": element,
            "fileName": format!("./{}", patch.name),
            "fileTypes": ["SOURCE"],
            "checksums": sums(&patch.sha1, &patch.sha256),
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        });
        if let Some(origin) = &patch.origin {
            file["comment"] = json!(origin);
        }
        files.push(file);
        relations.push(relationship(&element, "PATCH_APPLIED", source));
    }
    let Some(resolved) = &bill.config else {
        return (files, relations);
    };
    let config = id("File", "config");
    let settings: Vec<String> = (resolved.settings.iter())
        .map(|(symbol, value)| format!("{symbol}={value}"))
        .collect();
    files.push(json!({
        "SPDXID": config,
        "fileName": "./.config",
        "fileTypes": ["TEXT"],
        "checksums": sums(&resolved.sha1, &resolved.sha256),
        "licenseConcluded": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": "the kernel's resolved config",
        "annotations": [{
            "annotationDate": date(bill.created),
            "annotationType": "OTHER",
            "annotator": "Tool: kbuild",
            "comment": settings.join("\n"),
        }],
    }));
    relations.push(json!({
        "spdxElementId": config,
        "relationshipType": "OTHER",
        "relatedSpdxElement": kernel,
        "comment": "the config the kernel was built with",
    }));
    (files, relations)
}

/// The document.
pub fn document(bill: &Bill) -> Value {
    let kernel = "SPDXRef-Package-kernel";
    let source = "SPDXRef-Package-source";
    let (packages, mut relationships) = packages(bill, kernel, source);
    let (files, more) = files(bill, kernel, source);
    relationships.insert(0, relationship("SPDXRef-DOCUMENT", "DESCRIBES", kernel));
    relationships.extend(more);
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{} {} {}", bill.main.name, bill.main.version, bill.target),
        "creationInfo": {
            "created": date(bill.created),
            "creators": [format!("Tool: kbuild-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    // The namespace names this document's content: the digest of everything else in it.
    let digest = crate::digest::Digest::of_bytes(document.to_string().as_bytes());
    document["documentNamespace"] =
        json!(format!("https://kbuild.invalid/spdx/{}", digest.to_hex()));
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill() -> Bill {
        Bill {
            target: "//6.1.x:amd64".into(),
            main: Main {
                name: "linux".into(),
                version: "6.1.192-linuxkit".into(),
                license: KERNEL_LICENSE.into(),
                purpose: "OPERATING-SYSTEM".into(),
            },
            created: 1_700_000_000,
            libraries: Vec::new(),
            source: SourceFacts {
                name: "linux".into(),
                version: "6.1.192".into(),
                license: KERNEL_LICENSE.into(),
                url: "file:///usr/src/linux-source-6.1.tar.xz".into(),
                sha256: "ab".repeat(32),
                package: Some("linux-source-6.1".into()),
            },
            patches: vec![Patch {
                name: "kernel/6.1.x/patches/0001-x.patch".into(),
                sha1: "cd".repeat(20),
                sha256: "cd".repeat(32),
                origin: Some("Origin: https://lore.kernel.org/x".into()),
            }],
            config: Some(Config {
                sha1: "ef".repeat(20),
                sha256: "ef".repeat(32),
                settings: vec![("CONFIG_MODULES".into(), "y".into())],
            }),
            environment: Environment::Host(vec![
                ("gcc".into(), Some("12".repeat(32))),
                ("pahole".into(), None),
            ]),
            files: vec![FileSum {
                path: "kernel".into(),
                sha1: "34".repeat(20),
                sha256: "56".repeat(32),
            }],
        }
    }

    #[test]
    fn dates_are_utc_iso_8601() {
        assert_eq!(date(0), "1970-01-01T00:00:00Z");
        assert_eq!(date(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(date(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_same_bill_is_the_same_document_and_another_bill_another_namespace() {
        let a = document(&bill());
        assert_eq!(a.to_string(), document(&bill()).to_string());
        let mut other = bill();
        other.files[0].sha256 = "78".repeat(32);
        assert_ne!(
            a["documentNamespace"],
            document(&other)["documentNamespace"]
        );
        assert_eq!(a["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        let text = a.to_string();
        assert!(text.contains("\"PATCH_APPLIED\""));
        assert!(text.contains("CONFIG_MODULES=y"));
        assert!(text.contains("pkg:deb/debian/linux-source-6.1\""));
        assert!(text.contains("SPDXRef-Patch-1-kernel-6.1.x-patches-0001-x.patch"));
    }
}
