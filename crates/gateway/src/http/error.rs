//! Errors as AWS clients expect them: the status of the error type, the type
//! in `x-amzn-ErrorType`, and a JSON body `{"message", "__type"}` (plus
//! `resourceId`/`resourceArn` where the model has them). botocore reads the
//! header, so boto3 raises `client.exceptions.<Type>`.

use axum::{
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use herald_proto::error::{AwsError, ErrorType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) resource_id: Option<String>,
    pub(crate) resource_arn: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code: code.to_owned(),
            message: message.into(),
            resource_id: None,
            resource_arn: None,
        }
    }

    /// `InvalidRequestException`: the request does not fit the operation.
    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::from(AwsError::new(ErrorType::InvalidRequest, message))
    }
}

impl From<AwsError> for ApiError {
    fn from(err: AwsError) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(err.error_type.http_status())
                .unwrap_or(StatusCode::BAD_REQUEST),
            code: err.error_type.name().to_owned(),
            message: err.message,
            resource_id: err.resource_id,
            resource_arn: err.resource_arn,
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
        let mut body = serde_json::json!({ "message": self.message, "__type": self.code });
        if let Some(id) = self.resource_id {
            body["resourceId"] = id.into();
        }
        if let Some(arn) = self.resource_arn {
            body["resourceArn"] = arn.into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&self.code) {
            response.headers_mut().insert("x-amzn-ErrorType", value);
        }
        response
    }
}
