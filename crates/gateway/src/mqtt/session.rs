//! One MQTT 3.1.1 or MQTT 5 client session over any byte stream (plain TCP,
//! or TLS handed over by the TLS listener), with AWS IoT Core's rules
//! (AWS IoT Core Developer Guide: "Lifecycle events", "AWS IoT Core policies", "Reserved topics").
//!
//! The protocol level of the CONNECT picks the codec: 4 is MQTT 3.1.1
//! (rumqttd's v4 codec), 5 is MQTT 5 (its v5 codec; see [`MQTT 5`](#mqtt-5)
//! below), and any other level is refused with "unsupported protocol
//! version" (0x01 below 5, 0x84 above).
//!
//! Every packet is read by `codec::decode`, which refuses what rumqttd's codecs
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
//! - The keep-alive is clamped as AWS IoT does ([`effective_keep_alive`](super::connect::effective_keep_alive)).
//!   PINGREQ gets PINGRESP; nothing heard, or no byte written to a client
//!   that has stopped reading, for 1.5 × keep-alive ends the session with
//!   `MQTT_KEEP_ALIVE_TIMEOUT`.
//! - SUBSCRIBE: each filter is validated and checked for `iot:Subscribe`;
//!   a denied or invalid one gets 0x80. `$aws/...` filters go to the gateway
//!   [`Bus`](crate::bus::Bus), other `$` filters are refused, the rest go to rumqttd. QoS 2 is
//!   granted as 1 (AWS supports QoS 0 and 1). A `subscribed` event lists the
//!   granted filters.
//! - UNSUBSCRIBE: answered here, with an `unsubscribed` event.
//! - PUBLISH: QoS 2 ends the session (`CLIENT_ERROR`, as AWS does); an invalid
//!   topic too; so does a `$aws/events/...` topic (whatever the policy
//!   says), any other `$` topic outside `$aws/things/...`, and RETAIN on a
//!   `$` topic (AWS IoT Core Developer Guide: "Reserved topics"); a denied `iot:Publish` (or
//!   `iot:RetainPublish` with RETAIN) ends it with `AUTH_ERROR`. Otherwise
//!   the message is routed, then a QoS 1 publish gets its PUBACK:
//!   `$aws/things/...` (shadow and jobs-style topics) on the bus, to explicit
//!   `$aws/things/...` filters only, the rest through rumqttd. With RETAIN,
//!   the message is stored in the gateway's retained store first; over its
//!   limits an MQTT 5 PUBLISH is refused (PUBACK 0x97 quota exceeded, QoS 0
//!   dropped) and an MQTT 3.1.1 one is routed live without being retained.
//! - Every delivery, from rumqttd or the bus, is checked for `iot:Receive`
//!   on its topic against the cache's current policies, then written at the
//!   lower of the QoS it was published at and the highest QoS granted to
//!   the client's matching filters, QoS 1 with a packet id tracked until
//!   PUBACK.
//! - A policy or certificate change re-checks `iot:Connect` (and an active
//!   certificate): a session no longer allowed ends with `AUTH_ERROR`.
//!
//! Thing association (AWS IoT Core Developer Guide: "Connecting to AWS IoT Core" with a thing name as client id, and "Thing policy variables"): when the client id
//! is a valid thing name, the thing exists in the registry and one of the
//! principal's attachment targets (its certificate ARN) is attached to it
//! (`AttachThingPrincipal`), the connection is associated with that thing.
//! Its policy context then has `iot:Connection.Thing.ThingName`,
//! `.ThingTypeName`, `.Attributes[...]` and `IsAttached=true`; the policies
//! attached to the thing's groups and their ancestors apply too; and the
//! lifecycle events carry `thingName`. The lookup is made once, at CONNECT,
//! with a [`THING_LOOKUP_TIMEOUT`](super::connect::THING_LOOKUP_TIMEOUT): a registry that is unreachable, slow or
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
//! - The properties of a PUBLISH that go on (payload format indicator,
//!   content type, response topic, correlation data, user properties and
//!   message expiry interval: [`Forwarded`]) are written to the MQTT 5
//!   clients that receive the message, the expiry as what is left of it; a
//!   message whose expiry passes before its delivery to a client begins is
//!   not delivered to it. A retained message keeps them, and a will goes
//!   on with its own (but its delay interval: it is published when the
//!   session ends). Messages on `$aws/...` topics go on without
//!   properties.
//! - When the server ends the session, the client first gets a DISCONNECT
//!   with the MQTT 5 reason for its `disconnectReason` (0x8E session taken
//!   over, 0x8D keep-alive timeout, 0x8B server shutting down, 0x87 not
//!   authorized, 0x9B for a QoS 2 PUBLISH, 0x90 for an invalid topic, 0x95
//!   for an oversized packet, 0x81 for a malformed packet, 0x82 for other
//!   protocol errors, a response topic with a wildcard among them).
//! - A client DISCONNECT with reason 0x04 still gets its will published.
//!
//! Clean start stands for clean session, and the other properties clients
//! send (session expiry, topic aliases, subscription identifiers, will
//! properties, ...) are ignored: the gateway advertises no topic aliases,
//! so a PUBLISH without a topic is a protocol error.
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
//! with a [`SessionStore`](super::persist::SessionStore) the filters and the position survive a restart.
//! Its router subscriptions stay in rumqttd (its graveyard) while the
//! gateway runs, and are made again after a restart. A client that comes
//! back with the same client id gets its unacknowledged messages again
//! (DUP), the `$aws` messages its bus queue kept while it was away, the
//! registry events it missed (replayed from the change log, with their
//! `eventId`), then the live ones. A session whose client
//! stays away longer than
//! [`SessionSettings::persistent_session_expiry`] is forgotten.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_policy::Action;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::codec::wire::{self, Packet};
use super::jobs;
use super::lifecycle::{
    DisconnectReason, Disconnected, LifecycleEvent, SessionInfo, SubscriptionChange,
    epoch_millis_now,
};
use super::replay::{Replay, ReplayMessage};
use super::router::{Delivery as RouterDelivery, Link, RouterError};
use super::shadow;
use crate::bus::topic;
use crate::bus::{Delivery as BusDelivery, QoS};
use crate::events::{EventPump, Gated, gated};

