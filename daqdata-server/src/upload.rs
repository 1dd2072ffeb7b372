//! UploadImages (SPEC §3): injected images reach streams like tracked
//! frames, once each is checked to be one of the four data products.

use daqdata_proto::daqdata::UploadImageRequest;
use pff::DataProduct;
use tonic::{Status, Streaming};

use crate::metrics::OutcomeLabels;
use crate::state::State;

/// Publishes every image of the upload; returns how many were taken.
pub(crate) async fn receive(
    state: &State,
    mut images: Streaming<UploadImageRequest>,
) -> Result<u64, Status> {
    let ticket = state.admission.upload(&state.lifecycle)?;
    let generation = &ticket.generation;
    let accepted = state
        .metrics
        .uploads
        .get_or_create(&OutcomeLabels {
            outcome: "accepted",
        })
        .clone();
    let mut n = 0u64;
    loop {
        let next = tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => return Err(Status::unavailable("the DaqData server is shutting down")),
            _ = generation.reconfigured.cancelled() => {
                return Err(Status::cancelled("hp_io was reconfigured by InitHpIo (force=true) during the upload"))
            }
            next = images.message() => next.map_err(crate::message_limit::exhausted)?,
        };
        let Some(request) = next else { return Ok(n) };
        let image = request.pano_image.ok_or_else(|| {
            Status::invalid_argument(format!("upload message {n} has no pano_image"))
        })?;
        let dp = DataProduct::try_from(&image)
            .map_err(|e| Status::invalid_argument(format!("upload message {n}: {e}")))?;
        generation.broadcast.publish_uploaded(dp, image);
        accepted.inc();
        n += 1;
    }
}
