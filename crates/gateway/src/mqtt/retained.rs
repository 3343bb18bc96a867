//! Retained messages, kept by the gateway itself (not by rumqttd), as AWS
//! IoT Core keeps them ("MQTT retained messages" in the AWS IoT Core
//! developer guide): a PUBLISH with RETAIN=1 stores its message for its
//! topic, replacing the one before; one with an empty payload deletes it; a
//! new subscription gets the stored messages its filter matches (with
//! RETAIN=1, at the lower of the QoS each was published at and the
//! subscription's, each checked for `iot:Receive` by the session like any
//! delivery, with the MQTT 5 properties it was published with, and not once
//! its message expiry has passed); and they survive a restart.
//!
//! - Bounded: at most [`RetainedLimits::max_count`] messages and
//!   [`RetainedLimits::max_bytes`] bytes (topic plus payload of each). A
//!   retained PUBLISH that would pass either is refused with
//!   [`QuotaExceeded`] and stores nothing; deleting and replacing by a
//!   message no larger always succeed.
//! - Durable: kept in memory for matching, and written to the gateway's
//!   sled store (`<data dir>/retained`) by one background task that
//!   coalesces writes (the latest state of each topic wins, one flush for
//!   every topic that changed meanwhile). [`RetainedStore::retain`] returns
//!   once its change is durable, so a retained PUBLISH is acknowledged only
//!   then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use herald_store::{Store, Writer};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::codec::Forwarded;
use crate::bus::topic;

/// How often, at most, the coalesced changes are written when nobody waits.
const SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// How long [`RetainedStore::retain`] waits for a failing store.
const SAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the writer thread.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// The bounds of the retained-message store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedLimits {
    /// The most retained messages (topics) at once.
    pub max_count: usize,
    /// The most bytes at once, counting each message's topic and payload.
    pub max_bytes: usize,
}

impl Default for RetainedLimits {
    fn default() -> Self {
        RetainedLimits {
            max_count: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A retained PUBLISH refused because the store is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retaining {bytes} bytes on {topic:?} would pass the retained-message limits \
     ({max_count} messages, {max_bytes} bytes)"
)]
pub struct QuotaExceeded {
    /// The topic.
    pub topic: String,
    /// The size the message would count for (topic and payload).
    pub bytes: usize,
    /// The limits in force.
    pub max_count: usize,
    /// The limits in force.
    pub max_bytes: usize,
}

/// A retained message: its payload, the QoS it was published with, and
/// when it was retained (epoch milliseconds), as ListRetainedMessages and
/// GetRetainedMessage answer them, and the MQTT 5 properties it was
/// published with that go on to subscribers (a new subscriber gets it with
/// them, and not once it has expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub payload: Bytes,
    pub qos: u8,
    pub modified_ms: i64,
    pub properties: Option<Forwarded>,
}

impl Retained {
    /// `payload`, published at `qos` without properties, retained now.
    pub fn now(payload: Bytes, qos: u8) -> Retained {
        Retained {
            payload,
            qos,
            modified_ms: herald_store::now_ms(),
            properties: None,
        }
    }

    /// Whether its message expiry interval has passed at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.properties.as_ref().is_some_and(|p| p.expired(now_ms))
    }
}

/// A retained message as stored: the payload as text when it is UTF-8,
/// otherwise in hex (the store's values are JSON), its QoS and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hex: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    modified_ms: i64,
    /// The MQTT 5 properties but the expiry, encoded, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    properties: Option<String>,
    /// When it expires, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
}

impl StoredMessage {
    fn new(message: &Retained) -> StoredMessage {
        let payload = &message.payload[..];
        let (text, hex) = match std::str::from_utf8(payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(to_hex(payload))),
        };
        let properties = message.properties.as_ref();
        StoredMessage {
            text,
            hex,
            qos: message.qos,
            modified_ms: message.modified_ms,
            properties: properties
                .filter(|p| !p.encoded.is_empty())
                .map(|p| to_hex(&p.encoded)),
            expires_at_ms: properties.and_then(|p| p.expires_at_ms),
        }
    }

    fn message(&self) -> Option<Retained> {
        let encoded = match &self.properties {
            Some(hex) => from_hex(hex)?,
            None => Bytes::new(),
        };
        Some(Retained {
            payload: self.payload()?,
            qos: self.qos,
            modified_ms: self.modified_ms,
            properties: (!encoded.is_empty() || self.expires_at_ms.is_some()).then_some(
                Forwarded {
                    encoded,
                    expires_at_ms: self.expires_at_ms,
                },
            ),
        })
    }

    fn payload(&self) -> Option<Bytes> {
        if let Some(text) = &self.text {
            return Some(Bytes::copy_from_slice(text.as_bytes()));
        }
        from_hex(self.hex.as_ref()?)
    }
}

