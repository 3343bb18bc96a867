//! One MQTT 3.1.1 or MQTT 5 client session over any byte stream (plain TCP,
//! or TLS handed over by the TLS listener), with AWS IoT Core's rules
//! (aws-iot-events-spec §3.9–3.11, §5.2, §5.6; rumqttd-notes §8).
//!
//! The protocol level of the CONNECT picks the codec: 4 is MQTT 3.1.1
//! (rumqttd's v4 codec), 5 is MQTT 5 (its v5 codec; see [`MQTT 5`](#mqtt-5)
//! below), and any other level is refused with "unsupported protocol
//! version" (0x01 below 5, 0x84 above).
//!
//! Every packet is read by [`decode`], which refuses what rumqttd's codecs
//! let through: wrong fixed-header flags, and strings MQTT forbids (see
//! [`topic::validate_mqtt_string`]). A client id MQTT forbids gets CONNACK
//! "identifier rejected", a will topic MQTT forbids refuses the CONNECT,
//! any other such packet closes the connection.
//!
//! [`run`] reads the CONNECT within [`SessionSettings::connect_timeout`],
//! authenticates it with the caller's [`Authenticator`], checks `iot:Connect`
//! (and `iot:Publish` on the last-will topic), takes over a live session of
//! the same client id (`DUPLICATE_CLIENTID`), answers CONNACK and publishes
//! the `connected` event. A `clean_session=false` CONNECT that would give
//! its principal more than
//! [`SessionSettings::max_persistent_sessions_per_principal`] persistent
//! sessions is refused. Then, until the connection ends:
//!
//! - The keep-alive is clamped as AWS IoT does ([`effective_keep_alive`]).
//!   PINGREQ gets PINGRESP; nothing heard, or no byte written to a client
//!   that has stopped reading, for 1.5 × keep-alive ends the session with
//!   `MQTT_KEEP_ALIVE_TIMEOUT`.
//! - SUBSCRIBE: each filter is validated and checked for `iot:Subscribe`;
//!   a denied or invalid one gets 0x80. `$aws/...` filters go to the gateway
//!   [`Bus`], other `$` filters are refused, the rest go to rumqttd. QoS 2 is
//!   granted as 1 (AWS supports QoS 0 and 1). A `subscribed` event lists the
//!   granted filters.
//! - UNSUBSCRIBE: answered here, with an `unsubscribed` event.
//! - PUBLISH: QoS 2 ends the session (`CLIENT_ERROR`, as AWS does); an invalid
//!   topic too; so does a `$aws/events/...` topic (whatever the policy
//!   says), any other `$` topic outside `$aws/things/...`, and RETAIN on a
//!   `$` topic (the spec's recommendation, §5.6); a denied `iot:Publish` (or
//!   `iot:RetainPublish` with RETAIN) ends it with `AUTH_ERROR`. Otherwise
//!   the message is routed, then a QoS 1 publish gets its PUBACK:
//!   `$aws/things/...` (shadow and jobs-style topics) on the bus, to explicit
//!   `$aws/things/...` filters only, the rest through rumqttd. With RETAIN,
//!   the message is stored in the gateway's retained store first; over its
//!   limits an MQTT 5 PUBLISH is refused (PUBACK 0x97 quota exceeded, QoS 0
//!   dropped) and an MQTT 3.1.1 one is routed live without being retained.
//! - Every delivery, from rumqttd or the bus, is checked for `iot:Receive`
//!   on its topic against the cache's current policies, then written at the
//!   QoS granted to the client's matching filters (rumqttd's own rule: the
//!   subscription's QoS), QoS 1 with a packet id tracked until PUBACK.
//! - A policy or certificate change re-checks `iot:Connect` (and an active
//!   certificate): a session no longer allowed ends with `AUTH_ERROR`.
//!
//! Thing association (aws-iot-events-spec §5.1, §5.4): when the client id
//! is a valid thing name, the thing exists in the registry and one of the
//! principal's attachment targets (its certificate ARN) is attached to it
//! (`AttachThingPrincipal`), the connection is associated with that thing.
//! Its policy context then has `iot:Connection.Thing.ThingName`,
//! `.ThingTypeName`, `.Attributes[...]` and `IsAttached=true`; the policies
//! attached to the thing's groups and their ancestors apply too; and the
//! lifecycle events carry `thingName`. The lookup is made once, at CONNECT,
//! with a [`THING_LOOKUP_TIMEOUT`]: a registry that is unreachable, slow or
//! failing does not fail the CONNECT, the connection proceeds without a
//! thing (logged at warn). Later changes to the thing, its principals or
//! its groups apply to the next connection.
//!
//! # MQTT 5
//!
//! An MQTT 5 session behaves as above, as AWS IoT Core does for MQTT 5,
//! except where MQTT 5 lets the server say more:
//!
//! - CONNACK carries MQTT 5 reason codes (0x85 bad client id, 0x86 bad
//!   username or password, 0x87 not authorized, 0x88 server unavailable)
//!   and, on success, Maximum QoS 1 and no shared subscriptions or
//!   subscription identifiers, and Server Keep Alive when the keep-alive
//!   used is not the one asked for. A malformed CONNECT gets 0x81, a will
//!   topic MQTT forbids 0x90, a principal's persistent-session limit 0x97.
//! - SUBACK says why a filter is refused: 0x87 denied by policy, 0x8F
//!   invalid (or a `$` filter outside `$aws/`), 0x97 past the eighth filter,
//!   0x9E `$share/...`. UNSUBACK has a reason per filter (0x00, or 0x11 when
//!   there was no such subscription).
//! - A PUBLISH denied by `iot:Publish`/`iot:RetainPublish`, or on
//!   `$aws/events/...`, does not end the session: QoS 1 gets a PUBACK 0x87,
//!   QoS 0 is dropped (both logged).
//! - Deliveries are written as MQTT 5 PUBLISH packets without properties.
//! - When the server ends the session, the client first gets a DISCONNECT
//!   with the MQTT 5 reason for its `disconnectReason` (0x8E session taken
//!   over, 0x8D keep-alive timeout, 0x8B server shutting down, 0x87 not
//!   authorized, 0x9B for a QoS 2 PUBLISH, 0x90 for an invalid topic, 0x95
//!   for an oversized packet, 0x81 for a malformed packet, 0x82 for other
//!   protocol errors).
//! - A client DISCONNECT with reason 0x04 still gets its will published.
//!
//! Clean start stands for clean session, and the properties clients send
//! (session expiry, user properties, topic aliases, ...) are ignored: the
//! gateway advertises no topic aliases, so a PUBLISH without a topic is a
//! protocol error.
//!
//! # The end
//!
//! DISCONNECT → `CLIENT_INITIATED_DISCONNECT`, a closed or broken
//! socket → `CONNECTION_LOST`, a protocol error → `CLIENT_ERROR`, the
//! shutdown token → `SERVER_INITIATED_DISCONNECT`. The last will is published
//! for every reason but a DISCONNECT, the rumqttd link is removed and the
//! `disconnected` event is published.
//!
//! # Persistent sessions
//!
//! A `clean_session=false` session outlives its connection: the gateway
//! keeps its filters, its position in the registry's change log (see
//! `EventTrack`) and, while it runs, its unacknowledged QoS 1 messages;
//! with a [`SessionStore`] the filters and the position survive a restart.
//! Its router subscriptions stay in rumqttd (its graveyard) while the
//! gateway runs, and are made again after a restart. A client that comes
//! back with the same client id gets its unacknowledged messages again
//! (DUP), the `$aws` messages its bus queue kept while it was away, the
//! registry events it missed (replayed from the change log, with their
//! `eventId`), then the live ones. A session whose client
//! stays away longer than
//! [`SessionSettings::persistent_session_expiry`] is forgotten.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use herald_policy::{Action, CertField, Context, Policy, Request, arn, decide};
use herald_proto::registry::v1::{self as reg, registry_client::RegistryClient};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::bytes::{Buf as _, BufMut, Bytes, BytesMut};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::bus::{Bus, Delivery as BusDelivery, QoS, SubscriberId};
use super::lifecycle::{
    ConnectFailed, ConnectFailureReason, Connected, DisconnectReason, Disconnected, LifecycleEvent,
    SessionInfo, SubscriptionChange, VersionCounter, epoch_millis_now,
};
use super::persist::{SessionStore, StoredSession};
use super::replay::{Replay, ReplayMessage};
use super::router::wire::{self, Packet, Protocol as _, V4, V5};
use super::router::{Delivery as RouterDelivery, Link, Router, RouterError};
use super::topic;
use crate::config_cache::{CertificateStatus, ConfigCache};
use crate::events::{EventPump, render};

/// How long closing a connection may wait for the client to read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a session with `$aws` filters moves its change-log position
/// past the events it was not sent, looks for events the bus dropped, and
/// (persistent sessions) stores its position.
const POSITION_INTERVAL: Duration = Duration::from_millis(200);

/// How many queued bus deliveries a session writes together, at most.
const DELIVERY_BATCH: usize = 64;

/// How many live registry events a session replaying the change log keeps
/// for when it is done; past that it replays further instead.
const CATCH_UP_BUFFER: usize = 4096;

/// The longest keep-alive a client gets, in seconds: a CONNECT asking for
/// 0 (none) or more gets this (AWS IoT Core message broker and protocol
/// limits and quotas: 30 to 1200 seconds).
pub const MAX_KEEP_ALIVE_SECS: u16 = 1200;

/// The keep-alive a session uses, in seconds, for the one its CONNECT asks
/// for: 0 and values above [`MAX_KEEP_ALIVE_SECS`] become
/// [`MAX_KEEP_ALIVE_SECS`], values below `min` become `min`.
pub fn effective_keep_alive(requested: u16, min: Duration) -> u16 {
    let min = u16::try_from(min.as_secs())
        .unwrap_or(MAX_KEEP_ALIVE_SECS)
        .clamp(1, MAX_KEEP_ALIVE_SECS);
    if requested == 0 {
        MAX_KEEP_ALIVE_SECS
    } else {
        requested.clamp(min, MAX_KEEP_ALIVE_SECS)
    }
}

/// The longest client id AWS IoT accepts, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// How long the registry lookups of the thing a CONNECT names may take;
/// after it the connection proceeds without a thing.
pub const THING_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An X.509 client certificate (TLS); `id` is the certificate id.
    Certificate,
    /// A username and password from the settings (development); `id` is
    /// the configured principal name.
    Password,
}

/// Who a connection acts for, and where its policies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The certificate id, or the configured name of a password principal:
    /// the lifecycle events' `principalIdentifier`.
    pub id: String,
    /// How it authenticated.
    pub kind: PrincipalKind,
    /// Policy attachment targets: the certificate ARN, plus the ARNs of the
    /// groups (and their ancestors) of the thing the connection is
    /// associated with; their attached policies apply.
    pub policy_targets: Vec<String>,
    /// Policies that apply by name, whatever they are attached to (the
    /// password principals of the settings).
    pub policy_names: Vec<String>,
    /// The client certificate's subject fields, in certificate order (the
    /// `iot:Certificate.Subject.*` policy variables); empty without one.
    pub subject: Vec<(CertField, String)>,
    /// The client certificate's issuer fields (`iot:Certificate.Issuer.*`).
    pub issuer: Vec<(CertField, String)>,
}

impl Principal {
    /// The principal of a registered, active client certificate: its id,
    /// its ARN (the policy attachment target) and its subject and issuer
    /// fields (what the TLS listener's `CertificatePrincipal` holds).
    pub fn certificate(
        certificate_id: impl Into<String>,
        certificate_arn: impl Into<String>,
        subject: Vec<(CertField, String)>,
        issuer: Vec<(CertField, String)>,
    ) -> Principal {
        Principal {
            id: certificate_id.into(),
            kind: PrincipalKind::Certificate,
            policy_targets: vec![certificate_arn.into()],
            policy_names: Vec::new(),
            subject,
            issuer,
        }
    }

    /// The policy context of this principal on a connection.
    fn context(&self, client_id: &str, ip: std::net::IpAddr) -> Context {
        let mut context = Context::new()
            .with_client_id(client_id.to_owned())
            .with_source_ip(ip);
        for field in CertField::ALL {
            let values = |fields: &[(CertField, String)]| -> Vec<String> {
                fields
                    .iter()
                    .filter(|(f, _)| *f == field)
                    .map(|(_, v)| v.clone())
                    .collect()
            };
            let subject = values(&self.subject);
            if !subject.is_empty() {
                context = context.with_subject_field(field, subject);
            }
            let issuer = values(&self.issuer);
            if !issuer.is_empty() {
                context = context.with_issuer_field(field, issuer);
            }
        }
        context
    }
}

/// The registry thing a connection is associated with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Thing {
    name: String,
    type_name: Option<String>,
    attributes: HashMap<String, String>,
    /// The thing's groups and their ancestors, without duplicates.
    group_arns: Vec<String>,
}

