//! Strings and fixed headers MQTT forbids, sent as raw bytes over TCP: a
//! client id holding U+0000 or a control character gets CONNACK 2 (MQTT 5:
//! 0x85) and never names a lifecycle topic; such a topic, filter, username
//! or MQTT 5 property string is a malformed packet that closes the
//! connection (MQTT 5: DISCONNECT 0x81); a will with such a topic refuses
//! the CONNECT; SUBSCRIBE, UNSUBSCRIBE and PUBLISH with wrong fixed-header
//! flags close the connection (MQTT 3.1.1 §1.5.3, §2.2.2, §3.8.1, §3.10.1;
//! MQTT 5 §1.5.4, §2.1.3).

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mqtt::{Client, Gateway, connect};
use crate::support::WAIT;

// ------------------------------------------------------------ raw packets

/// Appends an MQTT string (or binary data): two length bytes, then `s`.
pub(crate) fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&u16::try_from(s.len()).unwrap().to_be_bytes());
    buf.extend_from_slice(s);
}

/// A packet: `byte1`, the remaining length, `body`.
pub(crate) fn packet(byte1: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![byte1];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A CONNECT of protocol `level` (4: MQTT 3.1.1, 5: MQTT 5) for the
/// password principal `user` (password `{user}-pw`), without properties.
pub(crate) fn connect_packet(
    level: u8,
    client_id: &[u8],
    user: &[u8],
    will_topic: Option<&[u8]>,
    keep_alive: u16,
    clean_session: bool,
) -> Vec<u8> {
    let mut flags = 0xC0;
    if clean_session {
        flags |= 0x02;
    }
    if will_topic.is_some() {
        flags |= 0x04;
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, flags];
    body.extend_from_slice(&keep_alive.to_be_bytes());
    let v5 = level == 5;
    if v5 {
        body.push(0);
    }
    put_str(&mut body, client_id);
    if let Some(topic) = will_topic {
        if v5 {
            body.push(0);
        }
        put_str(&mut body, topic);
        put_str(&mut body, b"gone");
    }
    put_str(&mut body, user);
    let mut password = user.to_vec();
    password.extend_from_slice(b"-pw");
    put_str(&mut body, &password);
    packet(0x10, &body)
}

/// Reads one packet; `None` when the server closed the connection first.
pub(crate) async fn read_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
    tokio::time::timeout(WAIT, async {
        let mut out = vec![stream.read_u8().await.ok()?];
        let mut len = 0usize;
        for shift in 0..4 {
            let byte = stream.read_u8().await.ok()?;
            out.push(byte);
            len |= usize::from(byte & 0x7F) << (7 * shift);
            if byte & 0x80 == 0 {
                break;
            }
        }
        let start = out.len();
        out.resize(start + len, 0);
        stream.read_exact(&mut out[start..]).await.ok()?;
        Some(out)
    })
    .await
    .expect("a packet, or the connection closed, in time")
}

/// Asserts that the server closes the connection without sending anything
/// more.
pub(crate) async fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{what}: the server should close the connection"));
    // A reset (the server closed with our bytes unread) is a close too.
    if read.is_ok() {
        assert!(rest.is_empty(), "{what}: nothing more, got {rest:02x?}");
    }
}

/// A connection of `admin` that has its CONNACK "accepted".
pub(crate) async fn raw_admin(gw: &Gateway, level: u8, client_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&connect_packet(
            level,
            client_id.as_bytes(),
            b"admin",
            None,
            30,
            true,
        ))
        .await
        .unwrap();
    let ack = read_packet(&mut stream).await.expect("a CONNACK");
    assert_eq!(ack[0], 0x20, "{ack:02x?}");
    assert_eq!(ack[3], 0, "CONNACK accepted: {ack:02x?}");
    stream
}

/// Sends `bytes` on a new connection of `admin` and asserts that the
/// server closes it: MQTT 3.1.1 without an answer, MQTT 5 after DISCONNECT
/// 0x81 (malformed packet).
async fn assert_malformed(gw: &Gateway, level: u8, client_id: &str, bytes: &[u8]) {
    let mut stream = raw_admin(gw, level, client_id).await;
    stream.write_all(bytes).await.unwrap();
    if level == 5 {
        assert_eq!(
            read_packet(&mut stream).await.as_deref(),
            Some(&[0xE0, 2, 0x81, 0][..]),
            "{client_id}: DISCONNECT 0x81"
        );
    }
    assert_closed(&mut stream, client_id).await;
}

