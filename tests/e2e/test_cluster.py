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
import socket
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

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

    def start_rest(self):
        log_dir = self.root / "config"
        log_dir.mkdir()
        config = Service(
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
        self.services.append(config)
        config.wait_ready()
        log_dir = self.root / "gateway"
        log_dir.mkdir()
        self.gateway = Service(
            "gateway",
            log_dir,
            service_env(
                {
                    "HERALD_GATEWAY__HTTP__LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__MQTT__LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__MQTT__TLS_LISTEN_ADDR": "127.0.0.1:0",
                    "HERALD_GATEWAY__DATA_DIR": str(log_dir / "data"),
                    "HERALD_GATEWAY__REGISTRY_URL": self.registry_url,
                    "HERALD_GATEWAY__CONFIG_URL": config.url,
                    "HERALD_GATEWAY__TEST_MODE": "true",
                    "HERALD_GATEWAY__INTERNAL_TLS__ENABLED": "false",
                    "HERALD_GATEWAY__METRICS__LISTEN_ADDR": "127.0.0.1:0",
                }
            ),
        )
        self.services.append(self.gateway)
        self.gateway.wait_ready()

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

    client = make_client(cluster.gateway.url)
    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    # The development user's policy (the policy named after it).
    client.create_policy(
        policyName=DEV_USER,
        policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}
        ),
    )
    _, port = cluster.gateway.endpoint("mqtt")
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
