//! Dynamic thing groups (AWS IoT developer guide: "Dynamic thing groups"):
//! create, update and delete, and the membership the registry keeps equal to
//! what each group's fleet index query matches. A thing that comes to match
//! (CreateThing, UpdateThing, a connectivity report, ...) joins, one that
//! stops matching leaves, each with its THING_GROUP_MEMBERSHIP event and the
//! group's continuous jobs; a thing already in 10 groups does not join.
//!
//! The membership follows the index, which follows the change log: it is
//! eventually consistent, usually within milliseconds of the change.

use std::collections::BTreeSet;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{key, now_ms, prefix};
use tokio_util::sync::CancellationToken;

use super::{
    Emit, Registry, already_exists, check_expected, group_key, load_group,
    membership::{join_dynamic, remove_membership},
    tags::{Tags, check_tags, put_tags},
    thing_key,
};
use crate::domain::{
    Attributes, DynamicQuery, EventBody, Operation, Thing, ThingGroup, apply_attributes,
    check_attributes, check_description, check_name, invalid,
};
use crate::index::{IndexKind, THINGS_INDEX, query};

/// The only query version AWS IoT has.
pub(crate) const QUERY_VERSION: &str = "2017-09-30";

/// What UpdateDynamicThingGroup changes.
pub(crate) struct DynamicUpdate {
    pub(crate) description: Option<String>,
    pub(crate) attributes: Option<super::AttributePayload>,
    pub(crate) expected_version: Option<i64>,
    pub(crate) query_string: Option<String>,
}

impl Registry {
    /// A dynamic group's query, checked: the things index, enabled, and a
    /// query that parses.
    fn dynamic_query(
        &self,
        index_name: Option<String>,
        query_string: String,
    ) -> Result<DynamicQuery, AwsError> {
        let index_name = index_name.unwrap_or_else(|| THINGS_INDEX.to_owned());
        if IndexKind::named(Some(&index_name))? != IndexKind::Things {
            return Err(invalid(format!(
                "A dynamic thing group's query runs on {THINGS_INDEX}, not {index_name}"
            )));
        }
        self.describe_index(&index_name)?;
        query::parse(&query_string)
            .map_err(|e| AwsError::new(ErrorType::InvalidQuery, e.to_string()))?;
        Ok(DynamicQuery {
            index_name,
            query_string,
            query_version: QUERY_VERSION.to_owned(),
        })
    }

