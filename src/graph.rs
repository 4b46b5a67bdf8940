//! The action graph: actions by typed id, their edges, order and cycle detection (petgraph inside).

use std::collections::HashMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::action::{Action, ActionId, ActionKind};
use crate::label::Label;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("the action graph has a cycle: {}", path.join(" -> "))]
#[diagnostic(help(
    "an action may only depend on actions lowered before it; this is a bug in kbuild's planner"
))]
pub struct CycleError {
    pub path: Vec<String>,
}

#[derive(Default, Debug)]
pub struct Graph {
    actions: Vec<Action>,
    by_name: HashMap<String, ActionId>,
    /// The action of each kind that serves a target: typed lookups for everyone outside the
    /// planner, which alone names actions.
    by_target: HashMap<(ActionKind, Label), ActionId>,
    edges: DiGraph<ActionId, ()>,
    dependents: Vec<Vec<ActionId>>,
}

impl Graph {
    /// Adds an action, or returns the existing one of the same name with `action`'s labels merged.
    pub fn add(&mut self, action: Action) -> ActionId {
        if let Some(&id) = self.by_name.get(&action.name) {
            for label in action.labels {
                self.add_label(id, &label);
            }
            return id;
        }
        let id = ActionId(self.actions.len() as u32);
        let node = self.edges.add_node(id);
        for dep in &action.deps {
            self.edges
                .add_edge(NodeIndex::new(dep.id.index()), node, ());
            self.dependents[dep.id.index()].push(id);
        }
        self.by_name.insert(action.name.clone(), id);
        for label in &action.labels {
            self.by_target
                .entry((action.kind(), label.clone()))
                .or_insert(id);
        }
        self.actions.push(action);
        self.dependents.push(Vec::new());
        id
    }

    /// Records that `id` also serves `label`.
    pub fn add_label(&mut self, id: ActionId, label: &Label) {
        let action = &mut self.actions[id.index()];
        if !action.labels.contains(label) {
            action.labels.push(label.clone());
        }
        self.by_target
            .entry((action.recipe.kind(), label.clone()))
            .or_insert(id);
    }

    /// Gives every action the labels of the actions that depend on it, index actions aside
    /// (an index serves the targets of all its arches, a tag only its own): an action lowered
    /// once, for the first target that needed it (a series' fetch), serves them all.
    pub fn spread_labels(&mut self) {
        // Dependencies are added before their dependents: from the last action back, every
        // dependent's labels are complete when they are passed on.
        for i in (0..self.actions.len()).rev() {
            if self.actions[i].kind() == ActionKind::Index {
                continue;
            }
            let labels = self.actions[i].labels.clone();
            let deps: Vec<ActionId> = self.actions[i].deps.iter().map(|d| d.id).collect();
            for dep in deps {
                for label in &labels {
                    self.add_label(dep, label);
                }
            }
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
        &mut self.actions[id.index()].recipe
    }

    /// The action called `name`: how the planner finds what it lowered already.
    pub fn find(&self, name: &str) -> Option<ActionId> {
        self.by_name.get(name).copied()
    }

    /// The action of `kind` that serves `target` (its tag, its image, its series' index …).
    pub fn of(&self, kind: ActionKind, target: &Label) -> Option<ActionId> {
        self.by_target.get(&(kind, target.clone())).copied()
    }

    pub fn dependents(&self, id: ActionId) -> &[ActionId] {
        &self.dependents[id.index()]
    }

    /// Adds an edge after the fact; only tests use it, to build graphs the planner never makes.
    pub fn add_edge(&mut self, from: ActionId, to: ActionId) {
        self.edges
            .add_edge(NodeIndex::new(from.index()), NodeIndex::new(to.index()), ());
        self.dependents[from.index()].push(to);
    }

    /// Fails with the path of a cycle if there is one.
    pub fn check_acyclic(&self) -> Result<(), CycleError> {
        for scc in tarjan_scc(&self.edges) {
            let looped = scc.len() > 1 || self.edges.contains_edge(scc[0], scc[0]);
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
