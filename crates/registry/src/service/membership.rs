//! Things in thing groups: add, remove, update in bulk, the lists both ways,
//! and the groups whose policies apply to a thing's connections.

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, prefix};

use super::{Changes, Emit, Registry, group_key, jobs, load_group, load_thing};
use crate::domain::{
    EventBody, MAX_GROUPS_PER_THING, Operation, Thing, ThingGroup, check_name, invalid, limit,
};

/// A reference to a thing or a group by name or by ARN.
#[derive(Debug, Default)]
pub(crate) struct NameOrArn {
    pub(crate) name: Option<String>,
    pub(crate) arn: Option<String>,
}

fn membership_event(
    c: &mut Changes<'_>,
    operation: Operation,
    thing: &Thing,
    group: &ThingGroup,
    id: String,
) {
    c.emit(
        operation,
        EventBody::ThingGroupMembership {
            group_name: group.name.clone(),
            group_id: group.id.clone(),
            thing_name: thing.name.clone(),
            thing_id: thing.id.clone(),
            membership_id: id,
        },
    );
}

/// A dynamic group's membership is the registry's to keep.
fn refuse_dynamic(group: &ThingGroup) -> Result<(), AwsError> {
    if group.dynamic.is_some() {
        return Err(invalid(format!(
            "Thing group {} is dynamic: its things are the ones its query matches",
            group.name
        )));
    }
    Ok(())
}

/// Puts `thing` in dynamic group `group` with its event, unless it is in it
/// already or in as many groups as a thing may be; returns whether it joined.
pub(super) fn join_dynamic(
    c: &mut Changes<'_>,
    thing: &Thing,
    group: &ThingGroup,
) -> Result<bool, AwsError> {
    if c.exists(&key(&["tmem", &thing.name, &group.name]))?
        || c.keys(&prefix(&["tmem", &thing.name]))?.len() >= MAX_GROUPS_PER_THING
    {
        return Ok(false);
    }
    let id = uuid::Uuid::new_v4().to_string();
    c.put(key(&["tmem", &thing.name, &group.name]), &id)?;
    c.put(key(&["gmem", &group.name, &thing.name]), &id)?;
    membership_event(c, Operation::Added, thing, group, id);
    jobs::thing_joined(c, &thing.name, &group.name)?;
    Ok(true)
}