impl Thing {
    /// `context` with the thing's policy variables.
    fn context(&self, mut context: Context) -> Context {
        context = context
            .with_thing_name(self.name.clone())
            .with_attached(true);
        if let Some(type_name) = &self.type_name {
            context = context.with_thing_type_name(type_name.clone());
        }
        for (name, value) in &self.attributes {
            context = context.with_thing_attribute(name.clone(), value.clone());
        }
        context
    }
}

/// Whether `name` is a valid thing name (`[a-zA-Z0-9:_-]+`, 1–128 bytes).
fn is_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

fn page(next_token: String) -> Option<reg::Page> {
    Some(reg::Page {
        next_token,
        max_results: 0,
    })
}

/// The thing named `client_id` if it exists and one of `targets` is
/// attached to it, with its groups and their ancestors.
async fn lookup_thing(
    mut registry: RegistryClient<Channel>,
    client_id: &str,
    targets: &[String],
) -> Result<Option<Thing>, tonic::Status> {
    let described = registry
        .describe_thing(reg::DescribeThingRequest {
            thing_name: client_id.to_owned(),
        })
        .await;
    let described = match described {
        Ok(thing) => thing.into_inner(),
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
        Err(status) => return Err(status),
    };
    let mut next_token = String::new();
    let attached = loop {
        let principals = registry
            .list_thing_principals(reg::ListThingPrincipalsRequest {
                thing_name: described.thing_name.clone(),
                page: page(next_token),
            })
            .await?
            .into_inner();
        if principals.principals.iter().any(|p| targets.contains(p)) {
            break true;
        }
        if principals.next_token.is_empty() {
            break false;
        }
        next_token = principals.next_token;
    };
    if !attached {
        return Ok(None);
    }
    let mut groups = Vec::new();
    let mut next_token = String::new();
    loop {
        let page = registry
            .list_thing_groups_for_thing(reg::ListThingGroupsForThingRequest {
                thing_name: described.thing_name.clone(),
                page: page(next_token),
            })
            .await?
            .into_inner();
        groups.extend(page.thing_groups);
        if page.next_token.is_empty() {
            break;
        }
        next_token = page.next_token;
    }
    let mut group_arns: Vec<String> = Vec::new();
    for group in groups {
        let ancestors = match registry
            .describe_thing_group(reg::DescribeThingGroupRequest {
                thing_group_name: group.group_name.clone(),
            })
            .await
        {
            Ok(described) => described
                .into_inner()
                .thing_group_metadata
                .map(|m| m.root_to_parent_thing_groups)
                .unwrap_or_default(),
            // Deleted since it was listed.
            Err(status) if status.code() == tonic::Code::NotFound => continue,
            Err(status) => return Err(status),
        };
        for arn in ancestors
            .into_iter()
            .map(|a| a.group_arn)
            .chain([group.group_arn])
        {
            if !group_arns.contains(&arn) {
                group_arns.push(arn);
            }
        }
    }
    Ok(Some(Thing {
        name: described.thing_name,
        type_name: described.thing_type_name,
        attributes: described.attributes,
        group_arns,
    }))
}

/// What the CONNECT and the transport tell the [`Authenticator`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectInfo<'a> {
    /// The MQTT client id.
    pub client_id: &'a str,
    /// The CONNECT's username, if any.
    pub username: Option<&'a str>,
    /// The CONNECT's password, if any.
    pub password: Option<&'a str>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The principal the transport established (the TLS client
    /// certificate), if any.
    pub transport: Option<&'a Principal>,
}

/// Why the authenticator refused a CONNECT: the CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// 3, server unavailable.
    ServerUnavailable,
    /// 4, bad username or password.
    BadUsernameOrPassword,
    /// 5, not authorized.
    NotAuthorized,
}

impl ConnectRefusal {
    fn code(self) -> ConnackCode {
        match self {
            ConnectRefusal::ServerUnavailable => ConnackCode::ServerUnavailable,
            ConnectRefusal::BadUsernameOrPassword => ConnackCode::BadUsernameOrPassword,
            ConnectRefusal::NotAuthorized => ConnackCode::NotAuthorized,
        }
    }
}

/// Decides who a CONNECT acts for. It must not block.
pub type Authenticator =
    Arc<dyn Fn(&ConnectInfo<'_>) -> Result<Principal, ConnectRefusal> + Send + Sync>;

/// One username/password pair of the settings and the principal it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCredential {
    /// The CONNECT username.
    pub username: String,
    /// The CONNECT password.
    pub password: String,
    /// The principal's name (`principalIdentifier`).
    pub principal_id: String,
    /// The policies, by name, that apply to it.
    pub policy_names: Vec<String>,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticator that accepts the transport's principal when there is
/// one (TLS), else a username/password pair of `credentials`; anything
/// else is refused with "bad username or password".
pub fn password_authenticator(credentials: Vec<PasswordCredential>) -> Authenticator {
    Arc::new(move |info: &ConnectInfo<'_>| {
        if let Some(principal) = info.transport {
            return Ok(principal.clone());
        }
        let (Some(username), Some(password)) = (info.username, info.password) else {
            return Err(ConnectRefusal::BadUsernameOrPassword);
        };
        credentials
            .iter()
            .find(|c| {
                constant_time_eq(c.username.as_bytes(), username.as_bytes())
                    & constant_time_eq(c.password.as_bytes(), password.as_bytes())
            })
            .map(|c| Principal {
                id: c.principal_id.clone(),
                kind: PrincipalKind::Password,
                policy_targets: Vec::new(),
                policy_names: c.policy_names.clone(),
                subject: Vec::new(),
                issuer: Vec::new(),
            })
            .ok_or(ConnectRefusal::BadUsernameOrPassword)
    })
}

/// Limits of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// How long a new connection may take to send its CONNECT.
    pub connect_timeout: Duration,
    /// The largest packet accepted, as its remaining length in bytes (AWS:
    /// 128 KB payloads; larger packets end the session with CLIENT_ERROR).
    pub max_packet_size: usize,
    /// The length of the session's `$aws` bus queue.
    pub bus_queue: usize,
    /// How long a takeover waits for the old session to end.
    pub takeover_timeout: Duration,
    /// How long a persistent session is kept after its client went away.
    pub persistent_session_expiry: Duration,
    /// The shortest keep-alive a client gets: shorter ones are raised to it
    /// (AWS IoT: 30 s). Capped at [`MAX_KEEP_ALIVE_SECS`].
    pub min_keep_alive: Duration,
    /// How many persistent sessions (`clean_session=false`, live or away)
    /// one principal may hold; a CONNECT that would create one more is
    /// refused. Resuming one is always allowed.
    pub max_persistent_sessions_per_principal: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            connect_timeout: Duration::from_secs(10),
            max_packet_size: 128 * 1024 + 512,
            bus_queue: super::bus::DEFAULT_QUEUE_CAPACITY,
            takeover_timeout: Duration::from_secs(5),
            persistent_session_expiry: Duration::from_secs(3600),
            min_keep_alive: Duration::from_secs(30),
            max_persistent_sessions_per_principal: 1000,
        }
    }
}

/// A live session, as the client-id table knows it.
struct Live {
    /// Cancelled by a newer session of the same client id.
    kick: CancellationToken,
    /// Cancelled when the session has fully ended.
    done: CancellationToken,
    /// The principal of a persistent session (`clean_session=false`).
    persistent_principal: Option<String>,
}

struct Shared {
    cache: ConfigCache,
    bus: Bus,
    versions: Arc<VersionCounter>,
    region: String,
    account_id: String,
    router: Router,
    settings: SessionSettings,
    /// Where the thing a CONNECT names is looked up; without it no
    /// connection is associated with a thing.
    registry: OnceLock<RegistryClient<Channel>>,
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// The `clean_session=false` sessions that ended.
    persistent: Mutex<HashMap<String, Persisted>>,
    /// Where persistent sessions are stored; without it they last as long
    /// as the gateway runs.
    sessions: OnceLock<SessionStore>,
    /// The event pump, whose progress tells sessions how far the bus has
    /// carried the change log; without it (or a registry) sessions never
    /// replay the log.
    pump: OnceLock<EventPump>,
}

/// The filters a session subscribed to, by where they live.
#[derive(Debug, Clone, Default)]
struct Filters {
    router: HashMap<String, QoS>,
    bus: HashMap<String, QoS>,
    /// The principal that holds the session (for
    /// [`SessionSettings::max_persistent_sessions_per_principal`]).
    principal: String,
}

impl Filters {
    fn from_stored(stored: &StoredSession) -> Filters {
        let qos = |level| QoS::from_level(level).unwrap_or(QoS::AtLeastOnce);
        Filters {
            router: stored
                .router
                .iter()
                .map(|(f, l)| (f.clone(), qos(*l)))
                .collect(),
            bus: stored
                .bus
                .iter()
                .map(|(f, l)| (f.clone(), qos(*l)))
                .collect(),
            principal: stored.principal.clone(),
        }
    }

    fn to_stored(&self, after_sequence: u64, disconnected_at_ms: Option<u64>) -> StoredSession {
        let list = |filters: &HashMap<String, QoS>| {
            let mut list: Vec<(String, u8)> = filters
                .iter()
                .map(|(f, q)| (f.clone(), q.level()))
                .collect();
            list.sort();
            list
        };
        StoredSession {
            bus: list(&self.bus),
            router: list(&self.router),
            after_sequence,
            disconnected_at_ms,
            principal: self.principal.clone(),
        }
    }
}

/// A QoS 1 message sent and not acknowledged when its persistent session
/// ended: sent again, with DUP, when the session resumes (while the gateway
/// runs; registry events are replayed from the change log instead).
#[derive(Debug, Clone)]
struct Unacked {
    pkid: u16,
    topic: Arc<str>,
    payload: Bytes,
    retain: bool,
}

/// A `clean_session=false` session while its client is away.
#[derive(Default)]
struct Persisted {
    filters: Filters,
    /// The change-log position (see [`StoredSession::after_sequence`]).
    after_sequence: u64,
    unacked: Vec<Unacked>,
    /// When the client went away, in epoch milliseconds.
    away_since_ms: u64,
    /// Its place on the `$aws` bus, still subscribed: the lifecycle events
    /// published meanwhile wait in its queue (registry events that do not
    /// fit are replayed from the change log). Not after a restart.
    bus: Option<BusLink>,
}

impl Persisted {
    /// Takes it off the bus (it expired, or a clean session replaced it).
    fn leave_bus(&mut self, bus: &Bus) {
        if let Some(link) = self.bus.take() {
            bus.remove(link.id);
        }
    }
}

