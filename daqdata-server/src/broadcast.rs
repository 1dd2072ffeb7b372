//! The newest frame of each (module, data product), shared by every stream.
//!
//! The tracker (or an upload) publishes a frame into its slot; streams
//! watch the slots they want and take the newest frame when their pace
//! allows. A frame is encoded to protobuf at most once, by the first stream
//! that takes it, and every other stream sends the same bytes. A slow
//! stream never holds anything up: a slot keeps only the newest frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use bytes::Bytes;
use daqdata_proto::daqdata::PanoImage;
use pff::{DataProduct, ModuleId, ModuleProduct, RawFrame};
use tokio::sync::watch;

use crate::metrics::{Metrics, SlotLabels};

/// What a slot (one origin's one module's one data product, a [`SlotKey`])
/// holds: the newest frame, or nothing yet.
pub(crate) type Slot = Option<Arc<SharedFrame>>;

/// A slot: a module's data product, from one origin. Origin 0 is this
/// server's own hp_io and uploads; a gateway's upstream `i` is origin
/// `i + 1` (SPEC §8: two nodes reporting one module id never overwrite
/// each other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SlotKey {
    pub origin: u32,
    pub product: ModuleProduct,
}

impl SlotKey {
    /// A slot this server's own hp_io or uploads feed.
    fn local(product: ModuleProduct) -> Self {
        SlotKey { origin: 0, product }
    }
}

/// Where a frame came from.
enum Source {
    /// Read from a PFF file by hp_io.
    Tracked {
        frame: RawFrame,
        file: Arc<str>,
        index: u64,
    },
    /// Sent by a client through UploadImages (already validated).
    Uploaded(PanoImage),
    /// Relayed from a gateway's upstream, already encoded (the bytes are
    /// in `encoded` from the start) under the upstream's response name.
    Relayed { name: Arc<str> },
}

/// How many earlier publishes of its slot a frame remembers, for counting
/// what a slow stream skipped.
pub(crate) const REMEMBERED: usize = 8;

/// One frame, as every stream will send it.
pub(crate) struct SharedFrame {
    module: ModuleId,
    source: Source,
    /// Pushed through Hashpipe's socket rather than read from a file.
    pushed: bool,
    /// The header's stamp, once someone needed it (see [`SharedFrame::stamp`]).
    stamp: OnceLock<Option<pff::Quabo>>,
    encoded: OnceLock<Option<Bytes>>,
    /// Its place in its slot: 1 for the first frame published there.
    seq: u64,
    published: Instant,
    /// When the frames before it in the slot were published, newest first.
    before: [Option<Instant>; REMEMBERED],
}

impl SharedFrame {
    fn new(module: ModuleId, source: Source, pushed: bool) -> Self {
        SharedFrame {
            module,
            source,
            pushed,
            stamp: OnceLock::new(),
            encoded: OnceLock::new(),
            seq: 1,
            published: Instant::now(),
            before: [None; REMEMBERED],
        }
    }

    /// Its place in its slot, counting from 1.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// How many of the frames published into its slot after `last_seq` and
    /// before it came at or after `since`: those a stream that sent
    /// `last_seq` and fell due at `since` let a newer frame replace (up to
    /// [`REMEMBERED`] of them).
    pub(crate) fn replaced_since(&self, last_seq: u64, since: Instant) -> u64 {
        let unsent = self.seq.saturating_sub(last_seq + 1) as usize;
        self.before
            .iter()
            .take(unsent)
            .filter(|t| t.is_some_and(|t| t >= since))
            .count() as u64
    }

    /// The encoded `PanoImage`; `None` if the frame's header is not JSON
    /// (such a frame is skipped, and logged once, by the first taker).
    pub(crate) fn encoded(&self) -> Option<&Bytes> {
        self.encoded
            .get_or_init(|| match &self.source {
                Source::Uploaded(image) => Some(daqdata_proto::encode_pano_image(image)),
                // Set when made: never reached.
                Source::Relayed { .. } => None,
                Source::Tracked { frame, file, index } => {
                    match PanoImage::from_frame(self.module, frame, file, *index) {
                        Ok(image) => Some(daqdata_proto::encode_pano_image(&image)),
                        Err(e) => {
                            tracing::warn!("skipping frame {index} of {file}: {e}");
                            None
                        }
                    }
                }
            })
            .as_ref()
    }

    /// The name of the server that sent it, when it was relayed.
    pub(crate) fn relayed_name(&self) -> Option<&Arc<str>> {
        match &self.source {
            Source::Relayed { name } => Some(name),
            _ => None,
        }
    }

    /// The header's node time stamp (`tv_sec`, `tv_usec` of its first
    /// quabo), if it has one; parsed only where files and sockets feed one
    /// slot.
    fn stamp(&self) -> Option<pff::Quabo> {
        *self.stamp.get_or_init(|| {
            let Source::Tracked { frame, .. } = &self.source else {
                return None;
            };
            let header = pff::Header::parse(frame.header_text().ok()?).ok()?;
            header.timing_quabo().copied()
        })
    }

