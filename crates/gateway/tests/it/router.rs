//! The routing engine (rumqttd's Router under `mqtt::router`) with any
//! valid topic: a property test against the real Router, the attack that
//! used to kill it (a PUBLISH or a last will on a topic whose first
//! character is multi-byte UTF-8) through MQTT, and the gateway stopping
//! with an error, rather than running half-alive, if the engine dies anyway.
//!
//! Also the whole-gateway helpers the retained-message tests share.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herald_gateway::testing::bus::topic;
use herald_gateway::testing::router::{Delivery, Router, RouterError, RouterSettings};
use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_POLICY, DEV_MQTT_USERNAME, Listeners, Settings};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::support::{Herald, WAIT, create_policy};

// ------------------------------------------------------------ the gateway

/// Lets the development user do anything.
pub(crate) async fn allow_dev_user(herald: &Herald) {
    let mut config = herald.config().await;
    create_policy(
        &mut config,
        DEV_MQTT_POLICY,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}"#,
    )
    .await;
}

/// The whole gateway (`herald_gateway::run`) on port 0.
pub(crate) struct Gateway {
    pub(crate) mqtt: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    /// With its data in `data_dir` and its settings changed by `tweak`.
    pub(crate) async fn start_with(
        herald: &Herald,
        data_dir: &Path,
        tweak: impl FnOnce(&mut Settings),
    ) -> Gateway {
        Gateway::spawn(herald, data_dir, tweak, None).await
    }

    async fn spawn(
        herald: &Herald,
        data_dir: &Path,
        tweak: impl FnOnce(&mut Settings),
        router: Option<Router>,
    ) -> Gateway {
        let mut settings = Settings::for_test(herald.registry_url(), herald.config_url());
        settings.data_dir = data_dir.to_path_buf();
        tweak(&mut settings);
        let bind = || TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners {
            http: bind().await.unwrap(),
            mqtt: bind().await.unwrap(),
            mqtt_tls: bind().await.unwrap(),
        };
        let mqtt = listeners.mqtt.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = match router {
            None => tokio::spawn(herald_gateway::run(settings, listeners, shutdown.clone())),
            Some(router) => tokio::spawn(herald_gateway::run_with_router(
                settings,
                listeners,
                shutdown.clone(),
                router,
            )),
        };
        Gateway {
            mqtt,
            shutdown,
            task,
        }
    }

    /// Stops the gateway, asserting a clean stop.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the gateway stops in time")
            .expect("the gateway task does not panic")
            .expect("the gateway stops cleanly");
    }
}

/// An MQTT 3.1.1 client of the development user: the packets it receives.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    received: mpsc::UnboundedReceiver<Packet>,
    task: JoinHandle<()>,
}

impl Client {
    /// Connects (retrying refused CONNECTs until [`WAIT`]: a gateway that
    /// just started refuses them until its policy cache is loaded).
    pub(crate) async fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Client {
        Client::connect_with(addr, client_id, |o| {
            o.set_clean_session(clean);
        })
        .await
    }

