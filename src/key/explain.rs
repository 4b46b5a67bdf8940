//! Why an action runs: the first difference between its last key record and the current one.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::digest::Digest;
use crate::exec::{Identity, Program};
use crate::key::KeyRecord;
use crate::kind::ActionKind;

/// A typed reason, ordered from most to least specific cause.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    NeverBuilt,
    FileChanged {
        path: String,
    },
    FileAdded {
        path: String,
    },
    FileRemoved {
        path: String,
    },
    /// A config file changed these options (`CONFIG_X: n → y`), and `more` besides.
    OptionsChanged {
        path: String,
        changes: Vec<String>,
        more: usize,
    },
    /// The series' source moved: the tarball the last run used, and the one this run uses.
    SourceChanged {
        old: String,
        new: String,
    },
    /// A patch was `added`, `removed` or `changed`; the files it touches.
    PatchChanged {
        path: String,
        how: String,
        files: Vec<String>,
    },
    DependencyChanged {
        dependency: String,
    },
    DependencyWillRun {
        dependency: String,
    },
    ParamChanged {
        param: String,
        old: String,
        new: String,
    },
    EnvChanged {
        var: String,
        old: String,
        new: String,
    },
    ExecutorChanged {
        old: String,
        new: String,
    },
    /// One program of a host toolchain changed, appeared or went away.
    ToolchainChanged {
        program: String,
        old: String,
        new: String,
    },
    /// The builder image behind a reference changed content (or the reference itself).
    BuilderChanged {
        old: String,
        new: String,
    },
    /// kbuild's own part changed: the key schema, a recipe's version or the code behind it.
    RecipeChanged {
        kind: ActionKind,
        what: String,
    },
    /// The key matches the last run, but its cache entry is gone (failed, evicted or corrupt).
    NotInCache,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverBuilt => write!(f, "never built"),
            Reason::FileChanged { path } => write!(f, "the file `{path}` changed"),
            Reason::FileAdded { path } => write!(f, "the file `{path}` was added"),
            Reason::FileRemoved { path } => write!(f, "the file `{path}` was removed"),
            Reason::OptionsChanged {
                path,
                changes,
                more,
            } => {
                write!(f, "{}", changes.join(", "))?;
                if *more > 0 {
                    write!(f, " and {more} more")?;
                }
                write!(f, " in {path}")
            }
            Reason::SourceChanged { old, new } => write!(f, "source changed ({old} → {new})"),
            Reason::PatchChanged { path, how, files } => {
                write!(f, "patch `{path}` {how}")?;
                if !files.is_empty() {
                    write!(f, " (touches {})", files.join(", "))?;
                }
                Ok(())
            }
            Reason::DependencyChanged { dependency } => {
                write!(f, "dependency `{dependency}` produced a new output")
            }
            Reason::DependencyWillRun { dependency } => {
                write!(f, "dependency `{dependency}` will run")
            }
            Reason::ParamChanged { param, old, new } => {
                write!(f, "parameter `{param}` changed ({old} → {new})")
            }
            Reason::EnvChanged { var, old, new } => {
                write!(f, "environment `{var}` changed ({old} → {new})")
            }
            Reason::ExecutorChanged { old, new } => write!(f, "executor changed ({old} → {new})"),
            Reason::ToolchainChanged { program, old, new } => {
                write!(f, "toolchain changed: {program} ({old} → {new})")
            }
            Reason::BuilderChanged { old, new } => {
                write!(f, "builder image changed ({old} → {new})")
            }
            Reason::RecipeChanged { kind, what } => {
                write!(f, "the recipe of {kind} changed ({what})")
            }
            Reason::NotInCache => write!(
                f,
                "its inputs are unchanged but no cache entry exists (failed, interrupted or evicted)"
            ),
        }
    }
}

/// The first program whose state differs between two host identities.
fn diff_programs(old: &Identity, new: &Identity) -> Option<Reason> {
    let (old, new) = (old.programs()?, new.programs()?);
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let show = |p: Option<&Program>| p.map_or("not used".to_string(), Program::to_string);
    names.into_iter().find_map(|program| {
        let (o, n) = (old.get(program), new.get(program));
        (o != n).then(|| Reason::ToolchainChanged {
            program: program.clone(),
            old: show(o),
            new: show(n),
        })
    })
}

/// Explains a miss. `dep_names` maps dependency roles to the action names they stand for.
pub fn explain(
    old: Option<&KeyRecord>,
    new: &KeyRecord,
    dep_names: &BTreeMap<String, String>,
) -> Reason {
    let Some(old) = old else {
        return Reason::NeverBuilt;
    };
    if let Some(reason) = diff_recipe(old, new) {
        return reason;
    }
    if let Some(reason) = diff_files(&old.inputs, &new.inputs) {
        return reason;
    }
    if let Some(reason) = diff_params(&old.params, &new.params, "") {
        return reason;
    }
    if let Some(reason) = diff_env(&old.env, &new.env) {
        return reason;
    }
    if old.executor != new.executor {
        if let (Some(old), Some(new)) = (old.executor.builder(), new.executor.builder()) {
            return Reason::BuilderChanged { old, new };
        }
        if let Some(reason) = diff_programs(&old.executor, &new.executor) {
            return reason;
        }
        return Reason::ExecutorChanged {
            old: old.executor.to_string(),
            new: new.executor.to_string(),
        };
    }
    for (role, digest) in &new.deps {
        if old.deps.get(role) != Some(digest) {
            let dependency = dep_names.get(role).cloned().unwrap_or_else(|| role.clone());
            return Reason::DependencyChanged { dependency };
        }
    }
    Reason::NotInCache
}

