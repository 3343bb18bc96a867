//! AWS's rules for resource tags (AWS IoT API Reference: Tag, TagResource;
//! AWS IoT Core Developer Guide: "Tagging your AWS IoT resources"), shared by
//! the services that keep tags: keys of 1 to 128 characters not starting
//! with `aws:`, values of at most 256; letters, digits, spaces and
//! `_.:/=+-@`; at most 50 tags on one resource.

use crate::error::{AwsError, ErrorType};

/// The most tags on one resource.
pub const MAX_TAGS: usize = 50;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;

/// (key, value) pairs, in the order given.
pub type Tags = Vec<(String, String)>;

fn invalid(message: String) -> AwsError {
    AwsError::new(ErrorType::InvalidRequest, message)
}

/// Checks `tags` against AWS's rules.
pub fn check_tags(tags: &Tags) -> Result<(), AwsError> {
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

/// Checks one tag key against AWS's rules.
pub fn check_tag_key(k: &str) -> Result<(), AwsError> {
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

/// Refuses a resource `arn` that would have `count` tags, more than
/// [`MAX_TAGS`].
pub fn check_count(arn: &str, count: usize) -> Result<(), AwsError> {
    if count > MAX_TAGS {
        return Err(invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; {arn} would have {count}"
        )));
    }
    Ok(())
}

/// The error for tagging a resource that does not exist.
pub fn missing(arn: &str) -> AwsError {
    AwsError::new(
        ErrorType::ResourceNotFound,
        format!("Resource {arn} cannot be found."),
    )
}

fn allowed(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}
