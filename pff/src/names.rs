//! PANOSETI file and run-directory names.
//!
//! `start_TIME.dp_DP.bpp_B.module_M.seqno_S.pff` and
//! `obs_NAME.start_TIME.runtype_TYPE.pffd`: pairs split by `.`, key and value
//! by the first `_`. Extra pairs (`debug_TRUNCATED`) occur and are kept.
//! TIME is ISO 8601 UTC, written with `:` by Hashpipe and with `_` where a
//! file system or a copy tool did not allow `:`.

use std::fmt;

use crate::daq_tree::{PFF_SUFFIX, RUN_DIR_SUFFIX};
use crate::{DataProduct, Error, ModuleId, Result};

/// A run or file start time, `YYYY-MM-DDTHH:MM:SSZ`.
///
/// Kept in the `:` form whatever the name used, so that the two spellings
/// of one time compare equal and times order as strings do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StartTime(String);

impl StartTime {
    /// Parses either spelling; `None` if it is not a UTC time of that form.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
            return None;
        }
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
        let seps_ok =
            b[4] == b'-' && b[7] == b'-' && matches!(b[13], b':' | b'_') && b[13] == b[16];
        if !seps_ok || !digits.iter().all(|&i| b[i].is_ascii_digit()) {
            return None;
        }
        Some(StartTime(s.replace('_', ":")))
    }

    /// The UTC time of a Unix second.
    pub fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        StartTime(format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ))
    }

    /// `2024-07-25T04:34:46Z`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StartTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn split_pairs<'a>(stem: &'a str, name: &str, of: &'static str) -> Result<Vec<(&'a str, &'a str)>> {
    stem.split('.')
        .map(|part| {
            part.split_once('_').ok_or_else(|| Error::Name {
                name: name.to_string(),
                of,
                what: format!("part {part:?} is not KEY_VALUE"),
            })
        })
        .collect()
}

fn field<'a>(
    pairs: &[(&str, &'a str)],
    key: &str,
    name: &str,
    of: &'static str,
) -> Result<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .ok_or_else(|| Error::Name {
            name: name.to_string(),
            of,
            what: format!("no {key}_ part"),
        })
}

fn number<T: std::str::FromStr>(v: &str, key: &str, name: &str) -> Result<T> {
    v.parse().map_err(|_| Error::Name {
        name: name.to_string(),
        of: "file",
        what: format!("{key}_{v} is not a number"),
    })
}

fn start_time(v: &str, name: &str, of: &'static str) -> Result<StartTime> {
    StartTime::parse(v).ok_or_else(|| Error::Name {
        name: name.to_string(),
        of,
        what: format!("start_{v} is not a UTC time like 2024-07-25T04:34:46Z"),
    })
}

/// A PFF file name: `start_TIME.dp_DP.bpp_B.module_M.seqno_S.pff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PffName {
    /// When the file's run started writing.
    pub start: StartTime,
    /// What the file holds.
    pub dp: DataProduct,
    /// Bytes per pixel, as named.
    pub bpp: u8,
    /// The module (telescope) id.
    pub module: ModuleId,
    /// Rises by one each time Hashpipe closes a full file and opens the next.
    pub seqno: u32,
    /// All pairs in their order in the name, as written (extra ones too).
    pairs: Vec<(String, String)>,
}

impl PffName {
    /// The name Hashpipe would give this file.
    pub fn new(start: StartTime, dp: DataProduct, module: ModuleId, seqno: u32) -> Self {
        let bpp = dp.bytes_per_pixel() as u8;
        let pairs = vec![
            ("start".into(), start.as_str().to_string()),
            ("dp".into(), dp.name().to_string()),
            ("bpp".into(), bpp.to_string()),
            ("module".into(), module.to_string()),
            ("seqno".into(), seqno.to_string()),
        ];
        PffName {
            start,
            dp,
            bpp,
            module,
            seqno,
            pairs,
        }
    }

    /// Parses a file name (no directory).
    pub fn parse(name: &str) -> Result<Self> {
        const OF: &str = "file";
        let stem = name.strip_suffix(PFF_SUFFIX).ok_or_else(|| Error::Name {
            name: name.to_string(),
            of: OF,
            what: "does not end in .pff".into(),
        })?;
        let pairs = split_pairs(stem, name, OF)?;
        let dp_name = field(&pairs, "dp", name, OF)?;
        let dp = dp_name.parse::<DataProduct>().map_err(|e| Error::Name {
            name: name.to_string(),
            of: OF,
            what: e.to_string(),
        })?;
        Ok(PffName {
            start: start_time(field(&pairs, "start", name, OF)?, name, OF)?,
            dp,
            bpp: number(field(&pairs, "bpp", name, OF)?, "bpp", name)?,
            module: ModuleId::new(number(field(&pairs, "module", name, OF)?, "module", name)?),
            seqno: number(field(&pairs, "seqno", name, OF)?, "seqno", name)?,
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// The value of a pair by key, as written (`debug` -> `TRUNCATED`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The same name with the next sequence number: the file Hashpipe opens
    /// when this one is full.
    pub fn next_seqno(&self) -> Self {
        let mut next = self.clone();
        next.seqno += 1;
        for (k, v) in &mut next.pairs {
            if k == "seqno" {
                *v = next.seqno.to_string();
            }
        }
        next
    }
}

impl fmt::Display for PffName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pairs(f, &self.pairs)?;
        f.write_str(PFF_SUFFIX)
    }
}

fn write_pairs(f: &mut fmt::Formatter<'_>, pairs: &[(String, String)]) -> fmt::Result {
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            f.write_str(".")?;
        }
        write!(f, "{k}_{v}")?;
    }
    Ok(())
}