    /// SPEC §7: where files and sockets both feed a slot, a frame stamped
    /// before the slot's current one would take streams back in time.
    /// Files alone are not checked: the tracker reads in order.
    fn is_older_than(&self, current: &SharedFrame) -> bool {
        if !(self.pushed || current.pushed) {
            return false;
        }
        let node_time = |q: pff::Quabo| (q.tv_sec, q.tv_usec);
        matches!((self.stamp().map(node_time), current.stamp().map(node_time)),
            (Some(new), Some(now)) if new < now)
    }
}

/// All slots of one hp_io configuration.
pub(crate) struct Broadcast {
    slots: RwLock<HashMap<SlotKey, Arc<watch::Sender<Slot>>>>,
    /// Notified whenever a slot is added, so streams can subscribe to it.
    /// It carries no value: a notification is the whole message.
    keys: watch::Sender<()>,
    /// Streams watching; see [`Watching`].
    watchers: AtomicUsize,
    metrics: Arc<Metrics>,
    /// Tracked frames so far, for sampling their age.
    tracked: AtomicUsize,
}

/// A stream watching a [`Broadcast`]. While none does, the tracker reads
/// nothing, so the tracked frames the slots hold grow stale: the first
/// stream to come empties them, and starts with the fresh frames the tracker hands on
/// when it wakes.
pub(crate) struct Watching(Arc<Broadcast>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Broadcast {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Broadcast {
            slots: RwLock::new(HashMap::new()),
            keys: watch::Sender::new(()),
            watchers: AtomicUsize::new(0),
            metrics,
            tracked: AtomicUsize::new(0),
        }
    }

    /// Counts a stream in until the guard is dropped; the first of a
    /// quiet spell empties the slots (see [`Watching`]). Call it before
    /// taking the tracker's demand, which refills them.
    pub(crate) fn watch(self: &Arc<Self>) -> Watching {
        if self.watchers.fetch_add(1, Ordering::AcqRel) == 0 {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            for slot in slots.values() {
                // Uploads are not read by the tracker and stay; relayed
                // frames are as stale as tracked ones (a gateway's
                // upstreams are closed while no one watches).
                slot.send_if_modified(|frame| {
                    let stale = frame
                        .as_ref()
                        .is_some_and(|f| !matches!(f.source, Source::Uploaded(_)));
                    if stale {
                        *frame = None;
                    }
                    stale
                });
            }
        }
        Watching(self.clone())
    }

    /// A frame read by hp_io.
    pub(crate) fn publish_tracked(&self, event: hpio::FrameEvent) {
        let key = event.module_product();
        let frame = SharedFrame::new(
            event.module,
            Source::Tracked {
                frame: event.frame,
                file: event.file,
                index: event.frame_index,
            },
            false,
        );
        self.count_tracked(key, &frame);
        self.publish(SlotKey::local(key), frame);
    }

    /// A frame Hashpipe pushed through its socket: `file` is
    /// `uds_{dp_name}`, `index` counts from 0 per connection; `header` is
    /// the frame's, already parsed by the socket's decoder.
    pub(crate) fn publish_pushed(
        &self,
        module: ModuleId,
        frame: RawFrame,
        header: &pff::Header,
        file: Arc<str>,
        index: u64,
    ) {
        let key = ModuleProduct::new(module, frame.data_product());
        let frame = SharedFrame::new(module, Source::Tracked { frame, file, index }, true);
        let _ = frame.stamp.set(header.timing_quabo().copied());
        self.count_tracked(key, &frame);
        self.publish(SlotKey::local(key), frame);
    }

    /// An uploaded image of product `dp`.
    pub(crate) fn publish_uploaded(&self, dp: DataProduct, image: PanoImage) {
        let module = image.module();
        let frame = SharedFrame::new(module, Source::Uploaded(image), false);
        self.publish(SlotKey::local(ModuleProduct::new(module, dp)), frame);
    }

    /// An encoded `PanoImage` of `product` relayed from a gateway's
    /// upstream `origin` (1 or more), sent there under `name`.
    pub(crate) fn publish_relayed(
        &self,
        origin: u32,
        product: ModuleProduct,
        name: Arc<str>,
        encoded: Bytes,
    ) {
        let frame = SharedFrame::new(product.module, Source::Relayed { name }, false);
        let _ = frame.encoded.set(Some(encoded));
        self.publish(SlotKey { origin, product }, frame);
    }

    fn publish(&self, key: SlotKey, mut frame: SharedFrame) {
        self.sender(key).send_if_modified(|slot| {
            if let Some(now) = slot.as_ref() {
                if frame.is_older_than(now) {
                    return false;
                }
                frame.seq = now.seq + 1;
                frame.before[0] = Some(now.published);
                frame.before[1..].copy_from_slice(&now.before[..REMEMBERED - 1]);
            }
            *slot = Some(Arc::new(frame));
            true
        });
    }

    /// Metrics of a frame hp_io handed on: counted per slot, and its age
    /// (receipt minus its own time stamp) sampled one frame in eight, since
    /// reading the stamp means parsing the header.
    fn count_tracked(&self, key: ModuleProduct, frame: &SharedFrame) {
        self.metrics
            .frames_tracked
            .get_or_create(&SlotLabels {
                module: key.module.get(),
                data_product: key.dp.name(),
            })
            .inc();
        if self.tracked.fetch_add(1, Ordering::Relaxed) % 8 != 0 {
            return;
        }
        if let Some(quabo) = frame.stamp() {
            self.metrics.frame_age.observe(quabo.age());
        }
    }

    fn sender(&self, key: SlotKey) -> Arc<watch::Sender<Slot>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map
        // itself is still whole, so go on with it.
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let sender = slots
            .entry(key)
            .or_insert_with(|| Arc::new(watch::Sender::new(None)))
            .clone();
        drop(slots);
        self.keys.send_replace(());
        sender
    }

    /// Tells a stream when new slots appear.
    pub(crate) fn watch_keys(&self) -> watch::Receiver<()> {
        self.keys.subscribe()
    }

    /// Receivers for the slots that `wanted` accepts and are not in `have`.
    pub(crate) fn subscribe_new(
        &self,
        have: &[SlotKey],
        wanted: impl Fn(&ModuleProduct) -> bool,
    ) -> Vec<(SlotKey, watch::Receiver<Slot>)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let mut new: Vec<_> = slots
            .iter()
            .filter(|(k, _)| wanted(&k.product) && !have.contains(k))
            .map(|(k, s)| {
                let mut rx = s.subscribe();
                // The frame already there is news to a new stream.
                rx.mark_changed();
                (*k, rx)
            })
            .collect();
        new.sort_by_key(|(k, _)| *k);
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_subscriber_sees_the_frame_already_there_and_nothing_twice() {
        let b = Broadcast::new(Metrics::new());
        let image = PanoImage {
            module_id: 3,
            ..Default::default()
        };
        b.publish_uploaded(DataProduct::Ph256, image);
        let mut subs = b.subscribe_new(&[], |_| true);
        assert_eq!(subs.len(), 1);
        let (key, rx) = &mut subs[0];
        assert_eq!(key.product, ModuleProduct::new(3, DataProduct::Ph256));
        assert!(rx.has_changed().unwrap());
        let frame = rx.borrow_and_update().clone().unwrap();
        assert!(frame.encoded().is_some());
        assert!(!rx.has_changed().unwrap());
        assert!(b.subscribe_new(&[*key], |_| true).is_empty());
    }

    #[test]
    fn a_frame_knows_which_of_the_frames_before_it_came_after_a_moment() {
        let b = Broadcast::new(Metrics::new());
        let upload = || PanoImage {
            module_id: 1,
            ..Default::default()
        };
        let mut rx = b
            .sender(SlotKey::local(ModuleProduct::new(1, DataProduct::Ph256)))
            .subscribe();
        b.publish_uploaded(DataProduct::Ph256, upload());
        let first = rx.borrow_and_update().clone().unwrap();
        assert_eq!(first.seq(), 1);
        let due = Instant::now();
        for _ in 0..3 {
            b.publish_uploaded(DataProduct::Ph256, upload());
        }
        let newest = rx.borrow_and_update().clone().unwrap();
        assert_eq!(newest.seq(), 4);
        // Sent 1, fell due after it: 2 and 3 were replaced while due.
        assert_eq!(newest.replaced_since(1, due), 2);
        // Sent 3: nothing in between.
        assert_eq!(newest.replaced_since(3, due), 0);
        // Due only later than all of them: none counts.
        assert_eq!(newest.replaced_since(1, Instant::now()), 0);
    }

    #[test]
    fn two_upstreams_reporting_one_module_keep_their_own_slots() {
        let b = Broadcast::new(Metrics::new());
        let product = ModuleProduct::new(1, DataProduct::Img16);
        for (origin, name) in [(1, "daq1"), (2, "daq2")] {
            let image = PanoImage {
                module_id: 1,
                ..Default::default()
            };
            b.publish_relayed(
                origin,
                product,
                name.into(),
                daqdata_proto::encode_pano_image(&image),
            );
        }
        let subs = b.subscribe_new(&[], |_| true);
        let names: Vec<_> = subs
            .iter()
            .map(|(k, rx)| {
                (
                    k.origin,
                    rx.borrow()
                        .as_ref()
                        .and_then(|f| f.relayed_name().map(|n| n.to_string())),
                )
            })
            .collect();
        assert_eq!(names, [(1, Some("daq1".into())), (2, Some("daq2".into()))]);
        assert!(subs[0]
            .1
            .borrow()
            .as_ref()
            .is_some_and(|f| f.encoded().is_some()));
    }
}
