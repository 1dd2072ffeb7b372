//! Archived frames, held in memory, grouped by (module, data product).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pff::{DataProduct, Frame, Header, ImageKind, ModuleId, PffName, RawFrame};

use crate::Error;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The frames of one (module, data product), as recorded.
#[derive(PartialEq)]
pub(crate) struct Stream {
    /// Whole frames back to back, exactly as in the fixture files.
    pub bytes: Vec<u8>,
    /// Every frame has this size: Hashpipe's headers are fixed width.
    pub frame_size: usize,
    /// Header bytes of each frame, including the closing `\n\n*`.
    pub header_len: usize,
    /// Each frame's parsed header, to restamp without parsing again.
    pub headers: Vec<Header>,
    /// Frames per second as recorded, where known.
    pub cadence: Option<f64>,
}

impl std::fmt::Debug for Stream {
    // Megabytes of frames help no one reading a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("frames", &self.len())
            .field("frame_size", &self.frame_size)
            .field("cadence", &self.cadence)
            .finish()
    }
}

impl Stream {
    pub(crate) fn len(&self) -> usize {
        self.headers.len()
    }

    pub(crate) fn frame(&self, n: usize) -> &[u8] {
        &self.bytes[n * self.frame_size..(n + 1) * self.frame_size]
    }
}

/// Archived frames to replay, per (fixture module, [`DataProduct`]).
///
/// Cheap to clone (the frames are shared), and immutable: several replays
/// may use the same fixtures at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Fixtures {
    streams: Arc<BTreeMap<(ModuleId, DataProduct), Arc<Stream>>>,
}

/// One fixture file's bytes, wherever they came from.
struct Source {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Fixtures {
    /// Every `*.pff` under `dir` (recursively), grouped by (module, data
    /// product) from the file names; files of one group are joined in seqno
    /// order. A torn last frame is dropped. A `data_config.json` in `dir`
    /// gives the movie cadence (`image.integration_time_usec`).
    pub fn load(dir: &Path) -> Result<Fixtures, Error> {
        let mut sources = Vec::new();
        let mut integration_usec = None;
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let reason = e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("symbolic link loop"));
                Error::io("listing", path, reason)
            })?;
            let name = entry.file_name().to_string_lossy();
            let is_config = name == "data_config.json" && entry.depth() == 1;
            if !entry.file_type().is_file() || !(name.ends_with(".pff") || is_config) {
                continue;
            }
            let path = entry.path().to_path_buf();
            let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
            if is_config {
                integration_usec = integration_time_usec(&path, &bytes)?;
            } else {
                sources.push(Source { path, bytes });
            }
        }
        if sources.is_empty() {
            return Err(Error::NoFixtures(dir.to_path_buf()));
        }
        Fixtures::build(sources, integration_usec)
    }

    /// The repository's `fixtures/`, compiled into the crate, so a server
    /// started from any directory can simulate. Built once per process.
    pub fn embedded() -> Fixtures {
        static EMBEDDED: OnceLock<Fixtures> = OnceLock::new();
        EMBEDDED
            .get_or_init(|| {
                let mut sources = Vec::new();
                let mut integration_usec = None;
                for (name, bytes) in embedded::EMBEDDED {
                    let path = PathBuf::from("fixtures").join(name);
                    if name.ends_with(".pff") {
                        sources.push(Source {
                            path,
                            bytes: bytes.to_vec(),
                        });
                    } else if *name == "data_config.json" {
                        integration_usec = integration_time_usec(&path, bytes).ok().flatten();
                    }
                }
                Fixtures::build(sources, integration_usec).unwrap_or_else(|e| {
                    // The build checks the same files the tests load, so
                    // this only happens with a broken fixtures/ checkout.
                    tracing::error!("the embedded fixtures are unusable: {e}");
                    Fixtures {
                        streams: Arc::default(),
                    }
                })
            })
            .clone()
    }

    /// The (fixture module, data product) pairs held, in order.
    pub fn streams(&self) -> Vec<(ModuleId, DataProduct)> {
        self.streams.keys().copied().collect()
    }

    /// How many frames one stream holds (0 if absent); a replay loops them.
    pub fn frame_count(&self, module: ModuleId, dp: DataProduct) -> usize {
        self.stream(module, dp).map_or(0, |s| s.len())
    }

    /// Frame `n` of a stream as recorded, to compare a replay against.
    pub fn frame(&self, module: ModuleId, dp: DataProduct, n: usize) -> Option<RawFrame> {
        let s = self.stream(module, dp)?;
        if n >= s.len() {
            return None;
        }
        RawFrame::with_header_len(s.frame(n).to_vec(), dp, s.header_len).ok()
    }

    /// Frames per second as recorded, where the fixture says: from
    /// `data_config.json` for movies, else from the average spacing of the
    /// frames' node times.
    pub fn cadence(&self, module: ModuleId, dp: DataProduct) -> Option<f64> {
        self.stream(module, dp)?.cadence
    }

    pub(crate) fn stream(&self, module: ModuleId, dp: DataProduct) -> Option<&Arc<Stream>> {
        self.streams.get(&(module, dp))
    }

    fn build(mut sources: Vec<Source>, integration_usec: Option<f64>) -> Result<Fixtures, Error> {
        let mut named = Vec::with_capacity(sources.len());
        for source in sources.drain(..) {
            let file_name = source
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = PffName::parse(&file_name).map_err(|e| Error::fixture(&source.path, e))?;
            named.push((name, source));
        }
        named.sort_by(|(a, _), (b, _)| {
            (a.module, a.dp, &a.start, a.seqno).cmp(&(b.module, b.dp, &b.start, b.seqno))
        });
        let mut streams: BTreeMap<(ModuleId, DataProduct), Stream> = BTreeMap::new();
        for (name, source) in named {
            let part = parse_frames(&source, name.dp)?;
            match streams.get_mut(&(name.module, name.dp)) {
                None => {
                    streams.insert((name.module, name.dp), part);
                }
                Some(stream) if stream.frame_size == part.frame_size => {
                    stream.bytes.extend_from_slice(&part.bytes);
                    stream.headers.extend(part.headers);
                }
                Some(stream) => {
                    return Err(Error::fixture(
                        &source.path,
                        format!(
                            "frames of {} bytes, but earlier files of module {} {} have {}; \
                             a stream must keep one frame size",
                            part.frame_size, name.module, name.dp, stream.frame_size
                        ),
                    ))
                }
            }
        }
        let streams = streams
            .into_iter()
            .map(|((module, dp), mut stream)| {
                stream.cadence = match (dp.kind(), integration_usec) {
                    (ImageKind::Movie, Some(usec)) => Some(1e6 / usec),
                    _ => mean_cadence(&stream.headers),
                };
                ((module, dp), Arc::new(stream))
            })
            .collect();
        Ok(Fixtures {
            streams: Arc::new(streams),
        })
    }
}

