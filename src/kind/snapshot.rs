//! Snapshot: the patched tree as `linux.tar.xz`, as LinuxKit images carry it.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "snapshot",
    code: &["recipe/patch.rs", "archive.rs"],
    background: true,
    ..PLAIN
};
