//! Persistent sessions and at-least-once registry events through the whole
//! gateway (`herald_gateway::run`, with the registry and the config
//! service in-process): a `clean_session=false` subscriber gets every
//! event committed while it was away, or while the gateway was stopped,
//! with the registry's `eventId`; an event it did not acknowledge comes
//! again; a subscriber whose bus queue overflowed still gets every event.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald_gateway::testing::bus::Bus;
use herald_gateway::testing::config_cache::ConfigCache;
use herald_gateway::testing::events::EventPump;
use herald_gateway::testing::mqtt::SessionStore;
use herald_gateway::testing::mqtt::VersionCounter;
use herald_gateway::testing::mqtt::serve_tcp;
use herald_gateway::testing::mqtt::{
    Authenticator, PasswordCredential, SessionContext, SessionSettings, password_authenticator,
};
use herald_gateway::testing::router::{Router, RouterSettings};
use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME, Listeners, Settings};
use herald_proto::registry::v1 as reg;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{Herald, Registry, WAIT, create_policy, created_event_ids, set_events};

const CREATED: &str = "$aws/events/thing/+/created";

/// Lets the development user do anything.
async fn allow_dev_user(herald: &Herald) {
    let mut config = herald.config().await;
    create_policy(
        &mut config,
        DEV_MQTT_POLICY,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#,
    )
    .await;
    set_events(&mut config, &[("THING", true)]).await;
}

/// The whole gateway, on port 0, with its data in `data_dir`.
struct Gateway {
    mqtt: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn start(herald: &Herald, data_dir: &Path) -> Gateway {
        let mut settings = Settings::for_test(herald.registry_url(), herald.config_url());
        settings.data_dir = data_dir.to_path_buf();
        let bind = || TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners {
            http: bind().await.unwrap(),
            mqtt: bind().await.unwrap(),
            mqtt_tls: bind().await.unwrap(),
        };
        let mqtt = listeners.mqtt.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(herald_gateway::run(settings, listeners, shutdown.clone()));
        Gateway {
            mqtt,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the gateway stops in time")
            .expect("the gateway task does not panic")
            .expect("the gateway stops cleanly");
    }
}

/// A subscriber: the packets it receives, in order.
struct Watcher {
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Packet>,
    session_present: bool,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Connects as the development user; with `manual_acks`, received
    /// QoS 1 messages are never acknowledged.
    /// A gateway that just started refuses connections until its policy
    /// cache is loaded: refused CONNECTs are retried until [`WAIT`].
    async fn connect(addr: SocketAddr, client_id: &str, clean: bool, manual_acks: bool) -> Watcher {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(DEV_MQTT_USERNAME, DEV_MQTT_PASSWORD);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(clean);
        options.set_manual_acks(manual_acks);
        let deadline = tokio::time::Instant::now() + WAIT;
        let (client, mut eventloop, session_present) = loop {
            let (client, mut eventloop) = AsyncClient::new(options.clone(), 100);
            let connack = loop {
                let event = tokio::time::timeout(WAIT, eventloop.poll())
                    .await
                    .expect("a CONNACK in time");
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => break Ok(ack.session_present),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            match connack {
                Ok(session_present) => break (client, eventloop, session_present),
                // Before the next attempt.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{client_id} should connect: {e}"),
            }
        };
        let (tx, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event
                    && tx.send(packet).is_err()
                {
                    return;
                }
            }
        });
        Watcher {
            client,
            received,
            session_present,
            task,
        }
    }

    async fn next_packet(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("a packet in time")
            .expect("the connection is up")
    }

