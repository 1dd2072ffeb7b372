//! `daqdata --hashpipe-status`: Hashpipe's status buffer of every node at
//! once, as a table that refreshes in place (what `hashpipe_status_monitor`
//! shows on one DAQ node), or one JSON line per read with `--json`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use pff::time::unix_now as now;

use anyhow::bail;
use daqdata_client::{Backoff, DaqClient, HashpipeStatus};
use futures::StreamExt;

use super::live::shutdown_signal;

/// One row of the table: a node's newest read, or why its host has none.
#[derive(Clone, Debug)]
pub enum Row {
    Read(Box<HashpipeStatus>),
    Failed { host: String, why: String },
}

/// Every node's newest row, by node name (a gateway's host carries several).
#[derive(Default)]
pub struct Rows(BTreeMap<String, Row>);

impl Rows {
    /// Every node's row, by node name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Row)> {
        self.0.iter()
    }

    pub fn take(&mut self, item: Result<HashpipeStatus, daqdata_client::Error>) {
        match item {
            Ok(status) => {
                // The host answers again: its failure row goes.
                self.0
                    .retain(|_, r| !matches!(r, Row::Failed { host, .. } if *host == status.host));
                self.0
                    .insert(status.name.clone(), Row::Read(Box::new(status)));
            }
            Err(e) => {
                let host = e.host().unwrap_or_default();
                self.0
                    .retain(|_, r| !matches!(r, Row::Read(s) if s.host == host));
                let why = if e.code() == Some(tonic::Code::Unimplemented) {
                    "no Hashpipe status: the server does not offer StreamHashpipeStatus (the Python server, or an older daqdata-server)".to_string()
                } else {
                    // The row names the host already.
                    let why = e.to_string();
                    why.strip_prefix(&format!("{host}: "))
                        .map_or(why.clone(), str::to_string)
                };
                self.0.insert(host.clone(), Row::Failed { host, why });
            }
        }
    }
}

const HEAD: [&str; 9] = [
    "NODE", "NET", "COMPUTE", "OUTPUT", "PKT/S", "LOST/S", "NETDROPS", "AGE", "STATE",
];

/// The table at `now` (Unix seconds); rows with a problem in red when
/// `colour` (a terminal).
pub fn table(rows: &Rows, now: f64, colour: bool) -> String {
    let cells: Vec<(Vec<String>, bool)> = rows
        .0
        .iter()
        .map(|(name, row)| match row {
            Row::Read(s) => {
                let thread = |key: &str| {
                    s.threads()
                        .into_iter()
                        .find(|t| t.key == key)
                        .map_or_else(|| "-".to_string(), |t| t.state)
                };
                let number =
                    |n: Option<f64>| n.map_or_else(|| "-".to_string(), |n| format!("{n:.0}"));
                let problems = s.problems();
                let state = if problems.is_empty() {
                    "ok".to_string()
                } else {
                    problems.join("; ")
                };
                let age = s
                    .age(now)
                    .map_or_else(|| "-".to_string(), |a| format!("{a:.1} s"));
                (
                    vec![
                        name.clone(),
                        thread("NETSTAT"),
                        thread("COMPUTES"),
                        thread("OUTSTAT"),
                        number(s.packets_per_second),
                        number(s.losses_per_second),
                        number(s.net_drops()),
                        age,
                        state,
                    ],
                    !problems.is_empty(),
                )
            }
            Row::Failed { why, .. } => {
                let mut r = vec![name.clone()];
                r.extend(std::iter::repeat_n("-".to_string(), 7));
                r.push(why.clone());
                (r, true)
            }
        })
        .collect();
    let mut widths: Vec<usize> = HEAD.iter().map(|h| h.len()).collect();
    for (row, _) in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let last = row.len() - 1;
        row.iter()
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
    let head: Vec<String> = HEAD.iter().map(|h| h.to_string()).collect();
    let mut out = line(&head);
    out.push('\n');
    for (row, bad) in &cells {
        let text = line(row);
        if *bad && colour {
            out += &format!("\x1b[31m{text}\x1b[0m");
        } else {
            out += &text;
        }
        out.push('\n');
    }
    if cells.is_empty() {
        out += "(no read yet)\n";
    }
    out
}

