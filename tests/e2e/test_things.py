"""Things through boto3: CreateThing, DescribeThing, UpdateThing, DeleteThing,
ListThings, with the errors AWS documents and docs/registry-semantics.md."""

from support import expect_error, is_uuid, names_of, thing_arn


def test_create_and_describe_a_thing(client):
    created = client.create_thing(
        thingName="lamp-1", attributePayload={"attributes": {"room": "kitchen", "watts": "60"}}
    )
    assert created["thingName"] == "lamp-1"
    assert created["thingArn"] == thing_arn("lamp-1")
    assert is_uuid(created["thingId"]), created["thingId"]

    described = client.describe_thing(thingName="lamp-1")
    assert described["thingName"] == "lamp-1"
    assert described["thingId"] == created["thingId"]
    assert described["thingArn"] == thing_arn("lamp-1")
    assert described["defaultClientId"] == "lamp-1"
    assert described["attributes"] == {"room": "kitchen", "watts": "60"}
    assert described["version"] == 1
    assert "thingTypeName" not in described
    assert "billingGroupName" not in described


def test_a_thing_without_attributes_has_an_empty_set(client):
    client.create_thing(thingName="bare")
    described = client.describe_thing(thingName="bare")
    assert described.get("attributes", {}) == {}
    assert described["version"] == 1


def test_creating_the_same_thing_again_is_idempotent(client):
    first = client.create_thing(thingName="twin", attributePayload={"attributes": {"a": "1"}})
    again = client.create_thing(thingName="twin", attributePayload={"attributes": {"a": "1"}})
    assert again["thingId"] == first["thingId"]
    assert again["thingArn"] == first["thingArn"]
    assert client.describe_thing(thingName="twin")["version"] == 1


def test_creating_a_thing_with_different_attributes_is_a_conflict(client):
    first = client.create_thing(thingName="twin", attributePayload={"attributes": {"a": "1"}})
    err = expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.create_thing,
        thingName="twin",
        attributePayload={"attributes": {"a": "2"}},
    )
    assert err.response["resourceId"] == first["thingId"]
    assert err.response["resourceArn"] == thing_arn("twin")
    assert "twin" in err.response["Error"]["Message"]
    assert client.describe_thing(thingName="twin")["attributes"] == {"a": "1"}


def test_describing_a_missing_thing_is_not_found(client):
    err = expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="ghost")
    assert "ghost" in err.response["Error"]["Message"]


def test_thing_names_and_attributes_are_checked(client):
    expect_error(client, "InvalidRequestException", client.create_thing, thingName="has space")
    expect_error(client, "InvalidRequestException", client.create_thing, thingName="x" * 129)
    client.create_thing(thingName="x" * 128)
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing,
        thingName="bad-attr",
        attributePayload={"attributes": {"no spaces": "v"}},
    )
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing,
        thingName="long-value",
        attributePayload={"attributes": {"k": "v" * 801}},
    )
    # An untyped thing has at most 3 attributes.
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing,
        thingName="too-many",
        attributePayload={"attributes": {f"a{i}": "v" for i in range(4)}},
    )
    assert names_of(client.list_things()["things"], "thingName") == ["x" * 128]


def test_a_typed_thing_may_have_up_to_50_attributes(client):
    client.create_thing_type(thingTypeName="sensor")
    attrs = {f"a{i:02}": str(i) for i in range(50)}
    client.create_thing(
        thingName="rich", thingTypeName="sensor", attributePayload={"attributes": attrs}
    )
    described = client.describe_thing(thingName="rich")
    assert described["thingTypeName"] == "sensor"
    assert described["attributes"] == attrs
    expect_error(
        client,
        "InvalidRequestException",
        client.create_thing,
        thingName="richer",
        thingTypeName="sensor",
        attributePayload={"attributes": {f"a{i:02}": "v" for i in range(51)}},
    )


def test_creating_a_thing_of_an_unknown_type_or_billing_group_is_not_found(client):
    expect_error(
        client, "ResourceNotFoundException", client.create_thing, thingName="t", thingTypeName="nope"
    )
    expect_error(
        client,
        "ResourceNotFoundException",
        client.create_thing,
        thingName="t",
        billingGroupName="billing",
    )
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="t")


def test_update_merges_or_replaces_attributes_and_counts_versions(client):
    client.create_thing(thingName="lamp", attributePayload={"attributes": {"a": "1", "b": "2"}})

    client.update_thing(
        thingName="lamp", attributePayload={"attributes": {"c": "3"}, "merge": True}
    )
    described = client.describe_thing(thingName="lamp")
    assert described["attributes"] == {"a": "1", "b": "2", "c": "3"}
    assert described["version"] == 2

    # With merge, an empty value removes the attribute.
    client.update_thing(
        thingName="lamp", attributePayload={"attributes": {"a": ""}, "merge": True}
    )
    described = client.describe_thing(thingName="lamp")
    assert described["attributes"] == {"b": "2", "c": "3"}
    assert described["version"] == 3

    # Without merge, the set is replaced.
    client.update_thing(thingName="lamp", attributePayload={"attributes": {"z": "26"}})
    described = client.describe_thing(thingName="lamp")
    assert described["attributes"] == {"z": "26"}
    assert described["version"] == 4


def test_update_with_expected_version(client):
    client.create_thing(thingName="lamp")
    client.update_thing(
        thingName="lamp", attributePayload={"attributes": {"a": "1"}}, expectedVersion=1
    )
    assert client.describe_thing(thingName="lamp")["version"] == 2
    expect_error(
        client,
        "VersionConflictException",
        client.update_thing,
        thingName="lamp",
        attributePayload={"attributes": {"a": "2"}},
        expectedVersion=1,
    )
    described = client.describe_thing(thingName="lamp")
    assert described["attributes"] == {"a": "1"}
    assert described["version"] == 2


