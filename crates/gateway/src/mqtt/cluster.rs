//! Gateway replicas over NATS (`bus = "nats://..."`): N gateways behind one
//! load balancer, each with its own device connections, acting as one
//! broker.
//!
//! - **Ordinary messages.** What a client publishes here is routed here and
//!   published on a core NATS subject derived from its topic
//!   ([`message_subject`]); each replica subscribes to the subjects of the
//!   filters its own clients hold, counting its interest per filter, and
//!   routes what arrives to its own subscribers (their `iot:Receive` is
//!   checked at delivery, as for any message). A message that matches
//!   several of a replica's subjects arrives once per subject, so arrivals
//!   are told apart by their id and each is routed once.
//! - **Retained messages** are kept in a JetStream key-value bucket too:
//!   every replica follows it from its history, so one that starts later
//!   has them all, and keeps them in its own retained store. Their live
//!   delivery travels as any message's.
//! - **The `$aws` bus**: what a replica's bus publishes itself (lifecycle
//!   events, `$aws/things/...` messages of its clients) reaches every
//!   replica's bus. The registry's events do not travel: each replica's
//!   event pump follows the change log, so they arrive everywhere with the
//!   same `eventId`.
//! - **Persistent sessions** (their filters and change-log positions) are
//!   kept in a JetStream key-value bucket too, so a client resumes its
//!   session on any replica, and its registry events are replayed from
//!   there.
//! - **Client ids** are claimed in a JetStream key-value bucket: a CONNECT
//!   accepted here writes the id's key; a replica holding an older
//!   connection of the same id (an older revision of the key) ends it as a
//!   takeover (`DUPLICATE_CLIENTID`).
//!
//! Core NATS carries messages at most once; async-nats reconnects and
//! subscribes again after a NATS restart.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use async_nats::{HeaderMap, jetstream::kv};
use herald_runtime::partition::Partition;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_stream::StreamExt as _;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{
    codec::Forwarded,
    context::{ClientIds, Live, SessionContext, lock},
    persist::{BoxFuture, SharedSessions, StoredSession},
    retained::{Retained, from_hex, to_hex},
    router::{Peers, Router},
};
use crate::bus::Bus;

/// The bucket of client-id claims.
const CLAIMS_BUCKET: &str = "herald-client-ids";
/// The bucket of persistent sessions.
const SESSIONS_BUCKET: &str = "herald-sessions";
/// The bucket of retained messages.
const RETAINED_BUCKET: &str = "herald-retained";
/// Messages waiting to go out or to be routed here; beyond, they are
/// dropped (and counted), never blocking a session.
const QUEUE: usize = 8_192;
/// How many recent arrival ids a partition remembers to route each once.
const SEEN: usize = 8_192;
/// Headers: the message's id (`<replica>:<n>`).
const ID_HEADER: &str = "Herald-Id";
/// The header with the QoS (`0` or `1`) an ordinary topic's message was
/// published at.
const QOS_HEADER: &str = "Herald-QoS";
/// The header with a message's MQTT 5 properties but its expiry, encoded as
/// MQTT 5 writes them, in hex (see [`Forwarded`]).
const PROPERTIES_HEADER: &str = "Herald-Properties";
/// The header with the time a message expires, in epoch milliseconds.
const EXPIRES_HEADER: &str = "Herald-Expires";
/// How many times a shared session record is written before giving up
/// when it changes under each write.
const SHARE_ATTEMPTS: usize = 3;

/// This replica's connection to NATS, shared by its partitions.
pub(crate) struct Nats {
    client: async_nats::Client,
    /// This replica's id: a UUID of this run.
    replica: String,
    claims: kv::Store,
    sessions: kv::Store,
    retained: kv::Store,
    next: AtomicU64,
}

impl Nats {
    /// Connects to the NATS server at `url` (retrying while it is down)
    /// and opens the client-id bucket.
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Arc<Nats>> {
        let replica = uuid::Uuid::new_v4().to_string();
        let client = async_nats::ConnectOptions::new()
            .name(format!("herald-gateway-{replica}"))
            // A replica never hears its own messages back.
            .no_echo()
            .retry_on_initial_connect()
            .event_callback(|event| async move {
                tracing::info!(%event, "nats");
            })
            .connect(url)
            .await
            .with_context(|| format!("connect to NATS at {url}"))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let claims = bucket(&jetstream, CLAIMS_BUCKET)
            .await
            .context("open the client-id bucket (is JetStream on? nats-server -js)")?;
        let sessions = bucket(&jetstream, SESSIONS_BUCKET).await?;
        let retained = bucket(&jetstream, RETAINED_BUCKET).await?;
        tracing::info!(url, replica, "joined the gateway replicas over NATS");
        Ok(Arc::new(Nats {
            client,
            replica,
            claims,
            sessions,
            retained,
            next: AtomicU64::new(0),
        }))
    }

