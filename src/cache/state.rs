//! What the last run of a workspace did: per action name its key, output digest, outcome and reason.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Cache, CacheError, io_err, write_atomic};
use crate::digest::Digest;
use crate::key::ActionKey;

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct RunEntry {
    pub key: ActionKey,
    /// The output digest, when the action succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Digest>,
    /// `cached`, `executed` or `failed`.
    pub outcome: String,
    /// Why it executed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The last run's entries by action name. Kept in one file so a null build reads it once.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LastRun {
    pub actions: BTreeMap<String, RunEntry>,
}

impl Cache {
    /// The state file of the workspace at `root`: named by its path, which never enters a key.
    fn state_path(&self, workspace: &Path) -> PathBuf {
        let id = crate::digest::Digest::of_bytes(workspace.as_os_str().as_encoded_bytes());
        self.dir("state")
            .join(format!("{}.json", &id.to_hex()[..16]))
    }

    pub fn load_state(&self, workspace: &Path) -> LastRun {
        let mut text = Vec::new();
        let Ok(mut file) = std::fs::File::open(self.state_path(workspace)) else {
            return LastRun::default();
        };
        if file.read_to_end(&mut text).is_err() {
            return LastRun::default();
        }
        serde_json::from_slice(&text).unwrap_or_default()
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
        write_atomic(
            &path,
            &serde_json::to_vec(&state).expect("state serialises"),
        )
    }
}
