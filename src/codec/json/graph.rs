//! The checks that span the items of a JSON batch: unique ids (ignoring letter case, as
//! Graph's), OData atomicity groups, and
//! `dependsOn` turned into indices. They run over every item, valid or not, so that one
//! reply lists every problem.

use super::super::NO_HOOK;
use super::item::Meta;
use crate::batch::id::{same_id, IdIndex};
use crate::batch::plan::Group;
use crate::error::FieldError;

/// What the checks produce for the plan.
pub(super) struct Checked {
    pub(super) groups: Vec<Group>,
    /// Each item's dependencies, as indices.
    pub(super) depends_on: Vec<Vec<usize>>,
}

/// Checks the items as a whole. `atomic`: the batch is one group.
pub(super) fn check(items: &[Meta], atomic: bool, errors: &mut Vec<FieldError>) -> Checked {
    // The ids, borrowed from the items: an index of them is needed only here.
    let with_ids = items.iter().enumerate();
    let with_ids = with_ids.filter_map(|(index, item)| Some((index, item.id.as_deref()?)));
    let (ids, repeated) = IdIndex::new(with_ids);
    for (index, first) in repeated {
        let id = items[index].id.as_deref().unwrap_or_default();
        errors.push(FieldError::item(
            index,
            "id",
            format!("{id:?} is already the id of request {first} (ids ignore letter case)"),
        ));
    }
    let groups = if atomic {
        vec![Group {
            name: "atomic".into(),
            members: 0..items.len(),
        }]
    } else {
        atomicity_groups(items, &ids, errors)
    };
    if atomic {
        for (index, _) in items.iter().enumerate().filter(|(_, i)| i.group.is_some()) {
            errors.push(FieldError::item(
                index,
                "atomicityGroup",
                "must be left out when the whole batch is `atomic`",
            ));
        }
    }
    let depends_on = items
        .iter()
        .enumerate()
        .map(|(index, item)| resolve(index, &item.depends_on, &ids, &groups, errors))
        .collect();
    Checked { groups, depends_on }
}

/// Without a hook, a group of two or more requests cannot run: each member says so. (A
/// group of one needs none: one request is atomic on its own.)
pub(super) fn need_hook(groups: &[Group], errors: &mut Vec<FieldError>) {
    for group in groups.iter().filter(|g| g.members.len() > 1) {
        errors.extend(
            group
                .members
                .clone()
                .map(|m| FieldError::item(m, "atomicityGroup", NO_HOOK)),
        );
    }
}

/// OData's atomicity groups: the members of each are adjacent, and its name is no
/// request's id.
fn atomicity_groups(items: &[Meta], ids: &IdIndex<'_>, errors: &mut Vec<FieldError>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(name) = &item.group else { continue };
        if let Some(last) = groups.last_mut() {
            if same_id(&last.name, name) && last.members.end == index {
                last.members.end = index + 1;
                continue;
            }
        }
        if let Some(earlier) = groups.iter().find(|g| same_id(&g.name, name)) {
            errors.push(FieldError::item(
                index,
                "atomicityGroup",
                format!(
                    "{name:?} is split: its requests must be adjacent, and request {} ends it",
                    earlier.members.end - 1
                ),
            ));
            continue;
        }
        if let Some(i) = ids.get(name) {
            errors.push(FieldError::item(
                index,
                "atomicityGroup",
                format!("{name:?} is already the id of request {i}: groups and requests share one namespace"),
            ));
            continue;
        }
        groups.push(Group {
            name: name.clone(),
            members: index..index + 1,
        });
    }
    groups
}

/// Item `index`'s `dependsOn` as indices: each name must be the id of an earlier request
/// (so the graph has no cycle by construction), or the name of an atomicity group that
/// ends before it (all its members).
fn resolve(
    index: usize,
    names: &[String],
    ids: &IdIndex<'_>,
    groups: &[Group],
    errors: &mut Vec<FieldError>,
) -> Vec<usize> {
    let mut depends_on: Vec<usize> = Vec::with_capacity(names.len());
    let mut add = |d: usize| {
        if !depends_on.contains(&d) {
            depends_on.push(d);
        }
    };
    let mut err = |detail: String| errors.push(FieldError::item(index, "dependsOn", detail));
    for name in names {
        if let Some(group) = groups.iter().find(|g| same_id(&g.name, name)) {
            if group.members.end <= index {
                group.members.clone().for_each(&mut add);
            } else {
                err(format!(
                    "{name:?} is an atomicity group that does not end before this request"
                ));
            }
            continue;
        }
        match ids.get(name) {
            Some(d) if d < index => add(d),
            Some(d) if d == index => err(format!("{name:?} is this request itself")),
            Some(d) => err(format!(
                "{name:?} is request {d}, which comes later: a request may only depend on earlier ones"
            )),
            None => err(format!("{name:?} is the id of no request in this batch")),
        }
    }
    depends_on
}
