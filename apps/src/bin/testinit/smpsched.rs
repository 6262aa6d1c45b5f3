//! Children on several CPUs at once (per-core user scheduling): init's
//! scheduler runs on every CPU (`initlib::sched::give_core`), and each
//! child is pinned to one CPU by the control pages it gets
//! (`initlib::spawn::spawn_on`). `smp_isolation` runs the isolation and
//! five-syscall checks with victims and attackers on different CPUs at the
//! same time; `smp_fuzz` runs the structure-aware fuzzer on every CPU at
//! once.

use crate::adversarial::Canaries;
use crate::basic::victim_intact;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering::SeqCst;
use exo_abi::{kinfo as ki, Rights};
use exo_rt::layout::SCRATCH_VA;
use exo_rt::{kinfo, mem, println};
use initlib::sched::{self, state_name, EXITED, PANICKED, RUNNABLE};
use initlib::spawn::{mailbox, spawn_on, Child, Options};

type Outcome = Result<(), String>;

/// The online CPUs (at least two), each other than 0 running init's
/// scheduler for the children pinned to it.
fn cores() -> Result<Vec<u64>, String> {
    let mask = kinfo::word(ki::W_SMP_ONLINE_MASK);
    let cpus: Vec<u64> = (0..8).filter(|c| mask & (1 << c) != 0).collect();
    if cpus.len() < 2 || mask & 1 == 0 {
        return Err(format!("needs CPU 0 and another CPU online (mask {mask:#x})"));
    }
    for &c in cpus.iter().filter(|&&c| c != 0) {
        sched::give_core(c)?;
    }
    Ok(cpus)
}

fn ticks_per_us() -> u64 {
    kinfo::word(ki::W_TSC_PER_US).max(1)
}

