//! `daqdata bench`: K concurrent streams (or uploads) against one server,
//! measured after a warm-up: delivered images/s, frame age at receipt,
//! per-client spread, errors by status code, and the server's CPU and RSS.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use daqdata_client::{channel_with, node_stamp_of_header, Connection, Host, Image};
use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{StreamImagesRequest, UploadImageRequest};
use daqdata_proto::{
    decode_pano_image_header, SharedStreamImagesClient, SharedStreamImagesResponse,
};
use hdrhistogram::Histogram;
use procfs::process::Process;
use serde::Serialize;
use tokio::time::Instant as TokioInstant;

/// Options of `daqdata bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The server: HOST, HOST:PORT, tls://HOST:PORT or unix:///path.sock.
    #[arg(long, default_value = "localhost")]
    pub host: String,
    /// Concurrent streams (or upload streams with --upload).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// All clients share one HTTP/2 connection (default: one each).
    #[arg(long)]
    pub shared_connection: bool,
    /// update_interval_seconds each stream asks for; 0 = as fast as the
    /// server's tracker updates.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Stream movie frames (with neither --movie nor --ph: both).
    #[arg(long)]
    pub movie: bool,
    /// Stream pulse-height events.
    #[arg(long)]
    pub ph: bool,
    /// Only these modules; none = all.
    #[arg(long, num_args = 0.., value_name = "ID")]
    pub module_ids: Vec<u32>,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub duration: f64,
    /// Seconds streamed before measuring (connections set up, queues full).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub warmup: f64,
    /// Sample this process's CPU % (of one core) and RSS over the measured
    /// window from /proc (the server's PID).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Upload images as fast as possible instead, and report accepted
    /// images/s (the server must be initialized).
    #[arg(long)]
    pub upload: bool,
    #[command(flatten, next_help_heading = "Access (servers with [access] or TLS)")]
    pub credentials: super::credentials::CredentialArgs,
}

#[derive(Debug, Default, Serialize)]
struct Ages {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    samples: usize,
}

#[derive(Debug, Serialize)]
struct ServerUsage {
    pid: u32,
    cpu_percent: f64,
    peak_rss_kib: u64,
    vm_hwm_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    host: String,
    clients: usize,
    shared_connection: bool,
    interval_seconds: f64,
    movie: bool,
    pulse_height: bool,
    module_ids: Vec<u32>,
    warmup_seconds: f64,
    duration_seconds: f64,
    images: u64,
    images_per_second: f64,
    /// Receive wall time minus the header's tv_sec/tv_usec, milliseconds.
    frame_age_ms: Ages,
    per_client_min_images: u64,
    per_client_max_images: u64,
    errors: BTreeMap<String, u64>,
    server: Option<ServerUsage>,
}

/// What one client saw in the measured window.
#[derive(Default)]
struct ClientResult {
    images: u64,
    ages_ms: Vec<f32>,
    error: Option<String>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.clients == 0 {
        bail!("--clients must be at least 1");
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0) {
        bail!("--duration must be > 0 and --warmup >= 0 seconds");
    }
    let host: Host = args.host.parse()?;
    let channels = connect(&args, &host)?;
    let start = TokioInstant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(args.duration);
    let sampler = args
        .server_pid
        .map(|pid| tokio::spawn(sample_process(pid, measure_from, measure_to)));
    let (movie, ph) = products(&args);
    let tasks = spawn_clients(&args, channels, (movie, ph), measure_from, measure_to);
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.context("a bench client panicked")?);
    }
    let server = match sampler {
        Some(s) => Some(s.await.context("the /proc sampler panicked")??),
        None => None,
    };
    let report = report(&args, &host, (movie, ph), &results, server)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    if report.images == 0 && !report.errors.is_empty() {
        bail!(
            "no images {}",
            if args.upload { "accepted" } else { "delivered" }
        );
    }
    Ok(())
}

