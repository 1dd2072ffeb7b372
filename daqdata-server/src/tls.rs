//! `tls://` listeners (SPEC §6): the server's certificate and key, and for
//! mutual TLS the CA that signs client certificates. Everything is checked
//! at start, so a key that does not match its certificate stops the server
//! with the file named, not the first client's handshake.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;
use crate::error::{Error, Result};

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ConfigRead {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::ConfigFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks `[tls]`, for tonic.
pub(crate) fn server_config(tls: &TlsConfig) -> Result<ServerTlsConfig> {
    let cert_pem = read(&tls.cert_file)?;
    let key_pem = read(&tls.key_file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(&tls.cert_file, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&tls.cert_file, "holds no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(&tls.key_file, format!("not a PEM private key: {e}")))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            bad(
                &tls.key_file,
                format!(
                    "does not go with the certificate {}: {e}",
                    tls.cert_file.display()
                ),
            )
        })?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    if let Some(ca_file) = &tls.client_ca_file {
        let ca = read(ca_file)?;
        let n = CertificateDer::pem_slice_iter(&ca)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(ca_file, format!("not PEM CA certificates: {e}")))?
            .len();
        if n == 0 {
            return Err(bad(ca_file, "holds no PEM certificate"));
        }
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(config)
}