/// Wait (init main yields meanwhile) until `done`, at most `secs`.
fn wait_until(what: &str, secs: u64, done: &dyn Fn() -> Result<bool, String>) -> Outcome {
    let t0 = exo_rt::time::rdtsc();
    while !done()? {
        if exo_rt::time::rdtsc() - t0 > secs * 1_000_000 * ticks_per_us() {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        sched::sched_yield();
    }
    Ok(())
}

/// A child's final state (init main waits; its scheduler on the child's
/// CPU runs it).
fn wait_end(c: &Child, what: &str, secs: u64) -> Result<u64, String> {
    wait_until(what, secs, &|| Ok(sched::slot(c.slot).state.load(SeqCst) != RUNNABLE))?;
    Ok(sched::slot(c.slot).state.load(SeqCst))
}

/// It ran, and only on CPU `cpu` (the one it has a control page for).
fn ran_only_on(c: &Child, cpu: u64, what: &str) -> Outcome {
    let ran = sched::slot(c.slot).ran_on.load(SeqCst);
    if ran != 1 << cpu {
        return Err(format!("{what}: pinned to CPU {cpu} but ran on CPUs mask {ran:#x}"));
    }
    Ok(())
}

/// One attack of the `isolation` scenario: the probe's arguments, what it
/// tries, and how it must end.
struct Attack {
    args: String,
    what: &'static str,
    /// `Some(code)`: it must exit with that code; `None`: it must die
    /// (a #GP in the attacker).
    exit: Option<u64>,
    /// Link init's read-only region at SHARED_VA first (`attack-calls`).
    region: bool,
    spare: u64,
}

fn attacks() -> Vec<Attack> {
    let a = |args: String, what, exit, region, spare| Attack { args, what, exit, region, spare };
    alloc::vec![
        a(format!("attack-read {SCRATCH_VA:x}"), "read another process's private page", Some(42), false, 0),
        a(format!("attack-write {SCRATCH_VA:x}"), "write another process's private page", Some(42), false, 0),
        a("attack-read ffff800000100000".into(), "read kernel memory", Some(42), false, 0),
        a("attack-write ffffffff80100000".into(), "write the kernel image", Some(42), false, 0),
        a("attack-edge".into(), "syscall at the top of the user half", None, false, 8),
        a("attack-port".into(), "port I/O", None, false, 0),
        a("attack-calls".into(), "system calls on what it may not touch", Some(0), true, 0),
        a("syscalls".into(), "the five system calls (five_syscalls)", Some(0), false, 64),
    ]
}

/// `smp_isolation`: a victim pinned to every CPU holds its private page;
/// the `isolation` attacks and the five-syscall check run as children
/// pinned round-robin to the CPUs (CPU 1 first), all started at once, so
/// each attacker runs while victims run on the other CPUs. Every attack
/// is refused (its fault or #GP, or its refused calls), every victim's
/// page and init's canaries are intact, every child ran only on its CPU,
/// and every CPU ran children during the attacks.
pub fn smp_isolation() -> Outcome {
    let cpus = cores()?;
    let canaries = Canaries::place(0x15_0c0de)?;
    let mut victims = Vec::new();
    for &c in &cpus {
        let v = spawn_on("probe", &Options { args: "victim", spare_pages: 8, ..Options::default() }, 1 << c)?;
        victims.push((c, v));
    }
    wait_until("every victim to be ready", 30, &|| {
        for (c, v) in &victims {
            if sched::slot(v.slot).state.load(SeqCst) != RUNNABLE {
                return Err(format!("the victim on CPU {c} died before it was ready"));
            }
        }
        Ok(victims.iter().all(|(_, v)| mem::read(mailbox(v) + 8) != 0))
    })?;
    for (c, v) in &victims {
        victim_intact(v).map_err(|e| format!("victim on CPU {c}: {e}"))?;
    }
    let runs_before: Vec<u64> = victims.iter().map(|(_, v)| sched::slot(v.slot).runs.load(SeqCst)).collect();
    let core_runs_before: Vec<u64> = cpus.iter().map(|&c| sched::CORE_RUNS[c as usize].load(SeqCst)).collect();
    let region = initlib::regions::make_region(4)?;
    // Every attacker at once, each pinned to a CPU: 1, 2, ..., 0, 1, ...
    let mut started = Vec::new();
    for (i, at) in attacks().into_iter().enumerate() {
        let cpu = cpus[(i + 1) % cpus.len()];
        let opts = Options { args: &at.args, spare_pages: at.spare, paused: true, ..Options::default() };
        let c = spawn_on("probe", &opts, 1 << cpu)?;
        if at.region {
            initlib::regions::link(&c, region, Rights::NONE)?;
        }
        started.push((cpu, at, c));
    }
    for (_, _, c) in &started {
        sched::start(c.slot);
    }
    for (cpu, at, c) in &started {
        let st = wait_end(c, at.what, 60)?;
        let code = sched::slot(c.slot).code.load(SeqCst);
        match at.exit {
            Some(want) if st == EXITED && code == want => {}
            None if st == PANICKED => {}
            _ => {
                return Err(format!(
                    "{} ({}) on CPU {cpu}: ended {} with code {code:#x}, expected {}",
                    at.what,
                    at.args,
                    state_name(st),
                    at.exit.map_or(String::from("a #GP"), |w| format!("exit {w}"))
                ))
            }
        }
        ran_only_on(c, *cpu, at.what)?;
        println!("init: smp_isolation: CPU {cpu}: {}: refused", at.what);
    }
    // The victims ran meanwhile, each on its own CPU, and every CPU's
    // scheduler ran children.
    for (k, (c, v)) in victims.iter().enumerate() {
        let runs = sched::slot(v.slot).runs.load(SeqCst) - runs_before[k];
        if runs == 0 {
            return Err(format!("the victim on CPU {c} did not run while the attackers ran"));
        }
        victim_intact(v).map_err(|e| format!("victim on CPU {c}: {e}"))?;
    }
    let core_runs: Vec<u64> = cpus
        .iter()
        .enumerate()
        .map(|(k, &c)| sched::CORE_RUNS[c as usize].load(SeqCst) - core_runs_before[k])
        .collect();
    if core_runs.iter().skip(1).any(|&r| r == 0) {
        return Err(format!("a CPU's scheduler ran no child during the attacks (runs per CPU 1..: {core_runs:?})"));
    }
    canaries.check("after the attacks")?;
    for (_, v) in &victims {
        mem::write(mailbox(v), 1);
    }
    for (c, v) in &victims {
        let st = wait_end(v, "a victim's last check", 60)?;
        let code = sched::slot(v.slot).code.load(SeqCst);
        if st != EXITED || code != 0 {
            return Err(format!("the victim on CPU {c} ended {} with {code}: its page changed", state_name(st)));
        }
        ran_only_on(v, *c, "a victim")?;
    }
    println!(
        "init: smp_isolation: {} attacks on {} CPUs at once, all refused; {} victims intact; \
         children run by CPUs 1.. meanwhile: {:?}",
        started.len(),
        cpus.len(),
        victims.len(),
        &core_runs[1..]
    );
    Ok(())
}

/// Structure-aware calls per fuzzer process (as `syscall_fuzz`).
const SFUZZ_PER_PROCESS: u64 = 125_000;
const SFUZZ_SPARES: u64 = 384;

/// `smp_fuzz`: the structure-aware fuzzer (`probe sfuzz`) on every CPU at
/// once, one process pinned to each CPU per round, until the calls made
/// reach `smpfuzz=N` from the command line (default and minimum for the
/// test: 1,000,000); init's canaries and a checker's private page
/// survive every round, every fuzzer ends cleanly, and the kernel lives.
pub fn smp_fuzz() -> Outcome {
    let want = kinfo::cmdline()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("smpfuzz="))
        .map(|n| n.parse::<u64>().map_err(|_| format!("smpfuzz={n}: not a number")))
        .transpose()?
        .unwrap_or(1_000_000);
    let cpus = cores()?;
    let canaries = Canaries::place(0x5_f022)?;
    let checker = spawn_on("probe", &Options { args: "checker", spare_pages: 8, ..Options::default() }, 1)?;
    wait_until("the checker to be ready", 30, &|| Ok(mem::read(mailbox(&checker) + 8) != 0))?;
    let syscalls0 = kinfo::word(ki::W_SYSCALLS);
    let shootdowns0 = kinfo::word(ki::W_SMP_SHOOTDOWNS);
    let t0 = exo_rt::time::rdtsc();
    let mut per_cpu = alloc::vec![0u64; cpus.len()];
    let (mut total, mut round, mut procs) = (0u64, 0u64, 0u64);
    while total < want {
        round += 1;
        let mut fuzzers = Vec::new();
        for (k, &c) in cpus.iter().enumerate() {
            let seed = procs + 1;
            procs += 1;
            let per = SFUZZ_PER_PROCESS.min((want - total).div_ceil(cpus.len() as u64)).max(1);
            let args = format!("sfuzz {per:x} {seed}");
            let opts = Options { args: &args, words: &[], heap_pages: 32, spare_pages: SFUZZ_SPARES, paused: true };
            fuzzers.push((k, c, seed, spawn_on("probe", &opts, 1 << c)?));
        }
        // All at once.
        for (_, _, _, f) in &fuzzers {
            sched::start(f.slot);
        }
        for (k, c, seed, f) in &fuzzers {
            let st = wait_end(f, "a fuzzer", 300)?;
            let made = mem::read(mailbox(f) + 16);
            let code = sched::slot(f.slot).code.load(SeqCst);
            total += made;
            per_cpu[*k] += made;
            if st != EXITED || code != 0 {
                return Err(format!(
                    "sfuzz seed {seed} on CPU {c} ended {} with code {code:#x} after {made} calls",
                    state_name(st)
                ));
            }
            ran_only_on(f, *c, "a fuzzer")?;
        }
        canaries.check(&format!("after round {round}"))?;
        victim_intact(&checker)?;
        let us = (exo_rt::time::rdtsc() - t0) / ticks_per_us();
        println!("init: smp_fuzz: round {round}: {total} calls so far, {} calls/s", total * 1_000_000 / us.max(1));
    }
    let us = (exo_rt::time::rdtsc() - t0) / ticks_per_us();
    println!(
        "init: smp_fuzz: {total} structure-aware system calls by {procs} fuzzer processes in {round} rounds on {} CPUs \
         at once (per CPU {per_cpu:?}); {} syscalls and {} shootdowns handled by the kernel; {} ms, {} calls/s",
        cpus.len(),
        kinfo::word(ki::W_SYSCALLS) - syscalls0,
        kinfo::word(ki::W_SMP_SHOOTDOWNS) - shootdowns0,
        us / 1000,
        total * 1_000_000 / us.max(1)
    );
    if total < want {
        return Err(format!("only {total} of {want} fuzz calls were made"));
    }
    if per_cpu.contains(&0) {
        return Err(format!("a CPU made no calls: {per_cpu:?}"));
    }
    canaries.check("after the fuzzers")?;
    victim_intact(&checker)?;
    mem::write(mailbox(&checker), 1);
    let st = wait_end(&checker, "the checker", 60)?;
    if st != EXITED || sched::slot(checker.slot).code.load(SeqCst) != 0 {
        return Err("the checker found its memory changed".into());
    }
    Ok(())
}

