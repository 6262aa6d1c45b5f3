//! The smallest program: says hello with its arguments and exits.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    exo_rt::println!("hello from a process of my own (args: {:?})", exo_rt::args());
}
