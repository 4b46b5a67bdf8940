//! The worker side of a run: executes one action's recipe in a scratch directory (or takes its
//! result from the remote cache), then stores its outputs.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::Engine;
use super::job::{Job, JobResult};
use crate::action::{ActionId, Role};
use crate::cache::{CacheError, OutputManifest, log_name};
use crate::graph::Graph;
use crate::key::ActionKey;
use crate::recipe::{self, Ctx, DepOutput, Found, RecipeError};
use crate::remote::Hit;
use crate::report::watch::Watch;
use crate::report::{Event, expect};
use crate::schedule::Worker;

pub(super) struct Runner<'a> {
    pub(super) engine: &'a Engine<'a>,
    pub(super) graph: &'a Graph,
    pub(super) logs: PathBuf,
    pub(super) build_root: PathBuf,
    pub(super) sums: crate::cache::Sums,
    pub(super) members: crate::cache::Members,
    /// One fetch per remote hit, however many workers need it at once.
    pub(super) fetches:
        std::sync::Mutex<HashMap<ActionKey, Arc<std::sync::OnceLock<Option<OutputManifest>>>>>,
    /// Counts the lines of running actions' logs for the reporter.
    pub(super) watch: Watch,
    /// `-j`: what runs here holds a slot, so an action that falls back from the cluster to a
    /// local run waits for one rather than run beside `-j` others.
    pub(super) local: Slots,
}

/// A counting semaphore of local slots.
pub(super) struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    pub(super) fn new(n: usize) -> Slots {
        Slots {
            free: std::sync::Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

/// A held local slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Stops watching an action's log however its execution ends.
struct Watching<'a>(&'a Watch, &'a str);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
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
            "# {} (key {})\n# why: {}{}",
            action.name,
            job.key,
            job.reason,
            if job.remote { "\n# run remotely" } else { "" }
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
            report: &*self.engine.report,
            ledger: self.engine.cache.ledger(),
            sums: &self.sums,
            members: &self.members,
        };
        let result = self
            .run_recipe(&ctx, job.remote)
            .and_then(|found| self.record_found(found, &log));
        if let Err(e) = result {
            let _ = writeln!(&log, "kbuild: {e}");
            let hint = e.hint().map(str::to_string);
            return Ok(JobResult::Failed {
                error: e.to_string(),
                hint,
                log: log_path,
                findings: e.findings().map(str::to_string),
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

    /// Runs the action's recipe: on the remote-execution cluster when it was placed there
    /// (and the cluster gives a result), else here in a local slot.
    fn run_recipe(&self, ctx: &Ctx, remote: bool) -> Result<Found, RecipeError> {
        let offloaded = (self.engine.offload.as_ref())
            .filter(|_| remote)
            .and_then(|offload| offload.run(ctx));
        if let Some(done) = offloaded {
            return done.map(|()| Found::default());
        }
        let _slot = self.local.take();
        if ctx.action.kind().is_background() {
            crate::exec::in_background(|| recipe::execute(ctx))
        } else {
            recipe::execute(ctx)
        }
    }

    /// Writes down what the recipe found outside its outputs: a first pin goes to kernel.lock.
    fn record_found(&self, found: Found, log: &std::fs::File) -> Result<(), RecipeError> {
        if let Some((url, sha256)) = found.pin {
            crate::manifest::pins::pin(self.engine.workspace, &url, &sha256)
                .map_err(crate::recipe::io("writing kernel.lock"))?;
            let _ = writeln!(&*log, "pinned {url} sha256={sha256} in kernel.lock");
        }
        Ok(())
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
        // this workspace has been written over by a run of another key. A log is an
        // explanation, not an output: a failure to keep it is a warning.
        let by_key = self.engine.cache.log_of(key);
        let kept = match by_key.parent() {
            Some(dir) => {
                std::fs::create_dir_all(dir).and_then(|()| std::fs::copy(log_path, &by_key))
            }
            None => Ok(0),
        };
        if let Err(e) = kept {
            self.engine.report.say(&format!(
                "kbuild: warning: cannot keep the log {} as {}: {e}",
                log_path.display(),
                by_key.display()
            ));
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
            findings: None,
        })
    }
}
