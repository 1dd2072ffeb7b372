//! Server configuration: built-in defaults, a TOML file, or the Python
//! server's `daq_data_server_config.json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use daqdata_net::Address;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Everything the server needs to start; see SPEC §5 for the keys.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `HOST:PORT`, `tls://HOST:PORT` or `unix:///abs/path.sock`, checked
    /// and parsed when the config is read.
    #[serde(deserialize_with = "crate::listen::deserialize_addresses")]
    pub listen: Vec<Address>,
    /// Streams and uploads at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_rpcs: usize,
    /// Fastest hp_io update interval an InitHpIo may ask for.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub min_hp_io_update_interval_seconds: Duration,
    /// Slowest update interval a stream (or InitHpIo) may ask for.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub max_client_update_interval_seconds: Duration,
    /// How long streams get to end on SIGINT/SIGTERM before the exit.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub shutdown_grace_period_seconds: Duration,
    /// A run counts as active if its PFF files grew this recently.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub active_run_idle_seconds: Duration,
    /// InitHpIo may only track data directories under these (empty = any).
    pub allowed_data_roots: Vec<PathBuf>,
    /// An `hp_io_config.json` applied at start.
    pub init_hp_io_config: Option<PathBuf>,
    /// What `simulate_daq` replays.
    pub simulate: SimulateConfig,
    /// Follow the PFF files under `data_dir` (the Python server's
    /// `filesystem_poll` / `filesystem_pipe`).
    pub track_files: bool,
    /// Follow them by looking every interval only, never by file-system
    /// notifications (for NFS); the binary sets it from `$HPIO_POLL_ONLY`.
    #[serde(skip)]
    pub poll_only: bool,
    /// This host's name when the kernel's cannot be read; the binary sets
    /// it from `$HOSTNAME`.
    #[serde(skip)]
    pub host_name: Option<String>,
    /// Hashpipe's socket feed (SPEC §7).
    pub hashpipe_sockets: crate::hashpipe_sockets::HashpipeSocketsConfig,
    /// Hashpipe's status buffer (SPEC §9).
    pub hashpipe_status: crate::hashpipe_status::HashpipeStatusConfig,
    /// Streams one remote TCP address may hold (SPEC §6).
    pub max_streams_per_peer: usize,
    /// Open connections one remote TCP address may hold (SPEC §6).
    pub max_connections_per_peer: usize,
    /// Roles, tokens and the unix socket's permissions (SPEC §6).
    pub access: crate::access::AccessConfig,
    /// Certificates for `tls://` listeners (SPEC §6).
    pub tls: Option<TlsConfig>,
    /// `HOST:PORT` of the Prometheus `/metrics` endpoint; empty: none.
    pub metrics_listen: String,
    /// Set: this server is a gateway that relays its upstreams (SPEC §8).
    pub gateway: Option<crate::gateway::GatewayConfig>,
}

/// The `[tls]` table: the server's certificate and, for mutual TLS, the CA
/// that signs client certificates.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
    /// PEM CA certificate(s); set, `tls://` listeners require a client
    /// certificate signed by it.
    pub client_ca_file: Option<PathBuf>,
}

/// The `[simulate]` table: how `simulate_daq=true` replays fixtures.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimulateConfig {
    /// Fixture directory; when unset, the fixtures built into the binary.
    pub fixtures_dir: Option<PathBuf>,
    /// Output module ids; every fixture stream is replayed for each. Empty:
    /// the fixtures' own module ids.
    pub module_ids: Vec<u32>,
    /// Frames per second per (module, data product); unset: the
    /// fixture's own cadence.
    pub frames_per_second: Option<f64>,
    /// Rotate to the next seqno after this many frames.
    pub frames_per_file: Option<u64>,
    /// Write PFF files for hp_io to track (`files`, the default), or push
    /// frames into Hashpipe's sockets made in the simulation's private
    /// directory (`sockets`).
    pub mode: SimulateMode,
}

