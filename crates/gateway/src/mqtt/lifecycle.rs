//! AWS IoT lifecycle events: the topics and exact JSON payloads of
//! `connected`, `disconnected`, `connect_failed`, `subscribed` and
//! `unsubscribed` (AWS IoT Core Developer Guide: "Lifecycle events"), the
//! `disconnectReason` values, and the per-client `versionNumber`.
//!
//! Lifecycle events are always on (no event configuration gates them) and
//! come from the gateway's session state machine, which knows every reason.
//! Build a [`LifecycleEvent`] and [`render`](LifecycleEvent::render) it into
//! a topic and a payload for the `$aws` bus; rendering refuses client ids
//! that contain `#` or `+`, for which AWS publishes no lifecycle event.
//!
//! Payloads are typed: each event carries exactly the fields the AWS documentation lists
//! for it, serialized in the order of the AWS documentation's example. `thingName` is
//! written only when the connection has one (exclusive thing association),
//! and left out otherwise, as AWS does.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Topic prefix of `connected` events; the client id follows.
pub(crate) const CONNECTED_TOPIC_PREFIX: &str = "$aws/events/presence/connected/";
/// Topic prefix of `disconnected` events; the client id follows.
pub(crate) const DISCONNECTED_TOPIC_PREFIX: &str = "$aws/events/presence/disconnected/";
/// Topic prefix of `connect_failed` events; the client id follows.
pub(crate) const CONNECT_FAILED_TOPIC_PREFIX: &str = "$aws/events/presence/connect_failed/";
/// Topic prefix of `subscribed` events; the client id follows.
pub(crate) const SUBSCRIBED_TOPIC_PREFIX: &str = "$aws/events/subscriptions/subscribed/";
/// Topic prefix of `unsubscribed` events; the client id follows.
pub(crate) const UNSUBSCRIBED_TOPIC_PREFIX: &str = "$aws/events/subscriptions/unsubscribed/";

/// Whether AWS publishes lifecycle events for `client_id`: "Client IDs that
/// contain # or + do not receive lifecycle events" (AWS IoT Core Developer Guide: "Lifecycle events"). Such an id
/// would also turn the event topic into a topic filter.
///
/// Pass the client id in effect for the session (the server-assigned one
/// when the client sent none).
pub(crate) fn lifecycle_allowed(client_id: &str) -> bool {
    !client_id.contains(['#', '+'])
}

/// The current time in milliseconds since the Unix epoch, the unit of every
/// lifecycle `timestamp`.
pub(crate) fn epoch_millis_now() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Why a connection ended: the `disconnectReason` of a `disconnected` event
/// (AWS IoT Core Developer Guide: "Lifecycle events", its table of disconnect reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DisconnectReason {
    /// `AUTH_ERROR`: authentication or authorization failed, for example a
    /// PUBLISH the policy denies on an MQTT 3.1.1 connection.
    AuthError,
    /// `CLIENT_INITIATED_DISCONNECT`: the client sent an MQTT DISCONNECT (or
    /// a WebSocket Close frame).
    ClientInitiatedDisconnect,
    /// `CLIENT_ERROR`: the client broke the protocol, for example a second
    /// CONNECT or an oversized payload.
    ClientError,
    /// `CONNECTION_LOST`: the connection was cut off without a DISCONNECT.
    ConnectionLost,
    /// `DUPLICATE_CLIENTID`: another client connected with the same client
    /// id; the already-connected client is the one disconnected.
    DuplicateClientid,
    /// `FORBIDDEN_ACCESS`: the client is not allowed to connect.
    ForbiddenAccess,
    /// `MQTT_KEEP_ALIVE_TIMEOUT`: nothing heard for 1.5 times the keep-alive.
    MqttKeepAliveTimeout,
    /// `SERVER_ERROR`: an unexpected server problem.
    ServerError,
    /// `SERVER_INITIATED_DISCONNECT`: the server closed the connection for
    /// operational reasons (for example a shutdown).
    ServerInitiatedDisconnect,
    /// `API_INITIATED_DISCONNECT`: closed through the `DeleteConnection` API.
    ApiInitiatedDisconnect,
    /// `THROTTLED`: the client exceeded a throttling limit.
    Throttled,
    /// `WEBSOCKET_TTL_EXPIRATION`: the WebSocket connection outlived its TTL.
    WebsocketTtlExpiration,
    /// `CUSTOMAUTH_TTL_EXPIRATION`: the connection outlived its custom
    /// authorizer's TTL.
    CustomauthTtlExpiration,
}

impl DisconnectReason {
    /// Every value, in the order of the AWS documentation's table.
    pub(crate) const ALL: [DisconnectReason; 13] = [
        DisconnectReason::AuthError,
        DisconnectReason::ClientInitiatedDisconnect,
        DisconnectReason::ClientError,
        DisconnectReason::ConnectionLost,
        DisconnectReason::DuplicateClientid,
        DisconnectReason::ForbiddenAccess,
        DisconnectReason::MqttKeepAliveTimeout,
        DisconnectReason::ServerError,
        DisconnectReason::ServerInitiatedDisconnect,
        DisconnectReason::ApiInitiatedDisconnect,
        DisconnectReason::Throttled,
        DisconnectReason::WebsocketTtlExpiration,
        DisconnectReason::CustomauthTtlExpiration,
    ];

