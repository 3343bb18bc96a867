"""Registry events over MQTT: a `mosquitto_sub` over mutual TLS, with a
certificate made by the HTTP API, sees the event of a thing created with
boto3, exactly as the README's walkthrough shows."""

import json
import shutil
import subprocess
import time

import pytest

from support import ACCOUNT, ARN_PREFIX

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