    pub(crate) async fn create_dynamic_thing_group(
        &self,
        name: String,
        description: Option<String>,
        attributes: Option<Attributes>,
        index_name: Option<String>,
        query_string: String,
        tags: Tags,
    ) -> Result<ThingGroup, AwsError> {
        check_name("thing group name", &name)?;
        check_tags(&tags)?;
        check_description(description.as_deref())?;
        let attributes: Attributes = attributes
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        check_attributes(&attributes)?;
        let dynamic = self.dynamic_query(index_name, query_string)?;
        let ctx = self.ctx.clone();
        let group = self
            .writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<ThingGroup>(&group_key(&name))? {
                    return Err(already_exists(
                        format!("Thing Group {name} already exists in current account"),
                        &existing.id,
                        ctx.arns().group(&name),
                    ));
                }
                let group = ThingGroup {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    ancestors: Vec::new(),
                    description,
                    attributes,
                    version: 1,
                    creation_date_ms: now_ms(),
                    dynamic: Some(dynamic),
                };
                c.put(group_key(&group.name), &group)?;
                c.put(key(&["dyngroup", &group.name]), &())?;
                put_tags(c, &ctx.arns().group(&group.name), &tags)?;
                c.emit(
                    Operation::Created,
                    EventBody::ThingGroup {
                        group: group.clone(),
                    },
                );
                Ok(group)
            })
            .await?;
        self.reconcile_dynamic_groups().await?;
        Ok(group)
    }

    pub(crate) async fn update_dynamic_thing_group(
        &self,
        name: String,
        update: DynamicUpdate,
    ) -> Result<i64, AwsError> {
        check_name("thing group name", &name)?;
        check_description(update.description.as_deref())?;
        if let Some(p) = &update.attributes {
            check_attributes(&p.attributes)?;
        }
        let dynamic = match update.query_string {
            Some(q) => Some(self.dynamic_query(None, q)?),
            None => None,
        };
        let version = self
            .writer
            .mutate(move |c| {
                let mut group = load_group(c, &name)?;
                if group.dynamic.is_none() {
                    return Err(invalid(format!(
                        "Thing group {name} is not a dynamic thing group"
                    )));
                }
                check_expected(update.expected_version, group.version, "thing group", &name)?;
                if let Some(d) = update.description {
                    group.description = Some(d);
                }
                if let Some(p) = &update.attributes {
                    group.attributes = apply_attributes(&group.attributes, &p.attributes, p.merge);
                }
                if dynamic.is_some() {
                    group.dynamic = dynamic;
                }
                group.version += 1;
                c.put(group_key(&name), &group)?;
                let version = group.version;
                c.emit(Operation::Updated, EventBody::ThingGroup { group });
                Ok(version)
            })
            .await?;
        self.reconcile_dynamic_groups().await?;
        Ok(version)
    }

    /// Deletes a dynamic group (its things leave it); one that is not there
    /// is no error, a static one is refused.
    pub(crate) async fn delete_dynamic_thing_group(
        &self,
        name: String,
        expected_version: Option<i64>,
    ) -> Result<(), AwsError> {
        check_name("thing group name", &name)?;
        if let Some(group) = self.reader().get::<ThingGroup>(&group_key(&name))?
            && group.dynamic.is_none()
        {
            return Err(invalid(format!(
                "Thing group {name} is not a dynamic thing group: delete it with DeleteThingGroup"
            )));
        }
        self.delete_thing_group(name, expected_version).await
    }

    /// Brings every dynamic group's membership to what its query matches now.
    pub(crate) async fn reconcile_dynamic_groups(&self) -> Result<(), AwsError> {
        for name in self.store.keys(&prefix(&["dyngroup"]))? {
            let Some(group) = self.reader().get::<ThingGroup>(&group_key(&name))? else {
                continue;
            };
            let Some(dynamic) = &group.dynamic else {
                continue;
            };
            let Ok(parsed) = query::parse(&dynamic.query_string) else {
                continue;
            };
            let want: BTreeSet<String> = self.query_names(&parsed).await?.into_iter().collect();
            let have: BTreeSet<String> = self
                .store
                .keys(&prefix(&["gmem", &name]))?
                .into_iter()
                .collect();
            let join: Vec<String> = want.difference(&have).cloned().collect();
            let leave: Vec<String> = have.difference(&want).cloned().collect();
            if join.is_empty() && leave.is_empty() {
                continue;
            }
            self.writer
                .mutate(move |c| {
                    // The group as it is now: it may have changed or gone.
                    let Some(group) = c.get::<ThingGroup>(&group_key(&name))? else {
                        return Ok(());
                    };
                    for thing in &join {
                        if let Some(thing) = c.get::<Thing>(&thing_key(thing))? {
                            join_dynamic(c, &thing, &group)?;
                        }
                    }
                    for thing in &leave {
                        if let Some(thing) = c.get::<Thing>(&thing_key(thing))? {
                            remove_membership(c, &thing, &group)?;
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Keeps the dynamic groups' membership until `shutdown`: after every
    /// change to the index.
    pub(crate) async fn run_dynamic_groups(self, shutdown: CancellationToken) {
        let mut changes = self.index.changes();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
            if let Err(err) = self.reconcile_dynamic_groups().await {
                tracing::warn!(
                    error = err.message,
                    "keeping the dynamic thing groups failed"
                );
            }
        }
    }
}
