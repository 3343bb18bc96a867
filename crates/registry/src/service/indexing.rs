//! Fleet indexing's operations (AWS IoT API Reference:
//! UpdateIndexingConfiguration, GetIndexingConfiguration, DescribeIndex,
//! ListIndices, SearchIndex, GetStatistics, GetCardinality, GetPercentiles,
//! GetBucketsAggregation): the configuration is registry state, the
//! searches run on [`crate::index`].

use std::collections::BTreeMap;

use herald_proto::error::{AwsError, ErrorType};
use herald_store::key;
use serde::{Deserialize, Serialize};

use super::Registry;
use crate::domain::{invalid, shadow::valid_shadow_name};
use crate::index::{
    Connectivity, Found, GROUPS_INDEX, IndexKind, THINGS_INDEX, query, shadow::ShadowSelection,
};

const CONFIG_KEY: &[&str] = &["indexing"];

/// The most results one SearchIndex page holds, and the default.
pub(crate) const MAX_SEARCH_RESULTS: usize = 100;
/// The most buckets GetBucketsAggregation answers.
const MAX_BUCKETS: usize = 10_000;
/// The most named shadows an indexing configuration may select (AWS IoT
/// Device Management quotas: 10 by default).
pub(crate) const MAX_INDEXED_SHADOW_NAMES: usize = 10;
/// The most geolocation fields an indexing configuration may name (AWS IoT
/// API Reference: IndexingFilter, 1 by default).
const MAX_GEO_LOCATIONS: usize = 1;

fn off() -> String {
    "OFF".into()
}

/// What is indexed (AWS IoT API Reference: ThingIndexingConfiguration,
/// ThingGroupIndexingConfiguration). Everything is off until configured,
/// as on AWS IoT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexingConfiguration {
    /// OFF, REGISTRY or REGISTRY_AND_SHADOW.
    pub(crate) thing_indexing_mode: String,
    /// OFF or STATUS.
    pub(crate) thing_connectivity_indexing_mode: String,
    /// OFF or ON.
    pub(crate) thing_group_indexing_mode: String,
    /// OFF or ON: whether the named shadows in `named_shadow_names` are indexed.
    #[serde(default = "off")]
    pub(crate) named_shadow_indexing_mode: String,
    /// The configuration's `filter.namedShadowNames`.
    #[serde(default)]
    pub(crate) named_shadow_names: Vec<String>,
    /// The thing index's `customFields`, in the order given.
    #[serde(default)]
    pub(crate) custom_fields: Vec<IndexingField>,
    /// The thing configuration's `filter.geoLocations`.
    #[serde(default)]
    pub(crate) geo_locations: Vec<GeoLocation>,
    /// The thing group index's `customFields`, in the order given.
    #[serde(default)]
    pub(crate) group_custom_fields: Vec<IndexingField>,
}

/// A field of an index and its type (AWS IoT API Reference: Field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexingField {
    pub(crate) name: String,
    /// Number, String or Boolean.
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

impl IndexingField {
    fn new(name: &str, kind: &str) -> IndexingField {
        IndexingField {
            name: name.to_owned(),
            kind: kind.to_owned(),
        }
    }
}

/// A field holding geolocations (AWS IoT API Reference: GeoLocationTarget).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GeoLocation {
    pub(crate) name: String,
    /// LatLon or LonLat.
    pub(crate) order: String,
}

impl Default for IndexingConfiguration {
    fn default() -> Self {
        IndexingConfiguration {
            thing_indexing_mode: off(),
            thing_connectivity_indexing_mode: off(),
            thing_group_indexing_mode: off(),
            named_shadow_indexing_mode: off(),
            named_shadow_names: Vec::new(),
            custom_fields: Vec::new(),
            geo_locations: Vec::new(),
            group_custom_fields: Vec::new(),
        }
    }
}

/// What UpdateIndexingConfiguration's `thingIndexingConfiguration` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ThingIndexing {
    pub(crate) mode: String,
    pub(crate) connectivity: String,
    pub(crate) named_shadows: String,
    pub(crate) named_shadow_names: Vec<String>,
    pub(crate) custom_fields: Vec<IndexingField>,
    pub(crate) geo_locations: Vec<GeoLocation>,
}

/// What UpdateIndexingConfiguration's `thingGroupIndexingConfiguration` sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupIndexing {
    pub(crate) mode: String,
    pub(crate) custom_fields: Vec<IndexingField>,
}

