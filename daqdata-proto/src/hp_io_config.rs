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
//!
//! Python ignores keys it does not know; so does this reader, with a
//! warning naming each. A value is never changed to fit: `module_ids`
//! are protobuf `uint32`s, which Python's protobuf refuses to take from a
//! float (even `2.0`), so a fractional, negative or out-of-range id is an
//! error naming the key and the value. `update_interval_seconds` is a
//! double, so an integer such as `1` is a number of seconds, as in Python.

use std::path::{Path, PathBuf};

use serde::de::{self, IntoDeserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
        let map = serde_json::from_str::<Map<String, Value>>(&text).map_err(invalid)?;
        HpIoConfig::deserialize(KeyedMap(map)).map_err(invalid)
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

/// A JSON object as a deserializer that names the key of a value that
/// does not fit its field, and warns about keys no field takes.
struct KeyedMap(Map<String, Value>);

/// One value of a [`KeyedMap`]; its errors start with its key.
struct Keyed {
    key: String,
    value: Value,
}

impl<'de> de::Deserializer<'de> for KeyedMap {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let entries = self
            .0
            .into_iter()
            .map(|(key, value)| (key.clone(), Keyed { key, value }));
        let mut map = de::value::MapDeserializer::new(entries);
        let out = visitor.visit_map(&mut map)?;
        map.end()?;
        Ok(out)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        for key in self.0.keys().filter(|k| !fields.contains(&k.as_str())) {
            tracing::warn!(key = %key, "ignoring unknown key {key:?} of an hp_io_config.json, as Python does");
        }
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Starts an error with the key whose value caused it.
fn name_key<T>(key: &str, result: Result<T, serde_json::Error>) -> Result<T, serde_json::Error> {
    result.map_err(|e| de::Error::custom(format_args!("key {key:?}: {e}")))
}

impl<'de> de::Deserializer<'de> for Keyed {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        name_key(&self.key, self.value.deserialize_any(visitor))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        name_key(&self.key, self.value.deserialize_option(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for Keyed {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
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

    /// A log that collects what tracing writes.
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_unknown_key_is_warned_about_once_by_name() {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            load(r#"{"update_interval_seconds": 1, "simulate_daq": true, "observer": "x", "comments": 1}"#)
                .unwrap();
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("\"observer\"").count(), 1, "{text}");
        assert!(
            !text.contains("comments"),
            "a known key is not warned about: {text}"
        );
    }

    #[test]
    fn a_value_that_would_change_is_refused_naming_its_key_and_value() {
        let base = r#""update_interval_seconds": 0.1, "simulate_daq": false"#;
        for (extra, key, value) in [
            (r#""module_ids": [1.7]"#, "module_ids", "1.7"),
            // Python's protobuf refuses a float for a uint32, even 2.0.
            (r#""module_ids": [2.0]"#, "module_ids", "2.0"),
            (r#""module_ids": [-3]"#, "module_ids", "-3"),
            (r#""module_ids": [1e20]"#, "module_ids", "1e+20"),
            (
                r#""module_ids": [18446744073709551615]"#,
                "module_ids",
                "18446744073709551615",
            ),
            (r#""module_ids": [{"id": 1}]"#, "module_ids", "map"),
            (r#""force": 1"#, "force", "1"),
            (r#""data_dir": ["/a"]"#, "data_dir", "sequence"),
        ] {
            let msg = refused(&format!("{{{base}, {extra}}}"));
            assert!(
                msg.contains(&format!("{key:?}")) && msg.contains(value),
                "{extra}: {msg}"
            );
        }
        let msg = refused(r#"{"update_interval_seconds": [0.1], "simulate_daq": false}"#);
        assert!(msg.contains("\"update_interval_seconds\""), "{msg}");
        // An integer number of seconds is a double, as in Python.
        let whole = load(r#"{"update_interval_seconds": 2, "simulate_daq": false}"#).unwrap();
        assert_eq!(whole.update_interval_seconds, 2.0);
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

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,8}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::btree_map("[a-z_]{0,24}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The keys of an hp_io_config.json, and some it does not have.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("data_dir".to_string()),
                Just("update_interval_seconds".to_string()),
                Just("force".to_string()),
                Just("simulate_daq".to_string()),
                Just("module_ids".to_string()),
                Just("comments".to_string()),
                "[a-z_]{1,12}",
            ]
        }

        proptest! {
            /// Whatever the values, a file loads only if every known key's
            /// value is exactly of its type, and loading never panics.
            #[test]
            fn any_object_loads_exactly_or_is_refused_naming_a_key(
                entries in prop::collection::btree_map(key(), any_json(), 0..8)
            ) {
                let object: Map<String, Value> = entries.clone().into_iter().collect();
                let text = Value::Object(object).to_string();
                match load(&text) {
                    Ok(c) => {
                        let ids: Vec<u64> = c.module_ids.iter().map(|&i| i.into()).collect();
                        let given = entries.get("module_ids").cloned().unwrap_or(Value::Array(vec![]));
                        prop_assert_eq!(Value::from(ids), given);
                        prop_assert_eq!(Some(&Value::from(c.simulate_daq)), entries.get("simulate_daq"));
                        prop_assert_eq!(
                            entries["update_interval_seconds"].as_f64(),
                            Some(c.update_interval_seconds)
                        );
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        prop_assert!(
                            ["data_dir", "update_interval_seconds", "force", "simulate_daq", "module_ids"]
                                .iter()
                                .any(|k| msg.contains(k)),
                            "{}", msg
                        );
                    }
                }
            }
        }
    }
}
