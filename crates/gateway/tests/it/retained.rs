//! Retained messages through the whole gateway, as AWS IoT keeps them: a
//! new subscriber gets them (RETAIN=1), live subscribers get the message
//! without RETAIN, an empty payload deletes, they survive a gateway
//! restart, they are bounded by count and bytes (MQTT 5: PUBACK 0x97), and
//! a subscriber whose policy denies `iot:Receive` on a topic does not get
//! its retained message.
//!
//! No test waits for something not to happen: a live marker published after
//! a SUBSCRIBE comes after every retained message that subscription gets.

use std::time::Duration;

use herald_gateway::{MqttUser, Settings};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason};
use rumqttc::v5::{AsyncClient as AsyncClient5, Event as Event5, MqttOptions as MqttOptions5};
use rumqttc::{MqttOptions, QoS};

use crate::router::{Client, Gateway, allow_dev_user};
use crate::support::{Herald, WAIT, create_policy};

/// (topic, payload, retain) of every PUBLISH `client` receives until the
/// live `marker` payload, which it publishes itself on `marker_topic` (one
/// its filter matches) right after subscribing.
async fn subscribe_and_collect(
    client: &mut Client,
    filter: &str,
    marker_topic: &str,
) -> Vec<(String, Vec<u8>, bool)> {
    let codes = client.subscribe(filter).await;
    assert!(
        matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
        "{filter}: {codes:?}"
    );
    client
        .client
        .publish(marker_topic, QoS::AtMostOnce, false, b"marker".to_vec())
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let p = client.next_publish().await;
        if &p.payload[..] == b"marker" {
            let mut got: Vec<_> = got;
            got.sort();
            return got;
        }
        got.push((p.topic, p.payload.to_vec(), p.retain));
    }
}

fn msg(topic: &str, payload: &[u8]) -> (String, Vec<u8>, bool) {
    (topic.to_owned(), payload.to_vec(), true)
}

/// Retained messages are kept in the gateway's data folder: stopped and
/// started again on it, the gateway still has them; and an empty retained
/// payload deletes the topic's message.
#[tokio::test]
async fn retained_messages_survive_a_restart_and_an_empty_payload_deletes() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;

    let mut live = Client::connect(gateway.mqtt, "live", true).await;
    live.subscribe("r/#").await;
    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    publisher.publish("r/1", b"one", true).await;
    publisher.publish("r/é", &[0xff, 0x00], true).await;
    publisher.publish("r/gone", b"soon", true).await;
    publisher.publish("r/gone", b"", true).await;
    // Live subscribers get them without RETAIN, the deletion included.
    for expected in [&b"one"[..], &[0xff, 0x00], b"soon", b""] {
        let p = live.next_publish().await;
        assert_eq!((&p.payload[..], p.retain), (expected, false), "{p:?}");
    }
    // A new subscriber gets the retained ones, with RETAIN.
    let mut first = Client::connect(gateway.mqtt, "first", true).await;
    assert_eq!(
        subscribe_and_collect(&mut first, "r/#", "r/marker").await,
        vec![msg("r/1", b"one"), msg("r/é", &[0xff, 0x00])]
    );
    gateway.stop().await;

    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;
    let mut second = Client::connect(gateway.mqtt, "second", true).await;
    assert_eq!(
        subscribe_and_collect(&mut second, "r/+", "r/marker").await,
        vec![msg("r/1", b"one"), msg("r/é", &[0xff, 0x00])]
    );
    // Deleting survives a restart too.
    second.publish("r/1", b"", true).await;
    gateway.stop().await;
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;
    let mut third = Client::connect(gateway.mqtt, "third", true).await;
    assert_eq!(
        subscribe_and_collect(&mut third, "r/#", "r/marker").await,
        vec![msg("r/é", &[0xff, 0x00])]
    );
    gateway.stop().await;
    herald.stop().await;
}

