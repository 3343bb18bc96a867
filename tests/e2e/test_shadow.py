"""The Device Shadow service over MQTT (AWS IoT Core Developer Guide:
"Device Shadow MQTT topics", "Device Shadow service documents"), with
paho-mqtt as the development user: classic and named shadows, the accepted,
rejected, delta and documents messages with AWS's payloads, optimistic
versions, deletion, and AWS's error codes."""

import concurrent.futures
import json
import uuid

import botocore.exceptions

from support import make_client
from test_cluster import ALLOW_ALL, DEV_USER, Client, connected

SHADOW_TOPICS = "$aws/things/+/shadow/#"


def device(herald, client):
    client.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    mqtt = connected(herald.gateway, f"shadow-{uuid.uuid4().hex[:8]}")
    mqtt.subscribe(SHADOW_TOPICS)
    return mqtt


def request(mqtt, topic, body, answer_topics):
    """Publishes `body` on `topic` and waits for its outcome (the
    `/accepted` or `/rejected` message among `answer_topics`, which AWS
    publishes last); returns {topic: payload} of what arrived on them."""
    outcome = {t for t in answer_topics if t.endswith(("/accepted", "/rejected"))}
    before = len(mqtt.received())
    mqtt.publish(topic, json.dumps(body) if not isinstance(body, bytes) else body)
    mqtt.wait(lambda: any(t in outcome for t, _ in mqtt.received()[before:]), f"an answer to {topic}")
    return {t: json.loads(p) for t, p in mqtt.received()[before:] if t in answer_topics}


def test_a_classic_shadow_lives_through_update_get_conflict_and_delete(herald, client):
    mqtt = device(herald, client)
    base = "$aws/things/lamp-1/shadow"
    try:
        missing = request(mqtt, f"{base}/get", {"clientToken": "g1"}, {f"{base}/get/rejected"})
        rejected = missing[f"{base}/get/rejected"]
        assert rejected["code"] == 404
        assert rejected["message"] == "No shadow exists with name: 'lamp-1'"
        assert rejected["clientToken"] == "g1"

        answers = {f"{base}/update/accepted", f"{base}/update/delta", f"{base}/update/documents"}
        before = len(mqtt.received())
        mqtt.publish(f"{base}/update", json.dumps({"state": {"desired": {"color": "red", "on": True}}, "clientToken": "u1"}))
        mqtt.wait(lambda: len({t for t, _ in mqtt.received()[before:] if t in answers}) == 3, "accepted, delta, documents")
        got = [(t, json.loads(p)) for t, p in mqtt.received()[before:] if t in answers]
        # AWS's order: delta, documents, accepted.
        assert [t for t, _ in got] == [f"{base}/update/delta", f"{base}/update/documents", f"{base}/update/accepted"]
        delta, documents, accepted = (p for _, p in got)
        now = accepted["timestamp"]
        assert accepted == {
            "state": {"desired": {"color": "red", "on": True}},
            "metadata": {"desired": {"color": {"timestamp": now}, "on": {"timestamp": now}}},
            "version": 1,
            "timestamp": now,
            "clientToken": "u1",
        }
        assert delta["state"] == {"color": "red", "on": True} and delta["version"] == 1
        assert documents["previous"] is None
        assert documents["current"]["state"] == {"desired": {"color": "red", "on": True}}
        assert documents["current"]["version"] == 1

        # The device reports part of it: the delta holds the rest.
        reported = request(
            mqtt, f"{base}/update", {"state": {"reported": {"color": "red", "on": False}}}, {f"{base}/update/accepted", f"{base}/update/delta"}
        )
        shadow = request(mqtt, f"{base}/get", {}, {f"{base}/get/accepted"})[f"{base}/get/accepted"]
        assert shadow["version"] == 2
        assert shadow["state"] == {
            "desired": {"color": "red", "on": True},
            "reported": {"color": "red", "on": False},
            "delta": {"on": True},
        }
        assert set(shadow["metadata"]) == {"desired", "reported"}
        assert reported[f"{base}/update/accepted"]["version"] == 2

        # Optimistic locking.
        conflict = request(
            mqtt, f"{base}/update", {"state": {"reported": {"on": True}}, "version": 1, "clientToken": "c"}, {f"{base}/update/rejected"}
        )[f"{base}/update/rejected"]
        assert (conflict["code"], conflict["message"], conflict["clientToken"]) == (409, "Version conflict", "c")
        matched = request(mqtt, f"{base}/update", {"state": {"reported": {"on": True}}, "version": 2}, {f"{base}/update/accepted"})
        assert matched[f"{base}/update/accepted"]["version"] == 3
        shadow = request(mqtt, f"{base}/get", {}, {f"{base}/get/accepted"})[f"{base}/get/accepted"]
        assert "delta" not in shadow["state"]

        # Deleted: gone, and a new one continues the version.
        deleted = request(mqtt, f"{base}/delete", {"clientToken": "d"}, {f"{base}/delete/accepted"})[f"{base}/delete/accepted"]
        assert deleted["version"] == 3 and deleted["clientToken"] == "d"
        assert request(mqtt, f"{base}/get", {}, {f"{base}/get/rejected"})[f"{base}/get/rejected"]["code"] == 404
        again = request(mqtt, f"{base}/update", {"state": {"reported": {"on": True}}}, {f"{base}/update/accepted"})
        assert again[f"{base}/update/accepted"]["version"] == 4
    finally:
        mqtt.stop()


