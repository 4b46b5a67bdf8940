//! Tools that install: a library (libtraceevent for perf) or a tool whose image is its
//! installed tree (bcc), installed by its own build into the action's output as a staged root
//! (`DESTDIR=<out>`, prefix `/usr`).
//!
//! The output is moved into the cache after the action and may be restored anywhere, so it
//! must not name the directory it was built in: the pkg-config files it installs say where
//! their files are relative to themselves (`${pcfiledir}`), as a relocatable prefix does.

use std::path::{Path, PathBuf};

use super::{Ctx, RecipeError, io};
use crate::action::ToolSpec;

/// `make -C <dir> O=<obj> prefix=/usr DESTDIR=<out> <args>`; the args name the install goal.
pub fn make_install(ctx: &Ctx, spec: &ToolSpec, src: &Path) -> Result<(), RecipeError> {
    let obj = ctx.work.join("install");
    std::fs::create_dir_all(&obj).map_err(io("creating the tool's build directory"))?;
    let inv = ctx
        .make(src, &obj)
        .arg("prefix=/usr")
        .arg(format!("DESTDIR={}", ctx.out.display()))
        .output(ctx.out.join("usr"));
    // A library uses none (the manifest refuses it), so this only adds the args.
    ctx.run(super::library::with_libraries(ctx, inv, &spec.args)?)?;
    finish(
        ctx,
        spec,
        "make must honour DESTDIR and prefix, and `args` name its install goal",
    )
}

/// Checks what the build installed and makes it relocatable: something was installed, the
/// `binary` a tool names is there, and every pkg-config file names its files from itself.
pub fn finish(ctx: &Ctx, spec: &ToolSpec, advice: &str) -> Result<(), RecipeError> {
    let installed = std::fs::read_dir(ctx.out)
        .map_err(io("reading the installed tree"))?
        .next()
        .is_some();
    if !installed {
        return Err(RecipeError::failed(
            format!("the build installed nothing into {}", ctx.out.display()),
            format!("a tool that installs is built with prefix /usr into DESTDIR: its {advice}"),
        ));
    }
    if !spec.library && std::fs::symlink_metadata(ctx.out.join(&spec.binary)).is_err() {
        return Err(RecipeError::failed(
            format!("the install left no `{}` in the tool's tree", spec.binary),
            "for a tool that installs, `binary` in kernel.kdl names a file of the installed \
             tree, relative to its root (`usr/share/bcc/tools/execsnoop`); its log shows what \
             the install wrote",
        ));
    }
    for pc in pkgconfig_files(ctx.out).map_err(io("listing the installed pkg-config files"))? {
        relocate(ctx.out, &pc)?;
    }
    Ok(())
}

/// Every `*.pc` file under `root`.
fn pkgconfig_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in super::library::pkgconfig_dirs(root)? {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "pc") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Rewrites the absolute paths of a `.pc` file's variables (`prefix=/usr`,
/// `libdir=/usr/lib`) as paths from the file itself, so that the installed tree works wherever
/// it is restored. Only variable definitions change: a line whose first `=` or `:` is `=`.
fn relocate(root: &Path, pc: &Path) -> Result<(), RecipeError> {
    let text = std::fs::read_to_string(pc).map_err(io(format!("reading {}", pc.display())))?;
    let depth = pc
        .parent()
        .and_then(|d| d.strip_prefix(root).ok())
        .map_or(0, |rel| rel.components().count());
    let back = "/..".repeat(depth);
    let relocated = relocated(&text, &format!("${{pcfiledir}}{back}"));
    if relocated != text {
        std::fs::write(pc, relocated).map_err(io(format!("writing {}", pc.display())))?;
    }
    Ok(())
}

fn relocated(text: &str, root: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let definition = line
            .find(['=', ':'])
            .filter(|&i| line.as_bytes()[i] == b'=');
        match definition {
            Some(i) if line[i + 1..].starts_with('/') => {
                out.push_str(&line[..=i]);
                out.push_str(root);
                out.push_str(&line[i + 1..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::relocated;

    #[test]
    fn pkgconfig_variables_become_relative_to_the_file() {
        let pc = "prefix=/usr\nlibdir=/usr/lib\nincludedir=${prefix}/include\n\n\
                  Name: x\nDescription: a=/b\nCflags: -I${includedir}\n";
        let out = relocated(pc, "${pcfiledir}/../../..");
        assert_eq!(
            out,
            "prefix=${pcfiledir}/../../../usr\nlibdir=${pcfiledir}/../../../usr/lib\n\
             includedir=${prefix}/include\n\nName: x\nDescription: a=/b\nCflags: -I${includedir}\n"
        );
    }
}
