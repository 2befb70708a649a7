//! Linking only (codegen joins later): make the binaries find libtorch without LD_LIBRARY_PATH,
//! and keep libtorch (with its CUDA backend) linked even though no symbol is used from it directly.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys (links = "tch") exports the directory of the libtorch it linked against.
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    // Without --no-as-needed the linker drops libtorch.so, which alone pulls in libtorch_cuda.so:
    // CUDA would then silently look unavailable.
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch,--as-needed");
}
