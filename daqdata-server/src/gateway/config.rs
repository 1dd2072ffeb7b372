//! `[gateway]` (SPEC §8): the upstreams and what the gateway shows them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use daqdata_net::{Address, Credentials};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The `[gateway]` table: present, the server relays its upstreams' frames
/// instead of running hp_io.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Addresses as `daqdata --host` takes them: `HOST:PORT`,
    /// `unix:///abs/path.sock`, `tls://HOST:PORT`; parsed when the config
    /// is read, so a typo fails the load and names the entry.
    #[serde(deserialize_with = "deserialize_upstreams")]
    pub upstreams: Vec<Address>,
    /// The Python project's `daq_config.json`: its DAQ nodes are upstreams.
    pub daq_config: Option<PathBuf>,
    /// The Python project's `network_config.json` (port forwarding).
    pub network_config: Option<PathBuf>,
    /// One token presented upstream; refused if others can read the file.
    pub token_file: Option<PathBuf>,
    /// The CA that signed `tls://` upstreams' certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate for upstreams that require mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// Its key.
    pub tls_key_file: Option<PathBuf>,
    /// The fastest any local stream is served relayed frames.
    #[serde(deserialize_with = "crate::seconds::deserialize")]
    pub min_interval_seconds: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            upstreams: Vec::new(),
            daq_config: None,
            network_config: None,
            token_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            min_interval_seconds: Duration::from_millis(10),
        }
    }
}

/// One `upstreams` entry, in the client's address grammar.
fn parse_upstream(text: &str) -> std::result::Result<Address, String> {
    text.parse()
        .map_err(|e| format!("[gateway] upstream {text:?}: {e}"))
}

fn deserialize_upstreams<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Address>, D::Error> {
    let texts = <Vec<String> as Deserialize>::deserialize(d)?;
    texts
        .iter()
        .map(|text| parse_upstream(text).map_err(serde::de::Error::custom))
        .collect()
}

