//! The MQTT wire: the only module that touches packet bytes and rumqttd's
//! codec types. [`decode`] reads one packet (reserved fixed-header flags,
//! rumqttd's codec of the connection's version, the MQTT 5 packets that
//! codec can't take, then every string as MQTT 3.1.1 and MQTT 5 require);
//! [`Wire`] is a connection's buffered reader and writer; CONNACK and
//! PUBLISH are encoded here.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::bytes::{Buf as _, BufMut, BytesMut};

use super::lifecycle::DisconnectReason;
use crate::bus::QoS;
use crate::bus::topic;
use wire::{Packet, Protocol as _, V4, V5};

/// The MQTT packet types and the v4 (MQTT 3.1.1) and v5 (MQTT 5) codecs,
/// for the session. Both codecs read and write the same [`Packet`] enum;
/// the v5 one fills and writes the properties and reason codes.
///
/// rumqttd's v5 codec has gaps the session works around (as of rumqttd
/// 0.20): its reader panics on a CONNACK or UNSUBACK and
/// fails on a DISCONNECT that has a reason code but no properties, and its
/// writer gets the length of such a DISCONNECT wrong.
pub(crate) mod wire {
    pub(crate) use rumqttd::protocol::v4::V4;
    pub(crate) use rumqttd::protocol::v5::V5;
    pub(crate) use rumqttd::protocol::{
        ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, Error,
        LastWill, LastWillProperties, Packet, PingResp, Protocol, PubAck, PubAckReason, Publish,
        PublishProperties, QoS, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, UnsubAckReason,
        Unsubscribe,
    };
}

/// How long closing a connection may wait for the client to read.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The MQTT version a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5 (protocol level 5; also used to answer higher levels).
    V5,
}

/// MQTT 5 reason codes the session writes itself (DISCONNECT).
pub(super) mod reason_code {
    pub(in crate::mqtt) const UNSPECIFIED_ERROR: u8 = 0x80;
    pub(in crate::mqtt) const MALFORMED_PACKET: u8 = 0x81;
    pub(in crate::mqtt) const PROTOCOL_ERROR: u8 = 0x82;
    pub(in crate::mqtt) const NOT_AUTHORIZED: u8 = 0x87;
    pub(in crate::mqtt) const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub(in crate::mqtt) const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub(in crate::mqtt) const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub(in crate::mqtt) const TOPIC_NAME_INVALID: u8 = 0x90;
    pub(in crate::mqtt) const PACKET_TOO_LARGE: u8 = 0x95;
    pub(in crate::mqtt) const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub(in crate::mqtt) const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub(in crate::mqtt) const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub(in crate::mqtt) const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
}

/// The reason code of the DISCONNECT an MQTT 5 client is sent when the
/// server ends its session for `reason`; none when the client ended it or
/// the connection is gone.
pub(super) fn v5_disconnect_code(reason: DisconnectReason) -> Option<u8> {
    use reason_code as rc;
    match reason {
        DisconnectReason::AuthError | DisconnectReason::ForbiddenAccess => Some(rc::NOT_AUTHORIZED),
        DisconnectReason::ClientError => Some(rc::PROTOCOL_ERROR),
        DisconnectReason::DuplicateClientid => Some(rc::SESSION_TAKEN_OVER),
        DisconnectReason::MqttKeepAliveTimeout => Some(rc::KEEP_ALIVE_TIMEOUT),
        DisconnectReason::ServerError => Some(rc::UNSPECIFIED_ERROR),
        DisconnectReason::ServerInitiatedDisconnect => Some(rc::SERVER_SHUTTING_DOWN),
        DisconnectReason::ApiInitiatedDisconnect => Some(rc::ADMINISTRATIVE_ACTION),
        DisconnectReason::Throttled => Some(rc::MESSAGE_RATE_TOO_HIGH),
        DisconnectReason::WebsocketTtlExpiration | DisconnectReason::CustomauthTtlExpiration => {
            Some(rc::MAXIMUM_CONNECT_TIME)
        }
        DisconnectReason::ClientInitiatedDisconnect | DisconnectReason::ConnectionLost => None,
    }
}

/// What the start of a connection says about its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectPeek {
    /// Not enough bytes yet.
    More,
    /// A CONNECT with this protocol level.
    Level(u8),
    /// Not a CONNECT (the codec will say what is wrong).
    Other,
}