/// `bytes` in lowercase hex.
pub(super) fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

/// The bytes `hex` spells, two hex digits each; `None` for anything else.
pub(super) fn from_hex(hex: &str) -> Option<Bytes> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn prefix() -> Vec<u8> {
    herald_store::prefix(&["retained"])
}

fn key(topic: &str) -> Vec<u8> {
    herald_store::key(&["retained", topic])
}

fn size(topic: &str, payload: &[u8]) -> usize {
    topic.len() + payload.len()
}

/// The gateway's retained messages. Cheap to clone.
#[derive(Clone)]
pub struct RetainedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RetainedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state();
        f.debug_struct("RetainedStore")
            .field("count", &state.messages.len())
            .field("bytes", &state.bytes)
            .finish_non_exhaustive()
    }
}

struct Inner {
    limits: RetainedLimits,
    state: Mutex<State>,
    /// Whether changes are written to a store (else memory only).
    durable: bool,
    wake: Notify,
    /// The number of the last change made durable.
    flushed: watch::Sender<u64>,
    stopped: CancellationToken,
}

impl Inner {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    messages: HashMap<Arc<str>, Retained>,
    /// The size of every message, topics included.
    bytes: usize,
    /// The number of the last change queued.
    queued: u64,
    /// Topic → its latest message, or `None` to delete it, not yet written.
    pending: HashMap<Arc<str>, Option<Retained>>,
}

impl RetainedStore {
    /// A store in memory only (nothing survives the process): for tests
    /// and for a routing engine without a data folder.
    pub fn in_memory(limits: RetainedLimits) -> RetainedStore {
        let stopped = CancellationToken::new();
        stopped.cancel();
        RetainedStore {
            inner: Arc::new(Inner {
                limits,
                state: Mutex::new(State::default()),
                durable: false,
                wake: Notify::new(),
                flushed: watch::Sender::new(0),
                stopped,
            }),
        }
    }

    /// Reads every retained message of `store` and starts the task that
    /// writes changes to it until `shutdown` is cancelled (then the pending
    /// changes are written and the store released: see
    /// [`RetainedStore::stopped`]). Messages stored beyond `limits` (a
    /// lowered setting) are kept: the limits apply to new ones. Must be
    /// called within a Tokio runtime.
    pub fn open(
        store: Store,
        limits: RetainedLimits,
        shutdown: CancellationToken,
    ) -> anyhow::Result<RetainedStore> {
        let mut state = State::default();
        for entry in store.iter(&prefix(), None) {
            let (topic, bytes) = entry.context("read the retained messages")?;
            let message = serde_json::from_slice::<StoredMessage>(&bytes)
                .ok()
                .and_then(|m| m.message());
            match message {
                Some(mut message) if !message.payload.is_empty() => {
                    // Stored before the time was kept: known from now on.
                    if message.modified_ms == 0 {
                        message.modified_ms = herald_store::now_ms();
                    }
                    state.bytes += size(&topic, &message.payload);
                    state.messages.insert(topic.into(), message);
                }
                _ => tracing::error!(topic, "unreadable retained message; ignored"),
            }
        }
        let (writer, _log, thread) =
            Writer::<()>::start(store, "retained-store").context("start the retained writer")?;
        let inner = Arc::new(Inner {
            limits,
            state: Mutex::new(state),
            durable: true,
            wake: Notify::new(),
            flushed: watch::Sender::new(0),
            stopped: CancellationToken::new(),
        });
        let task_inner = Arc::clone(&inner);
        tokio::spawn(async move {
            let _stopped = task_inner.stopped.clone().drop_guard();
            loop {
                let stop = tokio::select! {
                    () = shutdown.cancelled() => true,
                    () = task_inner.wake.notified() => false,
                    () = tokio::time::sleep(SAVE_INTERVAL) => false,
                };
                write_pending(&writer, &task_inner).await;
                if stop {
                    break;
                }
            }
            drop(writer);
            if let Err(e) = thread.stop(WRITER_GRACE).await {
                tracing::error!(error = %e, "could not stop the retained writer");
            }
        });
        Ok(RetainedStore { inner })
    }

