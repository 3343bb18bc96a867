"""Fleet indexing through boto3 and the aws CLI (AWS IoT developer guide:
"Fleet indexing", "Query syntax", "Querying for aggregate data"): the
indexing configuration, the indices, SearchIndex with AWS's query syntax on
things and thing groups, the four aggregations, and connectivity fed by the
gateway's own connections."""

import json
import time

import pytest

from support import client_arn, expect_error, run_aws

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt connects the device")

FULL = {
    "thingIndexingConfiguration": {"thingIndexingMode": "REGISTRY", "thingConnectivityIndexingMode": "STATUS"},
    "thingGroupIndexingConfiguration": {"thingGroupIndexingMode": "ON"},
}


def names(found):
    return [t["thingName"] for t in found["things"]]


def search(client, query, **kwargs):
    return names(client.search_index(queryString=query, **kwargs))


def fleet(client):
    client.create_thing_type(thingTypeName="lamp")
    client.create_thing_group(thingGroupName="building", thingGroupProperties={"thingGroupDescription": "HQ"})
    client.create_thing_group(
        thingGroupName="floor-1",
        parentGroupName="building",
        thingGroupProperties={"attributePayload": {"attributes": {"level": "1"}}},
    )
    things = {
        "lamp-1": ("lamp", {"room": "hall", "watts": "60"}),
        "lamp-2": ("lamp", {"room": "hallway", "watts": "100"}),
        "fan-1": (None, {"room": "kitchen", "watts": "20"}),
    }
    for name, (thing_type, attributes) in things.items():
        kwargs = {"thingTypeName": thing_type} if thing_type else {}
        client.create_thing(thingName=name, attributePayload={"attributes": attributes}, **kwargs)
    client.add_thing_to_thing_group(thingGroupName="floor-1", thingName="lamp-1")