/// A SUBSCRIBE (packet id 1, QoS 1) of `filter` with `byte1`; MQTT 5 with
/// empty properties.
fn subscribe(byte1: u8, filter: &[u8], v5: bool) -> Vec<u8> {
    let mut body = vec![0, 1];
    if v5 {
        body.push(0);
    }
    put_str(&mut body, filter);
    body.push(1);
    packet(byte1, &body)
}

/// An UNSUBSCRIBE (packet id 1) of `filter` with `byte1`.
fn unsubscribe(byte1: u8, filter: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1];
    put_str(&mut body, filter);
    packet(byte1, &body)
}

/// A QoS 0 MQTT 3.1.1 PUBLISH on `topic` with `byte1`.
fn publish(byte1: u8, topic: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic);
    body.extend_from_slice(b"payload");
    packet(byte1, &body)
}

/// A watcher of every lifecycle event.
async fn watcher(gw: &Gateway, client_id: &str) -> Client {
    let mut w = connect(gw, client_id, "admin").await;
    w.subscribe(&["$aws/events/#"]).await;
    w
}

/// Connects `marker` and reads `watcher`'s events up to its `connected`
/// one, asserting that none before it names a client id or topic holding a
/// character MQTT forbids.
async fn no_bad_event_before(gw: &Gateway, watcher: &mut Client, marker: &str) {
    let _marker = connect(gw, marker, "admin").await;
    loop {
        let (topic, payload) = watcher.publish_received().await;
        assert!(
            !topic.chars().any(char::is_control),
            "an event on {topic:?}"
        );
        let value: Value = serde_json::from_slice(&payload).unwrap();
        let client_id = value["clientId"].as_str().unwrap_or_default();
        assert!(
            !client_id.chars().any(char::is_control),
            "an event about {client_id:?}"
        );
        if client_id == marker && value["eventType"] == "connected" {
            return;
        }
    }
}

// ------------------------------------------------------------ tests

#[tokio::test]
async fn a_client_id_mqtt_forbids_is_refused_and_names_no_event() {
    let gw = Gateway::start().await;
    let mut w = watcher(&gw, "watch-ids").await;
    for (level, client_id, code) in [
        (4, &b"evil\0id"[..], 0x02),
        (4, b"bell\x07id", 0x02),
        (4, b"del\x7f", 0x02),
        (4, "c1\u{85}".as_bytes(), 0x02),
        (4, "nonchar\u{ffff}".as_bytes(), 0x02),
        (5, b"evil\0id5", 0x85),
        (5, b"tab\tid5", 0x85),
    ] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(&connect_packet(level, client_id, b"admin", None, 30, true))
            .await
            .unwrap();
        let ack = read_packet(&mut stream).await.expect("a CONNACK");
        let what = String::from_utf8_lossy(client_id).into_owned();
        if level == 4 {
            assert_eq!(ack, [0x20, 2, 0, code], "{what:?}");
        } else {
            assert_eq!((ack[0], ack[3]), (0x20, code), "{what:?}: {ack:02x?}");
        }
        assert_closed(&mut stream, &what).await;
    }
    // A client id that is not UTF-8 at all is refused too.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&connect_packet(
            4,
            b"\xed\xa0\x80",
            b"admin",
            None,
            30,
            true,
        ))
        .await
        .unwrap();
    assert_ne!(
        read_packet(&mut stream).await.map(|ack| ack[3]),
        Some(0),
        "a surrogate in the client id"
    );
    no_bad_event_before(&gw, &mut w, "marker-ids").await;
    gw.stop().await;
}

