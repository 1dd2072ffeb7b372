//! The options that prove who the user is to servers that restrict who
//! may do what (SPEC §6), shared by every command.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use daqdata_client::Credentials;

/// Where the token comes from when --token-file is not given.
const TOKEN_ENV: &str = "DAQDATA_TOKEN";

/// Token and TLS options.
#[derive(Debug, Default, Args)]
pub struct CredentialArgs {
    /// File holding the token to send as `authorization: Bearer TOKEN` on
    /// every call: the token alone, or a `NAME TOKEN` line as in the
    /// server's token files (the last word of the first line that is not a
    /// # comment). Without it, the DAQDATA_TOKEN environment variable is
    /// used when set. An operator token is needed for --init/--init-sim
    /// over TCP on a server with `[access]` token files; the unix socket on
    /// the DAQ node needs none. Keep the file private (chmod 600).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed the server's certificate; needed
    /// for tls://HOST:PORT hosts.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require mutual TLS; the
    /// server may give a role to its common name. Goes with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl CredentialArgs {
    /// Reads the files named (and DAQDATA_TOKEN); no error shows a token.
    pub fn load(&self) -> anyhow::Result<Credentials> {
        let mut c = Credentials::default();
        match &self.token_file {
            Some(path) => c = c.token_file(path)?,
            None => {
                if let Some(token) = std::env::var_os(TOKEN_ENV) {
                    let Some(token) = token.to_str() else {
                        bail!("{TOKEN_ENV} is not valid text");
                    };
                    c = c
                        .token(token)
                        .with_context(|| format!("{TOKEN_ENV} holds no usable token"))?;
                }
            }
        }
        if let Some(ca) = &self.tls_ca {
            c = c.tls_ca_file(ca)?;
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c = c.client_identity_files(cert, key)?;
        }
        Ok(c)
    }
}
