//! Sbom: the SPDX 2.3 bill of materials of one kernel image.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "sbom",
    code: &["recipe/sbom.rs", "sbom.rs"],
    // It states the build environment: its key holds the kernel toolchain's identity, the
    // same the compile's holds, and the recipe reads that identity.
    toolchain: true,
    // `kbuild sbom` prints it from the cache.
    held: true,
    describes: true,
    ..PLAIN
};
