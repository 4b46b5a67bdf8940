//! kbuild: a declarative, content-addressed build engine for LinuxKit-style kernels.
//!
//! The modules are listed in data-flow order: each uses only modules listed above it (checked
//! by tests/import_graph.rs), from the leaves that know nothing of kbuild's types to the
//! command line. doc/design.md draws the same order.

// Leaves: formats and facts of the outside world.
/// Target architectures and their spellings (kernel, image, make, toolchain).
pub mod arch;
/// Deterministic tarballs.
pub mod archive;
/// Typed content digests: blake3 for what kbuild stores, sha256 for what upstream publishes.
pub mod digest;
/// What Debian's package database says about a file.
pub mod dpkg;
/// Whether a program needs a dynamic loader.
pub mod elf;
/// Atomic writes and small filesystem helpers; the error of state that could not be saved.
pub mod fsutil;
/// Saved state between runs: where each file lives, one versioned format.
pub mod saved;
/// Kernel config files as data.
pub mod kconfig;
/// What each kind of action is, declared once.
pub mod kind;
/// The ctimes of kbuild's own links, which let a later check trust a file without hashing it.
pub mod ledger;
/// The validated workspace model.
pub mod model;
/// Unpacking hostile source tarballs.
pub mod unpack;
/// Deterministic initramfs archives (newc cpio).
pub mod cpio;
/// KTAP, the kernel's test output, read from a console.
pub mod ktap;
/// What a test found, check by check.
pub mod verdict;
/// The machine each arch's kernels are boot-tested on.
pub mod machine;

// From the manifest to a graph of actions.
/// Target labels and patterns.
pub mod label;
/// OCI descriptors, manifests, indexes, the image layout, and a registry client.
pub mod oci;
/// SPDX 2.3 bills of materials.
pub mod sbom;
/// In-toto statements and SLSA v1 provenance.
pub mod provenance;
/// Typed actions: a kind, its recipe's parameters, inputs and dependencies.
pub mod action;
/// Executors: the host, Docker builder containers, a dry run.
pub mod exec;
/// File digests trusted while a file's stat data is unchanged.
pub mod statcache;
/// Action keys: what an action sees, its record, and why two records differ.
pub mod key;
/// Reading kernel.kdl (KDL v2) into the model, with spanned diagnostics.
pub mod manifest;
/// The local cache: blobs, the action cache, key records, trees, per-workspace state.
pub mod cache;
/// The action graph.
pub mod graph;
/// Lowering targets into the action graph.
pub mod plan;

// Running the graph.
/// What a run tells the people and programs watching it.
pub mod report;
/// The scheduler: one thread owns the state, workers run actions.
pub mod schedule;
/// The remote cache over REAPI (gRPC) or HTTP.
pub mod remote;
/// `kbuild worker`: a Remote Workers API bot that runs REAPI actions.
pub mod worker;
/// Image references and the hash inside them.
pub mod tags;
/// The lowered graph kept across runs.
pub mod lowered;
/// Maintainer commands: bump, pin, import, update-refs, kconfig split, patch checks.
pub mod maint;
/// What each kind of action does.
pub mod recipe;
/// Decides every action (cached, remote, to run) and runs the misses.
pub mod engine;
/// The run fingerprint that answers a null build.
pub mod fingerprint;
/// `out/`: links to each target's images and tags.
pub mod outlinks;
/// A build as a library call: lower, run, heal, link out/, record.
pub mod build;
/// Rebuilding cached results with the cache bypassed, and comparing (`kbuild verify`).
pub mod verify;
/// The command line.
pub mod cli;
