//! What each topic's poke carries: the changes a pull of that one topic would hand
//! out of a push's committed changes ([`crate::pull::PullPlan`]), so a poke and a pull
//! never disagree. A topic's poke carries its own latest change per record (a record's
//! later change on another topic must not hide the one that took it off this topic),
//! and a record that left the topic arrives without its image.

use std::collections::BTreeMap;

use crate::changes::{Change, Cursor, Topic};
use crate::model::SyncModel;
use crate::pull::PullPlan;

/// For each of `topics`, the changes its poke carries, oldest first.
pub fn carried_by_topic(
    model: &SyncModel,
    topics: &[String],
    changes: &[Change],
) -> BTreeMap<String, Vec<Change>> {
    let before =
        changes.iter().map(|change| change.seq).min().map_or(Cursor::START, |first| Cursor(first.0 - 1));
    topics
        .iter()
        .map(|topic| {
            let plan = PullPlan::new(before, [(Topic::from_raw(topic.clone()), None)]);
            let carried = plan.deliverable(changes).into_iter().map(|d| plan.as_seen(model, d)).collect();
            (topic.clone(), carried)
        })
        .collect()
}
