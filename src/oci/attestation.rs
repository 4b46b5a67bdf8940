//! BuildKit's attestation storage: beside each image in an index, one more manifest (platform
//! `unknown/unknown`) whose layers are in-toto statements about that image, found by the
//! annotations on its descriptor. This is where `linuxkit build` collects the SBOMs of the
//! images it assembles.

use std::collections::BTreeMap;

use super::{ContainerConfig, Descriptor, ImageConfig, MEDIA_CONFIG, MEDIA_MANIFEST, Manifest};
use super::{Platform, RootFs};

pub const MEDIA_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

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
    // A valid image config, for tools that read every manifest's: BuildKit's says it is
    // there for compatibility only.
    let config = ImageConfig {
        created: String::new(),
        architecture: "unknown".into(),
        os: "unknown".into(),
        variant: None,
        config: ContainerConfig {
            labels: BTreeMap::new(),
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
        },
    };
    let config = serde_json::to_vec(&config).expect("configs serialise");
    let config_descriptor = Descriptor::of(MEDIA_CONFIG, &config);
    blobs.push(Blob {
        descriptor: config_descriptor.clone(),
        bytes: config,
    });
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.into(),
        config: config_descriptor,
        layers,
    };
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
