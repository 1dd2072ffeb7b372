//! Where the DaqData servers are, and what to tell them at InitHpIo.
//!
//! Hosts come from the command line (`HOST`, `HOST:PORT`, `unix:///path`)
//! or, as the Python client takes them, from the observing run's
//! `daq_config.json` (`daq_nodes[].ip_addr`) with `network_config.json`
//! (a node whose `port_forwarding.status` is true is reached through its
//! `gw_ip`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

use crate::Error;

/// What to tell the servers at InitHpIo: an `hp_io_config.json`.
pub use daqdata_proto::HpIoConfig;

/// The port every DaqData server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 50051;

/// One DaqData server: a TCP address (plaintext or TLS) or a unix socket
/// on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// `HOST` or `HOST:PORT` (IPv6 literals as `[::1]:PORT`).
    Tcp {
        /// Name or address, without brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `tls://HOST[:PORT]`: TCP with TLS (SPEC §6); the server's
    /// certificate must name `host`.
    Tls {
        /// Name or address, without brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// `unix:///abs/path.sock`: the server's socket on this machine.
    Unix(PathBuf),
}

impl FromStr for Host {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Host {
            host: s.to_string(),
            reason: why.to_string(),
        };
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("tls://") {
            return match rest.parse::<Host>() {
                Ok(Host::Tcp { host, port }) => Ok(Host::Tls { host, port }),
                Ok(_) => Err(bad("expected tls://HOST or tls://HOST:PORT")),
                Err(Error::Host { reason, .. }) => Err(bad(&reason)),
                Err(e) => Err(e),
            };
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            // gRPC accepts unix:path and unix:///abs/path; both name a path.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("the unix socket path is empty"));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if s.is_empty() {
            return Err(bad("the host is empty"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, tail) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address in [ ] has no closing ]"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| bad("the port is not a number 0..65535"))?,
                None if tail.is_empty() => DEFAULT_PORT,
                None => return Err(bad("expected :PORT after ]")),
            };
            return Ok(Host::Tcp {
                host: addr.to_string(),
                port,
            });
        }
        match s.matches(':').count() {
            0 => Ok(Host::Tcp {
                host: s.to_string(),
                port: DEFAULT_PORT,
            }),
            1 => {
                let (host, port) = s.split_once(':').unwrap_or((s, ""));
                if host.is_empty() {
                    return Err(bad("the host before :PORT is empty"));
                }
                Ok(Host::Tcp {
                    host: host.to_string(),
                    port: port
                        .parse()
                        .map_err(|_| bad("the port is not a number 0..65535"))?,
                })
            }
            // A bare IPv6 address: no port can be told apart from it.
            _ => Ok(Host::Tcp {
                host: s.to_string(),
                port: DEFAULT_PORT,
            }),
        }
    }
}

