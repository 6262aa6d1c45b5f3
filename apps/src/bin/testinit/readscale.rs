//! `smp_readrandom` (issue #13): libdb readrandom by one reader per core
//! on the NVDIMM (`initlib::readscale`): a database of `keys` keys is
//! loaded, then one reader on CPU 0 runs `ops` gets, then two readers, on
//! CPU 0 and CPU 1 at once, `ops` gets each. Every value is checked by
//! the readers; this scenario checks that every reader made all its gets,
//! ran only on its CPU, and made no system call and took no fault in its
//! loop. Speed is printed (the `EXO-READSCALE` lines), never asserted:
//! `cargo xtask eval --readscale` measures it. `readrandom=<keys>,<ops>`
//! on the command line sets the size (the eval's is bigger).

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

fn size() -> Result<(u64, u64), String> {
    let Some(arg) = kinfo::cmdline().split_whitespace().find_map(|w| w.strip_prefix("readrandom=")) else {
        return Ok((TEST_KEYS, TEST_OPS));
    };
    let n: Vec<u64> = arg
        .split(',')
        .map(|n| n.parse::<u64>().map_err(|_| format!("readrandom=: {n:?} is not a number")))
        .collect::<Result<_, _>>()?;
    match n[..] {
        [keys, ops] if keys > 0 && ops > 0 => Ok((keys, ops)),
        _ => Err(format!("readrandom={arg}: expected <keys>,<ops>, both above 0")),
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
    let (keys, ops) = size()?;
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    if mask & 0b11 != 0b11 {
        return Err(format!("needs CPUs 0 and 1 online (mask {mask:#x})"));
    }
    let nonce = crate::basic::nonce_or_clock();
    // Load before CPU 1 runs any space: taking the pages back from the
    // loader (4,096 moves) then needs no TLB shootdown to CPU 1.
    // Spawn every reader too (paused): moves then need no shootdown either.
    readscale::load(keys, nonce)?;
    let one = readscale::prepare(keys, ops, &[0], nonce)?;
    let two = readscale::prepare(keys, ops, &[0, 1], nonce)?;
    initlib::sched::give_core(1)?;
    let one = readscale::run(one)?;
    check(&one, ops)?;
    let two = readscale::run(two)?;
    check(&two, ops)?;
    println!(
        "init: smp_readrandom: {keys} keys; 1 reader (CPU 0): {:.0} gets/s; 2 readers (CPUs 0, 1 at once): {:.0} gets/s \
         in all ({:.0} + {:.0}); ratio {:.2} (measured, not asserted); every value checked, no system call or fault \
         in any reader's loop; medium reads per get {:.3} / {:.3}",
        one.total.ops_per_sec,
        two.total.ops_per_sec,
        two.readers[0].ops_per_sec(),
        two.readers[1].ops_per_sec(),
        two.total.ops_per_sec / one.total.ops_per_sec.max(1e-9),
        one.total.storage_reads_per_op,
        two.total.storage_reads_per_op
    );
    Ok(())
}
