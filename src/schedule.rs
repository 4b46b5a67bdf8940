//! The scheduler: one thread owns all state; a rayon pool runs the actions that must execute.
//!
//! States of an action (see `doc/design.md`): waiting for dependencies, ready, queued for a
//! worker, running, and finished (succeeded, failed, or skipped because a dependency did not
//! succeed). The owner decides on the scheduler thread whether a ready action finishes at once
//! (a cache hit) or needs a worker.

use std::collections::VecDeque;
use std::sync::mpsc;

use crate::action::ActionId;
use crate::exec::Cancel;
use crate::graph::Graph;

/// What the owner says about an action whose dependencies all succeeded.
pub enum Ready<J> {
    /// Finished without a worker: `true` for success.
    Done(bool),
    /// Needs a worker to run this job.
    Run(J),
}

/// The scheduler-thread side of a run: decides, records and reports.
pub trait Owner {
    type Job: Send;
    type Result: Send;
    /// The action's dependencies have all succeeded.
    fn ready(&mut self, id: ActionId) -> Ready<Self::Job>;
    /// A worker finished the action's job; returns whether the action succeeded.
    fn done(&mut self, id: ActionId, result: Self::Result) -> bool;
    /// The action will not run (a dependency failed, or the run is stopping).
    fn skipped(&mut self, id: ActionId);
}

/// The worker side of a run: shared by the pool's threads, so it holds no per-run mutable state.
pub trait Worker: Sync {
    type Job: Send;
    type Result: Send;
    fn work(&self, id: ActionId, job: Self::Job) -> Self::Result;
}

pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
}

/// Runs every action of `graph`, respecting dependencies.
pub fn run<W, O>(graph: &Graph, opts: &Options, cancel: &Cancel, worker: &W, owner: &mut O)
where
    W: Worker,
    O: Owner<Job = W::Job, Result = W::Result>,
{
    let jobs = opts.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .expect("a thread pool");
    let mut waiting: Vec<usize> = graph.ids().map(|id| graph.action(id).deps.len()).collect();
    let mut blocked = vec![false; graph.len()];
    let mut ready: VecDeque<ActionId> = graph.ids().filter(|id| waiting[id.index()] == 0).collect();
    let mut queued: VecDeque<(ActionId, W::Job)> = VecDeque::new();
    let (tx, rx) = mpsc::channel::<(ActionId, W::Result)>();
    let mut running = 0;
    let mut stopping = false;
    pool.in_place_scope(|scope| {
        loop {
            while let Some(id) = ready.pop_front() {
                stopping |= cancel.is_cancelled();
                let ok = if blocked[id.index()] || stopping {
                    owner.skipped(id);
                    false
                } else {
                    match owner.ready(id) {
                        Ready::Done(ok) => ok,
                        Ready::Run(job) => {
                            queued.push_back((id, job));
                            continue;
                        }
                    }
                };
                stopping |= !ok && !opts.keep_going && !blocked[id.index()];
                release(graph, id, ok, &mut waiting, &mut blocked, &mut ready);
            }
            if stopping {
                for (id, _) in queued.drain(..) {
                    owner.skipped(id);
                    release(graph, id, false, &mut waiting, &mut blocked, &mut ready);
                }
            }
            while running < jobs {
                let Some((id, job)) = queued.pop_front() else {
                    break;
                };
                let tx = tx.clone();
                running += 1;
                scope.spawn(move |_| {
                    let result = worker.work(id, job);
                    let _ = tx.send((id, result));
                });
            }
            if running == 0 {
                if ready.is_empty() && queued.is_empty() {
                    break;
                }
                continue;
            }
            let (id, result) = rx.recv().expect("workers report back");
            running -= 1;
            let ok = owner.done(id, result);
            stopping |= (!ok && !opts.keep_going) || cancel.is_cancelled();
            release(graph, id, ok, &mut waiting, &mut blocked, &mut ready);
        }
    });
}

/// Counts `id` as finished for its dependents; a failure blocks them.
fn release(
    graph: &Graph,
    id: ActionId,
    ok: bool,
    waiting: &mut [usize],
    blocked: &mut [bool],
    ready: &mut VecDeque<ActionId>,
) {
    for &next in graph.dependents(id) {
        blocked[next.index()] |= !ok;
        waiting[next.index()] -= 1;
        if waiting[next.index()] == 0 {
            ready.push_back(next);
        }
    }
}
