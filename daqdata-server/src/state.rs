//! What every RPC shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::admission::Admission;
use crate::config::Config;
use crate::hashpipe_status::StatusFeed;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;

/// Shared by every RPC.
pub(crate) struct State {
    pub config: Config,
    /// The server's host name, sent in every StreamImagesResponse.
    pub host: String,
    pub lifecycle: Lifecycle,
    pub admission: Admission,
    pub access: Arc<Access>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Hashpipe's status buffer, polled (not on a gateway).
    pub hashpipe: StatusFeed,
    /// Set on a gateway (SPEC §8): InitHpIo and Status are its upstreams'.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
}

impl State {
    pub(crate) fn new(config: Config, fixtures: daqsim::Fixtures, access: Access) -> Self {
        let metrics = Metrics::new();
        // SPEC §9: a gateway relays its upstreams' status and polls none.
        let hashpipe = if config.gateway.is_some() {
            StatusFeed::for_gateway(&config.hashpipe_status)
        } else {
            StatusFeed::start(&config.hashpipe_status, metrics.clone())
        };
        let lifecycle = Lifecycle::new(config.clone(), fixtures, metrics.clone());
        lifecycle.report_simulated_status_to(hashpipe.simulated_source());
        State {
            host: host_name(config.host_name.as_deref()),
            hashpipe,
            lifecycle,
            admission: Admission::new(
                config.max_concurrent_rpcs,
                config.max_streams_per_peer,
                metrics.clone(),
            ),
            metrics,
            access: Arc::new(access),
            config,
            shutdown: CancellationToken::new(),
            gateway: None,
        }
    }
}

/// The kernel's host name, else `fallback` (`$HOSTNAME`), else `localhost`.
fn host_name(fallback: Option<&str>) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| fallback.map(String::from))
        .unwrap_or_else(|| "localhost".into())
}
