//! Who may call what (SPEC §6): roles, bearer tokens, the unix socket as
//! the local operator's door, and certificate names over mutual TLS.
//!
//! Every RPC passes through [`AuthLayer`] before any work: it finds the
//! connection's role (unix socket, TCP, or a client certificate's name),
//! takes a better one from a valid `authorization: Bearer TOKEN`, and
//! refuses with UNAUTHENTICATED (no or unknown token) or PERMISSION_DENIED
//! (a valid token whose role is not enough), naming the role needed. What
//! it decided travels on as a [`Caller`] in the request's extensions, for
//! the audit lines and the per-peer limits.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What a caller may do. `Operator` may do everything a `Viewer` may.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Nothing at all.
    None,
    /// Ping, StreamImages, reflection, health.
    Viewer,
    /// Everything, including InitHpIo and UploadImages.
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::None => "none",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// The `[access]` table.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Tokens that give the operator role: `NAME TOKEN` per line.
    pub operator_tokens_file: Option<PathBuf>,
    /// Tokens that give the viewer role.
    pub viewer_tokens_file: Option<PathBuf>,
    /// The role of a unix-socket connection without a token.
    pub unix_socket_role: Role,
    /// The unix socket file's permissions, in octal (`"0660"`).
    pub unix_socket_mode: crate::unix_socket::SocketMode,
    /// The unix socket file's group (name or number); unset: unchanged.
    pub unix_socket_group: Option<String>,
    /// The role of a TCP connection without a token. Unset: `operator`
    /// with no token files (as the Python server behaves), `viewer` with
    /// an operator token file, `none` with a viewer token file too.
    pub tcp_role: Option<Role>,
    /// Client-certificate common names that give the operator role.
    pub operator_names: Vec<String>,
    /// Client-certificate common names that give the viewer role.
    pub viewer_names: Vec<String>,
    /// Apply the per-peer limits to loopback addresses too (each 127.x.y.z
    /// its own peer), so that tests on one machine can exercise them.
    pub per_peer_limits_on_loopback: bool,
    /// Addresses or CIDR blocks exempt from `max_streams_per_peer` and
    /// `max_connections_per_peer` (never from `max_concurrent_rpcs`): a
    /// gateway that relays many viewers through one address (SPEC §8).
    pub relay_peers: Vec<crate::ip_block::IpBlock>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            operator_tokens_file: None,
            viewer_tokens_file: None,
            unix_socket_role: Role::Operator,
            unix_socket_mode: Default::default(),
            unix_socket_group: None,
            tcp_role: None,
            operator_names: Vec::new(),
            viewer_names: Vec::new(),
            per_peer_limits_on_loopback: false,
            relay_peers: Vec::new(),
        }
    }
}

impl AccessConfig {
    /// The TCP role, with SPEC §6's defaults applied.
    pub fn effective_tcp_role(&self) -> Role {
        self.tcp_role.unwrap_or(
            match (&self.operator_tokens_file, &self.viewer_tokens_file) {
                (None, None) => Role::Operator,
                (Some(_), None) => Role::Viewer,
                (_, Some(_)) => Role::None,
            },
        )
    }

    /// Whether an address counts as a peer of its own for the per-peer
    /// limits: not a local one (unless configured so), not a relay peer.
    pub(crate) fn limits_apply_to(&self, ip: IpAddr) -> bool {
        (!ip.is_loopback() || self.per_peer_limits_on_loopback)
            && !self.relay_peers.iter().any(|block| block.contains(ip))
    }
}

/// One line of a token file: who, and the secret (never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The name that appears in logs.
    pub name: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token {{ name: {:?}, secret: <hidden> }}", self.name)
    }
}

