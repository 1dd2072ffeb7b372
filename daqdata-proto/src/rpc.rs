//! The RPCs of service `DaqData` (SPEC §2): each one's name, its gRPC path
//! and whether only an operator may call it (SPEC §6). The server's access
//! check, its metrics labels and the client's advice all read this table.

/// One RPC of service `DaqData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpc {
    /// The method's name, as in the `.proto` (`StreamImages`).
    pub name: &'static str,
    /// Its gRPC path (`/daqdata.DaqData/StreamImages`).
    pub path: &'static str,
    /// Reconfigures hp_io or injects images: the operator role is needed.
    /// Every other RPC is a viewer's.
    pub operator_only: bool,
}

const fn rpc(name: &'static str, path: &'static str, operator_only: bool) -> Rpc {
    Rpc {
        name,
        path,
        operator_only,
    }
}

/// `StreamImages`: the newest frames, paced per client.
pub const STREAM_IMAGES: Rpc = rpc("StreamImages", "/daqdata.DaqData/StreamImages", false);
/// `InitHpIo`: (re)configures hp_io.
pub const INIT_HP_IO: Rpc = rpc("InitHpIo", "/daqdata.DaqData/InitHpIo", true);
/// `Ping`: answers at once.
pub const PING: Rpc = rpc("Ping", "/daqdata.DaqData/Ping", false);
/// `UploadImages`: injects images as if hp_io had read them.
pub const UPLOAD_IMAGES: Rpc = rpc("UploadImages", "/daqdata.DaqData/UploadImages", true);
/// `Status`: whether hp_io runs, and what it follows.
pub const STATUS: Rpc = rpc("Status", "/daqdata.DaqData/Status", false);
/// `StreamHashpipeStatus`: Hashpipe's status buffer (SPEC §9).
pub const STREAM_HASHPIPE_STATUS: Rpc = rpc(
    "StreamHashpipeStatus",
    "/daqdata.DaqData/StreamHashpipeStatus",
    false,
);

/// Every RPC of service `DaqData`.
pub const ALL: [Rpc; 6] = [
    STREAM_IMAGES,
    INIT_HP_IO,
    PING,
    UPLOAD_IMAGES,
    STATUS,
    STREAM_HASHPIPE_STATUS,
];

/// The RPC of service `DaqData` at a gRPC path, if any.
pub fn by_path(path: &str) -> Option<Rpc> {
    ALL.into_iter().find(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_the_service_and_the_method_name() {
        for r in ALL {
            assert_eq!(r.path, format!("/{}/{}", crate::SERVICE, r.name));
            assert_eq!(by_path(r.path), Some(r));
        }
        assert_eq!(by_path("/daqdata.DaqData/Nothing"), None);
    }

    #[test]
    fn only_init_and_upload_need_an_operator() {
        let operator: Vec<_> = ALL
            .iter()
            .filter(|r| r.operator_only)
            .map(|r| r.name)
            .collect();
        assert_eq!(operator, ["InitHpIo", "UploadImages"]);
    }

    #[test]
    fn the_table_names_every_method_the_proto_declares() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the build's own descriptor set decodes");
        let service = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .find(|s| s.name() == "DaqData")
            .expect("service DaqData is in the descriptor set");
        let mut declared: Vec<_> = service.method.iter().map(|m| m.name()).collect();
        let mut ours: Vec<_> = ALL.iter().map(|r| r.name).collect();
        declared.sort_unstable();
        ours.sort_unstable();
        assert_eq!(declared, ours);
    }
}
