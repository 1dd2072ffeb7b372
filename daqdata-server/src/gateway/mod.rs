//! The gateway (SPEC §8): one address for the whole observatory.
//!
//! A gateway relays, it does not forward: while any local stream is open it
//! holds one StreamImages per upstream (`upstream`), and every frame that
//! comes in is published, still encoded as the upstream sent it, into the
//! same `Broadcast` slots streams read, one origin per upstream. Local
//! streams, pacing and encode-once are a DAQ node's. InitHpIo fans out to
//! every upstream; Status gathers theirs. Hashpipe's status is relayed
//! the same way, one upstream StreamHashpipeStatus each (`hashpipe`).
//!
//! Loops: every gateway process has a random id. It sends it upstream as
//! `daqdata-gateway-id`, and answers StreamImages with
//! `daqdata-gateway-ids`: its own id and every id it learned is upstream of
//! it. A caller whose id is its own or upstream of it is refused (FAILED_
//! PRECONDITION, "gateway loop: ..."); an upstream whose answer holds its
//! own id is dropped; and when what it learned grows, open downstream
//! gateway streams are checked again, so a simultaneous start cannot echo.

mod config;
mod hashpipe;
mod upstream;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use daqdata_net::{Address, Connection, Credentials};
use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{InitHpIoRequest, InitHpIoResponse};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::Status;

pub use config::GatewayConfig;

use crate::broadcast::Broadcast;
use crate::error::{Error, Result};
use crate::hp_io::Generation;
use crate::metrics::Metrics;
use upstream::{Upstream, UpstreamState};

/// Request metadata: the calling gateway's id.
pub(crate) const GATEWAY_ID: &str = "daqdata-gateway-id";
/// Response metadata: this gateway's id and every id upstream of it.
pub(crate) const GATEWAY_IDS: &str = "daqdata-gateway-ids";

/// InitHpIo on an upstream may start a simulator: SPEC §8's deadline.
const INIT_DEADLINE: Duration = Duration::from_secs(15);
/// Status is a quick question.
const STATUS_DEADLINE: Duration = Duration::from_secs(5);

/// A running gateway.
pub(crate) struct Gateway {
    id: String,
    upstreams: Vec<Arc<Upstream>>,
    generation: Arc<Generation>,
    hashpipe: hashpipe::StatusRelay,
    /// Open streams of downstream gateways: their id, and how to end them.
    downstream: Mutex<Vec<(u64, String, CancellationToken)>>,
    next_downstream: std::sync::atomic::AtomicU64,
}

impl Gateway {
    /// Reads the upstreams and credentials (errors name what is wrong);
    /// relays nothing until [`Gateway::spawn`].
    pub(crate) fn new(config: &GatewayConfig, metrics: Arc<Metrics>) -> Result<Arc<Gateway>> {
        config.validate()?;
        let addresses = config.addresses()?;
        let credentials = config.credentials()?;
        let demand = hpio::Demand::detached()
            .map_err(|e| Error::Invalid(format!("gateway: counting local streams: {e}")))?;
        let generation = Arc::new(Generation {
            broadcast: Arc::new(Broadcast::new(metrics.clone())),
            demand,
            interval: config.min_interval_seconds,
            reconfigured: CancellationToken::new(),
        });
        let upstreams = addresses
            .into_iter()
            .enumerate()
            .map(|(i, address)| connect(i, address, &credentials, metrics.clone()))
            .collect::<Result<Vec<_>>>()?;
        let hashpipe = hashpipe::StatusRelay::new(upstreams.len()).map_err(|e| {
            Error::Invalid(format!(
                "gateway: counting local Hashpipe status streams: {e}"
            ))
        })?;
        Ok(Arc::new(Gateway {
            id: format!("{:016x}", daqdata_net::random_u64(0x6761_7465)),
            upstreams,
            generation,
            hashpipe,
            downstream: Mutex::new(Vec::new()),
            next_downstream: Default::default(),
        }))
    }

