//! The tonic adapter of the `Shadows` service. Wire types stop here.

use herald_proto::registry::v1::{self as pb, shadows_server};
use herald_store::Page;
use tonic::{Request, Status};

use super::{Reply, reply, token};
use crate::{domain, partition::Partitions, service::ShadowAnswer};

/// The `Shadows` service: each call runs on the partition it names.
pub(crate) struct GrpcShadows {
    partitions: Partitions,
}

impl GrpcShadows {
    pub(crate) fn new(partitions: Partitions) -> GrpcShadows {
        GrpcShadows { partitions }
    }
}

fn wire(answer: ShadowAnswer) -> pb::ShadowReply {
    let bytes =
        |v: Option<serde_json::Value>| v.map(|v| v.to_string().into_bytes()).unwrap_or_default();
    pb::ShadowReply {
        code: u32::from(answer.code),
        body: answer.body.to_string().into_bytes(),
        delta: bytes(answer.delta),
        documents: bytes(answer.documents),
    }
}

#[tonic::async_trait]
impl shadows_server::Shadows for GrpcShadows {
    async fn update_shadow(&self, request: Request<pb::ShadowRequest>) -> Reply<pb::ShadowReply> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .update_shadow(r.thing_name, r.shadow_name, r.payload)
                .await
                .map(wire),
        )
    }

    async fn get_shadow(&self, request: Request<pb::ShadowRequest>) -> Reply<pb::ShadowReply> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .get_shadow(&r.thing_name, &r.shadow_name, &r.payload)
                .map(wire),
        )
    }

    async fn delete_shadow(&self, request: Request<pb::ShadowRequest>) -> Reply<pb::ShadowReply> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        reply(
            registry
                .delete_shadow(r.thing_name, r.shadow_name, r.payload)
                .await
                .map(wire),
        )
    }

    async fn list_named_shadows(
        &self,
        request: Request<pb::ListNamedShadowsRequest>,
    ) -> Reply<pb::ListNamedShadowsResponse> {
        let registry = self.partitions.of(&request)?;
        let r = request.into_inner();
        let page = Page::new(&r.next_token, r.page_size)
            .map_err(|e| Status::from(domain::store_error(e)))?;
        reply(
            registry
                .list_named_shadows(&r.thing_name, &page)
                .map(|paged| pb::ListNamedShadowsResponse {
                    results: paged.items,
                    next_token: token(paged.next_token),
                    timestamp: herald_store::now_ms() / 1000,
                }),
        )
    }
}
