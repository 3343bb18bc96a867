//! A connection's first steps: reading and answering the CONNECT,
//! authenticating the client (its transport's certificate, or a username
//! and password), looking up the thing its client id names, checking
//! `iot:Connect`, and taking over a live session of the same client id.
//! [`handshake`] hands the session what it needs to start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::partition::Tagged;
use herald_policy::Context;
use herald_proto::registry::v1::{self as reg, registry_client::RegistryClient};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::bytes::BytesMut;
use tokio_util::sync::CancellationToken;

use super::codec::wire::{self, Packet};
use super::lifecycle::{
    ConnectFailed, ConnectFailureReason, Connected, LifecycleEvent, SessionInfo, epoch_millis_now,
};
use super::router::Link;
use crate::events::EventPump;

use super::authz::{Authz, PublishDenial};
use super::codec::{ConnackCode, ReadError, Version, Wire, connack};
use super::context::{BusLink, Filters, Live, Persisted, SessionContext, Signal, Unacked, lock};
pub use super::principal::Principal;
use super::principal::PrincipalKind;

/// The longest keep-alive a client gets, in seconds: a CONNECT asking for
/// 0 (none) or more gets this (AWS IoT Core message broker and protocol
/// limits and quotas: 30 to 1200 seconds).
pub(crate) const MAX_KEEP_ALIVE_SECS: u16 = 1200;