    /// Whether the connection to NATS is up.
    pub(crate) fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    fn next_id(&self) -> String {
        format!(
            "{}:{}",
            self.replica,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// Opens (creating it if needed) a key-value bucket that keeps each key's
/// last value.
async fn bucket(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
) -> anyhow::Result<kv::Store> {
    jetstream
        .create_or_update_key_value(kv::Config {
            bucket: name.to_owned(),
            history: 1,
            ..Default::default()
        })
        .await
        .with_context(|| format!("open the bucket {name}"))
}

/// Escapes one topic level as a NATS subject token: letters, digits, `-`
/// and `_` stay, every other byte is `~` and two hex digits, and the empty
/// level is `~` alone. So no token is empty or holds `.`, `*`, `>` or
/// white space, and different levels give different tokens.
pub(crate) fn token(level: &str) -> String {
    if level.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(level.len());
    for b in level.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    out
}

/// The level a [`token`] escapes; `None` for what no level escapes to.
pub(crate) fn level(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            let hex: String = chars.by_ref().take(2).collect();
            if hex.len() != 2 {
                return None;
            }
            bytes.push(u8::from_str_radix(&hex, 16).ok()?);
        } else if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            bytes.push(c as u8);
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The subject prefix of a partition: `herald.<account>.<region>`.
fn partition_prefix(partition: &Partition) -> String {
    format!(
        "herald.{}.{}",
        token(&partition.account),
        token(&partition.region)
    )
}

/// The subject a message on `topic` travels on: `<prefix>.<kind>.` and the
/// topic's levels as tokens.
pub(crate) fn message_subject(prefix: &str, kind: &str, topic: &str) -> String {
    let mut subject = format!("{prefix}.{kind}");
    for level in topic.split('/') {
        subject.push('.');
        subject.push_str(&token(level));
    }
    subject
}

/// The topic of a subject made by [`message_subject`] with `head`
/// (`<prefix>.<kind>`) in front; `None` for any other subject.
pub(crate) fn subject_topic(head: &str, subject: &str) -> Option<String> {
    let rest = subject.strip_prefix(head)?.strip_prefix('.')?;
    let levels: Option<Vec<String>> = rest.split('.').map(level).collect();
    Some(levels?.join("/"))
}

/// The subjects that carry what `filter` matches: `+` is `*`, `#` is `>`,
/// and `a/#` also matches `a` itself.
pub(crate) fn filter_subjects(prefix: &str, kind: &str, filter: &str) -> Vec<String> {
    let mut subject = format!("{prefix}.{kind}");
    for level in filter.split('/') {
        match level {
            "#" => {
                let parent = subject.clone();
                subject.push_str(".>");
                // `a/#` matches `a` too; a lone `#` matches every topic,
                // each of which has a level.
                return if filter == "#" {
                    vec![subject]
                } else {
                    vec![parent, subject]
                };
            }
            "+" => subject.push_str(".*"),
            level => {
                subject.push('.');
                subject.push_str(&token(level));
            }
        }
    }
    vec![subject]
}

/// Something to send to the other replicas: a message on a subject, or a
/// retained message to keep (an empty payload removes the topic's).
enum Outbound {
    /// A message for the other replicas; `qos` is the QoS an ordinary
    /// topic's message was published at (none for the `$aws` bus's).
    Message {
        subject: String,
        payload: Bytes,
        qos: Option<u8>,
        properties: Option<Forwarded>,
    },
    Retained {
        key: String,
        message: Retained,
    },
}

/// What starts a retained message in the bucket, before its QoS (one
/// byte), when it was retained (epoch milliseconds, 8 bytes big-endian) and
/// the payload. A value without it is an older replica's: the payload
/// alone.
const RETAINED_MAGIC: &[u8] = b"\0HR1";
const RETAINED_HEAD: usize = RETAINED_MAGIC.len() + 9;
/// What starts a retained message with MQTT 5 properties instead, before
/// the same QoS and time, then when it expires (epoch milliseconds, 8 bytes
/// big-endian, `u64::MAX` for never), the encoded properties' length (4
/// bytes big-endian), the encoded properties and the payload. Only a
/// message with properties is written so: one without reads on replicas
/// older than this format.
const RETAINED_MAGIC_PROPERTIES: &[u8] = b"\0HR2";
const RETAINED_PROPERTIES_HEAD: usize = RETAINED_MAGIC_PROPERTIES.len() + 9 + 8 + 4;

fn encode_retained(message: &Retained) -> Bytes {
    let properties = message.properties.as_ref();
    let encoded = properties.map_or(&[][..], |p| &p.encoded[..]);
    let mut value =
        Vec::with_capacity(RETAINED_PROPERTIES_HEAD + encoded.len() + message.payload.len());
    value.extend_from_slice(match properties {
        Some(_) => RETAINED_MAGIC_PROPERTIES,
        None => RETAINED_MAGIC,
    });
    value.push(message.qos);
    value.extend_from_slice(&message.modified_ms.to_be_bytes());
    if let Some(properties) = properties {
        let expires = properties.expires_at_ms.unwrap_or(u64::MAX);
        value.extend_from_slice(&expires.to_be_bytes());
        let len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        value.extend_from_slice(&len.to_be_bytes());
        value.extend_from_slice(encoded);
    }
    value.extend_from_slice(&message.payload);
    value.into()
}

fn decode_retained(value: &Bytes) -> Retained {
    decode_retained_with_properties(value)
        .or_else(|| {
            let head = value
                .get(..RETAINED_HEAD)
                .filter(|h| h.starts_with(RETAINED_MAGIC))?;
            let rest = &head[RETAINED_MAGIC.len()..];
            Some(Retained {
                payload: value.slice(RETAINED_HEAD..),
                qos: rest[0],
                modified_ms: i64::from_be_bytes(rest[1..9].try_into().ok()?),
                properties: None,
            })
        })
        .unwrap_or_else(|| Retained::now(value.clone(), 0))
}

fn decode_retained_with_properties(value: &Bytes) -> Option<Retained> {
    let head = value
        .get(..RETAINED_PROPERTIES_HEAD)
        .filter(|h| h.starts_with(RETAINED_MAGIC_PROPERTIES))?;
    let rest = &head[RETAINED_MAGIC_PROPERTIES.len()..];
    let expires = u64::from_be_bytes(rest[9..17].try_into().ok()?);
    let len = usize::try_from(u32::from_be_bytes(rest[17..21].try_into().ok()?)).ok()?;
    let end = RETAINED_PROPERTIES_HEAD.checked_add(len)?;
    let encoded = value.get(RETAINED_PROPERTIES_HEAD..end)?;
    Some(Retained {
        payload: value.slice(end..),
        qos: rest[0],
        modified_ms: i64::from_be_bytes(rest[1..9].try_into().ok()?),
        properties: Some(Forwarded {
            encoded: Bytes::copy_from_slice(encoded),
            expires_at_ms: (expires != u64::MAX).then_some(expires),
        }),
    })
}

/// Something another replica sent, to route here.
struct Inbound {
    id: Option<String>,
    /// The QoS it was published at.
    qos: u8,
    /// The MQTT 5 properties it goes on with.
    properties: Option<Forwarded>,
    topic: String,
    payload: Bytes,
}

/// One partition's link to the other replicas: the router's and the bus's
/// [`Peers`], and the client-id claims of its sessions.
pub(crate) struct PartitionPeers {
    nats: Arc<Nats>,
    prefix: String,
    outbound: mpsc::Sender<Outbound>,
    inbound: mpsc::Sender<Inbound>,
    /// Filter → how many of this replica's links hold it, and the tasks
    /// that follow its subjects.
    interest: Mutex<HashMap<String, Interest>>,
    /// Client id → this replica's connection holding it: the claim's
    /// revision (0 until the bucket answered) and its value.
    claims: Mutex<HashMap<String, Claim>>,
    /// Client id → the revision of its shared session record as this
    /// replica last wrote it.
    revisions: Mutex<HashMap<String, u64>>,
    /// Messages dropped for a full queue.
    dropped: AtomicU64,
    ctx: std::sync::OnceLock<SessionContext>,
    me: Weak<PartitionPeers>,
}

/// How many of this replica's links hold a filter, and the tasks that
/// follow its subjects.
type Interest = (usize, Vec<JoinHandle<()>>);

struct Claim {
    live: Weak<Live>,
    value: Bytes,
    revision: u64,
}

/// What [`PartitionPeers::start`] needs that only exists after the router
/// and bus were given the peers.
pub(crate) struct Receivers {
    outbound: mpsc::Receiver<Outbound>,
    inbound: mpsc::Receiver<Inbound>,
}

impl PartitionPeers {
    pub(crate) fn new(nats: Arc<Nats>, partition: &Partition) -> (Arc<PartitionPeers>, Receivers) {
        let (outbound_tx, outbound) = mpsc::channel(QUEUE);
        let (inbound_tx, inbound) = mpsc::channel(QUEUE);
        let peers = Arc::new_cyclic(|me| PartitionPeers {
            nats,
            prefix: partition_prefix(partition),
            outbound: outbound_tx,
            inbound: inbound_tx,
            interest: Mutex::default(),
            claims: Mutex::default(),
            revisions: Mutex::default(),
            dropped: AtomicU64::new(0),
            ctx: std::sync::OnceLock::new(),
            me: me.clone(),
        });
        (peers, Receivers { outbound, inbound })
    }

    fn self_arc(&self) -> Option<Arc<PartitionPeers>> {
        self.me.upgrade()
    }

    /// Messages dropped for a full queue since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, out: Outbound) {
        if self.outbound.try_send(out).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts the partition's tasks: sending, routing what arrives here
    /// through `router`'s peer link, the `$aws` bus's traffic both ways, the
    /// retained messages and the client-id claims.
    pub(crate) async fn start(
        self: &Arc<Self>,
        receivers: Receivers,
        router: &Router,
        bus: &Bus,
        ctx: SessionContext,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let _ = self.ctx.set(ctx);
        let Receivers {
            mut outbound,
            mut inbound,
        } = receivers;
        let client = self.nats.client.clone();
        let nats = Arc::clone(&self.nats);
        tokio::spawn(async move {
            while let Some(out) = outbound.recv().await {
                let sent = match out {
                    Outbound::Message {
                        subject,
                        payload,
                        qos,
                        properties,
                    } => {
                        let mut headers = HeaderMap::new();
                        headers.insert(ID_HEADER, nats.next_id().as_str());
                        if let Some(qos) = qos {
                            headers.insert(QOS_HEADER, qos.to_string().as_str());
                        }
                        if let Some(properties) = properties {
                            if !properties.encoded.is_empty() {
                                let encoded = to_hex(&properties.encoded);
                                headers.insert(PROPERTIES_HEADER, encoded.as_str());
                            }
                            if let Some(at) = properties.expires_at_ms {
                                headers.insert(EXPIRES_HEADER, at.to_string().as_str());
                            }
                        }
                        client
                            .publish_with_headers(subject, headers, payload)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Outbound::Retained { key, message } if message.payload.is_empty() => {
                        nats.retained.delete(&key).await.map_err(|e| e.to_string())
                    }
                    Outbound::Retained { key, message } => nats
                        .retained
                        .put(&key, encode_retained(&message))
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "sending to NATS failed");
                }
            }
        });

        let mut link = router
            .peer_link(&format!("herald-peers-{}", self.nats.replica))
            .await
            .context("the router link for the other replicas")?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut seen = Seen::default();
            loop {
                let arrived = tokio::select! {
                    arrived = inbound.recv() => arrived,
                    () = stop.cancelled() => None,
                };
                let Some(arrived) = arrived else { break };
                if let Some(id) = arrived.id
                    && !seen.first(id)
                {
                    continue;
                }
                let published = link
                    .publish(
                        &arrived.topic,
                        arrived.payload,
                        arrived.qos,
                        false,
                        arrived.properties.as_ref(),
                    )
                    .await;
                if let Err(e) = published {
                    tracing::debug!(topic = arrived.topic, error = %e, "a peer's message was not routed");
                }
            }
            let _ = link.disconnect().await;
        });

        // The bus: ours out, theirs in.
        let peers = Arc::clone(self);
        bus.forward_to(Box::new(move |topic, payload| {
            peers.send(Outbound::Message {
                subject: message_subject(&peers.prefix, "aws", topic),
                payload: Bytes::copy_from_slice(payload),
                qos: None,
                properties: None,
            });
        }));
        let head = format!("{}.aws", self.prefix);
        let mut aws = self.nats.client.subscribe(format!("{head}.>")).await?;
        let bus = bus.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = aws.next() => message,
                    () = stop.cancelled() => None,
                };
                let Some(message) = message else { break };
                if let Some(topic) = subject_topic(&head, &message.subject) {
                    bus.publish_from_peer(&topic, &message.payload[..]);
                }
            }
        });

        // Retained messages: every replica keeps them all, from the
        // bucket's history on.
        let mut retained = self
            .nats
            .retained
            .watch_with_history(format!("{}.>", self.claims_prefix()))
            .await
            .context("watch the retained-message bucket")?;
        let store = router.retained().clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let entry = tokio::select! {
                    entry = retained.next() => entry,
                    () = stop.cancelled() => None,
                };
                let entry = match entry {
                    Some(Ok(entry)) => entry,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "retained-message bucket watch");
                        continue;
                    }
                    None => break,
                };
                let Some(topic) = entry.key.rsplit('.').next().and_then(unhex_str) else {
                    continue;
                };
                let message = match entry.operation {
                    kv::Operation::Put => decode_retained(&entry.value),
                    kv::Operation::Delete | kv::Operation::Purge => Retained::now(Bytes::new(), 0),
                };
                if store.keep(&topic, message).await.is_err() {
                    tracing::warn!(
                        topic,
                        "a peer's retained message is over this replica's limits"
                    );
                }
            }
        });

        self.watch_claims(shutdown).await
    }

    /// Routes what a subscription brings here, until `shutdown`.
    async fn forward_inbound(
        self: Arc<Self>,
        mut subscription: async_nats::Subscriber,
        head: String,
        shutdown: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                message = subscription.next() => message,
                () = shutdown.cancelled() => None,
            };
            let Some(message) = message else { break };
            let Some(topic) = subject_topic(&head, &message.subject) else {
                continue;
            };
            let header = |name| message.headers.as_ref().and_then(|h| h.get(name));
            let arrived = Inbound {
                id: header(ID_HEADER).map(|v| v.as_str().to_owned()),
                // An older replica's messages carry no QoS: they are
                // delivered at the subscription's, as it did.
                qos: match header(QOS_HEADER).map(|v| v.as_str()) {
                    Some("0") => 0,
                    _ => 1,
                },
                properties: forwarded(
                    header(PROPERTIES_HEADER).map(|v| v.as_str()),
                    header(EXPIRES_HEADER).map(|v| v.as_str()),
                ),
                topic,
                payload: message.payload,
            };
            if self.inbound.try_send(arrived).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes `client_id`'s shared session record (`None` removes it) if
    /// this replica holds the session; false when another does. The write
    /// is made over the revision this replica last wrote; when the record
    /// has changed since (or that revision is not known), only after
    /// [`PartitionPeers::holds`] says so, over the record's revision then.
    /// So a replica that has not yet heard of a takeover never writes over
    /// the record of the replica that took the session over.
    async fn share(
        &self,
        client_id: &str,
        session: Option<&StoredSession>,
    ) -> Result<bool, String> {
        let key = format!("{}.{}", self.claims_prefix(), hex(client_id));
        let value = match session {
            Some(session) => Some(Bytes::from(
                serde_json::to_vec(session).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let mut known = lock(&self.revisions).get(client_id).copied();
        for _ in 0..SHARE_ATTEMPTS {
            let revision = match known {
                Some(revision) => revision,
                None => {
                    if !self.holds(client_id, &key).await? {
                        lock(&self.revisions).remove(client_id);
                        return Ok(false);
                    }
                    match self.nats.sessions.entry(&key).await {
                        Ok(Some(entry)) => entry.revision,
                        // Nothing to remove.
                        Ok(None) if value.is_none() => return Ok(true),
                        // Created: the key must have no record yet.
                        Ok(None) => 0,
                        Err(e) => return Err(e.to_string()),
                    }
                }
            };
            let written = match &value {
                Some(value) => self
                    .nats
                    .sessions
                    .update(&key, value.clone(), revision)
                    .await
                    .map(Some),
                None => self
                    .nats
                    .sessions
                    .delete_expect_revision(&key, Some(revision))
                    .await
                    .map(|()| None),
            };
            match written {
                Ok(Some(revision)) => {
                    lock(&self.revisions).insert(client_id.to_owned(), revision);
                    return Ok(true);
                }
                Ok(None) => {
                    lock(&self.revisions).remove(client_id);
                    return Ok(true);
                }
                // Written by another replica (or by this one, with a write
                // whose answer was lost) since.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => known = None,
                Err(e) => {
                    lock(&self.revisions).remove(client_id);
                    return Err(e.to_string());
                }
            }
        }
        Err(format!(
            "the record changed under each of {SHARE_ATTEMPTS} writes"
        ))
    }

    /// Whether this replica holds `client_id`'s session: it made the
    /// latest claim of the client id (`key`), is making one now, or the id
    /// was never claimed.
    async fn holds(&self, client_id: &str, key: &str) -> Result<bool, String> {
        let latest = self
            .nats
            .claims
            .entry(key)
            .await
            .map_err(|e| e.to_string())?;
        let Some(latest) = latest.filter(|entry| entry.operation == kv::Operation::Put) else {
            return Ok(true);
        };
        if latest.value.starts_with(self.nats.replica.as_bytes()) {
            return Ok(true);
        }
        // A connection here whose claim the bucket has not answered yet
        // comes after the latest.
        Ok(lock(&self.claims)
            .get(client_id)
            .is_some_and(|claim| claim.revision == 0))
    }

    fn claims_prefix(&self) -> String {
        self.prefix.trim_start_matches("herald.").to_owned()
    }

    /// Follows the claims of this partition's client ids: a newer claim
    /// made by another replica ends the connection here.
    async fn watch_claims(self: &Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut watch = self
            .nats
            .claims
            .watch(format!("{}.>", self.claims_prefix()))
            .await
            .context("watch the client-id bucket")?;
        let peers = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let entry = tokio::select! {
                    entry = watch.next() => entry,
                    () = shutdown.cancelled() => None,
                };
                match entry {
                    Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                        if let Some(client_id) = entry.key.rsplit('.').next().and_then(unhex_str) {
                            peers.claimed_elsewhere(&client_id, &entry.value, entry.revision);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "client-id bucket watch"),
                    None => break,
                }
            }
        });
        Ok(())
    }

    /// `value` claimed `client_id` at `revision`: a connection here with an
    /// older claim is taken over.
    fn claimed_elsewhere(&self, client_id: &str, value: &Bytes, revision: u64) {
        // This replica's own claims (an older connection of the same id
        // here is taken over locally).
        if value.starts_with(self.nats.replica.as_bytes()) {
            return;
        }
        let kicked = {
            let mut claims = lock(&self.claims);
            match claims.get(client_id) {
                // A claim here the bucket has not answered yet is compared
                // with the latest once it has (see `connected`): the one
                // seen now may be older (a watch behind) or newer.
                Some(claim)
                    if claim.value == *value
                        || claim.revision == 0
                        || claim.revision >= revision =>
                {
                    return;
                }
                Some(_) => claims.remove(client_id),
                None => None,
            }
        };
        if let Some(claim) = &kicked {
            self.kick(client_id, claim);
        }
        // A persistent session away here (or just taken over) is the other
        // replica's now.
        if let Some(ctx) = self.ctx.get() {
            ctx.forget_away(client_id, kicked.is_some());
        }
    }

    fn kick(&self, client_id: &str, claim: &Claim) {
        if let Some(live) = claim.live.upgrade() {
            tracing::info!(client_id, "taken over on another replica");
            live.kick.raise();
        }
    }
}

