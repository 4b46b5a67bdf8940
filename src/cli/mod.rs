//! The command line: parses arguments, loads the workspace, and prints results.

mod builder;
mod junit;
mod maint;
mod publish;
mod render;
mod sbom;
mod shell;
mod sign;
mod test;
mod verify;
mod upkeep;
mod worker;
mod views;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::build;
use crate::cache::{Cache, EntryCheck};
use crate::engine::{Engine, Status};
use crate::exec::docker::{Endpoints, Mounts};
use crate::exec::{Cancel, Docker, DryRun, Executor, Host};
use crate::graph::Graph;
use crate::label::{self, Label};
use crate::model::Model;
use crate::plan::Goal;
use crate::statcache::StatCache;

#[derive(Parser, Debug)]
#[command(
    name = "kbuild",
    version,
    about = "Content-addressed builds of LinuxKit-style kernels"
)]
pub struct Cli {
    /// Run as if started in DIR (the directory holding kernel.kdl).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The action cache [default: <workspace>/cache].
    #[arg(long, global = true, env = "KBUILD_CACHE", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Who runs the commands [default: the manifest's `executor`, else host].
    #[arg(long, global = true, value_enum, env = "KBUILD_EXECUTOR")]
    executor: Option<ExecutorKind>,
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

/// The remote cache (doc/remote-cache.md). Nothing here enters a key.
#[derive(clap::Args, Debug, Clone)]
struct RemoteArgs {
    /// Share action results with a remote cache: grpc:// or grpcs:// (REAPI v2), http:// or
    /// https:// (the HTTP cache protocol). Extra headers (a token) come from
    /// KBUILD_REMOTE_HEADERS, one `Name: value` a line.
    #[arg(long, global = true, env = "KBUILD_REMOTE_CACHE", value_name = "URL")]
    remote_cache: Option<String>,
    /// The REAPI instance name, or the HTTP path prefix [default: none].
    #[arg(long, global = true, env = "KBUILD_REMOTE_INSTANCE")]
    remote_instance: Option<String>,
    /// Write results to the remote (false: read only, for untrusted builds) [default: true].
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_UPLOAD",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    remote_upload: Option<bool>,
    /// Seconds one remote call may take.
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_TIMEOUT",
        default_value_t = 60
    )]
    remote_timeout: u64,
    /// Transfers to and from the remote at once.
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_TRANSFERS",
        default_value_t = 8
    )]
    remote_transfers: usize,
    /// Sign uploaded results with this ed25519 private key (PKCS#8 PEM), as a trusted writer
    /// does; readers that trust its public key take only signed results.
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_SIGN_KEY",
        value_name = "FILE"
    )]
    remote_sign_key: Option<PathBuf>,
    /// Take from the remote only results signed by a public key in FILE (SPKI PEM); any
    /// other result is a miss.
    #[arg(long, global = true, env = "KBUILD_REMOTE_TRUST", value_name = "FILE")]
    remote_trust: Option<PathBuf>,
    /// Run misses on a remote-execution cluster: grpc:// or grpcs:// (REAPI v2 Execution,
    /// BuildGrid, Buildbarn, BuildBuddy, NativeLink); its action cache serves as the remote
    /// cache when no other is given (doc/remote-execution.md).
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_EXECUTOR",
        value_name = "URL"
    )]
    remote_executor: Option<String>,
    /// Remote executions in flight at once, whatever -j says.
    #[arg(long, global = true, env = "KBUILD_REMOTE_JOBS", default_value_t = 16)]
    remote_jobs: usize,
    /// Which actions run remotely: `auto` all it can but those a kept build directory here
    /// would only update, `always` all it can, `never` none.
    #[arg(long, global = true, value_enum, env = "KBUILD_REMOTE_EXEC", default_value_t = RemoteExecArg::Auto)]
    remote_exec: RemoteExecArg,
    /// When the cluster gives no result (down, a worker lost, a timeout): run the action here
    /// with one warning, or fail it.
    #[arg(long, global = true, value_enum, env = "KBUILD_REMOTE_FALLBACK", default_value_t = FallbackArg::Local)]
    remote_fallback: FallbackArg,
    /// Seconds a remote action may wait for a worker to take it (a platform no worker
    /// offers) before it counts as failed.
    #[arg(
        long,
        global = true,
        env = "KBUILD_REMOTE_QUEUE_TIMEOUT",
        default_value_t = 600,
        value_name = "SECS"
    )]
    remote_queue_timeout: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum RemoteExecArg {
    Always,
    Auto,
    Never,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum FallbackArg {
    Local,
    Fail,
}

impl RemoteArgs {
    /// The remote-execution cluster: `--remote-executor` or `KBUILD_REMOTE_EXECUTOR` (empty:
    /// none), else the machine's `remote-executor` in kernel.local.kdl.
    fn executor(&self, root: &std::path::Path) -> miette::Result<Option<String>> {
        match &self.remote_executor {
            Some(url) => Ok(Some(url.clone()).filter(|u| !u.is_empty())),
            None => crate::manifest::machine::executor_default(root),
        }
    }

    /// The remote cache settings: the flags and `KBUILD_REMOTE_*` first, then the machine's
    /// `remote-cache` in kernel.local.kdl.
    fn settings(&self, root: &std::path::Path) -> miette::Result<Option<crate::remote::Settings>> {
        let machine = match &self.remote_cache {
            Some(_) => None,
            None => crate::manifest::machine::remote_default(root)?,
        };
        let url = (self.remote_cache.clone()).or_else(|| machine.as_ref().map(|m| m.url.clone()));
        let url = match url {
            Some(url) => Some(url),
            None => self.executor(root)?,
        };
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let instance = (self.remote_instance.clone())
            .or_else(|| machine.as_ref().and_then(|m| m.instance.clone()))
            .unwrap_or_default();
        let upload = (self.remote_upload)
            .or_else(|| machine.as_ref().and_then(|m| m.upload))
            .unwrap_or(true);
        let schemes = ["grpc://", "grpcs://", "http://", "https://"];
        if !schemes.iter().any(|s| url.starts_with(s)) {
            return Err(miette::miette!(
                help = "use grpc:// or grpcs:// (REAPI v2), http:// or https:// (the HTTP cache protocol)",
                "`{url}` is no remote cache URL"
            ));
        }
        let text = std::env::var(crate::remote::settings::HEADERS_VAR).unwrap_or_default();
        let headers = crate::remote::settings::parse_headers(&text)
            .map_err(|e| miette::miette!(help = "write one `Name: value` header a line", "{e}"))?;
        Ok(Some(crate::remote::Settings {
            url,
            instance,
            headers,
            upload,
            timeout: std::time::Duration::from_secs(self.remote_timeout.max(1)),
            transfers: self.remote_transfers.max(1),
            // Paths in kernel.local.kdl are relative to the workspace, as the file itself.
            sign_key: (self.remote_sign_key.clone())
                .or_else(|| machine.as_ref()?.sign_key.as_ref().map(|k| root.join(k))),
            trust: (self.remote_trust.clone())
                .or_else(|| machine.as_ref()?.trust.as_ref().map(|t| root.join(t))),
        }))
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate kernel.kdl and the files it names.
    Check,
    /// List series, versions and targets.
    List,
    /// Show the actions that would run and those already cached.
    Plan {
        /// Targets or patterns (default: //...).
        labels: Vec<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Plan the boot tests too, as `kbuild test` would run them.
        #[arg(long)]
        test: bool,
    },
    /// Build targets.
    Run {
        /// Targets or patterns (default: //...).
        labels: Vec<String>,
        /// Actions run at once [default: the number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Keep building what does not depend on a failure.
        #[arg(short, long)]
        keep_going: bool,
        /// Fail instead of pinning an unpinned source in kernel.lock (for CI).
        #[arg(long)]
        locked: bool,
        /// Boot-test each kernel too, as `kbuild test` does (and exit as it does; with
        /// --keep-going, as `kbuild test` always does, every kernel is tested).
        #[arg(long)]
        test: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        views: views::Views,
    },
    /// Build targets and boot each kernel under qemu: its release, /proc and /sys, its test
    /// modules, KUnit. A passed test is cached; a failure does not stop the others. Exit 0 all
    /// passed, 1 a kernel failed a test, 125 a test could not run (for `git bisect run`).
    Test {
        /// Targets or patterns (default: //...).
        labels: Vec<String>,
        /// Actions run at once [default: the number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Write the results as JUnit XML to FILE (GitLab, GitHub and Jenkins read it).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        views: views::Views,
    },
    /// Build one kernel target and print its SBOM (SPDX 2.3 JSON): the source and its pin, each
    /// patch, the resolved config, the build environment, every file of the image.
    Sbom {
        label: String,
        /// Actions run at once [default: the number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        #[command(flatten)]
        views: views::Views,
    },
    /// Build one kernel target and list what its image carries: the attestation manifest beside
    /// it in the index (its SBOM and SLSA provenance) and the same statements as referrers.
    Attestations {
        label: String,
        /// Actions run at once [default: the number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        #[command(flatten)]
        views: views::Views,
    },
    /// Build the targets, then rebuild each of their actions with the cache bypassed (fresh
    /// build directories, another -j and umask) and compare with the cached result, or with
    /// the remote cache's; exit 1 when one differs.
    Verify {
        labels: Vec<String>,
        /// Compare with the local cache's entry or the remote cache's for the same key.
        #[arg(long, value_enum, default_value_t = AgainstArg::Local)]
        against: AgainstArg,
        /// Jobs of the rebuilds [default: the number of cores plus one, not a build's].
        #[arg(short, long)]
        jobs: Option<usize>,
        #[command(flatten)]
        views: views::Views,
    },
    /// Explain, per action, why it ran in the last run or would run now.
    Why {
        labels: Vec<String>,
        /// Print each action's whole key record: every input, program and dependency digest.
        #[arg(long)]
        key: bool,
        /// Explain the boot tests too.
        #[arg(long)]
        test: bool,
    },
    /// Print the log of a target's action as it stands now: the run that made its cache entry.
    Log {
        label: String,
        /// The action's kind [default: compile for a kernel, tool for a tool].
        #[arg(long, value_name = "KIND")]
        action: Option<String>,
        /// Print the log's path instead of its text.
        #[arg(long)]
        path: bool,
    },
    /// Work on the committed configs.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Look after the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Move kernel image references in YAML, Dockerfile, Makefile and test.sh files to the
    /// current versions (LinuxKit's update-kernel-yamls).
    UpdateRefs {
        /// Paths to look under (default: the whole workspace).
        paths: Vec<PathBuf>,
        /// Change nothing; print what would change and exit 1 if anything would.
        #[arg(long)]
        check: bool,
    },
    /// Compare kernel configs.
    #[command(subcommand)]
    Kconfig(KconfigCommand),
    /// Lint patches.
    #[command(subcommand)]
    Patches(PatchesCommand),
    /// Set a series' version, then show the config drift and new options with the new source.
    Bump {
        series: String,
        version: String,
        /// Write the resolved configs back to kernel/ (full configs only: a minimal one is
        /// left for you to edit from the drift shown).
        #[arg(long)]
        write: bool,
    },
    /// Pin the sources of these series (default: all) again to what their URLs serve now.
    Pin { series: Vec<String> },
    /// Print a completion script: `source <(kbuild completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: shell::Shell,
    },
    /// Write man pages (kbuild.1, kbuild-run.1 …) into DIR, e.g. ~/.local/share/man/man1.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Add a series as a copy of another at a new version, then show the config drift.
    NewSeries {
        /// The new series, `M.m.x`.
        new: String,
        /// The series whose node, configs and patches the new one starts from.
        #[arg(long)]
        from: String,
        /// The new series' first version, `M.m.p`.
        version: String,
        /// Write the resolved configs of the new series back to kernel/ (full configs only).
        #[arg(long)]
        write: bool,
    },
    /// Write kernel.kdl and kernel/ from a LinuxKit kernel/ directory.
    ImportLinuxkit {
        /// The LinuxKit kernel/ directory.
        #[arg(value_name = "DIR")]
        linuxkit: PathBuf,
    },
    /// Build targets and publish their images to a registry.
    Push {
        labels: Vec<String>,
        /// The registry, e.g. registry.example.com or 127.0.0.1:5000.
        #[arg(long)]
        registry: String,
        /// Speak plain HTTP (a local registry).
        #[arg(long)]
        insecure: bool,
        /// Keep an existing bare version tag (6.6.71) instead of moving it to this build.
        #[arg(long)]
        no_move: bool,
        /// Sign every image, index and attestation pushed, cosign's way, with this ECDSA
        /// P-256 private key (PEM); never logged, never keyed.
        #[arg(long, env = "KBUILD_SIGN_KEY", value_name = "FILE")]
        sign_key: Option<PathBuf>,
        #[arg(short, long)]
        jobs: Option<usize>,
        #[command(flatten)]
        views: views::Views,
    },
    /// Sign images already in a registry, cosign's way (`sha256-<hex>.sig`).
    Sign {
        /// HOST[:PORT]/REPOSITORY:TAG or …@sha256:HEX
        #[arg(required = true)]
        references: Vec<String>,
        /// The ECDSA P-256 private key (PEM).
        #[arg(long, env = "KBUILD_SIGN_KEY", value_name = "FILE")]
        key: PathBuf,
        /// Speak plain HTTP (a local registry).
        #[arg(long)]
        insecure: bool,
    },
    /// Check that an image in a registry is signed by a key (exit 1 when it is not).
    VerifySignature {
        /// HOST[:PORT]/REPOSITORY:TAG or …@sha256:HEX
        reference: String,
        /// The ECDSA P-256 public key (PEM), as cosign.pub.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Speak plain HTTP (a local registry).
        #[arg(long)]
        insecure: bool,
    },
    /// Serve a remote-execution cluster as a bot of the Remote Workers API (BuildGrid's Bots
    /// service): take leases, run their REAPI actions, return the results. Runs any REAPI
    /// action, not only kbuild's.
    Worker(worker::WorkerArgs),
    /// Show which builder image and Docker endpoint builds each arch, or create a builder image.
    Builder {
        #[command(subcommand)]
        command: Option<BuilderCommand>,
    },
    /// Print the image references of targets (LinuxKit's show-tags and tag-plainkernel).
    Tags {
        labels: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AgainstArg {
    Local,
    Remote,
}

#[derive(Subcommand, Debug)]
enum KconfigCommand {
    /// Write the options common to all configs (split-common) and those of each (split-NAME).
    Split {
        #[arg(required = true, num_args = 2..)]
        configs: Vec<PathBuf>,
        /// Where to write the split files.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Option-level difference of two configs; exit 1 if they differ.
    Diff { a: PathBuf, b: PathBuf },
}

#[derive(Subcommand, Debug)]
enum PatchesCommand {
    /// Check that every patch is a signed-off `git format-patch` file in a unique order with its
    /// origin; exit 1 on findings.
    Check { series: Vec<String> },
}

#[derive(Subcommand, Debug)]
enum BuilderCommand {
    /// Make a Debian builder image with what kernel builds need (debootstrap, then an import
    /// into the local Docker daemon); needs root and a Debian mirror, no registry.
    Create {
        /// The image reference to tag [default: every builder the manifest names].
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long, default_value = "bookworm")]
        suite: String,
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Extra Debian packages.
        #[arg(long = "package", value_name = "PACKAGE")]
        packages: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// Hash every blob; remove the corrupt ones (the next run rebuilds what needs them).
    Verify,
    /// What the cache holds, by kind, and how much of it the current manifest uses.
    Du,
    /// Remove least recently used entries and build directories, never what a running build
    /// holds nor (unless asked) what the current manifest's last run made; build directories
    /// of targets the manifest no longer has always go.
    Gc {
        /// Remove until the cache is no larger than SIZE (20G, 500MB, 1.5GiB).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Remove what was last used more than DAYS days ago.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<f64>,
        /// Also remove the current manifest's entries (the next run rebuilds them).
        #[arg(long)]
        include_current: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Resolve the configs of plain targets with Kconfig and write them back to kernel/.
    Update {
        /// Plain kernel targets, e.g. //6.12.x:amd64.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum PlanFormat {
    Text,
    /// Every action with its state, reason and whole key record.
    Json,
    /// Graphviz.
    Dot,
    /// `{"target":[…]}`: the targets with work to do (neither cached nor in the remote cache),
    /// one line, for a CI build matrix (doc/ci.md).
    Matrix,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub(crate) enum ExecutorKind {
    /// Run commands on this machine.
    Host,
    /// Run each command in a container of the series' builder image.
    Docker,
    /// Record commands and fake their outputs (for testing kbuild itself).
    DryRun,
}

/// Exit codes: 0 success, 1 build failure, 2 usage or manifest error.
pub fn main() -> i32 {
    // Never wrap a message: help lines carry commands and paths that must paste as they are.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            2
        }
    }
}

/// The workspace a command runs on; its manifest is loaded on first use, because a null build
/// answered by the fingerprint never needs it.
pub(crate) struct Workspace {
    root: PathBuf,
    cache_dir: PathBuf,
    /// `check` always parses, so that it reports exactly what the file says.
    memoize: bool,
    model: std::cell::OnceCell<Model>,
    executor_flag: Option<ExecutorKind>,
    remote: RemoteArgs,
}

impl Workspace {
    /// `-C DIR` works as in make and git: kbuild runs in DIR, so relative paths are DIR's.
    fn locate(cli: &Cli) -> miette::Result<Workspace> {
        if let Some(dir) = &cli.dir {
            std::env::set_current_dir(dir).map_err(|e| {
                miette::miette!(
                    help = "pass an existing directory to -C",
                    "cannot use `{}`: {e}",
                    dir.display()
                )
            })?;
        }
        let root = PathBuf::from(".");
        let root = root.canonicalize().map_err(|e| {
            miette::miette!(
                help = "pass an existing directory to -C",
                "cannot use `{}`: {e}",
                root.display()
            )
        })?;
        let cache_dir = cli.cache_dir.clone().unwrap_or_else(|| root.join("cache"));
        // Commands that build nothing create no cache/ for the memo.
        let memoize = !matches!(cli.command, Command::Check | Command::List);
        Ok(Workspace {
            root,
            cache_dir,
            memoize,
            model: std::cell::OnceCell::new(),
            executor_flag: cli.executor,
            remote: cli.remote.clone(),
        })
    }

    /// Where each action would run, when a remote executor is given (for `plan` and `why`;
    /// the cluster is not asked): `run remotely`, or `run locally: WHY`.
    pub(crate) fn placements(
        &self,
        cache: &Cache,
        executor: &str,
        graph: &crate::graph::Graph,
    ) -> miette::Result<Vec<Option<String>>> {
        use crate::recipe::remote::{Placement, placement};
        let args = &self.remote;
        if args.executor(&self.root)?.is_none() {
            return Ok(Vec::new());
        }
        let build_root = crate::cache::build_root(cache, &self.root);
        let auto = args.remote_exec == RemoteExecArg::Auto;
        Ok(graph
            .ids()
            .map(|id| {
                let action = graph.action(id);
                let in_image = executor == "docker" && action.builder.is_some();
                Some(
                    match placement(&action.recipe, in_image, &build_root, auto) {
                        _ if args.remote_exec == RemoteExecArg::Never => {
                            "run locally: --remote-exec never".to_string()
                        }
                        Placement::Remote => "run remotely".to_string(),
                        Placement::HereOnly => return None,
                        Placement::Local(why) => format!("run locally: {why}"),
                    },
                )
            })
            .collect())
    }

    /// The remote-execution cluster this command runs misses on, connected, if one is given.
    /// `cache` is the run's remote cache: the same connection when it is the same server, so
    /// that one server gone is one warning and one switch-off.
    pub(crate) fn offload(
        &self,
        cache: &Cache,
        report: std::sync::Arc<dyn crate::report::Reporter>,
        remote_cache: Option<&std::sync::Arc<crate::remote::Remote>>,
    ) -> miette::Result<Option<std::sync::Arc<crate::engine::offload::Offload>>> {
        use crate::engine::offload::{ExecMode, Offload};
        let args = &self.remote;
        let Some(url) = args.executor(&self.root)? else {
            return Ok(None);
        };
        if !url.starts_with("grpc://") && !url.starts_with("grpcs://") {
            return Err(miette::miette!(
                help = "remote execution speaks REAPI v2 over gRPC: give grpc://HOST:PORT or grpcs://HOST:PORT",
                "`{url}` is no remote executor URL"
            ));
        }
        let mut settings = match args.settings(&self.root)? {
            Some(settings) => settings,
            None => unreachable!("an executor is a remote"),
        };
        let remote = match remote_cache.filter(|r| r.url() == url) {
            Some(same) => same.clone(),
            None => {
                settings.url = url;
                crate::remote::Remote::connect(&settings, cache, report)
                    .map_err(|e| miette::miette!("{e}"))?
            }
        };
        let mode = match args.remote_exec {
            RemoteExecArg::Always => ExecMode::Always,
            RemoteExecArg::Auto => ExecMode::Auto,
            RemoteExecArg::Never => ExecMode::Never,
        };
        let fallback = args.remote_fallback == FallbackArg::Local;
        Ok(Some(std::sync::Arc::new(Offload::new(
            remote,
            (mode, fallback),
            args.remote_jobs,
            std::time::Duration::from_secs(args.remote_queue_timeout.max(1)),
        ))))
    }

    /// The remote cache this command uses, connected, if one is configured.
    pub(crate) fn remote(
        &self,
        cache: &Cache,
        report: std::sync::Arc<dyn crate::report::Reporter>,
    ) -> miette::Result<Option<std::sync::Arc<crate::remote::Remote>>> {
        let Some(settings) = self.remote.settings(&self.root)? else {
            return Ok(None);
        };
        crate::remote::Remote::connect(&settings, cache, report)
            .map(Some)
            .map_err(|e| {
                miette::miette!(
                    help = "fix the remote cache's settings (--remote-cache, --remote-sign-key, \
                            --remote-trust, or their KBUILD_REMOTE_* variables)",
                    "{e}"
                )
            })
    }

    /// The executor a command uses: `--executor`, else the manifest's default, else host.
    pub(crate) fn executor_kind(&self) -> miette::Result<ExecutorKind> {
        if let Some(kind) = self.executor_flag {
            return Ok(kind);
        }
        Ok(kind_of(self.model()?))
    }

    pub(crate) fn executor(&self) -> miette::Result<Box<dyn Executor>> {
        self.executor_of(self.executor_kind()?)
    }

    /// The executor to check the run fingerprint with, without loading the manifest where the
    /// record says which one it chose: `None` when the record cannot say.
    /// A build of `labels` in this workspace, with its remote cache and default executor.
    pub(crate) fn request<'a>(
        &'a self,
        cache: &'a Cache,
        exec: &'a dyn Executor,
        (labels, goal): (&'a [String], Goal),
        (jobs, keep_going, locked): (usize, bool, bool),
        report: std::sync::Arc<dyn crate::report::Reporter>,
    ) -> miette::Result<build::Request<'a>> {
        let remote = self.remote(cache, report.clone())?;
        let offload = self.offload(cache, report.clone(), remote.as_ref())?;
        Ok(build::Request {
            root: &self.root,
            model: self.model()?,
            labels,
            goal,
            cache,
            exec,
            jobs,
            keep_going,
            locked,
            remote,
            offload,
            report,
            cancel: Cancel::default(),
            default_executor: self
                .executor_flag
                .is_none()
                .then(|| exec.name().to_string()),
            link_out: true,
        })
    }

    fn recorded_executor(
        &self,
        record: &crate::fingerprint::Record,
    ) -> miette::Result<Option<Box<dyn Executor>>> {
        let kind = match self.executor_flag {
            Some(kind) => kind,
            None => match record
                .default_executor()
                .and_then(|name| ExecutorKind::from_str(name, false).ok())
            {
                Some(kind) => kind,
                None => return Ok(None),
            },
        };
        self.executor_of(kind).map(Some)
    }

    fn executor_of(&self, kind: ExecutorKind) -> miette::Result<Box<dyn Executor>> {
        Ok(match kind {
            ExecutorKind::Host => Box::new(Host),
            ExecutorKind::DryRun => Box::new(DryRun::default()),
            ExecutorKind::Docker => Box::new(self.docker()?),
        })
    }

    /// The Docker executor: the workspace and cache read-only, build and work dirs writable.
    pub(crate) fn docker(&self) -> miette::Result<Docker> {
        let cache = open_cache(self)?;
        let abs = |p: PathBuf| p.canonicalize().unwrap_or(p);
        let mounts = Mounts {
            read_only: vec![self.root.clone(), abs(self.cache_dir.clone())],
            read_write: vec![abs(cache.dir("build")), abs(cache.dir("tmp"))],
        };
        let endpoints = Endpoints::from_manifest(&self.model()?.endpoints);
        Docker::new(endpoints, &mounts)
            .map_err(|e| miette::miette!("starting the Docker client: {e}"))
    }

    pub(crate) fn model(&self) -> miette::Result<&Model> {
        if let Some(model) = self.model.get() {
            return Ok(model);
        }
        let model = if self.memoize {
            let warn = &mut |e| eprintln!("{e}");
            crate::manifest::load_memoized(&self.root, &self.cache_dir, warn)?
        } else {
            crate::manifest::load(&self.root)?
        };
        let mut model = model;
        // Native builder endpoints only count where containers run: they decide CROSS_COMPILE.
        model.native_builds = self.executor_flag.unwrap_or(kind_of(&model)) == ExecutorKind::Docker;
        Ok(self.model.get_or_init(|| model))
    }
}

fn kind_of(model: &Model) -> ExecutorKind {
    match model.defaults.executor.as_deref() {
        Some("docker") => ExecutorKind::Docker,
        _ => ExecutorKind::Host,
    }
}

/// Shell integration and registry commands: no workspace.
fn without_workspace(cli: &Cli) -> Option<miette::Result<i32>> {
    Some(match &cli.command {
        Command::Completions { shell } => shell::completions(*shell),
        Command::Man { dir } => shell::man(dir),
        Command::Sign {
            references,
            key,
            insecure,
        } => sign::sign(key, references, *insecure),
        Command::VerifySignature {
            reference,
            key,
            insecure,
        } => sign::verify(key, reference, *insecure),
        Command::Worker(args) => worker::run(args, cli.executor),
        _ => return None,
    })
}

fn dispatch(cli: Cli) -> miette::Result<i32> {
    if let Some(code) = without_workspace(&cli) {
        return code;
    }
    let ws = Workspace::locate(&cli)?;
    if let Some(code) = maint::dispatch(&ws, &cli.command) {
        return code;
    }
    match &cli.command {
        Command::Check => maint::check(&ws),
        Command::List => {
            print!("{}", render::list(ws.model()?));
            Ok(0)
        }
        Command::Plan {
            labels,
            format,
            test,
        } => plan(&ws, labels, *format, goal(*test)),
        Command::Run { .. } | Command::Test { .. } => build_command(&ws, &cli.command),
        Command::Why { labels, key, test } => why(&ws, labels, *key, goal(*test)),
        Command::Sbom { label, jobs, views } => sbom::command(&ws, label, num_jobs(*jobs), views),
        Command::Verify {
            labels,
            against,
            jobs,
            views,
        } => verify::command(&ws, labels, (*jobs, *against), views),
        Command::Attestations { label, jobs, views } => {
            sbom::attestations(&ws, label, num_jobs(*jobs), views)
        }
        Command::Log {
            label,
            action,
            path,
        } => log(&ws, label, action.as_deref(), *path),
        Command::Cache(CacheCommand::Verify) => upkeep::verify(&ws),
        Command::Cache(CacheCommand::Du) => upkeep::du(&ws),
        Command::Cache(CacheCommand::Gc {
            max_size,
            older_than,
            include_current,
        }) => upkeep::gc(&ws, max_size.as_deref(), *older_than, *include_current),
        Command::Tags { labels, format } => publish::tags(&ws, labels, *format),
        Command::Builder { command: None } => builder::show(&ws),
        Command::Builder {
            command:
                Some(BuilderCommand::Create {
                    tag,
                    suite,
                    mirror,
                    packages,
                }),
        } => builder::create(&ws, tag, suite, mirror, packages),
        Command::Push {
            labels,
            registry,
            insecure,
            no_move,
            sign_key,
            jobs,
            views,
        } => publish::push(
            &ws,
            labels,
            registry,
            (*insecure, *no_move, sign_key.as_deref()),
            (num_jobs(*jobs), views),
        ),
        _ => unreachable!("shell and maintainer commands are answered above"),
    }
}

/// `kbuild run` and `kbuild test`: a build, with or without the boot tests.
fn build_command(ws: &Workspace, command: &Command) -> miette::Result<i32> {
    match command {
        Command::Run {
            labels,
            jobs,
            keep_going,
            locked,
            test,
            format,
            views,
        } => {
            let settings = (num_jobs(*jobs), *keep_going, *locked);
            if *test {
                test::command(ws, labels, settings, (*format, views, None))
            } else {
                run(ws, labels, settings, (*format, views))
            }
        }
        // A test run keeps going: one kernel's failure says nothing of the others.
        Command::Test {
            labels,
            jobs,
            junit,
            format,
            views,
        } => test::command(
            ws,
            labels,
            (num_jobs(*jobs), true, false),
            (*format, views, junit.as_deref()),
        ),
        _ => unreachable!("dispatch hands over run and test only"),
    }
}

fn goal(test: bool) -> Goal {
    if test { Goal::Test } else { Goal::Build }
}

pub(crate) fn lower(ws: &Workspace, labels: &[String]) -> miette::Result<(Vec<Label>, Graph)> {
    lower_for(ws, labels, Goal::Build)
}

/// [`lower`] for a goal: testing adds a boot test per kernel target.
pub(crate) fn lower_for(
    ws: &Workspace,
    labels: &[String],
    goal: Goal,
) -> miette::Result<(Vec<Label>, Graph)> {
    let mut stat = StatCache::open(&ws.cache_dir)?;
    let lowered = lower_with(ws, (labels, goal), &mut stat)?;
    // The command line's view of saved state is stderr.
    if let Err(e) = stat.save() {
        eprintln!("{e}");
    }
    Ok(lowered)
}

/// [`lower`] with the stat cache of the caller, who saves it.
fn lower_with(
    ws: &Workspace,
    (labels, goal): (&[String], Goal),
    stat: &mut StatCache,
) -> miette::Result<(Vec<Label>, Graph)> {
    // The command line's view is stderr.
    let plain = crate::report::plain::Plain::new();
    build::lower(&ws.cache_dir, ws.model()?, (labels, goal, stat), &plain)
}

pub(crate) fn open_cache(ws: &Workspace) -> miette::Result<Cache> {
    Ok(Cache::open(&ws.cache_dir)?)
}

pub(crate) fn engine<'a>(
    ws: &'a Workspace,
    cache: &'a Cache,
    exec: &'a dyn Executor,
    jobs: usize,
    keep_going: bool,
) -> Engine<'a> {
    Engine {
        workspace: &ws.root,
        cache,
        exec,
        jobs,
        keep_going,
        cancel: Cancel::default(),
        report: std::sync::Arc::new(crate::report::plain::Plain::new()),
        locked: false,
        records: false,
        remote: None,
        offload: None,
    }
}

fn plan(ws: &Workspace, labels: &[String], format: PlanFormat, goal: Goal) -> miette::Result<i32> {
    let cache = open_cache(ws)?;
    // The last run's state is read and its keys looked up in the cache beside lowering, which
    // does not need them: two cores, and each is a good part of planning after an edit. The
    // lookups are shared once lowering is done.
    let check = std::sync::OnceLock::new();
    let (lowered, last) = std::thread::scope(|s| {
        let (cache, root, check) = (&cache, &ws.root, &check);
        let last = s.spawn(move || {
            let last = cache.load_state(root)?;
            check.get_or_init(|| EntryCheck::new(&last)).work(cache);
            Ok::<_, crate::saved::NewerState>(last)
        });
        let lowered = StatCache::open(cache.root())
            .map_err(miette::Report::from)
            .and_then(|mut stat| lower_with(ws, (labels, goal), &mut stat).map(|l| (l, stat)));
        if let Some(check) = check.get() {
            check.work(cache);
        }
        (
            lowered,
            last.join()
                .unwrap_or_else(|_| Ok(crate::cache::LastRun::default())),
        )
    });
    let mut last = last?;
    if let Some(check) = check.into_inner() {
        last.checked(check);
    }
    let ((targets, graph), stat) = lowered?;
    let exec = ws.executor()?;
    let mut engine = engine(ws, &cache, exec.as_ref(), 1, false);
    engine.records = format == PlanFormat::Json;
    engine.remote = ws.remote(&cache, engine.report.clone())?;
    let report = engine.plan_with(&graph, last, stat);
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    match format {
        PlanFormat::Text => {
            print!("{}", render::replacements(ws.model()?));
            let placed = ws.placements(&cache, exec.name(), &graph)?;
            print!("{}", render::plan_text(&graph, &report.status, &placed));
        }
        PlanFormat::Json => println!(
            "{}",
            render::plan_json(&graph, &report.status, &report.records)
        ),
        PlanFormat::Matrix => println!("{}", render::matrix(&graph, &report.status, &targets)),
        PlanFormat::Dot => print!(
            "{}",
            graph.to_dot(
                |id| if matches!(report.status[id.index()], Status::Cached { .. }) {
                    "cached"
                } else {
                    "run"
                }
            )
        ),
    }
    // As after a run: the process ends next, and freeing thousands of actions costs more than
    // planning after an edit does.
    std::mem::forget((graph, report.status, report.records, report.last));
    Ok(0)
}

fn run(
    ws: &Workspace,
    labels: &[String],
    (jobs, keep_going, locked): (usize, bool, bool),
    (format, views): (Format, &views::Views),
) -> miette::Result<i32> {
    let cache = open_cache(ws)?;
    // Settings are checked before anything else; the remote itself is not asked for a null build.
    ws.remote.settings(&ws.root)?;
    // A text-mode null build needs no per-action report: try the fingerprint first.
    if format == Format::Text && null_build(ws, &cache, (labels, Goal::Build))? {
        return Ok(0);
    }
    let json = format == Format::Json;
    let what = (labels, Goal::Build);
    build_then(
        ws,
        &cache,
        what,
        (jobs, keep_going, locked),
        (json, views),
        |request, built| {
            render::run(&built, request.remote.as_deref(), format);
            let code = built.exit_code(&request.cancel);
            // The process ends next: freeing thousands of actions one by one would cost a null
            // build more than deciding them did.
            std::mem::forget(built);
            Ok(code)
        },
    )
}

/// Builds `labels` for `goal` with the workspace's executor, reporting as `views` say (JSON
/// lines when `json`), Ctrl-C cancelling; then hands the request and what it built to `then`.
pub(crate) fn build_then<T>(
    ws: &Workspace,
    cache: &Cache,
    what: (&[String], Goal),
    settings: (usize, bool, bool),
    (json, views): (bool, &views::Views),
    then: impl FnOnce(&build::Request, build::Built) -> miette::Result<T>,
) -> miette::Result<T> {
    let exec = ws.executor()?;
    let report = views.reporter(json)?;
    let request = ws.request(cache, exec.as_ref(), what, settings, report)?;
    request.cancel.install_handler();
    let built = build::build(&request)?;
    then(&request, built)
}

/// Whether the fingerprint of the last run of `labels` for `goal` shows there is nothing to
/// do; then says so (and, for a test run, that every test passed before).
pub(crate) fn null_build(
    ws: &Workspace,
    cache: &Cache,
    (labels, goal): (&[String], Goal),
) -> miette::Result<bool> {
    let started = std::time::Instant::now();
    let patterns = goal.patterns(labels);
    let found = build::null_build(&ws.root, cache, &patterns, |r| ws.recorded_executor(r))?;
    let Some(build::NullRun { actions: n, tests }) = found else {
        return Ok(false);
    };
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "kbuild: {n} actions, {n} cached, 0 executed, 0 failed in {seconds:.2}s (nothing changed)"
    );
    if goal == Goal::Test {
        eprintln!("{}", test::all_cached(tests));
    }
    Ok(true)
}

