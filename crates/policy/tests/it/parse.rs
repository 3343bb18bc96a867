//! Document validation: what is accepted, and the message for each way a
//! document can be malformed.

use herald_policy::{MAX_DOCUMENT_CHARS, Policy, PolicyError, Version};

fn error(document: &str) -> String {
    match Policy::parse("p", document) {
        Ok(_) => panic!("accepted: {document}"),
        Err(PolicyError::Malformed(message)) => message,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

const OK_STATEMENT: &str = r#"{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}"#;

fn with_statement(statement: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statement}]}}"#)
}

#[test]
fn accepts_the_usual_shapes() {
    let single = format!(r#"{{"Version":"2012-10-17","Id":"x","Statement":{OK_STATEMENT}}}"#);
    let policy = Policy::parse("single", &single).unwrap();
    assert_eq!(policy.name(), "single");
    assert_eq!(policy.version(), Version::V2012_10_17);
    assert_eq!(policy.statement_count(), 1);

    let old = format!(r#"{{"Version":"2008-10-17","Statement":[{OK_STATEMENT},{OK_STATEMENT}]}}"#);
    let policy = Policy::parse("old", &old).unwrap();
    assert_eq!(policy.version(), Version::V2008_10_17);
    assert_eq!(policy.statement_count(), 2);

    let full = with_statement(
        r#"{"Sid":"s1","Effect":"Deny","NotAction":["iot:Publish","iot:Receive"],
            "NotResource":["arn:aws:iot:*:*:topic/a","arn:aws:iot:*:*:topic/b"],
            "Condition":{"StringLikeIfExists":{"iot:ClientId":["a*",1,true]},"Null":{"aws:SourceIp":false}}}"#,
    );
    Policy::parse("full", &full).unwrap();

    let spaced =
        format!("{{ \"Version\" : \"2012-10-17\",\n\t\"Statement\" : [ {OK_STATEMENT} ] }}\n");
    Policy::parse("spaced", &spaced).unwrap();
}

#[test]
fn names_each_problem() {
    let cases: Vec<(String, &str)> = vec![
        (
            "".into(),
            "invalid JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "{\"Version\":\n\"2012-10-17\",}".into(),
            "invalid JSON: trailing comma at line 2 column 14",
        ),
        (
            "[]".into(),
            "the document must be a JSON object, not an array",
        ),
        (
            format!(r#"{{"Statement":[{OK_STATEMENT}]}}"#),
            "Version is missing",
        ),
        (
            format!(r#"{{"Version":"2012-10-18","Statement":[{OK_STATEMENT}]}}"#),
            "unsupported Version \"2012-10-18\"",
        ),
        (
            format!(r#"{{"Version":2012,"Statement":[{OK_STATEMENT}]}}"#),
            "Version must be a string, not a number",
        ),
        (r#"{"Version":"2012-10-17"}"#.into(), "Statement is missing"),
        (
            r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            "Statement is empty",
        ),
        (
            r#"{"Version":"2012-10-17","Statement":"x"}"#.into(),
            "Statement must be an object or an array of objects, not a string",
        ),
        (
            format!(r#"{{"Version":"2012-10-17","Statement":[{OK_STATEMENT},1]}}"#),
            "Statement[1] must be an object, not a number",
        ),
        (
            format!(r#"{{"Version":"2012-10-17","Statement":[{OK_STATEMENT}],"Extra":1}}"#),
            "unknown top-level key \"Extra\"",
        ),
        (
            format!(
                r#"{{"Version":"2012-10-17","Version":"2012-10-17","Statement":[{OK_STATEMENT}]}}"#
            ),
            "duplicate key \"Version\"",
        ),
        (
            with_statement(r#"{"Action":"iot:Connect","Resource":"*"}"#),
            "Statement[0]: Effect is missing",
        ),
        (
            with_statement(r#"{"Effect":"allow","Action":"iot:Connect","Resource":"*"}"#),
            "Statement[0].Effect must be \"Allow\" or \"Deny\", not \"allow\"",
        ),
        (
            with_statement(
                r#"{"Effect":"Deny","Effect":"Allow","Action":"iot:Connect","Resource":"*"}"#,
            ),
            "duplicate key \"Effect\"",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Resource":"*"}"#),
            "Statement[0]: Action or NotAction is required",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","NotAction":"iot:Connect","Resource":"*"}"#,
            ),
            "Statement[0]: Action and NotAction are both present",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":"iot:*"}"#),
            "Statement[0]: Resource or NotResource is required",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","NotResource":"*"}"#,
            ),
            "Statement[0]: Resource and NotResource are both present",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":[],"Resource":"*"}"#),
            "Statement[0].Action is empty",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":["iot:Connect",7],"Resource":"*"}"#),
            "Statement[0].Action must be a string or an array of strings, not an array containing a number",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":"Connect","Resource":"*"}"#),
            "Statement[0].Action: \"Connect\" is not an action name",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":"iot:*","NotResource":[""]}"#),
            "Statement[0].NotResource contains an empty string",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":"iot:*","Resource":{"a":1}}"#),
            "Statement[0].Resource must be a string or an array of strings, not an object",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Principal":"*","Action":"iot:*","Resource":"*"}"#),
            "Statement[0]: unknown key \"Principal\"",
        ),
        (
            with_statement(r#"{"Sid":1,"Effect":"Allow","Action":"iot:*","Resource":"*"}"#),
            "Statement[0].Sid must be a string, not a number",
        ),
        (
            with_statement(r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":[]}"#),
            "Statement[0].Condition must be an object, not an array",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringEquals":"x"}}"#,
            ),
            "Statement[0].Condition.StringEquals must be an object of condition keys, not a string",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}}"#,
            ),
            "Statement[0].Condition: unsupported condition operator \"DateGreaterThan\"",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"ForAllValues:StringLike":{"iot:ClientId":"a"}}}"#,
            ),
            "unsupported condition operator \"ForAllValues:StringLike\"",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":[["a"]]}}}"#,
            ),
            "a condition value must be a string, number or boolean, not an array",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/99"}}}"#,
            ),
            "Statement[0].Condition.IpAddress[\"aws:SourceIp\"]: \"10.0.0.0/99\" is not an IP address or CIDR block",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"yes"}}}"#,
            ),
            "\"yes\" is not a boolean",
        ),
        (
            with_statement(
                r#"{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"NumericLessThan":{"k":"${iot:ClientId}"}}}"#,
            ),
            "\"${iot:ClientId}\" is not a number",
        ),
    ];
    let mut failures = Vec::new();
    for (document, expected) in &cases {
        let message = error(document);
        if !message.contains(expected) {
            failures.push(format!(
                "{document}\n  expected: {expected}\n  got:      {message}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_error_displays_as_malformed_policy() {
    let err = Policy::parse("p", "{}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed policy: Version is missing (expected \"2012-10-17\")"
    );
    assert_eq!(
        err.message(),
        "Version is missing (expected \"2012-10-17\")"
    );
}

/// AWS's limit: 2048 characters, not counting whitespace.
#[test]
fn size_limit_excludes_whitespace() {
    let document_of = |resource_len: usize| {
        let resource = "a".repeat(resource_len);
        with_statement(&format!(
            r#"{{"Effect":"Allow","Action":"iot:Connect","Resource":"{resource}"}}"#
        ))
    };
    let overhead = document_of(0).len();
    let at_limit = document_of(MAX_DOCUMENT_CHARS - overhead);
    assert_eq!(at_limit.len(), MAX_DOCUMENT_CHARS);
    Policy::parse("p", &at_limit).unwrap();

    let padded = at_limit.replace(",", " ,\n\t ");
    assert!(padded.len() > MAX_DOCUMENT_CHARS);
    Policy::parse("p", &padded).unwrap();

    let over = document_of(MAX_DOCUMENT_CHARS - overhead + 1);
    assert_eq!(
        error(&over),
        "the document is 2049 characters long without whitespace; the limit is 2048"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    assert!(error(&deep).contains("recursion limit exceeded"));
}