/// What every session shares. Cheap to clone.
#[derive(Clone)]
pub struct SessionContext {
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionContext")
            .field("region", &self.shared.region)
            .field("account_id", &self.shared.account_id)
            .field("live", &self.live_sessions())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionContext {
    /// The context of the sessions of one gateway.
    pub fn new(
        cache: ConfigCache,
        bus: Bus,
        versions: Arc<VersionCounter>,
        region: impl Into<String>,
        account_id: impl Into<String>,
        router: Router,
        settings: SessionSettings,
    ) -> SessionContext {
        SessionContext {
            shared: Arc::new(Shared {
                cache,
                bus,
                versions,
                region: region.into(),
                account_id: account_id.into(),
                router,
                settings,
                registry: OnceLock::new(),
                live: Mutex::new(HashMap::new()),
                persistent: Mutex::new(HashMap::new()),
                sessions: OnceLock::new(),
                pump: OnceLock::new(),
            }),
        }
    }

    /// Keeps persistent sessions in `store`, starting with `stored` (what
    /// it held when it was opened), so that they survive a restart. Only
    /// the first store given is used.
    pub fn with_session_store(
        self,
        store: SessionStore,
        stored: HashMap<String, StoredSession>,
    ) -> SessionContext {
        if self.shared.sessions.set(store).is_ok() {
            let now = epoch_millis_now();
            let mut persistent = lock(&self.shared.persistent);
            for (client_id, session) in stored {
                persistent.insert(
                    client_id,
                    Persisted {
                        filters: Filters::from_stored(&session),
                        after_sequence: session.after_sequence,
                        unacked: Vec::new(),
                        away_since_ms: session.disconnected_at_ms.unwrap_or(now),
                        bus: None,
                    },
                );
            }
        }
        self
    }

    /// Whether `principal` may connect `client_id` with
    /// `clean_session=false`: it resumes (or takes over) a persistent
    /// session, or the principal holds fewer than
    /// [`SessionSettings::max_persistent_sessions_per_principal`].
    fn may_hold_another(&self, client_id: &str, principal: &str) -> bool {
        let live = lock(&self.shared.live);
        if live
            .get(client_id)
            .is_some_and(|l| l.persistent_principal.is_some())
        {
            return true;
        }
        let mut held = live
            .values()
            .filter(|l| l.persistent_principal.as_deref() == Some(principal))
            .count();
        drop(live);
        let away = lock(&self.shared.persistent);
        if away.contains_key(client_id) {
            return true;
        }
        held += away
            .values()
            .filter(|p| p.filters.principal == principal)
            .count();
        held < self.shared.settings.max_persistent_sessions_per_principal
    }

    /// Whether a session away since `persisted.away_since_ms` has expired
    /// at `now_ms`.
    fn expired(&self, persisted: &Persisted, now_ms: u64) -> bool {
        let expiry = self.shared.settings.persistent_session_expiry;
        let expiry_ms = u64::try_from(expiry.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(persisted.away_since_ms) > expiry_ms
    }

    /// Forgets the persistent sessions whose client has been away longer
    /// than [`SessionSettings::persistent_session_expiry`], and returns how
    /// many. (A client that comes back after that starts afresh anyway;
    /// this frees what they hold.)
    pub fn expire_sessions(&self) -> usize {
        let now = epoch_millis_now();
        let expired: Vec<String> = {
            let mut persistent = lock(&self.shared.persistent);
            let ids: Vec<String> = persistent
                .iter()
                .filter(|(_, p)| self.expired(p, now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                if let Some(mut gone) = persistent.remove(id) {
                    gone.leave_bus(&self.shared.bus);
                }
            }
            ids
        };
        if let Some(store) = self.shared.sessions.get() {
            for id in &expired {
                store.remove_later(id);
            }
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "persistent sessions expired");
        }
        expired.len()
    }

    /// Lets sessions replay the change log (with the registry of
    /// [`with_registry`](Self::with_registry)) for what the bus did not
    /// carry to them: see the module documentation. Only the first pump
    /// given is used.
    pub fn with_event_pump(self, pump: EventPump) -> SessionContext {
        let _ = self.shared.pump.set(pump);
        self
    }

    /// The client ids of the persistent sessions whose client is away.
    pub fn away_sessions(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.shared.persistent).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Associates connections with registry things through `registry`
    /// (see the module documentation). Only the first registry given is
    /// used.
    pub fn with_registry(self, registry: RegistryClient<Channel>) -> SessionContext {
        let _ = self.shared.registry.set(registry);
        self
    }

    /// The thing the connection of `principal` as `client_id` is associated
    /// with, if any. Never fails: a registry that does not answer within
    /// [`THING_LOOKUP_TIMEOUT`] or fails means no thing.
    async fn associated_thing(&self, client_id: &str, principal: &Principal) -> Option<Thing> {
        let registry = self.shared.registry.get()?;
        if principal.policy_targets.is_empty() || !is_thing_name(client_id) {
            return None;
        }
        let lookup = lookup_thing(registry.clone(), client_id, &principal.policy_targets);
        match tokio::time::timeout(THING_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(thing)) => thing,
            Ok(Err(status)) => {
                tracing::warn!(client_id, error = %status, "thing lookup failed; connecting without a thing");
                None
            }
            Err(_) => {
                tracing::warn!(client_id, timeout = ?THING_LOOKUP_TIMEOUT, "thing lookup timed out; connecting without a thing");
                None
            }
        }
    }

    /// The number of connected client ids.
    pub fn live_sessions(&self) -> usize {
        lock(&self.shared.live).len()
    }

    /// Whether `client_id` has a connected session.
    pub fn is_connected(&self, client_id: &str) -> bool {
        lock(&self.shared.live).contains_key(client_id)
    }

    fn publish_event(&self, event: LifecycleEvent) {
        // Client ids are checked when the CONNECT is read; this keeps any
        // other way out of events built from one MQTT forbids.
        if !valid_str(&event.session().client_id) {
            tracing::warn!("no lifecycle event for a client id MQTT forbids");
            return;
        }
        if let Some((topic, payload)) = event.render() {
            // `iot:Receive` is checked by each receiving session.
            self.shared.bus.publish(&topic, payload, &|_, _| true);
        }
    }
}

/// Policy checks for one principal on one connection.
struct Authz {
    ctx: SessionContext,
    principal: Principal,
    // Boxed: most of a session's size, and read only by policy checks.
    context: Box<Context>,
    /// The policies at a cache revision.
    policies: Mutex<Option<(u64, Policies)>>,
}

/// A principal's policies, shared by the checks of one config revision.
type Policies = Arc<[Arc<Policy>]>;

impl Authz {
    fn new(ctx: SessionContext, principal: Principal, context: Context) -> Authz {
        Authz {
            ctx,
            principal,
            context: Box::new(context),
            policies: Mutex::new(None),
        }
    }

    /// The principal's policies as the cache has them now: computed again
    /// only when the cache's revision moved (every delivery asks).
    fn policies(&self) -> Policies {
        // Read before computing: a change that lands meanwhile makes the
        // next call compute again, never keeps a stale set.
        let revision = self.ctx.shared.cache.revision();
        let mut cached = lock(&self.policies);
        if let Some((at, policies)) = &*cached
            && *at == revision
        {
            return Arc::clone(policies);
        }
        let policies: Policies = self.compute_policies().into();
        *cached = Some((revision, Arc::clone(&policies)));
        policies
    }

    fn compute_policies(&self) -> Vec<Arc<Policy>> {
        let cache = &self.ctx.shared.cache;
        let targets: Vec<&str> = self
            .principal
            .policy_targets
            .iter()
            .map(String::as_str)
            .collect();
        let mut policies = cache.policies_for_targets(&targets);
        for name in &self.principal.policy_names {
            if let Some(p) = cache.policy(name) {
                policies.push(p.policy);
            }
        }
        policies
    }

    fn allowed(&self, action: Action<'_>, resource: &str) -> bool {
        let policies = self.policies();
        let request = Request::new(action, resource, &self.context);
        decide(policies.iter().map(|p| &**p), &request).is_allowed()
    }

    fn shared(&self) -> &Shared {
        &self.ctx.shared
    }

    fn connect_allowed(&self, client_id: &str) -> bool {
        let s = self.shared();
        self.allowed(
            Action::Connect,
            &arn::client(&s.region, &s.account_id, client_id),
        )
    }

    fn topic_allowed(&self, action: Action<'_>, topic: &str) -> bool {
        let s = self.shared();
        self.allowed(action, &arn::topic(&s.region, &s.account_id, topic))
    }

    fn subscribe_allowed(&self, filter: &str) -> bool {
        let s = self.shared();
        self.allowed(
            Action::Subscribe,
            &arn::topic_filter(&s.region, &s.account_id, filter),
        )
    }

    /// Whether a client may publish on `topic` with `retain`: a valid
    /// topic, not `$` unless `$aws/things/...`, `iot:Publish`, and
    /// `iot:RetainPublish` with RETAIN (except on `$` topics, where RETAIN
    /// is ignored: nothing is retained there).
    fn publish_check(&self, topic: &str, retain: bool) -> Result<(), PublishDenial> {
        if topic::validate_topic_name(topic).is_err() {
            return Err(PublishDenial::InvalidTopic);
        }
        if topic::is_aws_events(topic) {
            return Err(PublishDenial::AwsEvents);
        }
        let reserved = topic::is_reserved(topic);
        if reserved && !topic::is_aws_things(topic) {
            return Err(PublishDenial::Reserved);
        }
        if reserved && retain {
            return Err(PublishDenial::RetainOnReserved);
        }
        if !self.topic_allowed(Action::Publish, topic)
            || (retain && !self.topic_allowed(Action::RetainPublish, topic))
        {
            return Err(PublishDenial::NotAuthorized);
        }
        Ok(())
    }

    fn still_valid(&self, client_id: &str) -> bool {
        if self.principal.kind == PrincipalKind::Certificate
            && self.shared().cache.certificate_status(&self.principal.id)
                != Some(CertificateStatus::Active)
        {
            return false;
        }
        self.connect_allowed(client_id)
    }
}

/// Why a client may not publish on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublishDenial {
    /// Not a valid topic name.
    InvalidTopic,
    /// A `$aws/events/...` topic: subscribe-only, whatever the policy says.
    AwsEvents,
    /// Another `$` topic outside `$aws/things/...`.
    Reserved,
    /// RETAIN on a `$` topic ("You can't publish to a reserved topic with
    /// the RETAIN flag set").
    RetainOnReserved,
    /// `iot:Publish` (or `iot:RetainPublish` with RETAIN) is denied.
    NotAuthorized,
}

impl PublishDenial {
    /// The end of a session that publishes anyway.
    fn reason(self) -> DisconnectReason {
        match self {
            // Unsupported publishes on reserved topics: the spec's
            // recommendation (§5.6) for MQTT 3.1.1.
            PublishDenial::InvalidTopic
            | PublishDenial::AwsEvents
            | PublishDenial::Reserved
            | PublishDenial::RetainOnReserved => DisconnectReason::ClientError,
            PublishDenial::NotAuthorized => DisconnectReason::AuthError,
        }
    }

    /// Whether an MQTT 5 session outlives such a publish: QoS 1 gets a
    /// PUBACK "not authorized", QoS 0 is dropped.
    fn acked_in_v5(self) -> bool {
        matches!(
            self,
            PublishDenial::AwsEvents
                | PublishDenial::RetainOnReserved
                | PublishDenial::NotAuthorized
        )
    }
}

/// The MQTT version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5; also used to answer higher levels).
    V5,
}

/// MQTT 5 reason codes the session writes itself (DISCONNECT).
mod reason_code {
    pub(super) const UNSPECIFIED_ERROR: u8 = 0x80;
    pub(super) const MALFORMED_PACKET: u8 = 0x81;
    pub(super) const PROTOCOL_ERROR: u8 = 0x82;
    pub(super) const NOT_AUTHORIZED: u8 = 0x87;
    pub(super) const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub(super) const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub(super) const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub(super) const TOPIC_NAME_INVALID: u8 = 0x90;
    pub(super) const PACKET_TOO_LARGE: u8 = 0x95;
    pub(super) const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub(super) const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub(super) const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub(super) const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
}

/// The reason code of the DISCONNECT an MQTT 5 client is sent when the
/// server ends its session for `reason`; none when the client ended it or
/// the connection is gone.
fn v5_disconnect_code(reason: DisconnectReason) -> Option<u8> {
    use reason_code as rc;
    match reason {
        DisconnectReason::AuthError | DisconnectReason::ForbiddenAccess => Some(rc::NOT_AUTHORIZED),
        DisconnectReason::ClientError => Some(rc::PROTOCOL_ERROR),
        DisconnectReason::DuplicateClientid => Some(rc::SESSION_TAKEN_OVER),
        DisconnectReason::MqttKeepAliveTimeout => Some(rc::KEEP_ALIVE_TIMEOUT),
        DisconnectReason::ServerError => Some(rc::UNSPECIFIED_ERROR),
        DisconnectReason::ServerInitiatedDisconnect => Some(rc::SERVER_SHUTTING_DOWN),
        DisconnectReason::ApiInitiatedDisconnect => Some(rc::ADMINISTRATIVE_ACTION),
        DisconnectReason::Throttled => Some(rc::MESSAGE_RATE_TOO_HIGH),
        DisconnectReason::WebsocketTtlExpiration | DisconnectReason::CustomauthTtlExpiration => {
            Some(rc::MAXIMUM_CONNECT_TIME)
        }
        DisconnectReason::ClientInitiatedDisconnect | DisconnectReason::ConnectionLost => None,
    }
}

/// What the start of a connection says about its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectPeek {
    /// Not enough bytes yet.
    More,
    /// A CONNECT with this protocol level.
    Level(u8),
    /// Not a CONNECT (the codec will say what is wrong).
    Other,
}

/// The protocol level of the CONNECT at the start of `buf`: the byte after
/// the fixed header and the protocol name.
fn peek_connect_level(buf: &[u8]) -> ConnectPeek {
    let Some(&first) = buf.first() else {
        return ConnectPeek::More;
    };
    if first != 0x10 {
        return ConnectPeek::Other;
    }
    // The remaining length: one to four bytes.
    let mut at = 1;
    loop {
        let Some(&byte) = buf.get(at) else {
            return ConnectPeek::More;
        };
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return ConnectPeek::Other;
        }
    }
    let (Some(&hi), Some(&lo)) = (buf.get(at), buf.get(at + 1)) else {
        return ConnectPeek::More;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len > 16 {
        return ConnectPeek::Other;
    }
    match buf.get(at + 2 + name_len) {
        Some(&level) => ConnectPeek::Level(level),
        None => ConnectPeek::More,
    }
}

/// Reads, writes and frames MQTT 3.1.1 or MQTT 5 packets.
struct Wire<S> {
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_packet_size: usize,
    /// Set from the CONNECT by [`Wire::read_connect`].
    version: Version,
}

/// A framing failure.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket closed or failed.
    Closed,
    /// The client sent something that is not MQTT of its version.
    Protocol(wire::Error),
    /// A malformed packet rumqttd's codecs let through: reserved
    /// fixed-header flags that are wrong, or a string MQTT forbids. The
    /// connection is closed (MQTT 3.1.1 §4.8, MQTT 5 §4.13: DISCONNECT 0x81).
    Malformed(&'static str),
    /// A CONNECT refused for what it holds (a client id or will topic MQTT
    /// forbids): the CONNACK it gets.
    Refused(ConnackCode),
}

