//! `hp_io_config.json`, the Python project's file of InitHpIo settings.
//!
//! panoseti-grpc 0.3.5 reads it in two places, with plain `json.load` and
//! dict indexing, so unknown keys are ignored and a missing key fails only
//! where it is indexed:
//! - its client (`init_hp_io`) indexes `update_interval_seconds`,
//!   `simulate_daq`, `force` and `module_ids` (and takes `data_dir` from the
//!   run's `daq_config.json` instead);
//! - its server, applying `default_hp_io_config_file` at start
//!   (`HpIoManager`), indexes `data_dir`, `update_interval_seconds` and
//!   `simulate_daq`.
//!
//! So `update_interval_seconds` and `simulate_daq`, needed by both, are
//! required here; the rest default (empty, false, all modules), and
//! `comments` may be any JSON. Every file the package ships has all six
//! keys.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::daqdata::InitHpIoRequest;

/// An `hp_io_config.json`: what InitHpIo should set up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HpIoConfig {
    /// The directory Hashpipe writes runs into (ignored when simulating).
    #[serde(default)]
    pub data_dir: String,
    /// How often the server's tracker looks for new frames, seconds.
    pub update_interval_seconds: f64,
    /// End active streams to apply the new configuration.
    #[serde(default)]
    pub force: bool,
    /// Replay archived frames instead of tracking `data_dir`.
    pub simulate_daq: bool,
    /// Modules to track; empty means every module found.
    #[serde(default)]
    pub module_ids: Vec<u32>,
    /// Free text for people (any JSON); not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<serde_json::Value>,
}

/// An `hp_io_config.json` that cannot be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum HpIoConfigError {
    /// The file cannot be read.
    #[error("cannot read hp_io config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or not the keys and types of an
    /// `hp_io_config.json`.
    #[error("{} is not a valid hp_io_config.json: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: serde_json::Error,
    },
}

impl HpIoConfig {
    /// Reads an `hp_io_config.json`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, HpIoConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| HpIoConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |source| HpIoConfigError::Invalid {
            path: path.to_path_buf(),
            source,
        };
        // Python indexes the file's dict by key: only an object will do
        // (serde would also take a list of the values in field order).
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
            .map_err(invalid)?;
        serde_json::from_str(&text).map_err(invalid)
    }

    /// The package's `hp_io_config_simulate.json` (what the Python CLI's
    /// `--init-sim` sends).
    pub fn simulate() -> Self {
        HpIoConfig {
            data_dir: "simulated_data_dir".into(),
            update_interval_seconds: 0.1,
            force: true,
            simulate_daq: true,
            module_ids: Vec::new(),
            comments: Some("Configure the hp_io thread to track a simulated run directory".into()),
        }
    }
}

