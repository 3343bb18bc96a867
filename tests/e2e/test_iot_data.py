"""The `iot-data` API over HTTP (botocore's `iot-data` model, SigV4 service
`iotdata`), with boto3 and the aws CLI: shadows (the same documents the
MQTT topics serve, an HTTP update published on them too), named shadows,
Publish to MQTT subscribers, and retained messages, with AWS's errors."""

import base64
import json
import time
import uuid

import botocore.exceptions
import pytest

from support import make_client, run_aws
from test_cluster import ALLOW_ALL, DEV_USER, connected


@pytest.fixture
def data(herald):
    return make_client(herald.endpoint, service="iot-data")


def aws_error(call):
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call()
    return refused.value.response["Error"]["Code"], refused.value.response["Error"]["Message"]


def test_shadows_over_http_are_the_mqtt_ones(herald, client, data):
    client.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    mqtt = connected(herald.gateway, f"watch-{uuid.uuid4().hex[:8]}")
    mqtt.subscribe("$aws/things/bulb/shadow/#")
    try:
        assert aws_error(lambda: data.get_thing_shadow(thingName="bulb")) == (
            "ResourceNotFoundException",
            "No shadow exists with name: 'bulb'",
        )
        answer = data.update_thing_shadow(
            thingName="bulb", payload=json.dumps({"state": {"desired": {"on": True}}, "clientToken": "h1"})
        )
        accepted = json.loads(answer["payload"].read())
        assert accepted["state"] == {"desired": {"on": True}} and accepted["version"] == 1
        assert accepted["clientToken"] == "h1"
        # Published on the MQTT topics as well, delta included.
        mqtt.wait(lambda: mqtt.received("$aws/things/bulb/shadow/update/accepted"), "update/accepted")
        assert json.loads(mqtt.received("$aws/things/bulb/shadow/update/delta")[0][1])["state"] == {"on": True}

        # What MQTT writes, HTTP reads.
        mqtt.publish("$aws/things/bulb/shadow/update", json.dumps({"state": {"reported": {"on": False}}}))
        mqtt.wait(lambda: len(mqtt.received("$aws/things/bulb/shadow/update/accepted")) == 2, "the device's report")
        shadow = json.loads(data.get_thing_shadow(thingName="bulb")["payload"].read())
        assert shadow["state"] == {"desired": {"on": True}, "reported": {"on": False}, "delta": {"on": True}}
        assert shadow["version"] == 2

        assert aws_error(
            lambda: data.update_thing_shadow(thingName="bulb", payload=json.dumps({"state": {"reported": {}}, "version": 1}))
        ) == ("ConflictException", "Version conflict")
        assert aws_error(lambda: data.update_thing_shadow(thingName="bulb", payload=b"{oops")) == (
            "InvalidRequestException",
            "Invalid JSON",
        )
        deleted = json.loads(data.delete_thing_shadow(thingName="bulb")["payload"].read())
        assert deleted["version"] == 2
        mqtt.wait(lambda: mqtt.received("$aws/things/bulb/shadow/delete/accepted"), "delete/accepted")
        assert aws_error(lambda: data.get_thing_shadow(thingName="bulb"))[0] == "ResourceNotFoundException"
    finally:
        mqtt.stop()


def test_named_shadows_are_listed(data):
    for name in ("zeta", "alpha", "mid"):
        data.update_thing_shadow(thingName="dev-1", shadowName=name, payload=json.dumps({"state": {"reported": {"n": name}}}))
    data.update_thing_shadow(thingName="dev-1", payload=json.dumps({"state": {"reported": {"classic": True}}}))
    listed = data.list_named_shadows_for_thing(thingName="dev-1")
    assert listed["results"] == ["alpha", "mid", "zeta"]
    first = data.list_named_shadows_for_thing(thingName="dev-1", pageSize=2)
    assert first["results"] == ["alpha", "mid"] and first["nextToken"]
    rest = data.list_named_shadows_for_thing(thingName="dev-1", pageSize=2, nextToken=first["nextToken"])
    assert rest["results"] == ["zeta"] and "nextToken" not in rest
    named = json.loads(data.get_thing_shadow(thingName="dev-1", shadowName="mid")["payload"].read())
    assert named["state"]["reported"] == {"n": "mid"}


