//! Package and tag: assemble the image's files under LinuxKit's names, and name the result.

use std::fmt::Write as _;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::{PackageSpec, Role, SNAPSHOT, TagSpec};

fn link_or_copy(ctx: &Ctx, from: &Path, to: &Path) -> Result<(), RecipeError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating the image directory"))?;
    }
    (ctx.ledger.link_or_copy(from, to)).map_err(io(format!("packaging {}", from.display())))
}

/// The files a LinuxKit kernel image holds; `vmlinux` only when the variant asked for it.
pub fn package(ctx: &Ctx, spec: &PackageSpec) -> Result<(), RecipeError> {
    if spec.tool_tree {
        if spec.kernel_files {
            // Unpacked first, so that no write goes through a link into the cache.
            unpack(&ctx.dep(Role::Headers).join("kernel-headers.tar"), ctx.out)?;
            unpack(&ctx.dep(Role::Modules).join("kernel-dev.tar"), ctx.out)?;
        }
        link_tree(ctx, ctx.dep(Role::Tool), ctx.out, ctx.out)?;
    } else if let Some(binary) = &spec.tool_binary {
        link_or_copy(
            ctx,
            &ctx.dep(Role::Tool).join(binary),
            &ctx.out.join("usr/bin").join(binary),
        )?;
    } else {
        let kernel = ctx.dep(Role::Kernel);
        for name in ["kernel", "System.map"] {
            link_or_copy(ctx, &kernel.join(name), &ctx.out.join(name))?;
        }
        if kernel.join("vmlinux").exists() {
            link_or_copy(ctx, &kernel.join("vmlinux"), &ctx.out.join("vmlinux"))?;
        }
        for name in ["kernel.tar", "kernel-dev.tar"] {
            link_or_copy(ctx, &ctx.dep(Role::Modules).join(name), &ctx.out.join(name))?;
        }
        link_or_copy(
            ctx,
            &ctx.dep(Role::Headers).join("kernel-headers.tar"),
            &ctx.out.join("kernel-headers.tar"),
        )?;
        if let Some(snapshot) = ctx.deps.get(&Role::Snapshot) {
            link_or_copy(ctx, &snapshot.dir.join(SNAPSHOT), &ctx.out.join(SNAPSHOT))?;
        }
    }
    // LinuxKit consumers read the builder reference without a trailing newline.
    std::fs::write(ctx.out.join("kernel-builder"), &spec.builder)
        .map_err(io("writing kernel-builder"))?;
    std::fs::write(ctx.out.join("kernel-source-info"), source_info(spec))
        .map_err(io("writing kernel-source-info"))
}

/// Unpacks one of the kernel's own tarballs (kbuild wrote it) at the image's root.
fn unpack(tar: &Path, to: &Path) -> Result<(), RecipeError> {
    let file = std::fs::File::open(tar).map_err(io(format!("opening {}", tar.display())))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    archive.set_preserve_permissions(true);
    archive
        .unpack(to)
        .map_err(io(format!("unpacking {} into the image", tar.display())))
}

/// Links every file of the installed tree `from` to the same place under `to`, directories
/// made and symlinks recreated as they are (an installed library's `libx.so -> libx.so.1`).
/// A path that is there already (`kernel-files`) is an error naming it, relative to `root`.
fn link_tree(ctx: &Ctx, from: &Path, to: &Path, root: &Path) -> Result<(), RecipeError> {
    let entries = std::fs::read_dir(from).map_err(io(format!("reading {}", from.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("reading {}", from.display())))?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .map_err(io(format!("reading {}", source.display())))?;
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io("creating the image directory"))?;
            link_tree(ctx, &source, &dest, root)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&source)
                .map_err(io(format!("reading the link {}", source.display())))?;
            std::os::unix::fs::symlink(&target, &dest)
                .map_err(io(format!("packaging {}", source.display())))?;
        } else if let Err(e) = ctx.ledger.link_or_copy(&source, &dest) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                RecipeError::failed(
                    format!(
                        "the tool's `{}` is also in the kernel's headers or development files",
                        dest.strip_prefix(root).unwrap_or(&dest).display()
                    ),
                    "`kernel-files #true` unpacks kernel-headers.tar and kernel-dev.tar at the \
                     image's root; the tool's install must not write the same paths",
                )
            } else {
                io(format!("packaging {}", source.display()))(e)
            });
        }
    }
    Ok(())
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