impl IndexingConfiguration {
    fn check(&self) -> Result<(), AwsError> {
        let one_of = |what: &str, value: &str, allowed: &[&str]| {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "{what} must be one of {}, not {value:?}",
                    allowed.join(", ")
                )))
            }
        };
        one_of(
            "thingIndexingMode",
            &self.thing_indexing_mode,
            &["OFF", "REGISTRY", "REGISTRY_AND_SHADOW"],
        )?;
        one_of(
            "thingConnectivityIndexingMode",
            &self.thing_connectivity_indexing_mode,
            &["OFF", "STATUS"],
        )?;
        one_of(
            "thingGroupIndexingMode",
            &self.thing_group_indexing_mode,
            &["OFF", "ON"],
        )?;
        one_of(
            "namedShadowIndexingMode",
            &self.named_shadow_indexing_mode,
            &["OFF", "ON"],
        )?;
        if self.thing_indexing_mode == "OFF" && self.thing_connectivity_indexing_mode != "OFF" {
            return Err(invalid(
                "thingConnectivityIndexingMode can be STATUS only when thingIndexingMode is not OFF",
            ));
        }
        if self.named_shadow_indexing_mode == "ON" {
            if self.thing_indexing_mode != "REGISTRY_AND_SHADOW" {
                return Err(invalid(
                    "namedShadowIndexingMode can be ON only when thingIndexingMode is REGISTRY_AND_SHADOW",
                ));
            }
            if self.named_shadow_names.is_empty() {
                return Err(invalid(
                    "namedShadowIndexingMode ON needs the shadow names in filter.namedShadowNames",
                ));
            }
        }
        if self.named_shadow_names.len() > MAX_INDEXED_SHADOW_NAMES {
            return Err(invalid(format!(
                "filter.namedShadowNames can name at most {MAX_INDEXED_SHADOW_NAMES} shadows"
            )));
        }
        if let Some(bad) = self
            .named_shadow_names
            .iter()
            .find(|n| !valid_shadow_name(n))
        {
            return Err(invalid(format!("{bad:?} is not a valid shadow name")));
        }
        self.check_custom_fields("thingIndexingConfiguration", IndexKind::Things)?;
        self.check_custom_fields("thingGroupIndexingConfiguration", IndexKind::Groups)?;
        if self.geo_locations.len() > MAX_GEO_LOCATIONS {
            return Err(invalid(format!(
                "filter.geoLocations can name at most {MAX_GEO_LOCATIONS} field"
            )));
        }
        for geo in &self.geo_locations {
            if geo.name.is_empty() {
                return Err(invalid("a geoLocations entry needs a name"));
            }
            one_of("geoLocations order", &geo.order, &["LatLon", "LonLat"])?;
        }
        Ok(())
    }

    /// An index's custom fields: each with a name, a type AWS knows, once,
    /// and none a managed field.
    fn check_custom_fields(&self, what: &str, kind: IndexKind) -> Result<(), AwsError> {
        let fields = match kind {
            IndexKind::Things => &self.custom_fields,
            IndexKind::Groups => &self.group_custom_fields,
        };
        let managed = self.managed_fields(kind);
        let mut seen = std::collections::HashSet::new();
        for field in fields {
            if field.name.is_empty() {
                return Err(invalid(format!("{what}: a custom field needs a name")));
            }
            if !["Number", "String", "Boolean"].contains(&field.kind.as_str()) {
                return Err(invalid(format!(
                    "{what}: the type of custom field {:?} must be Number, String or Boolean, not {:?}",
                    field.name, field.kind
                )));
            }
            if managed.iter().any(|m| m.name == field.name) {
                return Err(invalid(format!(
                    "{what}: {:?} is a managed field, not a custom one",
                    field.name
                )));
            }
            if !seen.insert(field.name.as_str()) {
                return Err(invalid(format!(
                    "{what}: custom field {:?} is given twice",
                    field.name
                )));
            }
        }
        Ok(())
    }

    /// The fields an index holds and types itself under this configuration
    /// (AWS IoT Core Developer Guide: "Managing fleet indexing", managed
    /// fields); none while it is off.
    pub(crate) fn managed_fields(&self, kind: IndexKind) -> Vec<IndexingField> {
        let mut fields: Vec<(&str, &str)> = Vec::new();
        match kind {
            IndexKind::Things if self.thing_indexing_mode != "OFF" => {
                fields.extend([
                    ("thingId", "String"),
                    ("thingName", "String"),
                    ("registry.version", "Number"),
                    ("registry.thingTypeName", "String"),
                    ("registry.thingGroupNames", "String"),
                ]);
                if self.thing_indexing_mode == "REGISTRY_AND_SHADOW" {
                    fields.extend([("shadow.version", "Number"), ("shadow.hasDelta", "Boolean")]);
                    if self.named_shadow_indexing_mode == "ON" {
                        fields.extend([
                            ("shadow.name.*.version", "Number"),
                            ("shadow.name.*.hasDelta", "Boolean"),
                        ]);
                    }
                }
                if self.connectivity() {
                    fields.extend([
                        ("connectivity.timestamp", "Number"),
                        ("connectivity.version", "Number"),
                        ("connectivity.connected", "Boolean"),
                        ("connectivity.disconnectReason", "String"),
                    ]);
                }
            }
            IndexKind::Groups if self.thing_group_indexing_mode == "ON" => fields.extend([
                ("description", "String"),
                ("parentGroupNames", "String"),
                ("thingGroupId", "String"),
                ("thingGroupName", "String"),
                ("version", "Number"),
            ]),
            IndexKind::Things | IndexKind::Groups => {}
        }
        fields
            .into_iter()
            .map(|(name, kind)| IndexingField::new(name, kind))
            .collect()
    }

    /// The shadows a query and a thing document see.
    pub(crate) fn shadows(&self) -> ShadowSelection {
        let classic = self.thing_indexing_mode == "REGISTRY_AND_SHADOW";
        ShadowSelection {
            classic,
            named: if classic && self.named_shadow_indexing_mode == "ON" {
                self.named_shadow_names.clone()
            } else {
                Vec::new()
            },
        }
    }

    fn enabled(&self, kind: IndexKind) -> bool {
        match kind {
            IndexKind::Things => self.thing_indexing_mode != "OFF",
            IndexKind::Groups => self.thing_group_indexing_mode == "ON",
        }
    }

    fn connectivity(&self) -> bool {
        self.thing_connectivity_indexing_mode == "STATUS"
    }

    /// DescribeIndex's `schema`.
    fn schema(&self, kind: IndexKind) -> String {
        match kind {
            IndexKind::Groups => "THING_GROUPS".into(),
            IndexKind::Things if self.connectivity() => {
                format!("{}_AND_CONNECTIVITY_STATUS", self.thing_indexing_mode)
            }
            IndexKind::Things => self.thing_indexing_mode.clone(),
        }
    }
}

