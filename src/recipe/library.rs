//! Libraries that tools build against (libtraceevent for perf): installed into a staged root
//! as any installing tool is (see `install.rs`), and handed to a tool's build as include,
//! library and pkg-config directories.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::Role;
use crate::exec::Invocation;

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
    let mut args = args.to_vec();
    let (mut cflags, mut ldflags) = (Vec::new(), Vec::new());
    for lib in roots(ctx) {
        let include = lib.join("usr/include");
        if include.is_dir() {
            cflags.push(format!("-I{}", include.display()));
        }
        for dir in ["usr/lib", "usr/lib64"].map(|d| lib.join(d)) {
            if dir.is_dir() {
                ldflags.push(format!("-L{}", dir.display()));
            }
        }
    }
    merge(&mut args, "EXTRA_CFLAGS", &cflags);
    merge(&mut args, "LDFLAGS", &ldflags);
    Ok(inv.args(&args).envs(&pkg_config_env(ctx)?))
}

/// The installed trees of the libraries the action uses.
pub fn roots<'a>(ctx: &'a Ctx) -> impl Iterator<Item = &'a Path> {
    (ctx.deps.iter())
        .filter(|(role, _)| matches!(role, Role::Library(_)))
        .map(|(_, out)| out.dir.as_path())
}

/// pkg-config's environment for a build against the used libraries (none without libraries):
/// their `.pc` directories on `PKG_CONFIG_PATH`; a cross build sees only those, through the
/// host's pkg-config, since the host's own `.pc` files describe host libraries and Debian ships
/// no `<triplet>-pkg-config` for most targets.
pub fn pkg_config_env(ctx: &Ctx) -> Result<BTreeMap<String, String>, RecipeError> {
    let mut env = BTreeMap::new();
    let mut dirs = Vec::new();
    let mut any = false;
    for lib in roots(ctx) {
        any = true;
        let found = pkgconfig_dirs(lib).map_err(io("listing a library's pkg-config files"))?;
        dirs.extend(found.iter().map(|d| d.display().to_string()));
    }
    if !any {
        return Ok(env);
    }
    let dirs = dirs.join(":");
    env.insert("PKG_CONFIG_PATH".to_string(), dirs.clone());
    let cross = (ctx.action.env.get("CROSS_COMPILE")).is_some_and(|c| !c.is_empty());
    if cross {
        env.insert("PKG_CONFIG".into(), "pkg-config".into());
        env.insert("PKG_CONFIG_LIBDIR".into(), dirs);
    }
    Ok(env)
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

/// The `pkgconfig` directories of an installed tree (`usr/lib/pkgconfig`, `usr/share/pkgconfig`).
pub(super) fn pkgconfig_dirs(root: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut dirs = Vec::new();
    for base in ["usr/lib", "usr/lib64", "usr/share"] {
        let dir = root.join(base).join("pkgconfig");
        if dir.is_dir() {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn flags_join_the_manifests_own_value() {
        let mut args = vec!["LDFLAGS=-static".to_string(), "perf".to_string()];
        merge(&mut args, "LDFLAGS", &["-L/l".into()]);
        merge(&mut args, "EXTRA_CFLAGS", &["-I/i".into()]);
        merge(&mut args, "NOTHING", &[]);
        assert_eq!(args, ["LDFLAGS=-static -L/l", "perf", "EXTRA_CFLAGS=-I/i"]);
    }
}
