//! Billing groups (AWS IoT developer guide: "Billing groups"): create,
//! describe, update, delete, list, and the things in each. A thing is in at
//! most one billing group; adding it to another moves it. AWS IoT publishes
//! no event for billing groups, and neither does Herald.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, now_ms, prefix};

use super::{
    Changes, NameOrArn, Registry, already_exists, billing_key, check_expected, load_billing_group,
    load_thing, tags::Tags, thing_key,
};
use crate::domain::{BillingGroup, Thing, check_description, check_name};

/// Puts `thing` in billing group `group` (or in none), leaving any other.
fn set_billing_group(
    c: &mut Changes<'_>,
    mut thing: Thing,
    group: Option<&str>,
) -> Result<(), AwsError> {
    if thing.billing_group.as_deref() == group {
        return Ok(());
    }
    if let Some(old) = &thing.billing_group {
        c.remove(key(&["bgmem", old, &thing.name]));
    }
    if let Some(new) = group {
        c.put(key(&["bgmem", new, &thing.name]), &())?;
    }
    thing.billing_group = group.map(str::to_owned);
    c.put(thing_key(&thing.name), &thing)
}

impl Registry {
    pub(crate) async fn create_billing_group(
        &self,
        name: String,
        description: Option<String>,
        tags: Tags,
    ) -> Result<BillingGroup, AwsError> {
        check_name("billing group name", &name)?;
        check_description(description.as_deref())?;
        super::tags::check_tags(&tags)?;
        let ctx = self.ctx.clone();
        self.writer
            .mutate(move |c| {
                if let Some(existing) = c.get::<BillingGroup>(&billing_key(&name))? {
                    if existing.description == description {
                        return Ok(existing);
                    }
                    return Err(already_exists(
                        format!("Billing Group {name} already exists in current account with different properties"),
                        &existing.id,
                        ctx.arns().billing_group(&name),
                    ));
                }
                let group = BillingGroup {
                    name,
                    id: uuid::Uuid::new_v4().to_string(),
                    description,
                    version: 1,
                    creation_date_ms: now_ms(),
                };
                c.put(billing_key(&group.name), &group)?;
                super::tags::put_tags(c, &ctx.arns().billing_group(&group.name), &tags)?;
                Ok(group)
            })
            .await
    }

    pub(crate) fn describe_billing_group(&self, name: &str) -> Result<BillingGroup, AwsError> {
        check_name("billing group name", name)?;
        load_billing_group(&self.reader(), name)
    }

    /// Replaces the group's properties (its description) and returns its
    /// new version.
    pub(crate) async fn update_billing_group(
        &self,
        name: String,
        description: Option<String>,
        expected_version: Option<i64>,
    ) -> Result<i64, AwsError> {
        check_name("billing group name", &name)?;
        check_description(description.as_deref())?;
        self.writer
            .mutate(move |c| {
                let mut group = load_billing_group(c, &name)?;
                check_expected(expected_version, group.version, "billing group", &name)?;
                group.description = description;
                group.version += 1;
                c.put(billing_key(&name), &group)?;
                Ok(group.version)
            })
            .await
    }

    /// Deletes the group, taking its things out of it; a group that is not
    /// there is no error, as on AWS IoT.
    pub(crate) async fn delete_billing_group(
        &self,
        name: String,
        expected_version: Option<i64>,
    ) -> Result<(), AwsError> {
        check_name("billing group name", &name)?;
        let arn = self.arns().billing_group(&name);
        self.writer
            .mutate(move |c| {
                let Some(group) = c.get::<BillingGroup>(&billing_key(&name))? else {
                    return Ok(());
                };
                check_expected(expected_version, group.version, "billing group", &name)?;
                for thing in c.keys(&prefix(&["bgmem", &name]))? {
                    let thing = load_thing(c, &thing)?;
                    set_billing_group(c, thing, None)?;
                }
                c.remove(billing_key(&name));
                super::tags::delete_tags(c, &arn)
            })
            .await
    }

    pub(crate) fn list_billing_groups(
        &self,
        page: Page,
        name_prefix: Option<String>,
    ) -> Result<Paged<String>, AwsError> {
        let name_prefix = name_prefix.unwrap_or_default();
        let groups = self
            .store
            .iter(&prefix(&["bgroup"]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)))
            .filter(|e| {
                e.as_ref()
                    .map_or(true, |(n, _)| n.starts_with(name_prefix.as_str()))
            });
        page.collect(groups)
    }

    pub(crate) async fn add_thing_to_billing_group(
        &self,
        group: NameOrArn,
        thing: NameOrArn,
    ) -> Result<(), AwsError> {
        let group = self.resolve("billingGroup", "billinggroup", group)?;
        let thing = self.resolve("thing", "thing", thing)?;
        self.writer
            .mutate(move |c| {
                load_billing_group(c, &group)?;
                let thing = load_thing(c, &thing)?;
                set_billing_group(c, thing, Some(&group))
            })
            .await
    }

    /// Takes the thing out of the group; a thing that is not in it is no
    /// error.
    pub(crate) async fn remove_thing_from_billing_group(
        &self,
        group: NameOrArn,
        thing: NameOrArn,
    ) -> Result<(), AwsError> {
        let group = self.resolve("billingGroup", "billinggroup", group)?;
        let thing = self.resolve("thing", "thing", thing)?;
        self.writer
            .mutate(move |c| {
                load_billing_group(c, &group)?;
                let thing = load_thing(c, &thing)?;
                if thing.billing_group.as_deref() == Some(group.as_str()) {
                    set_billing_group(c, thing, None)?;
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_things_in_billing_group(
        &self,
        group: &str,
        page: Page,
    ) -> Result<Paged<String>, AwsError> {
        check_name("billing group name", group)?;
        load_billing_group(&self.reader(), group)?;
        let things = self
            .store
            .iter(&prefix(&["bgmem", group]), page.after())
            .map(|e| e.map(|(n, _)| (n.clone(), n)));
        page.collect(things)
    }
}
