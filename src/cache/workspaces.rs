//! The per-workspace areas of a shared cache: workspaces that share a cache keep their own last
//! logs and kernel build directories, under a name derived from the workspace's path.

use std::path::{Path, PathBuf};

use super::Cache;
use crate::digest::Digest;

/// The directory of `workspace` under the cache's `area` (`logs`, `build`): workspaces that
/// share a cache keep their own last logs and kernel build directories.
fn workspace_dir(cache: &Cache, area: &str, workspace: &Path) -> PathBuf {
    let ws = Digest::of_bytes(workspace.as_os_str().as_encoded_bytes()).to_hex()[..16].to_string();
    cache.dir(area).join(ws)
}

/// Where the persistent kernel build directories of `workspace` live.
pub fn build_root(cache: &Cache, workspace: &Path) -> PathBuf {
    workspace_dir(cache, "build", workspace)
}

/// Where the last log of each action of `workspace` is written.
pub fn logs_dir(cache: &Cache, workspace: &Path) -> PathBuf {
    workspace_dir(cache, "logs", workspace)
}

/// The file name of an action's log in a workspace's log directory.
pub fn log_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