    /// Subscribes to `filter` at QoS 1 and waits for the SUBACK (a
    /// persistent session answers it once the subscription is stored).
    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Packet::SubAck(ack) = self.next_packet().await {
                assert!(
                    ack.return_codes
                        .iter()
                        .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_))),
                    "{ack:?}"
                );
                return;
            }
        }
    }

    /// The next registry event received: (thingName, eventId).
    async fn next_event(&mut self) -> (String, String) {
        let publish: Publish = loop {
            if let Packet::Publish(publish) = self.next_packet().await {
                break publish;
            }
        };
        let value: Value = serde_json::from_slice(&publish.payload).unwrap();
        (
            value["thingName"].as_str().unwrap().to_owned(),
            value["eventId"].as_str().unwrap().to_owned(),
        )
    }

    /// Sends DISCONNECT and waits for the connection to end.
    async fn disconnect(self) {
        self.client.disconnect().await.unwrap();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the connection ends")
            .unwrap();
    }

    /// Drops the connection without a DISCONNECT.
    async fn drop_connection(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The plain listener's development user.
fn dev_authenticator() -> Authenticator {
    password_authenticator(vec![PasswordCredential {
        username: DEV_MQTT_USERNAME.into(),
        password: DEV_MQTT_PASSWORD.into(),
        principal_id: DEV_MQTT_USERNAME.into(),
        policy_names: vec![DEV_MQTT_POLICY.into()],
    }])
}

async fn create_thing(registry: &mut Registry, name: &str) {
    registry
        .create_thing(reg::CreateThingRequest {
            thing_name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Connects `client_id` persistently, subscribes to thing creations and
/// returns once a probe thing's event arrived.
async fn watch_created(addr: SocketAddr, client_id: &str, registry: &mut Registry) -> Watcher {
    let mut watcher = Watcher::connect(addr, client_id, false, false).await;
    watcher.subscribe(CREATED).await;
    create_thing(registry, &format!("probe-{client_id}")).await;
    let (name, _) = watcher.next_event().await;
    assert_eq!(name, format!("probe-{client_id}"));
    watcher
}

#[tokio::test]
async fn a_persistent_session_gets_what_was_committed_while_its_client_was_away() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&herald, dir.path()).await;
    let mut registry = herald.registry().await;

    let watcher = watch_created(gateway.mqtt, "away", &mut registry).await;
    watcher.disconnect().await;
    for name in ["b", "c", "d"] {
        create_thing(&mut registry, name).await;
    }
    let mut watcher = Watcher::connect(gateway.mqtt, "away", false, false).await;
    assert!(watcher.session_present, "the session is resumed");
    let ids = created_event_ids(&mut registry).await;
    for name in ["b", "c", "d"] {
        assert_eq!(
            watcher.next_event().await,
            (name.to_owned(), ids[name].clone())
        );
    }
    // Live events follow the replayed ones.
    create_thing(&mut registry, "e").await;
    assert_eq!(watcher.next_event().await.0, "e");
    watcher.disconnect().await;

    // A clean session forgets it.
    Watcher::connect(gateway.mqtt, "away", true, false)
        .await
        .disconnect()
        .await;
    let watcher = Watcher::connect(gateway.mqtt, "away", false, false).await;
    assert!(
        !watcher.session_present,
        "a clean session ended the stored one"
    );
    watcher.disconnect().await;

    gateway.stop().await;
    herald.stop().await;
}

#[tokio::test]
async fn a_persistent_session_survives_a_gateway_restart() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&herald, dir.path()).await;
    let mut registry = herald.registry().await;

    let watcher = watch_created(gateway.mqtt, "restart", &mut registry).await;
    gateway.stop().await;
    watcher.drop_connection().await;
    // Committed while no gateway runs.
    for name in ["b", "c"] {
        create_thing(&mut registry, name).await;
    }
    let gateway = Gateway::start(&herald, dir.path()).await;
    let mut watcher = Watcher::connect(gateway.mqtt, "restart", false, false).await;
    assert!(
        watcher.session_present,
        "the session was stored and is resumed"
    );
    let ids = created_event_ids(&mut registry).await;
    // The subscription came back with the session: live events arrive too.
    create_thing(&mut registry, "d").await;
    // The probe's event may come again (its PUBACK may not have reached
    // the gateway before it stopped): at least once, same eventId.
    let mut got = Vec::new();
    while got.len() < 3 {
        let (name, id) = watcher.next_event().await;
        if name == "probe-restart" {
            assert_eq!(ids.get(&name), Some(&id));
        } else {
            got.push((name, id));
        }
    }
    let want: Vec<(String, String)> = ["b", "c", "d"]
        .into_iter()
        .map(|n| (n.to_owned(), ids.get(n).cloned().unwrap_or_default()))
        .collect();
    assert_eq!(got[..2], want[..2]);
    assert_eq!(got[2].0, "d");
    watcher.disconnect().await;
    gateway.stop().await;
    herald.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_event_is_sent_again_with_the_same_event_id() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&herald, dir.path()).await;
    let mut registry = herald.registry().await;

    watch_created(gateway.mqtt, "unacked", &mut registry)
        .await
        .disconnect()
        .await;
    let mut watcher = Watcher::connect(gateway.mqtt, "unacked", false, true).await;
    assert!(watcher.session_present);
    create_thing(&mut registry, "x").await;
    let first = watcher.next_event().await;
    assert_eq!(first.0, "x");
    // Never acknowledged; the connection is lost.
    watcher.drop_connection().await;

    let mut watcher = Watcher::connect(gateway.mqtt, "unacked", false, false).await;
    assert!(watcher.session_present);
    assert_eq!(watcher.next_event().await, first, "the same event again");
    create_thing(&mut registry, "y").await;
    assert_eq!(
        watcher.next_event().await.0,
        "y",
        "and nothing else before the next one"
    );
    watcher.disconnect().await;
    gateway.stop().await;
    herald.stop().await;
}

