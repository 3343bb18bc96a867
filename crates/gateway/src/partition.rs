//! The partition a call to the registry or the config service acts in: an
//! (account, region) pair (AWS IoT: every resource lives in one).
//!
//! - Over HTTP, the account of the request's access key and the region it
//!   is signed for: the SigV4 middleware runs each verified request's
//!   handler inside [`scope`], and every gRPC call the handler makes names
//!   that partition through the clients' [`Tagger`], so handlers need not
//!   pass it along.
//! - Over MQTT, the partition the device's certificate is registered in:
//!   each partition's sessions, event pump and config cache use clients
//!   whose [`Tagger`] names it ([`Tagger::fixed`]).
//!
//! The gateway's own account and region (its settings) are the services'
//! default partition and are sent without a name.

use std::future::Future;

use herald_runtime::partition::Partition;
use tonic::transport::Channel;
use tonic::{Request, Status, service::Interceptor, service::interceptor::InterceptedService};

tokio::task_local! {
    static PARTITION: Partition;
}

/// Runs `future` acting in `partition` (`None`: the default partition).
pub(crate) async fn scope<F: Future>(partition: Option<Partition>, future: F) -> F::Output {
    match partition {
        Some(partition) => PARTITION.scope(partition, future).await,
        None => future.await,
    }
}

/// Names a partition on every gRPC call: its fixed one, else the current
/// request's ([`scope`]), else none (the default partition).
#[derive(Debug, Clone, Default)]
pub struct Tagger {
    fixed: Option<Partition>,
}

impl Tagger {
    /// A tagger naming `partition` on every call (`None`: the default
    /// partition, unless the call runs inside [`scope`]).
    pub fn fixed(partition: Option<Partition>) -> Tagger {
        Tagger { fixed: partition }
    }
}

impl Interceptor for Tagger {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match &self.fixed {
            Some(partition) => partition.tag(&mut request),
            None => {
                let _ = PARTITION.try_with(|partition| partition.tag(&mut request));
            }
        }
        Ok(request)
    }
}

/// A client channel that names its partition on every call.
pub type Tagged = InterceptedService<Channel, Tagger>;

/// `channel`, naming `partition` on every call (`None`: the default, or
/// the current request's).
pub fn tagged(channel: Channel, partition: Option<Partition>) -> Tagged {
    InterceptedService::new(channel, Tagger::fixed(partition))
}

/// The partition the current HTTP request acts in ([`scope`]; `None`: the
/// default partition).
pub(crate) fn current() -> Option<Partition> {
    PARTITION.try_with(Clone::clone).ok()
}

/// A boxed future of a trait object's method.
pub(crate) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the HTTP side (the `iot-data` API) asks of a partition's MQTT side,
/// which the gateway wires in once both run.
pub(crate) trait Broker: Send + Sync {
    /// Publishes `payload` on `topic` at `qos` to the partition's
    /// subscribers (and the other replicas'): a `$aws` topic on its bus,
    /// any other through its router, kept as the topic's retained message
    /// with `retain`, with the MQTT 5 `properties` its MQTT 5 subscribers
    /// get.
    fn publish(
        &self,
        partition: Option<Partition>,
        topic: String,
        payload: tokio_util::bytes::Bytes,
        qos: u8,
        retain: bool,
        properties: Option<rumqttd::protocol::PublishProperties>,
    ) -> BoxFuture<'_, Result<(), String>>;

    /// The partition's retained messages, in topic order, but those whose
    /// MQTT 5 message expiry has passed.
    fn retained(
        &self,
        partition: Option<Partition>,
    ) -> BoxFuture<'_, Result<Vec<RetainedMessage>, String>>;
}

/// A retained message as the `iot-data` API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetainedMessage {
    pub(crate) topic: String,
    pub(crate) payload: tokio_util::bytes::Bytes,
    /// The QoS it was published at.
    pub(crate) qos: u8,
    /// When it was retained, epoch milliseconds.
    pub(crate) modified_ms: i64,
    /// The MQTT 5 user properties it was published with.
    pub(crate) user_properties: Vec<(String, String)>,
}
