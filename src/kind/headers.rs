//! Headers: the kernel's UAPI headers for one arch (`make headers_install`).

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "headers",
    code: super::compile::CODE,
    toolchain: true,
    background: true,
    remote: true,
    ..PLAIN
};
