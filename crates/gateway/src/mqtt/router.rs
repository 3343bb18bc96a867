//! rumqttd's Router as the gateway's in-process pub/sub engine for ordinary
//! (non-`$`) topics. The only module that touches
//! rumqttd's router: the rest of the session layer uses the [`Router`]
//! handle and the [`Link`] it makes (rumqttd's codecs are `codec`'s).
//!
//! - The Router runs on its own OS thread, spawned with an explicit
//!   [`RouterConfig`] ([`RouterSettings`]): rumqttd's `Default` refuses every
//!   connection and panics on the first subscribe.
//! - One local link per client session. Building a link blocks on the
//!   router's acknowledgement, so [`Router::link`] runs it on the blocking
//!   pool.
//! - The link's router-side client id is derived from the MQTT client id
//!   ([`link_id`]): rumqttd refuses ids with `+ $ # /`, which AWS client ids
//!   may hold. It is deterministic, so rumqttd's graveyard keeps a
//!   `clean_session=false` session across reconnects.
//! - Subscriptions go to the router at QoS 0: the session grants and tracks
//!   the client's QoS itself, so forwards never need a PUBACK back to the
//!   router (which would have to be strictly in order).
//! - [`Link::next`] answers `Notification::Unschedule` with `wake()` itself,
//!   so delivery never stalls.
//! - Every topic and filter reaches rumqttd below one fixed ASCII level
//!   ([`ENGINE_LEVEL`]: `a/b` is routed as `t/a/b`, `#` as `t/#`), and every
//!   delivery comes back without it. rumqttd's matcher slices the first
//!   byte of a topic (`topic[..1]`), which panics its thread on a topic
//!   whose first character is multi-byte UTF-8 (`é`, `ü/x`); with the level
//!   in front, the first character is always `t`. Matching is unchanged:
//!   the same level in front of a topic and a filter, and `$` topics and
//!   filters never reach rumqttd (the session serves them on its bus;
//!   [`Link`] refuses them), so MQTT's `$` rule never has to be applied by
//!   rumqttd. Each (account, region) partition other than the gateway's
//!   own has a level of its own ([`Router::in_partition`]:
//!   `p/<account>/<region>/`) and a prefix on its link ids, so its topics,
//!   filters and client ids never meet another partition's (AWS IoT: each
//!   account and region is a broker of its own). Shared subscriptions (`$share/...`) are refused by the session
//!   and would be refused here too, as `$` filters.
//! - Retained messages are the gateway's ([`RetainedStore`]), never
//!   rumqttd's: [`Link::publish`] with RETAIN stores the message (or refuses
//!   it over the limits) and routes it live without the flag, and
//!   [`Link::subscribe`] queues the stored messages its filter matches, which
//!   [`Link::next`] delivers first, with RETAIN.
//! - The gateway never runs half-alive: [`Router::is_running`] and
//!   [`Router::stopped`] tell when the routing thread has died (its event
//!   channel disconnected), and the gateway then stops with an error.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;

use rumqttd::local::{LinkBuilder, LinkError, LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet, Publish};
use rumqttd::{Notification, RouterConfig};
use tokio_util::bytes::{Buf as _, Bytes};

use herald_runtime::partition::Partition;

use super::codec::Forwarded;
use super::retained::{QuotaExceeded, Retained, RetainedLimits, RetainedStore};

/// The level in front of every topic and filter inside rumqttd: plain
/// ASCII, so rumqttd's byte slicing of a topic's first character always
/// lands on a character boundary.
pub(crate) const ENGINE_LEVEL: &str = "t/";

/// `topic` or `filter` as rumqttd routes it below `level` (the
/// partition's).
fn to_engine(level: &str, topic: &str) -> String {
    let mut engine = String::with_capacity(level.len() + topic.len());
    engine.push_str(level);
    engine.push_str(topic);
    engine
}

/// A topic rumqttd delivered below `level`, as the client published it;
/// `None` for one the gateway did not route (never expected).
fn from_engine<'a>(level: &str, topic: &'a str) -> Option<&'a str> {
    topic.strip_prefix(level)
}

/// The engine level of a partition other than the gateway's own:
/// `p/<account>/<region>/`, plain ASCII like [`ENGINE_LEVEL`], so topics
/// and filters of different partitions never match each other.
fn partition_level(partition: &Partition) -> String {
    format!("p/{}/{}/", partition.account, partition.region)
}

