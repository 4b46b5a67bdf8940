//! Layer, image and index: the package's files as an OCI image, and images as a multi-arch index.
//! Every byte is a function of the inputs: sorted tar entries with the source date as mtime,
//! gzip without name or time, JSON in a fixed field order.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::{ImageSpec, IndexSpec, Role};
use crate::digest::Sha256;
use crate::oci::{
    self, ContainerConfig, Descriptor, ImageConfig, Index, Manifest, Platform, RootFs,
};

/// `layer.tar.gz` and `diff_id` (the sha256 of the uncompressed tar, as image configs want).
pub fn layer(ctx: &Ctx) -> Result<(), RecipeError> {
    let tar = ctx.work.join("layer.tar");
    crate::archive::write_tar(ctx.dep(Role::Image), &tar, "", ctx.source_date())
        .map_err(io("writing the layer"))?;
    let diff_id = Sha256::of_file(&tar).map_err(io("hashing the layer"))?;
    let gz =
        std::fs::File::create(ctx.out.join("layer.tar.gz")).map_err(io("writing layer.tar.gz"))?;
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(
        std::io::BufWriter::new(gz), // Level 1: the layer is mostly already-compressed tarballs (linux.tar.xz) and
        // large tars; a higher level costs seconds on every rebuild for little gain.
        flate2::Compression::fast(),
    );
    std::io::copy(
        &mut std::fs::File::open(&tar).map_err(io("reading the layer"))?,
        &mut encoder,
    )
    .map_err(io("compressing the layer"))?;
    encoder
        .finish()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .map_err(io("compressing the layer"))?;
    std::fs::write(ctx.out.join("diff_id"), format!("sha256:{diff_id}"))
        .map_err(io("writing diff_id"))
}

fn write_blob(out: &Path, bytes: &[u8], media_type: &str) -> Result<Descriptor, RecipeError> {
    let descriptor = Descriptor::of(media_type, bytes);
    let dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io("creating blobs/"))?;
    std::fs::write(dir.join(descriptor.hex()), bytes).map_err(io("writing a blob"))?;
    Ok(descriptor)
}

fn write_descriptor(out: &Path, descriptor: &Descriptor) -> Result<(), RecipeError> {
    let json = serde_json::to_vec_pretty(descriptor).expect("descriptors serialise");
    std::fs::write(out.join("descriptor.json"), json).map_err(io("writing descriptor.json"))
}

pub fn read_descriptor(dir: &Path) -> Result<Descriptor, RecipeError> {
    let bytes =
        std::fs::read(dir.join("descriptor.json")).map_err(io("reading descriptor.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        RecipeError::failed(format!("bad descriptor.json: {e}"), "this is a kbuild bug")
    })
}

/// The per-arch image: config (platform, labels, diff_ids) and manifest, each a blob, plus the
/// layer blob itself, so the output is a self-contained piece of an image layout.
pub fn image(ctx: &Ctx, spec: &ImageSpec) -> Result<(), RecipeError> {
    let layer_dir = ctx.dep(Role::Layer);
    let layer_path = layer_dir.join("layer.tar.gz");
    let layer_sha = Sha256::of_file(&layer_path).map_err(io("hashing the layer"))?;
    let size = std::fs::metadata(&layer_path)
        .map_err(io("reading the layer"))?
        .len();
    let blobs = ctx.out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("creating blobs/"))?;
    crate::fsutil::link_or_copy(&layer_path, &blobs.join(layer_sha.as_str()))
        .map_err(io("adding the layer blob"))?;
    let layer = Descriptor {
        media_type: oci::MEDIA_LAYER.into(),
        digest: format!("sha256:{layer_sha}"),
        size,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let diff_id =
        std::fs::read_to_string(layer_dir.join("diff_id")).map_err(io("reading diff_id"))?;
    let created = oci::rfc3339(ctx.source_date());
    let platform = Platform::of(spec.arch);
    let labels = BTreeMap::from([
        (
            "org.mobyproject.linuxkit.kernel.buildimage".to_string(),
            spec.builder.clone(),
        ),
        (
            "org.opencontainers.image.created".to_string(),
            created.clone(),
        ),
        (
            "org.opencontainers.image.revision".to_string(),
            spec.revision.clone(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            spec.source_url.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            spec.version.clone(),
        ),
    ]);
    let config = ImageConfig {
        created,
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: ContainerConfig { labels },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.trim().to_string()],
        },
    };
    let config = write_blob(
        ctx.out,
        &serde_json::to_vec(&config).expect("configs serialise"),
        oci::MEDIA_CONFIG,
    )?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: oci::MEDIA_MANIFEST.into(),
        config,
        layers: vec![layer],
    };
    let mut descriptor = write_blob(
        ctx.out,
        &serde_json::to_vec(&manifest).expect("manifests serialise"),
        oci::MEDIA_MANIFEST,
    )?;
    descriptor.platform = Some(platform);
    write_descriptor(ctx.out, &descriptor)
}

/// The index over this series' and kind's images, in arch order.
pub fn index(ctx: &Ctx, _spec: &IndexSpec) -> Result<(), RecipeError> {
    let mut manifests = Vec::new();
    for dep in &ctx.action.deps {
        manifests.push(read_descriptor(&ctx.deps[&dep.role].dir)?);
    }
    let index = Index::encode_over(manifests);
    let descriptor = write_blob(ctx.out, &index, oci::MEDIA_INDEX)?;
    let _ = writeln!(&*ctx.log, "index {}", descriptor.digest);
    write_descriptor(ctx.out, &descriptor)
}
