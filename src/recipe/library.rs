//! Libraries that tools build against (libtraceevent for perf): installed by their own make
//! into the action's output as a staged root (`DESTDIR=<out>`, `prefix=/usr`), and handed to a
//! tool's make as include, library and pkg-config directories.
//!
//! The output is moved into the cache after the action and may be restored anywhere, so it
//! must not name the directory it was built in: the pkg-config files it installs say where
//! their files are relative to themselves (`${pcfiledir}`), as a relocatable prefix does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Ctx, RecipeError, io};
use crate::action::{Role, ToolSpec};
use crate::exec::Invocation;

/// `make -C <dir> O=<obj> prefix=/usr DESTDIR=<out> <args>`; the args name the install goal.
pub fn install(ctx: &Ctx, spec: &ToolSpec, src: &Path) -> Result<(), RecipeError> {
    let obj = ctx.work.join("library");
    std::fs::create_dir_all(&obj).map_err(io("creating the library build directory"))?;
    let inv = ctx
        .make(src, &obj)
        .arg("prefix=/usr")
        .arg(format!("DESTDIR={}", ctx.out.display()))
        .args(&spec.args)
        .output(ctx.out.join("usr"));
    ctx.run(inv)?;
    let installed = std::fs::read_dir(ctx.out)
        .map_err(io("reading the library's installed tree"))?
        .next()
        .is_some();
    if !installed {
        return Err(RecipeError::failed(
            format!(
                "the library's make installed nothing into {}",
                ctx.out.display()
            ),
            "a library's `args` in kernel.kdl name its install goal (`args \"install\"`), and \
             its make must honour DESTDIR and prefix",
        ));
    }
    for pc in pkgconfig_files(ctx.out).map_err(io("listing the library's pkg-config files"))? {
        relocate(ctx.out, &pc)?;
    }
    Ok(())
}

/// Every `*.pc` file under `root`.
fn pkgconfig_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in pkgconfig_dirs(root)? {
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

/// The `pkgconfig` directories of an installed tree (`usr/lib/pkgconfig`, `usr/share/pkgconfig`).
fn pkgconfig_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for base in ["usr/lib", "usr/lib64", "usr/share"] {
        let dir = root.join(base).join("pkgconfig");
        if dir.is_dir() {
            dirs.push(dir);
        }
    }
    Ok(dirs)
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

/// What a tool's make needs to find the libraries it uses: the include and library
/// directories as make variables, `EXTRA_CFLAGS` and `LDFLAGS` (the variables of the kernel's
/// tools/ Makefiles, which their feature checks read), merged into the manifest's own values;
/// and the `.pc` files through `PKG_CONFIG_PATH` in the environment, where `$(shell pkg-config)`
/// sees it in every make (make 4.3 passes command-line variables only to recipes). A cross
/// build sees only the libraries' `.pc` files, and through the host's pkg-config: the host's
/// own describe host libraries, and Debian ships no `<triplet>-pkg-config` for most targets.
pub fn with_libraries(
    ctx: &Ctx,
    inv: Invocation,
    args: &[String],
) -> Result<Invocation, RecipeError> {
    let libraries: Vec<&Path> = ctx
        .deps
        .iter()
        .filter(|(role, _)| matches!(role, Role::Library(_)))
        .map(|(_, out)| out.dir.as_path())
        .collect();
    let mut args = args.to_vec();
    if libraries.is_empty() {
        return Ok(inv.args(&args));
    }
    let (mut cflags, mut ldflags, mut pc_dirs) = (Vec::new(), Vec::new(), Vec::new());
    for lib in &libraries {
        let include = lib.join("usr/include");
        if include.is_dir() {
            cflags.push(format!("-I{}", include.display()));
        }
        for dir in ["usr/lib", "usr/lib64"].map(|d| lib.join(d)) {
            if dir.is_dir() {
                ldflags.push(format!("-L{}", dir.display()));
            }
        }
        let dirs = pkgconfig_dirs(lib).map_err(io("listing a library's pkg-config files"))?;
        pc_dirs.extend(dirs.iter().map(|d| d.display().to_string()));
    }
    merge(&mut args, "EXTRA_CFLAGS", &cflags);
    merge(&mut args, "LDFLAGS", &ldflags);
    let pc_path = pc_dirs.join(":");
    let mut env = BTreeMap::from([("PKG_CONFIG_PATH".to_string(), pc_path.clone())]);
    let cross = ctx
        .action
        .env
        .get("CROSS_COMPILE")
        .is_some_and(|c| !c.is_empty());
    if cross {
        env.insert("PKG_CONFIG".into(), "pkg-config".into());
        env.insert("PKG_CONFIG_LIBDIR".into(), pc_path);
    }
    Ok(inv.args(&args).envs(&env))
}

/// Appends `flags` to the value of `VAR=` in `args`, or adds `VAR=flags`.
fn merge(args: &mut Vec<String>, var: &str, flags: &[String]) {
    if flags.is_empty() {
        return;
    }
    let prefix = format!("{var}=");
    let joined = flags.join(" ");
    match args.iter_mut().rev().find(|a| a.starts_with(&prefix)) {
        Some(arg) if arg.len() > prefix.len() => *arg = format!("{arg} {joined}"),
        Some(arg) => *arg = format!("{prefix}{joined}"),
        None => args.push(format!("{prefix}{joined}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{merge, relocated};

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

    #[test]
    fn flags_join_the_manifests_own_value() {
        let mut args = vec!["LDFLAGS=-static".to_string(), "perf".to_string()];
        merge(&mut args, "LDFLAGS", &["-L/l".into()]);
        merge(&mut args, "EXTRA_CFLAGS", &["-I/i".into()]);
        merge(&mut args, "NOTHING", &[]);
        assert_eq!(args, ["LDFLAGS=-static -L/l", "perf", "EXTRA_CFLAGS=-I/i"]);
    }
}