fn add_membership(
    c: &mut Changes<'_>,
    thing: &Thing,
    group: &ThingGroup,
    override_dynamic: bool,
) -> Result<(), AwsError> {
    refuse_dynamic(group)?;
    if c.exists(&key(&["tmem", &thing.name, &group.name]))? {
        return Ok(());
    }
    let mut current = c.keys(&prefix(&["tmem", &thing.name]))?;
    if current.len() >= MAX_GROUPS_PER_THING && override_dynamic {
        // AddThingToThingGroup's overrideDynamicGroups: the thing leaves its
        // last dynamic group to make room.
        let mut dynamic = None;
        for name in current.iter().rev() {
            let other = load_group(c, name)?;
            if other.dynamic.is_some() {
                dynamic = Some(other);
                break;
            }
        }
        if let Some(other) = dynamic {
            remove_membership(c, thing, &other)?;
            current.retain(|name| *name != other.name);
        }
    }
    if current.len() >= MAX_GROUPS_PER_THING {
        return Err(limit(format!(
            "Thing {} already belongs to {MAX_GROUPS_PER_THING} thing groups, the most a thing can belong to",
            thing.name
        )));
    }
    for other in &current {
        let other = load_group(c, other)?;
        if other.root() == group.root() {
            return Err(invalid(format!(
                "Thing {} is already in thing group {}, which is in the same hierarchy as {}; a thing can belong to one group of each hierarchy",
                thing.name, other.name, group.name
            )));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    c.put(key(&["tmem", &thing.name, &group.name]), &id)?;
    c.put(key(&["gmem", &group.name, &thing.name]), &id)?;
    membership_event(c, Operation::Added, thing, group, id);
    jobs::thing_joined(c, &thing.name, &group.name)
}

pub(super) fn remove_membership(
    c: &mut Changes<'_>,
    thing: &Thing,
    group: &ThingGroup,
) -> Result<(), AwsError> {
    if unlink(c, thing, group)? {
        jobs::thing_left(c, &thing.name, &group.name)?;
    }
    Ok(())
}

/// Takes `thing` out of `group` (if it is in it) with its event, leaving
/// its continuous jobs to the caller; returns whether it was in it.
fn unlink(c: &mut Changes<'_>, thing: &Thing, group: &ThingGroup) -> Result<bool, AwsError> {
    let tmem = key(&["tmem", &thing.name, &group.name]);
    let Some(id) = c.get::<String>(&tmem)? else {
        return Ok(false);
    };
    c.remove(tmem);
    c.remove(key(&["gmem", &group.name, &thing.name]));
    membership_event(c, Operation::Removed, thing, group, id);
    Ok(true)
}

impl Registry {
    pub(super) fn resolve(&self, what: &str, kind: &str, r: NameOrArn) -> Result<String, AwsError> {
        let name = match (r.name, r.arn) {
            (Some(name), _) if !name.is_empty() => name,
            (_, Some(arn)) if !arn.is_empty() => match self.arns().name_in(kind, &arn) {
                Some(name) => name.to_owned(),
                None => {
                    return Err(invalid(format!(
                        "{arn} is not a {what} ARN of this account and region"
                    )));
                }
            },
            _ => {
                return Err(invalid(format!(
                    "Both {what}Arn and {what}Name are empty. Need to specify at least one of them"
                )));
            }
        };
        check_name(what, &name)?;
        Ok(name)
    }

    pub(crate) async fn add_thing_to_thing_group(
        &self,
        group: NameOrArn,
        thing: NameOrArn,
        override_dynamic: bool,
    ) -> Result<(), AwsError> {
        let group = self.resolve("thingGroup", "thinggroup", group)?;
        let thing = self.resolve("thing", "thing", thing)?;
        self.writer
            .mutate(move |c| {
                let group = load_group(c, &group)?;
                let thing = load_thing(c, &thing)?;
                add_membership(c, &thing, &group, override_dynamic)
            })
            .await
    }

    pub(crate) async fn remove_thing_from_thing_group(
        &self,
        group: NameOrArn,
        thing: NameOrArn,
    ) -> Result<(), AwsError> {
        let group = self.resolve("thingGroup", "thinggroup", group)?;
        let thing = self.resolve("thing", "thing", thing)?;
        self.writer
            .mutate(move |c| {
                let group = load_group(c, &group)?;
                refuse_dynamic(&group)?;
                let thing = load_thing(c, &thing)?;
                remove_membership(c, &thing, &group)
            })
            .await
    }

    pub(crate) async fn update_thing_groups_for_thing(
        &self,
        thing: String,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        for g in add.iter().chain(&remove) {
            check_name("thing group name", g)?;
        }
        self.writer
            .mutate(move |c| {
                let thing = load_thing(c, &thing)?;
                let mut left = Vec::new();
                for g in &remove {
                    let group = load_group(c, g)?;
                    refuse_dynamic(&group)?;
                    if unlink(c, &thing, &group)? {
                        left.push(group.name);
                    }
                }
                for g in &add {
                    let group = load_group(c, g)?;
                    add_membership(c, &thing, &group, false)?;
                }
                // After the additions: a thing moved between two groups a
                // continuous job targets keeps its execution.
                for group in &left {
                    jobs::thing_left(c, &thing.name, group)?;
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_things_in_thing_group(
        &self,
        group: &str,
        recursive: bool,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_name("thing group name", group)?;
        load_group(&self.reader(), group)?;
        if !recursive {
            let things = self
                .store
                .iter(&prefix(&["gmem", group]), page.after())
                .map(|e| e.map(|(n, _)| (n.clone(), n)));
            return page.collect(things);
        }
        let mut things = BTreeSet::new();
        for g in std::iter::once(group.to_owned()).chain(self.descendants(group)?) {
            things.extend(self.store.keys(&prefix(&["gmem", &g]))?);
        }
        Ok(page.collect_sorted(things.into_iter()))
    }

    pub(crate) fn list_thing_groups_for_thing(
        &self,
        thing: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_name("thing name", thing)?;
        load_thing(&self.reader(), thing)?;
        let groups = self
            .store
            .iter(&prefix(&["tmem", thing]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(groups)
    }

    /// The thing groups whose attached policies apply to `thing`'s
    /// connections: the groups it belongs to and all their ancestors, each
    /// once, in name order (which is also their ARNs' order). A group
    /// deleted while this reads is left out.
    pub(crate) fn thing_policy_groups(&self, thing: &str) -> Result<Vec<String>, AwsError> {
        check_name("thing name", thing)?;
        let c = self.reader();
        load_thing(&c, thing)?;
        let mut groups = BTreeSet::new();
        for name in c.keys(&prefix(&["tmem", thing]))? {
            let Some(group) = c.get::<ThingGroup>(&group_key(&name))? else {
                continue;
            };
            groups.extend(group.ancestors.into_iter().map(|a| a.name));
            groups.insert(group.name);
        }
        Ok(groups.into_iter().collect())
    }
}
