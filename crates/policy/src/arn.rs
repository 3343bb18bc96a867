//! Resource ARNs for the MQTT actions (`arn:aws:iot:<region>:<account>:...`).
//!
//! The free functions allocate a new `String` each; on a hot path use an
//! [`ArnBuf`], which keeps the prefix and reuses its buffer.

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

/// A reusable ARN buffer for one region and account: after the first few
/// calls it stops allocating.
#[derive(Debug, Clone)]
pub struct ArnBuf {
    buf: String,
    prefix_len: usize,
}

impl ArnBuf {
    pub fn new(region: &str, account: &str) -> ArnBuf {
        let buf = prefix(region, account);
        ArnBuf {
            prefix_len: buf.len(),
            buf,
        }
    }

    /// The ARN of `client/<clientId>`, valid until the next call.
    pub fn client(&mut self, client_id: &str) -> &str {
        self.with("client/", client_id)
    }

    /// The ARN of `topic/<topic>`.
    pub fn topic(&mut self, topic: &str) -> &str {
        self.with("topic/", topic)
    }

    /// The ARN of `topicfilter/<filter>`.
    pub fn topic_filter(&mut self, filter: &str) -> &str {
        self.with("topicfilter/", filter)
    }

    fn with(&mut self, kind: &str, name: &str) -> &str {
        self.buf.truncate(self.prefix_len);
        self.buf.push_str(kind);
        self.buf.push_str(name);
        &self.buf
    }
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
        let mut buf = ArnBuf::new("us-east-1", "123456789012");
        assert_eq!(
            buf.topic("$aws/events/x"),
            "arn:aws:iot:us-east-1:123456789012:topic/$aws/events/x"
        );
        assert_eq!(buf.client("c"), client("us-east-1", "123456789012", "c"));
        assert_eq!(buf.topic("t"), topic("us-east-1", "123456789012", "t"));
        assert_eq!(thing("r", "a", "t"), "arn:aws:iot:r:a:thing/t");
    }
}