fn unhex_str(hex: &str) -> Option<String> {
    String::from_utf8(from_hex(hex)?.to_vec()).ok()
}

fn hex(text: &str) -> String {
    to_hex(text.as_bytes())
}

/// The properties a peer's message came with: its encoded properties (in
/// hex) and expiry time, each maybe absent; what cannot be read is left
/// out.
fn forwarded(encoded: Option<&str>, expires: Option<&str>) -> Option<Forwarded> {
    let encoded = encoded.and_then(from_hex).unwrap_or_default();
    let expires_at_ms = expires.and_then(|at| at.parse().ok());
    (!encoded.is_empty() || expires_at_ms.is_some()).then_some(Forwarded {
        encoded,
        expires_at_ms,
    })
}

impl Peers for PartitionPeers {
    fn publish(
        &self,
        topic: &str,
        payload: &Bytes,
        qos: u8,
        retained: Option<&Retained>,
        properties: Option<&Forwarded>,
    ) {
        if let Some(message) = retained {
            self.send(Outbound::Retained {
                key: format!("{}.{}", self.claims_prefix(), hex(topic)),
                message: message.clone(),
            });
        }
        self.send(Outbound::Message {
            subject: message_subject(&self.prefix, "m", topic),
            payload: payload.clone(),
            qos: Some(qos),
            properties: properties.cloned(),
        });
    }

