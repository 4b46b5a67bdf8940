//! Putting a graph together series by series, from the kept graph's segments where their digest
//! still holds and from lowering where it does not.
//!
//! Lowering merges each series' own graph into the whole in the order the series first appear
//! ([`crate::plan::lower_for`]); a segment taken from the kept graph is that series' own graph
//! as lowering made it, so merging it gives the graph a full lowering gives. What makes that
//! hold: the segment's digest covers everything lowering the series reads (see
//! [`super::segment_digest`]), and a segment is kept with a digest only when the graph holds its
//! own lowering of every action it has. Two series may lower an action of the same name (the
//! fetch of a tarball they share); the first one merged wins, and a later one whose own lowering
//! of it differs is kept without a digest, so it is lowered again next time.

use std::collections::HashMap;

use crate::action::{Action, ActionId};
use crate::digest::Digest;
use crate::graph::Graph;
use crate::label::Label;
use crate::model::Model;
use crate::plan::{Goal, PlanError};
use crate::statcache::StatCache;
use crate::tags::GroupHash;

use super::kept::{Kept, KeptSegment, restore_actions};
use super::{Lowering, PatchDir, segment_digest};

/// One series' actions taken from the kept graph, in the segment's own order, dependencies as
/// indexes into it: what [`Graph::absorb`] takes.
struct Taken {
    actions: Vec<Action>,
    own: Vec<Digest>,
}

/// The kept graph, as segments to take from.
struct Old {
    actions: Vec<Option<Action>>,
    own: Vec<Digest>,
    /// How many segments that may still be taken hold each action (a shared fetch: several):
    /// the last one takes it, the others copy it.
    holders: Vec<u32>,
    segments: HashMap<String, KeptSegment>,
    groups: Vec<GroupHash>,
    /// Scratch, by kept id: the index in the segment being taken, and which segment set it.
    local: Vec<u32>,
    mark: Vec<u32>,
    taken: u32,
}

impl Old {
    /// `None` when the kept actions do not restore (a damaged file).
    fn of(kept: Kept) -> Option<Old> {
        let (actions, own) = restore_actions(kept.actions, &kept.labels, kept.envs)?;
        let mut holders = vec![0u32; actions.len()];
        let segments: HashMap<String, KeptSegment> = (kept.segments.into_iter())
            .filter(|s| s.digest.is_some())
            .map(|s| (s.series.clone(), s))
            .collect();
        for segment in segments.values() {
            for &id in &segment.ids {
                *holders.get_mut(id as usize)? += 1;
            }
        }
        Some(Old {
            local: vec![0; actions.len()],
            mark: vec![0; actions.len()],
            actions: actions.into_iter().map(Some).collect(),
            own,
            holders,
            segments,
            groups: kept.groups,
            taken: 0,
        })
    }

    /// `series`' segment when its digest is `digest`; `None` when it is not kept, moved, or
    /// does not hold together (each segment is asked for once).
    fn take(&mut self, series: &str, digest: Digest) -> Option<Taken> {
        let segment = self.segments.remove(series)?;
        if segment.digest != Some(digest) {
            return None;
        }
        self.taken += 1;
        let mut taken = Taken {
            actions: Vec::with_capacity(segment.ids.len()),
            own: Vec::with_capacity(segment.ids.len()),
        };
        for (i, &id) in segment.ids.iter().enumerate() {
            let g = id as usize;
            let holders = self.holders.get_mut(g)?;
            *holders = holders.saturating_sub(1);
            let mut action = match *holders {
                0 => {
                    let mut action = self.actions[g].take()?;
                    action.labels.retain(|l| l.series == series);
                    action
                }
                _ => copy_for(self.actions[g].as_ref()?, series),
            };
            for dep in &mut action.deps {
                let d = dep.id.index();
                // A dependency outside the segment: not a segment lowering made.
                if self.mark.get(d) != Some(&self.taken) {
                    return None;
                }
                dep.id = ActionId(self.local[d]);
            }
            self.local[g] = i as u32;
            self.mark[g] = self.taken;
            taken.own.push(self.own[g]);
            taken.actions.push(action);
        }
        Some(taken)
    }

