//! Tools such as perf: the tool's own make in the patched tree, for one arch, and a check that
//! the binary can run alone, as it must in an image that holds nothing else. Tools that
//! install (libraries, bcc) go to `install.rs` and `cmake.rs`.

use std::path::Path;

use super::compile::copy;
use super::{Ctx, RecipeError, io};
use crate::action::{Role, ToolSpec};
use crate::exec::Invocation;
use crate::model::BuildSystem;

pub fn tool(ctx: &Ctx, spec: &ToolSpec) -> Result<(), RecipeError> {
    let src = ctx.dep(Role::Tree).join("tree").join(&spec.dir);
    if spec.build == BuildSystem::Cmake {
        return super::cmake::install(ctx, spec, &src);
    }
    if !src.join("Makefile").is_file() {
        return Err(no_such_dir(spec));
    }
    if spec.installs() {
        return super::install::make_install(ctx, spec, &src);
    }
    let obj = ctx.work.join("tool");
    std::fs::create_dir_all(&obj).map_err(io("creating the tool build directory"))?;
    let built = obj.join(&spec.binary);
    let mut inv = ctx.make(&src, &obj);
    if let Some(headers) = ctx.deps.get(&Role::Headers) {
        inv = inv.arg(format!(
            "KERNEL_HEADERS_TAR={}",
            headers.dir.join("kernel-headers.tar").display()
        ));
    }
    let inv = super::library::with_libraries(ctx, inv, &spec.args)?;
    ctx.run(inv.output(&built))?;
    check_runs_alone(spec, &built)?;
    if spec.strip {
        let stripped = obj.join(format!("{}.stripped", spec.binary));
        let strip = Invocation::new(&crate::key::toolset::strip_for(&ctx.action.env), &obj)
            .arg("--strip-all")
            .arg("-o")
            .arg(stripped.display().to_string())
            .arg(built.display().to_string())
            .output(&stripped);
        ctx.run(strip)?;
        return copy(&stripped, &ctx.out.join(&spec.binary));
    }
    copy(&built, &ctx.out.join(&spec.binary))
}

fn no_such_dir(spec: &ToolSpec) -> RecipeError {
    RecipeError::failed(
        format!(
            "the tree has no `{}/Makefile`: `{}` cannot be built from it",
            spec.dir, spec.binary
        ),
        "a tool's `dir` in kernel.kdl names the directory that make builds: in the kernel tree \
         (`tools/perf`, `tools/bpf/bpftool`), or, for a tool with a `source` of its own, in \
         that tarball without its top directory (`.` for its top)",
    )
}

/// A dynamically linked binary needs a loader and libraries that a tool image does not have.
fn check_runs_alone(spec: &ToolSpec, built: &Path) -> Result<(), RecipeError> {
    if !built.is_file() {
        return Err(RecipeError::failed(
            format!(
                "the tool's make did not produce `{}` in its output directory",
                spec.binary
            ),
            "`binary` in kernel.kdl names the file the tool's make leaves in `O=`; its log \
             shows what it built",
        ));
    }
    match crate::elf::interpreter(built).map_err(io(format!("reading {}", built.display())))? {
        None => Ok(()),
        Some(loader) => Err(RecipeError::failed(
            format!(
                "`{}` is dynamically linked (it needs {loader}); the tool image holds it alone, \
                 so it could not run there",
                spec.binary
            ),
            "link it statically: add `args \"LDFLAGS=-static\"` to the tool in kernel.kdl \
             (perf also needs `NO_JVMTI=1` and the goal `perf`, as its plugins cannot be static)",
        )),
    }
}