def test_publish_reaches_mqtt_subscribers_and_retained_messages_are_listed(herald, client, data, tmp_path):
    client.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    mqtt = connected(herald.gateway, f"sub-{uuid.uuid4().hex[:8]}")
    mqtt.subscribe("alerts/#")
    try:
        data.publish(topic="alerts/fire", qos=1, payload=b"smoke in hall")
        mqtt.wait(lambda: mqtt.received("alerts/fire"), "the HTTP publish")
        assert mqtt.received("alerts/fire")[0][1] == b"smoke in hall"
        # Delivered at the lower of the publish's QoS and the subscription's (1).
        data.publish(topic="alerts/quiet", qos=0, payload=b"psst")
        mqtt.wait(lambda: mqtt.received("alerts/quiet"), "the QoS 0 HTTP publish")
        assert [(t, q) for t, _, q in mqtt.qos] == [("alerts/fire", 1), ("alerts/quiet", 0)]
        # MQTT 5 properties reach MQTT 5 subscribers.
        data.publish(
            topic="alerts/request",
            qos=1,
            payload=b'{"on":true}',
            userProperties=[{"trace": "t-1"}, {"zone": "hall"}],
            payloadFormatIndicator="UTF8_DATA",
            contentType="application/json",
            responseTopic="replies/alerts",
            correlationData=base64.b64encode(b"\x00\x01\xfe").decode(),
            messageExpiry=600,
        )
        mqtt.wait(lambda: mqtt.received("alerts/request"), "the HTTP publish with properties")
        got = dict(mqtt.properties)["alerts/request"]
        assert (got.UserProperty, got.PayloadFormatIndicator, got.ContentType) == (
            [("trace", "t-1"), ("zone", "hall")],
            1,
            "application/json",
        )
        assert (got.ResponseTopic, got.CorrelationData) == ("replies/alerts", b"\x00\x01\xfe")
        assert 598 <= got.MessageExpiryInterval <= 600
        for bad in (
            {"payloadFormatIndicator": "TEXT"},
            {"payloadFormatIndicator": "UTF8_DATA", "payload": b"\xff"},
            {"responseTopic": "replies/+"},
            {"correlationData": "not base64!"},
            {"messageExpiry": -1},
            {"contentType": "text\u0000plain"},
            {"userProperties": [{"big": "x" * 70_000}]},
        ):
            kwargs = {"topic": "alerts/bad", "qos": 1, "payload": b"{}", **bad}
            assert aws_error(lambda: data.publish(**kwargs))[0] == "InvalidRequestException", bad

        data.publish(topic="status/boiler", qos=1, retain=True, payload=b"on", userProperties=[{"unit": "boiler-1"}])
        listed = data.list_retained_messages()
        assert [t["topic"] for t in listed["retainedTopics"]] == ["status/boiler"]
        assert listed["retainedTopics"][0]["payloadSize"] == 2
        got = data.get_retained_message(topic="status/boiler")
        assert got["payload"] == b"on" and got["topic"] == "status/boiler"
        assert json.loads(got["userProperties"]) == [{"unit": "boiler-1"}]
        assert aws_error(lambda: data.get_retained_message(topic="status/none"))[0] == "ResourceNotFoundException"
        # A later subscriber gets it as a retained message.
        late = connected(herald.gateway, f"late-{uuid.uuid4().hex[:8]}")
        try:
            late.subscribe("status/#")
            late.wait(lambda: late.retained, "the retained message")
            assert late.retained == [("status/boiler", b"on")]
        finally:
            late.stop()
        assert aws_error(lambda: data.publish(topic="$aws/events/presence/connected/x", payload=b"{}"))[0] == "InvalidRequestException"

        # The aws CLI (version 1 passes a blob as it is given).
        run_aws("aws iot-data publish --topic alerts/cli --payload hi --qos 1", herald.endpoint, tmp_path)
        mqtt.wait(lambda: mqtt.received("alerts/cli"), "the CLI's publish")
        assert mqtt.received("alerts/cli")[0][1] == b"hi"
        run_aws(
            "aws iot-data publish --topic alerts/cli5 --payload hi --qos 1 "
            "--user-properties '[{\"k\":\"v\"}]' --response-topic replies/cli --content-type text/plain",
            herald.endpoint,
            tmp_path,
        )
        mqtt.wait(lambda: mqtt.received("alerts/cli5"), "the CLI's publish with properties")
        got = dict(mqtt.properties)["alerts/cli5"]
        assert (got.UserProperty, got.ResponseTopic, got.ContentType) == ([("k", "v")], "replies/cli", "text/plain")
        run_aws(
            "aws iot-data update-thing-shadow --thing-name cli-thing "
            "--payload '{\"state\":{\"reported\":{\"ok\":true}}}' out.json",
            herald.endpoint,
            tmp_path,
        )
        run_aws("aws iot-data get-thing-shadow --thing-name cli-thing shadow.json", herald.endpoint, tmp_path)
        assert json.loads((tmp_path / "shadow.json").read_text())["state"] == {"reported": {"ok": True}}
        listed = run_aws("aws iot-data list-named-shadows-for-thing --thing-name cli-thing", herald.endpoint, tmp_path)
        assert listed["results"] == []
        run_aws("aws iot-data delete-thing-shadow --thing-name cli-thing gone.json", herald.endpoint, tmp_path)
        run_aws("aws iot-data get-thing-shadow --thing-name cli-thing x.json", herald.endpoint, tmp_path, expect_error="ResourceNotFoundException")
    finally:
        mqtt.stop()