    /// The kept groups of `series`, their actions renumbered into the new graph (`ids`: each
    /// action of the segment just taken, by its index in it). A group that names an action
    /// outside the segment is left out: its hash is made again.
    fn groups_of(&self, series: &str, ids: &[ActionId]) -> Vec<GroupHash> {
        let renumber = |old: &ActionId| {
            let g = old.index();
            (self.mark.get(g) == Some(&self.taken)).then(|| ids[self.local[g] as usize])
        };
        (self.groups.iter())
            .filter(|g| g.series == series)
            .filter_map(|g| {
                let actions = match &g.actions {
                    Some(actions) => Some(actions.iter().map(renumber).collect::<Option<_>>()?),
                    None => None,
                };
                Some(GroupHash {
                    actions,
                    ..g.clone()
                })
            })
            .collect()
    }
}

/// A copy of `action` with only `series`' labels: a shared fetch carries every series' labels.
fn copy_for(action: &Action, series: &str) -> Action {
    Action {
        name: action.name.clone(),
        labels: (action.labels.iter())
            .filter(|l| l.series == series)
            .cloned()
            .collect::<Vec<Label>>(),
        recipe: action.recipe.clone(),
        inputs: action.inputs.clone(),
        deps: action.deps.clone(),
        env: action.env.clone(),
        arch: action.arch,
        builder: action.builder.clone(),
    }
}

/// The tagged graph of `targets`, its groups' hashes and its segments, each series taken from
/// `kept` where its digest holds and lowered otherwise.
pub(super) fn splice(
    kept: Option<Kept>,
    model: &Model,
    (targets, patch_dirs, goal): (&[Label], &[PatchDir], Goal),
    stat: &mut StatCache,
) -> Result<(Graph, Vec<GroupHash>, Vec<KeptSegment>, Lowering), crate::tags::TagError> {
    let mut old = kept.and_then(Old::of);
    let listings: HashMap<&str, &[String]> = (patch_dirs.iter())
        .map(|(dir, files)| (dir.as_str(), files.as_slice()))
        .collect();
    let mut graph = Graph::default();
    let mut segments = Vec::new();
    let mut kept_groups = Vec::new();
    let mut own: Vec<(ActionId, Digest)> = Vec::new();
    let (mut lowered, mut taken_series) = (Vec::new(), Vec::new());
    for (series, labels) in crate::plan::segments(targets) {
        let digest = segment_digest(model, (series, &labels), &listings);
        let before = graph.len();
        let taken = old.as_mut().and_then(|old| old.take(series, digest));
        let absorbed = match taken {
            Some(Taken {
                actions,
                own: kept_own,
            }) => {
                taken_series.push(series.to_string());
                let absorbed = graph.absorb(actions);
                if !absorbed.differs {
                    let old = old.as_ref().expect("taken from it");
                    kept_groups.extend(old.groups_of(series, &absorbed.ids));
                    (absorbed.ids.iter().zip(kept_own))
                        .filter(|(id, _)| id.index() >= before)
                        .for_each(|(id, digest)| own.push((*id, digest)));
                }
                absorbed
            }
            None => {
                lowered.push(series.to_string());
                graph.absorb(lower(model, &labels, goal)?)
            }
        };
        segments.push(KeptSegment {
            series: series.to_string(),
            digest: (!absorbed.differs).then_some(digest),
            ids: absorbed.ids.iter().map(|id| id.0).collect(),
        });
    }
    let groups = super::tag(model, &mut graph, stat, &kept_groups, own)?;
    let how = Lowering::Spliced {
        lowered,
        taken: taken_series,
    };
    Ok((graph, groups, segments, how))
}

fn lower(model: &Model, labels: &[Label], goal: Goal) -> Result<Vec<Action>, PlanError> {
    Ok(crate::plan::lower_segment(model, labels, goal)?.into_actions())
}
