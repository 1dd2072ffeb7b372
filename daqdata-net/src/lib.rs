//! Where a DaqData server is and how to reach it: what the client and the
//! server's gateway share on the calling side (they meet only on the wire).
//!
//! # Brief overview
//!
//! - [`Address`] names a server as users type it (`HOST`, `HOST:PORT`,
//!   `[v6]:PORT`, `tls://HOST[:PORT]`, `unix:///path`);
//!   [`addresses_from_configs`] reads the DAQ nodes of the Python project's
//!   `daq_config.json` and `network_config.json`.
//! - [`Credentials`] is what a caller shows a server that restricts who may
//!   do what (SPEC §6): a bearer token, the CA of `tls://` servers and a
//!   client certificate for mutual TLS. The token is never logged.
//! - [`channel_with`] makes a tonic [`Connection`] to an address with
//!   credentials; [`Backoff`] and [`Attempts`] say when to dial again after
//!   a stream broke.
//!
//! ```no_run
//! # fn demo() -> Result<(), daqdata_net::Error> {
//! use daqdata_net::{channel_with, Address, Credentials};
//! let address: Address = "daq1:50051".parse()?;
//! let connection = channel_with(&address, &Credentials::default())?;
//! # Ok(()) }
//! ```

mod address;
mod backoff;
mod channel;
mod credentials;
mod error;

pub use address::{addresses_from_config_values, addresses_from_configs, Address, DEFAULT_PORT};
pub use backoff::{random_u64, Attempts, Backoff};
pub use channel::{channel, channel_with, status_reason, Connection};
pub use credentials::{Bearer, Credentials};
pub use error::Error;