/// The store is bounded by count and bytes. Over a bound an MQTT 3.1.1
/// retained PUBLISH is routed live but not retained; an MQTT 5 one is
/// refused with PUBACK 0x97 (quota exceeded). Replacing a message within
/// the bounds still works.
#[tokio::test]
async fn retained_messages_are_bounded_by_count_and_bytes() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |s: &mut Settings| {
        s.mqtt.retained_max_count = 2;
        s.mqtt.retained_max_bytes = 100;
    })
    .await;

    let mut live = Client::connect(gateway.mqtt, "live", true).await;
    live.subscribe("q/#").await;
    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    publisher.publish("q/1", b"a", true).await;
    publisher.publish("q/2", b"b", true).await;
    // The count is reached: a third topic is not retained, but routed.
    publisher.publish("q/3", b"c", true).await;
    // Too many bytes for one message, even replacing one.
    publisher.publish("q/1", &[b'x'; 100], true).await;
    for expected in [&b"a"[..], b"b", b"c", &[b'x'; 100]] {
        let p = live.next_publish().await;
        assert_eq!(&p.payload[..], expected);
    }
    // Replacing within the bounds is fine.
    publisher.publish("q/2", b"B", true).await;

    // MQTT 5: refused with "quota exceeded", and not routed.
    let mut options = MqttOptions5::new("v5", gateway.mqtt.ip().to_string(), gateway.mqtt.port());
    options.set_credentials(
        herald_gateway::DEV_MQTT_USERNAME,
        herald_gateway::DEV_MQTT_PASSWORD,
    );
    options.set_keep_alive(Duration::from_secs(30));
    let (v5, mut eventloop) = AsyncClient5::new(options, 10);
    let mut acks = Vec::new();
    v5.publish("q/4", QoS5::AtLeastOnce, true, b"d".to_vec())
        .await
        .unwrap();
    v5.publish("q/2", QoS5::AtLeastOnce, true, vec![b'y'; 100])
        .await
        .unwrap();
    while acks.len() < 2 {
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("a PUBACK in time")
            .expect("the MQTT 5 connection stays up");
        if let Event5::Incoming(Packet5::PubAck(ack)) = event {
            acks.push(ack.reason);
        }
    }
    assert_eq!(
        acks,
        vec![PubAckReason::QuotaExceeded, PubAckReason::QuotaExceeded]
    );

    let mut fresh = Client::connect(gateway.mqtt, "fresh", true).await;
    assert_eq!(
        subscribe_and_collect(&mut fresh, "q/#", "q/marker").await,
        vec![msg("q/1", b"a"), msg("q/2", b"B")]
    );
    // Nothing of the refused MQTT 5 messages reached the live subscriber:
    // after the replacement, the markers come next.
    let p = live.next_publish().await;
    assert_eq!(&p.payload[..], b"B");
    let p = live.next_publish().await;
    assert_eq!(&p.payload[..], b"marker");
    gateway.stop().await;
    herald.stop().await;
}

/// A new subscriber gets only the retained messages its policy lets it
/// receive (`iot:Receive` on each topic), as every delivery.
#[tokio::test]
async fn retained_messages_need_iot_receive() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let arn = |kind: &str, rest: &str| format!("arn:aws:iot:us-east-1:123456789012:{kind}/{rest}");
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": arn("client", "*")},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": arn("topicfilter", "s/*")},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": arn("topic", "s/ok")},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": arn("topic", "s/ok")},
        ],
    })
    .to_string();
    create_policy(&mut herald.config().await, "limited", &doc).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |s: &mut Settings| {
        s.mqtt.users.push(MqttUser {
            username: "limited".into(),
            password: "limited-pw".into(),
            policies: vec!["limited".into()],
        });
    })
    .await;

    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    publisher.publish("s/secret", b"hidden", true).await;
    publisher.publish("s/ok", b"visible", true).await;

    let mut limited = Client::connect_with(gateway.mqtt, "limited-1", |o: &mut MqttOptions| {
        o.set_credentials("limited", "limited-pw");
    })
    .await;
    assert_eq!(
        subscribe_and_collect(&mut limited, "s/#", "s/ok").await,
        vec![msg("s/ok", b"visible")]
    );
    // The development user, allowed everything, gets both.
    let mut dev = Client::connect(gateway.mqtt, "dev", true).await;
    assert_eq!(
        subscribe_and_collect(&mut dev, "s/#", "s/ok").await,
        vec![msg("s/ok", b"visible"), msg("s/secret", b"hidden")]
    );
    gateway.stop().await;
    herald.stop().await;
}