/// The protocol level of the CONNECT at the start of `buf`: the byte after
/// the fixed header and the protocol name.
pub(super) fn peek_connect_level(buf: &[u8]) -> ConnectPeek {
    let Some(&first) = buf.first() else {
        return ConnectPeek::More;
    };
    if first != 0x10 {
        return ConnectPeek::Other;
    }
    // The remaining length: one to four bytes.
    let mut at = 1;
    loop {
        let Some(&byte) = buf.get(at) else {
            return ConnectPeek::More;
        };
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at == 5 {
            return ConnectPeek::Other;
        }
    }
    let (Some(&hi), Some(&lo)) = (buf.get(at), buf.get(at + 1)) else {
        return ConnectPeek::More;
    };
    let name_len = usize::from(u16::from_be_bytes([hi, lo]));
    if name_len > 16 {
        return ConnectPeek::Other;
    }
    match buf.get(at + 2 + name_len) {
        Some(&level) => ConnectPeek::Level(level),
        None => ConnectPeek::More,
    }
}

/// Reads, writes and frames MQTT 3.1.1 or MQTT 5 packets.
pub(super) struct Wire<S> {
    pub(super) rd: ReadHalf<S>,
    pub(super) wr: WriteHalf<S>,
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: BytesMut,
    pub(super) max_packet_size: usize,
    /// Set from the CONNECT by [`Wire::read_connect`].
    pub(super) version: Version,
    /// PUBLISH packets queued since [`Wire::take_queued_publishes`] last
    /// counted them (the session reports them per flush, not per message).
    pub(super) queued_publishes: u32,
}

/// A framing failure.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket closed or failed.
    Closed,
    /// The client sent something that is not MQTT of its version.
    Protocol(wire::Error),
    /// A malformed packet rumqttd's codecs let through: reserved
    /// fixed-header flags that are wrong, or a string MQTT forbids. The
    /// connection is closed (MQTT 3.1.1 §4.8, MQTT 5 §4.13: DISCONNECT 0x81).
    Malformed(&'static str),
    /// A CONNECT refused for what it holds (a client id or will topic MQTT
    /// forbids): the CONNACK it gets.
    Refused(ConnackCode),
}

/// Decodes the packet at the start of `buf`, if a whole one is there. This
/// is the whole decode path of a connection: the fixed header's reserved
/// flags, rumqttd's codec of `version` and the MQTT 5 packets it can't
/// take, then the strings of the packet (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4).
/// It never panics, whatever `buf` holds.
pub(crate) fn decode(
    version: Version,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Packet>, ReadError> {
    let Some(&byte1) = buf.first() else {
        return Ok(None);
    };
    check_flags(byte1)?;
    let read = match version {
        Version::V311 => V4.read_mut(buf, max_packet_size),
        Version::V5 => {
            if let Some(read) = decode_v5_gaps(buf) {
                return read;
            }
            V5.read_mut(buf, max_packet_size)
        }
    };
    match read {
        Ok(packet) => {
            check_strings(&packet)?;
            Ok(Some(packet))
        }
        Err(wire::Error::InsufficientBytes(_)) => Ok(None),
        Err(e) => Err(ReadError::Protocol(e)),
    }
}

/// The fixed header's flags (the low four bits of the first byte) a
/// client's packet must have: 0b0010 for PUBREL, SUBSCRIBE and
/// UNSUBSCRIBE, 0 for the other packets but PUBLISH, whose QoS must not be
/// 3 and whose DUP must be 0 at QoS 0 (MQTT 3.1.1 §2.2.2, §3.3.1; MQTT 5
/// §2.1.3, §3.3.1). rumqttd's codecs don't look at them.
pub(super) fn check_flags(byte1: u8) -> Result<(), ReadError> {
    let flags = byte1 & 0x0F;
    match byte1 >> 4 {
        0 => Ok(()),
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                Err(ReadError::Malformed("PUBLISH with QoS 3"))
            } else if qos == 0 && flags & 0b1000 != 0 {
                Err(ReadError::Malformed("PUBLISH with DUP at QoS 0"))
            } else {
                Ok(())
            }
        }
        6 | 8 | 10 if flags == 0b0010 => Ok(()),
        6 | 8 | 10 => Err(ReadError::Malformed("reserved fixed-header flags")),
        _ if flags == 0 => Ok(()),
        _ => Err(ReadError::Malformed("reserved fixed-header flags")),
    }
}

/// Whether every string in `props` (MQTT 5 user properties) is one MQTT
/// allows.
pub(super) fn valid_pairs(props: &[(String, String)]) -> bool {
    props.iter().all(|(k, v)| valid_str(k) && valid_str(v))
}

pub(super) fn valid_str(s: &str) -> bool {
    topic::validate_mqtt_string(s).is_ok()
}

pub(super) fn valid_opt(s: Option<&String>) -> bool {
    s.is_none_or(|s| valid_str(s))
}

