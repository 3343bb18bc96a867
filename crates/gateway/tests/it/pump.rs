//! The event pump against the real registry and config service: gating by
//! the live event configuration, the exact payloads with the registry's event
//! ids, `iot:Receive` per subscriber, the durable cursor across restarts of
//! the pump, the registry going away and coming back, and a cursor the
//! registry can no longer serve.
//!
//! A test never waits for something not to happen: the pump hands an event to
//! the bus before its cursor moves past it, so once
//! [`EventPump::caught_up_to`] resolves, every delivery of the events up to
//! there is already queued.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use herald_gateway::testing::{
    bus::{Bus, Delivery, QoS, SubscriberId},
    config_cache::ConfigCache,
    events::EventPump,
};
use herald_proto::registry::v1::{self as reg, registry_client::RegistryClient};
use herald_store::Store;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
    task::JoinHandle,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::Endpoint;

use crate::support::*;

// ------------------------------------------------------------ the setup

/// The services, a config cache watching the config service, a bus and the
/// folder of the pump's store.
struct Setup {
    herald: Herald,
    config: Config,
    cache: ConfigCache,
    bus: Bus,
    store_dir: TempDir,
    _cache_task: DropGuard,
}

impl Setup {
    async fn start() -> Setup {
        let herald = Herald::start().await;
        let config = herald.config().await;
        let stop = CancellationToken::new();
        let cache = ConfigCache::spawn(herald.proxied_config(), stop.clone());
        tokio::time::timeout(WAIT, cache.ready())
            .await
            .expect("the cache gets its first snapshot");
        Setup {
            herald,
            config,
            cache,
            bus: Bus::new(),
            store_dir: tempfile::tempdir().unwrap(),
            _cache_task: stop.drop_guard(),
        }
    }

    /// Sets event configurations and waits until the cache has them.
    async fn events(&mut self, enabled: &[(&str, bool)]) {
        set_events(&mut self.config, enabled).await;
        let cache = &self.cache;
        eventually(10, "the cache to see the event configuration", || async {
            enabled
                .iter()
                .all(|(key, on)| cache.event_enabled(key) == *on)
                .then_some(())
        })
        .await;
    }

    /// A bus subscriber to `filters`, at QoS 1.
    fn subscriber(&self, filters: &[&str]) -> (SubscriberId, mpsc::Receiver<Delivery>) {
        let (id, rx) = self.bus.register(256);
        for filter in filters {
            self.bus.subscribe(id, filter, QoS::AtLeastOnce).unwrap();
        }
        (id, rx)
    }

    /// A pump over `registry` on the setup's store.
    fn pump(&self, registry: Registry) -> Pump {
        Pump::start(registry, &self.cache, &self.bus, self.store_dir.path())
    }

    async fn stop(self) {
        self.herald.stop().await;
    }
}

/// A running pump and its shutdown.
struct Pump {
    pump: EventPump,
    shutdown: CancellationToken,
}

impl Pump {
    fn start(registry: Registry, cache: &ConfigCache, bus: &Bus, store_dir: &Path) -> Pump {
        let store = Store::open(store_dir).unwrap();
        let shutdown = CancellationToken::new();
        let pump = EventPump::spawn(
            registry,
            cache.clone(),
            bus.clone(),
            store,
            shutdown.clone(),
        )
        .unwrap();
        Pump { pump, shutdown }
    }

    /// Waits until every event up to `sequence` is handed to the bus.
    async fn caught_up_to(&self, sequence: u64) {
        tokio::time::timeout(WAIT, self.pump.caught_up_to(sequence))
            .await
            .unwrap_or_else(|_| panic!("the pump should reach {sequence}: {:?}", self.pump));
    }

    /// Stops the pump and waits until it has released its store.
    async fn stop(self) -> EventPump {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.pump.stopped())
            .await
            .expect("the pump stops on shutdown");
        self.pump
    }
}

// ------------------------------------------------------------ a registry that can go away

