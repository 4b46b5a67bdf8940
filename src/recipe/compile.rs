//! Compile, install, headers and tools: the kernel's own make, out of tree, in a kept build dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::build_dir::BuildDir;
use super::{Ctx, RecipeError, io};
use crate::action::{BuildDirs, Role};
use crate::arch::Arch;
use crate::archive::{Source, write_tar, write_tar_of};
use crate::exec::Invocation;

/// The state a build directory is in: which tree and which config it was built from.
fn stamp_of(ctx: &Ctx) -> String {
    format!(
        "{} {}",
        ctx.dep_output(Role::Tree).digest(),
        ctx.dep_output(Role::Config).digest()
    )
}

/// Make with the flags every kernel build gets: reproducible timestamps and no build paths,
/// in the kernel's objects and in the host programs kernel-dev.tar carries (modpost, fixdep,
/// objtool; objtool's libsubcmd takes only `EXTRA_CFLAGS`, from the environment so that no
/// Makefile's own assignment is overridden).
fn kernel_make(ctx: &Ctx, bd: &BuildDir) -> Result<Invocation, RecipeError> {
    let map = format!("-ffile-prefix-map={}/=", bd.prefix().display());
    let mut inv = ctx
        .make(&bd.src(), &bd.obj())
        .hold(bd.lock_fd())
        .arg(format!("KCFLAGS={map}"))
        .arg(format!("HOSTCFLAGS={map}"));
    inv.env.insert("EXTRA_CFLAGS".into(), map);
    inv.env.extend(timestamps(ctx)?);
    Ok(inv)
}

/// The reproducible timestamps every kernel make gets, from the source date, unless the
/// action's environment sets its own.
pub(super) fn timestamps(ctx: &Ctx) -> Result<Vec<(String, String)>, RecipeError> {
    if ctx.action.env.contains_key("KBUILD_BUILD_TIMESTAMP") {
        return Ok(Vec::new());
    }
    let date = ctx.source_date()?;
    Ok(vec![
        ("KBUILD_BUILD_TIMESTAMP".into(), format!("@{date}")),
        ("SOURCE_DATE_EPOCH".into(), date.to_string()),
    ])
}

/// Brings the build dir to this action's tree and config and runs `make all` there.
fn build(ctx: &Ctx, bd: &BuildDir) -> Result<(), RecipeError> {
    bd.prepare(
        ctx.dep_output(Role::Tree),
        &ctx.dep(Role::Config).join("config"),
        ctx.toolchain,
    )?;
    bd.date(ctx.source_date()?)?;
    ctx.run(kernel_make(ctx, bd)?.arg("all"))?;
    bd.set_stamp(&stamp_of(ctx))
}

pub(super) fn copy(from: &Path, to: &Path) -> Result<(), RecipeError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|e| {
        RecipeError::failed(
            format!("the build did not produce `{}`: {e}", from.display()),
            "check the config: the image target or option that makes this file may be off",
        )
    })
}

/// The compile's output of the boot image: the first of the arch's images that make left.
pub const IMAGE: &str = "kernel";

/// The compile's other standard outputs, each with where make leaves it in the object tree.
/// The remote form of the compile copies the same (recipe/remote.rs).
pub const COPIED: [(&str, &str); 2] = [
    ("System.map", "System.map"),
    ("kernel.release", "include/config/kernel.release"),
];

pub fn compile(
    ctx: &Ctx,
    arch: Arch,
    dirs: &BuildDirs,
    extra: &[String],
) -> Result<(), RecipeError> {
    let bd = BuildDir::open(ctx, dirs)?;
    build(ctx, &bd)?;
    let obj = bd.obj();
    let image = arch
        .boot_images()
        .iter()
        .map(|p| obj.join(p))
        .find(|p| p.exists());
    let image = image
        .unwrap_or_else(|| obj.join(arch.boot_images().last().expect("every arch has an image")));
    copy(&image, &ctx.out.join(IMAGE))?;
    for (name, at) in COPIED {
        copy(&obj.join(at), &ctx.out.join(name))?;
    }
    for name in extra {
        copy(&obj.join(name), &ctx.out.join(name))?;
    }
    Ok(())
}

pub fn install(ctx: &Ctx, arch: Arch, dirs: &BuildDirs) -> Result<(), RecipeError> {
    let bd = BuildDir::open(ctx, dirs)?;
    // Another variant may have used the directory since compile ran; make brings it back.
    if bd.stamp().as_deref() != Some(stamp_of(ctx).as_str()) {
        build(ctx, &bd)?;
    }
    let mods = ctx.work.join("modules");
    std::fs::create_dir_all(&mods).map_err(io("creating the modules directory"))?;
    ctx.run(
        kernel_make(ctx, &bd)?
            .arg(format!("INSTALL_MOD_PATH={}", mods.display()))
            .arg("modules_install"),
    )?;
    if arch == Arch::Aarch64 {
        let dtb = mods.join("boot/dtb");
        ctx.run(
            kernel_make(ctx, &bd)?
                .arg(format!("INSTALL_DTBS_PATH={}", dtb.display()))
                .arg("dtbs_install"),
        )?;
    }
    package_install(ctx, arch, &mods, (&bd.src(), &bd.obj()))
}

