//! Code generation and linking only:
//! - gRPC/protobuf code from proto/ (protoc comes from the protoc-bin-vendored crate), plus the
//!   descriptor set that server reflection serves;
//! - an rpath to libtorch so binaries run without LD_LIBRARY_PATH, and libtorch kept linked even
//!   though no symbol is used from it directly (it is what pulls in the CUDA backend).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded at this point.
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .codec_path("crate::api::grpc::codec::BoundedCodec")
        .file_descriptor_set_path(out.join("crossrank_descriptor.bin"))
        .compile_protos(&["proto/crossrank/v1/crossrank.proto"], &["proto"])?;

    // torch-sys (links = "tch") exports the directory of the libtorch it linked against.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    // Without --no-as-needed the linker drops libtorch.so, which alone pulls in libtorch_cuda.so:
    // CUDA would then silently look unavailable.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
    Ok(())
}
