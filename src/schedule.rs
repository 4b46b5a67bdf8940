//! The scheduler: one thread owns all state; worker threads run the actions that must execute.
//!
//! States of an action (see `doc/design.md`): waiting for dependencies, ready, queued for a
//! worker, running, and finished (succeeded, failed, or skipped because a dependency did not
//! succeed). The owner decides on the scheduler thread whether a ready action finishes at once
//! (a cache hit) or needs a worker.

use std::collections::VecDeque;
use std::sync::{Mutex, mpsc};

use crate::action::ActionId;
use crate::exec::Cancel;
use crate::graph::Graph;

/// What the owner says about an action whose dependencies all succeeded.
pub enum Ready<J> {
    /// Finished without a worker: `true` for success.
    Done(bool),
    /// Needs a worker to run this job.
    Run(J),
    /// Runs on a remote-execution cluster: a worker of the remote pool (`--remote-jobs`) waits
    /// for it, so a run keeps that many remote actions in flight whatever its `-j`.
    RunRemote(J),
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
    /// Workers that wait for remote executions.
    pub remote_jobs: usize,
    pub keep_going: bool,
}

/// The two pools: local work, and waiting for remote executions.
const LOCAL: usize = 0;
const REMOTE: usize = 1;

/// The scheduler thread's bookkeeping.
struct State<J> {
    waiting: Vec<usize>,
    blocked: Vec<bool>,
    ready: VecDeque<ActionId>,
    /// For the local pool and the remote one.
    queued: [VecDeque<(ActionId, J)>; 2],
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
            queued: [VecDeque::new(), VecDeque::new()],
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
                        self.queued[LOCAL].push_back((id, job));
                        continue;
                    }
                    Ready::RunRemote(job) => {
                        self.queued[REMOTE].push_back((id, job));
                        continue;
                    }
                }
            };
            self.stopping |= !ok && !opts.keep_going && !blocked;
            self.release(graph, id, ok);
        }
        if self.stopping {
            for pool in [LOCAL, REMOTE] {
                while let Some((id, _)) = self.queued[pool].pop_front() {
                    owner.skipped(id);
                    self.release(graph, id, false);
                }
            }
        }
    }
}

thread_local! {
    /// Which of the run's workers this thread is (0 off a worker), for reports and traces.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The index of the worker running on this thread.
pub fn worker_index() -> usize {
    WORKER.with(|w| w.get())
}

/// A finished job, or the panic that ended it.
type Report<R> = (ActionId, std::thread::Result<R>);

/// Runs every action of `graph`, respecting dependencies. Workers are plain threads, made only
/// when some action needs one: a null build never starts a thread.
///
/// Why not a rayon pool: a rayon worker that waits inside a job (a `par_iter` while ingesting
/// outputs, an `install` into the remote cache's transfer pool) runs other jobs of its pool
/// meanwhile, so a second action could start on the stack of the first and wait for a fetch
/// that the frame below it holds, which never ends. Jobs on plain threads never nest; the
/// parallel work inside an action goes to rayon's pools, which block such a caller instead.
pub fn run<W, O>(graph: &Graph, opts: &Options, cancel: &Cancel, worker: &W, owner: &mut O)
where
    W: Worker,
    O: Owner<Job = W::Job, Result = W::Result>,
{
    let mut st: State<W::Job> = State::new(graph);
    st.drain_ready(graph, opts, cancel, owner);
    if st.queued.iter().all(VecDeque::is_empty) && st.ready.is_empty() {
        return;
    }
    let sizes = [opts.jobs.max(1), opts.remote_jobs];
    let (tx, rx) = mpsc::channel::<Report<W::Result>>();
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        for (pool, size) in sizes.into_iter().enumerate() {
            let (work_tx, work_rx) = mpsc::channel::<(ActionId, W::Job)>();
            let work_rx = std::sync::Arc::new(Mutex::new(work_rx));
            for index in 0..size {
                let (work_rx, tx) = (work_rx.clone(), tx.clone());
                // Remote waiters are numbered after the local workers.
                let index = index + pool * sizes[LOCAL];
                std::thread::Builder::new()
                    .name(format!("kbuild-worker-{index}"))
                    .spawn_scoped(scope, move || {
                        WORKER.with(|w| w.set(index));
                        work_loop(worker, &work_rx, &tx)
                    })
                    .expect("a worker thread");
            }
            senders.push(work_tx);
        }
        let mut running = [0usize; 2];
        // Which pool each running action is in.
        let mut pool_of = std::collections::HashMap::new();
        loop {
            st.drain_ready(graph, opts, cancel, owner);
            for pool in [LOCAL, REMOTE] {
                while running[pool] < sizes[pool] {
                    let Some(next) = st.queued[pool].pop_front() else {
                        break;
                    };
                    running[pool] += 1;
                    pool_of.insert(next.0, pool);
                    senders[pool].send(next).expect("workers take jobs");
                }
            }
            if running == [0, 0] {
                if st.ready.is_empty() && st.queued.iter().all(VecDeque::is_empty) {
                    break;
                }
                // Remote work with no remote pool: nothing would ever take it.
                assert!(
                    st.queued[REMOTE].is_empty() || sizes[REMOTE] > 0,
                    "remote jobs queued without a remote pool"
                );
                continue;
            }
            let (id, result) = rx.recv().expect("workers report back");
            running[pool_of.remove(&id).expect("a running action has a pool")] -= 1;
            let result = match result {
                Ok(result) => result,
                Err(panic) => {
                    // The others finish what they run; then the panic goes on up.
                    drop(senders);
                    std::panic::resume_unwind(panic);
                }
            };
            let ok = owner.done(id, result);
            st.stopping |= (!ok && !opts.keep_going) || cancel.is_cancelled();
            st.release(graph, id, ok);
        }
        // No more jobs: the workers' loops end.
        drop(senders);
    });
}

