//! Prometheus metrics (`/metrics` on `metrics_listen`, default
//! `127.0.0.1:9108`), with the Prometheus project's own client.
//!
//! Labels stay bounded: module and data product (a DAQ has tens of
//! modules, there are four products), status codes, outcomes, and the one
//! current hp_io configuration. Never a peer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use procfs::WithCurrentSystemInfo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// One module's one data product.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SlotLabels {
    pub module: u32,
    pub data_product: &'static str,
}

/// An RPC refused, and how.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusedLabels {
    pub rpc: &'static str,
    pub code: String,
}

/// Accepted or refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

/// The running hp_io configuration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HpIoLabels {
    pub data_dir: String,
    pub interval_seconds: String,
    pub simulate: String,
    pub modules: String,
}

/// One upstream of a gateway (SPEC §8), as configured.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct UpstreamLabels {
    pub upstream: String,
}

/// Every metric the server keeps.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub frames_tracked: Family<SlotLabels, Counter>,
    pub images_sent: Counter,
    pub frames_skipped: Counter,
    pub stream_wakeups: Counter,
    pub active_streams: Gauge,
    pub active_peers: Gauge,
    pub refused: Family<RefusedLabels, Counter>,
    pub uploads: Family<OutcomeLabels, Counter>,
    pub frame_age: Histogram,
    /// Shared with every hp_io tracker (`TrackerConfig::wakeups`).
    pub tracker_wakeups: Arc<AtomicU64>,
    pub hp_io_generation: Counter,
    pub hp_io: Family<HpIoLabels, Gauge>,
    pub hashpipe: crate::hashpipe_status::HashpipeMetrics,
    /// A gateway's upstreams: 1 while relaying.
    pub upstream_up: Family<UpstreamLabels, Gauge>,
    pub upstream_images: Family<UpstreamLabels, Counter>,
    pub upstream_reconnects: Family<UpstreamLabels, Counter>,
    registry: Registry,
}