/// Writes an install's outputs: `kernel.tar` from the installed modules `mods`, and
/// `kernel-dev.tar` from the source tree `src` and the object tree `obj` (a kept build
/// directory's, or the parts of one a remote install sent).
pub(super) fn package_install(
    ctx: &Ctx,
    arch: Arch,
    mods: &Path,
    (src, obj): (&Path, &Path),
) -> Result<(), RecipeError> {
    drop_build_links(mods);
    let epoch = ctx.source_date()?;
    write_tar(mods, &ctx.out.join("kernel.tar"), "", epoch).map_err(io("writing kernel.tar"))?;
    let release = std::fs::read_to_string(obj.join("include/config/kernel.release"))
        .map_err(io("reading kernel.release"))?;
    let dev = dev_tree(src, obj, arch).map_err(io("collecting the kernel-dev tree"))?;
    let prefix = format!("usr/src/linux-headers-{}", release.trim());
    write_tar_of(&dev, &ctx.out.join("kernel-dev.tar"), &prefix, epoch)
        .map_err(io("writing kernel-dev.tar"))
}

/// modules_install links `lib/modules/<release>/build` and `source` to the absolute build and
/// source directories: paths of this machine, which would make kernel.tar differ between caches.
fn drop_build_links(mods: &Path) {
    let Ok(releases) = std::fs::read_dir(mods.join("lib/modules")) else {
        return;
    };
    for release in releases.flatten() {
        for link in ["build", "source"] {
            let path = release.path().join(link);
            if path
                .symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// What an out-of-tree module build needs, merged from the source and object trees into one
/// in-tree-looking listing (the object tree's files win), read in place rather than copied.
fn dev_tree(src: &Path, obj: &Path, arch: Arch) -> std::io::Result<BTreeMap<PathBuf, Source>> {
    let a = arch.src_arch();
    let from_src = [
        "Makefile",
        "include",
        "scripts",
        &format!("arch/{a}/include"),
        &format!("arch/{a}/Makefile"),
    ]
    .map(String::from);
    let from_obj = dev_obj_parts(arch);
    let mut tree = BTreeMap::new();
    for (root, parts) in [(src, &from_src[..]), (obj, &from_obj[..])] {
        for part in parts {
            gather(&root.join(part), Path::new(part), &mut tree)?;
        }
    }
    Ok(tree)
}

/// What the kernel-dev tree takes from the object tree.
pub(super) fn dev_obj_parts(arch: Arch) -> [String; 8] {
    let a = arch.src_arch();
    [
        ".config",
        "Module.symvers",
        "include",
        "scripts",
        &format!("arch/{a}/include"),
        &format!("arch/{a}/lib"),
        // Host tools that external module builds run, when the config builds them.
        "tools/objtool/objtool",
        "tools/bpf/resolve_btfids/resolve_btfids",
    ]
    .map(String::from)
}

/// Build by-products that module builds never read and that record the build directory's
/// path: `.cmd` files, objects and intermediate assembly.
fn by_product(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    [".cmd", ".o", ".s"].iter().any(|ext| name.ends_with(ext))
}

/// Kconfig's dependency stamps, `include/config/<SYMBOL>`: empty files that syncconfig creates
/// for each symbol whose value changed, so make knows what to recompile, and never removes. A
/// build directory that once had an option on keeps its stamp after the option is turned off,
/// where a clean build has none: a kernel-dev.tar with them would depend on the directory's
/// history. Module builds only test them for existence, to rebuild after a config change.
fn symbol_stamp(rel: &Path) -> bool {
    let name = rel.file_name().unwrap_or_default().to_string_lossy();
    rel.parent() == Some(Path::new("include/config"))
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Adds `from` (if it exists) as `rel`, with its parent directories, and everything below it.
/// An empty file does not replace one already listed.
fn gather(from: &Path, rel: &Path, tree: &mut BTreeMap<PathBuf, Source>) -> std::io::Result<()> {
    let Ok(source) = Source::of(from) else {
        return Ok(());
    };
    let is_dir = matches!(source, Source::Dir);
    if !is_dir && (by_product(from) || symbol_stamp(rel)) {
        return Ok(());
    }
    // Its size is read only when it would replace a listed file.
    if matches!(source, Source::File(_)) && tree.contains_key(rel) && from.metadata()?.len() == 0 {
        return Ok(());
    }
    for parent in rel
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
    {
        tree.entry(parent.to_path_buf()).or_insert(Source::Dir);
    }
    tree.insert(rel.to_path_buf(), source);
    if is_dir {
        for entry in std::fs::read_dir(from)? {
            let name = entry?.file_name();
            gather(&from.join(&name), &rel.join(&name), tree)?;
        }
    }
    Ok(())
}

/// UAPI headers do not read `.config`, so every variant of a tree and arch shares them.
pub fn headers(ctx: &Ctx, _arch: Arch) -> Result<(), RecipeError> {
    let tree = ctx.dep(Role::Tree).join("tree");
    let obj = ctx.work.join("obj");
    let dest: PathBuf = ctx.work.join("hdr");
    std::fs::create_dir_all(&obj).map_err(io("creating the headers build directory"))?;
    let inv = ctx
        .make(&tree, &obj)
        .arg(format!("INSTALL_HDR_PATH={}/usr", dest.display()))
        .arg("headers_install");
    ctx.run(inv)?;
    write_tar(
        &dest,
        &ctx.out.join("kernel-headers.tar"),
        "",
        ctx.source_date()?,
    )
    .map_err(io("writing kernel-headers.tar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kconfig_s_symbol_stamps_are_left_out_of_kernel_dev() {
        for stamp in ["include/config/PRINTK_TIME", "include/config/64BIT"] {
            assert!(symbol_stamp(Path::new(stamp)), "{stamp}");
        }
        for kept in [
            "include/config/auto.conf",
            "include/config/auto.conf.cmd",
            "include/config/kernel.release",
            "include/generated/PRINTK_TIME",
            "include/config",
            "PRINTK_TIME",
        ] {
            assert!(!symbol_stamp(Path::new(kept)), "{kept}");
        }
    }
}
