//! The tonic adapter: each RPC logs its start and end, and hands the work
//! to the module that owns it (streams, hp_io's lifecycle, uploads).

use std::pin::Pin;
use std::sync::Arc;

use daqdata_proto::daqdata::{
    InitHpIoRequest, InitHpIoResponse, StatusResponse, StreamHashpipeStatusRequest,
    StreamHashpipeStatusResponse, StreamImagesRequest, UploadImageRequest,
};
use daqdata_proto::SharedStreamImagesResponse;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Caller;
use crate::lifecycle::NoRun;
use crate::metrics::OutcomeLabels;
use crate::state::State;
use crate::stream::PacedStream;

/// The gRPC service.
#[derive(Clone)]
pub(crate) struct DaqDataService {
    pub state: Arc<State>,
}

/// Who called, as `access::AuthLayer` decided before any work.
fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the request was not checked for access; refusing it"))
}

type ImageResponses =
    Pin<Box<dyn futures::Stream<Item = Result<SharedStreamImagesResponse, Status>> + Send>>;

/// A stream on a gateway: ended with a "gateway loop" status if its caller
/// turns out to be upstream (`downstream` is the calling gateway, if it is
/// one), and sent with the ids of this gateway and those upstream of it.
fn relayed_response(
    gateway: &crate::gateway::Gateway,
    stream: PacedStream,
    downstream: Option<crate::gateway::Downstream>,
) -> Response<ImageResponses> {
    let stream = stream.into_stream();
    let images: ImageResponses = match downstream {
        None => Box::pin(stream),
        Some(downstream) => {
            let token = downstream.token.clone();
            // Held until the stream ends; then, if it was ended as a loop,
            // say so.
            let looped = futures::stream::once(async move {
                let registered = downstream;
                registered.token.is_cancelled().then(|| Err(Status::failed_precondition(
                    "gateway loop: the calling gateway turned out to be upstream of this one; fix the [gateway] upstreams",
                )))
            })
            .filter_map(futures::future::ready);
            Box::pin(stream.take_until(token.cancelled_owned()).chain(looped))
        }
    };
    let mut response = Response::new(images);
    if let Ok(ids) = gateway.ids_header().parse() {
        response
            .metadata_mut()
            .insert(crate::gateway::GATEWAY_IDS, ids);
    }
    response
}