def test_updating_a_missing_thing_is_not_found(client):
    expect_error(
        client,
        "ResourceNotFoundException",
        client.update_thing,
        thingName="ghost",
        attributePayload={"attributes": {"a": "1"}},
    )


def test_update_changes_and_removes_the_thing_type(client):
    client.create_thing_type(thingTypeName="old")
    client.create_thing_type(thingTypeName="new")
    client.create_thing(thingName="lamp", thingTypeName="old")

    client.update_thing(thingName="lamp", thingTypeName="new")
    described = client.describe_thing(thingName="lamp")
    assert described["thingTypeName"] == "new"
    assert described["version"] == 2

    expect_error(
        client,
        "InvalidRequestException",
        client.update_thing,
        thingName="lamp",
        thingTypeName="old",
        removeThingType=True,
    )
    expect_error(
        client, "ResourceNotFoundException", client.update_thing, thingName="lamp", thingTypeName="nope"
    )
    client.deprecate_thing_type(thingTypeName="old")
    expect_error(
        client, "InvalidRequestException", client.update_thing, thingName="lamp", thingTypeName="old"
    )

    client.update_thing(thingName="lamp", removeThingType=True)
    described = client.describe_thing(thingName="lamp")
    assert "thingTypeName" not in described
    assert described["version"] == 3


def test_delete_a_thing(client):
    client.create_thing(thingName="lamp")
    client.delete_thing(thingName="lamp")
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="lamp")
    # Deleting a missing thing succeeds, even with an expected version.
    client.delete_thing(thingName="lamp")
    client.delete_thing(thingName="lamp", expectedVersion=7)
    assert client.list_things()["things"] == []


def test_delete_with_a_wrong_expected_version_is_a_conflict(client):
    client.create_thing(thingName="lamp")
    client.update_thing(thingName="lamp", attributePayload={"attributes": {"a": "1"}})
    expect_error(
        client, "VersionConflictException", client.delete_thing, thingName="lamp", expectedVersion=1
    )
    assert client.describe_thing(thingName="lamp")["version"] == 2
    client.delete_thing(thingName="lamp", expectedVersion=2)
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="lamp")


def test_a_thing_with_principals_cannot_be_deleted(client):
    cert = client.create_keys_and_certificate(setAsActive=False)
    client.create_thing(thingName="lamp")
    client.attach_thing_principal(thingName="lamp", principal=cert["certificateArn"])
    expect_error(client, "InvalidRequestException", client.delete_thing, thingName="lamp")
    client.detach_thing_principal(thingName="lamp", principal=cert["certificateArn"])
    client.delete_thing(thingName="lamp")
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="lamp")


def test_list_things_and_their_summaries(client):
    client.create_thing_type(thingTypeName="bulb")
    client.create_thing(
        thingName="b-lamp", thingTypeName="bulb", attributePayload={"attributes": {"room": "hall"}}
    )
    client.create_thing(thingName="a-lamp", attributePayload={"attributes": {"room": "kitchen"}})
    client.update_thing(thingName="a-lamp", attributePayload={"attributes": {"x": "1"}, "merge": True})

    things = client.list_things()["things"]
    assert names_of(things, "thingName") == ["a-lamp", "b-lamp"]
    a, b = things
    assert a["thingArn"] == thing_arn("a-lamp")
    assert a["attributes"] == {"room": "kitchen", "x": "1"}
    assert a["version"] == 2
    assert "thingTypeName" not in a
    assert b["thingTypeName"] == "bulb"
    assert b["attributes"] == {"room": "hall"}
    assert b["version"] == 1


def test_list_things_filters(client):
    client.create_thing_type(thingTypeName="bulb")
    client.create_thing(thingName="t1", attributePayload={"attributes": {"room": "kitchen"}})
    client.create_thing(thingName="t2", attributePayload={"attributes": {"room": "kitchenette"}})
    client.create_thing(
        thingName="t3", thingTypeName="bulb", attributePayload={"attributes": {"room": "hall"}}
    )
    client.create_thing(thingName="t4", thingTypeName="bulb")

    def listed(**filters):
        return names_of(client.list_things(**filters)["things"], "thingName")

    assert listed(attributeName="room", attributeValue="kitchen") == ["t1"]
    assert listed(
        attributeName="room", attributeValue="kitchen", usePrefixAttributeValue=True
    ) == ["t1", "t2"]
    assert listed(thingTypeName="bulb") == ["t3", "t4"]
    assert listed(thingTypeName="bulb", attributeName="room", attributeValue="hall") == ["t3"]
    assert listed(attributeName="room", attributeValue="attic") == []


def test_list_things_checks_max_results_and_tokens(client):
    client.create_thing(thingName="t1")
    expect_error(client, "InvalidRequestException", client.list_things, maxResults=251)
    expect_error(client, "InvalidRequestException", client.list_things, nextToken="not-a-token")
    page = client.list_things(maxResults=250)
    assert names_of(page["things"], "thingName") == ["t1"]
    assert not page.get("nextToken")


def test_concurrent_creates_all_land(client):
    from concurrent.futures import ThreadPoolExecutor

    names = [f"par-{i:02}" for i in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda n: client.create_thing(thingName=n), names))
    assert [c["thingName"] for c in created] == names
    assert len({c["thingId"] for c in created}) == len(names)
    listed = client.list_things(maxResults=100)["things"]
    assert names_of(listed, "thingName") == names
