"""Fleet indexing of shadows (AWS IoT developer guide: "Managing fleet
indexing", thing indexing mode REGISTRY_AND_SHADOW and named shadow
indexing): shadows written by a device over MQTT and by `iot-data` over
HTTP become searchable, appear in the thing documents, and move things in
and out of dynamic thing groups; boto3 and the aws CLI."""

import json
import time
import uuid

from support import expect_error, make_client, run_aws
from test_cluster import ALLOW_ALL, DEV_USER, connected

SHADOWS = {
    "thingIndexingMode": "REGISTRY_AND_SHADOW",
    "namedShadowIndexingMode": "ON",
    "filter": {"namedShadowNames": ["gps"]},
}


def eventually(what, check, secs=10):
    deadline = time.monotonic() + secs
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def search(client, query):
    return [t["thingName"] for t in client.search_index(queryString=query)["things"]]


def members(client, group):
    return sorted(client.list_things_in_thing_group(thingGroupName=group)["things"])


def test_shadows_from_mqtt_and_http_are_searched_and_move_dynamic_groups(herald, client):
    client.create_policy(policyName=DEV_USER, policyDocument=ALLOW_ALL)
    data = make_client(herald.endpoint, service="iot-data")
    client.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY"})
    for name in ("boiler-1", "boiler-2"):
        client.create_thing(thingName=name)
    client.create_dynamic_thing_group(thingGroupName="overheating", queryString="shadow.reported.temp>80")

    # A device reports over MQTT; the other's shadow is written over HTTP.
    device = connected(herald.gateway, "boiler-1")
    try:
        device.subscribe("$aws/things/boiler-1/shadow/update/accepted")
        device.publish(
            "$aws/things/boiler-1/shadow/update",
            json.dumps({"state": {"reported": {"temp": 95, "mode": "eco"}}}),
        )
        device.wait(lambda: device.received("$aws/things/boiler-1/shadow/update/accepted"), "update/accepted")
    finally:
        device.stop()
    data.update_thing_shadow(
        thingName="boiler-2", payload=json.dumps({"state": {"reported": {"temp": 60}, "desired": {"temp": 70}}})
    )
    data.update_thing_shadow(
        thingName="boiler-2", shadowName="gps", payload=json.dumps({"state": {"reported": {"lat": 48.1}}})
    )

    # REGISTRY indexes no shadow.
    assert search(client, "shadow.reported.temp>0") == []
    assert members(client, "overheating") == []

    client.update_indexing_configuration(thingIndexingConfiguration=SHADOWS)
    config = client.get_indexing_configuration()["thingIndexingConfiguration"]
    assert config["thingIndexingMode"] == "REGISTRY_AND_SHADOW"
    assert config["namedShadowIndexingMode"] == "ON"
    assert config["filter"] == {"namedShadowNames": ["gps"]}
    assert client.describe_index(indexName="AWS_Things")["schema"] == "REGISTRY_AND_SHADOW"

    assert search(client, "shadow.reported.temp>0") == ["boiler-1", "boiler-2"]
    assert search(client, "shadow.reported.mode:eco") == ["boiler-1"]
    assert search(client, "shadow.hasDelta:true") == ["boiler-2"]
    assert search(client, "shadow.name.gps.reported.lat>48") == ["boiler-2"]
    thing = client.search_index(queryString="thingName:boiler-2")["things"][0]
    shadow = json.loads(thing["shadow"])
    assert shadow["reported"] == {"temp": 60} and shadow["desired"] == {"temp": 70}
    assert shadow["hasDelta"] is True and shadow["version"] == 1
    assert shadow["name"]["gps"]["reported"] == {"lat": 48.1}
    eventually("boiler-1 overheating", lambda: members(client, "overheating") == ["boiler-1"])

    # The group follows the shadow: boiler-2 heats up, boiler-1's shadow goes.
    data.update_thing_shadow(thingName="boiler-2", payload=json.dumps({"state": {"reported": {"temp": 85}}}))
    eventually("both overheating", lambda: members(client, "overheating") == ["boiler-1", "boiler-2"])
    data.delete_thing_shadow(thingName="boiler-1")
    eventually("boiler-1 out", lambda: members(client, "overheating") == ["boiler-2"])
    stats = client.get_statistics(queryString="*", aggregationField="shadow.reported.temp")["statistics"]
    assert stats["count"] == 1 and stats["maximum"] == 85

    expect_error(
        client,
        "InvalidRequestException",
        client.update_indexing_configuration,
        thingIndexingConfiguration={"thingIndexingMode": "REGISTRY", "namedShadowIndexingMode": "ON",
                                    "filter": {"namedShadowNames": ["gps"]}},
    )


def test_shadow_indexing_through_the_aws_cli(herald, client, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    name = f"meter-{uuid.uuid4().hex[:6]}"
    client.create_thing(thingName=name)
    aws(
        "aws iot-data update-thing-shadow --thing-name " + name + " --shadow-name power "
        "--payload '{\"state\":{\"reported\":{\"kw\":3.5}}}' out.json"
    )
    aws(
        "aws iot update-indexing-configuration --thing-indexing-configuration "
        "'thingIndexingMode=REGISTRY_AND_SHADOW,namedShadowIndexingMode=ON,filter={namedShadowNames=[power]}'"
    )
    config = aws("aws iot get-indexing-configuration")["thingIndexingConfiguration"]
    assert config["filter"]["namedShadowNames"] == ["power"]
    found = aws('aws iot search-index --query-string "shadow.name.power.reported.kw:[3 TO 4]"')
    assert [t["thingName"] for t in found["things"]] == [name]
    assert json.loads(found["things"][0]["shadow"])["name"]["power"]["reported"] == {"kw": 3.5}
    aws(
        "aws iot update-indexing-configuration --thing-indexing-configuration "
        "'thingIndexingMode=REGISTRY_AND_SHADOW,namedShadowIndexingMode=ON'",
        expect_error="InvalidRequestException",
    )