/// Reads a token file's text: one `NAME TOKEN` per line, `#` comments and
/// blank lines ignored. Errors name the line, never its token.
pub fn parse_tokens(text: &str) -> std::result::Result<Vec<Token>, String> {
    let mut tokens: Vec<Token> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(secret), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "line {n} is not `NAME TOKEN` (two words, then an optional # comment)"
            ));
        };
        if secret.len() < 16 {
            return Err(format!(
                "line {n} ({name}): the token is shorter than 16 characters; use e.g. `openssl rand -hex 32`"
            ));
        }
        if tokens
            .iter()
            .any(|t| t.secret.as_bytes().ct_eq(secret.as_bytes()).into())
        {
            return Err(format!("line {n} ({name}): this token is already listed"));
        }
        tokens.push(Token {
            name: name.to_string(),
            secret: secret.to_string(),
        });
    }
    Ok(tokens)
}

/// Refuses a token file that others than its owner may read (SPEC §6, and
/// §8 for the token a gateway presents upstream).
pub(crate) fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |reason: String| Error::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "the token file is readable by others than its owner (mode {mode:04o}); run chmod 600 on it"
        )));
    }
    Ok(())
}

/// Loads a token file, refusing one that others than its owner may read.
fn load_tokens(path: &Path) -> Result<Vec<Token>> {
    let fail = |reason: String| Error::ConfigFile {
        path: path.to_path_buf(),
        reason,
    };
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let tokens = parse_tokens(&text).map_err(fail)?;
    if tokens.is_empty() {
        return Err(fail("the token file lists no token".into()));
    }
    Ok(tokens)
}

/// How the caller reached the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Door {
    /// The unix socket (local).
    Unix,
    /// Plain TCP from this address.
    Tcp(SocketAddr),
    /// TLS from this address, with the client certificate's common name
    /// when it sent one.
    Tls(SocketAddr, Option<String>),
}

/// Who called, as decided before any work; in the request's extensions.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub door: Door,
    pub role: Role,
    /// The token's or certificate's name, when one gave the role.
    pub name: Option<String>,
}

impl Caller {
    /// The remote IP address, for TCP and TLS.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        match &self.door {
            Door::Unix => None,
            Door::Tcp(a) | Door::Tls(a, _) => Some(a.ip()),
        }
    }
}

impl fmt::Display for Door {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Door::Unix => write!(f, "unix socket"),
            Door::Tcp(a) => write!(f, "{a}"),
            Door::Tls(a, _) => write!(f, "{a} (tls)"),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as {}", self.door, self.role)?;
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// The loaded access rules.
pub(crate) struct Access {
    config: AccessConfig,
    tcp_role: Role,
    operators: Vec<Token>,
    viewers: Vec<Token>,
}

impl Access {
    /// Loads the token files; refuses files others may read.
    pub(crate) fn load(config: &AccessConfig) -> Result<Access> {
        let load = |p: &Option<PathBuf>| p.as_deref().map(load_tokens).transpose();
        Ok(Access {
            tcp_role: config.effective_tcp_role(),
            operators: load(&config.operator_tokens_file)?.unwrap_or_default(),
            viewers: load(&config.viewer_tokens_file)?.unwrap_or_default(),
            config: config.clone(),
        })
    }

    pub(crate) fn config(&self) -> &AccessConfig {
        &self.config
    }

    fn door_role(&self, door: &Door) -> (Role, Option<String>) {
        match door {
            Door::Unix => (self.config.unix_socket_role, None),
            Door::Tcp(_) => (self.tcp_role, None),
            Door::Tls(_, Some(cn)) if self.config.operator_names.contains(cn) => {
                (Role::Operator, Some(cn.clone()))
            }
            Door::Tls(_, Some(cn)) if self.config.viewer_names.contains(cn) => {
                (Role::Viewer.max(self.tcp_role), Some(cn.clone()))
            }
            Door::Tls(_, _) => (self.tcp_role, None),
        }
    }

