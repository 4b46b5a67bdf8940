//! The key record: everything that decides an action's result, gathered in one place.
//!
//! [`Seen`] is what an action sees besides itself (its input files' digests, its dependencies'
//! output digests, its executor's identity); [`own_part`] digests the action's own fields and
//! [`key`] joins that with what it sees into the key, and [`KeyRecord`] keeps the same fields
//! whole for `why`, `plan --format json` and `why --key`. Nothing else makes keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::action_key::{ActionKey, SCHEMA};
use crate::action::{Action, ActionId, Recipe};
use crate::digest::Digest;
use crate::exec::{Identity, Known};
use crate::kind::ActionKind;
use crate::kind::code::RecipeCode;

/// What an action sees besides itself, borrowed from it where it can be: a plan gathers this
/// for every action, and only a miss turns it into a [`KeyRecord`].
#[derive(Clone, Debug)]
pub struct Seen<'a> {
    pub executor: Known,
    /// Workspace-relative input files and their content digests, sorted by path, each once.
    pub inputs: Vec<(&'a str, Digest)>,
    /// Each dependency's name in the key ([`dep_names`]) and its output digest, sorted by name.
    pub deps: Vec<(Cow<'static, str>, Digest)>,
}

impl<'a> Seen<'a> {
    /// Gathers what `action` sees: `None` while a dependency's output is unknown (it has yet to
    /// run), an error when an input cannot be read. Only the executor's identity is given, as
    /// it is the same for every action of one toolset.
    pub fn gather<E>(
        action: &'a Action,
        output_of: impl Fn(ActionId) -> Option<Digest>,
        mut digest_of: impl FnMut(&str) -> Result<Digest, E>,
        executor: impl FnOnce() -> Result<Known, E>,
    ) -> Result<Option<Seen<'a>>, E> {
        let mut deps = Vec::with_capacity(action.deps.len());
        for (dep, name) in action.deps.iter().zip(key_names(action)) {
            let Some(output) = output_of(dep.id) else {
                return Ok(None);
            };
            deps.push((name, output));
        }
        deps.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut inputs = Vec::with_capacity(action.inputs.len());
        for rel in &action.inputs {
            inputs.push((rel.as_str(), digest_of(rel)?));
        }
        inputs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        inputs.dedup_by(|a, b| a.0 == b.0);
        Ok(Some(Seen {
            executor: executor()?,
            inputs,
            deps,
        }))
    }
}

/// The name each dependency has in a key: its role, and for a second or later dependency in one
/// role (the layers of an image) `role#2`, `role#3` … in dependency order, so none is dropped.
/// Roles, not action names: renaming a series changes no key.
pub fn dep_names(action: &Action) -> Vec<String> {
    key_names(action).map(Cow::into_owned).collect()
}

/// [`dep_names`], borrowing each role's name when it is the first of its role.
fn key_names(action: &Action) -> impl Iterator<Item = Cow<'static, str>> + '_ {
    (action.deps.iter().enumerate()).map(|(i, dep)| {
        let same = (action.deps[..i].iter())
            .filter(|d| d.role == dep.role)
            .count();
        match same {
            0 => Cow::Borrowed(dep.role.as_str()),
            n => Cow::Owned(format!("{}#{}", dep.role.as_str(), n + 1)),
        }
    })
}

/// Everything that enters a key, kept whole beside the key so that a miss can be explained.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    /// [`SCHEMA`] when the record was made.
    pub schema: u32,
    /// The action kind, e.g. `compile`.
    pub kind: ActionKind,
    /// The recipe of that kind: its version and the digest of the code that implements it.
    pub recipe: RecipeCode,
    /// The typed recipe parameters (arch, fragments by name, LOCALVERSION, URLs …).
    pub params: serde_json::Value,
    /// The exact environment of the action's commands.
    pub env: BTreeMap<String, String>,
    /// Who runs the commands: every host program's content, or the builder image's ID.
    pub executor: Identity,
    /// Workspace-relative input files and their content digests.
    pub inputs: BTreeMap<String, Digest>,
    /// Dependency name and the digest of that dependency's output manifest.
    pub deps: BTreeMap<String, Digest>,
}

/// The action's own part of the record, borrowed: everything but what it sees. It depends on
/// the lowered graph alone, so a graph kept across runs keeps its digest too.
#[derive(Serialize)]
struct Own<'a> {
    schema: u32,
    kind: ActionKind,
    recipe: RecipeCode,
    params: &'a Recipe,
    env: &'a BTreeMap<String, String>,
}

/// The digest of `action`'s own part of its key: schema, kind, recipe code, parameters and
/// environment, as the JSON of the record's same fields. Encoded into a reused buffer and hashed
/// once (serde_json writes many tiny pieces, which blake3 digests slowly one by one).
pub fn own_part(action: &Action) -> Digest {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let own = Own {
        schema: SCHEMA,
        kind: action.kind(),
        recipe: crate::kind::code::of(action.kind()),
        params: &action.recipe,
        env: &action.env,
    };
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        serde_json::to_writer(&mut *buf, &own).expect("recipes serialise");
        Digest::of_bytes(buf)
    })
}

