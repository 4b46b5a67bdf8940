//! Index: the multi-arch OCI index over the images of one series and variant (or tool).

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "index",
    code: super::image::CODE,
    held: true,
    checked_for_out: true,
    tagged: true,
    ..PLAIN
};