    pub(crate) async fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        tweak: impl FnOnce(&mut MqttOptions),
    ) -> Client {
        let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(DEV_MQTT_USERNAME, DEV_MQTT_PASSWORD);
        options.set_keep_alive(Duration::from_secs(30));
        tweak(&mut options);
        let deadline = tokio::time::Instant::now() + WAIT;
        let (client, mut eventloop) = loop {
            let (client, mut eventloop) = AsyncClient::new(options.clone(), 100);
            let connack = loop {
                let event = tokio::time::timeout(WAIT, eventloop.poll())
                    .await
                    .expect("a CONNACK in time");
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
            };
            match connack {
                Ok(()) => break (client, eventloop),
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
        Client {
            client,
            received,
            task,
        }
    }

    pub(crate) async fn next_packet(&mut self) -> Packet {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .expect("a packet in time")
            .expect("the connection is up")
    }

    /// The next PUBLISH received.
    pub(crate) async fn next_publish(&mut self) -> Publish {
        loop {
            if let Packet::Publish(publish) = self.next_packet().await {
                return publish;
            }
        }
    }

    /// Subscribes at QoS 1 and returns the SUBACK's return codes.
    pub(crate) async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Packet::SubAck(ack) = self.next_packet().await {
                return ack.return_codes;
            }
        }
    }

    /// Publishes at QoS 1 and waits for its PUBACK.
    pub(crate) async fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .unwrap();
        loop {
            if let Packet::PubAck(_) = self.next_packet().await {
                return;
            }
        }
    }

    /// Drops the connection without a DISCONNECT (its will is published).
    pub(crate) async fn drop_connection(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

// ------------------------------------------------------------ the property

/// One topic level: mostly from a few levels (so that filters match often),
/// starting with multi-byte characters, `$` and spaces, and sometimes any
/// characters MQTT allows in a level (no U+0000, `/`, `+`, `#`).
fn level() -> impl Strategy<Value = String> {
    let any_char = any::<char>().prop_filter("not allowed in a topic level", |c| {
        !matches!(c, '\0' | '/' | '+' | '#')
    });
    prop_oneof![
        4 => prop::sample::select(vec!["", "a", "é", "ü", "t", "😀x", "日本", " ", "$x", "\u{7f}"])
            .prop_map(str::to_owned),
        1 => prop::collection::vec(any_char, 1..4).prop_map(|c| c.into_iter().collect()),
    ]
}

/// A valid topic name.
fn topic_name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a valid topic name", |t| {
            topic::validate_topic_name(t).is_ok()
        })
}

/// A valid topic filter: levels, `+` in any of them, maybe `#` last.
fn topic_filter() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    (prop::collection::vec(filter_level, 0..4), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("a valid topic filter", |f| {
            topic::validate_topic_filter(f).is_ok()
        })
}

/// A topic `filter` matches, to publish last: deliveries on one filter come
/// in publishing order, so once it arrives every earlier one has.
fn marker_topic(filter: &str) -> String {
    filter
        .split('/')
        .map(|l| if l == "+" || l == "#" { "m" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

/// One case: a link subscribes to `filter` and publishes `topics`, then a
/// marker; it receives exactly the topics the gateway's matcher matches,
/// in order. `$` topics and filters are refused by the engine's handle.
async fn check_case(router: &Router, case: usize, filter: &str, topics: &[String]) {
    let mut link = router.link(&format!("prop-{case}"), true).await.unwrap();
    let reserved = topic::is_reserved(filter);
    match link.subscribe(filter) {
        Err(RouterError::Reserved(_)) if reserved => {}
        Ok(()) if !reserved => {}
        other => panic!("subscribe {filter:?}: {other:?}"),
    }
    let mut expected = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let published = link
            .publish(topic, Bytes::from(i.to_string()), 1, false, None)
            .await;
        if topic::is_reserved(topic) {
            assert!(
                matches!(published, Err(RouterError::Reserved(_))),
                "{topic:?}: {published:?}"
            );
            continue;
        }
        published.unwrap();
        if !reserved && topic::matches(filter, topic) {
            expected.push((topic.clone(), i.to_string()));
        }
    }
    if !reserved {
        let marker = marker_topic(filter);
        assert!(topic::matches(filter, &marker), "{filter:?} {marker:?}");
        link.publish(&marker, Bytes::from_static(b"marker"), 1, false, None)
            .await
            .unwrap();
        let mut received = Vec::new();
        loop {
            let delivery = tokio::time::timeout(WAIT, link.next())
                .await
                .unwrap_or_else(|_| panic!("the marker for {filter:?} in time"));
            match delivery {
                Delivery::Message { topic, payload, .. } => {
                    if &payload[..] == b"marker" {
                        break;
                    }
                    received.push((topic, String::from_utf8(payload.to_vec()).unwrap()));
                }
                Delivery::Disconnected => panic!("the engine dropped the link"),
            }
        }
        assert_eq!(received, expected, "filter {filter:?}, topics {topics:?}");
    }
    link.disconnect().await.unwrap();
    assert!(router.is_running(), "the engine survives {topics:?}");
}

/// Any valid topic and filter through the real Router: delivered exactly
/// when `topic::matches` says so, and the engine stays up (rumqttd 0.20's
/// own matcher panicked its thread on a topic starting with `é`).
#[test]
fn any_valid_topic_is_routed_as_the_gateway_matches_it() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let router = Router::spawn(&RouterSettings::default());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (topic_filter(), prop::collection::vec(topic_name(), 1..6));
    runner
        .run(&strategy, |(filter, topics)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            runtime.block_on(check_case(&router, case, &filter, &topics));
            Ok(())
        })
        .unwrap();
    // The classic attack, explicitly, and the engine still routes.
    runtime.block_on(async {
        let topics = ["é".to_owned(), "ü/x".to_owned(), "a".to_owned()];
        check_case(&router, 0, "#", &topics).await;
        check_case(&router, 1_000_000, "é", &topics).await;
    });
    assert!(router.is_running());
}

