//! For the tests of SPEC §6 against the real binary: a CA and certificates
//! made at test time (no key is ever committed), token files, the server
//! on TCP, TLS and unix listeners, and clients that present tokens and
//! certificates or connect from a chosen loopback address.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use daqdata_proto::daqdata::daq_data_client::DaqDataClient;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use testdata::server::ServerProcess;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::common::{private_hashpipe_sockets, unix_channel};

/// A test CA whose files live in a temp dir.
pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// ... and its file.
    pub ca_file: PathBuf,
}

/// A certificate and its key, PEM.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pair {
    /// Writes `NAME.pem` and `NAME.key` (mode 600) into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        write_private(&key, &self.key_pem);
        (cert, key)
    }

    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let key = KeyPair::generate().unwrap();
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, &ca_pem).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
            ca_pem,
            ca_file,
        }
    }

    /// A certificate for `127.0.0.1` and `localhost`, with common name `cn`.
    pub fn leaf(&self, cn: &str) -> Pair {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The server's certificate and key files, for `[tls]`.
    pub fn server_files(&self) -> (PathBuf, PathBuf) {
        self.leaf("daq-test-server").write(&self.dir, "server")
    }
}

/// Writes a file only its owner may read, as token files and keys must be.
pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A made-up token, different each run and distinctive enough to grep for.
pub fn token(who: &str) -> String {
    let salt = daqdata_net::random_u64(0) as u32;
    format!("{who}tok{:08x}{:08x}", std::process::id(), salt)
}

/// The binary with `--config` (and `args`), its stderr in `dir/server.log`.
pub fn spawn(dir: &Path, config_text: &str, args: &[&str]) -> std::process::Child {
    let config = dir.join("config.toml");
    std::fs::write(&config, config_text).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_daqdata-server"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The real server on a unix socket plus the TCP and TLS listeners of
/// `listen` (ports chosen by the system, read back from its log); killed
/// when dropped.
pub struct NetServer {
    process: ServerProcess,
    pub sock: PathBuf,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub dir: tempfile::TempDir,
}

/// The addresses a server logged as bound.
fn bound(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.split_once("listening on ").map(|(_, a)| a.trim()))
        .collect()
}

impl NetServer {
    /// `listen`: extra addresses (`127.0.0.1:0`, `tls://127.0.0.1:0`);
    /// `toml`: more top-level keys, then tables; `prepare` writes files
    /// (token files, certificates) into the server's directory first.
    pub async fn start(
        listen: &[&str],
        toml: &str,
        args: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> NetServer {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let sock = dir.path().join("daq.sock");
        let mut all = vec![format!("\"unix://{}\"", sock.display())];
        all.extend(listen.iter().map(|a| format!("\"{a}\"")));
        let text = format!(
            "listen = [{}]\nmetrics_listen = \"\"\nhashpipe_sockets.path_template = \"{}\"\n{toml}",
            all.join(", "),
            private_hashpipe_sockets(dir.path()),
        );
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_daqdata-server"));
        command.arg("--config").arg(&config).args(args);
        let every_listener = |log: &str| bound(log).len() == listen.len() + 1;
        let process = ServerProcess::start(
            command,
            &sock,
            &dir.path().join("server.log"),
            every_listener,
        )
        .await;
        let mut server = NetServer {
            process,
            sock,
            tcp: Vec::new(),
            tls: Vec::new(),
            dir,
        };
        for a in bound(&server.log()) {
            if let Some(tls) = a.strip_prefix("tls://") {
                server.tls.push(tls.parse().unwrap());
            } else if !a.starts_with("unix://") {
                server.tcp.push(a.parse().unwrap());
            }
        }
        server
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub async fn unix(&self) -> DaqDataClient<Channel> {
        DaqDataClient::new(unix_channel(&self.sock).await)
    }

    /// A client of the first plain TCP listener (reached at 127.0.0.1).
    pub async fn tcp(&self) -> DaqDataClient<Channel> {
        DaqDataClient::new(tcp_channel(loopback(self.tcp[0])).await)
    }

    /// A TLS connection to the first `tls://` listener, trusting `ca_pem`
    /// and presenting `identity`.
    pub async fn tls(
        &self,
        ca_pem: &str,
        identity: Option<Identity>,
    ) -> Result<DaqDataClient<Channel>, tonic::transport::Error> {
        tls_channel(self.tls[0], ca_pem, identity)
            .await
            .map(DaqDataClient::new)
    }
}

/// `addr` with an unspecified IP (a `0.0.0.0` listener) made 127.0.0.1.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

pub async fn tcp_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A plain TCP channel whose connections come from `source` (another
/// loopback address is another peer to the server).
pub async fn tcp_channel_from(addr: SocketAddr, source: IpAddr) -> Channel {
    Endpoint::from_static("http://127.0.0.1")
        .connect_with_connector(tower::service_fn(move |_| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            Ok::<_, std::io::Error>(TokioIo::new(socket.connect(addr).await?))
        }))
        .await
        .unwrap()
}

pub async fn tls_channel(
    addr: SocketAddr,
    ca_pem: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// `message` with `authorization: Bearer TOKEN` when a token is given.
pub fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    req
}

/// `[access]` token files (mode 600) in `dir`: operator `alice`, viewer `bob`.
pub fn token_files(dir: &Path, operator: &str, viewer: &str) {
    write_private(
        &dir.join("operators"),
        &format!("# who may reconfigure hp_io\nalice {operator}\n"),
    );
    write_private(
        &dir.join("viewers"),
        &format!("bob {viewer} # the night shift\n"),
    );
}
