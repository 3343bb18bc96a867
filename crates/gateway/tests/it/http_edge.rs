//! The HTTP listener's edges, as a client would hit them with raw bytes: a
//! flood of idle connections beyond the cap, HTTP/2 prior knowledge, a
//! lowercase method, a head, a URI or a body too large.

use std::time::Duration;

use herald_gateway::{Listeners, Settings};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::Herald;

struct Gateway {
    http: std::net::SocketAddr,
    mqtt: std::net::SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(herald: &Herald, tweak: impl FnOnce(&mut Settings)) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_test(herald.registry_url(), herald.config_url());
    settings.data_dir = dir.path().to_path_buf();
    tweak(&mut settings);
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners = Listeners {
        http: bind().await.unwrap(),
        mqtt: bind().await.unwrap(),
        mqtt_tls: bind().await.unwrap(),
    };
    let (http, mqtt) = (
        listeners.http.local_addr().unwrap(),
        listeners.mqtt.local_addr().unwrap(),
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(herald_gateway::run(settings, listeners, shutdown.clone()));
    Gateway {
        http,
        mqtt,
        shutdown,
        _dir: dir,
    }
}

/// Sends `request` on a new connection and reads the answer until close or
/// a few seconds.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    exchange_within(addr, request, Duration::from_secs(5)).await
}

/// [`exchange`], reading the answer for up to `wait`.
async fn exchange_within(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn a_flood_of_idle_connections_beyond_the_cap_starves_no_one() {
    let herald = Herald::start().await;
    let gateway = start(&herald, |s| {
        s.http.max_connections = 20;
        s.http.header_read_timeout_ms = 1_000;
    })
    .await;
    // 60 idle connections, reconnected as soon as the server closes them.
    let flood_stop = CancellationToken::new();
    for _ in 0..60 {
        let (addr, stop) = (gateway.http, flood_stop.clone());
        tokio::spawn(async move {
            for _ in 0..100 {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    return;
                };
                let mut buf = [0u8; 64];
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = stream.read(&mut buf) => {}
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // let the flood fill the cap
    // An HTTP request is still answered by the API (unsigned: 403 in AWS's shape)...
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        exchange(
            gateway.http,
            b"GET /things HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("answered while the flood holds the cap");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.contains("MissingAuthenticationTokenException"),
        "{text}"
    );
    // ...and the MQTT listener, with its own cap, answers CONNECT with a CONNACK.
    let mut mqtt = TcpStream::connect(gateway.mqtt).await.unwrap();
    let connect: &[u8] = &[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 1, b'c',
    ];
    mqtt.write_all(connect).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), mqtt.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .unwrap();
    assert_eq!(connack[0], 0x20, "{connack:?}");
    flood_stop.cancel();
    gateway.shutdown.cancel();
    herald.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_lowercase_methods_and_huge_headers_get_clean_answers() {
    let herald = Herald::start().await;
    let gateway = start(&herald, |_| {}).await;
    // HTTP/2 prior knowledge: SETTINGS then GOAWAY HTTP_1_1_REQUIRED.
    let answer = exchange(gateway.http, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert_eq!(answer.get(3), Some(&4), "{answer:?}");
    assert_eq!(answer.get(12), Some(&7), "{answer:?}");
    assert_eq!(answer.last(), Some(&0x0d), "{answer:?}");
    // A lowercase method is malformed.
    let answer = exchange(
        gateway.http,
        b"get /things HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(text.starts_with("http/1.1 400"), "{text}");
    assert!(
        text.contains("x-amzn-errortype: badrequestexception"),
        "{text}"
    );
    assert!(text.contains("x-amzn-requestid"), "{text}");
    // Headers too large, and a request line hyper cannot parse: AWS's shape.
    let mut huge = b"GET /things HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 600_000));
    huge.extend_from_slice(b"\r\n\r\n");
    // A URI too long, and a body larger than any API takes (refused from its
    // Content-Length, before a byte of it is read).
    let mut long_uri = b"GET /things?x=".to_vec();
    long_uri.extend(std::iter::repeat_n(b'a', 70_000));
    long_uri.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
    let too_large =
        b"POST /things/big HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n".to_vec();
    for (request, status) in [
        (huge, "431"),
        (b"GET\0 / HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (long_uri, "414"),
        (too_large, "413"),
    ] {
        let answer = exchange(gateway.http, &request).await;
        let text = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(text.starts_with(&format!("http/1.1 {status}")), "{text}");
        assert!(text.contains("x-amzn-errortype: "), "{text}");
        assert!(text.contains("x-amzn-requestid: "), "{text}");
        assert!(text.contains("\"message\""), "{text}");
    }
    gateway.shutdown.cancel();
    herald.stop().await;
}

/// A client that pipelines requests and never reads the answers stalls the
/// server's writes; after `http.write_timeout_ms` without progress its
/// connection is closed, and its place under the cap goes to the next
/// client.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_place() {
    let herald = Herald::start().await;
    let gateway = start(&herald, |s| {
        s.http.max_connections = 1;
        s.http.write_timeout_ms = 300;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut greedy = socket.connect(gateway.http).await.unwrap();
    let writer = tokio::spawn(async move {
        let request = b"GET /things HTTP/1.1\r\nhost: x\r\n\r\n";
        for _ in 0..20_000 {
            if greedy.write_all(request).await.is_err() {
                return true; // closed by the server
            }
        }
        // Everything was written: hold the connection, reading nothing,
        // until the test ends (it aborts this task).
        std::future::pending::<()>().await;
        drop(greedy);
        false
    });
    // The greedy client holds the only place until its writes time out;
    // then this one is answered. On a busy machine answering the greedy
    // client until its buffers fill takes seconds: the wait is generous.
    let answer = exchange_within(
        gateway.http,
        b"GET /things HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "answered once the stalled connection was closed: {text:?}"
    );
    writer.abort();
    gateway.shutdown.cancel();
    herald.stop().await;
}
