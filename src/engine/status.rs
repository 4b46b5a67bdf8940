//! Where one action stands in a plan or run.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::key::ActionKey;
use crate::key::explain::Reason;

/// Where one action stands, as plan and run report it.
#[derive(Clone, Debug)]
pub enum Status {
    Pending,
    /// Found in the cache.
    Cached {
        key: ActionKey,
        output: Digest,
    },
    /// Would run (plan) or is running; the key is unknown while a dependency has yet to run.
    WillRun {
        key: Option<ActionKey>,
        reason: Reason,
    },
    Executed {
        key: ActionKey,
        output: Digest,
        reason: Reason,
        seconds: f64,
    },
    /// In the remote cache: taken from there (run), or would be (plan). `reason` says why it
    /// is not in the local cache.
    Remote {
        key: ActionKey,
        output: Digest,
        reason: Reason,
    },
    Failed {
        key: ActionKey,
        reason: Reason,
        error: String,
        hint: Option<String>,
        log: PathBuf,
        /// A failed test's findings (JSON, `crate::verdict::Verdict`): a verdict on the kernel
        /// rather than a failure of the build or the machine.
        findings: Option<String>,
    },
    /// Not run because a dependency failed or the run stopped.
    Skipped,
}

impl Status {
    pub fn output(&self) -> Option<Digest> {
        match self {
            Status::Cached { output, .. }
            | Status::Executed { output, .. }
            | Status::Remote { output, .. } => Some(*output),
            _ => None,
        }
    }

    pub fn key(&self) -> Option<ActionKey> {
        match self {
            Status::Cached { key, .. }
            | Status::Executed { key, .. }
            | Status::Remote { key, .. }
            | Status::Failed { key, .. } => Some(*key),
            Status::WillRun { key, .. } => *key,
            _ => None,
        }
    }
}
