//! Remote execution: one command run by the cluster behind the remote's Execution service
//! (`--remote-executor`), on an input root made of blobs the local cache already holds.
//!
//! The input root is a manifest (paths, blake3 digests, modes) over the cache's blob store, so
//! its Merkle tree is built from digests kbuild has, each file's remote digest is computed at
//! most once a run, and a blob the server is known to hold (this run) is never asked about or
//! sent again: the second action on a patched tree sends its Directory messages and what
//! differs, not the tree. The answer is input from outside like any remote answer: every output
//! is checked against its digest and written without following a symlink.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::Timestamp;
use prost::Message;

use super::reapi::{self, Blob, TreeEntry};
use super::transport;
use super::{Remote, RemoteError, digest, layout};
use crate::cache::{OutputEntry, OutputManifest};

/// A command to run remotely, as REAPI's `Command` and `Action` carry it.
#[derive(Clone, Debug, Default)]
pub struct RemoteCommand {
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Relative to the input root.
    pub working_directory: String,
    /// Files or directories the command makes, relative to its working directory.
    pub outputs: Vec<String>,
    /// `container-image`, `OSFamily`, `ISA` …
    pub platform: BTreeMap<String, String>,
    /// How long the command may run on the worker.
    pub timeout: Duration,
}

/// What one remote execution cost and gave.
#[derive(Debug)]
pub struct Executed {
    pub result: re::ActionResult,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The server answered from its action cache.
    pub cached: bool,
    /// Bytes and blobs this execution uploaded, and the calls it made.
    pub sent_bytes: u64,
    pub sent_blobs: u64,
    /// This side's time: hashing and sending the inputs, then waiting for the answer.
    pub sending: Duration,
    pub waiting: Duration,
}

impl Executed {
    /// Where the time went, for the action's log: this side's sending and waiting, and within
    /// the wait the worker's own phases (REAPI's metadata timestamps); the rest of the wait is
    /// the cluster's (queue, scheduling, polling). A cached answer has only this side's.
    pub fn phases(&self) -> String {
        let mut said = format!(
            "inputs sent in {:.2} s, answer after {:.2} s",
            self.sending.as_secs_f64(),
            self.waiting.as_secs_f64()
        );
        let Some(m) = self
            .result
            .execution_metadata
            .as_ref()
            .filter(|_| !self.cached)
        else {
            return said;
        };
        let span = |a: &Option<Timestamp>, b: &Option<Timestamp>| {
            Some(seconds(b.as_ref()?) - seconds(a.as_ref()?)).filter(|s| *s >= 0.0)
        };
        let worker = [
            (
                "inputs",
                span(
                    &m.input_fetch_start_timestamp,
                    &m.input_fetch_completed_timestamp,
                ),
            ),
            (
                "command",
                span(
                    &m.execution_start_timestamp,
                    &m.execution_completed_timestamp,
                ),
            ),
            (
                "outputs",
                span(
                    &m.output_upload_start_timestamp,
                    &m.output_upload_completed_timestamp,
                ),
            ),
        ];
        let phases: Vec<String> = worker
            .iter()
            .filter_map(|(name, s)| Some(format!("{name} {:.2} s", (*s)?)))
            .collect();
        if !phases.is_empty() {
            said.push_str(&format!(" (worker: {}", phases.join(", ")));
            if let Some(on_worker) = span(&m.worker_start_timestamp, &m.worker_completed_timestamp)
            {
                let cluster = self.waiting.as_secs_f64() - on_worker;
                said.push_str(&format!("; cluster {:.2} s", cluster.max(0.0)));
            }
            said.push(')');
        }
        said
    }
}

fn seconds(t: &Timestamp) -> f64 {
    t.seconds as f64 + f64::from(t.nanos) / 1e9
}

/// Why a remote execution gave no result: the build itself never fails here (a nonzero exit
/// code is a result), only the cluster or the connection.
pub type ExecuteError = RemoteError;