def test_named_shadows_are_apart_from_the_classic_one(herald, client):
    mqtt = device(herald, client)
    named = "$aws/things/lamp-2/shadow/name/settings"
    classic = "$aws/things/lamp-2/shadow"
    try:
        up = request(mqtt, f"{named}/update", {"state": {"reported": {"mode": "eco"}}}, {f"{named}/update/accepted"})
        assert up[f"{named}/update/accepted"]["version"] == 1
        got = request(mqtt, f"{named}/get", {}, {f"{named}/get/accepted"})[f"{named}/get/accepted"]
        assert got["state"] == {"reported": {"mode": "eco"}}
        missing = request(mqtt, f"{classic}/get", {}, {f"{classic}/get/rejected"})[f"{classic}/get/rejected"]
        assert missing["code"] == 404
        other = request(mqtt, "$aws/things/lamp-2/shadow/name/other/get", {}, {"$aws/things/lamp-2/shadow/name/other/get/rejected"})
        assert other["$aws/things/lamp-2/shadow/name/other/get/rejected"]["message"] == "No shadow exists with name: 'other'"
    finally:
        mqtt.stop()


def test_bad_requests_are_rejected_with_aws_codes_and_change_nothing(herald, client):
    mqtt = device(herald, client)
    base = "$aws/things/lamp-3/shadow"
    rejected = f"{base}/update/rejected"
    try:
        cases = [
            (b"not json", 400, "Invalid JSON"),
            ({"clientToken": "x"}, 400, "Missing required node: state"),
            ({"state": {"desired": 5}}, 400, "Desired node must be an object"),
            ({"state": {"weird": {}}}, 400, "State contains an invalid node: 'weird'"),
            ({"state": {"reported": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}, 400, "JSON contains too many levels of nesting; maximum is 6"),
            ({"state": {"reported": {"big": "x" * 9000}}}, 413, "The payload exceeds the maximum size allowed"),
        ]
        for body, code, message in cases:
            answer = request(mqtt, f"{base}/update", body, {rejected})[rejected]
            assert (answer["code"], answer["message"]) == (code, message), body
        # None of them made a shadow.
        assert request(mqtt, f"{base}/get", {}, {f"{base}/get/rejected"})[f"{base}/get/rejected"]["code"] == 404
    finally:
        mqtt.stop()


def test_an_update_reaches_every_subscriber_of_the_answer_topics(herald, client):
    """The answers are published, not only returned: another client
    subscribed to `update/delta` gets it (the device waiting for desired
    state changes)."""
    app = device(herald, client)
    thing = connected(herald.gateway, f"thing-{uuid.uuid4().hex[:8]}")
    thing.subscribe("$aws/things/lamp-4/shadow/update/delta")
    try:
        app.publish("$aws/things/lamp-4/shadow/update", json.dumps({"state": {"desired": {"on": True}}}))
        thing.wait(lambda: thing.received(), "the delta")
        topic, payload = thing.received()[0]
        assert topic == "$aws/things/lamp-4/shadow/update/delta"
        assert json.loads(payload)["state"] == {"on": True}
    finally:
        app.stop()
        thing.stop()


def test_a_thing_beyond_20_requests_a_second_is_rejected_429(herald, client):
    """AWS IoT's quota of shadow requests per thing: a burst past it is
    answered on `/rejected` with 429 (over MQTT) and ThrottlingException
    (over HTTP), each with its clientToken, and changes nothing."""
    watcher = device(herald, client)
    thing = f"busy-{uuid.uuid4().hex[:6]}"
    base = f"$aws/things/{thing}/shadow"
    # A session's requests are answered one after another: five sessions
    # at once make more than 20 a second however slow the machine.
    senders = [connected(herald.gateway, f"sender-{i}-{uuid.uuid4().hex[:6]}") for i in range(5)]
    try:
        for n in range(30):
            for i, sender in enumerate(senders):
                token = f"t{i}-{n}"
                sender.publish(f"{base}/update", json.dumps({"state": {"reported": {"n": n}}, "clientToken": token}))
        outcomes = (f"{base}/update/accepted", f"{base}/update/rejected")
        answers = lambda: [t for t, _ in watcher.received() if t in outcomes]
        watcher.wait(lambda: len(answers()) == 150, "150 answers")
        rejected = [json.loads(p) for t, p in watcher.received() if t == f"{base}/update/rejected"]
        accepted = [json.loads(p) for t, p in watcher.received() if t == f"{base}/update/accepted"]
        assert rejected, "no request was throttled"
        assert {(r["code"], r["message"]) for r in rejected} == {(429, "Too Many Requests")}
        assert all(r["clientToken"].startswith("t") for r in rejected)
        # The refused changed nothing: the versions count the accepted.
        assert max(a["version"] for a in accepted) == len(accepted)
    finally:
        watcher.stop()
        for sender in senders:
            sender.stop()
    data = make_client(herald.endpoint, service="iot-data", retries={"total_max_attempts": 1})

    def update(n):
        try:
            data.update_thing_shadow(thingName=f"{thing}-http", payload=json.dumps({"state": {"reported": {"n": n}}}))
            return None
        except botocore.exceptions.ClientError as refused:
            return refused.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(update, range(100)))
    assert set(codes) == {None, "ThrottlingException"}, codes
