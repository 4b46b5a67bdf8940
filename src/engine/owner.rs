//! The scheduler side of a run: decides each action when its dependencies are done, hands
//! misses to the workers, records what they return and tells the reporter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::decide::Keys;
use super::job::{Job, JobResult};
use super::status::Status;
use crate::action::ActionId;
use crate::cache::{OutputManifest, log_name, logs_dir};
use crate::key::ActionKey;
use crate::key::explain::Reason;
use crate::report::critical::{self, Left};
use crate::report::{Decision, Event, Expected, Outcome, expect};
use crate::schedule::{Owner, Ready};

/// The scheduler-thread side of a run.
pub(super) struct RunOwner<'a> {
    pub(super) keys: Keys<'a>,
    /// Actions whose cached outputs were corrupt: the run goes another round for them.
    pub(super) evicted: Vec<ActionId>,
    pub(super) done: usize,
    /// How each action's last execution went, read when first wanted.
    pub(super) expected: Vec<Option<Option<Expected>>>,
    /// When each action that needed a worker was handed one.
    pub(super) queued_at: HashMap<ActionId, Instant>,
    /// The estimate last sent: a new one goes out only when it moved.
    pub(super) estimate: f64,
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
        let more = super::heal::evict_missing_deps(cache, graph, &self.keys.status, id);
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
        self.keys.store_record(id, key, &record);
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
        let engine = self.keys.engine;
        let remote = engine.offload.as_ref().is_some_and(|offload| {
            let build_root = crate::cache::build_root(engine.cache, engine.workspace);
            let recipe = &self.keys.graph.action(id).recipe;
            offload.placement(recipe, &record.executor, &build_root)
                == crate::recipe::remote::Placement::Remote
        });
        let job = Job {
            key,
            reason,
            deps,
            toolchain: record.executor,
            own,
            remote_deps,
            expected,
            remote,
        };
        if remote {
            Ready::RunRemote(job)
        } else {
            Ready::Run(job)
        }
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
            JobResult::Failed {
                error,
                hint,
                log,
                findings,
            } => {
                self.keys.status[id.index()] = Status::Failed {
                    key,
                    reason: reason.clone(),
                    error,
                    hint,
                    log,
                    findings,
                };
                self.finished(id, Outcome::Failed, took, (key, &reason));
                false
            }
            JobResult::Corrupt { dep, corrupt } => {
                self.keys.engine.report.say(&format!(
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
