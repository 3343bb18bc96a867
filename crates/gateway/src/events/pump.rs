//! The event pump: follows the registry's change log (`WatchChanges`) from a
//! durable cursor, gates each event by the live event configuration, renders
//! it and publishes it on the `$aws` bus (sessions check `iot:Receive` on
//! every delivery).
//!
//! **Delivery: at least once.** The cursor is the sequence number of the
//! last event handed to the bus (published, skipped by its gate, or skipped
//! because it could not be rendered). It only ever moves past an event once
//! [`Bus::publish`] has returned for it. A separate task writes it to the
//! pump's own sled store (written and flushed through a [`Writer`]) at most
//! every [`PERSIST_INTERVAL`], always the latest value, and once more on
//! shutdown. So the durable cursor may lag the handled one by up to that
//! interval: after a crash, the events of that window are published again,
//! with the same `eventId` (the registry fixes it at commit), and consumers
//! de-duplicate on it. No event is skipped: a durable cursor never names an
//! event that was not handed to the bus.
//!
//! **Gating happens at publish time**, against the configuration the cache
//! holds then: an event replayed after a restart is published if its type is
//! enabled now, whatever the configuration was when it was committed.
//!
//! **Reconnects.** When the stream cannot be opened, fails or ends, the pump
//! waits (100 ms doubling to 5 s; reset each time a stream opens) and reopens
//! it after the cursor. When the registry answers `OUT_OF_RANGE`, the cursor
//! can't be served: either retention removed the events after it (they are
//! lost; the pump logs the gap at error level) or the registry's log ends
//! before it (its data was wiped). Either way the pump continues from the
//! oldest retained event (`after_sequence` 0) at once.
//!
//! **The store** is the pump's own: the pump runs a [`Writer`] on it, and a
//! store has one writer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::partition::Tagged;
use anyhow::Context as _;
use herald_proto::registry::v1::{ChangeEvent, registry_client::RegistryClient};
use herald_store::{Store, Writer};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::follow::{ChangeFollower, Followed};
use super::{Gated, gated};
use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::config_cache::ConfigCache;

/// The first wait before reopening the change stream.
pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait before reopening the change stream.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often, at most, the cursor is written (and flushed) to the store.
pub(crate) const PERSIST_INTERVAL: Duration = Duration::from_millis(200);
/// How long shutdown waits for the cursor's writer thread to finish.
const WRITER_GRACE: Duration = Duration::from_secs(5);

/// The cursor's key in the pump's store.
fn cursor_key() -> Vec<u8> {
    herald_store::key(&["pump", "cursor"])
}

/// The cursor as stored.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StoredCursor {
    /// The last event handed to the bus; the stream resumes after it.
    after_sequence: u64,
}

/// A running pump: a handle to its counters. Cheap to clone.
#[derive(Clone)]
pub struct EventPump {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventPump")
            .field("cursor", &self.cursor())
            .field("persisted_cursor", &self.persisted_cursor())
            .field("published", &self.published())
            .field("skipped_by_gate", &self.skipped_by_gate())
            .field("render_errors", &self.render_errors())
            .field("disconnections", &self.disconnections())
            .field("cursor_resets", &self.cursor_resets())
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

struct Shared {
    /// The last event handed to the bus.
    handled: watch::Sender<u64>,
    /// The last event of the batch being handed to the bus: no event after
    /// it has started to be published.
    started: AtomicU64,
    /// The last cursor written and flushed to the store.
    persisted: AtomicU64,
    published: AtomicU64,
    skipped_by_gate: AtomicU64,
    render_errors: AtomicU64,
    disconnections: AtomicU64,
    cursor_resets: AtomicU64,
    /// Cancelled once the pump has stopped and its store is released.
    stopped: CancellationToken,
}

impl Shared {
    fn new(cursor: u64) -> Arc<Shared> {
        Arc::new(Shared {
            handled: watch::Sender::new(cursor),
            started: AtomicU64::new(cursor),
            persisted: AtomicU64::new(cursor),
            published: AtomicU64::new(0),
            skipped_by_gate: AtomicU64::new(0),
            render_errors: AtomicU64::new(0),
            disconnections: AtomicU64::new(0),
            cursor_resets: AtomicU64::new(0),
            stopped: CancellationToken::new(),
        })
    }
}

/// What the pump's loop needs.
struct Pump {
    shared: Arc<Shared>,
    registry: RegistryClient<Tagged>,
    cache: ConfigCache,
    bus: Bus,
    shutdown: CancellationToken,
}

impl EventPump {
    /// Reads the cursor from `store` and starts the pump and its cursor
    /// writer, which run until `shutdown` is cancelled; then the cursor is
    /// written a last time and the store released (see
    /// [`EventPump::stopped`]).
    ///
    /// Fails when the stored cursor can't be read or the writer thread can't
    /// start. Must be called within a Tokio runtime.
    pub fn spawn(
        registry: RegistryClient<Tagged>,
        cache: ConfigCache,
        bus: Bus,
        store: Store,
        shutdown: CancellationToken,
    ) -> anyhow::Result<EventPump> {
        Self::spawn_after(registry, cache, bus, store, 0, shutdown)
    }

