//! Fetch: downloads (or copies) a source tarball and checks it against its pin.

use super::{PLAIN, Traits};

pub const TRAITS: Traits = Traits {
    name: "fetch",
    code: &["recipe/fetch.rs"],
    ..PLAIN
};
