//! The AWS IoT control-plane API over HTTP (botocore's `iot` 2015-05-28 model,
//! protocol rest-json): every request is SigV4-verified, then translated into
//! a gRPC call to the registry or the config service.
//!
//! - `error`: AWS-shaped error responses, and the table of every error type;
//! - `extract`: an operation's input from the path, query, headers and body;
//! - `output`: what the answers' JSON bodies share;
//! - `sigv4`: request authentication;
//! - `registry_api`, `config_api`, `jobs_api`: the operations, one handler
//!   each, and their outputs as typed structs; `jobs_data_api`: the device
//!   side of jobs (`iot-jobs-data`), on the same listener;
//! - `fallback`: the 4xx for a request no handler serves, naming the
//!   operation Herald does not implement;
//! - `operations`: the model's operation table, generated from botocore by
//!   `cargo xtask gen-operations`.

mod error;
mod extract;
mod output;

mod config_api;
mod data_api;
mod fallback;
mod jobs_api;
mod jobs_data_api;
mod operations;
mod registry_api;
mod serve;
pub(crate) mod sigv4;
mod time;

pub(crate) use serve::{ServeOptions, serve};

use std::sync::Arc;

use anyhow::Context as _;
use axum::{
    Router,
    extract::State,
    middleware,
    response::{IntoResponse, Response},
    routing::post,
};
use herald_proto::{
    config::v1::{self as config_pb, config_client::ConfigClient},
    error::ErrorType,
    registry::v1::{
        self as registry_pb, jobs_client::JobsClient, registry_client::RegistryClient,
        shadows_client::ShadowsClient,
    },
};
use herald_runtime::{
    internal_tls::{self, InternalTls},
    partition::Partition,
};
use tonic::transport::Channel;

pub(crate) use self::error::{ApiError, ErrorKind};
use self::output::{ApiResult, empty};
use crate::partition::{Tagged, tagged};
use crate::settings::{AccessKey, EndpointSettings, Settings};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) registry: RegistryClient<Tagged>,
    /// The registry's `Jobs` service.
    pub(crate) jobs: JobsClient<Tagged>,
    /// The registry's `Shadows` service.
    pub(crate) shadows: ShadowsClient<Tagged>,
    /// The MQTT side, for the `iot-data` API's Publish and retained
    /// messages (set once it runs).
    pub(crate) broker: Arc<std::sync::OnceLock<Arc<dyn crate::partition::Broker>>>,
    pub(crate) config: ConfigClient<Tagged>,
    /// The regions requests may be signed for.
    pub(crate) regions: Arc<[String]>,
    /// The gateway's own partition: the services' default.
    pub(crate) default_partition: Option<Partition>,
    pub(crate) access_keys: Arc<[AccessKey]>,
    /// What DescribeEndpoint answers.
    pub(crate) endpoints: Arc<EndpointSettings>,
    pub(crate) test_mode: bool,
    /// How long one request may take, its body included.
    pub(crate) request_timeout: std::time::Duration,
}

/// A lazily connecting channel to another service, over mutual TLS when
/// internal TLS is on.
fn channel(url: &str, tls: Option<&InternalTls>) -> anyhow::Result<Channel> {
    Ok(internal_tls::endpoint(url, tls)?.connect_lazy())
}

/// The channels to the same services, for the MQTT side (which names each
/// call's partition with clients of its own, [`crate::partition::tagged`]).
pub(crate) struct Upstream {
    pub(crate) registry: Channel,
    pub(crate) config: Channel,
}

impl AppState {
    pub(crate) fn connect(settings: &Settings) -> anyhow::Result<(AppState, Upstream)> {
        let tls =
            InternalTls::load(&settings.internal_tls).context("load the internal TLS files")?;
        let registry =
            channel(&settings.registry_url, tls.as_ref()).context("read registry_url")?;
        let config = channel(&settings.config_url, tls.as_ref()).context("read config_url")?;
        let mut regions = settings.served_regions.clone();
        if !regions.contains(&settings.region) {
            regions.push(settings.region.clone());
        }
        let upstream = Upstream {
            registry: registry.clone(),
            config: config.clone(),
        };
        let state = AppState {
            registry: RegistryClient::new(tagged(registry.clone(), None)),
            jobs: JobsClient::new(tagged(registry.clone(), None)),
            shadows: ShadowsClient::new(tagged(registry, None)),
            broker: Arc::default(),
            config: ConfigClient::new(tagged(config, None)),
            regions: regions.into(),
            default_partition: Partition::new(&settings.account_id, &settings.region),
            access_keys: settings.access_keys.clone().into(),
            endpoints: Arc::new(settings.endpoints.clone()),
            test_mode: settings.test_mode,
            request_timeout: std::time::Duration::from_secs(settings.http.request_timeout_secs),
        };
        Ok((state, upstream))
    }
}

