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
