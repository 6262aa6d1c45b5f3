//! The smallest program: says hello with its arguments and exits.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
fn main() {
    exo_rt::println!("hello from a process of my own (args: {:?})", exo_rt::args());
}
