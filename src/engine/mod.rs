//! The engine: decides every action (cached, in the remote cache, or to run, and why), then
//! schedules the misses over the workers and records what they made. What a key is made of is
//! the keyer's (`key::keyer`); what an action does is its recipe's.

mod decide;
pub mod heal;
mod job;
pub mod offload;
mod owner;
mod runner;
mod status;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use crate::key::keyer::KeyError;
pub use status::Status;

use crate::action::ActionId;
use crate::cache::{Cache, CacheError, LastRun, build_root, logs_dir};
use crate::exec::{Cancel, Executor, Toolset};
use crate::graph::Graph;
use crate::key::KeyRecord;
use crate::remote::Remote;
use crate::report::watch::Watch;
use crate::report::{Event, Reporter};
use crate::schedule;
use crate::statcache::StatCache;
use decide::Keys;
use owner::RunOwner;
use runner::Runner;

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
    /// The remote-execution cluster misses may run on (`--remote-executor`).
    pub offload: Option<Arc<offload::Offload>>,
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

impl Engine<'_> {
    /// Decides every action without running any.
    pub fn plan(&self, graph: &Graph) -> Result<Report, CacheError> {
        let last = self.cache.load_state(self.workspace)?;
        Ok(self.plan_with(graph, last, self.stat_cache()?))
    }

    /// [`Engine::plan`] with the last run's state and the stat cache already at hand (`kbuild
    /// plan` reads the first beside lowering, which leaves the second warm).
    pub fn plan_with(&self, graph: &Graph, last: LastRun, stat: StatCache) -> Report {
        let started = Instant::now();
        let mut keys = Keys::new(self, graph, last, stat);
        for id in graph.ids() {
            keys.decide(id);
        }
        keys.into_report(started)
    }

    /// The stat cache of the cache's state directory, as saved by the last pass.
    pub fn stat_cache(&self) -> Result<StatCache, crate::saved::NewerState> {
        StatCache::open(self.cache.root())
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
            self.report.say(&format!(
                "kbuild: repaired {repaired} damaged cache entr{} in {rounds} rounds",
                if repaired == 1 { "y" } else { "ies" }
            ));
        }
        if let Some(left) = left {
            let names: Vec<&str> = left
                .iter()
                .map(|id| graph.action(*id).name.as_str())
                .collect();
            self.report.say(&format!(
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
            sums: self.cache.sums(),
            members: self.cache.members(),
            fetches: Default::default(),
            watch: Watch::new(self.report.clone()),
            local: runner::Slots::new(self.jobs),
        };
        std::fs::create_dir_all(&runner.logs).map_err(crate::cache::io_err(&runner.logs))?;
        let opts = schedule::Options {
            jobs: self.jobs,
            remote_jobs: self.offload.as_ref().map_or(0, |o| o.jobs),
            keep_going: self.keep_going,
        };
        let mut rounds = 0;
        let mut repaired = 0;
        let mut previous: Vec<ActionId> = Vec::new();
        loop {
            rounds += 1;
            let last = self.cache.load_state(self.workspace)?;
            let mut keys = Keys::new(self, graph, last, self.stat_cache()?);
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
