//! Action keys: blake3 over a stable encoding of everything that decides an action's result.
//!
//! This module owns the key. [`KeyView`] is the one encoding every key comes from, and
//! [`KeyRecord`] the same fields kept whole, stored beside each cache entry and shown by
//! `kbuild why --key` and `kbuild plan --format json`; [`explain`] says how two records differ.
//! See `doc/keys.md` for the table of fields and why each is (or is not) there.

pub mod explain;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::digest::Digest;
use crate::recipe::code::RecipeCode;

/// The version of the key encoding itself: bumped when a field is added, removed or encoded
/// differently, so that no key of one schema can equal a key of another.
pub const SCHEMA: u32 = 2;

/// The key under which an action's outputs are cached.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionKey(pub Digest);

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything that enters a key, kept whole beside the key so that a miss can be explained.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    /// [`SCHEMA`] when the record was made.
    pub schema: u32,
    /// The action kind, e.g. `compile`.
    pub kind: String,
    /// The recipe of that kind: its version and the digest of the code that implements it.
    pub recipe: RecipeCode,
    /// The typed recipe parameters (arch, fragments by name, LOCALVERSION, URLs …).
    pub params: serde_json::Value,
    /// The exact environment of the action's commands.
    pub env: BTreeMap<String, String>,
    /// Who runs the commands: the host toolchain's identity, later a builder image digest.
    pub executor: String,
    /// Workspace-relative input files and their content digests.
    pub inputs: BTreeMap<String, Digest>,
    /// Dependency role and the digest of that dependency's output manifest.
    pub deps: BTreeMap<String, Digest>,
}

/// The same fields as [`KeyRecord`], borrowed, so that a key is hashed without building a record.
/// Keys come only from this encoding; a stored record is for explanation.
#[derive(Serialize)]
pub struct KeyView<'a> {
    pub schema: u32,
    pub kind: &'a str,
    pub recipe: RecipeCode,
    pub params: &'a crate::action::Recipe,
    pub env: &'a BTreeMap<String, String>,
    pub executor: &'a str,
    pub inputs: &'a BTreeMap<String, Digest>,
    pub deps: &'a BTreeMap<String, Digest>,
}

impl<'a> KeyView<'a> {
    pub fn new(
        action: &'a Action,
        executor: &'a str,
        inputs: &'a BTreeMap<String, Digest>,
        deps: &'a BTreeMap<String, Digest>,
    ) -> KeyView<'a> {
        KeyView {
            schema: SCHEMA,
            kind: action.kind.as_str(),
            recipe: crate::recipe::code::of(action.kind),
            params: &action.recipe,
            env: &action.env,
            executor,
            inputs,
            deps,
        }
    }

    /// Encodes into a reused buffer and hashes it once (serde_json writes many tiny pieces,
    /// which blake3 digests slowly one by one).
    pub fn key(&self) -> ActionKey {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            serde_json::to_writer(&mut *buf, self).expect("key views serialise");
            ActionKey(Digest::of_bytes(buf))
        })
    }
}

impl KeyRecord {
    pub fn new(
        action: &Action,
        executor: String,
        inputs: BTreeMap<String, Digest>,
        deps: BTreeMap<String, Digest>,
    ) -> KeyRecord {
        KeyRecord {
            schema: SCHEMA,
            kind: action.kind.as_str().to_string(),
            recipe: crate::recipe::code::of(action.kind),
            params: serde_json::to_value(&action.recipe).expect("recipes serialise"),
            env: (*action.env).clone(),
            executor,
            inputs,
            deps,
        }
    }

    /// serde_json writes struct fields in declaration order and maps sorted, so the bytes are stable.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("key records serialise")
    }
}
