//! Executors run an action's commands: on the host, in Docker builder containers, or not at
//! all (dry run) for tests.

mod cancel;
pub mod docker;
mod dry_run;
mod executor;
pub mod guard;
mod host;
mod identity;

pub use cancel::Cancel;
pub use docker::Docker;
pub use dry_run::DryRun;
pub use executor::{ExecError, Executor, Invocation, Toolset, in_background, lower_own_priority};
pub use host::Host;
pub use identity::{Identity, Known, Probe, Program, which};
