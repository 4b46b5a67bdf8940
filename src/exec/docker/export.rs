//! A builder image out of the daemon as an OCI image (for the `<version>-builder` tag): `docker
//! save` through the API, then its config and layers as OCI blobs under a new manifest.

use std::io::Write;
use std::path::Path;

use futures_util::StreamExt;
use serde::Deserialize;

use super::Docker;
use crate::exec::ExecError;
use crate::oci::{Descriptor, MEDIA_CONFIG, MEDIA_LAYER_TAR, MEDIA_MANIFEST, Manifest, Platform};

/// One entry of `manifest.json` in a `docker save` archive.
#[derive(Deserialize)]
struct Saved {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn failed(what: impl std::fmt::Display) -> ExecError {
    ExecError::unavailable(
        format!("exporting the builder image: {what}"),
        "check the Docker daemon (`docker info`) and the disk space of the cache",
    )
}

/// Writes `image` from the local daemon as blobs under `dir/blobs/sha256/` and returns the
/// descriptor of its OCI manifest.
pub fn export(docker: &Docker, image: &str, dir: &Path) -> Result<Descriptor, ExecError> {
    let client = docker.client(super::endpoint::LOCAL)?;
    let saved = dir.join("saved.tar");
    let mut file = std::fs::File::create(&saved).map_err(failed)?;
    docker.runtime.block_on(async {
        let mut stream = client.export_image(image);
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(failed)?).map_err(failed)?;
        }
        Ok::<(), ExecError>(())
    })?;
    drop(file);
    let unpacked = dir.join("saved");
    tar::Archive::new(std::fs::File::open(&saved).map_err(failed)?)
        .unpack(&unpacked)
        .map_err(failed)?;
    let _ = std::fs::remove_file(&saved);
    let index: Vec<Saved> =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).map_err(failed)?)
            .map_err(failed)?;
    let saved = index
        .first()
        .ok_or_else(|| failed("the archive holds no image"))?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(failed)?;
    let config_bytes = std::fs::read(unpacked.join(&saved.config)).map_err(failed)?;
    let config = store(&blobs, &unpacked.join(&saved.config), MEDIA_CONFIG)?;
    let mut layers = Vec::new();
    for layer in &saved.layers {
        // `docker save` writes uncompressed tars, whose digests are the config's diff IDs.
        layers.push(store(&blobs, &unpacked.join(layer), MEDIA_LAYER_TAR)?);
    }
    let _ = std::fs::remove_dir_all(&unpacked);
    let manifest = Manifest::over(config, layers);
    let bytes = serde_json::to_vec(&manifest).map_err(failed)?;
    let digest = crate::oci::sha256_digest(&bytes);
    std::fs::write(blobs.join(hex(&digest)), &bytes).map_err(failed)?;
    Ok(Descriptor {
        media_type: MEDIA_MANIFEST.into(),
        digest,
        size: bytes.len() as u64,
        artifact_type: None,
        platform: platform_of(&config_bytes),
        annotations: Default::default(),
    })
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Moves `file` into the blob directory under its digest.
fn store(blobs: &Path, file: &Path, media: &str) -> Result<Descriptor, ExecError> {
    let digest = crate::digest::Sha256::of_file(file)
        .map_err(failed)?
        .to_string();
    let digest = if digest.starts_with("sha256:") {
        digest
    } else {
        format!("sha256:{digest}")
    };
    let size = std::fs::metadata(file).map_err(failed)?.len();
    std::fs::rename(file, blobs.join(hex(&digest))).map_err(failed)?;
    Ok(Descriptor {
        media_type: media.into(),
        digest,
        size,
        artifact_type: None,
        platform: None,
        annotations: Default::default(),
    })
}

/// The platform the image config names, as an index entry would carry it.
fn platform_of(config: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct Config {
        architecture: Option<String>,
        os: Option<String>,
    }
    let config: Config = serde_json::from_slice(config).ok()?;
    Some(Platform {
        architecture: config.architecture?,
        os: config.os.unwrap_or_else(|| "linux".into()),
        variant: None,
    })
}
