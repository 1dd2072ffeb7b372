//! Hashpipe's status, relayed (SPEC §9: "a gateway relays each upstream's
//! status with the upstream's `name`"). While any local
//! StreamHashpipeStatus is open, the gateway holds one upstream
//! StreamHashpipeStatus per upstream, under the images' rule
//! ([`keep_relaying`]). Each upstream's newest response per name (an
//! upstream gateway sends several) waits in a watch; every local stream
//! sends them at its own pace, unchanged. An upstream that cannot be had is
//! one response named by its configured address: stale, no cards, and why.

use std::collections::BTreeMap;
use std::sync::Arc;

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{StreamHashpipeStatusRequest, StreamHashpipeStatusResponse};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::upstream::{identify, keep_relaying, Ended, Linger, Upstream, MAX_MESSAGE};
use daqdata_net::status_reason as reason;

use super::Gateway;
use crate::access::Caller;
use crate::hashpipe_status::admit;
use crate::state::State;

/// One upstream's newest response per name.
type Newest = BTreeMap<String, Arc<StreamHashpipeStatusResponse>>;

/// The status relay of a gateway.
pub(crate) struct StatusRelay {
    /// Held by every local StreamHashpipeStatus.
    demand: hpio::Demand,
    /// One per upstream, in the gateway's order.
    newest: Vec<watch::Sender<Newest>>,
}

impl StatusRelay {
    pub(super) fn new(upstreams: usize) -> std::io::Result<StatusRelay> {
        Ok(StatusRelay {
            demand: hpio::Demand::detached()?,
            newest: (0..upstreams)
                .map(|_| watch::channel(Newest::new()).0)
                .collect(),
        })
    }
}

/// Relays `upstream`'s Hashpipe status (it is the gateway's upstream
/// number `index`) until `shutdown`.
pub(super) async fn relay(gateway: Arc<Gateway>, index: usize, shutdown: CancellationToken) {
    let (Some(upstream), Some(newest)) = (
        gateway.upstreams.get(index),
        gateway.hashpipe.newest.get(index),
    ) else {
        return;
    };
    let (g, stop) = (&gateway, &shutdown);
    keep_relaying(
        &upstream.address,
        "status stream",
        &gateway.hashpipe.demand,
        &shutdown,
        move |announce| stream_once(g, upstream, newest, stop, announce),
        |end| match end {
            // Nobody watches: nothing is kept to go stale meanwhile.
            Ended::Idle => {
                newest.send_replace(Newest::new());
            }
            Ended::Broken(why) | Ended::Loop(why) => {
                newest.send_replace(down(upstream, why));
            }
            Ended::Shutdown => {}
        },
    )
    .await
}

/// What every view shows for an upstream that cannot be had: the node,
/// down, and why.
fn down(upstream: &Upstream, why: &str) -> Newest {
    let name = upstream.address.to_string();
    let response = StreamHashpipeStatusResponse {
        name: name.clone(),
        read_at: Some(prost_types::Timestamp::from(pff::time::now())),
        cards: None,
        stale: true,
        message: why.to_string(),
    };
    Newest::from([(name, Arc::new(response))])
}

/// Why a call failed, as a status response's `message` says it.
fn failure(status: &Status) -> String {
    match status.code() {
        tonic::Code::Unavailable => format!("unreachable: {}", reason(status)),
        code => format!("{code:?}: {}", reason(status)),
    }
}

