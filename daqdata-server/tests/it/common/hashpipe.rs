//! Hashpipe's status buffer in tests: a simulated buffer under a keyfile
//! of its own, and reading StreamHashpipeStatus until something shows.

use std::time::{Duration, Instant};

use daqdata_proto::daqdata::StreamHashpipeStatusResponse;
use prost_types::value::Kind;
use tonic::Streaming;

/// Generous: tests wait for behaviour, never measure it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `daqsim --hashpipe-status` for Hashpipe `instance` (its `INSTANCE`
/// card), under a keyfile of its own (a temporary directory). `ftok` keeps
/// 16 bits of the inode, so another process's key can collide: then
/// another directory is tried.
pub fn simulated_status_buffer(instance: u32) -> (tempfile::TempDir, daqsim::StatusSim) {
    let mut last = None;
    for _ in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let config = daqsim::StatusSimConfig {
            instance,
            ..daqsim::StatusSimConfig::new(dir.path())
        };
        match daqsim::StatusSim::start(config) {
            Ok(sim) => return (dir, sim),
            Err(e) => last = Some(e),
        }
    }
    panic!("cannot create a simulated status buffer: {last:?}");
}

/// Responses until one satisfies `want`, within [`PATIENCE`].
pub async fn until(
    stream: &mut Streaming<StreamHashpipeStatusResponse>,
    what: &str,
    want: impl Fn(&StreamHashpipeStatusResponse) -> bool,
) -> StreamHashpipeStatusResponse {
    let deadline = Instant::now() + PATIENCE;
    let mut last = None;
    while Instant::now() < deadline {
        let response = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("a response within the patience")
            .unwrap()
            .expect("the stream goes on");
        if want(&response) {
            return response;
        }
        last = Some(response);
    }
    panic!("never {what}; last response: {last:?}");
}

/// A numeric card of a response.
pub fn number(response: &StreamHashpipeStatusResponse, key: &str) -> Option<f64> {
    match response.cards.as_ref()?.fields.get(key)?.kind {
        Some(Kind::NumberValue(x)) => Some(x),
        _ => None,
    }
}

/// A string card of a response.
pub fn text(response: &StreamHashpipeStatusResponse, key: &str) -> Option<String> {
    match &response.cards.as_ref()?.fields.get(key)?.kind {
        Some(Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}
