//! What each kind of action is, declared once: its name, its recipe's version and code, the
//! tools it runs, and what the rest of kbuild does with its results (out/, the remote cache,
//! tags). Every other module asks [`ActionKind::traits`] instead of keeping a list of kinds, so
//! a new kind is a variant here, a file of its own beside this one, its recipe and its lowering;
//! the compiler finds every place that must say something about it.

mod attest;
mod check_config;
pub mod code;
mod compile;
mod configure;
mod fetch;
mod headers;
mod image;
mod index;
mod install;
mod layer;
mod package;
mod patch;
mod sbom;
mod snapshot;
mod tag;
mod test;
mod tool;
mod traits;

use traits::PLAIN;
pub use traits::{OutLink, Traits, Upload};

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    Fetch,
    Patch,
    Snapshot,
    Headers,
    Configure,
    CheckConfig,
    Compile,
    Install,
    Tool,
    Package,
    Layer,
    Image,
    Index,
    Tag,
    Test,
    Sbom,
    Attest,
}

impl ActionKind {
    pub const ALL: &'static [ActionKind] = &[
        ActionKind::Fetch,
        ActionKind::Patch,
        ActionKind::Snapshot,
        ActionKind::Headers,
        ActionKind::Configure,
        ActionKind::CheckConfig,
        ActionKind::Compile,
        ActionKind::Install,
        ActionKind::Tool,
        ActionKind::Package,
        ActionKind::Layer,
        ActionKind::Image,
        ActionKind::Index,
        ActionKind::Tag,
        ActionKind::Test,
        ActionKind::Sbom,
        ActionKind::Attest,
    ];

    /// Everything kbuild knows about the kind, from the kind's own file.
    pub fn traits(self) -> &'static Traits {
        match self {
            ActionKind::Fetch => &fetch::TRAITS,
            ActionKind::Patch => &patch::TRAITS,
            ActionKind::Snapshot => &snapshot::TRAITS,
            ActionKind::Headers => &headers::TRAITS,
            ActionKind::Configure => &configure::TRAITS,
            ActionKind::CheckConfig => &check_config::TRAITS,
            ActionKind::Compile => &compile::TRAITS,
            ActionKind::Install => &install::TRAITS,
            ActionKind::Tool => &tool::TRAITS,
            ActionKind::Package => &package::TRAITS,
            ActionKind::Layer => &layer::TRAITS,
            ActionKind::Image => &image::TRAITS,
            ActionKind::Index => &index::TRAITS,
            ActionKind::Tag => &tag::TRAITS,
            ActionKind::Test => &test::TRAITS,
            ActionKind::Sbom => &sbom::TRAITS,
            ActionKind::Attest => &attest::TRAITS,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.traits().name
    }

    /// Work that no kernel waits for: see [`Traits::background`].
    pub fn is_background(self) -> bool {
        self.traits().background
    }

    /// Whether the action's commands run through the executor (and so depend on its toolchain).
    pub fn uses_toolchain(self) -> bool {
        self.traits().toolchain
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once_and_has_a_name_of_its_own() {
        let mut names: Vec<_> = ActionKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ActionKind::ALL.len());
        for &kind in ActionKind::ALL {
            // The serde name is the kind's name: keys and the JSON views spell it the same.
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}
