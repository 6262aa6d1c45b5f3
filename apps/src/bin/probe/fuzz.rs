//! A hostile process: random system-call numbers and arguments, biased
//! towards values that matter (its own addresses, the kernel's, handles,
//! every level and rights bit). It must never bring down the kernel, and
//! must not be able to touch anyone else's memory (checked by a separate
//! checker process and by init).

use crate::regions::{spare, tables_for};
use exo_abi::PAGE_SIZE;
use exo_rt::layout::{HANDLES_VA, MAILBOX_VA, SCRATCH_VA};
use exo_rt::{println, sys};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Addresses worth trying. Its own program, stacks, control page and
/// parent handle are left out on purpose: moving them away would only kill
/// the fuzzer itself (which the kernel would survive, but the count would
/// stop).
fn address(r: &mut Rng) -> u64 {
    let x = r.next();
    match x % 10 {
        0 => x,                                                        // anything
        1 => 0xffff_8000_0000_0000 | (x & 0x7fff_ffff_f000),           // kernel window
        2 => 0xffff_ffff_8000_0000 | (x & 0x7fff_f000),                // kernel image
        3 => SCRATCH_VA + (x >> 8) % 64 * PAGE_SIZE,                   // its own region
        4 => SCRATCH_VA + (x >> 8) % 4 * (1 << 21),                    // table-aligned
        5 => HANDLES_VA + (x >> 8) % 16 * PAGE_SIZE,                   // handles
        6 => crate::regions::spare_base() + (x >> 8) % 64 * PAGE_SIZE, // spare frames
        7 => (x >> 8) % 8 * (1u64 << 39),                              // level-3 aligned
        8 => 0x0000_7fff_ffff_f000,                                    // top of user half
        _ => 0x8000_0000_0000 + (x & 0xfff),                           // just past it
    }
}

/// `calls` random calls from a generator seeded with `seed`. The running
/// count goes to mailbox word 2 after every call, so that init can count
/// the calls even if the fuzzer destroys itself (it may: moving its own
/// pages away or running a clone of itself is allowed — only the kernel
/// and the other processes must be unharmed).
pub fn run(calls: u64, seed: u64) -> u32 {
    let _ = tables_for(SCRATCH_VA);
    let mut r = Rng(0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut ok = 0u64;
    let mut errors = [0u64; 16];
    for i in 0..calls {
        let nr = match r.next() % 8 {
            0 => r.next(),
            n => n % 5,
        };
        let a = [address(&mut r), r.next() % 6, address(&mut r), address(&mut r), r.next() % 64];
        // Never yield to the parent through a random message: that is a
        // protocol with init, not a kernel interface.
        let a0 = if nr == 4 && a[0] == exo_rt::layout::PARENT_HANDLE_VA { 0 } else { a[0] };
        let (a1, a2) = if nr == 2 { (a[2], a[1]) } else { (a[1], a[2]) };
        match sys::raw_number(nr, a0, a1, a2, a[3], a[4]) {
            Ok(_) => ok += 1,
            Err(e) => errors[(e as usize).min(15)] += 1,
        }
        exo_rt::mem::write(MAILBOX_VA + 16, i + 1);
        if i % 20_000 == 0 && i > 0 {
            println!("fuzz: {i} calls so far");
        }
        if i % 4096 == 0 {
            let _ = spare();
        }
    }
    println!("fuzz: {calls} random system calls made, {ok} succeeded; errors by code: {errors:?}");
    0
}
