//! The gateway-owned `$aws` topic bus (rumqttd 0.20 routes no `$` topics, so the gateway carries them itself).
//!
//! rumqttd can neither store nor deliver `$` topics, so everything under
//! `$aws/...` (the event pump's registry events, the lifecycle events, later
//! shadow and jobs replies) is routed here instead. Each session
//! [registers](Bus::register) once, gets a [`SubscriberId`] and the receiving
//! end of its own bounded queue, and adds or removes topic filters as its
//! client subscribes and unsubscribes. Filters match with
//! [`topic::matches()`], so only filters that name `$aws/...` explicitly ever
//! match: `#` and `+/...` do not (MQTT 3.1.1 §4.7.2).
//!
//! A [`publish`](Bus::publish):
//!
//! - finds every subscriber with at least one matching filter, once per
//!   subscriber however many of its filters overlap, at the highest QoS its
//!   matching filters were granted. The bus publishes at QoS 1 (AWS IoT Core Developer Guide: "Event messages"), so
//!   a delivery's QoS is exactly that granted QoS;
//! - leaves `iot:Receive` to the session, which checks it on every
//!   delivery against its principal's policies of the moment;
//! - never blocks and never waits for a subscriber. Each queue is bounded;
//!   when a subscriber's queue is full, **that delivery is dropped for that
//!   subscriber** and counted (per subscriber, [`Bus::dropped`], and in
//!   [`Bus::stats`]); the others still get it. The bus is not the
//!   durability layer: a persistent session replays what it missed from the
//!   registry's change log, and a session that sees its dropped count grow
//!   may also choose to disconnect a client that does not keep up;
//! - drops subscribers whose receiver is gone.
//!
//! The matching and queue handles are read under a read lock and the
//! deliveries are queued after the lock is released. Exact filters (no
//! wildcard) are found with one hash lookup; wildcard filters are held in a
//! tree of topic levels, so a publish visits only the branches its own
//! levels (and `+`, `#`) lead to.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::mpsc;

pub mod topic;
mod trie;

use topic::TopicError;
use trie::WildcardIndex;

/// The default length of a subscriber's queue, in deliveries.
pub(crate) const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// A subscriber of the bus: one client session. Ids are never reused within
/// a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// The id as a number, for logs and metrics.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bus-subscriber-{}", self.0)
    }
}

/// The quality of service granted to a filter and given to a delivery. AWS
/// IoT supports only QoS 0 and 1; the session layer grants 1 to a client
/// that asks for 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0, at most once.
    AtMostOnce,
    /// QoS 1, at least once.
    AtLeastOnce,
}

impl QoS {
    /// The MQTT QoS level, 0 or 1.
    pub fn level(self) -> u8 {
        match self {
            QoS::AtMostOnce => 0,
            QoS::AtLeastOnce => 1,
        }
    }

    /// The QoS of MQTT level `level`; `None` for 2 and above, which AWS IoT
    /// does not support.
    pub fn from_level(level: u8) -> Option<QoS> {
        match level {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            _ => None,
        }
    }
}

/// One message queued for one subscriber. Topic and payload are shared by
/// every subscriber of the same publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// The payload as published.
    pub payload: Arc<[u8]>,
    /// The QoS to deliver with: the highest QoS granted to the subscriber's
    /// filters that match the topic.
    pub qos: QoS,
    /// The registry change-log sequence of a registry event
    /// ([`Bus::publish_sequenced`]); `None` for the gateway's own messages.
    pub sequence: Option<u64>,
    /// When the registry committed it, epoch milliseconds (a registry
    /// event's); for the commit-to-socket latency.
    pub committed_at_ms: Option<i64>,
}

/// Why the bus refused a subscription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The subscriber was never registered or was removed.
    #[error("{0} is not registered on the bus")]
    UnknownSubscriber(SubscriberId),
    /// The filter is not a valid topic filter.
    #[error("invalid topic filter: {0}")]
    InvalidFilter(#[from] TopicError),
}

