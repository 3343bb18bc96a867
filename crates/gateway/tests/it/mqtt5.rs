//! MQTT 5 sessions, driven by rumqttc's v5 client (and a raw socket for
//! what it can't send): reason codes in CONNACK, SUBACK, UNSUBACK and
//! PUBACK, denied publishes that leave the session up, MQTT 5 deliveries,
//! and the DISCONNECT the server sends before it ends a session.
//!
//! The gateway is the one of the `mqtt` tests (a cache snapshot, password
//! principals). As there, no test waits for something not to happen: a
//! marker published after the message that must not arrive shows it
//! didn't.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, Filter, LastWill, LastWillProperties, Packet,
    PubAckReason, PublishProperties, SubscribeReasonCode, UnsubAckReason,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use herald_proto::config::v1::{self as pb, config_update};

use crate::mqtt::{Gateway, connect as connect_v3, monitor};
use crate::support::WAIT;

/// A connected rumqttc v5 client whose event loop runs in a task.
struct Client5 {
    client: AsyncClient,
    /// Incoming packets; an `Err` once the connection ended.
    incoming: mpsc::UnboundedReceiver<Result<Packet, ConnectionError>>,
    task: JoinHandle<()>,
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(gw: &Gateway, client_id: &str, user: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, gw.addr.ip().to_string(), gw.addr.port());
    options.set_credentials(user, format!("{user}-pw"));
    options.set_keep_alive(Duration::from_secs(30));
    options
}

async fn try_connect(
    gw: &Gateway,
    client_id: &str,
    user: &str,
) -> Result<Client5, ConnectionError> {
    try_connect_with(options(gw, client_id, user)).await
}

async fn try_connect_with(options: MqttOptions) -> Result<Client5, ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    loop {
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("a CONNACK in time")?;
        if let Event::Incoming(Packet::ConnAck(_)) = event {
            break;
        }
    }
    let (tx, incoming) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    if tx.send(Ok(packet)).is_err() {
                        return;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    Ok(Client5 {
        client,
        incoming,
        task,
    })
}

async fn connect(gw: &Gateway, client_id: &str, user: &str) -> Client5 {
    try_connect(gw, client_id, user)
        .await
        .unwrap_or_else(|e| panic!("{client_id} should connect over MQTT 5: {e}"))
}

impl Client5 {
    /// The next incoming packet other than PINGRESP.
    async fn next(&mut self) -> Result<Packet, ConnectionError> {
        loop {
            let packet = tokio::time::timeout(WAIT, self.incoming.recv())
                .await
                .expect("a packet in time")
                .expect("the event loop reports how it ended")?;
            if !matches!(packet, Packet::PingResp(_)) {
                return Ok(packet);
            }
        }
    }