/// Hand-overs `smp_activations` asks of the two activations.
const HANDOVERS: u64 = 20_000;

/// `smp_activations`: one child on two CPUs at once. It starts pinned to
/// CPU 0; once its main is running, init gives it a control page for
/// CPU 1 as well (`spawn::add_cpu`: unpinning is one more page), CPU 1's
/// scheduler enters it there, and its runtime starts a second activation
/// (resumed from CPU 1's page after each preemption). The two hand a
/// token back and forth [`HANDOVERS`] times: more than twice as often as
/// init switched the child in or out, which taking turns could not do, so
/// they ran at the same time.
pub fn smp_activations() -> Outcome {
    let cpus = cores()?;
    let args = format!("twocores {HANDOVERS:x}");
    let c = spawn_on("probe", &Options { args: &args, ..Options::default() }, 1)?;
    wait_until("the child's main to be ready", 30, &|| {
        if sched::slot(c.slot).state.load(SeqCst) != RUNNABLE {
            return Err("the child died before it was ready".into());
        }
        Ok(mem::read(mailbox(&c) + 8) != 0)
    })?;
    let s = sched::slot(c.slot);
    let switches0 = s.runs.load(SeqCst) + s.preemptions.load(SeqCst);
    initlib::spawn::add_cpu(&c, cpus[1])?;
    let st = wait_end(&c, "the two activations' hand-overs", 40)?;
    let code = s.code.load(SeqCst);
    if st != EXITED || code != 0 {
        return Err(format!("twocores ended {} with code {code:#x}", state_name(st)));
    }
    let switches = s.runs.load(SeqCst) + s.preemptions.load(SeqCst) - switches0;
    let (done, starts, resumes) =
        (mem::read(mailbox(&c) + 16), mem::read(mailbox(&c) + 24), mem::read(mailbox(&c) + 32));
    let ran = s.ran_on.load(SeqCst);
    println!(
        "init: smp_activations: {done} hand-overs between activations on CPUs 0 and {} while init switched the child \
         in or out {switches} times; the second activation started {starts} time(s) and was resumed from CPU {}'s \
         control page {resumes} time(s); ran on CPUs mask {ran:#x}",
        cpus[1], cpus[1]
    );
    if ran != 1 | 1 << cpus[1] {
        return Err(format!("the child ran on CPUs mask {ran:#x}, expected CPUs 0 and {}", cpus[1]));
    }
    if done != HANDOVERS || starts == 0 {
        return Err(format!("{done} hand-overs, {starts} starts of the second activation"));
    }
    // Taking turns on one CPU at a time, every hand-over needs init to
    // switch the child in at least twice (main, then the other).
    if done < 2 * switches.max(1) {
        return Err(format!(
            "{done} hand-overs for {switches} switches: the two activations did not run at the same time"
        ));
    }
    Ok(())
}

