//! The engine: keys every action, answers from the cache where it can, and executes the rest.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::action::{Action, ActionId, Recipe, Role};
use crate::cache::{Cache, CacheError, Corrupt, LastRun, OutputManifest, RunEntry};
use crate::digest::Digest;
use crate::exec::{Cancel, Executor, Identity, Known, Toolset};
use crate::graph::Graph;
use crate::key::explain::{Reason, explain};
use crate::key::{ActionKey, KeyRecord, Seen, dep_names, kernel_terms};
use crate::kind::ActionKind;
use crate::recipe::{self, Ctx, DepOutput};
use crate::remote::{Hit, Remote};
use crate::report::critical::{self, Left};
use crate::report::watch::Watch;
use crate::report::{Decision, Event, Expected, Outcome, Reporter, expect};
use crate::schedule::{self, Owner, Ready, Worker};
use crate::statcache::StatCache;

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

/// Everything a run needs besides the graph.
pub struct Engine<'a> {
    pub workspace: &'a Path,
    pub cache: &'a Cache,
    pub exec: &'a dyn Executor,
    pub jobs: usize,
    pub keep_going: bool,
    pub cancel: Cancel,
    /// Where progress goes: the terminal, plain lines, event and trace files, or nowhere.
    pub report: Arc<dyn Reporter>,
    /// Refuse to pin sources in kernel.lock.
    pub locked: bool,
    /// Keep every action's whole key record in the report (`plan --format json`, `why --key`),
    /// not only those of misses.
    pub records: bool,
    /// Where a local miss is looked up before it runs, and what ran is uploaded to.
    pub remote: Option<Arc<Remote>>,
}

/// Why computing a key failed: an input file is unreadable, or the executor cannot say who
/// would run the action (no daemon, no builder image).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum KeyError {
    #[error("cannot read input `{path}` of `{action}`: {source}")]
    #[diagnostic(help("the manifest refers to this file; restore it or change kernel.kdl"))]
    Input {
        action: String,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run `{action}`: {message}")]
    #[diagnostic(help("{hint}"))]
    Executor {
        action: String,
        message: String,
        hint: String,
    },
}

/// An action's kind, whether it strips and whether it builds with CMake (a tool), its
/// environment (by pointer: the planner shares one per series and arch, and the graph, which
/// holds them all, outlives the keys, so no address is reused), arch and builder: all that
/// decides its toolset. Borrowed from the graph: made for every action a plan decides.
type Shape<'a> = (
    ActionKind,
    (bool, bool),
    usize,
    Option<crate::arch::Arch>,
    Option<&'a str>,
);

fn shape(action: &Action) -> Shape<'_> {
    let tool = match &action.recipe {
        crate::action::Recipe::Tool(spec) => {
            (spec.strip, spec.build == crate::model::BuildSystem::Cmake)
        }
        _ => (false, false),
    };
    (
        action.kind(),
        tool,
        // In-process actions each have an empty environment of their own: all alike.
        if action.env.is_empty() {
            0
        } else {
            Arc::as_ptr(&action.env) as usize
        },
        action.arch,
        action.builder.as_deref(),
    )
}

/// The scheduler-thread state of a plan or run.
struct Keys<'a> {
    engine: &'a Engine<'a>,
    graph: &'a Graph,
    stat: StatCache,
    identities: HashMap<Toolset, Known>,
    /// The identity by what `recipe::toolset_of` reads of an action, so that its list of tool
    /// names (forty strings for a compile) is made once per shape, not once per action.
    by_shape: HashMap<Shape<'a>, Known>,
    /// The identity of what kbuild does in-process, made once.
    kbuild: Known,
    /// Input digests of this pass: many actions read the same config.
    input_digests: HashMap<String, Digest>,
    last: LastRun,
    status: Vec<Status>,
    manifests: Vec<Option<Arc<OutputManifest>>>,
    records: Vec<Option<KeyRecord>>,
    /// Remote hits whose outputs are not local (yet): fetched only when something needs them.
    hits: HashMap<ActionId, Hit>,
    /// A run, not a plan: remote hits may be fetched and records are kept.
    running: bool,
    errors: Vec<KeyError>,
}

