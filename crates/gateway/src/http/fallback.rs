//! The answer to a request no route serves: a 4xx that names the operation
//! its method and path select in botocore's `iot` model (the table in
//! `operations`), or says that none does.

use axum::{extract::Request, response::IntoResponse};

use super::operations::OPERATIONS;
use super::{ApiError, ErrorKind};

/// Answers a request no handler serves: a 400 naming the operation, never a
/// 5xx (clients retry those). Both the router's fallback and every served
/// path's method fallback (a method the path does not serve).
pub(crate) async fn not_implemented(request: Request) -> impl IntoResponse {
    let method = request.method().as_str();
    let path = request.uri().path();
    match lookup(method, path) {
        Some((name, template)) => ApiError::invalid(format!(
            "Herald does not implement the AWS IoT operation {name} ({method} {template})"
        )),
        None => {
            let others: Vec<String> = OPERATIONS
                .iter()
                .filter(|(_, template, _)| matches(template, path).is_some())
                .map(|(method, _, name)| format!("{method} {name}"))
                .collect();
            let message = if others.is_empty() {
                format!("No AWS IoT operation is served at {method} {path}")
            } else {
                format!(
                    "No AWS IoT operation is served at {method} {path} (this path serves {})",
                    others.join(", ")
                )
            };
            ApiError::new(ErrorKind::UnknownOperation, message)
        }
    }
}

/// The model's operation for `method` and the raw (still percent-encoded)
/// `path`, as (operation name, requestUri template). Where several templates
/// match, the one with the most literal segments wins (`/thing-groups/addThingToThingGroup`
/// over `/thing-groups/{thingGroupName}`).
pub(crate) fn lookup(method: &str, path: &str) -> Option<(&'static str, &'static str)> {
    OPERATIONS
        .iter()
        .filter(|(m, _, _)| m.eq_ignore_ascii_case(method))
        .filter_map(|&(_, template, name)| {
            matches(template, path).map(|literals| (literals, name, template))
        })
        .max_by_key(|&(literals, _, _)| literals)
        .map(|(_, name, template)| (name, template))
}

/// Whether `path` fits `template`: a literal segment must be equal, a label
/// `{name}` takes one non-empty segment, a greedy label `{name+}` one or more.
/// Returns the number of literal segments matched.
fn matches(template: &str, path: &str) -> Option<usize> {
    let template: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match_segments(&template, &path)
}

fn match_segments(template: &[&str], path: &[&str]) -> Option<usize> {
    let Some((first, rest)) = template.split_first() else {
        return path.is_empty().then_some(0);
    };
    if first.starts_with('{') && first.ends_with("+}") {
        // A greedy label: at least one segment, and not an empty path.
        return (1..=path.len())
            .filter(|&taken| path[..taken].iter().any(|segment| !segment.is_empty()))
            .find_map(|taken| match_segments(rest, &path[taken..]));
    }
    let (segment, path_rest) = path.split_first()?;
    if first.starts_with('{') && first.ends_with('}') {
        if segment.is_empty() {
            return None;
        }
        match_segments(rest, path_rest)
    } else if first == segment {
        match_segments(rest, path_rest).map(|literals| literals + 1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_operations() {
        assert_eq!(lookup("GET", "/jobs"), Some(("ListJobs", "/jobs")));
        assert_eq!(
            lookup("GET", "/jobs/my-job"),
            Some(("DescribeJob", "/jobs/{jobId}"))
        );
        assert_eq!(
            lookup("POST", "/things/x"),
            Some(("CreateThing", "/things/{thingName}"))
        );
        assert_eq!(
            lookup("GET", "/things/x"),
            Some(("DescribeThing", "/things/{thingName}"))
        );
        assert_eq!(
            lookup("PUT", "/thing-groups/addThingToThingGroup"),
            Some(("AddThingToThingGroup", "/thing-groups/addThingToThingGroup"))
        );
        assert_eq!(
            lookup("GET", "/thing-groups/addThingToThingGroup"),
            Some(("DescribeThingGroup", "/thing-groups/{thingGroupName}"))
        );
        assert_eq!(
            lookup("GET", "/principals/things"),
            Some(("ListPrincipalThings", "/principals/things"))
        );
        assert_eq!(
            lookup("DELETE", "/things/x/principals"),
            Some(("DetachThingPrincipal", "/things/{thingName}/principals"))
        );
        assert_eq!(
            lookup("PUT", "/things/x/principals"),
            Some(("AttachThingPrincipal", "/things/{thingName}/principals"))
        );
    }

    #[test]
    fn greedy_labels() {
        assert_eq!(
            lookup(
                "GET",
                "/destinations/arn:aws:iot:us-east-1:1:ruledestination/http/abc"
            ),
            Some(("GetTopicRuleDestination", "/destinations/{arn+}"))
        );
        assert_eq!(
            lookup("GET", "/confirmdestination/a/b/c"),
            Some((
                "ConfirmTopicRuleDestination",
                "/confirmdestination/{confirmationToken+}"
            ))
        );
        assert_eq!(lookup("GET", "/destinations/"), None);
        assert_eq!(
            lookup("GET", "/destinations"),
            Some(("ListTopicRuleDestinations", "/destinations"))
        );
    }

    #[test]
    fn no_operation() {
        assert_eq!(lookup("GET", "/xyz"), None);
        assert_eq!(lookup("GET", "/things/"), None);
        assert_eq!(lookup("GET", "/things/x/y/z"), None);
        assert_eq!(lookup("PUT", "/things"), None);
        assert_eq!(
            lookup("POST", "/things"),
            Some(("RegisterThing", "/things"))
        );
        assert_eq!(lookup("GET", "/"), None);
    }

    #[test]
    fn table_is_whole_and_unambiguous() {
        assert!(OPERATIONS.len() > 250);
        for (method, template, name) in OPERATIONS {
            assert!(
                template.starts_with('/') && !template.contains('?'),
                "{name}"
            );
            assert_eq!(lookup(method, template), Some((*name, *template)), "{name}");
        }
    }
}