/// Operations each activation makes in `sizeclass_smp_heap`.
const SIZECLASS_OPS: u64 = 30_000;

/// `sizeclass_smp_heap`: the heap (size classes in front of talc) from
/// two activations of one child on two CPUs at once (`probe
/// sizeclass-smp`, started as in `smp_activations`): random allocations,
/// frees and reallocations of 0..1,500-byte blocks, some freed on the
/// other CPU, every block's contents checked. Passes if no check failed,
/// blocks crossed CPUs, and the two ran at the same time.
pub fn sizeclass_smp_heap() -> Outcome {
    let cpus = cores()?;
    let args = format!("sizeclass-smp {SIZECLASS_OPS:x}");
    let c = spawn_on("probe", &Options { args: &args, heap_pages: 256, ..Options::default() }, 1)?;
    wait_until("the child's main to be ready", 30, &|| {
        if sched::slot(c.slot).state.load(SeqCst) != RUNNABLE {
            return Err("the child died before it was ready".into());
        }
        Ok(mem::read(mailbox(&c) + 8) != 0)
    })?;
    initlib::spawn::add_cpu(&c, cpus[1])?;
    let st = wait_end(&c, "the two activations' heap operations", 50)?;
    let code = sched::slot(c.slot).code.load(SeqCst);
    let m = mailbox(&c);
    let (ops, bad, cross, overlap) = (mem::read(m + 16), mem::read(m + 24), mem::read(m + 32), mem::read(m + 40));
    let ran = sched::slot(c.slot).ran_on.load(SeqCst);
    println!(
        "init: sizeclass_smp_heap: {ops} heap operations on CPUs mask {ran:#x}, {cross} blocks freed on the other \
         CPU, {overlap} samples with both part-way, {bad} failed checks"
    );
    if st != EXITED || code != 0 {
        return Err(format!("sizeclass-smp ended {} with code {code:#x} ({bad} failed checks)", state_name(st)));
    }
    if ran != 1 | 1 << cpus[1] || ops != 2 * SIZECLASS_OPS || bad != 0 || cross == 0 || overlap == 0 {
        return Err(format!(
            "mask {ran:#x}, {ops} operations, {bad} failed checks, {cross} cross-CPU frees, {overlap} overlapping samples"
        ));
    }
    Ok(())
}