impl<'a> Keys<'a> {
    fn new(engine: &'a Engine<'a>, graph: &'a Graph, last: LastRun, stat: StatCache) -> Keys<'a> {
        Keys {
            engine,
            graph,
            stat,
            identities: HashMap::new(),
            by_shape: HashMap::new(),
            kbuild: Known::new(Identity::Kbuild),
            input_digests: HashMap::new(),
            last,
            status: vec![Status::Pending; graph.len()],
            manifests: vec![None; graph.len()],
            records: if engine.records {
                vec![None; graph.len()]
            } else {
                Vec::new()
            },
            hits: HashMap::new(),
            running: false,
            errors: Vec::new(),
        }
    }

    fn identity(&mut self, action: &'a Action) -> Result<Known, KeyError> {
        let shape = shape(action);
        if let Some(id) = self.by_shape.get(&shape) {
            return Ok(id.clone());
        }
        let id = self.identity_of_toolset(action)?;
        self.by_shape.insert(shape, id.clone());
        Ok(id)
    }

    fn identity_of_toolset(&mut self, action: &Action) -> Result<Known, KeyError> {
        let set = recipe::toolset_of(action);
        if set.tools.is_empty() {
            return Ok(self.kbuild.clone());
        }
        if let Some(id) = self.identities.get(&set) {
            return Ok(id.clone());
        }
        let id = self
            .engine
            .exec
            .identity(&set, &mut self.stat)
            .map_err(|e| KeyError::Executor {
                action: action.name.clone(),
                hint: e
                    .hint()
                    .unwrap_or("check the executor and run again")
                    .to_string(),
                message: e.to_string(),
            })?;
        let id = Known::new(id);
        self.identities.insert(set, id.clone());
        Ok(id)
    }

    /// What `id` sees, or `None` while a dependency's output is unknown.
    fn seen(&mut self, id: ActionId) -> Result<Option<Seen<'a>>, KeyError> {
        let graph: &'a Graph = self.graph;
        let action = graph.action(id);
        let status = &self.status;
        let (stat, known, workspace) = (
            &mut self.stat,
            &mut self.input_digests,
            self.engine.workspace,
        );
        let digest_of = |rel: &str| match known.get(rel) {
            Some(digest) => Ok(*digest),
            None => {
                let digest =
                    stat.digest(&workspace.join(rel))
                        .map_err(|source| KeyError::Input {
                            action: action.name.clone(),
                            path: rel.to_string(),
                            source,
                        })?;
                known.insert(rel.to_string(), digest);
                Ok(digest)
            }
        };
        let output_of = |dep: ActionId| status[dep.index()].output();
        let kbuild = self.kbuild.clone();
        let seen = Seen::gather(action, output_of, digest_of, || Ok(kbuild))?;
        let Some(mut seen) = seen else {
            return Ok(None);
        };
        seen.executor = self.identity(action)?;
        Ok(Some(seen))
    }

    /// The output digest cached for `key`, preferring the last run's note to reading the entry.
    fn cached_output(&self, name: &str, key: ActionKey) -> Option<Digest> {
        // A run holds what it finds, so that `kbuild cache gc` leaves it alone.
        let present = if self.running {
            self.engine.cache.hold(key)
        } else {
            self.last.found_present(key) || self.engine.cache.has_entry(key)
        };
        if !present {
            return None;
        }
        match self.last.actions.get(name) {
            Some(entry) if entry.key == key && entry.output.is_some() => entry.output,
            _ => self.engine.cache.lookup(key).map(|m| m.digest()),
        }
    }

    fn dep_names(&self, id: ActionId) -> BTreeMap<String, String> {
        let action = self.graph.action(id);
        dep_names(action)
            .into_iter()
            .zip(&action.deps)
            .map(|(key, d)| (key, self.graph.action(d.id).name.clone()))
            .collect()
    }

    fn reason(&self, id: ActionId, record: &KeyRecord) -> Reason {
        let name = &self.graph.action(id).name;
        let Some(last) = self.last.actions.get(name) else {
            return Reason::NeverBuilt;
        };
        let old = self.engine.cache.load_record(last.key);
        let reason = explain(old.as_ref(), record, &self.dep_names(id));
        if let Reason::DependencyChanged { dependency } = &reason
            && let Some(source) = self.source_change(id, old.as_ref(), dependency)
        {
            return source;
        }
        self.in_kernel_terms(reason, old.as_ref(), record)
    }

    /// When `dependency` is the fetch of a new source: which source the last run used (the
    /// fetch whose output the old record names) and which one this run fetches.
    fn source_change(
        &self,
        id: ActionId,
        old: Option<&KeyRecord>,
        dependency: &str,
    ) -> Option<Reason> {
        let action = self.graph.action(id);
        let (role, dep) = dep_names(action)
            .into_iter()
            .zip(&action.deps)
            .find(|(_, d)| self.graph.action(d.id).name == dependency)?;
        let Recipe::Fetch { file: new, .. } = &self.graph.action(dep.id).recipe else {
            return None;
        };
        let was = *old?.deps.get(&role)?;
        // The fetch the last run used: the one whose output the old record names. Its tarball
        // is read from its own key record, not from its name.
        let old = self.last.actions.values().find_map(|e| {
            let record =
                (e.output == Some(was)).then(|| self.engine.cache.load_record(e.key))??;
            (record.kind == ActionKind::Fetch)
                .then(|| record.params.get("file")?.as_str().map(str::to_string))?
        })?;
        let new = new.clone();
        (old != new).then_some(Reason::SourceChanged { old, new })
    }

