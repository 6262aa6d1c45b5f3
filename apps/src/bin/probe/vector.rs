//! `vector SEED`: hold a pattern unique to this process (its seed) and to
//! the round in every vector register while the root scheduler preempts
//! it against other `vector` probes. Every round must end with its own
//! pattern intact (no value lost), and every upcall entry after a switch
//! must find the registers cleared or its own, never another probe's
//! (none leaked). Exit 0 when enough rounds were preempted and all held.

use exo_rt::println;
use exo_rt::vector::{self, Regs, REGS};

/// Top 24 bits of every pattern word: recognisable in a leaked register.
const MAGIC: u64 = 0x56_4543 << 40;
/// Preempted rounds wanted before passing.
const PREEMPTED_ROUNDS: u64 = 12;
/// Round limit (the test's time bound if preemption never comes).
const MAX_ROUNDS: u64 = 400;
const SPINS: u64 = 400_000;

fn pattern(seed: u64, round: u64, width: u64) -> Regs {
    let mut p = Regs::ZERO;
    let lanes = if width == 2 { 4 } else { 2 };
    for (r, reg) in p.0.iter_mut().enumerate() {
        for lane in 0..lanes {
            let w = MAGIC | (seed & 0xff) << 32 | (round & 0xffff) << 16 | (r as u64) << 4 | lane as u64;
            reg[lane * 8..lane * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
    }
    p
}

fn word(reg: &[u8; 32], lane: usize) -> u64 {
    u64::from_le_bytes(reg[lane * 8..lane * 8 + 8].try_into().unwrap_or([0; 8]))
}

/// What an upcall entry found in the vector registers.
enum Entry {
    Cleared,
    Own,
    /// Register `reg` held probe `seed`'s value.
    Leaked {
        reg: usize,
        seed: u64,
    },
    Garbage {
        reg: usize,
    },
}

fn classify(found: &Regs, own_seed: u64) -> Entry {
    if *found == Regs::ZERO {
        return Entry::Cleared;
    }
    let mut all_own = true;
    for r in 0..REGS {
        for lane in 0..4 {
            let w = word(&found.0[r], lane);
            if w == 0 {
                continue;
            }
            if w & (0xff_ffff << 40) != MAGIC {
                return Entry::Garbage { reg: r };
            }
            let seed = (w >> 32) & 0xff;
            if seed != own_seed & 0xff {
                return Entry::Leaked { reg: r, seed };
            }
        }
        all_own &= found.0[r] != [0; 32];
    }
    if all_own {
        Entry::Own
    } else {
        Entry::Garbage { reg: 0 }
    }
}

pub fn run(seed: u64) -> u32 {
    let width = vector::width();
    let name = ["none", "SSE (XMM0-15)", "AVX (YMM0-15)"][width.min(2) as usize];
    println!("vector {seed}: registers: {name}");
    if width == 0 {
        println!("vector {seed}: no usable vector registers");
        return 1;
    }
    vector::watch_entries();
    let (mut preempted, mut cleared, mut own) = (0u64, 0u64, 0u64);
    let mut round = 0;
    while round < MAX_ROUNDS && preempted < PREEMPTED_ROUNDS {
        round += 1;
        let want = pattern(seed, round, width);
        let before = exo_rt::upcalls();
        let got = vector::hold(&want, SPINS, width);
        if got != want {
            let r = (0..REGS).find(|&r| got.0[r] != want.0[r]).unwrap_or(0);
            println!(
                "vector {seed}: LOST in round {round}: register {r} holds {:#x} {:#x}, expected {:#x} {:#x}",
                word(&got.0[r], 0),
                word(&got.0[r], 1),
                word(&want.0[r], 0),
                word(&want.0[r], 1)
            );
            return 3;
        }
        if exo_rt::upcalls() == before {
            continue;
        }
        preempted += 1;
        match classify(&vector::at_last_entry(), seed) {
            Entry::Cleared => cleared += 1,
            Entry::Own => own += 1,
            Entry::Leaked { reg, seed: other } => {
                println!("vector {seed}: LEAK in round {round}: at entry, register {reg} held probe {other}'s value");
                return 4;
            }
            Entry::Garbage { reg } => {
                println!(
                    "vector {seed}: at entry in round {round}, register {reg} held neither zero nor this probe's value"
                );
                return 5;
            }
        }
    }
    println!(
        "vector {seed}: {round} rounds, {preempted} preempted and resumed with every register intact; entries found {cleared} cleared, {own} own, 0 leaked"
    );
    if preempted < PREEMPTED_ROUNDS {
        println!("vector {seed}: only {preempted} rounds were preempted (want {PREEMPTED_ROUNDS})");
        return 6;
    }
    0
}
