//! The partition an HTTP request acts in: the account of its access key and
//! the region it is signed for (AWS IoT: every resource lives in an
//! (account, region)). The SigV4 middleware runs each verified request's
//! handler inside [`scope`]; every gRPC call the handler makes then names
//! that partition through [`Tagger`], the interceptor of the gateway's
//! clients, so handlers need not pass it along. The gateway's own
//! account and region (its settings) are the services' default partition
//! and are sent without a name, as the MQTT side's calls are.

use std::future::Future;

use herald_runtime::partition::Partition;
use tonic::{Request, Status, service::Interceptor};

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

/// Names the current request's partition on every gRPC call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tagger;

impl Interceptor for Tagger {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let _ = PARTITION.try_with(|partition| partition.tag(&mut request));
        Ok(request)
    }
}
