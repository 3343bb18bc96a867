//! The `iot-data` API over HTTP (botocore's `iot-data` model, 2015-05-28,
//! SigV4 service `iotdata`): GetThingShadow, UpdateThingShadow,
//! DeleteThingShadow, ListNamedShadowsForThing, Publish,
//! ListRetainedMessages and GetRetainedMessage, so that `aws iot-data` and
//! boto3's `iot-data` client work with `--endpoint-url`. A request signed
//! for `iotdata` is routed here.
//!
//! Shadows are the registry's (the same documents the MQTT topics serve),
//! and an update or delete made here is published on the shadow's MQTT
//! topics too, as AWS does. Publish and the retained messages go through
//! the MQTT side of the request's partition; a Publish's MQTT 5 properties
//! go to the MQTT 5 subscribers (see [`publish_properties`]).

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use herald_proto::registry::v1::{self as pb, shadows_client::ShadowsClient};
use rumqttd::protocol::PublishProperties;
use serde::Serialize;

use super::extract::{Path, Query};
use super::output::{ApiResult, ok};
use super::{ApiError, AppState, ErrorKind, fallback};
use crate::bus::topic;

pub(crate) fn routes() -> Router<AppState> {
    fn served(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.fallback(fallback::not_implemented)
    }
    Router::new()
        .route(
            "/things/{thingName}/shadow",
            served(
                get(get_thing_shadow)
                    .post(update_thing_shadow)
                    .delete(delete_thing_shadow),
            ),
        )
        .route(
            "/api/things/shadow/ListNamedShadowsForThing/{thingName}",
            served(get(list_named_shadows_for_thing)),
        )
        .route("/topics/{*topic}", served(post(publish)))
        .route("/retainedMessage", served(get(list_retained_messages)))
        .route(
            "/retainedMessage/{*topic}",
            served(get(get_retained_message)),
        )
}

/// A shadow refusal as the `iot-data` API answers it: the error type its
/// code stands for, and the message the MQTT `/rejected` payload has.
fn refusal(code: u32, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    let (status, error_type) = match code {
        400 => (400, "InvalidRequestException"),
        401 => (401, "UnauthorizedException"),
        403 => (403, "ForbiddenException"),
        404 => (404, "ResourceNotFoundException"),
        409 => (409, "ConflictException"),
        413 => (413, "RequestEntityTooLargeException"),
        415 => (415, "UnsupportedDocumentEncodingException"),
        429 => (429, "ThrottlingException"),
        _ => (500, "InternalFailureException"),
    };
    ApiError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        code: error_type,
        message,
        resource_id: None,
        resource_arn: None,
    }
}

