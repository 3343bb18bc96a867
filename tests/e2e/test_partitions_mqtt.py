"""Accounts and regions over MQTT (AWS IoT: each account and region is a
broker of its own): a device acts in the partition its certificate is
registered in. Its policies are that partition's, with that partition's
ARNs; it gets that partition's `$aws/events` and lifecycle events and its
ordinary topics, never another's; the same client id in two partitions is
two clients; a certificate registered in two regions is told apart by the
TLS server name; and just-in-time registration happens in the partition
whose CA signed the certificate. With mosquitto_sub/mosquitto_pub and
Python's own TLS client."""

import json
import queue
import shutil
import socket
import ssl
import struct
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Herald
from support import ACCOUNT, LocalCa, cert_id_of, document, expect_error, make_client, statement
from test_mqtt import Mqtt, pub_until_ok, subs, subscribed, until  # noqa: F401 (subs is a fixture)

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None,
    reason="mosquitto_sub is not installed (.ci/run installs mosquitto-clients)",
)

IRELAND = "eu-west-1"
DEADLINE_SECS = 30


def arn(region, kind, name):
    return f"arn:aws:iot:{region}:{ACCOUNT}:{kind}/{name}"


def watcher(region, *filters):
    """Statements letting a client of `region` connect as itself and
    subscribe to and receive `filters` (each a topic filter ending in `*`
    or a plain prefix)."""
    statements = [statement("Allow", "iot:Connect", arn(region, "client", "${iot:ClientId}"))]
    for f in filters:
        statements.append(statement("Allow", "iot:Subscribe", arn(region, "topicfilter", f)))
        statements.append(statement("Allow", "iot:Receive", arn(region, "topic", f)))
        statements.append(statement("Allow", "iot:Publish", arn(region, "topic", f)))
    return statements


def device(mqtt, client, region, name, *filters):
    """An active certificate of `client`'s partition with policy `name`."""
    keys = client.create_keys_and_certificate(setAsActive=True)
    client.create_policy(policyName=name, policyDocument=document(*watcher(region, *filters)))
    client.attach_policy(policyName=name, target=keys["certificateArn"])
    return keys, mqtt.tls(name, keys["certificatePem"], keys["keyPair"]["PrivateKey"])


def names_created(sub):
    return [json.loads(payload)["thingName"] for topic, payload in sub.messages() if topic.endswith("/created")]


