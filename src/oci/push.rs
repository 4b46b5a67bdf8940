//! Publishing built images: blobs first (skipping what the registry has, mounting across
//! repositories where it can), then each per-arch manifest and its tags, then the index, merged
//! with the index already published under the same content tag, under its tags.
//!
//! Tag policy: the per-arch and content-hash tags always point at what this push built. The bare
//! version tag (`6.6.71`, `6.6.71-dbg`) moves to this push's index by default, as the newest
//! build of that version; with `no_move` an existing one is kept and reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::registry::{Registry, RegistryError};
use super::{Descriptor, Index, MEDIA_INDEX, MEDIA_MANIFEST, Manifest};

/// One per-arch image: where its blobs are and the tags it gets.
pub struct ImageItem {
    /// A directory holding `blobs/sha256/…` with the manifest, config and layer.
    pub dir: PathBuf,
    pub descriptor: Descriptor,
    pub tags: Vec<String>,
}

/// One repository's index over some arches.
pub struct IndexItem {
    pub repository: String,
    /// The tag named by content (`6.6.71-<hash>`): merged with what is already there.
    pub content_tag: String,
    /// The bare version tag (`6.6.71`), subject to the move policy.
    pub version_tag: String,
    pub images: Vec<ImageItem>,
    /// The images' attestation manifests (no tags of their own: the index names them).
    pub attestations: Vec<ImageItem>,
}

#[derive(Default, Debug)]
pub struct PushReport {
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    pub skipped: usize,
    pub manifests: usize,
    /// Manifests signed by this push (a signature already there is not counted).
    pub signed: usize,
    pub tags: Vec<String>,
    pub kept: Vec<String>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PushError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Local(String),
    #[error("push stopped after {0} blob uploads (KBUILD_PUSH_STOP_AFTER_BLOBS)")]
    #[diagnostic(help("run the same push again: it continues where this one stopped"))]
    Stopped(usize),
}

/// `ours` (images) with the images of `existing` whose platform is not among ours, and the
/// attestations of those kept images; attestations of replaced images go with them.
fn merge(mut ours: Vec<Descriptor>, existing: Vec<Descriptor>) -> Vec<Descriptor> {
    let platforms: Vec<_> = ours.iter().map(|d| d.platform.clone()).collect();
    let (attestations, images): (Vec<_>, Vec<_>) =
        (existing.into_iter()).partition(|d| super::attestation::subject_of(d).is_some());
    let kept: Vec<Descriptor> = (images.into_iter())
        .filter(|d| !platforms.contains(&d.platform))
        .collect();
    let kept_attestations: Vec<Descriptor> = (attestations.into_iter())
        .filter(|a| {
            let subject = super::attestation::subject_of(a);
            kept.iter().any(|d| Some(d.digest.as_str()) == subject)
        })
        .collect();
    ours.extend(kept);
    ours.extend(kept_attestations);
    ours
}

pub struct Pusher<'a> {
    registry: &'a Registry,
    no_move: bool,
    /// Fault injection for tests: stop after this many uploads, as an interrupted push would.
    stop_after: Option<usize>,
    /// Where each blob is known to be, for cross-repository mounts.
    known: BTreeMap<String, BTreeSet<String>>,
    /// Signs every manifest pushed (`--sign-key`).
    signer: Option<&'a super::signature::Signer>,
    pub report: PushReport,
}

fn blob_path(dir: &std::path::Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap_or(digest))
}

