//! The evaluation harness: one result schema and one set of workloads for
//! every system (host Linux, a Linux guest, the exokernel).
//!
//! Without the `engines` feature this crate is the result schema
//! ([`results`]), its plots ([`plot`]), the workload generators
//! ([`workload`]), the run matrix ([`matrix`]) and everything that turns
//! what the machines printed into results: one module per `cargo xtask
//! eval` comparison ([`kernel`], [`db`], [`drivers`], [`host`], [`linux`])
//! and the median-round picking they share ([`rounds`]). `cargo xtask`
//! builds it that way: xtask builds images and boots machines, this crate
//! parses, aggregates, compares and reports. The lines the exokernel's
//! programs print are defined once in the `eval-lines` crate. With it (the default) it also holds the engines, the in-process
//! counters and the runner behind the `eval-bench` binary.

pub mod budget;
pub mod counters;
pub mod db;
pub mod drivers;
pub mod drivers_smp;
pub mod fio;
pub mod fs;
pub mod host;
pub mod kernel;
pub mod linux;
pub mod matrix;
pub mod plot;
pub mod rawdev;
pub mod rawmedia;
pub mod recovery;
pub mod results;
pub mod rounds;
pub mod workload;

#[cfg(feature = "engines")]
pub mod engines;
#[cfg(feature = "engines")]
pub mod fsbench;
#[cfg(feature = "engines")]
pub mod runner;