    /// [`EventPump::spawn`], starting after `fresh_start` when `store`
    /// holds no cursor yet (0: from the oldest retained event).
    pub(crate) fn spawn_after(
        registry: RegistryClient<Tagged>,
        cache: ConfigCache,
        bus: Bus,
        store: Store,
        fresh_start: u64,
        shutdown: CancellationToken,
    ) -> anyhow::Result<EventPump> {
        let cursor = store
            .get::<StoredCursor>(&cursor_key())
            .context("read the event pump's cursor")?
            .map_or(fresh_start, |c| c.after_sequence);
        let (writer, _log, writer_thread) =
            Writer::<()>::start(store, "event-pump-cursor").context("start the cursor writer")?;
        let shared = Shared::new(cursor);
        let pump = Pump {
            shared: shared.clone(),
            registry,
            cache,
            bus,
            shutdown,
        };
        let persister_stop = CancellationToken::new();
        let persister = tokio::spawn(persist(
            writer,
            shared.clone(),
            shared.handled.subscribe(),
            persister_stop.clone(),
        ));
        let stopped = shared.stopped.clone();
        tokio::spawn(async move {
            // Marks the pump stopped even if something below panics.
            let _stopped = stopped.drop_guard();
            tracing::info!(cursor, "event pump starting");
            pump.run().await;
            // No event is handled after this point: the last write is final.
            persister_stop.cancel();
            if let Err(e) = persister.await {
                tracing::error!(error = %e, "the event pump's cursor writer failed");
            }
            if let Err(e) = writer_thread.stop(WRITER_GRACE).await {
                tracing::error!(error = %e, "could not stop the event pump's cursor writer");
            }
            tracing::info!("event pump stopped");
        });
        Ok(EventPump { shared })
    }

    /// The last event handed to the bus: the pump resumes after it.
    pub fn cursor(&self) -> u64 {
        *self.shared.handled.borrow()
    }

    /// The last event whose publishing may have started: every event after
    /// it will be published to the subscribers the bus has from now on. A
    /// persistent session that resumes reads it once its filters are on the
    /// bus, and replays the change log up to it.
    pub fn started(&self) -> u64 {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// The cursor as last written to the store (it may lag [`cursor`]).
    ///
    /// [`cursor`]: EventPump::cursor
    pub fn persisted_cursor(&self) -> u64 {
        self.shared.persisted.load(Ordering::Relaxed)
    }

    /// Events published on the bus (their type enabled), since the start.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::Relaxed)
    }

    /// Events not published because their type is disabled.
    pub fn skipped_by_gate(&self) -> u64 {
        self.shared.skipped_by_gate.load(Ordering::Relaxed)
    }

    /// Events skipped because they could not be rendered.
    pub fn render_errors(&self) -> u64 {
        self.shared.render_errors.load(Ordering::Relaxed)
    }

    /// Times the change stream could not be opened, failed or ended.
    pub fn disconnections(&self) -> u64 {
        self.shared.disconnections.load(Ordering::Relaxed)
    }

    /// Times the registry could not serve the cursor (`OUT_OF_RANGE`) and
    /// the pump continued from the oldest retained event.
    pub fn cursor_resets(&self) -> u64 {
        self.shared.cursor_resets.load(Ordering::Relaxed)
    }

    /// Resolves once every event up to `sequence` has been handed to the bus
    /// (never, if the registry never gets there: race it with a timeout).
    pub async fn caught_up_to(&self, sequence: u64) {
        let mut handled = self.shared.handled.subscribe();
        // `self` keeps the sender alive: this can't fail.
        let _ = handled.wait_for(|c| *c >= sequence).await;
    }

    /// Whether the pump has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.is_cancelled()
    }

