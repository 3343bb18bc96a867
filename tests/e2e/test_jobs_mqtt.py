"""The jobs device API over MQTT (AWS IoT Core Developer Guide: "Jobs device
MQTT API operations"), end to end: jobs made with boto3, a device (paho-mqtt,
the development user on the plain listener) subscribed to
`$aws/things/<thing>/jobs/#` gets `notify` and `notify-next`, asks with
`get`, `start-next`, `<jobId>/get` and `<jobId>/update`, and reads each
answer on `/accepted` or `/rejected` with its `clientToken`. Answers go to
the requesting client only."""

import json
import threading
import time
import uuid

import pytest

from support import client_arn, thing_arn, topic_arn, topic_filter_arn

mqtt = pytest.importorskip(
    "paho.mqtt.client",
    reason="paho-mqtt is the device; install it with `python3 -m pip install paho-mqtt`",
)

DEV_USER = "herald-dev"
DEV_PASSWORD = "herald-dev-secret"
WAIT_SECS = 10
THING = "dev-1"
JOBS = f"$aws/things/{THING}/jobs"
DOCUMENT = {"operation": "update", "version": "2"}


def device_policy(*client_ids):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": [client_arn(c) for c in client_ids]},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": topic_filter_arn(f"{JOBS}/*")},
                {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": topic_arn(f"{JOBS}/*")},
            ],
        }
    )


class Device:
    """One MQTT client collecting every message it receives, in order."""

    def __init__(self, host, port, client_id, skip_requests):
        self.client_id = client_id
        # A client subscribed to its own request topics gets its requests back.
        self._skip_requests = skip_requests
        self._cond = threading.Condition()
        self._messages = []
        self._pos = 0
        self._connack = None
        self._subacks = 0
        self._host, self._port = host, port
        self._mqtt = None

    def _on_connect(self, _c, _u, _f, reason_code, _p):
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, _c, _u, _mid, _codes, _p):
        with self._cond:
            self._subacks += 1
            self._cond.notify_all()

    def _on_message(self, _c, _u, message):
        if self._skip_requests and message.topic.endswith(("/get", "/start-next", "/update")):
            return
        with self._cond:
            try:
                payload = json.loads(message.payload)
            except ValueError:
                payload = message.payload
            self._messages.append((message.topic, payload))
            self._cond.notify_all()

    def _wait(self, what, ready):
        deadline = time.monotonic() + WAIT_SECS
        with self._cond:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {WAIT_SECS}s; got {self._messages[self._pos:]}")
                self._cond.wait(remaining)

    def start(self, *filters):
        """Connects (again while the gateway does not know the policy yet)
        and subscribes at QoS 1."""
        deadline = time.monotonic() + WAIT_SECS
        while True:
            with self._cond:
                self._connack = None
            m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
            m.username_pw_set(DEV_USER, DEV_PASSWORD)
            m.on_connect, m.on_subscribe, m.on_message = self._on_connect, self._on_subscribe, self._on_message
            m.connect(self._host, self._port, keepalive=30)
            m.loop_start()
            self._wait("CONNACK", lambda: self._connack is not None)
            if not self._connack.is_failure:
                self._mqtt = m
                break
            m.loop_stop()
            m.disconnect()
            assert time.monotonic() < deadline, f"CONNACK {self._connack}"
            time.sleep(0.05)
        for f in filters:
            self._mqtt.subscribe(f, qos=1)
        self._wait("SUBACK", lambda: self._subacks == len(filters))

    def stop(self):
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    def next(self, topic):
        """The next message, which must be on `topic`."""
        self._wait(f"message on {topic}", lambda: len(self._messages) > self._pos)
        with self._cond:
            got = self._messages[self._pos]
            self._pos += 1
        assert got[0] == topic, f"expected {topic}, got {got}"
        return got[1]

    def ask(self, request, payload):
        """Publishes a request and returns (`accepted` or `rejected`, answer)."""
        token = uuid.uuid4().hex
        body = payload if isinstance(payload, (bytes, str)) else json.dumps({**payload, "clientToken": token})
        self._mqtt.publish(f"{JOBS}/{request}", body, qos=1)
        self._wait(
            f"answer to {request}",
            lambda: any(t.startswith(f"{JOBS}/{request}/") for t, _ in self._messages[self._pos :]),
        )
        with self._cond:
            for i in range(self._pos, len(self._messages)):
                topic, answer = self._messages[i]
                if topic.startswith(f"{JOBS}/{request}/"):
                    del self._messages[i]
                    break
        outcome = topic.rsplit("/", 1)[1]
        if not isinstance(payload, (bytes, str)):
            assert answer.get("clientToken") == token, answer
        assert isinstance(answer["timestamp"], int)
        return outcome, answer

    def seen(self):
        with self._cond:
            return list(self._messages)


@pytest.fixture
def device(reset, herald, client):
    host, port = herald.gateway.endpoint("mqtt")
    device = Device(host, port, f"device-{uuid.uuid4().hex[:10]}", skip_requests=True)
    other = Device(host, port, f"other-{uuid.uuid4().hex[:10]}", skip_requests=False)
    client.create_policy(policyName=DEV_USER, policyDocument=device_policy(device.client_id, other.client_id))
    client.create_thing(thingName=THING)
    device.start(f"{JOBS}/#")
    other.start(f"{JOBS}/get/accepted", f"{JOBS}/get", f"{JOBS}/marker")
    try:
        yield device, other
    finally:
        device.stop()
        other.stop()


def test_a_device_runs_a_job_over_mqtt(client, device):
    device, other = device
    client.create_job(jobId="fw", targets=[thing_arn(THING)], document=json.dumps(DOCUMENT))
    notify = device.next(f"{JOBS}/notify")
    assert [j["jobId"] for j in notify["jobs"]["QUEUED"]] == ["fw"]
    assert "IN_PROGRESS" not in notify["jobs"]
    queued = notify["jobs"]["QUEUED"][0]
    assert queued["versionNumber"] == 1 and queued["executionNumber"] == 1
    assert isinstance(queued["queuedAt"], int)
    nxt = device.next(f"{JOBS}/notify-next")["execution"]
    assert nxt["jobId"] == "fw"
    assert nxt["thingName"] == THING
    assert nxt["status"] == "QUEUED"
    assert nxt["jobDocument"] == DOCUMENT

    outcome, pending = device.ask("get", {})
    assert outcome == "accepted", pending
    assert [j["jobId"] for j in pending["queuedJobs"]] == ["fw"]
    assert pending["inProgressJobs"] == []

    outcome, started = device.ask("start-next", {"statusDetails": {"step": "download"}})
    assert outcome == "accepted", started
    execution = started["execution"]
    assert execution["status"] == "IN_PROGRESS"
    assert execution["statusDetails"] == {"step": "download"}
    assert execution["versionNumber"] == 2
    assert execution["jobDocument"] == DOCUMENT
    assert isinstance(execution["startedAt"], int)

    outcome, described = device.ask("$next/get", {"includeJobDocument": False})
    assert outcome == "accepted", described
    assert described["execution"]["jobId"] == "fw"
    assert "jobDocument" not in described["execution"]

    outcome, rejected = device.ask("fw/update", {"status": "SUCCEEDED", "expectedVersion": 1})
    assert outcome == "rejected", rejected
    assert rejected["code"] == "VersionMismatch"
    assert rejected["message"]

    outcome, rejected = device.ask("fw/update", {"status": "QUEUED"})
    assert (outcome, rejected["code"]) == ("rejected", "InvalidRequest")

    outcome, updated = device.ask(
        "fw/update",
        {
            "status": "SUCCEEDED",
            "statusDetails": {"step": "done"},
            "expectedVersion": 2,
            "includeJobExecutionState": True,
            "includeJobDocument": True,
        },
    )
    assert outcome == "accepted", updated
    assert updated["executionState"] == {"status": "SUCCEEDED", "statusDetails": {"step": "done"}, "versionNumber": 3}
    assert updated["jobDocument"] == DOCUMENT
    # The pending list emptied: both notifications, with nothing in them.
    assert device.next(f"{JOBS}/notify")["jobs"] == {}
    assert "execution" not in device.next(f"{JOBS}/notify-next")

    outcome, rejected = device.ask("fw/update", {"status": "FAILED"})
    assert (outcome, rejected["code"]) == ("rejected", "InvalidStateTransition")
    outcome, rejected = device.ask("nothing/update", {"status": "SUCCEEDED"})
    assert (outcome, rejected["code"]) == ("rejected", "ResourceNotFound")
    outcome, rejected = device.ask("get", b"{not json")
    assert (outcome, rejected["code"]) == ("rejected", "InvalidJson")
    outcome, nothing = device.ask("$next/get", {})
    assert outcome == "accepted" and "execution" not in nothing
    assert client.describe_job(jobId="fw")["job"]["status"] == "COMPLETED"


def test_answers_go_to_the_requesting_client_only(client, device):
    device, other = device
    outcome, _ = device.ask("get", {})
    assert outcome == "accepted"
    # The marker follows the request on the same bus: once `other` has it,
    # it has everything it would ever get before it.
    device._mqtt.publish(f"{JOBS}/marker", json.dumps({"timestamp": 0}), qos=1)
    other.next(f"{JOBS}/get")
    other.next(f"{JOBS}/marker")
    assert [t for t, _ in other.seen()] == [f"{JOBS}/get", f"{JOBS}/marker"]