def test_each_partition_has_its_own_events_topics_and_client_ids(herald, client, tmp_path, subs):
    ireland = make_client(herald.endpoint, region=IRELAND)
    for c in (client, ireland):
        c.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    mqtt = Mqtt(herald, tmp_path)
    _, home = device(mqtt, client, "us-east-1", "home", "$aws/events/*", "shared/*")
    _, dublin = device(mqtt, ireland, IRELAND, "dublin", "$aws/events/*", "shared/*")
    # The Irish policy names Irish ARNs only: it would allow nothing in
    # us-east-1, so a session here shows the device acts in eu-west-1.
    topics = ["$aws/events/thing/+/created", "$aws/events/presence/connected/+", "shared/#"]
    home_sub = subscribed(subs, home, "same-id", topics, [1, 1, 1])
    dublin_sub = subscribed(subs, dublin, "same-id", topics, [1, 1, 1])

    # The same client id in two partitions is two clients: neither took
    # the other over, and each saw only its own partition's connection.
    client.create_thing(thingName="home-lamp")
    ireland.create_thing(thingName="dublin-lamp")
    home_sub.wait_message(lambda t, p: t == "$aws/events/thing/home-lamp/created", "home-lamp's event")
    created = dublin_sub.wait_message(lambda t, p: t == "$aws/events/thing/dublin-lamp/created", "dublin-lamp's event")
    assert json.loads(created[1])["accountId"] == ACCOUNT

    # Ordinary topics: a message published in one partition reaches that
    # partition's subscribers only.
    pub_until_ok(home, "home-pub", "shared/news", "from-home")
    pub_until_ok(dublin, "dublin-pub", "shared/news", "from-dublin")
    home_sub.wait_message(lambda t, p: p == "from-home", "the message published at home")
    dublin_sub.wait_message(lambda t, p: p == "from-dublin", "the message published in Dublin")
    home_sub.wait_message(lambda t, p: t == "$aws/events/presence/connected/home-pub", "home-pub's connection")
    dublin_sub.wait_message(
        lambda t, p: t == "$aws/events/presence/connected/dublin-pub", "dublin-pub's connection"
    )

    # Last, one more event in each partition: the other partition's
    # events, published before these, would have arrived by now.
    client.create_thing(thingName="home-last")
    ireland.create_thing(thingName="dublin-last")
    home_sub.wait_message(lambda t, p: t == "$aws/events/thing/home-last/created", "home-last's event")
    dublin_sub.wait_message(lambda t, p: t == "$aws/events/thing/dublin-last/created", "dublin-last's event")
    assert names_created(home_sub) == ["home-lamp", "home-last"], home_sub.output()
    assert names_created(dublin_sub) == ["dublin-lamp", "dublin-last"], dublin_sub.output()
    for sub, own, other in ((home_sub, "from-home", "from-dublin"), (dublin_sub, "from-dublin", "from-home")):
        payloads = [p for t, p in sub.messages() if t == "shared/news"]
        assert payloads == [own], sub.output()
    home_connected = [t for t, _ in home_sub.messages() if "/presence/connected/" in t]
    dublin_connected = [t for t, _ in dublin_sub.messages() if "/presence/connected/" in t]
    assert "$aws/events/presence/connected/dublin-pub" not in home_connected, home_sub.output()
    assert "$aws/events/presence/connected/home-pub" not in dublin_connected, dublin_sub.output()
    assert home_sub.proc.poll() is None and dublin_sub.proc.poll() is None, "a same-id session was taken over"


# ---------------------------------------------------------------- the TLS server name

