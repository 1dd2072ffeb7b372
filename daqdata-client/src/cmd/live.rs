//! Streaming into a live terminal view, a PNG snapshot, or JSON lines.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pff::time::unix_now as now;

use anyhow::{bail, Context as _};
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use daqdata_client::view::{save_png, PhDist, PlotView};
use daqdata_client::{Backoff, DaqClient, Error, Image, StreamSpec};
use futures::StreamExt;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::logs::LogLines;

/// What to do with the stream.
pub struct Live {
    pub plot_view: bool,
    pub plot_phdist: bool,
    pub plot_speed: bool,
    pub json: bool,
    pub refresh_period: f64,
    pub module_ids: Vec<pff::ModuleId>,
    pub snapshot: Option<PathBuf>,
    pub snapshot_frames: u64,
    pub snapshot_timeout: f64,
}

/// The views a run keeps.
#[derive(Default)]
struct Views {
    view: Option<PlotView>,
    phdist: Option<PhDist>,
}

impl Views {
    fn update(&mut self, image: Image) {
        if let Some(d) = &mut self.phdist {
            d.update(&image, now());
        }
        if let Some(v) = &mut self.view {
            v.update(image);
        }
    }

    /// Images the views have taken (a snapshot waits for this many).
    fn frames(&self) -> u64 {
        match (&self.view, &self.phdist) {
            (Some(v), _) => v.frames(),
            (None, Some(d)) => d.frames(),
            (None, None) => 0,
        }
    }
}

/// Ends a wait on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

impl Live {
    fn spec(&self) -> StreamSpec {
        StreamSpec {
            movie: self.plot_view || (self.json && !self.plot_phdist),
            pulse_height: true,
            // The histograms want every event; the view and scripts a
            // frame per refresh.
            update_interval_seconds: if self.plot_phdist {
                0.0
            } else {
                self.refresh_period
            },
            module_ids: self.module_ids.clone(),
        }
    }

    pub async fn run(&self, client: &DaqClient, logs: &LogLines) -> anyhow::Result<()> {
        if !(self.refresh_period.is_finite() && self.refresh_period >= 0.0) {
            bail!(
                "--refresh-period must be a number of seconds >= 0, not {}",
                self.refresh_period
            );
        }
        let views = Views {
            view: self.plot_view.then(PlotView::new),
            phdist: self.plot_phdist.then(PhDist::new),
        };
        if self.json {
            self.run_json(client).await
        } else if self.plot_speed && !(self.plot_view || self.plot_phdist) {
            self.run_speed(client).await
        } else if let Some(path) = &self.snapshot {
            self.run_snapshot(client, views, path).await
        } else {
            self.run_terminal(client, views, logs).await
        }
    }

