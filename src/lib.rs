//! kbuild: a declarative, content-addressed build engine for LinuxKit-style kernels.
//!
//! Data flows through the modules in this order: [`manifest`] reads `kernel.kdl` into a
//! [`model`]; [`label`] picks targets; [`plan`] lowers them into an [`action`] [`graph`];
//! [`key`] names each action by its inputs; [`cache`] answers what it can; [`schedule`] and
//! [`engine`] run the rest through an [`exec`] executor with the [`recipe`] of each kind;
//! [`explain`] says why something ran; [`cli`] is the command line.

pub mod action;
pub mod arch;
pub mod archive;
pub mod build;
pub mod cache;
pub mod cli;
pub mod digest;
pub mod dpkg;
pub mod elf;
pub mod engine;
pub mod exec;
pub mod fingerprint;
pub mod fsutil;
pub mod graph;
pub mod kconfig;
pub mod key;
pub mod kind;
pub mod label;
pub mod ledger;
pub mod lowered;
pub mod maint;
pub mod manifest;
pub mod model;
pub mod oci;
pub mod outlinks;
pub mod plan;
pub mod recipe;
pub mod remote;
pub mod report;
pub mod schedule;
pub mod statcache;
pub mod tags;
pub mod unpack;
