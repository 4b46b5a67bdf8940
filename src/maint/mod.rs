//! Maintainer commands: the everyday chores LinuxKit spreads over make targets and scripts.

pub mod bump;
pub mod import;
pub mod kconfig_split;
pub mod patch_lint;
pub mod pin;
pub mod update_refs;