/// The Router's buffer and connection limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSettings {
    /// The most links (client sessions) at once.
    pub max_connections: usize,
    /// The most packets buffered for one link before the router pauses it.
    pub max_outgoing_packet_count: u64,
    /// The size of one commit-log segment per subscription filter, in bytes
    /// (at least 1 KiB).
    pub max_segment_size: usize,
    /// The segments kept per filter (at least 1).
    pub max_segment_count: usize,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 256 * 1024,
            max_segment_count: 4,
        }
    }
}

impl RouterSettings {
    fn to_config(&self) -> RouterConfig {
        RouterConfig {
            max_connections: self.max_connections.max(1),
            max_outgoing_packet_count: self.max_outgoing_packet_count.max(1),
            max_segment_size: self.max_segment_size.max(1024),
            max_segment_count: self.max_segment_count.max(1),
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        }
    }
}

/// Why the router refused or dropped a link.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router refused the link or is gone (rumqttd's `LinkError`,
    /// rendered: the error itself is too large to pass around).
    #[error("router link: {0}")]
    Link(String),
    /// The blocking task building the link failed.
    #[error("router link task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A `$` topic or filter: the gateway's bus serves those, never rumqttd.
    #[error("{0:?} is a reserved ($) topic; it is not routed by the engine")]
    Reserved(String),
    /// A retained message the retained store has no room for: nothing was
    /// stored nor routed.
    #[error(transparent)]
    RetainedQuota(#[from] QuotaExceeded),
}

impl From<LinkError> for RouterError {
    fn from(e: LinkError) -> Self {
        RouterError::Link(e.to_string())
    }
}

type Factory =
    dyn Fn(&str, bool) -> Result<(LinkTx, LinkRx, Notification), RouterError> + Send + Sync;

type Alive = dyn Fn() -> bool + Send + Sync;

/// How often [`Router::stopped`] looks at the routing thread.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A handle on the running Router. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    factory: Arc<Factory>,
    /// Whether the routing thread still receives events.
    alive: Arc<Alive>,
    retained: RetainedStore,
    /// The level in front of every topic and filter: [`ENGINE_LEVEL`] for
    /// the gateway's own partition, [`partition_level`] for the others.
    level: Arc<str>,
    /// In front of every link id: empty for the gateway's own partition,
    /// so a client id's link in one partition is not its link in another.
    link_prefix: Arc<str>,
    /// The other gateway replicas (`bus = "nats://..."`): what a link
    /// publishes goes to them too, and what its filters match comes from
    /// them. None for a gateway alone.
    peers: Option<Arc<dyn Peers>>,
}