/// The first of kbuild's own parts that differs: schema, kind, recipe version, recipe code.
fn diff_recipe(old: &KeyRecord, new: &KeyRecord) -> Option<Reason> {
    let what = if old.schema != new.schema {
        format!("key schema {} → {}", old.schema, new.schema)
    } else if old.kind != new.kind {
        format!("kind {} → {}", old.kind, new.kind)
    } else if old.recipe.version != new.recipe.version {
        format!("version {} → {}", old.recipe.version, new.recipe.version)
    } else if old.recipe.code != new.recipe.code {
        format!(
            "kbuild's code for it: {} → {}",
            old.recipe.code.short(),
            new.recipe.code.short()
        )
    } else {
        return None;
    };
    Some(Reason::RecipeChanged {
        kind: new.kind,
        what,
    })
}

fn diff_files(old: &BTreeMap<String, Digest>, new: &BTreeMap<String, Digest>) -> Option<Reason> {
    for (path, digest) in new {
        match old.get(path) {
            None => return Some(Reason::FileAdded { path: path.clone() }),
            Some(d) if d != digest => return Some(Reason::FileChanged { path: path.clone() }),
            Some(_) => {}
        }
    }
    old.keys()
        .find(|p| !new.contains_key(*p))
        .map(|path| Reason::FileRemoved { path: path.clone() })
}

fn show(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "unset".into(),
        Some(serde_json::Value::String(s)) => format!("`{s}`"),
        Some(v) => v.to_string(),
    }
}

/// Walks both parameter trees and names the first leaf that differs, e.g. `localversion`.
fn diff_params(old: &serde_json::Value, new: &serde_json::Value, path: &str) -> Option<Reason> {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_params(x, y, &child),
                    (x, y) => Some(Reason::ParamChanged {
                        param: child,
                        old: show(x),
                        new: show(y),
                    }),
                }
            })
        }
        _ if old == new => None,
        _ => Some(Reason::ParamChanged {
            param: path.to_string(),
            old: show(Some(old)),
            new: show(Some(new)),
        }),
    }
}

fn diff_env(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Option<Reason> {
    let vars: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    vars.into_iter().find_map(|var| {
        let (a, b) = (old.get(var), new.get(var));
        (a != b).then(|| Reason::EnvChanged {
            var: var.clone(),
            old: a.cloned().unwrap_or_else(|| "unset".into()),
            new: b.cloned().unwrap_or_else(|| "unset".into()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> KeyRecord {
        KeyRecord {
            schema: crate::key::SCHEMA,
            kind: crate::kind::ActionKind::Configure,
            recipe: crate::kind::code::of(crate::kind::ActionKind::Configure),
            params: serde_json::json!({"localversion": "-linuxkit", "arch": "X86_64"}),
            env: BTreeMap::from([("ARCH".into(), "x86_64".into())]),
            executor: Identity::Kbuild,
            inputs: BTreeMap::from([("kernel/6.6.x/config-x86_64".into(), Digest::of_bytes(b"a"))]),
            deps: BTreeMap::from([("tree".into(), Digest::of_bytes(b"t"))]),
        }
    }

    #[test]
    fn names_the_changed_file() {
        let old = record();
        let mut new = record();
        new.inputs
            .insert("kernel/6.6.x/config-x86_64".into(), Digest::of_bytes(b"b"));
        let reason = explain(Some(&old), &new, &BTreeMap::new());
        assert_eq!(
            reason.to_string(),
            "the file `kernel/6.6.x/config-x86_64` changed"
        );
    }

    #[test]
    fn names_the_changed_param_and_dependency() {
        let old = record();
        let mut new = record();
        new.params = serde_json::json!({"localversion": "-linuxkit-dbg", "arch": "X86_64"});
        assert_eq!(
            explain(Some(&old), &new, &BTreeMap::new()).to_string(),
            "parameter `localversion` changed (`-linuxkit` → `-linuxkit-dbg`)"
        );
        let mut new = record();
        new.deps.insert("tree".into(), Digest::of_bytes(b"u"));
        let names = BTreeMap::from([("tree".to_string(), "patch //6.6.x".to_string())]);
        assert_eq!(
            explain(Some(&old), &new, &names).to_string(),
            "dependency `patch //6.6.x` produced a new output"
        );
        assert_eq!(explain(None, &new, &names), Reason::NeverBuilt);
        assert_eq!(explain(Some(&old), &old, &names), Reason::NotInCache);
    }

    #[test]
    fn names_the_builder_image_change() {
        let mut old = record();
        let docker = |id: &str| Identity::Docker {
            image: "kbuild/builder:bookworm".into(),
            id: id.into(),
        };
        old.executor = docker("sha256:0123456789abcdef");
        let mut new = record();
        new.executor = docker("sha256:fedcba9876543210");
        assert_eq!(
            explain(Some(&old), &new, &BTreeMap::new()).to_string(),
            "builder image changed (kbuild/builder:bookworm@0123456789ab → kbuild/builder:bookworm@fedcba987654)"
        );
    }
}