    /// A changed config or patch said as the options that changed or the files it touches.
    fn in_kernel_terms(&self, reason: Reason, old: Option<&KeyRecord>, new: &KeyRecord) -> Reason {
        let path = match &reason {
            Reason::FileChanged { path }
            | Reason::FileAdded { path }
            | Reason::FileRemoved { path }
                if kernel_terms::explains(path) =>
            {
                path.clone()
            }
            _ => return reason,
        };
        let cache = self.engine.cache;
        let old_text = old
            .and_then(|o| o.inputs.get(&path))
            .and_then(|d| cache.input_text(*d));
        let new_text = new
            .inputs
            .contains_key(&path)
            .then(|| std::fs::read_to_string(self.engine.workspace.join(&path)).ok())
            .flatten();
        kernel_terms::refine(reason, old_text.as_deref(), new_text.as_deref())
    }

    /// Stores the record of a key about to be made, with the texts of the configs and patches
    /// it names, so that a later change of them can be said in kernel terms.
    fn store_record(&self, key: ActionKey, record: &KeyRecord) {
        let cache = self.engine.cache;
        let _ = cache.store_record(key, record);
        for (path, digest) in &record.inputs {
            if kernel_terms::explains(path) {
                cache.keep_input(*digest, &self.engine.workspace.join(path));
            }
        }
    }

    /// Decides one action without running anything: cached, or would run and why.
    fn decide(&mut self, id: ActionId) -> Option<(KeyRecord, ActionKey)> {
        let seen = match self.seen(id) {
            Ok(Some(seen)) => seen,
            Ok(None) => {
                let action = self.graph.action(id);
                let dep = action
                    .deps
                    .iter()
                    .find(|d| self.status[d.id.index()].output().is_none());
                let dependency = dep
                    .map(|d| self.graph.action(d.id).name.clone())
                    .unwrap_or_default();
                let old = (self.last.actions.get(&action.name))
                    .and_then(|last| self.engine.cache.load_record(last.key));
                let reason = self
                    .source_change(id, old.as_ref(), &dependency)
                    .unwrap_or(Reason::DependencyWillRun { dependency });
                self.status[id.index()] = Status::WillRun { key: None, reason };
                return None;
            }
            Err(e) => {
                self.errors.push(e);
                self.status[id.index()] = Status::Skipped;
                return None;
            }
        };
        let action = self.graph.action(id);
        let key = crate::key::key(self.graph.own_part(id), &seen);
        if let Some(output) = self.cached_output(&action.name, key) {
            self.status[id.index()] = Status::Cached { key, output };
            if self.engine.records {
                self.records[id.index()] = Some(KeyRecord::new(action, seen));
            }
            return None;
        }
        // Only a miss needs the whole record: to explain it and to store it for next time.
        let record = KeyRecord::new(action, seen);
        if self.engine.records {
            self.records[id.index()] = Some(record.clone());
        }
        let reason = self.reason(id, &record);
        if let Some(hit) = self
            .engine
            .remote
            .as_ref()
            .and_then(|r| r.lookup(action.kind(), key))
        {
            self.status[id.index()] = Status::Remote {
                key,
                output: hit.manifest.digest(),
                reason,
            };
            self.manifests[id.index()] = Some(Arc::new(hit.manifest.clone()));
            self.hits.insert(id, hit);
            // Fetched now only if its outputs are wanted as they are; else when a miss needs them.
            if self.running && !action.kind().traits().held {
                self.store_record(key, &record);
                return None;
            }
            return self.running.then_some((record, key));
        }
        self.status[id.index()] = Status::WillRun {
            key: Some(key),
            reason,
        };
        Some((record, key))
    }

