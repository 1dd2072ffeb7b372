//! The DaqData gRPC server: one per DAQ node, it streams the newest
//! PANOSETI frames of the live run to any number of viewers.
//!
//! # Brief overview
//!
//! Data flows one way: an `hpio::Tracker` reads the newest complete frame
//! of each (module, data product) and publishes it into a `Broadcast`
//! slot; each StreamImages call watches the slots it wants and, when its
//! interval allows, sends the newest frame, encoded once for all streams.
//! InitHpIo swaps the tracker (and, for `simulate_daq`, a `daqsim` replay
//! into a private directory); UploadImages publishes into the same slots.
//!
//! - [`Config`]: what to listen on and the limits (TOML, or the Python
//!   server's JSON).
//! - [`Server::start`] binds every listener and serves until
//!   [`Server::shutdown`]; what fails is an [`Error`].
//!
//! Which file owns which rule is one table for the whole workspace: the
//! root README's "Where each rule lives".
//!
//! ```no_run
//! # async fn run() -> Result<(), daqdata_server::Error> {
//! let config = daqdata_server::Config {
//!     listen: vec![daqdata_server::parse_listen_address("unix:///tmp/daq_data_example.sock")?],
//!     ..Default::default()
//! };
//! let server = daqdata_server::Server::start(config, Some(daqdata_server::InitOnStart::Simulate)).await?;
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod access;
mod admission;
mod broadcast;
mod config;
mod conn_guard;
mod error;
mod gateway;
mod hashpipe_sockets;
mod hashpipe_status;
mod hp_io;
mod ip_block;
mod keyed_count;
mod lifecycle;
mod listen;
mod message_limit;
mod metrics;
mod seconds;
mod service;
mod state;
mod stream;
mod tls;
mod transport;
mod uds_authority;
mod unix_socket;
mod upload;

use std::sync::Arc;

use daqdata_proto::daqdata::InitHpIoRequest;
use daqdata_proto::HpIoConfig;
use tokio::task::JoinSet;

pub use access::{parse_tokens, AccessConfig, Role, Token};
pub use config::{Config, SimulateConfig, SimulateMode, TlsConfig};
pub use error::{Error, Result};
pub use gateway::GatewayConfig;
pub use hashpipe_sockets::HashpipeSocketsConfig;
pub use hashpipe_status::HashpipeStatusConfig;
pub use ip_block::IpBlock;
pub use listen::{parse_address as parse_listen_address, Listening};
pub use unix_socket::SocketMode;

use service::DaqDataService;
use state::State;

/// How the server initializes hp_io before serving.
#[derive(Clone, Debug)]
pub enum InitOnStart {
    /// Replay the fixtures (`simulate_daq=true`), as `--init-sim` does.
    Simulate,
    /// Apply an `hp_io_config.json`'s settings (always with `force`).
    Config(HpIoConfig),
}

/// A running server.
pub struct Server {
    state: Arc<State>,
    listening: Vec<Listening>,
    metrics: Option<std::net::SocketAddr>,
    /// One accept loop per listener.
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds every address of `config.listen`, applies `init` (or the
    /// config's `init_hp_io_config`), and serves in the background.
    pub async fn start(config: Config, init: Option<InitOnStart>) -> Result<Server> {
        config.validate()?;
        let fixtures = load_fixtures(&config.simulate)?;
        let init = match (init, &config.init_hp_io_config) {
            (Some(init), _) => Some(init),
            (None, Some(path)) => Some(InitOnStart::Config(HpIoConfig::load(path)?)),
            (None, None) => None,
        };
        // Token files and certificates are checked before anything runs.
        let access = access::Access::load(&config.access)?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let mut state = State::new(config, fixtures, access);
        if state.config.gateway.is_some() {
            start_gateway(&mut state, init.is_some())?;
        }
        let state = Arc::new(state);
        if let Some(init) = init {
            initialize(&state, init).await?;
        }
        let metrics = serve_metrics(&state).await;
        let (listening, tasks) = serve_listeners(&state, tls.as_ref()).await?;
        Ok(Server {
            state,
            listening,
            metrics,
            tasks,
        })
    }

    /// Where it listens (with the real port when `:0` was asked for).
    pub fn listening(&self) -> &[Listening] {
        &self.listening
    }

    /// Where `/metrics` is served, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics
    }