impl<'a> Pusher<'a> {
    pub fn new(registry: &'a Registry, no_move: bool) -> Pusher<'a> {
        let stop_after = std::env::var("KBUILD_PUSH_STOP_AFTER_BLOBS")
            .ok()
            .and_then(|s| s.parse().ok());
        Pusher {
            registry,
            no_move,
            stop_after,
            known: BTreeMap::new(),
            signer: None,
            report: PushReport::default(),
        }
    }

    /// Signs every manifest this pusher pushes, cosign's way.
    pub fn signing(mut self, signer: Option<&'a super::signature::Signer>) -> Pusher<'a> {
        self.signer = signer;
        self
    }

    /// A blob from bytes (a signature's payload and config).
    fn blob_bytes(&mut self, repo: &str, digest: &str, bytes: &[u8]) -> Result<(), PushError> {
        if self.registry.blob_exists(repo, digest)? {
            return Ok(());
        }
        let local = |e: std::io::Error| PushError::Local(format!("writing a blob to send: {e}"));
        let mut file = tempfile::NamedTempFile::new().map_err(local)?;
        std::io::Write::write_all(&mut file, bytes).map_err(local)?;
        self.registry.upload(repo, digest, file.path())?;
        self.report.uploaded += 1;
        self.report.uploaded_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Adds this pusher's signature of `digest` to the signature image `sha256-<hex>.sig`,
    /// keeping the signatures already there (other keys'). Signing is deterministic: one
    /// already there is left as it is.
    pub fn sign(&mut self, repo: &str, digest: &str) -> Result<(), PushError> {
        use super::signature;
        let Some(signer) = self.signer else {
            return Ok(());
        };
        let identity = format!("{}/{repo}", self.registry.host());
        let payload = signature::payload(&identity, digest);
        let layer = signature::layer(&payload, &signer.sign(&payload));
        let tag = signature::tag(digest);
        // What is there is the registry's word: only its layer list is kept, and a manifest
        // that does not parse is replaced by ours.
        let mut layers = match self.registry.get_manifest(repo, &tag)? {
            Some(bytes) => serde_json::from_slice::<Manifest>(&bytes)
                .map(|m| m.layers)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if layers.contains(&layer) {
            return Ok(());
        }
        layers.push(layer.clone());
        self.blob_bytes(repo, &layer.digest, &payload)?;
        let (config, manifest) = signature::image(layers);
        self.blob_bytes(repo, &super::sha256_digest(&config), &config)?;
        self.registry
            .put_manifest(repo, &tag, MEDIA_MANIFEST, &manifest)?;
        self.report.signed += 1;
        Ok(())
    }

    fn blob(&mut self, repo: &str, digest: &str, dir: &std::path::Path) -> Result<(), PushError> {
        // Images share blobs (every image of a tree has the same source layer): one push
        // sends each blob to a repository once and counts it once.
        if self
            .known
            .get(digest)
            .is_some_and(|repos| repos.contains(repo))
        {
            return Ok(());
        }
        if self.registry.blob_exists(repo, digest)? {
            self.report.skipped += 1;
        } else if let Some(from) = self
            .known
            .get(digest)
            .and_then(|r| r.iter().next())
            .cloned()
            && self.registry.mount(repo, digest, &from)?
        {
            self.report.mounted += 1;
        } else {
            if self.stop_after.is_some_and(|n| self.report.uploaded >= n) {
                return Err(PushError::Stopped(self.report.uploaded));
            }
            let path = blob_path(dir, digest);
            self.registry.upload(repo, digest, &path)?;
            self.report.uploaded += 1;
            self.report.uploaded_bytes += std::fs::metadata(&path).map_or(0, |m| m.len());
        }
        self.known
            .entry(digest.to_string())
            .or_default()
            .insert(repo.to_string());
        Ok(())
    }

    /// Puts `bytes` under its digest (unless there) and under each tag (unless already there).
    fn manifest(
        &mut self,
        repo: &str,
        media: &str,
        bytes: &[u8],
        digest: &str,
        tags: &[String],
    ) -> Result<(), PushError> {
        if self.registry.manifest_digest(repo, digest)?.is_none() {
            self.registry.put_manifest(repo, digest, media, bytes)?;
            self.report.manifests += 1;
        }
        for tag in tags {
            if self.registry.manifest_digest(repo, tag)?.as_deref() != Some(digest) {
                self.registry.put_manifest(repo, tag, media, bytes)?;
            }
            self.report
                .tags
                .push(format!("{}/{repo}:{tag}", self.registry.host()));
        }
        self.sign(repo, digest)
    }

    /// One image under its own tags, outside any index (the `<version>-builder` image).
    pub fn image(&mut self, repo: &str, image: &ImageItem) -> Result<(), PushError> {
        let bytes = std::fs::read(blob_path(&image.dir, &image.descriptor.digest))
            .map_err(|e| PushError::Local(format!("reading a manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| PushError::Local(format!("bad manifest: {e}")))?;
        for blob in manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config))
        {
            self.blob(repo, &blob.digest, &image.dir)?;
        }
        self.manifest(
            repo,
            MEDIA_MANIFEST,
            &bytes,
            &image.descriptor.digest,
            &image.tags,
        )
    }

    /// The OCI 1.1 referrers an attestation's output lists: each artifact manifest with its
    /// blobs, then (for a registry without the referrers API) the `sha256-<hex>` index of the
    /// subject's referrers, with those already listed kept.
    fn referrers(&mut self, repo: &str, dir: &std::path::Path) -> Result<(), PushError> {
        use super::attestation::REFERRERS_FILE;
        let local =
            |e: String| PushError::Local(format!("the referrers in {}: {e}", dir.display()));
        let listed = std::fs::read(dir.join(REFERRERS_FILE)).map_err(|e| local(e.to_string()))?;
        let listed: Vec<Descriptor> =
            serde_json::from_slice(&listed).map_err(|e| local(e.to_string()))?;
        let mut subjects: BTreeMap<String, Vec<Descriptor>> = BTreeMap::new();
        for referrer in listed {
            let bytes = std::fs::read(blob_path(dir, &referrer.digest))
                .map_err(|e| local(e.to_string()))?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| local(e.to_string()))?;
            let subject = manifest
                .subject
                .ok_or_else(|| local("a referrer without a subject".into()))?;
            // Pushed as any manifest by digest: its blobs, then itself.
            let item = ImageItem {
                dir: dir.to_path_buf(),
                descriptor: referrer.clone(),
                tags: Vec::new(),
            };
            self.image(repo, &item)?;
            subjects.entry(subject.digest).or_default().push(referrer);
        }
        for (subject, ours) in subjects {
            if self.registry.has_referrers_api(repo, &subject)? {
                continue;
            }
            let tag = super::digest_tag(&subject);
            // The registry's list is its word: kept when it parses, each entry as it was.
            let existing = self.registry.get_manifest(repo, &tag)?;
            let mut manifests = (existing.as_deref())
                .and_then(|bytes| serde_json::from_slice::<Index>(bytes).ok())
                .map(|index| index.manifests)
                .unwrap_or_default();
            let before = manifests.len();
            for referrer in ours {
                if !manifests.iter().any(|m| m.digest == referrer.digest) {
                    manifests.push(referrer);
                }
            }
            if existing.is_some() && manifests.len() == before {
                continue;
            }
            let bytes = serde_json::to_vec(&Index::new(manifests)).expect("indexes serialise");
            self.registry
                .put_manifest(repo, &tag, MEDIA_INDEX, &bytes)?;
        }
        Ok(())
    }

    pub fn index(&mut self, item: &IndexItem) -> Result<(), PushError> {
        let repo = &item.repository;
        for image in item.images.iter().chain(&item.attestations) {
            self.image(repo, image)?;
        }
        for attestation in &item.attestations {
            self.referrers(repo, &attestation.dir)?;
        }
        let mut manifests: Vec<Descriptor> =
            item.images.iter().map(|i| i.descriptor.clone()).collect();
        // One more arch joins the index already published for the same content, with the
        // attestations of the images it keeps.
        if let Some(bytes) = self.registry.get_manifest(repo, &item.content_tag)?
            && let Ok(existing) = serde_json::from_slice::<Index>(&bytes)
        {
            manifests = merge(manifests, existing.manifests);
        }
        manifests.extend(item.attestations.iter().map(|a| a.descriptor.clone()));
        let bytes = Index::encode_over(manifests);
        let digest = super::sha256_digest(&bytes);
        let mut tags = vec![item.content_tag.clone()];
        let bare = self.registry.manifest_digest(repo, &item.version_tag)?;
        if self.no_move && bare.as_deref().is_some_and(|d| d != digest) {
            self.report.kept.push(format!(
                "{}/{repo}:{}",
                self.registry.host(),
                item.version_tag
            ));
        } else {
            tags.push(item.version_tag.clone());
        }
        self.manifest(repo, MEDIA_INDEX, &bytes, &digest, &tags)
    }
}
