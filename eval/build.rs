//! Links `eval-bench` with `-Wl,--wrap` around the libc calls that flush
//! (and the write calls, to spot O_SYNC/O_DSYNC descriptors), so that the
//! flushes every engine makes are counted in-process. Only the binary gets
//! the wrappers; the library stays an ordinary library.

/// Keep in sync with `src/bin/eval-bench/flushwrap.rs`.
const WRAPPED: [&str; 13] = [
    "fsync",
    "fdatasync",
    "msync",
    "syncfs",
    "write",
    "pwrite",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev64",
    "pwritev2",
    "close",
    "sync",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let engines = std::env::var_os("CARGO_FEATURE_ENGINES").is_some();
    if linux && engines {
        for sym in WRAPPED {
            println!("cargo:rustc-link-arg-bins=-Wl,--wrap={sym}");
        }
    }
}