    /// The last-run entries for every action this pass decided.
    fn updates(&self) -> BTreeMap<String, RunEntry> {
        let mut out = BTreeMap::new();
        for id in self.graph.ids() {
            let (key, output, outcome, reason) = match &self.status[id.index()] {
                Status::Cached { key, output } => {
                    let previous = self.last.actions.get(&self.graph.action(id).name);
                    let kept = previous
                        .filter(|p| p.key == *key)
                        .and_then(|p| p.reason.clone());
                    let outcome = if kept.is_some() { "executed" } else { "cached" };
                    (*key, Some(*output), outcome, kept)
                }
                Status::Executed {
                    key,
                    output,
                    reason,
                    ..
                } => (*key, Some(*output), "executed", Some(reason.to_string())),
                Status::Remote { key, output, .. } => (*key, Some(*output), "remote", None),
                Status::Failed { key, reason, .. } => {
                    (*key, None, "failed", Some(reason.to_string()))
                }
                _ => continue,
            };
            let entry = RunEntry {
                key,
                output,
                outcome: outcome.into(),
                reason,
            };
            let name = &self.graph.action(id).name;
            // A null build changes nothing and so writes nothing.
            if self.last.actions.get(name) != Some(&entry) {
                out.insert(name.clone(), entry);
            }
        }
        out
    }
}

/// What a worker needs to execute one action.
pub struct Job {
    key: ActionKey,
    reason: Reason,
    deps: Vec<(Role, ActionId, Arc<OutputManifest>)>,
    /// The executor identity in the key: a kept build directory made with another is stale.
    toolchain: Identity,
    /// The action's own outputs in the remote cache: fetched instead of executing, if it can be.
    own: Option<Hit>,
    /// Dependencies whose outputs are only in the remote: fetched before executing.
    remote_deps: Vec<(ActionId, ActionKey, Hit)>,
    /// How the last execution of this action went, for progress estimates.
    expected: Option<Expected>,
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
    },
    /// A dependency's cached outputs turned out corrupt; it must be rebuilt first.
    Corrupt { dep: ActionId, corrupt: Corrupt },
}

struct Runner<'a> {
    engine: &'a Engine<'a>,
    graph: &'a Graph,
    logs: PathBuf,
    build_root: PathBuf,
    /// One fetch per remote hit, however many workers need it at once.
    fetches: std::sync::Mutex<HashMap<ActionKey, Arc<std::sync::OnceLock<Option<OutputManifest>>>>>,
    /// Counts the lines of running actions' logs for the reporter.
    watch: Watch,
}

/// Stops watching an action's log however its execution ends.
struct Watching<'a>(&'a Watch, &'a str);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

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

