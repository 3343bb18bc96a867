//! Resource ARNs for the MQTT actions (`arn:aws:iot:<region>:<account>:...`).

/// `arn:aws:iot:<region>:<account>:client/<clientId>`, for `iot:Connect`.
pub fn client(region: &str, account: &str, client_id: &str) -> String {
    format!("{}client/{client_id}", prefix(region, account))
}

/// `...:topic/<topic>`, for `iot:Publish`, `iot:Receive`, `iot:RetainPublish`.
pub fn topic(region: &str, account: &str, topic: &str) -> String {
    format!("{}topic/{topic}", prefix(region, account))
}

/// `...:topicfilter/<filter>`, for `iot:Subscribe`.
pub fn topic_filter(region: &str, account: &str, filter: &str) -> String {
    format!("{}topicfilter/{filter}", prefix(region, account))
}

/// `...:thing/<thingName>`, for the shadow and jobs actions.
pub fn thing(region: &str, account: &str, thing_name: &str) -> String {
    format!("{}thing/{thing_name}", prefix(region, account))
}

fn prefix(region: &str, account: &str) -> String {
    format!("arn:aws:iot:{region}:{account}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_arns() {
        assert_eq!(
            client("us-east-1", "123456789012", "c1"),
            "arn:aws:iot:us-east-1:123456789012:client/c1"
        );
        assert_eq!(
            topic_filter("eu-west-1", "1", "a/#"),
            "arn:aws:iot:eu-west-1:1:topicfilter/a/#"
        );
        assert_eq!(
            topic("us-east-1", "123456789012", "$aws/events/x"),
            "arn:aws:iot:us-east-1:123456789012:topic/$aws/events/x"
        );
        assert_eq!(thing("r", "a", "t"), "arn:aws:iot:r:a:thing/t");
    }
}