pub(crate) fn num_jobs(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The log of the run that made the current entry of one action of `label`: kept by key in the
/// cache, or this workspace's last log of the action when its header names the same key.
fn log(ws: &Workspace, label: &str, kind: Option<&str>, path_only: bool) -> miette::Result<i32> {
    // A test's log is a tested build's: its graph has the test actions.
    let goal = goal(kind == Some(crate::kind::ActionKind::Test.as_str()));
    let (targets, graph) = lower_for(ws, &[label.to_string()], goal)?;
    let [target] = targets.as_slice() else {
        miette::bail!(
            help = "name one target, e.g. //6.6.x:amd64",
            "`{label}` names {} targets",
            targets.len()
        );
    };
    let kind = kind.unwrap_or(match target.kind {
        label::TargetKind::Kernel(_) => "compile",
        label::TargetKind::Tool(_) => "tool",
    });
    let of_target = crate::kind::ActionKind::ALL
        .iter()
        .filter_map(|k| Some((k.as_str(), graph.of(*k, target)?)));
    let Some((_, id)) = of_target.clone().find(|(name, _)| *name == kind) else {
        let names: Vec<&str> = of_target.map(|(name, _)| name).collect();
        miette::bail!(
            help = format!("its actions: {}", names.join(", ")),
            "{target} has no `{kind}` action"
        );
    };
    let cache = open_cache(ws)?;
    let exec = ws.executor()?;
    let report = engine(ws, &cache, exec.as_ref(), 1, false).plan(&graph)?;
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    let name = &graph.action(id).name;
    let status = &report.status[id.index()];
    let Some(key) = status.key() else {
        miette::bail!(
            help = "`kbuild why` says what changed",
            "{name} has no key yet: an action it depends on has to run first, so it has not run with its current inputs"
        );
    };
    let by_key = cache.log_of(key);
    let last = crate::cache::logs_dir(&cache, &ws.root)
        .join(format!("{}.log", crate::cache::log_name(name)));
    let header_names_key = || {
        std::fs::read_to_string(&last).is_ok_and(|t| {
            t.lines()
                .next()
                .is_some_and(|l| l.contains(&key.to_string()))
        })
    };
    let found = if by_key.is_file() {
        by_key
    } else if header_names_key() {
        last
    } else {
        let why = match status {
            Status::WillRun { .. } => {
                "it has not run with its current inputs (`kbuild why` says what changed)"
            }
            Status::Remote { .. } => {
                "its entry came from the remote cache, which keeps the log as the result's stdout"
            }
            _ => "its entry was made before kbuild kept logs by key",
        };
        miette::bail!("no log of {name} (key {key}): {why}");
    };
    if path_only {
        println!("{}", found.display());
    } else {
        let text =
            std::fs::read(&found).map_err(|e| miette::miette!("{}: {e}", found.display()))?;
        use std::io::Write;
        let _ = std::io::stdout().write_all(&text);
    }
    Ok(0)
}

fn why(ws: &Workspace, labels: &[String], key: bool, goal: Goal) -> miette::Result<i32> {
    let (_, graph) = lower_for(ws, labels, goal)?;
    let cache = open_cache(ws)?;
    let exec = ws.executor()?;
    let mut engine = engine(ws, &cache, exec.as_ref(), 1, false);
    engine.records = key;
    engine.remote = ws.remote(&cache, engine.report.clone())?;
    let report = engine.plan(&graph)?;
    if let Some(e) = report.errors.into_iter().next() {
        return Err(e.into());
    }
    print!("{}", render::replacements(ws.model()?));
    if key {
        print!(
            "{}",
            render::key_text(&graph, &report.status, &report.records)
        );
    } else {
        let origin = |key| cache.origin(key);
        let placed = ws.placements(&cache, exec.name(), &graph)?;
        print!(
            "{}",
            render::why_text(&graph, (&report.status, &placed), &report.last, origin)
        );
    }
    Ok(0)
}
