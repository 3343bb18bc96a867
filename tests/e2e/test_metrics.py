"""Every service serves Prometheus metrics (`GET /metrics`) on an admin
listener of its own: the text exposition format, read with Prometheus's own
Python parser, with the process basics and each service's figures, which
move when the service works (a thing created through the gateway, an MQTT
client connected and subscribed to its event)."""

import json
import re
import time
import urllib.request

import pytest

from conftest import REPO_ROOT
from support import ALLOW_ALL, document, make_client, statement

parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="prometheus-client parses the exposition format: python3 -m pip install prometheus-client",
)
mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is the MQTT client")

DEADLINE_SECS = 30
PROCESS = ("process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds", "tokio_workers")

# What only a gateway over NATS (`bus = "nats://..."`) exports.
CLUSTER_ONLY = {"herald_gateway_nats_connected", "herald_gateway_peer_dropped"}


def scrape(service):
    """{(name, labels as a sorted tuple): value} of one scrape, every
    sample of every family, parsed by prometheus_client."""
    host, port = service.endpoint("metrics")
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=DEADLINE_SECS) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    """The value of `name` whose labels include `labels` (summed when
    several match); None when none does."""
    found = [
        v for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    ]
    return sum(found) if found else None


def by_name(herald, name):
    return next(s for s in herald.services if s.name == name)


def test_every_service_serves_its_metrics(herald, client):
    for name in ("registry", "config", "gateway"):
        samples = scrape(by_name(herald, name))
        for basic in PROCESS:
            assert value(samples, basic) is not None, f"{name}: {basic} missing"
        assert value(samples, "process_resident_memory_bytes") > 0


def test_the_figures_move_when_the_services_work(herald, client):
    registry, config, gateway = (by_name(herald, n) for n in ("registry", "config", "gateway"))
    before = scrape(registry)
    mutations_before = value(before, "herald_store_mutations_total", writer="registry-writer") or 0

    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    client.create_policy(policyName="herald-dev", policyDocument=ALLOW_ALL)
    host, port = gateway.endpoint("mqtt")
    got = []
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="metrics-watcher", protocol=mqtt.MQTTv5)
    m.username_pw_set("herald-dev", "herald-dev-secret")
    m.on_message = lambda _c, _u, message: got.append(message.topic)
    m.connect(host, port, keepalive=30)
    m.loop_start()
    try:
        subscribed = m.subscribe("$aws/events/thing/+/created", qos=1)
        assert subscribed[0] == mqtt.MQTT_ERR_SUCCESS
        # Until the policy and the event configuration reach the gateway,
        # a created thing's event may not come: make things until one does.
        deadline = time.monotonic() + DEADLINE_SECS
        i = 0
        while not got:
            assert time.monotonic() < deadline, "no event arrived"
            client.create_thing(thingName=f"metered-{i}")
            i += 1
            time.sleep(0.2)

        # A shadow update accepted and a get refused (no such shadow).
        data = make_client(client.meta.endpoint_url, service="iot-data")
        data.update_thing_shadow(thingName="metered-0", payload=json.dumps({"state": {"reported": {"on": 1}}}))
        with pytest.raises(data.exceptions.ResourceNotFoundException):
            data.get_thing_shadow(thingName="metered-0", shadowName="none")

        after = scrape(registry)
        assert value(after, "herald_store_mutations_total", writer="registry-writer") > mutations_before
        assert value(after, "herald_shadow_requests_total", operation="update", outcome="accepted") >= 1
        assert value(after, "herald_shadow_requests_total", operation="get", outcome="rejected") >= 1
        assert value(after, "herald_store_commit_seconds_count", writer="registry-writer") > 0
        assert value(after, "herald_store_commit_batch_size_bucket", writer="registry-writer", le="+Inf") > 0
        assert value(after, "herald_change_log_head", service="registry", partition="123456789012/us-east-1") >= i
        assert value(after, "herald_change_log_followers", service="registry") >= 1, "the gateway's pump follows"

        configured = scrape(config)
        assert value(configured, "herald_store_mutations_total", writer="config-writer") > 0
        assert value(configured, "herald_change_log_head", service="config") > 0

        seen = scrape(gateway)
        assert value(seen, "herald_gateway_connections", listener="mqtt") >= 1
        assert value(seen, "herald_gateway_connections", listener="http") >= 0
        assert value(seen, "herald_gateway_mqtt_connects_total", protocol="5") >= 1
        assert value(seen, "herald_gateway_messages_out_total") >= 1
        assert value(seen, "herald_gateway_event_latency_seconds_count") >= 1
        assert value(seen, "herald_gateway_sessions", partition="123456789012/us-east-1", state="live") >= 1
        assert value(seen, "herald_gateway_pump_lag", partition="123456789012/us-east-1") is not None
        assert value(seen, "herald_gateway_pump_cursor", partition="123456789012/us-east-1") >= 1

        # Every figure the Grafana dashboard charts is one the services export.
        exported = set()
        for samples in (after, configured, seen):
            for name, _ in samples:
                exported.add(re.sub(r"_(bucket|sum|count)$", "", name))
        dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "herald.json").read_text())
        charted = set()
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                for name in re.findall(r"\b((?:herald|process|tokio)_[a-z_]+)\b", target["expr"]):
                    charted.add(re.sub(r"_(bucket|sum|count)$", "", name))
        # The gateway replicas' figures exist over NATS only (test_cluster.py
        # checks them there).
        charted -= CLUSTER_ONLY
        assert charted and charted <= exported, f"charted, not exported: {sorted(charted - exported)}"
    finally:
        m.loop_stop()
        m.disconnect()


def test_a_denied_delivery_is_counted(herald, client):
    gateway = by_name(herald, "gateway")
    refused_before = value(scrape(gateway), "herald_gateway_deliveries_refused_total") or 0
    # Subscribe allowed, receive denied: every matching delivery is refused.
    client.create_policy(
        policyName="herald-dev",
        policyDocument=document(
            statement("Allow", ["iot:Connect", "iot:Subscribe", "iot:Publish"], "*"),
            statement("Deny", "iot:Receive", "*"),
        ),
    )
    host, port = gateway.endpoint("mqtt")
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="metrics-denied", protocol=mqtt.MQTTv311)
    m.username_pw_set("herald-dev", "herald-dev-secret")
    m.connect(host, port, keepalive=30)
    m.loop_start()
    try:
        m.subscribe("metered/#", qos=0)
        deadline = time.monotonic() + DEADLINE_SECS
        while (value(scrape(gateway), "herald_gateway_deliveries_refused_total") or 0) <= refused_before:
            assert time.monotonic() < deadline, "no refused delivery counted"
            m.publish("metered/x", json.dumps({"n": 1}), qos=0)
            time.sleep(0.2)
    finally:
        m.loop_stop()
        m.disconnect()
