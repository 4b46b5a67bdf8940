//! `why` in a kernel maintainer's terms: a changed config file is the options that changed, a
//! changed patch is its name and the files it touches. The key records hold only digests, so
//! the text of each config and patch a record names is kept beside the records
//! (`keys/inputs/`), and the old text is read from there when the file changes.

use std::collections::BTreeSet;

use super::explain::Reason;

/// How many options a reason lists before it says how many more changed.
const SHOWN: usize = 4;

/// Whether `path` is a config or a patch whose text `why` explains.
pub fn explains(path: &str) -> bool {
    is_patch(path) || is_config(path)
}

fn is_patch(path: &str) -> bool {
    path.ends_with(".patch") || path.ends_with(".diff")
}

fn is_config(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("config") || name.ends_with(".config") || name.ends_with("defconfig")
}

/// Refines a file reason with the old and new texts of the file, where they are known.
pub fn refine(reason: Reason, old: Option<&str>, new: Option<&str>) -> Reason {
    let path = match &reason {
        Reason::FileChanged { path }
        | Reason::FileAdded { path }
        | Reason::FileRemoved { path } => path.clone(),
        _ => return reason,
    };
    if is_patch(&path) {
        let how = match &reason {
            Reason::FileAdded { .. } => "added",
            Reason::FileRemoved { .. } => "removed",
            _ => "changed",
        };
        let Some(text) = new.or(old) else {
            return reason;
        };
        return Reason::PatchChanged {
            path,
            how: how.into(),
            files: touched(text),
        };
    }
    if is_config(&path)
        && let (Some(old), Some(new)) = (old, new)
    {
        let changes = option_changes(old, new);
        if changes.is_empty() {
            // Comments or order only: the file's digest changed, its meaning did not.
            return reason;
        }
        let more = changes.len().saturating_sub(SHOWN);
        return Reason::OptionsChanged {
            path,
            changes: changes.into_iter().take(SHOWN).collect(),
            more,
        };
    }
    reason
}

/// `CONFIG_X: n → y` for every option whose setting differs, in symbol order.
fn option_changes(old: &str, new: &str) -> Vec<String> {
    let (old, new) = (crate::kconfig::parse(old), crate::kconfig::parse(new));
    let symbols: BTreeSet<&String> = old.settings.keys().chain(new.settings.keys()).collect();
    symbols
        .into_iter()
        .filter_map(|symbol| {
            let value = |c: &crate::kconfig::Config| {
                c.settings
                    .get(symbol)
                    .map_or("unset".to_string(), |s| s.value.clone())
            };
            let (a, b) = (value(&old), value(&new));
            (a != b).then(|| format!("{symbol}: {a} → {b}"))
        })
        .collect()
}

/// The files a patch touches, from its `diff --git` or `+++` lines.
fn touched(patch: &str) -> Vec<String> {
    let mut files = BTreeSet::new();
    for line in patch.lines() {
        let path = match line.strip_prefix("diff --git a/") {
            Some(rest) => rest.split(" b/").next(),
            None => line.strip_prefix("+++ b/"),
        };
        if let Some(path) = path {
            files.insert(path.trim().to_string());
        }
    }
    files.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(path: &str) -> Reason {
        Reason::FileChanged { path: path.into() }
    }

    #[test]
    fn a_config_change_is_the_options_that_changed() {
        let old = "CONFIG_DEBUG_KERNEL=y\n# CONFIG_PRINTK_TIME is not set\n";
        let new = "CONFIG_DEBUG_KERNEL=y\nCONFIG_PRINTK_TIME=y\nCONFIG_KASAN=y\n";
        let reason = refine(changed("kernel/common/config-dbg"), Some(old), Some(new));
        assert_eq!(
            reason.to_string(),
            "CONFIG_KASAN: unset → y, CONFIG_PRINTK_TIME: n → y in kernel/common/config-dbg"
        );
    }

    #[test]
    fn many_changes_say_how_many_more() {
        let old = "";
        let new: String = (0..7).map(|i| format!("CONFIG_O{i}=y\n")).collect();
        let reason = refine(changed("kernel/6.6.x/config-x86_64"), Some(old), Some(&new));
        assert!(
            reason
                .to_string()
                .ends_with(" and 3 more in kernel/6.6.x/config-x86_64")
        );
    }

    #[test]
    fn a_comment_only_change_stays_a_file_change() {
        let reason = refine(
            changed("kernel/common/config-dbg"),
            Some("CONFIG_A=y\n"),
            Some("# a comment\nCONFIG_A=y\n"),
        );
        assert_eq!(reason, changed("kernel/common/config-dbg"));
    }

    #[test]
    fn a_patch_change_names_the_files_it_touches() {
        let patch = "Subject: [PATCH] x\n---\ndiff --git a/init/main.c b/init/main.c\n--- a/init/main.c\n+++ b/init/main.c\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/fs/x.c b/fs/x.c\n";
        let reason = refine(
            Reason::FileAdded {
                path: "kernel/6.6.x/patches/0002-x.patch".into(),
            },
            None,
            Some(patch),
        );
        assert_eq!(
            reason.to_string(),
            "patch `kernel/6.6.x/patches/0002-x.patch` added (touches fs/x.c, init/main.c)"
        );
    }

    #[test]
    fn an_unknown_old_text_keeps_the_file_reason() {
        let reason = refine(
            changed("kernel/common/config-dbg"),
            None,
            Some("CONFIG_A=y\n"),
        );
        assert_eq!(reason, changed("kernel/common/config-dbg"));
    }
}