    /// What local streams attach to: it never ends, as a gateway counts as
    /// initialized.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.generation.clone()
    }

    /// Starts the relay tasks of each upstream (images, Hashpipe status);
    /// they end at `shutdown`.
    pub(crate) fn spawn(self: &Arc<Self>, shutdown: CancellationToken) {
        for (i, u) in self.upstreams.iter().enumerate() {
            tokio::spawn(upstream::relay(self.clone(), u.clone(), shutdown.clone()));
            tokio::spawn(hashpipe::relay(self.clone(), i, shutdown.clone()));
        }
        let names: Vec<String> = self
            .upstreams
            .iter()
            .map(|u| u.address.to_string())
            .collect();
        tracing::info!(id = %self.id, "gateway relaying {}", names.join(", "));
    }

    /// Every gateway id upstream of this one, as its upstreams said.
    fn upstream_ids(&self) -> BTreeSet<String> {
        self.upstreams
            .iter()
            .flat_map(|u| u.reported_ids())
            .collect()
    }

    /// The response metadata value: this gateway's id, then those upstream.
    pub(crate) fn ids_header(&self) -> String {
        std::iter::once(self.id.clone())
            .chain(self.upstream_ids())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Lets a StreamImages call in, or refuses it as a loop. A call from
    /// another gateway is registered until the guard is dropped, and ended
    /// (the guard's token) if that gateway is later found upstream.
    pub(crate) fn admit(
        self: &Arc<Self>,
        metadata: &MetadataMap,
    ) -> Result<Option<Downstream>, Status> {
        let Some(caller) = metadata.get(GATEWAY_ID).and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let caller = caller.to_string();
        self.check_caller(&caller)?;
        let token = CancellationToken::new();
        let key = self
            .next_downstream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.downstream).push((key, caller.clone(), token.clone()));
        // What was learned between the check and the registration.
        self.recheck_downstream();
        Ok(Some(Downstream {
            gateway: self.clone(),
            key,
            token,
        }))
    }

    fn check_caller(&self, caller: &str) -> Result<(), Status> {
        if caller == self.id {
            return Err(Status::failed_precondition(format!(
                "gateway loop: gateway {caller} lists itself as an upstream (directly or through other gateways); remove it from [gateway] upstreams"
            )));
        }
        if self.upstream_ids().contains(caller) {
            return Err(Status::failed_precondition(format!(
                "gateway loop: gateway {caller} is upstream of gateway {}, so it cannot also be downstream; fix the [gateway] upstreams of one of them",
                self.id
            )));
        }
        Ok(())
    }

    /// Ends the open streams of downstream gateways that are now known to
    /// be upstream too.
    fn recheck_downstream(&self) {
        let upstream = self.upstream_ids();
        for (_, id, token) in lock(&self.downstream).iter() {
            if upstream.contains(id) && !token.is_cancelled() {
                tracing::warn!("gateway loop: ending the stream of gateway {id}, which is also upstream of this one");
                token.cancel();
            }
        }
    }

    /// SPEC §8 Status: initialized only if every upstream says so; one
    /// `ADDR: state` part per upstream.
    pub(crate) async fn status(&self) -> (bool, String) {
        let asks = self.upstreams.iter().map(|u| async move {
            if let UpstreamState::Loop(why) = u.state() {
                return (false, format!("{}: refused: {why}", u.address));
            }
            let mut stub = DaqDataClient::new(u.connection.clone());
            let mut req = tonic::Request::new(());
            req.set_timeout(STATUS_DEADLINE);
            match tokio::time::timeout(STATUS_DEADLINE, stub.status(req)).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    let state = if r.hp_io_initialized {
                        "initialized"
                    } else {
                        "not initialized"
                    };
                    (
                        r.hp_io_initialized,
                        format!("{}: {state} ({})", u.address, r.message),
                    )
                }
                Ok(Err(s)) => (
                    false,
                    format!(
                        "{}: unreachable: {}",
                        u.address,
                        daqdata_net::status_reason(&s)
                    ),
                ),
                Err(_) => (
                    false,
                    format!(
                        "{}: unreachable: no answer within {STATUS_DEADLINE:?}",
                        u.address
                    ),
                ),
            }
        });
        let answers = futures::future::join_all(asks).await;
        let all = answers.iter().all(|(ok, _)| *ok);
        let parts: Vec<String> = answers.into_iter().map(|(_, part)| part).collect();
        (
            all,
            format!(
                "gateway of {} upstream(s): {}",
                parts.len(),
                parts.join("; ")
            ),
        )
    }

    /// SPEC §8 InitHpIo: the caller's request to every upstream at once.
    pub(crate) async fn init_hp_io(&self, req: &InitHpIoRequest) -> InitHpIoResponse {
        let calls = self.upstreams.iter().map(|u| async move {
            let mut stub = DaqDataClient::new(u.connection.clone());
            let mut request = tonic::Request::new(req.clone());
            request.set_timeout(INIT_DEADLINE);
            let failed = match tokio::time::timeout(INIT_DEADLINE, stub.init_hp_io(request)).await {
                Ok(Ok(r)) if r.get_ref().success => None,
                Ok(Ok(r)) => Some(format!("refused: {}", r.into_inner().error_message)),
                Ok(Err(s)) => Some(format!(
                    "{:?}: {}",
                    s.code(),
                    daqdata_net::status_reason(&s)
                )),
                Err(_) => Some(format!("no answer within {INIT_DEADLINE:?}")),
            };
            failed.map(|why| format!("{}: {why}", u.address))
        });
        let failures: Vec<String> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        InitHpIoResponse {
            success: failures.is_empty(),
            error_message: if failures.is_empty() {
                String::new()
            } else {
                format!(
                    "InitHpIo failed on {} of {} upstream(s): {}",
                    failures.len(),
                    self.upstreams.len(),
                    failures.join("; ")
                )
            },
        }
    }
}

