//! The MQTT session layer over plain TCP, driven by rumqttc (and a raw
//! socket where rumqttc can't misbehave enough): CONNECT authentication and
//! `iot:Connect`, per-filter `iot:Subscribe`, `iot:Receive` per delivery,
//! refused `$aws/events` publishes, the `$aws` bus, lifecycle events,
//! client-id takeover and the keep-alive timeout.
//!
//! The cache is filled with a snapshot (no config service). No test waits
//! for something not to happen: a marker message published after the one
//! that must not arrive shows it didn't.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_gateway::testing::bus::Bus;
use herald_gateway::testing::config_cache::ConfigCache;
use herald_gateway::testing::mqtt::Sessions;
use herald_gateway::testing::mqtt::VersionCounter;
use herald_gateway::testing::mqtt::serve_tcp;
use herald_gateway::testing::mqtt::{
    Authenticator, PasswordCredential, Principal, SessionContext, SessionSettings,
    password_authenticator,
};
use herald_gateway::testing::router::{Router, RouterSettings};
use herald_proto::config::v1::{self as pb, config_update};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use herald_proto::registry::v1 as reg;

use crate::support::{
    ACCOUNT, Herald, REGION, Registry, WAIT, attach, create_cert, create_group, create_policy,
    current_revision, eventually, group_arn,
};

// ------------------------------------------------------------ the gateway

fn statement(action: &str, resource: &str) -> Value {
    json!({"Effect": "Allow", "Action": action, "Resource": resource})
}

fn res(kind: &str, rest: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{rest}")
}

fn policy(name: &str, statements: Vec<Value>) -> pb::PolicyState {
    pb::PolicyState {
        policy_name: name.into(),
        policy_arn: res("policy", name),
        document: json!({"Version": "2012-10-17", "Statement": statements}).to_string(),
        default_version_id: "1".into(),
    }
}

/// A cache with the test policies:
/// - `all`: every action on everything (even `$aws/events` publishes);
/// - `monitor`: connect as `monitor*`, subscribe to and receive events;
/// - `limited`: connect as `lim*`, subscribe to `data/*` and `secret/*`,
///   receive only `data/*`;
/// - `writer`: connect as `w*`, publish, subscribe to and receive
///   `data/*` (no `iot:RetainPublish`).
fn cache() -> ConfigCache {
    let cache = ConfigCache::new();
    let snapshot = pb::ConfigSnapshot {
        policies: vec![
            policy("all", vec![statement("iot:*", "*")]),
            policy(
                "monitor",
                vec![
                    statement("iot:Connect", &res("client", "monitor*")),
                    statement("iot:Subscribe", &res("topicfilter", "$aws/events/*")),
                    statement("iot:Receive", &res("topic", "$aws/events/*")),
                ],
            ),
            policy(
                "limited",
                vec![
                    statement("iot:Connect", &res("client", "lim*")),
                    statement("iot:Subscribe", &res("topicfilter", "data/*")),
                    statement("iot:Subscribe", &res("topicfilter", "secret/*")),
                    statement("iot:Receive", &res("topic", "data/*")),
                ],
            ),
            policy(
                "writer",
                vec![
                    statement("iot:Connect", &res("client", "w*")),
                    statement("iot:Publish", &res("topic", "data/*")),
                    statement("iot:Subscribe", &res("topicfilter", "data/*")),
                    statement("iot:Receive", &res("topic", "data/*")),
                ],
            ),
        ],
        certificates: vec![certificate(CERT_ID, pb::CertificateStatus::Active)],
        attachments: vec![pb::Attachment {
            policy_name: "all".into(),
            target: res("cert", CERT_ID),
        }],
        event_configurations: Default::default(),
    };
    cache.apply(pb::ConfigUpdate {
        revision: 1,
        change: Some(config_update::Change::Snapshot(snapshot)),
    });
    cache
}

/// A registered certificate with the `all` policy attached.
const CERT_ID: &str = "c0ffee";

fn certificate(id: &str, status: pb::CertificateStatus) -> pb::CertificateState {
    pb::CertificateState {
        certificate_id: id.into(),
        certificate_arn: res("cert", id),
        status: status as i32,
        certificate_pem: format!("PEM of {id}"),
    }
}

fn credential(user: &str, policies: &[&str]) -> PasswordCredential {
    PasswordCredential {
        username: user.into(),
        password: format!("{user}-pw"),
        principal_id: format!("principal-{user}"),
        policy_names: policies.iter().map(|p| p.to_string()).collect(),
    }
}

/// A gateway serving plain TCP on 127.0.0.1 with [`cache`] and the
/// password principals `admin`, `monitor`, `limited`, `writer` and
/// `nobody` (password `{user}-pw`), each with the policy of its name
/// (`admin`: `all`).
pub(crate) struct Gateway {
    pub(crate) addr: SocketAddr,
    pub(crate) ctx: SessionContext,
    auth: Authenticator,
    pub(crate) bus: Bus,
    pub(crate) cache: ConfigCache,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// The session settings of [`Gateway::start`]: the defaults, with a
/// shortest keep-alive of 1 s so that keep-alive tests run fast.
pub(crate) fn test_settings() -> SessionSettings {
    SessionSettings {
        min_keep_alive: Duration::from_secs(1),
        ..SessionSettings::default()
    }
}

impl Gateway {
    pub(crate) async fn start() -> Gateway {
        Gateway::start_with(test_settings()).await
    }