/// The terminal view's Hashpipe bar: a line per node, red with the reason
/// when a thread is blocked or has exited, the buffer is stale, or the
/// host has no status to give.
pub fn bar_lines(rows: &Rows) -> Vec<ratatui::text::Line<'static>> {
    use ratatui::style::{Color, Style};
    let red = Style::default().fg(Color::Red);
    rows.0
        .iter()
        .map(|(name, row)| match row {
            Row::Read(s) => {
                let text = format!("{name} Hashpipe: {}", s.summary());
                if s.problems().is_empty() {
                    ratatui::text::Line::from(text)
                } else {
                    ratatui::text::Line::styled(text, red)
                }
            }
            Row::Failed { why, .. } => {
                ratatui::text::Line::styled(format!("{name} Hashpipe: {why}"), red)
            }
        })
        .collect()
}

/// Streams every host's status until Ctrl-C, SIGTERM or a closed stdout.
pub async fn run(client: &DaqClient, refresh_period: f64, json: bool) -> anyhow::Result<()> {
    if !(refresh_period.is_finite() && refresh_period >= 0.0) {
        bail!("--refresh-period must be a number of seconds >= 0, not {refresh_period}");
    }
    let mut stream = client.stream_hashpipe_status(refresh_period, Backoff::default());
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(refresh_period.max(0.1)));
    let mut rows = Rows::default();
    let mut changed = false;
    loop {
        let written = tokio::select! {
            item = stream.next() => {
                let Some(item) = item else { break };
                if json {
                    let line = match &item {
                        Ok(s) => s.to_json(),
                        Err(e) => serde_json::json!({
                            "host": e.host().unwrap_or_default(),
                            "error": e.to_string(),
                        }),
                    };
                    let mut out = stdout.lock();
                    writeln!(out, "{line}").and_then(|_| out.flush())
                } else {
                    rows.take(item);
                    changed = true;
                    Ok(())
                }
            },
            _ = tick.tick(), if !json && (changed || terminal) => {
                changed = false;
                let mut out = stdout.lock();
                // In a terminal the table is redrawn in place (its ages
                // move); piped, each new read gives a block of its own.
                let clear = if terminal { "\x1b[H\x1b[2J" } else { "" };
                writeln!(out, "{clear}{}", table(&rows, now(), terminal)).and_then(|_| out.flush())
            },
            _ = &mut shutdown => break,
        };
        if written.is_err() {
            // The reader went away (`| head`): a normal end.
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use daqdata_proto::daqdata::StreamHashpipeStatusResponse;

    fn read(node: &str, net: &str) -> Result<HashpipeStatus, daqdata_client::Error> {
        let text = |s: &str| prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue(s.into())),
        };
        let response = StreamHashpipeStatusResponse {
            name: node.into(),
            read_at: Some(prost_types::Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            cards: Some(prost_types::Struct {
                fields: [("NETSTAT".to_string(), text(net))].into_iter().collect(),
            }),
            stale: false,
            message: String::new(),
        };
        let host = "daq:50051".parse().unwrap();
        Ok(HashpipeStatus::from_response(&host, response, None))
    }

    #[test]
    fn a_blocked_node_is_red_in_the_table_and_the_bar_and_a_well_one_is_not() {
        let mut rows = Rows::default();
        rows.take(read("daq1", "blocked"));
        rows.take(read("daq2", "receiving"));
        let coloured = table(&rows, 102.5, true);
        let lines: Vec<&str> = coloured.lines().collect();
        assert!(lines[0].starts_with("NODE"), "{coloured}");
        assert!(
            lines[1].starts_with("\x1b[31mdaq1") && lines[1].contains("net thread blocked"),
            "{coloured}"
        );
        assert!(
            lines[2].starts_with("daq2") && lines[2].ends_with("ok"),
            "{coloured}"
        );
        assert!(lines[2].contains("2.5 s"), "the read's age: {coloured}");
        assert!(!table(&rows, 102.5, false).contains('\x1b'));

        let bar = bar_lines(&rows);
        assert_eq!(bar[0].style.fg, Some(ratatui::style::Color::Red));
        assert_eq!(bar[1].style.fg, None);
    }

    #[test]
    fn a_host_that_fails_replaces_its_nodes_and_comes_back() {
        let mut rows = Rows::default();
        rows.take(read("daq1", "receiving"));
        let host: daqdata_client::Host = "daq:50051".parse().unwrap();
        let gone = daqdata_client::Error::Unreachable {
            host: host.to_string(),
            reason: "Connection refused".into(),
        };
        rows.take(Err(gone));
        let t = table(&rows, 100.0, false);
        assert!(!t.contains("daq1 "), "{t}");
        assert!(
            t.contains("daq:50051") && t.contains("cannot connect"),
            "{t}"
        );
        rows.take(read("daq1", "receiving"));
        let t = table(&rows, 100.0, false);
        assert!(t.contains("daq1") && !t.contains("cannot connect"), "{t}");
    }
}
