//! The action graph: actions by typed id, their edges, order and cycle detection (petgraph inside).

use std::collections::HashMap as StdMap;
use std::sync::OnceLock;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::action::{Action, ActionId};
use crate::digest::Digest;
use crate::kind::ActionKind;
use crate::label::Label;

/// The graph's indexes: their keys are the workspace's own action names and labels (no peer
/// sends them), so a fast hash will do; std's SipHash made them a tenth of a plan's time.
type HashMap<K, V> = StdMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the action graph has a cycle: {}", path.join(" -> "))]
#[diagnostic(help(
    "an action may only depend on actions lowered before it; this is a bug in kbuild's planner"
))]
pub struct CycleError {
    pub path: Vec<String>,
}

/// What [`Graph::absorb`] did with a segment.
#[derive(Debug)]
pub struct Absorbed {
    /// Each segment action's id in the graph.
    pub ids: Vec<ActionId>,
    /// Whether an action the graph held already differs from the segment's own lowering of it.
    pub differs: bool,
}

#[derive(Default, Debug)]
pub struct Graph {
    actions: Vec<Action>,
    /// Actions by name, for the planner; built when first asked for in a restored graph,
    /// which planning and running never ask.
    by_name: OnceLock<HashMap<String, ActionId>>,
    /// The action of each kind that serves a target: typed lookups for everyone outside the
    /// planner, which alone names actions.
    /// Built when first asked for in a restored graph, which most plans never ask.
    by_target: OnceLock<HashMap<(ActionKind, Label), ActionId>>,
    /// A restored graph's target index, until `by_target` is built from it.
    restored_targets: Vec<(ActionKind, Label, ActionId)>,
    /// Edges beyond the actions' dependencies: only tests add them, to make graphs the
    /// planner never makes (a cycle).
    extra: Vec<(ActionId, ActionId)>,
    /// Each action's dependents, made from the dependencies when the scheduler first asks.
    dependents: OnceLock<Vec<Vec<ActionId>>>,
    /// Each action's own part of its key ([`crate::key::own_part`]), made once when first asked
    /// for, or taken from a graph kept across runs.
    own: Vec<OnceLock<Digest>>,
}

impl Graph {
    /// Adds an action, or returns the existing one of the same name with `action`'s labels merged.
    pub fn add(&mut self, action: Action) -> ActionId {
        if let Some(id) = self.find(&action.name) {
            for label in action.labels {
                self.add_label(id, &label);
            }
            return id;
        }
        let id = ActionId(self.actions.len() as u32);
        self.names_mut().insert(action.name.clone(), id);
        for label in &action.labels {
            Self::index_mut(&mut self.by_target, &self.restored_targets)
                .entry((action.kind(), label.clone()))
                .or_insert(id);
        }
        self.actions.push(action);
        self.dependents = OnceLock::new();
        self.own.push(OnceLock::new());
        id
    }

    /// Merges in a segment: the actions of one series, lowered on their own, each after its
    /// dependencies, which are given as indexes into `segment`. An action whose name is here
    /// already (a fetch that series share) is that one, with the segment's labels added, and
    /// no label of them is there yet (another series'). Gives each segment action's id here,
    /// and whether one such shared action differs from the segment's own lowering of it: then
    /// the graph holds what another series lowered, not what this segment did.
    pub fn absorb(&mut self, segment: Vec<Action>) -> Absorbed {
        let mut ids: Vec<ActionId> = Vec::with_capacity(segment.len());
        let mut differs = false;
        self.names_mut().reserve(segment.len());
        let labels = segment.iter().map(|a| a.labels.len()).sum();
        Self::index_mut(&mut self.by_target, &self.restored_targets).reserve(labels);
        for mut action in segment {
            for dep in &mut action.deps {
                dep.id = ids[dep.id.index()];
            }
            let Some(id) = self.find(&action.name) else {
                ids.push(self.add(action));
                continue;
            };
            let here = &self.actions[id.index()];
            let same = |a: &Action, b: &Action| {
                a.arch == b.arch
                    && a.builder == b.builder
                    && (a.deps.iter().map(|d| (d.role, d.id)))
                        .eq(b.deps.iter().map(|d| (d.role, d.id)))
                    && crate::key::own_part(a) == crate::key::own_part(b)
            };
            differs |= !same(here, &action);
            let index = Self::index_mut(&mut self.by_target, &self.restored_targets);
            for label in &action.labels {
                index
                    .entry((action.recipe.kind(), label.clone()))
                    .or_insert(id);
            }
            self.actions[id.index()].labels.append(&mut action.labels);
            ids.push(id);
        }
        Absorbed { ids, differs }
    }