use super::authz::{Authz, PublishDenial};
pub(crate) use super::codec::decode_stream;
use super::codec::{Forwarded, ReadError, Version, Wire, reason_code, v5_disconnect_code};
pub use super::connect::{Authenticator, PasswordCredential, Principal, password_authenticator};
use super::connect::{Established, Will, handshake};
use super::context::{BusLink, Filters, Live, Persisted, Signal, Unacked, lock};
pub use super::context::{SessionContext, SessionSettings};

/// How often a session with `$aws` filters moves its change-log position
/// past the events it was not sent, looks for events the bus dropped, and
/// (persistent sessions) stores its position.
const POSITION_INTERVAL: Duration = Duration::from_millis(200);

/// How many queued bus deliveries a session writes together, at most.
const DELIVERY_BATCH: usize = 64;

/// How many live registry events a session replaying the change log keeps
/// for when it is done; past that it replays further instead.
const CATCH_UP_BUFFER: usize = 4096;

/// Serves one client connection until it ends. `peer` is the client's
/// address; `transport` the principal the transport established (the TLS
/// client certificate), passed to `authenticate`. `running` is dropped
/// once the session has ended, its `disconnected` event published (the
/// listener waits for every session's at shutdown); taken here rather than
/// by a wrapping future, which would hold this one's arguments twice.
pub(crate) async fn run<S, R>(
    stream: S,
    peer: SocketAddr,
    transport: Option<Principal>,
    ctx: SessionContext,
    authenticate: Authenticator,
    shutdown: CancellationToken,
    running: R,
) where
    S: AsyncRead + AsyncWrite + Send,
    R: Send,
{
    // The CONNECT's handling is boxed and freed once the session is up:
    // an idle connection keeps only what the established session needs.
    // (Built inside `Box::pin`, and taken apart in a block: a future or a
    // value held in a local of this function across an await keeps its room
    // in this future's state, even once moved.)
    let (mut wire, mut state, rest) = {
        let Some(established) = Box::pin(handshake(
            stream,
            peer,
            transport,
            &ctx,
            authenticate,
            &shutdown,
        ))
        .await
        else {
            return;
        };
        Session::establish(established, &ctx)
    };
    let reason =
        Box::pin(state.serve(&mut wire, rest.keep_alive, &rest.live.kick, &shutdown)).await;
    // Boxed too: the teardown's awaits take no room while the session is up.
    Box::pin(state.end(wire, rest, reason)).await;
    drop(running);
}

