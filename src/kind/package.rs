//! Package: the files of one target's image, named as LinuxKit's kernel images hold them.

use super::{OutLink, PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "package",
    code: &["recipe/package.rs"],
    held: true,
    checked_for_out: true,
    out: OutLink::Tree,
    ..PLAIN
};