/// Decodes the packet at the start of `buf`, if a whole one is there. This
/// is the whole decode path of a connection: the fixed header's reserved
/// flags, rumqttd's codec of `version` and the MQTT 5 packets it can't
/// take, then the strings of the packet (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4).
/// It never panics, whatever `buf` holds.
pub(crate) fn decode(
    version: Version,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Packet>, ReadError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_flags(byte1)?;
    let read = match version {
        Version::V311 => V4.read_mut(buf, max_packet_size),
        Version::V5 => {
            if let Some(read) = decode_v5_gaps(buf) {
                return read;
            }
            V5.read_mut(buf, max_packet_size)
        }
    };
    match read {
        Ok(packet) => {
            check_strings(&packet)?;
            Ok(Some(packet))
        }
        Err(wire::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(ReadError::Protocol(e)),
    }
}

/// The fixed header's flags (the low four bits of the first byte) a
/// client's packet must have: 0b0010 for PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE, 0 for the other packets but PUBLISH, whose QoS must not be
/// 3 and whose DUP must be 0 at QoS 0 (MQTT 3.1.1 §2.2.2, §3.3.1; MQTT 5
/// §2.1.3, §3.3.1). rumqttd's codecs don't look at them.
fn check_flags(byte1: u8) -> Result<(), ReadError> {
    let flags = byte1 & 0x0F;
    match byte1 >> 4 {
        0 => Ok(()),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                Err(ReadError::Malformed("PUBLISH with QoS 3"))
            } else if qos == 0 && flags & 0b1000 != 0 {
                Err(ReadError::Malformed("PUBLISH with DUP at QoS 0"))
            } else {
                Ok(())
            }
        }
        6 | 8 | 10 if flags == 0b0010 => Ok(()),
        6 | 8 | 10 => Err(ReadError::Malformed("reserved fixed-header flags")),
        _ if flags == 0 => Ok(()),
        _ => Err(ReadError::Malformed("reserved fixed-header flags")),
    }
}

/// Whether every string in `props` (MQTT 5 user properties) is one MQTT
/// allows.
fn valid_pairs(props: &[(String, String)]) -> bool {
    props.iter().all(|(k, v)| valid_str(k) && valid_str(v))
}

fn valid_str(s: &str) -> bool {
    topic::validate_mqtt_string(s).is_ok()
}

fn valid_opt(s: Option<&String>) -> bool {
    s.is_none_or(|s| valid_str(s))
}

/// Checks every string of a decoded packet (see
/// [`topic::validate_mqtt_string`]): a bad client id refuses the CONNECT
/// with "client identifier not valid", a bad will topic with "topic name
/// invalid"; anything else is a malformed packet. Passwords and
/// authentication data are binary, not strings.
fn check_strings(packet: &Packet) -> Result<(), ReadError> {
    const MALFORMED: ReadError = ReadError::Malformed("a string MQTT forbids");
    let ok = match packet {
        Packet::Connect(connect, props, will, will_props, login) => {
            if !valid_str(&connect.client_id) {
                return Err(ReadError::Refused(ConnackCode::ClientIdentifierNotValid));
            }
            if let Some(will) = will
                && !std::str::from_utf8(&will.topic).is_ok_and(valid_str)
            {
                return Err(ReadError::Refused(ConnackCode::TopicNameInvalid));
            }
            let ok = login.as_ref().is_none_or(|l| valid_str(&l.username))
                && props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties) && valid_opt(p.authentication_method.as_ref())
                })
                && will_props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties)
                        && valid_opt(p.content_type.as_ref())
                        && valid_opt(p.response_topic.as_ref())
                });
            if !ok {
                return Err(ReadError::Refused(ConnackCode::Malformed));
            }
            true
        }
        Packet::Publish(publish, props) => {
            std::str::from_utf8(&publish.topic).is_ok_and(valid_str)
                && props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties)
                        && valid_opt(p.content_type.as_ref())
                        && valid_opt(p.response_topic.as_ref())
                })
        }
        Packet::Subscribe(subscribe, props) => {
            subscribe.filters.iter().all(|f| valid_str(&f.path))
                && props
                    .as_ref()
                    .is_none_or(|p| valid_pairs(&p.user_properties))
        }
        Packet::Unsubscribe(unsubscribe, props) => {
            unsubscribe.filters.iter().all(|f| valid_str(f))
                && props
                    .as_ref()
                    .is_none_or(|p| valid_pairs(&p.user_properties))
        }
        Packet::PubAck(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubRec(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubRel(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubComp(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::Disconnect(_, Some(p)) => {
            valid_pairs(&p.user_properties)
                && valid_opt(p.reason_string.as_ref())
                && valid_opt(p.server_reference.as_ref())
        }
        _ => true,
    };
    if ok { Ok(()) } else { Err(MALFORMED) }
}

/// The MQTT 5 packets rumqttd's v5 reader can't take (see [`wire`]): a
/// CONNACK or UNSUBACK (never sent by a client) and a DISCONNECT with a
/// reason code and no properties.
fn decode_v5_gaps(buf: &mut BytesMut) -> Option<Result<Option<Packet>, ReadError>> {
    let &first = buf.first()?;
    let kind = first >> 4;
    if kind == 2 || kind == 11 {
        return Some(Err(ReadError::Protocol(wire::Error::InvalidPacketType(
            kind,
        ))));
    }
    if first != 0xE0 || buf.get(1) != Some(&1) {
        return None;
    }
    let &code = buf.get(2)?;
    let _ = buf.split_to(3);
    let reason_code = if code == 0x04 {
        wire::DisconnectReasonCode::DisconnectWithWillMessage
    } else {
        wire::DisconnectReasonCode::NormalDisconnection
    };
    Some(Ok(Some(Packet::Disconnect(
        wire::Disconnect { reason_code },
        None,
    ))))
}

impl<S: AsyncRead + AsyncWrite> Wire<S> {
    /// A packet already buffered, if a whole one is.
    fn parse(&mut self) -> Result<Option<Packet>, ReadError> {
        decode(self.version, &mut self.rbuf, self.max_packet_size)
    }

    /// Reads the first packet, choosing the codec from the protocol level
    /// of the CONNECT: 5 and above are read (and answered) as MQTT 5.
    async fn read_connect(&mut self) -> Result<Packet, ReadError> {
        loop {
            match peek_connect_level(&self.rbuf) {
                ConnectPeek::More => self.fill().await?,
                ConnectPeek::Level(level) => {
                    if level >= 5 {
                        self.version = Version::V5;
                    }
                    break;
                }
                ConnectPeek::Other => break,
            }
        }
        self.read().await
    }

    /// Reads more bytes; cancel-safe.
    async fn fill(&mut self) -> Result<(), ReadError> {
        match self.rd.read_buf(&mut self.rbuf).await {
            Ok(0) | Err(_) => Err(ReadError::Closed),
            Ok(_) => Ok(()),
        }
    }

    async fn read(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(packet) = self.parse()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    fn queue(&mut self, packet: Packet) {
        // Writing the packets the session builds can't fail.
        let written = match self.version {
            Version::V311 => V4.write(packet, &mut self.wbuf),
            Version::V5 => V5.write(packet, &mut self.wbuf),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "could not encode an MQTT packet");
        }
    }

    /// Queues an MQTT 5 DISCONNECT with `code` and no properties (written
    /// here: rumqttd's writer gets its length wrong).
    fn queue_v5_disconnect(&mut self, code: u8) {
        self.wbuf.put_slice(&[0xE0, 0x02, code, 0x00]);
    }

    fn queue_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        pkid: u16,
        retain: bool,
        dup: bool,
    ) {
        let v5 = self.version == Version::V5;
        encode_publish(&mut self.wbuf, topic, payload, qos, pkid, retain, dup, v5);
    }

    /// Writes what is queued, failing with [`std::io::ErrorKind::TimedOut`]
    /// when no byte could be written for `stall` (a client that stopped
    /// reading). Cancel-safe: what is not written stays queued.
    async fn flush_progressing(&mut self, stall: Duration) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            match tokio::time::timeout(stall, self.wr.write(&self.wbuf)).await {
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => self.wbuf.advance(n),
                Ok(Err(e)) => return Err(e),
            }
        }
        match tokio::time::timeout(stall, self.wr.flush()).await {
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            Ok(flushed) => flushed,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let out = self.wbuf.split();
        self.wr.write_all(&out).await?;
        self.wr.flush().await
    }

    async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        self.queue(packet);
        self.flush().await
    }

    /// Flushes what is queued and closes the stream, giving up after
    /// [`CLOSE_TIMEOUT`] on a client that does not read.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.flush().await;
            let _ = self.wr.shutdown().await;
        })
        .await;
    }
}

/// What a CONNACK answers, whatever the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnackCode {
    Success,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUsernameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    /// A malformed CONNECT (MQTT 5 only: MQTT 3.1.1 closes the connection).
    Malformed,
    /// A will topic MQTT forbids (MQTT 5 only, as [`ConnackCode::Malformed`]).
    TopicNameInvalid,
    /// A limit of the principal's (MQTT 3.1.1: "not authorized").
    QuotaExceeded,
}

impl ConnackCode {
    /// Whether MQTT 3.1.1 has a CONNACK for this refusal; without one the
    /// connection is closed (a malformed packet, §4.8).
    fn in_v311(self) -> bool {
        !matches!(self, ConnackCode::Malformed | ConnackCode::TopicNameInvalid)
    }
}

/// A CONNACK in `version`'s terms. An MQTT 5 success tells the client the
/// highest QoS served (1) and that shared subscriptions and subscription
/// identifiers are not.
fn connack(version: Version, code: ConnackCode, session_present: bool) -> Packet {
    use wire::ConnectReturnCode as C;
    let (code, properties) = match version {
        Version::V311 => {
            let code = match code {
                ConnackCode::Success => C::Success,
                ConnackCode::UnsupportedProtocolVersion => C::RefusedProtocolVersion,
                ConnackCode::ClientIdentifierNotValid => C::ClientIdentifierNotValid,
                ConnackCode::BadUsernameOrPassword => C::BadUserNamePassword,
                ConnackCode::ServerUnavailable => C::ServiceUnavailable,
                ConnackCode::NotAuthorized | ConnackCode::QuotaExceeded => C::NotAuthorized,
                // Never sent (see `ConnackCode::in_v311`).
                ConnackCode::Malformed | ConnackCode::TopicNameInvalid => C::ServiceUnavailable,
            };
            (code, None)
        }
        Version::V5 => match code {
            ConnackCode::Success => (
                C::Success,
                Some(wire::ConnAckProperties {
                    max_qos: Some(1),
                    shared_subscription_available: Some(0),
                    subscription_identifiers_available: Some(0),
                    ..Default::default()
                }),
            ),
            ConnackCode::UnsupportedProtocolVersion => (C::UnsupportedProtocolVersion, None),
            ConnackCode::ClientIdentifierNotValid => (C::ClientIdentifierNotValid, None),
            ConnackCode::BadUsernameOrPassword => (C::BadUserNamePassword, None),
            ConnackCode::NotAuthorized => (C::NotAuthorized, None),
            ConnackCode::ServerUnavailable => (C::ServerUnavailable, None),
            ConnackCode::Malformed => (C::MalformedPacket, None),
            ConnackCode::TopicNameInvalid => (C::TopicNameInvalid, None),
            ConnackCode::QuotaExceeded => (C::QuotaExceeded, None),
        },
    };
    Packet::ConnAck(
        wire::ConnAck {
            session_present,
            code,
        },
        properties,
    )
}