    pub(crate) async fn start_with(settings: SessionSettings) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bus = Bus::new();
        let cache = cache();
        let ctx = SessionContext::new(
            cache.clone(),
            bus.clone(),
            Arc::new(VersionCounter::new()),
            REGION,
            ACCOUNT,
            Router::spawn(&RouterSettings::default()),
            settings,
        );
        let auth = password_authenticator(vec![
            credential("admin", &["all"]),
            credential("monitor", &["monitor"]),
            credential("limited", &["limited"]),
            credential("writer", &["writer"]),
            credential("nobody", &[]),
        ]);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_tcp(
            listener,
            ctx.clone(),
            auth.clone(),
            shutdown.clone(),
        ));
        Gateway {
            addr,
            ctx,
            auth,
            bus,
            cache,
            shutdown,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve_tcp ends on shutdown")
            .unwrap()
            .unwrap();
    }
}

// ------------------------------------------------------------ clients

/// A connected rumqttc client whose event loop runs in a task.
pub(crate) struct Client {
    pub(crate) client: AsyncClient,
    /// Incoming packets; an `Err` once the connection ended.
    pub(crate) incoming: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: JoinHandle<()>,
}

pub(crate) fn options(gw: &Gateway, client_id: &str, user: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, gw.addr.ip().to_string(), gw.addr.port());
    options.set_credentials(user, format!("{user}-pw"));
    options.set_keep_alive(Duration::from_secs(30));
    options
}

async fn try_connect(gw: &Gateway, client_id: &str, user: &str) -> Result<Client, ConnectionError> {
    try_connect_with(options(gw, client_id, user))
        .await
        .map(|(client, _)| client)
}

/// Connects with `options`; the client and the CONNACK's session-present flag.
pub(crate) async fn try_connect_with(
    options: MqttOptions,
) -> Result<(Client, bool), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let session_present = loop {
        let event = tokio::time::timeout(WAIT, eventloop.poll())
            .await
            .expect("a CONNACK in time")?;
        if let Event::Incoming(Packet::ConnAck(ack)) = event {
            break ack.session_present;
        }
    };
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
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    Ok((
        Client {
            client,
            incoming,
            task,
        },
        session_present,
    ))
}

pub(crate) async fn connect(gw: &Gateway, client_id: &str, user: &str) -> Client {
    try_connect(gw, client_id, user)
        .await
        .unwrap_or_else(|e| panic!("{client_id} should connect: {e}"))
}

impl Client {
    /// The next incoming packet other than PINGRESP and PUBACK.
    pub(crate) async fn next(&mut self) -> Result<Packet, String> {
        loop {
            let packet = tokio::time::timeout(WAIT, self.incoming.recv())
                .await
                .expect("a packet in time")
                .unwrap_or_else(|| Err("event loop gone".into()))?;
            if !matches!(packet, Packet::PingResp | Packet::PubAck(_)) {
                return Ok(packet);
            }
        }
    }

    /// Subscribes to `filters` at QoS 1 and returns the SUBACK codes.
    pub(crate) async fn subscribe(&mut self, filters: &[&str]) -> Vec<SubscribeReasonCode> {
        self.client
            .subscribe_many(
                filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce)),
            )
            .await
            .unwrap();
        match self.next().await {
            Ok(Packet::SubAck(ack)) => ack.return_codes,
            other => panic!("expected a SUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH: topic and payload.
    pub(crate) async fn publish_received(&mut self) -> (String, Vec<u8>) {
        loop {
            match self.next().await {
                Ok(Packet::Publish(p)) => return (p.topic, p.payload.to_vec()),
                Ok(_) => {}
                Err(e) => panic!("connection ended while waiting for a PUBLISH: {e}"),
            }
        }
    }

    /// The next lifecycle event about `client_id` (events about others are
    /// skipped): the topic and the parsed payload.
    pub(crate) async fn event_for(&mut self, client_id: &str) -> (String, Value) {
        loop {
            let (topic, payload) = self.publish_received().await;
            let value: Value = serde_json::from_slice(&payload).unwrap();
            if value["clientId"] == client_id {
                return (topic, value);
            }
        }
    }

    /// Waits until the server closes the connection.
    pub(crate) async fn closed(&mut self) {
        loop {
            if self.next().await.is_err() {
                return;
            }
        }
    }

    pub(crate) async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A monitor subscribed to every presence and subscription event.
pub(crate) async fn monitor(gw: &Gateway) -> Client {
    let mut m = connect(gw, "monitor-1", "monitor").await;
    let codes = m
        .subscribe(&["$aws/events/presence/#", "$aws/events/subscriptions/#"])
        .await;
    assert_eq!(
        codes,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2]
    );
    m
}

/// A raw CONNECT with username, password and clean session.
fn raw_connect(client_id: &str, user: &str, keep_alive: u16) -> Vec<u8> {
    let password = format!("{user}-pw");
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    for field in [client_id, user, password.as_str()] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    assert!(body.len() < 128);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// A raw connection that has its CONNACK 0.
async fn raw_client(gw: &Gateway, client_id: &str, keep_alive: u16) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&raw_connect(client_id, "admin", keep_alive))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("a CONNACK in time")
        .unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    stream
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn connect_is_authenticated_and_authorized() {
    let gw = Gateway::start().await;
    let ok = connect(&gw, "lim-1", "limited").await;
    drop(ok);
    let refused = |r: Result<Client, ConnectionError>| match r {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    };
    // No policy allows this principal to connect.
    assert_eq!(
        refused(try_connect(&gw, "lim-2", "nobody").await),
        ConnectReturnCode::NotAuthorized
    );
    // The policy allows only client ids starting with `lim`.
    assert_eq!(
        refused(try_connect(&gw, "other", "limited").await),
        ConnectReturnCode::NotAuthorized
    );
    // Unknown credentials.
    assert_eq!(
        refused(try_connect(&gw, "lim-3", "stranger").await),
        ConnectReturnCode::BadUserNamePassword
    );
    gw.stop().await;
}

#[tokio::test]
async fn connect_failed_event_for_a_denied_connect() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    assert!(try_connect(&gw, "lim-denied", "nobody").await.is_err());
    let (topic, event) = m.event_for("lim-denied").await;
    assert_eq!(topic, "$aws/events/presence/connect_failed/lim-denied");
    assert_eq!(event["eventType"], "connect_failed");
    assert_eq!(event["connectFailureReason"], "AUTHORIZATION_FAILED");
    assert_eq!(event["principalIdentifier"], "principal-nobody");
    assert_eq!(event["ipAddress"], "127.0.0.1");
    gw.stop().await;
}

