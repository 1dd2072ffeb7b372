//! One StreamImages call: which slots it wants and when it may send.
//!
//! Pacing is per (module, data product): a slot is *due* once the stream's
//! effective interval has passed since it last sent that slot (see
//! [`Pace`]). A due slot with a frame this stream has not sent goes out at
//! once; a due slot with nothing new is watched, and its next frame goes
//! out the moment it arrives. Slots that are not due are left alone until
//! they are, so an idle stream costs nothing between its sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use daqdata_proto::daqdata::StreamImagesRequest;
use daqdata_proto::SharedStreamImagesResponse;
use futures::future::{pending, select_all};
use pff::{ImageKind, ModuleId, ModuleProduct};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::access::Caller;
use crate::admission::StreamTicket;
use crate::broadcast::{Broadcast, Slot, SlotKey};
use crate::metrics::Metrics;
use crate::state::State;

/// What a stream asked for.
#[derive(Clone, Debug)]
pub(crate) struct Filter {
    pub movie: bool,
    pub pulse_height: bool,
    /// Empty: every module.
    pub modules: Vec<ModuleId>,
}

impl Filter {
    fn wants(&self, ModuleProduct { module, dp }: &ModuleProduct) -> bool {
        let kind_ok = match dp.kind() {
            ImageKind::Movie => self.movie,
            ImageKind::PulseHeight => self.pulse_height,
        };
        kind_ok && (self.modules.is_empty() || self.modules.contains(module))
    }
}

/// Why a stream ends early.
struct Ends {
    /// InitHpIo with force=true replaced the configuration.
    reconfigured: CancellationToken,
    /// The server is shutting down.
    shutdown: CancellationToken,
}

struct Sub {
    key: SlotKey,
    rx: watch::Receiver<Slot>,
    due: Instant,
    /// The slot place (`SharedFrame::seq`) of the last frame sent.
    sent_seq: Option<u64>,
}

/// One StreamImages call's state between two sends.
pub(crate) struct PacedStream {
    host: String,
    filter: Filter,
    pace: Pace,
    broadcast: Arc<Broadcast>,
    keys: watch::Receiver<()>,
    subs: Vec<Sub>,
    next: usize,
    ends: Ends,
    done: bool,
    peer: String,
    sent: u64,
    metrics: Arc<Metrics>,
    ended_by: &'static str,
    _ticket: StreamTicket,
}

type Changed<'a> = Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

impl PacedStream {
    /// Checks a StreamImages request (SPEC §3 status codes), admits it and
    /// paces it at max(client interval, hp_io interval).
    pub(crate) fn open(
        state: &State,
        req: StreamImagesRequest,
        caller: &Caller,
    ) -> Result<PacedStream, Status> {
        if state.shutdown.is_cancelled() {
            return Err(Status::unavailable("the DaqData server is shutting down"));
        }
        if !req.stream_movie_data && !req.stream_pulse_height_data {
            return Err(Status::invalid_argument(
                "At least one stream flag must be True: set stream_movie_data and/or stream_pulse_height_data",
            ));
        }
        let max = state
            .config
            .max_client_update_interval_seconds
            .as_secs_f64();
        let asked = client_interval(req.update_interval_seconds, max)?;
        let remote = caller.ip();
        let limited = remote.is_some_and(|ip| state.access.config().limits_apply_to(ip));
        let ticket = state.admission.stream(&state.lifecycle, remote, limited)?;
        let generation = &ticket.generation;
        let interval = effective_interval(asked, generation.interval);
        let broadcast = generation.broadcast.clone();
        let ends = Ends {
            reconfigured: generation.reconfigured.clone(),
            shutdown: state.shutdown.clone(),
        };
        let mut keys = broadcast.watch_keys();
        keys.mark_changed();
        Ok(PacedStream {
            host: state.host.clone(),
            filter: Filter {
                movie: req.stream_movie_data,
                pulse_height: req.stream_pulse_height_data,
                modules: req.module_ids.into_iter().map(ModuleId::new).collect(),
            },
            pace: Pace::new(interval),
            broadcast,
            keys,
            subs: Vec::new(),
            next: 0,
            ends,
            done: false,
            peer: caller.to_string(),
            sent: 0,
            metrics: state.metrics.clone(),
            ended_by: "the client went away",
            _ticket: ticket,
        })
    }

