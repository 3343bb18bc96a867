//! The tonic adapter: unwrap the request, call the service, convert the result.
//! Wire types stop here. The `Jobs` service's adapter is `jobs`.

mod jobs;
mod shadows;

use std::pin::Pin;

use herald_proto::{
    error::AwsError,
    registry::v1::{self as pb, registry_server},
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use herald_store::{Page, WatchError};

use crate::{
    domain::{self, Arns, ChangeRecord, EventBody, Operation},
    index::{Connectivity, Found, FoundThing, GroupDoc, IndexKind},
    service::{
        AttributePayload, DynamicUpdate, GeoLocation, GroupIndexing, IndexingField,
        MAX_SEARCH_RESULTS, NameOrArn, Registry, Tags, ThingFilter, ThingIndexing,
        ThingPrincipalType,
    },
};

pub(crate) use jobs::GrpcJobs;
pub(crate) use shadows::GrpcShadows;

use crate::partition::Partitions;
use herald_runtime::partition::Partition;

/// The `Registry` service: each call runs on the partition it names
/// ([`crate::partition`]).
pub(crate) struct GrpcRegistry {
    partitions: Partitions,
    shutdown: CancellationToken,
    test_mode: bool,
}

/// The most connectivity reports one `ReportConnectivity` call may carry.
const MAX_CONNECTIVITY_REPORTS: usize = 1000;

impl GrpcRegistry {
    pub(crate) fn new(
        partitions: Partitions,
        shutdown: CancellationToken,
        test_mode: bool,
    ) -> GrpcRegistry {
        GrpcRegistry {
            partitions,
            shutdown,
            test_mode,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, AwsError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

/// Tags as the service takes them: (key, value) in the order given.
pub(crate) fn tags(tags: Vec<pb::Tag>) -> Tags {
    tags.into_iter().map(|t| (t.key, t.value)).collect()
}

fn page(page: Option<pb::Page>) -> Result<Page, Status> {
    let page = page.unwrap_or_default();
    Page::new(&page.next_token, page.max_results).map_err(|e| Status::from(domain::store_error(e)))
}

/// A listing's `thingPrincipalType` filter: empty lists both types.
fn principal_type_filter(name: &str) -> Result<Option<ThingPrincipalType>, Status> {
    if name.is_empty() {
        return Ok(None);
    }
    ThingPrincipalType::parse(name)
        .map(Some)
        .map_err(Status::from)
}

fn attachments(items: Vec<(String, ThingPrincipalType)>) -> Vec<pb::ThingPrincipalAttachment> {
    items
        .into_iter()
        .map(|(name, kind)| pb::ThingPrincipalAttachment {
            name,
            thing_principal_type: kind.as_str().to_owned(),
        })
        .collect()
}

fn token(next: Option<String>) -> String {
    next.unwrap_or_default()
}

fn payload(p: Option<pb::AttributePayload>) -> Option<AttributePayload> {
    p.map(|p| AttributePayload {
        attributes: p.attributes.into_iter().collect(),
        merge: p.merge,
    })
}

fn type_properties(p: Option<pb::ThingTypeProperties>) -> domain::ThingTypeProperties {
    let p = p.unwrap_or_default();
    domain::ThingTypeProperties {
        description: p.thing_type_description,
        searchable_attributes: p.searchable_attributes,
        propagating_attributes: p.mqtt5_configuration.map(|m| {
            m.propagating_attributes
                .into_iter()
                .map(|a| domain::PropagatingAttribute {
                    user_property_key: a.user_property_key,
                    thing_attribute: a.thing_attribute,
                    connection_attribute: a.connection_attribute,
                })
                .collect()
        }),
    }
}

fn propagating(attrs: &[domain::PropagatingAttribute]) -> Vec<pb::PropagatingAttribute> {
    attrs
        .iter()
        .map(|a| pb::PropagatingAttribute {
            user_property_key: a.user_property_key.clone(),
            thing_attribute: a.thing_attribute.clone(),
            connection_attribute: a.connection_attribute.clone(),
        })
        .collect()
}

fn thing(arns: &Arns<'_>, t: domain::Thing) -> pb::Thing {
    pb::Thing {
        thing_arn: arns.thing(&t.name),
        default_client_id: t.name.clone(),
        thing_name: t.name,
        thing_id: t.id,
        thing_type_name: t.type_name,
        attributes: t.attributes.into_iter().collect(),
        version: t.version,
        billing_group_name: t.billing_group,
    }
}

fn thing_type(arns: &Arns<'_>, t: domain::ThingType) -> pb::ThingType {
    pb::ThingType {
        thing_type_arn: arns.thing_type(&t.name),
        thing_type_name: t.name,
        thing_type_id: t.id,
        thing_type_properties: Some(pb::ThingTypeProperties {
            thing_type_description: t.properties.description,
            searchable_attributes: t.properties.searchable_attributes,
            mqtt5_configuration: t.properties.propagating_attributes.map(|a| {
                pb::Mqtt5Configuration {
                    propagating_attributes: propagating(&a),
                }
            }),
        }),
        thing_type_metadata: Some(pb::ThingTypeMetadata {
            deprecated: t.deprecated,
            deprecation_date_ms: t.deprecation_date_ms,
            creation_date_ms: t.creation_date_ms,
        }),
    }
}

fn group(arns: &Arns<'_>, g: domain::ThingGroup) -> pb::ThingGroup {
    pb::ThingGroup {
        thing_group_arn: arns.group(&g.name),
        thing_group_name: g.name.clone(),
        thing_group_id: g.id.clone(),
        version: g.version,
        thing_group_properties: Some(pb::ThingGroupProperties {
            thing_group_description: g.description.clone(),
            attribute_payload: Some(pb::AttributePayload {
                attributes: g.attributes.clone().into_iter().collect(),
                merge: false,
            }),
        }),
        thing_group_metadata: Some(pb::ThingGroupMetadata {
            parent_group_name: g.parent().map(|p| p.name.clone()),
            root_to_parent_thing_groups: g
                .ancestors
                .iter()
                .map(|a| pb::GroupNameAndArn {
                    group_name: a.name.clone(),
                    group_arn: arns.group(&a.name),
                })
                .collect(),
            creation_date_ms: g.creation_date_ms,
        }),
        dynamic: g.dynamic.map(|d| pb::DynamicGroupQuery {
            index_name: d.index_name,
            query_string: d.query_string,
            query_version: d.query_version,
            status: "ACTIVE".into(),
        }),
    }
}

fn group_names(arns: &Arns<'_>, names: Vec<String>) -> Vec<pb::GroupNameAndArn> {
    names
        .into_iter()
        .map(|n| pb::GroupNameAndArn {
            group_arn: arns.group(&n),
            group_name: n,
        })
        .collect()
}

fn thing_document(found: FoundThing) -> pb::ThingDocument {
    let FoundThing {
        doc,
        connectivity,
        shadow,
    } = found;
    pb::ThingDocument {
        thing_name: doc.name.to_string(),
        thing_id: doc.id,
        thing_type_name: doc.type_name,
        thing_group_names: doc.groups.into_iter().collect(),
        attributes: doc.attributes.into_iter().collect(),
        connectivity: connectivity.map(|c| pb::ThingConnectivity {
            connected: c.connected,
            timestamp_ms: c.timestamp_ms,
            disconnect_reason: c.disconnect_reason,
        }),
        shadow,
    }
}

fn from_pb_fields(fields: Vec<pb::IndexingField>) -> Vec<IndexingField> {
    fields
        .into_iter()
        .map(|f| IndexingField {
            name: f.name,
            kind: f.r#type,
        })
        .collect()
}

fn to_pb_fields(fields: Vec<IndexingField>) -> Vec<pb::IndexingField> {
    fields
        .into_iter()
        .map(|f| pb::IndexingField {
            name: f.name,
            r#type: f.kind,
        })
        .collect()
}

fn group_document(doc: GroupDoc) -> pb::ThingGroupDocument {
    pb::ThingGroupDocument {
        thing_group_name: doc.name.to_string(),
        thing_group_id: doc.id,
        thing_group_description: doc.description,
        attributes: doc.attributes.into_iter().collect(),
        parent_group_names: doc.parents,
    }
}

fn billing_group(arns: &Arns<'_>, g: domain::BillingGroup) -> pb::BillingGroup {
    pb::BillingGroup {
        billing_group_arn: arns.billing_group(&g.name),
        billing_group_name: g.name,
        billing_group_id: g.id,
        version: g.version,
        billing_group_description: g.description,
        creation_date_ms: g.creation_date_ms,
    }
}

fn billing_membership(r: pb::BillingGroupMembershipRequest) -> (NameOrArn, NameOrArn) {
    (
        NameOrArn {
            name: r.billing_group_name,
            arn: r.billing_group_arn,
        },
        NameOrArn {
            name: r.thing_name,
            arn: r.thing_arn,
        },
    )
}

fn operation(op: Operation) -> pb::Operation {
    match op {
        Operation::Created => pb::Operation::Created,
        Operation::Updated => pb::Operation::Updated,
        Operation::Deleted => pb::Operation::Deleted,
        Operation::Added => pb::Operation::Added,
        Operation::Removed => pb::Operation::Removed,
    }
}

/// A logged event as the wire carries it.
pub(crate) fn change_event(arns: &Arns<'_>, account_id: &str, r: ChangeRecord) -> pb::ChangeEvent {
    use pb::change_event::Event;
    let event = match r.event.body {
        EventBody::Thing { thing: t } => Event::Thing(pb::ThingEvent {
            thing_id: t.id,
            thing_name: t.name,
            version_number: t.version,
            thing_type_name: t.type_name,
            attributes: t.attributes.into_iter().collect(),
        }),
        EventBody::ThingType { thing_type: t } => Event::ThingType(pb::ThingTypeEvent {
            thing_type_id: t.id,
            thing_type_name: t.name,
            is_deprecated: t.deprecated,
            deprecation_date_ms: t.deprecation_date_ms,
            searchable_attributes: t.properties.searchable_attributes,
            propagating_attributes: propagating(
                t.properties
                    .propagating_attributes
                    .as_deref()
                    .unwrap_or_default(),
            ),
            description: t.properties.description.unwrap_or_default(),
        }),
        EventBody::ThingTypeAssociation {
            thing_id,
            thing_name,
            thing_type_name,
        } => Event::ThingTypeAssociation(pb::ThingTypeAssociationEvent {
            thing_id,
            thing_name,
            thing_type_name,
        }),
        EventBody::ThingGroup { group: g } => Event::ThingGroup(pb::ThingGroupEvent {
            parent_group_name: g.parent().map(|p| p.name.clone()),
            parent_group_id: g.parent().map(|p| p.id.clone()),
            root_to_parent_thing_groups: g
                .ancestors
                .iter()
                .map(|a| pb::GroupIdAndArn {
                    group_arn: arns.group(&a.name),
                    group_id: a.id.clone(),
                })
                .collect(),
            thing_group_id: g.id,
            thing_group_name: g.name,
            version_number: g.version,
            description: g.description.unwrap_or_default(),
            attributes: g.attributes.into_iter().collect(),
            dynamic_group_mapping_id: None,
        }),
        EventBody::ThingGroupMembership {
            group_name,
            group_id,
            thing_name,
            thing_id,
            membership_id,
        } => Event::ThingGroupMembership(pb::ThingGroupMembershipEvent {
            group_arn: arns.group(&group_name),
            group_id,
            thing_arn: arns.thing(&thing_name),
            thing_id,
            membership_id,
            thing_group_name: group_name,
            thing_name,
        }),
        EventBody::ThingGroupHierarchy { parent, child } => {
            Event::ThingGroupHierarchy(pb::ThingGroupHierarchyEvent {
                thing_group_id: parent.id,
                thing_group_name: parent.name,
                child_group_id: child.id,
                child_group_name: child.name,
            })
        }
        EventBody::Job { kind, job, details } => jobs::job_event(arns, kind, *job, details),
        EventBody::JobExecution { kind, execution } => jobs::execution_event(arns, kind, execution),
        EventBody::JobsNotify {
            kind,
            thing_name,
            in_progress,
            queued,
            next_document,
        } => jobs::notify_event(arns, kind, thing_name, in_progress, queued, next_document),
    };
    pb::ChangeEvent {
        sequence: r.sequence,
        event_id: r.event_id,
        timestamp_ms: r.timestamp_ms,
        account_id: account_id.to_owned(),
        region: arns.region.to_owned(),
        operation: r
            .event
            .operation
            .map_or(pb::Operation::Unspecified, operation) as i32,
        event: Some(event),
    }
}

fn watch_status(err: WatchError) -> Status {
    match err {
        WatchError::Store(e) => Status::from(domain::store_error(e)),
        out_of_range => Status::out_of_range(out_of_range.message()),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchChangesResponse, Status>> + Send>>;

/// How often a WatchAllChanges stream looks for partitions opened since.
const NEW_PARTITIONS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Feeds `tx` with every partition's events (WatchAllChanges) until the
/// receiver goes away or `shutdown` fires; a partition's error ends the
/// stream with it.
async fn watch_all(
    partitions: Partitions,
    cursors: std::collections::HashMap<String, u64>,
    tx: mpsc::Sender<Result<pb::WatchChangesResponse, Status>>,
    shutdown: CancellationToken,
) {
    let mut watched = std::collections::HashSet::new();
    loop {
        for (partition, registry) in partitions.all_named() {
            if !watched.insert(partition.clone()) {
                continue;
            }
            let after = cursors.get(&partition.name()).copied().unwrap_or(0);
            tokio::spawn(follow_partition(
                registry,
                after,
                tx.clone(),
                shutdown.clone(),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(NEW_PARTITIONS_EVERY) => {}
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}

/// One partition's part of a WatchAllChanges stream.
async fn follow_partition(
    registry: Registry,
    after: u64,
    tx: mpsc::Sender<Result<pb::WatchChangesResponse, Status>>,
    shutdown: CancellationToken,
) {
    let log = registry.log().clone();
    let cursor = match log.start(after) {
        Ok(cursor) => cursor,
        Err(err) => {
            let _ = tx.send(Err(watch_status(err))).await;
            return;
        }
    };
    let (batches, mut rx) = mpsc::channel(4);
    tokio::spawn(log.follow(cursor, after == 0, batches, shutdown));
    while let Some(batch) = rx.recv().await {
        if tx.send(batch_response(&registry, batch)).await.is_err() {
            return;
        }
    }
}

/// A batch of a partition's log as WatchChanges and WatchAllChanges send it.
fn batch_response(
    registry: &Registry,
    batch: Result<Vec<ChangeRecord>, WatchError>,
) -> Result<pb::WatchChangesResponse, Status> {
    let arns = registry.arns();
    batch
        .map(|records| pb::WatchChangesResponse {
            events: records
                .into_iter()
                .map(|r| change_event(&arns, registry.account_id(), r))
                .collect(),
        })
        .map_err(watch_status)
}

#[tonic::async_trait]
impl registry_server::Registry for GrpcRegistry {
    async fn create_thing(
        &self,
        request: Request<pb::CreateThingRequest>,
    ) -> Reply<pb::CreateThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let attributes = r
            .attribute_payload
            .map(|p| p.attributes.into_iter().collect());
        let created = registry
            .create_thing(
                r.thing_name,
                r.thing_type_name,
                attributes,
                r.billing_group_name,
            )
            .await;
        reply(created.map(|t| pb::CreateThingResponse {
            thing_arn: registry.arns().thing(&t.name),
            thing_name: t.name,
            thing_id: t.id,
        }))
    }

    async fn describe_thing(&self, request: Request<pb::DescribeThingRequest>) -> Reply<pb::Thing> {
        let registry = self.partitions.of(&request)?;
        let arns = registry.arns();
        reply(
            registry
                .describe_thing(&request.into_inner().thing_name)
                .map(|t| thing(&arns, t)),
        )
    }

    async fn update_thing(
        &self,
        request: Request<pb::UpdateThingRequest>,
    ) -> Reply<pb::UpdateThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let updated = registry
            .update_thing(
                r.thing_name,
                r.thing_type_name,
                payload(r.attribute_payload),
                r.expected_version,
                r.remove_thing_type,
            )
            .await;
        reply(updated.map(|()| pb::UpdateThingResponse {}))
    }

    async fn delete_thing(
        &self,
        request: Request<pb::DeleteThingRequest>,
    ) -> Reply<pb::DeleteThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .delete_thing(r.thing_name, r.expected_version)
                .await
                .map(|()| pb::DeleteThingResponse {}),
        )
    }

    async fn list_things(
        &self,
        request: Request<pb::ListThingsRequest>,
    ) -> Reply<pb::ListThingsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let filter = ThingFilter {
            attribute_name: r.attribute_name,
            attribute_value: r.attribute_value,
            use_prefix: r.use_prefix_attribute_value,
            thing_type_name: r.thing_type_name,
        };
        let arns = registry.arns();
        reply(registry.list_things(page(r.page)?, filter).map(|p| {
            pb::ListThingsResponse {
                things: p
                    .items
                    .into_iter()
                    .map(|t| pb::ThingSummary {
                        thing_arn: arns.thing(&t.name),
                        thing_name: t.name,
                        thing_type_name: t.type_name,
                        attributes: t.attributes.into_iter().collect(),
                        version: t.version,
                    })
                    .collect(),
                next_token: token(p.next_token),
            }
        }))
    }

    async fn create_thing_type(
        &self,
        request: Request<pb::CreateThingTypeRequest>,
    ) -> Reply<pb::CreateThingTypeResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let created = registry
            .create_thing_type(
                r.thing_type_name,
                type_properties(r.thing_type_properties),
                tags(r.tags),
            )
            .await;
        reply(created.map(|t| pb::CreateThingTypeResponse {
            thing_type_arn: registry.arns().thing_type(&t.name),
            thing_type_name: t.name,
            thing_type_id: t.id,
        }))
    }

    async fn describe_thing_type(
        &self,
        request: Request<pb::DescribeThingTypeRequest>,
    ) -> Reply<pb::ThingType> {
        let registry = self.partitions.of(&request)?;
        let arns = registry.arns();
        reply(
            registry
                .describe_thing_type(&request.into_inner().thing_type_name)
                .map(|t| thing_type(&arns, t)),
        )
    }

    async fn update_thing_type(
        &self,
        request: Request<pb::UpdateThingTypeRequest>,
    ) -> Reply<pb::UpdateThingTypeResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let updated = registry
            .update_thing_type(r.thing_type_name, type_properties(r.thing_type_properties))
            .await;
        reply(updated.map(|()| pb::UpdateThingTypeResponse {}))
    }

    async fn deprecate_thing_type(
        &self,
        request: Request<pb::DeprecateThingTypeRequest>,
    ) -> Reply<pb::DeprecateThingTypeResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .deprecate_thing_type(r.thing_type_name, r.undo_deprecate)
            .await;
        reply(done.map(|()| pb::DeprecateThingTypeResponse {}))
    }

    async fn delete_thing_type(
        &self,
        request: Request<pb::DeleteThingTypeRequest>,
    ) -> Reply<pb::DeleteThingTypeResponse> {
        let registry = self.partitions.of(&request)?;
        let done = registry
            .delete_thing_type(request.into_inner().thing_type_name)
            .await;
        reply(done.map(|()| pb::DeleteThingTypeResponse {}))
    }

    async fn list_thing_types(
        &self,
        request: Request<pb::ListThingTypesRequest>,
    ) -> Reply<pb::ListThingTypesResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        reply(
            registry
                .list_thing_types(page(r.page)?, r.thing_type_name)
                .map(|p| pb::ListThingTypesResponse {
                    thing_types: p.items.into_iter().map(|t| thing_type(&arns, t)).collect(),
                    next_token: token(p.next_token),
                }),
        )
    }

    async fn create_thing_group(
        &self,
        request: Request<pb::CreateThingGroupRequest>,
    ) -> Reply<pb::CreateThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let props = r.thing_group_properties.unwrap_or_default();
        let attributes = props
            .attribute_payload
            .map(|p| p.attributes.into_iter().collect());
        let created = registry
            .create_thing_group(
                r.thing_group_name,
                r.parent_group_name,
                props.thing_group_description,
                attributes,
                tags(r.tags),
            )
            .await;
        reply(created.map(|g| pb::CreateThingGroupResponse {
            thing_group_arn: registry.arns().group(&g.name),
            thing_group_name: g.name,
            thing_group_id: g.id,
        }))
    }

    async fn describe_thing_group(
        &self,
        request: Request<pb::DescribeThingGroupRequest>,
    ) -> Reply<pb::ThingGroup> {
        let registry = self.partitions.of(&request)?;
        let arns = registry.arns();
        reply(
            registry
                .describe_thing_group(&request.into_inner().thing_group_name)
                .map(|g| group(&arns, g)),
        )
    }

    async fn update_thing_group(
        &self,
        request: Request<pb::UpdateThingGroupRequest>,
    ) -> Reply<pb::UpdateThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let Some(props) = r.thing_group_properties else {
            return Err(Status::from(domain::invalid(
                "thingGroupProperties is required",
            )));
        };
        let updated = registry
            .update_thing_group(
                r.thing_group_name,
                props.thing_group_description,
                payload(props.attribute_payload),
                r.expected_version,
            )
            .await;
        reply(updated.map(|version| pb::UpdateThingGroupResponse { version }))
    }

    async fn create_dynamic_thing_group(
        &self,
        request: Request<pb::CreateDynamicThingGroupRequest>,
    ) -> Reply<pb::ThingGroup> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        if let Some(version) = r.query_version.as_deref()
            && version != "2017-09-30"
        {
            return Err(Status::from(domain::invalid(format!(
                "queryVersion must be 2017-09-30, not {version:?}"
            ))));
        }
        let props = r.thing_group_properties.unwrap_or_default();
        let attributes = props
            .attribute_payload
            .map(|p| p.attributes.into_iter().collect());
        let created = registry
            .create_dynamic_thing_group(
                r.thing_group_name,
                props.thing_group_description,
                attributes,
                r.index_name,
                r.query_string,
                tags(r.tags),
            )
            .await;
        reply(created.map(|g| group(&registry.arns(), g)))
    }

    async fn update_dynamic_thing_group(
        &self,
        request: Request<pb::UpdateDynamicThingGroupRequest>,
    ) -> Reply<pb::UpdateThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        if let Some(index) = r.index_name.as_deref()
            && index != "AWS_Things"
        {
            return Err(Status::from(domain::invalid(format!(
                "A dynamic thing group's query runs on AWS_Things, not {index}"
            ))));
        }
        let props = r.thing_group_properties.unwrap_or_default();
        let update = DynamicUpdate {
            description: props.thing_group_description,
            attributes: payload(props.attribute_payload),
            expected_version: r.expected_version,
            query_string: r.query_string,
        };
        let updated = registry
            .update_dynamic_thing_group(r.thing_group_name, update)
            .await;
        reply(updated.map(|version| pb::UpdateThingGroupResponse { version }))
    }

    async fn delete_dynamic_thing_group(
        &self,
        request: Request<pb::DeleteThingGroupRequest>,
    ) -> Reply<pb::DeleteThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .delete_dynamic_thing_group(r.thing_group_name, r.expected_version)
            .await;
        reply(done.map(|()| pb::DeleteThingGroupResponse {}))
    }

    async fn delete_thing_group(
        &self,
        request: Request<pb::DeleteThingGroupRequest>,
    ) -> Reply<pb::DeleteThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .delete_thing_group(r.thing_group_name, r.expected_version)
            .await;
        reply(done.map(|()| pb::DeleteThingGroupResponse {}))
    }

    async fn list_thing_groups(
        &self,
        request: Request<pb::ListThingGroupsRequest>,
    ) -> Reply<pb::ListThingGroupsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_thing_groups(
            page(r.page)?,
            r.parent_group,
            r.name_prefix_filter,
            r.recursive,
        );
        reply(listed.map(|p| pb::ListThingGroupsResponse {
            thing_groups: group_names(&arns, p.items),
            next_token: token(p.next_token),
        }))
    }

    async fn update_indexing_configuration(
        &self,
        request: Request<pb::UpdateIndexingConfigurationRequest>,
    ) -> Reply<pb::UpdateIndexingConfigurationResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let thing = r.thing_indexing_mode.map(|mode| ThingIndexing {
            mode,
            connectivity: r
                .thing_connectivity_indexing_mode
                .unwrap_or_else(|| "OFF".into()),
            named_shadows: r.named_shadow_indexing_mode.unwrap_or_else(|| "OFF".into()),
            named_shadow_names: r.named_shadow_names,
            custom_fields: from_pb_fields(r.thing_custom_fields),
            geo_locations: r
                .geo_locations
                .into_iter()
                .map(|g| GeoLocation {
                    name: g.name,
                    order: g.order,
                })
                .collect(),
        });
        let group = r.thing_group_indexing_mode.map(|mode| GroupIndexing {
            mode,
            custom_fields: from_pb_fields(r.group_custom_fields),
        });
        let updated = registry.update_indexing_configuration(thing, group).await;
        reply(updated.map(|()| pb::UpdateIndexingConfigurationResponse {}))
    }

    async fn get_indexing_configuration(
        &self,
        request: Request<pb::GetIndexingConfigurationRequest>,
    ) -> Reply<pb::IndexingConfiguration> {
        let registry = self.partitions.of(&request)?;
        reply(registry.indexing_configuration().map(|c| {
            pb::IndexingConfiguration {
                thing_managed_fields: to_pb_fields(c.managed_fields(IndexKind::Things)),
                group_managed_fields: to_pb_fields(c.managed_fields(IndexKind::Groups)),
                thing_indexing_mode: c.thing_indexing_mode,
                thing_connectivity_indexing_mode: c.thing_connectivity_indexing_mode,
                thing_group_indexing_mode: c.thing_group_indexing_mode,
                named_shadow_indexing_mode: c.named_shadow_indexing_mode,
                named_shadow_names: c.named_shadow_names,
                thing_custom_fields: to_pb_fields(c.custom_fields),
                geo_locations: c
                    .geo_locations
                    .into_iter()
                    .map(|g| pb::GeoLocation {
                        name: g.name,
                        order: g.order,
                    })
                    .collect(),
                group_custom_fields: to_pb_fields(c.group_custom_fields),
            }
        }))
    }

    async fn describe_index(
        &self,
        request: Request<pb::DescribeIndexRequest>,
    ) -> Reply<pb::DescribeIndexResponse> {
        let registry = self.partitions.of(&request)?;
        let index_name = request.into_inner().index_name;
        let described = registry.describe_index(&index_name);
        reply(
            described.map(|(index_status, schema)| pb::DescribeIndexResponse {
                index_name,
                index_status,
                schema,
            }),
        )
    }

    async fn list_indices(
        &self,
        request: Request<pb::ListIndicesRequest>,
    ) -> Reply<pb::ListIndicesResponse> {
        let registry = self.partitions.of(&request)?;
        reply(
            registry
                .list_indices()
                .map(|index_names| pb::ListIndicesResponse { index_names }),
        )
    }

    async fn search_index(
        &self,
        request: Request<pb::SearchIndexRequest>,
    ) -> Reply<pb::SearchIndexResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let max = match r.max_results as usize {
            0 => MAX_SEARCH_RESULTS,
            n @ 1..=MAX_SEARCH_RESULTS => n,
            n => {
                return Err(Status::from(domain::invalid(format!(
                    "maxResults must be between 1 and {MAX_SEARCH_RESULTS}, not {n}"
                ))));
            }
        };
        let after = page(Some(pb::Page {
            next_token: r.next_token,
            max_results: 0,
        }))?;
        let (found, more) = registry
            .search_index(r.index_name.as_deref(), &r.query_string, after.after(), max)
            .await
            .map_err(Status::from)?;
        let (things, thing_groups) = match found {
            Found::Things(things) => (things.into_iter().map(thing_document).collect(), Vec::new()),
            Found::Groups(groups) => (Vec::new(), groups.into_iter().map(group_document).collect()),
        };
        let last = things
            .last()
            .map(|t: &pb::ThingDocument| t.thing_name.clone())
            .or_else(|| {
                thing_groups
                    .last()
                    .map(|g: &pb::ThingGroupDocument| g.thing_group_name.clone())
            });
        let next_token = match (more, last) {
            (true, Some(last)) => Page::token_after(&last),
            _ => String::new(),
        };
        Ok(Response::new(pb::SearchIndexResponse {
            things,
            thing_groups,
            next_token,
        }))
    }

    async fn get_statistics(
        &self,
        request: Request<pb::AggregationRequest>,
    ) -> Reply<pb::GetStatisticsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let stats = registry
            .statistics(
                r.index_name.as_deref(),
                &r.query_string,
                &r.aggregation_field,
            )
            .await;
        reply(stats.map(|s| {
            let n = s.numeric;
            pb::GetStatisticsResponse {
                count: s.count,
                average: n.as_ref().map(|n| n.average),
                sum: n.as_ref().map(|n| n.sum),
                minimum: n.as_ref().map(|n| n.minimum),
                maximum: n.as_ref().map(|n| n.maximum),
                sum_of_squares: n.as_ref().map(|n| n.sum_of_squares),
                variance: n.as_ref().map(|n| n.variance),
                std_deviation: n.as_ref().map(|n| n.std_deviation),
            }
        }))
    }

    async fn get_cardinality(
        &self,
        request: Request<pb::AggregationRequest>,
    ) -> Reply<pb::GetCardinalityResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let cardinality = registry
            .cardinality(
                r.index_name.as_deref(),
                &r.query_string,
                &r.aggregation_field,
            )
            .await;
        reply(cardinality.map(|cardinality| pb::GetCardinalityResponse { cardinality }))
    }

    async fn get_percentiles(
        &self,
        request: Request<pb::GetPercentilesRequest>,
    ) -> Reply<pb::GetPercentilesResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let a = r.aggregation.unwrap_or_default();
        let percentiles = registry
            .percentiles(
                a.index_name.as_deref(),
                &a.query_string,
                &a.aggregation_field,
                r.percents,
            )
            .await;
        reply(percentiles.map(|p| {
            pb::GetPercentilesResponse {
                percentiles: p
                    .into_iter()
                    .map(|(percent, value)| pb::PercentPair { percent, value })
                    .collect(),
            }
        }))
    }

    async fn get_buckets_aggregation(
        &self,
        request: Request<pb::GetBucketsAggregationRequest>,
    ) -> Reply<pb::GetBucketsAggregationResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let a = r.aggregation.unwrap_or_default();
        let max = (r.max_buckets != 0).then_some(r.max_buckets as usize);
        let buckets = registry
            .buckets(
                a.index_name.as_deref(),
                &a.query_string,
                &a.aggregation_field,
                max,
            )
            .await;
        reply(buckets.map(|(total_count, buckets)| {
            pb::GetBucketsAggregationResponse {
                total_count,
                buckets: buckets
                    .into_iter()
                    .map(|(key_value, count)| pb::Bucket { key_value, count })
                    .collect(),
            }
        }))
    }

    async fn report_connectivity(
        &self,
        request: Request<pb::ReportConnectivityRequest>,
    ) -> Reply<pb::ReportConnectivityResponse> {
        let registry = self.partitions.of(&request)?;
        let reports = request.into_inner().reports;
        if reports.len() > MAX_CONNECTIVITY_REPORTS {
            return Err(Status::from(domain::invalid(format!(
                "{} connectivity reports in one call; at most {MAX_CONNECTIVITY_REPORTS}",
                reports.len()
            ))));
        }
        for r in reports {
            registry.report_connectivity(
                &r.client_id,
                Connectivity {
                    connected: r.connected,
                    timestamp_ms: r.timestamp_ms,
                    disconnect_reason: r.disconnect_reason,
                },
            );
        }
        Ok(Response::new(pb::ReportConnectivityResponse {}))
    }

    async fn create_billing_group(
        &self,
        request: Request<pb::CreateBillingGroupRequest>,
    ) -> Reply<pb::BillingGroup> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let created = registry
            .create_billing_group(
                r.billing_group_name,
                r.billing_group_description,
                tags(r.tags),
            )
            .await;
        reply(created.map(|g| billing_group(&registry.arns(), g)))
    }

    async fn describe_billing_group(
        &self,
        request: Request<pb::DescribeBillingGroupRequest>,
    ) -> Reply<pb::BillingGroup> {
        let registry = self.partitions.of(&request)?;
        let described = registry.describe_billing_group(&request.into_inner().billing_group_name);
        reply(described.map(|g| billing_group(&registry.arns(), g)))
    }

    async fn update_billing_group(
        &self,
        request: Request<pb::UpdateBillingGroupRequest>,
    ) -> Reply<pb::UpdateBillingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let updated = registry
            .update_billing_group(
                r.billing_group_name,
                r.billing_group_description,
                r.expected_version,
            )
            .await;
        reply(updated.map(|version| pb::UpdateBillingGroupResponse { version }))
    }

    async fn delete_billing_group(
        &self,
        request: Request<pb::DeleteBillingGroupRequest>,
    ) -> Reply<pb::DeleteBillingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let deleted = registry
            .delete_billing_group(r.billing_group_name, r.expected_version)
            .await;
        reply(deleted.map(|()| pb::DeleteBillingGroupResponse {}))
    }

    async fn list_billing_groups(
        &self,
        request: Request<pb::ListBillingGroupsRequest>,
    ) -> Reply<pb::ListBillingGroupsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_billing_groups(page(r.page)?, r.name_prefix_filter);
        reply(listed.map(|p| {
            pb::ListBillingGroupsResponse {
                billing_groups: p
                    .items
                    .into_iter()
                    .map(|n| pb::GroupNameAndArn {
                        group_arn: arns.billing_group(&n),
                        group_name: n,
                    })
                    .collect(),
                next_token: token(p.next_token),
            }
        }))
    }

    async fn add_thing_to_billing_group(
        &self,
        request: Request<pb::BillingGroupMembershipRequest>,
    ) -> Reply<pb::BillingGroupMembershipResponse> {
        let registry = self.partitions.of(&request)?;
        let (group, thing) = billing_membership(request.into_inner());
        let added = registry.add_thing_to_billing_group(group, thing).await;
        reply(added.map(|()| pb::BillingGroupMembershipResponse {}))
    }

    async fn remove_thing_from_billing_group(
        &self,
        request: Request<pb::BillingGroupMembershipRequest>,
    ) -> Reply<pb::BillingGroupMembershipResponse> {
        let registry = self.partitions.of(&request)?;
        let (group, thing) = billing_membership(request.into_inner());
        let removed = registry.remove_thing_from_billing_group(group, thing).await;
        reply(removed.map(|()| pb::BillingGroupMembershipResponse {}))
    }

    async fn list_things_in_billing_group(
        &self,
        request: Request<pb::ListThingsInBillingGroupRequest>,
    ) -> Reply<pb::ListThingsInBillingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let listed = registry.list_things_in_billing_group(&r.billing_group_name, page(r.page)?);
        reply(listed.map(|p| pb::ListThingsInBillingGroupResponse {
            things: p.items,
            next_token: token(p.next_token),
        }))
    }

    async fn add_thing_to_thing_group(
        &self,
        request: Request<pb::AddThingToThingGroupRequest>,
    ) -> Reply<pb::AddThingToThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let group = NameOrArn {
            name: r.thing_group_name,
            arn: r.thing_group_arn,
        };
        let thing = NameOrArn {
            name: r.thing_name,
            arn: r.thing_arn,
        };
        reply(
            registry
                .add_thing_to_thing_group(group, thing, r.override_dynamic_groups)
                .await
                .map(|()| pb::AddThingToThingGroupResponse {}),
        )
    }

    async fn remove_thing_from_thing_group(
        &self,
        request: Request<pb::RemoveThingFromThingGroupRequest>,
    ) -> Reply<pb::RemoveThingFromThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let group = NameOrArn {
            name: r.thing_group_name,
            arn: r.thing_group_arn,
        };
        let thing = NameOrArn {
            name: r.thing_name,
            arn: r.thing_arn,
        };
        let done = registry.remove_thing_from_thing_group(group, thing).await;
        reply(done.map(|()| pb::RemoveThingFromThingGroupResponse {}))
    }

    async fn update_thing_groups_for_thing(
        &self,
        request: Request<pb::UpdateThingGroupsForThingRequest>,
    ) -> Reply<pb::UpdateThingGroupsForThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .update_thing_groups_for_thing(
                r.thing_name,
                r.thing_groups_to_add,
                r.thing_groups_to_remove,
            )
            .await;
        reply(done.map(|()| pb::UpdateThingGroupsForThingResponse {}))
    }

    async fn list_things_in_thing_group(
        &self,
        request: Request<pb::ListThingsInThingGroupRequest>,
    ) -> Reply<pb::ListThingsInThingGroupResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let listed =
            registry.list_things_in_thing_group(&r.thing_group_name, r.recursive, page(r.page)?);
        reply(listed.map(|p| pb::ListThingsInThingGroupResponse {
            things: p.items,
            next_token: token(p.next_token),
        }))
    }

    async fn list_thing_groups_for_thing(
        &self,
        request: Request<pb::ListThingGroupsForThingRequest>,
    ) -> Reply<pb::ListThingGroupsForThingResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let arns = registry.arns();
        let listed = registry.list_thing_groups_for_thing(&r.thing_name, page(r.page)?);
        reply(listed.map(|p| pb::ListThingGroupsForThingResponse {
            thing_groups: group_names(&arns, p.items),
            next_token: token(p.next_token),
        }))
    }

    async fn list_thing_policy_targets(
        &self,
        request: Request<pb::ListThingPolicyTargetsRequest>,
    ) -> Reply<pb::ListThingPolicyTargetsResponse> {
        let registry = self.partitions.of(&request)?;
        let thing_name = request.into_inner().thing_name;
        let arns = registry.arns();
        let groups = registry.thing_policy_groups(&thing_name);
        reply(groups.map(|groups| pb::ListThingPolicyTargetsResponse {
            thing_arn: arns.thing(&thing_name),
            thing_group_arns: groups.iter().map(|g| arns.group(g)).collect(),
        }))
    }

    async fn attach_thing_principal(
        &self,
        request: Request<pb::AttachThingPrincipalRequest>,
    ) -> Reply<pb::AttachThingPrincipalResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .attach_thing_principal(
                r.thing_name,
                r.principal,
                ThingPrincipalType::parse(&r.thing_principal_type).map_err(Status::from)?,
            )
            .await;
        reply(done.map(|()| pb::AttachThingPrincipalResponse {}))
    }

    async fn detach_thing_principal(
        &self,
        request: Request<pb::DetachThingPrincipalRequest>,
    ) -> Reply<pb::DetachThingPrincipalResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let done = registry
            .detach_thing_principal(r.thing_name, r.principal)
            .await;
        reply(done.map(|()| pb::DetachThingPrincipalResponse {}))
    }

    async fn list_thing_principals(
        &self,
        request: Request<pb::ListThingPrincipalsRequest>,
    ) -> Reply<pb::ListThingPrincipalsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let only = principal_type_filter(&r.thing_principal_type)?;
        let listed = registry.list_thing_principals(&r.thing_name, only, page(r.page)?);
        reply(listed.map(|p| pb::ListThingPrincipalsResponse {
            principals: p.items.iter().map(|(n, _)| n.clone()).collect(),
            attachments: attachments(p.items),
            next_token: token(p.next_token),
        }))
    }

    async fn list_principal_things(
        &self,
        request: Request<pb::ListPrincipalThingsRequest>,
    ) -> Reply<pb::ListPrincipalThingsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let only = principal_type_filter(&r.thing_principal_type)?;
        let listed = registry.list_principal_things(&r.principal, only, page(r.page)?);
        reply(listed.map(|p| pb::ListPrincipalThingsResponse {
            things: p.items.iter().map(|(n, _)| n.clone()).collect(),
            attachments: attachments(p.items),
            next_token: token(p.next_token),
        }))
    }

    async fn tag_resource(
        &self,
        request: Request<pb::TagResourceRequest>,
    ) -> Reply<pb::TagResourceResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let tagged = registry.tag_resource(r.resource_arn, tags(r.tags)).await;
        reply(tagged.map(|()| pb::TagResourceResponse {}))
    }

    async fn untag_resource(
        &self,
        request: Request<pb::UntagResourceRequest>,
    ) -> Reply<pb::UntagResourceResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let untagged = registry.untag_resource(r.resource_arn, r.tag_keys).await;
        reply(untagged.map(|()| pb::UntagResourceResponse {}))
    }

    async fn list_tags_for_resource(
        &self,
        request: Request<pb::ListTagsForResourceRequest>,
    ) -> Reply<pb::ListTagsForResourceResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let page = Page::new(&r.next_token, r.max_results)
            .map_err(|e| Status::from(domain::store_error(e)))?;
        let listed = registry.list_tags_for_resource(&r.resource_arn, page);
        reply(listed.map(|p| {
            pb::ListTagsForResourceResponse {
                tags: p
                    .items
                    .into_iter()
                    .map(|(key, value)| pb::Tag { key, value })
                    .collect(),
                next_token: token(p.next_token),
            }
        }))
    }

    type WatchChangesStream = WatchStream;

    async fn watch_changes(&self, request: Request<pb::WatchChangesRequest>) -> Reply<WatchStream> {
        let registry = self.partitions.of(&request)?;
        let after = request.into_inner().after_sequence;
        let log = registry.log().clone();
        let cursor = log.start(after).map_err(watch_status)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(log.follow(cursor, after == 0, tx, self.shutdown.clone()));
        let stream = ReceiverStream::new(rx).map(move |batch| batch_response(&registry, batch));
        Ok(Response::new(Box::pin(stream)))
    }

    type WatchAllChangesStream = WatchStream;

    async fn watch_all_changes(
        &self,
        request: Request<pb::WatchAllChangesRequest>,
    ) -> Reply<WatchStream> {
        let cursors = request.into_inner().after_sequences;
        for name in cursors.keys() {
            if Partition::parse(name).is_none() {
                return Err(Status::from(domain::invalid(format!(
                    "{name:?} is not <account>/<region>"
                ))));
            }
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(watch_all(
            self.partitions.clone(),
            cursors,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_change_log_info(
        &self,
        request: Request<pb::GetChangeLogInfoRequest>,
    ) -> Reply<pb::ChangeLogInfo> {
        let registry = self.partitions.of(&request)?;
        let log = registry.log();
        let first = log
            .first_sequence()
            .map_err(|e| Status::from(domain::store_error(e)))?;
        let last = log.last_sequence();
        Ok(Response::new(pb::ChangeLogInfo {
            first_sequence: first,
            last_sequence: last,
        }))
    }

    /// Wipes every partition (test mode).
    async fn reset(&self, _request: Request<pb::ResetRequest>) -> Reply<pb::ResetResponse> {
        if !self.test_mode {
            return Err(Status::failed_precondition(
                "Reset is served only with the test_mode setting",
            ));
        }
        for registry in self.partitions.all() {
            registry.reset().await.map_err(Status::from)?;
        }
        Ok(Response::new(pb::ResetResponse {}))
    }
}
