"""MQTT over WebSockets (AWS IoT Core Developer Guide: "MQTT over WebSocket
protocol", "Signature Version 4 signing for WebSocket connections"): TLS
with the Herald server certificate, path `/mqtt`, subprotocol `mqtt`, a
SigV4 presigned query for `iotdevicegateway` with an access key. The
connection is the key's principal, to which the IoT policy named after the
access key id applies. With paho-mqtt over WebSockets (the URL presigned by
botocore) and with the AWS IoT Device SDK v2's own SigV4 WebSocket
signing from static credentials.

Marked `standalone`: it starts a Herald with a WebSocket listener of its own."""

import json
import ssl
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import Herald
from support import ACCESS_KEY, REGION, SECRET_KEY, make_client
from test_cluster import ALLOW_ALL, DEV_USER, connected

pytestmark = pytest.mark.standalone

DEADLINE_SECS = 30


@pytest.fixture(scope="module")
def herald_ws():
    with tempfile.TemporaryDirectory(prefix="herald-ws-") as tmp:
        herald = Herald(Path(tmp), gateway_settings={"HERALD_GATEWAY__MQTT__WEBSOCKET_LISTEN_ADDR": "127.0.0.1:0"})
        try:
            herald.start()
            iot = make_client(herald.endpoint)
            # The access key's principal: the policy named after the key id.
            iot.create_policy(policyName=ACCESS_KEY, policyDocument=ALLOW_ALL)
            iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
            (Path(tmp) / "ca.pem").write_text(herald.ca_pem)
            herald.ca_file = Path(tmp) / "ca.pem"
            _, herald.ws_port = herald.gateway.endpoint("mqtt websocket")
            yield herald
        finally:
            herald.stop()


def presigned_path(port, secret=SECRET_KEY, host="localhost"):
    request = AWSRequest(method="GET", url=f"https://{host}:{port}/mqtt")
    SigV4QueryAuth(Credentials(ACCESS_KEY, secret), "iotdevicegateway", REGION, expires=300).add_auth(request)
    return "/mqtt?" + request.url.split("?", 1)[1]


class WsClient:
    def __init__(self, herald, client_id, path):
        self.messages = []
        self.connack = None
        self.event = threading.Event()
        self.cond = threading.Condition()
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, transport="websockets")
        m.ws_set_options(path=path)
        m.tls_set(ca_certs=str(herald.ca_file), cert_reqs=ssl.CERT_REQUIRED)
        m.on_connect = self._on_connect
        m.on_message = self._on_message
        m.on_subscribe = lambda *a: self.event.set()
        self.mqtt = m
        m.connect_async("localhost", herald.ws_port, keepalive=30)
        m.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.connack = reason

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self.cond.notify_all()

    def stop(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def until(check, what):
    deadline = time.monotonic() + DEADLINE_SECS
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_SECS}s"
        time.sleep(0.05)


def test_paho_over_websockets_with_a_presigned_url_publishes_and_receives(herald_ws):
    ws = WsClient(herald_ws, "ws-paho", presigned_path(herald_ws.ws_port))
    plain = connected(herald_ws.gateway, "plain-peer")
    plain.subscribe("from-ws/#")
    try:
        until(lambda: ws.connack is not None, "CONNACK over WebSockets")
        assert not ws.connack.is_failure, ws.connack
        ws.mqtt.subscribe("to-ws/#", qos=1)
        assert ws.event.wait(DEADLINE_SECS), "no SUBACK"

        plain.publish("to-ws/hello", b"over tcp")
        until(lambda: ws.messages, "a message over WebSockets")
        assert ws.messages[0] == ("to-ws/hello", b"over tcp")

        ws.mqtt.publish("from-ws/hi", b"over websockets", qos=1)
        plain.wait(lambda: plain.received("from-ws/hi"), "the WebSocket client's message")
        assert plain.received("from-ws/hi")[0][1] == b"over websockets"

        # The lifecycle event names the access key as the principal.
        watcher = connected(herald_ws.gateway, "watcher")
        try:
            watcher.subscribe("$aws/events/presence/connected/ws-paho-2")
            again = WsClient(herald_ws, "ws-paho-2", presigned_path(herald_ws.ws_port))
            try:
                watcher.wait(lambda: watcher.received(), "the connected event")
                event = json.loads(watcher.received()[0][1])
                assert event["principalIdentifier"] == ACCESS_KEY
            finally:
                again.stop()
        finally:
            watcher.stop()
    finally:
        ws.stop()
        plain.stop()


def test_a_bad_signature_or_path_is_refused_before_mqtt(herald_ws):
    for path in (presigned_path(herald_ws.ws_port, secret="wrong-secret"), "/mqtt", "/other"):
        ws = WsClient(herald_ws, f"ws-bad-{uuid.uuid4().hex[:6]}", path)
        try:
            time.sleep(1.0)  # a refused upgrade gives no CONNACK at all
            assert ws.connack is None or ws.connack.is_failure, (path, ws.connack)
        finally:
            ws.stop()


def test_the_device_sdk_connects_over_websockets_with_sigv4(herald_ws):
    from awscrt import auth, mqtt as crt_mqtt
    from awsiot import mqtt_connection_builder

    credentials = auth.AwsCredentialsProvider.new_static(ACCESS_KEY, SECRET_KEY)
    connection = mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint="localhost",
        port=herald_ws.ws_port,
        region=REGION,
        credentials_provider=credentials,
        ca_filepath=str(herald_ws.ca_file),
        client_id=f"sdk-ws-{uuid.uuid4().hex[:6]}",
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(DEADLINE_SECS)
    try:
        received = []
        got = threading.Event()

        def on_message(topic, payload, **kwargs):
            received.append((topic, payload))
            got.set()

        future, _ = connection.subscribe("sdk/ws/#", crt_mqtt.QoS.AT_LEAST_ONCE, on_message)
        future.result(DEADLINE_SECS)
        future, _ = connection.publish("sdk/ws/echo", b"signed", crt_mqtt.QoS.AT_LEAST_ONCE)
        future.result(DEADLINE_SECS)
        assert got.wait(DEADLINE_SECS), "the SDK's own message did not come back"
        assert received[0] == ("sdk/ws/echo", b"signed")
    finally:
        connection.disconnect().result(DEADLINE_SECS)