    fn interest(&self, filter: &str, added: bool) {
        let mut interest = lock(&self.interest);
        if added {
            let entry = interest.entry(filter.to_owned()).or_default();
            entry.0 += 1;
            if entry.0 > 1 {
                return;
            }
            let head = format!("{}.m", self.prefix);
            for subject in filter_subjects(&self.prefix, "m", filter) {
                let client = self.nats.client.clone();
                let peers = self.self_arc();
                let head = head.clone();
                entry.1.push(tokio::spawn(async move {
                    let Some(peers) = peers else { return };
                    match client.subscribe(subject.clone()).await {
                        Ok(subscription) => {
                            peers
                                .forward_inbound(subscription, head, CancellationToken::new())
                                .await;
                        }
                        Err(e) => tracing::warn!(subject, error = %e, "subscribe on NATS failed"),
                    }
                }));
            }
        } else if let Some(entry) = interest.get_mut(filter) {
            entry.0 -= 1;
            if entry.0 == 0
                && let Some((_, tasks)) = interest.remove(filter)
            {
                // Dropping a subscription unsubscribes.
                for task in tasks {
                    task.abort();
                }
            }
        }
    }
}

impl SharedSessions for PartitionPeers {
    fn save<'a>(
        &'a self,
        changes: &'a [(String, Option<StoredSession>)],
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut lost = Vec::new();
            for (client_id, session) in changes {
                match self.share(client_id, session.as_ref()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::info!(
                            client_id,
                            "another replica holds this persistent session now; not shared from here"
                        );
                        lost.push(client_id.clone());
                    }
                    Err(e) => {
                        tracing::warn!(client_id, error = %e, "sharing a persistent session failed");
                    }
                }
            }
            lost
        })
    }

    fn load<'a>(&'a self, client_id: &'a str) -> BoxFuture<'a, Option<StoredSession>> {
        Box::pin(async move {
            let key = format!("{}.{}", self.claims_prefix(), hex(client_id));
            match self.nats.sessions.get(&key).await {
                Ok(Some(json)) => serde_json::from_slice(&json)
                    .inspect_err(
                        |e| tracing::warn!(client_id, error = %e, "unreadable shared session"),
                    )
                    .ok(),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "reading a shared session failed");
                    None
                }
            }
        })
    }
}