/// GetStatistics' answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Statistics {
    pub(crate) count: i64,
    /// The numeric statistics, when the field's values are numbers.
    pub(crate) numeric: Option<NumericStatistics>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NumericStatistics {
    pub(crate) average: f64,
    pub(crate) sum: f64,
    pub(crate) minimum: f64,
    pub(crate) maximum: f64,
    pub(crate) sum_of_squares: f64,
    pub(crate) variance: f64,
    pub(crate) std_deviation: f64,
}

fn invalid_query(err: query::QueryError) -> AwsError {
    AwsError::new(ErrorType::InvalidQuery, err.to_string())
}

fn invalid_aggregation(message: impl Into<String>) -> AwsError {
    AwsError::new(ErrorType::InvalidAggregation, message)
}

/// The fields an aggregation may name: the document's own, its attributes,
/// and the fields of the shadows indexed.
fn check_aggregation_field(
    kind: IndexKind,
    field: &str,
    shadows: &ShadowSelection,
) -> Result<(), AwsError> {
    let fixed: &[&str] = match kind {
        IndexKind::Things => &[
            "thingName",
            "thingId",
            "thingTypeName",
            "thingGroupNames",
            "connectivity.connected",
            "connectivity.timestamp",
            "connectivity.disconnectReason",
        ],
        IndexKind::Groups => &[
            "thingGroupName",
            "thingGroupId",
            "thingGroupDescription",
            "parentGroupNames",
        ],
    };
    let attribute = field
        .strip_prefix("attributes.")
        .is_some_and(|name| !name.is_empty());
    let shadow =
        kind == IndexKind::Things && field.starts_with("shadow.") && shadows.indexes_field(field);
    if attribute || shadow || fixed.contains(&field) {
        Ok(())
    } else {
        Err(invalid_aggregation(format!(
            "{field:?} is not a field of the index that can be aggregated"
        )))
    }
}

/// Parses a query, its terms on shadows that are not indexed matching
/// nothing.
fn parse_for(query_string: &str, shadows: &ShadowSelection) -> Result<query::Query, AwsError> {
    let query = query::parse(query_string).map_err(invalid_query)?;
    Ok(query.restricted(&|field| shadows.indexes_field(field)))
}

