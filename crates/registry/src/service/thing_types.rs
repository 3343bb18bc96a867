//! Thing types: create, describe, update, deprecate, delete (only once
//! deprecated long enough, and unused) and list.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, now_ms, prefix};

use super::{
    Emit, Registry, already_exists, load_type,
    tags::{Tags, check_tags, delete_tags, put_tags},
    type_key,
};
use crate::domain::{
    Attributes, EventBody, MAX_SEARCHABLE_ATTRIBUTES, Operation, ThingType, ThingTypeProperties,
    check_attributes, check_description, check_name, invalid,
};

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
    pub(crate) async fn create_thing_type(
        &self,
        name: String,
        properties: ThingTypeProperties,
        tags: Tags,
    ) -> Result<ThingType, AwsError> {
        check_name("thing type name", &name)?;
        check_type_properties(&properties)?;
        check_tags(&tags)?;
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
                put_tags(c, &ctx.arns().thing_type(&thing_type.name), &tags)?;
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
        let arn = self.arns().thing_type(&name);
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
                delete_tags(c, &arn)?;
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
}