impl ClientIds for PartitionPeers {
    fn ended(&self, client_id: &str, live: &Arc<Live>) {
        let mut claims = lock(&self.claims);
        if claims
            .get(client_id)
            .is_some_and(|claim| std::ptr::eq(claim.live.as_ptr(), Arc::as_ptr(live)))
        {
            claims.remove(client_id);
        }
    }

    fn connected(&self, client_id: &str, live: &Arc<Live>) {
        let key = format!("{}.{}", self.claims_prefix(), hex(client_id));
        let value = Bytes::from(self.nats.next_id());
        lock(&self.claims).insert(
            client_id.to_owned(),
            Claim {
                live: Arc::downgrade(live),
                value: value.clone(),
                revision: 0,
            },
        );
        let Some(peers) = self.self_arc() else { return };
        let client_id = client_id.to_owned();
        tokio::spawn(async move {
            let revision = match peers.nats.claims.put(&key, value.clone()).await {
                Ok(revision) => revision,
                Err(e) => {
                    tracing::warn!(client_id, error = %e, "claiming the client id failed");
                    return;
                }
            };
            {
                let mut claims = lock(&peers.claims);
                match claims.get_mut(&client_id) {
                    Some(claim) if claim.value == value => claim.revision = revision,
                    _ => return,
                }
            }
            // Claimed elsewhere after us, while we waited: ours is over.
            if let Ok(Some(latest)) = peers.nats.claims.entry(&key).await
                && latest.revision > revision
                && latest.value != value
            {
                peers.claimed_elsewhere(&client_id, &latest.value, latest.revision);
            }
        });
    }
}