/// A registry behind a TCP proxy at a fixed address, so that it can be
/// stopped and started again (on the same data folder, on a new port)
/// without its clients changing address.
struct MovableRegistry {
    settings: herald_registry::Settings,
    running: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    proxy: Forward,
    _dir: TempDir,
}

impl MovableRegistry {
    async fn start(tweak: impl FnOnce(&mut herald_registry::Settings)) -> MovableRegistry {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = herald_registry::Settings::for_test(dir.path().join("registry"));
        tweak(&mut settings);
        let proxy = Forward::start().await;
        let mut registry = MovableRegistry {
            settings,
            running: None,
            proxy,
            _dir: dir,
        };
        registry.restart().await;
        registry
    }

    /// Starts the registry (again) and points the proxy at it.
    async fn restart(&mut self) {
        assert!(self.running.is_none(), "the registry runs already");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_registry::run(
            self.settings.clone(),
            listener,
            shutdown.clone(),
        ));
        self.proxy.set_backend(Some(addr));
        self.running = Some((shutdown, task));
    }

    /// Cuts the connections to the registry, refuses new ones and stops it,
    /// asserting a clean shutdown.
    async fn stop(&mut self) {
        self.proxy.set_backend(None);
        self.proxy.cut();
        let (shutdown, task) = self.running.take().expect("the registry runs");
        shutdown.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the registry stops")
            .unwrap()
            .unwrap();
    }

    /// A client through the proxy, connecting lazily.
    fn client(&self) -> Registry {
        let channel = Endpoint::from_shared(format!("http://{}", self.proxy.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        RegistryClient::new(herald_gateway::testing::partition::tagged(channel, None))
    }

    async fn shutdown(mut self) {
        if self.running.is_some() {
            self.stop().await;
        }
        self.proxy.shutdown.cancel();
    }
}

/// A minimal TCP forwarder: each connection goes to the current backend,
/// or is closed at once when there is none.
struct Forward {
    addr: SocketAddr,
    backend: Arc<Mutex<Option<SocketAddr>>>,
    /// Cancelled to cut the connections opened since the last cut.
    cut: Arc<Mutex<CancellationToken>>,
    shutdown: CancellationToken,
}

impl Forward {
    async fn start() -> Forward {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let forward = Forward {
            addr: listener.local_addr().unwrap(),
            backend: Arc::default(),
            cut: Arc::default(),
            shutdown: CancellationToken::new(),
        };
        let (backend, cut, shutdown) = (
            forward.backend.clone(),
            forward.cut.clone(),
            forward.shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap().0,
                };
                let Some(backend) = *backend.lock().unwrap() else {
                    continue;
                };
                let cut = cut.lock().unwrap().clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            () = cut.cancelled() => {}
                            () = shutdown.cancelled() => {}
                        }
                    }
                });
            }
        });
        forward
    }

    fn set_backend(&self, backend: Option<SocketAddr>) {
        *self.backend.lock().unwrap() = backend;
    }

    fn cut(&self) {
        let mut cut = self.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }
}

// ------------------------------------------------------------ registry calls and the log

async fn create_thing(r: &mut Registry, name: &str, thing_type: Option<&str>) -> String {
    r.create_thing(reg::CreateThingRequest {
        thing_name: name.into(),
        thing_type_name: thing_type.map(Into::into),
        attribute_payload: Some(reg::AttributePayload {
            attributes: [("color".to_owned(), "blue".to_owned())].into(),
            merge: false,
        }),
        billing_group_name: None,
    })
    .await
    .unwrap()
    .into_inner()
    .thing_id
}

async fn create_type(r: &mut Registry, name: &str) {
    r.create_thing_type(reg::CreateThingTypeRequest {
        thing_type_name: name.into(),
        thing_type_properties: None,
        tags: vec![],
    })
    .await
    .unwrap();
}

fn set_type(name: &str, thing_type: &str) -> reg::UpdateThingRequest {
    reg::UpdateThingRequest {
        thing_name: name.into(),
        thing_type_name: Some(thing_type.into()),
        ..Default::default()
    }
}

