"""Registry events over MQTT (AWS IoT Core Developer Guide: "Registry events"), end to end: each registry
operation is made with boto3, and the events it publishes are read by a real
MQTT client (paho-mqtt) subscribed to `$aws/events/#` at QoS 1 on the
gateway's plain listener, as the development user `herald-dev`. Every payload
is compared field by field with the AWS documentation's examples: names, JSON types,
nulls, millisecond timestamps, and ARNs in account 123456789012, us-east-1.

How a test knows it has seen *all* the events of an operation: the gateway
publishes registry events in commit order on one stream, so after the
operation the test creates a sentinel (a thing, or a thing group when thing
events are switched off) and waits for the sentinel's event; whatever arrived
before it, and after the previous sentinel, is exactly what the operation
published. The same ordering proves a negative without sleeping: an event
switched off must not have arrived before the sentinel that followed it.

The event configuration reaches the gateway asynchronously, so a test never
assumes a change is in force: it repeats a harmless mutation of a family the
change switched on until that family's event arrives (one update of the
configuration is applied to the gateway's cache as a whole).
"""

import json
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from support import ACCOUNT, client_arn, group_arn, is_uuid, thing_arn, topic_arn, topic_filter_arn

mqtt = pytest.importorskip(
    "paho.mqtt.client",
    reason="paho-mqtt reads the events; install it with `python3 -m pip install paho-mqtt`",
)

# The gateway's default plain-MQTT user (README "Plain MQTT for development"),
# governed by the IoT policy of the same name.
DEV_USER = "herald-dev"
DEV_PASSWORD = "herald-dev-secret"
DEV_POLICY_NAME = "herald-dev"


def watcher_policy(client_id):
    """The dev user's policy for one test: connecting only as this test's
    client id (so a CONNECT accepted proves the gateway has this test's
    policies, hence is past the reset), watching `$aws/events`."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "iot:Connect", "Resource": client_arn(client_id)},
                {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": topic_filter_arn("$aws/events/*")},
                {"Effect": "Allow", "Action": "iot:Receive", "Resource": topic_arn("$aws/events/*")},
            ],
        }
    )


EVENTS_FILTER = "$aws/events/#"
REGISTRY_KEYS = (
    "THING",
    "THING_TYPE",
    "THING_TYPE_ASSOCIATION",
    "THING_GROUP",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
)
# The topics of the registry families (the lifecycle events of our own
# connection also arrive on `$aws/events/#`; they are not in commit order).
REGISTRY_PREFIXES = tuple(
    f"$aws/events/{family}/"
    for family in (
        "thing",
        "thingType",
        "thingTypeAssociation",
        "thingGroup",
        "thingGroupMembership",
        "thingGroupHierarchy",
    )
)

# How long an expected event may take (a generous bound: events normally
# arrive within milliseconds; a failing test waits this long once).
WAIT_SECS = 10
# How long a poll for a configuration change waits for each attempt.
POLL_SECS = 0.3
# A registry timestamp is the commit time, taken on this machine: it must lie
# within the operation's wall-clock window, give or take this much.
CLOCK_SLACK_MS = 1000


def now_ms():
    return time.time_ns() // 1_000_000


def configure(client, **keys):
    client.update_event_configurations(
        eventConfigurations={key: {"Enabled": value} for key, value in keys.items()}
    )


# ----------------------------------------------------------------- watcher


@dataclass
class Event:
    topic: str
    payload: object


class NoEvent(AssertionError):
    """The awaited event did not arrive in time."""


class Batch(list):
    """The registry events one operation published, in arrival order, with
    the operation's wall-clock window in epoch milliseconds."""

    def __init__(self, events, started_ms, ended_ms):
        super().__init__(events)
        self.started_ms = started_ms
        self.ended_ms = ended_ms

    def topics(self):
        return [e.topic for e in self]

    def expect_topics(self, required, optional=()):
        """Exactly the `required` topics (in any order: the AWS documentation does not
        order events), plus at most one of each `optional` one."""
        got = self.topics()
        extra = [t for t in got if t not in required]
        assert all(t in optional for t in extra) and len(set(extra)) == len(extra), (
            f"topics {got}; expected {sorted(required)} and at most one of each of {sorted(optional)}"
        )
        assert sorted(t for t in got if t in required) == sorted(required), (
            f"topics {got}; expected {sorted(required)}"
        )

    def payload(self, topic):
        matches = [e.payload for e in self if e.topic == topic]
        assert len(matches) == 1, f"{len(matches)} events on {topic}; got {self.topics()}"
        return matches[0]

    def optional(self, topic):
        matches = [e.payload for e in self if e.topic == topic]
        return matches[0] if matches else None

    def check(self, topic, expected):
        """The one event on `topic` is `expected` plus its own `eventId` (a
        UUID) and `timestamp` (integer epoch ms within this operation's
        window), with every value of the same JSON type."""
        check_payload(self.payload(topic), expected, self)