/// The last [`SEEN`] arrival ids.
#[derive(Default)]
struct Seen {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Whether `id` is new (and remembers it).
    fn first(&mut self, id: String) -> bool {
        if !self.ids.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_values_round_trip_and_older_ones_read_as_payloads() {
        let message = Retained {
            payload: Bytes::from_static(b"on"),
            qos: 1,
            modified_ms: 1_700_000_000_123,
            properties: None,
        };
        assert_eq!(decode_retained(&encode_retained(&message)), message);
        assert!(encode_retained(&message).starts_with(RETAINED_MAGIC));
        for properties in [
            Forwarded {
                encoded: Bytes::from_static(&[0x26, 0, 1, b'k', 0, 1, b'v']),
                expires_at_ms: Some(1_700_000_060_000),
            },
            Forwarded {
                encoded: Bytes::from_static(&[0x01, 1]),
                expires_at_ms: None,
            },
        ] {
            let with = Retained {
                properties: Some(properties),
                ..message.clone()
            };
            let value = encode_retained(&with);
            assert_eq!(decode_retained(&value), with);
            // Cut short, it is never a panic.
            for cut in 0..value.len() {
                let _ = decode_retained(&value.slice(..cut));
            }
        }
        let empty = Retained {
            payload: Bytes::new(),
            ..message
        };
        assert_eq!(decode_retained(&encode_retained(&empty)), empty);
        for older in [&b"{\"temp\":20}"[..], b"x", b"\0HR"] {
            let read = decode_retained(&Bytes::copy_from_slice(older));
            assert_eq!((&read.payload[..], read.qos), (older, 0));
        }
    }
    /// A replica that has not heard of a takeover yet (here: one that
    /// never follows the claims) does not write over the shared session
    /// record of the replica that took the session over, and learns that
    /// it no longer holds it; the holder's writes go on.
    #[tokio::test]
    async fn a_replica_behind_a_takeover_never_writes_over_the_holders_session() {
        use super::super::context::Signal;
        let test = "a_replica_behind_a_takeover_never_writes_over_the_holders_session";
        let Some(server) = herald_testkit::nats::NatsServer::start(test).await else {
            return;
        };
        let partition = Partition::new("123456789012", "eu-west-1").unwrap();
        let (a, _a) = PartitionPeers::new(Nats::connect(server.url()).await.unwrap(), &partition);
        let (b, _b) = PartitionPeers::new(Nats::connect(server.url()).await.unwrap(), &partition);
        let session = |filter: &str| StoredSession {
            router: vec![(filter.to_owned(), 1)],
            ..StoredSession::default()
        };
        let save = |peers: &Arc<PartitionPeers>, session: Option<StoredSession>| {
            let peers = Arc::clone(peers);
            async move { peers.save(&[("x".to_owned(), session)]).await }
        };
        let connect = |peers: &Arc<PartitionPeers>| {
            let live = Arc::new(Live {
                kick: Signal::default(),
                done: Signal::default(),
                persistent_principal: None,
            });
            peers.connected("x", &live);
            let peers = Arc::clone(peers);
            async move {
                herald_testkit::eventually(10, "the claim's revision", || async {
                    (lock(&peers.claims).get("x").map(|c| c.revision) > Some(0)).then_some(())
                })
                .await;
                live
            }
        };

        let _on_a = connect(&a).await;
        assert!(save(&a, Some(session("a/1"))).await.is_empty());
        // The client moves to B, which A does not hear of.
        let _on_b = connect(&b).await;
        assert_eq!(b.load("x").await, Some(session("a/1")));
        assert!(save(&b, Some(session("b/1"))).await.is_empty());
        // What A still writes, a change or a removal, is refused and
        // reported.
        assert_eq!(save(&a, Some(session("a/2"))).await, ["x"]);
        assert_eq!(save(&a, None).await, ["x"]);
        assert_eq!(b.load("x").await, Some(session("b/1")));
        assert!(save(&b, Some(session("b/2"))).await.is_empty());
        assert_eq!(b.load("x").await, Some(session("b/2")));

        // Back on A: A holds it again, and B is the one behind.
        let _again_on_a = connect(&a).await;
        assert!(save(&a, Some(session("a/3"))).await.is_empty());
        assert_eq!(save(&b, Some(session("b/3"))).await, ["x"]);
        assert_eq!(a.load("x").await, Some(session("a/3")));
        assert!(save(&a, None).await.is_empty());
        assert_eq!(b.load("x").await, None);
        // Made again over its removal.
        assert!(save(&a, Some(session("a/4"))).await.is_empty());
        assert_eq!(b.load("x").await, Some(session("a/4")));
    }

    /// A claim seen from another replica while this one's claim of the
    /// same client id is not answered yet ends nothing here (the watch may
    /// be behind: it may be an older claim); one newer than an answered
    /// claim here ends its connection.
    #[tokio::test]
    async fn a_claim_seen_while_ours_is_unanswered_ends_nothing() {
        use super::super::context::Signal;
        let test = "a_claim_seen_while_ours_is_unanswered_ends_nothing";
        let Some(server) = herald_testkit::nats::NatsServer::start(test).await else {
            return;
        };
        let partition = Partition::new("123456789012", "eu-west-1").unwrap();
        let (b, _b) = PartitionPeers::new(Nats::connect(server.url()).await.unwrap(), &partition);
        let live = Arc::new(Live {
            kick: Signal::default(),
            done: Signal::default(),
            persistent_principal: None,
        });
        let ours = Bytes::from(format!("{}:1", b.nats.replica));
        lock(&b.claims).insert(
            "x".into(),
            Claim {
                live: Arc::downgrade(&live),
                value: ours.clone(),
                revision: 0,
            },
        );
        let other = Bytes::from_static(b"another-replica:7");
        b.claimed_elsewhere("x", &other, 5);
        assert!(!live.kick.is_raised(), "an unanswered claim is not ended");
        lock(&b.claims).get_mut("x").unwrap().revision = 6;
        b.claimed_elsewhere("x", &other, 5);
        assert!(!live.kick.is_raised(), "an older claim ends nothing");
        b.claimed_elsewhere("x", &other, 7);
        assert!(
            live.kick.is_raised(),
            "a newer claim ends the connection here"
        );
        assert!(lock(&b.claims).get("x").is_none());
    }

    use proptest::prelude::*;

    #[test]
    fn subjects_escape_what_nats_reserves() {
        assert_eq!(
            message_subject("p", "m", "a.b/*/>/ /"),
            "p.m.a~2Eb.~2A.~3E.~20.~"
        );
        assert_eq!(message_subject("p", "m", "/x"), "p.m.~.x");
        assert_eq!(message_subject("p", "m", "é~"), "p.m.~C3~A9~7E");
    }

    #[test]
    fn filters_map_to_wildcard_subjects() {
        assert_eq!(filter_subjects("p", "m", "a/+/c"), ["p.m.a.*.c"]);
        assert_eq!(filter_subjects("p", "m", "a/#"), ["p.m.a", "p.m.a.>"]);
        assert_eq!(filter_subjects("p", "m", "#"), ["p.m.>"]);
        assert_eq!(filter_subjects("p", "m", "+/#"), ["p.m.*", "p.m.*.>"]);
        assert_eq!(filter_subjects("p", "m", "a//b"), ["p.m.a.~.b"]);
    }

    #[test]
    fn only_subjects_of_the_head_give_topics() {
        assert_eq!(subject_topic("p.m", "p.m.a.~.b").as_deref(), Some("a//b"));
        assert_eq!(subject_topic("p.m", "p.r.a"), None);
        assert_eq!(subject_topic("p.m", "p.m.a~Z1"), None);
        assert_eq!(subject_topic("p.m", "p.m.~FF"), None, "not UTF-8");
    }

    #[test]
    fn recent_ids_are_routed_once() {
        let mut seen = Seen::default();
        assert!(seen.first("a".into()));
        assert!(!seen.first("a".into()));
        for i in 0..SEEN {
            assert!(seen.first(i.to_string()));
        }
        assert!(seen.first("a".into()), "forgotten after SEEN others");
    }

    proptest! {
        /// A subject from another NATS client (anything at all) never
        /// panics its decoding.
        #[test]
        fn any_subject_decodes_or_is_refused(subject in "\\PC{0,60}", hex in "[~0-9A-Fa-fg-z.]{0,40}") {
            let _ = subject_topic("p.m", &subject);
            let _ = subject_topic("p.m", &format!("p.m.{hex}"));
            let _ = level(&hex);
            let _ = unhex_str(&hex);
        }

        #[test]
        fn every_topic_comes_back_from_its_subject(topic in "\\PC{0,40}") {
            let subject = message_subject("herald.1.r", "m", &topic);
            for t in subject.split('.') {
                prop_assert!(!t.is_empty());
                prop_assert!(!t.contains(['*', '>', ' ', '\t']));
            }
            prop_assert_eq!(subject_topic("herald.1.r.m", &subject), Some(topic));
        }

        #[test]
        fn a_filter_subject_matches_what_the_filter_matches(
            levels in proptest::collection::vec("[a-c]{0,2}", 1..4),
            filter in proptest::collection::vec(prop_oneof!["[a-c]{0,2}", Just("+".to_owned())], 1..4),
            multi in any::<bool>(),
        ) {
            let topic = levels.join("/");
            let mut filter = filter.join("/");
            if multi { filter.push_str("/#"); }
            let matches = crate::bus::topic::matches(&filter, &topic);
            let subject = message_subject("p", "m", &topic);
            let by_subject = filter_subjects("p", "m", &filter)
                .iter()
                .any(|s| nats_matches(s, &subject));
            prop_assert_eq!(matches, by_subject, "{} on {}", filter, topic);
        }
    }

    /// NATS's subject matching: `*` one token, `>` one or more at the end.
    fn nats_matches(pattern: &str, subject: &str) -> bool {
        let p: Vec<&str> = pattern.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, token) in p.iter().enumerate() {
            match *token {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                t if s.get(i) == Some(&t) => {}
                _ => return false,
            }
        }
        p.len() == s.len()
    }
}