fn numbers(values: &[String]) -> Vec<f64> {
    values
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .collect()
}

impl Registry {
    pub(crate) fn indexing_configuration(&self) -> Result<IndexingConfiguration, AwsError> {
        Ok(self
            .reader()
            .get::<IndexingConfiguration>(&key(CONFIG_KEY))?
            .unwrap_or_default())
    }

    pub(crate) async fn update_indexing_configuration(
        &self,
        thing: Option<ThingIndexing>,
        group: Option<GroupIndexing>,
    ) -> Result<(), AwsError> {
        self.writer
            .mutate(move |c| {
                let mut config = c
                    .get::<IndexingConfiguration>(&key(CONFIG_KEY))?
                    .unwrap_or_default();
                if let Some(thing) = thing {
                    config.thing_indexing_mode = thing.mode;
                    config.thing_connectivity_indexing_mode = thing.connectivity;
                    config.named_shadow_indexing_mode = thing.named_shadows;
                    let mut names = thing.named_shadow_names;
                    names.sort();
                    names.dedup();
                    config.named_shadow_names = names;
                    config.custom_fields = thing.custom_fields;
                    config.geo_locations = thing.geo_locations;
                }
                if let Some(group) = group {
                    config.thing_group_indexing_mode = group.mode;
                    config.group_custom_fields = group.custom_fields;
                }
                config.check()?;
                c.put(key(CONFIG_KEY), &config)
            })
            .await?;
        // What a dynamic group's query sees may have changed.
        self.index.touch();
        Ok(())
    }

    /// The index a request names, which must be enabled.
    fn enabled_index(
        &self,
        name: Option<&str>,
    ) -> Result<(IndexKind, IndexingConfiguration), AwsError> {
        let kind = IndexKind::named(name)?;
        let config = self.indexing_configuration()?;
        if !config.enabled(kind) {
            return Err(AwsError::new(
                ErrorType::ResourceNotFound,
                format!(
                    "Index {} does not exist: enable it with UpdateIndexingConfiguration",
                    name.unwrap_or(THINGS_INDEX)
                ),
            ));
        }
        Ok((kind, config))
    }

    /// DescribeIndex: (status, schema).
    pub(crate) fn describe_index(&self, name: &str) -> Result<(String, String), AwsError> {
        let (kind, config) = self.enabled_index(Some(name))?;
        Ok(("ACTIVE".into(), config.schema(kind)))
    }

    pub(crate) fn list_indices(&self) -> Result<Vec<String>, AwsError> {
        let config = self.indexing_configuration()?;
        Ok([
            (IndexKind::Things, THINGS_INDEX),
            (IndexKind::Groups, GROUPS_INDEX),
        ]
        .into_iter()
        .filter(|(kind, _)| config.enabled(*kind))
        .map(|(_, name)| name.to_owned())
        .collect())
    }

    /// SearchIndex: one page of documents, in name order, and whether more
    /// follow. Connectivity is answered when it is indexed.
    pub(crate) async fn search_index(
        &self,
        index: Option<&str>,
        query_string: &str,
        after: Option<&str>,
        max: usize,
    ) -> Result<(Found, bool), AwsError> {
        let (kind, config) = self.enabled_index(index)?;
        let shadows = config.shadows();
        let query = parse_for(query_string, &shadows)?;
        let (mut found, more) = self
            .index
            .search(kind, &query, after, max, &shadows)
            .await?;
        if let Found::Things(things) = &mut found {
            for thing in things.iter_mut() {
                thing.connectivity = if !config.connectivity() {
                    None
                } else {
                    // A thing whose client never connected: not connected.
                    Some(thing.connectivity.take().unwrap_or(Connectivity {
                        connected: false,
                        timestamp_ms: 0,
                        disconnect_reason: None,
                    }))
                };
            }
        }
        Ok((found, more))
    }

    /// The things an index query matches (dynamic groups), seeing the
    /// shadows the configuration indexes.
    pub(super) async fn query_names(&self, query: &query::Query) -> Result<Vec<String>, AwsError> {
        let shadows = self.indexing_configuration()?.shadows();
        let query = query.restricted(&|field| shadows.indexes_field(field));
        let names = self.index.names(IndexKind::Things, &query).await?;
        Ok(names.into_iter().map(|n| n.to_string()).collect())
    }

