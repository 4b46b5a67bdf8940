//! The keyer: what an action sees, gathered for its key. It reads each workspace input once per
//! pass (through the stat cache, so a null build hashes nothing), asks the executor once per
//! toolset who would run the commands, and hands the engine a [`Seen`] to key and record. It
//! knows actions and their dependencies' outputs, never the cache or the schedule.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::record::Seen;
use crate::action::{Action, ActionId, Recipe};
use crate::digest::Digest;
use crate::exec::{Executor, Identity, Known, Toolset};
use crate::kind::ActionKind;
use crate::model::BuildSystem;
use crate::statcache::StatCache;

/// Why computing a key failed: an input file is unreadable, or the executor cannot say who
/// would run the action (no daemon, no builder image).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    #[error("cannot read input `{path}` of `{action}`: {source}")]
    #[diagnostic(help("the manifest refers to this file; restore it or change kernel.kdl"))]
    Input {
        action: String,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot tell who runs `{action}`: {message}")]
    #[diagnostic(help("{hint}"))]
    Executor {
        action: String,
        message: String,
        hint: String,
    },
}

/// An action's kind, whether it strips and whether it builds with CMake (a tool), its
/// environment (by pointer: the planner shares one per series and arch, and the graph, which
/// holds them all, outlives the keyer, so no address is reused), arch and builder: all that
/// decides its toolset. Borrowed from the graph: made for every action a plan decides.
type Shape<'a> = (
    ActionKind,
    (bool, bool),
    usize,
    Option<crate::arch::Arch>,
    Option<&'a str>,
);

fn shape(action: &Action) -> Shape<'_> {
    let tool = match &action.recipe {
        Recipe::Tool(spec) => (spec.strip, spec.build == BuildSystem::Cmake),
        _ => (false, false),
    };
    (
        action.kind(),
        tool,
        // In-process actions each have an empty environment of their own: all alike.
        if action.env.is_empty() {
            0
        } else {
            Arc::as_ptr(&action.env) as usize
        },
        action.arch,
        action.builder.as_deref(),
    )
}

/// The keyer of one plan or run pass.
pub struct Keyer<'a> {
    workspace: &'a Path,
    exec: &'a dyn Executor,
    pub stat: StatCache,
    identities: HashMap<Toolset, Known>,
    /// The identity by what `toolset_of` reads of an action, so that its list of tool names
    /// (forty strings for a compile) is made once per shape, not once per action.
    by_shape: HashMap<Shape<'a>, Known>,
    /// The identity of what kbuild does in-process, made once.
    kbuild: Known,
    /// Input digests of this pass: many actions read the same config.
    input_digests: HashMap<String, Digest>,
}

impl<'a> Keyer<'a> {
    pub fn new(workspace: &'a Path, exec: &'a dyn Executor, stat: StatCache) -> Keyer<'a> {
        Keyer {
            workspace,
            exec,
            stat,
            identities: HashMap::new(),
            by_shape: HashMap::new(),
            kbuild: Known::new(Identity::Kbuild),
            input_digests: HashMap::new(),
        }
    }

    fn identity(&mut self, action: &'a Action) -> Result<Known, KeyError> {
        let shape = shape(action);
        if let Some(id) = self.by_shape.get(&shape) {
            return Ok(id.clone());
        }
        let id = self.identity_of_toolset(action)?;
        self.by_shape.insert(shape, id.clone());
        Ok(id)
    }

    fn identity_of_toolset(&mut self, action: &Action) -> Result<Known, KeyError> {
        let set = super::toolset::toolset_of(action);
        if set.tools.is_empty() {
            return Ok(self.kbuild.clone());
        }
        if let Some(id) = self.identities.get(&set) {
            return Ok(id.clone());
        }
        let id = self
            .exec
            .identity(&set, &mut self.stat)
            .map_err(|e| KeyError::Executor {
                action: action.name.clone(),
                hint: e
                    .hint()
                    .unwrap_or("check the executor and run again")
                    .to_string(),
                message: e.to_string(),
            })?;
        let id = Known::new(id);
        self.identities.insert(set, id.clone());
        Ok(id)
    }

    /// What `action` sees, or `None` while a dependency's output is unknown (`output_of` says
    /// each dependency's output digest, if known).
    pub fn seen(
        &mut self,
        action: &'a Action,
        output_of: impl Fn(ActionId) -> Option<Digest>,
    ) -> Result<Option<Seen<'a>>, KeyError> {
        let (stat, known, workspace) = (&mut self.stat, &mut self.input_digests, self.workspace);
        let digest_of = |rel: &str| match known.get(rel) {
            Some(digest) => Ok(*digest),
            None => {
                let digest =
                    stat.digest(&workspace.join(rel))
                        .map_err(|source| KeyError::Input {
                            action: action.name.clone(),
                            path: rel.to_string(),
                            source,
                        })?;
                known.insert(rel.to_string(), digest);
                Ok(digest)
            }
        };
        let kbuild = self.kbuild.clone();
        let seen = Seen::gather(action, output_of, digest_of, || Ok(kbuild))?;
        let Some(mut seen) = seen else {
            return Ok(None);
        };
        seen.executor = self.identity(action)?;
        Ok(Some(seen))
    }

    /// Every workspace file whose digest entered a key, and every toolchain whose identity
    /// did: what a null build later checks for change.
    pub fn into_inputs(self) -> (StatCache, Vec<String>, Vec<Toolset>) {
        (
            self.stat,
            self.input_digests.into_keys().collect(),
            self.identities.into_keys().collect(),
        )
    }
}