/// How a simulated DAQ hands its frames to hp_io.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SimulateMode {
    /// PFF files in a run directory, as Hashpipe records them.
    #[default]
    Files,
    /// Messages into Hashpipe's sockets, as `snapshot.c` sends them.
    Sockets,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                crate::listen::any_host(daqdata_net::DEFAULT_PORT),
                Address::Unix("/tmp/daq_data.sock".into()),
            ],
            max_concurrent_rpcs: 100,
            min_hp_io_update_interval_seconds: Duration::from_millis(1),
            max_client_update_interval_seconds: Duration::from_secs(60),
            shutdown_grace_period_seconds: Duration::from_secs(5),
            active_run_idle_seconds: Duration::from_secs(30),
            allowed_data_roots: Vec::new(),
            init_hp_io_config: None,
            simulate: SimulateConfig::default(),
            track_files: true,
            poll_only: false,
            host_name: None,
            hashpipe_sockets: Default::default(),
            hashpipe_status: Default::default(),
            max_streams_per_peer: 32,
            max_connections_per_peer: 64,
            access: crate::access::AccessConfig::default(),
            tls: None,
            metrics_listen: "127.0.0.1:9108".into(),
            gateway: None,
        }
    }
}

impl Config {
    /// Reads a TOML file, or the Python server's JSON when the name ends in
    /// `.json`. Relative paths inside are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let in_file = |reason: String| Error::ConfigFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut config = if path.extension().is_some_and(|e| e == "json") {
            Self::from_python_json(&text)
                .map_err(|e| in_file(format!("as the Python server's JSON config: {e}")))?
        } else {
            toml::from_str(&text).map_err(|e| in_file(format!("as TOML: {e}")))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_relative(base);
        config.validate().map_err(|e| in_file(e.to_string()))?;
        Ok(config)
    }

    fn resolve_relative(&mut self, base: &Path) {
        let paths = [
            self.init_hp_io_config.as_mut(),
            self.simulate.fixtures_dir.as_mut(),
            self.access.operator_tokens_file.as_mut(),
            self.access.viewer_tokens_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        .chain(self.tls.iter_mut().flat_map(|t| {
            [
                Some(&mut t.cert_file),
                Some(&mut t.key_file),
                t.client_ca_file.as_mut(),
            ]
            .into_iter()
            .flatten()
        }))
        .chain(self.gateway.iter_mut().flat_map(|g| g.paths_mut()));
        for p in paths {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks values a typo could make absurd.
    pub fn validate(&self) -> Result<()> {
        let bail = |reason: String| Err(Error::Invalid(reason));
        let positive = [
            (
                "min_hp_io_update_interval_seconds",
                self.min_hp_io_update_interval_seconds,
            ),
            (
                "max_client_update_interval_seconds",
                self.max_client_update_interval_seconds,
            ),
            ("active_run_idle_seconds", self.active_run_idle_seconds),
        ];
        for (key, v) in positive {
            if v.is_zero() {
                return bail(format!("{key} must be a positive number of seconds, got 0"));
            }
        }
        if self.min_hp_io_update_interval_seconds > self.max_client_update_interval_seconds {
            return bail(
                "min_hp_io_update_interval_seconds is above max_client_update_interval_seconds"
                    .into(),
            );
        }
        self.hashpipe_sockets.validate().map_err(Error::Invalid)?;
        self.hashpipe_status.validate().map_err(Error::Invalid)?;
        if self.max_concurrent_rpcs == 0 {
            return bail("max_concurrent_rpcs must be at least 1".into());
        }
        if self.max_streams_per_peer == 0 || self.max_connections_per_peer == 0 {
            return bail(
                "max_streams_per_peer and max_connections_per_peer must be at least 1".into(),
            );
        }
        if let Some(gateway) = &self.gateway {
            gateway.validate()?;
        }
        if self.tls.is_none() {
            if let Some(addr) = self
                .listen
                .iter()
                .find(|a| matches!(a, Address::Tls { .. }))
            {
                return bail(format!(
                    "listen address {addr} serves TLS but the config has no [tls] section with cert_file and key_file"
                ));
            }
        }
        if self.listen.is_empty() {
            return bail(
                "listen is empty: give at least one HOST:PORT or unix:///path.sock".into(),
            );
        }
        Ok(())
    }

    /// Maps the Python server's `daq_data_server_config.json`: known keys
    /// are taken, the rest are warned about and ignored.
    fn from_python_json(text: &str) -> Result<Self, String> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(map) = json.as_object() else {
            return Err("expected a JSON object at the top".into());
        };
        let mut c = Config::default();
        let mut init_from_default = false;
        let mut default_file = None;
        for (key, value) in map {
            let num = || {
                value
                    .as_f64()
                    .ok_or_else(|| format!("{key} must be a number"))
            };
            let secs = || crate::seconds::from_secs(num()?).map_err(|e| format!("{key}: {e}"));
            match key.as_str() {
                "unix_domain_socket" => {
                    c.listen = vec![crate::listen::any_host(daqdata_net::DEFAULT_PORT)];
                    if let Some(s) = value.as_str().filter(|s| !s.is_empty()) {
                        let unix = crate::listen::parse_address(s)
                            .map_err(|e| format!("unix_domain_socket: {e}"))?;
                        c.listen.push(unix);
                    }
                }
                "max_concurrent_rpcs" => c.max_concurrent_rpcs = whole(key, value)?,
                "min_hp_io_update_interval_seconds" => {
                    c.min_hp_io_update_interval_seconds = secs()?
                }
                "max_client_update_interval_seconds" => {
                    c.max_client_update_interval_seconds = secs()?
                }
                "shutdown_grace_period" => c.shutdown_grace_period_seconds = secs()?,
                "init_from_default" => init_from_default = value.as_bool().unwrap_or(false),
                "default_hp_io_config_file" => default_file = value.as_str().map(PathBuf::from),
                "simulate_daq_cfg" => {
                    if let Some(ids) = value.get("sim_module_ids").and_then(|v| v.as_array()) {
                        c.simulate.module_ids = ids
                            .iter()
                            .map(|id| whole("simulate_daq_cfg.sim_module_ids", id))
                            .collect::<Result<_, _>>()?;
                    }
                    c.simulate.frames_per_file = value
                        .pointer("/strategies/filesystem_poll/frames_per_pff")
                        .map(|v| whole("frames_per_pff", v))
                        .transpose()?;
                    if value.get("simulation_mode").and_then(|v| v.as_str()) == Some("uds") {
                        c.simulate.mode = SimulateMode::Sockets;
                    }
                    tracing::warn!(
                        "simulate_daq_cfg: only sim_module_ids and frames_per_pff are used; the simulator replays the built-in fixtures"
                    );
                }
                "acquisition_methods" => map_acquisition_methods(value, &mut c)?,
                other => {
                    tracing::warn!("ignoring unknown key {other:?} of the Python server config")
                }
            }
        }
        if init_from_default {
            c.init_hp_io_config = default_file;
        }
        Ok(c)
    }
}

/// A whole number that fits `T`, or an error naming `key` and the value:
/// `1.7`, `-1` or a string is refused, never rounded or wrapped.
fn whole<T: TryFrom<u64>>(key: &str, value: &serde_json::Value) -> Result<T, String> {
    value
        .as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("{key} must be a whole number in range, got {value}"))
}