    /// The role a token gives, compared in constant time.
    fn token_role<'a>(&'a self, secret: &str) -> Option<(Role, &'a str)> {
        let matches = |t: &Token| -> bool { t.secret.as_bytes().ct_eq(secret.as_bytes()).into() };
        // Every token is compared, so the time taken says nothing of which
        // (if any) matched.
        let find = |tokens: &'a [Token]| -> Option<&'a Token> {
            tokens
                .iter()
                .fold(None, |found, t| if matches(t) { Some(t) } else { found })
        };
        let operator = find(&self.operators);
        let viewer = find(&self.viewers);
        operator
            .map(|t| (Role::Operator, t.name.as_str()))
            .or(viewer.map(|t| (Role::Viewer, t.name.as_str())))
    }

    /// SPEC §6: who the caller is, or why it may not call `needed`.
    pub(crate) fn authorize(
        &self,
        door: Door,
        bearer: Option<&str>,
        needed: Role,
    ) -> std::result::Result<Caller, tonic::Status> {
        let (door_role, door_name) = self.door_role(&door);
        let token = bearer.and_then(|b| self.token_role(b));
        let (role, name) = match token {
            Some((role, name)) if role > door_role => (role, Some(name.to_string())),
            _ => (door_role, door_name),
        };
        if role >= needed {
            return Ok(Caller { door, role, name });
        }
        let what = match needed {
            Role::Operator => "InitHpIo and UploadImages need the operator role",
            _ => "this server needs the viewer role to watch",
        };
        // What was wrong, not what to type: each client says how to send
        // a token (daqdata's advice names its --token-file once).
        Err(match (bearer, token) {
            (Some(_), Some((token_role, name))) => tonic::Status::permission_denied(format!(
                "{what}; the token of {name} gives only the {token_role} role"
            )),
            (Some(_), None) => tonic::Status::unauthenticated(format!(
                "{what}; the bearer token given is not one this server knows"
            )),
            (None, _) => {
                tonic::Status::unauthenticated(format!("{what}: no bearer token was sent"))
            }
        })
    }
}

/// The role each RPC needs (by gRPC path).
fn needed_role(path: &str) -> Role {
    match daqdata_proto::rpc::by_path(path) {
        Some(rpc) if rpc.operator_only => Role::Operator,
        _ => Role::Viewer,
    }
}

/// The connection's door, which the accept loop (`transport`) put in the
/// request's extensions.
fn door_of<B>(req: &http::Request<B>) -> Door {
    // A request without one did not come through the accept loop: treat
    // it as the least trusted door there is.
    req.extensions()
        .get::<Door>()
        .cloned()
        .unwrap_or(Door::Tcp(SocketAddr::from(([0, 0, 0, 0], 0))))
}