    /// The value as AWS spells it in `disconnectReason`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::AuthError => "AUTH_ERROR",
            DisconnectReason::ClientInitiatedDisconnect => "CLIENT_INITIATED_DISCONNECT",
            DisconnectReason::ClientError => "CLIENT_ERROR",
            DisconnectReason::ConnectionLost => "CONNECTION_LOST",
            DisconnectReason::DuplicateClientid => "DUPLICATE_CLIENTID",
            DisconnectReason::ForbiddenAccess => "FORBIDDEN_ACCESS",
            DisconnectReason::MqttKeepAliveTimeout => "MQTT_KEEP_ALIVE_TIMEOUT",
            DisconnectReason::ServerError => "SERVER_ERROR",
            DisconnectReason::ServerInitiatedDisconnect => "SERVER_INITIATED_DISCONNECT",
            DisconnectReason::ApiInitiatedDisconnect => "API_INITIATED_DISCONNECT",
            DisconnectReason::Throttled => "THROTTLED",
            DisconnectReason::WebsocketTtlExpiration => "WEBSOCKET_TTL_EXPIRATION",
            DisconnectReason::CustomauthTtlExpiration => "CUSTOMAUTH_TTL_EXPIRATION",
        }
    }

    /// The payload's `clientInitiatedDisconnect`: true only for
    /// `CLIENT_INITIATED_DISCONNECT`, the one reason where the client asked
    /// to leave. \[INF\] A connection the client drops without a DISCONNECT
    /// is `CONNECTION_LOST`, which AWS describes as a network loss, so it
    /// counts as not client-initiated; deriving the flag from the reason
    /// keeps the two fields consistent.
    pub(crate) fn is_client_initiated(self) -> bool {
        self == DisconnectReason::ClientInitiatedDisconnect
    }

    /// Whether the broker publishes the client's last will for this reason
    /// (the "LWT sent" column of the AWS documentation's table): every reason except
    /// `CLIENT_INITIATED_DISCONNECT`. Two footnotes are the caller's to
    /// apply: `AUTH_ERROR` and `FORBIDDEN_ACCESS` send it only when the
    /// connection was established, and `API_INITIATED_DISCONNECT` not when
    /// the API call set `preventWillMessage=true`.
    pub(crate) fn sends_last_will(self) -> bool {
        !self.is_client_initiated()
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a `disconnectReason` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disconnect reason {0:?}")]
pub(crate) struct UnknownDisconnectReason(pub String);

impl FromStr for DisconnectReason {
    type Err = UnknownDisconnectReason;

    /// Parses the AWS spelling (`"CONNECTION_LOST"`, ...), case-sensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisconnectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownDisconnectReason(s.to_owned()))
    }
}

impl Serialize for DisconnectReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a connection attempt failed: the `connectFailureReason` of a
/// `connect_failed` event (AWS IoT Core Developer Guide: "Lifecycle events", connect failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConnectFailureReason {
    /// `AUTHORIZATION_FAILED`, the only documented value: the client may not
    /// connect, or may not publish on its last-will topic.
    AuthorizationFailed,
}

impl ConnectFailureReason {
    /// The value as AWS spells it in `connectFailureReason`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectFailureReason::AuthorizationFailed => "AUTHORIZATION_FAILED",
        }
    }
}

impl fmt::Display for ConnectFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConnectFailureReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The fields every lifecycle payload carries about its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionInfo {
    /// `clientId`: the MQTT client id, substituted verbatim into the topic
    /// (a `/` in it makes extra topic levels, as on AWS).
    pub client_id: String,
    /// `thingName`: only for a connection that uses the exclusive thing
    /// feature; `None` leaves the field out.
    pub thing_name: Option<String>,
    /// `sessionIdentifier`: a globally unique id (a UUID) that lives as long
    /// as the session.
    pub session_identifier: String,
    /// `principalIdentifier`: the certificate id (64 hex characters) for a
    /// certificate, otherwise the credentials' identity.
    pub principal_identifier: String,
}

/// A `connected` event: the client's CONNECT was accepted (sent after the
/// CONNACK).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Connected {
    /// Who connected.
    pub session: SessionInfo,
    /// `timestamp`, epoch milliseconds.
    pub timestamp_ms: u64,
    /// `ipAddress`: the client's address. An IPv4-mapped IPv6 address (from
    /// a dual-stack socket) is written as plain IPv4.
    pub ip_address: IpAddr,
    /// `versionNumber`, from [`VersionCounter::connect`]; the matching
    /// [`Disconnected`] carries the same number.
    pub version_number: u64,
}