/// The other gateway replicas, as the router's links see them.
pub trait Peers: Send + Sync {
    /// A client of this replica published `payload` on `topic` (an
    /// ordinary topic, already routed here) at `qos` with `properties`,
    /// `retained` when it is kept as the topic's retained message.
    fn publish(
        &self,
        topic: &str,
        payload: &Bytes,
        qos: u8,
        retained: Option<&Retained>,
        properties: Option<&Forwarded>,
    );
    /// A link of this replica subscribed to `filter` (`added`), or no
    /// longer is: interest is counted per replica.
    fn interest(&self, filter: &str, added: bool);
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// The router-side client id of MQTT client `client_id`: the partition's
/// `prefix`, `d-` and the id's bytes in hex, which rumqttd accepts
/// whatever the id holds.
pub(crate) fn link_id(prefix: &str, client_id: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 2 + client_id.len() * 2);
    id.push_str(prefix);
    id.push_str("d-");
    for b in client_id.bytes() {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

impl Router {
    /// Spawns the Router on its own thread. It lives until the process
    /// ends (rumqttd has no shutdown).
    pub fn spawn(settings: &RouterSettings) -> Router {
        let router_tx = rumqttd::Router::new(0, settings.to_config()).spawn();
        // The routing thread owns the only receiver of its event channel:
        // when the thread dies (a panic), the channel disconnects.
        let watched = router_tx.clone();
        let alive = move || !watched.is_disconnected();
        let factory = move |id: &str, clean: bool| {
            LinkBuilder::new(id, router_tx.clone())
                .clean_session(clean)
                .build()
                .map_err(RouterError::from)
        };
        Router {
            factory: Arc::new(factory),
            alive: Arc::new(alive),
            retained: RetainedStore::in_memory(RetainedLimits::default()),
            level: ENGINE_LEVEL.into(),
            link_prefix: "".into(),
            peers: None,
        }
    }

    /// The same engine, its links connected to the other replicas through
    /// `peers`. Links made afterwards use it.
    #[must_use]
    pub fn with_peers(mut self, peers: Arc<dyn Peers>) -> Router {
        self.peers = Some(peers);
        self
    }

    /// A link that publishes what the other replicas send here: its
    /// messages go to this replica's subscribers only.
    pub async fn peer_link(&self, name: &str) -> Result<Link, RouterError> {
        let mut link = self.service_link(name).await?;
        link.peers = None;
        Ok(link)
    }

    /// A link of the gateway's own (`name`), under an id no client id
    /// gives (theirs start `d-`), so no device can take it over.
    pub async fn service_link(&self, name: &str) -> Result<Link, RouterError> {
        self.link_with_id(format!("{}s-{name}", self.link_prefix), true)
            .await
    }

    /// The same engine for the sessions of `partition` (`None`: the
    /// gateway's own): its topics, filters and client ids apart from every
    /// other partition's. Links made afterwards use it.
    #[must_use]
    pub fn in_partition(mut self, partition: Option<&Partition>) -> Router {
        match partition {
            None => {
                self.level = ENGINE_LEVEL.into();
                self.link_prefix = "".into();
            }
            Some(partition) => {
                self.level = partition_level(partition).into();
                self.link_prefix = format!("p-{}-{}-", partition.account, partition.region).into();
            }
        }
        self
    }

    /// The same engine with its retained messages in `retained` (by
    /// default they are in memory only). Links made afterwards use it.
    #[must_use]
    pub fn with_retained(mut self, retained: RetainedStore) -> Router {
        self.retained = retained;
        self
    }

    /// The retained messages.
    pub fn retained(&self) -> &RetainedStore {
        &self.retained
    }

    /// Whether the routing thread is still running.
    pub fn is_running(&self) -> bool {
        (self.alive)()
    }

    /// Resolves once the routing thread has died (rumqttd cannot be
    /// restarted in-process, and every link dies with it).
    pub async fn stopped(&self) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while self.is_running() {
            tick.tick().await;
        }
    }

    /// **For tests only**: kills the routing thread the way rumqttd 0.20
    /// dies on a raw topic starting with a multi-byte character, sent
    /// straight to the engine without the gateway's [`ENGINE_LEVEL`]. It
    /// shows that the gateway stops instead of running half-alive; nothing
    /// in the gateway calls it.
    #[doc(hidden)]
    pub async fn kill_engine_for_tests(&self) {
        let Ok(mut link) = self.link("herald-test-engine-killer", true).await else {
            return;
        };
        // rumqttd matches a topic against its filters only when it has one.
        let _ = link.tx.subscribe("k");
        let raw = Publish::new(Bytes::from_static("é".as_bytes()), Bytes::new(), false);
        let _ = link.send(Packet::Publish(raw, None)).await;
    }

    /// A new link for MQTT client `client_id`, built off the async runtime.
    /// A link for a client the gateway holds no session for: whatever
    /// rumqttd may still keep for `client_id` (an expired session) is
    /// dropped first, and the session is kept after the link ends unless
    /// `clean_session`.
    pub async fn fresh_link(
        &self,
        client_id: &str,
        clean_session: bool,
    ) -> Result<Link, RouterError> {
        let mut link = self.link(client_id, clean_session).await?;
        if !clean_session && link.session_present() {
            let _ = link.disconnect().await;
            let mut wipe = self.link(client_id, true).await?;
            let _ = wipe.disconnect().await;
            link = self.link(client_id, false).await?;
        }
        Ok(link)
    }

    pub async fn link(&self, client_id: &str, clean_session: bool) -> Result<Link, RouterError> {
        self.link_with_id(link_id(&self.link_prefix, client_id), clean_session)
            .await
    }

    async fn link_with_id(&self, id: String, clean_session: bool) -> Result<Link, RouterError> {
        let factory = Arc::clone(&self.factory);
        let (tx, rx, ack) =
            tokio::task::spawn_blocking(move || factory(&id, clean_session)).await??;
        let ack: Option<Packet> = ack.into();
        let session_present =
            matches!(ack, Some(Packet::ConnAck(connack, _)) if connack.session_present);
        Ok(Link {
            tx,
            rx,
            session_present,
            paused: false,
            retained: self.retained.clone(),
            level: self.level.clone(),
            retained_due: VecDeque::new(),
            retained_queued: HashSet::new(),
            peers: self.peers.clone(),
            filters: HashSet::new(),
        })
    }
}

/// What the router sent a link.
#[derive(Debug)]
pub enum Delivery {
    /// A message published on a filter the link subscribed to.
    Message {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Bytes,
        /// The QoS it was published at: it is delivered at the lower of
        /// this and the subscription's.
        qos: u8,
        /// It comes from the retained store (a new subscription's retained
        /// messages), not from a publish just routed.
        retained: bool,
        /// The MQTT 5 properties it was published with that go on.
        properties: Option<Forwarded>,
    },
    /// The router dropped the link (for example a takeover of its id).
    Disconnected,
}

/// One client session's link to the router.
pub struct Link {
    tx: LinkTx,
    rx: LinkRx,
    session_present: bool,
    /// The router paused the link and `wake()` has not gone through yet.
    paused: bool,
    retained: RetainedStore,
    /// The router's partition level ([`Router::in_partition`]).
    level: Arc<str>,
    /// Retained messages matched by a new subscription, not delivered yet.
    retained_due: VecDeque<Arc<str>>,
    /// The topics in `retained_due`: each is queued once, however many
    /// SUBSCRIBEs match it, so the queue never outgrows the store.
    retained_queued: HashSet<Arc<str>>,
    /// The other replicas ([`Router::with_peers`]).
    peers: Option<Arc<dyn Peers>>,
    /// With peers: the filters subscribed, whose interest the link holds.
    filters: HashSet<String>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.rx.id())
            .field("session_present", &self.session_present)
            .finish()
    }
}

