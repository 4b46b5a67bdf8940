//! Tools whose source builds with CMake (bcc): configure, build and install into a staged
//! root, for the arch of the action, with the libraries the tool uses on CMake's search path.
//!
//! The defaults give every CMake tool the same layout whatever the builder's distribution
//! prefers: prefix `/usr`, libraries in `usr/lib` (Debian's GNUInstallDirs would pick
//! `usr/lib/<multiarch>`), a Release build. The manifest's `args` come last and win.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Ctx, RecipeError, io};
use crate::action::ToolSpec;
use crate::arch::Arch;
use crate::exec::Invocation;

/// `cmake -S <dir> -B <obj> …`, `cmake --build <obj>`, `DESTDIR=<out> cmake --install <obj>`.
pub fn install(ctx: &Ctx, spec: &ToolSpec, src: &Path) -> Result<(), RecipeError> {
    if !src.join("CMakeLists.txt").is_file() {
        return Err(no_cmake_lists(spec));
    }
    let obj = ctx.work.join("cmake");
    std::fs::create_dir_all(&obj).map_err(io("creating the CMake build directory"))?;
    let configure = Invocation::new("cmake", &obj)
        .arg("-S")
        .arg(src.display().to_string())
        .arg("-B")
        .arg(obj.display().to_string())
        .arg("-G")
        .arg("Unix Makefiles")
        .args(defaults())
        .args(cross(spec.arch, &ctx.action.env))
        .args(libraries(ctx))
        .args(&spec.args);
    ctx.run(configure.envs(&super::library::pkg_config_env(ctx)?))?;
    let build = Invocation::new("cmake", &obj)
        .arg("--build")
        .arg(obj.display().to_string())
        .arg("--parallel")
        .arg(ctx.jobs.to_string());
    ctx.run(build)?;
    let install = Invocation::new("cmake", &obj)
        .arg("--install")
        .arg(obj.display().to_string())
        .envs(&BTreeMap::from([(
            "DESTDIR".to_string(),
            ctx.out.display().to_string(),
        )]))
        .output(ctx.out.join("usr"));
    ctx.run(install)?;
    super::install::finish(ctx, spec, "CMakeLists.txt must have install() rules")
}

fn no_cmake_lists(spec: &ToolSpec) -> RecipeError {
    RecipeError::failed(
        format!(
            "the source has no `{}/CMakeLists.txt`: `build \"cmake\"` cannot build it",
            spec.dir
        ),
        "a CMake tool's `dir` in kernel.kdl names the directory of its top CMakeLists.txt in \
         the tarball, without the tarball's top directory (`.` for its top); a source that \
         builds with make takes `build \"make\"` (the default)",
    )
}

fn defaults() -> Vec<String> {
    [
        "-DCMAKE_INSTALL_PREFIX=/usr",
        "-DCMAKE_INSTALL_LIBDIR=lib",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    .map(String::from)
    .to_vec()
}

/// The compilers of the action's toolchain, and for a foreign arch what makes CMake cross
/// compile (it then runs nothing it built).
fn cross(arch: Arch, env: &BTreeMap<String, String>) -> Vec<String> {
    let prefix = env.get("CROSS_COMPILE").map_or("", String::as_str);
    let llvm = env.contains_key("LLVM");
    let mut args = if llvm {
        vec![
            "-DCMAKE_C_COMPILER=clang".to_string(),
            "-DCMAKE_CXX_COMPILER=clang++".to_string(),
        ]
    } else {
        vec![
            format!("-DCMAKE_C_COMPILER={prefix}gcc"),
            format!("-DCMAKE_CXX_COMPILER={prefix}g++"),
        ]
    };
    let foreign = if llvm {
        Arch::host() != Some(arch)
    } else {
        !prefix.is_empty()
    };
    if foreign {
        args.push("-DCMAKE_SYSTEM_NAME=Linux".into());
        args.push(format!("-DCMAKE_SYSTEM_PROCESSOR={}", arch.kernel_name()));
        if llvm {
            let triple = arch.gnu_prefix().trim_end_matches('-');
            args.push(format!("-DCMAKE_C_COMPILER_TARGET={triple}"));
            args.push(format!("-DCMAKE_CXX_COMPILER_TARGET={triple}"));
        }
    }
    args
}

/// The installed trees of the libraries the tool uses, where `find_package` and
/// `find_library` look first.
fn libraries(ctx: &Ctx) -> Vec<String> {
    let roots: Vec<String> = super::library::roots(ctx)
        .map(|root| root.join("usr").display().to_string())
        .collect();
    if roots.is_empty() {
        return Vec::new();
    }
    vec![format!("-DCMAKE_PREFIX_PATH={}", roots.join(";"))]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::cross;
    use crate::arch::Arch;

    #[test]
    fn a_foreign_arch_makes_cmake_cross_compile_with_the_actions_toolchain() {
        let gnu = BTreeMap::from([("CROSS_COMPILE".into(), "aarch64-linux-gnu-".into())]);
        assert_eq!(
            cross(Arch::Aarch64, &gnu),
            [
                "-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc",
                "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++",
                "-DCMAKE_SYSTEM_NAME=Linux",
                "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
            ]
        );
        let native = BTreeMap::from([("CROSS_COMPILE".into(), String::new())]);
        assert_eq!(
            cross(Arch::X86_64, &native),
            ["-DCMAKE_C_COMPILER=gcc", "-DCMAKE_CXX_COMPILER=g++"]
        );
        let llvm = BTreeMap::from([("LLVM".into(), "1".into())]);
        let foreign = if Arch::host() == Some(Arch::Riscv64) {
            Arch::X86_64
        } else {
            Arch::Riscv64
        };
        let args = cross(foreign, &llvm);
        assert_eq!(
            args[..2],
            ["-DCMAKE_C_COMPILER=clang", "-DCMAKE_CXX_COMPILER=clang++"]
        );
        let triple = foreign.gnu_prefix().trim_end_matches('-');
        assert!(args.contains(&format!("-DCMAKE_C_COMPILER_TARGET={triple}")));
    }
}
