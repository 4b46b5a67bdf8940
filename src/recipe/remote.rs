//! Recipes as one REAPI command, for a remote-execution cluster (`--remote-executor`): the
//! kernel's own make and the shell's `cp`, run in the series' builder image on an input root of
//! the dependencies' outputs, laid out as the kept build directories are here (`src/`,
//! `<target>/obj/`), so `-ffile-prefix-map` strips the same prefix and the outputs are the
//! same bytes as a local build's. What needs kbuild's own code (a tarball) is done here after,
//! on the outputs the cluster sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::{Ctx, RecipeError, io};
use crate::action::{BuildDirs, Recipe, Role};
use crate::arch::Arch;
use crate::archive::write_tar;
use crate::cache::{OutputEntry, OutputManifest};
use crate::exec::Identity;
use crate::remote::RemoteCommand;

/// The longest a remote compile may run: two hours, a full-size debug kernel on a small
/// worker, and BuildGrid's default bound (a longer timeout is refused).
const TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Where an action runs when a remote executor is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Remote,
    /// Runs here, and why (`incremental`, `no builder image` …).
    Local(&'static str),
    /// Its kind never runs remotely (kbuild's own code, a fetch, a boot test).
    HereOnly,
}

/// Where `recipe` runs: remotely when its kind can and its commands run in a builder image
/// (`in_builder_image`: a host toolchain is this machine's, which no worker has); locally when
/// it cannot, or (`prefer_incremental`) when a kept build directory here holds a finished
/// build that make would only update.
pub fn placement(
    recipe: &Recipe,
    in_builder_image: bool,
    build_root: &Path,
    prefer_incremental: bool,
) -> Placement {
    if !recipe.kind().traits().remote {
        return Placement::HereOnly;
    }
    let kept = match recipe {
        Recipe::Compile { dirs, .. } | Recipe::Install { dirs, .. } => {
            build_root.join(&dirs.obj).join("stamp").exists()
        }
        _ => false,
    };
    if !in_builder_image {
        return Placement::Local("no builder image");
    }
    if kept && prefer_incremental {
        return Placement::Local("incremental");
    }
    Placement::Remote
}

/// The remote command of `ctx`'s action and its input root; `None` for a recipe that runs
/// here only.
pub fn command(ctx: &Ctx) -> Option<Result<(RemoteCommand, OutputManifest), RecipeError>> {
    let Identity::Docker { image, id } = ctx.toolchain else {
        return None;
    };
    let tree = |under: &str| -> Vec<OutputEntry> {
        (ctx.dep_output(Role::Tree).manifest.entries().iter())
            .filter_map(|e| Some(moved(e, e.path.strip_prefix("tree/")?, under)))
            .collect()
    };
    // A kernel's compile and install are one remote action: the same command on the same
    // inputs, so the install finds the compile's result in the cluster's action cache (or
    // joins its execution) and takes its part of the outputs, where a separate install
    // would build the whole kernel again on a worker that kept no build directory.
    let kernel = |arch: Arch, dirs: &BuildDirs, extra: &[String]| {
        let mut inputs = tree(leaf(&dirs.src));
        inputs.extend(within(ctx, Role::Config, "config"));
        (kernel_script(arch, dirs, extra), inputs)
    };
    let (script, mut inputs) = match &ctx.action.recipe {
        Recipe::Compile {
            arch,
            dirs,
            extra_outputs,
        } => kernel(*arch, dirs, extra_outputs),
        Recipe::Install { arch, dirs } => kernel(*arch, dirs, &compiled_extras(ctx)),
        Recipe::Headers { .. } => {
            let script = "set -e; r=$(pwd); mkdir -p obj out; (cd src && make O=\"$r/obj\" \
                          -j$(nproc) INSTALL_HDR_PATH=\"$r/out/usr\" headers_install)"
                .to_string();
            (script, tree("src"))
        }
        _ => return None,
    };
    inputs.sort_by(|a, b| a.path.cmp(&b.path));
    let outputs = match &ctx.action.recipe {
        Recipe::Headers { .. } => vec!["out".to_string()],
        _ => vec![INSTALLED.to_string(), "out".to_string()],
    };
    let platform = BTreeMap::from([
        ("OSFamily".to_string(), "Linux".to_string()),
        (
            "container-image".to_string(),
            format!("docker://{image}@{id}"),
        ),
    ]);
    Some(environment(ctx).map(|env| {
        let command = RemoteCommand {
            args: vec!["/bin/sh".into(), "-c".into(), script],
            env,
            working_directory: String::new(),
            outputs,
            platform,
            timeout: TIMEOUT,
        };
        (command, OutputManifest::new(inputs))
    }))
}

/// The output directory of the install's part of a kernel's remote action; `out` is the
/// compile's (and the headers').
const INSTALLED: &str = "install";

/// The part of its remote action's outputs an action takes.
pub fn part(recipe: &Recipe) -> &'static str {
    match recipe {
        Recipe::Install { .. } => INSTALLED,
        _ => "out",
    }
}

/// The compile's extra outputs (`vmlinux` …), as the install's dependency on it shows them:
/// the install's remote command must be the compile's to the byte.
fn compiled_extras(ctx: &Ctx) -> Vec<String> {
    use super::compile::{COPIED, IMAGE};
    (ctx.dep_output(Role::Kernel).manifest.entries().iter())
        .map(|e| e.path.clone())
        .filter(|p| p != IMAGE && !COPIED.iter().any(|(name, _)| name == p))
        .collect()
}