impl Link {
    /// Whether the router resumed a stored session (`clean_session=false`).
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// Publishes a message a client published at `qos`, with the MQTT 5
    /// `properties` that go on to subscribers. Blocks only while
    /// the router's event queue is full. With `retain`, the message is
    /// first stored in the retained store (an empty payload deletes the
    /// topic's message) and made durable; over the store's limits nothing
    /// is stored nor routed ([`RouterError::RetainedQuota`]). Subscribers
    /// get it without RETAIN, at the lower of `qos` and their
    /// subscription's.
    ///
    /// The engine gets it at QoS 0 (it delivers at each subscription's
    /// QoS, whatever the publish's) with `qos` and `properties` in front of
    /// the payload (see [`engine_payload`]).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Bytes,
        qos: u8,
        retain: bool,
        properties: Option<&Forwarded>,
    ) -> Result<(), RouterError> {
        refuse_reserved(topic)?;
        let retained = retain.then(|| Retained {
            properties: properties.cloned(),
            ..Retained::now(payload.clone(), qos)
        });
        if let Some(message) = &retained {
            self.retained.keep(topic, message.clone()).await?;
        }
        if let Some(peers) = &self.peers {
            peers.publish(topic, &payload, qos, retained.as_ref(), properties);
        }
        let publish = Publish::new(
            Bytes::from(to_engine(&self.level, topic)),
            engine_payload(qos, properties, &payload),
            false,
        );
        self.send(Packet::Publish(publish, None)).await
    }

    /// Subscribes to `filter` (a non-`$` filter; a `$` one is refused), and
    /// queues the retained messages it matches for [`Link::next`].
    pub fn subscribe(&mut self, filter: &str) -> Result<(), RouterError> {
        self.resubscribe(filter)?;
        self.queue_retained(filter);
        Ok(())
    }

    /// Queues the retained messages `filter` matches for [`Link::next`], as
    /// a SUBSCRIBE does, even to a filter already subscribed (MQTT 3.1.1
    /// §3.8.4). A topic already queued is not queued again; each is sent
    /// with the payload retained when its turn comes.
    pub fn queue_retained(&mut self, filter: &str) {
        for topic in self.retained.matching_topics(filter) {
            if self.retained_queued.insert(Arc::clone(&topic)) {
                self.retained_due.push_back(topic);
            }
        }
    }

    /// Subscribes to `filter` again for a session the engine forgot (a
    /// gateway restart): no retained messages, the client subscribed before.
    pub fn resubscribe(&mut self, filter: &str) -> Result<(), RouterError> {
        refuse_reserved(filter)?;
        self.tx.subscribe(to_engine(&self.level, filter))?;
        if let Some(peers) = &self.peers
            && self.filters.insert(filter.to_owned())
        {
            peers.interest(filter, true);
        }
        Ok(())
    }

    /// Unsubscribes from `filter`; only call it for a subscribed filter.
    pub fn unsubscribe(&mut self, filter: &str) -> Result<(), RouterError> {
        refuse_reserved(filter)?;
        self.tx.unsubscribe(to_engine(&self.level, filter))?;
        if let Some(peers) = &self.peers
            && self.filters.remove(filter)
        {
            peers.interest(filter, false);
        }
        Ok(())
    }

    /// Removes the link from the router (a dropped link stays a zombie).
    pub async fn disconnect(&mut self) -> Result<(), RouterError> {
        if let Some(peers) = &self.peers {
            for filter in self.filters.drain() {
                peers.interest(&filter, false);
            }
        }
        self.send(Packet::Disconnect(
            Disconnect {
                reason_code: DisconnectReasonCode::NormalDisconnection,
            },
            None,
        ))
        .await
    }

    async fn send(&mut self, packet: Packet) -> Result<(), RouterError> {
        // Async in name only: it pushes to the link's buffer and notifies
        // the router on its bounded channel, blocking only when it is full.
        self.tx.send(packet).await?;
        Ok(())
    }

    /// The next delivery if one is ready without waiting: the rest of the
    /// batch the router handed over with its last wake-up, so a session can
    /// write a batch of messages at once rather than one per wake-up.
    pub fn try_next(&mut self) -> Option<Delivery> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // `next` is cancel-safe: left pending, it has taken nothing.
        match std::pin::pin!(self.next()).poll(&mut cx) {
            std::task::Poll::Ready(delivery) => Some(delivery),
            std::task::Poll::Pending => None,
        }
    }

    /// The next delivery: forwards become [`Delivery::Message`], a pause
    /// (`Unschedule`) is answered with `wake()`, acks are skipped.
    /// Cancel-safe: a wake cut short is retried by the next call.
    pub async fn next(&mut self) -> Delivery {
        while let Some(topic) = self.retained_due.pop_front() {
            self.retained_queued.remove(&topic);
            // Deleted since it was queued: nothing to send.
            if let Some(message) = self.retained.message(&topic) {
                return Delivery::Message {
                    topic: topic.to_string(),
                    payload: message.payload,
                    qos: message.qos,
                    retained: true,
                    properties: message.properties,
                };
            }
        }
        loop {
            if self.paused {
                // Boxed: `wake`'s future carries a whole router event, and
                // is rare; unboxed it would make every session's wait for
                // its next delivery several times larger.
                if Box::pin(self.rx.wake()).await.is_err() {
                    return Delivery::Disconnected;
                }
                self.paused = false;
            }
            match self.rx.next().await {
                Ok(Some(Notification::Forward(forward))) => {
                    let publish = forward.publish;
                    let Some(topic) = std::str::from_utf8(&publish.topic)
                        .ok()
                        .and_then(|topic| from_engine(&self.level, topic))
                    else {
                        continue;
                    };
                    let Some(EngineMessage {
                        qos,
                        properties,
                        payload,
                    }) = from_engine_payload(publish.payload)
                    else {
                        continue;
                    };
                    // Live: the router never forwards a RETAIN flag of its own.
                    return Delivery::Message {
                        topic: topic.to_owned(),
                        payload,
                        qos,
                        retained: false,
                        properties,
                    };
                }
                Ok(Some(Notification::Unschedule)) => self.paused = true,
                Ok(Some(Notification::Disconnect(..))) | Err(_) => return Delivery::Disconnected,
                Ok(_) => {}
            }
        }
    }
}

