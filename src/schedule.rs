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

/// The scheduler thread's bookkeeping.
struct State<J> {
    waiting: Vec<usize>,
    blocked: Vec<bool>,
    ready: VecDeque<ActionId>,
    queued: VecDeque<(ActionId, J)>,
    stopping: bool,
}

impl<J> State<J> {
    fn new(graph: &Graph) -> State<J> {
        let waiting: Vec<usize> = graph.ids().map(|id| graph.action(id).deps.len()).collect();
        let ready = graph.ids().filter(|id| waiting[id.index()] == 0).collect();
        State {
            blocked: vec![false; graph.len()],
            waiting,
            ready,
            queued: VecDeque::new(),
            stopping: false,
        }
    }

    /// Counts `id` as finished for its dependents; a failure blocks them.
    fn release(&mut self, graph: &Graph, id: ActionId, ok: bool) {
        for &next in graph.dependents(id) {
            self.blocked[next.index()] |= !ok;
            self.waiting[next.index()] -= 1;
            if self.waiting[next.index()] == 0 {
                self.ready.push_back(next);
            }
        }
    }

    /// Decides every ready action: finished at once, skipped, or queued for a worker.
    fn drain_ready<O: Owner<Job = J>>(
        &mut self,
        graph: &Graph,
        opts: &Options,
        cancel: &Cancel,
        owner: &mut O,
    ) {
        while let Some(id) = self.ready.pop_front() {
            self.stopping |= cancel.is_cancelled();
            let blocked = self.blocked[id.index()];
            let ok = if blocked || self.stopping {
                owner.skipped(id);
                false
            } else {
                match owner.ready(id) {
                    Ready::Done(ok) => ok,
                    Ready::Run(job) => {
                        self.queued.push_back((id, job));
                        continue;
                    }
                }
            };
            self.stopping |= !ok && !opts.keep_going && !blocked;
            self.release(graph, id, ok);
        }
        if self.stopping {
            while let Some((id, _)) = self.queued.pop_front() {
                owner.skipped(id);
                self.release(graph, id, false);
            }
        }
    }
}

/// Runs every action of `graph`, respecting dependencies. The pool is made only when some
/// action needs a worker: a null build never starts a thread.
pub fn run<W, O>(graph: &Graph, opts: &Options, cancel: &Cancel, worker: &W, owner: &mut O)
where
    W: Worker,
    O: Owner<Job = W::Job, Result = W::Result>,
{
    let mut st: State<W::Job> = State::new(graph);
    st.drain_ready(graph, opts, cancel, owner);
    if st.queued.is_empty() && st.ready.is_empty() {
        return;
    }
    let jobs = opts.jobs.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .expect("a thread pool");
    let (tx, rx) = mpsc::channel::<(ActionId, W::Result)>();
    let mut running = 0;
    pool.in_place_scope(|scope| {
        loop {
            st.drain_ready(graph, opts, cancel, owner);
            while running < jobs {
                let Some((id, job)) = st.queued.pop_front() else {
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
                if st.ready.is_empty() && st.queued.is_empty() {
                    break;
                }
                continue;
            }
            let (id, result) = rx.recv().expect("workers report back");
            running -= 1;
            let ok = owner.done(id, result);
            st.stopping |= (!ok && !opts.keep_going) || cancel.is_cancelled();
            st.release(graph, id, ok);
        }
    });
}