def test_indexing_is_off_until_configured_and_the_configuration_is_checked(client):
    config = client.get_indexing_configuration()
    assert config["thingIndexingConfiguration"]["thingIndexingMode"] == "OFF"
    assert config["thingGroupIndexingConfiguration"]["thingGroupIndexingMode"] == "OFF"
    assert client.list_indices()["indexNames"] == []
    expect_error(client, "ResourceNotFoundException", client.search_index, queryString="*")
    expect_error(client, "ResourceNotFoundException", client.describe_index, indexName="AWS_Things")
    expect_error(
        client,
        "InvalidRequestException",
        client.update_indexing_configuration,
        thingIndexingConfiguration={"thingIndexingMode": "OFF", "thingConnectivityIndexingMode": "STATUS"},
    )
    expect_error(
        client,
        "InvalidRequestException",
        client.update_indexing_configuration,
        thingIndexingConfiguration={"thingIndexingMode": "EVERYTHING"},
    )
    assert client.list_indices()["indexNames"] == []

    client.update_indexing_configuration(**FULL)
    config = client.get_indexing_configuration()
    assert config["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY"
    assert config["thingIndexingConfiguration"]["thingConnectivityIndexingMode"] == "STATUS"
    assert config["thingGroupIndexingConfiguration"]["thingGroupIndexingMode"] == "ON"
    assert client.list_indices()["indexNames"] == ["AWS_Things", "AWS_ThingGroups"]
    described = client.describe_index(indexName="AWS_Things")
    assert (described["indexName"], described["indexStatus"], described["schema"]) == (
        "AWS_Things",
        "ACTIVE",
        "REGISTRY_AND_CONNECTIVITY_STATUS",
    )
    assert client.describe_index(indexName="AWS_ThingGroups")["schema"] == "THING_GROUPS"
    expect_error(client, "ResourceNotFoundException", client.describe_index, indexName="AWS_Nothing")


def test_search_with_aws_query_syntax_sees_every_acknowledged_change(client):
    client.update_indexing_configuration(**FULL)
    fleet(client)
    # Each search follows the change it checks at once: the index is
    # consistent with every acknowledged mutation.
    assert search(client, "*") == ["fan-1", "lamp-1", "lamp-2"]
    assert search(client, "thingName:lamp*") == ["lamp-1", "lamp-2"]
    assert search(client, "lamp-?") == ["lamp-1", "lamp-2"]
    assert search(client, "attributes.room:hall") == ["lamp-1"]
    assert search(client, "attributes.room:hall*") == ["lamp-1", "lamp-2"]
    assert search(client, "attributes.watts>50") == ["lamp-1", "lamp-2"]
    assert search(client, "attributes.watts:[20 TO 60}") == ["fan-1"]
    assert search(client, "thingTypeName:lamp AND NOT attributes.watts<=60") == ["lamp-2"]
    assert search(client, "thingGroupNames:floor-1 OR attributes.room:kitchen") == ["fan-1", "lamp-1"]
    assert search(client, "(lamp-1 OR lamp-2) attributes.watts:100") == ["lamp-2"]
    assert search(client, 'attributes.room:"hall"') == ["lamp-1"]

    found = client.search_index(indexName="AWS_Things", queryString="thingName:lamp-1")["things"]
    assert found == [
        {
            "thingName": "lamp-1",
            "thingId": client.describe_thing(thingName="lamp-1")["thingId"],
            "thingTypeName": "lamp",
            "thingGroupNames": ["floor-1"],
            "attributes": {"room": "hall", "watts": "60"},
            "connectivity": {"connected": False},
        }
    ]

    client.update_thing(thingName="lamp-1", attributePayload={"attributes": {"room": "attic"}, "merge": True})
    assert search(client, "attributes.room:attic") == ["lamp-1"]
    client.remove_thing_from_thing_group(thingGroupName="floor-1", thingName="lamp-1")
    assert search(client, "thingGroupNames:floor-1") == []
    client.delete_thing(thingName="fan-1")
    assert search(client, "attributes.watts:*") == ["lamp-1", "lamp-2"]

    page = client.search_index(queryString="*", maxResults=1)
    assert names(page) == ["lamp-1"] and page["nextToken"]
    rest = client.search_index(queryString="*", maxResults=1, nextToken=page["nextToken"])
    assert names(rest) == ["lamp-2"] and "nextToken" not in rest

    for bad in ["attributes.room:", "(thingName:a", "a:[1 TO", "AND", 'x:"open']:
        expect_error(client, "InvalidQueryException", client.search_index, queryString=bad)
    expect_error(client, "InvalidRequestException", client.search_index, queryString="*", maxResults=101)


def test_the_thing_groups_index(client):
    client.update_indexing_configuration(**FULL)
    fleet(client)
    found = client.search_index(indexName="AWS_ThingGroups", queryString="parentGroupNames:building")
    assert found["things"] == []
    assert found["thingGroups"] == [
        {
            "thingGroupName": "floor-1",
            "thingGroupId": client.describe_thing_group(thingGroupName="floor-1")["thingGroupId"],
            "attributes": {"level": "1"},
            "parentGroupNames": ["building"],
        }
    ]
    groups = client.search_index(indexName="AWS_ThingGroups", queryString="thingGroupDescription:HQ")["thingGroups"]
    assert [g["thingGroupName"] for g in groups] == ["building"]


def test_aggregations(client):
    client.update_indexing_configuration(**FULL)
    fleet(client)
    stats = client.get_statistics(queryString="*", aggregationField="attributes.watts")["statistics"]
    assert stats["count"] == 3
    assert stats["sum"] == 180 and stats["average"] == 60
    assert stats["minimum"] == 20 and stats["maximum"] == 100
    assert stats["sumOfSquares"] == 60**2 + 100**2 + 20**2
    assert abs(stats["variance"] - (14000 / 3 - 3600)) < 1e-6
    assert abs(stats["stdDeviation"] - (14000 / 3 - 3600) ** 0.5) < 1e-6
    # A text field: the count only.
    assert client.get_statistics(queryString="*", aggregationField="attributes.room")["statistics"] == {"count": 3}

    assert client.get_cardinality(queryString="*", aggregationField="thingTypeName")["cardinality"] == 1
    assert client.get_cardinality(queryString="thingName:lamp*", aggregationField="attributes.room")["cardinality"] == 2

    percentiles = client.get_percentiles(queryString="*", aggregationField="attributes.watts", percents=[0, 50, 100])
    assert percentiles["percentiles"] == [
        {"percent": 0.0, "value": 20.0},
        {"percent": 50.0, "value": 60.0},
        {"percent": 100.0, "value": 100.0},
    ]
    expect_error(
        client, "InvalidAggregationException", client.get_percentiles, queryString="*", aggregationField="attributes.room"
    )

    buckets = client.get_buckets_aggregation(
        queryString="*",
        aggregationField="thingTypeName",
        bucketsAggregationType={"termsAggregation": {"maxBuckets": 5}},
    )
    assert buckets["totalCount"] == 3
    assert buckets["buckets"] == [{"keyValue": "lamp", "count": 2}]
    expect_error(
        client,
        "InvalidAggregationException",
        client.get_cardinality,
        queryString="*",
        aggregationField="shoeSize",
    )
    expect_error(
        client, "InvalidQueryException", client.get_statistics, queryString="(", aggregationField="attributes.watts"
    )


def test_connectivity_follows_the_gateways_connections(herald, client):
    client.update_indexing_configuration(**FULL)
    client.create_thing(thingName="lamp-1")
    client.create_policy(
        policyName="herald-dev",
        policyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": client_arn("lamp-1")}]}
        ),
    )
    host, port = herald.gateway.endpoint("mqtt")
    connected = []
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lamp-1", protocol=mqtt.MQTTv311)
    device.username_pw_set("herald-dev", "herald-dev-secret")
    device.on_connect = lambda c, u, f, reason, p: connected.append(not reason.is_failure)

    def wait_for(what, check):
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, f"no {what} within 30 s"
            time.sleep(0.05)

    # The gateway learns of the policy from the config service's stream:
    # connect until the CONNECT is accepted.
    deadline = time.monotonic() + 30
    while not any(connected):
        assert time.monotonic() < deadline, "the device never connected"
        connected.clear()
        device.connect(host, port, keepalive=30)
        device.loop_start()
        wait_for("CONNACK", lambda: connected)
        if not connected[0]:
            device.loop_stop()
            time.sleep(0.1)

    def connectivity():
        things = client.search_index(queryString="thingName:lamp-1")["things"]
        return things[0]["connectivity"]

    wait_for("connected", lambda: connectivity()["connected"])
    assert search(client, "connectivity.connected:true") == ["lamp-1"]
    assert connectivity()["timestamp"] > 1_600_000_000_000
    device.disconnect()
    device.loop_stop()
    wait_for("disconnected", lambda: not connectivity()["connected"])
    assert connectivity()["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert search(client, "connectivity.disconnectReason:CLIENT_INITIATED_DISCONNECT") == ["lamp-1"]


def test_every_operation_through_the_aws_cli(herald, client, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    aws(
        "aws iot update-indexing-configuration "
        "--thing-indexing-configuration thingIndexingMode=REGISTRY,thingConnectivityIndexingMode=STATUS "
        "--thing-group-indexing-configuration thingGroupIndexingMode=ON"
    )
    assert aws("aws iot get-indexing-configuration")["thingIndexingConfiguration"]["thingIndexingMode"] == "REGISTRY"
    assert aws("aws iot list-indices") == {"indexNames": ["AWS_Things", "AWS_ThingGroups"]}
    assert aws("aws iot describe-index --index-name AWS_Things")["indexStatus"] == "ACTIVE"
    fleet(client)
    found = aws('aws iot search-index --index-name "AWS_Things" --query-string "thingName:lamp*"')
    assert [t["thingName"] for t in found["things"]] == ["lamp-1", "lamp-2"]
    stats = aws('aws iot get-statistics --aggregation-field "attributes.watts" --query-string "*"')
    assert stats["statistics"]["count"] == 3
    assert aws('aws iot get-cardinality --aggregation-field "attributes.room" --query-string "*"') == {"cardinality": 3}
    percentiles = aws(
        'aws iot get-percentiles --aggregation-field "attributes.watts" --query-string "*" --percents 50'
    )
    assert percentiles == {"percentiles": [{"percent": 50.0, "value": 60.0}]}
    buckets = aws(
        'aws iot get-buckets-aggregation --query-string "*" --aggregation-field "thingTypeName" '
        "--buckets-aggregation-type termsAggregation={maxBuckets=10}"
    )
    assert buckets == {"totalCount": 3, "buckets": [{"keyValue": "lamp", "count": 2}]}
    aws('aws iot search-index --query-string "thingName:("', expect_error="InvalidQueryException")


def test_custom_fields_and_geo_locations_are_kept_and_managed_fields_listed(herald, client, tmp_path):
    thing_config = {
        "thingIndexingMode": "REGISTRY_AND_SHADOW",
        "thingConnectivityIndexingMode": "STATUS",
        "customFields": [
            {"name": "attributes.watts", "type": "Number"},
            {"name": "shadow.reported.on", "type": "Boolean"},
        ],
        "filter": {"geoLocations": [{"name": "shadow.reported.location", "order": "LatLon"}]},
    }
    group_config = {"thingGroupIndexingMode": "ON", "customFields": [{"name": "attributes.level", "type": "String"}]}
    client.update_indexing_configuration(
        thingIndexingConfiguration=thing_config, thingGroupIndexingConfiguration=group_config
    )
    config = client.get_indexing_configuration()
    config.pop("ResponseMetadata")
    things = config["thingIndexingConfiguration"]
    assert things["customFields"] == thing_config["customFields"]
    assert things["filter"] == thing_config["filter"]
    managed = {(f["name"], f["type"]) for f in things["managedFields"]}
    assert {
        ("thingName", "String"),
        ("thingId", "String"),
        ("registry.version", "Number"),
        ("registry.thingTypeName", "String"),
        ("registry.thingGroupNames", "String"),
        ("shadow.version", "Number"),
        ("shadow.hasDelta", "Boolean"),
        ("connectivity.connected", "Boolean"),
        ("connectivity.timestamp", "Number"),
        ("connectivity.disconnectReason", "String"),
    } <= managed
    groups = config["thingGroupIndexingConfiguration"]
    assert groups["customFields"] == group_config["customFields"]
    assert ("thingGroupName", "String") in {(f["name"], f["type"]) for f in groups["managedFields"]}

    # Refused, changing nothing: a type AWS does not know, a managed field,
    # a field twice, a geolocation order AWS does not know.
    for bad in (
        {"customFields": [{"name": "attributes.watts", "type": "Float"}]},
        {"customFields": [{"name": "thingName", "type": "String"}]},
        {"customFields": [{"name": "attributes.a", "type": "Number"}, {"name": "attributes.a", "type": "String"}]},
        {"filter": {"geoLocations": [{"name": "attributes.where", "order": "NorthEast"}]}},
    ):
        expect_error(
            client,
            "InvalidRequestException",
            client.update_indexing_configuration,
            thingIndexingConfiguration={"thingIndexingMode": "REGISTRY", **bad},
        )
    expect_error(
        client,
        "InvalidRequestException",
        client.update_indexing_configuration,
        thingGroupIndexingConfiguration={
            "thingGroupIndexingMode": "ON",
            "customFields": [{"name": "thingGroupName", "type": "String"}],
        },
    )
    after = client.get_indexing_configuration()
    after.pop("ResponseMetadata")
    assert after == config

    # The aws CLI; a thing configuration replaces the previous one, custom
    # fields included, and leaves the group's as they are.
    def aws(command):
        return run_aws(command, herald.endpoint, tmp_path)

    aws(
        "aws iot update-indexing-configuration --thing-indexing-configuration "
        "'{\"thingIndexingMode\":\"REGISTRY\",\"customFields\":[{\"name\":\"attributes.room\",\"type\":\"String\"}]}'"
    )
    got = aws("aws iot get-indexing-configuration")
    assert got["thingIndexingConfiguration"]["customFields"] == [{"name": "attributes.room", "type": "String"}]
    assert "filter" not in got["thingIndexingConfiguration"]
    assert ("shadow.version", "Number") not in {
        (f["name"], f["type"]) for f in got["thingIndexingConfiguration"]["managedFields"]
    }
    assert got["thingGroupIndexingConfiguration"]["customFields"] == group_config["customFields"]
