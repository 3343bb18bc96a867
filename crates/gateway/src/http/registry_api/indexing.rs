//! Fleet indexing: UpdateIndexingConfiguration, GetIndexingConfiguration,
//! DescribeIndex, ListIndices, SearchIndex, GetStatistics, GetCardinality,
//! GetPercentiles and GetBucketsAggregation, where botocore's `iot` model puts
//! them. Connectivity timestamps are epoch milliseconds, as AWS answers them.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::{FromRequest, Request, State},
    response::IntoResponse,
    routing::{MethodRouter, get},
};
use herald_proto::registry::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::http::extract::{Body, Path, required};
use crate::http::output::{ApiResult, empty, next_page, ok};
use crate::http::{AppState, fallback};

pub(super) fn routes() -> Router<AppState> {
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .route(
            "/indexing/config",
            served(get(get_indexing_configuration).post(update_indexing_configuration)),
        )
        .route("/indices", served(get(list_indices)))
        .route(
            "/indices/{segment}",
            served(get(describe_index).post(indices_post)),
        )
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ThingIndexingConfiguration {
    thing_indexing_mode: Option<String>,
    thing_connectivity_indexing_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    named_shadow_indexing_mode: Option<String>,
    /// Answered only: what is given is ignored, as AWS does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    managed_fields: Vec<Field>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields: Vec<Field>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<IndexingFilter>,
}

/// A field of an index and its type (AWS IoT API Reference: Field).
#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct Field {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct IndexingFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    named_shadow_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    geo_locations: Vec<GeoLocationTarget>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
struct GeoLocationTarget {
    name: String,
    order: String,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ThingGroupIndexingConfiguration {
    thing_group_indexing_mode: Option<String>,
    /// Answered only, as for things.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    managed_fields: Vec<Field>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    custom_fields: Vec<Field>,
}

fn to_pb(fields: Vec<Field>) -> Vec<pb::IndexingField> {
    fields
        .into_iter()
        .map(|f| pb::IndexingField {
            name: f.name,
            r#type: f.kind,
        })
        .collect()
}

fn from_pb(fields: Vec<pb::IndexingField>) -> Vec<Field> {
    fields
        .into_iter()
        .map(|f| Field {
            name: f.name,
            kind: f.r#type,
        })
        .collect()
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct IndexingConfiguration {
    thing_indexing_configuration: Option<ThingIndexingConfiguration>,
    thing_group_indexing_configuration: Option<ThingGroupIndexingConfiguration>,
}

/// UpdateIndexingConfiguration: `POST /indexing/config`.
async fn update_indexing_configuration(
    State(state): State<AppState>,
    Body(body): Body<IndexingConfiguration>,
) -> ApiResult {
    let thing = body.thing_indexing_configuration;
    let thing_indexing_mode = match &thing {
        Some(t) => Some(required(
            t.thing_indexing_mode.clone(),
            "thingIndexingMode",
        )?),
        None => None,
    };
    let thing = thing.unwrap_or_default();
    let filter = thing.filter.unwrap_or_default();
    let (group_mode, group_custom_fields) = match body.thing_group_indexing_configuration {
        Some(g) => (
            Some(required(
                g.thing_group_indexing_mode,
                "thingGroupIndexingMode",
            )?),
            g.custom_fields,
        ),
        None => (None, Vec::new()),
    };
    state
        .registry
        .clone()
        .update_indexing_configuration(pb::UpdateIndexingConfigurationRequest {
            thing_indexing_mode,
            thing_connectivity_indexing_mode: thing.thing_connectivity_indexing_mode,
            thing_group_indexing_mode: group_mode,
            named_shadow_indexing_mode: thing.named_shadow_indexing_mode,
            named_shadow_names: filter.named_shadow_names,
            thing_custom_fields: to_pb(thing.custom_fields),
            geo_locations: filter
                .geo_locations
                .into_iter()
                .map(|g| pb::GeoLocation {
                    name: g.name,
                    order: g.order,
                })
                .collect(),
            group_custom_fields: to_pb(group_custom_fields),
        })
        .await?;
    empty()
}

/// GetIndexingConfiguration: `GET /indexing/config`.
async fn get_indexing_configuration(State(state): State<AppState>) -> ApiResult {
    let c = state
        .registry
        .clone()
        .get_indexing_configuration(pb::GetIndexingConfigurationRequest {})
        .await?
        .into_inner();
    ok(IndexingConfiguration {
        thing_indexing_configuration: Some(ThingIndexingConfiguration {
            thing_indexing_mode: Some(c.thing_indexing_mode),
            thing_connectivity_indexing_mode: Some(c.thing_connectivity_indexing_mode),
            named_shadow_indexing_mode: Some(c.named_shadow_indexing_mode),
            managed_fields: from_pb(c.thing_managed_fields),
            custom_fields: from_pb(c.thing_custom_fields),
            filter: (!c.named_shadow_names.is_empty() || !c.geo_locations.is_empty()).then(|| {
                IndexingFilter {
                    named_shadow_names: c.named_shadow_names,
                    geo_locations: c
                        .geo_locations
                        .into_iter()
                        .map(|g| GeoLocationTarget {
                            name: g.name,
                            order: g.order,
                        })
                        .collect(),
                }
            }),
        }),
        thing_group_indexing_configuration: Some(ThingGroupIndexingConfiguration {
            thing_group_indexing_mode: Some(c.thing_group_indexing_mode),
            managed_fields: from_pb(c.group_managed_fields),
            custom_fields: from_pb(c.group_custom_fields),
        }),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexNames {
    index_names: Vec<String>,
}

/// ListIndices: `GET /indices`.
async fn list_indices(State(state): State<AppState>) -> ApiResult {
    let listed = state
        .registry
        .clone()
        .list_indices(pb::ListIndicesRequest {})
        .await?
        .into_inner();
    ok(IndexNames {
        index_names: listed.index_names,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeIndexOutput {
    index_name: String,
    index_status: String,
    schema: String,
}

/// DescribeIndex: `GET /indices/{indexName}`.
async fn describe_index(
    State(state): State<AppState>,
    Path(index_name): Path<String>,
) -> ApiResult {
    let d = state
        .registry
        .clone()
        .describe_index(pb::DescribeIndexRequest { index_name })
        .await?
        .into_inner();
    ok(DescribeIndexOutput {
        index_name: d.index_name,
        index_status: d.index_status,
        schema: d.schema,
    })
}

/// `POST /indices/{segment}`: SearchIndex and the aggregations live at
/// fixed paths under `/indices/`, the only POSTs there.
async fn indices_post(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    request: Request,
) -> ApiResult {
    match segment.as_str() {
        "search" => search_index(state, request).await,
        "statistics" | "cardinality" | "percentiles" | "buckets" => {
            let Body(body) = Body::<Aggregation>::from_request(request, &state).await?;
            aggregate(state, &segment, body).await
        }
        _ => Ok(fallback::not_implemented(request).await.into_response()),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SearchIndex {
    index_name: Option<String>,
    query_string: Option<String>,
    next_token: Option<String>,
    max_results: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchIndexOutput {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    things: Vec<ThingDocument>,
    thing_groups: Vec<ThingGroupDocument>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingDocument {
    thing_name: String,
    thing_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_type_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    thing_group_names: Vec<String>,
    attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connectivity: Option<Connectivity>,
    /// The indexed shadows, as a JSON string.
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Connectivity {
    connected: bool,
    /// Left out for a thing whose client never connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disconnect_reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ThingGroupDocument {
    thing_group_name: String,
    thing_group_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_group_description: Option<String>,
    attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parent_group_names: Vec<String>,
}

/// SearchIndex: `POST /indices/search`.
async fn search_index(state: AppState, request: Request) -> ApiResult {
    let Body(body) = Body::<SearchIndex>::from_request(request, &state).await?;
    let found = state
        .registry
        .clone()
        .search_index(pb::SearchIndexRequest {
            index_name: body.index_name,
            query_string: required(body.query_string, "queryString")?,
            next_token: body.next_token.unwrap_or_default(),
            max_results: body.max_results.unwrap_or(0),
        })
        .await?
        .into_inner();
    ok(SearchIndexOutput {
        next_token: next_page(found.next_token),
        things: found
            .things
            .into_iter()
            .map(|t| ThingDocument {
                thing_name: t.thing_name,
                thing_id: t.thing_id,
                thing_type_name: t.thing_type_name,
                thing_group_names: t.thing_group_names,
                attributes: t.attributes.into_iter().collect(),
                connectivity: t.connectivity.map(|c| Connectivity {
                    connected: c.connected,
                    timestamp: (c.timestamp_ms != 0).then_some(c.timestamp_ms),
                    disconnect_reason: c.disconnect_reason,
                }),
                shadow: t.shadow,
            })
            .collect(),
        thing_groups: found
            .thing_groups
            .into_iter()
            .map(|g| ThingGroupDocument {
                thing_group_name: g.thing_group_name,
                thing_group_id: g.thing_group_id,
                thing_group_description: g.thing_group_description,
                attributes: g.attributes.into_iter().collect(),
                parent_group_names: g.parent_group_names,
            })
            .collect(),
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TermsAggregation {
    max_buckets: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct BucketsAggregationType {
    terms_aggregation: Option<TermsAggregation>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Aggregation {
    index_name: Option<String>,
    query_string: Option<String>,
    aggregation_field: Option<String>,
    percents: Vec<f64>,
    buckets_aggregation_type: Option<BucketsAggregationType>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatisticsOutput {
    count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    average: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    minimum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum_of_squares: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variance: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    std_deviation: Option<f64>,
}

#[derive(Serialize)]
struct Statistics {
    statistics: StatisticsOutput,
}

#[derive(Serialize)]
struct Cardinality {
    cardinality: i64,
}

#[derive(Serialize)]
struct Percentiles {
    percentiles: Vec<PercentPair>,
}

#[derive(Serialize)]
struct PercentPair {
    percent: f64,
    value: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Buckets {
    total_count: i64,
    buckets: Vec<Bucket>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bucket {
    key_value: String,
    count: i64,
}

/// GetStatistics, GetCardinality, GetPercentiles and GetBucketsAggregation:
/// `POST /indices/statistics`, `/cardinality`, `/percentiles`, `/buckets`.
async fn aggregate(state: AppState, which: &str, body: Aggregation) -> ApiResult {
    let mut registry = state.registry.clone();
    let aggregation = pb::AggregationRequest {
        index_name: body.index_name,
        query_string: required(body.query_string, "queryString")?,
        aggregation_field: body.aggregation_field.unwrap_or_default(),
    };
    match which {
        "statistics" => {
            let s = registry.get_statistics(aggregation).await?.into_inner();
            ok(Statistics {
                statistics: StatisticsOutput {
                    count: s.count,
                    average: s.average,
                    sum: s.sum,
                    minimum: s.minimum,
                    maximum: s.maximum,
                    sum_of_squares: s.sum_of_squares,
                    variance: s.variance,
                    std_deviation: s.std_deviation,
                },
            })
        }
        "cardinality" => {
            let c = registry.get_cardinality(aggregation).await?.into_inner();
            ok(Cardinality {
                cardinality: c.cardinality,
            })
        }
        "percentiles" => {
            let p = registry
                .get_percentiles(pb::GetPercentilesRequest {
                    aggregation: Some(aggregation),
                    percents: body.percents,
                })
                .await?
                .into_inner();
            ok(Percentiles {
                percentiles: p
                    .percentiles
                    .into_iter()
                    .map(|p| PercentPair {
                        percent: p.percent,
                        value: p.value,
                    })
                    .collect(),
            })
        }
        _ => {
            let kind = required(body.buckets_aggregation_type, "bucketsAggregationType")?;
            let terms = required(kind.terms_aggregation, "termsAggregation")?;
            let b = registry
                .get_buckets_aggregation(pb::GetBucketsAggregationRequest {
                    aggregation: Some(aggregation),
                    max_buckets: terms.max_buckets.unwrap_or(0),
                })
                .await?
                .into_inner();
            ok(Buckets {
                total_count: b.total_count,
                buckets: b
                    .buckets
                    .into_iter()
                    .map(|b| Bucket {
                        key_value: b.key_value,
                        count: b.count,
                    })
                    .collect(),
            })
        }
    }
}
