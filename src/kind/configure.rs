//! Configure: the resolved `.config` of one target, from its config and fragments.

use super::{PLAIN, Traits};

/// Shared with the config check, which resolves the same way.
pub const CODE: &[&str] = &["recipe/configure.rs", "recipe/build_dir.rs", "kconfig.rs"];

pub const TRAITS: Traits = Traits {
    name: "configure",
    code: CODE,
    toolchain: true,
    ..PLAIN
};