impl Runner<'_> {
    /// The outputs of a remote hit, fetched into the local cache once (or found there).
    fn fetch(&self, key: ActionKey, hit: &Hit) -> Result<Option<OutputManifest>, CacheError> {
        let Some(remote) = &self.engine.remote else {
            return Ok(None);
        };
        let once = self
            .fetches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        if let Some(done) = once.get() {
            return Ok(done.clone());
        }
        let scratch = self.engine.cache.scratch()?;
        Ok(once
            .get_or_init(|| remote.fetch(hit, key, &scratch.path().join("out")))
            .clone())
    }

    fn execute(&self, id: ActionId, job: Job) -> Result<JobResult, CacheError> {
        let started = Instant::now();
        let action = self.graph.action(id);
        self.engine.report.event(&Event::Started {
            action: &action.name,
            kind: action.kind(),
            worker: crate::schedule::worker_index(),
            expected: job.expected,
        });
        if let Some(done) = self.take_remote(&job)? {
            return Ok(done);
        }
        let deps = match self.dep_outputs(job.deps)? {
            Ok(deps) => deps,
            Err(corrupt) => return Ok(corrupt),
        };
        let scratch = self.engine.cache.scratch()?;
        let (out, work) = (scratch.path().join("out"), scratch.path().join("work"));
        for dir in [&out, &work] {
            std::fs::create_dir_all(dir).map_err(crate::cache::io_err(dir))?;
        }
        let log_path = self.logs.join(format!("{}.log", log_name(&action.name)));
        let log = std::fs::File::create(&log_path).map_err(crate::cache::io_err(&log_path))?;
        let _ = writeln!(
            &log,
            "# {} (key {})\n# why: {}",
            action.name, job.key, job.reason
        );
        self.watch.begin(&action.name, &log_path);
        let _watching = Watching(&self.watch, &action.name);
        let ctx = Ctx {
            action,
            workspace: self.engine.workspace,
            out: &out,
            work: &work,
            deps: &deps,
            exec: self.engine.exec,
            log: &log,
            log_path: &log_path,
            cancel: &self.engine.cancel,
            jobs: self.engine.jobs,
            build_root: &self.build_root,
            locked: self.engine.locked,
            toolchain: &job.toolchain,
        };
        let result = if action.kind().is_background() {
            crate::exec::in_background(|| recipe::execute(&ctx))
        } else {
            recipe::execute(&ctx)
        };
        if let Err(e) = result {
            let _ = writeln!(&log, "kbuild: {e}");
            let hint = e.hint().map(str::to_string);
            return Ok(JobResult::Failed {
                error: e.to_string(),
                hint,
                log: log_path,
            });
        }
        // The next run of this action estimates its progress from this line.
        let seconds = started.elapsed().as_secs_f64();
        let lines = expect::count_lines(&log_path);
        let _ = write!(&log, "{}", expect::trailer(seconds, lines));
        let manifest = self.publish(job.key, &out, &log_path)?;
        if let Some(remote) = self.engine.remote.as_ref().filter(|_| job.own.is_none()) {
            remote.upload(action.kind(), job.key, &manifest, &log_path);
        }
        Ok(JobResult::Executed { manifest, seconds })
    }

    /// The job's result taken from the remote cache instead of executing (`Remote`), or why it
    /// cannot execute yet (`RemoteFailed`); `None` when it executes here.
    fn take_remote(&self, job: &Job) -> Result<Option<JobResult>, CacheError> {
        if let Some(hit) = &job.own
            && let Some(manifest) = self.fetch(job.key, hit)?
        {
            return Ok(Some(JobResult::Remote { manifest }));
        }
        for (dep, key, hit) in &job.remote_deps {
            if self.fetch(*key, hit)?.is_none() {
                return Ok(Some(JobResult::RemoteFailed { dep: *dep }));
            }
        }
        Ok(None)
    }

    /// The dependencies' output trees by role, or the `Corrupt` result of the first whose
    /// cached tree turned out damaged (dropped, so that it is built again).
    fn dep_outputs(
        &self,
        deps: Vec<(Role, ActionId, Arc<OutputManifest>)>,
    ) -> Result<Result<BTreeMap<Role, DepOutput>, JobResult>, CacheError> {
        let mut outputs = BTreeMap::new();
        for (role, dep, manifest) in deps {
            match self.engine.cache.tree(&manifest) {
                Ok(dir) => outputs.insert(role, DepOutput { dir, manifest }),
                Err(CacheError::Corrupt(corrupt)) => {
                    self.engine.cache.drop_tree(&manifest, &corrupt);
                    return Ok(Err(JobResult::Corrupt { dep, corrupt }));
                }
                Err(e) => return Err(e),
            };
        }
        Ok(Ok(outputs))
    }

    /// Enters an executed action's outputs into the cache under `key`, with its log.
    fn publish(
        &self,
        key: ActionKey,
        out: &Path,
        log_path: &Path,
    ) -> Result<OutputManifest, CacheError> {
        // Only now, with every output written, does the action enter the cache.
        let publishing = self.engine.cache.publishing();
        let manifest = OutputManifest::ingest(out, &self.engine.cache.blobs)?;
        self.engine.cache.store(key, &manifest)?;
        self.engine.cache.add_hold(key);
        drop(publishing);
        // The log of the run that made the entry, for `kbuild log` once the per-action log of
        // this workspace has been written over by a run of another key. Best effort: a log
        // is an explanation, not an output.
        let by_key = self.engine.cache.log_of(key);
        if let Some(dir) = by_key.parent()
            && std::fs::create_dir_all(dir).is_ok()
        {
            let _ = std::fs::copy(log_path, &by_key);
        }
        Ok(manifest)
    }
}

impl Worker for Runner<'_> {
    type Job = Job;
    type Result = JobResult;

    fn work(&self, id: ActionId, job: Job) -> JobResult {
        self.execute(id, job).unwrap_or_else(|e| JobResult::Failed {
            error: e.to_string(),
            hint: Some("check free space and permissions of the cache directory".into()),
            log: PathBuf::new(),
        })
    }
}

/// The scheduler-thread side of a run.
struct RunOwner<'a> {
    keys: Keys<'a>,
    /// Actions whose cached outputs were corrupt: the run goes another round for them.
    evicted: Vec<ActionId>,
    done: usize,
    /// How each action's last execution went, read when first wanted.
    expected: Vec<Option<Option<Expected>>>,
    /// When each action that needed a worker was handed one.
    queued_at: HashMap<ActionId, Instant>,
    /// The estimate last sent: a new one goes out only when it moved.
    estimate: f64,
}