async fn last_sequence(r: &mut Registry) -> u64 {
    r.get_change_log_info(reg::GetChangeLogInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_sequence
}

/// The registry's retained events after `after` (0: all), up to its last.
async fn log_after(r: &mut Registry, after: u64) -> Vec<reg::ChangeEvent> {
    let last = last_sequence(r).await;
    let mut events: Vec<reg::ChangeEvent> = Vec::new();
    if last <= after {
        return events;
    }
    let mut stream = r
        .watch_changes(reg::WatchChangesRequest {
            after_sequence: after,
        })
        .await
        .unwrap()
        .into_inner();
    while events.last().map_or(after, |e| e.sequence) < last {
        let batch = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("the log streams promptly")
            .unwrap()
            .expect("the stream goes on");
        events.extend(batch.events);
    }
    events
}

// ------------------------------------------------------------ deliveries

/// Everything queued for a subscriber, without waiting.
fn drain(rx: &mut mpsc::Receiver<Delivery>) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Ok(delivery) = rx.try_recv() {
        out.push(delivery);
    }
    out
}

fn topics(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| &*d.topic).collect()
}

fn payload(delivery: &Delivery) -> Value {
    serde_json::from_slice(&delivery.payload).unwrap()
}

fn event_ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| payload(d)["eventId"].as_str().unwrap().to_owned())
        .collect()
}

// ------------------------------------------------------------ the tests