/// One worker: takes jobs until the scheduler closes the queue.
fn work_loop<W: Worker>(
    worker: &W,
    jobs: &Mutex<mpsc::Receiver<(ActionId, W::Job)>>,
    reports: &mpsc::Sender<Report<W::Result>>,
) {
    loop {
        let next = jobs.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((id, job)) = next else {
            return;
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.work(id, job)));
        if reports.send((id, result)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use rayon::prelude::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn independent(n: usize) -> Graph {
        let mut g = Graph::default();
        for i in 0..n {
            g.add(Action::bare(&format!("a{i}"), &[]));
        }
        g
    }

    thread_local! {
        static DEPTH: Cell<usize> = const { Cell::new(0) };
    }

    /// Waits inside every job the ways actions do: parallel hashing in rayon's global pool and
    /// a call into another pool (the remote cache's transfers).
    struct Waiting {
        transfers: rayon::ThreadPool,
        nested: AtomicUsize,
        ran: AtomicUsize,
    }

    impl Worker for Waiting {
        type Job = ();
        type Result = ();
        fn work(&self, _: ActionId, _: ()) {
            if DEPTH.with(|d| d.replace(d.get() + 1)) > 0 {
                self.nested.fetch_add(1, Ordering::Relaxed);
            }
            let pause = || std::thread::sleep(std::time::Duration::from_micros(200));
            (0..16).into_par_iter().for_each(|_| pause());
            self.transfers
                .install(|| (0..16).into_par_iter().for_each(|_| pause()));
            DEPTH.with(|d| d.set(d.get() - 1));
            self.ran.fetch_add(1, Ordering::Relaxed);
        }
    }

    struct AllRun;

    impl Owner for AllRun {
        type Job = ();
        type Result = ();
        fn ready(&mut self, _: ActionId) -> Ready<()> {
            Ready::Run(())
        }
        fn done(&mut self, _: ActionId, _: ()) -> bool {
            true
        }
        fn skipped(&mut self, _: ActionId) {}
    }

    /// A job never starts on the stack of another one waiting in rayon: such nesting made a
    /// second action wait for a remote fetch that the frame below it held, for ever.
    #[test]
    fn jobs_never_nest_while_one_waits() {
        let graph = independent(200);
        let worker = Waiting {
            transfers: rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
            nested: AtomicUsize::new(0),
            ran: AtomicUsize::new(0),
        };
        let opts = Options {
            jobs: 3,
            remote_jobs: 0,
            keep_going: false,
        };
        run(&graph, &opts, &Cancel::default(), &worker, &mut AllRun);
        assert_eq!(worker.ran.load(Ordering::Relaxed), 200);
        assert_eq!(worker.nested.load(Ordering::Relaxed), 0);
    }

    struct Panics;

    impl Worker for Panics {
        type Job = ();
        type Result = ();
        fn work(&self, id: ActionId, _: ()) {
            assert!(id.index() != 3, "job 3 fails");
        }
    }

    /// A panicking job ends the run with its panic instead of leaving the scheduler waiting.
    #[test]
    fn a_panic_in_a_job_reaches_the_caller() {
        let graph = independent(8);
        let opts = Options {
            jobs: 2,
            remote_jobs: 0,
            keep_going: true,
        };
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&graph, &opts, &Cancel::default(), &Panics, &mut AllRun)
        }));
        let message = caught.unwrap_err();
        let message = (message.downcast_ref::<String>().cloned())
            .or_else(|| message.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(message.contains("job 3 fails"), "{message}");
    }
}