/// What one [`Bus::publish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishOutcome {
    /// Subscribers with at least one matching filter.
    pub matched: usize,
    /// Queued.
    pub queued: usize,
    /// Dropped because the subscriber's queue was full.
    pub dropped: usize,
    /// Not delivered because the subscriber's receiver was gone; such
    /// subscribers are removed.
    pub closed: usize,
}

/// Counters of a bus since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Registered subscribers now.
    pub subscribers: usize,
    /// Distinct filter strings subscribed now.
    pub filters: usize,
    /// Calls to [`Bus::publish`].
    pub published: u64,
    /// Deliveries queued.
    pub queued: u64,
    /// Deliveries dropped because a queue was full.
    pub dropped: u64,
}

/// The `$aws` topic bus. Cloning is cheap; clones share one bus.
#[derive(Debug, Clone, Default)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: RwLock<State>,
    /// Where [`Bus::publish`] also sends its messages: the other gateway
    /// replicas ([`Bus::forward_to`]).
    forward: std::sync::OnceLock<Forward>,
    next_id: AtomicU64,
    published: AtomicU64,
    queued: AtomicU64,
    dropped: AtomicU64,
}

/// The other gateway replicas, as the bus sees them: every message this
/// replica publishes on the bus (lifecycle events, a client's `$aws/things`
/// messages), but not the registry's events, which every replica's own
/// event pump publishes.
pub(crate) type Forward = Box<dyn Fn(&str, &Arc<[u8]>) + Send + Sync>;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("forwarded", &self.forward.get().is_some())
            .finish_non_exhaustive()
    }
}

/// Who subscribed to one filter string, at which QoS.
type Subscribers = HashMap<SubscriberId, QoS>;

#[derive(Debug, Default)]
struct State {
    /// Filters without wildcards, keyed by the topic they match.
    exact: HashMap<Arc<str>, Subscribers>,
    /// Filters with `+` or `#`, in a tree of levels.
    wildcard: WildcardIndex,
    subscribers: HashMap<SubscriberId, Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    tx: mpsc::Sender<Delivery>,
    filters: HashMap<Arc<str>, QoS>,
    dropped: Arc<AtomicU64>,
    dropped_sequence: Arc<AtomicU64>,
}

fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

impl State {
    fn index(&mut self, filter: Arc<str>, id: SubscriberId, qos: QoS) {
        if has_wildcard(&filter) {
            self.wildcard.insert(&filter, id, qos);
        } else {
            self.exact.entry(filter).or_default().insert(id, qos);
        }
    }

    /// Takes `id` out of the index entry of `filter`, dropping the entry
    /// when it empties.
    fn unindex(&mut self, filter: &str, id: SubscriberId) {
        if has_wildcard(filter) {
            self.wildcard.remove(filter, id);
        } else if let Some(subs) = self.exact.get_mut(filter) {
            subs.remove(&id);
            if subs.is_empty() {
                self.exact.remove(filter);
            }
        }
    }

    fn remove(&mut self, id: SubscriberId) -> bool {
        let Some(sub) = self.subscribers.remove(&id) else {
            return false;
        };
        for filter in sub.filters.keys() {
            self.unindex(filter, id);
        }
        true
    }
}

/// A matched subscriber, copied out of the lock.
struct Target {
    id: SubscriberId,
    qos: QoS,
    tx: mpsc::Sender<Delivery>,
    dropped: Arc<AtomicU64>,
    dropped_sequence: Arc<AtomicU64>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Bus::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a subscriber whose queue holds up to `capacity` deliveries
    /// (at least 1), and returns its id and the receiving end of its queue.
    /// Dropping the receiver unregisters the subscriber at the next publish
    /// that matches it; [`remove`](Self::remove) does it at once.
    pub fn register(&self, capacity: usize) -> (SubscriberId, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = SubscriberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.write().subscribers.insert(
            id,
            Subscriber {
                tx,
                filters: HashMap::new(),
                dropped: Arc::new(AtomicU64::new(0)),
                dropped_sequence: Arc::new(AtomicU64::new(0)),
            },
        );
        (id, rx)
    }