#[tokio::test]
async fn a_created_thing_is_delivered_once_with_the_registry_s_event() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    // Two overlapping filters: one delivery.
    let (_, mut rx) = s.subscriber(&["$aws/events/#", "$aws/events/thing/+/created"]);
    let mut r = s.herald.registry().await;
    let pump = s.pump(r.clone());

    let thing_id = create_thing(&mut r, "pump-thing", None).await;
    let log = log_after(&mut r, 0).await;
    assert_eq!(log.len(), 1, "one event: {log:?}");
    pump.caught_up_to(log[0].sequence).await;

    let got = drain(&mut rx);
    assert_eq!(topics(&got), ["$aws/events/thing/pump-thing/created"]);
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    assert_eq!(
        payload(&got[0]),
        json!({
            "eventType": "THING_EVENT",
            "eventId": log[0].event_id,
            "timestamp": log[0].timestamp_ms,
            "operation": "CREATED",
            "accountId": ACCOUNT,
            "thingId": thing_id,
            "thingName": "pump-thing",
            "versionNumber": 1,
            "thingTypeName": null,
            "attributes": {"color": "blue"},
        })
    );
    assert_eq!(pump.pump.published(), 1);
    assert_eq!(pump.pump.cursor(), log[0].sequence);
    pump.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_disabled_event_type_is_not_published_until_it_is_enabled() {
    let mut s = Setup::start().await;
    s.events(&[("THING", false), ("THING_TYPE", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut r = s.herald.registry().await;
    let pump = s.pump(r.clone());

    create_thing(&mut r, "quiet", None).await;
    // The marker: an enabled event after the disabled one.
    create_type(&mut r, "marker").await;
    pump.caught_up_to(last_sequence(&mut r).await).await;
    assert_eq!(
        topics(&drain(&mut rx)),
        ["$aws/events/thingType/marker/created"]
    );
    assert_eq!(pump.pump.skipped_by_gate(), 1);

    // The live configuration gates the next events.
    s.events(&[("THING", true), ("THING_TYPE", false)]).await;
    r.update_thing(set_type("quiet", "marker")).await.unwrap();
    pump.caught_up_to(last_sequence(&mut r).await).await;
    assert_eq!(topics(&drain(&mut rx)), ["$aws/events/thing/quiet/updated"]);
    // The association event is disabled too.
    assert_eq!(pump.pump.skipped_by_gate(), 2);
    assert_eq!(pump.pump.published(), 2);
    pump.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_failed_mutation_publishes_nothing() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut r = s.herald.registry().await;
    let pump = s.pump(r.clone());

    create_thing(&mut r, "versioned", None).await;
    // A version conflict and a type that does not exist: both refused.
    let conflict = r
        .update_thing(reg::UpdateThingRequest {
            thing_name: "versioned".into(),
            expected_version: Some(7),
            ..Default::default()
        })
        .await;
    assert!(conflict.is_err(), "{conflict:?}");
    let missing = r.update_thing(set_type("versioned", "nope")).await;
    assert!(missing.is_err(), "{missing:?}");
    create_thing(&mut r, "marker", None).await;
    pump.caught_up_to(last_sequence(&mut r).await).await;
    assert_eq!(
        topics(&drain(&mut rx)),
        [
            "$aws/events/thing/versioned/created",
            "$aws/events/thing/marker/created"
        ]
    );
    pump.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_new_thing_type_yields_updated_removed_and_added() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true), ("THING_TYPE_ASSOCIATION", true)])
        .await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut r = s.herald.registry().await;
    let pump = s.pump(r.clone());

    create_type(&mut r, "old-type").await;
    create_type(&mut r, "new-type").await;
    let thing_id = create_thing(&mut r, "retyped", Some("old-type")).await;
    let before = last_sequence(&mut r).await;
    r.update_thing(set_type("retyped", "new-type"))
        .await
        .unwrap();
    let log = log_after(&mut r, before).await;
    pump.caught_up_to(log.last().unwrap().sequence).await;

    let all = drain(&mut rx);
    assert_eq!(
        topics(&all),
        [
            "$aws/events/thing/retyped/created",
            "$aws/events/thingTypeAssociation/thing/retyped/thingType/old-type/added",
            "$aws/events/thing/retyped/updated",
            "$aws/events/thingTypeAssociation/thing/retyped/thingType/old-type/removed",
            "$aws/events/thingTypeAssociation/thing/retyped/thingType/new-type/added",
        ]
    );
    let update = &all[2..];
    assert_eq!(
        event_ids(update),
        log.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>()
    );
    let updated = payload(&update[0]);
    assert_eq!(updated["operation"], "UPDATED");
    assert_eq!(updated["thingTypeName"], "new-type");
    assert_eq!(updated["versionNumber"], 2);
    let associations = [("REMOVED", "old-type"), ("ADDED", "new-type")];
    for ((delivery, event), (operation, thing_type)) in
        update[1..].iter().zip(&log[1..]).zip(associations)
    {
        assert_eq!(
            payload(delivery),
            json!({
                "eventId": event.event_id,
                "eventType": "THING_TYPE_ASSOCIATION_EVENT",
                "operation": operation,
                "thingId": thing_id,
                "thingName": "retyped",
                "thingTypeName": thing_type,
                "timestamp": event.timestamp_ms,
            })
        );
    }
    // The two type creations were gated out.
    assert_eq!(pump.pump.skipped_by_gate(), 2);
    pump.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_restarted_pump_resumes_after_its_durable_cursor() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut r = s.herald.registry().await;

    let first = s.pump(r.clone());
    for name in ["before-1", "before-2", "before-3"] {
        create_thing(&mut r, name, None).await;
    }
    let cursor = last_sequence(&mut r).await;
    first.caught_up_to(cursor).await;
    assert_eq!(drain(&mut rx).len(), 3);
    let first = first.stop().await;
    // The last cursor is written on shutdown.
    assert_eq!(first.persisted_cursor(), cursor);

    for name in ["after-1", "after-2", "after-3"] {
        create_thing(&mut r, name, None).await;
    }
    let committed: BTreeSet<String> = log_after(&mut r, cursor)
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(committed.len(), 3);

    // A new pump on the same folder starts at the stored cursor.
    let second = s.pump(r.clone());
    assert_eq!(second.pump.cursor(), cursor);
    second.caught_up_to(last_sequence(&mut r).await).await;
    let delivered: BTreeSet<String> = event_ids(&drain(&mut rx)).into_iter().collect();
    // At least once: every committed event is delivered. After a clean stop
    // the cursor was exact, so nothing before it comes again.
    assert!(
        delivered.is_superset(&committed),
        "{delivered:?} ⊉ {committed:?}"
    );
    assert_eq!(delivered, committed);
    let second = second.stop().await;
    assert_eq!(second.persisted_cursor(), cursor + 3);
    s.stop().await;
}

