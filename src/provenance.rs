//! In-toto statements, and SLSA v1 provenance as their predicate: how one kernel image was
//! built, said from facts kbuild holds and nothing else, so the same inputs give the same bytes.
//!
//! The run's start and end times are not here (nor an invocation id): they are different on
//! every machine and every run, and the statement is content-addressed (it is a blob of the
//! image's index, whose digest two clones must agree on). `kbuild log` keeps the times.

use serde_json::{Value, json};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// What this provenance's buildDefinition means: how kbuild builds a kernel image from a
/// manifest target. Versioned: a change to what externalParameters say is a new type.
pub const BUILD_TYPE: &str = "https://kbuild.invalid/build-types/kernel-image/v1";
/// The builder id of a machine whose kernel.local.kdl names none.
pub const UNNAMED_BUILDER: &str = "https://kbuild.invalid/builders/unnamed";

/// What the statement is about: the image manifest, by name and sha256.
#[derive(Clone, Debug)]
pub struct Subject {
    pub name: String,
    /// The hex sha256 of the image manifest.
    pub sha256: String,
}

/// An in-toto Statement v1 over `subject` with `predicate`.
pub fn statement(subject: &Subject, predicate_type: &str, predicate: Value) -> Value {
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": subject.name, "digest": { "sha256": subject.sha256 } }],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// One thing the build read, with its digest (`sha256`, or `blake3` for host programs, which
/// kbuild knows by that digest alone; none for a source not pinned yet).
#[derive(Clone, Debug)]
pub struct Dependency {
    pub name: String,
    pub uri: Option<String>,
    pub digest: Option<(&'static str, String)>,
}

/// Everything the provenance of one image says.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// The target label, its variant, and the tag hash: what kernel.kdl and kernel/ say about
    /// the series and variant (doc/tags.md).
    pub target: String,
    pub variant: String,
    pub arch: String,
    pub input_hash: String,
    /// Source, patches, config fragments and build environment, in that order.
    pub dependencies: Vec<Dependency>,
    pub builder_id: String,
}

/// The SLSA v1 predicate.
pub fn predicate(p: &Provenance) -> Value {
    let dependencies: Vec<Value> = (p.dependencies.iter())
        .map(|d| {
            let mut value = json!({ "name": d.name });
            if let Some(uri) = &d.uri {
                value["uri"] = json!(uri);
            }
            if let Some((algorithm, hex)) = &d.digest {
                value["digest"] = json!({ *algorithm: hex });
            }
            value
        })
        .collect();
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "target": p.target,
                "variant": p.variant,
                "arch": p.arch,
                "manifest": { "path": "kernel.kdl", "inputHash": p.input_hash },
            },
            "internalParameters": {
                "kbuild": env!("CARGO_PKG_VERSION"),
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": { "id": p.builder_id },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_names_its_subject_and_carries_the_predicate() {
        let subject = Subject {
            name: "pkg:docker/linuxkit/kernel@6.1.x?platform=linux%2Famd64".into(),
            sha256: "ab".repeat(32),
        };
        let p = Provenance {
            target: "//6.1.x:amd64".into(),
            variant: String::new(),
            arch: "amd64".into(),
            input_hash: "cd".repeat(20),
            dependencies: vec![Dependency {
                name: "kernel/patches-6.1.x/0001-a.patch".into(),
                uri: None,
                digest: Some(("sha256", "ef".repeat(32))),
            }],
            builder_id: UNNAMED_BUILDER.into(),
        };
        let s = statement(&subject, SLSA_PROVENANCE, predicate(&p));
        assert_eq!(s["subject"][0]["digest"]["sha256"], json!("ab".repeat(32)));
        let deps = &s["predicate"]["buildDefinition"]["resolvedDependencies"];
        assert_eq!(deps[0]["digest"]["sha256"], json!("ef".repeat(32)));
        assert!(deps[0].get("uri").is_none());
        // Nothing of the clock: the same facts give the same bytes.
        assert_eq!(
            s.to_string(),
            statement(&subject, SLSA_PROVENANCE, predicate(&p)).to_string()
        );
        assert!(!s.to_string().contains("startedOn"));
    }
}