/// The key: an action's own part (see [`own_part`]) joined with what it sees. Every variable
/// piece is length-prefixed, so no two records encode alike; the own part is what a kept graph
/// saves re-encoding after a change that leaves the graph alone.
pub fn key(own: Digest, seen: &Seen) -> ActionKey {
    fn entries<'s>(
        buf: &mut Vec<u8>,
        field: &[u8],
        sorted: impl ExactSizeIterator<Item = (&'s str, &'s Digest)>,
    ) {
        buf.extend_from_slice(field);
        buf.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
        for (name, digest) in sorted {
            buf.extend_from_slice(&(name.len() as u64).to_le_bytes());
            buf.extend_from_slice(name.as_bytes());
            buf.extend_from_slice(digest.as_bytes());
        }
    }
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    // One buffer hashed once: blake3 takes many small updates slowly.
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        buf.extend_from_slice(b"kbuild action key\0");
        buf.extend_from_slice(&SCHEMA.to_le_bytes());
        buf.extend_from_slice(own.as_bytes());
        buf.extend_from_slice(seen.executor.digest.as_bytes());
        entries(buf, b"inputs", seen.inputs.iter().map(|(n, d)| (*n, d)));
        entries(buf, b"deps", seen.deps.iter().map(|(n, d)| (n.as_ref(), d)));
        ActionKey(Digest::of_bytes(buf))
    })
}

impl KeyRecord {
    pub fn new(action: &Action, seen: Seen) -> KeyRecord {
        KeyRecord {
            schema: SCHEMA,
            kind: action.kind(),
            recipe: crate::kind::code::of(action.kind()),
            params: serde_json::to_value(&action.recipe).expect("recipes serialise"),
            env: (*action.env).clone(),
            executor: (*seen.executor.identity).clone(),
            inputs: (seen.inputs.into_iter())
                .map(|(rel, d)| (rel.to_string(), d))
                .collect(),
            deps: (seen.deps.into_iter())
                .map(|(name, d)| (name.into_owned(), d))
                .collect(),
        }
    }

    /// serde_json writes struct fields in declaration order and maps sorted, so the bytes are stable.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("key records serialise")
    }
}

/// The digest of what the manifest and kernel/ declare for `action` (its kind, parameters,
/// environment and input contents), without what ran it or what its dependencies produced:
/// the content hash inside image tags is made of these (see `tags.rs`).
pub fn declared(action: &Action, inputs: &[(String, Digest)]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(action.kind().as_str().as_bytes());
    h.update(&serde_json::to_vec(&action.recipe).expect("recipes serialise"));
    h.update(&serde_json::to_vec(&*action.env).expect("env serialises"));
    for (rel, digest) in inputs {
        h.update(rel.as_bytes());
        h.update(digest.as_bytes());
    }
    Digest::from_bytes(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Dep, Role};

    fn action(deps: Vec<Dep>) -> Action {
        Action {
            name: "image".into(),
            labels: vec![],
            recipe: Recipe::Snapshot,
            inputs: vec!["kernel/config".into()],
            deps,
            env: Default::default(),
            arch: None,
            builder: None,
        }
    }

    #[test]
    fn two_dependencies_in_one_role_both_have_a_key_name() {
        let dep = |role, id| Dep {
            role,
            id: ActionId(id),
        };
        let action = action(vec![
            dep(Role::Layer, 0),
            dep(Role::Tree, 1),
            dep(Role::Layer, 2),
            dep(Role::Layer, 3),
        ]);
        assert_eq!(dep_names(&action), ["layer", "tree", "layer#2", "layer#3"]);
    }

    #[test]
    fn every_part_of_what_an_action_sees_enters_its_key() {
        let action = action(vec![Dep {
            role: Role::Tree,
            id: ActionId(0),
        }]);
        let seen = Seen::gather(
            &action,
            |_| Some(Digest::of_bytes(b"tree")),
            |rel| Ok::<_, ()>(Digest::of_bytes(rel.as_bytes())),
            || Ok(Known::new(Identity::Kbuild)),
        )
        .unwrap()
        .unwrap();
        let own = own_part(&action);
        let key = super::key(own, &seen);
        assert_eq!(super::key(own_part(&action), &seen.clone()), key);
        let mut other = seen.clone();
        other.executor = Known::new(Identity::DryRun { tools: vec![] });
        assert_ne!(super::key(own, &other), key, "executor");
        let mut other = seen.clone();
        other.deps[0].1 = Digest::of_bytes(b"other tree");
        assert_ne!(super::key(own, &other), key, "dependency");
        let mut other = seen.clone();
        other.inputs[0].1 = Digest::of_bytes(b"edited");
        assert_ne!(super::key(own, &other), key, "input");
        let record = KeyRecord::new(&action, seen);
        assert_eq!(record.executor, Identity::Kbuild);
        let unknown = Seen::gather(
            &action,
            |_| None,
            |_| Ok::<_, ()>(Digest::of_bytes(b"")),
            || Ok(Known::new(Identity::Kbuild)),
        );
        assert!(unknown.unwrap().is_none(), "a dependency yet to run");
    }
}