/// The engine's payload of a message published at `qos` with `properties`:
/// a byte with `qos` (bit 0), whether properties follow (bit 1) and
/// whether an expiry time follows (bit 2); the expiry time (epoch
/// milliseconds, 8 bytes big-endian); the encoded properties' length (4
/// bytes big-endian) and the encoded properties; then `payload`. The engine
/// forwards each message at the subscription's QoS and keeps no other trace
/// of the publish's (its packet's QoS and DUP are its own), yet a
/// subscription at QoS 1 must receive a message published at QoS 0 at
/// QoS 0 (MQTT 3.1.1 and MQTT 5, §3.8.4). The properties travel encoded
/// once, as they are written to subscribers.
fn engine_payload(qos: u8, properties: Option<&Forwarded>, payload: &[u8]) -> Bytes {
    let encoded = properties.map_or(&[][..], |p| &p.encoded[..]);
    let expires_at_ms = properties.and_then(|p| p.expires_at_ms);
    let mut framed = Vec::with_capacity(1 + 8 + 4 + encoded.len() + payload.len());
    framed.push(
        qos.min(1)
            | (u8::from(!encoded.is_empty()) << 1)
            | (u8::from(expires_at_ms.is_some()) << 2),
    );
    if let Some(at) = expires_at_ms {
        framed.extend_from_slice(&at.to_be_bytes());
    }
    if !encoded.is_empty() {
        let len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(encoded);
    }
    framed.extend_from_slice(payload);
    Bytes::from(framed)
}

