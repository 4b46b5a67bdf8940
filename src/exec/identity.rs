//! Who runs an action's commands, as a typed value: what enters the action's key, what `why`
//! compares, and what a kept build directory checks before make reuses its objects.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The identity of an executor for one toolset.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "executor", rename_all = "kebab-case")]
pub enum Identity {
    /// kbuild does the action itself (fetch, tars, OCI): its own code is in the recipe part.
    Kbuild,
    /// Host programs, by the name the recipe asks for (`ld`, `gcc -print-prog-name=cc1`).
    /// The resolved path is left out: the same bytes at another path build the same kernel.
    Host { programs: BTreeMap<String, Program> },
    /// A builder image: the reference the manifest names and the content ID it resolves to.
    Docker { image: String, id: String },
    /// Tests: nothing runs, so the names of the tools stand for them.
    DryRun { tools: Vec<String> },
}

/// An identity with its digest, made once per toolset and shared by every action of it: keys
/// hold the digest, so a key is not 25 programs' worth of JSON longer for each action.
#[derive(Clone, Debug)]
pub struct Known {
    pub identity: std::sync::Arc<Identity>,
    pub digest: Digest,
}

impl Known {
    pub fn new(identity: Identity) -> Known {
        Known {
            digest: identity.digest(),
            identity: std::sync::Arc::new(identity),
        }
    }
}

/// What one program of a host toolset is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Program {
    /// The blake3 of the file `PATH` resolves the name to.
    File(Digest),
    /// Not on `PATH` (pahole, optional): absent is an input too, as Kconfig writes it down.
    Absent,
    /// On `PATH` but unreadable: never equal to a readable file.
    Unreadable,
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Program::File(digest) => write!(f, "blake3 {}", digest.short()),
            Program::Absent => f.write_str("absent"),
            Program::Unreadable => f.write_str("unreadable"),
        }
    }
}

impl Identity {
    /// One digest of the whole identity, for records that only ask "the same as before?".
    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&serde_json::to_vec(self).expect("identities serialise"))
    }

    /// The programs of a host identity.
    pub fn programs(&self) -> Option<&BTreeMap<String, Program>> {
        match self {
            Identity::Host { programs } => Some(programs),
            _ => None,
        }
    }

    /// `image@id` of a builder image, short enough to read.
    pub fn builder(&self) -> Option<String> {
        let Identity::Docker { image, id } = self else {
            return None;
        };
        let id = id.strip_prefix("sha256:").unwrap_or(id);
        Some(format!("{image}@{}", &id[..id.len().min(12)]))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Kbuild => f.write_str("kbuild"),
            Identity::Host { programs } => {
                write!(
                    f,
                    "host ({} programs, {})",
                    programs.len(),
                    self.digest().short()
                )
            }
            Identity::Docker { image, id } => write!(f, "docker image {image} ({id})"),
            Identity::DryRun { tools } => write!(f, "dry run ({})", tools.join(",")),
        }
    }
}

/// What an executor may ask about files while it identifies itself: their digests and a
/// program's answer to a question, both remembered across runs by whoever implements it (the
/// stat cache), so that a null build costs `stat` calls. Executors see no more of kbuild.
pub trait Probe {
    /// The content digest of the file at `path`.
    fn digest(&mut self, path: &Path) -> std::io::Result<Digest>;

    /// The answer of the program at `path` to `question`, from `ask` when not remembered.
    fn answer(&mut self, path: &Path, question: &str, ask: &mut dyn FnMut() -> String) -> String;

    /// What `tool` was found to be earlier in this pass: toolsets share most of their
    /// programs, and each is looked up on `PATH` once.
    fn program(&self, _tool: &str) -> Option<Program> {
        None
    }

    /// Remembers what `tool` is, for the rest of this pass.
    fn remember_program(&mut self, _tool: &str, _state: &Program) {}

    /// Where `PATH` finds `program`: a compiler is looked for once per question asked of it.
    fn which(&mut self, program: &str) -> Option<std::path::PathBuf> {
        which(program)
    }
}

/// Finds `program` on `PATH` as the shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_differ_where_a_program_does() {
        let host = |state| Identity::Host {
            programs: BTreeMap::from([("ld".to_string(), state)]),
        };
        let a = host(Program::File(Digest::of_bytes(b"ld 2.40")));
        let b = host(Program::File(Digest::of_bytes(b"ld 2.41")));
        assert_ne!(a.digest(), b.digest());
        assert_ne!(a.digest(), host(Program::Absent).digest());
        assert_eq!(a.digest(), a.clone().digest());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Identity>(&json).unwrap(), a);
    }
}
