//! The config service's view of the registry: the few calls it makes, over
//! gRPC, answered in the config service's own types. Tonic and the
//! registry's wire types stop here.
//!
//! A registry that fails or can't be reached is `ServiceUnavailableException`
//! (unless its answer names another AWS error type), with a message that says
//! the registry failed.

use std::collections::HashMap;

use herald_proto::{
    error::{AwsError, ErrorType},
    registry::v1::{self as pb, registry_client::RegistryClient},
};
use herald_runtime::partition::Partition;
use tonic::transport::Channel;

/// The most a page of the registry's listings holds.
const PAGE: u32 = 250;

/// A thing, with what `TestAuthorization` puts in the policy context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Thing {
    pub(crate) name: String,
    pub(crate) type_name: Option<String>,
    pub(crate) attributes: HashMap<String, String>,
}

/// A thing group and its place in its hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThingGroup {
    pub(crate) arn: String,
    /// The ARNs of its ancestors, from the root down to its parent.
    pub(crate) ancestor_arns: Vec<String>,
}

/// The registry's gRPC client, for one partition. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Registry {
    client: RegistryClient<Channel>,
    /// `None`: the registry's default partition.
    partition: Option<Partition>,
}

impl Registry {
    pub(crate) fn new(channel: Channel) -> Registry {
        Registry {
            client: RegistryClient::new(channel),
            partition: None,
        }
    }

    /// The same registry, for `partition`.
    pub(crate) fn in_partition(&self, partition: &Partition) -> Registry {
        Registry {
            client: self.client.clone(),
            partition: Some(partition.clone()),
        }
    }

    /// A call naming this client's partition.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(partition) = &self.partition {
            partition.tag(&mut request);
        }
        request
    }

    /// The thing named `name`, if it exists.
    pub(crate) async fn thing(&self, name: &str) -> Result<Option<Thing>, AwsError> {
        let request = pb::DescribeThingRequest {
            thing_name: name.to_owned(),
        };
        let described = absent_if_not_found(
            self.client
                .clone()
                .describe_thing(self.request(request))
                .await,
        )?;
        Ok(described.map(|t| Thing {
            name: t.thing_name,
            type_name: t.thing_type_name,
            attributes: t.attributes,
        }))
    }

    /// The thing group named `name`, if it exists.
    pub(crate) async fn thing_group(&self, name: &str) -> Result<Option<ThingGroup>, AwsError> {
        let request = pb::DescribeThingGroupRequest {
            thing_group_name: name.to_owned(),
        };
        let described = absent_if_not_found(
            self.client
                .clone()
                .describe_thing_group(self.request(request))
                .await,
        )?;
        Ok(described.map(|g| ThingGroup {
            arn: g.thing_group_arn,
            ancestor_arns: g
                .thing_group_metadata
                .map(|m| m.root_to_parent_thing_groups)
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.group_arn)
                .collect(),
        }))
    }

    /// Every thing the principal (a certificate ARN) is attached to.
    pub(crate) async fn principal_things(&self, principal: &str) -> Result<Vec<String>, AwsError> {
        let mut client = self.client.clone();
        let mut things = Vec::new();
        let mut next_token = String::new();
        loop {
            let request = pb::ListPrincipalThingsRequest {
                principal: principal.to_owned(),
                page: Some(pb::Page {
                    next_token,
                    max_results: PAGE,
                }),
                thing_principal_type: String::new(),
            };
            let response = client
                .list_principal_things(self.request(request))
                .await
                .map_err(unavailable)?
                .into_inner();
            things.extend(response.things);
            if response.next_token.is_empty() {
                return Ok(things);
            }
            next_token = response.next_token;
        }
    }

    /// The ARNs of the thing groups `thing` belongs to and of all their
    /// ancestors, each once, in ARN order (`ListThingPolicyTargets`).
    pub(crate) async fn thing_group_targets(&self, thing: &str) -> Result<Vec<String>, AwsError> {
        let request = pb::ListThingPolicyTargetsRequest {
            thing_name: thing.to_owned(),
        };
        let response = self
            .client
            .clone()
            .list_thing_policy_targets(self.request(request))
            .await
            .map_err(unavailable)?
            .into_inner();
        Ok(response.thing_group_arns)
    }
}

fn unavailable(err: tonic::Status) -> AwsError {
    let mut err = AwsError::from_status(&err);
    if err.error_type == ErrorType::InternalFailure {
        err.error_type = ErrorType::ServiceUnavailable;
    }
    err.message = format!("the registry: {}", err.message);
    err
}

/// A registry "not found" means absent here; anything else is an error.
fn absent_if_not_found<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<Option<T>, AwsError> {
    match result {
        Ok(response) => Ok(Some(response.into_inner())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(unavailable(status)),
    }
}