/// The subject's common name of a DER certificate.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn bearer<B>(req: &http::Request<B>) -> Option<&str> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The tower layer that checks every RPC of every service (DaqData,
/// reflection, health) before it runs.
#[derive(Clone)]
pub(crate) struct AuthLayer(pub Arc<Access>, pub Arc<Metrics>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            access: self.0.clone(),
            metrics: self.1.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Auth<S> {
    access: Arc<Access>,
    metrics: Arc<Metrics>,
    inner: S,
}

/// A bounded label for an RPC path.
fn rpc_name(path: &str) -> &'static str {
    if let Some(rpc) = daqdata_proto::rpc::by_path(path) {
        return rpc.name;
    }
    match path {
        p if p.starts_with("/grpc.reflection.") => "reflection",
        p if p.starts_with("/grpc.health.") => "health",
        _ => "other",
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<std::result::Result<S::Response, S::Error>>,
    >;

    // (Always `Ready(Ok)` in place of asking `inner` is equivalent here:
    // the inner service is tonic's `Routes`, an axum `Router`, always ready.)
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        let door = door_of(&req);
        let peer = Caller {
            door: door.clone(),
            role: Role::None,
            name: None,
        };
        match self
            .access
            .authorize(door, bearer(&req), needed_role(&path))
        {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                futures::future::Either::Left(self.inner.call(req))
            }
            Err(status) => {
                // Audit (SPEC §6): refusals too, never the token.
                tracing::info!(rpc = %path, peer = %peer.door, code = ?status.code(), "refused: {}", status.message());
                self.metrics.refused(rpc_name(&path), status.code());
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "operator-secret-0123456789";
    const VIEW: &str = "viewer-secret-0123456789ab";

    fn access(config: AccessConfig) -> Access {
        Access {
            tcp_role: config.effective_tcp_role(),
            operators: parse_tokens(&format!("alice {OP}\n")).unwrap(),
            viewers: parse_tokens(&format!("# viewers\nbob {VIEW} # the night shift\n")).unwrap(),
            config,
        }
    }

    fn tcp() -> Door {
        Door::Tcp("192.0.2.7:5000".parse().unwrap())
    }

    fn code(r: std::result::Result<Caller, tonic::Status>) -> Option<tonic::Code> {
        r.err().map(|s| s.code())
    }

    #[test]
    fn token_files_are_name_token_lines_and_never_show_the_token() {
        let tokens = parse_tokens("# ops\n\nalice  0123456789abcdef0123 # on call\n").unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].name, "alice");
        assert!(!format!("{tokens:?}").contains("0123456789abcdef0123"));
        for bad in [
            "alice",
            "alice short",
            "alice 0123456789abcdef extra",
            "a 0123456789abcdef0\nb 0123456789abcdef0",
        ] {
            let err = parse_tokens(bad).unwrap_err();
            assert!(err.contains("line"), "{bad}: {err}");
            assert!(
                !err.contains("0123456789abcdef"),
                "the error shows a token: {err}"
            );
        }
    }

    #[test]
    fn the_tcp_role_defaults_follow_the_token_files() {
        let mut c = AccessConfig::default();
        assert_eq!(c.effective_tcp_role(), Role::Operator);
        c.operator_tokens_file = Some("ops".into());
        assert_eq!(c.effective_tcp_role(), Role::Viewer);
        c.viewer_tokens_file = Some("viewers".into());
        assert_eq!(c.effective_tcp_role(), Role::None);
        c.tcp_role = Some(Role::Viewer);
        assert_eq!(c.effective_tcp_role(), Role::Viewer);
    }

    #[test]
    fn every_row_of_spec_6() {
        let a = access(AccessConfig {
            operator_tokens_file: Some("ops".into()),
            viewer_tokens_file: Some("viewers".into()),
            operator_names: vec!["ctrl-room".into()],
            viewer_names: vec!["laptop".into()],
            ..AccessConfig::default()
        });
        use tonic::Code::*;
        // TCP without a token: nothing at all here.
        assert_eq!(
            code(a.authorize(tcp(), None, Role::Viewer)),
            Some(Unauthenticated)
        );
        assert_eq!(
            code(a.authorize(tcp(), Some("nope-nope-nope-nope"), Role::Viewer)),
            Some(Unauthenticated)
        );
        // A viewer token watches but may not operate.
        let viewer = a.authorize(tcp(), Some(VIEW), Role::Viewer).unwrap();
        assert_eq!(
            (viewer.role, viewer.name.as_deref()),
            (Role::Viewer, Some("bob"))
        );
        let denied = a.authorize(tcp(), Some(VIEW), Role::Operator).unwrap_err();
        assert_eq!(denied.code(), PermissionDenied);
        assert!(
            denied.message().contains("operator"),
            "{}",
            denied.message()
        );
        // An operator token does everything.
        assert_eq!(
            a.authorize(tcp(), Some(OP), Role::Operator).unwrap().role,
            Role::Operator
        );
        // The unix socket is the local operator's door.
        assert_eq!(
            a.authorize(Door::Unix, None, Role::Operator).unwrap().role,
            Role::Operator
        );
        // Certificate names over mutual TLS.
        let tls =
            |cn: Option<&str>| Door::Tls("192.0.2.7:5000".parse().unwrap(), cn.map(String::from));
        assert_eq!(
            a.authorize(tls(Some("ctrl-room")), None, Role::Operator)
                .unwrap()
                .role,
            Role::Operator
        );
        assert_eq!(
            code(a.authorize(tls(Some("laptop")), None, Role::Operator)),
            Some(Unauthenticated)
        );
        assert_eq!(
            a.authorize(tls(Some("laptop")), None, Role::Viewer)
                .unwrap()
                .role,
            Role::Viewer
        );
        assert_eq!(
            code(a.authorize(tls(Some("stranger")), None, Role::Viewer)),
            Some(Unauthenticated)
        );
        // The default, with no [access] at all: as the Python server.
        let open = access(AccessConfig::default());
        assert_eq!(
            open.authorize(tcp(), None, Role::Operator).unwrap().role,
            Role::Operator
        );
    }

    #[test]
    fn a_token_file_others_than_its_owner_may_open_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice 0123456789abcdef0123456789abcdef\n").unwrap();
        let load = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            load_tokens(&path)
        };
        for private in [0o600, 0o400, 0o700] {
            let tokens = load(private).unwrap_or_else(|e| panic!("{private:04o}: {e}"));
            assert_eq!(tokens.len(), 1, "{private:04o}");
        }
        // Every bit for the group or the world, alone and together.
        for shared in [
            0o604, 0o606, 0o602, 0o601, 0o660, 0o640, 0o620, 0o610, 0o644, 0o666,
        ] {
            let e = load(shared).err().map(|e| e.to_string());
            assert!(
                e.as_deref().is_some_and(
                    |e| e.contains("chmod 600") && e.contains(&format!("{shared:04o}"))
                ),
                "mode {shared:04o}: {e:?}"
            );
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let req = |v: &str| {
            http::Request::builder()
                .header("authorization", v)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&http::Request::new(())), None);
        use daqdata_proto::rpc;
        assert_eq!(needed_role(rpc::INIT_HP_IO.path), Role::Operator);
        assert_eq!(needed_role(rpc::UPLOAD_IMAGES.path), Role::Operator);
        assert_eq!(needed_role(rpc::STREAM_IMAGES.path), Role::Viewer);
        assert_eq!(needed_role(rpc::STATUS.path), Role::Viewer);
        assert_eq!(needed_role(rpc::STREAM_HASHPIPE_STATUS.path), Role::Viewer);
        assert_eq!(needed_role("/grpc.health.v1.Health/Check"), Role::Viewer);
    }

    #[test]
    fn socket_modes_are_octal_and_a_bad_one_is_named_with_its_key() {
        let mode = |m: &str| {
            toml::from_str::<AccessConfig>(&format!("unix_socket_mode = {m:?}"))
                .map(|a| a.unix_socket_mode.bits())
                .map_err(|e| e.to_string())
        };
        assert_eq!(mode("0660"), Ok(0o660));
        assert_eq!(mode("600"), Ok(0o600));
        assert_eq!(mode("0o640"), Ok(0o640));
        for bad in [
            "0999",
            "07777",
            "rw-rw----",
            "",
            "+660",
            "-1",
            "0o",
            "99999999999",
        ] {
            let err = mode(bad).unwrap_err();
            assert!(
                err.contains("unix_socket_mode") && err.contains("octal"),
                "{bad}: {err}"
            );
        }
        assert!(toml::from_str::<AccessConfig>("unix_socket_mode = 660").is_err());
    }

    /// Token-file errors give the line as a person counts them (from 1,
    /// comments and blank lines included); a token of 16 characters is
    /// the shortest taken.
    #[test]
    fn token_file_errors_name_the_line_and_16_characters_is_enough() {
        let err = parse_tokens("# ops\n\nalice 0123456789abcdef\nbob short\n").unwrap_err();
        assert!(err.starts_with("line 4 (bob)"), "{err}");
        assert_eq!(parse_tokens("a 0123456789abcdef").map(|t| t.len()), Ok(1));
        assert!(parse_tokens("a 0123456789abcde").is_err(), "15 characters");
        let shown = format!("{:?}", parse_tokens("alice 0123456789abcdef").unwrap());
        assert!(
            shown.contains("alice") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }

    /// Per-peer limits are for remote peers: not loopback (unless
    /// configured so), and never a relay peer (a gateway speaks for many).
    #[test]
    fn per_peer_limits_apply_to_remote_peers_that_are_not_relays() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut c = AccessConfig {
            relay_peers: vec!["10.0.0.0/8".parse().unwrap()],
            ..AccessConfig::default()
        };
        assert!(c.limits_apply_to(ip("192.0.2.7")));
        assert!(!c.limits_apply_to(ip("10.1.2.3")), "a relay peer");
        assert!(!c.limits_apply_to(ip("127.0.0.1")));
        assert!(!c.limits_apply_to(ip("::1")));
        c.per_peer_limits_on_loopback = true;
        assert!(c.limits_apply_to(ip("127.0.0.1")));
        c.relay_peers.push("127.0.0.0/8".parse().unwrap());
        assert!(!c.limits_apply_to(ip("127.0.0.1")), "a relay on loopback");
    }

    /// What logs and refusals say of a caller: how it came, its role, and
    /// the name of the token or certificate that gave it, never more.
    #[test]
    fn a_caller_is_described_by_door_role_and_name() {
        let far: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let caller = |door, role, name: Option<&str>| Caller {
            door,
            role,
            name: name.map(String::from),
        };
        let unix = caller(Door::Unix, Role::Operator, None);
        assert_eq!(unix.to_string(), "unix socket as operator");
        assert_eq!(unix.ip(), None);
        let tcp = caller(Door::Tcp(far), Role::Viewer, Some("alice"));
        assert_eq!(tcp.to_string(), "192.0.2.7:5000 as viewer (alice)");
        assert_eq!(tcp.ip(), Some(far.ip()));
        let tls = caller(Door::Tls(far, Some("ctrl".into())), Role::None, None);
        assert_eq!(tls.to_string(), "192.0.2.7:5000 (tls) as none");
        assert_eq!(tls.ip(), Some(far.ip()));
    }

    /// A token only ever raises the door's role: an operator on the unix
    /// socket who also sends a viewer token stays an operator, and a token
    /// of the door's own role leaves the door's name (the certificate's)
    /// in logs.
    #[test]
    fn a_token_raises_the_role_of_the_door_and_never_lowers_it() {
        let a = access(AccessConfig {
            operator_tokens_file: Some("ops".into()),
            viewer_tokens_file: Some("viewers".into()),
            viewer_names: vec!["laptop".into()],
            ..AccessConfig::default()
        });
        let unix = a.authorize(Door::Unix, Some(VIEW), Role::Operator).unwrap();
        assert_eq!((unix.role, unix.name), (Role::Operator, None));
        let laptop = Door::Tls("192.0.2.7:5000".parse().unwrap(), Some("laptop".into()));
        let same = a
            .authorize(laptop.clone(), Some(VIEW), Role::Viewer)
            .unwrap();
        assert_eq!(
            (same.role, same.name.as_deref()),
            (Role::Viewer, Some("laptop"))
        );
        let raised = a.authorize(laptop, Some(OP), Role::Operator).unwrap();
        assert_eq!(
            (raised.role, raised.name.as_deref()),
            (Role::Operator, Some("alice"))
        );
    }

    /// Refusals are counted by RPC under a bounded set of labels.
    #[test]
    fn refusals_are_labelled_by_rpc_with_a_bounded_set_of_names() {
        let init = daqdata_proto::rpc::INIT_HP_IO;
        assert_eq!(rpc_name(init.path), init.name);
        assert_eq!(
            rpc_name("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            "reflection"
        );
        assert_eq!(rpc_name("/grpc.health.v1.Health/Check"), "health");
        assert_eq!(rpc_name("/evil.Service/Anything"), "other");
    }
}
