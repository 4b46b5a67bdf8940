//! The key itself, and the version of its encoding.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The version of the key encoding itself: bumped when a field is added, removed or encoded
/// differently, so that no key of one schema can equal a key of another.
pub const SCHEMA: u32 = 4;

/// The key under which an action's outputs are cached.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionKey(pub Digest);

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