/// Serves one client connection until it ends. `peer` is the client's
/// address; `transport` the principal the transport established (the TLS
/// client certificate), passed to `authenticate`.
pub async fn run<S>(
    stream: S,
    peer: SocketAddr,
    transport: Option<Principal>,
    ctx: SessionContext,
    authenticate: Authenticator,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Send,
{
    // The CONNECT's handling is boxed and freed once the session is up:
    // an idle connection keeps only what the established session needs.
    let handshake = handshake(stream, peer, transport, &ctx, authenticate, &shutdown);
    let Some(Established {
        mut wire,
        mut state,
        will,
        live,
        version,
        keep_alive,
        clean_session,
    }) = Box::pin(handshake).await
    else {
        return;
    };
    let client_id = state.session.client_id.clone();
    let end_live = |ctx: &SessionContext| {
        let mut table = lock(&ctx.shared.live);
        if table.get(&client_id).is_some_and(|l| Arc::ptr_eq(l, &live)) {
            table.remove(&client_id);
        }
        drop(table);
        live.done.cancel();
    };
    let reason = Box::pin(state.serve(&mut wire, keep_alive, &live.kick, &shutdown)).await;
    tracing::info!(client_id, %reason, "disconnected");
    if wire.version == Version::V5
        && let Some(code) = state.v5_disconnect.or_else(|| v5_disconnect_code(reason))
    {
        wire.queue_v5_disconnect(code);
    }

    // Teardown: will, router link, bus, stored filters, event.
    if (reason.sends_last_will() || state.will_on_disconnect)
        && let Some((topic, w)) = will
        && state.authz.publish_check(&topic, w.retain).is_ok()
    {
        // A will the retained store has no room for is still published.
        let message = w.message.clone();
        if let Err(RouterError::RetainedQuota(_)) =
            Box::pin(state.route(&topic, w.message, w.retain)).await
        {
            let _ = Box::pin(state.route(&topic, message, false)).await;
        }
    }
    if let Some(link) = &mut state.link {
        let _ = link.disconnect().await;
    }
    if clean_session && let Some(bus) = &state.bus {
        ctx.shared.bus.remove(bus.id);
    }
    if !clean_session {
        let persisted = state.persisted();
        if let Some(store) = ctx.shared.sessions.get() {
            store.save_later(
                &client_id,
                persisted
                    .filters
                    .to_stored(persisted.after_sequence, Some(persisted.away_since_ms)),
            );
        }
        lock(&ctx.shared.persistent).insert(client_id.clone(), persisted);
    }
    wire.close().await;
    ctx.shared.versions.disconnect(&client_id, version);
    ctx.publish_event(LifecycleEvent::Disconnected(Disconnected {
        session: state.session.clone(),
        timestamp_ms: epoch_millis_now(),
        reason,
        version_number: version,
    }));
    end_live(&ctx);
}

/// A session past its CONNACK.
struct Established<S> {
    wire: Wire<S>,
    state: Session,
    will: Option<(String, wire::LastWill)>,
    live: Arc<Live>,
    version: u64,
    keep_alive: Duration,
    clean_session: bool,
}

/// Reads and answers the CONNECT; `None` when the connection ended there.
async fn handshake<S>(
    stream: S,
    peer: SocketAddr,
    transport: Option<Principal>,
    ctx: &SessionContext,
    authenticate: Authenticator,
    shutdown: &CancellationToken,
) -> Option<Established<S>>
where
    S: AsyncRead + AsyncWrite + Send,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut wire = Wire {
        rd,
        wr,
        rbuf: BytesMut::with_capacity(128),
        wbuf: BytesMut::with_capacity(64),
        max_packet_size: ctx.shared.settings.max_packet_size,
        version: Version::V311,
    };
    let first = tokio::select! {
        () = shutdown.cancelled() => return None,
        read = tokio::time::timeout(ctx.shared.settings.connect_timeout, wire.read_connect()) => read,
    };
    let mqtt_version = wire.version;
    let (connect, will, login) = match first {
        Ok(Ok(Packet::Connect(connect, _, will, _, login))) => (connect, will, login),
        Ok(Err(ReadError::Refused(code))) => {
            tracing::info!(%peer, ?code, "CONNECT refused for a string MQTT forbids");
            if mqtt_version == Version::V5 || code.in_v311() {
                let _ = wire.send(connack(mqtt_version, code, false)).await;
            }
            wire.close().await;
            return None;
        }
        Ok(Err(ReadError::Malformed(what))) => {
            tracing::debug!(%peer, what, "malformed CONNECT; closing");
            if mqtt_version == Version::V5 {
                let _ = wire
                    .send(connack(mqtt_version, ConnackCode::Malformed, false))
                    .await;
            }
            wire.close().await;
            return None;
        }
        Ok(Err(ReadError::Protocol(wire::Error::InvalidProtocolLevel(_)))) => {
            let _ = wire
                .send(connack(
                    mqtt_version,
                    ConnackCode::UnsupportedProtocolVersion,
                    false,
                ))
                .await;
            wire.close().await;
            return None;
        }
        other => {
            tracing::debug!(%peer, ?other, "no CONNECT; closing");
            wire.close().await;
            return None;
        }
    };
    let client_id = connect.client_id;
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
        let _ = wire
            .send(connack(
                mqtt_version,
                ConnackCode::ClientIdentifierNotValid,
                false,
            ))
            .await;
        wire.close().await;
        return None;
    }
    let info = ConnectInfo {
        client_id: &client_id,
        username: login.as_ref().map(|l| l.username.as_str()),
        password: login.as_ref().map(|l| l.password.as_str()),
        peer,
        transport: transport.as_ref(),
    };
    let mut principal = match authenticate(&info) {
        Ok(principal) => principal,
        Err(refusal) => {
            tracing::info!(%peer, client_id, ?refusal, "CONNECT refused");
            let _ = wire
                .send(connack(mqtt_version, refusal.code(), false))
                .await;
            wire.close().await;
            return None;
        }
    };
    let ip = peer.ip();
    let thing = tokio::select! {
        () = shutdown.cancelled() => {
            wire.close().await;
            return None;
        }
        thing = Box::pin(ctx.associated_thing(&client_id, &principal)) => thing,
    };
    let mut context = principal.context(&client_id, ip);
    if let Some(thing) = &thing {
        context = thing.context(context);
        for arn in &thing.group_arns {
            if !principal.policy_targets.contains(arn) {
                principal.policy_targets.push(arn.clone());
            }
        }
    }
    let session = SessionInfo {
        client_id: client_id.clone(),
        thing_name: thing.map(|t| t.name),
        session_identifier: uuid::Uuid::new_v4().to_string(),
        principal_identifier: principal.id.clone(),
    };
    let authz = Authz::new(ctx.clone(), principal, context);
    let will = will.and_then(|w| {
        let topic = String::from_utf8(w.topic.to_vec()).ok()?;
        Some((topic, w))
    });
    let will_check = will.as_ref().map_or(Ok(()), |(topic, w)| {
        if w.qos == wire::QoS::ExactlyOnce {
            return Err(PublishDenial::NotAuthorized);
        }
        authz.publish_check(topic, w.retain)
    });
    if will_check.is_err() || !authz.connect_allowed(&client_id) {
        tracing::info!(%peer, client_id, principal = %authz.principal.id, "iot:Connect denied");
        // MQTT 5 says why a will topic is refused; MQTT 3.1.1 has no code
        // for it.
        let code = if mqtt_version == Version::V5 && will_check == Err(PublishDenial::InvalidTopic)
        {
            ConnackCode::TopicNameInvalid
        } else {
            ConnackCode::NotAuthorized
        };
        let _ = wire.send(connack(mqtt_version, code, false)).await;
        wire.close().await;
        ctx.publish_event(LifecycleEvent::ConnectFailed(ConnectFailed {
            session,
            timestamp_ms: epoch_millis_now(),
            reason: ConnectFailureReason::AuthorizationFailed,
            ip_address: ip,
        }));
        return None;
    }

    // Take over a live session of the same client id.
    if !connect.clean_session && !ctx.may_hold_another(&client_id, &authz.principal.id) {
        tracing::info!(%peer, client_id, principal = %authz.principal.id, "too many persistent sessions");
        let _ = wire
            .send(connack(mqtt_version, ConnackCode::QuotaExceeded, false))
            .await;
        wire.close().await;
        return None;
    }

    let live = Arc::new(Live {
        kick: CancellationToken::new(),
        done: CancellationToken::new(),
        persistent_principal: (!connect.clean_session).then(|| authz.principal.id.clone()),
    });
    let previous = lock(&ctx.shared.live).insert(client_id.clone(), Arc::clone(&live));
    if let Some(previous) = previous {
        previous.kick.cancel();
        let waited = tokio::time::timeout(
            ctx.shared.settings.takeover_timeout,
            previous.done.cancelled(),
        )
        .await;
        if waited.is_err() {
            tracing::warn!(client_id, "the session taken over did not end in time");
        }
    }
    let end_live = |ctx: &SessionContext| {
        let mut table = lock(&ctx.shared.live);
        if table.get(&client_id).is_some_and(|l| Arc::ptr_eq(l, &live)) {
            table.remove(&client_id);
        }
        drop(table);
        live.done.cancel();
    };

    let clean_session = connect.clean_session;
    let mut stored = lock(&ctx.shared.persistent).remove(&client_id);
    let expired = stored
        .as_ref()
        .is_some_and(|s| ctx.expired(s, epoch_millis_now()));
    if (clean_session || expired)
        && let Some(stored) = stored.as_mut()
    {
        stored.leave_bus(&ctx.shared.bus);
    }
    if (clean_session || expired)
        && stored.is_some()
        && let Some(store) = ctx.shared.sessions.get()
    {
        Box::pin(store.remove(&client_id)).await;
    }
    let stored = stored.filter(|_| !clean_session && !expired);
    let session_present = stored.is_some();
    // The gateway's record is the authority: without one, rumqttd starts
    // the client afresh too. A clean session gets its router link when it
    // first needs one (rumqttd's buffers are most of an idle link's cost).
    let link = if session_present {
        Box::pin(ctx.shared.router.link(&client_id, false))
            .await
            .map(Some)
    } else if !clean_session {
        Box::pin(ctx.shared.router.fresh_link(&client_id, false))
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    let link = match link {
        Ok(link) => link,
        Err(e) => {
            tracing::error!(client_id, error = %e, "no router link");
            if let Some(stored) = stored {
                lock(&ctx.shared.persistent).insert(client_id.clone(), stored);
            }
            let _ = wire
                .send(connack(mqtt_version, ConnackCode::ServerUnavailable, false))
                .await;
            wire.close().await;
            end_live(ctx);
            return None;
        }
    };
    // Registry events up to here were published before this session had
    // a filter on the bus: a new session starts after them.
    let pump = ctx.shared.pump.get();
    let mut events = EventTrack {
        processed: pump.map_or(0, EventPump::started),
        saved: None,
        in_flight: BTreeMap::new(),
        dropped: Arc::default(),
        catch_up: None,
    };
    let mut filters = Filters {
        principal: authz.principal.id.clone(),
        ..Filters::default()
    };
    let mut unacked = Vec::new();
    let mut link = link;
    // A session is on the bus once it has a `$aws` filter.
    let mut bus = None;
    if let Some(mut stored) = stored {
        if let Some(on_bus) = stored.bus.take() {
            // Still subscribed, with what came meanwhile in its queue.
            events.dropped = on_bus.dropped.clone();
            bus = Some(on_bus);
        } else if !stored.filters.bus.is_empty() {
            let on_bus = BusLink::register(&ctx.shared.bus, ctx.shared.settings.bus_queue);
            for (filter, qos) in &stored.filters.bus {
                let _ = ctx.shared.bus.subscribe(on_bus.id, filter, *qos);
            }
            events.dropped = on_bus.dropped.clone();
            bus = Some(on_bus);
        }
        if let Some(link) = link.as_mut()
            && !link.session_present()
        {
            // The router forgot the session (a gateway restart).
            for filter in stored.filters.router.keys() {
                let _ = link.resubscribe(filter);
            }
        }
        filters = stored.filters;
        filters.principal = authz.principal.id.clone();
        unacked = stored.unacked;
        events.processed = stored.after_sequence;
        events.saved = Some(stored.after_sequence);
    }
    let keep_alive_secs =
        effective_keep_alive(connect.keep_alive, ctx.shared.settings.min_keep_alive);
    let mut ack = connack(mqtt_version, ConnackCode::Success, session_present);
    if let Packet::ConnAck(_, Some(properties)) = &mut ack
        && keep_alive_secs != connect.keep_alive
    {
        // MQTT 5 §3.2.2.3.14: the keep-alive the server uses instead.
        properties.server_keep_alive = Some(keep_alive_secs);
    }
    if wire.send(ack).await.is_err() {
        // Never connected as far as the client knows: no events. A
        // persistent session stays as it was.
        if !clean_session && session_present {
            lock(&ctx.shared.persistent).insert(
                client_id.clone(),
                Persisted {
                    filters,
                    after_sequence: events.processed,
                    unacked,
                    away_since_ms: epoch_millis_now(),
                    bus,
                },
            );
        } else if let Some(bus) = bus {
            ctx.shared.bus.remove(bus.id);
        }
        if let Some(link) = link.as_mut() {
            let _ = link.disconnect().await;
        }
        wire.close().await;
        end_live(ctx);
        return None;
    }
    let version = ctx.shared.versions.connect(&client_id);
    ctx.publish_event(LifecycleEvent::Connected(Connected {
        session: session.clone(),
        timestamp_ms: epoch_millis_now(),
        ip_address: ip,
        version_number: version,
    }));
    tracing::info!(%peer, client_id, principal = %authz.principal.id, "connected");

    let mut state = Session {
        authz,
        session,
        link,
        bus,
        filters,
        next_pkid: 0,
        inflight: HashMap::new(),
        clean_session,
        events,
        v5_disconnect: None,
        will_on_disconnect: false,
    };
    state.resend(&mut wire, unacked);
    state.resume_events(session_present);
    let keep_alive = Duration::from_millis(u64::from(keep_alive_secs) * 1500);
    Some(Established {
        wire,
        state,
        will,
        live,
        version,
        keep_alive,
        clean_session,
    })
}

/// The state of an established session.
struct Session {
    authz: Authz,
    session: SessionInfo,
    /// rumqttd's link, once the session needs one (see [`Session::link`]).
    link: Option<Link>,
    /// The session on the `$aws` bus, once it has a `$aws` filter.
    bus: Option<BusLink>,
    filters: Filters,
    next_pkid: u16,
    /// QoS 1 deliveries waiting for their PUBACK, by packet id.
    inflight: HashMap<u16, Inflight>,
    clean_session: bool,
    events: EventTrack,
    /// The reason code of the DISCONNECT an MQTT 5 client gets when the
    /// session ends, when more precise than its `disconnectReason` says.
    v5_disconnect: Option<u8>,
    /// An MQTT 5 client's DISCONNECT asked for its will (0x04).
    will_on_disconnect: bool,
}

