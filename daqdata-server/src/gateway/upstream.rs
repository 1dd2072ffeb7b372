//! One upstream of a gateway: its one StreamImages, opened while local
//! streams exist and closed [`LINGER`] after the last one ends, retried
//! with back-off when it breaks. Its trouble is its own: the other
//! upstreams and the local streams never wait for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daqdata_net::{Address, Attempts, Backoff, Connection};
use daqdata_proto::daqdata::StreamImagesRequest;
use daqdata_proto::SharedStreamImagesClient;
use pff::ModuleProduct;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{lock, reason, Gateway, GATEWAY_ID, GATEWAY_IDS};
use crate::metrics::{Metrics, UpstreamLabels};

/// SPEC §8: upstream streams close this long after the last local stream.
const LINGER: Duration = Duration::from_secs(10);
/// SPEC §8: retries wait 0.5 s, doubling, at most 10 s, with jitter.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(10),
};
/// A stream that lasted this long went well: its causes may be logged again.
const HEALTHY: Duration = Duration::from_secs(10);
/// At most this many causes are logged between two streams that went well.
const MAX_CAUSES: usize = 8;
/// How often an idle relay looks for local streams, and a busy one for
/// their end.
const DEMAND_POLL: Duration = Duration::from_millis(50);
/// A relayed response larger than this is garbage: a 32x32 image with its
/// header is a few KiB.
const MAX_MESSAGE: usize = 1 << 20;

/// Where an upstream stands, for Status and the logs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum UpstreamState {
    /// No local stream: no upstream stream either.
    Idle,
    Streaming,
    /// Broken or refused; retried after a back-off.
    Down(String),
    /// A gateway loop through this upstream: relayed no more.
    Loop(String),
}

/// One upstream.
pub(crate) struct Upstream {
    /// Its origin in the broadcast is `index + 1` (0 is local).
    index: usize,
    pub address: Address,
    pub connection: Connection,
    state: Mutex<UpstreamState>,
    /// The gateway ids it said are itself and upstream of it.
    reported: Mutex<BTreeSet<String>>,
    labels: UpstreamLabels,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub(crate) fn new(
        index: usize,
        address: Address,
        connection: Connection,
        metrics: Arc<Metrics>,
    ) -> Self {
        let labels = UpstreamLabels {
            upstream: address.to_string(),
        };
        metrics.upstream_up.get_or_create(&labels).set(0);
        // Listed from the start, so a scrape shows every upstream.
        metrics.upstream_images.get_or_create(&labels).inc_by(0);
        metrics.upstream_reconnects.get_or_create(&labels).inc_by(0);
        Upstream {
            index,
            address,
            connection,
            state: Mutex::new(UpstreamState::Idle),
            reported: Mutex::new(BTreeSet::new()),
            labels,
            metrics,
        }
    }

    pub(crate) fn state(&self) -> UpstreamState {
        lock(&self.state).clone()
    }

    pub(crate) fn reported_ids(&self) -> BTreeSet<String> {
        lock(&self.reported).clone()
    }

    fn set_state(&self, state: UpstreamState) {
        let up = i64::from(state == UpstreamState::Streaming);
        self.metrics.upstream_up.get_or_create(&self.labels).set(up);
        *lock(&self.state) = state;
    }
}

/// Why one upstream stream ended.
enum Ended {
    /// No local stream for [`LINGER`]: closed on purpose.
    Idle,
    Shutdown,
    /// Broken, refused or garbage: retried.
    Broken(String),
    /// A loop through this upstream.
    Loop(String),
}

