//! The client of one or more DaqData servers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use daqdata_proto::daqdata::{InitHpIoRequest, PanoImage, StreamImagesRequest, UploadImageRequest};
use futures::{Stream, StreamExt};
use pff::ModuleId;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::reconnect::{self, HostSlot, HostState, HostStates};
use crate::{Credentials, Error, Host, HpIoConfig, Image};
use daqdata_net::{channel_with, Connection};
use daqdata_net::{Attempts, Backoff};

/// How long a ping may take before the host counts as down. The Python
/// client waits 0.3 s; a DAQ node across a gateway deserves a little more.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// InitHpIo may start a simulator or scan a large data directory.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a [`DaqClient::stream_images`] asks each server for.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamSpec {
    /// Movie frames (img8/img16).
    pub movie: bool,
    /// Pulse-height events (ph256/ph1024).
    pub pulse_height: bool,
    /// At most one frame per (module, type) this often; 0 = as fast as the
    /// server's tracker updates.
    pub update_interval_seconds: f64,
    /// Only these modules; empty = all.
    pub module_ids: Vec<ModuleId>,
}

impl StreamSpec {
    fn request(&self) -> StreamImagesRequest {
        StreamImagesRequest {
            stream_movie_data: self.movie,
            stream_pulse_height_data: self.pulse_height,
            update_interval_seconds: self.update_interval_seconds,
            module_ids: self.module_ids.iter().map(|m| m.get()).collect(),
        }
    }
}

/// A server's answer to Status (SPEC §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HpIoStatus {
    /// hp_io runs: an InitHpIo, or the server's start-up config, succeeded.
    pub initialized: bool,
    /// One line: what hp_io follows, or why it does not.
    pub message: String,
}

/// A client of one or more DaqData servers (the DAQ nodes of a run).
///
/// Channels are cheap to clone and connect on first use, so making a
/// client never fails on a host that is down; the RPCs say so.
#[derive(Clone, Debug)]
pub struct DaqClient {
    nodes: Vec<(Host, Connection)>,
}

impl DaqClient {
    /// A client of `hosts` (duplicates are dropped), with no credentials:
    /// what a server gives everyone who reaches it.
    pub fn new(hosts: impl IntoIterator<Item = Host>) -> Result<Self, Error> {
        Self::with_credentials(hosts, &Credentials::default())
    }

    /// A client of `hosts` (duplicates are dropped) that presents
    /// `credentials` to each (SPEC §6).
    pub fn with_credentials(
        hosts: impl IntoIterator<Item = Host>,
        credentials: &Credentials,
    ) -> Result<Self, Error> {
        let mut nodes: Vec<(Host, Connection)> = Vec::new();
        for host in hosts {
            if nodes.iter().all(|(h, _)| *h != host) {
                let ch = channel_with(&host, credentials)?;
                nodes.push((host, ch));
            }
        }
        Ok(DaqClient { nodes })
    }

    /// The same client, for `hosts` only (hosts it does not have are
    /// left out): channels and credentials are shared, not opened again.
    pub fn only(&self, hosts: &[Host]) -> DaqClient {
        DaqClient {
            nodes: self
                .nodes
                .iter()
                .filter(|(h, _)| hosts.contains(h))
                .cloned()
                .collect(),
        }
    }

