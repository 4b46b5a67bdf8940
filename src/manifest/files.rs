//! The workspace files a manifest is read from, by name, and the node names they share.

/// The manifest itself.
pub const MANIFEST_FILE: &str = "kernel.kdl";

/// The sources' pins, written by the first fetch of an unpinned source.
pub const LOCK_FILE: &str = "kernel.lock";

/// This machine's own settings and source replacements; never committed.
pub const LOCAL_FILE: &str = "kernel.local.kdl";

/// The pins of sources replaced by installed Debian packages, on this machine.
pub const LOCAL_LOCK_FILE: &str = "kernel.local.lock";

/// The node of kernel.local.kdl that names this machine's remote cache.
pub const REMOTE_CACHE_NODE: &str = "remote-cache";

/// The node of kernel.local.kdl that names this machine's remote-execution cluster.
pub const REMOTE_EXECUTOR_NODE: &str = "remote-executor";
