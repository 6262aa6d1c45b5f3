//! Spins forever: the root scheduler must preempt it.
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
exo_rt::entry!(main);

#[cfg(exo_user)]
fn main() {
    exo_rt::println!("spin: looping forever without yielding");
    let mut x: u64 = 0;
    loop {
        x = core::hint::black_box(x.wrapping_add(1));
    }
}