/// Checks every string of a decoded packet (see
/// [`topic::validate_mqtt_string`]): a bad client id refuses the CONNECT
/// with "client identifier not valid", a bad will topic with "topic name
/// invalid"; anything else is a malformed packet. Passwords and
/// authentication data are binary, not strings.
pub(super) fn check_strings(packet: &Packet) -> Result<(), ReadError> {
    const MALFORMED: ReadError = ReadError::Malformed("a string MQTT forbids");
    let ok = match packet {
        Packet::Connect(connect, props, will, will_props, login) => {
            if !valid_str(&connect.client_id) {
                return Err(ReadError::Refused(ConnackCode::ClientIdentifierNotValid));
            }
            if let Some(will) = will
                && !std::str::from_utf8(&will.topic).is_ok_and(valid_str)
            {
                return Err(ReadError::Refused(ConnackCode::TopicNameInvalid));
            }
            let ok = login.as_ref().is_none_or(|l| valid_str(&l.username))
                && props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties) && valid_opt(p.authentication_method.as_ref())
                })
                && will_props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties)
                        && valid_opt(p.content_type.as_ref())
                        // A topic name: no wildcards (MQTT 5 §3.1.3.2.6).
                        && p.response_topic
                            .as_ref()
                            .is_none_or(|t| topic::validate_topic_name(t).is_ok())
                });
            if !ok {
                return Err(ReadError::Refused(ConnackCode::Malformed));
            }
            true
        }
        Packet::Publish(publish, props) => {
            std::str::from_utf8(&publish.topic).is_ok_and(valid_str)
                && props.as_ref().is_none_or(|p| {
                    valid_pairs(&p.user_properties)
                        && valid_opt(p.content_type.as_ref())
                        && valid_opt(p.response_topic.as_ref())
                })
        }
        Packet::Subscribe(subscribe, props) => {
            subscribe.filters.iter().all(|f| valid_str(&f.path))
                && props
                    .as_ref()
                    .is_none_or(|p| valid_pairs(&p.user_properties))
        }
        Packet::Unsubscribe(unsubscribe, props) => {
            unsubscribe.filters.iter().all(|f| valid_str(f))
                && props
                    .as_ref()
                    .is_none_or(|p| valid_pairs(&p.user_properties))
        }
        Packet::PubAck(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubRec(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubRel(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::PubComp(_, Some(p)) => {
            valid_pairs(&p.user_properties) && valid_opt(p.reason_string.as_ref())
        }
        Packet::Disconnect(_, Some(p)) => {
            valid_pairs(&p.user_properties)
                && valid_opt(p.reason_string.as_ref())
                && valid_opt(p.server_reference.as_ref())
        }
        _ => true,
    };
    if ok { Ok(()) } else { Err(MALFORMED) }
}

/// The MQTT 5 packets rumqttd's v5 reader can't take (see [`wire`]): a
/// CONNACK or UNSUBACK (never sent by a client) and a DISCONNECT with a
/// reason code and no properties.
pub(super) fn decode_v5_gaps(buf: &mut BytesMut) -> Option<Result<Option<Packet>, ReadError>> {
    let &first = buf.first()?;
    let kind = first >> 4;
    if kind == 2 || kind == 11 {
        return Some(Err(ReadError::Protocol(wire::Error::InvalidPacketType(
            kind,
        ))));
    }
    if first != 0xE0 || buf.get(1) != Some(&1) {
        return None;
    }
    let &code = buf.get(2)?;
    let _ = buf.split_to(3);
    let reason_code = if code == 0x04 {
        wire::DisconnectReasonCode::DisconnectWithWillMessage
    } else {
        wire::DisconnectReasonCode::NormalDisconnection
    };
    Some(Ok(Some(Packet::Disconnect(
        wire::Disconnect { reason_code },
        None,
    ))))
}

impl<S: AsyncRead + AsyncWrite> Wire<S> {
    /// A packet already buffered, if a whole one is.
    pub(super) fn parse(&mut self) -> Result<Option<Packet>, ReadError> {
        decode(self.version, &mut self.rbuf, self.max_packet_size)
    }

    /// Reads the first packet, choosing the codec from the protocol level
    /// of the CONNECT: 5 and above are read (and answered) as MQTT 5.
    pub(super) async fn read_connect(&mut self) -> Result<Packet, ReadError> {
        loop {
            match peek_connect_level(&self.rbuf) {
                ConnectPeek::More => self.fill().await?,
                ConnectPeek::Level(level) => {
                    if level >= 5 {
                        self.version = Version::V5;
                    }
                    break;
                }
                ConnectPeek::Other => break,
            }
        }
        self.read().await
    }

    /// Frees the buffers when they hold nothing: an idle connection then
    /// keeps only the little a read reserves (tokio reads into at least 64
    /// free bytes) instead of what its handshake grew them to.
    pub(super) fn shed_spare(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
    }

    /// Reads more bytes; cancel-safe.
    pub(super) async fn fill(&mut self) -> Result<(), ReadError> {
        match self.rd.read_buf(&mut self.rbuf).await {
            Ok(0) | Err(_) => Err(ReadError::Closed),
            Ok(_) => Ok(()),
        }
    }

    pub(super) async fn read(&mut self) -> Result<Packet, ReadError> {
        loop {
            if let Some(packet) = self.parse()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    pub(super) fn queue(&mut self, packet: Packet) {
        // Writing the packets the session builds can't fail.
        let written = match self.version {
            Version::V311 => V4.write(packet, &mut self.wbuf),
            Version::V5 => V5.write(packet, &mut self.wbuf),
        };
        if let Err(e) = written {
            tracing::error!(error = %e, "could not encode an MQTT packet");
        }
    }

    /// Queues an MQTT 5 DISCONNECT with `code` and no properties (written
    /// here: rumqttd's writer gets its length wrong).
    pub(super) fn queue_v5_disconnect(&mut self, code: u8) {
        self.wbuf.put_slice(&[0xE0, 0x02, code, 0x00]);
    }

    /// Queues a PUBLISH; `properties` (MQTT 5 properties as they are
    /// written, see [`Forwarded`]) are written to an MQTT 5 client only.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn queue_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        pkid: u16,
        retain: bool,
        dup: bool,
        properties: &[u8],
    ) {
        let properties = (self.version == Version::V5).then_some(properties);
        encode_publish(
            &mut self.wbuf,
            topic,
            payload,
            qos,
            pkid,
            retain,
            dup,
            properties,
        );
        self.queued_publishes = self.queued_publishes.saturating_add(1);
    }

    /// The PUBLISH packets queued since the last call.
    pub(super) fn take_queued_publishes(&mut self) -> u32 {
        std::mem::take(&mut self.queued_publishes)
    }

    /// Writes what is queued, failing with [`std::io::ErrorKind::TimedOut`]
    /// when no byte could be written for `stall` (a client that stopped
    /// reading). Cancel-safe: what is not written stays queued.
    pub(super) async fn flush_progressing(&mut self, stall: Duration) -> std::io::Result<()> {
        while !self.wbuf.is_empty() {
            match tokio::time::timeout(stall, self.wr.write(&self.wbuf)).await {
                Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => self.wbuf.advance(n),
                Ok(Err(e)) => return Err(e),
            }
        }
        match tokio::time::timeout(stall, self.wr.flush()).await {
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            Ok(flushed) => flushed,
        }
    }

    pub(super) async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let out = self.wbuf.split();
        self.wr.write_all(&out).await?;
        self.wr.flush().await
    }

    pub(super) async fn send(&mut self, packet: Packet) -> std::io::Result<()> {
        self.queue(packet);
        self.flush().await
    }

    /// Flushes what is queued and closes the stream, giving up after
    /// [`CLOSE_TIMEOUT`] on a client that does not read.
    pub(super) async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.flush().await;
            let _ = self.wr.shutdown().await;
        })
        .await;
    }
}