/// The keep-alive a session uses, in seconds, for the one its CONNECT asks
/// for: 0 and values above [`MAX_KEEP_ALIVE_SECS`] become
/// [`MAX_KEEP_ALIVE_SECS`], values below `min` become `min`.
pub(crate) fn effective_keep_alive(requested: u16, min: Duration) -> u16 {
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
pub(crate) const MAX_CLIENT_ID_BYTES: usize = 128;

/// How long the registry lookups of the thing a CONNECT names may take;
/// after it the connection proceeds without a thing.
pub(crate) const THING_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The registry thing a connection is associated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Thing {
    pub(super) name: String,
    pub(super) type_name: Option<String>,
    pub(super) attributes: HashMap<String, String>,
    /// The thing's groups and their ancestors, each once, in ARN order.
    pub(super) group_arns: Vec<String>,
}

impl Thing {
    /// `context` with the thing's policy variables.
    pub(super) fn context(&self, mut context: Context) -> Context {
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
pub(super) fn is_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

pub(super) fn page(next_token: String) -> Option<reg::Page> {
    Some(reg::Page {
        next_token,
        max_results: 0,
    })
}

/// The thing named `client_id` if it exists and one of `targets` is
/// attached to it, with its groups and their ancestors (the registry's
/// `ListThingPolicyTargets`).
pub(super) async fn lookup_thing(
    mut registry: RegistryClient<Tagged>,
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
                thing_principal_type: String::new(),
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
    // The thing's groups and their ancestors, computed by the registry as
    // the config service computes a thing's policy targets.
    let group_arns = match registry
        .list_thing_policy_targets(reg::ListThingPolicyTargetsRequest {
            thing_name: described.thing_name.clone(),
        })
        .await
    {
        Ok(targets) => targets.into_inner().thing_group_arns,
        // Deleted since it was described.
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
        Err(status) => return Err(status),
    };
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
    pub(super) fn code(self) -> ConnackCode {
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

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

/// A session past its CONNACK.
pub(super) struct Established<S> {
    pub(super) wire: Wire<S>,
    pub(super) authz: Authz,
    pub(super) session: SessionInfo,
    /// rumqttd's link: a persistent session's, or none yet.
    pub(super) link: Option<Link>,
    /// The session's place on the `$aws` bus, if it has `$aws` filters.
    pub(super) bus: Option<BusLink>,
    pub(super) filters: Filters,
    pub(super) events: Resume,
    /// QoS 1 messages a resumed session has to get again.
    pub(super) unacked: Vec<Unacked>,
    pub(super) session_present: bool,
    pub(super) will: Option<Will>,
    pub(super) live: Arc<Live>,
    pub(super) version: u64,
    pub(super) keep_alive: Duration,
    pub(super) clean_session: bool,
}

/// A client's last will: its topic, the will, and its MQTT 5 properties
/// that go on to subscribers as a PUBLISH's do. Its delay interval is not
/// kept: the will is published when the session ends.
pub(super) type Will = (String, wire::LastWill, Option<wire::PublishProperties>);

/// A will's properties as a PUBLISH's.
fn publish_properties(will: wire::LastWillProperties) -> wire::PublishProperties {
    wire::PublishProperties {
        payload_format_indicator: will.payload_format_indicator,
        message_expiry_interval: will.message_expiry_interval,
        topic_alias: None,
        response_topic: will.response_topic,
        correlation_data: will.correlation_data,
        user_properties: will.user_properties,
        subscription_identifiers: Vec::new(),
        content_type: will.content_type,
    }
}

/// The thing the connection of `principal` as `client_id` is associated
/// with, if any. Never fails: a registry that does not answer within
/// [`THING_LOOKUP_TIMEOUT`] or fails means no thing.
pub(super) async fn associated_thing(
    ctx: &SessionContext,
    client_id: &str,
    principal: &Principal,
) -> Option<Thing> {
    let registry = ctx.shared.registry.get()?;
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

/// Where a session starts in the registry's change log.
pub(super) struct Resume {
    /// How far the log is handled (see the session's `EventTrack`).
    pub(super) processed: u64,
    /// The position stored last, for a resumed persistent session.
    pub(super) saved: Option<u64>,
    /// The bus's record of the highest registry event it dropped for it.
    pub(super) dropped: Arc<AtomicU64>,
}

/// Reads and answers the CONNECT; `None` when the connection ended there.
pub(super) async fn handshake<S>(
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
        queued_publishes: 0,
    };
    let first = tokio::select! {
        () = shutdown.cancelled() => return None,
        read = tokio::time::timeout(ctx.shared.settings.connect_timeout, wire.read_connect()) => read,
    };
    let mqtt_version = wire.version;
    let (connect, will, login) = match first {
        Ok(Ok(Packet::Connect(connect, _, will, will_properties, login))) => {
            let will = will.map(|w| (w, will_properties.map(publish_properties)));
            (connect, will, login)
        }
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
        thing = Box::pin(associated_thing(ctx, &client_id, &principal)) => thing,
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
    let authz = Authz::new(
        ctx.shared.cache.clone(),
        Arc::clone(&ctx.shared.arn_prefix),
        principal,
        context,
    );
    let will = will.and_then(|(w, properties)| {
        let topic = String::from_utf8(w.topic.to_vec()).ok()?;
        Some((topic, w, properties))
    });
    let will_check = will.as_ref().map_or(Ok(()), |(topic, w, _)| {
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
        kick: Signal::default(),
        done: Signal::default(),
        persistent_principal: (!connect.clean_session).then(|| authz.principal.id.clone()),
    });
    let previous = lock(&ctx.shared.live).insert(client_id.clone(), Arc::clone(&live));
    if let Some(ids) = ctx.shared.client_ids.get() {
        ids.connected(&client_id, &live);
    }
    if let Some(previous) = previous {
        previous.kick.raise();
        let waited =
            tokio::time::timeout(ctx.shared.settings.takeover_timeout, previous.done.raised())
                .await;
        if waited.is_err() {
            tracing::warn!(client_id, "the session taken over did not end in time");
        }
    }

    let clean_session = connect.clean_session;
    let mut stored = lock(&ctx.shared.persistent).remove(&client_id);
    // Whether the session came from the replicas' shared record: the
    // router's own memory of it here is then older.
    let mut from_shared = false;
    // With other replicas, the shared record is the session as it was
    // last, wherever that was.
    if let Some(store) = ctx.shared.sessions.get()
        && store.is_shared()
    {
        store.own(&client_id);
        if clean_session {
            if stored.is_none() {
                // Whatever another replica kept for it is over (in the
                // background: a clean CONNECT does not wait for it).
                store.remove_later(&client_id);
            }
        } else if stored.is_none()
            && let Some(shared) = Box::pin(store.load_shared(&client_id)).await
        {
            // A session this replica does not hold (it was forgotten here
            // when another replica took it): the shared record is it as it
            // was last. One held here is newer, with its unacknowledged
            // messages and its queued events.
            stored = Some(Persisted::from_stored(&shared, epoch_millis_now()));
            from_shared = true;
        }
    }
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
    let link = if session_present && !from_shared {
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
            ctx.end_live(&client_id, &live);
            return None;
        }
    };
    // Registry events up to here were published before this session had
    // a filter on the bus: a new session starts after them.
    let pump = ctx.shared.pump.get();
    let mut events = Resume {
        processed: pump.map_or(0, EventPump::started),
        saved: None,
        dropped: Arc::default(),
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
        // The router forgot the session (a gateway restart), or it came
        // from another replica: subscribe again. With other replicas, always:
        // the link's interest in the filters is what brings their messages.
        let replicas = ctx.shared.client_ids.get().is_some();
        if let Some(link) = link.as_mut()
            && (!link.session_present() || replicas)
        {
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
        ctx.end_live(&client_id, &live);
        return None;
    }
    let protocol = if mqtt_version == Version::V5 {
        "5"
    } else {
        "3.1.1"
    };
    metrics::counter!("herald_gateway_mqtt_connects_total", "protocol" => protocol).increment(1);
    let version = ctx.shared.versions.connect(&client_id);
    ctx.publish_event(LifecycleEvent::Connected(Connected {
        session: session.clone(),
        timestamp_ms: epoch_millis_now(),
        ip_address: ip,
        version_number: version,
    }));
    tracing::info!(%peer, client_id, principal = %authz.principal.id, "connected");

    let keep_alive = Duration::from_millis(u64::from(keep_alive_secs) * 1500);
    Some(Established {
        wire,
        authz,
        session,
        link,
        bus,
        filters,
        events,
        unacked,
        session_present,
        will,
        live,
        version,
        keep_alive,
        clean_session,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
