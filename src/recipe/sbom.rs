//! Sbom: gathers what went into one kernel image (its source and pin, each patch with its
//! sha256 and origin, the resolved config, the build environment as the key holds it, every
//! file of the image with its SHA1 and SHA256) and writes it as SPDX 2.3 JSON (`crate::sbom`).

use std::path::Path;

use rayon::prelude::*;
use sha1::Digest as _;

use super::{Ctx, DepOutput, RecipeError, io};
use crate::action::{Role, SbomSpec, SourceSpec};
use crate::cache::FileSums;
use crate::exec::{Identity, Program};
use crate::sbom::{Bill, Config, Environment, FileSum, KERNEL_LICENSE, Main, Patch, SourceFacts};

/// The file name of the SBOM in the action's output.
pub const FILE: &str = "sbom.spdx.json";

pub fn sbom(ctx: &Ctx, spec: &SbomSpec) -> Result<(), RecipeError> {
    let (main, config) = match &spec.tool {
        None => kernel(ctx)?,
        Some(tool) => {
            // A tool from the kernel tree (perf) is under the kernel's license (without the
            // syscall note, which covers the UAPI headers); one from its own source says its own.
            let license = if spec.source.name == "linux" {
                "GPL-2.0-only"
            } else {
                "NOASSERTION"
            };
            let main = Main {
                name: tool.name.clone(),
                version: spec.source.version.clone(),
                license: license.into(),
                purpose: "APPLICATION".into(),
            };
            (main, None)
        }
    };
    let libraries = spec.tool.iter().flat_map(|t| &t.libraries);
    let bill = Bill {
        target: (ctx.action.labels.first())
            .map(ToString::to_string)
            .unwrap_or_default(),
        main,
        created: ctx.source_date()?,
        source: facts(&spec.source),
        patches: spec
            .patches
            .iter()
            .map(|name| patch(ctx, name))
            .collect::<Result<_, _>>()?,
        config,
        libraries: libraries.map(facts).collect(),
        environment: environment(ctx.toolchain),
        files: image_files(ctx, ctx.dep_output(Role::Package))?,
    };
    let text =
        serde_json::to_string_pretty(&crate::sbom::document(&bill)).expect("an SBOM serialises");
    std::fs::write(ctx.out.join(FILE), text).map_err(io("writing the SBOM"))
}

/// The kernel package (its `kernel.release`) and its resolved config.
fn kernel(ctx: &Ctx) -> Result<(Main, Option<Config>), RecipeError> {
    let release = std::fs::read_to_string(ctx.dep(Role::Kernel).join("kernel.release"))
        .map_err(io("reading kernel.release"))?;
    let config_path = ctx.dep(Role::Config).join("config");
    let text = std::fs::read_to_string(&config_path).map_err(io("reading the resolved config"))?;
    let main = Main {
        name: "linux".into(),
        version: release.trim().to_string(),
        license: KERNEL_LICENSE.into(),
        purpose: "OPERATING-SYSTEM".into(),
    };
    let config = Config {
        sha1: hex::encode(sha1::Sha1::digest(text.as_bytes())),
        sha256: crate::digest::Sha256::of_bytes(text.as_bytes()).to_string(),
        settings: (crate::kconfig::parse(&text).settings.into_iter())
            .map(|(symbol, setting)| (symbol, setting.value))
            .collect(),
    };
    Ok((main, Some(config)))
}

/// A source as the SBOM states it: the kernel's under the kernel's license.
fn facts(source: &SourceSpec) -> SourceFacts {
    let license = if source.name == "linux" {
        KERNEL_LICENSE
    } else {
        "NOASSERTION"
    };
    SourceFacts {
        name: source.name.clone(),
        version: source.version.clone(),
        license: license.into(),
        url: source.url.clone(),
        sha256: source.sha256.clone(),
        package: source.package.clone(),
    }
}

/// A patch's sha256, and where its header says it came from.
fn patch(ctx: &Ctx, name: &str) -> Result<Patch, RecipeError> {
    let bytes = std::fs::read(ctx.input(name)).map_err(io(format!("reading {name}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let origin = text
        .lines()
        .take_while(|line| *line != "---")
        .find(|line| crate::maint::patch_lint::names_origin(line))
        .map(|line| line.trim().to_string());
    Ok(Patch {
        name: name.to_string(),
        sha1: hex::encode(sha1::Sha1::digest(&bytes)),
        sha256: crate::digest::Sha256::of_bytes(&bytes).to_string(),
        origin,
    })
}

/// The build environment as the key names it: host programs by content, or a builder image.
fn environment(identity: &Identity) -> Environment {
    match identity {
        Identity::Docker { image, id } => Environment::Image {
            reference: image.clone(),
            id: id.clone(),
        },
        Identity::Host { programs } => Environment::Host(
            (programs.iter())
                .map(|(name, state)| {
                    let digest = match state {
                        Program::File(digest) => Some(digest.to_hex()),
                        Program::Absent | Program::Unreadable => None,
                    };
                    (name.clone(), digest)
                })
                .collect(),
        ),
        Identity::Kbuild => Environment::Host(Vec::new()),
        Identity::DryRun { tools } => {
            Environment::Host(tools.iter().map(|t| (t.clone(), None)).collect())
        }
    }
}

/// Every regular file of the package, sorted by path, with its SHA1 and SHA256: remembered by
/// the file's digest in the package's manifest where the cache has them (most of an image's
/// bytes, the source snapshot first, are the same in every rebuild of a tree), else read.
fn image_files(ctx: &Ctx, package: &DepOutput) -> Result<Vec<FileSum>, RecipeError> {
    let dir = &package.dir;
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths).map_err(io(format!("listing {}", dir.display())))?;
    paths.sort();
    paths
        .into_par_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            // A symlink's digest names its target's text, not the content it leads to.
            let stored = (package.manifest.get(&rel)).filter(|e| e.symlink.is_none());
            let sums = match stored {
                Some(entry) => ctx.sums.of(entry.digest, &path),
                None => FileSums::of_file(&path),
            }
            .map_err(io(format!("hashing {}", path.display())))?;
            Ok(FileSum {
                path: rel,
                sha1: sums.sha1,
                sha256: sums.sha256,
            })
        })
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if kind.is_file() || kind.is_symlink() && entry.path().is_file() {
            let rel = entry.path().strip_prefix(root).map(|p| p.to_path_buf());
            out.push(rel.unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    Ok(())
}