/// The Python server's `acquisition_methods`: `uds` is Hashpipe's socket
/// feed; `filesystem_poll` and `filesystem_pipe` are both "follow the
/// files", which the tracker does either way.
fn map_acquisition_methods(value: &serde_json::Value, c: &mut Config) -> Result<(), String> {
    let enabled = |method: &str| {
        value
            .pointer(&format!("/{method}/enabled"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    };
    c.track_files = enabled("filesystem_poll") || enabled("filesystem_pipe");
    let sockets = &mut c.hashpipe_sockets;
    sockets.enabled = enabled("uds");
    if let Some(uds) = value.get("uds") {
        if let Some(dps) = uds.get("data_products").and_then(|v| v.as_array()) {
            sockets.data_products = dps
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or("acquisition_methods.uds.data_products must be names")?;
        }
        if let Some(t) = uds.get("socket_path_template").and_then(|v| v.as_str()) {
            sockets.path_template = t.to_string();
        }
        if let Some(t) = uds.get("read_timeout") {
            let t = t
                .as_f64()
                .ok_or("acquisition_methods.uds.read_timeout must be a number")?;
            sockets.read_timeout_seconds = crate::seconds::from_secs(t)
                .map_err(|e| format!("acquisition_methods.uds.read_timeout: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_where_the_python_server_does() {
        let c = Config::default();
        let listen: Vec<String> = c.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["[::]:50051", "unix:///tmp/daq_data.sock"]);
        assert_eq!(c.max_concurrent_rpcs, 100);
        c.validate().unwrap();
    }

    #[test]
    fn toml_keys_override_defaults_and_typos_are_errors() {
        let c: Config = toml::from_str(
            "listen = [\"127.0.0.1:6000\"]\nmax_concurrent_rpcs = 7\n[simulate]\nmodule_ids = [1, 2]\nframes_per_second = 50.0\n",
        )
        .unwrap();
        assert_eq!(c.listen, ["127.0.0.1:6000".parse().unwrap()]);
        assert_eq!(c.max_concurrent_rpcs, 7);
        assert_eq!(c.simulate.module_ids, [1, 2]);
        assert!(toml::from_str::<Config>("max_concurent_rpcs = 7").is_err());
    }

    #[test]
    fn the_python_json_maps_known_keys() {
        let json = r#"{"init_from_default": true, "default_hp_io_config_file": "hp.json",
            "unix_domain_socket": "unix:///tmp/x.sock", "max_concurrent_rpcs": 5,
            "shutdown_grace_period": 2, "max_read_queue_size": 50,
            "simulate_daq_cfg": {"sim_module_ids": [224]}}"#;
        let c = Config::from_python_json(json).unwrap();
        let listen: Vec<String> = c.listen.iter().map(ToString::to_string).collect();
        assert_eq!(listen, ["[::]:50051", "unix:///tmp/x.sock"]);
        assert_eq!(c.max_concurrent_rpcs, 5);
        assert_eq!(c.shutdown_grace_period_seconds, Duration::from_secs(2));
        assert_eq!(c.init_hp_io_config, Some(PathBuf::from("hp.json")));
        assert_eq!(c.simulate.module_ids, [224]);
    }

    #[test]
    fn the_python_acquisition_methods_map_onto_sockets_and_files() {
        let json = r#"{"acquisition_methods": {
            "filesystem_poll": {"enabled": false}, "filesystem_pipe": {"enabled": false},
            "uds": {"enabled": true, "data_products": ["img16", "ph256"],
                    "socket_path_template": "/run/hp.{dp_name}.sock", "read_timeout": 30.0}}}"#;
        let c = Config::from_python_json(json).unwrap();
        assert!(!c.track_files);
        let s = &c.hashpipe_sockets;
        assert!(s.enabled);
        assert_eq!(s.data_products, ["img16", "ph256"]);
        assert_eq!(s.path_template, "/run/hp.{dp_name}.sock");
        assert_eq!(s.read_timeout_seconds, Duration::from_secs(30));
        let json = r#"{"acquisition_methods": {"filesystem_pipe": {"enabled": true}}}"#;
        let c = Config::from_python_json(json).unwrap();
        assert!(c.track_files && !c.hashpipe_sockets.enabled);
    }

    #[test]
    fn the_hashpipe_sockets_table_reads_from_toml() {
        let c: Config = toml::from_str(
            "track_files = false\n[hashpipe_sockets]\npath_template = \"/run/x.{dp_name}.sock\"\nread_timeout_seconds = 5\ngroup = \"panoseti\"\n[simulate]\nmode = \"sockets\"\n",
        )
        .unwrap();
        assert!(!c.track_files && c.hashpipe_sockets.enabled);
        assert_eq!(
            c.hashpipe_sockets.read_timeout_seconds,
            Duration::from_secs(5)
        );
        assert_eq!(c.hashpipe_sockets.group.as_deref(), Some("panoseti"));
        assert_eq!(c.simulate.mode, SimulateMode::Sockets);
    }

    #[test]
    fn every_seconds_key_is_a_duration_and_impossible_ones_are_named() {
        let c: Config = toml::from_str(
            "shutdown_grace_period_seconds = 0\nactive_run_idle_seconds = 2.5\n[gateway]\nmin_interval_seconds = 1\n",
        )
        .unwrap();
        assert_eq!(c.shutdown_grace_period_seconds, Duration::ZERO);
        assert_eq!(c.active_run_idle_seconds, Duration::from_millis(2500));
        assert_eq!(
            c.gateway.map(|g| g.min_interval_seconds),
            Some(Duration::from_secs(1))
        );
        for key in [
            "min_hp_io_update_interval_seconds",
            "max_client_update_interval_seconds",
            "shutdown_grace_period_seconds",
            "active_run_idle_seconds",
            "hashpipe_sockets.read_timeout_seconds",
            "hashpipe_status.poll_seconds",
            "gateway.min_interval_seconds",
        ] {
            for bad in ["-1", "nan", "inf", "-inf", "1e300", "\"1\""] {
                let err = toml::from_str::<Config>(&format!("{key} = {bad}"))
                    .unwrap_err()
                    .to_string();
                let leaf = key.rsplit('.').next().unwrap_or(key);
                assert!(err.contains(leaf), "{key} = {bad}: {err}");
            }
        }
        let err = Config::from_python_json(r#"{"shutdown_grace_period": -2}"#).unwrap_err();
        assert!(
            err.contains("shutdown_grace_period") && err.contains("-2"),
            "{err}"
        );
        let err =
            Config::from_python_json(r#"{"acquisition_methods": {"uds": {"read_timeout": -1}}}"#)
                .unwrap_err();
        assert!(err.contains("read_timeout"), "{err}");
    }

    #[test]
    fn listen_addresses_are_parsed_at_load_and_a_bad_one_is_named() {
        let c: Config =
            toml::from_str("listen = [\"tls://127.0.0.1:0\", \"unix:///run/d.sock\"]\n").unwrap();
        assert!(matches!(c.listen[0], Address::Tls { port: 0, .. }));
        assert_eq!(c.listen[1], Address::Unix("/run/d.sock".into()));
        for bad in [
            "50051",
            "host:port",
            "unix://rel.sock",
            "",
            "[::1",
            "tls://h:99999",
        ] {
            let err = toml::from_str::<Config>(&format!("listen = [{bad:?}]"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("listen") && err.contains(bad), "{bad}: {err}");
        }
        assert!(toml::from_str::<Config>("listen = \"[::]:50051\"").is_err());
        let err = Config::from_python_json(r#"{"unix_domain_socket": "unix://relative.sock"}"#)
            .unwrap_err();
        assert!(err.contains("unix_domain_socket"), "{err}");
    }

    #[test]
    fn the_python_json_s_whole_numbers_are_never_rounded() {
        for (json, key) in [
            (r#"{"max_concurrent_rpcs": 1.7}"#, "max_concurrent_rpcs"),
            (r#"{"max_concurrent_rpcs": -1}"#, "max_concurrent_rpcs"),
            (r#"{"max_concurrent_rpcs": "5"}"#, "max_concurrent_rpcs"),
            (
                r#"{"simulate_daq_cfg": {"sim_module_ids": [1, 2.5]}}"#,
                "sim_module_ids",
            ),
            (
                r#"{"simulate_daq_cfg": {"sim_module_ids": [4294967296]}}"#,
                "sim_module_ids",
            ),
            (
                r#"{"simulate_daq_cfg": {"strategies": {"filesystem_poll": {"frames_per_pff": -3}}}}"#,
                "frames_per_pff",
            ),
        ] {
            let err = Config::from_python_json(json).unwrap_err();
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
