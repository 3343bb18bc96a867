//! Thing groups: create (under a parent, fixed for life), describe, update,
//! delete (only without children) and list.

use std::collections::BTreeSet;

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, now_ms, prefix};

use super::{
    AttributePayload, Emit, Registry, already_exists, check_expected, group_key, load_group,
    load_thing,
    membership::remove_membership,
    tags::{Tags, check_tags, delete_tags, put_tags},
};
use crate::domain::{
    Attributes, EventBody, GroupRef, MAX_CHILD_GROUPS, MAX_GROUP_ATTRIBUTES, MAX_GROUP_DEPTH,
    Operation, ThingGroup, apply_attributes, check_attributes, check_description, check_name,
    invalid, limit,
};

impl Registry {
    pub(crate) async fn create_thing_group(
        &self,
        name: String,
        parent: Option<String>,
        description: Option<String>,
        attributes: Option<Attributes>,
        tags: Tags,
    ) -> Result<ThingGroup, AwsError> {
        check_name("thing group name", &name)?;
        check_tags(&tags)?;
        if let Some(p) = &parent {
            check_name("parent group name", p)?;
            if *p == name {
                return Err(invalid("A thing group cannot be its own parent"));
            }
        }
        check_description(description.as_deref())?;
        let attributes: Attributes = attributes
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        check_attributes(&attributes)?;
        if attributes.len() > MAX_GROUP_ATTRIBUTES {
            return Err(invalid(format!(
                "A thing group can have at most {MAX_GROUP_ATTRIBUTES} attributes"
            )));
        }
        let ctx = self.ctx.clone();
        self.writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<ThingGroup>(&group_key(&name))? {
                    let same = existing.parent().map(|p| &p.name) == parent.as_ref()
                        && existing.description == description
                        && existing.attributes == attributes;
                    if same {
                        return Ok(existing);
                    }
                    return Err(already_exists(
                        format!("Thing Group {name} already exists in current account with different properties"),
                        &existing.id,
                        ctx.arns().group(&name),
                    ));
                }
                let mut ancestors = Vec::new();
                if let Some(p) = &parent {
                    let parent = load_group(c, p)?;
                    if parent.dynamic.is_some() {
                        return Err(invalid(format!(
                            "Thing group {p} is dynamic; a dynamic thing group has no child groups"
                        )));
                    }
                    if parent.depth() >= MAX_GROUP_DEPTH {
                        return Err(invalid(format!(
                            "Thing group {p} is at depth {}; a thing group hierarchy can be at most {MAX_GROUP_DEPTH} deep",
                            parent.depth()
                        )));
                    }
                    if c.keys(&prefix(&["child", p]))?.len() >= MAX_CHILD_GROUPS {
                        return Err(limit(format!(
                            "Thing group {p} already has {MAX_CHILD_GROUPS} child groups, the most a group can have"
                        )));
                    }
                    ancestors = parent.ancestors.clone();
                    ancestors.push(GroupRef { name: parent.name.clone(), id: parent.id.clone() });
                }
                let group = ThingGroup {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    ancestors,
                    description,
                    attributes,
                    version: 1,
                    creation_date_ms: now_ms(),
                    dynamic: None,
                };
                c.put(group_key(&group.name), &group)?;
                put_tags(c, &ctx.arns().group(&group.name), &tags)?;
                c.emit(Operation::Created, EventBody::ThingGroup { group: group.clone() });
                if let Some(p) = group.parent() {
                    c.put(key(&["child", &p.name, &group.name]), &())?;
                    c.emit(
                        Operation::Added,
                        EventBody::ThingGroupHierarchy {
                            parent: p.clone(),
                            child: GroupRef { name: group.name.clone(), id: group.id.clone() },
                        },
                    );
                }
                Ok(group)
            })
            .await
    }

    pub(crate) fn describe_thing_group(&self, name: &str) -> Result<ThingGroup, AwsError> {
        check_name("thing group name", name)?;
        load_group(&self.reader(), name)
    }

    pub(crate) async fn update_thing_group(
        &self,
        name: String,
        description: Option<String>,
        payload: Option<AttributePayload>,
        expected_version: Option<i64>,
    ) -> Result<i64, AwsError> {
        check_name("thing group name", &name)?;
        check_description(description.as_deref())?;
        if let Some(p) = &payload {
            check_attributes(&p.attributes)?;
        }
        self.writer
            .mutate(move |c| {
                let mut group = load_group(c, &name)?;
                check_expected(expected_version, group.version, "thing group", &name)?;
                if let Some(d) = description {
                    group.description = Some(d);
                }
                if let Some(p) = &payload {
                    group.attributes = apply_attributes(&group.attributes, &p.attributes, p.merge);
                }
                if group.attributes.len() > MAX_GROUP_ATTRIBUTES {
                    return Err(invalid(format!(
                        "A thing group can have at most {MAX_GROUP_ATTRIBUTES} attributes"
                    )));
                }
                group.version += 1;
                c.put(group_key(&name), &group)?;
                let version = group.version;
                c.emit(Operation::Updated, EventBody::ThingGroup { group });
                Ok(version)
            })
            .await
    }

    pub(crate) async fn delete_thing_group(
        &self,
        name: String,
        expected_version: Option<i64>,
    ) -> Result<(), AwsError> {
        check_name("thing group name", &name)?;
        let arn = self.arns().group(&name);
        self.writer
            .mutate(move |c| {
                let Some(group) = c.get::<ThingGroup>(&group_key(&name))? else {
                    return Ok(());
                };
                check_expected(expected_version, group.version, "thing group", &name)?;
                if !c.keys(&prefix(&["child", &name]))?.is_empty() {
                    return Err(invalid(format!(
                        "Cannot delete thing group : {name} when there are still child groups attached to it."
                    )));
                }
                for thing in c.keys(&prefix(&["gmem", &name]))? {
                    let thing = load_thing(c, &thing)?;
                    remove_membership(c, &thing, &group)?;
                }
                if let Some(p) = group.parent() {
                    c.remove(key(&["child", &p.name, &name]));
                    c.emit(
                        Operation::Removed,
                        EventBody::ThingGroupHierarchy {
                            parent: p.clone(),
                            child: GroupRef { name: name.clone(), id: group.id.clone() },
                        },
                    );
                }
                c.remove(group_key(&name));
                c.remove(key(&["dyngroup", &name]));
                delete_tags(c, &arn)?;
                // Jobs keep the group among their targets, as AWS IoT's do;
                // it reaches no thing any more.
                for job in c.keys(&prefix(&["jobgroup", &name]))? {
                    c.remove(key(&["jobgroup", &name, &job]));
                }
                c.emit(Operation::Deleted, EventBody::ThingGroup { group });
                Ok(())
            })
            .await
    }

    /// The names of every descendant of `name`, sorted.
    pub(super) fn descendants(&self, name: &str) -> Result<BTreeSet<String>, AwsError> {
        let mut found = BTreeSet::new();
        let mut queue = vec![name.to_owned()];
        while let Some(group) = queue.pop() {
            for child in self.store.keys(&prefix(&["child", &group]))? {
                if found.insert(child.clone()) {
                    queue.push(child);
                }
            }
        }
        Ok(found)
    }

    pub(crate) fn list_thing_groups(
        &self,
        page: Page,
        parent: Option<String>,
        name_prefix: Option<String>,
        recursive: bool,
    ) -> Result<Paged<String>, AwsError> {
        let name_prefix = name_prefix.unwrap_or_default();
        let keep = move |name: &str| name.starts_with(name_prefix.as_str());
        let Some(parent) = parent else {
            // Without a parent, `recursive = false` lists the root groups
            // only, as AWS IoT does; otherwise every group.
            let store = &self.store;
            let groups = store
                .iter(&prefix(&["group"]), page.after())
                .filter(|e| e.as_ref().map_or(true, |(n, _)| keep(n)))
                .filter_map(move |e| {
                    let (name, bytes) = match e {
                        Ok(entry) => entry,
                        Err(err) => return Some(Err(err)),
                    };
                    if recursive {
                        return Some(Ok((name.clone(), name)));
                    }
                    match store.decode::<ThingGroup>(&bytes) {
                        Ok(group) if group.parent().is_none() => Some(Ok((name.clone(), name))),
                        Ok(_) => None,
                        Err(err) => Some(Err(err)),
                    }
                });
            return page.collect(groups);
        };
        check_name("parent group name", &parent)?;
        load_group(&self.reader(), &parent)?;
        let names: Vec<String> = if recursive {
            self.descendants(&parent)?.into_iter().collect()
        } else {
            self.store.keys(&prefix(&["child", &parent]))?
        };
        Ok(page.collect_sorted(names.into_iter().filter(|n| keep(n))))
    }
}
