//! Where a DaqData server is: an [`Address`] as users type it (`HOST`,
//! `HOST:PORT`, `[v6]:PORT`, `tls://HOST[:PORT]`, `unix:///path`), and the
//! DAQ nodes of the Python project's `daq_config.json` +
//! `network_config.json` (a node whose `port_forwarding.status` is true is
//! reached through its `gw_ip`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;

use crate::Error;

/// The port every DaqData server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 50051;

/// Where one DaqData server listens: a TCP address (plaintext or TLS) or a unix socket
/// on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
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

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Address {
            address: s.to_string(),
            reason: why.to_string(),
        };
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("tls://") {
            return match rest.parse::<Address>() {
                Ok(Address::Tcp { host, port }) => Ok(Address::Tls { host, port }),
                Ok(_) => Err(bad("expected tls://HOST or tls://HOST:PORT")),
                Err(Error::Address { reason, .. }) => Err(bad(&reason)),
                Err(e) => Err(e),
            };
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            // gRPC accepts unix:path and unix:///abs/path; both name a path.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("the unix socket path is empty"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
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
            return Ok(Address::Tcp {
                host: addr.to_string(),
                port,
            });
        }
        match s.matches(':').count() {
            0 => Ok(Address::Tcp {
                host: s.to_string(),
                port: DEFAULT_PORT,
            }),
            1 => {
                let (host, port) = s.split_once(':').unwrap_or((s, ""));
                if host.is_empty() {
                    return Err(bad("the host before :PORT is empty"));
                }
                Ok(Address::Tcp {
                    host: host.to_string(),
                    port: port
                        .parse()
                        .map_err(|_| bad("the port is not a number 0..65535"))?,
                })
            }
            // A bare IPv6 address: no port can be told apart from it.
            _ => Ok(Address::Tcp {
                host: s.to_string(),
                port: DEFAULT_PORT,
            }),
        }
    }
}

impl fmt::Display for Address {
    /// The gRPC target, as the Python client prints it (`HOST:50051`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "{host}:{port}"),
            Address::Tls { host, port } if host.contains(':') => write!(f, "tls://[{host}]:{port}"),
            Address::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// The DAQ nodes of an observing run's `daq_config.json`, reached through
/// port forwarding where its `network_config.json` says so. Each node's
/// port (SPEC §8): its `grpc_port`, else its forwarding's `grpc_port`,
/// else the one in its address (50051 when none is written).
pub fn addresses_from_configs(
    daq_config: &Path,
    network_config: Option<&Path>,
) -> Result<Vec<Address>, Error> {
    let daq = read_json(daq_config)?;
    let net = network_config.map(read_json).transpose()?;
    addresses_from_config_values(&daq, net.as_ref()).map_err(|reason| Error::Config {
        path: match network_config {
            Some(n) => format!("{} with {}", daq_config.display(), n.display()),
            None => daq_config.display().to_string(),
        },
        reason,
    })
}

/// One node's port forwarding in `network_config.json`.
struct Forwarding<'a> {
    node_ip: &'a str,
    gw_ip: &'a str,
    grpc_port: Option<&'a Value>,
}

