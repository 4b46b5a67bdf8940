//! Tool: perf, bcc or a library they use, built for one arch.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "tool",
    code: &[
        "recipe/tool.rs",
        "recipe/install.rs",
        "recipe/cmake.rs",
        "recipe/library.rs",
        "recipe/compile.rs",
        "recipe/build_dir.rs",
        "elf.rs",
        "archive.rs",
    ],
    toolchain: true,
    ..PLAIN
};