/// What the router hands a link in one wake-up is taken whole with
/// `try_next`, in publishing order, across the router's pauses (more
/// messages than a link may have buffered), and `try_next` never waits:
/// once everything is taken it answers `None`.
#[tokio::test]
async fn batches_are_taken_whole_in_order_without_waiting() {
    const MESSAGES: usize = 1_000;
    let router = Router::spawn(&RouterSettings::default());
    let mut subscriber = router.link("batch-sub", true).await.unwrap();
    subscriber.subscribe("batch/#").unwrap();
    let mut publisher = router.link("batch-pub", true).await.unwrap();
    for i in 0..MESSAGES {
        publisher
            .publish("batch/n", Bytes::from(i.to_string()), 1, false, None)
            .await
            .unwrap();
    }
    publisher
        .publish("batch/end", Bytes::from_static(b"marker"), 1, false, None)
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut taken_without_waiting = 0;
    let mut ended = false;
    while !ended {
        let first = tokio::time::timeout(WAIT, subscriber.next())
            .await
            .expect("the marker in time");
        let mut batch = vec![first];
        while let Some(next) = subscriber.try_next() {
            taken_without_waiting += 1;
            batch.push(next);
        }
        for delivery in batch {
            match delivery {
                Delivery::Message { topic, payload, .. } if topic == "batch/end" => {
                    assert_eq!(&payload[..], b"marker");
                    ended = true;
                }
                Delivery::Message { payload, .. } => {
                    assert!(!ended, "nothing after the marker");
                    received.push(String::from_utf8(payload.to_vec()).unwrap());
                }
                Delivery::Disconnected => panic!("the engine dropped the link"),
            }
        }
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| i.to_string()).collect();
    assert_eq!(received, expected);
    assert!(
        taken_without_waiting > 0,
        "messages published before the first read come in batches"
    );
    assert!(subscriber.try_next().is_none());
    subscriber.disconnect().await.unwrap();
    publisher.disconnect().await.unwrap();
}

// ------------------------------------------------------------ through MQTT

/// A live message reaches each subscriber at the lower of the QoS it was
/// published at and the subscription's (MQTT 3.1.1 §3.8.4), whatever the
/// routing engine forwards it at.
#[tokio::test]
async fn a_live_message_is_delivered_at_the_lower_of_its_qos_and_the_subscriptions() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;

    let mut at_one = Client::connect(gateway.mqtt, "at-one", true).await;
    at_one.subscribe("l/+").await;
    let mut at_zero = Client::connect(gateway.mqtt, "at-zero", true).await;
    at_zero
        .client
        .subscribe("l/+", QoS::AtMostOnce)
        .await
        .unwrap();
    while !matches!(at_zero.next_packet().await, Packet::SubAck(_)) {}

    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    publisher
        .client
        .publish("l/zero", QoS::AtMostOnce, false, b"0".to_vec())
        .await
        .unwrap();
    // Handled in order: once this one is acknowledged, both are routed.
    publisher.publish("l/one", b"1", false).await;
    // A will published at QoS 0 too.
    let will = Client::connect_with(gateway.mqtt, "will-at-zero", |o| {
        o.set_last_will(LastWill::new("l/will", "gone", QoS::AtMostOnce, false));
    })
    .await;
    will.drop_connection().await;

    for (subscriber, one) in [
        (&mut at_one, QoS::AtLeastOnce),
        (&mut at_zero, QoS::AtMostOnce),
    ] {
        let mut got = Vec::new();
        for _ in 0..3 {
            let p = subscriber.next_publish().await;
            got.push((p.topic, p.qos));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("l/one".to_owned(), one),
                ("l/will".to_owned(), QoS::AtMostOnce),
                ("l/zero".to_owned(), QoS::AtMostOnce),
            ]
        );
    }
    gateway.stop().await;
    herald.stop().await;
}

