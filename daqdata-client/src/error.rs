//! What can go wrong, said so that a person knows what to do next.

use std::path::PathBuf;

use daqdata_proto::rpc;
use tonic::Code;

/// Errors of the client library. Each names the file or host and request
/// it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file, a credential or a host as typed cannot be
    /// used (daqdata-net says which, and why).
    #[error(transparent)]
    Net(#[from] daqdata_net::Error),
    /// A call named a host this client was not made with.
    #[error("{host} is not one of this client's hosts")]
    NotAHost {
        /// The host.
        host: String,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server could not be reached at all.
    #[error("{host}: cannot connect (or lost the connection): {reason}; is a DaqData server running there (daqdata-server), and is the address right?")]
    Unreachable {
        /// The host.
        host: String,
        /// The transport's reason.
        reason: String,
    },
    /// The server answered an RPC with an error status.
    #[error("{host}: {rpc} failed with {code:?}: {message}{}", advice(*code, rpc))]
    Rpc {
        /// The host.
        host: String,
        /// The RPC.
        rpc: &'static str,
        /// The gRPC status code.
        code: Code,
        /// The server's message.
        message: String,
    },
    /// InitHpIo returned `success = false`.
    #[error("{host}: InitHpIo was refused: {message}")]
    InitRefused {
        /// The host.
        host: String,
        /// The server's error_message.
        message: String,
    },
    /// A PanoImage that is not one of the four data products.
    #[error("{host}: received an image that cannot be decoded: {reason}")]
    BadImage {
        /// The host it came from.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// None of the hosts answered a ping.
    #[error("no DAQ host answered a ping (tried {0}); is a DaqData server running, and are the hosts right?")]
    NoValidHosts(String),
}

impl Error {
    /// The error of an RPC to `host`, from its status.
    pub(crate) fn rpc(host: &crate::Host, rpc: &'static str, status: tonic::Status) -> Self {
        // A refused or failed connection surfaces as UNAVAILABLE carrying
        // the transport error as its source (a server's own UNAVAILABLE
        // has none); say so plainly rather than as a server answer.
        if status.code() == Code::Unavailable && std::error::Error::source(&status).is_some() {
            let mut reason = daqdata_net::status_reason(&status);
            if matches!(host, crate::Host::Tls { .. }) {
                reason += " (the TLS handshake: --tls-ca must be the CA that signed the server's certificate, which must name the host; a server that requires client certificates needs --tls-cert and --tls-key signed by its CA)";
            }
            return Error::Unreachable {
                host: host.to_string(),
                reason,
            };
        }
        Error::Rpc {
            host: host.to_string(),
            rpc,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// The host an error concerns, when it concerns one.
    pub fn host(&self) -> Option<String> {
        match self {
            Error::Net(daqdata_net::Error::Address { address, .. }) => Some(address.clone()),
            Error::NotAHost { host }
            | Error::Unreachable { host, .. }
            | Error::Rpc { host, .. }
            | Error::InitRefused { host, .. }
            | Error::BadImage { host, .. } => Some(host.clone()),
            _ => None,
        }
    }

    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc { code, .. } => Some(*code),
            Error::Unreachable { .. } => Some(Code::Unavailable),
            _ => None,
        }
    }
}

/// What the user should do about each status code the server uses (SPEC
/// §3, and §6 for who may call what). It reads the code and the RPC's row
/// of `daqdata_proto::rpc`, never the server's message, which is shown
/// beside it as the server wrote it.
fn advice(code: Code, rpc: &str) -> String {
    let operator = rpc::ALL.iter().any(|r| r.name == rpc && r.operator_only);
    let (role, a) = if operator {
        ("operator", "an")
    } else {
        ("viewer", "a")
    };
    match code {
        Code::Unauthenticated => format!(
            " ({rpc} needs the {role} role: pass --token-file FILE (or set DAQDATA_TOKEN) with a token this server lists, or use the unix socket on the DAQ node)"
        ),
        // InitHpIo's PERMISSION_DENIED is a role that is not enough, or a
        // data_dir outside the allowed roots; the server's message says which.
        Code::PermissionDenied if rpc == rpc::INIT_HP_IO.name => format!(
            " (either your token gives only the viewer role and {rpc} needs an operator token: ask whoever runs the DAQ node for one, or use the unix socket there; or data_dir is outside the server's allowed_data_roots: use a directory under one of them)"
        ),
        Code::PermissionDenied => format!(
            " (your token's role is not enough: {rpc} needs {a} {role} token: ask whoever runs the DAQ node for one, or use the unix socket there)"
        ),
        _ => plain_advice(code).to_string(),
    }
}

fn plain_advice(code: Code) -> &'static str {
    match code {
        Code::FailedPrecondition => {
            " (run `daqdata --init CFG` or `daqdata --init-sim` first; to reconfigure while streams are active, set \"force\": true)"
        }
        Code::Unavailable => {
            " (the server is re-initializing or shutting down: retry in a few seconds)"
        }
        Code::ResourceExhausted => {
            " (the server has too many streams open: close some viewers or raise max_concurrent_rpcs in its config)"
        }
        Code::InvalidArgument => {
            " (fix the request: check data_dir exists on the DAQ node, the update interval is within the server's limits, and at least one image type is asked for)"
        }
        Code::Cancelled => " (the stream was ended: the server was reconfigured or is shutting down)",
        Code::DeadlineExceeded => " (the server did not answer in time: is it overloaded or unreachable?)",
        Code::Unimplemented => " (the server does not offer this RPC: is it a DaqData server?)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(code: Code, message: &str) -> String {
        let host: crate::Host = "daq1".parse().unwrap();
        Error::rpc(&host, "StreamImages", tonic::Status::new(code, message)).to_string()
    }

    #[test]
    fn a_bad_address_reads_as_daqdata_net_says_it_and_names_the_host() {
        let net = "daq1:notaport".parse::<daqdata_net::Address>().unwrap_err();
        let said = net.to_string();
        let e = Error::from(net);
        assert_eq!(e.to_string(), said);
        assert!(said.contains("daq1:notaport"), "{said}");
        assert_eq!(e.host().as_deref(), Some("daq1:notaport"));
    }

    #[test]
    fn each_server_status_says_what_to_do() {
        let s = said(Code::FailedPrecondition, "hp_io is not initialized");
        assert!(s.starts_with("daq1:50051: StreamImages"), "{s}");
        assert!(
            s.contains("hp_io is not initialized") && s.contains("--init-sim"),
            "{s}"
        );
        assert!(said(Code::Unavailable, "re-initializing").contains("retry"));
        assert!(said(Code::ResourceExhausted, "100 streams").contains("too many streams"));
        let host: crate::Host = "daq1".parse().unwrap();
        let s = Error::rpc(
            &host,
            "InitHpIo",
            tonic::Status::permission_denied("/data is outside allowed_data_roots"),
        )
        .to_string();
        assert!(s.contains("use a directory under one of them"), "{s}");
        assert!(said(Code::InvalidArgument, "/x does not exist").contains("data_dir"));
        assert!(said(Code::Cancelled, "hp_io was reconfigured").contains("reconfigured"));
    }

    #[test]
    fn a_refusal_says_how_to_get_the_role() {
        let host: crate::Host = "daq1".parse().unwrap();
        let s = Error::rpc(
            &host,
            "InitHpIo",
            tonic::Status::unauthenticated("InitHpIo and UploadImages need the operator role"),
        )
        .to_string();
        assert!(
            s.contains("InitHpIo needs the operator role: pass --token-file")
                && s.contains("unix socket on the DAQ node"),
            "{s}"
        );
        let s = said(Code::Unauthenticated, "needs the viewer role");
        assert!(s.contains("StreamImages needs the viewer role"), "{s}");
        let s = Error::rpc(
            &host,
            "UploadImages",
            tonic::Status::permission_denied("the token of bob gives only the viewer role"),
        )
        .to_string();
        assert!(
            s.contains("your token's role is not enough: UploadImages needs an operator token"),
            "{s}"
        );
        assert!(!s.contains("allowed_data_roots"), "{s}");
    }

    #[test]
    fn advice_reads_the_code_and_the_rpc_table_never_the_message_and_says_it_once() {
        let host: crate::Host = "daq1".parse().unwrap();
        for message in [
            "",
            "needs the viewer role",
            "the token of bob gives only the viewer role",
        ] {
            for (code, rpc) in [
                (Code::Unauthenticated, "UploadImages"),
                (Code::PermissionDenied, "UploadImages"),
                (Code::Unauthenticated, "StreamHashpipeStatus"),
            ] {
                let s = Error::rpc(&host, rpc, tonic::Status::new(code, message)).to_string();
                let prefix = format!("daq1:50051: {rpc} failed with {code:?}: {message}");
                let advice = s.strip_prefix(&prefix).unwrap_or_else(|| panic!("{s}"));
                let without = Error::rpc(&host, rpc, tonic::Status::new(code, "")).to_string();
                assert!(
                    without.ends_with(advice),
                    "the advice depends on the message: {s}"
                );
                assert!(s.matches("--token-file").count() <= 1, "{s}");
            }
        }
        let s = said(Code::PermissionDenied, "");
        assert!(s.contains("StreamImages needs a viewer token"), "{s}");
        let s = Error::rpc(&host, "UploadImages", tonic::Status::unauthenticated("")).to_string();
        assert!(s.contains("UploadImages needs the operator role"), "{s}");
        assert_eq!(s.matches("--token-file").count(), 1, "{s}");
    }

    #[test]
    fn a_server_unavailable_is_not_a_connection_failure() {
        let host: crate::Host = "daq1".parse().unwrap();
        let e = Error::rpc(
            &host,
            "StreamImages",
            tonic::Status::unavailable("shutting down"),
        );
        assert!(matches!(
            e,
            Error::Rpc {
                code: Code::Unavailable,
                ..
            }
        ));
    }
}
