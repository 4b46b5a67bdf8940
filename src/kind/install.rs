//! Install: the modules tree and `kernel.tar` of one compiled target.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "install",
    code: super::compile::CODE,
    toolchain: true,
    remote: true,
    ..PLAIN
};