def typed(value):
    """`value` with each scalar tagged by its type, so that equality also
    compares JSON types (Python's `1 == 1.0 == True`)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def check_payload(event, expected, batch):
    assert isinstance(event, dict), f"payload is not a JSON object: {event!r}"
    event_id = event.get("eventId")
    assert isinstance(event_id, str) and is_uuid(event_id), f"eventId {event_id!r} is not a UUID string"
    timestamp = event.get("timestamp")
    assert type(timestamp) is int, f"timestamp {timestamp!r} is not an integer"
    assert batch.started_ms - CLOCK_SLACK_MS <= timestamp <= batch.ended_ms + CLOCK_SLACK_MS, (
        f"timestamp {timestamp} is not epoch milliseconds within "
        f"[{batch.started_ms}, {batch.ended_ms}] (the operation's window)"
    )
    full = dict(expected, eventId=event_id, timestamp=timestamp)
    assert event == full
    assert typed(event) == typed(full)


class Watcher:
    """One MQTT subscriber to `$aws/events/#` at QoS 1, collecting every
    message; `until` and `during` read them in order."""

    def __init__(self, iot, host, port):
        self.iot = iot
        self.client_id = f"events-{uuid.uuid4().hex[:12]}"
        self.sentinel_family = "THING"
        self._cond = threading.Condition()
        self._messages = []
        self._pos = 0
        self._sentinels = 0
        self._connack = None
        self._subacks = {}
        self._disconnected = None
        self._event_ids = set()
        self._mqtt = None
        self._host, self._port = host, port

    # paho's network thread

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._cond:
            self._subacks[mid] = [int(rc.value) for rc in reason_codes]
            self._cond.notify_all()

    def _on_message(self, _client, _userdata, message):
        try:
            payload = json.loads(message.payload)
        except ValueError:
            payload = message.payload
        with self._cond:
            self._messages.append(Event(message.topic, payload))
            self._cond.notify_all()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        with self._cond:
            self._disconnected = reason_code
            self._cond.notify_all()

    # the test's thread

    def _wait_for(self, what, ready, fail_on_disconnect=True):
        deadline = time.monotonic() + WAIT_SECS
        with self._cond:
            while not ready():
                if fail_on_disconnect and self._disconnected is not None:
                    raise AssertionError(f"disconnected ({self._disconnected}) while waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {what} within {WAIT_SECS}s")
                self._cond.wait(remaining)

    def _connect_once(self):
        """One CONNECT; True when accepted."""
        with self._cond:
            self._connack = None
            self._disconnected = None
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
        m.username_pw_set(DEV_USER, DEV_PASSWORD)
        m.on_connect = self._on_connect
        m.on_subscribe = self._on_subscribe
        m.on_message = self._on_message
        m.on_disconnect = self._on_disconnect
        m.connect(self._host, self._port, keepalive=30)
        m.loop_start()
        self._wait_for(
            "CONNACK", lambda: self._connack is not None or self._disconnected is not None, fail_on_disconnect=False
        )
        if self._connack is not None and not self._connack.is_failure:
            self._mqtt = m
            return True
        m.loop_stop()
        m.disconnect()
        return False

    def start(self):
        """Connects (retrying while the gateway's policies predate this
        test's, which refuse this client id) and subscribes to
        `$aws/events/#` at QoS 1, waiting for the SUBACK."""
        deadline = time.monotonic() + WAIT_SECS
        while not self._connect_once():
            assert time.monotonic() < deadline, (
                f"CONNECT as {DEV_USER}/{self.client_id} refused for {WAIT_SECS}s: "
                f"{self._connack or self._disconnected}"
            )
            time.sleep(0.05)
        result, mid = self._mqtt.subscribe(EVENTS_FILTER, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"SUBSCRIBE not sent: {result}"
        self._wait_for("SUBACK", lambda: mid in self._subacks)
        assert self._subacks[mid] == [1], f"SUBACK for {EVENTS_FILTER} at QoS 1: {self._subacks[mid]}"

    def stop(self):
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()

    def enable(self, *keys):
        """Sets the registry event configuration to exactly `keys` on, and
        waits until the gateway publishes the sentinel family (which must be
        one of them). Only valid while every earlier configuration in force
        since the reset had the sentinel family off."""
        assert self.sentinel_family in keys
        configure(self.iot, **{key: key in keys for key in REGISTRY_KEYS})
        self.sync()

    def until(self, topic, timeout=WAIT_SECS):
        """Waits for the next message on `topic`; returns the registry events
        that arrived before it (since the last `until`) and the message.
        Raises NoEvent, consuming nothing, when it doesn't come in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self._pos, len(self._messages)):
                    if self._messages[i].topic == topic:
                        before = self._messages[self._pos:i]
                        self._pos = i + 1
                        return [e for e in before if e.topic.startswith(REGISTRY_PREFIXES)], self._messages[i]
                if self._disconnected is not None:
                    raise AssertionError(f"disconnected ({self._disconnected}) while waiting for {topic}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    since = [m.topic for m in self._messages[self._pos:]]
                    raise NoEvent(f"no event on {topic} within {timeout}s; received since: {since}")
                self._cond.wait(remaining)

    def barrier(self, timeout=WAIT_SECS):
        """Makes a sentinel and waits for its event; returns the registry
        events published before it (since the last barrier)."""
        self._sentinels += 1
        name = f"sentinel-{self._sentinels}"
        if self.sentinel_family == "THING":
            self.iot.create_thing(thingName=name)
            topic = f"$aws/events/thing/{name}/created"
        else:
            assert self.sentinel_family == "THING_GROUP"
            self.iot.create_thing_group(thingGroupName=name)
            topic = f"$aws/events/thingGroup/{name}/created"
        before, _ = self.until(topic, timeout)
        return before

    def sync(self):
        """Waits until the sentinel family's events are published (the
        configuration that enables them has reached the gateway), then
        forgets everything received so far."""
        deadline = time.monotonic() + WAIT_SECS
        while True:
            try:
                self.barrier(timeout=POLL_SECS)
                return
            except NoEvent:
                if time.monotonic() > deadline:
                    raise

    def poll(self, mutate, timeout=WAIT_SECS):
        """Repeats `mutate(i)` (which returns the topic of the event it
        should publish) until that event arrives."""
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            i += 1
            topic = mutate(i)
            try:
                self.until(topic, timeout=POLL_SECS)
                return
            except NoEvent:
                if time.monotonic() > deadline:
                    raise

    def all_topics(self):
        with self._cond:
            return [m.topic for m in self._messages]

    def during(self, action):
        """Runs `action`, then a barrier; returns a Batch of the registry
        events it published. Each eventId must be new."""
        started = now_ms()
        action()
        ended = now_ms()
        events = self.barrier()
        for e in events:
            event_id = e.payload.get("eventId") if isinstance(e.payload, dict) else None
            assert event_id not in self._event_ids, f"eventId {event_id} seen twice ({e.topic})"
            self._event_ids.add(event_id)
        return Batch(events, started, ended)


@pytest.fixture
def watcher(reset, herald, client):
    """A Watcher connected and subscribed after the reset, with every
    registry event type still disabled."""
    host, port = herald.gateway.endpoint("mqtt")
    watcher = Watcher(client, host, port)
    client.create_policy(policyName=DEV_POLICY_NAME, policyDocument=watcher_policy(watcher.client_id))
    try:
        watcher.start()
        yield watcher
    finally:
        watcher.stop()


@pytest.fixture
def events(watcher):
    """The watcher, with every registry event type enabled and in force."""
    watcher.enable(*REGISTRY_KEYS)
    return watcher


# ----------------------------------------------------------------- expected payloads


def thing_event(client, operation, name, **state):
    """"Thing events": `state` overrides what DescribeThing says (for a deleted thing)."""
    if not state:
        described = client.describe_thing(thingName=name)
        state = dict(
            thingId=described["thingId"],
            versionNumber=described["version"],
            thingTypeName=described.get("thingTypeName"),
            attributes=described["attributes"],
        )
    return {
        "eventType": "THING_EVENT",
        "operation": operation,
        "accountId": ACCOUNT,
        "thingId": state["thingId"],
        "thingName": name,
        "versionNumber": state["versionNumber"],
        "thingTypeName": state["thingTypeName"],
        "attributes": state["attributes"],
    }


def association_event(operation, thing_id, thing_name, type_name):
    """"Thing type associated or disassociated with a thing": no accountId."""
    return {
        "eventType": "THING_TYPE_ASSOCIATION_EVENT",
        "operation": operation,
        "thingId": thing_id,
        "thingName": thing_name,
        "thingTypeName": type_name,
    }


def association_topic(thing, thing_type, suffix):
    return f"$aws/events/thingTypeAssociation/thing/{thing}/thingType/{thing_type}/{suffix}"


def thing_type_event(operation, type_id, name, description="", searchable=(), propagating=(),
                     deprecated=False, deprecation_ms=None):
    """"Thing type events"."""
    return {
        "eventType": "THING_TYPE_EVENT",
        "operation": operation,
        "accountId": ACCOUNT,
        "thingTypeId": type_id,
        "thingTypeName": name,
        "isDeprecated": deprecated,
        "deprecationDate": deprecation_ms,
        "searchableAttributes": list(searchable),
        "propagatingAttributes": list(propagating),
        "description": description,
    }


def epoch_ms(dt):
    return round(dt.timestamp() * 1000)


def group_event(client, operation, name, **state):
    """"Thing group events", from DescribeThingGroup (and the ancestors' ids), or from
    `state` for a deleted group."""
    if not state:
        described = client.describe_thing_group(thingGroupName=name)
        meta = described["thingGroupMetadata"]
        props = described.get("thingGroupProperties", {})
        parent = meta.get("parentGroupName")
        ancestors = [
            {
                "groupArn": g["groupArn"],
                "groupId": client.describe_thing_group(thingGroupName=g["groupName"])["thingGroupId"],
            }
            for g in meta.get("rootToParentThingGroups", [])
        ]
        state = dict(
            thingGroupId=described["thingGroupId"],
            versionNumber=described["version"],
            parentGroupName=parent,
            parentGroupId=(
                client.describe_thing_group(thingGroupName=parent)["thingGroupId"] if parent else None
            ),
            description=props.get("thingGroupDescription", ""),
            rootToParentThingGroups=ancestors,
            attributes=props.get("attributePayload", {}).get("attributes", {}),
        )
    return {
        "eventType": "THING_GROUP_EVENT",
        "operation": operation,
        "accountId": ACCOUNT,
        "thingGroupId": state["thingGroupId"],
        "thingGroupName": name,
        "versionNumber": state["versionNumber"],
        "parentGroupName": state["parentGroupName"],
        "parentGroupId": state["parentGroupId"],
        "description": state["description"],
        "rootToParentThingGroups": state["rootToParentThingGroups"],
        "attributes": state["attributes"],
        "dynamicGroupMappingId": None,
    }


def membership_topic(group, thing, suffix):
    return f"$aws/events/thingGroupMembership/thingGroup/{group}/thing/{thing}/{suffix}"


def membership_event(operation, group_name, group_id, thing_name, thing_id, membership_id):
    """"Thing added to or removed from a thing group": names only in the topic."""
    return {
        "eventType": "THING_GROUP_MEMBERSHIP_EVENT",
        "operation": operation,
        "accountId": ACCOUNT,
        "groupArn": group_arn(group_name),
        "groupId": group_id,
        "thingArn": thing_arn(thing_name),
        "thingId": thing_id,
        "membershipId": membership_id,
    }


def membership_id_of(batch, topic):
    """The membershipId of the event on `topic`: an opaque non-empty string."""
    membership_id = batch.payload(topic).get("membershipId")
    assert isinstance(membership_id, str) and membership_id, f"membershipId {membership_id!r}"
    return membership_id


def hierarchy_topic(parent, child, suffix):
    return f"$aws/events/thingGroupHierarchy/thingGroup/{parent}/childThingGroup/{child}/{suffix}"


def hierarchy_event(operation, parent_name, parent_id, child_name, child_id):
    """"Thing group added to or deleted from a thing group": thingGroup* is the parent."""
    return {
        "eventType": "THING_GROUP_HIERARCHY_EVENT",
        "operation": operation,
        "accountId": ACCOUNT,
        "thingGroupId": parent_id,
        "thingGroupName": parent_name,
        "childGroupId": child_id,
        "childGroupName": child_name,
    }


def thing_id(client, name):
    return client.describe_thing(thingName=name)["thingId"]


def group_id(client, name):
    return client.describe_thing_group(thingGroupName=name)["thingGroupId"]


# ----------------------------------------------------------------- "Thing events" things


def test_create_thing_publishes_created(client, events):
    batch = events.during(
        lambda: client.create_thing(
            thingName="lamp-1", attributePayload={"attributes": {"room": "hall", "watts": "40"}}
        )
    )
    topic = "$aws/events/thing/lamp-1/created"
    batch.expect_topics([topic])
    expected = thing_event(client, "CREATED", "lamp-1")
    assert expected["versionNumber"] == 1
    assert expected["thingTypeName"] is None
    batch.check(topic, expected)


def test_create_thing_without_attributes_has_an_empty_attribute_map(client, events):
    batch = events.during(lambda: client.create_thing(thingName="bare"))
    topic = "$aws/events/thing/bare/created"
    batch.expect_topics([topic])
    batch.check(topic, thing_event(client, "CREATED", "bare") | {"attributes": {}})


def test_update_thing_publishes_updated_with_the_new_version(client, events):
    client.create_thing(thingName="lamp-1", attributePayload={"attributes": {"room": "hall", "watts": "40"}})
    events.barrier()
    batch = events.during(
        lambda: client.update_thing(
            thingName="lamp-1",
            attributePayload={"attributes": {"watts": "60", "room": "", "color": "red"}, "merge": True},
        )
    )
    topic = "$aws/events/thing/lamp-1/updated"
    batch.expect_topics([topic])
    expected = thing_event(client, "UPDATED", "lamp-1")
    assert expected["versionNumber"] == 2
    assert expected["attributes"] == {"watts": "60", "color": "red"}
    batch.check(topic, expected)


def test_delete_thing_publishes_deleted_with_its_last_state(client, events):
    client.create_thing(thingName="lamp-1", attributePayload={"attributes": {"room": "hall"}})
    client.update_thing(thingName="lamp-1", attributePayload={"attributes": {"watts": "40"}, "merge": True})
    last = thing_event(client, "DELETED", "lamp-1")
    events.barrier()
    batch = events.during(lambda: client.delete_thing(thingName="lamp-1"))
    topic = "$aws/events/thing/lamp-1/deleted"
    batch.expect_topics([topic])
    assert last["versionNumber"] == 2
    batch.check(topic, last)


def test_deleting_a_missing_thing_and_repeating_a_create_publish_nothing(client, events):
    """"Thing events" (Herald's choice where AWS is silent): an identical CreateThing retry succeeds without an event;
    DeleteThing of a thing that doesn't exist succeeds without one."""
    client.create_thing(thingName="lamp-1", attributePayload={"attributes": {"room": "hall"}})
    events.barrier()

    def noops():
        client.create_thing(thingName="lamp-1", attributePayload={"attributes": {"room": "hall"}})
        client.delete_thing(thingName="no-such-thing")

    batch = events.during(noops)
    batch.expect_topics([])
    assert client.describe_thing(thingName="lamp-1")["version"] == 1


# ----------------------------------------------------------------- "Thing type associated or disassociated with a thing" thing type associations


def test_create_thing_with_a_type_publishes_created_and_association_added(client, events):
    client.create_thing_type(thingTypeName="LightBulb")
    events.barrier()
    batch = events.during(
        lambda: client.create_thing(
            thingName="lamp-1", thingTypeName="LightBulb", attributePayload={"attributes": {"watts": "40"}}
        )
    )
    created = "$aws/events/thing/lamp-1/created"
    added = association_topic("lamp-1", "LightBulb", "added")
    batch.expect_topics([created, added])
    expected = thing_event(client, "CREATED", "lamp-1")
    assert expected["thingTypeName"] == "LightBulb"
    batch.check(created, expected)
    batch.check(added, association_event("ADDED", expected["thingId"], "lamp-1", "LightBulb"))


def test_update_thing_to_another_type_publishes_updated_removed_and_added(client, events):
    client.create_thing_type(thingTypeName="LightBulb")
    client.create_thing_type(thingTypeName="Lamp")
    client.create_thing(thingName="lamp-1", thingTypeName="LightBulb", attributePayload={"attributes": {"a": "1"}})
    events.barrier()
    batch = events.during(lambda: client.update_thing(thingName="lamp-1", thingTypeName="Lamp"))
    updated = "$aws/events/thing/lamp-1/updated"
    removed = association_topic("lamp-1", "LightBulb", "removed")
    added = association_topic("lamp-1", "Lamp", "added")
    batch.expect_topics([updated, removed, added])
    expected = thing_event(client, "UPDATED", "lamp-1")
    assert (expected["versionNumber"], expected["thingTypeName"]) == (2, "Lamp")
    batch.check(updated, expected)
    batch.check(removed, association_event("REMOVED", expected["thingId"], "lamp-1", "LightBulb"))
    batch.check(added, association_event("ADDED", expected["thingId"], "lamp-1", "Lamp"))


def test_update_thing_giving_a_type_to_an_untyped_thing_publishes_updated_and_added(client, events):
    client.create_thing_type(thingTypeName="LightBulb")
    client.create_thing(thingName="lamp-1")
    events.barrier()
    batch = events.during(lambda: client.update_thing(thingName="lamp-1", thingTypeName="LightBulb"))
    updated = "$aws/events/thing/lamp-1/updated"
    added = association_topic("lamp-1", "LightBulb", "added")
    batch.expect_topics([updated, added])
    expected = thing_event(client, "UPDATED", "lamp-1")
    batch.check(updated, expected)
    batch.check(added, association_event("ADDED", expected["thingId"], "lamp-1", "LightBulb"))


def test_update_thing_removing_its_type_publishes_updated_and_removed(client, events):
    client.create_thing_type(thingTypeName="LightBulb")
    client.create_thing(thingName="lamp-1", thingTypeName="LightBulb")
    events.barrier()
    batch = events.during(lambda: client.update_thing(thingName="lamp-1", removeThingType=True))
    updated = "$aws/events/thing/lamp-1/updated"
    removed = association_topic("lamp-1", "LightBulb", "removed")
    batch.expect_topics([updated, removed])
    expected = thing_event(client, "UPDATED", "lamp-1")
    assert expected["thingTypeName"] is None
    batch.check(updated, expected)
    batch.check(removed, association_event("REMOVED", expected["thingId"], "lamp-1", "LightBulb"))


def test_update_thing_keeping_its_type_publishes_no_association_event(client, events):
    client.create_thing_type(thingTypeName="LightBulb")
    client.create_thing(thingName="lamp-1", thingTypeName="LightBulb")
    events.barrier()
    batch = events.during(
        lambda: client.update_thing(
            thingName="lamp-1", thingTypeName="LightBulb", attributePayload={"attributes": {"watts": "60"}}
        )
    )
    updated = "$aws/events/thing/lamp-1/updated"
    batch.expect_topics([updated])
    batch.check(updated, thing_event(client, "UPDATED", "lamp-1"))


def test_delete_typed_thing_publishes_deleted_and_may_remove_the_association(client, events):
    """"Thing type associated or disassociated with a thing": the association `removed` on DeleteThing is optional; when it
    comes, it is exact."""
    client.create_thing_type(thingTypeName="LightBulb")
    client.create_thing(thingName="lamp-1", thingTypeName="LightBulb", attributePayload={"attributes": {"w": "4"}})
    last = thing_event(client, "DELETED", "lamp-1")
    events.barrier()
    batch = events.during(lambda: client.delete_thing(thingName="lamp-1"))
    deleted = "$aws/events/thing/lamp-1/deleted"
    removed = association_topic("lamp-1", "LightBulb", "removed")
    batch.expect_topics([deleted], optional=[removed])
    batch.check(deleted, last)
    if batch.optional(removed) is not None:
        batch.check(removed, association_event("REMOVED", last["thingId"], "lamp-1", "LightBulb"))


# ----------------------------------------------------------------- "Thing type events" thing types


LIGHT_BULB_PROPERTIES = {
    "thingTypeDescription": "A bulb",
    "searchableAttributes": ["wattage", "model"],
    "mqtt5Configuration": {
        "propagatingAttributes": [
            {"userPropertyKey": "model", "thingAttribute": "model"},
            {"userPropertyKey": "client", "connectionAttribute": "iot:ClientId"},
        ]
    },
}


def test_create_thing_type_publishes_created(client, events):
    created = {}
    batch = events.during(
        lambda: created.update(
            client.create_thing_type(thingTypeName="LightBulb", thingTypeProperties=LIGHT_BULB_PROPERTIES)
        )
    )
    topic = "$aws/events/thingType/LightBulb/created"
    batch.expect_topics([topic])
    batch.check(
        topic,
        thing_type_event(
            "CREATED",
            created["thingTypeId"],
            "LightBulb",
            description="A bulb",
            searchable=["wattage", "model"],
            propagating=[
                {"userPropertyKey": "model", "thingAttribute": "model"},
                {"userPropertyKey": "client", "connectionAttribute": "iot:ClientId"},
            ],
        ),
    )


def test_create_thing_type_without_properties_has_empty_lists_and_description(client, events):
    created = {}
    batch = events.during(lambda: created.update(client.create_thing_type(thingTypeName="Plain")))
    topic = "$aws/events/thingType/Plain/created"
    batch.expect_topics([topic])
    batch.check(topic, thing_type_event("CREATED", created["thingTypeId"], "Plain"))


def test_update_thing_type_publishes_updated(client, events):
    type_id = client.create_thing_type(
        thingTypeName="LightBulb", thingTypeProperties=LIGHT_BULB_PROPERTIES
    )["thingTypeId"]
    events.barrier()
    batch = events.during(
        lambda: client.update_thing_type(
            thingTypeName="LightBulb",
            thingTypeProperties={
                "mqtt5Configuration": {"propagatingAttributes": [{"userPropertyKey": "serial", "thingAttribute": "sn"}]}
            },
        )
    )
    topic = "$aws/events/thingType/LightBulb/updated"
    batch.expect_topics([topic])
    batch.check(
        topic,
        thing_type_event(
            "UPDATED",
            type_id,
            "LightBulb",
            description="A bulb",
            searchable=["wattage", "model"],
            propagating=[{"userPropertyKey": "serial", "thingAttribute": "sn"}],
        ),
    )


def test_deprecate_and_undeprecate_thing_type_publish_updated(client, events):
    type_id = client.create_thing_type(
        thingTypeName="LightBulb",
        thingTypeProperties={"thingTypeDescription": "A bulb", "searchableAttributes": ["wattage"]},
    )["thingTypeId"]
    events.barrier()
    topic = "$aws/events/thingType/LightBulb/updated"
    common = dict(description="A bulb", searchable=["wattage"])

    batch = events.during(lambda: client.deprecate_thing_type(thingTypeName="LightBulb"))
    batch.expect_topics([topic])
    meta = client.describe_thing_type(thingTypeName="LightBulb")["thingTypeMetadata"]
    assert meta["deprecated"] is True
    deprecated_ms = batch.payload(topic).get("deprecationDate")
    assert type(deprecated_ms) is int, f"deprecationDate {deprecated_ms!r} is not integer epoch ms"
    assert deprecated_ms == epoch_ms(meta["deprecationDate"]), (
        f"deprecationDate {deprecated_ms} vs DescribeThingType's {meta['deprecationDate']}"
    )
    assert batch.started_ms - CLOCK_SLACK_MS <= deprecated_ms <= batch.ended_ms + CLOCK_SLACK_MS
    batch.check(
        topic,
        thing_type_event("UPDATED", type_id, "LightBulb", deprecated=True, deprecation_ms=deprecated_ms, **common),
    )

    batch = events.during(lambda: client.deprecate_thing_type(thingTypeName="LightBulb", undoDeprecate=True))
    batch.expect_topics([topic])
    batch.check(topic, thing_type_event("UPDATED", type_id, "LightBulb", **common))


def test_delete_thing_type_publishes_deleted_with_its_last_state(client, events):
    type_id = client.create_thing_type(
        thingTypeName="LightBulb", thingTypeProperties={"thingTypeDescription": "A bulb"}
    )["thingTypeId"]
    deprecated = events.during(lambda: client.deprecate_thing_type(thingTypeName="LightBulb"))
    deprecated_ms = deprecated.payload("$aws/events/thingType/LightBulb/updated")["deprecationDate"]
    batch = events.during(lambda: client.delete_thing_type(thingTypeName="LightBulb"))
    topic = "$aws/events/thingType/LightBulb/deleted"
    batch.expect_topics([topic])
    batch.check(
        topic,
        thing_type_event(
            "DELETED", type_id, "LightBulb", description="A bulb", deprecated=True, deprecation_ms=deprecated_ms
        ),
    )


# ----------------------------------------------------------------- "Thing group events" thing groups and "Thing group added to or deleted from a thing group" hierarchy


def test_create_root_thing_group_publishes_created(client, events):
    batch = events.during(
        lambda: client.create_thing_group(
            thingGroupName="Kitchen",
            thingGroupProperties={
                "thingGroupDescription": "The kitchen",
                "attributePayload": {"attributes": {"floor": "1"}},
            },
        )
    )
    topic = "$aws/events/thingGroup/Kitchen/created"
    batch.expect_topics([topic])
    expected = group_event(client, "CREATED", "Kitchen")
    assert expected["versionNumber"] == 1
    assert (expected["parentGroupName"], expected["parentGroupId"], expected["rootToParentThingGroups"]) == (
        None, None, []
    )
    batch.check(topic, expected)


def test_create_thing_group_without_properties_has_an_empty_description_and_attributes(client, events):
    batch = events.during(lambda: client.create_thing_group(thingGroupName="Bare"))
    topic = "$aws/events/thingGroup/Bare/created"
    batch.expect_topics([topic])
    batch.check(topic, group_event(client, "CREATED", "Bare") | {"description": "", "attributes": {}})


def test_create_child_thing_group_publishes_created_and_hierarchy_added(client, events):
    client.create_thing_group(thingGroupName="Home")
    client.create_thing_group(thingGroupName="Floor1", parentGroupName="Home")
    events.barrier()
    batch = events.during(
        lambda: client.create_thing_group(
            thingGroupName="Kitchen",
            parentGroupName="Floor1",
            thingGroupProperties={"thingGroupDescription": "The kitchen"},
        )
    )
    created = "$aws/events/thingGroup/Kitchen/created"
    added = hierarchy_topic("Floor1", "Kitchen", "added")
    batch.expect_topics([created, added])
    home, floor, kitchen = (group_id(client, g) for g in ("Home", "Floor1", "Kitchen"))
    batch.check(
        created,
        {
            "eventType": "THING_GROUP_EVENT",
            "operation": "CREATED",
            "accountId": ACCOUNT,
            "thingGroupId": kitchen,
            "thingGroupName": "Kitchen",
            "versionNumber": 1,
            "parentGroupName": "Floor1",
            "parentGroupId": floor,
            "description": "The kitchen",
            "rootToParentThingGroups": [
                {"groupArn": group_arn("Home"), "groupId": home},
                {"groupArn": group_arn("Floor1"), "groupId": floor},
            ],
            "attributes": {},
            "dynamicGroupMappingId": None,
        },
    )
    batch.check(added, hierarchy_event("ADDED", "Floor1", floor, "Kitchen", kitchen))


def test_update_thing_group_publishes_updated_with_the_new_version(client, events):
    client.create_thing_group(thingGroupName="Home")
    client.create_thing_group(
        thingGroupName="Kitchen",
        parentGroupName="Home",
        thingGroupProperties={"attributePayload": {"attributes": {"floor": "1", "tiles": "yes"}}},
    )
    events.barrier()
    response = {}
    batch = events.during(
        lambda: response.update(
            client.update_thing_group(
                thingGroupName="Kitchen",
                thingGroupProperties={
                    "thingGroupDescription": "New description",
                    "attributePayload": {"attributes": {"floor": "2", "tiles": ""}, "merge": True},
                },
            )
        )
    )
    topic = "$aws/events/thingGroup/Kitchen/updated"
    batch.expect_topics([topic])
    expected = group_event(client, "UPDATED", "Kitchen")
    assert expected["versionNumber"] == response["version"] == 2
    assert expected["attributes"] == {"floor": "2"}
    assert expected["parentGroupName"] == "Home"
    batch.check(topic, expected)


def test_delete_root_thing_group_publishes_deleted_with_its_last_state(client, events):
    client.create_thing_group(
        thingGroupName="Kitchen", thingGroupProperties={"thingGroupDescription": "The kitchen"}
    )
    client.update_thing_group(
        thingGroupName="Kitchen", thingGroupProperties={"attributePayload": {"attributes": {"floor": "1"}}}
    )
    last = group_event(client, "DELETED", "Kitchen")
    events.barrier()
    batch = events.during(lambda: client.delete_thing_group(thingGroupName="Kitchen"))
    topic = "$aws/events/thingGroup/Kitchen/deleted"
    batch.expect_topics([topic])
    assert last["versionNumber"] == 2
    batch.check(topic, last)


def test_delete_child_thing_group_publishes_deleted_and_hierarchy_removed(client, events):
    client.create_thing_group(thingGroupName="Home")
    client.create_thing_group(thingGroupName="Kitchen", parentGroupName="Home")
    home, kitchen = group_id(client, "Home"), group_id(client, "Kitchen")
    last = group_event(client, "DELETED", "Kitchen")
    events.barrier()
    batch = events.during(lambda: client.delete_thing_group(thingGroupName="Kitchen"))
    deleted = "$aws/events/thingGroup/Kitchen/deleted"
    removed = hierarchy_topic("Home", "Kitchen", "removed")
    batch.expect_topics([deleted, removed])
    batch.check(deleted, last)
    batch.check(removed, hierarchy_event("REMOVED", "Home", home, "Kitchen", kitchen))


def test_deleting_a_missing_thing_group_publishes_nothing(client, events):
    batch = events.during(lambda: client.delete_thing_group(thingGroupName="no-such-group"))
    batch.expect_topics([])


# ----------------------------------------------------------------- "Thing added to or removed from a thing group" memberships


def test_add_thing_to_thing_group_publishes_added(client, events):
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    events.barrier()
    batch = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1"))
    topic = membership_topic("Kitchen", "lamp-1", "added")
    batch.expect_topics([topic])
    batch.check(
        topic,
        membership_event(
            "ADDED", "Kitchen", group_id(client, "Kitchen"), "lamp-1", thing_id(client, "lamp-1"),
            membership_id_of(batch, topic),
        ),
    )


def test_add_thing_to_thing_group_by_arn_publishes_added(client, events):
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    events.barrier()
    batch = events.during(
        lambda: client.add_thing_to_thing_group(thingGroupArn=group_arn("Kitchen"), thingArn=thing_arn("lamp-1"))
    )
    topic = membership_topic("Kitchen", "lamp-1", "added")
    batch.expect_topics([topic])
    batch.check(
        topic,
        membership_event(
            "ADDED", "Kitchen", group_id(client, "Kitchen"), "lamp-1", thing_id(client, "lamp-1"),
            membership_id_of(batch, topic),
        ),
    )


def test_remove_thing_from_thing_group_publishes_removed_with_the_same_membership_id(client, events):
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    added = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1"))
    membership_id = membership_id_of(added, membership_topic("Kitchen", "lamp-1", "added"))

    batch = events.during(
        lambda: client.remove_thing_from_thing_group(thingGroupName="Kitchen", thingName="lamp-1")
    )
    topic = membership_topic("Kitchen", "lamp-1", "removed")
    batch.expect_topics([topic])
    batch.check(
        topic,
        membership_event(
            "REMOVED", "Kitchen", group_id(client, "Kitchen"), "lamp-1", thing_id(client, "lamp-1"), membership_id
        ),
    )


def test_adding_an_existing_member_publishes_nothing(client, events):
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1")
    events.barrier()
    batch = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1"))
    batch.expect_topics([])


def test_update_thing_groups_for_thing_publishes_one_event_per_group(client, events):
    client.create_thing(thingName="lamp-1")
    for name in ("Kitchen", "Lights", "Hall"):
        client.create_thing_group(thingGroupName=name)
    first = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Hall", thingName="lamp-1"))
    hall_membership = membership_id_of(first, membership_topic("Hall", "lamp-1", "added"))

    batch = events.during(
        lambda: client.update_thing_groups_for_thing(
            thingName="lamp-1", thingGroupsToAdd=["Kitchen", "Lights"], thingGroupsToRemove=["Hall"]
        )
    )
    kitchen = membership_topic("Kitchen", "lamp-1", "added")
    lights = membership_topic("Lights", "lamp-1", "added")
    hall = membership_topic("Hall", "lamp-1", "removed")
    batch.expect_topics([kitchen, lights, hall])
    lamp = thing_id(client, "lamp-1")
    ids = {membership_id_of(batch, kitchen), membership_id_of(batch, lights), hall_membership}
    assert len(ids) == 3, f"membership ids are not distinct: {ids}"
    for topic, group in ((kitchen, "Kitchen"), (lights, "Lights")):
        batch.check(
            topic,
            membership_event(
                "ADDED", group, group_id(client, group), "lamp-1", lamp, membership_id_of(batch, topic)
            ),
        )
    batch.check(hall, membership_event("REMOVED", "Hall", group_id(client, "Hall"), "lamp-1", lamp, hall_membership))


def test_delete_thing_in_a_group_publishes_deleted_and_may_remove_the_membership(client, events):
    """"Thing added to or removed from a thing group": membership `removed` on DeleteThing is optional; when it comes,
    it is exact."""
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    added = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1"))
    membership_id = membership_id_of(added, membership_topic("Kitchen", "lamp-1", "added"))
    last = thing_event(client, "DELETED", "lamp-1")
    kitchen = group_id(client, "Kitchen")
    batch = events.during(lambda: client.delete_thing(thingName="lamp-1"))
    deleted = "$aws/events/thing/lamp-1/deleted"
    removed = membership_topic("Kitchen", "lamp-1", "removed")
    batch.expect_topics([deleted], optional=[removed])
    batch.check(deleted, last)
    if batch.optional(removed) is not None:
        batch.check(removed, membership_event("REMOVED", "Kitchen", kitchen, "lamp-1", last["thingId"], membership_id))


def test_delete_thing_group_with_members_publishes_deleted_and_may_remove_the_memberships(client, events):
    """AWS IoT Core Developer Guide, "Registry events" (memberships) and AWS IoT API Reference, "DeleteThingGroup": membership `removed` on DeleteThingGroup is optional; when
    it comes, it is exact."""
    client.create_thing(thingName="lamp-1")
    client.create_thing_group(thingGroupName="Kitchen")
    added = events.during(lambda: client.add_thing_to_thing_group(thingGroupName="Kitchen", thingName="lamp-1"))
    membership_id = membership_id_of(added, membership_topic("Kitchen", "lamp-1", "added"))
    last = group_event(client, "DELETED", "Kitchen")
    batch = events.during(lambda: client.delete_thing_group(thingGroupName="Kitchen"))
    deleted = "$aws/events/thingGroup/Kitchen/deleted"
    removed = membership_topic("Kitchen", "lamp-1", "removed")
    batch.expect_topics([deleted], optional=[removed])
    batch.check(deleted, last)
    if batch.optional(removed) is not None:
        batch.check(
            removed,
            membership_event(
                "REMOVED", "Kitchen", last["thingGroupId"], "lamp-1", thing_id(client, "lamp-1"), membership_id
            ),
        )


# ----------------------------------------------------------------- gating


class Family:
    """How to make one event of a registry family, over and over: `setup`
    once, then `step(i)`, which returns the gated topic it publishes on and
    the topics of the enabled families it publishes on too."""

    def __init__(self, setup, step):
        self.setup = setup
        self.step = step


def _create_thing(client, i):
    client.create_thing(thingName=f"g-thing-{i}")
    return f"$aws/events/thing/g-thing-{i}/created", []


def _create_thing_type(client, i):
    client.create_thing_type(thingTypeName=f"g-type-{i}")
    return f"$aws/events/thingType/g-type-{i}/created", []


def _create_typed_thing(client, i):
    client.create_thing(thingName=f"g-typed-{i}", thingTypeName="g-type")
    return association_topic(f"g-typed-{i}", "g-type", "added"), [f"$aws/events/thing/g-typed-{i}/created"]


def _create_thing_group(client, i):
    client.create_thing_group(thingGroupName=f"g-group-{i}")
    return f"$aws/events/thingGroup/g-group-{i}/created", []


def _add_member(client, i):
    client.create_thing(thingName=f"g-member-{i}")
    client.add_thing_to_thing_group(thingGroupName="g-group", thingName=f"g-member-{i}")
    return membership_topic("g-group", f"g-member-{i}", "added"), [f"$aws/events/thing/g-member-{i}/created"]


def _create_child_group(client, i):
    client.create_thing_group(thingGroupName=f"g-child-{i}", parentGroupName="g-root")
    return hierarchy_topic("g-root", f"g-child-{i}", "added"), [f"$aws/events/thingGroup/g-child-{i}/created"]


FAMILIES = {
    "THING": Family(lambda c: None, _create_thing),
    "THING_TYPE": Family(lambda c: None, _create_thing_type),
    "THING_TYPE_ASSOCIATION": Family(lambda c: c.create_thing_type(thingTypeName="g-type"), _create_typed_thing),
    "THING_GROUP": Family(lambda c: None, _create_thing_group),
    "THING_GROUP_MEMBERSHIP": Family(lambda c: c.create_thing_group(thingGroupName="g-group"), _add_member),
    "THING_GROUP_HIERARCHY": Family(lambda c: c.create_thing_group(thingGroupName="g-root"), _create_child_group),
}


@pytest.mark.parametrize("key", REGISTRY_KEYS)
def test_disabling_a_key_stops_only_its_events_until_it_is_enabled_again(client, watcher, key):
    family = FAMILIES[key]
    family.setup(client)
    # The sentinel's family stays on throughout. The marker's family is off
    # at first, and switched on by the same update that switches `key` off:
    # its first event proves that update is in force at the gateway.
    if key == "THING":
        watcher.sentinel_family = "THING_GROUP"
    marker = "THING_GROUP" if key == "THING_TYPE" else "THING_TYPE"
    watcher.enable(*(k for k in REGISTRY_KEYS if k != marker))

    configure(client, **{key: False, marker: True})
    watcher.poll(lambda i: FAMILIES[marker].step(client, 1000 + i)[0])
    watcher.barrier()

    # Off: the mutation's own event is not published before the sentinel
    # that follows it; the other families' events of the same mutation are.
    made = {}
    batch = watcher.during(lambda: made.update(zip(("gated", "others"), family.step(client, 1))))
    off_topic = made["gated"]
    assert off_topic not in batch.topics(), f"{key} is disabled, yet {off_topic} was published"
    batch.expect_topics(made["others"])

    # On again: the family's events come back, with the other families' still.
    configure(client, **{key: True})
    watcher.poll(lambda i: family.step(client, 100 + i)[0])
    watcher.barrier()
    batch = watcher.during(lambda: made.update(zip(("gated", "others"), family.step(client, 2))))
    batch.expect_topics([made["gated"], *made["others"]])
    assert batch.payload(made["gated"])["operation"] in ("CREATED", "ADDED")
    # The event gated off is gone for good: enabling the key did not replay it.
    assert off_topic not in watcher.all_topics()
