//! OCI images: descriptors, image configs, manifests and indexes as kbuild writes them, the image
//! layout on disk, and pushing to a registry.
//!
//! The types are kbuild's own rather than the oci-spec crate's: its annotations and labels are
//! `HashMap`s, which serialise in a different order from one process to the next, and every
//! byte of a manifest, config and index here is content-addressed (two clones must give the
//! same digests). Maps here are `BTreeMap`s, fields in the order the bytes are written.

pub mod attestation;
pub mod gzip;
pub mod layout;
pub mod push;
pub mod registry;
pub mod signature;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::arch::Arch;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An uncompressed layer, for content that is compressed already.
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// amd64; arm64 with variant v8; riscv64.
    pub fn of(arch: Arch) -> Platform {
        let variant = (arch == Arch::Aarch64).then(|| "v8".to_string());
        Platform {
            architecture: arch.image_name().into(),
            os: "linux".into(),
            variant,
        }
    }
}

/// A content descriptor; field order is the byte order of what kbuild writes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// What an artifact manifest is (in a referrers index).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// A descriptor of content known by digest and size.
    pub fn of_digest(media_type: &str, digest: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: digest.into(),
            size,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The hex part of `sha256:<hex>`.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::digest::Sha256::of_bytes(bytes))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// An OCI 1.1 artifact's type (a referrer's).
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// The manifest an OCI 1.1 referrer refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An image manifest over `config` and `layers`.
    pub fn over(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.into(),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default = "index_media")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn index_media() -> String {
    MEDIA_INDEX.into()
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: MEDIA_INDEX.into(),
            manifests,
            annotations: BTreeMap::new(),
        }
    }

    /// The bytes of a multi-arch index over `manifests`: the images in arch order, then their
    /// attestation manifests in the same order. The build and a push that merges arches both
    /// use this, so equal sets of images give equal index digests.
    pub fn encode_over(mut manifests: Vec<Descriptor>) -> Vec<u8> {
        let arch_of = |digest: &str, all: &[Descriptor]| {
            let image = all.iter().find(|d| d.digest == digest);
            image.and_then(|d| d.platform.as_ref().map(|p| p.architecture.clone()))
        };
        let all = manifests.clone();
        manifests.sort_by_cached_key(|d| match attestation::subject_of(d) {
            Some(subject) => (1, arch_of(subject, &all), d.digest.clone()),
            None => (0, arch_of(&d.digest, &all), d.digest.clone()),
        });
        serde_json::to_vec(&Index::new(manifests)).expect("indexes serialise")
    }
}

/// The image config: platform, labels, and the uncompressed layer digests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageConfig {
    pub created: String,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The config of a manifest that holds no container (attestations, signatures): valid, for
    /// tools that read every manifest's config, naming `platform` (`unknown`, or empty as
    /// cosign writes it) and the layers as its diff IDs.
    pub fn of_artifact(platform: &str, layers: &[Descriptor]) -> Vec<u8> {
        let config = ImageConfig {
            created: String::new(),
            architecture: platform.into(),
            os: platform.into(),
            variant: None,
            config: ContainerConfig {
                labels: BTreeMap::new(),
            },
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
            },
        };
        serde_json::to_vec(&config).expect("configs serialise")
    }
}

/// The tag-schema name of a digest, `sha256-<hex>`: the referrers fallback tag, and with
/// `.sig` cosign's signature tag.
pub fn digest_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// `1970-01-01T00:00:00Z` for seconds since the epoch (UTC, proleptic Gregorian).
pub fn rfc3339(epoch: u64) -> String {
    let (days, secs) = ((epoch / 86_400) as i64, epoch % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn platforms() {
        assert_eq!(Platform::of(Arch::Aarch64).variant.as_deref(), Some("v8"));
        assert_eq!(Platform::of(Arch::Riscv64).architecture, "riscv64");
    }
}