/// The attack as a client sends it: PUBLISH on `é` and `ü/x`, and a last
/// will on `é`. Afterwards everyone's ordinary traffic still flows, and a
/// persistent session still connects (it used to get CONNACK 0x03).
#[tokio::test]
async fn publishes_and_wills_on_multibyte_topics_do_not_stop_routing() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;

    let mut watcher = Client::connect(gateway.mqtt, "watcher", true).await;
    for filter in ["é", "ü/x", "ok/#"] {
        let codes = watcher.subscribe(filter).await;
        assert!(
            matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
            "{filter}: {codes:?}"
        );
    }

    let mut attacker = Client::connect(gateway.mqtt, "attacker", true).await;
    attacker.publish("é", b"one", false).await;
    attacker.publish("ü/x", b"two", false).await;
    let will = Client::connect_with(gateway.mqtt, "will-on-e", |o| {
        o.set_last_will(LastWill::new("é", "gone", QoS::AtLeastOnce, false));
    })
    .await;
    will.drop_connection().await;

    // The watcher gets all three (on two filters: their order may differ).
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = watcher.next_publish().await;
        got.push((p.topic, p.payload.to_vec()));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("é".to_owned(), b"gone".to_vec()),
            ("é".to_owned(), b"one".to_vec()),
            ("ü/x".to_owned(), b"two".to_vec()),
        ]
    );

    // Ordinary traffic of another client still round-trips.
    let mut other = Client::connect(gateway.mqtt, "other", true).await;
    assert!(matches!(
        other.subscribe("plain/topic").await[..],
        [rumqttc::SubscribeReasonCode::Success(_)]
    ));
    other.publish("plain/topic", b"hello", false).await;
    let p = other.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("plain/topic", &b"hello"[..])
    );
    attacker.publish("ok/1", b"still", false).await;
    let p = watcher.next_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("ok/1", &b"still"[..]));

    // A persistent session still gets CONNACK 0 and subscribes.
    let mut persistent = Client::connect(gateway.mqtt, "persistent", false).await;
    assert!(matches!(
        persistent.subscribe("p/#").await[..],
        [rumqttc::SubscribeReasonCode::Success(_)]
    ));

    gateway.stop().await;
    herald.stop().await;
}

/// If the routing engine dies anyway, the gateway does not run on
/// half-alive: `run` stops and returns an error (the binary then exits
/// non-zero), and the listeners close.
#[tokio::test]
async fn the_gateway_stops_with_an_error_when_the_routing_engine_dies() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let router = Router::spawn(&RouterSettings::default());
    let gateway = Gateway::spawn(&herald, dir.path(), |_| {}, Some(router.clone())).await;
    // Up and routing.
    let mut client = Client::connect(gateway.mqtt, "before", true).await;
    client.subscribe("a").await;
    client.publish("a", b"x", false).await;
    assert_eq!(&client.next_publish().await.payload[..], b"x");

    router.kill_engine_for_tests().await;
    let ended = tokio::time::timeout(WAIT, gateway.task)
        .await
        .expect("the gateway stops in time once the engine is dead")
        .expect("the gateway task does not panic");
    let error = ended.expect_err("the gateway reports the dead engine");
    assert!(format!("{error:#}").contains("routing engine"), "{error:#}");
    assert!(!router.is_running());
    // The MQTT listener is closed: nobody is served half-alive.
    assert!(tokio::net::TcpStream::connect(gateway.mqtt).await.is_err());
    herald.stop().await;
}