/// Builds the kernel and copies the image, System.map, kernel.release and `extra` to `out/`;
/// installs the modules (and arm64's device trees) into `install/modules` and copies the parts
/// of the object tree kernel-dev.tar takes to `install/obj`. The links to this worker's build
/// and source directories go, as here.
fn kernel_script(arch: Arch, dirs: &BuildDirs, extra: &[String]) -> String {
    let mut copies: Vec<String> = (super::compile::COPIED.iter())
        .map(|(name, at)| format!("cp \"$o/{at}\" out/{name}"))
        .collect();
    for name in extra {
        copies.push(format!("cp \"$o/{name}\" out/{name}"));
    }
    let images: Vec<String> = (arch.boot_images().iter())
        .map(|p| format!("\"$o/{p}\""))
        .collect();
    let mut targets = vec!["INSTALL_MOD_PATH=\"$r/install/modules\" modules_install"];
    if arch == Arch::Aarch64 {
        targets.push("INSTALL_DTBS_PATH=\"$r/install/modules/boot/dtb\" dtbs_install");
    }
    let parts = super::compile::dev_obj_parts(arch).join(" ");
    format!(
        "{}; for i in {}; do if [ -e \"$i\" ]; then cp \"$i\" out/{image}; break; fi; done; \
         [ -e out/{image} ]; {}; \
         rm -f install/modules/lib/modules/*/build install/modules/lib/modules/*/source; \
         for p in {parts}; do if [ -e \"$o/$p\" ]; then mkdir -p \"install/obj/$(dirname \"$p\")\"; \
         cp -a \"$o/$p\" \"install/obj/$p\"; fi; done",
        make_all(dirs, &targets),
        images.join(" "),
        copies.join("; "),
        image = super::compile::IMAGE,
    )
}

/// The shell that puts the config in a fresh object tree and runs the kernel's make `all`,
/// then each of `then` (make targets with their variables), with the flags a local build
/// gets: `-ffile-prefix-map` of the input root, which stands for the series' build directory.
/// Leaves `$r` (the input root) and `$o` (the object tree) set.
fn make_all(dirs: &BuildDirs, then: &[&str]) -> String {
    let make = "make O=\"$o\" -j$(nproc) KCFLAGS=\"$EXTRA_CFLAGS\" HOSTCFLAGS=\"$EXTRA_CFLAGS\"";
    let mut steps = vec![format!("{make} all")];
    steps.extend(then.iter().map(|t| format!("{make} {t}")));
    format!(
        "set -e; r=$(pwd); o=$r/{obj}/obj; mkdir -p \"$o\" out {INSTALLED}; cp config/config \"$o/.config\"; \
         export EXTRA_CFLAGS=\"-ffile-prefix-map=$r/=\"; (cd {src} && {steps})",
        obj = leaf(&dirs.obj),
        src = leaf(&dirs.src),
        steps = steps.join(" && "),
    )
}

/// The last name of a build directory (`6.1.x/amd64` gives `amd64`): the remote input root
/// stands for the series' directory, as the local prefix does.
fn leaf(dir: &str) -> &str {
    dir.rsplit('/').next().unwrap_or(dir)
}

fn moved(entry: &OutputEntry, rest: &str, under: &str) -> OutputEntry {
    OutputEntry {
        path: format!("{under}/{rest}"),
        ..entry.clone()
    }
}

/// Every output of the dependency in `role`, under `under/`.
fn within<'a>(ctx: &'a Ctx, role: Role, under: &'a str) -> impl Iterator<Item = OutputEntry> + 'a {
    (ctx.dep_output(role).manifest.entries().iter()).map(move |e| moved(e, &e.path, under))
}

/// The action's environment and the reproducible timestamps a local make gets (the make's
/// own `EXTRA_CFLAGS` is set by the script: it names the worker's input root).
fn environment(ctx: &Ctx) -> Result<BTreeMap<String, String>, RecipeError> {
    let mut env = (*ctx.action.env).clone();
    env.extend(super::compile::timestamps(ctx)?);
    Ok(env)
}

/// Turns what the cluster sent (`outputs/<part>/…`, see [`part`]) into the action's outputs
/// in `ctx.out`.
pub fn finish(ctx: &Ctx, outputs: &Path) -> Result<(), RecipeError> {
    let sent = outputs.join(part(&ctx.action.recipe));
    match &ctx.action.recipe {
        Recipe::Install { arch, .. } => {
            let mods = sent.join("modules");
            std::fs::create_dir_all(&mods).map_err(io("creating the modules directory"))?;
            let src = ctx.dep(Role::Tree).join("tree");
            super::compile::package_install(ctx, *arch, &mods, (&src, &sent.join("obj")))
        }
        Recipe::Headers { .. } => write_tar(
            &sent,
            &ctx.out.join("kernel-headers.tar"),
            "",
            ctx.source_date()?,
        )
        .map_err(io("writing kernel-headers.tar")),
        _ => {
            for entry in std::fs::read_dir(&sent).map_err(io("reading the remote outputs"))? {
                let entry = entry.map_err(io("reading the remote outputs"))?;
                std::fs::rename(entry.path(), ctx.out.join(entry.file_name()))
                    .map_err(io("moving the remote outputs"))?;
            }
            Ok(())
        }
    }
}
