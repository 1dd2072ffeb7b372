//! One upstream of a gateway: its one StreamImages, opened while local
//! streams exist and closed [`LINGER`] after the last one ends, retried
//! with back-off when it breaks ([`keep_relaying`], the rule its Hashpipe
//! status relay follows too). Its trouble is its own: the other upstreams
//! and the local streams never wait for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daqdata_net::{Address, Attempts, Backoff, Connection};
use daqdata_proto::daqdata::StreamImagesRequest;
use daqdata_proto::SharedStreamImagesClient;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use daqdata_net::status_reason as reason;

use super::{lock, Gateway, GATEWAY_ID, GATEWAY_IDS};
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
/// How often an idle relay looks for local streams.
const DEMAND_POLL: Duration = Duration::from_millis(50);
/// A relayed response larger than this is garbage: a 32x32 image with its
/// header is a few KiB, a status buffer's cards less than 200.
pub(super) const MAX_MESSAGE: usize = 1 << 20;

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

    /// Takes the gateway ids this upstream's answer said are upstream of
    /// it; true if any is new.
    pub(super) fn learn(&self, ids: BTreeSet<String>) -> bool {
        let mut reported = lock(&self.reported);
        let grew = !ids.is_subset(&reported);
        *reported = ids;
        grew
    }

    fn set_state(&self, state: UpstreamState) {
        let up = i64::from(state == UpstreamState::Streaming);
        self.metrics.upstream_up.get_or_create(&self.labels).set(up);
        *lock(&self.state) = state;
    }
}

/// Why one upstream stream ended.
pub(super) enum Ended {
    /// No local stream for [`LINGER`]: closed on purpose.
    Idle,
    Shutdown,
    /// Broken, refused or garbage: retried.
    Broken(String),
    /// A loop through this upstream.
    Loop(String),
}

/// SPEC §8's rule for every feed a gateway takes from one upstream (its
/// images, its Hashpipe status): one upstream stream while `demand` is
/// held, closed [`LINGER`] after it goes, retried with back-off when it
/// breaks, each cause logged once. `open` runs one stream to its end
/// (`true`: announce it); `ended` hears why each ended.
pub(super) async fn keep_relaying<F, Fut>(
    address: &Address,
    feed: &'static str,
    demand: &hpio::Demand,
    shutdown: &CancellationToken,
    mut open: F,
    mut ended: impl FnMut(&Ended),
) where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Ended>,
{
    let mut attempts = Attempts::new(BACKOFF);
    // Causes logged since the last stream that went well: each once.
    let mut logged: BTreeSet<String> = BTreeSet::new();
    loop {
        if !wait_for_demand(demand, shutdown).await {
            return;
        }
        let started = std::time::Instant::now();
        let end = open(logged.is_empty()).await;
        if started.elapsed() >= HEALTHY {
            logged.clear();
        }
        ended(&end);
        let why = match end {
            Ended::Shutdown => return,
            Ended::Idle => {
                tracing::info!(upstream = %address, "no local stream for {LINGER:?}: upstream {feed} closed");
                logged.clear();
                continue;
            }
            Ended::Broken(why) | Ended::Loop(why) => why,
        };
        // One log line per cause, not one per retry. (`<=` would log one
        // cause more of a node that fails in many ways: a bound, not a
        // behaviour.)
        if logged.len() < MAX_CAUSES && logged.insert(why.clone()) {
            tracing::warn!(upstream = %address, "upstream {feed} ended: {why}; retrying with back-off (logged once per cause)");
        }
        let (_, wait) = attempts.next(started);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Relays `upstream`'s images into the gateway's broadcast until
/// `shutdown`.
pub(crate) async fn relay(
    gateway: Arc<Gateway>,
    upstream: Arc<Upstream>,
    shutdown: CancellationToken,
) {
    let (g, u, stop) = (&gateway, &upstream, &shutdown);
    keep_relaying(
        &upstream.address,
        "stream",
        &gateway.generation.demand,
        &shutdown,
        move |announce| stream_once(g, u, stop, announce),
        |end| {
            let state = match end {
                Ended::Shutdown => return,
                Ended::Idle => UpstreamState::Idle,
                Ended::Broken(why) => UpstreamState::Down(why.clone()),
                Ended::Loop(why) => UpstreamState::Loop(why.clone()),
            };
            let retried = state != UpstreamState::Idle;
            upstream.set_state(state);
            if retried {
                upstream
                    .metrics
                    .upstream_reconnects
                    .get_or_create(&upstream.labels)
                    .inc();
            }
        },
    )
    .await
}

/// Waits until a local stream exists; false at shutdown.
async fn wait_for_demand(demand: &hpio::Demand, shutdown: &CancellationToken) -> bool {
    while !demand.is_held() {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(DEMAND_POLL) => {}
        }
    }
    !shutdown.is_cancelled()
}

/// Reads an open upstream stream while local streams want it: it ends the
/// relay when the server shuts down or `demand` has not been held for
/// [`LINGER`] (asked every [`Linger::EVERY`]).
pub(super) struct Linger<'a> {
    demand: &'a hpio::Demand,
    idle_since: Option<Instant>,
    poll: tokio::time::Interval,
}

impl<'a> Linger<'a> {
    const EVERY: Duration = Duration::from_millis(200);

    pub(super) fn new(demand: &'a hpio::Demand) -> Self {
        Linger {
            demand,
            idle_since: None,
            poll: tokio::time::interval(Self::EVERY),
        }
    }

    /// The next message of `messages`, or how the relay ends.
    pub(super) async fn next<T>(
        &mut self,
        messages: &mut tonic::Streaming<T>,
        shutdown: &CancellationToken,
    ) -> Result<Result<Option<T>, Status>, Ended> {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Ended::Shutdown),
                _ = self.poll.tick() => {
                    if self.over() {
                        return Err(Ended::Idle);
                    }
                }
                m = messages.message() => return Ok(m),
            }
        }
    }

    /// True once `demand` has not been held for [`LINGER`].
    fn over(&mut self) -> bool {
        if self.demand.is_held() {
            self.idle_since = None;
            false
        } else {
            self.idle_since.get_or_insert_with(Instant::now).elapsed() >= LINGER
        }
    }
}

/// The request metadata that names this gateway to its upstream.
pub(super) fn identify<T>(gateway: &Gateway, request: &mut tonic::Request<T>) {
    if let Ok(id) = gateway.id.parse() {
        request.metadata_mut().insert(GATEWAY_ID, id);
    }
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
    identify(gateway, &mut request);
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
    if upstream.learn(ids) {
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
    let mut linger = Linger::new(demand);
    loop {
        let message = match linger.next(&mut images, shutdown).await {
            Ok(message) => message,
            Err(ended) => return ended,
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
        let product = match daqdata_proto::decode_pano_image_product(&encoded) {
            Ok(found) => found,
            Err(e) => return Ended::Broken(format!("it sent an image that is not one: {e}")),
        };
        if *name != *response.name {
            name = Arc::from(response.name.as_str());
        }
        counter.inc();
        broadcast.publish_relayed(origin, product, name.clone(), encoded);
    }
}
