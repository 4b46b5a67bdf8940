//! Package and tag: assemble the image's files under LinuxKit's names, and name the result.

use std::fmt::Write as _;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::{PackageSpec, Role, SNAPSHOT, TagSpec};

fn link_or_copy(from: &Path, to: &Path) -> Result<(), RecipeError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating the image directory"))?;
    }
    crate::fsutil::link_or_copy(from, to).map_err(io(format!("packaging {}", from.display())))
}

/// The files a LinuxKit kernel image holds; `vmlinux` only when the variant asked for it.
pub fn package(ctx: &Ctx, spec: &PackageSpec) -> Result<(), RecipeError> {
    if let Some(binary) = &spec.tool_binary {
        link_or_copy(
            &ctx.dep(Role::Tool).join(binary),
            &ctx.out.join("usr/bin").join(binary),
        )?;
    } else {
        let kernel = ctx.dep(Role::Kernel);
        for name in ["kernel", "System.map"] {
            link_or_copy(&kernel.join(name), &ctx.out.join(name))?;
        }
        if kernel.join("vmlinux").exists() {
            link_or_copy(&kernel.join("vmlinux"), &ctx.out.join("vmlinux"))?;
        }
        for name in ["kernel.tar", "kernel-dev.tar"] {
            link_or_copy(&ctx.dep(Role::Modules).join(name), &ctx.out.join(name))?;
        }
        link_or_copy(
            &ctx.dep(Role::Headers).join("kernel-headers.tar"),
            &ctx.out.join("kernel-headers.tar"),
        )?;
        if let Some(snapshot) = ctx.deps.get(&Role::Snapshot) {
            link_or_copy(&snapshot.dir.join(SNAPSHOT), &ctx.out.join(SNAPSHOT))?;
        }
    }
    // LinuxKit consumers read the builder reference without a trailing newline.
    std::fs::write(ctx.out.join("kernel-builder"), &spec.builder)
        .map_err(io("writing kernel-builder"))?;
    std::fs::write(ctx.out.join("kernel-source-info"), source_info(spec))
        .map_err(io("writing kernel-source-info"))
}

fn source_info(spec: &PackageSpec) -> String {
    let mut text = format!(
        "KERNEL_VERSION={}\nKERNEL_SOURCE={}\nKERNEL_SHA256={}\n",
        spec.version, spec.source_url, spec.source_sha256
    );
    for patch in &spec.patches {
        let name = patch.rsplit('/').next().unwrap_or(patch);
        let _ = writeln!(text, "PATCH={name}");
    }
    text
}

/// Names the image: its per-arch references, with the hash of its inputs (see `tags.rs`).
pub fn tag(ctx: &Ctx, spec: &TagSpec) -> Result<(), RecipeError> {
    let refs = crate::tags::references(
        &spec.repository,
        &spec.prefix,
        &spec.hash,
        spec.arch.image_name(),
    );
    let text: String = refs.arch.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(ctx.out.join("tags"), text).map_err(io("writing tags"))
}
