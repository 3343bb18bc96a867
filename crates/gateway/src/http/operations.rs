//! The operations of botocore's `iot` model, to name the ones Herald does not serve.

use axum::{extract::Request, response::IntoResponse};

use super::ApiError;

/// Answers a request no route serves: a 4xx naming the operation, never a 5xx
/// (clients retry those).
pub(crate) async fn not_implemented(request: Request) -> impl IntoResponse {
    ApiError::new(
        404,
        "ResourceNotFoundException",
        format!(
            "Herald does not serve {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}
