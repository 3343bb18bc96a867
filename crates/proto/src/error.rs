//! The AWS IoT error types, and how they travel inside a gRPC status.
//!
//! A service answers a failed call with a status whose code matches the error
//! (NOT_FOUND for `ResourceNotFoundException`, ...) and whose metadata names the
//! AWS error type exactly, so that the HTTP layer can answer with the type AWS
//! clients expect without guessing from the gRPC code.

use tonic::{Code, Status, metadata::MetadataValue};

/// Metadata key naming the AWS error type of a failed call.
pub const ERROR_TYPE_KEY: &str = "x-herald-error-type";
/// Metadata key for `resourceId` of a `ResourceAlreadyExistsException`.
pub const RESOURCE_ID_KEY: &str = "x-herald-resource-id";
/// Metadata key for `resourceArn` of a `ResourceAlreadyExistsException`.
pub const RESOURCE_ARN_KEY: &str = "x-herald-resource-arn";

macro_rules! error_types {
    ($($variant:ident => $name:literal, $http:literal, $code:ident;)*) => {
        /// An AWS IoT control-plane error type (botocore `iot` 2015-05-28).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorType { $($variant,)* }

        impl ErrorType {
            pub const ALL: &[ErrorType] = &[$(ErrorType::$variant,)*];

            /// The name AWS clients match on, e.g. `ResourceNotFoundException`.
            pub fn name(self) -> &'static str {
                match self { $(ErrorType::$variant => $name,)* }
            }

            /// The HTTP status AWS answers this error with.
            pub fn http_status(self) -> u16 {
                match self { $(ErrorType::$variant => $http,)* }
            }

            /// The gRPC code Herald's services answer this error with.
            pub fn grpc_code(self) -> Code {
                match self { $(ErrorType::$variant => Code::$code,)* }
            }

            pub fn from_name(name: &str) -> Option<ErrorType> {
                match name { $($name => Some(ErrorType::$variant),)* _ => None }
            }
        }
    };
}

error_types! {
    InvalidRequest => "InvalidRequestException", 400, InvalidArgument;
    ResourceNotFound => "ResourceNotFoundException", 404, NotFound;
    ResourceAlreadyExists => "ResourceAlreadyExistsException", 409, AlreadyExists;
    VersionConflict => "VersionConflictException", 409, Aborted;
    LimitExceeded => "LimitExceededException", 410, ResourceExhausted;
    VersionsLimitExceeded => "VersionsLimitExceededException", 409, ResourceExhausted;
    DeleteConflict => "DeleteConflictException", 409, FailedPrecondition;
    Conflict => "ConflictException", 409, FailedPrecondition;
    InvalidStateTransition => "InvalidStateTransitionException", 409, FailedPrecondition;
    TerminalState => "TerminalStateException", 410, FailedPrecondition;
    CertificateState => "CertificateStateException", 406, FailedPrecondition;
    CertificateValidation => "CertificateValidationException", 400, InvalidArgument;
    RegistrationCodeValidation => "RegistrationCodeValidationException", 400, InvalidArgument;
    InvalidQuery => "InvalidQueryException", 400, InvalidArgument;
    InvalidAggregation => "InvalidAggregationException", 400, InvalidArgument;
    IndexNotReady => "IndexNotReadyException", 400, Unavailable;
    CertificateConflict => "CertificateConflictException", 409, AlreadyExists;
    MalformedPolicy => "MalformedPolicyException", 400, InvalidArgument;
    Throttling => "ThrottlingException", 400, ResourceExhausted;
    Unauthorized => "UnauthorizedException", 401, PermissionDenied;
    InternalFailure => "InternalFailureException", 500, Internal;
    ServiceUnavailable => "ServiceUnavailableException", 503, Unavailable;
}

/// An AWS error as carried between Herald's services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub error_type: ErrorType,
    pub message: String,
    pub resource_id: Option<String>,
    pub resource_arn: Option<String>,
}

impl AwsError {
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> AwsError {
        AwsError {
            error_type,
            message: message.into(),
            resource_id: None,
            resource_arn: None,
        }
    }

    /// Reads the AWS error out of a status. A status without Herald's metadata
    /// (a transport failure, say) maps to the closest AWS type by its code.
    pub fn from_status(status: &Status) -> AwsError {
        let meta = status.metadata();
        let text = |key: &str| {
            meta.get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let error_type = text(ERROR_TYPE_KEY)
            .and_then(|name| ErrorType::from_name(&name))
            .unwrap_or(match status.code() {
                Code::InvalidArgument | Code::OutOfRange => ErrorType::InvalidRequest,
                Code::NotFound => ErrorType::ResourceNotFound,
                Code::AlreadyExists => ErrorType::ResourceAlreadyExists,
                Code::Aborted => ErrorType::VersionConflict,
                Code::ResourceExhausted => ErrorType::Throttling,
                Code::PermissionDenied | Code::Unauthenticated => ErrorType::Unauthorized,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                    ErrorType::ServiceUnavailable
                }
                _ => ErrorType::InternalFailure,
            });
        AwsError {
            error_type,
            message: status.message().to_owned(),
            resource_id: text(RESOURCE_ID_KEY),
            resource_arn: text(RESOURCE_ARN_KEY),
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type.name(), self.message)
    }
}

impl std::error::Error for AwsError {}

impl From<AwsError> for Status {
    fn from(err: AwsError) -> Status {
        let mut status = Status::new(err.error_type.grpc_code(), err.message);
        let meta = status.metadata_mut();
        meta.insert(
            ERROR_TYPE_KEY,
            MetadataValue::from_static(err.error_type.name()),
        );
        for (key, value) in [
            (RESOURCE_ID_KEY, err.resource_id),
            (RESOURCE_ARN_KEY, err.resource_arn),
        ] {
            if let Some(value) = value.and_then(|v| MetadataValue::try_from(v).ok()) {
                meta.insert(key, value);
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_type_survives_a_status_round_trip() {
        for &error_type in ErrorType::ALL {
            let mut err = AwsError::new(error_type, "it failed");
            err.resource_id = Some("id-1".into());
            err.resource_arn = Some("arn:aws:iot:us-east-1:123456789012:thing/a".into());
            let status = Status::from(err.clone());
            assert_eq!(status.code(), error_type.grpc_code());
            assert_eq!(AwsError::from_status(&status), err);
            assert_eq!(ErrorType::from_name(error_type.name()), Some(error_type));
        }
    }

    #[test]
    fn a_bare_status_maps_by_code() {
        let err = AwsError::from_status(&Status::unavailable("connection refused"));
        assert_eq!(err.error_type, ErrorType::ServiceUnavailable);
        assert_eq!(err.message, "connection refused");
    }
}
