//! Tags on the config service's resources that AWS IoT tags: policies and
//! CA certificates (AWS IoT API Reference: CreatePolicy and
//! RegisterCACertificate `tags`, TagResource, UntagResource,
//! ListTagsForResource). Given at creation or by TagResource, kept until
//! untagged or the resource is deleted, beside the state
//! (`herald_store::tags`).

use herald_proto::error::AwsError;
pub(crate) use herald_proto::tags::Tags;
use herald_proto::tags::{check_count, check_tag_key, check_tags, missing};
use herald_store::tags::{self as stored, Tagged};
use herald_store::{Page, Paged, key};

use super::{Changes, ConfigService, policy_key};
use crate::domain::invalid;

/// Adds or replaces `tags` on the resource `arn`.
pub(super) fn put_tags(c: &mut Changes<'_>, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    check_count(arn, stored::put(c, arn, tags)?)
}

/// Removes every tag of the resource `arn` (it is being deleted).
pub(super) fn delete_tags(c: &mut Changes<'_>, arn: &str) -> Result<(), AwsError> {
    stored::remove_all(c, arn)
}

impl ConfigService {
    /// The resource `arn` names, if this service keeps its tags.
    fn tag_target(&self, arn: String) -> Result<Tagged<AwsError>, AwsError> {
        let arns = self.arns();
        let resource = if let Some(name) = arn.strip_prefix(arns.policy("").as_str()) {
            policy_key(name)
        } else if let Some(id) = arn.strip_prefix(arns.ca_certificate("").as_str()) {
            key(&["cacert", &id.to_ascii_lowercase()])
        } else {
            return Err(invalid(format!(
                "{arn} is not the ARN of a policy or CA certificate of account {} in {}",
                arns.account, arns.region
            )));
        };
        Ok(Tagged {
            resource,
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