    /// Subscribes `id` to `filter` at `qos`, replacing the QoS of an
    /// existing subscription to the same filter (as MQTT does), and returns
    /// the QoS it replaced.
    pub fn subscribe(
        &self,
        id: SubscriberId,
        filter: &str,
        qos: QoS,
    ) -> Result<Option<QoS>, BusError> {
        topic::validate_topic_filter(filter)?;
        let mut state = self.write();
        let sub = state
            .subscribers
            .get_mut(&id)
            .ok_or(BusError::UnknownSubscriber(id))?;
        let key: Arc<str> = match sub.filters.get_key_value(filter) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(filter),
        };
        let previous = sub.filters.insert(Arc::clone(&key), qos);
        state.index(key, id, qos);
        Ok(previous)
    }

    /// Unsubscribes `id` from `filter` (the exact filter string it
    /// subscribed with); false when it was not subscribed to it.
    pub fn unsubscribe(&self, id: SubscriberId, filter: &str) -> bool {
        let mut state = self.write();
        let removed = state
            .subscribers
            .get_mut(&id)
            .is_some_and(|sub| sub.filters.remove(filter).is_some());
        if removed {
            state.unindex(filter, id);
        }
        removed
    }

    /// Removes `id` and all its subscriptions; false when it was not
    /// registered. Deliveries already queued stay in its receiver.
    pub fn remove(&self, id: SubscriberId) -> bool {
        self.write().remove(id)
    }

    /// The filters `id` is subscribed to and their QoS, sorted by filter;
    /// `None` when `id` is not registered.
    pub fn subscriptions(&self, id: SubscriberId) -> Option<Vec<(String, QoS)>> {
        let state = self.read();
        let sub = state.subscribers.get(&id)?;
        let mut filters: Vec<(String, QoS)> = sub
            .filters
            .iter()
            .map(|(f, q)| (f.to_string(), *q))
            .collect();
        filters.sort();
        Some(filters)
    }

    /// How many deliveries to `id` were dropped because its queue was full;
    /// `None` when `id` is not registered.
    pub fn dropped(&self, id: SubscriberId) -> Option<u64> {
        let state = self.read();
        let sub = state.subscribers.get(&id)?;
        Some(sub.dropped.load(Ordering::Relaxed))
    }

    /// The highest change-log sequence among the registry events dropped
    /// for `id` (0 when none was): a persistent session replays the change
    /// log past it. Shared with the bus, so it reads the current value;
    /// `None` when `id` is not registered.
    pub fn dropped_sequence(&self, id: SubscriberId) -> Option<Arc<AtomicU64>> {
        let state = self.read();
        let sub = state.subscribers.get(&id)?;
        Some(Arc::clone(&sub.dropped_sequence))
    }

    /// The number of registered subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.read().subscribers.len()
    }

    /// The bus's counters.
    pub fn stats(&self) -> BusStats {
        let (subscribers, filters) = {
            let state = self.read();
            (
                state.subscribers.len(),
                state.exact.len() + state.wildcard.len(),
            )
        };
        BusStats {
            subscribers,
            filters,
            published: self.inner.published.load(Ordering::Relaxed),
            queued: self.inner.queued.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }

    /// Publishes `payload` on `topic` to every subscriber with a matching
    /// filter, at most once
    /// per subscriber, without blocking (see the module documentation for
    /// the overflow policy). Deliveries to one subscriber keep the order of
    /// the publishes made by one caller.
    ///
    /// The topic is not validated: the gateway's own topics may be longer
    /// than the client limits. Clients must not reach this with
    /// `$aws/events/...` topics; that check belongs to the session layer.
    pub fn publish(&self, topic: &str, payload: impl Into<Arc<[u8]>>) -> PublishOutcome {
        let payload = payload.into();
        if let Some(forward) = self.inner.forward.get() {
            forward(topic, &payload);
        }
        self.publish_inner(topic, payload, None, None)
    }

    /// Sends what [`publish`](Self::publish) publishes to `forward` too,
    /// from now on (once; a second call is ignored).
    pub fn forward_to(&self, forward: Forward) {
        let _ = self.inner.forward.set(forward);
    }

    /// [`publish`](Self::publish) for a message another replica published:
    /// to this replica's subscribers only.
    pub fn publish_from_peer(&self, topic: &str, payload: impl Into<Arc<[u8]>>) -> PublishOutcome {
        self.publish_inner(topic, payload.into(), None, None)
    }

    /// [`publish`](Self::publish) for the registry event at `sequence` of
    /// the change log: each delivery carries it, and a delivery dropped
    /// for a full queue raises that subscriber's
    /// [`dropped_sequence`](Self::dropped_sequence) to it. It was committed
    /// at `committed_at_ms` (epoch milliseconds).
    pub fn publish_sequenced(
        &self,
        topic: &str,
        payload: impl Into<Arc<[u8]>>,
        sequence: u64,
        committed_at_ms: i64,
    ) -> PublishOutcome {
        self.publish_inner(topic, payload.into(), Some(sequence), Some(committed_at_ms))
    }

    fn publish_inner(
        &self,
        topic: &str,
        payload: Arc<[u8]>,
        sequence: Option<u64>,
        committed_at_ms: Option<i64>,
    ) -> PublishOutcome {
        self.inner.published.fetch_add(1, Ordering::Relaxed);
        let targets = self.targets(topic);
        let mut outcome = PublishOutcome {
            matched: targets.len(),
            ..PublishOutcome::default()
        };
        if targets.is_empty() {
            return outcome;
        }
        let shared_topic: Arc<str> = Arc::from(topic);
        let mut closed = Vec::new();
        for target in targets {
            let delivery = Delivery {
                topic: Arc::clone(&shared_topic),
                payload: Arc::clone(&payload),
                qos: target.qos,
                sequence,
                committed_at_ms,
            };
            match target.tx.try_send(delivery) {
                Ok(()) => outcome.queued += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    outcome.dropped += 1;
                    if let Some(sequence) = sequence {
                        target
                            .dropped_sequence
                            .fetch_max(sequence, Ordering::SeqCst);
                    }
                    let before = target.dropped.fetch_add(1, Ordering::Relaxed);
                    if before == 0 {
                        tracing::warn!(subscriber = %target.id, topic, "bus queue full; dropping deliveries to this subscriber");
                    } else {
                        tracing::debug!(subscriber = %target.id, topic, "bus queue full; delivery dropped");
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    outcome.closed += 1;
                    closed.push(target.id);
                }
            }
        }
        if !closed.is_empty() {
            let mut state = self.write();
            for id in closed {
                state.remove(id);
            }
        }
        let counters = &self.inner;
        counters
            .queued
            .fetch_add(outcome.queued as u64, Ordering::Relaxed);
        counters
            .dropped
            .fetch_add(outcome.dropped as u64, Ordering::Relaxed);
        outcome
    }

    /// The subscribers matching `topic`, once each at their highest matching
    /// QoS, in id order.
    fn targets(&self, topic: &str) -> Vec<Target> {
        let state = self.read();
        let mut hits: Vec<(SubscriberId, QoS)> = Vec::new();
        if let Some(subs) = state.exact.get(topic) {
            hits.extend(subs.iter().map(|(id, q)| (*id, *q)));
        }
        state
            .wildcard
            .matching(topic, &mut |id, qos| hits.push((id, qos)));
        // Highest QoS first within an id, then keep the first of each id.
        hits.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        hits.dedup_by_key(|hit| hit.0);
        hits.into_iter()
            .filter_map(|(id, qos)| {
                let sub = state.subscribers.get(&id)?;
                Some(Target {
                    id,
                    qos,
                    tx: sub.tx.clone(),
                    dropped: Arc::clone(&sub.dropped),
                    dropped_sequence: Arc::clone(&sub.dropped_sequence),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = "$aws/events/thing/t1/created";

    /// Everything queued for a receiver, without waiting.
    fn drain(rx: &mut mpsc::Receiver<Delivery>) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(d) = rx.try_recv() {
            out.push(d);
        }
        out
    }

    #[test]
    fn overlapping_filters_deliver_once_at_the_highest_qos() {
        let bus = Bus::new();
        let (id, mut rx) = bus.register(16);
        bus.subscribe(id, "$aws/events/#", QoS::AtMostOnce).unwrap();
        bus.subscribe(id, "$aws/events/thing/+/created", QoS::AtLeastOnce)
            .unwrap();
        bus.subscribe(id, EVENT, QoS::AtMostOnce).unwrap();
        bus.subscribe(id, "$aws/+/thing/#", QoS::AtMostOnce)
            .unwrap();
        let outcome = bus.publish(EVENT, b"{}".to_vec());
        assert_eq!(
            outcome,
            PublishOutcome {
                matched: 1,
                queued: 1,
                ..PublishOutcome::default()
            }
        );
        let got = drain(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(&*got[0].topic, EVENT);
        assert_eq!(&*got[0].payload, b"{}");
        assert_eq!(got[0].qos, QoS::AtLeastOnce);

        // Only QoS 0 filters match this one.
        bus.publish("$aws/events/thing/t1/deleted", b"x".to_vec());
        let got = drain(&mut rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].qos, QoS::AtMostOnce);
    }

    #[test]
    fn wildcard_leading_filters_never_see_dollar_topics() {
        let bus = Bus::new();
        let (hash, mut hash_rx) = bus.register(8);
        bus.subscribe(hash, "#", QoS::AtLeastOnce).unwrap();
        bus.subscribe(hash, "+/events/#", QoS::AtLeastOnce).unwrap();
        bus.subscribe(hash, "+/+/+/+/+", QoS::AtLeastOnce).unwrap();
        let (explicit, mut explicit_rx) = bus.register(8);
        bus.subscribe(explicit, "$aws/#", QoS::AtLeastOnce).unwrap();
        let outcome = bus.publish(EVENT, b"e".to_vec());
        assert_eq!(outcome.matched, 1);
        assert!(drain(&mut hash_rx).is_empty());
        assert_eq!(drain(&mut explicit_rx).len(), 1);
        // Ordinary topics still match `#` on the bus.
        bus.publish("plain/topic", b"p".to_vec());
        assert_eq!(drain(&mut hash_rx).len(), 1);
    }

    #[test]
    fn unsubscribe_and_remove_stop_deliveries() {
        let bus = Bus::new();
        let (a, mut a_rx) = bus.register(8);
        let (b, mut b_rx) = bus.register(8);
        bus.subscribe(a, "$aws/events/#", QoS::AtLeastOnce).unwrap();
        bus.subscribe(a, EVENT, QoS::AtLeastOnce).unwrap();
        bus.subscribe(b, EVENT, QoS::AtMostOnce).unwrap();

        assert!(bus.unsubscribe(a, "$aws/events/#"));
        assert!(!bus.unsubscribe(a, "$aws/events/#"), "already gone");
        assert!(!bus.unsubscribe(a, "$aws/events/+"), "never subscribed");
        // Still subscribed through the exact filter.
        assert_eq!(bus.publish(EVENT, b"1".to_vec()).queued, 2);
        assert!(bus.unsubscribe(a, EVENT));
        assert_eq!(bus.subscriptions(a), Some(vec![]));
        assert_eq!(bus.publish(EVENT, b"2".to_vec()).queued, 1);
        assert_eq!(drain(&mut a_rx).len(), 1);

        assert!(bus.remove(b));
        assert!(!bus.remove(b));
        assert_eq!(bus.publish(EVENT, b"3".to_vec()).matched, 0);
        assert_eq!(drain(&mut b_rx).len(), 2, "queued deliveries stay");
        assert_eq!(bus.subscriptions(b), None);
        assert_eq!(bus.dropped(b), None);
        assert_eq!(
            bus.subscribe(b, EVENT, QoS::AtMostOnce),
            Err(BusError::UnknownSubscriber(b))
        );
        // The index is empty again.
        assert!(bus.remove(a));
        assert_eq!(
            bus.stats(),
            BusStats {
                subscribers: 0,
                filters: 0,
                published: 3,
                queued: 3,
                ..BusStats::default()
            }
        );
    }

    #[test]
    fn resubscribing_replaces_the_qos() {
        let bus = Bus::new();
        let (id, mut rx) = bus.register(8);
        assert_eq!(bus.subscribe(id, EVENT, QoS::AtLeastOnce), Ok(None));
        assert_eq!(
            bus.subscribe(id, EVENT, QoS::AtMostOnce),
            Ok(Some(QoS::AtLeastOnce))
        );
        assert_eq!(
            bus.subscriptions(id),
            Some(vec![(EVENT.to_owned(), QoS::AtMostOnce)])
        );
        bus.publish(EVENT, b"e".to_vec());
        assert_eq!(drain(&mut rx)[0].qos, QoS::AtMostOnce);
        assert_eq!(bus.stats().filters, 1);
    }

    #[test]
    fn invalid_filters_are_refused() {
        let bus = Bus::new();
        let (id, _rx) = bus.register(8);
        assert_eq!(
            bus.subscribe(id, "$aws/events/#/x", QoS::AtMostOnce),
            Err(BusError::InvalidFilter(
                TopicError::MisplacedMultiLevelWildcard
            ))
        );
        assert_eq!(
            bus.subscribe(id, "", QoS::AtMostOnce),
            Err(BusError::InvalidFilter(TopicError::Empty))
        );
        assert_eq!(bus.subscriptions(id), Some(vec![]));
    }

    #[test]
    fn a_full_queue_drops_for_that_subscriber_only() {
        let bus = Bus::new();
        let (slow, mut slow_rx) = bus.register(2);
        let (fast, mut fast_rx) = bus.register(1000);
        for id in [slow, fast] {
            bus.subscribe(id, "$aws/events/#", QoS::AtLeastOnce)
                .unwrap();
        }
        for i in 0..100u8 {
            let outcome = bus.publish(EVENT, vec![i]);
            assert_eq!(outcome.matched, 2);
            assert_eq!(outcome.queued + outcome.dropped, 2);
        }
        assert_eq!(bus.dropped(slow), Some(98));
        assert_eq!(bus.dropped(fast), Some(0));
        // The slow subscriber kept the oldest deliveries, in order.
        let kept: Vec<u8> = drain(&mut slow_rx).iter().map(|d| d.payload[0]).collect();
        assert_eq!(kept, vec![0, 1]);
        let all: Vec<u8> = drain(&mut fast_rx).iter().map(|d| d.payload[0]).collect();
        assert_eq!(all, (0..100).collect::<Vec<u8>>());
        let stats = bus.stats();
        assert_eq!((stats.queued, stats.dropped), (102, 98));
        // Once drained, it receives again.
        assert_eq!(bus.publish(EVENT, vec![200]).queued, 2);
        assert_eq!(drain(&mut slow_rx)[0].payload[0], 200);
    }

    #[test]
    fn a_zero_capacity_still_holds_one_delivery() {
        let bus = Bus::new();
        let (id, mut rx) = bus.register(0);
        bus.subscribe(id, EVENT, QoS::AtMostOnce).unwrap();
        let outcome = bus.publish(EVENT, b"a".to_vec());
        assert_eq!(outcome.queued, 1);
        assert_eq!(drain(&mut rx).len(), 1);
    }

    #[test]
    fn dropped_receivers_are_removed() {
        let bus = Bus::new();
        let (gone, gone_rx) = bus.register(8);
        let (kept, mut kept_rx) = bus.register(8);
        for id in [gone, kept] {
            bus.subscribe(id, EVENT, QoS::AtLeastOnce).unwrap();
        }
        drop(gone_rx);
        let outcome = bus.publish(EVENT, b"e".to_vec());
        assert_eq!((outcome.queued, outcome.closed), (1, 1));
        assert_eq!(bus.subscriber_count(), 1);
        assert_eq!(bus.subscriptions(gone), None);
        assert_eq!(drain(&mut kept_rx).len(), 1);
        assert_eq!(bus.stats().filters, 1);
    }

    #[test]
    fn clones_share_one_bus_and_ids_are_unique() {
        let bus = Bus::new();
        let other = bus.clone();
        let (a, mut rx) = other.register(8);
        let (b, _) = bus.register(8);
        assert_ne!(a, b);
        assert_ne!(a.get(), b.get());
        assert_eq!(a.to_string(), format!("bus-subscriber-{}", a.get()));
        other.subscribe(a, EVENT, QoS::AtLeastOnce).unwrap();
        bus.publish(EVENT, b"e".to_vec());
        assert_eq!(drain(&mut rx).len(), 1);
    }

    #[test]
    fn qos_levels() {
        assert_eq!(QoS::from_level(0), Some(QoS::AtMostOnce));
        assert_eq!(QoS::from_level(1), Some(QoS::AtLeastOnce));
        assert_eq!(QoS::from_level(2), None);
        assert_eq!(QoS::AtLeastOnce.level(), 1);
        assert_eq!(QoS::AtMostOnce.level(), 0);
        assert!(QoS::AtLeastOnce > QoS::AtMostOnce);
    }

    #[test]
    fn many_subscribers_each_get_one_copy() {
        let bus = Bus::new();
        let mut receivers = Vec::new();
        for i in 0..500 {
            let (id, rx) = bus.register(4);
            let filter = match i % 4 {
                0 => "$aws/events/#".to_owned(),
                1 => "$aws/events/thing/+/created".to_owned(),
                2 => EVENT.to_owned(),
                _ => format!("$aws/events/presence/connected/c{i}"),
            };
            bus.subscribe(id, &filter, QoS::AtLeastOnce).unwrap();
            receivers.push((i, id, rx));
        }
        let outcome = bus.publish(EVENT, b"e".to_vec());
        assert_eq!(outcome.matched, 375);
        assert_eq!(outcome.queued, 375);
        for (i, _, rx) in &mut receivers {
            let got = drain(rx);
            let subscribed = *i % 4 != 3;
            let expected = usize::from(subscribed);
            assert_eq!(got.len(), expected, "subscriber {i}");
        }
        // The exact per-client filters.
        let outcome = bus.publish("$aws/events/presence/connected/c7", b"c".to_vec());
        assert_eq!(outcome.matched, 126, "125 on `$aws/events/#` and c7");
    }

    #[tokio::test]
    async fn concurrent_publishers_and_an_async_receiver() {
        let bus = Bus::new();
        let (id, mut rx) = bus.register(DEFAULT_QUEUE_CAPACITY);
        bus.subscribe(id, "$aws/events/presence/+/+", QoS::AtLeastOnce)
            .unwrap();
        let publishers: Vec<_> = (0..4)
            .map(|p| {
                let bus = bus.clone();
                tokio::spawn(async move {
                    for i in 0..100 {
                        let topic = format!("$aws/events/presence/connected/p{p}-{i}");
                        bus.publish(&topic, b"e".to_vec());
                    }
                })
            })
            .collect();
        for p in publishers {
            p.await.unwrap();
        }
        let mut n = 0;
        while n < 400 {
            rx.recv().await.unwrap();
            n += 1;
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(bus.stats().queued, 400);
    }
}