/// What a CONNACK answers, whatever the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnackCode {
    Success,
    UnsupportedProtocolVersion,
    ClientIdentifierNotValid,
    BadUsernameOrPassword,
    NotAuthorized,
    ServerUnavailable,
    /// A malformed CONNECT (MQTT 5 only: MQTT 3.1.1 closes the connection).
    Malformed,
    /// A will topic MQTT forbids (MQTT 5 only, as [`ConnackCode::Malformed`]).
    TopicNameInvalid,
    /// A limit of the principal's (MQTT 3.1.1: "not authorized").
    QuotaExceeded,
}

impl ConnackCode {
    /// Whether MQTT 3.1.1 has a CONNACK for this refusal; without one the
    /// connection is closed (a malformed packet, §4.8).
    pub(super) fn in_v311(self) -> bool {
        !matches!(self, ConnackCode::Malformed | ConnackCode::TopicNameInvalid)
    }
}

/// A CONNACK in `version`'s terms. An MQTT 5 success tells the client the
/// highest QoS served (1) and that shared subscriptions and subscription
/// identifiers are not.
pub(super) fn connack(version: Version, code: ConnackCode, session_present: bool) -> Packet {
    use wire::ConnectReturnCode as C;
    let (code, properties) = match version {
        Version::V311 => {
            let code = match code {
                ConnackCode::Success => C::Success,
                ConnackCode::UnsupportedProtocolVersion => C::RefusedProtocolVersion,
                ConnackCode::ClientIdentifierNotValid => C::ClientIdentifierNotValid,
                ConnackCode::BadUsernameOrPassword => C::BadUserNamePassword,
                ConnackCode::ServerUnavailable => C::ServiceUnavailable,
                ConnackCode::NotAuthorized | ConnackCode::QuotaExceeded => C::NotAuthorized,
                // Never sent (see `ConnackCode::in_v311`).
                ConnackCode::Malformed | ConnackCode::TopicNameInvalid => C::ServiceUnavailable,
            };
            (code, None)
        }
        Version::V5 => match code {
            ConnackCode::Success => (
                C::Success,
                Some(wire::ConnAckProperties {
                    max_qos: Some(1),
                    shared_subscription_available: Some(0),
                    subscription_identifiers_available: Some(0),
                    ..Default::default()
                }),
            ),
            ConnackCode::UnsupportedProtocolVersion => (C::UnsupportedProtocolVersion, None),
            ConnackCode::ClientIdentifierNotValid => (C::ClientIdentifierNotValid, None),
            ConnackCode::BadUsernameOrPassword => (C::BadUserNamePassword, None),
            ConnackCode::NotAuthorized => (C::NotAuthorized, None),
            ConnackCode::ServerUnavailable => (C::ServerUnavailable, None),
            ConnackCode::Malformed => (C::MalformedPacket, None),
            ConnackCode::TopicNameInvalid => (C::TopicNameInvalid, None),
            ConnackCode::QuotaExceeded => (C::QuotaExceeded, None),
        },
    };
    Packet::ConnAck(
        wire::ConnAck {
            session_present,
            code,
        },
        properties,
    )
}

