//! Cache entries a run cannot use: an action cache entry that is unreadable, or whose blobs are
//! corrupt or missing, is a miss, never a failure (Bazel's rule). The run evicts it, with every
//! cached dependency whose outputs are gone too, and builds them all again in its next round;
//! checking the whole chain at once keeps that to one round instead of one per graph level.

use std::collections::HashSet;

use super::Status;
use crate::action::ActionId;
use crate::cache::{Cache, CacheError};
use crate::graph::Graph;
use crate::key::ActionKey;

/// Whether every output file behind `key` is in the blob store: `stat` only, as the contents are
/// verified when they are materialised.
fn present(cache: &Cache, key: ActionKey) -> bool {
    cache.lookup(key).is_some_and(|manifest| {
        manifest.entries().iter().all(|e| {
            e.symlink.is_some()
                || std::fs::symlink_metadata(cache.blobs.path(e.digest, e.executable))
                    .is_ok_and(|m| m.is_file())
        })
    })
}

/// Evicts every cached action among the transitive dependencies of `start` whose outputs are no
/// longer all there. Returns the evicted actions.
pub fn evict_missing_deps(
    cache: &Cache,
    graph: &Graph,
    status: &[Status],
    start: ActionId,
) -> Vec<ActionId> {
    let mut evicted = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<ActionId> = graph.action(start).deps.iter().map(|d| d.id).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(key) = status[id.index()].key()
            && !present(cache, key)
        {
            cache.evict(key);
            evicted.push(id);
        }
        stack.extend(graph.action(id).deps.iter().map(|d| d.id));
    }
    evicted
}

/// Makes sure every output `out/` will link or copy can be materialised now; what cannot is
/// evicted, with its missing dependencies, for another round of the run. Returns how many
/// entries were evicted.
pub fn outputs(cache: &Cache, graph: &Graph, status: &[Status]) -> usize {
    let mut evicted = 0;
    for id in graph.ids() {
        let action = graph.action(id);
        let Some(key) = status[id.index()]
            .key()
            .filter(|_| action.kind().traits().checked_for_out)
        else {
            continue;
        };
        let problem = match cache.lookup(key) {
            None => "its action cache entry is unreadable or gone".to_string(),
            Some(manifest) => match cache.tree(&manifest) {
                Ok(_) => continue,
                Err(CacheError::Corrupt(corrupt)) => {
                    cache.drop_tree(&manifest, &corrupt);
                    corrupt.to_string()
                }
                Err(_) => continue,
            },
        };
        eprintln!(
            "kbuild: the cached output of `{}` cannot be used ({problem}): building it again",
            action.name
        );
        cache.evict(key);
        evicted += 1 + evict_missing_deps(cache, graph, status, id).len();
    }
    evicted
}
