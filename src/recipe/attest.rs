//! Attest: the attestation manifest of one kernel image. Its SBOM (the sbom action's SPDX
//! document) and its SLSA provenance (source, patches, config fragments, manifest and build
//! environment by digest), each an in-toto statement about the image manifest, as layers of
//! one manifest that the index carries beside the image (`crate::oci::attestation`).

use super::{Ctx, RecipeError, io};
use crate::action::{AttestSpec, Role};
use crate::exec::{Identity, Program};
use crate::oci::attestation;
use crate::provenance::{self, Dependency, Provenance, Subject};

pub fn attest(ctx: &Ctx, spec: &AttestSpec) -> Result<(), RecipeError> {
    let image = super::image::read_descriptor(ctx.dep(Role::Image))?;
    let platform = crate::oci::Platform::of(spec.arch);
    let subject = Subject {
        // The purl BuildKit names an image by, with the image's own arch tag.
        name: format!(
            "pkg:docker/{}@{}-{}-{}?platform={}%2F{}{}",
            spec.repository,
            spec.prefix,
            spec.hash,
            platform.architecture,
            platform.os,
            platform.architecture,
            platform
                .variant
                .map(|v| format!("%2F{v}"))
                .unwrap_or_default()
        ),
        sha256: image.hex().to_string(),
    };
    let sbom_path = ctx.dep(Role::Sbom).join(super::SBOM_FILE);
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_path).map_err(io("reading the SBOM"))?)
            .map_err(|e| {
                RecipeError::failed(format!("the SBOM is not JSON: {e}"), "this is a kbuild bug")
            })?;
    let sbom = provenance::statement(&subject, provenance::SPDX_DOCUMENT, sbom);
    let slsa = provenance::statement(
        &subject,
        provenance::SLSA_PROVENANCE,
        provenance::predicate(&Provenance {
            target: spec.target.clone(),
            variant: spec.variant.clone(),
            arch: platform.architecture.clone(),
            input_hash: spec.hash.clone(),
            dependencies: dependencies(ctx, spec)?,
            builder_id: spec.builder_id.clone(),
        }),
    );
    let json = |v: &serde_json::Value| serde_json::to_vec(v).expect("statements serialise");
    let blobs = attestation::manifest(
        &image,
        vec![
            (provenance::SPDX_DOCUMENT, json(&sbom)),
            (provenance::SLSA_PROVENANCE, json(&slsa)),
        ],
    );
    let statements: Vec<_> = blobs[..2].iter().map(|b| b.descriptor.clone()).collect();
    let (referrers, listed) = attestation::referrers(&image, &statements);
    let dir = ctx.out.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io("creating blobs/"))?;
    for blob in blobs.iter().chain(&referrers) {
        std::fs::write(dir.join(blob.descriptor.hex()), &blob.bytes)
            .map_err(io("writing an attestation blob"))?;
    }
    let listed = serde_json::to_vec_pretty(&listed).expect("descriptors serialise");
    std::fs::write(ctx.out.join(attestation::REFERRERS_FILE), listed)
        .map_err(io("writing the referrers"))?;
    let manifest = &blobs.last().expect("a manifest is written").descriptor;
    super::image::write_descriptor(ctx.out, manifest)
}

fn sha256_of(ctx: &Ctx, rel: &str) -> Result<String, RecipeError> {
    let bytes = std::fs::read(ctx.input(rel)).map_err(io(format!("reading {rel}")))?;
    Ok(crate::digest::Sha256::of_bytes(&bytes).to_string())
}

/// What the build read, each by digest: the source tarball by its pin, the patches in the
/// order they apply, the config fragments, and who ran the commands.
fn dependencies(ctx: &Ctx, spec: &AttestSpec) -> Result<Vec<Dependency>, RecipeError> {
    let mut deps = vec![Dependency {
        name: "source".into(),
        uri: Some(spec.source_url.clone()),
        digest: (!spec.source_sha256.is_empty()).then(|| ("sha256", spec.source_sha256.clone())),
    }];
    for file in spec.patches.iter().chain(&spec.configs) {
        deps.push(Dependency {
            name: file.clone(),
            uri: None,
            digest: Some(("sha256", sha256_of(ctx, file)?)),
        });
    }
    match ctx.toolchain {
        Identity::Docker { image, id } => deps.push(Dependency {
            name: "builder-image".into(),
            uri: Some(format!("docker://{image}")),
            digest: Some((
                "sha256",
                id.strip_prefix("sha256:").unwrap_or(id).to_string(),
            )),
        }),
        Identity::Host { programs } => {
            // Programs absent from the machine were not run: the key says so, the
            // provenance names what ran.
            deps.extend(programs.iter().filter_map(|(name, state)| match state {
                Program::File(digest) => Some(Dependency {
                    name: format!("host-program:{name}"),
                    uri: None,
                    digest: Some(("blake3", digest.to_hex())),
                }),
                Program::Absent | Program::Unreadable => None,
            }))
        }
        Identity::Kbuild | Identity::DryRun { .. } => {}
    }
    Ok(deps)
}
