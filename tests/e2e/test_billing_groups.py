"""Billing groups through boto3 and the aws CLI: every operation, its errors,
and a thing in at most one billing group (AWS IoT developer guide: "Billing
groups"). AWS IoT publishes no event for them."""

from support import ARN_PREFIX, expect_error, recent, run_aws, thing_arn


def billing_group_arn(name):
    return f"{ARN_PREFIX}:billinggroup/{name}"


def test_create_describe_update_list_and_delete(client):
    created = client.create_billing_group(
        billingGroupName="east",
        billingGroupProperties={"billingGroupDescription": "east coast"},
        tags=[{"Key": "team", "Value": "ops"}],
    )
    assert created["billingGroupName"] == "east"
    assert created["billingGroupArn"] == billing_group_arn("east")
    group_id = created["billingGroupId"]

    described = client.describe_billing_group(billingGroupName="east")
    assert described["billingGroupId"] == group_id
    assert described["billingGroupArn"] == billing_group_arn("east")
    assert described["version"] == 1
    assert described["billingGroupProperties"] == {"billingGroupDescription": "east coast"}
    assert recent(described["billingGroupMetadata"]["creationDate"])
    assert client.list_tags_for_resource(resourceArn=billing_group_arn("east"))["tags"] == [
        {"Key": "team", "Value": "ops"}
    ]

    # The same again is the same group; other properties are refused.
    again = client.create_billing_group(
        billingGroupName="east", billingGroupProperties={"billingGroupDescription": "east coast"}
    )
    assert again["billingGroupId"] == group_id
    expect_error(
        client,
        "ResourceAlreadyExistsException",
        client.create_billing_group,
        billingGroupName="east",
        billingGroupProperties={"billingGroupDescription": "elsewhere"},
    )

    updated = client.update_billing_group(
        billingGroupName="east", billingGroupProperties={"billingGroupDescription": "renamed"}, expectedVersion=1
    )
    assert updated["version"] == 2
    described = client.describe_billing_group(billingGroupName="east")
    assert described["version"] == 2
    assert described["billingGroupProperties"] == {"billingGroupDescription": "renamed"}
    expect_error(
        client,
        "VersionConflictException",
        client.update_billing_group,
        billingGroupName="east",
        billingGroupProperties={},
        expectedVersion=1,
    )

    client.create_billing_group(billingGroupName="west")
    listed = client.list_billing_groups()["billingGroups"]
    assert listed == [
        {"groupName": "east", "groupArn": billing_group_arn("east")},
        {"groupName": "west", "groupArn": billing_group_arn("west")},
    ]
    assert client.list_billing_groups(namePrefixFilter="we")["billingGroups"] == [listed[1]]
    page = client.list_billing_groups(maxResults=1)
    assert page["billingGroups"] == [listed[0]] and "nextToken" in page
    rest = client.list_billing_groups(maxResults=1, nextToken=page["nextToken"])
    assert rest["billingGroups"] == [listed[1]] and "nextToken" not in rest

    expect_error(client, "VersionConflictException", client.delete_billing_group, billingGroupName="east", expectedVersion=1)
    client.delete_billing_group(billingGroupName="east", expectedVersion=2)
    client.delete_billing_group(billingGroupName="east")  # not there: no error
    expect_error(client, "ResourceNotFoundException", client.describe_billing_group, billingGroupName="east")
    expect_error(client, "InvalidRequestException", client.create_billing_group, billingGroupName="no spaces")