    /// Ends every stream (UNAVAILABLE: shutting down), stops accepting
    /// (removing the unix socket files), waits up to the grace period for
    /// connections to close, and stops hp_io.
    pub async fn shutdown(mut self) -> Result<()> {
        self.state.shutdown.cancel();
        let grace = self.state.config.shutdown_grace_period_seconds;
        let drained = tokio::time::timeout(grace, async {
            let mut first_error = Ok(());
            while let Some(joined) = self.tasks.join_next().await {
                if let Err(e) = joined {
                    tracing::warn!("an accept loop failed: {e}");
                    first_error = first_error.and(Err(Error::from(e)));
                }
            }
            first_error
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after the {grace:?} grace period; closing them");
            self.tasks.abort_all();
            // Each aborted loop drops its listener (and a unix socket's file).
            while self.tasks.join_next().await.is_some() {}
        }
        self.state.lifecycle.stop().await?;
        drained.unwrap_or(Ok(()))
    }

    /// Serves until an accept loop fails (it panicked; accept errors are
    /// retried); a normal exit is by `shutdown`.
    pub async fn wait_for_error(&mut self) -> Result<()> {
        match self.tasks.join_next().await {
            Some(joined) => Ok(joined?),
            None => std::future::pending().await,
        }
    }
}

/// The simulation's fixtures: the configured directory's, else the
/// built-in ones.
fn load_fixtures(simulate: &SimulateConfig) -> Result<daqsim::Fixtures> {
    match &simulate.fixtures_dir {
        Some(dir) => daqsim::Fixtures::load(dir).map_err(|source| Error::Fixtures {
            dir: dir.clone(),
            source,
        }),
        None => Ok(daqsim::Fixtures::embedded()),
    }
}

/// Makes `state` a gateway's: relayed frames instead of an hp_io of its own.
fn start_gateway(state: &mut State, init: bool) -> Result<()> {
    let Some(config) = &state.config.gateway else {
        return Ok(());
    };
    if init {
        return Err(Error::Invalid(
            "a gateway relays its upstreams and has no hp_io of its own: drop --init, --init-sim and init_hp_io_config, and initialize the DAQ nodes".into(),
        ));
    }
    let gateway = gateway::Gateway::new(config, state.metrics.clone())?;
    state.lifecycle.serve_relayed(gateway.generation());
    gateway.spawn(state.shutdown.clone());
    state.gateway = Some(gateway);
    Ok(())
}

/// Serves `/metrics` where `metrics_listen` says. Metrics are for
/// watching, not for serving: a port another server on this host already
/// took is said loudly, and the server serves on without them.
async fn serve_metrics(state: &Arc<State>) -> Option<std::net::SocketAddr> {
    let addr = state.config.metrics_listen.as_str();
    if addr.is_empty() {
        return None;
    }
    match metrics::serve(addr, state.metrics.clone(), state.shutdown.clone()).await {
        Ok(bound) => {
            tracing::info!("metrics on http://{bound}/metrics");
            Some(bound)
        }
        Err(e) => {
            tracing::error!(
                "{e}; serving without metrics (set metrics_listen or --metrics-listen)"
            );
            None
        }
    }
}

/// Binds every `listen` address and starts its accept loop.
async fn serve_listeners(
    state: &Arc<State>,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> Result<(Vec<Listening>, JoinSet<()>)> {
    let access = state.config.access.clone();
    let limits = conn_guard::ConnLimits::new(state.config.max_connections_per_peer, move |ip| {
        access.limits_apply_to(ip)
    });
    let auth = access::AuthLayer(state.access.clone(), state.metrics.clone());
    let transport = transport::Transport::new(routes(state.clone()).await?, auth, limits);
    let mut listening = Vec::new();
    let mut tasks = JoinSet::new();
    for addr in &state.config.listen {
        let (bound, listener) = listen::bind(addr, &state.config.access, tls).await?;
        tracing::info!("listening on {bound}");
        warn_if_open(state, &bound);
        tasks.spawn(transport.clone().serve(listener, state.shutdown.clone()));
        listening.push(bound);
    }
    Ok((listening, tasks))
}

/// Checks a configuration file as [`Server::start`] would read it, without
/// listening: the file itself, the `init_hp_io_config` and simulation
/// fixtures it names, and the form of every listen address. Returns a
/// one-line summary of what the server would do.
pub fn check_config(path: &std::path::Path) -> Result<String> {
    let config = Config::load(path)?;
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    let mut summary = format!("listens on {}", listen.join(", "));
    if let Some(hp_io) = &config.init_hp_io_config {
        let c = HpIoConfig::load(hp_io)?;
        let what = if c.simulate_daq {
            "a simulated run".to_string()
        } else {
            format!("data_dir {}", c.data_dir)
        };
        summary += &format!(
            "; at start tracks {what} every {} s",
            c.update_interval_seconds
        );
        if !c.simulate_daq {
            summary += " (waiting for a run if none is active)";
            if config.hashpipe_sockets.enabled {
                summary += &format!(
                    "; Hashpipe's sockets listen at {}",
                    config.hashpipe_sockets.path_template
                );
            }
        }
    }
    if let Some(dir) = &config.simulate.fixtures_dir {
        daqsim::Fixtures::load(dir).map_err(|source| Error::Fixtures {
            dir: dir.clone(),
            source,
        })?;
        summary += &format!("; simulates from {}", dir.display());
    }
    if let Some(gateway) = &config.gateway {
        summary += &format!("; {}", gateway::check(gateway)?);
    }
    Ok(summary)
}

/// SPEC §8: a start-up config whose run has not begun yet does not fail the
/// start; hp_io waits for the run (Status says so).
async fn initialize(state: &State, init: InitOnStart) -> Result<()> {
    let request = match init {
        InitOnStart::Simulate => InitHpIoRequest {
            simulate_daq: true,
            update_interval_seconds: 0.1f64
                .max(state.config.min_hp_io_update_interval_seconds.as_secs_f64()),
            force: true,
            ..Default::default()
        },
        InitOnStart::Config(c) => InitHpIoRequest {
            force: true,
            ..InitHpIoRequest::from(&c)
        },
    };
    let reply = state
        .lifecycle
        .init(&request, lifecycle::NoRun::Wait, || {
            state.admission.active_streams()
        })
        .await
        .map_err(|s| Error::InitAtStart(s.message().to_string()))?;
    if reply.success {
        Ok(())
    } else {
        Err(Error::InitAtStart(reply.error_message))
    }
}

/// SPEC §6: with the Python server's defaults, anyone who reaches a TCP
/// listener may reconfigure hp_io and inject images; say so at start.
fn warn_if_open(state: &State, bound: &Listening) {
    let (Listening::Tcp(addr) | Listening::Tls(addr)) = bound else {
        return;
    };
    let access = &state.config.access;
    if !addr.ip().is_loopback() && access.effective_tcp_role() == access::Role::Operator {
        tracing::warn!(
            "InitHpIo and UploadImages are open to anyone who can reach {addr}; see [access]"
        );
    }
}

/// Every service the listeners serve: DaqData, reflection (v1 and
/// v1alpha) and health.
async fn routes(state: Arc<State>) -> Result<tonic::service::Routes> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(daqdata_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(daqdata_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Serving from the start (hp_io being uninitialized is answered per
    // RPC), and before the listener opens, so no health check sees
    // NOT_FOUND.
    health_reporter
        .set_service_status(daqdata_proto::SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    Ok(tonic::service::Routes::new(
        daqdata_proto::server::DaqDataServer::new(DaqDataService { state })
            .max_decoding_message_size(message_limit::MAX_MESSAGE_BYTES),
    )
    .add_service(reflection_v1)
    .add_service(reflection_v1alpha)
    .add_service(health))
}