    /// Turns the state into the response stream tonic sends.
    pub(crate) fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<SharedStreamImagesResponse, Status>> + Send + 'static
    {
        futures::stream::unfold(
            self,
            |mut s| async move { s.next().await.map(|item| (item, s)) },
        )
    }

    fn subscribe_new_slots(&mut self) {
        let have: Vec<SlotKey> = self.subs.iter().map(|s| s.key).collect();
        let now = Instant::now();
        let filter = &self.filter;
        for (key, rx) in self.broadcast.subscribe_new(&have, |k| filter.wants(k)) {
            self.subs.push(Sub {
                key,
                rx,
                due: now,
                sent_seq: None,
            });
        }
    }

    /// The next response: a due frame, or the end of the stream.
    async fn next(&mut self) -> Option<Result<SharedStreamImagesResponse, Status>> {
        if self.done {
            return None;
        }
        let mut new_slots = false;
        loop {
            // `changed()` below marks what it saw as seen, hence the flag.
            if std::mem::take(&mut new_slots) || self.keys.has_changed().unwrap_or(false) {
                self.keys.borrow_and_update();
                self.subscribe_new_slots();
            }
            let now = Instant::now();
            if let Some(response) = self.take_due(now) {
                return Some(Ok(response));
            }
            let pace = self.pace;
            let wake_at = self
                .subs
                .iter()
                .map(|s| pace.opens(s.due))
                // (`>=` differs only for a slot opening at this very
                // instant, which take_due just looked at: equivalent.)
                .filter(|&open| open > now)
                .min();
            // The slots that are due, or will be before the timer can next
            // wake us, with nothing waiting: by index, and a wait for each
            // one's next frame. A frame that arrives once its slot opens
            // goes out then, not at the next timer tick. (`now -
            // TIMER_RESOLUTION` would send such a frame at the tick
            // instead: up to 1 ms staler, which bench-e2e's frame age
            // measures and no test can without asserting a timing.)
            let horizon = now + TIMER_RESOLUTION;
            let (due, changed): (Vec<usize>, Vec<Changed<'_>>) = self
                .subs
                .iter_mut()
                .enumerate()
                // (`||` here would also wait on slots not yet due, and wake
                // once more per send for the first frame that comes
                // before each opens: the same frames, twice the wake-ups,
                // which `stream_wakeups` counts.)
                .filter(|(_, s)| {
                    pace.opens(s.due) <= horizon && !s.rx.has_changed().unwrap_or(false)
                })
                .map(|(i, s)| (i, Box::pin(s.rx.changed()) as Changed<'_>))
                .unzip();
            let arrived = tokio::select! {
                biased;
                _ = self.ends.shutdown.cancelled() => {
                    self.done = true;
                    self.ended_by = "server shutdown";
                    return Some(Err(Status::unavailable("the DaqData server is shutting down; reconnect when it is back")));
                }
                _ = self.ends.reconfigured.cancelled() => {
                    self.done = true;
                    self.ended_by = "a forced InitHpIo";
                    return Some(Err(Status::cancelled("hp_io was reconfigured by InitHpIo (force=true); start a new stream")));
                }
                _ = self.keys.changed() => {
                    new_slots = true;
                    None
                }
                _ = sleep_until(wake_at) => None,
                i = any_changed(changed) => Some(i),
            };
            self.metrics.stream_wakeups.inc();
            // `changed()` marks the new frame as seen; it has not been
            // sent yet, so mark it unseen again for `take_due`.
            if let Some(i) = arrived {
                self.subs[due[i]].rx.mark_changed();
            }
        }
    }

    /// Sends the first due slot (round robin) holding a frame this stream
    /// has not sent yet.
    fn take_due(&mut self, now: Instant) -> Option<SharedStreamImagesResponse> {
        let n = self.subs.len();
        for k in 0..n {
            // Round robin: which due slot goes first. (Starting from slot
            // 0 each time, as `*` for `+` does, orders the sends within one
            // instant differently; every due slot still goes out.)
            let i = (self.next + k) % n;
            let sub = &mut self.subs[i];
            // (`>=` would hold back a slot opening at this very instant
            // until the next look, moments later: equivalent.)
            if self.pace.opens(sub.due) > now || !sub.rx.has_changed().unwrap_or(false) {
                continue;
            }
            let Some(frame) = sub.rx.borrow_and_update().clone() else {
                continue;
            };
            let Some(image) = frame.encoded() else {
                continue;
            };
            if let Some(last) = sub.sent_seq {
                let skipped = frame.replaced_since(last, self.pace.opens(sub.due).into_std());
                self.metrics.frames_skipped.inc_by(skipped);
            }
            sub.sent_seq = Some(frame.seq());
            sub.due = self.pace.next_due(sub.due, now);
            // (Mutants of the next two lines change only the round robin's
            // order, as above, and the count in the end-of-stream log line,
            // which PacedStream's Drop writes: no frame changes.)
            self.next = i + 1;
            self.sent += 1;
            self.metrics.images_sent.inc();
            // SPEC §8: a relayed image keeps the name its node gave it.
            let name = frame
                .relayed_name()
                .map_or_else(|| self.host.clone(), |n| n.to_string());
            return Some(SharedStreamImagesResponse {
                name,
                timestamp: Some(prost_types::Timestamp::from(pff::time::now())),
                message: String::new(),
                pano_image: Some(image.clone()),
            });
        }
        None
    }
}

impl Drop for PacedStream {
    fn drop(&mut self) {
        tracing::info!(peer = %self.peer, images = self.sent, "StreamImages ended by {}", self.ended_by);
    }
}

/// The interval a client asked for, checked (SPEC §3): NaN, +infinite and
/// anything above `max` are refused; zero, negative and -infinite mean "as
/// fast as hp_io updates" and come back as `None`.
pub(crate) fn client_interval(asked: f64, max: f64) -> Result<Option<Duration>, Status> {
    if asked.is_nan() || asked > max {
        return Err(Status::invalid_argument(format!(
            "update_interval_seconds {asked} must be a number of seconds up to {max} (0 or negative = as fast as hp_io updates)"
        )));
    }
    // (`>=` would give 0 as Some(0 s), which paces as None does.)
    Ok((asked > 0.0).then(|| Duration::from_secs_f64(asked)))
}

/// SPEC §3 rule 1: `max(client interval, hp_io interval)`, as the Python
/// server computes it. hp_io's interval is the fastest any stream is
/// served; a client asking "as fast as hp_io updates" gets exactly that.
fn effective_interval(asked: Option<Duration>, hp_io: Duration) -> Duration {
    asked.map_or(hp_io, |asked| asked.max(hp_io))
}

/// tokio's timers tick in milliseconds: a sleep may end up to this much
/// after its deadline.
const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// When a stream sends each slot: SPEC §3 rule 1, with its one allowance
/// for timers.
///
/// Sends keep to the schedule `due + interval`, so timer slack does not add
/// up: a 0.05 s stream gets 20 frames a second, not 19.6. A send that came
/// late (no frame had arrived when it was due) starts a new schedule, less
/// a `catch_up` of `min(interval / 2, 1 ms)`, so a frame held up a little
/// does not push every later send back.
///
/// The allowance: a frame that arrives up to `early = min(interval / 4,
/// 1 ms)` before its slot is due goes out at once instead of waiting for
/// the due time. tokio's timers tick in milliseconds and frames written
/// 1 ms apart reach a stream with some jitter; without it a 1 ms stream
/// would wait a whole tick for a frame that came a few microseconds early,
/// and the next frame would replace it.
///
/// The bound, in SPEC terms: each send is at least `interval - catch_up -
/// early` (a quarter of the interval) after the one before, and since
/// `catch_up + early < interval`, any window of N intervals holds at most
/// N + 1 sends of each (module, data product).
#[derive(Clone, Copy, Debug)]
struct Pace {
    interval: Duration,
    /// How long before its due time a send may go out.
    early: Duration,
    /// How much of a late send's lateness the next due time forgives.
    catch_up: Duration,
}

impl Pace {
    fn new(interval: Duration) -> Pace {
        Pace {
            interval,
            early: (interval / 4).min(Duration::from_millis(1)),
            catch_up: (interval / 2).min(Duration::from_millis(1)),
        }
    }

    /// The earliest moment a slot due at `due` may be sent.
    fn opens(self, due: Instant) -> Instant {
        due.checked_sub(self.early).unwrap_or(due)
    }

    /// When a slot may be sent next, after a send at `now` that was due at
    /// `due`.
    fn next_due(self, due: Instant, now: Instant) -> Instant {
        (due + self.interval).max(now + self.interval - self.catch_up)
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => pending().await,
    }
}

/// Resolves, with its index, when one of the due slots gets a new frame.
/// A closed slot (its hp_io configuration is gone) never resolves: the
/// stream is ended by `Ends`.
async fn any_changed(changed: Vec<Changed<'_>>) -> usize {
    if changed.is_empty() {
        return pending().await;
    }
    match select_all(changed).await {
        (Ok(()), i, _) => i,
        (Err(_), _, _) => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_interval_is_the_larger_of_the_clients_and_hp_ios() {
        let ms = Duration::from_millis;
        let hp_io = ms(10);
        let effective =
            |asked: f64| client_interval(asked, 60.0).map(|a| effective_interval(a, hp_io));
        assert_eq!(effective(0.05).ok(), Some(ms(50)));
        assert_eq!(effective(0.01).ok(), Some(ms(10)));
        assert_eq!(effective(0.001).ok(), Some(ms(10)));
        for fastest in [0.0, -0.0, -1.0, f64::NEG_INFINITY] {
            assert_eq!(effective(fastest).ok(), Some(hp_io), "{fastest}");
        }
        assert_eq!(effective(60.0).ok(), Some(Duration::from_secs(60)));
        for bad in [f64::NAN, f64::INFINITY, 60.5] {
            let code = effective(bad).err().map(|s| s.code());
            assert_eq!(code, Some(tonic::Code::InvalidArgument), "{bad}");
        }
    }

    #[test]
    fn sends_keep_to_the_schedule_within_the_stated_allowances() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let pace = Pace::new(ms(50));
        // On time, early within the allowance, or late by timer slack: the
        // schedule holds.
        assert_eq!(pace.next_due(t0, t0), t0 + ms(50));
        assert_eq!(pace.next_due(t0, t0 - us(900)), t0 + ms(50));
        assert_eq!(pace.next_due(t0, t0 + us(900)), t0 + ms(50));
        assert_eq!(pace.opens(t0 + ms(50)), t0 + ms(49));
        // A frame that came 30 ms after it was due: a new schedule.
        let late = t0 + ms(30);
        assert_eq!(pace.next_due(t0, late), late + ms(49));
        // Short intervals: a quarter early, half forgiven.
        let pace = Pace::new(ms(1));
        assert_eq!(pace.opens(t0 + ms(1)), t0 + us(750));
        assert_eq!(pace.next_due(t0, t0 + ms(1)), t0 + ms(1) + us(500));
    }

    /// Sends as early as the pace ever allows, for frames arriving at any
    /// moment: any window of N intervals holds at most N + 1 sends.
    #[test]
    fn no_window_of_n_intervals_holds_more_than_n_plus_one_sends() {
        let t0 = Instant::now() + Duration::from_secs(1);
        for interval_us in [1_000u64, 1_300, 10_000, 50_000, 100_000] {
            let interval = Duration::from_micros(interval_us);
            let pace = Pace::new(interval);
            // Frames at every 37 us, and sends at the earliest allowed
            // moment, sometimes late by a pseudo-random amount.
            let mut sends = Vec::new();
            let mut due = t0;
            let mut t = t0;
            let mut lcg = 12345u64;
            while sends.len() < 2_000 {
                t += Duration::from_micros(37);
                if t < pace.opens(due) {
                    continue;
                }
                lcg = lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if lcg >> 62 == 0 {
                    t += Duration::from_micros((lcg >> 20) % (2 * interval_us));
                }
                sends.push(t);
                due = pace.next_due(due, t);
            }
            for n in 1..=5u32 {
                let window = interval * n;
                let most = (0..sends.len())
                    .map(|i| {
                        sends[i..]
                            .iter()
                            .take_while(|&&s| s - sends[i] <= window)
                            .count()
                    })
                    .max()
                    .unwrap_or(0);
                assert!(
                    most <= n as usize + 1,
                    "{most} sends in {n} intervals of {interval:?}"
                );
            }
        }
    }
}
