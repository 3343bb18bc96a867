//! Errors as AWS clients expect them: the status of the error type, the type
//! in `x-amzn-ErrorType`, and a JSON body `{"message", "__type"}` (plus
//! `resourceId`/`resourceArn` where the model has them). botocore reads the
//! header, so boto3 raises `client.exceptions.<Type>`.
//!
//! [`ErrorKind`] is the one table of what the gateway answers: the services'
//! error types (`herald_proto::error::ErrorType`, whose statuses are the
//! model's), and the ones only the HTTP edge raises (an unparsable request, a
//! refused signature, an operation Herald does not serve).

use axum::{
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use herald_proto::error::{AwsError, ErrorType};
use serde::Serialize;

macro_rules! edge_errors {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $status:literal;)*) => {
        /// Every error type the gateway answers with, and its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum ErrorKind {
            /// One of the services' error types, with the model's status.
            Aws(ErrorType),
            $($(#[$doc])* $variant,)*
        }

        impl ErrorKind {
            /// The AWS error type, for `x-amzn-ErrorType` and `__type`.
            pub(crate) fn code(self) -> &'static str {
                match self {
                    ErrorKind::Aws(error_type) => error_type.name(),
                    $(ErrorKind::$variant => $name,)*
                }
            }

            /// The HTTP status the error type is answered with.
            pub(crate) fn status(self) -> StatusCode {
                let status = match self {
                    ErrorKind::Aws(error_type) => error_type.http_status(),
                    $(ErrorKind::$variant => $status,)*
                };
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    };
}

edge_errors! {
    /// The request is not well-formed HTTP/1.1, or its method is not an uppercase token.
    BadRequest => "BadRequestException", 400;
    /// No AWS IoT operation is served at the request's method and path.
    UnknownOperation => "UnknownOperationException", 400;
    /// The request took longer than `http.request_timeout_secs`.
    RequestTimeout => "RequestTimeoutException", 408;
    /// The body is larger than the gateway reads.
    RequestEntityTooLarge => "RequestEntityTooLargeException", 413;
    /// The request target is longer than the HTTP server reads.
    UriTooLong => "UriTooLongException", 414;
    /// The request head is larger than the HTTP server reads.
    RequestHeaderFieldsTooLarge => "RequestHeaderFieldsTooLargeException", 431;
    /// No SigV4 signature at all.
    MissingAuthenticationToken => "MissingAuthenticationTokenException", 403;
    /// A signature whose parts are missing or malformed.
    IncompleteSignature => "IncompleteSignatureException", 400;
    /// A signature by an access key Herald does not know.
    UnrecognizedClient => "UnrecognizedClientException", 403;
    /// A signature that does not match, or is out of scope or time.
    InvalidSignature => "InvalidSignatureException", 403;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) resource_id: Option<String>,
    pub(crate) resource_arn: Option<String>,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            status: kind.status(),
            code: kind.code(),
            message: message.into(),
            resource_id: None,
            resource_arn: None,
        }
    }

    /// `InvalidRequestException`: the request does not fit the operation.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Aws(ErrorType::InvalidRequest), message)
    }

    /// The JSON body of the answer.
    pub(crate) fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error_type: self.code,
            message: &self.message,
            resource_arn: self.resource_arn.as_deref(),
            resource_id: self.resource_id.as_deref(),
        }
    }
}

/// An error's JSON body, its members in the order the answer has always had.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(rename = "__type")]
    error_type: &'a str,
    message: &'a str,
    #[serde(rename = "resourceArn", skip_serializing_if = "Option::is_none")]
    resource_arn: Option<&'a str>,
    #[serde(rename = "resourceId", skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
}

impl From<AwsError> for ApiError {
    fn from(err: AwsError) -> ApiError {
        ApiError {
            resource_id: err.resource_id,
            resource_arn: err.resource_arn,
            ..ApiError::new(ErrorKind::Aws(err.error_type), err.message)
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> ApiError {
        ApiError::from(AwsError::from_status(&status))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Ok(value) = HeaderValue::from_str(self.code) {
            response.headers_mut().insert("x-amzn-ErrorType", value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_type_message_and_the_resource_when_known() {
        let plain = ApiError::invalid("no");
        assert_eq!(
            serde_json::to_string(&plain.body()).unwrap(),
            r#"{"__type":"InvalidRequestException","message":"no"}"#
        );
        let mut exists = AwsError::new(ErrorType::ResourceAlreadyExists, "taken");
        exists.resource_id = Some("id-1".into());
        exists.resource_arn = Some("arn:x".into());
        let exists = ApiError::from(exists);
        assert_eq!(exists.status, StatusCode::CONFLICT);
        assert_eq!(
            serde_json::to_string(&exists.body()).unwrap(),
            r#"{"__type":"ResourceAlreadyExistsException","message":"taken","resourceArn":"arn:x","resourceId":"id-1"}"#
        );
    }

    #[test]
    fn the_table_gives_each_edge_error_its_status() {
        for (kind, status, code) in [
            (ErrorKind::BadRequest, 400, "BadRequestException"),
            (
                ErrorKind::UnknownOperation,
                400,
                "UnknownOperationException",
            ),
            (ErrorKind::RequestTimeout, 408, "RequestTimeoutException"),
            (
                ErrorKind::RequestEntityTooLarge,
                413,
                "RequestEntityTooLargeException",
            ),
            (ErrorKind::UriTooLong, 414, "UriTooLongException"),
            (
                ErrorKind::RequestHeaderFieldsTooLarge,
                431,
                "RequestHeaderFieldsTooLargeException",
            ),
            (
                ErrorKind::MissingAuthenticationToken,
                403,
                "MissingAuthenticationTokenException",
            ),
            (
                ErrorKind::IncompleteSignature,
                400,
                "IncompleteSignatureException",
            ),
            (
                ErrorKind::UnrecognizedClient,
                403,
                "UnrecognizedClientException",
            ),
            (
                ErrorKind::InvalidSignature,
                403,
                "InvalidSignatureException",
            ),
            (
                ErrorKind::Aws(ErrorType::InternalFailure),
                500,
                "InternalFailureException",
            ),
        ] {
            assert_eq!((kind.status().as_u16(), kind.code()), (status, code));
        }
    }
}
