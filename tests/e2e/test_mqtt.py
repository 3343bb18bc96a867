"""MQTT over mutual TLS with Debian's mosquitto clients: a `mosquitto_sub`
with a certificate made by the HTTP API sees the event of a thing created
with boto3, exactly as the README's walkthrough shows; and the IoT policy
checks (iot:Connect, iot:Subscribe, iot:Publish, iot:Receive), certificate
status, the subscribe-only `$aws/events/...` topics, the lifecycle events
(AWS IoT Core Developer Guide: "Lifecycle events", "AWS IoT Core policies") and persistent sessions."""

import json
import shutil
import subprocess
import threading
import time

import pytest

from support import (
    ACCOUNT,
    ALLOW_ALL,
    ARN_PREFIX,
    LocalCa,
    allow,
    client_arn,
    document,
    is_uuid,
    topic_arn,
    topic_filter_arn,
)

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_sub") is None,
    reason="mosquitto_sub is not installed (.ci/run installs mosquitto-clients)",
)

WATCHER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN_PREFIX}:client/${{iot:ClientId}}"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN_PREFIX}:topicfilter/$aws/events/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN_PREFIX}:topic/$aws/events/*"},
    ],
}


def test_mosquitto_sub_over_mtls_sees_a_created_thing(herald, client, tmp_path):
    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    keys = client.create_keys_and_certificate(setAsActive=True)
    (tmp_path / "cert.pem").write_text(keys["certificatePem"])
    (tmp_path / "private.key").write_text(keys["keyPair"]["PrivateKey"])
    (tmp_path / "ca.pem").write_text(herald.ca_pem)
    client.create_policy(policyName="EventWatcher", policyDocument=json.dumps(WATCHER_POLICY))
    client.attach_policy(policyName="EventWatcher", target=keys["certificateArn"])

    _, port = herald.gateway.endpoint("mqtt tls")
    sub = subprocess.Popen(
        [
            "mosquitto_sub", "-h", "localhost", "-p", str(port),
            "--cafile", str(tmp_path / "ca.pem"),
            "--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "private.key"),
            "-i", "watcher-1", "-t", "$aws/events/thing/+/created", "-v", "-C", "1", "-W", "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # mosquitto_sub says nothing once subscribed, so create things until it
    # has received one (it exits after the first message), with a deadline.
    created = []
    deadline = time.monotonic() + 30
    while sub.poll() is None and time.monotonic() < deadline:
        name = f"lamp-{len(created)}"
        client.create_thing(thingName=name, attributePayload={"attributes": {"room": "hall"}})
        created.append(name)
        try:
            sub.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
    out, err = sub.communicate(timeout=10)
    assert sub.returncode == 0, f"mosquitto_sub failed: {err}"

    topic, payload = out.strip().split(" ", 1)
    event = json.loads(payload)
    name = event["thingName"]
    assert name in created
    assert topic == f"$aws/events/thing/{name}/created"
    described = client.describe_thing(thingName=name)
    assert event == {
        "eventType": "THING_EVENT",
        "eventId": event["eventId"],
        "timestamp": event["timestamp"],
        "operation": "CREATED",
        "accountId": ACCOUNT,
        "thingId": described["thingId"],
        "thingName": name,
        "versionNumber": 1,
        "thingTypeName": None,
        "attributes": {"room": "hall"},
    }
    assert len(event["eventId"]) == 36
    assert event["timestamp"] > 1_600_000_000_000



def _write_keys(tmp_path, name, keys, ca_pem):
    cert = tmp_path / f"{name}.pem"
    key = tmp_path / f"{name}.key"
    cert.write_text(keys["certificatePem"])
    key.write_text(keys["keyPair"]["PrivateKey"])
    (tmp_path / "ca.pem").write_text(ca_pem)
    return ["--cafile", str(tmp_path / "ca.pem"), "--cert", str(cert), "--key", str(key)]


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub is not installed")
def test_a_things_group_policy_lets_mosquitto_pub_publish_as_the_thing(herald, client, tmp_path):
    """The publisher's certificate has no policy of its own: it is attached
    to thing `sensor-1`, whose group's policy allows connecting as the thing
    name and publishing to the thing's topic (thing policy variables)."""
    _, port = herald.gateway.endpoint("mqtt tls")
    base = ["-h", "localhost", "-p", str(port)]

    publisher = client.create_keys_and_certificate(setAsActive=True)
    pub_tls = _write_keys(tmp_path, "publisher", publisher, herald.ca_pem)
    client.create_thing(thingName="sensor-1")
    client.attach_thing_principal(thingName="sensor-1", principal=publisher["certificateArn"])
    client.create_thing_group(thingGroupName="sensors")
    client.add_thing_to_thing_group(thingGroupName="sensors", thingName="sensor-1")
    thing_name = "${iot:Connection.Thing.ThingName}"
    client.create_policy(
        policyName="SensorPublish",
        policyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN_PREFIX}:client/{thing_name}"},
                {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN_PREFIX}:topic/sensors/{thing_name}/data"},
            ],
        }),
    )
    group_arn = client.describe_thing_group(thingGroupName="sensors")["thingGroupArn"]
    client.attach_policy(policyName="SensorPublish", target=group_arn)

    reader = client.create_keys_and_certificate(setAsActive=True)
    sub_tls = _write_keys(tmp_path, "reader", reader, herald.ca_pem)
    client.create_policy(
        policyName="SensorReader",
        policyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN_PREFIX}:client/${{iot:ClientId}}"},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN_PREFIX}:topicfilter/sensors/*"},
                {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN_PREFIX}:topic/sensors/*"},
            ],
        }),
    )
    client.attach_policy(policyName="SensorReader", target=reader["certificateArn"])

    # Another client id than the thing's name is not the thing: refused.
    refused = subprocess.run(
        ["mosquitto_pub", *base, *pub_tls, "-i", "not-sensor-1", "-t", "sensors/sensor-1/data", "-m", "x"],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode != 0, f"connected as another client id: {refused.stderr}"

    sub = subprocess.Popen(
        ["mosquitto_sub", *base, *sub_tls, "-i", "reader-1", "-t", "sensors/+/data", "-v", "-C", "1", "-W", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # mosquitto_sub says nothing once subscribed: publish until it has
    # received a message (it exits after the first), with a deadline.
    deadline = time.monotonic() + 30
    published = 0
    while sub.poll() is None and time.monotonic() < deadline:
        pub = subprocess.run(
            ["mosquitto_pub", *base, *pub_tls, "-i", "sensor-1", "-q", "1",
             "-t", "sensors/sensor-1/data", "-m", "21.5"],
            capture_output=True, text=True, timeout=30,
        )
        assert pub.returncode == 0, f"mosquitto_pub failed: {pub.stderr}"
        published += 1
        try:
            sub.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
    out, err = sub.communicate(timeout=10)
    assert sub.returncode == 0, f"mosquitto_sub failed after {published} publishes: {err}"
    assert out.strip() == "sensors/sensor-1/data 21.5"


# ------------------------------------------------------------------ policy and lifecycle over mosquitto
#
# Every test below makes its own certificates and policies with boto3 and
# drives the gateway's TLS listener with Debian's mosquitto clients (2.0.x).
# Policies, certificate states and event configurations reach the gateway
# asynchronously, so an allowed operation is retried until it succeeds (with
# a deadline), and a denial is only asserted once something allowed by the
# same policy has succeeded. Subscribers run with `-d`, whose "Subscribed
# (mid: N): q1, q2" line says when (and at which QoS) the SUBACK came, and
# with `-F "MSG %t %p"`, so that messages stand apart from the debug lines.
# A negative (nothing delivered) is proven with a marker published after
# it on a topic the subscriber does see, never with a sleep.

needs_mosquitto_pub = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None, reason="mosquitto_pub is not installed"
)

DEADLINE_SECS = 30
SUB_WAIT_SECS = 60
MSG = "MSG "
REFUSED = "Connection Refused: not authorised."
ALL_DENIED = "All subscription requests were denied."
CONNACK_OK = "received CONNACK (0)"


def _line_buffered(cmd):
    """mosquitto's debug lines go through stdio, block-buffered into a pipe:
    `stdbuf -oL` makes them arrive as they are printed."""
    return ["stdbuf", "-oL", *cmd] if shutil.which("stdbuf") else cmd


class Mqtt:
    """The gateway's TLS endpoint and a folder for the test's PEM files."""

    def __init__(self, herald, tmp_path):
        _, port = herald.gateway.endpoint("mqtt tls")
        self.base = ["-h", "localhost", "-p", str(port)]
        self.tmp_path = tmp_path
        (tmp_path / "ca.pem").write_text(herald.ca_pem)

    def tls(self, name, cert_pem, key_pem):
        """Connection arguments presenting `cert_pem`."""
        cert = self.tmp_path / f"{name}.pem"
        key = self.tmp_path / f"{name}.key"
        cert.write_text(cert_pem)
        key.write_text(key_pem)
        return [*self.base, "--cafile", str(self.tmp_path / "ca.pem"), "--cert", str(cert), "--key", str(key)]

    def device(self, client, name, *statements):
        """A new active certificate with its own policy `name` made of
        `statements`: (create_keys_and_certificate's answer, arguments)."""
        keys = client.create_keys_and_certificate(setAsActive=True)
        if statements:
            client.create_policy(policyName=name, policyDocument=document(*statements))
            client.attach_policy(policyName=name, target=keys["certificateArn"])
        return keys, self.tls(name, keys["certificatePem"], keys["keyPair"]["PrivateKey"])


def pub(tls, client_id, topic, message, qos=1, extra=()):
    """One `mosquitto_pub -d` run: the CompletedProcess."""
    return subprocess.run(
        _line_buffered([
            "mosquitto_pub", *tls, "-d", "-i", client_id, "-q", str(qos), "-t", topic, "-m", message, *extra,
        ]),
        capture_output=True, text=True, timeout=DEADLINE_SECS,
    )


def _explain(result):
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def until(attempt, ok, what, deadline_secs=DEADLINE_SECS):
    """Calls `attempt()` until `ok(result)`, with a deadline; returns the result."""
    deadline = time.monotonic() + deadline_secs
    while True:
        result = attempt()
        if ok(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_secs}s; last attempt: {_describe(result)}")
        time.sleep(0.1)


def _describe(result):
    if isinstance(result, subprocess.CompletedProcess):
        return _explain(result)
    return repr(result)


def pub_until_ok(tls, client_id, topic, message, qos=1):
    """Publishes until mosquitto_pub succeeds (the policy or the certificate
    may not have reached the gateway yet)."""
    return until(
        lambda: pub(tls, client_id, topic, message, qos),
        lambda r: r.returncode == 0,
        f"mosquitto_pub -i {client_id} -t {topic}",
    )


class Sub:
    """A running `mosquitto_sub -d -F "MSG %t %p"`, its output read on threads."""

    def __init__(self, tls, client_id, topics, qos=1, extra=(), wait_secs=SUB_WAIT_SECS):
        topic_args = [arg for topic in topics for arg in ("-t", topic)]
        self.cmd = [
            "mosquitto_sub", *tls, "-d", "-F", f"{MSG}%t %p", "-i", client_id, "-q", str(qos),
            *topic_args, "-W", str(wait_secs), *extra,
        ]
        self.proc = subprocess.Popen(
            _line_buffered(self.cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines = []
        self.errors = []
        self._changed = threading.Condition()
        self._open = 2
        for stream, into in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._pump, args=(stream, into), daemon=True).start()

    def _pump(self, stream, into):
        for line in iter(stream.readline, ""):
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._open -= 1
            self._changed.notify_all()

    def output(self):
        with self._changed:
            return "stdout:\n" + "\n".join(self.lines) + "\nstderr:\n" + "\n".join(self.errors)

    def wait_line(self, predicate, what, timeout=DEADLINE_SECS):
        """The first stdout line matching `predicate`, waiting for it; fails
        when mosquitto_sub has ended (or the deadline passed) without one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if self._open == 0 or left <= 0:
                    break
                self._changed.wait(timeout=min(left, 0.5))
        raise AssertionError(f"mosquitto_sub never printed {what}\n{' '.join(self.cmd)}\n{self.output()}")

    def granted(self):
        """The SUBACK's return codes, once it has come."""
        line = self.wait_line(lambda l: l.startswith("Subscribed (mid:"), "its SUBACK")
        return [int(code) for code in line.split(":", 2)[2].split(",")]

    def messages(self):
        """[(topic, payload)] received so far, in order."""
        with self._changed:
            lines = list(self.lines)
        return [tuple(line[len(MSG):].split(" ", 1)) for line in lines if line.startswith(MSG)]

    def wait_message(self, predicate, what, timeout=DEADLINE_SECS):
        """The first (topic, payload) matching `predicate(topic, payload)`."""
        line = self.wait_line(
            lambda l: l.startswith(MSG) and predicate(*l[len(MSG):].split(" ", 1)), what, timeout
        )
        return tuple(line[len(MSG):].split(" ", 1))

    def wait_exit(self, timeout=DEADLINE_SECS):
        """Waits for mosquitto_sub to end by itself; returns its exit code."""
        code = self.proc.wait(timeout=timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._open == 0, timeout=5)
        return code

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def subs():
    """Starts `Sub`s; every one still running is stopped at the end."""
    started = []

    def start(*args, **kwargs):
        sub = Sub(*args, **kwargs)
        started.append(sub)
        return sub

    yield start
    for sub in started:
        sub.stop()


def subscribed(subs, tls, client_id, topics, granted, **kwargs):
    """A `Sub` whose SUBACK granted exactly `granted`: restarted until it
    does, as the subscriber's policy reaches the gateway asynchronously."""
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        sub = subs(tls, client_id, topics, **kwargs)
        try:
            codes = sub.granted()
        except AssertionError:
            codes = None
        if codes == granted:
            return sub
        sub.stop()
        if time.monotonic() > deadline:
            raise AssertionError(f"SUBACK {codes}, not {granted}, after {DEADLINE_SECS}s\n{sub.output()}")
        time.sleep(0.1)


def connect_allowed(client_id):
    return allow("iot:Connect", client_arn(client_id))


def own_client_id():
    return allow("iot:Connect", client_arn("${iot:ClientId}"))


def events_watcher(prefix="$aws/events/*"):
    """Statements letting a client subscribe to and receive `$aws/events/...`."""
    return (
        own_client_id(),
        allow("iot:Subscribe", topic_filter_arn(prefix)),
        allow("iot:Receive", topic_arn(prefix)),
    )


# How mosquitto 2.0 reports a connection the gateway closes after the TLS
# handshake, before any CONNACK (the CONNECT may or may not have been written).
DROPPED = ("Error: Broken pipe", "Error: The connection was lost.", "Error: Connection reset by peer")


def dropped_before_connack(result):
    """mosquitto_pub failed: the connection was closed before a CONNACK."""
    return (
        result.returncode != 0
        and "received CONNACK" not in result.stdout
        and any(message in result.stderr for message in DROPPED)
    )


def recent_millis(value):
    now = time.time() * 1000
    assert isinstance(value, int) and abs(now - value) < 120_000, f"{value} is not close to {now:.0f} (epoch ms)"
    return value


@needs_mosquitto_pub
def test_connect_is_refused_without_iot_connect_for_the_client_id(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    keys, tls = mqtt.device(
        client, "OnlyDevice1", connect_allowed("device-1"), allow("iot:Publish", topic_arn("data/*")),
    )
    _, watch = mqtt.device(client, "FailureWatcher", *events_watcher("$aws/events/presence/connect_failed/*"))
    watcher = subscribed(subs, watch, "watcher-1", ["$aws/events/presence/connect_failed/+"], [1])

    # The allowed client id connects (once the policy has reached the gateway).
    allowed = pub_until_ok(tls, "device-1", "data/x", "hello")
    assert CONNACK_OK in allowed.stdout

    # Another client id is refused at CONNACK (return code 5), by both clients.
    refused = pub(tls, "device-2", "data/x", "hello")
    assert refused.returncode == 5, _explain(refused)
    assert "received CONNACK (5)" in refused.stdout, _explain(refused)
    assert REFUSED in refused.stderr, _explain(refused)
    assert "sending PUBLISH" not in refused.stdout, _explain(refused)

    sub = subs(tls, "device-2", ["data/#"])
    assert sub.wait_exit() == 5, sub.output()
    assert any("received CONNACK (5)" in line for line in sub.lines), sub.output()
    assert any(REFUSED in line for line in sub.errors), sub.output()
    assert not any("sending SUBSCRIBE" in line for line in sub.lines), sub.output()

    # Each refusal is a `connect_failed` lifecycle event (AWS IoT Core Developer Guide: "Lifecycle events", connect failure).
    topic, payload = watcher.wait_message(
        lambda t, p: t == "$aws/events/presence/connect_failed/device-2", "a connect_failed event"
    )
    event = json.loads(payload)
    assert event == {
        "clientId": "device-2",
        "timestamp": event["timestamp"],
        "eventType": "connect_failed",
        "connectFailureReason": "AUTHORIZATION_FAILED",
        "principalIdentifier": keys["certificateId"],
        "sessionIdentifier": event["sessionIdentifier"],
        "ipAddress": "127.0.0.1",
    }
    recent_millis(event["timestamp"])
    assert is_uuid(event["sessionIdentifier"])


@needs_mosquitto_pub
def test_an_inactive_certificate_cannot_connect(herald, client, tmp_path):
    mqtt = Mqtt(herald, tmp_path)
    keys = client.create_keys_and_certificate(setAsActive=False)
    client.create_policy(
        policyName="Anything",
        policyDocument=document(own_client_id(), allow("iot:Publish", topic_arn("data/*"))),
    )
    client.attach_policy(policyName="Anything", target=keys["certificateArn"])
    tls = mqtt.tls("device", keys["certificatePem"], keys["keyPair"]["PrivateKey"])

    not_connected = dropped_before_connack

    # Created INACTIVE: the gateway turns it away after the handshake,
    # before any CONNACK (as it would a certificate it has not heard of yet;
    # activating it below shows that the refusal was the status).
    first = pub(tls, "device-1", "data/x", "hello")
    assert not_connected(first), _explain(first)

    # Activated, it connects ...
    client.update_certificate(certificateId=keys["certificateId"], newStatus="ACTIVE")
    pub_until_ok(tls, "device-1", "data/x", "hello")

    # ... and deactivated, it no longer does.
    client.update_certificate(certificateId=keys["certificateId"], newStatus="INACTIVE")
    refused = until(
        lambda: pub(tls, "device-1", "data/x", "hello"), not_connected, "the INACTIVE certificate refused"
    )
    # It stays refused.
    again = pub(tls, "device-1", "data/x", "hello")
    assert not_connected(again), _explain(again)


@needs_mosquitto_pub
def test_an_unregistered_certificate_cannot_connect(herald, client, tmp_path):
    mqtt = Mqtt(herald, tmp_path)
    # Herald holds an allow-everything policy; the certificate is none of its.
    client.create_policy(policyName="Everything", policyDocument=ALLOW_ALL)
    key_pem, cert_pem = LocalCa("Unknown CA").issue_with_key("stranger")
    tls = mqtt.tls("stranger", cert_pem, key_pem)

    for attempt in range(2):
        result = pub(tls, "stranger-1", "data/x", f"attempt {attempt}")
        assert dropped_before_connack(result), _explain(result)
        assert "sending PUBLISH" not in result.stdout, _explain(result)

    # The same certificate, once registered and active, is accepted: the
    # refusal was the registration, not the TLS setup.
    registered = client.register_certificate_without_ca(certificatePem=cert_pem, status="ACTIVE")
    client.attach_policy(policyName="Everything", target=registered["certificateArn"])
    pub_until_ok(tls, "stranger-1", "data/x", "now registered")


def test_subscribe_allowed_and_denied_per_topic_filter(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    keys, tls = mqtt.device(
        client, "DataOnly", own_client_id(),
        allow("iot:Subscribe", topic_filter_arn("data/*")),
        allow("iot:Receive", topic_arn("data/*")),
    )
    _, watch_tls = mqtt.device(client, "SubscriptionWatcher", *events_watcher("$aws/events/subscriptions/*"))
    watcher = subscribed(subs, watch_tls, "watcher-1", ["$aws/events/subscriptions/subscribed/+"], [1])

    # Allowed: granted QoS 1; with -E mosquitto_sub exits 0 once acknowledged.
    allowed = subscribed(subs, tls, "reader-1", ["data/x"], [1], extra=["-E"])
    assert allowed.wait_exit() == 0, allowed.output()
    assert not allowed.errors, allowed.output()

    # Denied: SUBACK 0x80; mosquitto_sub 2.0.11 says so on stderr,
    # disconnects and exits 0 (not an error exit).
    denied = subs(tls, "reader-1", ["secret/x"])
    assert denied.granted() == [128], denied.output()
    assert denied.wait_exit() == 0, denied.output()
    assert denied.errors == [ALL_DENIED], denied.output()
    assert any("sending DISCONNECT" in line for line in denied.lines), denied.output()

    # Mixed: each filter is decided on its own; the session goes on.
    mixed = subs(tls, "reader-1", ["secret/x", "data/x", "data/#"])
    assert mixed.granted() == [128, 1, 1], mixed.output()
    assert mixed.proc.poll() is None, mixed.output()
    assert not mixed.errors, mixed.output()

    # Each SUBSCRIBE is a `subscribed` lifecycle event listing the filters
    # granted (AWS IoT Core Developer Guide: "Lifecycle events", subscribe/unsubscribe); a denied filter is in none.
    topic = "$aws/events/subscriptions/subscribed/reader-1"
    _, payload = watcher.wait_message(lambda t, p: t == topic and "data/#" in p, "the mixed SUBSCRIBE's event")
    event = json.loads(payload)
    assert event == {
        "clientId": "reader-1",
        "timestamp": event["timestamp"],
        "eventType": "subscribed",
        "sessionIdentifier": event["sessionIdentifier"],
        "principalIdentifier": keys["certificateId"],
        "topics": ["data/x", "data/#"],
    }
    assert is_uuid(event["sessionIdentifier"])
    recent_millis(event["timestamp"])
    events = [json.loads(p) for t, p in watcher.messages() if t == topic]
    assert {"data/x"} in [set(e["topics"]) for e in events], events
    assert not [e for e in events if "secret/x" in e["topics"]], events


@needs_mosquitto_pub
def test_publish_allowed_is_delivered_and_publish_denied_disconnects(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    publisher, pub_tls = mqtt.device(
        client, "DataPublisher", own_client_id(), allow("iot:Publish", topic_arn("data/*")),
    )
    _, sub_tls = mqtt.device(
        client, "Reader", own_client_id(),
        allow("iot:Subscribe", topic_filter_arn("*")),
        allow("iot:Receive", topic_arn("*")),
    )
    reader = subscribed(
        subs, sub_tls, "reader-1", ["data/#", "other/#", "$aws/events/presence/disconnected/+"], [1, 1, 1]
    )

    sent = pub_until_ok(pub_tls, "publisher-1", "data/first", "allowed")
    assert "received PUBACK" in sent.stdout, _explain(sent)
    assert reader.wait_message(lambda t, p: t == "data/first", "data/first") == ("data/first", "allowed")

    # Denied: no PUBACK, the connection is closed under the publisher.
    denied = pub(pub_tls, "publisher-1", "other/x", "forbidden")
    assert denied.returncode != 0, _explain(denied)
    assert "sending PUBLISH" in denied.stdout and "received PUBACK" not in denied.stdout, _explain(denied)
    assert "The connection was lost." in denied.stderr, _explain(denied)
    # QoS 0 too: mosquitto_pub cannot tell, the subscriber can.
    pub(pub_tls, "publisher-1", "other/y", "forbidden")

    # The marker, published after, arrives; nothing of other/ before it.
    marker = pub(pub_tls, "publisher-1", "data/marker", "after")
    assert marker.returncode == 0, _explain(marker)
    reader.wait_message(lambda t, p: t == "data/marker", "the marker")
    data = [(t, p) for t, p in reader.messages() if not t.startswith("$aws/")]
    assert data == [("data/first", "allowed"), ("data/marker", "after")]

    # The denied publish ended that session with AUTH_ERROR (AWS IoT Core Developer Guide: "Lifecycle events").
    ended = "$aws/events/presence/disconnected/publisher-1"
    _, payload = reader.wait_message(
        lambda t, p: t == ended and json.loads(p)["disconnectReason"] != "CLIENT_INITIATED_DISCONNECT",
        "the denied publisher's disconnected event",
    )
    event = json.loads(payload)
    assert (event["clientInitiatedDisconnect"], event["disconnectReason"]) == (False, "AUTH_ERROR"), event
    assert event["principalIdentifier"] == publisher["certificateId"]


@needs_mosquitto_pub
def test_receive_is_checked_for_every_delivery(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    _, pub_tls = mqtt.device(client, "PublishAnything", own_client_id(), allow("iot:Publish", topic_arn("*")))
    _, sub_tls = mqtt.device(
        client, "ReceiveDataOnly", own_client_id(),
        allow("iot:Subscribe", topic_filter_arn("*")),
        allow("iot:Receive", topic_arn("data/*")),
    )
    # Both subscriptions are granted: iot:Receive is not checked at SUBSCRIBE.
    reader = subscribed(subs, sub_tls, "reader-1", ["secret/x", "data/x"], [1, 1])

    pub_until_ok(pub_tls, "publisher-1", "secret/x", "classified")
    assert pub(pub_tls, "publisher-1", "data/x", "public").returncode == 0
    reader.wait_message(lambda t, p: t == "data/x", "data/x")
    assert reader.messages() == [("data/x", "public")]


@needs_mosquitto_pub
def test_publishing_on_aws_events_is_refused_even_with_iot_star(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    _, tls = mqtt.device(client, "Everything", allow("iot:*", "*"))
    watcher = subscribed(subs, tls, "watcher-1", ["$aws/events/thing/+/created"], [1])

    # Thing events flow to the watcher (the event configuration reaches
    # the gateway asynchronously: create things until one arrives).
    created = []

    def one_arrived():
        created.append(f"probe-{len(created)}")
        client.create_thing(thingName=created[-1])
        return watcher.messages()

    until(lambda: one_arrived(), bool, "a thing event")

    forged = json.dumps({"eventType": "THING_EVENT", "operation": "CREATED", "thingName": "x", "forged": True})
    for qos in (1, 0):
        result = pub(tls, f"forger-{qos}", "$aws/events/thing/x/created", forged, qos=qos)
        assert "received CONNACK (0)" in result.stdout, _explain(result)
        if qos == 1:
            assert result.returncode != 0, _explain(result)
            assert "received PUBACK" not in result.stdout, _explain(result)

    client.create_thing(thingName="marker")
    watcher.wait_message(lambda t, p: t == "$aws/events/thing/marker/created", "the marker's event")
    names = [json.loads(p)["thingName"] for _, p in watcher.messages()]
    assert "x" not in names
    assert all(not t.startswith("$aws/events/thing/x/") for t, _ in watcher.messages())
    assert all("forged" not in p for _, p in watcher.messages())


@needs_mosquitto_pub
def test_lifecycle_events_of_a_mosquitto_pub_run(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    device, dev_tls = mqtt.device(
        client, "SomeDevice", connect_allowed("someid"), allow("iot:Publish", topic_arn("data/*")),
    )
    _, watch_tls = mqtt.device(client, "PresenceWatcher", *events_watcher("$aws/events/presence/*"))
    watcher = subscribed(
        subs, watch_tls, "watcher-1",
        ["$aws/events/presence/connected/+", "$aws/events/presence/disconnected/+"], [1, 1],
    )

    def session_events(run):
        pub_until_ok(dev_tls, "someid", "data/x", f"run {run}")
        # The n-th connected and disconnected events of `someid`.
        connected_topic = "$aws/events/presence/connected/someid"
        disconnected_topic = "$aws/events/presence/disconnected/someid"
        watcher.wait_line(
            lambda l: sum(x.startswith(f"{MSG}{disconnected_topic} ") for x in watcher.lines) >= run,
            f"disconnected event #{run}",
        )
        connected = [json.loads(p) for t, p in watcher.messages() if t == connected_topic]
        disconnected = [json.loads(p) for t, p in watcher.messages() if t == disconnected_topic]
        assert len(connected) == run and len(disconnected) == run, watcher.messages()
        return connected[-1], disconnected[-1]

    connected, disconnected = session_events(1)
    assert connected == {
        "clientId": "someid",
        "timestamp": connected["timestamp"],
        "eventType": "connected",
        "sessionIdentifier": connected["sessionIdentifier"],
        "principalIdentifier": device["certificateId"],
        "ipAddress": "127.0.0.1",
        "versionNumber": connected["versionNumber"],
    }
    assert disconnected == {
        "clientId": "someid",
        "timestamp": disconnected["timestamp"],
        "eventType": "disconnected",
        "sessionIdentifier": connected["sessionIdentifier"],
        "principalIdentifier": device["certificateId"],
        "clientInitiatedDisconnect": True,
        "disconnectReason": "CLIENT_INITIATED_DISCONNECT",
        "versionNumber": connected["versionNumber"],
    }
    assert is_uuid(connected["sessionIdentifier"])
    assert len(device["certificateId"]) == 64
    assert isinstance(connected["versionNumber"], int) and connected["versionNumber"] >= 0
    recent_millis(connected["timestamp"])
    recent_millis(disconnected["timestamp"])
    assert disconnected["timestamp"] >= connected["timestamp"]

    # The next connection of the same client id: a new session, a higher version.
    again, again_end = session_events(2)
    assert again["sessionIdentifier"] != connected["sessionIdentifier"]
    assert again_end["sessionIdentifier"] == again["sessionIdentifier"]
    assert again["versionNumber"] > connected["versionNumber"]
    assert again_end["versionNumber"] == again["versionNumber"]


def test_a_persistent_session_gets_the_events_of_its_absence(herald, client, tmp_path, subs):
    mqtt = Mqtt(herald, tmp_path)
    client.update_event_configurations(eventConfigurations={"THING": {"Enabled": True}})
    _, tls = mqtt.device(client, "ThingWatcher", *events_watcher("$aws/events/thing/*"))
    created_filter = "$aws/events/thing/+/created"

    # A live (clean) watcher, to know when thing events flow, and to see
    # each event once as it happens.
    live = subscribed(subs, tls, "live-1", [created_filter], [1])
    probes = []

    def probe():
        probes.append(f"probe-{len(probes)}")
        client.create_thing(thingName=probes[-1])
        return live.messages()

    until(probe, bool, "a thing event")
    # A fence: once its event is in, no probe event is still on its way.
    client.create_thing(thingName="fence")
    live.wait_message(lambda t, p: t == "$aws/events/thing/fence/created", "the fence's event")

    # persist-1 subscribes in a persistent session (-c, QoS 1) and leaves.
    first = subscribed(subs, tls, "persist-1", [created_filter], [1], extra=["-c", "-E"])
    assert first.wait_exit() == 0, first.output()
    assert first.messages() == [], first.output()

    # While it is away, a thing is created.
    client.create_thing(thingName="while-away", attributePayload={"attributes": {"room": "attic"}})
    _, live_payload = live.wait_message(
        lambda t, p: t == "$aws/events/thing/while-away/created", "the live event"
    )
    live_event = json.loads(live_payload)

    # Back with the same client id: the session is resumed and the event
    # missed is the first message.
    back = subs(tls, "persist-1", [created_filter], extra=["-c", "-C", "1"])
    assert back.wait_exit() == 0, back.output()
    assert any("received CONNACK (0)" in line for line in back.lines), back.output()
    assert back.messages() == [("$aws/events/thing/while-away/created", live_payload)], back.output()
    described = client.describe_thing(thingName="while-away")
    assert live_event == {
        "eventType": "THING_EVENT",
        "eventId": live_event["eventId"],
        "timestamp": live_event["timestamp"],
        "operation": "CREATED",
        "accountId": ACCOUNT,
        "thingId": described["thingId"],
        "thingName": "while-away",
        "versionNumber": 1,
        "thingTypeName": None,
        "attributes": {"room": "attic"},
    }

    # Once more, after another thing: that one arrives; any copy of the
    # first one delivered again (at least once) carries the same eventId.
    client.create_thing(thingName="after")
    third = subs(tls, "persist-1", [created_filter], extra=["-c"])
    third.wait_message(lambda t, p: t == "$aws/events/thing/after/created", "the next event")
    for topic, payload in third.messages():
        event = json.loads(payload)
        assert event["thingName"] in ("while-away", "after"), (topic, payload)
        if event["thingName"] == "while-away":
            assert event["eventId"] == live_event["eventId"]
