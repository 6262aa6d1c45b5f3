//! The evaluation harness: one result schema and one set of workloads for
//! every system (host Linux, a Linux guest, the exokernel).
//!
//! Without the `engines` feature this crate is only the result schema
//! ([`results`]), its plots ([`plot`]), the workload generators
//! ([`workload`]) and the run matrix ([`matrix`]): what `cargo xtask`
//! needs. With it (the default) it also holds the engines, the in-process
//! counters and the runner behind the `eval-bench` binary.

pub mod counters;
pub mod matrix;
pub mod plot;
pub mod rawdev;
pub mod results;
pub mod workload;

#[cfg(feature = "engines")]
pub mod engines;
#[cfg(feature = "engines")]
pub mod runner;
