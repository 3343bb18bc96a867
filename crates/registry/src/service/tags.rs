//! Tags on the registry's resources that AWS IoT tags: thing groups, thing
//! types, jobs and job templates (AWS IoT API Reference: TagResource,
//! UntagResource, ListTagsForResource; AWS IoT Core Developer Guide:
//! "Tagging your AWS IoT resources"). Given at creation or by TagResource,
//! kept until untagged or the resource is deleted. State:
//! `tag/<arn>/<key>`: the value.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key};

use super::{Changes, Registry, billing_key, group_key, type_key};
use crate::domain::invalid;

pub(crate) use herald_proto::tags::{Tags, check_tags};
use herald_proto::tags::{check_count, check_tag_key, missing};
use herald_store::tags::{self as stored, Tagged};

/// Adds or replaces `tags` on the resource `arn`.
pub(super) fn put_tags(c: &mut Changes<'_>, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    check_count(arn, stored::put(c, arn, tags)?)
}

/// Removes every tag of the resource `arn` (it is being deleted).
pub(super) fn delete_tags(c: &mut Changes<'_>, arn: &str) -> Result<(), AwsError> {
    stored::remove_all(c, arn)
}

impl Registry {
    /// The key whose presence says the tagged resource `arn` exists.
    fn tagged(&self, arn: &str) -> Result<Vec<u8>, AwsError> {
        let arns = self.arns();
        if let Some(name) = arns.name_in("thinggroup", arn) {
            return Ok(group_key(name));
        }
        if let Some(name) = arns.name_in("thingtype", arn) {
            return Ok(type_key(name));
        }
        if let Some(name) = arns.name_in("billinggroup", arn) {
            return Ok(billing_key(name));
        }
        if let Some(id) = arns.name_in("job", arn) {
            return Ok(key(&["job", id]));
        }
        if let Some(id) = arns.name_in("jobtemplate", arn) {
            return Ok(key(&["jobtemplate", id]));
        }
        Err(invalid(format!(
            "{arn} is not the ARN of a thing group, thing type, billing group, job or job template of account {} in {}: the resources whose tags Herald keeps",
            arns.account, arns.region
        )))
    }

    fn tag_target(&self, arn: String) -> Result<Tagged<AwsError>, AwsError> {
        Ok(Tagged {
            resource: self.tagged(&arn)?,
            arn,
            missing,
        })
    }

    pub(crate) async fn tag_resource(&self, arn: String, tags: Tags) -> Result<(), AwsError> {
        check_tags(&tags)?;
        stored::tag(&self.writer, self.tag_target(arn)?, tags, check_count).await
    }

    pub(crate) async fn untag_resource(
        &self,
        arn: String,
        keys: Vec<String>,
    ) -> Result<(), AwsError> {
        for k in &keys {
            check_tag_key(k)?;
        }
        stored::untag(&self.writer, self.tag_target(arn)?, keys).await
    }

    pub(crate) fn list_tags_for_resource(
        &self,
        arn: &str,
        page: Page,
    ) -> Result<Paged<(String, String)>, AwsError> {
        stored::list(&self.store, &self.tag_target(arn.to_owned())?, page)
    }
}
