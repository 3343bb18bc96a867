//! The registry's operations with AWS semantics. Reads go straight to the
//! store; mutations run on the single writer and log their events.

use std::{collections::BTreeSet, sync::Arc};

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{ChangeLog, Page, Paged, key, now_ms, prefix};

use crate::{
    domain::Event,
    domain::{
        Arns, Attributes, EventBody, GroupRef, MAX_CHILD_GROUPS, MAX_GROUP_ATTRIBUTES,
        MAX_GROUP_DEPTH, MAX_GROUPS_PER_THING, MAX_SEARCHABLE_ATTRIBUTES, Operation, Thing,
        ThingGroup, ThingType, ThingTypeProperties, apply_attributes, check_attributes,
        check_description, check_name, check_principal, check_thing_attribute_count, invalid,
        limit, not_found,
    },
};

type Changes<'a> = herald_store::Changes<'a, Event, AwsError>;
type Store = herald_store::Store<AwsError>;
type Writer = herald_store::Writer<Event, AwsError>;

/// Logs a registry event with a change.
trait Emit {
    fn emit(&mut self, operation: Operation, body: EventBody);
}

impl Emit for Changes<'_> {
    fn emit(&mut self, operation: Operation, body: EventBody) {
        self.log(Event { operation, body });
    }
}

/// What the operations need besides storage.
pub(crate) struct Context {
    pub(crate) account_id: String,
    pub(crate) region: String,
    pub(crate) thing_type_delete_delay_ms: i64,
}

