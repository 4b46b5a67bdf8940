//! Compile: the kernel image and modules of one target, in its kept build directory.

use super::{PLAIN, Traits};

/// Shared with the headers and the install, which run make in the same directories.
/// recipe/remote.rs is how they run on a remote-execution cluster.
pub const CODE: &[&str] = &[
    "recipe/compile.rs",
    "recipe/build_dir.rs",
    "archive.rs",
    "recipe/remote.rs",
];

pub const TRAITS: Traits = Traits {
    name: "compile",
    code: CODE,
    toolchain: true,
    remote: true,
    ..PLAIN
};