/// What a QoS 1 delivery waiting for its PUBACK was.
enum Inflight {
    /// The registry event at this change-log sequence.
    Event(u64),
    /// Any other message; kept for a resend when the session is persistent.
    Message(Option<Unacked>),
}

/// Where a session is in the registry's change log.
///
/// Registry events reach a session from the bus in change-log order, each
/// with its sequence. `processed` is how far the session has handled the
/// log: every event up to it was delivered, or is not for this session.
/// It moves with each event delivered, and (every [`POSITION_INTERVAL`])
/// to the pump's cursor when the session's queue is empty: every event up
/// to the cursor was published before, so it was delivered or dropped. The
/// session's position, stored for a persistent session, is `processed`
/// held back before the first QoS 1 event not yet acknowledged.
///
/// When the bus dropped an event for the session (a full queue), or a
/// persistent session resumes behind the pump, the session replays the
/// log after `processed` itself ([`CatchUp`]) while it keeps the bus's
/// live events aside. The replay is done once it has passed both the last
/// event whose publishing had started when it began (later ones are all
/// on the bus) and every dropped one; then the kept events after
/// `processed` are delivered, and the bus takes over again.
struct EventTrack {
    processed: u64,
    /// The position last stored.
    saved: Option<u64>,
    /// QoS 1 registry events sent and not acknowledged: sequence → packet id.
    in_flight: BTreeMap<u64, u16>,
    /// The highest sequence the bus (or the catch-up buffer) dropped.
    dropped: Arc<AtomicU64>,
    catch_up: Option<CatchUp>,
}

impl EventTrack {
    fn position(&self) -> u64 {
        match self.in_flight.keys().next() {
            Some(first) => self.processed.min(first - 1),
            None => self.processed,
        }
    }
}

/// A session replaying the change log.
struct CatchUp {
    replay: Replay,
    /// The last event whose publishing had started when the replay began.
    target: u64,
    /// Live registry events from the bus, kept until the replay is done.
    buffer: VecDeque<BusDelivery>,
}

/// A session's place on the `$aws` bus.
struct BusLink {
    id: SubscriberId,
    rx: tokio::sync::mpsc::Receiver<BusDelivery>,
    /// The bus's record of the highest registry event it dropped for it.
    dropped: Arc<AtomicU64>,
}

impl BusLink {
    fn register(bus: &Bus, capacity: usize) -> BusLink {
        let (id, rx) = bus.register(capacity);
        let dropped = bus.dropped_sequence(id).unwrap_or_default();
        BusLink { id, rx, dropped }
    }
}

