//! Layer, image and index: the package's files as an OCI image, and images as a multi-arch index.
//! Every byte is a function of the inputs: sorted tar entries with the source date as mtime,
//! gzip without name or time, JSON in a fixed field order.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::{ImageSpec, IndexSpec, LayerSpec, Role};
use crate::oci::{
    self, ContainerConfig, Descriptor, ImageConfig, Index, Manifest, Platform, RootFs,
};

/// A writer that passes bytes on while taking their sha256 and counting them.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    len: u64,
}

impl<W: std::io::Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        use sha2::Digest as _;
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
            len: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let hex = crate::digest::Sha256::finish(self.hasher);
        (self.inner, format!("sha256:{}", hex.as_str()), self.len)
    }
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The layer blob (`layer`), its descriptor and its `diff_id` (the sha256 of the uncompressed
/// tar, as image configs want), in one pass over the files: tar, hash, gzip, hash, write.
pub fn layer(ctx: &Ctx, spec: &LayerSpec) -> Result<(), RecipeError> {
    let file = std::fs::File::create(ctx.out.join("layer")).map_err(io("writing the layer"))?;
    let blob = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let (from, epoch) = (ctx.dep(Role::Image), ctx.source_date()?);
    let (blob, diff_id, media_type) = if spec.gzip {
        // Level 1: most of the bytes are tarballs; a higher level costs seconds on every rebuild
        // for little gain. On every core: the compile before it is done.
        let gz = oci::gzip::ParallelGzip::new(blob, flate2::Compression::fast())
            .remembering(ctx.members, compressor());
        let tar = crate::archive::tar_into(Hashing::new(gz), from, "", epoch, &spec.omit)
            .map_err(io("writing the layer"))?;
        let (gz, diff_id, _) = tar.finish();
        let (blob, pieces) = gz.finish().map_err(io("compressing the layer"))?;
        // What the memo gave says why a layer was quick, or not.
        let mut log = ctx.log;
        let _ = writeln!(
            log,
            "layer: {} pieces, {} of them remembered compressed",
            pieces.cut, pieces.recalled
        );
        (blob, Some(diff_id), oci::MEDIA_LAYER)
    } else {
        let blob = crate::archive::tar_into(blob, from, "", epoch, &spec.omit)
            .map_err(io("writing the layer"))?;
        (blob, None, oci::MEDIA_LAYER_TAR)
    };
    let (file, digest, size) = blob.finish();
    file.into_inner()
        .map_err(|e| io("writing the layer")(e.into_error()))?;
    // An uncompressed layer is its own diff_id.
    let diff_id = diff_id.unwrap_or_else(|| digest.clone());
    std::fs::write(ctx.out.join("diff_id"), diff_id).map_err(io("writing diff_id"))?;
    write_descriptor(
        ctx.out,
        &Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            artifact_type: None,
            platform: None,
            annotations: BTreeMap::new(),
        },
    )
}

/// What names the layer's compressing code for the memo of compressed pieces: the layer kind's
/// recipe code, which moves with the compressor (its code, or its version bumped by hand).
fn compressor() -> crate::digest::Digest {
    let code = crate::kind::code::of(crate::kind::ActionKind::Layer);
    let mut named = code.version.to_le_bytes().to_vec();
    named.extend_from_slice(code.code.as_bytes());
    crate::digest::Digest::of_bytes(&named)
}

fn write_blob(out: &Path, bytes: &[u8], media_type: &str) -> Result<Descriptor, RecipeError> {
    let descriptor = Descriptor::of(media_type, bytes);
    let dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io("creating blobs/"))?;
    std::fs::write(dir.join(descriptor.hex()), bytes).map_err(io("writing a blob"))?;
    Ok(descriptor)
}

pub(super) fn write_descriptor(out: &Path, descriptor: &Descriptor) -> Result<(), RecipeError> {
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
    // The shared source layer first: the base every image of the tree has in common.
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let blobs = ctx.out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("creating blobs/"))?;
    for role in [Role::SourceLayer, Role::Layer] {
        let Some(dep) = ctx.deps.get(&role) else {
            continue;
        };
        let layer = read_descriptor(&dep.dir)?;
        ctx.ledger
            .link_or_copy(&dep.dir.join("layer"), &blobs.join(layer.hex()))
            .map_err(io("adding a layer blob"))?;
        let diff_id =
            std::fs::read_to_string(dep.dir.join("diff_id")).map_err(io("reading diff_id"))?;
        diff_ids.push(diff_id.trim().to_string());
        layers.push(layer);
    }
    let created = oci::rfc3339(ctx.source_date()?);
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
            diff_ids,
        },
    };
    let config = write_blob(
        ctx.out,
        &serde_json::to_vec(&config).expect("configs serialise"),
        oci::MEDIA_CONFIG,
    )?;
    let manifest = Manifest::over(config, layers);
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