/// The state of an established session.
pub(super) struct Session {
    pub(super) ctx: SessionContext,
    pub(super) authz: Authz,
    pub(super) session: SessionInfo,
    /// rumqttd's link, once the session needs one (see [`Session::link`]).
    pub(super) link: Option<Link>,
    /// The session on the `$aws` bus, once it has a `$aws` filter.
    pub(super) bus: Option<BusLink>,
    pub(super) filters: Filters,
    pub(super) next_pkid: u16,
    /// QoS 1 deliveries waiting for their PUBACK, by packet id.
    pub(super) inflight: HashMap<u16, Inflight>,
    pub(super) clean_session: bool,
    pub(super) events: EventTrack,
    /// The reason code of the DISCONNECT an MQTT 5 client gets when the
    /// session ends, when more precise than its `disconnectReason` says.
    pub(super) v5_disconnect: Option<u8>,
    /// An MQTT 5 client's DISCONNECT asked for its will (0x04).
    pub(super) will_on_disconnect: bool,
}

/// What the end of a session needs from its handshake.
pub(super) struct Rest {
    /// Boxed: held by every session for its whole life, and rarely there.
    will: Option<Box<Will>>,
    live: Arc<Live>,
    version: u64,
    keep_alive: Duration,
    clean_session: bool,
}

impl Session {
    /// The established session's state, its wire (with the messages a
    /// resumed session gets again already queued) and what its end needs.
    fn establish<S: AsyncRead + AsyncWrite>(
        established: Established<S>,
        ctx: &SessionContext,
    ) -> (Wire<S>, Session, Rest) {
        let Established {
            mut wire,
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
        } = established;
        let mut state = Session {
            ctx: ctx.clone(),
            authz,
            session,
            link,
            bus,
            filters,
            next_pkid: 0,
            inflight: HashMap::new(),
            clean_session,
            events: EventTrack {
                processed: events.processed,
                saved: events.saved,
                in_flight: BTreeMap::new(),
                dropped: events.dropped,
                catch_up: None,
            },
            v5_disconnect: None,
            will_on_disconnect: false,
        };
        state.resend(&mut wire, unacked);
        state.resume_events(session_present);
        wire.shed_spare();
        let rest = Rest {
            will: will.map(Box::new),
            live,
            version,
            keep_alive,
            clean_session,
        };
        (wire, state, rest)
    }
}

impl Session {
    /// Ends the session for `reason`: its will, its router link and bus
    /// place, its stored state (persistent sessions), the DISCONNECT an
    /// MQTT 5 client gets, and its `disconnected` event.
    async fn end<S: AsyncRead + AsyncWrite>(
        mut self,
        mut wire: Wire<S>,
        rest: Rest,
        reason: DisconnectReason,
    ) {
        let Rest {
            will,
            live,
            version,
            clean_session,
            ..
        } = rest;
        let ctx = self.ctx.clone();
        let client_id = self.session.client_id.clone();
        tracing::info!(client_id, %reason, "disconnected");
        if wire.version == Version::V5
            && let Some(code) = self.v5_disconnect.or_else(|| v5_disconnect_code(reason))
        {
            wire.queue_v5_disconnect(code);
        }

        // Teardown: will, router link, bus, stored filters, event.
        if (reason.sends_last_will() || self.will_on_disconnect)
            && let Some((topic, w, properties)) = will.map(|will| *will)
            && self.authz.publish_check(&topic, w.retain).is_ok()
        {
            // A will the retained store has no room for is still published.
            let message = w.message.clone();
            let qos = w.qos as u8;
            let forwarded = properties.and_then(|p| Forwarded::of(&p, epoch_millis_now()));
            let forwarded = forwarded.as_ref();
            if let Err(RouterError::RetainedQuota(_)) =
                Box::pin(self.route(&topic, w.message, qos, w.retain, forwarded)).await
            {
                let _ = Box::pin(self.route(&topic, message, qos, false, forwarded)).await;
            }
        }
        if let Some(link) = &mut self.link {
            let _ = link.disconnect().await;
        }
        if clean_session && let Some(bus) = &self.bus {
            ctx.shared.bus.remove(bus.id);
        }
        if !clean_session {
            let persisted = self.persisted();
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
            session: self.session.clone(),
            timestamp_ms: epoch_millis_now(),
            reason,
            version_number: version,
        }));
        ctx.end_live(&client_id, &live);
    }
}