/// The next delivery from the bus; never resolves off the bus.
async fn next_bus_delivery(bus: &mut Option<BusLink>) -> Option<BusDelivery> {
    match bus {
        Some(bus) => bus.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next delivery from rumqttd; never resolves without a link.
async fn next_delivery(link: &mut Option<Link>) -> RouterDelivery {
    match link {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

/// The next message of a replay; never resolves without one.
async fn next_replay(catch_up: &mut Option<CatchUp>) -> Option<ReplayMessage> {
    match catch_up {
        Some(catch_up) => catch_up.replay.next().await,
        None => std::future::pending().await,
    }
}

/// The highest QoS granted to a filter in `filters` matching `topic`, if
/// one does.
fn matching_qos(filters: &HashMap<String, QoS>, topic: &str) -> Option<QoS> {
    filters
        .iter()
        .filter(|(filter, _)| topic::matches(filter, topic))
        .map(|(_, qos)| *qos)
        .max()
}

type Step = Result<(), DisconnectReason>;

impl Session {
    async fn serve<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        keep_alive: Duration,
        kick: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> DisconnectReason {
        let mut changes = self.authz.ctx.shared.cache.subscribe_changes();
        changes.mark_unchanged();
        let mut last_heard = Instant::now();
        let mut position_tick = tokio::time::interval(POSITION_INTERVAL);
        position_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let tracks_position = self.authz.ctx.shared.pump.get().is_some();
        loop {
            // Packets that came with the CONNECT or the last read.
            loop {
                match wire.parse() {
                    Ok(Some(packet)) => {
                        if let Err(reason) = Box::pin(self.handle(wire, packet)).await {
                            return reason;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        match e {
                            ReadError::Protocol(wire::Error::PayloadSizeLimitExceeded(_)) => {
                                self.v5_disconnect = Some(reason_code::PACKET_TOO_LARGE);
                            }
                            ReadError::Malformed(what) => {
                                tracing::info!(client_id = %self.session.client_id, what, "malformed packet");
                                self.v5_disconnect = Some(reason_code::MALFORMED_PACKET);
                            }
                            _ => {}
                        }
                        return DisconnectReason::ClientError;
                    }
                }
            }
            // A client that does not read must not hold up a takeover or
            // the shutdown.
            // Nothing written for 1.5 × keep-alive ends the session as
            // silence does.
            let flushed = tokio::select! {
                flushed = wire.flush_progressing(keep_alive) => flushed,
                () = kick.cancelled() => return DisconnectReason::DuplicateClientid,
                () = shutdown.cancelled() => return DisconnectReason::ServerInitiatedDisconnect,
            };
            if let Err(e) = flushed {
                tracing::debug!(error = %e, "write failed");
                if e.kind() == std::io::ErrorKind::TimedOut {
                    return DisconnectReason::MqttKeepAliveTimeout;
                }
                return DisconnectReason::ConnectionLost;
            }
            let deadline = last_heard + keep_alive;
            let step: Step = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(DisconnectReason::ServerInitiatedDisconnect),
                () = kick.cancelled() => Err(DisconnectReason::DuplicateClientid),
                () = tokio::time::sleep_until(deadline), if !keep_alive.is_zero() => {
                    Err(DisconnectReason::MqttKeepAliveTimeout)
                }
                read = wire.fill() => match read {
                    Ok(()) => {
                        last_heard = Instant::now();
                        Ok(())
                    }
                    Err(_) => Err(DisconnectReason::ConnectionLost),
                },
                delivery = next_delivery(&mut self.link) => match delivery {
                    RouterDelivery::Message { topic, payload, retain: true } => {
                        // A retained message queued by a SUBSCRIBE goes only
                        // to a filter still subscribed.
                        if let Some(qos) = matching_qos(&self.filters.router, &topic) {
                            self.deliver(wire, &topic, &payload, qos, true, None);
                        }
                        Ok(())
                    }
                    RouterDelivery::Message { topic, payload, retain: false } => {
                        let qos = max_qos(&self.filters.router, &topic);
                        self.deliver(wire, &topic, &payload, qos, false, None);
                        Ok(())
                    }
                    RouterDelivery::Disconnected => Err(DisconnectReason::ServerError),
                },
                Some(delivery) = next_bus_delivery(&mut self.bus) => {
                    self.on_bus(wire, delivery);
                    // What else is queued goes out with it, in one write.
                    for _ in 1..DELIVERY_BATCH {
                        let Some(next) = self.bus.as_mut().and_then(|bus| bus.rx.try_recv().ok()) else {
                            break;
                        };
                        self.on_bus(wire, next);
                    }
                    Ok(())
                }
                message = next_replay(&mut self.events.catch_up) => {
                    self.on_replay(wire, message);
                    Ok(())
                }
                _ = position_tick.tick(), if tracks_position && !self.filters.bus.is_empty() => {
                    self.on_tick();
                    Ok(())
                }
                Ok(()) = changes.changed() => {
                    if self.authz.still_valid(&self.session.client_id) {
                        Ok(())
                    } else {
                        Err(DisconnectReason::AuthError)
                    }
                }
            };
            if let Err(reason) = step {
                return reason;
            }
        }
    }

    /// Queues a delivery the client may receive, at `qos`; `sequence` is
    /// the change-log sequence of a registry event.
    fn deliver<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        sequence: Option<u64>,
    ) {
        if !self.authz.topic_allowed(Action::Receive, topic) {
            tracing::debug!(client_id = %self.session.client_id, topic, "iot:Receive denied");
            return;
        }
        let pkid = match qos {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => {
                let inflight = match sequence {
                    Some(sequence) => Inflight::Event(sequence),
                    None if !self.clean_session => Inflight::Message(Some(Unacked {
                        pkid: 0,
                        topic: Arc::from(topic),
                        payload: Bytes::copy_from_slice(payload),
                        retain,
                    })),
                    None => Inflight::Message(None),
                };
                match self.allocate_pkid(inflight) {
                    Some(pkid) => {
                        if let Some(sequence) = sequence {
                            self.events.in_flight.insert(sequence, pkid);
                        }
                        pkid
                    }
                    None => {
                        tracing::warn!(client_id = %self.session.client_id, "no free packet id; delivery dropped");
                        if let Some(sequence) = sequence {
                            // Replayed from the log later.
                            self.events.dropped.fetch_max(sequence, Ordering::SeqCst);
                        }
                        return;
                    }
                }
            }
        };
        wire.queue_publish(topic, payload, qos, pkid, retain, false);
    }

    fn allocate_pkid(&mut self, inflight: Inflight) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if let std::collections::hash_map::Entry::Vacant(entry) =
                self.inflight.entry(self.next_pkid)
            {
                entry.insert(inflight);
                return Some(self.next_pkid);
            }
        }
        None
    }

    /// Sends again, with DUP, the QoS 1 messages a persistent session had
    /// not acknowledged when it ended, with their packet ids.
    fn resend<S: AsyncRead + AsyncWrite>(&mut self, wire: &mut Wire<S>, unacked: Vec<Unacked>) {
        for message in unacked {
            if !self.authz.topic_allowed(Action::Receive, &message.topic) {
                continue;
            }
            wire.queue_publish(
                &message.topic,
                &message.payload,
                QoS::AtLeastOnce,
                message.pkid,
                message.retain,
                true,
            );
            self.next_pkid = self.next_pkid.max(message.pkid);
            self.inflight
                .insert(message.pkid, Inflight::Message(Some(message)));
        }
    }

    /// What is kept of this session when its client goes away (its place
    /// on the bus with it).
    fn persisted(&mut self) -> Persisted {
        let mut unacked: Vec<Unacked> = self
            .inflight
            .iter()
            .filter_map(|(pkid, inflight)| match inflight {
                Inflight::Message(Some(message)) => Some(Unacked {
                    pkid: *pkid,
                    ..message.clone()
                }),
                _ => None,
            })
            .collect();
        unacked.sort_by_key(|m| m.pkid);
        Persisted {
            filters: self.filters.clone(),
            after_sequence: self.events.position(),
            unacked,
            away_since_ms: epoch_millis_now(),
            bus: self.bus.take(),
        }
    }

    /// After CONNECT: a resumed session replays the events published while
    /// it was away, if any may match its filters.
    fn resume_events(&mut self, resumed: bool) {
        let Some(pump) = self.authz.ctx.shared.pump.get() else {
            return;
        };
        let started = pump.started();
        if !resumed || self.filters.bus.is_empty() {
            self.events.processed = self.events.processed.max(started);
        } else if self.events.processed < started {
            self.start_catch_up(started);
        }
    }

    fn start_catch_up(&mut self, target: u64) {
        let Some(registry) = self.authz.ctx.shared.registry.get() else {
            return;
        };
        if self.events.catch_up.is_some() {
            return;
        }
        tracing::debug!(
            client_id = %self.session.client_id,
            after_sequence = self.events.processed,
            target,
            "replaying the change log"
        );
        self.events.catch_up = Some(CatchUp {
            replay: Replay::spawn(registry.clone(), self.events.processed),
            target,
            buffer: VecDeque::new(),
        });
    }

    /// A delivery from the bus.
    fn on_bus<S: AsyncRead + AsyncWrite>(&mut self, wire: &mut Wire<S>, delivery: BusDelivery) {
        let Some(sequence) = delivery.sequence else {
            let (topic, payload, qos) = (delivery.topic, delivery.payload, delivery.qos);
            self.deliver(wire, &topic, &payload, qos, false, None);
            return;
        };
        if let Some(catch_up) = &mut self.events.catch_up {
            if catch_up.buffer.len() < CATCH_UP_BUFFER {
                catch_up.buffer.push_back(delivery);
            } else {
                self.events.dropped.fetch_max(sequence, Ordering::SeqCst);
            }
            return;
        }
        self.live_event(wire, &delivery, sequence);
        if self.events.dropped.load(Ordering::SeqCst) > self.events.processed {
            self.start_catch_up(
                self.authz
                    .ctx
                    .shared
                    .pump
                    .get()
                    .map_or(0, EventPump::started),
            );
        }
    }

    /// A registry event from the bus, once the session is not replaying.
    fn live_event<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        delivery: &BusDelivery,
        sequence: u64,
    ) {
        if sequence <= self.events.processed {
            // Sent already (by a replay, or before a restart).
            return;
        }
        self.deliver(
            wire,
            &delivery.topic,
            &delivery.payload,
            delivery.qos,
            false,
            Some(sequence),
        );
        self.events.processed = sequence;
    }

    fn on_replay<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        message: Option<ReplayMessage>,
    ) {
        match message {
            Some(ReplayMessage::Events(events)) => {
                let cache = self.authz.ctx.shared.cache.clone();
                for event in events {
                    if event.sequence <= self.events.processed {
                        continue;
                    }
                    if let Ok(rendered) = render(&event)
                        && cache.event_enabled(rendered.gate.key())
                        && let Some(qos) = matching_qos(&self.filters.bus, &rendered.topic)
                    {
                        self.deliver(
                            wire,
                            &rendered.topic,
                            &rendered.payload,
                            qos,
                            false,
                            Some(event.sequence),
                        );
                    }
                    self.events.processed = event.sequence;
                }
            }
            Some(ReplayMessage::Pruned) => {}
            Some(ReplayMessage::Wiped) => {
                self.events.processed = 0;
                self.events.in_flight.clear();
                self.events.dropped.store(0, Ordering::SeqCst);
                if let Some(catch_up) = &mut self.events.catch_up {
                    catch_up.target = 0;
                    catch_up.buffer.clear();
                }
            }
            None => {
                // The replay task is gone: start another.
                let target = self.events.catch_up.take().map_or(0, |c| c.target);
                self.start_catch_up(target);
                return;
            }
        }
        let done = self.events.catch_up.as_ref().is_some_and(|c| {
            self.events.processed >= c.target.max(self.events.dropped.load(Ordering::SeqCst))
        });
        if done && let Some(catch_up) = self.events.catch_up.take() {
            tracing::debug!(
                client_id = %self.session.client_id,
                processed = self.events.processed,
                kept = catch_up.buffer.len(),
                "change log replayed"
            );
            for delivery in &catch_up.buffer {
                if let Some(sequence) = delivery.sequence {
                    self.live_event(wire, delivery, sequence);
                }
            }
        }
    }

    /// Every [`POSITION_INTERVAL`] while the session has `$aws` filters.
    fn on_tick(&mut self) {
        let Some(pump) = self.authz.ctx.shared.pump.get() else {
            return;
        };
        if self.events.catch_up.is_none() {
            // In this order: every event up to `handled` was published
            // (delivered or dropped) before the queue is looked at.
            let handled = pump.cursor();
            let empty = self.bus.as_ref().is_none_or(|bus| bus.rx.is_empty());
            let dropped = self.events.dropped.load(Ordering::SeqCst);
            if dropped > self.events.processed {
                self.start_catch_up(pump.started());
            } else if empty {
                self.events.processed = self.events.processed.max(handled);
            }
        }
        self.save_position();
    }

    /// Stores a persistent session's position with the next write, if it
    /// moved.
    fn save_position(&mut self) {
        if self.clean_session {
            return;
        }
        let Some(store) = self.authz.ctx.shared.sessions.get() else {
            return;
        };
        let position = self.events.position();
        if self.events.saved != Some(position) {
            store.save_later(
                &self.session.client_id,
                self.filters.to_stored(position, None),
            );
            self.events.saved = Some(position);
        }
    }

    /// Stores a persistent session now (its filters changed).
    async fn store_now(&mut self) {
        if self.clean_session {
            return;
        }
        let Some(store) = self.authz.ctx.shared.sessions.get() else {
            return;
        };
        let position = self.events.position();
        store
            .save(
                &self.session.client_id,
                self.filters.to_stored(position, None),
            )
            .await;
        self.events.saved = Some(position);
    }

    async fn handle<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        packet: Packet,
    ) -> Step {
        match packet {
            Packet::PingReq(_) => wire.queue(Packet::PingResp(wire::PingResp)),
            Packet::Disconnect(disconnect, _) => {
                self.will_on_disconnect =
                    disconnect.reason_code == wire::DisconnectReasonCode::DisconnectWithWillMessage;
                return Err(DisconnectReason::ClientInitiatedDisconnect);
            }
            Packet::PubAck(ack, _) => {
                if let Some(Inflight::Event(sequence)) = self.inflight.remove(&ack.pkid) {
                    self.events.in_flight.remove(&sequence);
                }
            }
            Packet::Publish(publish, _) => self.publish(wire, publish).await?,
            Packet::Subscribe(subscribe, _) => {
                if subscribe
                    .filters
                    .iter()
                    .any(|f| !topic::is_reserved(&f.path))
                    && let Err(e) = self.link().await
                {
                    tracing::error!(error = %e, "no router link");
                    return Err(DisconnectReason::ServerError);
                }
                self.subscribe(wire, subscribe);
                self.store_now().await;
            }
            Packet::Unsubscribe(unsubscribe, _) => {
                self.unsubscribe(wire, unsubscribe);
                self.store_now().await;
            }
            // A second CONNECT, QoS 2 flow packets (QoS 2 is refused), or
            // packets only a server sends.
            _ => return Err(DisconnectReason::ClientError),
        }
        Ok(())
    }

    async fn publish<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        publish: wire::Publish,
    ) -> Step {
        // QoS and packet id are crate-private in rumqttd; its serialization
        // puts them in byte 0 (bits 1-2) and bytes 1-2.
        let head = publish.serialize();
        let qos = (head[0] >> 1) & 0b11;
        let pkid = u16::from_be_bytes([head[1], head[2]]);
        drop(head);
        if qos > 1 {
            self.v5_disconnect = Some(reason_code::QOS_NOT_SUPPORTED);
            return Err(DisconnectReason::ClientError);
        }
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            self.v5_disconnect = Some(reason_code::TOPIC_NAME_INVALID);
            return Err(DisconnectReason::ClientError);
        };
        if let Err(denial) = self.authz.publish_check(topic, publish.retain) {
            let reason = denial.reason();
            if wire.version == Version::V5 && denial.acked_in_v5() {
                tracing::info!(client_id = %self.session.client_id, topic, ?denial, qos, "PUBLISH refused; session kept");
                if qos == 1 {
                    wire.queue(Packet::PubAck(
                        wire::PubAck {
                            pkid,
                            reason: wire::PubAckReason::NotAuthorized,
                        },
                        None,
                    ));
                }
                return Ok(());
            }
            tracing::info!(client_id = %self.session.client_id, topic, %reason, "PUBLISH refused");
            match denial {
                PublishDenial::InvalidTopic => {
                    self.v5_disconnect = Some(reason_code::TOPIC_NAME_INVALID);
                }
                PublishDenial::Reserved => self.v5_disconnect = Some(reason_code::NOT_AUTHORIZED),
                _ => {}
            }
            return Err(reason);
        }
        let topic = topic.to_owned();
        let payload: Bytes = publish.payload;
        match self.route(&topic, payload.clone(), publish.retain).await {
            Ok(()) => {}
            // The retained store is full: MQTT 5 refuses the PUBLISH with
            // "quota exceeded"; MQTT 3.1.1 cannot say so, and the message
            // is routed live without being retained.
            Err(RouterError::RetainedQuota(e)) => {
                tracing::warn!(client_id = %self.session.client_id, error = %e, "retained PUBLISH over the limits");
                if wire.version == Version::V5 {
                    if qos == 1 {
                        wire.queue(Packet::PubAck(
                            wire::PubAck {
                                pkid,
                                reason: wire::PubAckReason::QuotaExceeded,
                            },
                            None,
                        ));
                    }
                    return Ok(());
                }
                if let Err(e) = self.route(&topic, payload, false).await {
                    tracing::error!(error = %e, "router publish failed");
                    return Err(DisconnectReason::ServerError);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "router publish failed");
                return Err(DisconnectReason::ServerError);
            }
        }
        if qos == 1 {
            wire.queue(Packet::PubAck(
                wire::PubAck {
                    pkid,
                    reason: wire::PubAckReason::Success,
                },
                None,
            ));
        }
        Ok(())
    }

    /// Routes a message a client may publish: `$aws/things/...` on the
    /// gateway's bus (never retained), the rest through rumqttd.
    async fn route(
        &mut self,
        topic: &str,
        payload: Bytes,
        retain: bool,
    ) -> Result<(), RouterError> {
        if topic::is_reserved(topic) {
            // `iot:Receive` is checked by each receiving session.
            self.authz
                .ctx
                .shared
                .bus
                .publish(topic, &payload[..], &|_, _| true);
            return Ok(());
        }
        self.link().await?.publish(topic, payload, retain).await
    }

    /// rumqttd's link, made now if the session has none yet (a clean
    /// session, which gets its link with its first ordinary topic).
    async fn link(&mut self) -> Result<&mut Link, RouterError> {
        if self.link.is_none() {
            let link = self
                .authz
                .ctx
                .shared
                .router
                .link(&self.session.client_id, true)
                .await?;
            self.link = Some(link);
        }
        Ok(self.link.as_mut().expect("made above"))
    }

    fn subscribe<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        subscribe: wire::Subscribe,
    ) {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut granted = Vec::new();
        for (index, filter) in subscribe.filters.into_iter().enumerate() {
            let qos = if filter.qos == wire::QoS::AtMostOnce {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            let path = filter.path;
            // The refusal in MQTT 5 terms; MQTT 3.1.1 has only 0x80.
            use wire::SubscribeReasonCode as Code;
            let refusal = if index >= topic::MAX_FILTERS_PER_SUBSCRIBE {
                Some(Code::QuotaExceeded)
            } else if path.starts_with("$share/") {
                Some(Code::SharedSubscriptionsNotSupported)
            } else if topic::validate_topic_filter(&path).is_err()
                || (topic::is_reserved(&path) && !path.starts_with("$aws/"))
            {
                Some(Code::TopicFilterInvalid)
            } else if !self.authz.subscribe_allowed(&path) {
                Some(Code::NotAuthorized)
            } else if !self.add_filter(&path, qos) {
                Some(Code::Unspecified)
            } else {
                None
            };
            match refusal {
                None => {
                    codes.push(Code::Success(match qos {
                        QoS::AtMostOnce => wire::QoS::AtMostOnce,
                        QoS::AtLeastOnce => wire::QoS::AtLeastOnce,
                    }));
                    granted.push(path);
                }
                Some(code) => {
                    tracing::debug!(client_id = %self.session.client_id, filter = path, ?code, "subscription refused");
                    codes.push(match wire.version {
                        Version::V311 => Code::Failure,
                        Version::V5 => code,
                    });
                }
            }
        }
        wire.queue(Packet::SubAck(
            wire::SubAck {
                pkid: subscribe.pkid,
                return_codes: codes,
            },
            None,
        ));
        if !granted.is_empty() {
            self.authz
                .ctx
                .publish_event(LifecycleEvent::Subscribed(SubscriptionChange {
                    session: self.session.clone(),
                    timestamp_ms: epoch_millis_now(),
                    topics: granted,
                }));
        }
    }

    /// Subscribes on the bus (`$aws/...`) or the router.
    fn add_filter(&mut self, filter: &str, qos: QoS) -> bool {
        if topic::is_reserved(filter) {
            let bus = &self.authz.ctx.shared.bus;
            if self.bus.is_none() {
                let on_bus = BusLink::register(bus, self.authz.ctx.shared.settings.bus_queue);
                self.events.dropped = on_bus.dropped.clone();
                // Events published before its first `$aws` filter are
                // not for this session.
                if let Some(pump) = self.authz.ctx.shared.pump.get() {
                    self.events.processed = self.events.processed.max(pump.started());
                }
                self.bus = Some(on_bus);
            }
            let Some(on_bus) = &self.bus else {
                return false;
            };
            if bus.subscribe(on_bus.id, filter, qos).is_err() {
                return false;
            }
            self.filters.bus.insert(filter.to_owned(), qos);
            true
        } else {
            // The link was made before the SUBSCRIBE was handled.
            let Some(link) = self.link.as_mut() else {
                return false;
            };
            if self.filters.router.contains_key(filter) {
                // Subscribed again: its retained messages are sent again.
                link.queue_retained(filter);
            } else if link.subscribe(filter).is_err() {
                return false;
            }
            self.filters.router.insert(filter.to_owned(), qos);
            true
        }
    }

    fn unsubscribe<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        unsubscribe: wire::Unsubscribe,
    ) {
        // One reason per filter (MQTT 5; the 3.1.1 codec writes none).
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let mut existed = false;
            if self.filters.bus.remove(filter).is_some() {
                if let Some(on_bus) = &self.bus {
                    self.authz.ctx.shared.bus.unsubscribe(on_bus.id, filter);
                }
                existed = true;
            }
            // rumqttd answers nothing for an unknown filter: only send
            // the ones it has.
            if self.filters.router.remove(filter).is_some() {
                if let Some(link) = self.link.as_mut() {
                    let _ = link.unsubscribe(filter);
                }
                existed = true;
            }
            reasons.push(if existed {
                wire::UnsubAckReason::Success
            } else {
                wire::UnsubAckReason::NoSubscriptionExisted
            });
        }
        wire.queue(Packet::UnsubAck(
            wire::UnsubAck {
                pkid: unsubscribe.pkid,
                reasons,
            },
            None,
        ));
        self.authz
            .ctx
            .publish_event(LifecycleEvent::Unsubscribed(SubscriptionChange {
                session: self.session.clone(),
                timestamp_ms: epoch_millis_now(),
                topics: unsubscribe.filters,
            }));
    }
}