/// The JSON document a shadow operation answers with.
fn document(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn shadows(state: &AppState) -> ShadowsClient<crate::partition::Tagged> {
    state.shadows.clone()
}

fn shadow_name(query: &Query) -> String {
    query.string("name").unwrap_or_default()
}

/// The shadow's topic prefix, as the MQTT side publishes on.
fn shadow_base(thing: &str, name: &str) -> String {
    if name.is_empty() {
        format!("$aws/things/{thing}/shadow")
    } else {
        format!("$aws/things/{thing}/shadow/name/{name}")
    }
}

async fn publish_answers(state: &AppState, base: &str, op: &str, reply: &pb::ShadowReply) {
    let Some(broker) = state.broker.get() else {
        return;
    };
    let partition = crate::partition::current();
    let mut messages = Vec::new();
    if !reply.delta.is_empty() {
        messages.push((format!("{base}/update/delta"), reply.delta.clone()));
    }
    if !reply.documents.is_empty() {
        messages.push((format!("{base}/update/documents"), reply.documents.clone()));
    }
    messages.push((format!("{base}/{op}/accepted"), reply.body.clone()));
    for (topic, payload) in messages {
        // On the bus, which delivers at each subscription's QoS.
        if let Err(e) = broker
            .publish(partition.clone(), topic, payload.into(), 1, false, None)
            .await
        {
            tracing::warn!(error = e, "publishing a shadow answer failed");
        }
    }
}

async fn get_thing_shadow(
    State(state): State<AppState>,
    Path(thing): Path<String>,
    query: Query,
) -> ApiResult {
    let reply = shadows(&state)
        .get_shadow(pb::ShadowRequest {
            thing_name: thing,
            shadow_name: shadow_name(&query),
            payload: Vec::new(),
        })
        .await?
        .into_inner();
    if reply.code != 0 {
        return Err(refusal(reply.code, &reply.body));
    }
    Ok(document(reply.body))
}

async fn update_thing_shadow(
    State(state): State<AppState>,
    Path(thing): Path<String>,
    query: Query,
    body: Bytes,
) -> ApiResult {
    let name = shadow_name(&query);
    let reply = shadows(&state)
        .update_shadow(pb::ShadowRequest {
            thing_name: thing.clone(),
            shadow_name: name.clone(),
            payload: body.to_vec(),
        })
        .await?
        .into_inner();
    if reply.code != 0 {
        return Err(refusal(reply.code, &reply.body));
    }
    publish_answers(&state, &shadow_base(&thing, &name), "update", &reply).await;
    Ok(document(reply.body))
}

async fn delete_thing_shadow(
    State(state): State<AppState>,
    Path(thing): Path<String>,
    query: Query,
) -> ApiResult {
    let name = shadow_name(&query);
    let reply = shadows(&state)
        .delete_shadow(pb::ShadowRequest {
            thing_name: thing.clone(),
            shadow_name: name.clone(),
            payload: Vec::new(),
        })
        .await?
        .into_inner();
    if reply.code != 0 {
        return Err(refusal(reply.code, &reply.body));
    }
    publish_answers(&state, &shadow_base(&thing, &name), "delete", &reply).await;
    Ok(document(reply.body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NamedShadows {
    results: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
    timestamp: i64,
}

async fn list_named_shadows_for_thing(
    State(state): State<AppState>,
    Path(thing): Path<String>,
    query: Query,
) -> ApiResult {
    let page_size = match query.string("pageSize") {
        None => 0,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("pageSize must be between 1 and 100"))?,
    };
    let listed = shadows(&state)
        .list_named_shadows(pb::ListNamedShadowsRequest {
            thing_name: thing,
            next_token: query.string("nextToken").unwrap_or_default(),
            page_size,
        })
        .await?
        .into_inner();
    ok(NamedShadows {
        results: listed.results,
        next_token: (!listed.next_token.is_empty()).then_some(listed.next_token),
        timestamp: listed.timestamp,
    })
}

fn broker(state: &AppState) -> Result<&dyn crate::partition::Broker, ApiError> {
    state.broker.get().map(AsRef::as_ref).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Aws(herald_proto::error::ErrorType::ServiceUnavailable),
            "The MQTT side is not running",
        )
    })
}

