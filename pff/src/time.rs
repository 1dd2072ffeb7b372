//! The two clocks of a frame.
//!
//! `tv_sec`/`tv_usec` is the DAQ node's clock when the packet arrived.
//! `pkt_tai`/`pkt_nsec` is the quabo's White Rabbit time, but only the low 10
//! bits of the TAI seconds, so the full second must be recovered from the
//! node's clock: the two agree to within a second when all is well.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result, StartTime};

/// TAI - UTC in seconds, since 2017: White Rabbit counts TAI seconds, the
/// node's clock and Unix time count UTC.
pub const TAI_MINUS_UTC: i64 = 37;

/// The node's clock now: the one place the workspace reads the wall clock,
/// so every "now" (file ages, status reads, frame ages) is the same clock.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Now as Unix seconds, microsecond precision (0 on a clock set before
/// 1970, which no DAQ node has).
pub fn unix_now() -> f64 {
    let (secs, usecs) = node_now();
    node_unix_time(secs, usecs)
}

/// Now as the node's `(tv_sec, tv_usec)`: what Hashpipe would stamp on a
/// packet arriving now.
pub fn node_now() -> (i64, u32) {
    let d = now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_micros(),
    )
}

/// Seconds from Unix time `unix_secs` to now; 0, not negative, when the
/// stamp is ahead of this clock (the two machines' clocks differ).
pub fn age(unix_secs: f64) -> f64 {
    (unix_now() - unix_secs).max(0.0)
}

/// The White Rabbit seconds a quabo stamps (`pkt_tai`, the low 10 bits of
/// TAI seconds) at Unix second `unix_secs`: what a writer of frames puts in
/// `pkt_tai` so that [`wr_unix_time`] gives `unix_secs` back.
pub fn pkt_tai(unix_secs: i64) -> u32 {
    // rem_euclid(1024) is in 0..1024, so the cast keeps every bit.
    (unix_secs + TAI_MINUS_UTC).rem_euclid(1024) as u32
}

/// The node's clock as Unix seconds (float, microsecond precision).
pub fn node_unix_time(tv_sec: i64, tv_usec: u32) -> f64 {
    tv_sec as f64 + f64::from(tv_usec) * 1e-6
}

/// The node's clock as ISO 8601 UTC with microseconds,
/// `2024-07-25T04:34:52.691344Z`: what a person compares with logs, while
/// the float of [`node_unix_time`] is what programs compare.
pub fn iso_utc(tv_sec: i64, tv_usec: u32) -> String {
    let secs = tv_sec.saturating_add(i64::from(tv_usec / 1_000_000));
    let whole = StartTime::from_unix(secs);
    format!(
        "{}.{:06}Z",
        whole.as_str().trim_end_matches('Z'),
        tv_usec % 1_000_000
    )
}

/// White Rabbit time as Unix `(seconds, nanoseconds)`.
///
/// `d = (tv_sec - pkt_tai + 37) mod 1024` says how the node's second and the
/// quabo's differ: 0 the same second, 1 the node is a second ahead, 1023 a
/// second behind; anything else means the clocks disagree by over a second,
/// and the WR seconds cannot be recovered.
pub fn wr_unix_time(pkt_tai: u32, pkt_nsec: u32, tv_sec: i64) -> Result<(i64, u32)> {
    let d = (tv_sec - i64::from(pkt_tai) + TAI_MINUS_UTC).rem_euclid(1024);
    let secs = match d {
        0 => tv_sec,
        1 => tv_sec - 1,
        1023 => tv_sec + 1,
        _ => return Err(Error::ClockMismatch { pkt_tai, tv_sec }),
    };
    Ok((secs, pkt_nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wr_seconds_follow_the_plus_minus_one_rule() {
        // From the Lick img16 sample: pkt_tai 529 at tv_sec 1721882092.
        let tv_sec = 1_721_882_092;
        assert_eq!(
            wr_unix_time(529, 691_007_488, tv_sec).unwrap(),
            (tv_sec, 691_007_488)
        );
        assert_eq!(
            wr_unix_time(528, 999_999_000, tv_sec).unwrap().0,
            tv_sec - 1
        );
        assert_eq!(wr_unix_time(530, 10, tv_sec).unwrap().0, tv_sec + 1);
        assert!(matches!(
            wr_unix_time(600, 0, tv_sec),
            Err(Error::ClockMismatch { .. })
        ));
    }

    #[test]
    fn wr_seconds_wrap_at_1024() {
        // tv_sec + 37 = 1024 * k + 1023 -> pkt_tai 1023; next second wraps to 0.
        let tv_sec = 1024 * 1_700_000 + 1023 - 37;
        assert_eq!(wr_unix_time(1023, 0, tv_sec).unwrap().0, tv_sec);
        assert_eq!(wr_unix_time(0, 0, tv_sec).unwrap().0, tv_sec + 1);
        assert_eq!(wr_unix_time(0, 0, tv_sec + 1).unwrap().0, tv_sec + 1);
    }

    #[test]
    fn a_stamped_pkt_tai_gives_the_same_second_back() {
        for tv_sec in [0, 986, 987, 1_721_882_092, 1024 * 1_700_000 + 1023 - 37] {
            assert_eq!(
                wr_unix_time(pkt_tai(tv_sec), 5, tv_sec).unwrap(),
                (tv_sec, 5)
            );
        }
        // From the Lick img16 sample.
        assert_eq!(pkt_tai(1_721_882_092), 529);
    }

    #[test]
    fn iso_time_keeps_microseconds() {
        assert_eq!(
            iso_utc(1_721_882_092, 691_344),
            "2024-07-25T04:34:52.691344Z"
        );
        assert_eq!(iso_utc(0, 1_000_001), "1970-01-01T00:00:01.000001Z");
    }

    #[test]
    fn now_is_one_clock_in_every_form() {
        let (secs, usecs) = node_now();
        assert!(usecs < 1_000_000);
        // Some time after this code was written, and the float agrees with
        // the parts to within the moment between the two reads.
        assert!(secs > 1_721_882_092);
        assert!(unix_now() >= node_unix_time(secs, usecs));
        assert_eq!(age(unix_now() + 3600.0), 0.0);
        assert!(age(node_unix_time(secs - 10, usecs)) >= 10.0);
    }

    #[test]
    fn node_time_adds_microseconds() {
        assert!((node_unix_time(10, 500_000) - 10.5).abs() < 1e-9);
    }
}
