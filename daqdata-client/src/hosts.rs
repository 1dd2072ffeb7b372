//! Where the DaqData servers are, and what to tell them at InitHpIo. The
//! addresses and the observatory's config files have their home in
//! `daqdata-net`, shared with the server's gateway.

use std::path::Path;

use crate::Error;

/// What to tell the servers at InitHpIo: an `hp_io_config.json`.
pub use daqdata_proto::HpIoConfig;

pub use daqdata_net::DEFAULT_PORT;

/// One DaqData server: a TCP address (plaintext or TLS) or a unix socket
/// on this machine.
pub type Host = daqdata_net::Address;

/// The DAQ nodes of an observing run's `daq_config.json`, reached through
/// port forwarding where its `network_config.json` says so.
pub fn hosts_from_configs(
    daq_config: &Path,
    network_config: Option<&Path>,
) -> Result<Vec<Host>, Error> {
    Ok(daqdata_net::addresses_from_configs(
        daq_config,
        network_config,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn hosts_come_from_the_run_configs() {
        for dir in testdata::lick_dirs() {
            let hosts = hosts_from_configs(&dir.join("daq_config.json"), None).unwrap();
            assert_eq!(hosts.len(), 2, "{}", dir.display());
        }
        let err = hosts_from_configs(Path::new("/no/such/daq_config.json"), None).unwrap_err();
        assert!(
            err.to_string().contains("/no/such/daq_config.json"),
            "{err}"
        );
    }
}