impl Context {
    pub(crate) fn arns(&self) -> Arns<'_> {
        Arns {
            region: &self.region,
            account: &self.account_id,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Registry {
    store: Store,
    writer: Writer,
    ctx: Arc<Context>,
    log: ChangeLog,
}

/// An attribute payload: the attributes given and whether to merge them.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttributePayload {
    pub(crate) attributes: Attributes,
    pub(crate) merge: bool,
}

#[derive(Debug, Default)]
pub(crate) struct ThingFilter {
    pub(crate) attribute_name: Option<String>,
    pub(crate) attribute_value: Option<String>,
    pub(crate) use_prefix: bool,
    pub(crate) thing_type_name: Option<String>,
}

/// A reference to a thing or a group by name or by ARN.
#[derive(Debug, Default)]
pub(crate) struct NameOrArn {
    pub(crate) name: Option<String>,
    pub(crate) arn: Option<String>,
}

fn thing_key(name: &str) -> Vec<u8> {
    key(&["thing", name])
}

fn type_key(name: &str) -> Vec<u8> {
    key(&["type", name])
}

fn group_key(name: &str) -> Vec<u8> {
    key(&["group", name])
}

fn load_thing(c: &Changes<'_>, name: &str) -> Result<Thing, AwsError> {
    c.get(&thing_key(name))?
        .ok_or_else(|| not_found(format!("Thing {name} cannot be found.")))
}

fn load_type(c: &Changes<'_>, name: &str) -> Result<ThingType, AwsError> {
    c.get(&type_key(name))?
        .ok_or_else(|| not_found(format!("Thing type {name} cannot be found.")))
}

fn load_group(c: &Changes<'_>, name: &str) -> Result<ThingGroup, AwsError> {
    c.get(&group_key(name))?
        .ok_or_else(|| not_found(format!("Thing group {name} cannot be found.")))
}

fn version_conflict(kind: &str, name: &str) -> AwsError {
    AwsError::new(
        ErrorType::VersionConflict,
        format!("The version for {kind} {name} does not match the expected version."),
    )
}

fn already_exists(message: String, id: &str, arn: String) -> AwsError {
    let mut err = AwsError::new(ErrorType::ResourceAlreadyExists, message);
    err.resource_id = Some(id.to_owned());
    err.resource_arn = Some(arn);
    err
}

/// A type usable for a new association: it exists and is not deprecated.
fn usable_type(c: &Changes<'_>, name: &str, verb: &str) -> Result<ThingType, AwsError> {
    let thing_type = load_type(c, name)?;
    if thing_type.deprecated {
        return Err(invalid(format!(
            "Can not {verb} a thing with deprecated thing type: {name}"
        )));
    }
    Ok(thing_type)
}

fn set_type_index(
    c: &mut Changes<'_>,
    type_name: &str,
    thing: &str,
    present: bool,
) -> Result<(), AwsError> {
    let k = key(&["typething", type_name, thing]);
    if present {
        c.put(k, &())?;
    } else {
        c.remove(k);
    }
    Ok(())
}

fn association(c: &mut Changes<'_>, operation: Operation, thing: &Thing, type_name: &str) {
    c.emit(
        operation,
        EventBody::ThingTypeAssociation {
            thing_id: thing.id.clone(),
            thing_name: thing.name.clone(),
            thing_type_name: type_name.to_owned(),
        },
    );
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

fn add_membership(c: &mut Changes<'_>, thing: &Thing, group: &ThingGroup) -> Result<(), AwsError> {
    if c.exists(&key(&["tmem", &thing.name, &group.name]))? {
        return Ok(());
    }
    let current = c.keys(&prefix(&["tmem", &thing.name]))?;
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
    Ok(())
}

fn remove_membership(
    c: &mut Changes<'_>,
    thing: &Thing,
    group: &ThingGroup,
) -> Result<(), AwsError> {
    let tmem = key(&["tmem", &thing.name, &group.name]);
    if let Some(id) = c.get::<String>(&tmem)? {
        c.remove(tmem);
        c.remove(key(&["gmem", &group.name, &thing.name]));
        membership_event(c, Operation::Removed, thing, group, id);
    }
    Ok(())
}

fn check_expected(
    expected: Option<i64>,
    version: i64,
    kind: &str,
    name: &str,
) -> Result<(), AwsError> {
    match expected {
        Some(expected) if expected != version => Err(version_conflict(kind, name)),
        _ => Ok(()),
    }
}

fn check_type_properties(p: &ThingTypeProperties) -> Result<(), AwsError> {
    check_description(p.description.as_deref())?;
    if p.searchable_attributes.len() > MAX_SEARCHABLE_ATTRIBUTES {
        return Err(invalid(format!(
            "A thing type can have at most {MAX_SEARCHABLE_ATTRIBUTES} searchable attributes, got {}",
            p.searchable_attributes.len()
        )));
    }
    for name in &p.searchable_attributes {
        check_attributes(&Attributes::from([(name.clone(), String::new())]))?;
    }
    for attr in p.propagating_attributes.iter().flatten() {
        if attr.user_property_key.is_empty() || attr.user_property_key.len() > 128 {
            return Err(invalid("userPropertyKey must be 1 to 128 characters long"));
        }
    }
    Ok(())
}

impl Registry {
    pub(crate) fn new(store: Store, writer: Writer, ctx: Context, log: ChangeLog) -> Registry {
        Registry {
            store,
            writer,
            ctx: Arc::new(ctx),
            log,
        }
    }

    pub(crate) fn arns(&self) -> Arns<'_> {
        self.ctx.arns()
    }

    pub(crate) fn account_id(&self) -> &str {
        &self.ctx.account_id
    }

    pub(crate) fn log(&self) -> &ChangeLog {
        &self.log
    }

    fn reader(&self) -> Changes<'_> {
        Changes::new(&self.store)
    }

    /// Removes all state, logging nothing (test mode).
    pub(crate) async fn reset(&self) -> Result<(), AwsError> {
        self.writer.mutate(|c| c.remove_all_state()).await
    }

    // ------------------------------------------------------------ things