    /// Subscribes to `filters` at `qos` and returns the SUBACK codes.
    async fn subscribe(&mut self, filters: &[&str], qos: QoS) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe_many(filters.iter().map(|f| Filter::new(*f, qos)))
            .await
            .unwrap();
        loop {
            match self.next().await {
                Ok(Packet::SubAck(ack)) => return ack.return_codes,
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for a SUBACK: {e}"),
            }
        }
    }

    /// Unsubscribes from `filter` and returns the UNSUBACK reasons.
    async fn unsubscribe(&mut self, filter: &str) -> Vec<UnsubAckReason> {
        self.client.unsubscribe(filter).await.unwrap();
        loop {
            match self.next().await {
                Ok(Packet::UnsubAck(ack)) => return ack.reasons,
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for an UNSUBACK: {e}"),
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason.
    async fn publish_acked(&mut self, topic: &str, payload: &str, retain: bool) -> PubAckReason {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .unwrap();
        loop {
            match self.next().await {
                Ok(Packet::PubAck(ack)) => return ack.reason,
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for a PUBACK: {e}"),
            }
        }
    }

    /// The next PUBLISH: topic, payload and QoS.
    async fn publish_received(&mut self) -> (String, Vec<u8>, QoS) {
        loop {
            match self.next().await {
                Ok(Packet::Publish(p)) => {
                    let topic = String::from_utf8(p.topic.to_vec()).unwrap();
                    return (topic, p.payload.to_vec(), p.qos);
                }
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for a PUBLISH: {e}"),
            }
        }
    }

    /// The reason code of the server's DISCONNECT that ended the connection.
    async fn disconnected(&mut self) -> DisconnectReasonCode {
        loop {
            match self.next().await {
                Ok(_) => {}
                Err(ConnectionError::MqttState(StateError::ServerDisconnect {
                    reason_code,
                    ..
                })) => return reason_code,
                Err(e) => panic!("expected a DISCONNECT from the server, got {e}"),
            }
        }
    }
}

fn refused(r: Result<Client5, ConnectionError>) -> ConnectReturnCode {
    match r {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
}

/// Appends `s` as an MQTT string (length-prefixed).
fn put_str(body: &mut Vec<u8>, s: &str) {
    body.extend_from_slice(&(s.len() as u16).to_be_bytes());
    body.extend_from_slice(s.as_bytes());
}

/// A raw MQTT 5 CONNECT of `admin`: clean start, username and password,
/// optionally a will (QoS 0) on `will.0` with payload `will.1`; `level` is
/// the protocol level.
fn raw_connect5(
    client_id: &str,
    will: Option<(&str, &str)>,
    level: u8,
    keep_alive: u16,
) -> Vec<u8> {
    let user = "admin";
    let flags = 0xC2 | if will.is_some() { 0x04 } else { 0 };
    // Name, level, flags, keep-alive, no properties.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.push(0);
    put_str(&mut body, client_id);
    if let Some((topic, payload)) = will {
        // No will properties, then topic and payload.
        body.push(0);
        put_str(&mut body, topic);
        put_str(&mut body, payload);
    }
    put_str(&mut body, user);
    put_str(&mut body, &format!("{user}-pw"));
    assert!(body.len() < 128);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Reads one packet (whose remaining length fits one byte) from `stream`.
async fn raw_packet(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("a packet in time")
        .unwrap();
    assert!(head[1] < 128, "a short packet");
    let mut packet = vec![0u8; 2 + usize::from(head[1])];
    packet[..2].copy_from_slice(&head);
    tokio::time::timeout(WAIT, stream.read_exact(&mut packet[2..]))
        .await
        .expect("the rest of the packet in time")
        .unwrap();
    packet
}

/// A raw MQTT 5 connection of `admin` that has its CONNACK 0x00.
async fn raw_client5(
    gw: &Gateway,
    client_id: &str,
    will: Option<(&str, &str)>,
    keep_alive: u16,
) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&raw_connect5(client_id, will, 5, keep_alive))
        .await
        .unwrap();
    let connack = raw_packet(&mut stream).await;
    assert_eq!(connack[0], 0x20);
    assert_eq!(connack[3], 0x00, "CONNACK success: {connack:02x?}");
    stream
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn v5_connect_is_authenticated_and_authorized_with_v5_codes() {
    let gw = Gateway::start().await;
    let ok = connect(&gw, "lim-5", "limited").await;
    drop(ok);
    // No policy lets this principal connect: 0x87.
    assert_eq!(
        refused(try_connect(&gw, "lim-5b", "nobody").await),
        ConnectReturnCode::NotAuthorized
    );
    // The policy allows only client ids starting with `lim`.
    assert_eq!(
        refused(try_connect(&gw, "other", "limited").await),
        ConnectReturnCode::NotAuthorized
    );
    // Unknown credentials: 0x86.
    assert_eq!(
        refused(try_connect(&gw, "lim-5c", "stranger").await),
        ConnectReturnCode::BadUserNamePassword
    );
    // A client id over 128 bytes: 0x85.
    let long = "a".repeat(129);
    assert_eq!(
        refused(try_connect(&gw, &long, "admin").await),
        ConnectReturnCode::ClientIdentifierNotValid
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unknown_protocol_level_above_5_gets_0x84() {
    let gw = Gateway::start().await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&raw_connect5("lvl-6", None, 6, 30))
        .await
        .unwrap();
    assert_eq!(raw_packet(&mut stream).await, [0x20, 3, 0, 0x84, 0]);
    gw.stop().await;
}

#[tokio::test]
async fn v5_subacks_and_unsubacks_carry_reason_codes() {
    let gw = Gateway::start().await;
    let mut c = connect(&gw, "lim-sub5", "limited").await;
    let codes = c
        .subscribe(
            &[
                "data/#",
                "other/x",
                "secret/#",
                "data/1/2/3/4/5/6/7/8",
                "$aws/events/#",
                "$other/x",
            ],
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::TopicFilterInvalid,
            SubscribeReasonCode::NotAuthorized,
            SubscribeReasonCode::TopicFilterInvalid,
        ]
    );
    assert_eq!(c.unsubscribe("data/#").await, vec![UnsubAckReason::Success]);
    assert_eq!(
        c.unsubscribe("data/#").await,
        vec![UnsubAckReason::NoSubscriptionExisted]
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_denied_v5_publish_gets_puback_0x87_and_the_session_stays() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "sub-5", "admin").await;
    assert_eq!(
        sub.subscribe(&["#"], QoS::AtLeastOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut w = connect(&gw, "w-5", "writer").await;
    // Not allowed to publish there.
    assert_eq!(
        w.publish_acked("secret/1", "denied", false).await,
        PubAckReason::NotAuthorized
    );
    // Allowed to publish, not to retain.
    assert_eq!(
        w.publish_acked("data/retained", "denied", true).await,
        PubAckReason::NotAuthorized
    );
    // QoS 0: dropped without an answer.
    w.client
        .publish("secret/2", QoS::AtMostOnce, false, b"dropped".to_vec())
        .await
        .unwrap();
    // The session is still up and the next allowed publish goes through.
    assert_eq!(
        w.publish_acked("data/ok", "allowed", false).await,
        PubAckReason::Success
    );
    let (topic, payload, _) = sub.publish_received().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("data/ok", b"allowed".as_slice()),
        "no denied publish is delivered"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_v5_publish_on_aws_events_gets_0x87_even_when_allowed() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "evil-5", "admin").await;
    let _ = m.event_for("evil-5").await; // connected
    assert_eq!(
        c.publish_acked(
            "$aws/events/presence/connected/fake",
            "{\"clientId\":\"fake\"}",
            false
        )
        .await,
        PubAckReason::NotAuthorized
    );
    // Still connected: a publish on `$aws/things/...` is acknowledged.
    assert_eq!(
        c.publish_acked("$aws/things/lamp/shadow/update", "{}", false)
            .await,
        PubAckReason::Success
    );
    // The fake event never reached the monitor: the next event is the
    // marker client's.
    let _marker = connect_v3(&gw, "marker-5", "admin").await;
    let (topic, _) = m.publish_received().await;
    assert_eq!(topic, "$aws/events/presence/connected/marker-5");
    gw.stop().await;
}

#[tokio::test]
async fn a_v5_subscriber_receives_qos_0_and_1_deliveries() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "recv-5", "admin").await;
    assert_eq!(
        sub.subscribe(&["data/#", "$aws/things/+/shadow/update"], QoS::AtLeastOnce)
            .await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2]
    );
    assert_eq!(
        sub.subscribe(&["zero/#"], QoS::AtMostOnce).await,
        vec![SubscribeReasonCode::Success(QoS::AtMostOnce)]
    );
    let publisher = connect_v3(&gw, "pub-5", "admin").await;
    // Several QoS 1 deliveries (each acknowledged by rumqttc), then QoS 0,
    // then the bus: one at a time, as only one filter keeps its order.
    for i in 0..3 {
        publisher
            .publish(&format!("data/{i}"), &format!("one-{i}"))
            .await;
    }
    for i in 0..3 {
        assert_eq!(
            sub.publish_received().await,
            (
                format!("data/{i}"),
                format!("one-{i}").into_bytes(),
                QoS::AtLeastOnce
            )
        );
    }
    publisher.publish("zero/1", "zero").await;
    assert_eq!(
        sub.publish_received().await,
        ("zero/1".to_owned(), b"zero".to_vec(), QoS::AtMostOnce)
    );
    publisher
        .publish("$aws/things/lamp/shadow/update", "{\"state\":{}}")
        .await;
    assert_eq!(
        sub.publish_received().await,
        (
            "$aws/things/lamp/shadow/update".to_owned(),
            b"{\"state\":{}}".to_vec(),
            QoS::AtLeastOnce
        )
    );
    // A registry-style event from the gateway's bus.
    assert_eq!(
        sub.subscribe(&["$aws/events/thing/#"], QoS::AtLeastOnce)
            .await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let outcome = gw
        .bus
        .publish("$aws/events/thing/t1/created", b"{}".to_vec());
    assert_eq!(outcome.queued, 1);
    assert_eq!(
        sub.publish_received().await,
        (
            "$aws/events/thing/t1/created".to_owned(),
            b"{}".to_vec(),
            QoS::AtLeastOnce
        )
    );
    gw.stop().await;
}

/// The properties an MQTT 5 publisher sets that go on (AWS IoT Core
/// Developer Guide: "MQTT 5 supported features").
fn request_properties(expiry_secs: u32) -> PublishProperties {
    PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(expiry_secs),
        topic_alias: None,
        response_topic: Some("replies/lamp-1".into()),
        correlation_data: Some(vec![0, 1, 0xfe].into()),
        user_properties: vec![
            ("trace".into(), "t-1".into()),
            ("trace".into(), "t-2".into()),
        ],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    }
}

/// The properties of a PUBLISH an MQTT 5 client receives next.
async fn properties_received(client: &mut Client5) -> (String, Option<PublishProperties>) {
    loop {
        match client.next().await {
            Ok(Packet::Publish(p)) => {
                return (String::from_utf8(p.topic.to_vec()).unwrap(), p.properties);
            }
            Ok(_) => {}
            Err(e) => panic!("connection ended while waiting for a PUBLISH: {e}"),
        }
    }
}

/// An MQTT 5 PUBLISH's properties reach MQTT 5 subscribers (the message
/// expiry interval as what is left of it), an MQTT 3.1.1 subscriber gets
/// the message without them, a message that expired while its
/// subscriber's persistent session was away is not delivered, and a
/// retained message keeps its properties until it expires.
#[tokio::test]
async fn v5_publish_properties_go_on_to_v5_subscribers_until_the_message_expires() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "props-sub-5", "admin").await;
    sub.subscribe(&["req/#"], QoS::AtLeastOnce).await;
    let mut sub3 = connect_v3(&gw, "props-sub-3", "admin").await;
    sub3.subscribe(&["req/#"]).await;
    let persistent = || {
        let mut options = options(&gw, "props-away-5", "admin");
        options.set_clean_start(false);
        options
    };
    let mut away = try_connect_with(persistent()).await.unwrap();
    away.subscribe(&["exp/#"], QoS::AtLeastOnce).await;
    away.client.disconnect().await.unwrap();
    while away.next().await.is_ok() {}

    let mut publisher = connect(&gw, "props-pub-5", "admin").await;
    publisher
        .client
        .publish_with_properties(
            "req/lamp-1",
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
            request_properties(600),
        )
        .await
        .unwrap();
    let (topic, properties) = properties_received(&mut sub).await;
    assert_eq!(topic, "req/lamp-1");
    let properties = properties.expect("the publisher's properties");
    let left = properties.message_expiry_interval.unwrap();
    assert!((599..=600).contains(&left), "{left} s left");
    assert_eq!(
        PublishProperties {
            message_expiry_interval: Some(600),
            ..properties
        },
        request_properties(600)
    );
    assert_eq!(
        sub3.publish_received().await,
        ("req/lamp-1".to_owned(), b"{}".to_vec())
    );

    // For the session away: one that expires in a second, one that does
    // not, in that order.
    for (topic, expiry) in [("exp/short", 1), ("exp/long", 600)] {
        publisher
            .client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                false,
                b"x".to_vec(),
                request_properties(expiry),
            )
            .await
            .unwrap();
    }
    // Retained too: one that expires in a second, one that does not.
    for (topic, expiry) in [("ret/short", 1), ("ret/long", 600)] {
        publisher
            .client
            .publish_with_properties(
                topic,
                QoS::AtLeastOnce,
                true,
                b"r".to_vec(),
                request_properties(expiry),
            )
            .await
            .unwrap();
    }
    // A marker through the same router after both: once it arrives, both
    // were routed.
    publisher
        .client
        .publish("req/marker", QoS::AtLeastOnce, false, b"m".to_vec())
        .await
        .unwrap();
    assert_eq!(properties_received(&mut sub).await.0, "req/marker");
    // Time passes while the session is away: the first expires.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut back = try_connect_with(persistent()).await.unwrap();
    let (topic, properties) = properties_received(&mut back).await;
    assert_eq!(topic, "exp/long", "the expired message is not delivered");
    let left = properties.unwrap().message_expiry_interval.unwrap();
    assert!((598..=600).contains(&left), "{left} s left");

    // A new subscriber gets the retained message that has not expired,
    // with its properties; a live marker published after the SUBSCRIBE
    // comes after the retained ones.
    let mut late = connect(&gw, "props-late-5", "admin").await;
    late.subscribe(&["ret/#"], QoS::AtLeastOnce).await;
    publisher
        .client
        .publish("ret/marker", QoS::AtLeastOnce, false, b"m".to_vec())
        .await
        .unwrap();
    let mut retained = Vec::new();
    loop {
        let (topic, properties) = properties_received(&mut late).await;
        if topic == "ret/marker" {
            break;
        }
        retained.push((topic, properties));
    }
    assert_eq!(retained.len(), 1, "only the one not expired: {retained:?}");
    let (topic, properties) = retained.remove(0);
    assert_eq!(topic, "ret/long");
    let properties = properties.expect("the retained message's properties");
    assert_eq!(
        PublishProperties {
            message_expiry_interval: Some(600),
            ..properties
        },
        request_properties(600)
    );

    // A response topic is a topic name: one with a wildcard is a protocol
    // error.
    publisher
        .client
        .publish_with_properties(
            "req/lamp-1",
            QoS::AtLeastOnce,
            false,
            b"{}".to_vec(),
            PublishProperties {
                response_topic: Some("replies/+".into()),
                ..request_properties(600)
            },
        )
        .await
        .unwrap();
    assert_eq!(
        publisher.disconnected().await,
        DisconnectReasonCode::ProtocolError
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_takeover_sends_disconnect_0x8e_to_the_old_v5_client() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut first = connect(&gw, "dup-5", "admin").await;
    let _ = m.event_for("dup-5").await; // connected
    let _second = connect(&gw, "dup-5", "admin").await;
    assert_eq!(
        first.disconnected().await,
        DisconnectReasonCode::SessionTakenOver
    );
    // The lifecycle event is the same as for MQTT 3.1.1.
    let (_, event) = m.event_for("dup-5").await;
    assert_eq!(event["eventType"], "disconnected");
    assert_eq!(event["disconnectReason"], "DUPLICATE_CLIENTID");
    gw.stop().await;
}