impl RunOwner<'_> {
    fn dep_manifest(&mut self, id: ActionId) -> Option<Arc<OutputManifest>> {
        if self.keys.manifests[id.index()].is_none() {
            let key = self.keys.status[id.index()].key()?;
            self.keys.manifests[id.index()] = self.keys.engine.cache.lookup(key).map(Arc::new);
        }
        self.keys.manifests[id.index()].clone()
    }

    /// With `id` evicted, its dependencies whose outputs are gone too go in the same round.
    fn evict_missing_deps(&mut self, id: ActionId) {
        let (cache, graph) = (self.keys.engine.cache, self.keys.graph);
        let more = crate::heal::evict_missing_deps(cache, graph, &self.keys.status, id);
        self.evicted.extend(more);
    }

    /// How the last execution of `id` went: the trailer of the log kept by its last key, or of
    /// this workspace's last log of it.
    fn expected(&mut self, id: ActionId) -> Option<Expected> {
        if let Some(known) = self.expected[id.index()] {
            return known;
        }
        let name = &self.keys.graph.action(id).name;
        let cache = self.keys.engine.cache;
        let found = (self.keys.last.actions.get(name))
            .and_then(|last| expect::read(&cache.log_of(last.key)))
            .or_else(|| {
                let dir = logs_dir(cache, self.keys.engine.workspace);
                expect::read(&dir.join(format!("{}.log", log_name(name))))
            });
        self.expected[id.index()] = Some(found);
        found
    }

    /// Tells the reporter when the critical path of what is left is expected to end.
    fn estimate(&mut self) {
        let left: Vec<Left> = self
            .keys
            .graph
            .ids()
            .map(|id| {
                if let Some(&at) = self.queued_at.get(&id) {
                    let last = self.expected(id).map_or(0.0, |e| e.seconds);
                    return Left::Seconds(last - at.elapsed().as_secs_f64());
                }
                match self.keys.status[id.index()] {
                    Status::Pending => {
                        Left::IfDepsRun(self.expected(id).map_or(0.0, |e| e.seconds))
                    }
                    _ => Left::Nothing,
                }
            })
            .collect();
        let seconds = critical::remaining(self.keys.graph, |id| left[id.index()]);
        // Time passing moves it by itself: only news (a start, an end that changes the
        // path) is worth an event.
        let first = self.estimate.is_nan();
        if first
            || (seconds - self.estimate).abs() >= 1.0
            || (seconds == 0.0) != (self.estimate == 0.0)
        {
            self.estimate = seconds;
            self.keys.engine.report.event(&Event::Estimate { seconds });
        }
    }

    fn decided(&self, id: ActionId, decision: Decision, expected: Option<Expected>) {
        let action = self.keys.graph.action(id);
        let status = &self.keys.status[id.index()];
        let reason = match status {
            Status::WillRun { reason, .. } | Status::Remote { reason, .. } => Some(reason),
            _ => None,
        };
        self.keys.engine.report.event(&Event::Decided {
            action: &action.name,
            kind: action.kind(),
            decision,
            key: status.key(),
            reason,
            expected,
            done: self.done,
            total: self.keys.graph.len(),
        });
    }

    fn finished(
        &self,
        id: ActionId,
        outcome: Outcome,
        seconds: f64,
        (key, reason): (ActionKey, &Reason),
    ) {
        let action = self.keys.graph.action(id);
        let (log, error) = match &self.keys.status[id.index()] {
            Status::Failed { log, error, .. } => (Some(log.clone()), Some(error.as_str())),
            _ if outcome == Outcome::Executed => {
                let dir = logs_dir(self.keys.engine.cache, self.keys.engine.workspace);
                (
                    Some(dir.join(format!("{}.log", log_name(&action.name)))),
                    None,
                )
            }
            _ => (None, None),
        };
        self.keys.engine.report.event(&Event::Finished {
            action: &action.name,
            kind: action.kind(),
            outcome,
            key,
            reason,
            seconds,
            log: log.as_deref(),
            error,
            done: self.done,
            total: self.keys.graph.len(),
        });
    }
}