/// A `disconnected` event: an established connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disconnected {
    /// Who disconnected.
    pub session: SessionInfo,
    /// `timestamp`, epoch milliseconds.
    pub timestamp_ms: u64,
    /// `disconnectReason`; `clientInitiatedDisconnect` is derived from it
    /// ([`DisconnectReason::is_client_initiated`]).
    pub reason: DisconnectReason,
    /// `versionNumber`: the number of the `connected` event of this
    /// connection.
    pub version_number: u64,
}

/// A `connect_failed` event: a connection attempt was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectFailed {
    /// Who tried to connect. The session identifier is the attempt's own;
    /// the principal is the best the gateway knows (for example the id of
    /// the certificate it could not authorize).
    pub session: SessionInfo,
    /// `timestamp`, epoch milliseconds.
    pub timestamp_ms: u64,
    /// `connectFailureReason`.
    pub reason: ConnectFailureReason,
    /// `ipAddress`: the client's address (IPv4-mapped addresses as IPv4).
    pub ip_address: IpAddr,
}

/// A `subscribed` or `unsubscribed` event: one SUBSCRIBE or UNSUBSCRIBE
/// packet. There is no `versionNumber`, `ipAddress` or `disconnectReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionChange {
    /// Who subscribed or unsubscribed.
    pub session: SessionInfo,
    /// `timestamp`, epoch milliseconds.
    pub timestamp_ms: u64,
    /// `topics`: the topic filters of the packet, in packet order. \[INF\] For
    /// a SUBSCRIBE, only the filters the broker granted.
    pub topics: Vec<String>,
}

/// One lifecycle event, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LifecycleEvent {
    /// `$aws/events/presence/connected/{clientId}`.
    Connected(Connected),
    /// `$aws/events/presence/disconnected/{clientId}`.
    Disconnected(Disconnected),
    /// `$aws/events/presence/connect_failed/{clientId}`.
    ConnectFailed(ConnectFailed),
    /// `$aws/events/subscriptions/subscribed/{clientId}`.
    Subscribed(SubscriptionChange),
    /// `$aws/events/subscriptions/unsubscribed/{clientId}`.
    Unsubscribed(SubscriptionChange),
}

impl From<Connected> for LifecycleEvent {
    fn from(e: Connected) -> Self {
        LifecycleEvent::Connected(e)
    }
}

impl From<Disconnected> for LifecycleEvent {
    fn from(e: Disconnected) -> Self {
        LifecycleEvent::Disconnected(e)
    }
}

impl From<ConnectFailed> for LifecycleEvent {
    fn from(e: ConnectFailed) -> Self {
        LifecycleEvent::ConnectFailed(e)
    }
}

/// `connected` payload, in the order of the AWS documentation's example.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectedWire<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_name: Option<&'a str>,
    timestamp: u64,
    event_type: &'static str,
    session_identifier: &'a str,
    principal_identifier: &'a str,
    ip_address: IpAddr,
    version_number: u64,
}

/// `disconnected` payload, in the order of the AWS documentation's example.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DisconnectedWire<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_name: Option<&'a str>,
    timestamp: u64,
    event_type: &'static str,
    session_identifier: &'a str,
    principal_identifier: &'a str,
    client_initiated_disconnect: bool,
    disconnect_reason: DisconnectReason,
    version_number: u64,
}

/// `connect_failed` payload, in the order of the AWS documentation's example.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectFailedWire<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_name: Option<&'a str>,
    timestamp: u64,
    event_type: &'static str,
    connect_failure_reason: ConnectFailureReason,
    principal_identifier: &'a str,
    session_identifier: &'a str,
    ip_address: IpAddr,
}

/// `subscribed` / `unsubscribed` payload, in the order of the AWS documentation's example.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionWire<'a> {
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thing_name: Option<&'a str>,
    timestamp: u64,
    event_type: &'static str,
    session_identifier: &'a str,
    principal_identifier: &'a str,
    topics: &'a [String],
}

fn to_json<T: Serialize>(wire: &T) -> Vec<u8> {
    // Strings, integers, booleans and IP addresses always serialize.
    serde_json::to_vec(wire).expect("a lifecycle payload serializes to JSON")
}

