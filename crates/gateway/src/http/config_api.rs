//! The config service's operations: event configurations, policies,
//! certificates, attachments, authorization.

use axum::Router;

use super::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
}
