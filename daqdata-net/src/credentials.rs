//! What a client shows a server to get more than it gives everyone (SPEC
//! §6): a bearer token, and for `tls://` hosts the CA that signed the
//! server's certificate and, for mutual TLS, a client certificate.
//!
//! The token never leaves this module except as the `authorization`
//! header, marked sensitive: `Debug` hides it, and no error or log line
//! names it.

use std::fmt;
use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::Error;

/// A token, optionally TLS settings, for every server a client (or a
/// gateway) calls.
///
/// ```no_run
/// # fn demo() -> Result<(), daqdata_net::Error> {
/// use daqdata_net::{channel_with, Address, Credentials};
/// let credentials = Credentials::default()
///     .token_file("/home/observer/.daqdata_token".as_ref())?
///     .tls_ca_file("/etc/daqdata/ca.pem".as_ref())?;
/// let address: Address = "tls://daq1:50051".parse()?;
/// let connection = channel_with(&address, &credentials)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Credentials {
    bearer: Option<MetadataValue<Ascii>>,
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.bearer.as_ref().map(|_| "<hidden>"))
            .field("tls_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: &str) -> Error {
    Error::Config {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl Credentials {
    /// Sends `authorization: Bearer TOKEN` on every call.
    pub fn token(mut self, token: &str) -> Result<Self, Error> {
        let token = token.trim();
        let invalid = |reason: &str| Error::Config {
            path: "the token".into(),
            reason: reason.into(),
        };
        if token.is_empty() {
            return Err(invalid("it is empty"));
        }
        if token.contains(char::is_whitespace) {
            return Err(invalid("it has a space in it (a token is one word)"));
        }
        let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| invalid("it has characters an HTTP header cannot carry"))?;
        // HPACK then never indexes it, and http's Debug hides it.
        value.set_sensitive(true);
        self.bearer = Some(value);
        Ok(self)
    }

    /// The token in `path`: the last word of its first line that is not
    /// blank or a `#` comment, so both a bare token and the server's
    /// `NAME TOKEN` line work.
    pub fn token_file(self, path: &Path) -> Result<Self, Error> {
        let text = read(path)?;
        let text = String::from_utf8(text).map_err(|_| bad(path, "the token file is not text"))?;
        let token = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .find(|l| !l.is_empty())
            .and_then(|l| l.split_whitespace().last())
            .ok_or_else(|| bad(path, "the token file holds no token"))?;
        self.token(token)
            .map_err(|_| bad(path, "the token in it is not one word of printable ASCII"))
    }

    /// Whether a token will be sent.
    pub fn has_token(&self) -> bool {
        self.bearer.is_some()
    }

    /// Trusts the CA certificate(s) in PEM `pem` for `tls://` hosts.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Trusts the CA certificate(s) in the PEM file `path` for `tls://` hosts.
    pub fn tls_ca_file(self, path: &Path) -> Result<Self, Error> {
        let pem = read(path)?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(path, "holds no PEM certificate"));
        }
        Ok(self.tls_ca_pem(pem))
    }

    /// Presents this client certificate and key (PEM) to `tls://` hosts,
    /// for servers that require mutual TLS.
    pub fn client_identity_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// [`Credentials::client_identity_pem`] from files.
    pub fn client_identity_files(self, cert: &Path, key: &Path) -> Result<Self, Error> {
        let cert_pem = read(cert)?;
        if !String::from_utf8_lossy(&cert_pem).contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(cert, "holds no PEM certificate"));
        }
        let key_pem = read(key)?;
        if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
            return Err(bad(key, "holds no PEM private key"));
        }
        Ok(self.client_identity_pem(cert_pem, key_pem))
    }

    /// The TLS settings of a `tls://` host named `domain`.
    pub fn tls_config(&self, host: &str) -> Result<ClientTlsConfig, String> {
        let ca = self.ca_pem.as_ref().ok_or(
            "a tls:// host needs the CA certificate that signed the server's (daqdata --tls-ca FILE)",
        )?;
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(host);
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }

    /// An interceptor that adds this token to every call's metadata.
    pub fn interceptor(&self) -> Bearer {
        Bearer(self.bearer.clone())
    }
}

/// Adds the token, when there is one, to every call of a channel.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = self.0.as_ref().map(|_| "<hidden>");
        f.debug_tuple("Bearer").field(&token).finish()
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "4f1c0ffee0123456789abcdef";

    #[test]
    fn a_token_file_is_a_bare_token_or_the_servers_name_token_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        for text in [
            format!("{SECRET}\n"),
            format!("# mine\n\nalice {SECRET} # on call\nbob other-token-0123456789\n"),
        ] {
            std::fs::write(&file, text).unwrap();
            let c = Credentials::default().token_file(&file).unwrap();
            let mut req = tonic::Request::new(());
            req = c.interceptor().call(req).unwrap();
            let sent = req.metadata().get("authorization").unwrap();
            assert_eq!(sent.to_str().unwrap(), format!("Bearer {SECRET}"));
            assert!(sent.is_sensitive());
        }
        std::fs::write(&file, "# nothing here\n\n").unwrap();
        let err = Credentials::default().token_file(&file).unwrap_err();
        assert!(err.to_string().contains("no token"), "{err}");
    }

    #[test]
    fn the_token_is_never_shown() {
        let c = Credentials::default().token(SECRET).unwrap();
        assert!(!format!("{c:?}").contains(SECRET));
        assert!(!format!("{:?}", c.interceptor()).contains(SECRET));
        let err = Credentials::default()
            .token(&format!("{SECRET}\u{7f}"))
            .unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
    }

    #[test]
    fn without_a_token_nothing_is_added() {
        let req = Credentials::default()
            .interceptor()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }

    #[test]
    fn a_tls_host_needs_a_ca() {
        let err = Credentials::default().tls_config("daq1").unwrap_err();
        assert!(err.contains("--tls-ca"), "{err}");
        assert!(Credentials::default()
            .tls_ca_pem("-----BEGIN CERTIFICATE-----")
            .tls_config("daq1")
            .is_ok());
    }
}
