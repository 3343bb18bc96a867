"""Event configurations through boto3: every event type, merged updates,
timestamps as datetimes."""

from support import expect_error, recent

EVENT_TYPES = [
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
]


def enabled(described):
    return {key: value["Enabled"] for key, value in described["eventConfigurations"].items()}


def test_every_event_type_starts_disabled(client):
    described = client.describe_event_configurations()
    assert enabled(described) == {key: False for key in EVENT_TYPES}
    recent(described["creationDate"])
    recent(described["lastModifiedDate"])
    assert described["lastModifiedDate"] >= described["creationDate"]


def test_updates_merge_and_advance_the_modification_date(client):
    before = client.describe_event_configurations()
    client.update_event_configurations(
        eventConfigurations={"THING": {"Enabled": True}, "THING_GROUP": {"Enabled": True}}
    )
    client.update_event_configurations(
        eventConfigurations={"THING_GROUP": {"Enabled": False}, "POLICY": {"Enabled": True}}
    )
    after = client.describe_event_configurations()
    expected = {key: False for key in EVENT_TYPES}
    expected.update(THING=True, POLICY=True)
    assert enabled(after) == expected
    assert after["creationDate"] == before["creationDate"]
    assert after["lastModifiedDate"] > before["lastModifiedDate"]


def test_an_unknown_event_type_changes_nothing(client):
    expect_error(
        client,
        "InvalidRequestException",
        client.update_event_configurations,
        eventConfigurations={"THING": {"Enabled": True}, "NOT_A_TYPE": {"Enabled": True}},
    )
    assert enabled(client.describe_event_configurations()) == {key: False for key in EVENT_TYPES}
