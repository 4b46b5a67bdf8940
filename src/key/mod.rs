//! Action keys: blake3 over a stable encoding of everything that decides an action's result.
//!
//! This module owns the key: [`record`] gathers what an action sees and encodes it, [`explain`]
//! says how two records differ. See `doc/keys.md` for the table of fields and why each is (or
//! is not) there.

pub mod explain;
pub mod kernel_terms;
mod record;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use record::{KeyRecord, Seen, declared, dep_names, key, own_part};

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
