//! BuildKit's attestation storage: beside each image in an index, one more manifest (platform
//! `unknown/unknown`) whose layers are in-toto statements about that image, found by the
//! annotations on its descriptor. This is where `linuxkit build` collects the SBOMs of the
//! images it assembles.
//!
//! The same statements also go out as OCI 1.1 referrers of the image (one artifact manifest
//! each, with `subject` and `artifactType`), which registries and tools that follow the
//! referrers API (or its `sha256-<hex>` tag fallback) find without reading the index.

use std::collections::BTreeMap;

use super::{Descriptor, ImageConfig, MEDIA_CONFIG, MEDIA_MANIFEST, Manifest, Platform};

pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";
/// OCI 1.1's empty config of an artifact manifest, and its bytes.
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY: &[u8] = b"{}";
/// The file of an attest action's output listing its referrers' descriptors.
pub const REFERRERS_FILE: &str = "referrers.json";

/// A blob to write: its bytes under its descriptor.
pub struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

/// The platform of an attestation manifest in an index.
pub fn platform() -> Platform {
    Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        variant: None,
    }
}

/// The blobs of the attestation manifest over `statements` (predicate type, statement bytes),
/// about the image manifest `subject`: the statements, the config, the manifest last. The
/// manifest's descriptor carries the index platform and annotations.
pub fn manifest(subject: &Descriptor, statements: Vec<(&str, Vec<u8>)>) -> Vec<Blob> {
    let mut blobs: Vec<Blob> = (statements.into_iter())
        .map(|(predicate_type, bytes)| {
            let mut descriptor = Descriptor::of(MEDIA_IN_TOTO, &bytes);
            descriptor
                .annotations
                .insert(PREDICATE_TYPE.into(), predicate_type.into());
            Blob { descriptor, bytes }
        })
        .collect();
    let layers: Vec<Descriptor> = blobs.iter().map(|b| b.descriptor.clone()).collect();
    // BuildKit's description says the config is there for compatibility only.
    let config = ImageConfig::of_artifact("unknown", &layers);
    let config_descriptor = Descriptor::of(MEDIA_CONFIG, &config);
    blobs.push(Blob {
        descriptor: config_descriptor.clone(),
        bytes: config,
    });
    let manifest = Manifest::over(config_descriptor, layers);
    let bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
    let mut descriptor = Descriptor::of(MEDIA_MANIFEST, &bytes);
    descriptor.platform = Some(platform());
    descriptor.annotations = BTreeMap::from([
        (REFERENCE_DIGEST.to_string(), subject.digest.clone()),
        (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
    ]);
    blobs.push(Blob { descriptor, bytes });
    blobs
}

/// The OCI 1.1 referrers of the image `subject`, one per statement (as [`manifest`] described
/// them): an artifact manifest of type in-toto, the empty config, the statement as its one
/// layer. Gives the blobs (the empty config, then each referrer manifest) and each referrer's
/// descriptor as a referrers index lists it (with its artifact type and annotations).
pub fn referrers(subject: &Descriptor, statements: &[Descriptor]) -> (Vec<Blob>, Vec<Descriptor>) {
    let empty = Descriptor::of(MEDIA_EMPTY, EMPTY);
    let subject = Descriptor::of_digest(MEDIA_MANIFEST, &subject.digest, subject.size);
    let mut blobs = vec![Blob {
        descriptor: empty.clone(),
        bytes: EMPTY.to_vec(),
    }];
    let mut listed = Vec::new();
    for statement in statements {
        let mut manifest = Manifest::over(empty.clone(), vec![statement.clone()]);
        manifest.artifact_type = Some(MEDIA_IN_TOTO.into());
        manifest.subject = Some(subject.clone());
        manifest.annotations = statement.annotations.clone();
        let bytes = serde_json::to_vec(&manifest).expect("manifests serialise");
        let mut descriptor = Descriptor::of(MEDIA_MANIFEST, &bytes);
        descriptor.artifact_type = Some(MEDIA_IN_TOTO.into());
        descriptor.annotations = statement.annotations.clone();
        listed.push(descriptor.clone());
        blobs.push(Blob { descriptor, bytes });
    }
    (blobs, listed)
}

/// The image an index entry attests, if it is an attestation manifest.
pub fn subject_of(descriptor: &Descriptor) -> Option<&str> {
    (descriptor.annotations.get(REFERENCE_TYPE)?.as_str() == ATTESTATION_MANIFEST).then(|| {
        descriptor
            .annotations
            .get(REFERENCE_DIGEST)
            .map(String::as_str)
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_comes_last_and_names_its_subject() {
        let subject = Descriptor::of(MEDIA_MANIFEST, b"image");
        let blobs = manifest(
            &subject,
            vec![("https://spdx.dev/Document", b"{}".to_vec())],
        );
        let last = blobs.last().unwrap();
        assert_eq!(subject_of(&last.descriptor), Some(subject.digest.as_str()));
        assert_eq!(last.descriptor.platform, Some(platform()));
        let parsed: Manifest = serde_json::from_slice(&last.bytes).unwrap();
        assert_eq!(parsed.layers[0].media_type, MEDIA_IN_TOTO);
        assert_eq!(subject_of(&subject), None);
    }
}
