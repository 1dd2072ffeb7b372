//! Client of PANOSETI's DaqData service: see what the telescope sees.
//!
//! # Brief overview
//!
//! - [`Host`] names a DaqData server (`HOST`, `HOST:PORT`,
//!   `tls://HOST:PORT`, `unix:///path`);
//!   [`hosts_from_configs`] reads them from an observing run's
//!   `daq_config.json` and `network_config.json`, as the Python client does.
//! - [`DaqClient`] talks to all of them: [`DaqClient::ping`],
//!   [`DaqClient::valid_hosts`], [`DaqClient::status`] (an [`HpIoStatus`]
//!   per host), [`DaqClient::reflect_services`],
//!   [`DaqClient::init_hp_io`] (from an [`HpIoConfig`]),
//!   [`DaqClient::init_sim`], [`DaqClient::upload_images`], and
//!   [`DaqClient::stream_images`], which merges every host's stream into
//!   one [`ImageStream`] of [`Image`]s; a host that fails ends only its part.
//!   [`DaqClient::stream_hashpipe_status`] does the same for Hashpipe's
//!   status buffer (SPEC §9): a [`HashpipeStream`] of [`HashpipeStatus`]
//!   (thread states, packets/s and losses/s, stale and why), whose rules
//!   live in [`hashpipe`].
//! - [`Credentials`] is what the client shows a server that restricts
//!   who may do what (SPEC §6): a bearer token, the CA of `tls://` hosts
//!   and a client certificate for mutual TLS
//!   ([`DaqClient::with_credentials`]). The token is never logged.
//! - [`Image`] is a decoded frame: typed pixels, module, file, frame number,
//!   header, node and White Rabbit times.
//! - `view` turns images into the live views, `view::PlotView` and
//!   `view::PhDist`, drawn in a terminal (ratatui) or to PNG. It is the
//!   `daqdata` binary's, so it comes with the `cli` feature (on by
//!   default); without it the library needs no terminal or image crates.
//!
//! Data moves one way: servers -> [`ImageStream`] -> a view or a script.
//! Every error says which host and what to do ([`Error`]).
//!
//! ```no_run
//! use daqdata_client::{DaqClient, StreamSpec};
//! use futures::StreamExt;
//!
//! # async fn demo() -> Result<(), daqdata_client::Error> {
//! let client = DaqClient::new(["localhost".parse()?, "unix:///tmp/daq_data.sock".parse()?])?;
//! client.valid_hosts().await?;
//! let spec = StreamSpec { movie: true, pulse_height: true, update_interval_seconds: 1.0, module_ids: vec![] };
//! let mut images = client.stream_images(&spec);
//! while let Some(image) = images.next().await {
//!     match image {
//!         Ok(image) => println!("module {} {} frame {}", image.module_id, image.file, image.frame_number),
//!         Err(e) => eprintln!("{e}"), // one host's part ended; the others go on
//!     }
//! }
//! # Ok(()) }
//! ```

mod client;
mod error;
pub mod hashpipe;
mod hosts;
mod image;
mod reconnect;
mod reflect;
#[cfg(feature = "cli")]
pub mod view;

pub use client::{DaqClient, HpIoStatus, ImageStream, StreamSpec};
pub use daqdata_net::{
    channel, channel_with, Address, Attempts, Backoff, Bearer, Connection, Credentials,
};
pub use error::Error;
pub use hashpipe::{HashpipeStatus, HashpipeStream};
pub use hosts::{hosts_from_configs, Host, HpIoConfig, DEFAULT_PORT};
pub use image::Image;
pub use reconnect::{HostState, HostStates, HostStatus};
pub use reflect::{Method, ServiceListing};

/// The node time `(tv_sec, tv_usec)` in an image header `Struct`, without
/// converting the rest: `quabo_0` for movie frames, the event's quabo for
/// pulse height. For load generators that must stay cheap.
pub fn node_stamp_of_header(header: &prost_types::Struct) -> Option<(i64, u32)> {
    image::node_stamp_of_struct(header)
}