    async fn aggregated(
        &self,
        index: Option<&str>,
        query_string: &str,
        field: &str,
    ) -> Result<Vec<String>, AwsError> {
        let (kind, config) = self.enabled_index(index)?;
        let shadows = config.shadows();
        let query = parse_for(query_string, &shadows)?;
        check_aggregation_field(kind, field, &shadows)?;
        self.index.field_values(kind, &query, field).await
    }

    pub(crate) async fn statistics(
        &self,
        index: Option<&str>,
        query_string: &str,
        field: &str,
    ) -> Result<Statistics, AwsError> {
        let values = self.aggregated(index, query_string, field).await?;
        let count = i64::try_from(values.len()).unwrap_or(i64::MAX);
        let numbers = numbers(&values);
        if numbers.is_empty() || numbers.len() != values.len() {
            return Ok(Statistics {
                count,
                numeric: None,
            });
        }
        let n = numbers.len() as f64;
        let sum: f64 = numbers.iter().sum();
        let sum_of_squares: f64 = numbers.iter().map(|x| x * x).sum();
        let average = sum / n;
        let variance = (sum_of_squares / n - average * average).max(0.0);
        Ok(Statistics {
            count,
            numeric: Some(NumericStatistics {
                average,
                sum,
                minimum: numbers.iter().copied().fold(f64::INFINITY, f64::min),
                maximum: numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                sum_of_squares,
                variance,
                std_deviation: variance.sqrt(),
            }),
        })
    }

    pub(crate) async fn cardinality(
        &self,
        index: Option<&str>,
        query_string: &str,
        field: &str,
    ) -> Result<i64, AwsError> {
        let mut values = self.aggregated(index, query_string, field).await?;
        values.sort();
        values.dedup();
        Ok(i64::try_from(values.len()).unwrap_or(i64::MAX))
    }

    /// GetPercentiles: each percent's value by linear interpolation between
    /// the closest ranks (AWS IoT estimates; exact here).
    pub(crate) async fn percentiles(
        &self,
        index: Option<&str>,
        query_string: &str,
        field: &str,
        percents: Vec<f64>,
    ) -> Result<Vec<(f64, f64)>, AwsError> {
        let values = self.aggregated(index, query_string, field).await?;
        let mut numbers = numbers(&values);
        if numbers.len() != values.len() {
            return Err(invalid_aggregation(format!(
                "{field} holds values that are not numbers; percentiles need numbers"
            )));
        }
        if let Some(bad) = percents.iter().find(|p| !(0.0..=100.0).contains(*p)) {
            return Err(invalid(format!(
                "A percent must be between 0 and 100, not {bad}"
            )));
        }
        let percents = if percents.is_empty() {
            vec![1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0]
        } else {
            percents
        };
        numbers.sort_by(f64::total_cmp);
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        let last = (numbers.len() - 1) as f64;
        Ok(percents
            .into_iter()
            .map(|p| {
                let rank = p / 100.0 * last;
                let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
                let value = numbers[lo] + (numbers[hi] - numbers[lo]) * (rank - lo as f64);
                (p, value)
            })
            .collect())
    }

    /// GetBucketsAggregation with a terms aggregation: the most frequent
    /// values, most frequent first (ties in value order), and how many
    /// documents matched.
    pub(crate) async fn buckets(
        &self,
        index: Option<&str>,
        query_string: &str,
        field: &str,
        max_buckets: Option<usize>,
    ) -> Result<(i64, Vec<(String, i64)>), AwsError> {
        let max = max_buckets.unwrap_or(10);
        if !(1..=MAX_BUCKETS).contains(&max) {
            return Err(invalid(format!(
                "maxBuckets must be between 1 and {MAX_BUCKETS}, not {max}"
            )));
        }
        let (kind, config) = self.enabled_index(index)?;
        let shadows = config.shadows();
        let query = parse_for(query_string, &shadows)?;
        check_aggregation_field(kind, field, &shadows)?;
        let total = self.index.names(kind, &query).await?.len();
        let values = self.index.field_values(kind, &query, field).await?;
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for value in values {
            *counts.entry(value).or_default() += 1;
        }
        let mut buckets: Vec<(String, i64)> = counts.into_iter().collect();
        buckets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        buckets.truncate(max);
        Ok((i64::try_from(total).unwrap_or(i64::MAX), buckets))
    }

    /// A client's connection state, reported by the gateway.
    pub(crate) fn report_connectivity(&self, client_id: &str, connectivity: Connectivity) {
        self.index.report_connectivity(client_id, connectivity);
    }
}