    /// The actions, in order, for [`Graph::absorb`] into another graph.
    pub fn into_actions(self) -> Vec<Action> {
        self.actions
    }

    fn names(&self) -> &HashMap<String, ActionId> {
        self.by_name.get_or_init(|| {
            (self.actions.iter().enumerate())
                .map(|(i, a)| (a.name.clone(), ActionId(i as u32)))
                .collect()
        })
    }

    fn names_mut(&mut self) -> &mut HashMap<String, ActionId> {
        self.names();
        self.by_name.get_mut().expect("made just now")
    }

    /// A graph kept across runs (see `src/lowered/`), from its actions in their order and its
    /// target index; `None` when they do not make a graph (a dependency that is not an earlier
    /// action).
    pub fn restore(
        actions: Vec<Action>,
        targets: Vec<(ActionKind, Label, ActionId)>,
    ) -> Option<Graph> {
        let mut names = std::collections::HashSet::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            if action.deps.iter().any(|dep| dep.id.index() >= i) || !names.insert(&action.name) {
                return None;
            }
        }
        drop(names);
        let mut graph = Graph {
            own: (0..actions.len()).map(|_| OnceLock::new()).collect(),
            actions,
            ..Graph::default()
        };
        for (kind, _, id) in &targets {
            if id.index() >= graph.actions.len() || graph.actions[id.index()].kind() != *kind {
                return None;
            }
        }
        graph.by_target = OnceLock::new();
        graph.restored_targets = targets;
        Some(graph)
    }

    fn target_index(&self) -> &HashMap<(ActionKind, Label), ActionId> {
        (self.by_target).get_or_init(|| Self::index_of(&self.restored_targets))
    }

    fn index_of(
        targets: &[(ActionKind, Label, ActionId)],
    ) -> HashMap<(ActionKind, Label), ActionId> {
        (targets.iter())
            .map(|(kind, label, id)| ((*kind, label.clone()), *id))
            .collect()
    }

    /// The target index, to add to (built first if it was not).
    fn index_mut<'a>(
        index: &'a mut OnceLock<HashMap<(ActionKind, Label), ActionId>>,
        restored: &[(ActionKind, Label, ActionId)],
    ) -> &'a mut HashMap<(ActionKind, Label), ActionId> {
        if index.get().is_none() {
            let _ = index.set(Self::index_of(restored));
        }
        index.get_mut().expect("set above")
    }

    /// The target index: which action of each kind serves each target.
    pub fn targets(&self) -> impl Iterator<Item = (ActionKind, &Label, ActionId)> {
        (self.target_index().iter()).map(|((kind, label), id)| (*kind, label, *id))
    }

    /// Records that `id` also serves `label`.
    pub fn add_label(&mut self, id: ActionId, label: &Label) {
        let action = &mut self.actions[id.index()];
        // A label the action has was entered in `by_target` when it was added.
        if action.labels.contains(label) {
            return;
        }
        action.labels.push(label.clone());
        Self::index_mut(&mut self.by_target, &self.restored_targets)
            .entry((action.recipe.kind(), label.clone()))
            .or_insert(id);
    }

    /// Gives every action the labels of the actions that depend on it, index actions aside
    /// (an index serves the targets of all its arches, a tag only its own): an action lowered
    /// once, for the first target that needed it (a series' fetch), serves them all.
    pub fn spread_labels(&mut self) {
        // Labels as numbers and each action's as a bit set: the fetch of a shared source serves
        // every target, and a linear `contains` per label and edge made this quadratic.
        let mut numbers: HashMap<&Label, u32> = HashMap::default();
        let mut lists: Vec<Vec<u32>> = Vec::with_capacity(self.actions.len());
        for action in &self.actions {
            let mut list = Vec::with_capacity(action.labels.len());
            for label in &action.labels {
                let next = numbers.len() as u32;
                list.push(*numbers.entry(label).or_insert(next));
            }
            lists.push(list);
        }
        let words = numbers.len().div_ceil(64);
        let mut bits = vec![0u64; words * self.actions.len()];
        for (i, list) in lists.iter().enumerate() {
            for &n in list {
                bits[i * words + n as usize / 64] |= 1 << (n % 64);
            }
        }
        let mut by_number: Vec<Option<&Label>> = vec![None; numbers.len()];
        for (label, n) in numbers {
            by_number[n as usize] = Some(label);
        }
        // Dependencies are added before their dependents: from the last action back, every
        // dependent's labels are complete when they are passed on.
        let mut added: Vec<(ActionId, u32)> = Vec::new();
        for i in (0..self.actions.len()).rev() {
            if self.actions[i].kind() == ActionKind::Index {
                continue;
            }
            let labels = std::mem::take(&mut lists[i]);
            for dep in &self.actions[i].deps {
                let d = dep.id.index();
                for &n in &labels {
                    let (word, bit) = (d * words + n as usize / 64, 1 << (n % 64));
                    if bits[word] & bit == 0 {
                        bits[word] |= bit;
                        lists[d].push(n);
                        added.push((dep.id, n));
                    }
                }
            }
            lists[i] = labels;
        }
        let added: Vec<(ActionId, Label)> = added
            .into_iter()
            .filter_map(|(id, n)| Some((id, by_number[n as usize]?.clone())))
            .collect();
        for (id, label) in added {
            let action = &mut self.actions[id.index()];
            Self::index_mut(&mut self.by_target, &self.restored_targets)
                .entry((action.recipe.kind(), label.clone()))
                .or_insert(id);
            action.labels.push(label);
        }
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = ActionId> + use<> {
        (0..self.actions.len() as u32).map(ActionId)
    }

    pub fn action(&self, id: ActionId) -> &Action {
        &self.actions[id.index()]
    }

    /// For passes that complete a recipe after lowering (the tag hash).
    pub fn recipe_mut(&mut self, id: ActionId) -> &mut crate::action::Recipe {
        self.own[id.index()] = OnceLock::new();
        &mut self.actions[id.index()].recipe
    }

    /// The digest of `id`'s own part of its key: its kind, recipe code, parameters, environment.
    pub fn own_part(&self, id: ActionId) -> Digest {
        *self.own[id.index()].get_or_init(|| crate::key::own_part(self.action(id)))
    }

    /// Gives `id` the own part a kept graph recorded for it: the caller vouches that the
    /// action is the one it was recorded for.
    pub fn keep_own_part(&mut self, id: ActionId, digest: Digest) {
        self.own[id.index()] = OnceLock::from(digest);
    }

    /// The action called `name`: how the planner finds what it lowered already.
    pub fn find(&self, name: &str) -> Option<ActionId> {
        self.names().get(name).copied()
    }

    /// The action of `kind` that serves `target` (its tag, its image, its series' index …).
    pub fn of(&self, kind: ActionKind, target: &Label) -> Option<ActionId> {
        self.target_index().get(&(kind, target.clone())).copied()
    }

    pub fn dependents(&self, id: ActionId) -> &[ActionId] {
        &self.all_dependents()[id.index()]
    }

    fn all_dependents(&self) -> &[Vec<ActionId>] {
        self.dependents.get_or_init(|| {
            let mut dependents = vec![Vec::new(); self.actions.len()];
            for (from, to) in self.edges() {
                dependents[from.index()].push(to);
            }
            dependents
        })
    }

    /// Every edge, from dependency to dependent: the actions' dependencies, then the extra ones.
    fn edges(&self) -> impl Iterator<Item = (ActionId, ActionId)> + '_ {
        let deps = (self.ids()).flat_map(|id| self.action(id).deps.iter().map(move |d| (d.id, id)));
        deps.chain(self.extra.iter().copied())
    }

    /// Adds an edge after the fact; only tests use it, to build graphs the planner never makes.
    pub fn add_edge(&mut self, from: ActionId, to: ActionId) {
        self.extra.push((from, to));
        self.dependents = OnceLock::new();
    }

    /// Fails with the path of a cycle if there is one.
    pub fn check_acyclic(&self) -> Result<(), CycleError> {
        let mut edges: DiGraph<ActionId, ()> = DiGraph::with_capacity(self.len(), self.len());
        for id in self.ids() {
            edges.add_node(id);
        }
        for (from, to) in self.edges() {
            edges.add_edge(NodeIndex::new(from.index()), NodeIndex::new(to.index()), ());
        }
        for scc in tarjan_scc(&edges) {
            let looped = scc.len() > 1 || edges.contains_edge(scc[0], scc[0]);
            if looped {
                let mut path: Vec<String> = scc
                    .iter()
                    .rev()
                    .map(|n| self.actions[n.index()].name.clone())
                    .collect();
                path.push(path[0].clone());
                return Err(CycleError { path });
            }
        }
        Ok(())
    }

    /// Graphviz text, for `kbuild plan --format dot`.
    pub fn to_dot(&self, state: impl Fn(ActionId) -> &'static str) -> String {
        let mut out = String::from("digraph kbuild {\n  rankdir=LR;\n  node [shape=box];\n");
        for id in self.ids() {
            let style = if state(id) == "cached" {
                ", style=dashed"
            } else {
                ""
            };
            out.push_str(&format!(
                "  a{} [label={:?}{style}];\n",
                id.0,
                self.action(id).name
            ));
        }
        for id in self.ids() {
            for dep in &self.action(id).deps {
                out.push_str(&format!("  a{} -> a{};\n", dep.id.0, id.0));
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str) -> Action {
        Action::bare(name, &[])
    }

    #[test]
    fn same_name_is_one_action() {
        let mut g = Graph::default();
        let a = g.add(action("a"));
        assert_eq!(g.add(action("a")), a);
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn labels_spread_to_every_dependency_once_in_order() {
        let label = |series: &str| Label {
            series: series.into(),
            kind: crate::label::TargetKind::Kernel(Default::default()),
            arch: crate::arch::Arch::X86_64,
        };
        let (a, b, c) = (label("6.1.x"), label("6.6.x"), label("6.12.x"));
        let mut g = Graph::default();
        let shared = g.add(action("fetch"));
        let left = g.add(action("left"));
        let right = g.add(Action::bare("right", &[shared, left]));
        let top = g.add(Action::bare("top", &[right, shared]));
        g.add_label(left, &c);
        g.add_label(right, &b);
        g.add_label(top, &a);
        g.add_label(top, &a);
        g.spread_labels();
        assert_eq!(g.action(top).labels, std::slice::from_ref(&a));
        assert_eq!(g.action(right).labels, [b.clone(), a.clone()]);
        assert_eq!(g.action(left).labels, [c.clone(), b.clone(), a.clone()]);
        assert_eq!(g.action(shared).labels, [a.clone(), b.clone()]);
        assert_eq!(
            g.of(ActionKind::Patch, &a),
            Some(top),
            "the first action of a kind"
        );
        assert_eq!(g.of(ActionKind::Patch, &c), Some(left));
        Graph::default().spread_labels();
    }

    #[test]
    fn cycle_is_named() {
        let mut g = Graph::default();
        let a = g.add(action("a"));
        let b = g.add(action("b"));
        g.add_edge(a, b);
        g.add_edge(b, a);
        let err = g.check_acyclic().unwrap_err();
        assert_eq!(err.path.len(), 3);
        assert_eq!(err.path.first(), err.path.last());
        assert!(err.to_string().contains("a -> b -> a") || err.to_string().contains("b -> a -> b"));
    }
}