/// Splits a fixture file into whole frames and checks that restamping
/// keeps their size.
fn parse_frames(source: &Source, dp: DataProduct) -> Result<Stream, Error> {
    let bytes = &source.bytes;
    let header_len = pff::header_len(bytes).map_err(|e| Error::fixture(&source.path, e))?;
    let frame_size = header_len + dp.image_bytes();
    let count = bytes.len() / frame_size;
    if count == 0 {
        return Err(Error::fixture(&source.path, "holds no complete frame"));
    }
    if bytes.len() % frame_size != 0 {
        tracing::warn!(
            "fixture {}: dropping a torn last frame of {} bytes",
            source.path.display(),
            bytes.len() % frame_size
        );
    }
    let mut headers = Vec::with_capacity(count);
    for n in 0..count {
        let at = n * frame_size;
        let (frame, len) = Frame::parse(&bytes[at..at + frame_size], dp)
            .map_err(|e| Error::fixture(&source.path, format!("frame {n} at byte {at}: {e}")))?;
        // Restamped headers are printed by `pff` with Hashpipe's widths;
        // they must come out the same size, or readers seeking by frame
        // size would misalign.
        let reprinted = frame.header.map_quabos(|q| q);
        if len != frame_size || reprinted.text().len() + 3 != header_len {
            return Err(Error::fixture(
                &source.path,
                format!("frame {n} at byte {at} does not have Hashpipe's fixed-width header"),
            ));
        }
        headers.push(frame.header);
    }
    Ok(Stream {
        bytes: bytes[..count * frame_size].to_vec(),
        frame_size,
        header_len,
        headers,
        cadence: None,
    })
}

/// Frames per second on average over the recording. Pulse-height frames
/// come in trigger bursts, so the median spacing says little (in the Lick
/// fixtures it gives 1.6/s for one module and 1900/s for another, whose
/// averages are 1.1/s and 6/s); the average replays the fixture in the time
/// it took to record.
fn mean_cadence(headers: &[Header]) -> Option<f64> {
    let times: Vec<f64> = headers
        .iter()
        .filter_map(|h| h.timing_quabo().map(|q| q.node_time()))
        .collect();
    let first = times.iter().copied().reduce(f64::min)?;
    let last = times.iter().copied().reduce(f64::max)?;
    let span = last - first;
    (span > 0.0).then(|| (times.len() - 1) as f64 / span)
}

/// `image.integration_time_usec` of a PANOSETI `data_config.json`.
fn integration_time_usec(path: &Path, bytes: &[u8]) -> Result<Option<f64>, Error> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::fixture(path, format!("not JSON: {e}")))?;
    Ok(json
        .pointer("/image/integration_time_usec")
        .and_then(serde_json::Value::as_f64)
        .filter(|usec| *usec > 0.0))
}