#[tokio::test]
async fn v5_sessions_ended_by_the_server_get_a_disconnect_reason() {
    let gw = Gateway::start().await;
    // QoS 2 is not served: 0x9B.
    let mut q2 = connect(&gw, "q2-5", "admin").await;
    q2.client
        .publish("q/2", QoS::ExactlyOnce, false, b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(
        q2.disconnected().await,
        DisconnectReasonCode::QoSNotSupported
    );
    // A `$` topic outside `$aws/things` still ends the session.
    let mut dollar = connect(&gw, "dollar-5", "admin").await;
    dollar
        .client
        .publish("$aws/rules/r", QoS::AtLeastOnce, false, b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(
        dollar.disconnected().await,
        DisconnectReasonCode::NotAuthorized
    );
    // Shutdown: 0x8B.
    let mut stays = connect(&gw, "stays-5", "admin").await;
    gw.stop().await;
    assert_eq!(
        stays.disconnected().await,
        DisconnectReasonCode::ServerShuttingDown
    );
}

#[tokio::test]
async fn a_silent_v5_client_gets_disconnect_0x8d() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut stream = raw_client5(&gw, "quiet-5", None, 1).await;
    // Nothing heard for 1.5 s: DISCONNECT 0x8D, then the socket closes.
    assert_eq!(raw_packet(&mut stream).await, [0xE0, 2, 0x8D, 0]);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok_and(|r| r.is_ok()) && rest.is_empty());
    let (_, connected) = m.event_for("quiet-5").await;
    assert_eq!(connected["eventType"], "connected");
    let (_, disconnected) = m.event_for("quiet-5").await;
    assert_eq!(disconnected["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
    gw.stop().await;
}

#[tokio::test]
async fn a_policy_change_that_denies_connect_sends_disconnect_0x87() {
    let gw = Gateway::start().await;
    let mut c = connect(&gw, "lim-revoked-5", "limited").await;
    gw.cache.apply(pb::ConfigUpdate {
        revision: 2,
        change: Some(config_update::Change::PolicyDeleted("limited".into())),
    });
    assert_eq!(c.disconnected().await, DisconnectReasonCode::NotAuthorized);
    gw.stop().await;
}

#[tokio::test]
async fn a_v5_disconnect_with_will_publishes_the_will() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "will-watch-5", "admin").await;
    sub.subscribe(&["wills/#"], QoS::AtLeastOnce).await;
    // A DISCONNECT with reason 0x00 and no properties: no will. The
    // server closes the socket after any will would have been published.
    let mut plain = raw_client5(&gw, "will-5a", Some(("wills/a", "gone-a")), 30).await;
    plain.write_all(&[0xE0, 0x01, 0x00]).await.unwrap();
    closed_quietly(&mut plain).await;
    // Reason 0x04: the will is published.
    let mut with_will = raw_client5(&gw, "will-5b", Some(("wills/b", "gone-b")), 30).await;
    with_will.write_all(&[0xE0, 0x01, 0x04]).await.unwrap();
    closed_quietly(&mut with_will).await;
    let (topic, payload, _) = sub.publish_received().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("wills/b", b"gone-b".as_slice())
    );
    gw.stop().await;
}