#[tokio::test]
async fn topics_filters_and_usernames_mqtt_forbids_close_the_connection() {
    let gw = Gateway::start().await;
    assert_malformed(&gw, 4, "s-sub", &subscribe(0x82, b"a/\0", false)).await;
    assert_malformed(&gw, 4, "s-sub2", &subscribe(0x82, b"a/\x1b[2J", false)).await;
    assert_malformed(&gw, 4, "s-pub", &publish(0x30, b"a\0b")).await;
    assert_malformed(&gw, 4, "s-unsub", &unsubscribe(0xA2, b"a/\x01")).await;
    assert_malformed(&gw, 5, "s-sub5", &subscribe(0x82, b"a/\0", true)).await;
    // A username with U+0000: closed without a CONNACK.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&connect_packet(4, b"s-user", b"adm\0in", None, 30, true))
        .await
        .unwrap();
    assert_eq!(read_packet(&mut stream).await, None, "no CONNACK");
    // An MQTT 5 PUBLISH on a topic holding U+0000.
    let mut body = Vec::new();
    put_str(&mut body, b"data/\0");
    body.push(0);
    body.extend_from_slice(b"payload");
    assert_malformed(&gw, 5, "s-pub5", &packet(0x30, &body)).await;
    // An MQTT 5 PUBLISH whose user property holds U+0000.
    let mut body = Vec::new();
    put_str(&mut body, b"data/x");
    let mut property = vec![0x26];
    put_str(&mut property, b"key");
    put_str(&mut property, b"va\0lue");
    body.push(u8::try_from(property.len()).unwrap());
    body.extend(property);
    body.extend_from_slice(b"payload");
    assert_malformed(&gw, 5, "s-prop5", &packet(0x30, &body)).await;
    // The same packets with good strings are served.
    let mut stream = raw_admin(&gw, 4, "s-good").await;
    stream
        .write_all(&subscribe(0x82, b"a/\xc3\xa9", false))
        .await
        .unwrap();
    assert_eq!(
        read_packet(&mut stream).await.as_deref(),
        Some(&[0x90, 3, 0, 1, 1][..]),
        "SUBACK"
    );
    gw.stop().await;
}

#[tokio::test]
async fn wrong_fixed_header_flags_close_the_connection() {
    let gw = Gateway::start().await;
    // SUBSCRIBE and UNSUBSCRIBE must have flags 0b0010.
    assert_malformed(&gw, 4, "f-sub", &subscribe(0x80, b"a/b", false)).await;
    assert_malformed(&gw, 4, "f-sub8", &subscribe(0x8A, b"a/b", false)).await;
    assert_malformed(&gw, 4, "f-unsub", &unsubscribe(0xA0, b"a/b")).await;
    assert_malformed(&gw, 5, "f-sub5", &subscribe(0x80, b"a/b", true)).await;
    // PUBLISH with QoS 3, or DUP at QoS 0.
    assert_malformed(&gw, 4, "f-qos3", &publish(0x36, b"a/b")).await;
    assert_malformed(&gw, 4, "f-dup0", &publish(0x38, b"a/b")).await;
    // PUBREL must have 0b0010, PINGREQ and DISCONNECT 0.
    assert_malformed(&gw, 4, "f-pubrel", &packet(0x60, &[0, 1])).await;
    assert_malformed(&gw, 4, "f-ping", &[0xC1, 0]).await;
    assert_malformed(&gw, 4, "f-disc", &[0xE8, 0]).await;
    // With the right flags, the SUBSCRIBE is answered.
    let mut stream = raw_admin(&gw, 4, "f-good").await;
    stream
        .write_all(&subscribe(0x82, b"a/b", false))
        .await
        .unwrap();
    assert_eq!(
        read_packet(&mut stream).await.as_deref(),
        Some(&[0x90, 3, 0, 1, 1][..]),
        "SUBACK"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_will_with_a_topic_mqtt_forbids_refuses_the_connect() {
    let gw = Gateway::start().await;
    let mut w = watcher(&gw, "watch-wills").await;
    // MQTT 3.1.1: a malformed CONNECT, closed without a CONNACK.
    for topic in [&b"wills/\0"[..], b"wills/\x07", b"\xff\xfe"] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(&connect_packet(
                4,
                b"will-bad",
                b"admin",
                Some(topic),
                30,
                true,
            ))
            .await
            .unwrap();
        assert_eq!(read_packet(&mut stream).await, None, "{topic:02x?}");
    }
    // MQTT 5: CONNACK 0x90 (topic name invalid), for a wildcard too.
    for topic in [&b"wills/\0"[..], b"wills/#"] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(&connect_packet(
                5,
                b"will-bad5",
                b"admin",
                Some(topic),
                30,
                true,
            ))
            .await
            .unwrap();
        let ack = read_packet(&mut stream).await.expect("a CONNACK");
        assert_eq!((ack[0], ack[3]), (0x20, 0x90), "{topic:02x?}: {ack:02x?}");
        assert_closed(&mut stream, "will-bad5").await;
    }
    // None connected.
    let _marker = connect(&gw, "marker-wills", "admin").await;
    loop {
        let (_, payload) = w.publish_received().await;
        let value: Value = serde_json::from_slice(&payload).unwrap();
        assert!(
            !(value["eventType"] == "connected"
                && value["clientId"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("will-bad"))),
            "{value}"
        );
        if value["clientId"] == "marker-wills" {
            break;
        }
    }
    gw.stop().await;
}