/// Relays `upstream` into the gateway's broadcast until `shutdown`.
pub(crate) async fn relay(
    gateway: Arc<Gateway>,
    upstream: Arc<Upstream>,
    shutdown: CancellationToken,
) {
    let mut attempts = Attempts::new(BACKOFF);
    // Causes logged since the last stream that went well: each once.
    let mut logged: BTreeSet<String> = BTreeSet::new();
    loop {
        if !wait_for_demand(&gateway, &shutdown).await {
            return;
        }
        let started = std::time::Instant::now();
        let ended = stream_once(&gateway, &upstream, &shutdown, logged.is_empty()).await;
        if started.elapsed() >= HEALTHY {
            logged.clear();
        }
        let why = match ended {
            Ended::Shutdown => return,
            Ended::Idle => {
                tracing::info!(upstream = %upstream.address, "no local stream for {LINGER:?}: upstream stream closed");
                upstream.set_state(UpstreamState::Idle);
                logged.clear();
                continue;
            }
            Ended::Broken(why) => {
                upstream.set_state(UpstreamState::Down(why.clone()));
                why
            }
            Ended::Loop(why) => {
                upstream.set_state(UpstreamState::Loop(why.clone()));
                why
            }
        };
        upstream
            .metrics
            .upstream_reconnects
            .get_or_create(&upstream.labels)
            .inc();
        // One log line per cause, not one per retry.
        if logged.len() < MAX_CAUSES && logged.insert(why.clone()) {
            tracing::warn!(upstream = %upstream.address, "upstream stream ended: {why}; retrying with back-off (logged once per cause)");
        }
        let (_, wait) = attempts.next(started);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Waits until a local stream exists; false at shutdown.
async fn wait_for_demand(gateway: &Gateway, shutdown: &CancellationToken) -> bool {
    let demand = &gateway.generation.demand;
    while !demand.is_held() {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(DEMAND_POLL) => {}
        }
    }
    !shutdown.is_cancelled()
}

/// One upstream StreamImages, from the call to its end.
async fn stream_once(
    gateway: &Gateway,
    upstream: &Upstream,
    shutdown: &CancellationToken,
    announce: bool,
) -> Ended {
    let mut client = SharedStreamImagesClient::new(upstream.connection.clone())
        .max_decoding_message_size(MAX_MESSAGE);
    let mut request = tonic::Request::new(StreamImagesRequest {
        stream_movie_data: true,
        stream_pulse_height_data: true,
        update_interval_seconds: 0.0,
        module_ids: Vec::new(),
    });
    if let Ok(id) = gateway.id.parse() {
        request.metadata_mut().insert(GATEWAY_ID, id);
    }
    let response = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = client.stream_images(request) => r,
    };
    let response = match response {
        Ok(r) => r,
        Err(s) if s.message().starts_with("gateway loop") => {
            return Ended::Loop(s.message().to_string())
        }
        Err(s) => return Ended::Broken(format!("{:?}: {}", s.code(), reason(&s))),
    };
    let ids: BTreeSet<String> = response
        .metadata()
        .get(GATEWAY_IDS)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ids.contains(&gateway.id) {
        return Ended::Loop(format!(
            "gateway loop: this gateway ({}) is upstream of its upstream {}",
            gateway.id, upstream.address
        ));
    }
    let grew = {
        let mut reported = lock(&upstream.reported);
        let grew = !ids.is_subset(&reported);
        *reported = ids;
        grew
    };
    if grew {
        gateway.recheck_downstream();
    }
    upstream.set_state(UpstreamState::Streaming);
    if announce {
        tracing::info!(upstream = %upstream.address, "relaying");
    } else {
        tracing::debug!(upstream = %upstream.address, "relaying again");
    }

    let mut images = response.into_inner();
    let broadcast = &gateway.generation.broadcast;
    let demand = &gateway.generation.demand;
    let origin = upstream.index as u32 + 1;
    let counter = upstream
        .metrics
        .upstream_images
        .get_or_create(&upstream.labels)
        .clone();
    let mut name: Arc<str> = Arc::from("");
    let mut idle_since: Option<Instant> = None;
    let mut poll = tokio::time::interval(DEMAND_POLL * 4);
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ended::Shutdown,
            _ = poll.tick() => {
                if demand.is_held() {
                    idle_since = None;
                } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER {
                    return Ended::Idle;
                }
                continue;
            }
            m = images.message() => m,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Broken("the upstream ended the stream".into()),
            Err(s) if s.message().starts_with("gateway loop") => {
                return Ended::Loop(s.message().to_string())
            }
            Err(s) => return Ended::Broken(format!("{:?}: {}", s.code(), reason(&s))),
        };
        let Some(encoded) = response.pano_image else {
            continue;
        };
        let (module, dp) = match daqdata_proto::decode_pano_image_product(&encoded) {
            Ok(found) => found,
            Err(e) => return Ended::Broken(format!("it sent an image that is not one: {e}")),
        };
        if *name != *response.name {
            name = Arc::from(response.name.as_str());
        }
        counter.inc();
        broadcast.publish_relayed(
            origin,
            ModuleProduct::new(module, dp),
            name.clone(),
            encoded,
        );
    }
}
