//! Tags on the registry's resources that AWS IoT tags: thing groups, thing
//! types, jobs and job templates (AWS IoT API Reference: TagResource,
//! UntagResource, ListTagsForResource; AWS IoT Core Developer Guide:
//! "Tagging your AWS IoT resources"). Given at creation or by TagResource,
//! kept until untagged or the resource is deleted. State:
//! `tag/<arn>/<key>`: the value.

use herald_proto::error::AwsError;
use herald_store::{Page, Paged, key, prefix};

use super::{Changes, Registry, billing_key, group_key, type_key};
use crate::domain::{invalid, not_found};

/// The most tags on one resource.
pub(crate) const MAX_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// (key, value) pairs, in the order given.
pub(crate) type Tags = Vec<(String, String)>;

fn tag_key(arn: &str, tag: &str) -> Vec<u8> {
    key(&["tag", arn, tag])
}

/// AWS's rules for tags: keys of 1 to 128 characters not starting with
/// `aws:`, values of at most 256; letters, digits, spaces and `_.:/=+-@`.
pub(crate) fn check_tags(tags: &Tags) -> Result<(), AwsError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "A resource can have at most {MAX_TAGS} tags"
        )));
    }
    for (k, v) in tags {
        check_tag_key(k)?;
        if v.chars().count() > MAX_VALUE || !v.chars().all(allowed) {
            return Err(invalid(format!(
                "Tag value {v:?} must be at most {MAX_VALUE} letters, digits, spaces or _.:/=+-@"
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_tag_key(k: &str) -> Result<(), AwsError> {
    let len = k.chars().count();
    if len == 0 || len > MAX_KEY || !k.chars().all(allowed) {
        return Err(invalid(format!(
            "Tag key {k:?} must be 1 to {MAX_KEY} letters, digits, spaces or _.:/=+-@"
        )));
    }
    if k.starts_with("aws:") {
        return Err(invalid(format!(
            "Tag key {k:?}: keys starting with aws: are reserved"
        )));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// Adds or replaces `tags` on the resource `arn`.
pub(super) fn put_tags(c: &mut Changes<'_>, arn: &str, tags: &Tags) -> Result<(), AwsError> {
    for (k, v) in tags {
        c.put(tag_key(arn, k), v)?;
    }
    let count = c.keys(&prefix(&["tag", arn]))?.len();
    if count > MAX_TAGS {
        return Err(invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; {arn} would have {count}"
        )));
    }
    Ok(())
}

/// Removes every tag of the resource `arn` (it is being deleted).
pub(super) fn delete_tags(c: &mut Changes<'_>, arn: &str) -> Result<(), AwsError> {
    for k in c.keys(&prefix(&["tag", arn]))? {
        c.remove(tag_key(arn, &k));
    }
    Ok(())
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

    pub(crate) async fn tag_resource(&self, arn: String, tags: Tags) -> Result<(), AwsError> {
        check_tags(&tags)?;
        let resource = self.tagged(&arn)?;
        self.writer
            .mutate(move |c| {
                if !c.exists(&resource)? {
                    return Err(not_found(format!("Resource {arn} cannot be found.")));
                }
                put_tags(c, &arn, &tags)
            })
            .await
    }

    pub(crate) async fn untag_resource(
        &self,
        arn: String,
        keys: Vec<String>,
    ) -> Result<(), AwsError> {
        for k in &keys {
            check_tag_key(k)?;
        }
        let resource = self.tagged(&arn)?;
        self.writer
            .mutate(move |c| {
                if !c.exists(&resource)? {
                    return Err(not_found(format!("Resource {arn} cannot be found.")));
                }
                for k in &keys {
                    c.remove(tag_key(&arn, k));
                }
                Ok(())
            })
            .await
    }

    pub(crate) fn list_tags_for_resource(
        &self,
        arn: &str,
        page: Page,
    ) -> Result<Paged<(String, String)>, AwsError> {
        let resource = self.tagged(arn)?;
        if !self.reader().exists(&resource)? {
            return Err(not_found(format!("Resource {arn} cannot be found.")));
        }
        let store = self.store.clone();
        let tags = self
            .store
            .iter(&prefix(&["tag", arn]), page.after())
            .map(move |entry| {
                entry.and_then(|(k, bytes)| {
                    let value: String = store.decode(&bytes)?;
                    Ok((k.clone(), (k, value)))
                })
            });
        page.collect(tags)
    }
}