/// What [`engine_payload`] framed.
#[derive(Debug, PartialEq, Eq)]
struct EngineMessage {
    qos: u8,
    properties: Option<Forwarded>,
    payload: Bytes,
}

/// Reads [`engine_payload`]'s framing; `None` for a payload without it
/// (nothing the gateway publishes).
fn from_engine_payload(mut framed: Bytes) -> Option<EngineMessage> {
    let head = *framed.first()?;
    framed.advance(1);
    let mut take = |n: usize| (framed.len() >= n).then(|| framed.split_to(n));
    let expires_at_ms = if head & 0b100 != 0 {
        Some(u64::from_be_bytes(take(8)?[..].try_into().ok()?))
    } else {
        None
    };
    let encoded = if head & 0b10 != 0 {
        let len = u32::from_be_bytes(take(4)?[..].try_into().ok()?);
        take(usize::try_from(len).ok()?)?
    } else {
        Bytes::new()
    };
    let properties = (!encoded.is_empty() || expires_at_ms.is_some()).then_some(Forwarded {
        encoded,
        expires_at_ms,
    });
    Some(EngineMessage {
        qos: head & 1,
        properties,
        payload: framed,
    })
}

/// Refuses a `$` topic or filter: rumqttd must never see one (MQTT's `$`
/// rule is the gateway's to apply, and rumqttd treats `$share/` specially).
fn refuse_reserved(topic: &str) -> Result<(), RouterError> {
    if crate::bus::topic::is_reserved(topic) {
        return Err(RouterError::Reserved(topic.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_payloads_carry_the_qos_and_properties_in_front() {
        let with_properties = Forwarded {
            encoded: Bytes::from_static(&[0x26, 0, 1, b'k', 0, 1, b'v']),
            expires_at_ms: Some(1_700_000_000_000),
        };
        let expiry_only = Forwarded {
            encoded: Bytes::new(),
            expires_at_ms: Some(5),
        };
        let properties_only = Forwarded {
            expires_at_ms: None,
            ..with_properties.clone()
        };
        for (qos, properties, payload) in [
            (0, None, &b""[..]),
            (1, None, b"on"),
            (0, None, &[0xff; 300][..]),
            (1, Some(&with_properties), b"{}"),
            (0, Some(&expiry_only), b""),
            (1, Some(&properties_only), &[0; 70_000][..]),
        ] {
            let framed = engine_payload(qos, properties, payload);
            let read = from_engine_payload(framed).unwrap();
            assert_eq!(
                read,
                EngineMessage {
                    qos,
                    properties: properties.cloned(),
                    payload: Bytes::copy_from_slice(payload),
                }
            );
        }
        assert_eq!(engine_payload(0, None, b"x").len(), 2);
        assert_eq!(from_engine_payload(Bytes::new()), None);
        // Cut short: refused, never a panic.
        let framed = engine_payload(1, Some(&with_properties), b"");
        for cut in 1..framed.len() - 1 {
            let _ = from_engine_payload(framed.slice(..cut));
        }
        assert_eq!(from_engine_payload(framed.slice(..5)), None);
    }

    #[test]
    fn link_ids_are_hex_and_safe_for_rumqttd() {
        assert_eq!(link_id("", "a/b"), "d-612f62");
        assert_eq!(link_id("", "#+$"), "d-232b24");
        assert_ne!(link_id("", "ab"), link_id("", "a b"));
        assert_eq!(
            link_id("p-111122223333-eu-west-1-", "a"),
            "p-111122223333-eu-west-1-d-61"
        );
    }

    #[test]
    fn engine_topics_start_with_ascii_and_map_back() {
        let other = Partition::new("111122223333", "eu-west-1").unwrap();
        let other = partition_level(&other);
        for level in [ENGINE_LEVEL, other.as_str()] {
            for topic in ["é", "ü/x", "#", "+/+", "/", "a"] {
                let engine = to_engine(level, topic);
                assert!(engine.as_bytes()[0].is_ascii());
                assert_eq!(from_engine(level, &engine), Some(topic));
            }
            assert_eq!(from_engine(level, "é"), None);
        }
        assert_eq!(from_engine(&other, &to_engine(ENGINE_LEVEL, "a")), None);
        assert_eq!(from_engine(ENGINE_LEVEL, &to_engine(&other, "a")), None);
    }
}
