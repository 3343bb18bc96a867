//! IoT policies and their versions: create, get, list, set the default
//! version, delete.

use herald_proto::error::{AwsError, ErrorType};
use herald_proto::tags::check_tags;
use herald_store::{now_ms, prefix};

use super::tags::{Tags, delete_tags, put_tags};
use super::{
    ConfigService, PolicyState, generation_id, load_policy, load_version, log_policy, policy_key,
    version_key,
};
use crate::domain::{
    ConfigEvent, MAX_POLICY_VERSIONS, Policy, PolicyVersion, check_document, check_policy_name,
    conflict,
};

impl ConfigService {
    pub(crate) async fn create_policy(
        &self,
        name: String,
        document: String,
        tags: Tags,
    ) -> Result<Policy, AwsError> {
        check_policy_name(&name)?;
        check_document(&name, &document)?;
        check_tags(&tags)?;
        let arn = self.arns().policy(&name);
        self.writer
            .mutate(move |c| {
                if c.exists(&policy_key(&name))? {
                    let mut err = AwsError::new(
                        ErrorType::ResourceAlreadyExists,
                        format!("Policy {name} already exists in this account"),
                    );
                    err.resource_id = Some(name.clone());
                    err.resource_arn = Some(arn);
                    return Err(err);
                }
                let now = now_ms();
                let policy = Policy {
                    name: name.clone(),
                    default_version: 1,
                    next_version: 2,
                    creation_date_ms: now,
                    last_modified_date_ms: now,
                    generation_id: generation_id(),
                };
                c.put(policy_key(&name), &policy)?;
                c.put(
                    version_key(&name, 1),
                    &PolicyVersion {
                        version: 1,
                        document: document.clone(),
                        creation_date_ms: now,
                    },
                )?;
                put_tags(c, &arn, &tags)?;
                log_policy(c, &policy, &document);
                Ok(policy)
            })
            .await
    }

    /// A policy and its default version's document.
    pub(crate) fn get_policy(&self, name: &str) -> Result<PolicyState, AwsError> {
        check_policy_name(name)?;
        let c = self.reader();
        let policy = load_policy(&c, name)?;
        let document = load_version(&c, name, policy.default_version)?.document;
        Ok(PolicyState { policy, document })
    }

    /// Every policy, in name order.
    pub(crate) fn policies(&self) -> Result<Vec<Policy>, AwsError> {
        self.store
            .iter(&prefix(&["policy"]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode(&bytes)))
            .collect()
    }

    pub(crate) async fn delete_policy(&self, name: String) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        let arn = self.arns().policy(&name);
        self.writer
            .mutate(move |c| {
                let policy = load_policy(c, &name)?;
                if !c.keys(&prefix(&["att", &name]))?.is_empty() {
                    return Err(conflict(format!(
                        "The policy cannot be deleted as the policy is attached to one or more principals (name={name})"
                    )));
                }
                let versions = c.keys(&prefix(&["pver", &name]))?;
                if versions.len() > 1 {
                    return Err(conflict(format!(
                        "Cannot delete the policy because it has one or more policy versions attached to it (name={name})"
                    )));
                }
                c.remove(policy_key(&name));
                c.remove(version_key(&name, policy.default_version));
                delete_tags(c, &arn)?;
                c.log(ConfigEvent::PolicyDeleted { name });
                Ok(())
            })
            .await
    }

    pub(crate) async fn create_policy_version(
        &self,
        name: String,
        document: String,
        set_as_default: bool,
    ) -> Result<(Policy, PolicyVersion), AwsError> {
        check_policy_name(&name)?;
        check_document(&name, &document)?;
        self.writer
            .mutate(move |c| {
                let mut policy = load_policy(c, &name)?;
                if c.keys(&prefix(&["pver", &name]))?.len() >= MAX_POLICY_VERSIONS {
                    return Err(AwsError::new(
                        ErrorType::VersionsLimitExceeded,
                        format!("The policy {name} already has the maximum number of versions ({MAX_POLICY_VERSIONS})"),
                    ));
                }
                let now = now_ms();
                let version = PolicyVersion { version: policy.next_version, document, creation_date_ms: now };
                policy.next_version += 1;
                policy.last_modified_date_ms = now;
                c.put(version_key(&name, version.version), &version)?;
                if set_as_default {
                    policy.default_version = version.version;
                    policy.generation_id = generation_id();
                    log_policy(c, &policy, &version.document);
                }
                c.put(policy_key(&name), &policy)?;
                Ok((policy, version))
            })
            .await
    }

    pub(crate) fn get_policy_version(
        &self,
        name: &str,
        id: &str,
    ) -> Result<(Policy, PolicyVersion), AwsError> {
        check_policy_name(name)?;
        let version = crate::domain::parse_version_id(id)?;
        let c = self.reader();
        let policy = load_policy(&c, name)?;
        Ok((policy, load_version(&c, name, version)?))
    }

    pub(crate) fn list_policy_versions(
        &self,
        name: &str,
    ) -> Result<(Policy, Vec<PolicyVersion>), AwsError> {
        check_policy_name(name)?;
        let policy = load_policy(&self.reader(), name)?;
        let versions = self
            .store
            .iter(&prefix(&["pver", name]), None)
            .map(|entry| entry.and_then(|(_, bytes)| self.store.decode::<PolicyVersion>(&bytes)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((policy, versions))
    }

    pub(crate) async fn set_default_policy_version(
        &self,
        name: String,
        id: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        let version = crate::domain::parse_version_id(&id)?;
        self.writer
            .mutate(move |c| {
                let mut policy = load_policy(c, &name)?;
                let document = load_version(c, &name, version)?.document;
                if policy.default_version != version {
                    policy.default_version = version;
                    policy.last_modified_date_ms = now_ms();
                    policy.generation_id = generation_id();
                    c.put(policy_key(&name), &policy)?;
                    log_policy(c, &policy, &document);
                }
                Ok(())
            })
            .await
    }

    pub(crate) async fn delete_policy_version(
        &self,
        name: String,
        id: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&name)?;
        let version = crate::domain::parse_version_id(&id)?;
        self.writer
            .mutate(move |c| {
                let policy = load_policy(c, &name)?;
                load_version(c, &name, version)?;
                if policy.default_version == version {
                    return Err(conflict(format!(
                        "Version {version} is the default version of policy {name}; it cannot be deleted"
                    )));
                }
                c.remove(version_key(&name, version));
                Ok(())
            })
            .await
    }
}