    /// The configured hosts, in order.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.nodes.iter().map(|(h, _)| h)
    }

    fn stub(&self, host: &Host) -> Option<DaqDataClient<Connection>> {
        self.nodes
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, ch)| DaqDataClient::new(ch.clone()))
    }

    fn stub_or_err(&self, host: &Host) -> Result<DaqDataClient<Connection>, Error> {
        self.stub(host).ok_or_else(|| Error::NotAHost {
            host: host.to_string(),
        })
    }

    /// Checks that `host`'s server answers.
    pub async fn ping(&self, host: &Host) -> Result<(), Error> {
        let mut stub = self.stub_or_err(host)?;
        let mut req = tonic::Request::new(());
        req.set_timeout(PING_TIMEOUT);
        match tokio::time::timeout(PING_TIMEOUT, stub.ping(req)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(Error::rpc(host, "Ping", status)),
            Err(_) => Err(Error::Unreachable {
                host: host.to_string(),
                reason: format!("no answer to Ping within {PING_TIMEOUT:?}"),
            }),
        }
    }

    /// Every host with whether it answered a ping (all pinged at once).
    pub async fn host_status(&self) -> Vec<(Host, Result<(), Error>)> {
        let pings = self
            .nodes
            .iter()
            .map(|(h, _)| async move { (h.clone(), self.ping(h).await) });
        futures::future::join_all(pings).await
    }

    /// Every host's answer to Status (SPEC §2), all asked at once: whether
    /// its hp_io runs and the server's one line on what it follows or why
    /// it does not.
    pub async fn status(&self) -> Vec<(Host, Result<HpIoStatus, Error>)> {
        let calls = self.nodes.iter().map(|(host, ch)| async move {
            let mut stub = DaqDataClient::new(ch.clone());
            let mut req = tonic::Request::new(());
            req.set_timeout(PING_TIMEOUT);
            let result = match tokio::time::timeout(PING_TIMEOUT, stub.status(req)).await {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    Ok(HpIoStatus {
                        initialized: reply.hp_io_initialized,
                        message: reply.message,
                    })
                }
                Ok(Err(status)) => Err(Error::rpc(host, "Status", status)),
                Err(_) => Err(Error::Unreachable {
                    host: host.to_string(),
                    reason: format!("no answer to Status within {PING_TIMEOUT:?}"),
                }),
            };
            (host.clone(), result)
        });
        futures::future::join_all(calls).await
    }

    /// The hosts whose servers answer; an error when none does.
    pub async fn valid_hosts(&self) -> Result<Vec<Host>, Error> {
        let mut valid = Vec::new();
        for (host, status) in self.host_status().await {
            match status {
                Ok(()) => valid.push(host),
                Err(e) => warn!("skipping {host}: {e}"),
            }
        }
        if valid.is_empty() {
            let tried: Vec<String> = self.hosts().map(Host::to_string).collect();
            return Err(Error::NoValidHosts(tried.join(", ")));
        }
        Ok(valid)
    }

    /// The services `host` offers, by gRPC server reflection.
    pub async fn reflect_services(&self, host: &Host) -> Result<crate::ServiceListing, Error> {
        let (_, ch) =
            self.nodes
                .iter()
                .find(|(h, _)| h == host)
                .ok_or_else(|| Error::NotAHost {
                    host: host.to_string(),
                })?;
        crate::reflect::list(host, ch.clone()).await
    }

    /// Sends InitHpIo with `config` to every host at once; one result per
    /// host, as a node that fails must not hide the others' answers.
    pub async fn init_hp_io(&self, config: &HpIoConfig) -> Vec<(Host, Result<(), Error>)> {
        let request = InitHpIoRequest::from(config);
        let calls = self.nodes.iter().map(|(host, ch)| {
            let request = request.clone();
            async move {
                let mut stub = DaqDataClient::new(ch.clone());
                let mut req = tonic::Request::new(request);
                req.set_timeout(INIT_TIMEOUT);
                info!(%host, "InitHpIo");
                let result = match stub.init_hp_io(req).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        if reply.success {
                            Ok(())
                        } else {
                            Err(Error::InitRefused {
                                host: host.to_string(),
                                message: reply.error_message,
                            })
                        }
                    }
                    Err(status) => Err(Error::rpc(host, "InitHpIo", status)),
                };
                (host.clone(), result)
            }
        });
        futures::future::join_all(calls).await
    }

    /// InitHpIo with the simulation configuration `--init-sim` sends.
    pub async fn init_sim(&self) -> Vec<(Host, Result<(), Error>)> {
        self.init_hp_io(&HpIoConfig::simulate()).await
    }

    /// Streams images from every host, merged in arrival order.
    ///
    /// Each host's part runs on its own: when one is down or its stream
    /// ends with an error, that error is yielded once (log it) and the
    /// other hosts go on. The stream ends when every part has ended.
    /// Dropping it cancels all its RPCs.
    pub fn stream_images(&self, spec: &StreamSpec) -> ImageStream {
        self.merged(spec, None, None)
    }

    /// Like [`stream_images`](Self::stream_images), but a host whose stream
    /// ends for a reason that passes (its server went away, restarted or
    /// was reconfigured) is dialled again after `backoff`, logging
    /// "reconnecting to HOST (attempt N)"; only errors that would recur
    /// (a wrong request, refused credentials) end its part.
    pub fn stream_images_reconnecting(&self, spec: &StreamSpec, backoff: Backoff) -> ImageStream {
        self.merged(spec, Some(backoff), None)
    }

    /// Like [`stream_images_reconnecting`](Self::stream_images_reconnecting),
    /// and each host's state (streaming, reconnecting with the attempt
    /// number, refused and why), images and newest frame time can be read
    /// from the returned [`HostStates`] at any time: for a status bar.
    pub fn stream_images_observed(
        &self,
        spec: &StreamSpec,
        backoff: Backoff,
    ) -> (ImageStream, HostStates) {
        let states = HostStates::new(self.hosts());
        let stream = self.merged(spec, Some(backoff), Some(states.clone()));
        (stream, states)
    }

    fn merged(
        &self,
        spec: &StreamSpec,
        reconnect: Option<Backoff>,
        states: Option<HostStates>,
    ) -> ImageStream {
        // Small: a viewer that stops reading should make servers skip
        // frames for it, not grow a queue here.
        let (tx, rx) = mpsc::channel(64);
        let mut tasks = JoinSet::new();
        for (i, (host, ch)) in self.nodes.iter().enumerate() {
            let (host, ch, tx, request) = (host.clone(), ch.clone(), tx.clone(), spec.request());
            // `states` was made from these nodes, in this order.
            let slot = states.as_ref().map(|s| s.slot(i));
            tasks.spawn(async move {
                let mut attempts = reconnect.map(Attempts::new);
                loop {
                    let started = std::time::Instant::now();
                    let ended = stream_one(&host, ch.clone(), request.clone(), &tx, slot.as_ref()).await;
                    if tx.is_closed() {
                        return;
                    }
                    let Some(attempts) = attempts.as_mut() else {
                        if let Err(e) = ended {
                            // The consumer gets the error and decides how loud it is.
                            debug!("{e}");
                            let _ = tx.send(Err(e)).await;
                        }
                        return;
                    };
                    let why = match ended {
                        Ok(()) => "the server ended the stream".to_string(),
                        Err(e) if reconnect::passes(&e) => e.to_string(),
                        Err(e) => {
                            debug!("{e}");
                            if let Some(slot) = &slot {
                                slot.set(HostState::Refused { why: e.to_string() });
                            }
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let (attempt, wait) = attempts.next(started);
                    if let Some(slot) = &slot {
                        slot.set(HostState::Reconnecting { attempt, why: why.clone() });
                    }
                    warn!(%host, "reconnecting to {host} (attempt {attempt}) in {:.1} s: {why}", wait.as_secs_f64());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tx.closed() => return,
                    }
                }
            });
        }
        ImageStream { rx, _tasks: tasks }
    }

    /// Streams every host's Hashpipe status buffer (SPEC §9), one read
    /// about every `update_interval_seconds`, merged in arrival order. Each
    /// host's part reconnects after `backoff` when its trouble passes (an
    /// `Err` item says what it was); a server without the RPC ends only its
    /// part. Rates come from each host's two newest reads.
    pub fn stream_hashpipe_status(
        &self,
        update_interval_seconds: f64,
        backoff: Backoff,
    ) -> crate::HashpipeStream {
        crate::hashpipe::stream_all(&self.nodes, update_interval_seconds, backoff)
    }

    /// Uploads `images` to `host` as if its tracker had read them; returns
    /// when the server has accepted them all.
    pub async fn upload_images<S>(&self, host: &Host, images: S) -> Result<(), Error>
    where
        S: Stream<Item = PanoImage> + Send + 'static,
    {
        let mut stub = self.stub_or_err(host)?;
        let requests = images.map(|image| UploadImageRequest {
            pano_image: Some(image),
        });
        stub.upload_images(requests)
            .await
            .map(|_| ())
            .map_err(|status| Error::rpc(host, "UploadImages", status))
    }
}

