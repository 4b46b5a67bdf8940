//! What a worker is handed to execute one action, and what it hands back.

use std::path::PathBuf;
use std::sync::Arc;

use crate::action::{ActionId, Role};
use crate::cache::{Corrupt, OutputManifest};
use crate::exec::Identity;
use crate::key::ActionKey;
use crate::key::explain::Reason;
use crate::remote::Hit;
use crate::report::Expected;

/// What a worker needs to execute one action.
pub struct Job {
    pub(super) key: ActionKey,
    pub(super) reason: Reason,
    pub(super) deps: Vec<(Role, ActionId, Arc<OutputManifest>)>,
    /// The executor identity in the key: a kept build directory made with another is stale.
    pub(super) toolchain: Identity,
    /// The action's own outputs in the remote cache: fetched instead of executing, if it can be.
    pub(super) own: Option<Hit>,
    /// Dependencies whose outputs are only in the remote: fetched before executing.
    pub(super) remote_deps: Vec<(ActionId, ActionKey, Hit)>,
    /// How the last execution of this action went, for progress estimates.
    pub(super) expected: Option<Expected>,
    /// It runs on the remote-execution cluster.
    pub(super) remote: bool,
}

pub enum JobResult {
    Executed {
        manifest: OutputManifest,
        seconds: f64,
    },
    /// Found in the remote cache, verified and stored locally instead of executed.
    Remote { manifest: OutputManifest },
    /// A dependency's outputs could not be fetched from the remote: it must be built here.
    RemoteFailed { dep: ActionId },
    Failed {
        error: String,
        hint: Option<String>,
        log: PathBuf,
        /// A failed test's findings (JSON): the kernel failed, not the machinery.
        findings: Option<String>,
    },
    /// A dependency's cached outputs turned out corrupt; it must be rebuilt first.
    Corrupt { dep: ActionId, corrupt: Corrupt },
}
