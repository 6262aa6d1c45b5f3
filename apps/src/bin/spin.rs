//! Spins forever: the root scheduler must preempt it.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
exo_rt::entry!(main);

#[cfg(target_os = "none")]
fn main() {
    exo_rt::println!("spin: looping forever without yielding");
    let mut x: u64 = 0;
    loop {
        x = core::hint::black_box(x.wrapping_add(1));
    }
}
