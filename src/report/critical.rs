//! The critical path of what is left of a run: the longest chain of expected durations through
//! the actions that have yet to finish. Shown as the run's estimated end.

use crate::action::ActionId;
use crate::graph::Graph;

/// What is left of one action, as far as the engine knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Left {
    /// Finished, or decided without work (cached).
    Nothing,
    /// Running or queued: about this many seconds to go.
    Seconds(f64),
    /// Not decided yet: it takes `f64` seconds if it runs, which it does when something it
    /// depends on runs.
    IfDepsRun(f64),
}

/// Seconds until the longest chain of what is left ends. The planner adds every action after
/// its dependencies, so one pass in id order sees each dependency first.
pub fn remaining(graph: &Graph, left: impl Fn(ActionId) -> Left) -> f64 {
    let mut ends = vec![0.0f64; graph.len()];
    let mut runs = vec![false; graph.len()];
    let mut longest = 0.0f64;
    for id in graph.ids() {
        let deps = &graph.action(id).deps;
        let start = deps.iter().map(|d| ends[d.id.index()]).fold(0.0, f64::max);
        let deps_run = deps.iter().any(|d| runs[d.id.index()]);
        let (cost, run) = match left(id) {
            Left::Nothing => (0.0, false),
            Left::Seconds(s) => (s.max(0.0), true),
            Left::IfDepsRun(s) if deps_run => (s.max(0.0), true),
            Left::IfDepsRun(_) => (0.0, false),
        };
        ends[id.index()] = start + cost;
        runs[id.index()] = run;
        longest = longest.max(ends[id.index()]);
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;

    /// a → b → d and a → c → d: the diamond of fetch, configure, headers and compile.
    fn diamond() -> (Graph, [ActionId; 4]) {
        let mut g = Graph::default();
        let mut add = |name: &str, deps: &[ActionId]| g.add(Action::bare(name, deps));
        let a = add("a", &[]);
        let b = add("b", &[a]);
        let c = add("c", &[a]);
        let d = add("d", &[b, c]);
        (g, [a, b, c, d])
    }

    #[test]
    fn the_longest_chain_of_what_is_left_counts() {
        let (g, [a, b, c, d]) = diamond();
        let left = |id| match id {
            id if id == a => Left::Nothing,
            id if id == b => Left::Seconds(10.0),
            id if id == c => Left::Seconds(30.0),
            id if id == d => Left::IfDepsRun(100.0),
            _ => unreachable!(),
        };
        assert_eq!(remaining(&g, left), 130.0);
    }

    #[test]
    fn an_undecided_action_counts_only_when_something_below_it_runs() {
        let (g, [a, ..]) = diamond();
        let left = |id| {
            if id == a {
                Left::Nothing
            } else {
                Left::IfDepsRun(50.0)
            }
        };
        assert_eq!(remaining(&g, left), 0.0);
        let running_a = |id| {
            if id == a {
                Left::Seconds(5.0)
            } else {
                Left::IfDepsRun(50.0)
            }
        };
        assert_eq!(remaining(&g, running_a), 105.0);
    }
}
