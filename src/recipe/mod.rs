//! Recipes: what each action kind does, given its materialised dependencies and an executor.

mod build_dir;
mod cmake;
mod compile;
mod configure;
mod ctx;
mod fetch;
pub mod image;
mod install;
mod library;
mod package;
mod patch;
pub mod remote;
mod attest;
mod sbom;
pub mod test;
mod tool;

pub use ctx::{Ctx, DepOutput, Found, RecipeError, io};
pub use sbom::FILE as SBOM_FILE;

use crate::action::Recipe;

/// Runs the recipe of `ctx.action`.
pub fn execute(ctx: &Ctx) -> Result<Found, RecipeError> {
    let done = match &ctx.action.recipe {
        Recipe::Fetch { urls, sha256, file } => {
            return fetch::run(ctx, urls, sha256.as_deref(), file);
        }
        Recipe::Patch { patches } => patch::run(ctx, patches),
        Recipe::Snapshot => patch::snapshot(ctx),
        Recipe::Headers { arch } => compile::headers(ctx, *arch),
        Recipe::Configure { spec, dir } => configure::configure(ctx, spec, dir),
        Recipe::CheckConfig(check) => configure::check(ctx, check),
        Recipe::Compile {
            arch,
            dirs,
            extra_outputs,
        } => compile::compile(ctx, *arch, dirs, extra_outputs),
        Recipe::Install { arch, dirs } => compile::install(ctx, *arch, dirs),
        Recipe::Tool(spec) => tool::tool(ctx, spec),
        Recipe::Package(spec) => package::package(ctx, spec),
        Recipe::Layer(spec) => image::layer(ctx, spec),
        Recipe::Image(spec) => image::image(ctx, spec),
        Recipe::Index(spec) => image::index(ctx, spec),
        Recipe::Tag(spec) => package::tag(ctx, spec),
        Recipe::Test(spec) => test::test(ctx, spec),
        Recipe::Sbom(spec) => sbom::sbom(ctx, spec),
        Recipe::Attest(spec) => attest::attest(ctx, spec),
    };
    done.map(|()| Found::default())
}