/// One upstream StreamHashpipeStatus, from the call to its end.
async fn stream_once(
    gateway: &Gateway,
    upstream: &Upstream,
    newest: &watch::Sender<Newest>,
    shutdown: &CancellationToken,
    announce: bool,
) -> Ended {
    let mut client =
        DaqDataClient::new(upstream.connection.clone()).max_decoding_message_size(MAX_MESSAGE);
    // As fast as the upstream polls: local streams pace themselves.
    let mut request = tonic::Request::new(StreamHashpipeStatusRequest {
        update_interval_seconds: 0.0,
    });
    identify(gateway, &mut request);
    let response = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = client.stream_hashpipe_status(request) => r,
    };
    let mut responses = match response {
        Ok(r) => r.into_inner(),
        Err(s) if s.message().starts_with("gateway loop") => {
            return Ended::Loop(format!("refused: {}", s.message()))
        }
        Err(s) => return Ended::Broken(failure(&s)),
    };
    if announce {
        tracing::info!(upstream = %upstream.address, "relaying Hashpipe's status");
    }
    let mut linger = Linger::new(&gateway.hashpipe.demand);
    let mut fresh = true;
    loop {
        let message = match linger.next(&mut responses, shutdown).await {
            Ok(message) => message,
            Err(ended) => return ended,
        };
        let response = match message {
            Ok(Some(r)) => r,
            Ok(None) => return Ended::Broken("unreachable: it ended the stream".into()),
            Err(s) => return Ended::Broken(failure(&s)),
        };
        newest.send_modify(|map| {
            // The first answer replaces the "unreachable" of the last try.
            if std::mem::take(&mut fresh) {
                map.clear();
            }
            map.insert(response.name.clone(), Arc::new(response));
        });
    }
}

impl Gateway {
    /// A local StreamHashpipeStatus: each upstream's newest responses at
    /// once (as soon as there are any), then every max(asked interval,
    /// `[hashpipe_status] poll_seconds`), until the client goes or the
    /// server shuts down. A downstream gateway that is a loop is refused.
    pub(crate) fn stream_hashpipe_status(
        &self,
        state: &State,
        req: &StreamHashpipeStatusRequest,
        caller: &Caller,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<
        impl futures::Stream<Item = Result<StreamHashpipeStatusResponse, Status>> + Send + 'static,
        Status,
    > {
        if let Some(id) = metadata
            .get(super::GATEWAY_ID)
            .and_then(|v| v.to_str().ok())
        {
            self.check_caller(id)?;
        }
        let admitted = admit(state, req, caller, state.config.hashpipe_status.poll())?;
        let sending = Sending {
            newest: self.hashpipe.newest.iter().map(|n| n.subscribe()).collect(),
            ticker: admitted.ticker,
            shutdown: state.shutdown.clone(),
            _demand: self.hashpipe.demand.hold(),
            _held: admitted.held,
        };
        let batches = futures::stream::unfold(sending, |mut s| async move {
            let batch = s.next_batch().await?;
            Some((batch, s))
        });
        Ok(batches.flat_map(|batch| futures::stream::iter(batch.into_iter().map(Ok))))
    }
}

/// What one local StreamHashpipeStatus holds.
struct Sending {
    newest: Vec<watch::Receiver<Newest>>,
    ticker: tokio::time::Interval,
    shutdown: CancellationToken,
    _demand: hpio::DemandHold,
    _held: (
        crate::admission::StatusTicket,
        crate::hashpipe_status::OpenStream,
    ),
}

impl Sending {
    /// The next responses to send, when the pace allows; `None` at
    /// shutdown.
    async fn next_batch(&mut self) -> Option<Vec<StreamHashpipeStatusResponse>> {
        tokio::select! {
            _ = self.ticker.tick() => {}
            _ = self.shutdown.cancelled() => return None,
        }
        loop {
            let batch: Vec<StreamHashpipeStatusResponse> = self
                .newest
                .iter_mut()
                .flat_map(|n| {
                    n.borrow_and_update()
                        .values()
                        .map(|r| StreamHashpipeStatusResponse::clone(r))
                        .collect::<Vec<_>>()
                })
                .collect();
            if !batch.is_empty() {
                return Some(batch);
            }
            if self.newest.is_empty() {
                return None;
            }
            // Nothing relayed yet (the upstream streams are opening): the
            // first answer is sent when it comes, and the pace counts from
            // then.
            let changes = self.newest.iter_mut().map(|n| Box::pin(n.changed()));
            tokio::select! {
                (changed, _, _) = futures::future::select_all(changes) => changed.ok()?,
                _ = self.shutdown.cancelled() => return None,
            }
            self.ticker.reset();
        }
    }
}
