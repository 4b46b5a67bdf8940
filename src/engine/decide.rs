//! Deciding each action: its key from what it sees, then cached here, in the remote cache, or
//! to run, with the reason in words.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use super::status::Status;
use super::{Engine, Report};
use crate::action::{ActionId, Recipe};
use crate::cache::{LastOutcome, LastRun, OutputManifest, RunEntry};
use crate::digest::Digest;
use crate::graph::Graph;
use crate::key::explain::{Reason, explain};
use crate::key::keyer::{KeyError, Keyer};
use crate::key::{ActionKey, KeyRecord, Seen, dep_names, kernel_terms};
use crate::kind::ActionKind;
use crate::remote::Hit;
use crate::statcache::StatCache;

/// The scheduler-thread state of a plan or run.
pub(super) struct Keys<'a> {
    pub(super) engine: &'a Engine<'a>,
    pub(super) graph: &'a Graph,
    /// Gathers what each action sees for its key.
    pub(super) keyer: Keyer<'a>,
    pub(super) last: LastRun,
    pub(super) status: Vec<Status>,
    pub(super) manifests: Vec<Option<Arc<OutputManifest>>>,
    pub(super) records: Vec<Option<KeyRecord>>,
    /// Remote hits whose outputs are not local (yet): fetched only when something needs them.
    pub(super) hits: HashMap<ActionId, Hit>,
    /// A run, not a plan: remote hits may be fetched and records are kept.
    pub(super) running: bool,
    pub(super) errors: Vec<KeyError>,
}

impl<'a> Keys<'a> {
    pub(super) fn new(
        engine: &'a Engine<'a>,
        graph: &'a Graph,
        last: LastRun,
        stat: StatCache,
    ) -> Keys<'a> {
        Keys {
            engine,
            graph,
            keyer: Keyer::new(engine.workspace, engine.exec, stat),
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

    /// What `id` sees, or `None` while a dependency's output is unknown.
    fn seen(&mut self, id: ActionId) -> Result<Option<Seen<'a>>, KeyError> {
        let status = &self.status;
        self.keyer
            .seen(self.graph.action(id), |dep| status[dep.index()].output())
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

    pub(super) fn dep_names(&self, id: ActionId) -> BTreeMap<String, String> {
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
    /// A failure costs only explanations: a warning, not a failed build.
    pub(super) fn store_record(&self, id: ActionId, key: ActionKey, record: &KeyRecord) {
        let cache = self.engine.cache;
        let kept = cache.store_record(key, record).and_then(|()| {
            (record.inputs.iter())
                .filter(|(path, _)| kernel_terms::explains(path))
                .try_for_each(|(path, digest)| {
                    cache.keep_input(*digest, &self.engine.workspace.join(path))
                })
        });
        if let Err(e) = kept {
            self.engine.report.say(&format!(
                "kbuild: warning: cannot keep what `{}` was keyed by: {e}; `kbuild why` cannot explain its next rebuild",
                self.graph.action(id).name
            ));
        }
    }

    /// Decides one action without running anything: cached, or would run and why.
    pub(super) fn decide(&mut self, id: ActionId) -> Option<(KeyRecord, ActionKey)> {
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
                self.store_record(id, key, &record);
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
    pub(super) fn updates(&self) -> BTreeMap<String, RunEntry> {
        let mut out = BTreeMap::new();
        for id in self.graph.ids() {
            let (key, output, outcome, reason) = match &self.status[id.index()] {
                Status::Cached { key, output } => {
                    let previous = self.last.actions.get(&self.graph.action(id).name);
                    let kept = previous
                        .filter(|p| p.key == *key)
                        .and_then(|p| p.reason.clone());
                    let outcome = if kept.is_some() {
                        LastOutcome::Executed
                    } else {
                        LastOutcome::Cached
                    };
                    (*key, Some(*output), outcome, kept)
                }
                Status::Executed {
                    key,
                    output,
                    reason,
                    ..
                } => (
                    *key,
                    Some(*output),
                    LastOutcome::Executed,
                    Some(reason.to_string()),
                ),
                Status::Remote { key, output, .. } => {
                    (*key, Some(*output), LastOutcome::Remote, None)
                }
                Status::Failed { key, reason, .. } => {
                    (*key, None, LastOutcome::Failed, Some(reason.to_string()))
                }
                _ => continue,
            };
            let entry = RunEntry {
                key,
                output,
                outcome,
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

impl Keys<'_> {
    pub(super) fn into_report(self, started: Instant) -> Report {
        let (stat, inputs, toolsets) = self.keyer.into_inputs();
        if let Err(e) = stat.save() {
            self.engine.report.say(&e.to_string());
        }
        Report {
            status: self.status,
            records: self.records,
            errors: self.errors,
            seconds: started.elapsed().as_secs_f64(),
            last: self.last,
            inputs,
            toolsets,
        }
    }
}