#[tokio::test]
async fn a_subscriber_whose_queue_overflows_still_gets_every_event() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let shutdown = CancellationToken::new();
    let cache = ConfigCache::spawn(herald.proxied_config(), shutdown.clone());
    let bus = Bus::new();
    let dir = tempfile::tempdir().unwrap();
    let store = herald_store::Store::open(dir.path()).unwrap();
    let registry = herald.registry().await;
    let pump = EventPump::spawn(
        registry.clone(),
        cache.clone(),
        bus.clone(),
        store,
        shutdown.clone(),
    )
    .unwrap();
    // A queue of one: nearly every batch of events overflows it.
    let settings = SessionSettings {
        bus_queue: 1,
        ..SessionSettings::default()
    };
    let ctx = SessionContext::new(
        cache,
        bus.clone(),
        Arc::new(VersionCounter::new()),
        "us-east-1",
        "123456789012",
        Router::spawn(&RouterSettings::default()),
        settings,
    )
    .with_registry(registry)
    .with_event_pump(pump);
    let authenticate = dev_authenticator();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_tcp(listener, ctx, authenticate, shutdown.clone()));

    let mut registry = herald.registry().await;
    let mut watcher = watch_created(addr, "slow", &mut registry).await;
    const THINGS: usize = 400;
    const WRITERS: usize = 16;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut registry = herald.registry().await;
        writers.push(tokio::spawn(async move {
            for i in (w..THINGS).step_by(WRITERS) {
                create_thing(&mut registry, &format!("t-{i}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let ids = created_event_ids(&mut registry).await;
    let mut got = HashSet::new();
    while got.len() < THINGS {
        let (name, id) = watcher.next_event().await;
        assert_eq!(ids.get(&name), Some(&id), "{name} carries its eventId");
        got.insert(name);
    }
    assert!(
        bus.stats().dropped > 0,
        "the bus dropped deliveries, so the replay carried them: {:?}",
        bus.stats()
    );
    watcher.disconnect().await;
    shutdown.cancel();
    server.await.unwrap().unwrap();
    herald.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_message_is_sent_again_with_dup_on_resume() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&herald, dir.path()).await;

    let mut watcher = Watcher::connect(gateway.mqtt, "lamp-watcher", false, true).await;
    watcher.subscribe("lamp/#").await;
    let publisher = Watcher::connect(gateway.mqtt, "lamp-switch", true, false).await;
    publisher
        .client
        .publish("lamp/state", QoS::AtLeastOnce, false, "on")
        .await
        .unwrap();
    let first = loop {
        if let Packet::Publish(publish) = watcher.next_packet().await {
            break publish;
        }
    };
    assert_eq!((first.topic.as_str(), first.dup), ("lamp/state", false));
    // Never acknowledged; the connection is lost.
    watcher.drop_connection().await;

    let mut watcher = Watcher::connect(gateway.mqtt, "lamp-watcher", false, false).await;
    assert!(watcher.session_present);
    let again = loop {
        if let Packet::Publish(publish) = watcher.next_packet().await {
            break publish;
        }
    };
    assert_eq!(
        (again.topic, again.payload, again.pkid, again.dup),
        (first.topic, first.payload, first.pkid, true),
        "the same message, packet id and DUP"
    );
    watcher.disconnect().await;
    publisher.disconnect().await;
    gateway.stop().await;
    herald.stop().await;
}

#[tokio::test]
async fn a_persistent_session_expires_after_its_client_stayed_away() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let shutdown = CancellationToken::new();
    let cache = ConfigCache::spawn(herald.proxied_config(), shutdown.clone());
    let dir = tempfile::tempdir().unwrap();
    let (store, stored) = SessionStore::open(
        herald_store::Store::open(dir.path()).unwrap(),
        shutdown.clone(),
    )
    .unwrap();
    const EXPIRY: Duration = Duration::from_millis(300);
    let ctx = SessionContext::new(
        cache,
        Bus::new(),
        Arc::new(VersionCounter::new()),
        "us-east-1",
        "123456789012",
        Router::spawn(&RouterSettings::default()),
        SessionSettings {
            persistent_session_expiry: EXPIRY,
            ..SessionSettings::default()
        },
    )
    .with_session_store(store.clone(), stored);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve_tcp(
        listener,
        ctx.clone(),
        dev_authenticator(),
        shutdown.clone(),
    ));

    // Back within the expiry: resumed.
    let mut watcher = Watcher::connect(addr, "brief", false, false).await;
    watcher.subscribe("lamp/#").await;
    watcher.disconnect().await;
    let watcher = Watcher::connect(addr, "brief", false, false).await;
    assert!(watcher.session_present);
    watcher.disconnect().await;
    assert_eq!(ctx.away_sessions(), vec!["brief".to_owned()]);

    // Away longer: a CONNECT finds nothing, and the sweep forgets it.
    tokio::time::sleep(EXPIRY * 2).await;
    let mut watcher = Watcher::connect(addr, "brief", false, false).await;
    assert!(!watcher.session_present, "the session expired");
    // Its subscription went with it.
    watcher.subscribe("marker").await;
    let publisher = Watcher::connect(addr, "brief-pub", true, false).await;
    for topic in ["lamp/1", "marker"] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
    }
    let first = loop {
        if let Packet::Publish(publish) = watcher.next_packet().await {
            break publish;
        }
    };
    assert_eq!(first.topic, "marker");
    publisher.disconnect().await;
    watcher.disconnect().await;
    tokio::time::sleep(EXPIRY * 2).await;
    assert_eq!(ctx.expire_sessions(), 1);
    assert!(ctx.away_sessions().is_empty());

    shutdown.cancel();
    server.await.unwrap().unwrap();
    store.stopped().await;
    // Nothing is left in the store either.
    let (_, stored) = SessionStore::open(
        herald_store::Store::open(dir.path()).unwrap(),
        CancellationToken::new(),
    )
    .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    herald.stop().await;
}

#[tokio::test]
async fn lifecycle_events_wait_for_a_persistent_session_that_is_away() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&herald, dir.path()).await;

    let mut watcher = Watcher::connect(gateway.mqtt, "presence-watcher", false, false).await;
    watcher.subscribe("$aws/events/presence/connected/+").await;
    watcher.disconnect().await;
    // Connects while the watcher is away.
    Watcher::connect(gateway.mqtt, "visitor", true, false)
        .await
        .disconnect()
        .await;

    let mut watcher = Watcher::connect(gateway.mqtt, "presence-watcher", false, false).await;
    assert!(watcher.session_present);
    let publish = loop {
        if let Packet::Publish(publish) = watcher.next_packet().await {
            break publish;
        }
    };
    assert_eq!(publish.topic, "$aws/events/presence/connected/visitor");
    let event: Value = serde_json::from_slice(&publish.payload).unwrap();
    assert_eq!(event["clientId"], "visitor");
    assert_eq!(event["eventType"], "connected");
    watcher.disconnect().await;
    gateway.stop().await;
    herald.stop().await;
}