/// [`addresses_from_configs`] on parsed JSON; the error says what is missing.
pub fn addresses_from_config_values(
    daq: &Value,
    net: Option<&Value>,
) -> Result<Vec<Address>, String> {
    let nodes = daq
        .get("daq_nodes")
        .and_then(Value::as_array)
        .filter(|n| !n.is_empty())
        .ok_or("daq_config has no daq_nodes (expected a non-empty list)")?;
    let forwarded: Vec<Forwarding<'_>> = match net {
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
                    Some(Forwarding {
                        node_ip: n.get("ip_addr")?.as_str()?,
                        gw_ip: pf.get("gw_ip")?.as_str()?,
                        grpc_port: pf.get("grpc_port"),
                    })
                } else {
                    None
                }
            })
            .collect(),
    };
    let mut addresses = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let ip = node
            .get("ip_addr")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("daq_nodes[{i}] has no ip_addr string"))?;
        let forwarding = forwarded.iter().find(|f| f.node_ip == ip);
        let target = forwarding.map_or(ip, |f| f.gw_ip);
        let mut address: Address = target.parse().map_err(|e| format!("daq_nodes[{i}]: {e}"))?;
        let port = match (node.get("grpc_port"), forwarding.and_then(|f| f.grpc_port)) {
            (Some(p), _) => Some(("grpc_port", p)),
            (None, Some(p)) => Some(("port_forwarding.grpc_port", p)),
            (None, None) => None,
        };
        if let Some((key, value)) = port {
            let port = value
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    format!("daq_nodes[{i}]: {key} {value} is not a port number 0..65535")
                })?;
            match &mut address {
                Address::Tcp { port: p, .. } | Address::Tls { port: p, .. } => *p = port,
                Address::Unix(_) => {}
            }
        }
        // The Python client keys nodes by host, so a repeated one is one node.
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
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

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn hosts_parse_as_users_type_them() {
        assert_eq!(
            "localhost".parse::<Address>().unwrap(),
            tcp("localhost", 50051)
        );
        assert_eq!(
            "10.0.0.60:6000".parse::<Address>().unwrap(),
            tcp("10.0.0.60", 6000)
        );
        assert_eq!("[::1]:7".parse::<Address>().unwrap(), tcp("::1", 7));
        assert_eq!("::1".parse::<Address>().unwrap(), tcp("::1", 50051));
        assert_eq!(
            "unix:///tmp/daq_data.sock".parse::<Address>().unwrap(),
            Address::Unix("/tmp/daq_data.sock".into())
        );
        assert_eq!(
            "unix:///tmp/daq_data.sock"
                .parse::<Address>()
                .unwrap()
                .to_string(),
            "unix:///tmp/daq_data.sock"
        );
        assert_eq!(tcp("::1", 7).to_string(), "[::1]:7");
        assert!("host:port".parse::<Address>().is_err());
        let tls = "tls://daq1".parse::<Address>().unwrap();
        assert_eq!(
            tls,
            Address::Tls {
                host: "daq1".into(),
                port: 50051
            }
        );
        assert_eq!(tls.to_string(), "tls://daq1:50051");
        assert_eq!(
            "tls://[::1]:7".parse::<Address>().unwrap().to_string(),
            "tls://[::1]:7"
        );
        assert!("tls://unix:///x.sock".parse::<Address>().is_err());
        assert!("tls://daq1:port".parse::<Address>().is_err());
        assert!("unix://".parse::<Address>().is_err());
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
        let hosts = addresses_from_config_values(&daq, Some(&net)).unwrap();
        assert_eq!(
            hosts,
            vec![
                tcp("10.0.0.60", 50051),
                tcp("192.168.3.0", 50051),
                tcp("192.168.3.84", 50051),
                Address::Unix("/tmp/daq_data.sock".into())
            ]
        );
        let err = addresses_from_config_values(&json!({"daq_nodes": [{"data_dir": "x"}]}), None)
            .unwrap_err();
        assert!(err.contains("ip_addr"), "{err}");
    }

    #[test]
    fn a_nodes_port_is_its_grpc_port_else_its_forwardings_else_50051() {
        let daq = json!({"daq_nodes": [
            {"ip_addr": "10.0.0.60", "grpc_port": 50061},
            {"ip_addr": "10.0.0.61"},
            {"ip_addr": "10.0.0.62"},
            {"ip_addr": "10.0.0.63:7000"}]});
        let net = json!({"daq_nodes": [
            {"ip_addr": "10.0.0.60", "port_forwarding": {"status": true, "gw_ip": "head", "grpc_port": 1}},
            {"ip_addr": "10.0.0.61", "port_forwarding": {"status": true, "gw_ip": "head", "grpc_port": 50062}}]});
        let found = addresses_from_config_values(&daq, Some(&net)).unwrap();
        assert_eq!(
            found,
            vec![
                tcp("head", 50061),
                tcp("head", 50062),
                tcp("10.0.0.62", 50051),
                tcp("10.0.0.63", 7000)
            ]
        );
        for bad in [json!(-1), json!(70000), json!("50051")] {
            let daq = json!({"daq_nodes": [{"ip_addr": "x", "grpc_port": bad}]});
            let err = addresses_from_config_values(&daq, None).unwrap_err();
            assert!(err.contains("grpc_port"), "{err}");
        }
    }

    #[test]
    fn real_daq_config_names_its_node() {
        // The Lick run's daq_config.json: fixtures/ always, the shared
        // samples' copy when present.
        for dir in testdata::lick_dirs() {
            let path = dir.join("daq_config.json");
            let hosts = addresses_from_configs(&path, None).unwrap();
            assert_eq!(
                hosts,
                vec![tcp("daq1", 50051), tcp("daq2", 50051)],
                "{}",
                path.display()
            );
        }
    }
}