def test_a_thing_is_in_at_most_one_billing_group(client):
    client.create_billing_group(billingGroupName="east")
    client.create_billing_group(billingGroupName="west")
    client.create_thing(thingName="fan", billingGroupName="east")
    client.create_thing(thingName="lamp")
    assert client.describe_thing(thingName="fan")["billingGroupName"] == "east"
    assert "billingGroupName" not in client.describe_thing(thingName="lamp")

    client.add_thing_to_billing_group(billingGroupName="east", thingName="lamp")
    assert client.list_things_in_billing_group(billingGroupName="east")["things"] == ["fan", "lamp"]
    # Into another group, by ARN: the thing moves.
    client.add_thing_to_billing_group(billingGroupArn=billing_group_arn("west"), thingArn=thing_arn("lamp"))
    assert client.list_things_in_billing_group(billingGroupName="east")["things"] == ["fan"]
    assert client.list_things_in_billing_group(billingGroupName="west")["things"] == ["lamp"]
    assert client.describe_thing(thingName="lamp")["billingGroupName"] == "west"

    expect_error(client, "ResourceNotFoundException", client.add_thing_to_billing_group, billingGroupName="north", thingName="lamp")
    expect_error(client, "ResourceNotFoundException", client.add_thing_to_billing_group, billingGroupName="west", thingName="ghost")
    expect_error(client, "InvalidRequestException", client.add_thing_to_billing_group, thingName="lamp")
    expect_error(client, "ResourceNotFoundException", client.list_things_in_billing_group, billingGroupName="north")
    expect_error(client, "ResourceNotFoundException", client.create_thing, thingName="new", billingGroupName="north")
    expect_error(client, "ResourceNotFoundException", client.describe_thing, thingName="new")

    client.remove_thing_from_billing_group(billingGroupName="east", thingName="lamp")  # not in it: nothing happens
    assert client.describe_thing(thingName="lamp")["billingGroupName"] == "west"
    client.remove_thing_from_billing_group(billingGroupArn=billing_group_arn("west"), thingArn=thing_arn("lamp"))
    assert "billingGroupName" not in client.describe_thing(thingName="lamp")
    assert client.list_things_in_billing_group(billingGroupName="west")["things"] == []

    # Deleting the group takes its things out of it.
    client.delete_billing_group(billingGroupName="east")
    assert "billingGroupName" not in client.describe_thing(thingName="fan")


def test_every_operation_through_the_aws_cli(herald, tmp_path):
    def aws(command, **kwargs):
        return run_aws(command, herald.endpoint, tmp_path, **kwargs)

    created = aws(
        "aws iot create-billing-group --billing-group-name GroupOne "
        "--billing-group-properties billingGroupDescription=testing"
    )
    assert created["billingGroupArn"] == billing_group_arn("GroupOne")
    described = aws("aws iot describe-billing-group --billing-group-name GroupOne")
    assert described["billingGroupProperties"] == {"billingGroupDescription": "testing"}
    assert aws(
        "aws iot update-billing-group --billing-group-name GroupOne "
        '--billing-group-properties "billingGroupDescription=\\"Current version of the group\\"" --expected-version 1'
    ) == {"version": 2}
    assert aws("aws iot list-billing-groups --name-prefix-filter Group") == {
        "billingGroups": [{"groupName": "GroupOne", "groupArn": billing_group_arn("GroupOne")}]
    }
    aws("aws iot create-thing --thing-name MyLightBulb")
    assert aws("aws iot add-thing-to-billing-group --billing-group-name GroupOne --thing-name MyLightBulb") is None
    assert aws("aws iot list-things-in-billing-group --billing-group-name GroupOne") == {"things": ["MyLightBulb"]}
    assert aws("aws iot remove-thing-from-billing-group --billing-group-name GroupOne --thing-name MyLightBulb") is None
    assert aws("aws iot list-things-in-billing-group --billing-group-name GroupOne") == {"things": []}
    aws("aws iot describe-billing-group --billing-group-name Missing", expect_error="ResourceNotFoundException")
    aws(
        "aws iot delete-billing-group --billing-group-name GroupOne --expected-version 1",
        expect_error="VersionConflictException",
    )
    assert aws("aws iot delete-billing-group --billing-group-name GroupOne") is None
    assert aws("aws iot list-billing-groups") == {"billingGroups": []}
