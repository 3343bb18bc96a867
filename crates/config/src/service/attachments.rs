//! Policy attachments to certificates and thing groups, the policies
//! attached to a target (with its ancestors), and the policies in force for a
//! principal and a thing.

use std::collections::BTreeSet;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::{key, prefix};

use super::{ConfigService, PolicyState, load_certificate, load_policy};
use crate::domain::{
    ConfigEvent, MAX_POLICIES_PER_TARGET, Target, check_policy_name, invalid, not_found,
};

impl ConfigService {
    /// A target ARN, normalized, once its certificate or thing group is known to exist.
    async fn existing_target(&self, target: &str) -> Result<String, AwsError> {
        match self.arns().target(target)? {
            Target::Certificate(id) => {
                load_certificate(&self.reader(), &id)?;
                Ok(self.arns().certificate(&id))
            }
            Target::ThingGroup(name) => match self.registry.thing_group(&name).await? {
                Some(_) => Ok(target.to_owned()),
                None => Err(not_found(format!("Thing group {name} cannot be found."))),
            },
        }
    }

    pub(crate) async fn attach_policy(
        &self,
        policy: String,
        target: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&policy)?;
        let target = self.existing_target(&target).await?;
        self.writer
            .mutate(move |c| {
                load_policy(c, &policy)?;
                if c.exists(&key(&["att", &policy, &target]))? {
                    return Ok(());
                }
                if c.keys(&prefix(&["tgt", &target]))?.len() >= MAX_POLICIES_PER_TARGET {
                    return Err(AwsError::new(
                        ErrorType::LimitExceeded,
                        format!("{target} already has {MAX_POLICIES_PER_TARGET} policies attached, the most a target can have"),
                    ));
                }
                c.put(key(&["att", &policy, &target]), &())?;
                c.put(key(&["tgt", &target, &policy]), &())?;
                c.log(ConfigEvent::Attached { policy, target });
                Ok(())
            })
            .await
    }

    pub(crate) async fn detach_policy(
        &self,
        policy: String,
        target: String,
    ) -> Result<(), AwsError> {
        check_policy_name(&policy)?;
        let target = match self.arns().target(&target)? {
            Target::Certificate(id) => self.arns().certificate(&id),
            Target::ThingGroup(_) => target,
        };
        self.writer
            .mutate(move |c| {
                load_policy(c, &policy)?;
                if c.exists(&key(&["att", &policy, &target]))? {
                    c.remove(key(&["att", &policy, &target]));
                    c.remove(key(&["tgt", &target, &policy]));
                    c.log(ConfigEvent::Detached { policy, target });
                }
                Ok(())
            })
            .await
    }

    /// The thing group ARNs from `group` up to its root.
    async fn group_and_ancestors(&self, group: &str) -> Result<Vec<String>, AwsError> {
        let Some(described) = self.registry.thing_group(group).await? else {
            return Err(not_found(format!("Thing group {group} cannot be found.")));
        };
        let mut arns = vec![described.arn];
        arns.extend(described.ancestor_arns.into_iter().rev());
        Ok(arns)
    }

    /// Policies attached to `target`, and for a thing group with `recursive`,
    /// to its ancestors, each once, in name order.
    pub(crate) async fn attached_policies(
        &self,
        target: &str,
        recursive: bool,
    ) -> Result<Vec<String>, AwsError> {
        let target = self.existing_target(target).await?;
        let targets = match self.arns().target(&target)? {
            Target::ThingGroup(name) if recursive => self.group_and_ancestors(&name).await?,
            _ => vec![target],
        };
        let mut names = BTreeSet::new();
        for target in targets {
            names.extend(self.store.keys(&prefix(&["tgt", &target]))?);
        }
        Ok(names.into_iter().collect())
    }

    pub(crate) fn targets_for_policy(&self, policy: &str) -> Result<Vec<String>, AwsError> {
        check_policy_name(policy)?;
        load_policy(&self.reader(), policy)?;
        self.store.keys(&prefix(&["att", policy]))
    }

    /// The policies in force for a principal (a certificate ARN) and a thing:
    /// those attached to the certificate and to the thing's groups and their ancestors.
    pub(crate) async fn effective_policies(
        &self,
        principal: Option<&str>,
        thing: Option<&str>,
    ) -> Result<Vec<PolicyState>, AwsError> {
        let mut targets = Vec::new();
        if let Some(principal) = principal.filter(|p| !p.is_empty()) {
            match self.arns().target(principal)? {
                Target::Certificate(id) => targets.push(self.arns().certificate(&id)),
                Target::ThingGroup(_) => {
                    return Err(invalid("The principal must be a certificate ARN"));
                }
            }
        }
        if let Some(thing) = thing.filter(|t| !t.is_empty()) {
            targets.extend(self.registry.thing_group_targets(thing).await?);
        }
        let mut names = BTreeSet::new();
        for target in &targets {
            names.extend(self.store.keys(&prefix(&["tgt", target]))?);
        }
        names.iter().map(|name| self.get_policy(name)).collect()
    }
}
