//! Seconds in the configuration files: a number (integer or fractional)
//! read into a `Duration` at load, so no later code meets a negative, NaN
//! or infinite interval. TOML's errors quote the line, so the key is named.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `seconds` as a `Duration`, or why it is not one.
pub(crate) fn from_secs(seconds: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        format!("{seconds} is not a number of seconds (expected finite and not negative)")
    })
}

/// `#[serde(deserialize_with = "crate::seconds::deserialize")]`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_secs(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Deserialize)]
    struct Table {
        #[serde(deserialize_with = "deserialize")]
        wait_seconds: Duration,
    }

    fn parse(value: &str) -> Result<Duration, String> {
        toml::from_str::<Table>(&format!("wait_seconds = {value}"))
            .map(|t| t.wait_seconds)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn whole_and_fractional_seconds_are_read() {
        assert_eq!(parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn impossible_seconds_are_refused_naming_the_key() {
        for bad in [
            "-1", "-0.001", "nan", "inf", "-inf", "1e300", "\"5\"", "[1]", "true",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("wait_seconds"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn any_float_is_a_duration_of_that_many_seconds_or_refused(x in any::<f64>()) {
            match from_secs(x) {
                Ok(d) => prop_assert!(x >= 0.0 && (d.as_secs_f64() - x).abs() <= x * 1e-9 + 1e-9),
                Err(e) => prop_assert!(!(0.0..1.8e19).contains(&x), "{x}: {e}"),
            }
        }
    }
}