pub(crate) fn router(state: AppState) -> Router {
    let mut control = Router::new()
        .merge(registry_api::routes())
        .merge(config_api::routes())
        .merge(jobs_api::routes());
    if state.test_mode {
        control = control.route("/_herald/reset", post(reset));
    }
    let control = control
        .fallback(fallback::not_implemented)
        .with_state(state.clone());
    let jobs_data = jobs_data_api::routes()
        .fallback(fallback::not_implemented)
        .with_state(state.clone());
    let data = data_api::routes()
        .fallback(fallback::not_implemented)
        .with_state(state.clone());
    // The two APIs share paths (`GET /things/{thingName}/jobs` is
    // ListJobExecutionsForThing in one, GetPendingJobExecutions in the
    // other): the signature's service chooses, once it is verified.
    let dispatch = tower::service_fn(move |request: axum::extract::Request| {
        let api = request.extensions().get::<sigv4::Api>().copied();
        let routes = match api {
            Some(sigv4::Api::JobsData) => jobs_data.clone(),
            Some(sigv4::Api::Data) => data.clone(),
            _ => control.clone(),
        };
        tower::ServiceExt::oneshot(routes, request)
    });
    Router::new()
        .fallback_service(dispatch)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            sigv4::authenticate,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Around authentication and every handler, for every request: refuses a method that is not an
/// uppercase token (`get /things` is malformed, not an unknown operation),
/// bounds the request's time, and answers a handler's panic with a 500
/// `InternalFailureException` instead of dropping the connection. Catching
/// panics is a last line of defence: no input should cause one.
async fn guard(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let method = request.method().as_str();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return ApiError::new(
            ErrorKind::BadRequest,
            "The request method must be an uppercase HTTP method.",
        )
        .into_response();
    }
    let handled = tokio::spawn(tokio::time::timeout(
        state.request_timeout,
        next.run(request),
    ));
    match handled.await {
        Ok(Ok(response)) => response,
        Ok(Err(_elapsed)) => ApiError::new(
            ErrorKind::RequestTimeout,
            "The request was not completed in time.",
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a request handler panicked");
            ApiError::new(
                ErrorKind::Aws(ErrorType::InternalFailure),
                "An internal error occurred.",
            )
            .into_response()
        }
    }
}

/// Gives every response, errors included, the `x-amzn-RequestId` AWS sends
/// (boto3 shows it as `ResponseMetadata.RequestId`), and logs the request under it.
async fn request_id(request: axum::extract::Request, next: middleware::Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    let span = tracing::debug_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path()
    );
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// Test mode: wipes the registry's and the config service's state.
async fn reset(State(state): State<AppState>) -> ApiResult {
    state
        .registry
        .clone()
        .reset(registry_pb::ResetRequest {})
        .await?;
    state
        .config
        .clone()
        .reset(config_pb::ResetRequest {})
        .await?;
    empty()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::limits::ConnectionLimit;

    async fn boom() -> &'static str {
        panic!("a handler's bug")
    }

    /// The last line: a handler that panics gets a 500 in AWS's shape, the
    /// connection is answered rather than dropped, and the server goes on.
    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_internal_failure_and_the_server_goes_on() {
        let settings = Settings::for_test("http://127.0.0.1:9", "http://127.0.0.1:9");
        let (state, _) = AppState::connect(&settings).unwrap();
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(middleware::from_fn_with_state(state.clone(), guard))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let options = ServeOptions {
            limit: ConnectionLimit::new("http", 8),
            header_read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
        };
        tokio::spawn(serve(listener, app, options, shutdown.clone()));
        let exchange = |path: &'static str| async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("answered in time")
                .unwrap();
            String::from_utf8_lossy(&answer).to_lowercase()
        };
        let answer = exchange("/boom").await;
        assert!(answer.starts_with("http/1.1 500"), "{answer}");
        assert!(
            answer.contains("x-amzn-errortype: internalfailureexception"),
            "{answer}"
        );
        let answer = exchange("/fine").await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        shutdown.cancel();
    }
}