/// Encodes a PUBLISH (rumqttd's `Publish` can't be built with a QoS or
/// packet id from outside the crate): MQTT 3.1.1, or MQTT 5 with
/// `properties` (the encoded properties after the packet id, maybe none).
/// `pkid` is written for QoS 1; `dup` marks a QoS 1 message sent again.
#[allow(clippy::too_many_arguments)]
pub(super) fn encode_publish(
    buf: &mut BytesMut,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    pkid: u16,
    retain: bool,
    dup: bool,
    properties: Option<&[u8]>,
) {
    let qos_bits = qos.level();
    let properties_len = properties.map_or(0, |p| varint_len(p.len()) + p.len());
    let len = 2 + topic.len() + if qos_bits > 0 { 2 } else { 0 } + properties_len + payload.len();
    buf.reserve(len + 5);
    buf.put_u8(0x30 | (u8::from(dup) << 3) | (qos_bits << 1) | u8::from(retain));
    put_varint(buf, len);
    // Topics reaching here are at most a few hundred bytes.
    buf.put_u16(u16::try_from(topic.len()).unwrap_or(u16::MAX));
    buf.put_slice(topic.as_bytes());
    if qos_bits > 0 {
        buf.put_u16(pkid);
    }
    if let Some(properties) = properties {
        put_varint(buf, properties.len());
        buf.put_slice(properties);
    }
    buf.put_slice(payload);
}

/// MQTT's variable byte integer (MQTT 5 §1.5.5).
fn put_varint(buf: &mut impl BufMut, value: usize) {
    let mut rest = value;
    loop {
        let mut byte = (rest % 128) as u8;
        rest /= 128;
        if rest > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if rest == 0 {
            break;
        }
    }
}

fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// The properties of a client's MQTT 5 PUBLISH that go with the message to
/// its MQTT 5 subscribers, as AWS IoT Core forwards them (AWS IoT Core
/// Developer Guide: "MQTT 5 supported features"; MQTT 5 §3.3.2.3): the
/// payload format indicator, content type, response topic, correlation
/// data and user properties, encoded once as MQTT 5 writes them; and the
/// message expiry interval, kept as the time the message expires, since
/// what is written is what is left of it. The topic alias and subscription
/// identifiers are the connection's and the subscription's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The properties but the expiry, encoded (without their length).
    pub encoded: tokio_util::bytes::Bytes,
    /// When the message expires, in epoch milliseconds.
    pub expires_at_ms: Option<u64>,
}

/// Property identifiers (MQTT 5 §2.2.2.2).
mod property {
    pub(super) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub(super) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub(super) const CONTENT_TYPE: u8 = 0x03;
    pub(super) const RESPONSE_TOPIC: u8 = 0x08;
    pub(super) const CORRELATION_DATA: u8 = 0x09;
    pub(super) const USER_PROPERTY: u8 = 0x26;
}