#[tokio::test]
async fn denied_filters_get_0x80() {
    let gw = Gateway::start().await;
    let mut c = connect(&gw, "lim-sub", "limited").await;
    let codes = c
        .subscribe(&[
            "data/#",
            "other/x",
            "secret/#",
            "data/1/2/3/4/5/6/7/8",
            "$aws/events/#",
        ])
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Failure,
        ]
    );
    // Eight slashes are too many for AWS whatever the policy says, and
    // `$aws/events` needs its own permission. QoS 2 is granted as QoS 1.
    c.client
        .subscribe("data/q2", QoS::ExactlyOnce)
        .await
        .unwrap();
    match c.next().await {
        Ok(Packet::SubAck(ack)) => assert_eq!(
            ack.return_codes,
            vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        ),
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    gw.stop().await;
}

#[tokio::test]
async fn publishes_are_delivered_only_where_receive_is_allowed() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "lim-recv", "limited").await;
    assert_eq!(
        sub.subscribe(&["data/#", "secret/#"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 2]
    );
    let publisher = connect(&gw, "pub-1", "admin").await;
    publisher.publish("secret/1", "hidden").await;
    publisher.publish("data/1", "marker").await;
    let (topic, payload) = sub.publish_received().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("data/1", b"marker".as_slice()),
        "the secret message must not be delivered before the marker"
    );
    gw.stop().await;
}

#[tokio::test]
async fn publishing_to_aws_events_disconnects_even_when_allowed() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "evil", "admin").await;
    let _ = m.event_for("evil").await; // connected
    c.publish("$aws/events/presence/connected/fake", "{}").await;
    c.closed().await;
    let (topic, event) = m.event_for("evil").await;
    assert_eq!(topic, "$aws/events/presence/disconnected/evil");
    assert_eq!(event["disconnectReason"], "CLIENT_ERROR");
    assert_eq!(event["clientInitiatedDisconnect"], false);
    gw.stop().await;
}

#[tokio::test]
async fn a_denied_publish_disconnects_with_auth_error() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "lim-pub", "limited").await;
    let _ = m.event_for("lim-pub").await; // connected
    c.publish("data/1", "not allowed to publish").await;
    c.closed().await;
    let (_, event) = m.event_for("lim-pub").await;
    assert_eq!(event["eventType"], "disconnected");
    assert_eq!(event["disconnectReason"], "AUTH_ERROR");
    gw.stop().await;
}