def mqtt_connect(port, ca_pem, cert_path, key_path, server_name, client_id):
    """Connects with Python's TLS client, asking for `server_name` (SNI),
    sends an MQTT 3.1.1 CONNECT; returns the CONNACK's return code, or None
    when the gateway closed the connection without one."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.check_hostname = False
    context.load_cert_chain(cert_path, key_path)
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_SECS) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                cid = client_id.encode()
                variable = b"\x00\x04MQTT\x04\x02" + struct.pack(">H", 30)
                payload = struct.pack(">H", len(cid)) + cid
                body = variable + payload
                tls.sendall(bytes([0x10, len(body)]) + body)
                answer = b""
                while len(answer) < 4:
                    chunk = tls.recv(4 - len(answer))
                    if not chunk:
                        return None
                    answer += chunk
                assert answer[:2] == b"\x20\x02", answer
                return answer[3]
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return None


def test_a_certificate_in_two_regions_is_told_apart_by_the_server_name(herald, client, tmp_path):
    ireland = make_client(herald.endpoint, region=IRELAND)
    ca = LocalCa("Own CA")
    key_pem, pem = ca.issue_with_key("two-region-device")
    (tmp_path / "dev.pem").write_text(pem)
    (tmp_path / "dev.key").write_text(key_pem)
    # Only the Irish policy lets the device connect.
    client.create_policy(
        policyName="nothing", policyDocument=document(statement("Deny", "iot:Connect", "*"))
    )
    ireland.create_policy(
        policyName="connect", policyDocument=document(statement("Allow", "iot:Connect", "*"))
    )
    for c, policy in ((client, "nothing"), (ireland, "connect")):
        registered = c.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
        assert registered["certificateId"] == cert_id_of(pem)
        c.attach_policy(policyName=policy, target=registered["certificateArn"])
    _, port = herald.gateway.endpoint("mqtt tls")

    def connect(server_name):
        return mqtt_connect(
            port, herald.ca_pem, tmp_path / "dev.pem", tmp_path / "dev.key", server_name, "two-region"
        )

    # Asking for Ireland: CONNACK 0 (connected) once the Irish policy has
    # reached the gateway.
    until(lambda: connect(f"iot.{IRELAND}.localhost"), lambda code: code == 0, "connecting to eu-west-1")
    # Asking for us-east-1: its policy denies the connection (CONNACK 5).
    until(lambda: connect("iot.us-east-1.localhost"), lambda code: code == 5, "refused in us-east-1")
    # Asking for no region: which one is ambiguous; the connection is closed.
    assert connect("localhost") is None
    # Only one registration left: no server name is needed.
    certificate_id = cert_id_of(pem)
    client.detach_policy(policyName="nothing", target=f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/{certificate_id}")
    client.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
    client.delete_certificate(certificateId=certificate_id)
    until(lambda: connect("localhost"), lambda code: code == 0, "connecting once only eu-west-1 holds it")


def test_just_in_time_registration_in_the_partition_of_the_ca(herald, client, tmp_path):
    ireland = make_client(herald.endpoint, region=IRELAND)
    ireland.update_event_configurations(eventConfigurations={"CA_CERTIFICATE": {"Enabled": True}})
    ca = LocalCa("Irish fleet CA")
    code = ireland.get_registration_code()["registrationCode"]
    ireland.register_ca_certificate(
        caCertificate=ca.pem,
        verificationCertificate=ca.issue(code),
        setAsActive=True,
        allowAutoRegistration=True,
    )
    key_pem, pem = ca.issue_with_key("irish-device")
    (tmp_path / "dev.pem").write_text(pem)
    (tmp_path / "dev.key").write_text(key_pem)
    _, port = herald.gateway.endpoint("mqtt tls")
    certificate_id = cert_id_of(pem)

    # Refused, and registered in eu-west-1 as PENDING_ACTIVATION (the CA
    # may reach the gateway's copy of the config a moment after the call).
    def attempt():
        connected = mqtt_connect(
            port, herald.ca_pem, tmp_path / "dev.pem", tmp_path / "dev.key", "localhost", "irish-device"
        )
        assert connected is None
        try:
            return ireland.describe_certificate(certificateId=certificate_id)["certificateDescription"]
        except ireland.exceptions.ResourceNotFoundException:
            return None

    described = until(attempt, lambda d: d is not None, "just-in-time registration")
    assert described["status"] == "PENDING_ACTIVATION"
    assert described["certificateArn"] == arn(IRELAND, "cert", certificate_id)
    expect_error(client, "ResourceNotFoundException", client.describe_certificate, certificateId=certificate_id)


# ---------------------------------------------------------------- jobs, and a restart

def paho_device(port, tmp_path, name, keys, client_id, *filters):
    """A paho-mqtt client over TLS presenting `keys`' certificate,
    connected (again while the gateway does not know its policy yet) and
    subscribed to `filters`: (client, queue of (topic, payload))."""
    mqtt = pytest.importorskip("paho.mqtt.client")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_text(keys["certificatePem"])
    key.write_text(keys["keyPair"]["PrivateKey"])
    received = queue.Queue()
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        answers = queue.Queue()
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        m.tls_set(ca_certs=str(tmp_path / "ca.pem"), certfile=str(cert), keyfile=str(key))
        m.on_connect = lambda _c, _u, _f, code, _p: answers.put(("connack", code))
        m.on_subscribe = lambda _c, _u, _m, codes, _p: answers.put(("suback", codes))
        m.on_message = lambda _c, _u, message: received.put((message.topic, message.payload))
        m.connect("localhost", port, keepalive=30)
        m.loop_start()
        try:
            kind, code = answers.get(timeout=DEADLINE_SECS)
        except queue.Empty:
            kind, code = None, None
        if kind == "connack" and not code.is_failure:
            break
        m.loop_stop()
        m.disconnect()
        assert time.monotonic() < deadline, f"no CONNACK 0: {kind} {code}"
        time.sleep(0.1)
    for f in filters:
        m.subscribe(f, qos=1)
        kind, codes = answers.get(timeout=DEADLINE_SECS)
        assert kind == "suback" and not codes[0].is_failure, (kind, codes)
    return m, received


def test_the_jobs_device_api_answers_in_the_devices_partition(herald, client, tmp_path):
    ireland = make_client(herald.endpoint, region=IRELAND)
    for c, region, job in ((client, "us-east-1", "home-job"), (ireland, IRELAND, "irish-job")):
        c.create_thing(thingName="pump-7")
        c.create_job(jobId=job, targets=[arn(region, "thing", "pump-7")], document=json.dumps({"job": job}))
    mqtt = Mqtt(herald, tmp_path)
    keys, _ = device(mqtt, ireland, IRELAND, "pump", "$aws/things/pump-7/*")
    _, port = herald.gateway.endpoint("mqtt tls")
    jobs = "$aws/things/pump-7/jobs"
    m, received = paho_device(port, tmp_path, "pump", keys, "pump-7", f"{jobs}/get/accepted")
    try:
        m.publish(f"{jobs}/get", json.dumps({"clientToken": "irish-token"}), qos=1)
        topic, payload = received.get(timeout=DEADLINE_SECS)
        answer = json.loads(payload)
        assert topic == f"{jobs}/get/accepted"
        assert answer["clientToken"] == "irish-token"
        assert [j["jobId"] for j in answer["queuedJobs"]] == ["irish-job"], answer
    finally:
        m.loop_stop()
        m.disconnect()


def test_a_persistent_session_in_another_region_survives_a_restart(tmp_path, subs):
    with tempfile.TemporaryDirectory(prefix="herald-partition-restart-") as tmp:
        herald = Herald(Path(tmp))
        try:
            herald.start()
            ireland = make_client(herald.endpoint, region=IRELAND)
            ireland.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
            mqtt = Mqtt(herald, tmp_path)
            keys, dublin = device(mqtt, ireland, IRELAND, "keeper", "$aws/events/*")
            topics = ["$aws/events/thing/+/created"]
            sub = subscribed(subs, dublin, "keeper", topics, [1], extra=["-c"])
            ireland.create_thing(thingName="before")
            sub.wait_message(lambda t, p: t == "$aws/events/thing/before/created", "before's event")
            sub.stop()
            ireland.create_thing(thingName="while-away")
            codes = herald.stop()
            assert set(codes.values()) == {0}, codes
            herald.services = []

            herald.start()
            ireland = make_client(herald.endpoint, region=IRELAND)
            mqtt = Mqtt(herald, tmp_path)
            dublin = mqtt.tls("keeper", keys["certificatePem"], keys["keyPair"]["PrivateKey"])
            sub = subscribed(subs, dublin, "keeper", topics, [1], extra=["-c"])
            ireland.create_thing(thingName="after")
            sub.wait_message(lambda t, p: t == "$aws/events/thing/while-away/created", "while-away's event")
            sub.wait_message(lambda t, p: t == "$aws/events/thing/after/created", "after's event")
            assert (Path(tmp) / "data" / "gateway" / "partitions" / ACCOUNT / IRELAND / "sessions").is_dir()
        finally:
            herald.stop()


def test_a_partitions_first_device_gets_no_event_from_before_it_connected(herald, tmp_path, subs):
    # A region no other test uses over MQTT: its MQTT side opens for this device.
    region = "sa-east-1"
    brazil = make_client(herald.endpoint, region=region)
    brazil.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    for i in range(20):
        brazil.create_thing(thingName=f"before-{i}")
    mqtt = Mqtt(herald, tmp_path)
    _, tls = device(mqtt, brazil, region, "first", "$aws/events/*")
    sub = subscribed(subs, tls, "first", ["$aws/events/thing/+/created"], [1])
    brazil.create_thing(thingName="after")
    sub.wait_message(lambda t, p: t == "$aws/events/thing/after/created", "after's event")
    assert names_created(sub) == ["after"], sub.output()