impl Forwarded {
    /// What of `properties` (a PUBLISH's, received at `now_ms`) goes on;
    /// `None` when nothing does.
    pub(crate) fn of(properties: &wire::PublishProperties, now_ms: u64) -> Option<Forwarded> {
        fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
            // The codec read each within MQTT's two-byte length.
            buf.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
            buf.put_slice(bytes);
        }
        let mut encoded = BytesMut::new();
        if let Some(indicator) = properties.payload_format_indicator {
            encoded.put_u8(property::PAYLOAD_FORMAT_INDICATOR);
            encoded.put_u8(indicator);
        }
        if let Some(content_type) = &properties.content_type {
            encoded.put_u8(property::CONTENT_TYPE);
            put_bytes(&mut encoded, content_type.as_bytes());
        }
        if let Some(topic) = &properties.response_topic {
            encoded.put_u8(property::RESPONSE_TOPIC);
            put_bytes(&mut encoded, topic.as_bytes());
        }
        if let Some(data) = &properties.correlation_data {
            encoded.put_u8(property::CORRELATION_DATA);
            put_bytes(&mut encoded, data);
        }
        for (key, value) in &properties.user_properties {
            encoded.put_u8(property::USER_PROPERTY);
            put_bytes(&mut encoded, key.as_bytes());
            put_bytes(&mut encoded, value.as_bytes());
        }
        let expires_at_ms = properties
            .message_expiry_interval
            .map(|secs| now_ms.saturating_add(u64::from(secs) * 1000));
        (!encoded.is_empty() || expires_at_ms.is_some()).then(|| Forwarded {
            encoded: encoded.freeze(),
            expires_at_ms,
        })
    }

    /// The user properties among the encoded ones, in order (GetRetainedMessage
    /// answers them); what cannot be read ends the list.
    pub(crate) fn user_properties(&self) -> Vec<(String, String)> {
        fn string(rest: &mut &[u8]) -> Option<String> {
            let bytes = binary(rest)?;
            String::from_utf8(bytes.to_vec()).ok()
        }
        fn binary<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
            let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
            let bytes = rest.get(2..2 + len)?;
            *rest = &rest[2 + len..];
            Some(bytes)
        }
        let mut found = Vec::new();
        let mut rest = &self.encoded[..];
        while let Some((&id, tail)) = rest.split_first() {
            rest = tail;
            let read = match id {
                property::PAYLOAD_FORMAT_INDICATOR => rest.split_first().map(|(_, tail)| {
                    rest = tail;
                }),
                property::CONTENT_TYPE | property::RESPONSE_TOPIC | property::CORRELATION_DATA => {
                    binary(&mut rest).map(drop)
                }
                property::USER_PROPERTY => string(&mut rest)
                    .zip(string(&mut rest))
                    .map(|pair| found.push(pair)),
                _ => None,
            };
            if read.is_none() {
                break;
            }
        }
        found
    }

    /// Whether the message has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }

    /// The properties to write at `now_ms`: with the whole seconds left
    /// before the message expires (at least 1: one being written has not
    /// expired), when it does.
    pub(crate) fn to_write(&self, now_ms: u64) -> std::borrow::Cow<'_, [u8]> {
        match self.expires_at_ms {
            None => std::borrow::Cow::Borrowed(&self.encoded[..]),
            Some(at) => {
                let left = at.saturating_sub(now_ms).div_ceil(1000).max(1);
                let mut written = Vec::with_capacity(5 + self.encoded.len());
                written.push(property::MESSAGE_EXPIRY_INTERVAL);
                written.extend_from_slice(&u32::try_from(left).unwrap_or(u32::MAX).to_be_bytes());
                written.extend_from_slice(&self.encoded);
                std::borrow::Cow::Owned(written)
            }
        }
    }
}