impl From<&HpIoConfig> for InitHpIoRequest {
    fn from(c: &HpIoConfig) -> Self {
        InitHpIoRequest {
            data_dir: c.data_dir.clone(),
            update_interval_seconds: c.update_interval_seconds,
            force: c.force,
            simulate_daq: c.simulate_daq,
            module_ids: c.module_ids.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` as a config file and loads it.
    fn load(text: &str) -> Result<HpIoConfig, HpIoConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hp_io_config.json");
        std::fs::write(&path, text).unwrap();
        HpIoConfig::load(&path)
    }

    fn refused(text: &str) -> String {
        match load(text) {
            Ok(c) => panic!("{text} was accepted as {c:?}"),
            Err(e @ HpIoConfigError::Invalid { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("hp_io_config.json"), "{msg}");
                msg
            }
            Err(e) => panic!("{text}: {e}"),
        }
    }

    const LICK: &str = r#"{
  "data_dir": "/mnt/data10",
  "update_interval_seconds": 0.1,
  "force": true,
  "simulate_daq": false,
  "module_ids": [],
  "comments": "Default Lick observatory config for daq1"
}"#;

    #[test]
    fn the_python_packages_files_load_and_become_requests() {
        let lick = load(LICK).unwrap();
        assert_eq!(lick.data_dir, "/mnt/data10");
        assert_eq!(lick.update_interval_seconds, 0.1);
        assert!(lick.force && !lick.simulate_daq);
        let request = InitHpIoRequest::from(&lick);
        assert_eq!(
            request,
            InitHpIoRequest {
                data_dir: "/mnt/data10".into(),
                update_interval_seconds: 0.1,
                force: true,
                simulate_daq: false,
                module_ids: vec![],
            }
        );
        let simulate = r#"{"data_dir": "simulated_data_dir", "update_interval_seconds": 0.1,
            "force": true, "simulate_daq": true, "module_ids": [],
            "comments": "Configure the hp_io thread to track a simulated run directory"}"#;
        assert_eq!(load(simulate).unwrap(), HpIoConfig::simulate());
    }

    #[test]
    fn keys_both_python_readers_index_are_required_and_the_rest_default() {
        let minimal = load(r#"{"update_interval_seconds": 1, "simulate_daq": true}"#).unwrap();
        assert_eq!(
            minimal,
            HpIoConfig {
                data_dir: String::new(),
                update_interval_seconds: 1.0,
                force: false,
                simulate_daq: true,
                module_ids: vec![],
                comments: None,
            }
        );
        assert!(refused(r#"{"data_dir": "/x"}"#).contains("update_interval_seconds"));
        assert!(refused(r#"{"update_interval_seconds": 0.1}"#).contains("simulate_daq"));
    }

    #[test]
    fn unknown_keys_and_any_comments_are_tolerated_as_python_does() {
        let c = load(
            r#"{"update_interval_seconds": 0.5, "simulate_daq": false, "module_ids": [1, 254],
                "comments": ["two", "lines"], "observer": "nobody", "extra": {"deep": [null]}}"#,
        )
        .unwrap();
        assert_eq!(c.module_ids, [1, 254]);
        assert_eq!(c.comments, Some(serde_json::json!(["two", "lines"])));
    }

    #[test]
    fn hostile_files_are_refused_with_the_file_and_the_reason() {
        for (text, why) in [
            ("", "EOF"),
            ("not json", "expected"),
            ("[0.1, true]", "expected a map"),
            (r#"["", 0.1, true, false, [], ""]"#, "expected a map"),
            ("null", "expected a map"),
            ("0.1", "expected a map"),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false"#,
                "EOF",
            ),
            (
                r#"{"update_interval_seconds": "0.1", "simulate_daq": false}"#,
                "expected f64",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": "false"}"#,
                "expected a boolean",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": 0}"#,
                "expected a boolean",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "force": "yes"}"#,
                "boolean",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "data_dir": 7}"#,
                "string",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "module_ids": 1}"#,
                "sequence",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "module_ids": [-1]}"#,
                "u32",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "module_ids": [4294967296]}"#,
                "u32",
            ),
            (
                r#"{"update_interval_seconds": 0.1, "simulate_daq": false, "module_ids": [1.5]}"#,
                "u32",
            ),
            (
                r#"{"update_interval_seconds": NaN, "simulate_daq": false}"#,
                "expected value",
            ),
            (
                r#"{"update_interval_seconds": Infinity, "simulate_daq": false}"#,
                "expected value",
            ),
            (
                r#"{"update_interval_seconds": 1e400, "simulate_daq": false}"#,
                "out of range",
            ),
            (
                r#"{"update_interval_seconds": null, "simulate_daq": false}"#,
                "f64",
            ),
        ] {
            let msg = refused(text);
            assert!(msg.contains(why), "{text}: {msg}");
        }
        // Huge but finite: the server's range check refuses it, with the
        // server's limits in the message.
        let huge = load(r#"{"update_interval_seconds": 1e300, "simulate_daq": false}"#).unwrap();
        assert_eq!(InitHpIoRequest::from(&huge).update_interval_seconds, 1e300);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = HpIoConfig::load("/nonexistent/hp_io_config.json").unwrap_err();
        assert!(matches!(err, HpIoConfigError::Read { .. }));
        assert!(
            err.to_string().contains("/nonexistent/hp_io_config.json"),
            "{err}"
        );
    }
}
