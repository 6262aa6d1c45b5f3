//! `smp_readrandom` (issue #13): libdb readrandom by one reader per core
//! on the NVDIMM (`initlib::readscale`): a database of `keys` keys is
//! loaded, then, per round, one reader on CPU 0 runs `ops` gets, one on
//! CPU 1 alone, then two readers, on CPU 0 and CPU 1 at once, `ops` gets
//! each. Every value is checked by the readers; this scenario checks that
//! every reader made all its gets, ran only on its CPU, and made no system
//! call and took no fault in its loop. Speed is printed (the
//! `EXO-READSCALE` lines), never asserted: `cargo xtask eval --readscale`
//! measures it. `readrandom=<keys>,<ops>[,<rounds>]` on the command line
//! sets the size (the eval's is bigger).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use exo_abi::kinfo as ki;
use exo_rt::{kinfo, println};
use initlib::readscale::{self, Run};

type Outcome = Result<(), String>;

/// The test's size: about 20 s of TCG on a loaded 2-core host.
const TEST_KEYS: u64 = 20_000;
const TEST_OPS: u64 = 20_000;

/// Rounds at most: every reader is spawned before the runs (5 a round),
/// and init's process table has 32 slots.
const MAX_ROUNDS: u64 = 4;

/// `readrandom_one_core` on the command line: only the runs on CPU 0
/// with CPU 1 halted (the `-icount` boot of `eval --readscale`, whose
/// round-robin machine counts every CPU's instructions on one clock).
fn one_core_only() -> bool {
    kinfo::cmdline().split_whitespace().any(|w| w == "readrandom_one_core")
}

fn size() -> Result<(u64, u64, u64), String> {
    let Some(arg) = kinfo::cmdline().split_whitespace().find_map(|w| w.strip_prefix("readrandom=")) else {
        return Ok((TEST_KEYS, TEST_OPS, 1));
    };
    let n: Vec<u64> = arg
        .split(',')
        .map(|n| n.parse::<u64>().map_err(|_| format!("readrandom=: {n:?} is not a number")))
        .collect::<Result<_, _>>()?;
    match n[..] {
        [keys, ops] if keys > 0 && ops > 0 => Ok((keys, ops, 1)),
        [keys, ops, rounds] if keys > 0 && ops > 0 && (1..=MAX_ROUNDS).contains(&rounds) => Ok((keys, ops, rounds)),
        _ => {
            Err(format!("readrandom={arg}: expected <keys>,<ops>[,<rounds>], all above 0, at most {MAX_ROUNDS} rounds"))
        }
    }
}

/// Every reader made its `ops` gets with no system call and no fault.
fn check(run: &Run, ops: u64) -> Outcome {
    for r in &run.readers {
        if r.ops != ops || r.ops == 0 {
            return Err(format!("the reader on CPU {} made {} gets, expected {ops}", r.cpu, r.ops));
        }
        if r.syscalls != 0 || r.faults != 0 {
            return Err(format!(
                "the reader on CPU {} made {} system calls and took {} faults in its loop (expected none)",
                r.cpu, r.syscalls, r.faults
            ));
        }
    }
    Ok(())
}

pub fn smp_readrandom() -> Outcome {
    let (keys, ops, rounds) = size()?;
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    if mask & 0b11 != 0b11 {
        return Err(format!("needs CPUs 0 and 1 online (mask {mask:#x})"));
    }
    let nonce = crate::basic::nonce_or_clock();
    // Load, and spawn every reader (paused), before CPU 1 runs any space:
    // taking the pages back from the loader and spawning (thousands of
    // moves) then need no TLB shootdown to CPU 1. The first reader on
    // CPU 0 of each round runs before CPU 1 is given to init's scheduler
    // (CPU 1 halted in the kernel: the clean one-core baseline); the
    // second with CPU 1 spinning in init's idle loop (what that costs
    // CPU 0 under multi-threaded TCG).
    readscale::load(keys, nonce)?;
    const LAYOUTS: [&[u64]; 4] = [&[0], &[0], &[1], &[0, 1]];
    if one_core_only() {
        for r in 0..rounds {
            let run = readscale::run(readscale::prepare(keys, ops, &[0], nonce)?, false)?;
            check(&run, ops)?;
            println!(
                "init: smp_readrandom: round {}: {keys} keys; 1 reader on CPU 0 (CPU 1 halted): {:.0} gets/s",
                r + 1,
                run.total.ops_per_sec
            );
        }
        return Ok(());
    }
    let mut prepared = Vec::new();
    for _ in 0..rounds {
        for cpus in LAYOUTS {
            prepared.push(readscale::prepare(keys, ops, cpus, nonce)?);
        }
    }
    let mut runs: Vec<Option<Run>> = (0..prepared.len()).map(|_| None).collect();
    let mut later = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        if i % LAYOUTS.len() == 0 {
            let run = readscale::run(p, false)?;
            check(&run, ops)?;
            runs[i] = Some(run);
        } else {
            later.push((i, p));
        }
    }
    initlib::sched::give_core(1)?;
    for (i, p) in later {
        let run = readscale::run(p, true)?;
        check(&run, ops)?;
        runs[i] = Some(run);
    }
    let runs: Vec<Run> = runs.into_iter().flatten().collect();
    for (r, round) in runs.chunks(LAYOUTS.len()).enumerate() {
        let (cpu0, spun, cpu1, both) = (&round[0].total, &round[1].total, &round[2].total, &round[3].total);
        println!(
            "init: smp_readrandom: round {}: {keys} keys; 1 reader: {:.0} gets/s on CPU 0 (CPU 1 halted), {:.0} \
             (CPU 1 spinning idle), {:.0} on CPU 1; 2 readers (CPUs 0, 1 at once): {:.0} gets/s in all ({:.0} + \
             {:.0}); ratio to CPU 0 alone {:.2} (measured, not asserted); every value checked, no system call or \
             fault in any reader's loop; medium reads per get {:.4} / {:.4}",
            r + 1,
            cpu0.ops_per_sec,
            spun.ops_per_sec,
            cpu1.ops_per_sec,
            both.ops_per_sec,
            round[3].readers[0].ops_per_sec(),
            round[3].readers[1].ops_per_sec(),
            both.ops_per_sec / cpu0.ops_per_sec.max(1e-9),
            cpu0.storage_reads_per_op,
            both.storage_reads_per_op
        );
    }
    Ok(())
}