/// Decodes `bytes` as the session reads a client's stream ([`decode`]):
/// the codec is MQTT 5 when `v5` says so, or, when `v5` is `None`, chosen
/// by the CONNECT's protocol level as for a new connection
/// ([`Wire::read_connect`]). Reads whole packets until the bytes run out
/// or one is refused, and returns them with the refusal. For the fuzz
/// targets (`crate::fuzzing`); no socket is involved.
pub(crate) fn decode_stream(
    bytes: &[u8],
    v5: Option<bool>,
    max_packet_size: usize,
) -> (Vec<Packet>, Option<String>) {
    let mut buf = BytesMut::from(bytes);
    let v5 = v5.unwrap_or_else(
        || matches!(peek_connect_level(&buf), ConnectPeek::Level(level) if level >= 5),
    );
    let version = if v5 { Version::V5 } else { Version::V311 };
    let mut packets = Vec::new();
    // Each packet read takes at least two bytes; the bound only guards
    // against a codec that reports a packet without consuming it.
    for _ in 0..=bytes.len() {
        match decode(version, &mut buf, max_packet_size) {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return (packets, None),
            Err(ReadError::Protocol(e)) => return (packets, Some(format!("{e:?}"))),
            Err(ReadError::Malformed(why)) => return (packets, Some(why.to_owned())),
            Err(ReadError::Refused(code)) => return (packets, Some(format!("{code:?}"))),
            Err(ReadError::Closed) => return (packets, Some("closed".to_owned())),
        }
    }
    (
        packets,
        Some("a packet was read without consuming bytes".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QoS, packet id, retain, topic and payload of an encoded PUBLISH, as
    /// rumqttd's own decoder reads them.
    fn decode(buf: &mut BytesMut) -> (u8, u16, bool, String, Vec<u8>) {
        decode_with(buf, false)
    }

    /// [`decode`] with rumqttd's MQTT 5 decoder when `v5`.
    fn decode_with(buf: &mut BytesMut, v5: bool) -> (u8, u16, bool, String, Vec<u8>) {
        let read = if v5 {
            V5.read_mut(buf, 1 << 20)
        } else {
            V4.read_mut(buf, 1 << 20)
        };
        let Ok(Packet::Publish(publish, None)) = read else {
            panic!("not a PUBLISH without properties: {read:?}");
        };
        let head = publish.serialize();
        (
            (head[0] >> 1) & 0b11,
            u16::from_be_bytes([head[1], head[2]]),
            publish.retain,
            String::from_utf8(publish.topic.to_vec()).unwrap(),
            publish.payload.to_vec(),
        )
    }

    #[test]
    fn publishes_encode_as_rumqttd_decodes_them() {
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            "a/b",
            b"hello",
            QoS::AtMostOnce,
            9,
            false,
            false,
            None,
        );
        assert_eq!(
            decode(&mut buf),
            (0, 0, false, "a/b".into(), b"hello".to_vec())
        );
        // A payload long enough for a three-byte remaining length.
        let payload = vec![7u8; 20_000];
        encode_publish(
            &mut buf,
            "t",
            &payload,
            QoS::AtLeastOnce,
            513,
            true,
            true,
            None,
        );
        assert_eq!(decode(&mut buf), (1, 513, true, "t".into(), payload));
        assert!(buf.is_empty());
    }

    #[test]
    fn v5_publishes_encode_as_rumqttd_v5_decodes_them() {
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            "a/b",
            b"hello",
            QoS::AtMostOnce,
            9,
            false,
            false,
            Some(&[]),
        );
        assert_eq!(
            decode_with(&mut buf, true),
            (0, 0, false, "a/b".into(), b"hello".to_vec())
        );
        let payload = vec![7u8; 20_000];
        encode_publish(
            &mut buf,
            "$aws/things/t/shadow/update",
            &payload,
            QoS::AtLeastOnce,
            513,
            true,
            true,
            Some(&[]),
        );
        assert_eq!(
            decode_with(&mut buf, true),
            (1, 513, true, "$aws/things/t/shadow/update".into(), payload)
        );
        // An empty payload: the property length is the last byte.
        encode_publish(
            &mut buf,
            "e",
            b"",
            QoS::AtLeastOnce,
            1,
            false,
            false,
            Some(&[]),
        );
        assert_eq!(buf[..], [0x32, 6, 0, 1, b'e', 0, 1, 0]);
        assert_eq!(
            decode_with(&mut buf, true),
            (1, 1, false, "e".into(), Vec::new())
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn forwarded_properties_encode_as_rumqttd_v5_decodes_them() {
        let sent = wire::PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some("replies/é".into()),
            correlation_data: Some(tokio_util::bytes::Bytes::from_static(&[0, 1, 0xff])),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            subscription_identifiers: vec![7],
            content_type: Some("application/json".into()),
        };
        let forwarded = Forwarded::of(&sent, 1_000_000).unwrap();
        assert_eq!(forwarded.expires_at_ms, Some(1_060_000));
        // 20.5 s later: 40 whole seconds are left (rounded up).
        let written = forwarded.to_write(1_020_500);
        let mut buf = BytesMut::new();
        encode_publish(
            &mut buf,
            "a/b",
            b"{}",
            QoS::AtLeastOnce,
            5,
            false,
            false,
            Some(&written),
        );
        let Ok(Packet::Publish(publish, Some(got))) = V5.read_mut(&mut buf, 1 << 20) else {
            panic!("not a PUBLISH with properties");
        };
        assert_eq!(&publish.payload[..], b"{}");
        assert!(buf.is_empty());
        let expected = wire::PublishProperties {
            message_expiry_interval: Some(40),
            topic_alias: None,
            subscription_identifiers: Vec::new(),
            ..sent
        };
        assert_eq!(got, expected);
        assert!(!forwarded.expired(1_059_999) && forwarded.expired(1_060_000));
        assert_eq!(
            forwarded.user_properties(),
            [
                ("k".to_owned(), "v".to_owned()),
                ("k".to_owned(), "w".to_owned())
            ]
        );
        // Cut anywhere, the encoding still reads (what is whole of it).
        for cut in 0..forwarded.encoded.len() {
            let partial = Forwarded {
                encoded: forwarded.encoded.slice(..cut),
                expires_at_ms: None,
            };
            assert!(partial.user_properties().len() <= 2);
        }
        // Nothing to forward: no properties.
        assert_eq!(
            Forwarded::of(
                &wire::PublishProperties {
                    topic_alias: Some(1),
                    ..Default::default()
                },
                0
            ),
            None
        );
    }

    #[test]
    fn decode_refuses_flags_and_strings_mqtt_forbids() {
        let decode_bytes = |version, bytes: &[u8]| {
            let mut buf = BytesMut::from(bytes);
            super::decode(version, &mut buf, 1024)
        };
        // SUBSCRIBE of `a` (packet id 1, QoS 0) with good and bad flags.
        let good = [0x82, 6, 0, 1, 0, 1, b'a', 0];
        assert!(matches!(
            decode_bytes(Version::V311, &good),
            Ok(Some(Packet::Subscribe(..)))
        ));
        for byte1 in [0x80, 0x81, 0x83, 0x8A] {
            let mut bad = good;
            bad[0] = byte1;
            assert!(
                matches!(
                    decode_bytes(Version::V311, &bad),
                    Err(ReadError::Malformed(_))
                ),
                "{byte1:#x}"
            );
        }
        // Flags are checked before the packet is whole.
        assert!(matches!(
            decode_bytes(Version::V5, &[0xA0]),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(decode_bytes(Version::V5, &[0xA2]), Ok(None)));
        // A filter holding U+0000.
        let nul = [0x82, 6, 0, 1, 0, 1, 0, 0];
        assert!(matches!(
            decode_bytes(Version::V311, &nul),
            Err(ReadError::Malformed(_))
        ));
        // A PUBLISH with QoS 3, or DUP at QoS 0.
        for byte1 in [0x36, 0x38] {
            assert!(matches!(
                decode_bytes(Version::V311, &[byte1, 3, 0, 1, b'a']),
                Err(ReadError::Malformed(_))
            ));
        }
        // A CONNECT whose client id holds U+0000.
        let connect = [
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 3, b'a', 0, b'b',
        ];
        assert!(matches!(
            decode_bytes(Version::V311, &connect),
            Err(ReadError::Refused(ConnackCode::ClientIdentifierNotValid))
        ));
        let mut ok = connect;
        ok[15] = b'-';
        assert!(matches!(
            decode_bytes(Version::V311, &ok),
            Ok(Some(Packet::Connect(..)))
        ));
    }

    #[test]
    fn the_connect_level_is_read_before_the_codec_is_chosen() {
        // MQTT 5 CONNECT: name "MQTT", level 5.
        let connect = [0x10, 0x10, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 30, 0];
        assert_eq!(peek_connect_level(&connect), ConnectPeek::Level(5));
        for cut in 0..9 {
            assert_eq!(peek_connect_level(&connect[..cut]), ConnectPeek::More);
        }
        // A two-byte remaining length.
        let long = [0x10, 0x80, 0x01, 0, 4, b'M', b'Q', b'T', b'T', 4];
        assert_eq!(peek_connect_level(&long), ConnectPeek::Level(4));
        assert_eq!(peek_connect_level(&[0x30, 0]), ConnectPeek::Other);
        assert_eq!(
            peek_connect_level(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
            ConnectPeek::Other
        );
    }

    #[test]
    fn v5_sessions_end_with_the_mqtt5_reason_codes() {
        assert_eq!(
            v5_disconnect_code(DisconnectReason::DuplicateClientid),
            Some(0x8E)
        );
        assert_eq!(
            v5_disconnect_code(DisconnectReason::MqttKeepAliveTimeout),
            Some(0x8D)
        );
        assert_eq!(
            v5_disconnect_code(DisconnectReason::ServerInitiatedDisconnect),
            Some(0x8B)
        );
        assert_eq!(v5_disconnect_code(DisconnectReason::AuthError), Some(0x87));
        assert_eq!(
            v5_disconnect_code(DisconnectReason::ClientInitiatedDisconnect),
            None
        );
        assert_eq!(v5_disconnect_code(DisconnectReason::ConnectionLost), None);
    }
}
