//! Compiles `proto/daq_data.proto` with `protox` (pure Rust), so building
//! needs no system `protoc`.
//!
//! The code is generated twice from one descriptor set: once with the plain
//! message types and the client, and once with the server alone, where
//! `StreamImagesResponse` maps to `SharedStreamImagesResponse`, whose
//! `pano_image` is bytes encoded once and shared by every stream.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/daq_data.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile([proto], ["proto"])?;
    std::fs::write(
        out.join("daqdata_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let messages = out.join("messages");
    std::fs::create_dir_all(&messages)?;
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&messages)
        .compile_fds(fds.clone())?;

    let server = out.join("server");
    std::fs::create_dir_all(&server)?;
    tonic_prost_build::configure()
        .build_client(false)
        .out_dir(&server)
        .extern_path(".daqdata", "crate::daqdata")
        .extern_path(
            ".daqdata.StreamImagesResponse",
            "crate::SharedStreamImagesResponse",
        )
        .compile_fds(fds)?;
    Ok(())
}