    /// Stores `payload`, published at `qos`, as `topic`'s retained message
    /// (an empty payload deletes it) and waits until the change is durable.
    /// Refused, changing nothing, when it would pass the limits.
    pub async fn retain(&self, topic: &str, payload: Bytes, qos: u8) -> Result<(), QuotaExceeded> {
        self.keep(topic, Retained::now(payload, qos)).await
    }

    /// [`RetainedStore::retain`] of a message whose time is known (another
    /// replica's).
    pub async fn keep(&self, topic: &str, message: Retained) -> Result<(), QuotaExceeded> {
        let payload = message.payload.clone();
        let number = {
            let mut state = self.inner.state();
            let old = state
                .messages
                .get(topic)
                .map(|m| size(topic, &m.payload))
                .unwrap_or(0);
            let topic: Arc<str> = match state.messages.get_key_value(topic) {
                Some((known, _)) => Arc::clone(known),
                None => topic.into(),
            };
            if payload.is_empty() {
                state.messages.remove(&topic);
                state.bytes -= old;
                state.pending.insert(Arc::clone(&topic), None);
            } else {
                let new = size(&topic, &payload);
                let count = state.messages.len() + usize::from(old == 0);
                let bytes = state.bytes - old + new;
                let limits = self.inner.limits;
                // A lowered setting may leave the store above its limits:
                // replacing a message by one no larger is still allowed.
                if (old == 0 && count > limits.max_count) || (new > old && bytes > limits.max_bytes)
                {
                    return Err(QuotaExceeded {
                        topic: topic.to_string(),
                        bytes: new,
                        max_count: limits.max_count,
                        max_bytes: limits.max_bytes,
                    });
                }
                state.bytes = bytes;
                state.messages.insert(Arc::clone(&topic), message.clone());
                state.pending.insert(topic, Some(message));
            }
            if !self.inner.durable {
                state.pending.clear();
                return Ok(());
            }
            state.queued += 1;
            state.queued
        };
        self.wait(number).await;
        Ok(())
    }

    async fn wait(&self, number: u64) {
        self.inner.wake.notify_one();
        let mut flushed = self.inner.flushed.subscribe();
        tokio::select! {
            _ = flushed.wait_for(|n| *n >= number) => {}
            () = self.inner.stopped.cancelled() => {}
            () = tokio::time::sleep(SAVE_TIMEOUT) => {
                tracing::warn!(timeout = ?SAVE_TIMEOUT, "storing a retained message is taking long; going on");
            }
        }
    }

    /// The retained messages `filter` matches (a valid non-`$` filter), as
    /// (topic, payload), in no particular order.
    pub fn matching(&self, filter: &str) -> Vec<(Arc<str>, Bytes)> {
        self.inner
            .state()
            .messages
            .iter()
            .filter(|(topic, _)| topic::matches(filter, topic))
            .map(|(topic, message)| (Arc::clone(topic), message.payload.clone()))
            .collect()
    }