#[tokio::test]
async fn bus_messages_reach_explicit_aws_filters_only() {
    let gw = Gateway::start().await;
    let mut all = connect(&gw, "all-1", "admin").await;
    assert_eq!(
        all.subscribe(&["#"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut events = connect(&gw, "events-1", "admin").await;
    assert_eq!(
        events.subscribe(&["$aws/events/thing/#"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let topic = "$aws/events/thing/t1/created";
    let outcome = gw.bus.publish(topic, b"{\"x\":1}".to_vec());
    assert_eq!(outcome.queued, 1);
    let (got, payload) = events.publish_received().await;
    assert_eq!(
        (got.as_str(), payload.as_slice()),
        (topic, b"{\"x\":1}".as_slice())
    );
    // `#` gets the marker first: the bus message never reached it.
    events.publish("m/1", "marker").await;
    let (got, _) = all.publish_received().await;
    assert_eq!(got, "m/1");
    gw.stop().await;
}

#[tokio::test]
async fn lifecycle_events_of_a_session() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "dev-1", "admin").await;

    let (topic, connected) = m.event_for("dev-1").await;
    assert_eq!(topic, "$aws/events/presence/connected/dev-1");
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["principalIdentifier"], "principal-admin");
    assert_eq!(connected["ipAddress"], "127.0.0.1");
    assert_eq!(connected["versionNumber"], 0);
    assert!(connected["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    let session_id = connected["sessionIdentifier"].as_str().unwrap().to_owned();
    assert_eq!(session_id.len(), 36);
    assert!(connected.get("thingName").is_none());

    c.subscribe(&["a/b", "x/#"]).await;
    let (topic, subscribed) = m.event_for("dev-1").await;
    assert_eq!(topic, "$aws/events/subscriptions/subscribed/dev-1");
    assert_eq!(subscribed["eventType"], "subscribed");
    assert_eq!(subscribed["topics"], json!(["a/b", "x/#"]));
    assert_eq!(subscribed["sessionIdentifier"], session_id.as_str());

    c.client.unsubscribe("a/b").await.unwrap();
    match c.next().await {
        Ok(Packet::UnsubAck(_)) => {}
        other => panic!("expected an UNSUBACK, got {other:?}"),
    }
    let (topic, unsubscribed) = m.event_for("dev-1").await;
    assert_eq!(topic, "$aws/events/subscriptions/unsubscribed/dev-1");
    assert_eq!(unsubscribed["topics"], json!(["a/b"]));

    c.client.disconnect().await.unwrap();
    let (topic, disconnected) = m.event_for("dev-1").await;
    assert_eq!(topic, "$aws/events/presence/disconnected/dev-1");
    assert_eq!(
        disconnected["disconnectReason"],
        "CLIENT_INITIATED_DISCONNECT"
    );
    assert_eq!(disconnected["clientInitiatedDisconnect"], true);
    assert_eq!(disconnected["versionNumber"], 0);
    assert_eq!(disconnected["sessionIdentifier"], session_id.as_str());
    assert!(disconnected.get("ipAddress").is_none());

    // A socket dropped without DISCONNECT.
    let stream = raw_client(&gw, "dev-2", 30).await;
    let (_, connected) = m.event_for("dev-2").await;
    assert_eq!(connected["eventType"], "connected");
    drop(stream);
    let (_, lost) = m.event_for("dev-2").await;
    assert_eq!(lost["eventType"], "disconnected");
    assert_eq!(lost["disconnectReason"], "CONNECTION_LOST");
    assert_eq!(lost["clientInitiatedDisconnect"], false);

    // The next connection of dev-1 gets the next version.
    let _again = connect(&gw, "dev-1", "admin").await;
    let (_, connected) = m.event_for("dev-1").await;
    assert_eq!(connected["versionNumber"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn a_second_connection_takes_over_the_client_id() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut first = connect(&gw, "dup", "admin").await;
    let (_, connected) = m.event_for("dup").await;
    let first_session = connected["sessionIdentifier"].clone();
    let mut second = connect(&gw, "dup", "admin").await;
    first.closed().await;
    let (_, disconnected) = m.event_for("dup").await;
    assert_eq!(disconnected["eventType"], "disconnected");
    assert_eq!(disconnected["disconnectReason"], "DUPLICATE_CLIENTID");
    assert_eq!(disconnected["sessionIdentifier"], first_session);
    let (_, connected) = m.event_for("dup").await;
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["versionNumber"], 1);
    // The new session works.
    assert_eq!(
        second.subscribe(&["t/1"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    second.publish("t/1", "hello").await;
    assert_eq!(second.publish_received().await.0, "t/1");
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_client_times_out() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut stream = raw_client(&gw, "quiet", 1).await;
    let (_, connected) = m.event_for("quiet").await;
    assert_eq!(connected["eventType"], "connected");
    let started = tokio::time::Instant::now();
    let (_, disconnected) = m.event_for("quiet").await;
    assert_eq!(disconnected["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The server closed the socket.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok());
    gw.stop().await;
}

#[tokio::test]
async fn shutdown_disconnects_sessions_with_server_initiated() {
    let gw = Gateway::start().await;
    let mut c = connect(&gw, "lim-stay", "limited").await;
    let bus = gw.bus.clone();
    let (watcher, mut rx) = bus.register(16);
    bus.subscribe(
        watcher,
        "$aws/events/presence/disconnected/#",
        herald_gateway::testing::bus::QoS::AtLeastOnce,
    )
    .unwrap();
    gw.stop().await;
    c.closed().await;
    let delivery = rx.try_recv().expect("the disconnected event is on the bus");
    let event: Value = serde_json::from_slice(&delivery.payload).unwrap();
    assert_eq!(event["clientId"], "lim-stay");
    assert_eq!(event["disconnectReason"], "SERVER_INITIATED_DISCONNECT");
}

#[tokio::test]
async fn many_deliveries_flow_through_router_pauses() {
    // More than rumqttd buffers for one link (200) before it pauses the link
    // and waits for a wake.
    const COUNT: usize = 1000;
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "lim-many", "limited").await;
    sub.subscribe(&["data/#"]).await;
    let publisher = connect(&gw, "pub-many", "admin").await;
    let sender = tokio::spawn(async move {
        for i in 0..COUNT {
            publisher
                .client
                .publish(format!("data/{i}"), QoS::AtMostOnce, false, vec![0u8; 100])
                .await
                .unwrap();
        }
        publisher
    });
    for i in 0..COUNT {
        let (topic, _) = sub.publish_received().await;
        assert_eq!(topic, format!("data/{i}"));
    }
    drop(sender.await.unwrap());
    gw.stop().await;
}

#[tokio::test]
async fn a_policy_change_that_denies_connect_ends_the_session() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "lim-revoked", "limited").await;
    let _ = m.event_for("lim-revoked").await; // connected
    // The `limited` policy is gone.
    gw.cache.apply(pb::ConfigUpdate {
        revision: 2,
        change: Some(config_update::Change::PolicyDeleted("limited".into())),
    });
    c.closed().await;
    let (_, event) = m.event_for("lim-revoked").await;
    assert_eq!(event["eventType"], "disconnected");
    assert_eq!(event["disconnectReason"], "AUTH_ERROR");
    gw.stop().await;
}

#[tokio::test]
async fn the_last_will_is_sent_on_connection_loss_only() {
    let gw = Gateway::start().await;
    let mut sub = connect(&gw, "will-watcher", "admin").await;
    sub.subscribe(&["wills/#"]).await;

    let mut graceful = options(&gw, "will-1", "admin");
    graceful.set_last_will(rumqttc::LastWill::new(
        "wills/1",
        "gone-1",
        QoS::AtMostOnce,
        false,
    ));
    let (graceful, _) = try_connect_with(graceful).await.unwrap();
    graceful.client.disconnect().await.unwrap();

    let mut lost = options(&gw, "will-2", "admin");
    lost.set_last_will(rumqttc::LastWill::new(
        "wills/2",
        "gone-2",
        QoS::AtMostOnce,
        false,
    ));
    let (lost, _) = try_connect_with(lost).await.unwrap();
    // Let the DISCONNECT of will-1 reach the gateway before will-2 drops.
    tokio::time::timeout(WAIT, async {
        let mut graceful = graceful;
        graceful.closed().await;
    })
    .await
    .unwrap();
    drop(lost);
    let (topic, payload) = sub.publish_received().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("wills/2", b"gone-2".as_slice())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_persistent_session_keeps_its_subscriptions() {
    let gw = Gateway::start().await;
    let mut opts = options(&gw, "keeper", "admin");
    opts.set_clean_session(false);
    let (mut first, present) = try_connect_with(opts.clone()).await.unwrap();
    assert!(!present);
    first.subscribe(&["kept/#"]).await;
    first.client.disconnect().await.unwrap();
    first.closed().await;

    let (mut second, present) = try_connect_with(opts).await.unwrap();
    assert!(present, "the session is resumed");
    let publisher = connect(&gw, "pub-kept", "admin").await;
    publisher.publish("kept/1", "still subscribed").await;
    let (topic, _) = second.publish_received().await;
    assert_eq!(topic, "kept/1");
    gw.stop().await;
}

#[tokio::test]
async fn a_persistent_session_gets_what_was_published_while_offline() {
    let gw = Gateway::start().await;
    let mut opts = options(&gw, "offline", "admin");
    opts.set_clean_session(false);
    let (mut first, _) = try_connect_with(opts.clone()).await.unwrap();
    first.subscribe(&["off/#"]).await;
    first.client.disconnect().await.unwrap();
    first.closed().await;
    let mut publisher = connect(&gw, "pub-off", "admin").await;
    publisher.subscribe(&["off/#"]).await;
    publisher.publish("off/1", "while away").await;
    // The publisher's own copy shows the router has the message.
    assert_eq!(publisher.publish_received().await.0, "off/1");

    let (mut second, present) = try_connect_with(opts).await.unwrap();
    assert!(present);
    let (topic, payload) = second.publish_received().await;
    assert_eq!(
        (topic.as_str(), payload.as_slice()),
        ("off/1", b"while away".as_slice())
    );
    gw.stop().await;
}

#[tokio::test]
async fn client_ids_over_128_bytes_are_refused() {
    let gw = Gateway::start().await;
    let long = "x".repeat(129);
    match try_connect(&gw, &long, "admin").await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::BadClientId)
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a connection"),
    }
    let _ok = connect(&gw, &"y".repeat(128), "admin").await;
    gw.stop().await;
}

/// A raw CONNECT without credentials, clean session, keep-alive 30 s.
fn raw_anonymous_connect(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn a_certificate_session_over_any_stream_ends_when_the_certificate_is_deactivated() {
    let gw = Gateway::start().await;
    let (watcher, mut events) = gw.bus.register(16);
    gw.bus
        .subscribe(
            watcher,
            "$aws/events/presence/#",
            herald_gateway::testing::bus::QoS::AtLeastOnce,
        )
        .unwrap();
    let (sessions, finished) = Sessions::new(gw.ctx.clone(), gw.auth.clone(), gw.shutdown.clone());
    // What the TLS listener hands over: a stream and the certificate.
    let (mut client, server) = tokio::io::duplex(4096);
    let principal = Principal::certificate(CERT_ID, res("cert", CERT_ID), Vec::new(), Vec::new());
    sessions.spawn(server, "192.0.2.7:4242".parse().unwrap(), Some(principal));
    drop(sessions);
    client
        .write_all(&raw_anonymous_connect("thing-1"))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, client.read_exact(&mut connack))
        .await
        .expect("a CONNACK in time")
        .unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);
    let mut next_event = async || -> Value {
        let delivery = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .unwrap();
        serde_json::from_slice(&delivery.payload).unwrap()
    };
    let connected = next_event().await;
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["principalIdentifier"], CERT_ID);
    assert_eq!(connected["ipAddress"], "192.0.2.7");

    gw.cache.apply(pb::ConfigUpdate {
        revision: 2,
        change: Some(config_update::Change::CertificatePut(certificate(
            CERT_ID,
            pb::CertificateStatus::Inactive,
        ))),
    });
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
        .await
        .expect("the session closes the stream")
        .unwrap();
    let disconnected = next_event().await;
    assert_eq!(disconnected["eventType"], "disconnected");
    assert_eq!(disconnected["disconnectReason"], "AUTH_ERROR");
    tokio::time::timeout(WAIT, finished.wait())
        .await
        .expect("the tracker sees the session end");
    gw.stop().await;
}

#[tokio::test]
async fn a_qos_2_publish_is_a_client_error() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "qos2", "admin").await;
    let _ = m.event_for("qos2").await; // connected
    c.client
        .publish("q/2", QoS::ExactlyOnce, false, b"x".to_vec())
        .await
        .unwrap();
    c.closed().await;
    let (_, event) = m.event_for("qos2").await;
    assert_eq!(event["disconnectReason"], "CLIENT_ERROR");
    gw.stop().await;
}

// ------------------------------------------------------------ $aws/things

impl Client {
    /// Waits for the PUBACK of `pkid`, skipping other packets.
    async fn puback(&mut self) -> u16 {
        loop {
            let packet = tokio::time::timeout(WAIT, self.incoming.recv())
                .await
                .expect("a PUBACK in time")
                .expect("event loop alive")
                .unwrap_or_else(|e| panic!("connection ended while waiting for a PUBACK: {e}"));
            if let Packet::PubAck(ack) = packet {
                return ack.pkid;
            }
        }
    }
}

#[tokio::test]
async fn aws_things_publishes_reach_explicit_filters_only() {
    let gw = Gateway::start().await;
    let mut shadow = connect(&gw, "shadow-sub", "admin").await;
    assert_eq!(
        shadow.subscribe(&["$aws/things/+/shadow/update"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut all = connect(&gw, "all-sub", "admin").await;
    assert_eq!(
        all.subscribe(&["#"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let mut publisher = connect(&gw, "shadow-pub", "admin").await;
    publisher
        .publish("$aws/things/lamp/shadow/update", "{\"state\":{}}")
        .await;
    assert!(
        publisher.puback().await > 0,
        "a QoS 1 publish gets its PUBACK"
    );
    assert_eq!(
        shadow.publish_received().await,
        (
            "$aws/things/lamp/shadow/update".to_owned(),
            b"{\"state\":{}}".to_vec()
        )
    );
    // `#` never matches a `$` topic: the marker comes first.
    publisher.publish("data/marker", "m").await;
    assert_eq!(all.publish_received().await.0, "data/marker");

    // RETAIN on a `$` topic is refused: the session ends with
    // CLIENT_ERROR and nothing is routed.
    let mut m = monitor(&gw).await;
    let retainer = connect(&gw, "shadow-retain", "admin").await;
    let _ = m.event_for("shadow-retain").await; // connected
    retainer
        .client
        .publish(
            "$aws/things/lamp/shadow/update",
            QoS::AtLeastOnce,
            true,
            b"retained?".to_vec(),
        )
        .await
        .unwrap();
    let (_, event) = m.event_for("shadow-retain").await;
    assert_eq!(event["disconnectReason"], "CLIENT_ERROR");
    publisher
        .publish("$aws/things/lamp/shadow/update", "after")
        .await;
    assert_eq!(shadow.publish_received().await.1, b"after".to_vec());
    gw.stop().await;
}

#[tokio::test]
async fn a_denied_aws_things_publish_disconnects_with_auth_error() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "lim-shadow", "limited").await;
    let _ = m.event_for("lim-shadow").await; // connected
    c.publish("$aws/things/lamp/shadow/update", "{}").await;
    c.closed().await;
    let (_, event) = m.event_for("lim-shadow").await;
    assert_eq!(event["eventType"], "disconnected");
    assert_eq!(event["disconnectReason"], "AUTH_ERROR");
    gw.stop().await;
}

#[tokio::test]
async fn other_dollar_topics_stay_forbidden() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    let mut c = connect(&gw, "dollar", "admin").await;
    let _ = m.event_for("dollar").await; // connected
    c.publish("$aws/rules/r", "{}").await;
    c.closed().await;
    let (_, event) = m.event_for("dollar").await;
    assert_eq!(event["disconnectReason"], "CLIENT_ERROR");
    gw.stop().await;
}

// ------------------------------------------------------------ things

/// A gateway whose sessions look things up in a real registry and whose
/// cache follows a real config service, with:
/// - certificates A (attached to `thing-a`) and B (attached to `thing-b`);
/// - `thing-a` of type `sensor` with `floor=3`, in group `child` whose
///   parent is `parent`; `thing-b` in no group; `thing-c` attached to
///   nothing;
/// - on both certificates, `thing-connect` (connect as
///   `client/${iot:Connection.Thing.ThingName}`) and `thing-vars`
///   (subscribe to `type/<type>` and, with `IsAttached`, `attr/<floor>`);
/// - `group-sub` (subscribe `group/*`) on `child`, `parent-sub`
///   (subscribe `parent/*`) on `parent`.
struct Things {
    herald: Herald,
    ctx: SessionContext,
    bus: Bus,
    cert_a: Principal,
    cert_b: Principal,
    shutdown: CancellationToken,
}

async fn create_thing(
    r: &mut Registry,
    name: &str,
    thing_type: Option<&str>,
    attributes: &[(&str, &str)],
) {
    r.create_thing(reg::CreateThingRequest {
        thing_name: name.into(),
        thing_type_name: thing_type.map(str::to_owned),
        attribute_payload: Some(reg::AttributePayload {
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            merge: false,
        }),
        billing_group_name: None,
    })
    .await
    .unwrap();
}

async fn attach_thing(r: &mut Registry, thing: &str, principal: &str) {
    r.attach_thing_principal(reg::AttachThingPrincipalRequest {
        thing_principal_type: String::new(),
        thing_name: thing.into(),
        principal: principal.into(),
    })
    .await
    .unwrap();
}

impl Things {
    async fn start() -> Things {
        let herald = Herald::start().await;
        let mut config = herald.config().await;
        let mut registry = herald.registry().await;

        let (a_id, a_arn, _) = create_cert(&mut config, true).await;
        let (b_id, b_arn, _) = create_cert(&mut config, true).await;
        let connect = json!({"Version": "2012-10-17", "Statement": [
            statement("iot:Connect", &res("client", "${iot:Connection.Thing.ThingName}")),
        ]});
        let vars = json!({"Version": "2012-10-17", "Statement": [
            statement(
                "iot:Subscribe",
                &res("topicfilter", "type/${iot:Connection.Thing.ThingTypeName}"),
            ),
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": res("topicfilter", "attr/${iot:Connection.Thing.Attributes[floor]}"),
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": ["true"]}},
            },
        ]});
        let subscribe = |filter: &str| {
            json!({"Version": "2012-10-17", "Statement": [
                statement("iot:Subscribe", &res("topicfilter", filter)),
            ]})
            .to_string()
        };
        create_policy(&mut config, "thing-connect", &connect.to_string()).await;
        create_policy(&mut config, "thing-vars", &vars.to_string()).await;
        create_policy(&mut config, "group-sub", &subscribe("group/*")).await;
        create_policy(&mut config, "parent-sub", &subscribe("parent/*")).await;
        for cert in [&a_arn, &b_arn] {
            attach(&mut config, "thing-connect", cert).await;
            attach(&mut config, "thing-vars", cert).await;
        }

        registry
            .create_thing_type(reg::CreateThingTypeRequest {
                thing_type_name: "sensor".into(),
                thing_type_properties: None,
                tags: vec![],
            })
            .await
            .unwrap();
        create_thing(&mut registry, "thing-a", Some("sensor"), &[("floor", "3")]).await;
        create_thing(&mut registry, "thing-b", None, &[]).await;
        create_thing(&mut registry, "thing-c", None, &[]).await;
        attach_thing(&mut registry, "thing-a", &a_arn).await;
        attach_thing(&mut registry, "thing-b", &b_arn).await;
        create_group(&mut registry, "parent").await;
        registry
            .create_thing_group(reg::CreateThingGroupRequest {
                thing_group_name: "child".into(),
                parent_group_name: Some("parent".into()),
                thing_group_properties: None,
                tags: vec![],
            })
            .await
            .unwrap();
        registry
            .add_thing_to_thing_group(reg::AddThingToThingGroupRequest {
                thing_group_name: Some("child".into()),
                thing_name: Some("thing-a".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        attach(&mut config, "group-sub", &group_arn("child")).await;
        attach(&mut config, "parent-sub", &group_arn("parent")).await;

        let shutdown = CancellationToken::new();
        let cache = ConfigCache::spawn(herald.proxied_config(), shutdown.clone());
        let revision = current_revision(&mut config).await;
        eventually(10, "the cache to catch up", || async {
            (cache.revision() >= revision).then_some(())
        })
        .await;
        let bus = Bus::new();
        let ctx = SessionContext::new(
            cache,
            bus.clone(),
            Arc::new(VersionCounter::new()),
            REGION,
            ACCOUNT,
            Router::spawn(&RouterSettings::default()),
            SessionSettings::default(),
        )
        .with_registry(registry);
        Things {
            herald,
            ctx,
            bus,
            cert_a: Principal::certificate(a_id, a_arn, Vec::new(), Vec::new()),
            cert_b: Principal::certificate(b_id, b_arn, Vec::new(), Vec::new()),
            shutdown,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.herald.stop().await;
    }
}

/// Connects `principal` as `client_id` over an in-memory stream (what the
/// TLS listener hands over); the stream and the CONNACK return code.
async fn certificate_connect(
    ctx: &SessionContext,
    shutdown: &CancellationToken,
    principal: &Principal,
    client_id: &str,
) -> (tokio::io::DuplexStream, u8) {
    let (sessions, _finished) = Sessions::new(
        ctx.clone(),
        password_authenticator(Vec::new()),
        shutdown.clone(),
    );
    let (mut client, server) = tokio::io::duplex(4096);
    sessions.spawn(
        server,
        "192.0.2.9:4242".parse().unwrap(),
        Some(principal.clone()),
    );
    client
        .write_all(&raw_anonymous_connect(client_id))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, client.read_exact(&mut connack))
        .await
        .expect("a CONNACK in time")
        .unwrap();
    assert_eq!(connack[..3], [0x20, 2, 0]);
    (client, connack[3])
}

/// Subscribes to `filter` at QoS 1 on a raw stream; the SUBACK code.
async fn raw_subscribe(stream: &mut tokio::io::DuplexStream, pkid: u16, filter: &str) -> u8 {
    let mut body = pkid.to_be_bytes().to_vec();
    body.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    body.extend_from_slice(filter.as_bytes());
    body.push(1);
    let mut packet = vec![0x82, body.len() as u8];
    packet.extend(body);
    stream.write_all(&packet).await.unwrap();
    let mut suback = [0u8; 5];
    tokio::time::timeout(WAIT, stream.read_exact(&mut suback))
        .await
        .expect("a SUBACK in time")
        .unwrap();
    let [0x90, 3, hi, lo, code] = suback else {
        panic!("expected a SUBACK, got {suback:?}");
    };
    assert_eq!(u16::from_be_bytes([hi, lo]), pkid);
    code
}

#[tokio::test]
async fn only_a_thing_attached_to_the_certificate_connects_under_its_thing_name() {
    let t = Things::start().await;
    let (watcher, mut events) = t.bus.register(16);
    t.bus
        .subscribe(
            watcher,
            "$aws/events/presence/#",
            herald_gateway::testing::bus::QoS::AtLeastOnce,
        )
        .unwrap();

    let (_a, code) = certificate_connect(&t.ctx, &t.shutdown, &t.cert_a, "thing-a").await;
    assert_eq!(code, 0, "the attached thing's client id connects");
    let delivery = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .unwrap();
    let connected: Value = serde_json::from_slice(&delivery.payload).unwrap();
    assert_eq!(connected["eventType"], "connected");
    assert_eq!(connected["clientId"], "thing-a");
    assert_eq!(connected["thingName"], "thing-a");

    // Not a thing; a thing attached to nothing; a thing attached to another
    // certificate.
    for (principal, client_id) in [
        (&t.cert_a, "not-a-thing"),
        (&t.cert_a, "thing-c"),
        (&t.cert_a, "thing-b"),
        (&t.cert_b, "thing-a"),
    ] {
        let (_s, code) = certificate_connect(&t.ctx, &t.shutdown, principal, client_id).await;
        assert_eq!(code, 5, "{client_id} as {} is not authorized", principal.id);
        let delivery = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .unwrap();
        let failed: Value = serde_json::from_slice(&delivery.payload).unwrap();
        assert_eq!(failed["eventType"], "connect_failed");
        assert_eq!(failed["clientId"], client_id);
        assert!(failed.get("thingName").is_none(), "{failed}");
    }
    t.stop().await;
}

#[tokio::test]
async fn thing_group_policies_and_thing_variables_apply_to_the_attached_things_connection() {
    let t = Things::start().await;
    let (mut a, code) = certificate_connect(&t.ctx, &t.shutdown, &t.cert_a, "thing-a").await;
    assert_eq!(code, 0);
    let (mut b, code) = certificate_connect(&t.ctx, &t.shutdown, &t.cert_b, "thing-b").await;
    assert_eq!(code, 0);
    // thing-a: its group's policy, the parent group's, and the thing's
    // type and attributes.
    assert_eq!(raw_subscribe(&mut a, 1, "group/x").await, 1);
    assert_eq!(raw_subscribe(&mut a, 2, "parent/x").await, 1);
    assert_eq!(raw_subscribe(&mut a, 3, "type/sensor").await, 1);
    assert_eq!(raw_subscribe(&mut a, 4, "attr/3").await, 1);
    assert_eq!(raw_subscribe(&mut a, 5, "attr/4").await, 0x80);
    // thing-b is in no group and has no type or attributes.
    assert_eq!(raw_subscribe(&mut b, 1, "group/x").await, 0x80);
    assert_eq!(raw_subscribe(&mut b, 2, "parent/x").await, 0x80);
    assert_eq!(raw_subscribe(&mut b, 3, "type/sensor").await, 0x80);
    assert_eq!(raw_subscribe(&mut b, 4, "attr/3").await, 0x80);
    t.stop().await;
}

#[tokio::test]
async fn an_unresponsive_registry_leaves_the_connection_without_a_thing() {
    let gw = Gateway::start().await;
    // Accepts TCP connections (the backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", silent.local_addr().unwrap()))
            .unwrap()
            .connect_lazy();
    let ctx = SessionContext::new(
        gw.cache.clone(),
        gw.bus.clone(),
        Arc::new(VersionCounter::new()),
        REGION,
        ACCOUNT,
        Router::spawn(&RouterSettings::default()),
        SessionSettings::default(),
    )
    .with_registry(
        herald_proto::registry::v1::registry_client::RegistryClient::new(
            herald_gateway::testing::partition::tagged(channel, None),
        ),
    );
    let (watcher, mut events) = gw.bus.register(16);
    gw.bus
        .subscribe(
            watcher,
            "$aws/events/presence/#",
            herald_gateway::testing::bus::QoS::AtLeastOnce,
        )
        .unwrap();
    let principal = Principal::certificate(CERT_ID, res("cert", CERT_ID), Vec::new(), Vec::new());
    let started = tokio::time::Instant::now();
    let (_s, code) = certificate_connect(&ctx, &gw.shutdown, &principal, "thing-1").await;
    assert_eq!(code, 0);
    assert!(started.elapsed() < WAIT);
    let delivery = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .unwrap();
    let connected: Value = serde_json::from_slice(&delivery.payload).unwrap();
    assert_eq!(connected["eventType"], "connected");
    assert!(connected.get("thingName").is_none(), "{connected}");
    drop(silent);
    gw.stop().await;
}