def test_every_operation_and_error_through_the_aws_cli(herald, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    thing = f"cli-{uuid.uuid4().hex[:6]}"
    update = f"aws iot-data update-thing-shadow --thing-name {thing}"
    aws(update + " --shadow-name cfg --payload '{\"state\":{\"desired\":{\"rate\":5}},\"clientToken\":\"c1\"}' a.json")
    accepted = json.loads((tmp_path / "a.json").read_text())
    assert accepted["version"] == 1 and accepted["clientToken"] == "c1"
    aws(update + " --shadow-name net --payload '{\"state\":{\"reported\":{\"ip\":\"10.0.0.2\"}}}' b.json")
    aws(f"aws iot-data get-thing-shadow --thing-name {thing} --shadow-name cfg cfg.json")
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["state"] == {"desired": {"rate": 5}, "delta": {"rate": 5}}
    listed = aws(f"aws iot-data list-named-shadows-for-thing --thing-name {thing} --page-size 1")
    assert listed["results"] == ["cfg"] and listed["nextToken"]
    rest = aws(
        f"aws iot-data list-named-shadows-for-thing --thing-name {thing} --page-size 1 --next-token {listed['nextToken']}"
    )
    assert rest["results"] == ["net"]

    # Each refusal, with AWS's error type; none changes the shadow.
    aws(
        update + " --shadow-name cfg --payload '{\"state\":{\"desired\":{\"rate\":6}},\"version\":7}' x.json",
        expect_error="ConflictException",
    )
    aws(update + " --payload 'not json' x.json", expect_error="InvalidRequestException")
    aws(update + " --payload '{\"state\":{\"other\":{}}}' x.json", expect_error="InvalidRequestException")
    (tmp_path / "big.json").write_text(json.dumps({"state": {"reported": {"blob": "x" * 9000}}}))
    aws(update + " --payload fileb://big.json x.json", expect_error="RequestEntityTooLargeException")
    (tmp_path / "latin1.bin").write_bytes(b"\xff\xfe{}")
    aws(update + " --payload fileb://latin1.bin x.json", expect_error="UnsupportedDocumentEncodingException")
    aws(f"aws iot-data get-thing-shadow --thing-name {thing} x.json", expect_error="ResourceNotFoundException")
    aws(f"aws iot-data delete-thing-shadow --thing-name {thing} x.json", expect_error="ResourceNotFoundException")
    aws(f"aws iot-data get-thing-shadow --thing-name {thing} --shadow-name cfg cfg2.json")
    assert json.loads((tmp_path / "cfg2.json").read_text())["version"] == 1

    aws(f"aws iot-data delete-thing-shadow --thing-name {thing} --shadow-name net gone.json")
    assert json.loads((tmp_path / "gone.json").read_text())["version"] == 1
    assert aws(f"aws iot-data list-named-shadows-for-thing --thing-name {thing}")["results"] == ["cfg"]

    # Publish, retained messages.
    aws(f"aws iot-data publish --topic {thing}/state --qos 1 --retain --payload on")
    retained = [t for t in aws("aws iot-data list-retained-messages")["retainedTopics"] if t["topic"].startswith(thing)]
    assert [(t["topic"], t["payloadSize"], t["qos"]) for t in retained] == [(f"{thing}/state", 2, 1)]
    # Retained when published: epoch milliseconds, within the last minute.
    assert abs(retained[0]["lastModifiedTime"] / 1000 - time.time()) < 60
    got = aws(f"aws iot-data get-retained-message --topic {thing}/state")
    assert got["topic"] == f"{thing}/state" and got["qos"] == 1
    assert got["lastModifiedTime"] == retained[0]["lastModifiedTime"]
    aws(f"aws iot-data get-retained-message --topic {thing}/none", expect_error="ResourceNotFoundException")
    # An empty retained message deletes the topic's.
    aws(f"aws iot-data publish --topic {thing}/state --qos 1 --retain")
    aws(f"aws iot-data get-retained-message --topic {thing}/state", expect_error="ResourceNotFoundException")
    aws("aws iot-data publish --topic '$aws/events/presence/connected/x' --payload x", expect_error="InvalidRequestException")
    aws("aws iot-data publish --topic 'a/+/b' --payload x", expect_error="InvalidRequestException")