    async fn run_json(&self, client: &DaqClient) -> anyhow::Result<()> {
        let mut stream = client.stream_images_reconnecting(&self.spec(), Backoff::default());
        let mut tally = Tally::default();
        // One listener for the whole run, so no signal falls between two.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let stdout = std::io::stdout();
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = &mut shutdown => break,
            };
            let Some(item) = item else { break };
            if let Some(image) = tally.take(item) {
                let mut out = stdout.lock();
                if writeln!(out, "{}", image.to_json())
                    .and_then(|_| out.flush())
                    .is_err()
                {
                    // The reader went away (`| head`): a normal end.
                    break;
                }
            }
        }
        tally.result()
    }

    /// The Python demo's `--plot-speed`: everything, as fast as it comes.
    async fn run_speed(&self, client: &DaqClient) -> anyhow::Result<()> {
        let spec = StreamSpec {
            movie: true,
            pulse_height: true,
            update_interval_seconds: 0.0,
            module_ids: self.module_ids.clone(),
        };
        let mut stream = client.stream_images_reconnecting(&spec, Backoff::default());
        let mut tally = Tally::default();
        // One listener for the whole run, so no signal falls between two.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let (mut count, mut since) = (0u64, std::time::Instant::now());
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = &mut shutdown => break,
            };
            let Some(item) = item else { break };
            if tally.take(item).is_some() {
                count += 1;
            }
            let dt = since.elapsed().as_secs_f64();
            if dt > 1.0 {
                println!(
                    "{count:>6} images / {dt:.3} s = {:.1} images/s",
                    count as f64 / dt
                );
                (count, since) = (0, std::time::Instant::now());
            }
        }
        tally.result()
    }

    async fn run_snapshot(
        &self,
        client: &DaqClient,
        mut views: Views,
        path: &std::path::Path,
    ) -> anyhow::Result<()> {
        let mut stream = client.stream_images(&self.spec());
        let mut tally = Tally::default();
        // One listener for the whole run, so no signal falls between two.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        info!(
            "taking {} images for {}",
            self.snapshot_frames,
            path.display()
        );
        // A snapshot is for reports and scripts: it must end even when
        // fewer images come than asked for.
        let deadline = tokio::time::sleep(Duration::from_secs_f64(self.snapshot_timeout.max(0.0)));
        tokio::pin!(deadline);
        while views.frames() < self.snapshot_frames {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = &mut shutdown => break,
                _ = &mut deadline => {
                    warn!(
                        "only {} of {} images within {} s; drawing what came",
                        views.frames(), self.snapshot_frames, self.snapshot_timeout
                    );
                    break;
                }
            };
            let Some(item) = item else { break };
            if let Some(image) = tally.take(item) {
                views.update(image);
            }
        }
        drop(stream);
        if views.frames() == 0 {
            tally.result()?;
            bail!("no images received (for this view) within the snapshot time, so no snapshot");
        }
        let picture = match (&views.view, &views.phdist) {
            (Some(v), None) => v.to_png(),
            (None, Some(d)) => d.to_png(),
            (Some(v), Some(d)) => stack(&v.to_png(), &d.to_png()),
            (None, None) => bail!("--snapshot needs --plot-view or --plot-phdist"),
        };
        save_png(&picture, path)?;
        println!("wrote {} ({} images)", path.display(), views.frames());
        Ok(())
    }

    async fn run_terminal(
        &self,
        client: &DaqClient,
        mut views: Views,
        logs: &LogLines,
    ) -> anyhow::Result<()> {
        // A live view outlives server restarts; each host's outage shows
        // at its foot as "reconnecting to HOST (attempt N)".
        let mut stream = client.stream_images_reconnecting(&self.spec(), Backoff::default());
        // Hashpipe's health above the images, a line per node.
        let mut hashpipe =
            client.stream_hashpipe_status(self.refresh_period.max(1.0), Backoff::default());
        let mut hashpipe_rows = super::hashpipe::Rows::default();
        let mut tally = Tally::default();
        // One listener for the whole run, so no signal falls between two.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut terminal =
            ratatui::try_init().context("cannot set up the terminal for the live view")?;
        let keys = KeyReader::start();
        let period = Duration::from_secs_f64(self.refresh_period.max(0.05));
        let mut tick = tokio::time::interval(period);
        let mut keys_rx = keys.rx;
        let mut ended = false;
        let outcome = loop {
            tokio::select! {
                item = stream.next(), if !ended => match item {
                    Some(item) => if let Some(image) = tally.take(item) { views.update(image) },
                    None => { ended = true; warn!("every host's stream has ended; press q to quit"); }
                },
                Some(item) = hashpipe.next() => hashpipe_rows.take(item),
                _ = tick.tick() => {
                    if let Some(d) = &mut views.phdist {
                        d.advance(now());
                    }
                    let status = format!(
                        "daqdata: {} images from {} host(s), {} ended with errors; q to quit",
                        tally.images, client.hosts().count(), tally.errors.len()
                    );
                    let foot = logs.last(3);
                    let bar = super::hashpipe::bar_lines(&hashpipe_rows);
                    let drawn = terminal.draw(|f| {
                        let [head, hp, body, feet] = Layout::vertical([
                            Constraint::Length(1), Constraint::Length(bar.len() as u16), Constraint::Min(0), Constraint::Length(3),
                        ]).areas(f.area());
                        f.render_widget(Paragraph::new(status.as_str()).style(Style::default().add_modifier(Modifier::REVERSED)), head);
                        f.render_widget(Paragraph::new(bar), hp);
                        match (&views.view, &views.phdist) {
                            (Some(v), Some(d)) => {
                                let [a, b] = Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
                                f.render_widget(v, a);
                                f.render_widget(d, b);
                            }
                            (Some(v), None) => f.render_widget(v, body),
                            (None, Some(d)) => f.render_widget(d, body),
                            (None, None) => {}
                        }
                        f.render_widget(Paragraph::new(foot.into_iter().map(Line::from).collect::<Vec<_>>()), feet);
                    });
                    if let Err(e) = drawn {
                        break Err(anyhow::anyhow!("cannot draw the live view: {e}"));
                    }
                },
                key = keys_rx.recv() => if key.is_none() || key == Some(Quit) { break Ok(()) },
                _ = &mut shutdown => break Ok(()),
            }
        };
        keys.stop.store(true, Ordering::Relaxed);
        // Dropping the streams cancels every RPC before the terminal is back.
        drop(stream);
        drop(hashpipe);
        ratatui::restore();
        for line in logs.last(20) {
            eprintln!("{line}");
        }
        outcome?;
        if tally.images == 0 {
            tally.result()?;
        }
        Ok(())
    }
}

/// Two pictures, one above the other.
fn stack(a: &image::RgbImage, b: &image::RgbImage) -> image::RgbImage {
    let mut out = image::RgbImage::from_pixel(
        a.width().max(b.width()),
        a.height() + b.height(),
        image::Rgb([255, 255, 255]),
    );
    image::imageops::replace(&mut out, a, 0, 0);
    image::imageops::replace(&mut out, b, 0, i64::from(a.height()));
    out
}

/// Images taken and per-host errors met.
#[derive(Default)]
struct Tally {
    images: u64,
    errors: Vec<Error>,
}

impl Tally {
    fn take(&mut self, item: Result<Image, Error>) -> Option<Image> {
        match item {
            Ok(image) => {
                self.images += 1;
                Some(image)
            }
            Err(e) => {
                // That host's part has ended; the others go on.
                error!("{e}");
                self.errors.push(e);
                None
            }
        }
    }

    /// An error when nothing arrived and hosts failed: say why.
    fn result(&self) -> anyhow::Result<()> {
        if self.images == 0 && !self.errors.is_empty() {
            bail!("no images received: every host's stream ended with an error (above)");
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Quit;

/// Reads keys on a thread of its own (crossterm's reads block).
struct KeyReader {
    rx: mpsc::UnboundedReceiver<Quit>,
    stop: Arc<AtomicBool>,
}

impl KeyReader {
    fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(100)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => break,
                }
                let Ok(Event::Key(key)) = event::read() else {
                    continue;
                };
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c;
                if key.kind == KeyEventKind::Press && quit {
                    let _ = tx.send(Quit);
                    break;
                }
            }
        });
        KeyReader { rx, stop }
    }
}