    pub(crate) async fn create_thing(
        &self,
        name: String,
        type_name: Option<String>,
        attributes: Option<Attributes>,
        billing_group: Option<String>,
    ) -> Result<Thing, AwsError> {
        check_name("thing name", &name)?;
        if let Some(t) = &type_name {
            check_name("thing type name", t)?;
        }
        let attributes: Attributes = attributes
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        check_attributes(&attributes)?;
        check_thing_attribute_count(&attributes, type_name.is_some())?;
        if let Some(group) = billing_group {
            return Err(not_found(format!("Billing group {group} cannot be found.")));
        }
        let ctx = self.ctx.clone();
        self.writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<Thing>(&thing_key(&name))? {
                    if existing.type_name == type_name && existing.attributes == attributes {
                        return Ok(existing);
                    }
                    return Err(already_exists(
                        format!("Thing {name} already exists in account with different attributes"),
                        &existing.id,
                        ctx.arns().thing(&name),
                    ));
                }
                if let Some(t) = &type_name {
                    usable_type(c, t, "create new")?;
                }
                let thing = Thing {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    type_name,
                    attributes,
                    version: 1,
                };
                c.put(thing_key(&thing.name), &thing)?;
                c.emit(
                    Operation::Created,
                    EventBody::Thing {
                        thing: thing.clone(),
                    },
                );
                if let Some(t) = &thing.type_name {
                    set_type_index(c, t, &thing.name, true)?;
                    association(c, Operation::Added, &thing, t);
                }
                Ok(thing)
            })
            .await
    }

    pub(crate) fn describe_thing(&self, name: &str) -> Result<Thing, AwsError> {
        check_name("thing name", name)?;
        load_thing(&self.reader(), name)
    }

    pub(crate) async fn update_thing(
        &self,
        name: String,
        type_name: Option<String>,
        payload: Option<AttributePayload>,
        expected_version: Option<i64>,
        remove_type: bool,
    ) -> Result<(), AwsError> {
        check_name("thing name", &name)?;
        if let Some(t) = &type_name {
            check_name("thing type name", t)?;
            if remove_type {
                return Err(invalid(
                    "removeThingType cannot be true when a thingTypeName is given",
                ));
            }
        }
        if let Some(p) = &payload {
            check_attributes(&p.attributes)?;
        }
        self.writer
            .mutate(move |c| {
                let old = load_thing(c, &name)?;
                check_expected(expected_version, old.version, "thing", &name)?;
                let mut thing = old.clone();
                if let Some(t) = &type_name {
                    if old.type_name.as_deref() != Some(t) {
                        usable_type(c, t, "update")?;
                    }
                    thing.type_name = Some(t.clone());
                } else if remove_type {
                    thing.type_name = None;
                }
                if let Some(p) = &payload {
                    thing.attributes = apply_attributes(&old.attributes, &p.attributes, p.merge);
                }
                check_thing_attribute_count(&thing.attributes, thing.type_name.is_some())?;
                thing.version += 1;
                c.put(thing_key(&name), &thing)?;
                c.emit(
                    Operation::Updated,
                    EventBody::Thing {
                        thing: thing.clone(),
                    },
                );
                if old.type_name != thing.type_name {
                    if let Some(t) = &old.type_name {
                        set_type_index(c, t, &name, false)?;
                        association(c, Operation::Removed, &thing, t);
                    }
                    if let Some(t) = &thing.type_name {
                        set_type_index(c, t, &name, true)?;
                        association(c, Operation::Added, &thing, t);
                    }
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn delete_thing(
        &self,
        name: String,
        expected_version: Option<i64>,
    ) -> Result<(), AwsError> {
        check_name("thing name", &name)?;
        self.writer
            .mutate(move |c| {
                let Some(thing) = c.get::<Thing>(&thing_key(&name))? else {
                    return Ok(());
                };
                check_expected(expected_version, thing.version, "thing", &name)?;
                if !c.keys(&prefix(&["tprin", &name]))?.is_empty() {
                    return Err(invalid(format!(
                        "Cannot delete. Thing {name} is still attached to one or more principals"
                    )));
                }
                c.remove(thing_key(&name));
                c.emit(
                    Operation::Deleted,
                    EventBody::Thing {
                        thing: thing.clone(),
                    },
                );
                if let Some(t) = &thing.type_name {
                    set_type_index(c, t, &name, false)?;
                    association(c, Operation::Removed, &thing, t);
                }
                for group in c.keys(&prefix(&["tmem", &name]))? {
                    let group = load_group(c, &group)?;
                    remove_membership(c, &thing, &group)?;
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_things(
        &self,
        page: Page,
        filter: ThingFilter,
    ) -> Result<Paged<Thing>, AwsError> {
        if filter.attribute_value.is_some() && filter.attribute_name.is_none() {
            return Err(invalid("attributeValue needs an attributeName"));
        }
        let things = self
            .store
            .iter(&prefix(&["thing"]), page.after())
            .map(|entry| {
                let (name, bytes) = entry?;
                Ok((name, self.store.decode::<Thing>(&bytes)?))
            });
        let matches = move |thing: &Thing| {
            if let Some(t) = &filter.thing_type_name
                && thing.type_name.as_ref() != Some(t)
            {
                return false;
            }
            match (&filter.attribute_name, &filter.attribute_value) {
                (Some(n), Some(v)) => thing.attributes.get(n).is_some_and(|value| {
                    if filter.use_prefix {
                        value.starts_with(v.as_str())
                    } else {
                        value == v
                    }
                }),
                (Some(n), None) => thing.attributes.contains_key(n),
                _ => true,
            }
        };
        page.collect(things.filter(|entry| entry.as_ref().map_or(true, |(_, t)| matches(t))))
    }

    // ------------------------------------------------------------ thing types

    pub(crate) async fn create_thing_type(
        &self,
        name: String,
        properties: ThingTypeProperties,
    ) -> Result<ThingType, AwsError> {
        check_name("thing type name", &name)?;
        check_type_properties(&properties)?;
        let ctx = self.ctx.clone();
        self.writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<ThingType>(&type_key(&name))? {
                    if existing.properties == properties {
                        return Ok(existing);
                    }
                    return Err(already_exists(
                        format!("Thing Type {name} already exists in current account with different properties"),
                        &existing.id,
                        ctx.arns().thing_type(&name),
                    ));
                }
                let thing_type = ThingType {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    properties,
                    deprecated: false,
                    deprecation_date_ms: None,
                    creation_date_ms: now_ms(),
                };
                c.put(type_key(&thing_type.name), &thing_type)?;
                c.emit(Operation::Created, EventBody::ThingType { thing_type: thing_type.clone() });
                Ok(thing_type)
            })
            .await
    }

    pub(crate) fn describe_thing_type(&self, name: &str) -> Result<ThingType, AwsError> {
        check_name("thing type name", name)?;
        load_type(&self.reader(), name)
    }

    async fn change_type(
        &self,
        name: String,
        change: impl FnOnce(&mut ThingType) + Send + 'static,
    ) -> Result<(), AwsError> {
        check_name("thing type name", &name)?;
        self.writer
            .mutate(move |c| {
                let mut thing_type = load_type(c, &name)?;
                change(&mut thing_type);
                c.put(type_key(&name), &thing_type)?;
                c.emit(Operation::Updated, EventBody::ThingType { thing_type });
                Ok(())
            })
            .await
    }

    pub(crate) async fn update_thing_type(
        &self,
        name: String,
        properties: ThingTypeProperties,
    ) -> Result<(), AwsError> {
        check_type_properties(&properties)?;
        self.change_type(name, move |t| {
            let current = &mut t.properties;
            if properties.description.is_some() {
                current.description = properties.description;
            }
            if !properties.searchable_attributes.is_empty() {
                current.searchable_attributes = properties.searchable_attributes;
            }
            if properties.propagating_attributes.is_some() {
                current.propagating_attributes = properties.propagating_attributes;
            }
        })
        .await
    }

    pub(crate) async fn deprecate_thing_type(
        &self,
        name: String,
        undo: bool,
    ) -> Result<(), AwsError> {
        self.change_type(name, move |t| {
            t.deprecated = !undo;
            t.deprecation_date_ms = if undo { None } else { Some(now_ms()) };
        })
        .await
    }

    pub(crate) async fn delete_thing_type(&self, name: String) -> Result<(), AwsError> {
        check_name("thing type name", &name)?;
        let delay = self.ctx.thing_type_delete_delay_ms;
        self.writer
            .mutate(move |c| {
                let thing_type = load_type(c, &name)?;
                let Some(deprecated_at) = thing_type.deprecation_date_ms.filter(|_| thing_type.deprecated) else {
                    return Err(invalid(format!(
                        "Thing type {name} is not deprecated; you can delete thing types only after they have been deprecated"
                    )));
                };
                let wait = deprecated_at + delay - now_ms();
                if wait > 0 {
                    return Err(invalid(format!(
                        "Thing type {name} was deprecated less than {} seconds ago; try again in {} seconds",
                        delay / 1000,
                        (wait + 999) / 1000
                    )));
                }
                if !c.keys(&prefix(&["typething", &name]))?.is_empty() {
                    return Err(invalid(format!(
                        "Can not delete thing type {name}: it still has things associated with it"
                    )));
                }
                c.remove(type_key(&name));
                c.emit(Operation::Deleted, EventBody::ThingType { thing_type });
                Ok(())
            })
            .await
    }

    pub(crate) fn list_thing_types(
        &self,
        page: Page,
        name: Option<String>,
    ) -> Result<Paged<ThingType>, AwsError> {
        let types = self
            .store
            .iter(&prefix(&["type"]), page.after())
            .map(|entry| {
                let (n, bytes) = entry?;
                Ok((n, self.store.decode::<ThingType>(&bytes)?))
            });
        page.collect(types.filter(|entry| match (entry, &name) {
            (Ok((n, _)), Some(name)) => n == name,
            _ => true,
        }))
    }

    // ------------------------------------------------------------ thing groups

    pub(crate) async fn create_thing_group(
        &self,
        name: String,
        parent: Option<String>,
        description: Option<String>,
        attributes: Option<Attributes>,
    ) -> Result<ThingGroup, AwsError> {
        check_name("thing group name", &name)?;
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
                };
                c.put(group_key(&group.name), &group)?;
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
                c.emit(Operation::Deleted, EventBody::ThingGroup { group });
                Ok(())
            })
            .await
    }

    /// The names of every descendant of `name`, sorted.
    fn descendants(&self, name: &str) -> Result<BTreeSet<String>, AwsError> {
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
            let groups = self
                .store
                .iter(&prefix(&["group"]), page.after())
                .map(|e| e.map(|(n, _)| (n.clone(), n)));
            return page.collect(groups.filter(|e| e.as_ref().map_or(true, |(n, _)| keep(n))));
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

    // ------------------------------------------------------------ membership

    fn resolve(&self, what: &str, kind: &str, r: NameOrArn) -> Result<String, AwsError> {
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
    ) -> Result<(), AwsError> {
        let group = self.resolve("thingGroup", "thinggroup", group)?;
        let thing = self.resolve("thing", "thing", thing)?;
        self.writer
            .mutate(move |c| {
                let group = load_group(c, &group)?;
                let thing = load_thing(c, &thing)?;
                add_membership(c, &thing, &group)
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
                for g in &remove {
                    let group = load_group(c, g)?;
                    remove_membership(c, &thing, &group)?;
                }
                for g in &add {
                    let group = load_group(c, g)?;
                    add_membership(c, &thing, &group)?;
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

    // ------------------------------------------------------------ principals

    pub(crate) async fn attach_thing_principal(
        &self,
        thing: String,
        principal: String,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                c.put(key(&["tprin", &thing, &principal]), &())?;
                c.put(key(&["pthing", &principal, &thing]), &())
            })
            .await
    }

    pub(crate) async fn detach_thing_principal(
        &self,
        thing: String,
        principal: String,
    ) -> Result<(), AwsError> {
        check_name("thing name", &thing)?;
        check_principal(&principal)?;
        self.writer
            .mutate(move |c| {
                load_thing(c, &thing)?;
                if c.exists(&key(&["tprin", &thing, &principal]))? {
                    c.remove(key(&["tprin", &thing, &principal]));
                    c.remove(key(&["pthing", &principal, &thing]));
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_thing_principals(
        &self,
        thing: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_name("thing name", thing)?;
        load_thing(&self.reader(), thing)?;
        let principals = self
            .store
            .iter(&prefix(&["tprin", thing]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(principals)
    }

    pub(crate) fn list_principal_things(
        &self,
        principal: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_principal(principal)?;
        let things = self
            .store
            .iter(&prefix(&["pthing", principal]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(things)
    }
}
