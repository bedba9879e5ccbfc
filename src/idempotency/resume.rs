//! What a retry of a keyed batch resumes from: per item, what the record says of it.

use super::journal::{StoreJournal, Writer};
use super::record;
use crate::batch::failures;
use crate::batch::plan::Plan;
use crate::engine::{Journal, Keyed, Prior};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What `plan` (phase `phase` of a keyed batch, its `last`) resumes from in `entries`,
/// and, unless the batch is replayed (no `writer`), where its run records itself.
///
/// An item with a final outcome replays it. One sent without a recorded outcome is sent
/// again when its method is idempotent (RFC 9110 §9.2.2), and else reports that its
/// outcome is unknown; a mark a run withdrew (`u`: its write failed as far as that run
/// knew, and the item was not sent) counts for nothing. In a replay nothing is sent: an
/// item sent without an outcome reports that it is unknown, one never sent that its job
/// stopped (an item the run left out, after a failure with `stop_on_error`, is left out
/// again, since the replayed failure stops the schedule as it did).
pub(crate) fn keyed_for(
    plan: &Plan,
    phase: usize,
    entries: &[(String, Bytes)],
    writer: Option<&Writer>,
    last: bool,
) -> Keyed {
    let mut outcomes = HashMap::new();
    let mut sent = HashSet::new();
    let prefix = format!("{phase}.");
    for (name, value) in entries {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Some((kind, index)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        match kind {
            "o" => drop(outcomes.insert(index, value.clone())),
            "s" => drop(sent.insert(index)),
            "u" => drop(sent.remove(&index)),
            _ => {}
        }
    }
    let replay = writer.is_none();
    if let Some(writer) = writer {
        writer.phase_size(phase, plan.items.len());
    }
    let priors = plan.items.iter().enumerate().map(|(i, item)| {
        if let Some(stored) = outcomes.remove(&i) {
            return Some(record::decode(stored).map_or(Prior::Unknown, Prior::Finished));
        }
        let was_sent = sent.contains(&i);
        if replay && !was_sent {
            // Replayed, never sent: a batch job whose run stopped before it (a keyed batch
            // that finished sent every item it reached).
            return Some(Prior::Finished(failures::job_stopped()));
        }
        (replay || (was_sent && !item.method.is_idempotent())).then_some(Prior::Unknown)
    });
    Keyed {
        priors: priors.collect(),
        journal: writer.map(|w| Arc::new(StoreJournal::new(w, phase, last)) as Arc<dyn Journal>),
    }
}
