//! The Device Shadow service over MQTT (AWS IoT Core Developer Guide:
//! "Device Shadow MQTT topics"): a PUBLISH on
//! `$aws/things/{thing}/shadow[/name/{shadow}]/{get,update,delete}` is a
//! request to the registry's `Shadows` service, which builds AWS's answers;
//! they are published on the bus, like any `$aws` message, to every client
//! subscribed to them that may receive them: `.../{op}/accepted` or
//! `/rejected`, and for an update `update/delta` (when desired and
//! reported differ) and `update/documents`, in AWS's order (delta,
//! documents, accepted).

use herald_proto::registry::v1::{self as pb, shadows_client::ShadowsClient};
use serde_json::json;

use crate::{bus::Bus, partition::Tagged};

/// A shadow operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    Get,
    Update,
    Delete,
}

/// A shadow request, parsed from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request<'a> {
    pub(super) thing: &'a str,
    /// Empty: the classic shadow.
    pub(super) shadow: &'a str,
    pub(super) operation: Operation,
    /// `$aws/things/{thing}/shadow` or `.../shadow/name/{shadow}`.
    pub(super) base: &'a str,
}

/// The request a topic names, if it names one (responses do not).
pub(super) fn parse(topic: &str) -> Option<Request<'_>> {
    let (thing, rest) = crate::bus::topic::thing_service(topic, "shadow")?;
    let (shadow, op) = match rest.strip_prefix("name/") {
        Some(named) => {
            let (shadow, op) = named.split_once('/')?;
            if shadow.is_empty() {
                return None;
            }
            (shadow, op)
        }
        None => ("", rest),
    };
    let operation = match op {
        "get" => Operation::Get,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        _ => return None,
    };
    let base = &topic[..topic.len() - op.len() - 1];
    Some(Request {
        thing,
        shadow,
        operation,
        base,
    })
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }
}

/// Asks the registry and publishes its answers on `bus`.
pub(super) async fn answer(
    mut client: ShadowsClient<Tagged>,
    bus: &Bus,
    request: Request<'_>,
    payload: &[u8],
    now_secs: i64,
) {
    let call = pb::ShadowRequest {
        thing_name: request.thing.to_owned(),
        shadow_name: request.shadow.to_owned(),
        payload: payload.to_vec(),
    };
    let answered = match request.operation {
        Operation::Get => client.get_shadow(call).await,
        Operation::Update => client.update_shadow(call).await,
        Operation::Delete => client.delete_shadow(call).await,
    };
    let op = request.operation.name();
    let base = request.base;
    match answered {
        Ok(reply) => {
            let reply = reply.into_inner();
            if !reply.delta.is_empty() {
                bus.publish(&format!("{base}/update/delta"), reply.delta);
            }
            if !reply.documents.is_empty() {
                bus.publish(&format!("{base}/update/documents"), reply.documents);
            }
            let outcome = if reply.code == 0 {
                "accepted"
            } else {
                "rejected"
            };
            bus.publish(&format!("{base}/{op}/{outcome}"), reply.body);
        }
        Err(status) => {
            tracing::warn!(error = %status, "the shadow service did not answer");
            let mut body = json!({
                "code": 500,
                "message": "Internal service failure",
                "timestamp": now_secs,
            });
            if let Some(token) = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v.get("clientToken").cloned())
            {
                body["clientToken"] = token;
            }
            bus.publish(
                &format!("{base}/{op}/rejected"),
                body.to_string().into_bytes(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_told_from_answers_and_other_topics() {
        let classic = parse("$aws/things/lamp/shadow/update").unwrap();
        assert_eq!(
            classic,
            Request {
                thing: "lamp",
                shadow: "",
                operation: Operation::Update,
                base: "$aws/things/lamp/shadow",
            }
        );
        let named = parse("$aws/things/lamp/shadow/name/settings/get").unwrap();
        assert_eq!(named.shadow, "settings");
        assert_eq!(named.base, "$aws/things/lamp/shadow/name/settings");
        assert_eq!(named.operation, Operation::Get);
        for other in [
            "$aws/things/lamp/shadow/update/accepted",
            "$aws/things/lamp/shadow/update/delta",
            "$aws/things/lamp/shadow/name//get",
            "$aws/things//shadow/get",
            "$aws/things/lamp/shadow/name/s/x",
            "$aws/things/lamp/jobs/get",
            "$aws/things/lamp/shadow",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }
}