impl RemoteCommand {
    fn messages(&self, function: super::Function, root: &re::Digest) -> (Blob, Blob) {
        let mut platform: Vec<re::platform::Property> = self
            .platform
            .iter()
            .map(|(name, value)| re::platform::Property {
                name: name.clone(),
                value: value.clone(),
            })
            .collect();
        platform.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        let mut outputs = self.outputs.clone();
        outputs.sort();
        outputs.dedup();
        let command = re::Command {
            arguments: self.args.clone(),
            environment_variables: self
                .env
                .iter()
                .map(|(name, value)| re::command::EnvironmentVariable {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            output_paths: outputs,
            working_directory: self.working_directory.clone(),
            ..Default::default()
        };
        let command = Blob::of(function, &command);
        let action = re::Action {
            command_digest: Some(command.digest.clone()),
            input_root_digest: Some(root.clone()),
            timeout: Some(bazel_remote_apis::google::protobuf::Duration {
                seconds: self.timeout.as_secs() as i64,
                nanos: 0,
            }),
            platform: Some(re::Platform {
                properties: platform,
            }),
            ..Default::default()
        };
        (command, Blob::of(function, &action))
    }
}

/// The outputs of `result` under the output directory `dir` (an action that shares its remote
/// action with another takes its own part only).
pub fn part_of(result: &re::ActionResult, dir: &str) -> re::ActionResult {
    let within =
        |path: &str| path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    let mut part = result.clone();
    part.output_files.retain(|f| within(&f.path));
    part.output_symlinks.retain(|l| within(&l.path));
    part.output_directories.retain(|d| within(&d.path));
    part
}

impl RemoteCommand {
    /// An action no worker took is most often a platform no worker offers: the error says
    /// which platform it asked for.
    fn naming_platform(&self, e: RemoteError) -> RemoteError {
        match e {
            RemoteError::Unclaimed(m) => {
                let platform: Vec<String> = (self.platform.iter())
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                RemoteError::Unclaimed(format!(
                    "{m}: does any worker offer the platform {}?",
                    platform.join(", ")
                ))
            }
            e => e,
        }
    }
}

impl Remote {
    /// Runs `command` remotely on the input root `inputs` (whose files the local cache holds)
    /// and gives its result with stdout and stderr. The action's digest is the action-cache
    /// key: the server answers a repeated action from its cache, and merges identical ones.
    /// `queue` bounds the time the action may wait for a worker (a platform nobody offers).
    pub fn execute(
        &self,
        command: &RemoteCommand,
        (inputs, queue): (&OutputManifest, Duration),
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<Executed, ExecuteError> {
        if !self.is_usable() {
            return Err(RemoteError::Unreachable(
                "the remote is off for this run".into(),
            ));
        }
        let started = std::time::Instant::now();
        let files: Vec<&OutputEntry> = inputs
            .entries()
            .iter()
            .filter(|e| e.symlink.is_none())
            .collect();
        // A patched tree is 80,000 files: hashed (once a run) in parallel, at the run's
        // priority (the remote action waits for it).
        let digests: Vec<re::Digest> = {
            use rayon::prelude::*;
            self.transfers.install(|| {
                files
                    .par_iter()
                    .map(|e| self.remote_digest(e))
                    .collect::<Result<_, _>>()
            })?
        };
        let by_entry: BTreeMap<(crate::digest::Digest, bool), &re::Digest> = files
            .iter()
            .zip(&digests)
            .map(|(e, d)| ((e.digest, e.executable), d))
            .collect();
        let tree = reapi::tree(self.function, inputs, |e| {
            by_entry
                .get(&(e.digest, e.executable))
                .map_or_else(re::Digest::default, |d| (*d).clone())
        });
        let root = Blob::of(
            self.function,
            tree.root.as_ref().expect("a tree has a root"),
        );
        let mut small: Vec<Blob> = tree
            .children
            .iter()
            .map(|d| Blob::of(self.function, d))
            .collect();
        let (command_blob, action) = command.messages(self.function, &root.digest);
        small.extend([root, command_blob, action.clone()]);
        let sent = self.send_inputs(&files, &digests, &small)?;
        let sending = started.elapsed();
        let wait = (command.timeout + Duration::from_secs(120), queue);
        let response = self
            .transport
            .execute(self.function, &action.digest, wait, cancel)
            .map_err(|e| command.naming_platform(e))?;
        let waiting = started.elapsed() - sending;
        if let Some(status) = response.status.filter(|s| s.code != 0) {
            return Err(RemoteError::Unreachable(format!(
                "the cluster ran no result: code {} ({})",
                status.code, status.message
            )));
        }
        let result = response
            .result
            .ok_or_else(|| RemoteError::Invalid("an ExecuteResponse without a result".into()))?;
        let log = |d: &Option<re::Digest>| match d {
            Some(d) if d.size_bytes > 0 => self.read_small(d),
            _ => Ok(Vec::new()),
        };
        Ok(Executed {
            stdout: log(&result.stdout_digest)?,
            stderr: log(&result.stderr_digest)?,
            result,
            cached: response.cached_result,
            sent_bytes: sent.0,
            sent_blobs: sent.1,
            sending,
            waiting,
        })
    }

    /// Uploads the blobs of an input root and its messages that the server lacks; the bytes
    /// and blobs sent.
    fn send_inputs(
        &self,
        files: &[&OutputEntry],
        digests: &[re::Digest],
        small: &[Blob],
    ) -> Result<(u64, u64), RemoteError> {
        let mut wanted: Vec<re::Digest> = small.iter().map(|b| b.digest.clone()).collect();
        wanted.extend(digests.iter().cloned());
        wanted.sort_by(|a, b| a.hash.cmp(&b.hash));
        wanted.dedup();
        let missing = self.missing(wanted)?;
        let paths: Vec<std::path::PathBuf> = files
            .iter()
            .map(|e| self.cache.blobs.path(e.digest, e.executable))
            .collect();
        let small: Vec<&Blob> = small.iter().collect();
        self.send_missing(
            &missing,
            digests.iter().zip(paths.iter().map(|p| p.as_path())),
            &small,
        )
    }

    /// Writes the outputs of a remote result into `dest` (which must not exist), each file
    /// checked against its digest; directories come from their `Tree`s, checked as a cache hit's
    /// tree is (names, no file used as a directory, no symlink leading out). A result refused
    /// part way leaves no `dest`: nothing half written is there for anyone to take.
    pub fn fetch_outputs(&self, result: &re::ActionResult, dest: &Path) -> Result<(), RemoteError> {
        let fetched = self.fetch_outputs_into(result, dest);
        if fetched.is_err() {
            let _ = std::fs::remove_dir_all(dest);
        }
        fetched
    }

    fn fetch_outputs_into(
        &self,
        result: &re::ActionResult,
        dest: &Path,
    ) -> Result<(), RemoteError> {
        let paths = (result.output_files.iter().map(|f| &f.path))
            .chain(result.output_symlinks.iter().map(|l| &l.path))
            .chain(result.output_directories.iter().map(|d| &d.path));
        for path in paths {
            if path.starts_with('/')
                || path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
            {
                return Err(RemoteError::Invalid(format!(
                    "the remote result names an output `{path}`"
                )));
            }
        }
        layout::create_root(dest).map_err(transport::io_error("creating the output directory"))?;
        let mut entries = Vec::new();
        for file in &result.output_files {
            entries.push(TreeEntry::File {
                path: file.path.clone(),
                digest: file.digest.clone().unwrap_or_default(),
                executable: file.is_executable,
            });
        }
        for link in &result.output_symlinks {
            entries.push(TreeEntry::Symlink {
                path: link.path.clone(),
                target: link.target.clone(),
            });
        }
        for dir in &result.output_directories {
            let digest = dir.tree_digest.as_ref().ok_or_else(|| {
                RemoteError::Invalid(format!("the output `{}` has no tree", dir.path))
            })?;
            let tree = re::Tree::decode(self.read_small(digest)?.as_slice())
                .map_err(|e| RemoteError::Invalid(format!("the tree of `{}`: {e}", dir.path)))?;
            let inner = reapi::entries(self.function, &tree)
                .map_err(|e| RemoteError::Invalid(format!("the tree of `{}`: {e}", dir.path)))?;
            for entry in inner {
                entries.push(match entry {
                    TreeEntry::File {
                        path,
                        digest,
                        executable,
                    } => TreeEntry::File {
                        path: format!("{}/{path}", dir.path),
                        digest,
                        executable,
                    },
                    TreeEntry::Symlink { path, target } => TreeEntry::Symlink {
                        path: format!("{}/{path}", dir.path),
                        target,
                    },
                });
            }
        }
        let layout = layout::check_shape(&entries)
            .and_then(|layout| {
                let total = layout::declared_bytes(layout.files.iter().map(|f| f.1));
                layout::check_room(dest, total).map(|()| layout)
            })
            .map_err(|e| RemoteError::Invalid(format!("the remote outputs: {e}")))?;
        for (path, digest, executable) in layout.files {
            self.fetch_file(dest, path, digest, executable)?;
        }
        layout::make_links(dest, &layout.links)
            .map_err(transport::io_error("making an output symlink"))
    }

    /// One output file, streamed into place and checked against its digest.
    fn fetch_file(
        &self,
        dest: &Path,
        path: &str,
        digest: &re::Digest,
        executable: bool,
    ) -> Result<(), RemoteError> {
        let limit = u64::try_from(digest.size_bytes).unwrap_or(0);
        let (at, (got, _)) = self
            .write_bounded((dest, path), digest, "", |w| {
                self.timed(limit, || self.transport.read_blob(self.function, digest, w))
            })
            .map_err(|e| e.within(|m| format!("`{path}`: {m}")))?;
        if got != *digest {
            return Err(RemoteError::Invalid(format!(
                "`{path}` does not match its digest {}",
                digest::show(digest)
            )));
        }
        self.stats.down.fetch_add(limit, Ordering::Relaxed);
        if executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))
                .map_err(transport::io_error("making an output executable"))?;
        }
        Ok(())
    }
}
