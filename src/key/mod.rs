//! Action keys: blake3 over a stable encoding of everything that decides an action's result.
//!
//! This module owns the key: [`record`] gathers what an action sees and encodes it, [`explain`]
//! says how two records differ. See `doc/keys.md` for the table of fields and why each is (or
//! is not) there.

mod action_key;
pub mod explain;
pub mod kernel_terms;
pub mod keyer;
mod record;
pub mod toolset;

pub use action_key::{ActionKey, SCHEMA};
pub use record::{KeyRecord, Seen, declared, dep_names, key, own_part};
