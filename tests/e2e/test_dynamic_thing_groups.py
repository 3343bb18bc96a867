"""Dynamic thing groups through boto3 and the aws CLI (AWS IoT developer
guide: "Dynamic thing groups"): membership computed from a fleet index query,
following CreateThing, UpdateThing and connectivity, with the
THING_GROUP_MEMBERSHIP events AWS publishes for each change read over MQTT,
and continuous jobs that follow the membership."""

import json
import time

import pytest

from support import ACCOUNT, client_arn, expect_error, group_arn, run_aws, thing_arn, topic_arn, topic_filter_arn

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt reads the events")

INDEXING = {"thingIndexingConfiguration": {"thingIndexingMode": "REGISTRY", "thingConnectivityIndexingMode": "STATUS"}}
WAIT_SECS = 30


def eventually(what, check):
    deadline = time.monotonic() + WAIT_SECS
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECS} s"
        time.sleep(0.05)


def members(client, group):
    return sorted(client.list_things_in_thing_group(thingGroupName=group)["things"])


class Watcher:
    """The dev MQTT user subscribed to `$aws/events/#`, collecting messages."""

    def __init__(self, herald, client, client_id):
        client.create_policy(
            policyName="herald-dev",
            policyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "iot:Connect", "Resource": client_arn(client_id)},
                    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": topic_filter_arn("$aws/events/*")},
                    {"Effect": "Allow", "Action": "iot:Receive", "Resource": topic_arn("$aws/events/*")},
                ],
            }),
        )
        self.messages = []
        self.subscribed = False
        host, port = herald.gateway.endpoint("mqtt")

        def on_connect(c, userdata, flags, reason, properties):
            if not reason.is_failure:
                c.subscribe("$aws/events/#", qos=1)

        def on_subscribe(c, userdata, mid, reasons, properties):
            self.subscribed = True

        def on_message(c, userdata, message):
            self.messages.append((message.topic, json.loads(message.payload)))

        deadline = time.monotonic() + WAIT_SECS
        while not self.subscribed:
            assert time.monotonic() < deadline, "the watcher never subscribed"
            self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
            self.mqtt.username_pw_set("herald-dev", "herald-dev-secret")
            self.mqtt.on_connect, self.mqtt.on_subscribe, self.mqtt.on_message = on_connect, on_subscribe, on_message
            self.mqtt.connect(host, port, keepalive=30)
            self.mqtt.loop_start()
            end = time.monotonic() + 2
            while not self.subscribed and time.monotonic() < end:
                time.sleep(0.02)
            if not self.subscribed:
                self.mqtt.loop_stop()
                self.mqtt.disconnect()

    def wait_for(self, topic):
        return eventually(topic, lambda: next((p for t, p in self.messages if t == topic), None))

    def stop(self):
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


def test_membership_follows_the_query_with_events(herald, client):
    client.update_indexing_configuration(**INDEXING)
    client.update_event_configurations(
        eventConfigurations={"THING_GROUP_MEMBERSHIP": {"Enabled": True}, "THING_GROUP": {"Enabled": True}}
    )
    watcher = Watcher(herald, client, "dyn-watcher")
    try:
        client.create_thing(thingName="lamp-1", attributePayload={"attributes": {"watts": "60"}})
        client.create_thing(thingName="lamp-2", attributePayload={"attributes": {"watts": "10"}})
        created = client.create_dynamic_thing_group(
            thingGroupName="bright",
            queryString="attributes.watts>50",
            thingGroupProperties={"thingGroupDescription": "over 50 W"},
        )
        assert created["thingGroupArn"] == group_arn("bright")
        assert created["indexName"] == "AWS_Things"
        assert created["queryString"] == "attributes.watts>50"
        assert created["queryVersion"] == "2017-09-30"
        described = client.describe_thing_group(thingGroupName="bright")
        assert described["queryString"] == "attributes.watts>50"
        assert described["indexName"] == "AWS_Things"
        assert described["status"] == "ACTIVE"
        watcher.wait_for("$aws/events/thingGroup/bright/created")

        # The things that match join.
        eventually("lamp-1 in bright", lambda: members(client, "bright") == ["lamp-1"])
        added = watcher.wait_for("$aws/events/thingGroupMembership/thingGroup/bright/thing/lamp-1/added")
        # AWS's payload, field by field and in its order.
        assert list(added) == [
            "eventType",
            "eventId",
            "timestamp",
            "operation",
            "accountId",
            "groupArn",
            "groupId",
            "thingArn",
            "thingId",
            "membershipId",
        ]
        assert len(added["eventId"]) == 36 and added["timestamp"] > 1_600_000_000_000
        assert added["eventType"] == "THING_GROUP_MEMBERSHIP_EVENT"
        assert added["operation"] == "ADDED"
        assert added["accountId"] == ACCOUNT
        assert added["groupArn"] == group_arn("bright")
        assert added["thingArn"] == thing_arn("lamp-1")
        assert added["thingId"] == client.describe_thing(thingName="lamp-1")["thingId"]
        assert added["groupId"] == created["thingGroupId"]
        assert added["membershipId"]

        # A thing created matching joins; an update that stops matching leaves.
        client.create_thing(thingName="lamp-3", attributePayload={"attributes": {"watts": "75"}})
        eventually("lamp-3 in bright", lambda: members(client, "bright") == ["lamp-1", "lamp-3"])
        client.update_thing(thingName="lamp-1", attributePayload={"attributes": {"watts": "5"}, "merge": True})
        eventually("lamp-1 out of bright", lambda: members(client, "bright") == ["lamp-3"])
        removed = watcher.wait_for("$aws/events/thingGroupMembership/thingGroup/bright/thing/lamp-1/removed")
        assert removed["operation"] == "REMOVED"
        assert removed["membershipId"] == added["membershipId"]
        assert [g["groupName"] for g in client.list_thing_groups_for_thing(thingName="lamp-3")["thingGroups"]] == [
            "bright"
        ]

        # Things are not added or removed by hand.
        expect_error(client, "InvalidRequestException", client.add_thing_to_thing_group, thingGroupName="bright", thingName="lamp-2")
        expect_error(
            client, "InvalidRequestException", client.remove_thing_from_thing_group, thingGroupName="bright", thingName="lamp-3"
        )

        # A new query: the membership follows it.
        assert client.update_dynamic_thing_group(
            thingGroupName="bright", thingGroupProperties={}, queryString="attributes.watts<50", expectedVersion=1
        )["version"] == 2
        eventually("the dim things", lambda: members(client, "bright") == ["lamp-1", "lamp-2"])
        expect_error(
            client,
            "VersionConflictException",
            client.update_dynamic_thing_group,
            thingGroupName="bright",
            thingGroupProperties={},
            queryString="*",
            expectedVersion=1,
        )
        expect_error(
            client, "InvalidQueryException", client.update_dynamic_thing_group, thingGroupName="bright",
            thingGroupProperties={}, queryString="attributes.watts<",
        )

        client.delete_dynamic_thing_group(thingGroupName="bright")
        expect_error(client, "ResourceNotFoundException", client.describe_thing_group, thingGroupName="bright")
        assert client.list_thing_groups_for_thing(thingName="lamp-1")["thingGroups"] == []
        watcher.wait_for("$aws/events/thingGroup/bright/deleted")
    finally:
        watcher.stop()


def test_refusals(client):
    expect_error(client, "ResourceNotFoundException", client.create_dynamic_thing_group, thingGroupName="d", queryString="*")
    client.update_indexing_configuration(**INDEXING)
    expect_error(client, "InvalidQueryException", client.create_dynamic_thing_group, thingGroupName="d", queryString="(")
    client.create_thing_group(thingGroupName="static")
    expect_error(
        client, "ResourceAlreadyExistsException", client.create_dynamic_thing_group, thingGroupName="static", queryString="*"
    )
    expect_error(client, "InvalidRequestException", client.delete_dynamic_thing_group, thingGroupName="static")
    client.create_dynamic_thing_group(thingGroupName="d", queryString="*")
    expect_error(client, "InvalidRequestException", client.create_thing_group, thingGroupName="child", parentGroupName="d")
    client.delete_dynamic_thing_group(thingGroupName="d")
    client.delete_dynamic_thing_group(thingGroupName="d")  # not there: no error


def test_connectivity_moves_things_in_and_out(herald, client):
    client.update_indexing_configuration(**INDEXING)
    client.create_thing(thingName="sensor-1")
    client.create_dynamic_thing_group(thingGroupName="online", queryString="connectivity.connected:true")
    client.create_policy(
        policyName="herald-dev",
        policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": client_arn("sensor-1")}]}
        ),
    )
    host, port = herald.gateway.endpoint("mqtt")
    accepted = []

    def connect():
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-1", protocol=mqtt.MQTTv311)
        device.username_pw_set("herald-dev", "herald-dev-secret")
        device.on_connect = lambda c, u, f, reason, p: accepted.append(not reason.is_failure)
        device.connect(host, port, keepalive=30)
        device.loop_start()
        return device

    deadline = time.monotonic() + WAIT_SECS
    while True:
        accepted.clear()
        device = connect()
        eventually("CONNACK", lambda: accepted)
        if accepted[0]:
            break
        device.loop_stop()
        assert time.monotonic() < deadline, "the device never connected"
        time.sleep(0.1)
    eventually("sensor-1 online", lambda: members(client, "online") == ["sensor-1"])
    device.disconnect()
    device.loop_stop()
    eventually("sensor-1 offline", lambda: members(client, "online") == [])


def test_a_continuous_job_follows_the_membership(client):
    client.update_indexing_configuration(**INDEXING)
    client.create_thing(thingName="cam-1", attributePayload={"attributes": {"fw": "1"}})
    client.create_dynamic_thing_group(thingGroupName="old-firmware", queryString="attributes.fw:1")
    eventually("cam-1 in the group", lambda: members(client, "old-firmware") == ["cam-1"])
    client.create_job(
        jobId="upgrade",
        targets=[group_arn("old-firmware")],
        document=json.dumps({"fw": "2"}),
        targetSelection="CONTINUOUS",
    )

    def queued(thing):
        summaries = client.list_job_executions_for_thing(thingName=thing)["executionSummaries"]
        return [s["jobId"] for s in summaries]

    eventually("cam-1's execution", lambda: queued("cam-1") == ["upgrade"])
    client.create_thing(thingName="cam-2", attributePayload={"attributes": {"fw": "1"}})
    eventually("cam-2's execution", lambda: queued("cam-2") == ["upgrade"])


def test_every_operation_through_the_aws_cli(herald, client, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    client.update_indexing_configuration(**INDEXING)
    client.create_thing(thingName="MyLightBulb", attributePayload={"attributes": {"temperature": "70"}})
    created = aws(
        'aws iot create-dynamic-thing-group --thing-group-name "RoomTooWarm" '
        '--query-string "attributes.temperature>60"'
    )
    assert created["thingGroupName"] == "RoomTooWarm" and created["queryString"] == "attributes.temperature>60"
    eventually("the warm thing", lambda: members(client, "RoomTooWarm") == ["MyLightBulb"])
    assert aws(
        'aws iot update-dynamic-thing-group --thing-group-name "RoomTooWarm" '
        '--thing-group-properties "thingGroupDescription=\\"This thing group contains rooms warmer than 65F.\\"" '
        '--query-string "attributes.temperature>65"'
    ) == {"version": 2}
    assert aws('aws iot describe-thing-group --thing-group-name "RoomTooWarm"')["queryString"] == "attributes.temperature>65"
    aws('aws iot create-dynamic-thing-group --thing-group-name "Bad" --query-string "a:("', expect_error="InvalidQueryException")
    assert aws('aws iot delete-dynamic-thing-group --thing-group-name "RoomTooWarm"') is None