type HashpipeStatusResponses =
    Pin<Box<dyn futures::Stream<Item = Result<StreamHashpipeStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl daqdata_proto::server::DaqData for DaqDataService {
    type StreamImagesStream = ImageResponses;
    type StreamHashpipeStatusStream = HashpipeStatusResponses;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let caller = caller(&request)?;
        let peer = caller.to_string();
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        tracing::info!(
            %peer, movie = req.stream_movie_data, pulse_height = req.stream_pulse_height_data,
            interval = req.update_interval_seconds, modules = ?req.module_ids, "StreamImages started"
        );
        let opened = match &self.state.gateway {
            None => PacedStream::open(&self.state, req, &caller)
                .map(|s| Response::new(Box::pin(s.into_stream()) as ImageResponses)),
            // SPEC §8: a gateway refuses a loop, and names itself and what
            // is upstream of it to the gateways downstream.
            Some(gateway) => gateway.admit(&metadata).and_then(|downstream| {
                PacedStream::open(&self.state, req, &caller)
                    .map(|s| relayed_response(gateway, s, downstream))
            }),
        };
        match opened {
            Ok(response) => Ok(response),
            Err(status) => {
                tracing::info!(%peer, code = ?status.code(), "StreamImages refused: {}", status.message());
                self.state.metrics.refused("StreamImages", status.code());
                Err(status)
            }
        }
    }

    async fn init_hp_io(
        &self,
        request: Request<InitHpIoRequest>,
    ) -> Result<Response<InitHpIoResponse>, Status> {
        // Audit (SPEC §6): peer, role, token or certificate name, outcome.
        let peer = caller(&request)?.to_string();
        let req = request.into_inner();
        tracing::info!(
            %peer, data_dir = %req.data_dir, interval = req.update_interval_seconds, force = req.force,
            simulate = req.simulate_daq, modules = ?req.module_ids, "InitHpIo started"
        );
        // The reconfiguration runs in a task of its own: tonic drops this
        // future when the caller goes away (a deadline, a cancel), and a
        // reconfiguration stopped midway would leave hp_io stopped with
        // nothing started. The reply may be lost; the state never is.
        let state = self.state.clone();
        let reconfiguration = tokio::spawn(async move {
            let result = match &state.gateway {
                // SPEC §8: every upstream at once; local streams go on.
                Some(gateway) => Ok(gateway.init_hp_io(&req).await),
                None => {
                    state
                        .lifecycle
                        .init(&req, NoRun::Refuse, || state.admission.active_streams())
                        .await
                }
            };
            match &result {
                Ok(r) if r.success => tracing::info!(%peer, "InitHpIo succeeded"),
                Ok(r) => tracing::warn!(%peer, "InitHpIo failed: {}", r.error_message),
                Err(s) => {
                    tracing::info!(%peer, code = ?s.code(), "InitHpIo refused: {}", s.message());
                    state.metrics.refused("InitHpIo", s.code());
                }
            }
            result
        });
        let result = reconfiguration
            .await
            .unwrap_or_else(|e| Err(Status::internal(format!("InitHpIo failed: {e}"))));
        result.map(Response::new)
    }

    async fn ping(&self, request: Request<()>) -> Result<Response<()>, Status> {
        tracing::debug!(peer = %caller(&request)?, "Ping");
        Ok(Response::new(()))
    }

    async fn status(&self, request: Request<()>) -> Result<Response<StatusResponse>, Status> {
        let (hp_io_initialized, message) = match &self.state.gateway {
            // The upstreams' lines carry their own Hashpipe's phrase.
            Some(gateway) => gateway.status().await,
            None => {
                let (initialized, message) = self.state.lifecycle.status();
                let hashpipe = self.state.hashpipe.summary();
                (initialized, format!("{message}; {hashpipe}"))
            }
        };
        tracing::debug!(peer = %caller(&request)?, hp_io_initialized, "Status: {message}");
        Ok(Response::new(StatusResponse {
            hp_io_initialized,
            message,
        }))
    }

    async fn stream_hashpipe_status(
        &self,
        request: Request<StreamHashpipeStatusRequest>,
    ) -> Result<Response<Self::StreamHashpipeStatusStream>, Status> {
        let caller = caller(&request)?;
        let peer = caller.to_string();
        let metadata = request.metadata().clone();
        let req = request.into_inner();
        tracing::info!(%peer, interval = req.update_interval_seconds, "StreamHashpipeStatus started");
        // SPEC §9: a gateway relays its upstreams' status.
        let opened: Result<HashpipeStatusResponses, Status> = match &self.state.gateway {
            Some(gateway) => gateway
                .stream_hashpipe_status(&self.state, &req, &caller, &metadata)
                .map(|s| Box::pin(s) as HashpipeStatusResponses),
            None => self
                .state
                .hashpipe
                .stream(&self.state, &req, &caller)
                .map(|s| Box::pin(s) as HashpipeStatusResponses),
        };
        match opened {
            Ok(stream) => Ok(Response::new(stream)),
            Err(status) => {
                tracing::info!(%peer, code = ?status.code(), "StreamHashpipeStatus refused: {}", status.message());
                self.state
                    .metrics
                    .refused("StreamHashpipeStatus", status.code());
                Err(status)
            }
        }
    }

    async fn upload_images(
        &self,
        request: Request<Streaming<UploadImageRequest>>,
    ) -> Result<Response<()>, Status> {
        // Audit (SPEC §6): peer, role, token or certificate name, outcome.
        let peer = caller(&request)?.to_string();
        tracing::info!(%peer, "UploadImages started");
        let result = crate::upload::receive(&self.state, request.into_inner()).await;
        let uploads = &self.state.metrics.uploads;
        match &result {
            Ok(n) => tracing::info!(%peer, images = n, "UploadImages ended"),
            Err(s) => {
                tracing::info!(%peer, code = ?s.code(), "UploadImages ended: {}", s.message());
                uploads
                    .get_or_create(&OutcomeLabels { outcome: "refused" })
                    .inc();
                self.state.metrics.refused("UploadImages", s.code());
            }
        }
        result.map(|_| Response::new(()))
    }
}
