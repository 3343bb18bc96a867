"""Thing types through boto3: create, describe, update, deprecate (and undo),
delete, list."""

from support import expect_error, is_uuid, names_of, recent, thing_type_arn


def test_create_and_describe_a_thing_type(client):
    created = client.create_thing_type(
        thingTypeName="sensor",
        thingTypeProperties={
            "thingTypeDescription": "temperature sensors",
            "searchableAttributes": ["room", "floor"],
        },
    )
    assert created["thingTypeName"] == "sensor"
    assert created["thingTypeArn"] == thing_type_arn("sensor")
    assert is_uuid(created["thingTypeId"])

    described = client.describe_thing_type(thingTypeName="sensor")
    assert described["thingTypeName"] == "sensor"
    assert described["thingTypeId"] == created["thingTypeId"]
    assert described["thingTypeArn"] == thing_type_arn("sensor")
    props = described["thingTypeProperties"]
    assert props["thingTypeDescription"] == "temperature sensors"
    assert props["searchableAttributes"] == ["room", "floor"]
    meta = described["thingTypeMetadata"]
    assert meta["deprecated"] is False
    assert "deprecationDate" not in meta
    recent(meta["creationDate"])


def test_creating_the_same_thing_type_again(client):
    props = {"thingTypeDescription": "d", "searchableAttributes": ["a"]}
    first = client.create_thing_type(thingTypeName="sensor", thingTypeProperties=props)
    again = client.create_thing_type(thingTypeName="sensor", thingTypeProperties=props)
    assert again["thingTypeId"] == first["thingTypeId"]

    err = expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.create_thing_type,
        thingTypeName="sensor",
        thingTypeProperties={"thingTypeDescription": "other"},
    )
    assert err.response["resourceId"] == first["thingTypeId"]
    assert err.response["resourceArn"] == thing_type_arn("sensor")
    described = client.describe_thing_type(thingTypeName="sensor")
    assert described["thingTypeProperties"]["thingTypeDescription"] == "d"


def test_thing_type_limits(client):
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing_type,
        thingTypeName="wide",
        thingTypeProperties={"searchableAttributes": ["a", "b", "c", "d"]},
    )
    expect_error(client, "InvalidRequestException", client.create_thing_type, thingTypeName="bad name")
    expect_error(client, "ResourceNotFoundException", client.describe_thing_type, thingTypeName="wide")


def test_update_replaces_only_the_properties_given(client):
    client.create_thing_type(
        thingTypeName="sensor",
        thingTypeProperties={"thingTypeDescription": "old", "searchableAttributes": ["room"]},
    )
    client.update_thing_type(
        thingTypeName="sensor", thingTypeProperties={"thingTypeDescription": "new"}
    )
    props = client.describe_thing_type(thingTypeName="sensor")["thingTypeProperties"]
    assert props["thingTypeDescription"] == "new"
    assert props["searchableAttributes"] == ["room"]

    client.update_thing_type(
        thingTypeName="sensor", thingTypeProperties={"searchableAttributes": ["floor", "zone"]}
    )
    props = client.describe_thing_type(thingTypeName="sensor")["thingTypeProperties"]
    assert props["thingTypeDescription"] == "new"
    assert props["searchableAttributes"] == ["floor", "zone"]

    expect_error(
        client,
        "ResourceNotFoundException",
        client.update_thing_type,
        thingTypeName="ghost",
        thingTypeProperties={"thingTypeDescription": "x"},
    )


def test_deprecate_and_undo(client):
    client.create_thing_type(thingTypeName="sensor")
    client.deprecate_thing_type(thingTypeName="sensor")
    meta = client.describe_thing_type(thingTypeName="sensor")["thingTypeMetadata"]
    assert meta["deprecated"] is True
    recent(meta["deprecationDate"])
    assert meta["deprecationDate"] >= meta["creationDate"]

    # A deprecated type takes no new things.
    expect_error(
        client, "InvalidRequestException", client.create_thing, thingName="t", thingTypeName="sensor"
    )

    client.deprecate_thing_type(thingTypeName="sensor", undoDeprecate=True)
    meta = client.describe_thing_type(thingTypeName="sensor")["thingTypeMetadata"]
    assert meta["deprecated"] is False
    assert "deprecationDate" not in meta
    client.create_thing(thingName="t", thingTypeName="sensor")
    assert client.describe_thing(thingName="t")["thingTypeName"] == "sensor"

    expect_error(
        client, "ResourceNotFoundException", client.deprecate_thing_type, thingTypeName="ghost"
    )


def test_delete_a_thing_type(client):
    client.create_thing_type(thingTypeName="sensor")
    # Only a deprecated type can be deleted.
    expect_error(client, "InvalidRequestException", client.delete_thing_type, thingTypeName="sensor")

    client.create_thing(thingName="t", thingTypeName="sensor")
    client.deprecate_thing_type(thingTypeName="sensor")
    # Not while things have it.
    expect_error(client, "InvalidRequestException", client.delete_thing_type, thingTypeName="sensor")

    client.delete_thing(thingName="t")
    client.delete_thing_type(thingTypeName="sensor")
    expect_error(
        client, "ResourceNotFoundException", client.describe_thing_type, thingTypeName="sensor"
    )
    expect_error(client, "ResourceNotFoundException", client.delete_thing_type, thingTypeName="sensor")


def test_list_thing_types(client):
    client.create_thing_type(
        thingTypeName="b-type", thingTypeProperties={"thingTypeDescription": "second"}
    )
    client.create_thing_type(thingTypeName="a-type")
    client.deprecate_thing_type(thingTypeName="a-type")

    types = client.list_thing_types()["thingTypes"]
    assert names_of(types, "thingTypeName") == ["a-type", "b-type"]
    a, b = types
    assert a["thingTypeArn"] == thing_type_arn("a-type")
    assert a["thingTypeMetadata"]["deprecated"] is True
    recent(a["thingTypeMetadata"]["deprecationDate"])
    assert b["thingTypeProperties"]["thingTypeDescription"] == "second"
    assert b["thingTypeMetadata"]["deprecated"] is False
    recent(b["thingTypeMetadata"]["creationDate"])

    only = client.list_thing_types(thingTypeName="b-type")["thingTypes"]
    assert names_of(only, "thingTypeName") == ["b-type"]
    assert client.list_thing_types(thingTypeName="c-type")["thingTypes"] == []


def test_mqtt5_configuration_and_tags(client):
    props = {
        "thingTypeDescription": "with MQTT 5 properties",
        "mqtt5Configuration": {
            "propagatingAttributes": [
                {"userPropertyKey": "room", "thingAttribute": "room"},
                {"userPropertyKey": "client", "connectionAttribute": "iot:ClientId"},
            ]
        },
    }
    client.create_thing_type(
        thingTypeName="mqtt5", thingTypeProperties=props, tags=[{"Key": "team", "Value": "devices"}]
    )
    described = client.describe_thing_type(thingTypeName="mqtt5")["thingTypeProperties"]
    assert described["thingTypeDescription"] == "with MQTT 5 properties"
    assert described["mqtt5Configuration"] == props["mqtt5Configuration"]