impl Owner for RunOwner<'_> {
    type Job = Job;
    type Result = JobResult;

    fn ready(&mut self, id: ActionId) -> Ready<Job> {
        let Some((record, key)) = self.keys.decide(id) else {
            let decision = match self.keys.status[id.index()] {
                Status::Cached { .. } => Some(Decision::Cached),
                Status::Remote { .. } => Some(Decision::Remote),
                _ => None,
            };
            self.done += 1;
            if let Some(decision) = decision {
                self.decided(id, decision, None);
            }
            return Ready::Done(decision.is_some());
        };
        self.keys.store_record(key, &record);
        let reason = match &self.keys.status[id.index()] {
            Status::WillRun { reason, .. } | Status::Remote { reason, .. } => reason.clone(),
            _ => Reason::NeverBuilt,
        };
        let own = self.keys.hits.get(&id).cloned();
        let mut deps = Vec::new();
        let mut remote_deps = Vec::new();
        for dep in self.keys.graph.action(id).deps.clone() {
            if let Some(hit) = self.keys.hits.get(&dep.id) {
                let dep_key = self.keys.status[dep.id.index()]
                    .key()
                    .expect("a hit has a key");
                remote_deps.push((dep.id, dep_key, hit.clone()));
                deps.push((dep.role, dep.id, Arc::new(hit.manifest.clone())));
                continue;
            }
            let Some(manifest) = self.dep_manifest(dep.id) else {
                // The entry vanished since it was found: treat it like a corrupt one.
                self.keys.engine.cache.evict(
                    self.keys.status[dep.id.index()]
                        .key()
                        .expect("a cached dep has a key"),
                );
                self.evict_missing_deps(dep.id);
                self.evicted.push(dep.id);
                self.keys.status[id.index()] = Status::Skipped;
                return Ready::Done(false);
            };
            deps.push((dep.role, dep.id, manifest));
        }
        let expected = self.expected(id);
        self.decided(id, Decision::Run, expected);
        self.queued_at.insert(id, Instant::now());
        self.estimate();
        Ready::Run(Job {
            key,
            reason,
            deps,
            toolchain: record.executor,
            own,
            remote_deps,
            expected,
        })
    }

    fn done(&mut self, id: ActionId, result: JobResult) -> bool {
        self.done += 1;
        let seconds = (self.queued_at.remove(&id)).map_or(0.0, |at| at.elapsed().as_secs_f64());
        let ok = self.record(id, result, seconds);
        self.estimate();
        ok
    }

    fn skipped(&mut self, id: ActionId) {
        self.done += 1;
        if matches!(self.keys.status[id.index()], Status::Pending) {
            self.keys.status[id.index()] = Status::Skipped;
        }
        let action = &self.keys.graph.action(id).name;
        self.keys.engine.report.event(&Event::Skipped { action });
    }
}

impl RunOwner<'_> {
    /// Records what a worker did with `id` and tells the reporter.
    fn record(&mut self, id: ActionId, result: JobResult, took: f64) -> bool {
        let (key, reason) = match &self.keys.status[id.index()] {
            Status::WillRun {
                key: Some(key),
                reason,
            }
            | Status::Remote { key, reason, .. } => (*key, reason.clone()),
            _ => unreachable!("only actions with a key are executed"),
        };
        match result {
            JobResult::Executed { manifest, seconds } => {
                // A remote hit that could not be fetched and was built here: dependents read
                // what was built, not what the remote claimed.
                self.keys.hits.remove(&id);
                let output = manifest.digest();
                self.keys.manifests[id.index()] = Some(Arc::new(manifest));
                self.keys.status[id.index()] = Status::Executed {
                    key,
                    output,
                    reason: reason.clone(),
                    seconds,
                };
                self.finished(id, Outcome::Executed, seconds, (key, &reason));
                true
            }
            JobResult::RemoteFailed { dep } => {
                // The next round decides it again; the remote no longer offers that key.
                self.evicted.push(dep);
                self.finished(id, Outcome::Retried, took, (key, &reason));
                self.keys.status[id.index()] = Status::Skipped;
                false
            }
            JobResult::Remote { manifest } => {
                self.keys.hits.remove(&id);
                let output = manifest.digest();
                self.keys.manifests[id.index()] = Some(Arc::new(manifest));
                self.keys.status[id.index()] = Status::Remote {
                    key,
                    output,
                    reason: reason.clone(),
                };
                self.finished(id, Outcome::Remote, took, (key, &reason));
                true
            }
            JobResult::Failed { error, hint, log } => {
                self.keys.status[id.index()] = Status::Failed {
                    key,
                    reason: reason.clone(),
                    error,
                    hint,
                    log,
                };
                self.finished(id, Outcome::Failed, took, (key, &reason));
                false
            }
            JobResult::Corrupt { dep, corrupt } => {
                crate::report::say(&format!(
                    "kbuild: {corrupt}; evicting `{}` and building it again",
                    self.keys.graph.action(dep).name
                ));
                self.finished(id, Outcome::Retried, took, (key, &reason));
                if let Some(key) = self.keys.status[dep.index()].key() {
                    self.keys.engine.cache.evict(key);
                }
                self.evict_missing_deps(dep);
                self.evicted.push(dep);
                self.keys.status[id.index()] = Status::Skipped;
                false
            }
        }
    }
}

/// The result of a plan or run: a status per action.
pub struct Report {
    pub status: Vec<Status>,
    /// Each action's key record, when the engine was asked to keep them and the key is known.
    pub records: Vec<Option<KeyRecord>>,
    pub errors: Vec<KeyError>,
    pub seconds: f64,
    pub last: LastRun,
    /// Every workspace file whose digest entered a key.
    pub inputs: Vec<String>,
    /// Every toolchain whose identity entered a key.
    pub toolsets: Vec<Toolset>,
}