/// A client that pipelines SUBSCRIBE/UNSUBSCRIBE pairs queues each retained
/// message once, not once per SUBSCRIBE (which grew a queue without bound),
/// and what was queued for a filter unsubscribed since is not sent.
/// Subscribing again to a filter it holds sends its retained messages
/// again (MQTT 3.1.1 §3.8.4).
#[tokio::test]
async fn subscribing_again_and_again_queues_each_retained_message_once() {
    use herald_gateway::{DEV_MQTT_PASSWORD, DEV_MQTT_USERNAME};
    use tokio::io::AsyncWriteExt as _;

    use crate::mqtt_strings::{packet, put_str, read_packet};

    const TOPICS: usize = 20;
    const PAIRS: u16 = 300;
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;
    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    for i in 0..TOPICS {
        publisher
            .publish(&format!("r/{i}"), format!("{i}").as_bytes(), true)
            .await;
    }
    // The publisher's own subscriber sees them all stored.
    let mut check = Client::connect(gateway.mqtt, "check", true).await;
    assert_eq!(
        subscribe_and_collect(&mut check, "r/+", "r/marker")
            .await
            .len(),
        TOPICS
    );

    let mut stream = tokio::net::TcpStream::connect(gateway.mqtt).await.unwrap();
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 60];
    put_str(&mut connect, b"churn");
    put_str(&mut connect, DEV_MQTT_USERNAME.as_bytes());
    put_str(&mut connect, DEV_MQTT_PASSWORD.as_bytes());
    stream.write_all(&packet(0x10, &connect)).await.unwrap();
    let connack = read_packet(&mut stream).await.expect("a CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let subscribe = |pid: u16| {
        let mut body = pid.to_be_bytes().to_vec();
        put_str(&mut body, b"r/#");
        body.push(0);
        packet(0x82, &body)
    };
    let unsubscribe = |pid: u16| {
        let mut body = pid.to_be_bytes().to_vec();
        put_str(&mut body, b"r/#");
        packet(0xA2, &body)
    };
    // Every pair, then one SUBSCRIBE more and a live marker, in one write.
    let mut batch = Vec::new();
    for i in 0..PAIRS {
        batch.extend(subscribe(2 * i + 1));
        batch.extend(unsubscribe(2 * i + 2));
    }
    batch.extend(subscribe(2 * PAIRS + 1));
    let mut marker = Vec::new();
    put_str(&mut marker, b"r/marker");
    marker.extend_from_slice(b"marker");
    batch.extend(packet(0x30, &marker));
    stream.write_all(&batch).await.unwrap();

    let mut received = std::collections::HashMap::<Vec<u8>, usize>::new();
    loop {
        let p = read_packet(&mut stream)
            .await
            .expect("the connection stays open");
        if p[0] & 0xF0 != 0x30 {
            continue; // SUBACK, UNSUBACK
        }
        // Short remaining length (retained payloads are tiny), QoS 0.
        let topic_len = usize::from(u16::from_be_bytes([p[2], p[3]]));
        let topic = p[4..4 + topic_len].to_vec();
        if topic == b"r/marker" {
            break;
        }
        *received.entry(topic).or_default() += 1;
    }
    // Each topic at least once (the last SUBSCRIBE holds); at most a
    // few times (a SUBSCRIBE read in a later chunk than the one before
    // may find the topic already sent), never once per SUBSCRIBE.
    assert_eq!(received.len(), TOPICS, "{received:?}");
    let total: usize = received.values().sum();
    assert!(total <= 3 * TOPICS, "{total} deliveries: {received:?}");
    gateway.stop().await;
    herald.stop().await;
}

/// A retained message reaches a new subscriber at the lower of the QoS it
/// was published at and the subscription's.
#[tokio::test]
async fn a_retained_message_keeps_the_qos_it_was_published_at() {
    let herald = Herald::start().await;
    allow_dev_user(&herald).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(&herald, dir.path(), |_| {}).await;
    let mut publisher = Client::connect(gateway.mqtt, "publisher", true).await;
    publisher
        .client
        .publish("q/zero", QoS::AtMostOnce, true, b"0".to_vec())
        .await
        .unwrap();
    // Handled in order: once this one is acknowledged, both are retained.
    publisher.publish("q/one", b"1", true).await;
    let mut subscriber = Client::connect(gateway.mqtt, "subscriber", true).await;
    subscriber.subscribe("q/+").await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let p = subscriber.next_publish().await;
        got.push((p.topic, p.qos, p.retain));
    }
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("q/one".to_owned(), QoS::AtLeastOnce, true),
            ("q/zero".to_owned(), QoS::AtMostOnce, true),
        ]
    );
    gateway.stop().await;
    herald.stop().await;
}