impl Metrics {
    pub(crate) fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("daqdata");
        let m = Metrics {
            frames_tracked: Family::default(),
            images_sent: Counter::default(),
            frames_skipped: Counter::default(),
            stream_wakeups: Counter::default(),
            active_streams: Gauge::default(),
            active_peers: Gauge::default(),
            refused: Family::default(),
            uploads: Family::default(),
            // 50 us .. 1.6 s.
            frame_age: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            tracker_wakeups: Arc::default(),
            hp_io_generation: Counter::default(),
            hp_io: Family::default(),
            hashpipe: Default::default(),
            upstream_up: Family::default(),
            upstream_images: Family::default(),
            upstream_reconnects: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "frames_tracked",
            "Frames hp_io handed on (files and Hashpipe's sockets), per module and data product",
            m.frames_tracked.clone(),
        );
        registry.register(
            "images_sent",
            "Images sent to StreamImages clients",
            m.images_sent.clone(),
        );
        registry.register("frames_skipped", "Frames a stream did not send because a newer one replaced them after they fell due (a slow client)", m.frames_skipped.clone());
        registry.register(
            "stream_wakeups",
            "Times StreamImages calls woke to look at their slots (a frame came for a due slot, a slot fell due, or new slots appeared): about one per image sent",
            m.stream_wakeups.clone(),
        );
        registry.register(
            "active_streams",
            "StreamImages calls open",
            m.active_streams.clone(),
        );
        registry.register(
            "active_peers",
            "Distinct remote addresses (and the unix socket) with a stream open",
            m.active_peers.clone(),
        );
        registry.register(
            "refused_rpcs",
            "RPCs refused, by RPC and status code",
            m.refused.clone(),
        );
        registry.register(
            "uploads",
            "UploadImages images accepted, and calls refused",
            m.uploads.clone(),
        );
        registry.register(
            "frame_age_seconds",
            "Receipt at hp_io minus the frame's own tv_sec/tv_usec",
            m.frame_age.clone(),
        );
        registry.register(
            "hp_io_generation",
            "hp_io configurations started (InitHpIo successes and restores)",
            m.hp_io_generation.clone(),
        );
        registry.register(
            "hp_io",
            "The running hp_io configuration (value 1)",
            m.hp_io.clone(),
        );
        m.hashpipe.register(&mut registry);
        registry.register(
            "gateway_upstream_up",
            "A gateway's upstream: 1 while its stream relays, 0 while idle or down",
            m.upstream_up.clone(),
        );
        registry.register(
            "gateway_upstream_images",
            "Images a gateway received from each upstream",
            m.upstream_images.clone(),
        );
        registry.register(
            "gateway_upstream_reconnects",
            "Times a gateway's upstream stream broke or was refused and is retried",
            m.upstream_reconnects.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector {
            tracker_wakeups: m.tracker_wakeups.clone(),
        }));
        Arc::new(Metrics { registry, ..m })
    }

    /// The Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }

    /// Counts a refused RPC.
    pub(crate) fn refused(&self, rpc: &'static str, code: tonic::Code) {
        self.refused
            .get_or_create(&RefusedLabels {
                rpc,
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// Marks `labels` as the running hp_io configuration.
    pub(crate) fn set_hp_io(&self, labels: Option<HpIoLabels>) {
        self.hp_io.clear();
        if let Some(labels) = labels {
            self.hp_io.get_or_create(&labels).set(1);
            self.hp_io_generation.inc();
        }
    }
}

/// What is read at each scrape: the trackers' wake-ups, and the process's
/// CPU time, resident memory, threads and open files from /proc.
#[derive(Debug)]
struct ProcessCollector {
    tracker_wakeups: Arc<AtomicU64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let mut put = |name: &str, help: &str, metric: &dyn EncodeMetric| {
            let e = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(e)
        };
        put(
            "tracker_wakeups",
            "Times hp_io's tracker threads woke (to look at files, or on a notification)",
            &ConstCounter::new(self.tracker_wakeups.load(Ordering::Relaxed)),
        )?;
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            put(
                "process_cpu_seconds",
                "CPU time of the server process (user + system)",
                &ConstCounter::new((stat.utime + stat.stime) as f64 / ticks),
            )?;
            put(
                "process_resident_memory_bytes",
                "Resident memory of the server process",
                &ConstGauge::new(stat.rss_bytes().get() as i64),
            )?;
            put(
                "process_threads",
                "Threads of the server process",
                &ConstGauge::new(stat.num_threads),
            )?;
        }
        if let Ok(n) = me.fd_count() {
            put(
                "process_open_fds",
                "Open file descriptors of the server process",
                &ConstGauge::new(n as i64),
            )?;
        }
        Ok(())
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown`; returns the bound
/// address.
pub(crate) async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    let fail = |reason: String| Error::Listen {
        addr: format!("metrics_listen {addr}"),
        reason,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| fail(format!("binding: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| fail(format!("reading the bound address: {e}")))?;
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => return,
                conn = listener.accept() => conn,
            };
            let (stream, _) = match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("metrics endpoint: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&metrics, &req)) }
            });
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(io, service)
                    .await;
                if let Err(e) = served {
                    tracing::debug!("metrics endpoint: {e}");
                }
            });
        }
    });
    Ok(bound)
}

fn respond<B>(metrics: &Metrics, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode(),
        ),
        (&http::Method::GET, "/") => (
            http::StatusCode::OK,
            "text/plain; charset=utf-8",
            "daqdata-server: metrics at /metrics\n".to_string(),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: metrics are at GET /metrics\n".to_string(),
        ),
    };
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| http::Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_metric_and_the_process() {
        let m = Metrics::new();
        m.images_sent.inc_by(3);
        m.frames_tracked
            .get_or_create(&SlotLabels {
                module: 1,
                data_product: "img16",
            })
            .inc();
        m.refused("StreamImages", tonic::Code::Unavailable);
        m.set_hp_io(Some(HpIoLabels {
            data_dir: "/mnt/panoseti".into(),
            interval_seconds: "0.1".into(),
            simulate: "false".into(),
            modules: "".into(),
        }));
        let text = m.encode();
        for line in [
            "daqdata_images_sent_total 3",
            "daqdata_frames_tracked_total{module=\"1\",data_product=\"img16\"} 1",
            "daqdata_refused_rpcs_total{rpc=\"StreamImages\",code=\"Unavailable\"} 1",
            "daqdata_hp_io_generation_total 1",
            "daqdata_process_open_fds ",
            "daqdata_process_resident_memory_bytes ",
            "daqdata_frame_age_seconds_bucket",
            "daqdata_tracker_wakeups_total 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        m.set_hp_io(None);
        assert!(!m.encode().contains("/mnt/panoseti"));
    }
}
