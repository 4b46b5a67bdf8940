//! Image: one arch's OCI image config and manifest over its layers.

use super::{PLAIN, Traits};

/// Shared by the layer, the image and the index: the OCI code they all write with.
pub const CODE: &[&str] = &[
    "recipe/image.rs",
    "oci/mod.rs",
    "oci/gzip.rs",
    "oci/layout.rs",
    "archive.rs",
];

pub const TRAITS: Traits = Traits {
    name: "image",
    code: CODE,
    held: true,
    checked_for_out: true,
    tagged: true,
    ..PLAIN
};