fn will_with(response_topic: &str) -> LastWill {
    LastWill::new(
        "wills/props",
        "gone",
        QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: None,
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(600),
            content_type: Some("text/plain".into()),
            response_topic: Some(response_topic.into()),
            correlation_data: Some(vec![7, 0].into()),
            user_properties: vec![("why".into(), "lost".into())],
        }),
    )
}

/// A will goes on with its MQTT 5 properties, as a PUBLISH's; a will whose
/// response topic is not a topic name refuses the CONNECT.
#[tokio::test]
async fn a_v5_will_goes_on_with_its_properties() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "will-props-watch", "admin").await;
    sub.subscribe(&["wills/#"], QoS::AtLeastOnce).await;

    let mut bad = options(&gw, "will-props-bad", "admin");
    bad.set_last_will(will_with("replies/#"));
    assert_eq!(
        refused(try_connect_with(bad).await),
        ConnectReturnCode::MalformedPacket
    );

    let mut options = options(&gw, "will-props-5", "admin");
    options.set_last_will(will_with("replies/will"));
    let client = try_connect_with(options).await.unwrap();
    // Its connection lost: the will goes.
    drop(client);
    let (topic, properties) = properties_received(&mut sub).await;
    assert_eq!(topic, "wills/props");
    let properties = properties.expect("the will's properties");
    assert!(
        properties
            .message_expiry_interval
            .is_some_and(|left| left >= 599)
    );
    assert_eq!(
        PublishProperties {
            message_expiry_interval: None,
            ..properties
        },
        PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            topic_alias: None,
            response_topic: Some("replies/will".into()),
            correlation_data: Some(vec![7, 0].into()),
            user_properties: vec![("why".into(), "lost".into())],
            subscription_identifiers: Vec::new(),
            content_type: Some("text/plain".into()),
        }
    );
    gw.stop().await;
}

/// Waits until the server closes `stream`, having sent nothing more (no
/// DISCONNECT after the client's own).
async fn closed_quietly(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the socket in time");
    assert!(read.is_ok());
    assert!(
        rest.is_empty(),
        "nothing after a client DISCONNECT: {rest:02x?}"
    );
}
