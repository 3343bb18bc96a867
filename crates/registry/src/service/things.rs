//! Things: create, describe, update, delete, list, and the index of things by
//! thing type.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, prefix};

use super::{
    AttributePayload, Changes, Emit, Registry, already_exists, check_expected, jobs,
    load_billing_group, load_group, load_thing, load_type, membership::remove_membership,
    thing_key,
};
use crate::domain::{
    Attributes, EventBody, Operation, Thing, ThingType, apply_attributes, check_attributes,
    check_name, check_thing_attribute_count, invalid,
};

#[derive(Debug, Default)]
pub(crate) struct ThingFilter {
    pub(crate) attribute_name: Option<String>,
    pub(crate) attribute_value: Option<String>,
    pub(crate) use_prefix: bool,
    pub(crate) thing_type_name: Option<String>,
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

pub(super) fn set_type_index(
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

pub(super) fn association(
    c: &mut Changes<'_>,
    operation: Operation,
    thing: &Thing,
    type_name: &str,
) {
    c.emit(
        operation,
        EventBody::ThingTypeAssociation {
            thing_id: thing.id.clone(),
            thing_name: thing.name.clone(),
            thing_type_name: type_name.to_owned(),
        },
    );
}

impl Registry {
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
        if let Some(group) = &billing_group {
            check_name("billing group name", group)?;
        }
        let ctx = self.ctx.clone();
        self.writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<Thing>(&thing_key(&name))? {
                    if existing.type_name == type_name
                        && existing.attributes == attributes
                        && (billing_group.is_none() || existing.billing_group == billing_group)
                    {
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
                if let Some(group) = &billing_group {
                    load_billing_group(c, group)?;
                    c.put(key(&["bgmem", group, &name]), &())?;
                }
                let thing = Thing {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    type_name,
                    attributes,
                    version: 1,
                    billing_group,
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
                if let Some(group) = &thing.billing_group {
                    c.remove(key(&["bgmem", group, &name]));
                }
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
                jobs::thing_deleted(c, &name)
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
}