/// What `--check-config` says of a `[gateway]`: its upstreams parse and
/// its credentials load, as at start.
pub(crate) fn check(config: &GatewayConfig) -> Result<String> {
    config.validate()?;
    let addresses = config.addresses()?;
    config.credentials()?;
    let names: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    Ok(format!(
        "a gateway relaying {} upstream(s): {}",
        names.len(),
        names.join(", ")
    ))
}

/// A downstream gateway's open stream; unregistered when dropped.
pub(crate) struct Downstream {
    gateway: Arc<Gateway>,
    key: u64,
    /// Cancelled when that gateway turns out to be upstream as well.
    pub token: CancellationToken,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        lock(&self.gateway.downstream).retain(|(k, _, _)| *k != self.key);
    }
}

fn connect(
    index: usize,
    address: Address,
    credentials: &Credentials,
    metrics: Arc<Metrics>,
) -> Result<Arc<Upstream>> {
    let connection: Connection = daqdata_net::channel_with(&address, credentials)
        .map_err(|e| Error::Invalid(format!("[gateway] upstream {address}: {e}")))?;
    Ok(Arc::new(Upstream::new(index, address, connection, metrics)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = "00000000000000aa";

    /// A call's metadata as gateway `id` sends it.
    fn from(id: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(GATEWAY_ID, id.parse().unwrap());
        metadata
    }

    /// `--check-config` names every upstream a gateway would relay.
    #[test]
    fn check_config_names_the_upstreams() {
        let config = GatewayConfig {
            upstreams: vec!["daq1".parse().unwrap(), "10.0.0.5:50061".parse().unwrap()],
            ..GatewayConfig::default()
        };
        assert_eq!(
            check(&config).unwrap(),
            "a gateway relaying 2 upstream(s): daq1:50051, 10.0.0.5:50061"
        );
    }

    /// SPEC §8's loops at the downstream end: a gateway calling itself is
    /// refused; another gateway is let in and registered; once it is
    /// learned to be upstream too, its stream is ended and it is refused
    /// from then on; a stream that ends leaves the register.
    #[tokio::test]
    async fn loops_are_refused_at_admission_and_a_downstream_found_upstream_is_ended() {
        let config = GatewayConfig {
            upstreams: vec!["unix:///nonexistent/daqdata.sock".parse().unwrap()],
            ..GatewayConfig::default()
        };
        let gw = Gateway::new(&config, Metrics::new()).unwrap();
        assert!(
            gw.admit(&MetadataMap::new()).unwrap().is_none(),
            "a viewer is no gateway"
        );
        let own = gw.admit(&from(&gw.id)).err().unwrap();
        assert_eq!(own.code(), tonic::Code::FailedPrecondition);
        assert!(own.message().contains("lists itself"), "{own}");

        let down = gw.admit(&from(OTHER)).unwrap().expect("another gateway");
        assert_eq!(lock(&gw.downstream).len(), 1);
        assert!(!down.token.is_cancelled());
        assert_eq!(gw.ids_header(), gw.id);

        assert!(gw.upstreams[0].learn(BTreeSet::from([OTHER.to_string()])));
        gw.recheck_downstream();
        assert!(down.token.is_cancelled(), "the looping stream is ended");
        assert_eq!(gw.ids_header(), format!("{},{OTHER}", gw.id));
        let again = gw.admit(&from(OTHER)).err().unwrap();
        assert!(
            again.message().contains("is upstream of gateway"),
            "{again}"
        );

        drop(down);
        assert!(lock(&gw.downstream).is_empty(), "an ended stream leaves");
    }
}
