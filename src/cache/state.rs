//! What the last run of a workspace did: per action name its key, output digest, outcome and reason.

use std::collections::BTreeMap;
use std::io::Read;

use std::path::{Path, PathBuf};

use super::{Cache, CacheError, io_err, write_atomic};
use crate::digest::Digest;
use crate::key::ActionKey;

#[derive(Clone, PartialEq, Debug)]
pub struct RunEntry {
    pub key: ActionKey,
    /// The output digest, when the action succeeded.
    pub output: Option<Digest>,
    /// `cached`, `executed` or `failed`.
    pub outcome: String,
    /// Why it executed, in words.
    pub reason: Option<String>,
}

/// The last run's entries by action name. Kept in one file so a null build reads it once.
#[derive(Clone, Debug, Default)]
pub struct LastRun {
    pub actions: BTreeMap<String, RunEntry>,
}

impl LastRun {
    /// One line per action: name, key, output (or `-`), outcome, reason, separated by tabs.
    /// A plain format because a null build reads it whole and JSON parsing dominated that.
    fn encode(&self) -> String {
        let mut out = String::with_capacity(self.actions.len() * 200);
        for (name, e) in &self.actions {
            let output = e.output.map_or_else(|| "-".to_string(), |d| d.to_hex());
            let reason = e.reason.as_deref().unwrap_or("").replace(['\t', '\n'], " ");
            out.push_str(&format!(
                "{name}\t{}\t{output}\t{}\t{reason}\n",
                e.key.0.to_hex(),
                e.outcome
            ));
        }
        out
    }

    pub(super) fn decode(text: &str) -> LastRun {
        let mut actions = Vec::new();
        for line in text.split_terminator('\n') {
            let mut fields = line.splitn(5, '\t');
            let (Some(name), Some(key), Some(output), Some(outcome), Some(reason)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let Some(key) = Digest::from_hex(key) else {
                continue;
            };
            let entry = RunEntry {
                key: ActionKey(key),
                output: Digest::from_hex(output),
                outcome: outcome.to_string(),
                reason: (!reason.is_empty()).then(|| reason.to_string()),
            };
            actions.push((name.to_string(), entry));
        }
        // Written sorted: collected whole, the map is built in one pass, not insert by insert.
        LastRun {
            actions: actions.into_iter().collect(),
        }
    }
}

impl Cache {
    /// The state file of the workspace at `root`: named by its path, which never enters a key.
    fn state_path(&self, workspace: &Path) -> PathBuf {
        let id = Digest::of_bytes(workspace.as_os_str().as_encoded_bytes());
        self.dir("state")
            .join(format!("{}.last-run", &id.to_hex()[..16]))
    }

    /// Marks the workspace's last run as now: gc takes every entry it names as just used.
    pub fn touch_state(&self, workspace: &Path) {
        if let Ok(file) = std::fs::File::options()
            .append(true)
            .open(self.state_path(workspace))
        {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }

    pub fn load_state(&self, workspace: &Path) -> LastRun {
        let mut text = String::new();
        let Ok(mut file) = std::fs::File::open(self.state_path(workspace)) else {
            return LastRun::default();
        };
        if file.read_to_string(&mut text).is_err() {
            return LastRun::default();
        }
        LastRun::decode(&text)
    }

    /// Merges `updates` into the stored state under a lock, so that two concurrent runs on one
    /// workspace each keep what they did.
    pub fn save_state(
        &self,
        workspace: &Path,
        updates: &BTreeMap<String, RunEntry>,
    ) -> Result<(), CacheError> {
        let path = self.state_path(workspace);
        let lock_path = path.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        let mut state = self.load_state(workspace);
        for (name, entry) in updates {
            state.actions.insert(name.clone(), entry.clone());
        }
        write_atomic(&path, state.encode().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let mut run = LastRun::default();
        let entry = |output, reason: Option<&str>| RunEntry {
            key: ActionKey(Digest::of_bytes(b"k")),
            output,
            outcome: "executed".into(),
            reason: reason.map(String::from),
        };
        run.actions.insert(
            "compile //6.6.x:amd64".into(),
            entry(
                Some(Digest::of_bytes(b"o")),
                Some("the file `a\tb` changed"),
            ),
        );
        run.actions
            .insert("tag //6.6.x:amd64".into(), entry(None, None));
        let back = LastRun::decode(&run.encode());
        assert_eq!(
            back.actions["tag //6.6.x:amd64"],
            run.actions["tag //6.6.x:amd64"]
        );
        assert_eq!(
            back.actions["compile //6.6.x:amd64"].reason.as_deref(),
            Some("the file `a b` changed")
        );
    }
}
