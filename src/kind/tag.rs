//! Tag: the image references one target is published under (`6.6.71-<hash>-amd64`, …).

use super::{OutLink, PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "tag",
    code: &["recipe/package.rs", "tags.rs"],
    held: true,
    checked_for_out: true,
    out: OutLink::TagsFile,
    tagged: true,
    ..PLAIN
};