#[tokio::test]
async fn the_pump_reconnects_when_the_registry_comes_back() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut registry = MovableRegistry::start(|_| {}).await;
    let pump = s.pump(registry.client());

    let mut r = registry.client();
    create_thing(&mut r, "first", None).await;
    pump.caught_up_to(last_sequence(&mut r).await).await;
    assert_eq!(topics(&drain(&mut rx)), ["$aws/events/thing/first/created"]);

    registry.stop().await;
    // The stream broke, and at least one reconnect failed.
    eventually(10, "the pump to retry", || async {
        (pump.pump.disconnections() >= 2).then_some(())
    })
    .await;
    registry.restart().await;

    let mut r = registry.client();
    create_thing(&mut r, "second", None).await;
    pump.caught_up_to(last_sequence(&mut r).await).await;
    // Resumed after the cursor: nothing twice, nothing missed.
    assert_eq!(
        topics(&drain(&mut rx)),
        ["$aws/events/thing/second/created"]
    );
    assert_eq!(pump.pump.cursor_resets(), 0);
    pump.stop().await;
    registry.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn a_cursor_pruned_by_retention_continues_from_the_oldest_retained_event() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let registry = MovableRegistry::start(|settings| {
        settings.changes.retention_secs = 1;
        settings.changes.prune_interval_secs = 1;
    })
    .await;
    let mut r = registry.client();

    let first = s.pump(registry.client());
    create_thing(&mut r, "handled", None).await;
    let cursor = last_sequence(&mut r).await;
    first.caught_up_to(cursor).await;
    drain(&mut rx);
    first.stop().await;

    for name in ["lost-1", "lost-2", "kept"] {
        create_thing(&mut r, name, None).await;
    }
    let last = last_sequence(&mut r).await;
    // Retention removes everything older than a second but the newest event.
    eventually(10, "retention to remove the event after the cursor", || {
        let mut r = r.clone();
        async move {
            let info = r
                .get_change_log_info(reg::GetChangeLogInfoRequest {})
                .await
                .unwrap()
                .into_inner();
            (info.first_sequence > cursor + 1).then_some(())
        }
    })
    .await;

    let second = s.pump(registry.client());
    second.caught_up_to(last).await;
    assert_eq!(second.pump.cursor_resets(), 1);
    let got = topics(&drain(&mut rx))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    // The newest event is always retained; the one right after the cursor
    // was lost; nothing at or before the cursor comes again.
    assert_eq!(got.last().unwrap(), "$aws/events/thing/kept/created");
    assert!(!got.iter().any(|t| t.contains("/lost-1/")), "{got:?}");
    assert!(!got.iter().any(|t| t.contains("/handled/")), "{got:?}");
    second.stop().await;
    registry.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn a_cursor_past_the_end_of_a_wiped_log_starts_over() {
    let mut s = Setup::start().await;
    s.events(&[("THING", true)]).await;
    let (_, mut rx) = s.subscriber(&["$aws/events/#"]);
    let mut r = s.herald.registry().await;

    let first = s.pump(r.clone());
    for name in ["old-1", "old-2", "old-3"] {
        create_thing(&mut r, name, None).await;
    }
    first.caught_up_to(last_sequence(&mut r).await).await;
    drain(&mut rx);
    first.stop().await;

    // Another registry, with a shorter log: as if the data had been wiped.
    let wiped = Herald::start().await;
    let mut w = wiped.registry().await;
    create_thing(&mut w, "new-1", None).await;
    let second = s.pump(w.clone());
    eventually(10, "the pump to reach the new log's end", || async {
        (second.pump.cursor() == 1 && second.pump.cursor_resets() == 1).then_some(())
    })
    .await;
    assert_eq!(topics(&drain(&mut rx)), ["$aws/events/thing/new-1/created"]);
    second.stop().await;
    wiped.stop().await;
    s.stop().await;
}