impl Keys<'_> {
    fn into_report(self, started: Instant) -> Report {
        Report {
            status: self.status,
            records: self.records,
            errors: self.errors,
            seconds: started.elapsed().as_secs_f64(),
            last: self.last,
            inputs: self.input_digests.into_keys().collect(),
            toolsets: self.identities.into_keys().collect(),
        }
    }
}

impl Engine<'_> {
    /// Decides every action without running any.
    pub fn plan(&self, graph: &Graph) -> Report {
        self.plan_with(
            graph,
            self.cache.load_state(self.workspace),
            self.stat_cache(),
        )
    }

    /// [`Engine::plan`] with the last run's state and the stat cache already at hand (`kbuild
    /// plan` reads the first beside lowering, which leaves the second warm).
    pub fn plan_with(&self, graph: &Graph, last: LastRun, stat: StatCache) -> Report {
        let started = Instant::now();
        let mut keys = Keys::new(self, graph, last, stat);
        for id in graph.ids() {
            keys.decide(id);
        }
        keys.stat.save();
        keys.into_report(started)
    }

    /// The stat cache of the cache's state directory, as saved by the last pass.
    pub fn stat_cache(&self) -> StatCache {
        StatCache::in_state_dir(&self.cache.dir("state"))
    }

    /// What repairing did, said once at the end of the run: how many damaged entries were built
    /// again, and what is left when the rounds stopped making progress.
    fn say_repairs(
        &self,
        graph: &Graph,
        repaired: usize,
        rounds: usize,
        left: Option<&Vec<ActionId>>,
    ) {
        if repaired > 0 {
            crate::report::say(&format!(
                "kbuild: repaired {repaired} damaged cache entr{} in {rounds} rounds",
                if repaired == 1 { "y" } else { "ies" }
            ));
        }
        if let Some(left) = left {
            let names: Vec<&str> = left
                .iter()
                .map(|id| graph.action(*id).name.as_str())
                .collect();
            crate::report::say(&format!(
                "kbuild: error: the cache damaged the outputs of {} again as soon as they were \
                 built ({}); check the disk, then run `kbuild cache verify`",
                names.len(),
                names.join(", ")
            ));
        }
    }

    /// Builds the graph. A corrupt cache entry found on the way is evicted and rebuilt in a
    /// further round, until a round repairs nothing.
    pub fn run(&self, graph: &Graph) -> Result<Report, CacheError> {
        let started = Instant::now();
        let runner = Runner {
            engine: self,
            graph,
            logs: logs_dir(self.cache, self.workspace),
            build_root: build_root(self.cache, self.workspace),
            fetches: Default::default(),
            watch: Watch::new(self.report.clone()),
        };
        std::fs::create_dir_all(&runner.logs).map_err(crate::cache::io_err(&runner.logs))?;
        let opts = schedule::Options {
            jobs: self.jobs,
            keep_going: self.keep_going,
        };
        let mut rounds = 0;
        let mut repaired = 0;
        let mut previous: Vec<ActionId> = Vec::new();
        loop {
            rounds += 1;
            let last = self.cache.load_state(self.workspace);
            let mut keys = Keys::new(self, graph, last, self.stat_cache());
            keys.running = true;
            let mut owner = RunOwner {
                keys,
                evicted: Vec::new(),
                done: 0,
                expected: vec![None; graph.len()],
                queued_at: HashMap::new(),
                estimate: f64::NAN,
            };
            self.report.event(&Event::RunStarted {
                actions: graph.len(),
                jobs: self.jobs,
            });
            schedule::run(graph, &opts, &self.cancel, &runner, &mut owner);
            owner.keys.stat.save();
            let updates = owner.keys.updates();
            if updates.is_empty() {
                self.cache.touch_state(self.workspace);
            } else {
                self.cache.save_state(self.workspace, &updates)?;
            }
            // Every round rebuilds what the last one evicted, verified, so wide damage shrinks
            // round by round: go on until a round repairs nothing. A round that evicts exactly
            // what the one before did made no progress (the disk keeps damaging what is
            // written), and going on would not end.
            let mut evicted = owner.evicted.clone();
            evicted.sort();
            evicted.dedup();
            let stuck = !evicted.is_empty() && evicted == previous;
            repaired += evicted.len();
            if evicted.is_empty() || stuck || rounds > graph.len() || self.cancel.is_cancelled() {
                if let Some(remote) = &self.remote {
                    remote.finish();
                }
                self.say_repairs(graph, repaired, rounds, stuck.then_some(&evicted));
                return Ok(owner.keys.into_report(started));
            }
            previous = evicted;
        }
    }
}