impl LifecycleEvent {
    /// The payload's `eventType`, which is also the topic's next-to-last
    /// level: `connected`, `disconnected`, `connect_failed`, `subscribed`
    /// or `unsubscribed`.
    pub(crate) fn event_type(&self) -> &'static str {
        match self {
            LifecycleEvent::Connected(_) => "connected",
            LifecycleEvent::Disconnected(_) => "disconnected",
            LifecycleEvent::ConnectFailed(_) => "connect_failed",
            LifecycleEvent::Subscribed(_) => "subscribed",
            LifecycleEvent::Unsubscribed(_) => "unsubscribed",
        }
    }

    /// The session the event is about.
    pub(crate) fn session(&self) -> &SessionInfo {
        match self {
            LifecycleEvent::Connected(e) => &e.session,
            LifecycleEvent::Disconnected(e) => &e.session,
            LifecycleEvent::ConnectFailed(e) => &e.session,
            LifecycleEvent::Subscribed(e) | LifecycleEvent::Unsubscribed(e) => &e.session,
        }
    }

    /// The topic prefix of this kind of event; the client id follows it.
    pub(crate) fn topic_prefix(&self) -> &'static str {
        match self {
            LifecycleEvent::Connected(_) => CONNECTED_TOPIC_PREFIX,
            LifecycleEvent::Disconnected(_) => DISCONNECTED_TOPIC_PREFIX,
            LifecycleEvent::ConnectFailed(_) => CONNECT_FAILED_TOPIC_PREFIX,
            LifecycleEvent::Subscribed(_) => SUBSCRIBED_TOPIC_PREFIX,
            LifecycleEvent::Unsubscribed(_) => UNSUBSCRIBED_TOPIC_PREFIX,
        }
    }

    /// The event's topic, the client id substituted verbatim. Server-made,
    /// so not subject to the client topic limits.
    pub(crate) fn topic(&self) -> String {
        let prefix = self.topic_prefix();
        let client_id = &self.session().client_id;
        let mut topic = String::with_capacity(prefix.len() + client_id.len());
        topic.push_str(prefix);
        topic.push_str(client_id);
        topic
    }

    /// The UTF-8 JSON payload, fields in the order of the AWS documentation's example.
    pub(crate) fn payload(&self) -> Vec<u8> {
        let event_type = self.event_type();
        let s = self.session();
        let client_id = s.client_id.as_str();
        let thing_name = s.thing_name.as_deref();
        let session_identifier = s.session_identifier.as_str();
        let principal_identifier = s.principal_identifier.as_str();
        match self {
            LifecycleEvent::Connected(e) => to_json(&ConnectedWire {
                client_id,
                thing_name,
                timestamp: e.timestamp_ms,
                event_type,
                session_identifier,
                principal_identifier,
                ip_address: e.ip_address.to_canonical(),
                version_number: e.version_number,
            }),
            LifecycleEvent::Disconnected(e) => to_json(&DisconnectedWire {
                client_id,
                thing_name,
                timestamp: e.timestamp_ms,
                event_type,
                session_identifier,
                principal_identifier,
                client_initiated_disconnect: e.reason.is_client_initiated(),
                disconnect_reason: e.reason,
                version_number: e.version_number,
            }),
            LifecycleEvent::ConnectFailed(e) => to_json(&ConnectFailedWire {
                client_id,
                thing_name,
                timestamp: e.timestamp_ms,
                event_type,
                connect_failure_reason: e.reason,
                principal_identifier,
                session_identifier,
                ip_address: e.ip_address.to_canonical(),
            }),
            LifecycleEvent::Subscribed(e) | LifecycleEvent::Unsubscribed(e) => {
                to_json(&SubscriptionWire {
                    client_id,
                    thing_name,
                    timestamp: e.timestamp_ms,
                    event_type,
                    session_identifier,
                    principal_identifier,
                    topics: &e.topics,
                })
            }
        }
    }

    /// The topic and the payload to publish on the `$aws` bus, or `None`
    /// when no lifecycle event may be published for this client id (it
    /// contains `#` or `+`, see [`lifecycle_allowed`]).
    pub(crate) fn render(&self) -> Option<(String, Vec<u8>)> {
        if !lifecycle_allowed(&self.session().client_id) {
            return None;
        }
        Some((self.topic(), self.payload()))
    }
}

/// How long a client id may stay disconnected before its `versionNumber`
/// starts again at 0: "about 1 h" per the AWS IoT Core Developer Guide ("Lifecycle events").
pub(crate) const DEFAULT_VERSION_RESET_AFTER: Duration = Duration::from_secs(60 * 60);

/// The table size under which [`VersionCounter`] never sweeps.
const MIN_SWEEP_LEN: usize = 1024;

/// Hands out the lifecycle `versionNumber` per client id.
///
/// AWS: the number is "monotonically increasing … for each client ID
/// connection"; the connect and disconnect of one connection share it;
/// values may skip; it resets to 0 after the client id has been disconnected
/// for about an hour. So: call [`connect`](Self::connect) once per accepted
/// connection and put the number in both its `connected` and `disconnected`
/// events, then call [`disconnect`](Self::disconnect) with that number when
/// the connection ends. A new connection of the same client id, even one
/// that takes over a live connection (`DUPLICATE_CLIENTID`), gets a higher
/// number; the first connection of an unknown client id gets 0.
///
/// Memory: an entry lives while its client id has a connection and for
/// [`reset_after`](Self::reset_after) after the last disconnect, after which
/// it is forgotten (the reset to 0 AWS documents). Expired entries are swept
/// when the table has doubled since the last sweep, so the table holds at
/// most about twice the number of client ids that were connected within the
/// window (and never sweeps below 1024 entries). There is no hard cap: a
/// cap would have to forget a recent client id early and reuse numbers
/// within the window.
///
/// The counter is in memory, so a gateway restart resets every client id to
/// 0, which consumers must accept anyway. Persistent sessions (AWS: reset
/// after the session expiry) can use a longer window through
/// [`with_reset_after`](Self::with_reset_after).
///
/// Thread-safe: one `std::sync::Mutex` around a `HashMap`, held for a map
/// lookup only.
#[derive(Debug)]
pub struct VersionCounter {
    reset_after: Duration,
    state: Mutex<VersionState>,
}