/// One host's part of a merged stream.
async fn stream_one(
    host: &Host,
    ch: Connection,
    request: StreamImagesRequest,
    tx: &mpsc::Sender<Result<Image, Error>>,
    slot: Option<&HostSlot>,
) -> Result<(), Error> {
    let mut stub = DaqDataClient::new(ch);
    let mut stream = stub
        .stream_images(request)
        .await
        .map_err(|s| Error::rpc(host, "StreamImages", s))?
        .into_inner();
    info!(%host, "StreamImages started");
    if let Some(slot) = slot {
        slot.set(HostState::Streaming);
    }
    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                info!(%host, "StreamImages ended by the server");
                return Ok(());
            }
            Err(s) => return Err(Error::rpc(host, "StreamImages", s)),
        };
        if !response.message.is_empty() {
            info!(%host, message = %response.message, "server says");
        }
        let Some(p) = response.pano_image else {
            continue;
        };
        let server = if response.name.is_empty() {
            host.to_string()
        } else {
            response.name
        };
        let item = Image::from_pano_image(&server, &p);
        match (&item, slot) {
            (Ok(image), Some(slot)) => slot.received(image),
            (Err(e), _) => debug!("{e}"),
            (Ok(_), None) => {}
        }
        if tx.send(item).await.is_err() {
            // The viewer dropped the stream: returning drops the RPC,
            // which cancels it on the server.
            return Ok(());
        }
    }
}

/// Images merged from every host of a [`DaqClient`]; an `Err` item ends
/// only that host's part. Dropping it cancels every RPC it runs.
pub struct ImageStream {
    rx: mpsc::Receiver<Result<Image, Error>>,
    // Aborted on drop, which drops (and so cancels) each RPC.
    _tasks: JoinSet<()>,
}

impl Stream for ImageStream {
    type Item = Result<Image, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