async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    query: Query,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let retain = match query.string("retain").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::invalid(format!("Invalid retain: {other}"))),
    };
    // The rules an MQTT PUBLISH follows: a valid topic name, never
    // `$aws/events`, of the other `$aws` topics only `$aws/things/...`, and
    // nothing retained there.
    let reserved = topic::is_reserved(&topic);
    if topic::validate_topic_name(&topic).is_err()
        || topic::is_aws_events(&topic)
        || (reserved && !topic::is_aws_things(&topic))
        || (reserved && retain)
    {
        return Err(ApiError::invalid(format!("Invalid topic: {topic}")));
    }
    let qos = match query.string("qos").as_deref() {
        None | Some("0") => 0,
        Some("1") => 1,
        Some(other) => return Err(ApiError::invalid(format!("Invalid qos: {other}"))),
    };
    let properties = publish_properties(&query, &headers, &body)?;
    broker(&state)?
        .publish(
            crate::partition::current(),
            topic,
            body,
            qos,
            retain,
            properties,
        )
        .await
        .map_err(ApiError::invalid)?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RetainedSummary {
    topic: String,
    payload_size: usize,
    qos: u8,
    last_modified_time: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RetainedList {
    retained_topics: Vec<RetainedSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

async fn list_retained_messages(State(state): State<AppState>, query: Query) -> ApiResult {
    let max = match query.string("maxResults") {
        None => 200,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| ApiError::invalid("maxResults must be between 1 and 200"))?,
    };
    let after = query.string("nextToken");
    let retained = broker(&state)?
        .retained(crate::partition::current())
        .await
        .map_err(ApiError::invalid)?;
    let mut topics: Vec<RetainedSummary> = retained
        .into_iter()
        .filter(|m| after.as_ref().is_none_or(|a| &m.topic > a))
        .take(max + 1)
        .map(|m| RetainedSummary {
            payload_size: m.payload.len(),
            topic: m.topic,
            qos: m.qos,
            last_modified_time: m.modified_ms,
        })
        .collect();
    let next_token = (topics.len() > max).then(|| {
        topics.truncate(max);
        topics.last().map(|t| t.topic.clone()).unwrap_or_default()
    });
    ok(RetainedList {
        retained_topics: topics,
        next_token,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RetainedMessage {
    topic: String,
    /// Base64, as the model's blob members are.
    payload: String,
    qos: u8,
    last_modified_time: i64,
    /// Base64 of a JSON array of one-member objects, one per user property,
    /// as Publish takes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_properties: Option<String>,
}

async fn get_retained_message(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> ApiResult {
    let retained = broker(&state)?
        .retained(crate::partition::current())
        .await
        .map_err(ApiError::invalid)?;
    let Some(found) = retained.into_iter().find(|m| m.topic == topic) else {
        return Err(ApiError::new(
            ErrorKind::Aws(herald_proto::error::ErrorType::ResourceNotFound),
            format!("No retained message for topic {topic}"),
        ));
    };
    let user_properties = (!found.user_properties.is_empty()).then(|| {
        let list: Vec<serde_json::Value> = found
            .user_properties
            .iter()
            .map(|(key, value)| serde_json::json!({ key: value }))
            .collect();
        base64(serde_json::Value::Array(list).to_string().as_bytes())
    });
    ok(RetainedMessage {
        topic,
        payload: base64(&found.payload),
        qos: found.qos,
        last_modified_time: found.modified_ms,
        user_properties,
    })
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// The MQTT 5 properties a Publish gives its MQTT 5 subscribers (AWS IoT
/// API Reference: Publish): `userProperties` (a header holding the base64
/// of a JSON array of objects of strings), `payloadFormatIndicator`
/// (UNSPECIFIED_BYTES, or UTF8_DATA for a UTF-8 `payload`),
/// `contentType`, `responseTopic` (a topic name), `correlationData` (a
/// header holding base64) and `messageExpiry` (seconds). `None` when none
/// is given.
fn publish_properties(
    query: &Query,
    headers: &HeaderMap,
    payload: &[u8],
) -> Result<Option<PublishProperties>, ApiError> {
    let header = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map_err(|_| ApiError::invalid(format!("Invalid {name} header")))
            })
            .transpose()
    };
    let mut properties = PublishProperties::default();
    if let Some(encoded) = header("x-amz-mqtt5-user-properties")? {
        let invalid =
            || ApiError::invalid("Invalid userProperties: a JSON array of objects of strings");
        let json = unbase64(encoded).ok_or_else(invalid)?;
        let list: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&json).map_err(|_| invalid())?;
        for object in list {
            for (key, value) in object {
                let serde_json::Value::String(value) = value else {
                    return Err(invalid());
                };
                properties.user_properties.push((key, value));
            }
        }
    }
    if let Some(indicator) = header("x-amz-mqtt5-payload-format-indicator")? {
        properties.payload_format_indicator = Some(match indicator {
            "UNSPECIFIED_BYTES" => 0,
            "UTF8_DATA" if std::str::from_utf8(payload).is_ok() => 1,
            "UTF8_DATA" => {
                return Err(ApiError::invalid(
                    "The payload is not UTF-8, as payloadFormatIndicator UTF8_DATA says",
                ));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "Invalid payloadFormatIndicator: {other}"
                )));
            }
        });
    }
    properties.content_type = query.string("contentType");
    if let Some(topic) = query.string("responseTopic") {
        if topic::validate_topic_name(&topic).is_err() {
            return Err(ApiError::invalid(format!("Invalid responseTopic: {topic}")));
        }
        properties.response_topic = Some(topic);
    }
    if let Some(encoded) = header("x-amz-mqtt5-correlation-data")? {
        let data = unbase64(encoded)
            .ok_or_else(|| ApiError::invalid("Invalid correlationData: not base64"))?;
        properties.correlation_data = Some(data.into());
    }
    if let Some(raw) = query.string("messageExpiry") {
        let secs = raw
            .parse::<u32>()
            .map_err(|_| ApiError::invalid(format!("Invalid messageExpiry: {raw}")))?;
        properties.message_expiry_interval = Some(secs);
    }
    // Written to MQTT 5 clients: each string and the correlation data
    // within MQTT's two-byte length, every string one MQTT allows.
    let strings = properties
        .user_properties
        .iter()
        .flat_map(|(key, value)| [key, value])
        .chain(&properties.content_type)
        .chain(&properties.response_topic);
    for text in strings {
        if text.len() > usize::from(u16::MAX) || topic::validate_mqtt_string(text).is_err() {
            return Err(ApiError::invalid(
                "An MQTT 5 property holds more than 65,535 bytes or a character MQTT forbids",
            ));
        }
    }
    if properties
        .correlation_data
        .as_ref()
        .is_some_and(|data| data.len() > usize::from(u16::MAX))
    {
        return Err(ApiError::invalid(
            "correlationData holds more than 65,535 bytes",
        ));
    }
    Ok((properties != PublishProperties::default()).then_some(properties))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn publish_properties_read_as_aws_sends_them() {
        let user = base64(br#"[{"trace":"t-1"},{"zone":"hall","trace":"t-2"}]"#);
        let got = publish_properties(
            &Query::of(&[
                ("contentType", "application/json"),
                ("responseTopic", "replies/1"),
                ("messageExpiry", "60"),
            ]),
            &headers(&[
                ("x-amz-mqtt5-user-properties", &user),
                ("x-amz-mqtt5-payload-format-indicator", "UTF8_DATA"),
                ("x-amz-mqtt5-correlation-data", &base64(&[0, 1, 0xfe])),
            ]),
            b"{}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got.user_properties,
            [
                ("trace".to_owned(), "t-1".to_owned()),
                ("trace".to_owned(), "t-2".to_owned()),
                ("zone".to_owned(), "hall".to_owned()),
            ]
        );
        assert_eq!(got.payload_format_indicator, Some(1));
        assert_eq!(got.correlation_data.as_deref(), Some(&[0, 1, 0xfe][..]));
        assert_eq!(got.message_expiry_interval, Some(60));
        assert_eq!(
            publish_properties(&Query::of(&[]), &HeaderMap::new(), b"").unwrap(),
            None
        );
        for (query, header) in [
            (vec![("messageExpiry", "-1")], vec![]),
            (vec![("responseTopic", "a/#")], vec![]),
            (
                vec![],
                vec![("x-amz-mqtt5-user-properties", base64(br#"[{"n":1}]"#))],
            ),
            (vec![], vec![("x-amz-mqtt5-user-properties", base64(b"{}"))]),
            (
                vec![],
                vec![("x-amz-mqtt5-user-properties", "@@".to_owned())],
            ),
            (
                vec![],
                vec![("x-amz-mqtt5-correlation-data", "@@".to_owned())],
            ),
        ] {
            let header: Vec<(&'static str, &str)> =
                header.iter().map(|(n, v)| (*n, v.as_str())).collect();
            assert!(publish_properties(&Query::of(&query), &headers(&header), b"").is_err());
        }
    }

    proptest! {
        /// Whatever a caller sends, the properties are read or refused,
        /// never a panic.
        #[test]
        fn any_publish_properties_are_read_or_refused(
            user in proptest::collection::vec(any::<u8>(), 0..64),
            correlation in "\\PC{0,24}",
            indicator in "\\PC{0,12}",
            expiry in "\\PC{0,12}",
            topic in "\\PC{0,12}",
            payload in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in [
                ("x-amz-mqtt5-user-properties", base64(&user)),
                ("x-amz-mqtt5-correlation-data", correlation),
                ("x-amz-mqtt5-payload-format-indicator", indicator),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    map.insert(name, value);
                }
            }
            let query = Query::of(&[("messageExpiry", &expiry), ("responseTopic", &topic)]);
            let _ = publish_properties(&query, &map, &payload);
        }
    }

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }
}