#[derive(Debug)]
struct VersionState {
    clients: HashMap<String, VersionEntry>,
    /// Sweep expired entries when the table reaches this size.
    sweep_at_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct VersionEntry {
    /// The number handed to the client id's latest connection.
    last: u64,
    /// When the latest connection ended; `None` while it is live.
    idle_since: Option<Instant>,
}

impl VersionEntry {
    fn expired(&self, now: Instant, reset_after: Duration) -> bool {
        self.idle_since
            .is_some_and(|since| now.saturating_duration_since(since) >= reset_after)
    }
}

impl Default for VersionCounter {
    fn default() -> Self {
        VersionCounter::new()
    }
}

impl VersionCounter {
    /// A counter with the AWS reset window, [`DEFAULT_VERSION_RESET_AFTER`].
    pub fn new() -> Self {
        VersionCounter::with_reset_after(DEFAULT_VERSION_RESET_AFTER)
    }

    /// A counter that forgets a client id `reset_after` after its last
    /// disconnect.
    pub fn with_reset_after(reset_after: Duration) -> Self {
        VersionCounter {
            reset_after,
            state: Mutex::new(VersionState {
                clients: HashMap::new(),
                sweep_at_len: MIN_SWEEP_LEN,
            }),
        }
    }

    /// How long a client id stays remembered after its last disconnect.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// The `versionNumber` of a new connection of `client_id`, now.
    pub fn connect(&self, client_id: &str) -> u64 {
        self.connect_at(client_id, Instant::now())
    }

    /// [`connect`](Self::connect) at the instant `now` (for tests and for
    /// callers that already read the clock).
    pub fn connect_at(&self, client_id: &str, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.clients.len() >= state.sweep_at_len {
            let reset_after = self.reset_after;
            state.clients.retain(|_, e| !e.expired(now, reset_after));
            state.sweep_at_len = (state.clients.len() * 2).max(MIN_SWEEP_LEN);
        }
        let reset_after = self.reset_after;
        if let Some(entry) = state.clients.get_mut(client_id) {
            entry.last = if entry.expired(now, reset_after) {
                0
            } else {
                entry.last.saturating_add(1)
            };
            entry.idle_since = None;
            return entry.last;
        }
        state.clients.insert(
            client_id.to_owned(),
            VersionEntry {
                last: 0,
                idle_since: None,
            },
        );
        0
    }

    /// Records, now, that the connection of `client_id` numbered `version`
    /// ended. A stale number (a newer connection of the client id exists,
    /// as after a takeover) changes nothing.
    pub fn disconnect(&self, client_id: &str, version: u64) {
        self.disconnect_at(client_id, version, Instant::now());
    }

    /// [`disconnect`](Self::disconnect) at the instant `now`.
    pub fn disconnect_at(&self, client_id: &str, version: u64, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = state.clients.get_mut(client_id)
            && entry.last == version
            && entry.idle_since.is_none()
        {
            entry.idle_since = Some(now);
        }
    }

    /// How many client ids the counter remembers, expired ones not yet swept
    /// included.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clients
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;

    fn session(thing: bool) -> SessionInfo {
        SessionInfo {
            client_id: "186b5".to_owned(),
            thing_name: thing.then(|| "exampleThing".to_owned()),
            session_identifier: "00000000-0000-0000-0000-000000000000".to_owned(),
            principal_identifier: "12345678901234567890123456789012".to_owned(),
        }
    }