impl GatewayConfig {
    /// The files it names, for resolving relative paths.
    pub(crate) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            self.daq_config.as_mut(),
            self.network_config.as_mut(),
            self.token_file.as_mut(),
            self.tls_ca_file.as_mut(),
            self.tls_cert_file.as_mut(),
            self.tls_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
    }

    /// Every upstream, in order: `upstreams`, then the run configs' nodes;
    /// each once. A run config's node that is not an address is an error
    /// that names it (`upstreams` were parsed when the config was read).
    pub(crate) fn addresses(&self) -> Result<Vec<Address>> {
        let mut out = Vec::new();
        for address in &self.upstreams {
            if !out.contains(address) {
                out.push(address.clone());
            }
        }
        match (&self.daq_config, &self.network_config) {
            (Some(daq), net) => {
                let nodes = daqdata_net::addresses_from_configs(daq, net.as_deref())
                    .map_err(|e| Error::Invalid(format!("[gateway] daq_config: {e}")))?;
                for a in nodes {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            (None, Some(net)) => {
                return Err(Error::Invalid(format!(
                    "[gateway] network_config {} needs daq_config too",
                    net.display()
                )))
            }
            (None, None) => {}
        }
        if out.is_empty() {
            return Err(Error::Invalid(
                "[gateway] names no upstream: set upstreams, daq_config, or --upstream ADDR".into(),
            ));
        }
        Ok(out)
    }

    /// What the gateway presents upstream. The token file must be private.
    pub(crate) fn credentials(&self) -> Result<Credentials> {
        let net = |path: &Path, e: daqdata_net::Error| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut c = Credentials::default();
        if let Some(path) = &self.token_file {
            crate::access::check_private(path)?;
            c = c.token_file(path).map_err(|e| net(path, e))?;
        }
        if let Some(path) = &self.tls_ca_file {
            c = c.tls_ca_file(path).map_err(|e| net(path, e))?;
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                c = c
                    .client_identity_files(cert, key)
                    .map_err(|e| net(cert, e))?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::Invalid(
                    "[gateway] tls_cert_file and tls_key_file go together".into(),
                ))
            }
        }
        Ok(c)
    }

    /// Checks values a typo could make absurd.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_interval_seconds.is_zero() {
            return Err(Error::Invalid(
                "[gateway] min_interval_seconds must be a positive number of seconds, got 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsable_upstream_fails_the_load_and_is_named() {
        let err = toml::from_str::<GatewayConfig>(r#"upstreams = ["daq1:50051", "daq2:port"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream \"daq2:port\""), "{err}");
        let ok: GatewayConfig =
            toml::from_str(r#"upstreams = ["daq1:50051", "unix:///run/daq.sock"]"#).unwrap();
        assert_eq!(ok.upstreams.len(), 2);
        let none = GatewayConfig::default()
            .addresses()
            .unwrap_err()
            .to_string();
        assert!(none.contains("no upstream"), "{none}");
    }

    #[test]
    fn run_config_nodes_join_the_listed_upstreams() {
        let dir = tempfile::tempdir().unwrap();
        let daq = dir.path().join("daq_config.json");
        std::fs::write(
            &daq,
            r#"{"daq_nodes": [{"ip_addr": "10.0.0.60", "grpc_port": 50061}, {"ip_addr": "daq1"}]}"#,
        )
        .unwrap();
        let c = GatewayConfig {
            upstreams: vec!["daq1".parse().unwrap()],
            daq_config: Some(daq),
            ..Default::default()
        };
        let found: Vec<String> = c
            .addresses()
            .unwrap()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(found, ["daq1:50051", "10.0.0.60:50061"]);
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "gateway 0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = GatewayConfig {
            upstreams: vec!["daq1".parse().unwrap()],
            token_file: Some(token.clone()),
            ..Default::default()
        };
        let err = c.credentials().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(c.credentials().unwrap().has_token());
    }

    /// A gateway's files, named relative to its config file, are found
    /// beside it wherever the gateway is started from; absolute ones stay.
    #[test]
    fn the_gateway_s_relative_paths_are_taken_from_the_config_file_s_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[gateway]\nupstreams = [\"daq1\"]\ndaq_config = \"daq_config.json\"\n\
             network_config = \"net/network_config.json\"\ntoken_file = \"token\"\n\
             tls_ca_file = \"/etc/daqdata/ca.pem\"\ntls_cert_file = \"gw.pem\"\n\
             tls_key_file = \"gw.key\"\n",
        )
        .unwrap();
        let g = crate::config::Config::load(&path).unwrap().gateway.unwrap();
        let beside = |name: &str| Some(dir.path().join(name));
        assert_eq!(g.daq_config, beside("daq_config.json"));
        assert_eq!(g.network_config, beside("net/network_config.json"));
        assert_eq!(g.token_file, beside("token"));
        assert_eq!(g.tls_ca_file, Some(PathBuf::from("/etc/daqdata/ca.pem")));
        assert_eq!(g.tls_cert_file, beside("gw.pem"));
        assert_eq!(g.tls_key_file, beside("gw.key"));
    }

    #[test]
    fn a_zero_min_interval_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            "[gateway]\nupstreams = [\"daq1\"]\nmin_interval_seconds = 0\n",
        )
        .unwrap();
        let err = crate::config::Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("min_interval_seconds must be a positive"),
            "{err}"
        );
    }

    /// A client certificate goes upstream with its key, and one without
    /// the other is a config error that says so.
    #[test]
    fn a_client_certificate_needs_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["gateway".into()]).unwrap();
        let cert = dir.path().join("gw.pem");
        let key = dir.path().join("gw.key");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let with = |cert: Option<&Path>, key: Option<&Path>| GatewayConfig {
            upstreams: vec!["daq1".parse().unwrap()],
            tls_cert_file: cert.map(Path::to_path_buf),
            tls_key_file: key.map(Path::to_path_buf),
            ..Default::default()
        };
        with(Some(&cert), Some(&key))
            .credentials()
            .expect("a certificate and its key");
        for half in [with(Some(&cert), None), with(None, Some(&key))] {
            let err = half.credentials().unwrap_err().to_string();
            assert!(err.contains("go together"), "{err}");
        }
        let missing = dir.path().join("missing.pem");
        let err = with(Some(&missing), Some(&key))
            .credentials()
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