/// One connection per client, or one shared by all.
fn connect(args: &BenchArgs, host: &Host) -> anyhow::Result<Vec<Connection>> {
    let credentials = args.credentials.load()?;
    let shared = channel_with(host, &credentials)?;
    let channels = (0..args.clients)
        .map(|_| {
            if args.shared_connection {
                Ok(shared.clone())
            } else {
                channel_with(host, &credentials)
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(channels)
}

/// (movie, pulse height) asked for; neither flag means both.
fn products(args: &BenchArgs) -> (bool, bool) {
    if args.movie || args.ph {
        (args.movie, args.ph)
    } else {
        (true, true)
    }
}

/// One uploading or streaming client per channel, measuring between
/// `from` and `to`.
fn spawn_clients(
    args: &BenchArgs,
    channels: Vec<Connection>,
    (movie, ph): (bool, bool),
    from: TokioInstant,
    to: TokioInstant,
) -> Vec<tokio::task::JoinHandle<ClientResult>> {
    let upload_count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, ch) in channels.into_iter().enumerate() {
        if args.upload {
            let module = args.module_ids.first().copied().unwrap_or(1);
            tasks.push(tokio::spawn(upload_client(
                ch,
                module,
                i as u32,
                from,
                to,
                upload_count.clone(),
            )));
        } else {
            let request = StreamImagesRequest {
                stream_movie_data: movie,
                stream_pulse_height_data: ph,
                update_interval_seconds: args.interval,
                module_ids: args.module_ids.clone(),
            };
            tasks.push(tokio::spawn(stream_client(ch, request, from, to)));
        }
    }
    tasks
}

/// What the clients saw, summed, with the run's settings.
fn report(
    args: &BenchArgs,
    host: &Host,
    (movie, ph): (bool, bool),
    results: &[ClientResult],
    server: Option<ServerUsage>,
) -> anyhow::Result<Report> {
    let mut errors = BTreeMap::new();
    for e in results.iter().filter_map(|r| r.error.clone()) {
        *errors.entry(e).or_insert(0) += 1;
    }
    let images: u64 = results.iter().map(|r| r.images).sum();
    Ok(Report {
        mode: if args.upload { "upload" } else { "stream" },
        host: host.to_string(),
        clients: args.clients,
        shared_connection: args.shared_connection,
        interval_seconds: args.interval,
        movie,
        pulse_height: ph,
        module_ids: args.module_ids.clone(),
        warmup_seconds: args.warmup,
        duration_seconds: args.duration,
        images,
        images_per_second: images as f64 / args.duration,
        frame_age_ms: frame_ages(results)?,
        per_client_min_images: results.iter().map(|r| r.images).min().unwrap_or(0),
        per_client_max_images: results.iter().map(|r| r.images).max().unwrap_or(0),
        errors,
        server,
    })
}

/// The spread of frame ages over every client.
fn frame_ages(results: &[ClientResult]) -> anyhow::Result<Ages> {
    // Microseconds, to three significant digits; a frame stamped after it
    // arrived (the clocks of two machines apart) counts as age 0.
    let mut ages = Histogram::<u64>::new(3)?;
    for age_ms in results.iter().flat_map(|r| r.ages_ms.iter()) {
        ages.record((age_ms.max(0.0) * 1e3) as u64)?;
    }
    let pct = |q: f64| {
        if ages.is_empty() {
            0.0
        } else {
            ages.value_at_quantile(q) as f64 / 1e3
        }
    };
    Ok(Ages {
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: pct(1.0),
        samples: ages.len() as usize,
    })
}

fn print_report(r: &Report) {
    println!(
        "{} bench against {}: {} client(s){}, interval {} s, {} s measured after {} s warm-up",
        r.mode,
        r.host,
        r.clients,
        if r.shared_connection {
            " on one connection"
        } else {
            ", a connection each"
        },
        r.interval_seconds,
        r.duration_seconds,
        r.warmup_seconds
    );
    println!("  images: {} ({:.1}/s)", r.images, r.images_per_second);
    if r.mode == "stream" {
        let a = &r.frame_age_ms;
        println!(
            "  frame age at receipt, ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            a.p50, a.p90, a.p99, a.max, a.samples
        );
    }
    println!(
        "  per client: min {} max {} images",
        r.per_client_min_images, r.per_client_max_images
    );
    for (code, n) in &r.errors {
        println!("  errors: {n} x {code}");
    }
    if let Some(s) = &r.server {
        println!(
            "  server pid {}: CPU {:.1}% of one core, peak RSS {} KiB (VmHWM {:?} KiB)",
            s.pid, s.cpu_percent, s.peak_rss_kib, s.vm_hwm_kib
        );
    }
}

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Opens StreamImages with each image left as encoded bytes, so the
/// generator stays cheap next to the server it measures.
async fn open_stream(
    ch: Connection,
    request: StreamImagesRequest,
) -> Result<tonic::Streaming<SharedStreamImagesResponse>, tonic::Status> {
    Ok(SharedStreamImagesClient::new(ch)
        .max_decoding_message_size(16 << 20)
        .stream_images(request)
        .await?
        .into_inner())
}

async fn stream_client(
    ch: Connection,
    request: StreamImagesRequest,
    from: TokioInstant,
    to: TokioInstant,
) -> ClientResult {
    let mut out = ClientResult::default();
    let mut stream = match tokio::time::timeout_at(to, open_stream(ch, request)).await {
        Ok(Ok(s)) => s,
        Ok(Err(status)) => {
            out.error = Some(code_name(&status));
            return out;
        }
        Err(_) => {
            out.error = Some("no answer before the end".into());
            return out;
        }
    };
    loop {
        let msg = match tokio::time::timeout_at(to, stream.message()).await {
            Err(_) => break,
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                out.error = Some("stream ended by the server".into());
                break;
            }
            Ok(Err(status)) => {
                out.error = Some(code_name(&status));
                break;
            }
        };
        if TokioInstant::now() < from {
            continue;
        }
        out.images += 1;
        let header = msg
            .pano_image
            .as_ref()
            .and_then(|bytes| decode_pano_image_header(bytes).ok())
            .flatten();
        if let Some((sec, usec)) = header.as_ref().and_then(node_stamp_of_header) {
            let age = pff::time::age(pff::time::node_unix_time(sec, usec));
            out.ages_ms.push((age * 1e3) as f32);
        }
    }
    out
}

async fn upload_client(
    ch: Connection,
    module: u32,
    client: u32,
    from: TokioInstant,
    to: TokioInstant,
    total: Arc<AtomicU64>,
) -> ClientResult {
    let mut out = ClientResult::default();
    // A ph256 event stamped now, frame numbers counting up so each is news.
    let template = synthetic_event(module, client);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let requests = futures::stream::unfold(0u32, move |n| {
        let mut image = template.clone();
        let counter = counter.clone();
        let total = total.clone();
        async move {
            let now = TokioInstant::now();
            if now >= to {
                return None;
            }
            image.frame_number = n;
            if now >= from {
                counter.fetch_add(1, Ordering::Relaxed);
                total.fetch_add(1, Ordering::Relaxed);
            }
            Some((
                UploadImageRequest {
                    pano_image: Some(image),
                },
                n.wrapping_add(1),
            ))
        }
    });
    let mut stub = DaqDataClient::new(ch);
    match stub.upload_images(requests).await {
        Ok(_) => out.images = sent.load(Ordering::Relaxed),
        Err(status) => out.error = Some(code_name(&status)),
    }
    out
}

fn synthetic_event(module: u32, client: u32) -> daqdata_proto::daqdata::PanoImage {
    let quabo = pff::Quabo {
        pkt_num: client,
        ..pff::Quabo::default()
    }
    .stamped_now();
    let pixels = pff::Pixels::I16((0..256).map(|i| (i % 37) as i16 * 10).collect());
    let frame = pff::Frame {
        header: pff::Header::new_quabo(0, quabo),
        pixels,
    };
    Image::from_frame(
        pff::DataProduct::Ph256,
        &frame,
        module.into(),
        "bench_upload.pff",
        0,
    )
    .to_pano_image()
}

/// utime + stime of `pid`, clock ticks.
fn cpu_ticks(pid: u32) -> procfs::ProcResult<u64> {
    let stat = Process::new(pid as i32)?.stat()?;
    Ok(stat.utime + stat.stime)
}

/// `/proc/PID/status`: `vmrss` and `vmhwm` in KiB.
fn status(pid: u32) -> Option<procfs::process::Status> {
    Process::new(pid as i32).and_then(|p| p.status()).ok()
}

async fn sample_process(
    pid: u32,
    from: TokioInstant,
    to: TokioInstant,
) -> anyhow::Result<ServerUsage> {
    let hz = procfs::ticks_per_second() as f64;
    cpu_ticks(pid).with_context(|| {
        format!("cannot read /proc/{pid}/stat: is --server-pid the server's PID?")
    })?;
    tokio::time::sleep_until(from).await;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid)?);
    let rss = || status(pid).and_then(|s| s.vmrss).unwrap_or(0);
    let mut peak = rss();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while TokioInstant::now() < to {
        tick.tick().await;
        peak = peak.max(rss());
    }
    let c1 = cpu_ticks(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(ServerUsage {
        pid,
        cpu_percent: (c1.saturating_sub(c0)) as f64 / hz / secs * 100.0,
        peak_rss_kib: peak,
        vm_hwm_kib: status(pid).and_then(|s| s.vmhwm),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_sampling_reads_this_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_ok());
        assert!(status(me).and_then(|s| s.vmrss).unwrap() > 0);
    }

    #[test]
    fn synthetic_uploads_are_valid_ph256_events() {
        let p = synthetic_event(7, 1);
        let image = Image::from_pano_image("bench", &p).unwrap();
        assert_eq!(image.data_product, pff::DataProduct::Ph256);
        assert!(image.node_time().is_some() && image.wr_time().is_some());
    }
}
