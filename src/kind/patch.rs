//! Patch: unpacks the source and applies the series' patches, in order.

use super::{PLAIN, Traits, Upload};

pub const TRAITS: Traits = Traits {
    name: "patch",
    code: &["recipe/patch.rs", "unpack.rs", "archive.rs"],
    toolchain: true,
    upload: Upload::ManifestOnly,
    ..PLAIN
};
