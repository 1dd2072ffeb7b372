//! `daqdata --hashpipe-status`: every node's Hashpipe threads and packet
//! counts in one table that refreshes, like `hashpipe_status_monitor` but
//! for all nodes at once; with `--json`, one JSON line per response.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use daqdata_client::{DaqClient, HashpipeStatus};
use futures::StreamExt;

/// What one node showed last.
#[derive(Default)]
struct Row {
    latest: Option<HashpipeStatus>,
    /// Packets/s and lost/s between its last two responses.
    rates: Option<(f64, f64)>,
    /// Why its stream ended, if it did.
    error: Option<String>,
}

/// Streams until every host's stream has ended (Ctrl-C ends it sooner).
pub async fn run(client: &DaqClient, refresh_period: f64, json: bool) -> anyhow::Result<()> {
    let mut rows: BTreeMap<String, Row> = client
        .hosts()
        .map(|h| (h.to_string(), Row::default()))
        .collect();
    let mut stream = Box::pin(client.stream_hashpipe_status(refresh_period));
    let terminal = std::io::stdout().is_terminal();
    let mut redraw = tokio::time::interval(Duration::from_secs_f64(refresh_period.max(0.1)));
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed = false;
    loop {
        tokio::select! {
            next = stream.next() => {
                let Some((host, next)) = next else { break };
                let row = rows.entry(host.to_string()).or_default();
                match next {
                    Ok(status) => {
                        if json {
                            println!("{}", status.to_json());
                        }
                        if let Some(earlier) = &row.latest {
                            row.rates = status.rates_since(earlier).or(row.rates);
                        }
                        row.latest = Some(status);
                        row.error = None;
                    }
                    Err(e) => {
                        tracing::warn!("{e}");
                        row.error = Some(e.to_string());
                    }
                }
                changed = true;
            }
            _ = redraw.tick() => {
                if changed && !json {
                    let table = render(&rows, terminal);
                    let mut out = std::io::stdout().lock();
                    // In a terminal the table is redrawn in place.
                    if terminal {
                        write!(out, "\x1b[H\x1b[2J")?;
                    }
                    writeln!(out, "{table}")?;
                    out.flush()?;
                    changed = false;
                }
            }
        }
    }
    if !json {
        println!("{}", render(&rows, terminal));
    }
    anyhow::bail!("every host's StreamHashpipeStatus ended")
}

const COLUMNS: [&str; 8] = [
    "NODE", "NET", "COMPUTE", "OUTPUT", "NPACKETS", "PKT/S", "LOST/S", "STATUS",
];

/// The table: one row per node; a row in trouble (a thread `blocked` or
/// `exit`ed, a stale or missing buffer, a failed stream) ends with the
/// reason, in red when `color`.
fn render(rows: &BTreeMap<String, Row>, color: bool) -> String {
    let mut lines: Vec<(Vec<String>, bool)> = Vec::new();
    for (host, row) in rows {
        let mut cells = vec![host.clone()];
        let trouble;
        match &row.latest {
            Some(s) => {
                for (key, _) in daqdata_client::THREAD_STATE_KEYS {
                    cells.push(s.text(key).unwrap_or("-").to_string());
                }
                cells.push(
                    s.number("NPACKETS")
                        .map_or("-".into(), |n| format!("{n:.0}")),
                );
                let (packets, lost) = row.rates.map_or(("-".into(), "-".into()), |(p, l)| {
                    (format!("{p:.0}"), format!("{l:.1}"))
                });
                cells.push(packets);
                cells.push(lost);
                trouble = row.error.clone().or_else(|| s.trouble());
                cells.push(trouble.clone().unwrap_or_else(|| "ok".into()));
            }
            None => {
                cells.extend(std::iter::repeat_n("-".to_string(), 6));
                trouble = Some(
                    row.error
                        .clone()
                        .unwrap_or_else(|| "waiting for the first read".into()),
                );
                cells.push(trouble.clone().unwrap_or_default());
            }
        }
        lines.push((cells, trouble.is_some()));
    }
    let mut widths: Vec<usize> = COLUMNS.iter().map(|c| c.len()).collect();
    for (cells, _) in &lines {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.len());
        }
    }
    let format_row = |cells: &[String]| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut out = format_row(&header);
    for (cells, bad) in &lines {
        out.push('\n');
        let line = format_row(cells);
        if *bad && color {
            out.push_str(&format!("\x1b[31m{line}\x1b[0m"));
        } else {
            out.push_str(&line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn a_blocked_thread_is_a_red_row_with_its_reason() {
        let mut cards = Map::new();
        cards.insert("NETSTAT".into(), "blocked".into());
        cards.insert("COMPUTES".into(), "waiting".into());
        cards.insert("NPACKETS".into(), 1234.0.into());
        let status = HashpipeStatus {
            host: "daq1".parse().unwrap(),
            name: "daq1".into(),
            read_at: None,
            cards,
            stale: false,
            message: String::new(),
        };
        let mut rows = BTreeMap::new();
        rows.insert(
            "daq1:50051".to_string(),
            Row {
                latest: Some(status),
                rates: Some((16384.0, 0.5)),
                error: None,
            },
        );
        rows.insert(
            "daq2:50051".to_string(),
            Row {
                error: Some("daq2:50051: cannot connect".into()),
                ..Row::default()
            },
        );
        let plain = render(&rows, false);
        let lines: Vec<&str> = plain.lines().collect();
        assert!(lines[0].starts_with("NODE"));
        assert!(
            lines[1].contains("blocked") && lines[1].contains("1234") && lines[1].contains("16384"),
            "{plain}"
        );
        assert!(lines[1].ends_with("net thread blocked"), "{plain}");
        assert!(lines[2].ends_with("daq2:50051: cannot connect"), "{plain}");
        let red = render(&rows, true);
        assert!(red.contains("\x1b[31mdaq1:50051"), "{red}");
    }
}
