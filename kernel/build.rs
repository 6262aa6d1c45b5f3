//! Link the bare-metal kernel with its linker script. Host builds (where the
//! crate compiles to an empty program for `cargo test --workspace`) are left
//! alone.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-none" {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rerun-if-changed={dir}/linker.ld");
    }
}