/// A run directory name: `obs_NAME.start_TIME.runtype_TYPE.pffd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunName {
    /// Observatory or observation name (`Lick`).
    pub obs: String,
    /// When the run started: newer runs have later times.
    pub start: StartTime,
    /// `sci-data`, `sim`, ...
    pub runtype: String,
    pairs: Vec<(String, String)>,
}

impl RunName {
    /// A run directory name as the PANOSETI start script makes it.
    pub fn new(obs: &str, start: StartTime, runtype: &str) -> Self {
        let pairs = vec![
            ("obs".into(), obs.to_string()),
            ("start".into(), start.as_str().to_string()),
            ("runtype".into(), runtype.to_string()),
        ];
        RunName {
            obs: obs.to_string(),
            start,
            runtype: runtype.to_string(),
            pairs,
        }
    }

    /// Parses a run directory name (no parent directory).
    pub fn parse(name: &str) -> Result<Self> {
        const OF: &str = "run directory";
        let stem = name
            .strip_suffix(RUN_DIR_SUFFIX)
            .ok_or_else(|| Error::Name {
                name: name.to_string(),
                of: OF,
                what: "does not end in .pffd".into(),
            })?;
        let pairs = split_pairs(stem, name, OF)?;
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        Ok(RunName {
            obs: get("obs").unwrap_or_default(),
            start: start_time(field(&pairs, "start", name, OF)?, name, OF)?,
            runtype: get("runtype").unwrap_or_default(),
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }
}

impl fmt::Display for RunName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_pairs(f, &self.pairs)?;
        f.write_str(RUN_DIR_SUFFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_is_refused_unless_every_character_is_in_place() {
        let good = "2024-07-25T04:34:46Z";
        assert_eq!(
            StartTime::parse(good).map(|t| t.to_string()),
            Some(good.to_string())
        );
        assert_eq!(
            StartTime::parse("2024-07-25T04_34_46Z").map(|t| t.to_string()),
            Some(good.to_string())
        );
        for bad in [
            "2024-07-25T04:34:46",   // short
            "2024-07-25T04:34:46ZZ", // long
            "2024-07-25 04:34:46Z",  // no T
            "2024-07-25T04:34:46+",  // no Z
            "2024_07-25T04:34:46Z",
            "2024-07_25T04:34:46Z",
            "2024-07-25T04-34-46Z",
            "2024-07-25T04:34_46Z", // two separators
            "2024-07-25T04_34:46Z",
            "2024-0x-25T04:34:46Z",
            "2024-07-25T04:3x:46Z",
        ] {
            assert_eq!(StartTime::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn unix_seconds_name_the_calendar_day_for_four_centuries() {
        // Count the days one by one with the Gregorian leap rule.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for day in 0..(400 * 366) {
            let t = StartTime::from_unix(day * 86_400 + 3_723);
            assert_eq!(t.as_str(), format!("{y:04}-{m:02}-{d:02}T01:02:03Z"));
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let days_in_month = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > days_in_month {
                (m, d) = (m + 1, 1);
                if m > 12 {
                    (y, m) = (y + 1, 1);
                }
            }
        }
        assert_eq!(StartTime::from_unix(-1).as_str(), "1969-12-31T23:59:59Z");
    }

    const LICK: &str =
        "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_1.seqno_0.debug_TRUNCATED.pff";

    #[test]
    fn a_lick_file_name_parses_and_round_trips() {
        let n = PffName::parse(LICK).unwrap();
        assert_eq!(n.dp, DataProduct::Img16);
        assert_eq!((n.bpp, n.module.get(), n.seqno), (2, 1, 0));
        assert_eq!(n.start.as_str(), "2024-07-25T04:34:46Z");
        assert_eq!(n.get("debug"), Some("TRUNCATED"));
        assert_eq!(n.to_string(), LICK);
        assert_eq!(n.next_seqno().seqno, 1);
        assert!(n.next_seqno().to_string().contains(".seqno_1."));
    }

    #[test]
    fn both_time_spellings_are_the_same_time() {
        let colon =
            PffName::parse("start_2024-07-25T04:34:46Z.dp_ph256.bpp_2.module_3.seqno_7.pff")
                .unwrap();
        let under =
            PffName::parse("start_2024-07-25T04_34_46Z.dp_ph256.bpp_2.module_3.seqno_7.pff")
                .unwrap();
        assert_eq!(colon.start, under.start);
    }

    #[test]
    fn names_that_are_not_pff_are_errors() {
        for bad in [
            "hk.pff",
            "start_x.dp_img16.bpp_2.module_1.seqno_0.pff",
            "notes.txt",
            "start_2024-07-25T04_34_46Z.dp_img32.bpp_2.module_1.seqno_0.pff",
            "start_2024-07-25T04_34_46Z.dp_img16.bpp_2.module_one.seqno_0.pff",
        ] {
            assert!(PffName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn run_names_parse_make_and_order_by_start() {
        let r =
            RunName::parse("obs_Lick.start_2024-07-25T04:34:06Z.runtype_sci-data.pffd").unwrap();
        assert_eq!((r.obs.as_str(), r.runtype.as_str()), ("Lick", "sci-data"));
        let later = RunName::new("SIM", StartTime::from_unix(1_721_882_100), "sim");
        assert_eq!(
            later.to_string(),
            "obs_SIM.start_2024-07-25T04:35:00Z.runtype_sim.pffd"
        );
        assert!(later.start > r.start);
    }

    #[test]
    fn unix_times_format_as_utc() {
        assert_eq!(StartTime::from_unix(0).as_str(), "1970-01-01T00:00:00Z");
        assert_eq!(
            StartTime::from_unix(951_782_400).as_str(),
            "2000-02-29T00:00:00Z"
        );
    }
}