    /// Resolves once the pump has stopped (after shutdown): the cursor is
    /// written and the store released.
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await;
    }
}

impl Pump {
    async fn run(self) {
        tokio::select! {
            () = self.shutdown.cancelled() => return,
            () = self.cache.ready() => {}
        }
        let cursor = *self.shared.handled.borrow();
        let mut follower = ChangeFollower::new(
            self.registry.clone(),
            cursor,
            Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF),
        );
        loop {
            let followed = tokio::select! {
                () = self.shutdown.cancelled() => return,
                followed = follower.next() => followed,
            };
            let cursor = *self.shared.handled.borrow();
            match followed {
                Followed::Events(events) => {
                    self.handle(events);
                    continue;
                }
                Followed::Interrupted(Some(status)) => tracing::warn!(
                    cursor,
                    code = ?status.code(),
                    message = status.message(),
                    backoff = ?follower.backoff(),
                    "the change stream failed; reconnecting"
                ),
                Followed::Interrupted(None) => tracing::warn!(
                    cursor,
                    backoff = ?follower.backoff(),
                    "the change stream ended; reconnecting"
                ),
                Followed::Pruned {
                    first_retained: Some(first),
                    ..
                } if first > cursor + 1 => {
                    tracing::error!(
                        cursor,
                        first_lost = cursor + 1,
                        last_lost = first - 1,
                        lost = first - 1 - cursor,
                        first_retained = first,
                        "events after the cursor were removed by the registry's retention and are lost; \
                         continuing from the oldest retained event"
                    );
                    self.restart_from_oldest();
                }
                Followed::Pruned { .. } => {
                    tracing::error!(
                        cursor,
                        "the registry cannot resume after the cursor; continuing from its oldest \
                         retained event (events in between may be lost)"
                    );
                    self.restart_from_oldest();
                }
                Followed::Wiped { last_sequence, .. } => {
                    tracing::error!(
                        cursor,
                        last_sequence,
                        "the registry's change log ends before the cursor (was its data wiped?); \
                         continuing from its oldest event"
                    );
                    self.restart_from_oldest();
                }
            }
            self.shared.disconnections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands one batch to the bus, in order, then moves the cursor past it.
    fn handle(&self, events: Vec<ChangeEvent>) {
        let mut cursor = *self.shared.handled.borrow();
        if let Some(last) = events.last() {
            self.shared
                .started
                .fetch_max(last.sequence, Ordering::SeqCst);
        }
        for event in events {
            if event.sequence <= cursor {
                tracing::debug!(
                    sequence = event.sequence,
                    cursor,
                    "change event at or before the cursor; skipped"
                );
                continue;
            }
            if cursor > 0 && event.sequence != cursor + 1 {
                tracing::warn!(
                    sequence = event.sequence,
                    cursor,
                    "the change stream skipped sequence numbers"
                );
            }
            self.hand_over(&event);
            cursor = event.sequence;
        }
        self.shared.handled.send_if_modified(|handled| {
            let moved = *handled != cursor;
            *handled = cursor;
            moved
        });
    }

    /// Renders, gates and publishes one event.
    fn hand_over(&self, event: &ChangeEvent) {
        let rendered = match gated(event, &self.cache) {
            Gated::Publish(rendered) => rendered,
            Gated::Unrenderable(e) => {
                self.shared.render_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sequence = event.sequence,
                    event_id = %event.event_id,
                    error = %e,
                    "change event cannot be rendered; skipped"
                );
                return;
            }
            Gated::Disabled(gate) => {
                self.shared.skipped_by_gate.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(
                    sequence = event.sequence,
                    gate = gate.key(),
                    "event type disabled; not published"
                );
                return;
            }
        };
        let outcome = self.bus.publish_sequenced(
            &rendered.topic,
            rendered.payload,
            event.sequence,
            event.timestamp_ms,
        );
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            sequence = event.sequence,
            event_id = %rendered.event_id,
            topic = %rendered.topic,
            matched = outcome.matched,
            queued = outcome.queued,
            dropped = outcome.dropped,
            "event published"
        );
    }

    /// The registry could not serve the cursor: the pump goes on from the
    /// oldest retained event (the follower already does).
    fn restart_from_oldest(&self) {
        self.shared.cursor_resets.fetch_add(1, Ordering::Relaxed);
        self.shared.started.store(0, Ordering::SeqCst);
        self.shared.handled.send_replace(0);
    }
}

