//! Layer: one image layer, a deterministic (gzipped) tar of a dependency's files.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "layer",
    // 3: zlib-rs compresses instead of miniz_oxide (other bytes for the same level).
    version: 3,
    code: super::image::CODE,
    held: true,
    ..PLAIN
};