/// The highest QoS granted to a filter in `filters` matching `topic`; QoS
/// 0 when none does (a resumed session whose filters the gateway forgot).
fn max_qos(filters: &HashMap<String, QoS>, topic: &str) -> QoS {
    matching_qos(filters, topic).unwrap_or(QoS::AtMostOnce)
}

/// Encodes a PUBLISH (rumqttd's `Publish` can't be built with a QoS or
/// packet id from outside the crate): MQTT 3.1.1, or MQTT 5 with `v5` (an
/// empty property list after the packet id). `pkid` is written for QoS 1;
/// `dup` marks a QoS 1 message sent again.
#[allow(clippy::too_many_arguments)]
fn encode_publish(
    buf: &mut BytesMut,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: u16,
    retain: bool,
    dup: bool,
    v5: bool,
) {
    let qos_bits = qos.level();
    let len = 2 + topic.len() + if qos_bits > 0 { 2 } else { 0 } + usize::from(v5) + payload.len();
    buf.reserve(len + 5);
    buf.put_u8(0x30 | (u8::from(dup) << 3) | (qos_bits << 1) | u8::from(retain));
    let mut rest = len;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
    // Topics reaching here are at most a few hundred bytes.
    buf.put_u16(u16::try_from(topic.len()).unwrap_or(u16::MAX));
    buf.put_slice(topic.as_bytes());
    if qos_bits > 0 {
        buf.put_u16(pkid);
    }
    if v5 {
        // The property length: none.
        buf.put_u8(0);
    }
    buf.put_slice(payload);
}

/// Decodes `bytes` as the session reads a client's stream ([`decode`]):
/// the codec is MQTT 5 when `v5` says so, or, when `v5` is `None`, chosen
/// by the CONNECT's protocol level as for a new connection
/// ([`Wire::read_connect`]). Reads whole packets until the bytes run out
/// or one is refused, and returns them with the refusal. For the fuzz
/// targets (`crate::fuzzing`); no socket is involved.
pub(crate) fn decode_stream(
    bytes: &[u8],
    v5: Option<bool>,
    max_packet_size: usize,
) -> (Vec<Packet>, Option<String>) {
    let mut buf = BytesMut::from(bytes);
    let v5 = v5.unwrap_or_else(
        || matches!(peek_connect_level(&buf), ConnectPeek::Level(level) if level >= 5),
    );
    let version = if v5 { Version::V5 } else { Version::V311 };
    let mut packets = Vec::new();
    // Each packet read takes at least two bytes; the bound only guards
    // against a codec that reports a packet without consuming it.
    for _ in 0..=bytes.len() {
        match decode(version, &mut buf, max_packet_size) {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return (packets, None),
            Err(ReadError::Protocol(e)) => return (packets, Some(format!("{e:?}"))),
            Err(ReadError::Malformed(why)) => return (packets, Some(why.to_owned())),
            Err(ReadError::Refused(code)) => return (packets, Some(format!("{code:?}"))),
            Err(ReadError::Closed) => return (packets, Some("closed".to_owned())),
        }
    }
    (
        packets,
        Some("a packet was read without consuming bytes".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QoS, packet id, retain, topic and payload of an encoded PUBLISH, as
    /// rumqttd's own decoder reads them.
    fn decode(buf: &mut BytesMut) -> (u8, u16, bool, String, Vec<u8>) {
        decode_with(buf, false)
    }

    /// [`decode`] with rumqttd's MQTT 5 decoder when `v5`.
    fn decode_with(buf: &mut BytesMut, v5: bool) -> (u8, u16, bool, String, Vec<u8>) {
        let read = if v5 {
            V5.read_mut(buf, 1 << 20)
        } else {
            V4.read_mut(buf, 1 << 20)
        };
        let Ok(Packet::Publish(publish, None)) = read else {
            panic!("not a PUBLISH without properties: {read:?}");
        };
        let head = publish.serialize();
        (
            (head[0] >> 1) & 0b11,
            u16::from_be_bytes([head[1], head[2]]),
            publish.retain,
            String::from_utf8(publish.topic.to_vec()).unwrap(),
            publish.payload.to_vec(),
        )
    }

    #[test]
    fn publishes_encode_as_rumqttd_decodes_them() {
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            "a/b",
            b"hello",
            QoS::AtMostOnce,
            9,
            false,
            false,
            false,
        );
        assert_eq!(
            decode(&mut buf),
            (0, 0, false, "a/b".into(), b"hello".to_vec())
        );
        // A payload long enough for a three-byte remaining length.
        let payload = vec![7u8; 20_000];
        encode_publish(
            &mut buf,
            "t",
            &payload,
            QoS::AtLeastOnce,
            513,
            true,
            true,
            false,
        );
        assert_eq!(decode(&mut buf), (1, 513, true, "t".into(), payload));
        assert!(buf.is_empty());
    }

    #[test]
    fn v5_publishes_encode_as_rumqttd_v5_decodes_them() {
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            "a/b",
            b"hello",
            QoS::AtMostOnce,
            9,
            false,
            false,
            true,
        );
        assert_eq!(
            decode_with(&mut buf, true),
            (0, 0, false, "a/b".into(), b"hello".to_vec())
        );
        let payload = vec![7u8; 20_000];
        encode_publish(
            &mut buf,
            "$aws/things/t/shadow/update",
            &payload,
            QoS::AtLeastOnce,
            513,
            true,
            true,
            true,
        );
        assert_eq!(
            decode_with(&mut buf, true),
            (1, 513, true, "$aws/things/t/shadow/update".into(), payload)
        );
        // An empty payload: the property length is the last byte.
        encode_publish(&mut buf, "e", b"", QoS::AtLeastOnce, 1, false, false, true);
        assert_eq!(buf[..], [0x32, 6, 0, 1, b'e', 0, 1, 0]);
        assert_eq!(
            decode_with(&mut buf, true),
            (1, 1, false, "e".into(), Vec::new())
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn keep_alives_are_clamped_as_aws_does() {
        let min = Duration::from_secs(30);
        for (asked, used) in [
            (0, 1200),
            (1, 30),
            (29, 30),
            (30, 30),
            (600, 600),
            (1200, 1200),
        ] {
            assert_eq!(effective_keep_alive(asked, min), used, "{asked}");
        }
        assert_eq!(effective_keep_alive(u16::MAX, min), 1200);
        assert_eq!(effective_keep_alive(1, Duration::ZERO), 1);
        assert_eq!(
            effective_keep_alive(1, Duration::from_secs(1_000_000)),
            1200
        );
    }

    #[test]
    fn decode_refuses_flags_and_strings_mqtt_forbids() {
        let decode_bytes = |version, bytes: &[u8]| {
            let mut buf = BytesMut::from(bytes);
            super::decode(version, &mut buf, 1024)
        };
        // SUBSCRIBE of `a` (packet id 1, QoS 0) with good and bad flags.
        let good = [0x82, 6, 0, 1, 0, 1, b'a', 0];
        assert!(matches!(
            decode_bytes(Version::V311, &good),
            Ok(Some(Packet::Subscribe(..)))
        ));
        for byte1 in [0x80, 0x81, 0x83, 0x8A] {
            let mut bad = good;
            bad[0] = byte1;
            assert!(
                matches!(
                    decode_bytes(Version::V311, &bad),
                    Err(ReadError::Malformed(_))
                ),
                "{byte1:#x}"
            );
        }
        // Flags are checked before the packet is whole.
        assert!(matches!(
            decode_bytes(Version::V5, &[0xA0]),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(decode_bytes(Version::V5, &[0xA2]), Ok(None)));
        // A filter holding U+0000.
        let nul = [0x82, 6, 0, 1, 0, 1, 0, 0];
        assert!(matches!(
            decode_bytes(Version::V311, &nul),
            Err(ReadError::Malformed(_))
        ));
        // A PUBLISH with QoS 3, or DUP at QoS 0.
        for byte1 in [0x36, 0x38] {
            assert!(matches!(
                decode_bytes(Version::V311, &[byte1, 3, 0, 1, b'a']),
                Err(ReadError::Malformed(_))
            ));
        }
        // A CONNECT whose client id holds U+0000.
        let connect = [
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 3, b'a', 0, b'b',
        ];
        assert!(matches!(
            decode_bytes(Version::V311, &connect),
            Err(ReadError::Refused(ConnackCode::ClientIdentifierNotValid))
        ));
        let mut ok = connect;
        ok[15] = b'-';
        assert!(matches!(
            decode_bytes(Version::V311, &ok),
            Ok(Some(Packet::Connect(..)))
        ));
    }

    #[test]
    fn the_connect_level_is_read_before_the_codec_is_chosen() {
        // MQTT 5 CONNECT: name "MQTT", level 5.
        let connect = [0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 30, 0];
        assert_eq!(peek_connect_level(&connect), ConnectPeek::Level(5));
        for cut in 0..9 {
            assert_eq!(peek_connect_level(&connect[..cut]), ConnectPeek::More);
        }
        // A two-byte remaining length.
        let long = [0x10, 0x80, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 4];
        assert_eq!(peek_connect_level(&long), ConnectPeek::Level(4));
        assert_eq!(peek_connect_level(&[0x30, 0]), ConnectPeek::Other);
        assert_eq!(
            peek_connect_level(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
            ConnectPeek::Other
        );
    }

    #[test]
    fn v5_sessions_end_with_the_mqtt5_reason_codes() {
        assert_eq!(
            v5_disconnect_code(DisconnectReason::DuplicateClientid),
            Some(0x8E)
        );
        assert_eq!(
            v5_disconnect_code(DisconnectReason::MqttKeepAliveTimeout),
            Some(0x8D)
        );
        assert_eq!(
            v5_disconnect_code(DisconnectReason::ServerInitiatedDisconnect),
            Some(0x8B)
        );
        assert_eq!(v5_disconnect_code(DisconnectReason::AuthError), Some(0x87));
        assert_eq!(
            v5_disconnect_code(DisconnectReason::ClientInitiatedDisconnect),
            None
        );
        assert_eq!(v5_disconnect_code(DisconnectReason::ConnectionLost), None);
    }

    #[test]
    fn delivery_qos_is_the_highest_matching_grant() {
        let mut filters = HashMap::new();
        filters.insert("a/#".to_owned(), QoS::AtMostOnce);
        filters.insert("a/+/c".to_owned(), QoS::AtLeastOnce);
        assert_eq!(max_qos(&filters, "a/b/c"), QoS::AtLeastOnce);
        assert_eq!(max_qos(&filters, "a/b"), QoS::AtMostOnce);
        assert_eq!(max_qos(&filters, "z"), QoS::AtMostOnce);
    }

    #[test]
    fn password_principals() {
        let auth = password_authenticator(vec![PasswordCredential {
            username: "u".into(),
            password: "p".into(),
            principal_id: "dev".into(),
            policy_names: vec!["pol".into()],
        }]);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let info = |username, password| ConnectInfo {
            client_id: "c",
            username,
            password,
            peer,
            transport: None,
        };
        let principal = auth(&info(Some("u"), Some("p"))).unwrap();
        assert_eq!(principal.id, "dev");
        assert_eq!(principal.kind, PrincipalKind::Password);
        assert_eq!(principal.policy_names, vec!["pol".to_owned()]);
        for (u, p) in [(Some("u"), Some("x")), (Some("x"), Some("p")), (None, None)] {
            assert_eq!(
                auth(&info(u, p)),
                Err(ConnectRefusal::BadUsernameOrPassword)
            );
        }
        // A transport principal (TLS) wins over the CONNECT's credentials.
        let cert = Principal::certificate("abc", "arn:cert/abc", Vec::new(), Vec::new());
        let with_cert = ConnectInfo {
            transport: Some(&cert),
            ..info(None, None)
        };
        assert_eq!(auth(&with_cert), Ok(cert.clone()));
    }
}
#[cfg(test)]
mod size_tests {
    use super::*;

    /// Each connection's task holds the whole session future: idle
    /// connections cost what it weighs (see `cargo xtask bench mqtt`).
    #[test]
    fn the_session_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (stream, _peer) = tokio::io::duplex(64);
            let ctx = SessionContext::new(
                ConfigCache::new(),
                Bus::new(),
                Arc::new(VersionCounter::new()),
                "us-east-1",
                "123456789012",
                Router::spawn(&super::super::router::RouterSettings::default()),
                SessionSettings::default(),
            );
            let session = run(
                stream,
                "127.0.0.1:1".parse().unwrap(),
                None,
                ctx,
                password_authenticator(Vec::new()),
                CancellationToken::new(),
            );
            let size = std::mem::size_of_val(&session);
            assert!(size <= 3 * 1024, "the session future weighs {size} bytes");
            assert!(std::mem::size_of::<Session>() <= 1024);
        });
    }
}