impl fmt::Display for Host {
    /// The gRPC target, as the Python client prints it (`HOST:50051`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Host::Tcp { host, port } => write!(f, "{host}:{port}"),
            Host::Tls { host, port } if host.contains(':') => write!(f, "tls://[{host}]:{port}"),
            Host::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// The DAQ nodes of an observing run's `daq_config.json`, reached through
/// port forwarding where its `network_config.json` says so.
pub fn hosts_from_configs(
    daq_config: &Path,
    network_config: Option<&Path>,
) -> Result<Vec<Host>, Error> {
    let daq = read_json(daq_config)?;
    let net = network_config.map(read_json).transpose()?;
    hosts_from_config_values(&daq, net.as_ref()).map_err(|reason| Error::Config {
        path: match network_config {
            Some(n) => format!("{} with {}", daq_config.display(), n.display()),
            None => daq_config.display().to_string(),
        },
        reason,
    })
}

/// [`hosts_from_configs`] on parsed JSON; the error says what is missing.
pub(crate) fn hosts_from_config_values(
    daq: &Value,
    net: Option<&Value>,
) -> Result<Vec<Host>, String> {
    let nodes = daq
        .get("daq_nodes")
        .and_then(Value::as_array)
        .filter(|n| !n.is_empty())
        .ok_or("daq_config has no daq_nodes (expected a non-empty list)")?;
    let forwarded: Vec<(&str, &str)> = match net {
        None => Vec::new(),
        Some(net) => net
            .get("daq_nodes")
            .and_then(Value::as_array)
            .filter(|n| !n.is_empty())
            .ok_or("network_config has no daq_nodes (expected a non-empty list)")?
            .iter()
            .filter_map(|n| {
                let pf = n.get("port_forwarding")?;
                if pf.get("status")?.as_bool()? {
                    Some((n.get("ip_addr")?.as_str()?, pf.get("gw_ip")?.as_str()?))
                } else {
                    None
                }
            })
            .collect(),
    };
    let mut hosts = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let ip = node
            .get("ip_addr")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("daq_nodes[{i}] has no ip_addr string"))?;
        let target = forwarded
            .iter()
            .find(|(node_ip, _)| *node_ip == ip)
            .map_or(ip, |(_, gw)| *gw);
        let host: Host = target.parse().map_err(|e| format!("daq_nodes[{i}]: {e}"))?;
        // The Python client keys nodes by host, so a repeated one is one node.
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

fn read_json(path: &Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        reason: format!("not valid JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tcp(host: &str, port: u16) -> Host {
        Host::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn hosts_parse_as_users_type_them() {
        assert_eq!(
            "localhost".parse::<Host>().unwrap(),
            tcp("localhost", 50051)
        );
        assert_eq!(
            "10.0.0.60:6000".parse::<Host>().unwrap(),
            tcp("10.0.0.60", 6000)
        );
        assert_eq!("[::1]:7".parse::<Host>().unwrap(), tcp("::1", 7));
        assert_eq!("::1".parse::<Host>().unwrap(), tcp("::1", 50051));
        assert_eq!(
            "unix:///tmp/daq_data.sock".parse::<Host>().unwrap(),
            Host::Unix("/tmp/daq_data.sock".into())
        );
        assert_eq!(
            "unix:///tmp/daq_data.sock"
                .parse::<Host>()
                .unwrap()
                .to_string(),
            "unix:///tmp/daq_data.sock"
        );
        assert_eq!(tcp("::1", 7).to_string(), "[::1]:7");
        assert!("host:port".parse::<Host>().is_err());
        let tls = "tls://daq1".parse::<Host>().unwrap();
        assert_eq!(
            tls,
            Host::Tls {
                host: "daq1".into(),
                port: 50051
            }
        );
        assert_eq!(tls.to_string(), "tls://daq1:50051");
        assert_eq!(
            "tls://[::1]:7".parse::<Host>().unwrap().to_string(),
            "tls://[::1]:7"
        );
        assert!("tls://unix:///x.sock".parse::<Host>().is_err());
        assert!("tls://daq1:port".parse::<Host>().is_err());
        assert!("unix://".parse::<Host>().is_err());
    }

    #[test]
    fn daq_config_nodes_follow_port_forwarding() {
        // The shape of the Python package's *_grpc_simulate.json pair.
        let daq = json!({"daq_nodes": [
            {"ip_addr": "10.0.0.60"}, {"ip_addr": "localhost"},
            {"ip_addr": "192.168.3.84"}, {"ip_addr": "unix:///tmp/daq_data.sock"}]});
        let net = json!({"daq_nodes": [
            {"ip_addr": "localhost", "port_forwarding": {"status": true, "gw_ip": "192.168.3.0"}},
            {"ip_addr": "192.168.3.84", "port_forwarding": {"status": false, "gw_ip": "localhost"}}]});
        let hosts = hosts_from_config_values(&daq, Some(&net)).unwrap();
        assert_eq!(
            hosts,
            vec![
                tcp("10.0.0.60", 50051),
                tcp("192.168.3.0", 50051),
                tcp("192.168.3.84", 50051),
                Host::Unix("/tmp/daq_data.sock".into())
            ]
        );
        let err =
            hosts_from_config_values(&json!({"daq_nodes": [{"data_dir": "x"}]}), None).unwrap_err();
        assert!(err.contains("ip_addr"), "{err}");
    }

    #[test]
    fn real_daq_config_names_its_node() {
        // The Lick run's daq_config.json: fixtures/ always, the shared
        // samples' copy when present.
        for dir in testdata::lick_dirs() {
            let path = dir.join("daq_config.json");
            let hosts = hosts_from_configs(&path, None).unwrap();
            assert_eq!(
                hosts,
                vec![tcp("daq1", 50051), tcp("daq2", 50051)],
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn hp_io_config_reads_the_python_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hp_io_config_lick.json");
        std::fs::write(
            &path,
            r#"{"data_dir": "/mnt/data10", "update_interval_seconds": 0.1, "force": true,
                "simulate_daq": false, "module_ids": [], "comments": "Default Lick config"}"#,
        )
        .unwrap();
        let cfg = HpIoConfig::load(&path).unwrap();
        assert_eq!(cfg.data_dir, "/mnt/data10");
        assert!(cfg.force && !cfg.simulate_daq);
        std::fs::write(&path, r#"{"data_dir": "/x"}"#).unwrap();
        let err = HpIoConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("update_interval_seconds"), "{err}");
    }
}