    /// Every retained message, in topic order.
    pub fn messages(&self) -> Vec<(Arc<str>, Retained)> {
        let mut all: Vec<(Arc<str>, Retained)> = self
            .inner
            .state()
            .messages
            .iter()
            .map(|(topic, message)| (Arc::clone(topic), message.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The topics of the retained messages `filter` matches.
    pub fn matching_topics(&self, filter: &str) -> Vec<Arc<str>> {
        self.inner
            .state()
            .messages
            .keys()
            .filter(|topic| topic::matches(filter, topic))
            .cloned()
            .collect()
    }

    /// The message retained on `topic` now, with its QoS and time.
    pub fn message(&self, topic: &str) -> Option<Retained> {
        self.inner.state().messages.get(topic).cloned()
    }

    /// The payload retained on `topic` now, if any.
    pub fn get(&self, topic: &str) -> Option<Bytes> {
        let state = self.inner.state();
        state.messages.get(topic).map(|m| m.payload.clone())
    }

    /// How many messages are retained, and their size in bytes.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.inner.state();
        (state.messages.len(), state.bytes)
    }

    /// Resolves once the store has written its last changes and stopped
    /// (at once for a store in memory).
    pub async fn stopped(&self) {
        self.inner.stopped.cancelled().await;
    }
}

async fn write_pending(writer: &Writer<()>, inner: &Inner) {
    let (number, changes) = {
        let mut state = inner.state();
        if state.pending.is_empty() {
            return;
        }
        (state.queued, std::mem::take(&mut state.pending))
    };
    let count = changes.len();
    // Cheap: topics and payloads are shared.
    let retry = changes.clone();
    let written = writer
        .mutate(move |c| {
            for (topic, message) in changes {
                match message {
                    Some(message) => c.put(key(&topic), &StoredMessage::new(&message))?,
                    None => c.remove(key(&topic)),
                }
            }
            Ok(())
        })
        .await;
    match written {
        Ok(()) => {
            inner.flushed.send_replace(number);
        }
        // Memory keeps the messages, and the changes go back to be written
        // with the next ones, unless a newer change of the same topic came
        // meanwhile. `flushed` stays behind, so their publishers wait.
        Err(e) => {
            tracing::error!(error = %e, count, "could not store retained messages; will retry");
            let mut state = inner.state();
            for (topic, payload) in retry {
                state.pending.entry(topic).or_insert(payload);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_as_text_or_hex() {
        for payload in [
            &b"{\"a\":1}"[..],
            &[0xff, 0x00, 0x10, 0xab][..],
            "é".as_bytes(),
        ] {
            for properties in [
                None,
                Some(Forwarded {
                    encoded: Bytes::from_static(&[0x26, 0, 1, b'k', 0, 1, b'v']),
                    expires_at_ms: Some(1_700_000_060_000),
                }),
                Some(Forwarded {
                    encoded: Bytes::new(),
                    expires_at_ms: Some(5),
                }),
            ] {
                let message = Retained {
                    payload: Bytes::copy_from_slice(payload),
                    qos: 1,
                    modified_ms: 1_700_000_000_000,
                    properties,
                };
                let stored = StoredMessage::new(&message);
                let json = serde_json::to_vec(&stored).unwrap();
                let back: StoredMessage = serde_json::from_slice(&json).unwrap();
                assert_eq!(back.message().unwrap(), message);
            }
        }
        // A message stored before QoS and time were kept reads as QoS 0.
        let old: StoredMessage = serde_json::from_slice(br#"{"text":"on"}"#).unwrap();
        assert_eq!((old.qos, old.modified_ms), (0, 0));
    }

    #[tokio::test]
    async fn limits_refuse_and_change_nothing() {
        let store = RetainedStore::in_memory(RetainedLimits {
            max_count: 2,
            max_bytes: 20,
        });
        store
            .retain("a", Bytes::from_static(b"12345"), 0)
            .await
            .unwrap();
        store
            .retain("b", Bytes::from_static(b"12345"), 0)
            .await
            .unwrap();
        assert_eq!(store.usage(), (2, 12));
        // A third topic passes the count.
        assert!(
            store
                .retain("c", Bytes::from_static(b"1"), 0)
                .await
                .is_err()
        );
        // Replacing is fine within the bytes, not beyond.
        store
            .retain("a", Bytes::from_static(b"123"), 0)
            .await
            .unwrap();
        assert_eq!(store.usage(), (2, 10));
        assert!(
            store
                .retain("b", Bytes::from_static(b"1234567890123456"), 0)
                .await
                .is_err()
        );
        assert_eq!(store.usage(), (2, 10));
        // Deleting frees room.
        store.retain("a", Bytes::new(), 0).await.unwrap();
        store
            .retain("c", Bytes::from_static(b"1"), 0)
            .await
            .unwrap();
        let mut topics: Vec<_> = store.matching("#").into_iter().map(|(t, _)| t).collect();
        topics.sort();
        assert_eq!(topics, vec![Arc::from("b"), Arc::from("c")]);
    }

    #[tokio::test]
    async fn messages_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let store = RetainedStore::open(
            Store::open(dir.path()).unwrap(),
            RetainedLimits::default(),
            shutdown.clone(),
        )
        .unwrap();
        store
            .retain("a/b", Bytes::from_static(b"text"), 0)
            .await
            .unwrap();
        store
            .retain("é", Bytes::from_static(&[0xff, 0]), 0)
            .await
            .unwrap();
        store
            .retain("gone", Bytes::from_static(b"x"), 0)
            .await
            .unwrap();
        store.retain("gone", Bytes::new(), 0).await.unwrap();
        shutdown.cancel();
        store.stopped().await;

        let shutdown = CancellationToken::new();
        let store = RetainedStore::open(
            Store::open(dir.path()).unwrap(),
            RetainedLimits::default(),
            shutdown.clone(),
        )
        .unwrap();
        let mut all = store.matching("#");
        all.sort();
        assert_eq!(
            all,
            vec![
                (Arc::from("a/b"), Bytes::from_static(b"text")),
                (Arc::from("é"), Bytes::from_static(&[0xff, 0])),
            ]
        );
        assert_eq!(store.usage(), (2, 3 + 4 + 2 + 2));
        shutdown.cancel();
        store.stopped().await;
    }
}