    fn example_ip() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0))
    }

    fn parsed(payload: &[u8]) -> Value {
        serde_json::from_slice(payload).unwrap()
    }

    fn text(payload: &[u8]) -> &str {
        std::str::from_utf8(payload).unwrap()
    }

    #[test]
    fn connected_matches_the_spec_example() {
        let event = LifecycleEvent::from(Connected {
            session: session(true),
            timestamp_ms: 1573002230757,
            ip_address: example_ip(),
            version_number: 0,
        });
        let (topic, payload) = event.render().unwrap();
        assert_eq!(topic, "$aws/events/presence/connected/186b5");
        assert_eq!(
            parsed(&payload),
            json!({
                "clientId": "186b5",
                "thingName": "exampleThing",
                "timestamp": 1573002230757u64,
                "eventType": "connected",
                "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
                "principalIdentifier": "12345678901234567890123456789012",
                "ipAddress": "192.0.2.0",
                "versionNumber": 0
            })
        );
        assert_eq!(
            text(&payload),
            r#"{"clientId":"186b5","thingName":"exampleThing","timestamp":1573002230757,"eventType":"connected","sessionIdentifier":"00000000-0000-0000-0000-000000000000","principalIdentifier":"12345678901234567890123456789012","ipAddress":"192.0.2.0","versionNumber":0}"#
        );
    }

    #[test]
    fn disconnected_matches_the_spec_example() {
        let event = LifecycleEvent::from(Disconnected {
            session: session(true),
            timestamp_ms: 1573002340451,
            reason: DisconnectReason::ClientInitiatedDisconnect,
            version_number: 0,
        });
        let (topic, payload) = event.render().unwrap();
        assert_eq!(topic, "$aws/events/presence/disconnected/186b5");
        assert_eq!(
            parsed(&payload),
            json!({
                "clientId": "186b5",
                "thingName": "exampleThing",
                "timestamp": 1573002340451u64,
                "eventType": "disconnected",
                "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
                "principalIdentifier": "12345678901234567890123456789012",
                "clientInitiatedDisconnect": true,
                "disconnectReason": "CLIENT_INITIATED_DISCONNECT",
                "versionNumber": 0
            })
        );
        assert_eq!(
            text(&payload),
            r#"{"clientId":"186b5","thingName":"exampleThing","timestamp":1573002340451,"eventType":"disconnected","sessionIdentifier":"00000000-0000-0000-0000-000000000000","principalIdentifier":"12345678901234567890123456789012","clientInitiatedDisconnect":true,"disconnectReason":"CLIENT_INITIATED_DISCONNECT","versionNumber":0}"#
        );
    }

    #[test]
    fn disconnected_reasons_set_the_client_initiated_flag() {
        for reason in DisconnectReason::ALL {
            let event = LifecycleEvent::from(Disconnected {
                session: session(false),
                timestamp_ms: 1,
                reason,
                version_number: 7,
            });
            let v = parsed(&event.payload());
            assert_eq!(v["disconnectReason"], reason.as_str());
            assert_eq!(
                v["clientInitiatedDisconnect"],
                reason == DisconnectReason::ClientInitiatedDisconnect
            );
            assert_eq!(v["versionNumber"], 7);
            assert!(
                v.get("ipAddress").is_none(),
                "disconnected has no ipAddress"
            );
        }
    }

    #[test]
    fn connect_failed_matches_the_spec_example() {
        let event = LifecycleEvent::from(ConnectFailed {
            session: session(true),
            timestamp_ms: 1460065214626,
            reason: ConnectFailureReason::AuthorizationFailed,
            ip_address: example_ip(),
        });
        let (topic, payload) = event.render().unwrap();
        assert_eq!(topic, "$aws/events/presence/connect_failed/186b5");
        assert_eq!(
            parsed(&payload),
            json!({
                "clientId": "186b5",
                "thingName": "exampleThing",
                "timestamp": 1460065214626u64,
                "eventType": "connect_failed",
                "connectFailureReason": "AUTHORIZATION_FAILED",
                "principalIdentifier": "12345678901234567890123456789012",
                "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
                "ipAddress": "192.0.2.0"
            })
        );
        assert_eq!(
            text(&payload),
            r#"{"clientId":"186b5","thingName":"exampleThing","timestamp":1460065214626,"eventType":"connect_failed","connectFailureReason":"AUTHORIZATION_FAILED","principalIdentifier":"12345678901234567890123456789012","sessionIdentifier":"00000000-0000-0000-0000-000000000000","ipAddress":"192.0.2.0"}"#
        );
    }

    #[test]
    fn subscribed_and_unsubscribed_match_the_spec_example() {
        let change = SubscriptionChange {
            session: session(true),
            timestamp_ms: 1460065214626,
            topics: vec![
                "foo/bar".to_owned(),
                "device/data".to_owned(),
                "dog/cat".to_owned(),
            ],
        };
        for (event, kind) in [
            (LifecycleEvent::Subscribed(change.clone()), "subscribed"),
            (LifecycleEvent::Unsubscribed(change), "unsubscribed"),
        ] {
            let (topic, payload) = event.render().unwrap();
            assert_eq!(topic, format!("$aws/events/subscriptions/{kind}/186b5"));
            assert_eq!(
                parsed(&payload),
                json!({
                    "clientId": "186b5",
                    "thingName": "exampleThing",
                    "timestamp": 1460065214626u64,
                    "eventType": kind,
                    "sessionIdentifier": "00000000-0000-0000-0000-000000000000",
                    "principalIdentifier": "12345678901234567890123456789012",
                    "topics": ["foo/bar", "device/data", "dog/cat"]
                })
            );
            assert_eq!(
                text(&payload),
                format!(
                    r#"{{"clientId":"186b5","thingName":"exampleThing","timestamp":1460065214626,"eventType":"{kind}","sessionIdentifier":"00000000-0000-0000-0000-000000000000","principalIdentifier":"12345678901234567890123456789012","topics":["foo/bar","device/data","dog/cat"]}}"#
                )
            );
        }
    }

    #[test]
    fn thing_name_is_left_out_without_a_thing() {
        let events: [LifecycleEvent; 5] = [
            Connected {
                session: session(false),
                timestamp_ms: 1,
                ip_address: example_ip(),
                version_number: 0,
            }
            .into(),
            Disconnected {
                session: session(false),
                timestamp_ms: 1,
                reason: DisconnectReason::ConnectionLost,
                version_number: 0,
            }
            .into(),
            ConnectFailed {
                session: session(false),
                timestamp_ms: 1,
                reason: ConnectFailureReason::AuthorizationFailed,
                ip_address: example_ip(),
            }
            .into(),
            LifecycleEvent::Subscribed(SubscriptionChange {
                session: session(false),
                timestamp_ms: 1,
                topics: vec![],
            }),
            LifecycleEvent::Unsubscribed(SubscriptionChange {
                session: session(false),
                timestamp_ms: 1,
                topics: vec![],
            }),
        ];
        for event in events {
            let v = parsed(&event.payload());
            let obj = v.as_object().unwrap();
            assert!(!obj.contains_key("thingName"), "{}", event.event_type());
            assert_eq!(obj["eventType"], event.event_type());
            assert_eq!(obj["clientId"], "186b5");
        }
    }

    #[test]
    fn each_event_has_exactly_its_fields() {
        let keys = |event: LifecycleEvent| -> Vec<String> {
            let v = parsed(&event.payload());
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        let common = [
            "clientId",
            "eventType",
            "principalIdentifier",
            "sessionIdentifier",
            "thingName",
            "timestamp",
        ];
        let with = |extra: &[&str]| {
            let mut all: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
            all.sort();
            all
        };
        let c = Connected {
            session: session(true),
            timestamp_ms: 1,
            ip_address: example_ip(),
            version_number: 0,
        };
        assert_eq!(keys(c.into()), with(&["ipAddress", "versionNumber"]));
        let d = Disconnected {
            session: session(true),
            timestamp_ms: 1,
            reason: DisconnectReason::Throttled,
            version_number: 0,
        };
        assert_eq!(
            keys(d.into()),
            with(&[
                "clientInitiatedDisconnect",
                "disconnectReason",
                "versionNumber"
            ])
        );
        let f = ConnectFailed {
            session: session(true),
            timestamp_ms: 1,
            reason: ConnectFailureReason::AuthorizationFailed,
            ip_address: example_ip(),
        };
        assert_eq!(keys(f.into()), with(&["connectFailureReason", "ipAddress"]));
        let s = SubscriptionChange {
            session: session(true),
            timestamp_ms: 1,
            topics: vec!["a".to_owned()],
        };
        assert_eq!(keys(LifecycleEvent::Subscribed(s)), with(&["topics"]));
    }

    #[test]
    fn ip_addresses() {
        let connected = |ip: IpAddr| {
            let event = LifecycleEvent::from(Connected {
                session: session(false),
                timestamp_ms: 1,
                ip_address: ip,
                version_number: 0,
            });
            parsed(&event.payload())["ipAddress"].clone()
        };
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(connected(IpAddr::V6(v6)), "2001:db8::1");
        let mapped = Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped();
        assert_eq!(connected(IpAddr::V6(mapped)), "203.0.113.9");
    }

    #[test]
    fn client_ids_with_wildcards_get_no_events() {
        assert!(lifecycle_allowed("186b5"));
        assert!(lifecycle_allowed("a/b"));
        assert!(lifecycle_allowed("$weird"));
        assert!(!lifecycle_allowed("a+b"));
        assert!(!lifecycle_allowed("#"));
        assert!(!lifecycle_allowed("dev#1"));
        assert!(!lifecycle_allowed("+"));
        for client_id in ["a+b", "#", "x/#"] {
            let mut s = session(false);
            s.client_id = client_id.to_owned();
            let event = LifecycleEvent::from(Connected {
                session: s,
                timestamp_ms: 1,
                ip_address: example_ip(),
                version_number: 0,
            });
            assert_eq!(event.render(), None, "{client_id}");
        }
    }

    #[test]
    fn client_id_is_substituted_verbatim() {
        let mut s = session(false);
        s.client_id = "fleet/dev-1".to_owned();
        let event = LifecycleEvent::Unsubscribed(SubscriptionChange {
            session: s,
            timestamp_ms: 1,
            topics: vec![],
        });
        let (topic, _) = event.render().unwrap();
        assert_eq!(topic, "$aws/events/subscriptions/unsubscribed/fleet/dev-1");
        assert!(crate::bus::topic::matches(
            "$aws/events/subscriptions/unsubscribed/#",
            &topic
        ));
    }

    #[test]
    fn disconnect_reasons_round_trip() {
        let spelled = [
            "AUTH_ERROR",
            "CLIENT_INITIATED_DISCONNECT",
            "CLIENT_ERROR",
            "CONNECTION_LOST",
            "DUPLICATE_CLIENTID",
            "FORBIDDEN_ACCESS",
            "MQTT_KEEP_ALIVE_TIMEOUT",
            "SERVER_ERROR",
            "SERVER_INITIATED_DISCONNECT",
            "API_INITIATED_DISCONNECT",
            "THROTTLED",
            "WEBSOCKET_TTL_EXPIRATION",
            "CUSTOMAUTH_TTL_EXPIRATION",
        ];
        assert_eq!(DisconnectReason::ALL.len(), spelled.len());
        for (reason, s) in DisconnectReason::ALL.into_iter().zip(spelled) {
            assert_eq!(reason.as_str(), s);
            assert_eq!(reason.to_string(), s);
            assert_eq!(s.parse::<DisconnectReason>(), Ok(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), s);
            assert_eq!(
                reason.is_client_initiated(),
                s == "CLIENT_INITIATED_DISCONNECT"
            );
            assert_eq!(reason.sends_last_will(), s != "CLIENT_INITIATED_DISCONNECT");
        }
        assert!("UNKNOWN".parse::<DisconnectReason>().is_err());
        assert!("NONE".parse::<DisconnectReason>().is_err());
        assert!("auth_error".parse::<DisconnectReason>().is_err());
    }

    #[test]
    fn epoch_millis_is_thirteen_digits() {
        assert_eq!(epoch_millis_now().to_string().len(), 13);
    }

    #[test]
    fn versions_start_at_zero_and_increase_per_client() {
        let counter = VersionCounter::new();
        let t0 = Instant::now();
        assert_eq!(counter.connect_at("a", t0), 0);
        assert_eq!(counter.connect_at("b", t0), 0);
        counter.disconnect_at("a", 0, t0);
        assert_eq!(counter.connect_at("a", t0 + Duration::from_secs(5)), 1);
        counter.disconnect_at("a", 1, t0 + Duration::from_secs(6));
        assert_eq!(counter.connect_at("a", t0 + Duration::from_secs(7)), 2);
        assert_eq!(counter.connect_at("c", t0), 0);
        assert_eq!(counter.tracked(), 3);
    }

    #[test]
    fn a_takeover_gets_a_higher_version_and_the_old_disconnect_is_stale() {
        let counter = VersionCounter::with_reset_after(Duration::from_secs(10));
        let t0 = Instant::now();
        let first = counter.connect_at("dup", t0);
        let second = counter.connect_at("dup", t0);
        assert!(second > first);
        // The old connection's DUPLICATE_CLIENTID disconnect comes after the
        // takeover: it must not start the reset clock of the live one.
        counter.disconnect_at("dup", first, t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(counter.connect_at("dup", later), second + 1);
    }

    #[test]
    fn versions_reset_after_the_window() {
        let counter = VersionCounter::with_reset_after(Duration::from_secs(3600));
        assert_eq!(counter.reset_after(), Duration::from_secs(3600));
        let t0 = Instant::now();
        for expected in 0..3 {
            assert_eq!(counter.connect_at("a", t0), expected);
            counter.disconnect_at("a", expected, t0);
        }
        // Just inside the window: still increasing.
        let inside = t0 + Duration::from_secs(3599);
        assert_eq!(counter.connect_at("a", inside), 3);
        counter.disconnect_at("a", 3, inside);
        // A full window after the last disconnect: back to 0.
        assert_eq!(
            counter.connect_at("a", inside + Duration::from_secs(3600)),
            0
        );
        // A live connection never expires, however long it lasts.
        let far = inside + Duration::from_secs(100_000);
        assert_eq!(counter.connect_at("a", far), 1);
        assert_eq!(
            VersionCounter::default().reset_after(),
            DEFAULT_VERSION_RESET_AFTER
        );
    }

    #[test]
    fn expired_entries_are_swept() {
        let counter = VersionCounter::with_reset_after(Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP_LEN {
            let id = format!("c{i}");
            counter.connect_at(&id, t0);
            if i % 2 == 0 {
                counter.disconnect_at(&id, 0, t0);
            }
        }
        assert_eq!(counter.tracked(), MIN_SWEEP_LEN);
        // The next connect sweeps the disconnected half.
        counter.connect_at("new", t0 + Duration::from_secs(2));
        assert_eq!(counter.tracked(), MIN_SWEEP_LEN / 2 + 1);
        // Live ones kept their numbers.
        assert_eq!(counter.connect_at("c1", t0 + Duration::from_secs(2)), 1);
        assert_eq!(counter.connect_at("c0", t0 + Duration::from_secs(2)), 0);
    }

    #[test]
    fn versions_are_unique_across_threads() {
        let counter = Arc::new(VersionCounter::new());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| counter.connect("shared"))
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        let expected: Vec<u64> = (0..4000).collect();
        assert_eq!(all, expected);
    }
}