/// Writes the latest handled cursor to the store, at most every
/// [`PERSIST_INTERVAL`], until `stop`; then writes it a last time.
async fn persist(
    writer: Writer<()>,
    shared: Arc<Shared>,
    mut handled: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = handled.changed() => if changed.is_err() { break },
        }
        let cursor = *handled.borrow_and_update();
        write_cursor(&writer, &shared, cursor).await;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(PERSIST_INTERVAL) => {}
        }
    }
    let cursor = *handled.borrow();
    if cursor != shared.persisted.load(Ordering::Relaxed) {
        write_cursor(&writer, &shared, cursor).await;
    }
}

async fn write_cursor(writer: &Writer<()>, shared: &Shared, cursor: u64) {
    let written = writer
        .mutate(move |changes| {
            changes.put(
                cursor_key(),
                &StoredCursor {
                    after_sequence: cursor,
                },
            )
        })
        .await;
    match written {
        Ok(()) => shared.persisted.store(cursor, Ordering::Relaxed),
        // The next write retries; until one succeeds, a restart replays
        // from the last cursor written.
        Err(e) => tracing::error!(cursor, error = %e, "could not write the event pump's cursor"),
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::{
        config::v1::{self as cfg, config_update},
        registry::v1::{Operation, ThingEvent, ThingTypeEvent, change_event},
    };
    use tonic::transport::Endpoint;

    use super::*;
    use crate::bus::QoS;

    fn thing(sequence: u64, name: &str) -> ChangeEvent {
        ChangeEvent {
            sequence,
            event_id: format!("id-{sequence}"),
            timestamp_ms: 1,
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            operation: Operation::Created as i32,
            event: Some(change_event::Event::Thing(ThingEvent {
                thing_id: "t".to_owned(),
                thing_name: name.to_owned(),
                version_number: 1,
                ..Default::default()
            })),
        }
    }

    /// A pump (not running) with THING enabled and THING_TYPE disabled.
    fn pump(bus: &Bus, cursor: u64) -> Pump {
        let cache = ConfigCache::new();
        cache.apply(cfg::ConfigUpdate {
            revision: 1,
            change: Some(config_update::Change::Snapshot(cfg::ConfigSnapshot {
                event_configurations: [
                    ("THING".to_owned(), true),
                    ("THING_TYPE".to_owned(), false),
                ]
                .into(),
                ..Default::default()
            })),
        });
        Pump {
            shared: Shared::new(cursor),
            // Never connected: `handle` makes no calls.
            registry: RegistryClient::new(crate::partition::tagged(
                Endpoint::from_static("http://127.0.0.1:9").connect_lazy(),
                None,
            )),
            cache,
            bus: bus.clone(),
            shutdown: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_batch_is_gated_rendered_and_published_in_order_and_never_stalls() {
        let bus = Bus::new();
        let (id, mut rx) = bus.register(16);
        bus.subscribe(id, "$aws/events/#", QoS::AtLeastOnce)
            .unwrap();
        let pump = pump(&bus, 1);
        let mut no_body = thing(4, "x");
        no_body.event = None;
        let mut thing_type = thing(5, "x");
        thing_type.event = Some(change_event::Event::ThingType(ThingTypeEvent {
            thing_type_name: "T".to_owned(),
            ..Default::default()
        }));
        pump.handle(vec![
            // At the cursor: already handled.
            thing(1, "old"),
            thing(2, "a"),
            // A name that can't be a topic level.
            thing(3, "a/b"),
            no_body,
            thing_type,
            thing(6, "b"),
        ]);
        assert_eq!(*pump.shared.handled.borrow(), 6);
        assert_eq!(pump.shared.published.load(Ordering::Relaxed), 2);
        assert_eq!(pump.shared.render_errors.load(Ordering::Relaxed), 2);
        assert_eq!(pump.shared.skipped_by_gate.load(Ordering::Relaxed), 1);
        let mut topics = Vec::new();
        while let Ok(delivery) = rx.try_recv() {
            topics.push(delivery.topic.to_string());
        }
        assert_eq!(
            topics,
            ["$aws/events/thing/a/created", "$aws/events/thing/b/created"]
        );
    }

    #[tokio::test]
    async fn an_empty_batch_leaves_the_cursor() {
        let bus = Bus::new();
        let pump = pump(&bus, 7);
        let mut handled = pump.shared.handled.subscribe();
        pump.handle(Vec::new());
        assert_eq!(*handled.borrow_and_update(), 7);
        assert!(!handled.has_changed().unwrap());
    }
}
