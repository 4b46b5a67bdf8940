//! What a recipe is, as a key sees it: a version a maintainer bumps when a kind's outputs change
//! in a way its code does not show (a tool it calls behaves differently), and a digest of the
//! code that implements the kind, so that changing a command line, a make variable, a tar layout
//! or an OCI field changes that kind's keys without anyone remembering to bump anything.
//!
//! The digest covers the Rust tokens of the files each kind lists in its own file (`code`),
//! comments and doc comments left out (build.rs makes that normal form of every file a kind's
//! file names): rewording a comment or reformatting keeps every key.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::ActionKind;
use crate::digest::Digest;

mod normal_forms {
    include!(concat!(env!("OUT_DIR"), "/code.rs"));
}

/// The recipe part of a key record.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RecipeCode {
    /// Bumped by hand when the outputs change for a reason outside kbuild's code.
    pub version: u32,
    /// The digest of the code that implements the kind.
    pub code: Digest,
}

/// How commands reach a build: the invocation, its environment, the host executor that runs it.
/// Part of the code of every kind that uses the toolchain.
const COMMANDS: &[&str] = &["recipe/ctx.rs", "exec/executor.rs", "exec/host.rs"];

/// The files whose code decides what an action of `kind` produces.
pub fn files(kind: ActionKind) -> Vec<&'static str> {
    let traits = kind.traits();
    let mut files = traits.code.to_vec();
    if traits.toolchain {
        files.extend_from_slice(COMMANDS);
    }
    files
}

/// The normal form build.rs made of `file`.
fn normal_form(file: &str) -> &'static str {
    normal_forms::NORMAL_FORMS
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
        .unwrap_or_else(|| panic!("build.rs lists no normal form for {file}"))
}

/// The digest of `files`' normal forms (as `normal` gives them), each named, in order.
fn digest_of(files: &[&str], normal: impl Fn(&str) -> &'static str) -> Digest {
    let mut h = blake3::Hasher::new();
    for file in files {
        let normal = normal(file);
        h.update(format!("{file} {}\n", normal.len()).as_bytes());
        h.update(normal.as_bytes());
    }
    Digest::from_bytes(*h.finalize().as_bytes())
}

/// The recipe of `kind`, computed once per process.
pub fn of(kind: ActionKind) -> RecipeCode {
    static ALL: OnceLock<Vec<RecipeCode>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        ActionKind::ALL
            .iter()
            .map(|&k| RecipeCode {
                version: k.traits().version,
                code: digest_of(&files(k), normal_form),
            })
            .collect()
    });
    all[ActionKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("ALL lists every kind")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kinds_files_have_a_normal_form_and_kinds_differ_where_their_code_does() {
        for &kind in ActionKind::ALL {
            let _ = of(kind);
        }
        assert_eq!(
            of(ActionKind::Compile).code,
            of(ActionKind::Install).code,
            "one file implements both"
        );
        assert_ne!(of(ActionKind::Compile).code, of(ActionKind::Configure).code);
        assert_ne!(of(ActionKind::Image).code, of(ActionKind::Package).code);
    }

    #[test]
    fn a_changed_command_line_changes_the_code_of_the_kinds_that_run_it_only() {
        let edited = |file: &str| -> &'static str {
            if file == "recipe/configure.rs" {
                let text = normal_form(file).replacen("\"olddefconfig\"", "\"syncconfig\"", 1);
                assert_ne!(text, normal_form(file), "configure runs olddefconfig");
                Box::leak(text.into_boxed_str())
            } else {
                normal_form(file)
            }
        };
        let changed: Vec<ActionKind> = ActionKind::ALL
            .iter()
            .copied()
            .filter(|&k| digest_of(&files(k), edited) != of(k).code)
            .collect();
        assert_eq!(changed, [ActionKind::Configure, ActionKind::CheckConfig]);
    }

    #[test]
    fn normal_forms_drop_comments_but_keep_code() {
        let (_, compile) = normal_forms::NORMAL_FORMS
            .iter()
            .find(|(f, _)| *f == "recipe/compile.rs")
            .unwrap();
        assert!(
            compile.contains("\"KCFLAGS={map}\""),
            "string literals stay"
        );
        assert!(!compile.contains("reproducible timestamps"), "comments go");
        assert!(!compile.contains("doc"), "doc comments go");
        let (_, kconfig) = normal_forms::NORMAL_FORMS
            .iter()
            .find(|(f, _)| *f == "kconfig.rs")
            .unwrap();
        assert!(kconfig.contains("fn parse"), "code stays");
        assert!(
            kconfig.contains("fn depends_on"),
            "code after a test module stays"
        );
        assert!(!kconfig.contains("mod tests"), "unit tests go");
    }
}
