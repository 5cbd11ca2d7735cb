//! The gRPC services: ADS (SotW and Delta on one stream for every type) and the
//! per-type CDS, EDS, LDS, RDS and ECDS for Envoys configured without ADS (each a SotW
//! and a Delta stream restricted to its type, and the unary `Fetch*` that answers with
//! the current resources). All run the same state machines; the per-type streams get
//! the snapshots whose listeners and clusters name the per-type services as the source
//! of what they refer to ([`Delivery`]).

use std::sync::Arc;

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::{
    ClusterDiscoveryService, ClusterDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::{
    EndpointDiscoveryService, EndpointDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_server::{
    ExtensionConfigDiscoveryService, ExtensionConfigDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::{
    ListenerDiscoveryService, ListenerDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::{
    RouteDiscoveryService, RouteDiscoveryServiceServer,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::delta::Delta;
use super::snapshot::{Delivery, CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE};
use super::sotw::Sotw;
use super::stream::serve;
use super::Xds;

type SotwStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

/// The xDS services on one [`Xds`].
#[derive(Clone)]
pub struct XdsService {
    xds: Arc<Xds>,
    /// The type of a per-type service; `None` for ADS.
    only: Option<&'static str>,
}

/// Every xDS service, to add to a tonic server.
pub struct XdsServices {
    pub ads: AggregatedDiscoveryServiceServer<XdsService>,
    pub cds: ClusterDiscoveryServiceServer<XdsService>,
    pub eds: EndpointDiscoveryServiceServer<XdsService>,
    pub lds: ListenerDiscoveryServiceServer<XdsService>,
    pub rds: RouteDiscoveryServiceServer<XdsService>,
    pub ecds: ExtensionConfigDiscoveryServiceServer<XdsService>,
}

/// The xDS services over `xds`.
pub fn services(xds: Arc<Xds>) -> XdsServices {
    let of = |only| XdsService {
        xds: xds.clone(),
        only,
    };
    XdsServices {
        ads: AggregatedDiscoveryServiceServer::new(of(None)),
        cds: ClusterDiscoveryServiceServer::new(of(Some(CLUSTER))),
        eds: EndpointDiscoveryServiceServer::new(of(Some(ENDPOINT))),
        lds: ListenerDiscoveryServiceServer::new(of(Some(LISTENER))),
        rds: RouteDiscoveryServiceServer::new(of(Some(ROUTE))),
        ecds: ExtensionConfigDiscoveryServiceServer::new(of(Some(EXTENSION_CONFIG))),
    }
}

impl XdsService {
    fn sotw(&self, req: Request<Streaming<DiscoveryRequest>>) -> Response<SotwStream> {
        Response::new(serve::<Sotw>(self.xds.clone(), req.into_inner(), self.only))
    }

    fn delta(&self, req: Request<Streaming<DeltaDiscoveryRequest>>) -> Response<DeltaStream> {
        Response::new(serve::<Delta>(
            self.xds.clone(),
            req.into_inner(),
            self.only,
        ))
    }

    /// The unary fetch: the named resources of the service's type (all of them for a
    /// wildcard type asked without names), from the default snapshot or the node's.
    fn fetch(&self, req: Request<DiscoveryRequest>) -> Result<Response<DiscoveryResponse>, Status> {
        let req = req.into_inner();
        let type_url = self.only.expect("fetch is per type");
        if !req.type_url.is_empty() && req.type_url != type_url {
            return Err(Status::invalid_argument(format!(
                "this service serves {type_url}, not {:?}",
                req.type_url
            )));
        }
        let node = req.node.as_ref().map_or("", |n| n.id.as_str());
        let fleets = self.xds.fleets();
        let snapshot = fleets.of(Delivery::PerType { delta: false }).snapshot(node);
        let resources = snapshot.resources(type_url);
        let chosen: Vec<_> = if req.resource_names.is_empty() {
            resources.items.values().map(|r| r.body.clone()).collect()
        } else {
            req.resource_names
                .iter()
                .filter_map(|n| resources.items.get(n))
                .map(|r| r.body.clone())
                .collect()
        };
        Ok(Response::new(DiscoveryResponse {
            version_info: resources.version.clone(),
            resources: chosen,
            type_url: type_url.to_string(),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for XdsService {
    type StreamAggregatedResourcesStream = SotwStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        Ok(self.sotw(req))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Ok(self.delta(req))
    }
}

/// A per-type service: its SotW, Delta and Fetch methods over [`XdsService`].
macro_rules! per_type {
    ($trait:ident, $stream_ty:ident, $stream:ident, $delta_ty:ident, $delta:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $trait for XdsService {
            type $stream_ty = SotwStream;
            type $delta_ty = DeltaStream;

            async fn $stream(
                &self,
                req: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<SotwStream>, Status> {
                Ok(self.sotw(req))
            }

            async fn $delta(
                &self,
                req: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<DeltaStream>, Status> {
                Ok(self.delta(req))
            }

            async fn $fetch(
                &self,
                req: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                self.fetch(req)
            }
        }
    };
}

per_type!(
    ClusterDiscoveryService,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters
);
per_type!(
    EndpointDiscoveryService,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints
);
per_type!(
    ListenerDiscoveryService,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners
);
per_type!(
    RouteDiscoveryService,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes
);
per_type!(
    ExtensionConfigDiscoveryService,
    StreamExtensionConfigsStream,
    stream_extension_configs,
    DeltaExtensionConfigsStream,
    delta_extension_configs,
    fetch_extension_configs
);
