//! `fsuser`: the file service's test clients (QEMU `libfs_share`). Each
//! role talks to `fsd` through the channel page init linked at
//! `CLIENT_CHANNEL_VA` and finds the files it opened in its window at
//! `CLIENT_FILES_VA`. Roles run in steps that init orders through the
//! mailbox (word 0: the step to run, word 1: the last step done, words
//! 2..: results), so two clients can watch each other's stores.
//!
//! Exit code 0 = every check of the role held; 5 = a check failed (the
//! line before says which); 6 = the file service failed a call.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
mod roles;

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    let args = exo_rt::args();
    match roles::run(args) {
        Ok(()) => exo_rt::exit(0),
        Err((code, e)) => {
            exo_rt::println!("fsuser {args}: FAILED: {e}");
            exo_rt::exit(code)
        }
    }
}
