//! Session limits, through raw MQTT over TCP: a subscriber that stops
//! reading is closed after 1.5 × its keep-alive even though it keeps
//! pinging; keep-alives are clamped to AWS IoT's 30–1200 s (MQTT 5 clients
//! are told in CONNACK); a principal holds at most
//! `max_persistent_sessions_per_principal` persistent sessions.

use std::time::Duration;

use herald_gateway::testing::mqtt::SessionSettings;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::mqtt::{Gateway, monitor, test_settings};
use crate::mqtt_strings::{assert_closed, connect_packet, packet, put_str, raw_admin, read_packet};
use crate::support::WAIT;

/// The Server Keep Alive property (0x13) of an MQTT 5 CONNACK, if any.
fn server_keep_alive(ack: &[u8]) -> Option<u16> {
    // Fixed header (short), flags, reason code, property length (short).
    assert!(ack[1] < 128 && ack[4] < 128, "{ack:02x?}");
    let mut props = &ack[5..5 + usize::from(ack[4])];
    while let Some((&id, rest)) = props.split_first() {
        let len = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            other => panic!("unexpected property {other:#x} in {ack:02x?}"),
        };
        if id == 0x13 {
            return Some(u16::from_be_bytes([rest[0], rest[1]]));
        }
        props = &rest[len..];
    }
    None
}

/// Connects raw and returns the stream and its CONNACK.
async fn raw_connect(
    gw: &Gateway,
    level: u8,
    client_id: &str,
    user: &str,
    keep_alive: u16,
    clean_session: bool,
) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(&connect_packet(
            level,
            client_id.as_bytes(),
            user.as_bytes(),
            None,
            keep_alive,
            clean_session,
        ))
        .await
        .unwrap();
    let ack = read_packet(&mut stream).await.expect("a CONNACK");
    assert_eq!(ack[0], 0x20, "{ack:02x?}");
    (stream, ack)
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_disconnected() {
    let gw = Gateway::start().await;
    let mut m = monitor(&gw).await;
    // Keep-alive 1 s (the test gateway's shortest): closed after 1.5 s
    // without progress.
    let (mut slow, ack) = raw_connect(&gw, 4, "slow-1", "admin", 1, true).await;
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let mut body = vec![0, 1];
    put_str(&mut body, b"big/#");
    body.push(0);
    slow.write_all(&packet(0x82, &body)).await.unwrap();
    assert_eq!(
        read_packet(&mut slow).await.as_deref(),
        Some(&[0x90, 3, 0, 1, 0][..])
    );
    let (_, connected) = m.event_for("slow-1").await;
    assert_eq!(connected["eventType"], "connected");
    // It keeps sending PINGREQ but reads nothing more.
    let (_slow_rd, mut slow_wr) = slow.into_split();
    let pinger = tokio::spawn(async move {
        for _ in 0..100 {
            if slow_wr.write_all(&[0xC0, 0]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    // Enough to fill the socket buffers: at most 400 × 100 KB.
    let mut publisher = raw_admin(&gw, 4, "pub-big").await;
    let flood = tokio::spawn(async move {
        let mut body = Vec::new();
        put_str(&mut body, b"big/data");
        body.resize(body.len() + 100 * 1024, b'x');
        let publish = packet(0x30, &body);
        for _ in 0..400 {
            if publisher.write_all(&publish).await.is_err() {
                return;
            }
        }
    });
    let started = tokio::time::Instant::now();
    // (Its subscription event comes first.)
    let disconnected = tokio::time::timeout(3 * WAIT, async {
        loop {
            let (_, event) = m.event_for("slow-1").await;
            if event["eventType"] == "disconnected" {
                return event;
            }
        }
    })
    .await
    .expect("the stuck subscriber is disconnected");
    assert_eq!(disconnected["disconnectReason"], "MQTT_KEEP_ALIVE_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    pinger.abort();
    flood.abort();
    gw.stop().await;
}

#[tokio::test]
async fn keep_alives_are_clamped_as_on_aws() {
    let gw = Gateway::start_with(SessionSettings::default()).await;
    for (asked, used) in [
        (0, Some(1200)),
        (5000, Some(1200)),
        (5, Some(30)),
        (60, None),
    ] {
        let (mut stream, ack) = raw_connect(&gw, 5, "ka-5", "admin", asked, true).await;
        assert_eq!(ack[3], 0, "{ack:02x?}");
        assert_eq!(server_keep_alive(&ack), used, "asked {asked}: {ack:02x?}");
        stream.write_all(&[0xE0, 0]).await.unwrap();
        assert_closed(&mut stream, "ka-5").await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_principal_holds_a_bounded_number_of_persistent_sessions() {
    let gw = Gateway::start_with(SessionSettings {
        max_persistent_sessions_per_principal: 2,
        ..test_settings()
    })
    .await;
    let (p1, ack) = raw_connect(&gw, 4, "p-1", "admin", 30, false).await;
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let (_p2, ack) = raw_connect(&gw, 4, "p-2", "admin", 30, false).await;
    assert_eq!(ack, [0x20, 2, 0, 0]);
    // A third: MQTT 3.1.1 "not authorized", MQTT 5 "quota exceeded".
    let (mut p3, ack) = raw_connect(&gw, 4, "p-3", "admin", 30, false).await;
    assert_eq!(ack, [0x20, 2, 0, 5]);
    assert_closed(&mut p3, "p-3").await;
    let (mut p3, ack) = raw_connect(&gw, 5, "p-3", "admin", 30, false).await;
    assert_eq!(ack[3], 0x97, "{ack:02x?}");
    assert_closed(&mut p3, "p-3 (MQTT 5)").await;
    // An away session still counts, and resumes.
    drop(p1);
    herald_testkit::eventually(10, "p-1 away", || async {
        (!gw.ctx.is_connected("p-1")).then_some(())
    })
    .await;
    let (_p3, ack) = raw_connect(&gw, 4, "p-3", "admin", 30, false).await;
    assert_eq!(ack, [0x20, 2, 0, 5]);
    assert!(!gw.ctx.away_sessions().contains(&"p-3".to_owned()));
    let (_p1, ack) = raw_connect(&gw, 4, "p-1", "admin", 30, false).await;
    assert_eq!(ack, [0x20, 2, 1, 0], "resumed, session present");
    // Clean sessions and other principals are not limited by it.
    let (_c, ack) = raw_connect(&gw, 4, "p-4", "admin", 30, true).await;
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let (_w, ack) = raw_connect(&gw, 4, "w-1", "writer", 30, false).await;
    assert_eq!(ack, [0x20, 2, 0, 0]);
    gw.stop().await;
}