/// What a QoS 1 delivery waiting for its PUBACK was.
pub(super) enum Inflight {
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
pub(super) struct EventTrack {
    pub(super) processed: u64,
    /// The position last stored.
    pub(super) saved: Option<u64>,
    /// QoS 1 registry events sent and not acknowledged: sequence → packet id.
    pub(super) in_flight: BTreeMap<u64, u16>,
    /// The highest sequence the bus (or the catch-up buffer) dropped.
    pub(super) dropped: Arc<AtomicU64>,
    pub(super) catch_up: Option<CatchUp>,
}

impl EventTrack {
    pub(super) fn position(&self) -> u64 {
        match self.in_flight.keys().next() {
            Some(first) => self.processed.min(first - 1),
            None => self.processed,
        }
    }
}

/// A session replaying the change log.
pub(super) struct CatchUp {
    pub(super) replay: Replay,
    /// The last event whose publishing had started when the replay began.
    pub(super) target: u64,
    /// Live registry events from the bus, kept until the replay is done.
    pub(super) buffer: VecDeque<BusDelivery>,
}

/// The next delivery from the bus; never resolves off the bus.
pub(super) async fn next_bus_delivery(bus: &mut Option<BusLink>) -> Option<BusDelivery> {
    match bus {
        Some(bus) => bus.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next delivery from rumqttd; never resolves without a link.
pub(super) async fn next_delivery(link: &mut Option<Link>) -> RouterDelivery {
    match link {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

/// The next tick of the session's position interval, made on first use.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    interval
        .get_or_insert_with(|| {
            let mut interval = tokio::time::interval(POSITION_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        })
        .tick()
        .await;
}

/// The next message of a replay; never resolves without one.
pub(super) async fn next_replay(catch_up: &mut Option<CatchUp>) -> Option<ReplayMessage> {
    match catch_up {
        Some(catch_up) => catch_up.replay.next().await,
        None => std::future::pending().await,
    }
}

/// The highest QoS granted to a filter in `filters` matching `topic`, if
/// one does.
pub(super) fn matching_qos(filters: &HashMap<String, QoS>, topic: &str) -> Option<QoS> {
    filters
        .iter()
        .filter(|(filter, _)| topic::matches(filter, topic))
        .map(|(_, qos)| *qos)
        .max()
}

pub(super) type Step = Result<(), DisconnectReason>;

/// Where a delivery comes from.
#[derive(Clone, Copy)]
pub(super) enum Origin<'a> {
    /// A registry event, at this change-log sequence.
    Event(u64),
    /// A message, with the MQTT 5 properties that go on with it.
    Message(Option<&'a Forwarded>),
}

impl Session {
    pub(super) async fn serve<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        keep_alive: Duration,
        kick: &Signal,
        shutdown: &CancellationToken,
    ) -> DisconnectReason {
        let mut changes = self.ctx.shared.cache.subscribe_changes();
        changes.mark_unchanged();
        let mut last_heard = Instant::now();
        // Made when first needed: a session without `$aws` filters never
        // ticks, and an interval holds a timer of its own.
        let mut position_tick = None;
        let tracks_position = self.ctx.shared.pump.get().is_some();
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
                () = kick.raised() => return DisconnectReason::DuplicateClientid,
                () = shutdown.cancelled() => return DisconnectReason::ServerInitiatedDisconnect,
            };
            let written = wire.take_queued_publishes();
            if written > 0 {
                metrics::counter!("herald_gateway_messages_out_total")
                    .increment(u64::from(written));
            }
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
                () = kick.raised() => Err(DisconnectReason::DuplicateClientid),
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
                delivery = next_delivery(&mut self.link) => {
                    // What else the router handed over goes out with it, in
                    // one write.
                    let mut step = self.on_router(wire, delivery);
                    for _ in 1..DELIVERY_BATCH {
                        if step.is_err() {
                            break;
                        }
                        let Some(next) = self.link.as_mut().and_then(Link::try_next) else {
                            break;
                        };
                        step = self.on_router(wire, next);
                    }
                    step
                }
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
                () = tick(&mut position_tick), if tracks_position && !self.filters.bus.is_empty() => {
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

    /// A delivery from rumqttd.
    fn on_router<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        delivery: RouterDelivery,
    ) -> Step {
        match delivery {
            RouterDelivery::Message {
                topic,
                payload,
                qos: published,
                retained,
                properties,
            } => {
                // At the lower of the QoS it was published at and the
                // subscription's (the highest of the client's filters that
                // match).
                let granted = match matching_qos(&self.filters.router, &topic) {
                    Some(granted) => granted,
                    // A retained message queued by a SUBSCRIBE goes only
                    // to a filter still subscribed.
                    None if retained => return Ok(()),
                    None => QoS::AtMostOnce,
                };
                let qos = if published == 0 {
                    QoS::AtMostOnce
                } else {
                    granted
                };
                let origin = Origin::Message(properties.as_ref());
                self.deliver(wire, &topic, &payload, qos, retained, origin);
                Ok(())
            }
            RouterDelivery::Disconnected => Err(DisconnectReason::ServerError),
        }
    }

    /// Queues a delivery the client may receive, at `qos`.
    pub(super) fn deliver<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        origin: Origin<'_>,
    ) {
        if !self.authz.topic_allowed(Action::Receive, topic) {
            tracing::debug!(client_id = %self.session.client_id, topic, "iot:Receive denied");
            metrics::counter!("herald_gateway_deliveries_refused_total").increment(1);
            return;
        }
        let (sequence, properties) = match origin {
            Origin::Event(sequence) => (Some(sequence), None),
            Origin::Message(properties) => (None, properties),
        };
        // Only a message with an expiry needs the time.
        let now_ms = match properties {
            Some(Forwarded {
                expires_at_ms: Some(_),
                ..
            }) => epoch_millis_now(),
            _ => 0,
        };
        if properties.is_some_and(|p| p.expired(now_ms)) {
            // Its expiry passed before its delivery here began (MQTT 5
            // §3.3.2.3.3).
            metrics::counter!("herald_gateway_deliveries_expired_total").increment(1);
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
                        properties: properties.cloned(),
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
        let written = properties.map(|p| p.to_write(now_ms));
        wire.queue_publish(
            topic,
            payload,
            qos,
            pkid,
            retain,
            false,
            written.as_deref().unwrap_or_default(),
        );
    }

    pub(super) fn allocate_pkid(&mut self, inflight: Inflight) -> Option<u16> {
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
    pub(super) fn resend<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        unacked: Vec<Unacked>,
    ) {
        for message in unacked {
            if !self.authz.topic_allowed(Action::Receive, &message.topic) {
                continue;
            }
            // Its delivery began: sent again even if it has expired since.
            let written = (message.properties.as_ref()).map(|p| p.to_write(epoch_millis_now()));
            wire.queue_publish(
                &message.topic,
                &message.payload,
                QoS::AtLeastOnce,
                message.pkid,
                message.retain,
                true,
                written.as_deref().unwrap_or_default(),
            );
            self.next_pkid = self.next_pkid.max(message.pkid);
            self.inflight
                .insert(message.pkid, Inflight::Message(Some(message)));
        }
    }

    /// What is kept of this session when its client goes away (its place
    /// on the bus with it).
    pub(super) fn persisted(&mut self) -> Persisted {
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
    pub(super) fn resume_events(&mut self, resumed: bool) {
        let Some(pump) = self.ctx.shared.pump.get() else {
            return;
        };
        let started = pump.started();
        if !resumed || self.filters.bus.is_empty() {
            self.events.processed = self.events.processed.max(started);
        } else if self.events.processed < started {
            self.start_catch_up(started);
        }
    }

    pub(super) fn start_catch_up(&mut self, target: u64) {
        let Some(registry) = self.ctx.shared.registry.get() else {
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
    pub(super) fn on_bus<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        delivery: BusDelivery,
    ) {
        let Some(sequence) = delivery.sequence else {
            let (topic, payload, qos) = (delivery.topic, delivery.payload, delivery.qos);
            self.deliver(wire, &topic, &payload, qos, false, Origin::Message(None));
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
            self.start_catch_up(self.ctx.shared.pump.get().map_or(0, EventPump::started));
        }
    }

    /// A registry event from the bus, once the session is not replaying.
    pub(super) fn live_event<S: AsyncRead + AsyncWrite>(
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
            Origin::Event(sequence),
        );
        if let Some(committed_at_ms) = delivery.committed_at_ms {
            record_event_latency(committed_at_ms);
        }
        self.events.processed = sequence;
    }

    pub(super) fn on_replay<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        message: Option<ReplayMessage>,
    ) {
        match message {
            Some(ReplayMessage::Events(events)) => {
                let cache = self.ctx.shared.cache.clone();
                for event in events {
                    if event.sequence <= self.events.processed {
                        continue;
                    }
                    if let Gated::Publish(rendered) = gated(&event, &cache)
                        && let Some(qos) = matching_qos(&self.filters.bus, &rendered.topic)
                    {
                        self.deliver(
                            wire,
                            &rendered.topic,
                            &rendered.payload,
                            qos,
                            false,
                            Origin::Event(event.sequence),
                        );
                        record_event_latency(event.timestamp_ms);
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
    pub(super) fn on_tick(&mut self) {
        let Some(pump) = self.ctx.shared.pump.get() else {
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
    pub(super) fn save_position(&mut self) {
        if self.clean_session {
            return;
        }
        let Some(store) = self.ctx.shared.sessions.get() else {
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
    pub(super) async fn store_now(&mut self) {
        if self.clean_session {
            return;
        }
        let Some(store) = self.ctx.shared.sessions.get() else {
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

    pub(super) async fn handle<S: AsyncRead + AsyncWrite>(
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
            Packet::Publish(publish, properties) => {
                self.publish(wire, publish, properties.as_ref()).await?;
            }
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

    /// A client's PUBLISH, with its MQTT 5 `properties`.
    pub(super) async fn publish<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        publish: wire::Publish,
        properties: Option<&wire::PublishProperties>,
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
        metrics::counter!("herald_gateway_messages_in_total").increment(1);
        let Ok(topic) = std::str::from_utf8(&publish.topic) else {
            self.v5_disconnect = Some(reason_code::TOPIC_NAME_INVALID);
            return Err(DisconnectReason::ClientError);
        };
        // A response topic is a topic name: no wildcards (MQTT 5 §3.3.2.3.5).
        if let Some(response) = properties.and_then(|p| p.response_topic.as_deref())
            && topic::validate_topic_name(response).is_err()
        {
            tracing::info!(client_id = %self.session.client_id, topic, response, "PUBLISH with an invalid response topic");
            self.v5_disconnect = Some(reason_code::PROTOCOL_ERROR);
            return Err(DisconnectReason::ClientError);
        }
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
        let forwarded = properties.and_then(|p| Forwarded::of(p, epoch_millis_now()));
        let forwarded = forwarded.as_ref();
        match self
            .route(&topic, payload.clone(), qos, publish.retain, forwarded)
            .await
        {
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
                if let Err(e) = self
                    .route(&topic, payload.clone(), qos, false, forwarded)
                    .await
                {
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
        if let Some(request) = jobs::parse(&topic) {
            self.answer_jobs_request(wire, &topic, request, &payload)
                .await;
        }
        if let Some(request) = shadow::parse(&topic)
            && let Some(client) = self.ctx.shared.shadows.get()
        {
            let now_secs = i64::try_from(epoch_millis_now() / 1000).unwrap_or(i64::MAX);
            Box::pin(shadow::answer(
                client.clone(),
                &self.ctx.shared.bus,
                request,
                &payload,
                now_secs,
            ))
            .await;
        }
        Ok(())
    }

    /// Answers a jobs device API request, to this client only: on its
    /// `/accepted` or `/rejected` topic, if the client subscribed to it (and
    /// may receive it).
    async fn answer_jobs_request<S: AsyncRead + AsyncWrite>(
        &mut self,
        wire: &mut Wire<S>,
        topic: &str,
        request: jobs::Request<'_>,
        payload: &[u8],
    ) {
        let Some(client) = self.ctx.shared.jobs.get() else {
            return;
        };
        let now_secs = i64::try_from(epoch_millis_now() / 1000).unwrap_or(i64::MAX);
        let (reply_topic, reply) = Box::pin(jobs::answer(
            client.clone(),
            topic,
            request,
            payload,
            now_secs,
        ))
        .await;
        if let Some(qos) = matching_qos(&self.filters.bus, &reply_topic) {
            self.deliver(
                wire,
                &reply_topic,
                &reply,
                qos,
                false,
                Origin::Message(None),
            );
        }
    }

    /// Routes a message a client may publish at `qos`: `$aws/things/...`
    /// on the gateway's bus (never retained, its properties not forwarded),
    /// the rest through rumqttd, retained with `retain`, with the MQTT 5
    /// `properties` that go on.
    pub(super) async fn route(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        properties: Option<&Forwarded>,
    ) -> Result<(), RouterError> {
        if topic::is_reserved(topic) {
            // `iot:Receive` is checked by each receiving session.
            self.ctx.shared.bus.publish(topic, &payload[..]);
            return Ok(());
        }
        self.link()
            .await?
            .publish(topic, payload, qos, retain, properties)
            .await
    }

    /// rumqttd's link, made now if the session has none yet (a clean
    /// session, which gets its link with its first ordinary topic).
    pub(super) async fn link(&mut self) -> Result<&mut Link, RouterError> {
        if self.link.is_none() {
            let link = self
                .ctx
                .shared
                .router
                .link(&self.session.client_id, true)
                .await?;
            self.link = Some(link);
        }
        Ok(self.link.as_mut().expect("made above"))
    }

    pub(super) fn subscribe<S: AsyncRead + AsyncWrite>(
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
            self.ctx
                .publish_event(LifecycleEvent::Subscribed(SubscriptionChange {
                    session: self.session.clone(),
                    timestamp_ms: epoch_millis_now(),
                    topics: granted,
                }));
        }
    }

    /// Subscribes on the bus (`$aws/...`) or the router.
    pub(super) fn add_filter(&mut self, filter: &str, qos: QoS) -> bool {
        if topic::is_reserved(filter) {
            let bus = &self.ctx.shared.bus;
            if self.bus.is_none() {
                let on_bus = BusLink::register(bus, self.ctx.shared.settings.bus_queue);
                self.events.dropped = on_bus.dropped.clone();
                // Events published before its first `$aws` filter are
                // not for this session.
                if let Some(pump) = self.ctx.shared.pump.get() {
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

    pub(super) fn unsubscribe<S: AsyncRead + AsyncWrite>(
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
                    self.ctx.shared.bus.unsubscribe(on_bus.id, filter);
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
        self.ctx
            .publish_event(LifecycleEvent::Unsubscribed(SubscriptionChange {
                session: self.session.clone(),
                timestamp_ms: epoch_millis_now(),
                topics: unsubscribe.filters,
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_qos_is_the_highest_matching_grant() {
        let mut filters = HashMap::new();
        filters.insert("a/#".to_owned(), QoS::AtMostOnce);
        filters.insert("a/+/c".to_owned(), QoS::AtLeastOnce);
        assert_eq!(matching_qos(&filters, "a/b/c"), Some(QoS::AtLeastOnce));
        assert_eq!(matching_qos(&filters, "a/b"), Some(QoS::AtMostOnce));
        assert_eq!(matching_qos(&filters, "z"), None);
    }
}

/// Records a registry event's latency from its commit (`committed_at_ms`)
/// to its PUBLISH being written for a subscriber (replays included).
fn record_event_latency(committed_at_ms: i64) {
    let now_ms = i64::try_from(epoch_millis_now()).unwrap_or(i64::MAX);
    let seconds = now_ms.saturating_sub(committed_at_ms).max(0) as f64 / 1000.0;
    metrics::histogram!("herald_gateway_event_latency_seconds").record(seconds);
}

#[cfg(test)]
mod size_tests {
    use super::super::lifecycle::VersionCounter;
    use super::super::router::{Router, RouterSettings};
    use super::*;
    use crate::bus::Bus;
    use crate::config_cache::ConfigCache;

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
                Router::spawn(&RouterSettings::default()),
                SessionSettings::default(),
            );
            let session = run(
                stream,
                "127.0.0.1:1".parse().unwrap(),
                None,
                ctx,
                password_authenticator(Vec::new()),
                CancellationToken::new(),
                (),
            );
            let size = std::mem::size_of_val(&session);
            assert!(size <= 1536, "the session future weighs {size} bytes");
            assert!(std::mem::size_of::<Session>() <= 1024);
        });
    }
}