/// A job run to its end through the registry's `Jobs` service: the pump
/// publishes the execution's `succeeded` and the job's `completed`, gated by
/// `JOB_EXECUTION` and `JOB`, with the registry's event ids, and the thing's
/// `notify-next`, which no event configuration gates.
#[tokio::test]
async fn job_and_job_execution_events_are_published() {
    let mut s = Setup::start().await;
    s.events(&[("JOB", true), ("JOB_EXECUTION", true)]).await;
    let (_, mut rx) = s.subscriber(&[
        "$aws/events/job/#",
        "$aws/events/jobExecution/#",
        "$aws/things/device-1/jobs/notify-next",
    ]);
    let mut r = s.herald.registry().await;
    let pump = s.pump(r.clone());
    let mut jobs = reg::jobs_client::JobsClient::connect(s.herald.registry_url())
        .await
        .unwrap();

    create_thing(&mut r, "device-1", None).await;
    let thing_arn = format!("arn:aws:iot:{REGION}:{ACCOUNT}:thing/device-1");
    jobs.create_job(reg::CreateJobRequest {
        job_id: "fw".into(),
        targets: vec![thing_arn.clone()],
        document: Some(r#"{"op":"update"}"#.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    pump.caught_up_to(last_sequence(&mut r).await).await;
    let queued = drain(&mut rx);
    assert_eq!(topics(&queued), ["$aws/things/device-1/jobs/notify-next"]);
    let next = payload(&queued[0]);
    assert_eq!(next["execution"]["jobId"], "fw");
    assert_eq!(next["execution"]["status"], "QUEUED");
    assert_eq!(next["execution"]["jobDocument"], json!({"op": "update"}));

    let before = last_sequence(&mut r).await;
    jobs.update_job_execution(reg::UpdateJobExecutionRequest {
        job_id: "fw".into(),
        thing_name: "device-1".into(),
        status: reg::JobExecutionStatus::Succeeded as i32,
        status_details: Some(reg::StatusDetails {
            entries: [("version".to_owned(), "2".to_owned())].into(),
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let last = last_sequence(&mut r).await;
    let log = log_after(&mut r, before).await;
    pump.caught_up_to(last).await;

    let got = drain(&mut rx);
    assert_eq!(
        topics(&got),
        [
            "$aws/events/jobExecution/fw/succeeded",
            "$aws/things/device-1/jobs/notify-next",
            "$aws/events/job/fw/completed"
        ]
    );
    let id_of = |wanted: fn(&reg::change_event::Event) -> bool| {
        log.iter()
            .find(|e| e.event.as_ref().is_some_and(wanted))
            .map(|e| (e.event_id.clone(), e.timestamp_ms))
            .unwrap()
    };
    let (execution_id, execution_ms) =
        id_of(|e| matches!(e, reg::change_event::Event::JobExecution(_)));
    assert_eq!(
        payload(&got[0]),
        json!({
            "eventType": "JOB_EXECUTION",
            "eventId": execution_id,
            "timestamp": execution_ms / 1000,
            "operation": "SUCCEEDED",
            "jobId": "fw",
            "thingArn": thing_arn,
            "status": "SUCCEEDED",
            "statusDetails": {"version": "2"},
        })
    );
    // Nothing is pending any more: no execution.
    assert!(payload(&got[1]).get("execution").is_none());
    let completed = payload(&got[2]);
    let (job_id, _) = id_of(|e| matches!(e, reg::change_event::Event::Job(_)));
    assert_eq!(completed["eventId"], json!(job_id));
    assert_eq!(completed["status"], "COMPLETED");
    assert_eq!(completed["targets"], json!([thing_arn]));
    assert_eq!(
        completed["jobProcessDetails"]["numberOfSucceededThings"],
        json!(1)
    );
    pump.stop().await;
    s.stop().await;
}
