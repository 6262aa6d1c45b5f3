//! The interleaving checker's scenarios: exhaustive over every choice for
//! small ones, seeded for long random ones, and the mutations it must
//! catch by name.

use super::*;
use crate::{handle_entry, present_bits, BootMapper, Mutation};
use exo_abi::Rights;

const FRAMES_VA: u64 = 0x4000_0000; // init's spare frames
/// The shared region: 1 GiB-aligned, the same addresses in init and child.
const R: u64 = 0x8000_0000;
/// Where init reaches the child's upper tables.
const SCRATCH: u64 = 0x100_0000_0000;
const CHILD: u64 = 0x3000; // init's handle to the child
const SPARE: u64 = 24;
const OWNED: Rights = Rights(Rights::OWN.0 | Rights::WRITE.0 | Rights::GRANT.0);

fn frame_va(i: u64) -> u64 {
    FRAMES_VA + i * PAGE_SIZE
}

/// The world every scenario starts from, built by the calls themselves
/// (no checks yet):
///
/// * init holds spare frames at `frame_va(0..24)`, and at `R` a level-2
///   table whose entry 0 links level-1 table `Ta` and entry 1 `Tb`; `Ta`
///   is linked a second time at `R + 2 * span(1)` (an alias);
/// * `Ta` holds page P0 (owned) at `R`, P1 (owned, lent) at `R + 0x1000`
///   and a writable share of P1 at `R + 0x2000`, a handle to the child at
///   `R + 0x6000` and one to init at `R + 0x7000`;
/// * the child's upper tables are init's too (init reaches them at
///   `SCRATCH`), and the child links `Ta` at `R`: a shared subtree, whose
///   entries both spaces may change (the child through the link's OWN);
/// * CPU n runs `spaces[n]` (init or child).
fn world(spaces: &[usize]) -> Sim {
    let mut mem = Words { ram_end: RAM_START, ..Words::default() };
    // A few kernel-half entries stand for all 256 (the model's memory
    // holds only words that are not zero: every root copies them).
    let mut kernel_half = [0u64; 256];
    for (i, e) in kernel_half.iter_mut().enumerate().step_by(64) {
        *e = 0xdead_0000_0000_0003 + ((i as u64) << 12);
    }
    let alloc = |mem: &mut Words| {
        let f = mem.ram_end;
        mem.ram_end += PAGE_SIZE;
        f
    };
    let init = alloc(&mut mem);
    for (i, e) in kernel_half.iter().enumerate() {
        mem.set(init + (256 + i as u64) * 8, *e);
    }
    let frames: Vec<u64> = (0..SPARE).map(|_| alloc(&mut mem)).collect();
    let mut pool: Vec<u64> = (0..8).map(|_| alloc(&mut mem)).collect();
    {
        let mut bm = BootMapper { mem: &mut mem, alloc: || pool.pop(), root: init };
        for (i, f) in frames.iter().enumerate() {
            bm.map_leaf(frame_va(i as u64), *f, present_bits(OWNED)).unwrap();
        }
        bm.put_entry(0x7000, handle_entry(init, Rights::OWN | Rights::GRANT | Rights::SWITCH)).unwrap();
    }
    let mut sim = Sim::new(mem, kernel_half, init);
    sim.cpus = vec![Cpu::new(init)];
    let sim = Rc::new(RefCell::new(sim));
    let setup = [
        Call::Create { va: R, level: 2, frame_va: frame_va(1) },
        Call::Create { va: R, level: 1, frame_va: frame_va(2) },
        Call::Create { va: R + span(1), level: 1, frame_va: frame_va(3) },
        Call::Map { src: frame_va(4), level: 0, dst_as: 0, dst: R, rights: OWNED },
        Call::Map { src: frame_va(5), level: 0, dst_as: 0, dst: R + 0x1000, rights: OWNED },
        Call::Map { src: R + 0x1000, level: 0, dst_as: 0, dst: R + 0x2000, rights: Rights::WRITE },
        Call::Map { src: R, level: 1, dst_as: 0, dst: R + 2 * span(1), rights: OWNED },
        Call::CreateAs { handle_va: CHILD, frame_va: frame_va(0) },
        Call::Create { va: SCRATCH, level: 3, frame_va: frame_va(6) },
        Call::Map { src: SCRATCH, level: 3, dst_as: CHILD, dst: 0, rights: OWNED },
        Call::Create { va: SCRATCH + 2 * span(2), level: 2, frame_va: frame_va(7) },
        Call::Map { src: R, level: 1, dst_as: CHILD, dst: R, rights: OWNED },
        Call::Map { src: CHILD, level: 0, dst_as: 0, dst: R + 0x6000, rights: Rights::SWITCH },
        Call::Map { src: 0x7000, level: 0, dst_as: 0, dst: R + 0x7000, rights: Rights::SWITCH },
    ];
    for call in setup {
        run_call(&sim, 0, call).unwrap_or_else(|e| panic!("setup {call:?}: {e:?}"));
    }
    let mut sim = Rc::try_unwrap(sim).ok().unwrap().into_inner();
    let child = sim.spaces[1];
    sim.cpus = spaces.iter().map(|s| Cpu::new([init, child][*s])).collect();
    // The pages of the region's first four level-1 slots (through Ta, Tb,
    // the alias and one empty slot) and some spare frames.
    sim.vas = (0..4).flat_map(|k| (0..6).map(move |p| R + k * span(1) + p * PAGE_SIZE)).collect();
    sim.vas.extend((8..12).map(frame_va));
    sim
}

/// init's calls (CPU 0's in the exhaustive scenarios).
fn init_call(name: &str) -> Call {
    match name {
        // P0 (which the child caches through the shared Ta) becomes a
        // level-1 table linked into the child's PD, which it walks.
        "retype a shared page into a table" => {
            Call::Create { va: SCRATCH + 2 * span(2) + span(1), level: 1, frame_va: R }
        }
        "retype a shared page into a root" => Call::CreateAs { handle_va: 0x4000, frame_va: R },
        "retype a spare frame" => Call::Create { va: SCRATCH + span(3), level: 3, frame_va: frame_va(8) },
        "move a shared page" => Call::Map { src: R, level: 0, dst_as: 0, dst: R + 0x3000, rights: OWNED },
        "unmap a shared alias page" => Call::Unmap { as_: 0, va: R + 0x2000, level: 0 },
        "revoke the child's link" => Call::Unmap { as_: CHILD, va: R, level: 1 },
        "unmap the alias link" => Call::Unmap { as_: 0, va: R + 2 * span(1), level: 1 },
        "share a page" => Call::Map { src: R, level: 0, dst_as: 0, dst: R + span(1), rights: Rights::WRITE },
        "link Tb into the child" => {
            Call::Map { src: R + span(1), level: 1, dst_as: CHILD, dst: R + span(1), rights: OWNED }
        }
        "fail: share into an occupied slot" => {
            Call::Map { src: R, level: 0, dst_as: 0, dst: R + 0x1000, rights: Rights::WRITE }
        }
        "fail: retype a lent page" => Call::Create { va: SCRATCH + span(3), level: 3, frame_va: R + 0x1000 },
        "yield to the child" => Call::Yield { handle_va: R + 0x6000 },
        _ => panic!("no init call {name}"),
    }
}

/// The child's calls (CPU 1's), all inside the shared table Ta.
fn child_call(name: &str) -> Call {
    match name {
        "unmap a shared alias page" => Call::Unmap { as_: 0, va: R + 0x2000, level: 0 },
        "move a page" => Call::Map { src: R + 0x1000, level: 0, dst_as: 0, dst: R + 0x4000, rights: OWNED },
        "share a page" => Call::Map { src: R, level: 0, dst_as: 0, dst: R + 0x5000, rights: Rights::NONE },
        "fail: unmap an owned page" => Call::Unmap { as_: 0, va: R, level: 0 },
        "yield to init" => Call::Yield { handle_va: R + 0x7000 },
        _ => panic!("no child call {name}"),
    }
}

/// Run `calls[n]` on CPU n, the lock taken in the order the chooser says.
fn run_scenario(sim: Sim, calls: &[Vec<Call>]) -> Sim {
    let sim = Rc::new(RefCell::new(sim));
    let mut next = vec![0usize; calls.len()];
    loop {
        let waiting: Vec<usize> = (0..calls.len()).filter(|c| next[*c] < calls[*c].len()).collect();
        if waiting.is_empty() || sim.borrow().violation.is_some() {
            break;
        }
        let k = sim.borrow_mut().chooser.choose(waiting.len());
        let cpu = waiting[k];
        let _ = run_call(&sim, cpu, calls[cpu][next[cpu]]);
        next[cpu] += 1;
    }
    Rc::try_unwrap(sim).ok().unwrap().into_inner()
}

/// A violation and the choices of the run that found it.
type Found = (Violation, Vec<(usize, usize)>);

/// Every choice sequence of the scenario; the first violation, or the
/// number of runs and what they did.
fn explore(base: &Sim, calls: &[Vec<Call>]) -> Result<(u64, Stats), Found> {
    let mut script = Vec::new();
    let mut runs = 0;
    let mut stats = Stats::default();
    loop {
        let sim = run_scenario(base.fork(Chooser::scripted(script)), calls);
        runs += 1;
        stats += sim.stats;
        if let Some(v) = sim.violation {
            return Err((v, sim.chooser.trace));
        }
        match Chooser::next_script(&sim.chooser.trace) {
            Some(s) => script = s,
            None => return Ok((runs, stats)),
        }
    }
}

const INIT_CALLS: [&str; 12] = [
    "retype a shared page into a table",
    "retype a shared page into a root",
    "retype a spare frame",
    "move a shared page",
    "unmap a shared alias page",
    "revoke the child's link",
    "unmap the alias link",
    "share a page",
    "link Tb into the child",
    "fail: share into an occupied slot",
    "fail: retype a lent page",
    "yield to the child",
];
const CHILD_CALLS: [&str; 5] =
    ["unmap a shared alias page", "move a page", "share a page", "fail: unmap an owned page", "yield to init"];

/// Two CPUs (init, child): every init call against every child call, each
/// CPU making one, at every store and acknowledgement; and every ordered
/// pair of init calls on CPU 0 against a child call on CPU 1.
#[test]
fn every_interleaving_of_two_cpus_keeps_the_rules() {
    let base = world(&[0, 1]);
    let mut runs = 0;
    let mut stats = Stats::default();
    let mut scenarios = 0;
    let mut check = |calls: Vec<Vec<Call>>, what: String| match explore(&base, &calls) {
        Ok((n, s)) => {
            runs += n;
            stats += s;
            scenarios += 1;
        }
        Err((v, trace)) => panic!("{what}: {:?}: {}\n(choices {trace:?})", v.rule, v.detail),
    };
    for a in INIT_CALLS {
        for b in CHILD_CALLS {
            check(vec![vec![init_call(a)], vec![child_call(b)]], format!("{a} / {b}"));
        }
    }
    for (a1, a2, b) in [
        ("share a page", "retype a shared page into a table", "move a page"),
        ("move a shared page", "revoke the child's link", "unmap a shared alias page"),
        ("unmap the alias link", "retype a shared page into a root", "share a page"),
        ("link Tb into the child", "retype a spare frame", "yield to init"),
        ("retype a shared page into a table", "unmap the alias link", "unmap a shared alias page"),
        ("revoke the child's link", "move a shared page", "share a page"),
        ("unmap a shared alias page", "fail: share into an occupied slot", "fail: unmap an owned page"),
        ("yield to the child", "retype a shared page into a root", "move a page"),
    ] {
        let calls = vec![vec![init_call(a1), init_call(a2)], vec![child_call(b), child_call("move a page")]];
        check(calls, format!("{a1}, {a2} / {b}"));
    }
    println!("{scenarios} scenarios, {runs} interleavings: {stats:?}");
    // Not vacuous: every kind of table call succeeded, shootdowns ran with
    // users still on stale translations, users wrote forged entries.
    assert!(stats.ok.iter().all(|n| *n > 0), "{stats:?}");
    assert!(stats.stale_in_use > 0 && stats.user_writes > 0 && stats.acks > 0, "{stats:?}");
}

/// Three CPUs (init, child, init): every call of init's alone on CPU 0,
/// the two others acting (each on its own) at every point, in every
/// order of acknowledgement.
#[test]
fn every_interleaving_of_three_cpus_keeps_the_rules() {
    let base = world(&[0, 1, 0]);
    let mut runs = 0;
    let mut stats = Stats::default();
    for a in INIT_CALLS {
        match explore(&base, &[vec![init_call(a)], vec![], vec![]]) {
            Ok((n, s)) => {
                runs += n;
                stats += s;
            }
            Err((v, trace)) => panic!("{a}: {:?}: {}\n(choices {trace:?})", v.rule, v.detail),
        }
    }
    println!("{runs} interleavings: {stats:?}");
    assert!(stats.stale_in_use > 0 && stats.acks > 0, "{stats:?}");
}

/// Three CPUs, two calls (init on CPU 0, the child on CPU 1), one CPU
/// acting at each point (which one, or none): about 90 000 runs, 40 s of
/// CPU in debug, so by hand: `cargo test -p exo-mm -- --ignored`.
#[test]
#[ignore]
fn every_interleaving_of_three_cpus_two_calls_keeps_the_rules() {
    let mut base = world(&[0, 1, 0]);
    base.one_actor = true;
    let mut runs = 0;
    let mut stats = Stats::default();
    for (a, b) in [
        ("retype a shared page into a table", "move a page"),
        ("move a shared page", "unmap a shared alias page"),
        ("revoke the child's link", "share a page"),
        ("unmap the alias link", "move a page"),
    ] {
        match explore(&base, &[vec![init_call(a)], vec![child_call(b)], vec![]]) {
            Ok((n, s)) => {
                runs += n;
                stats += s;
            }
            Err((v, trace)) => panic!("{a} / {b}: {:?}: {}\n(choices {trace:?})", v.rule, v.detail),
        }
    }
    println!("{runs} interleavings: {stats:?}");
    assert!(stats.stale_in_use > 0 && stats.acks > 0, "{stats:?}");
}

/// A random call of the kinds the scenarios use, with random places.
fn random_call(rng: &mut testrng::Rng) -> Call {
    let page = |rng: &mut testrng::Rng| match rng.below(4) {
        0 => frame_va(8 + rng.below(SPARE - 8)),
        _ => R + rng.below(4) * span(1) + rng.below(6) * PAGE_SIZE,
    };
    let l1 = |rng: &mut testrng::Rng| R + rng.below(4) * span(1);
    let rights = [OWNED, Rights::WRITE, Rights::NONE, Rights::GRANT, Rights::WRITE | Rights::OWN];
    match rng.below(11) {
        0 => Call::Create { va: l1(rng), level: 1, frame_va: page(rng) },
        1 => Call::Create { va: SCRATCH + 2 * span(2) + rng.below(4) * span(1), level: 1, frame_va: page(rng) },
        2 => Call::Create { va: SCRATCH + rng.below(3) * span(3), level: 3, frame_va: page(rng) },
        3 => Call::CreateAs { handle_va: 0x4000 + rng.below(3) * PAGE_SIZE, frame_va: page(rng) },
        4 | 5 => Call::Map { src: page(rng), level: 0, dst_as: 0, dst: page(rng), rights: *rng.pick(&rights) },
        6 => Call::Map { src: l1(rng), level: 1, dst_as: *rng.pick(&[0, CHILD]), dst: l1(rng), rights: OWNED },
        7 | 8 => Call::Unmap { as_: 0, va: page(rng), level: 0 },
        9 => Call::Unmap { as_: *rng.pick(&[0, CHILD]), va: l1(rng), level: 1 },
        _ => Call::Yield { handle_va: *rng.pick(&[R + 0x6000, R + 0x7000]) },
    }
}

/// `seeds` runs of `steps` random calls on 2 to 4 CPUs, every choice
/// random, the calling CPU's own speculative walks included.
fn random_runs(seeds: std::ops::Range<u64>, steps: usize) -> Stats {
    let mut stats = Stats::default();
    for seed in seeds {
        let mut rng = testrng::Rng::new(seed);
        let n = 2 + (seed % 3) as usize;
        let spaces: Vec<usize> = (0..n).map(|c| c % 2).collect();
        let mut base = world(&spaces);
        base.caller_fills = true;
        base.fresh_fills = true;
        let sim = Rc::new(RefCell::new(base.fork(Chooser::random(seed))));
        for step in 0..steps {
            let cpu = rng.below(n as u64) as usize;
            let call = random_call(&mut rng);
            let _ = run_call(&sim, cpu, call);
            if let Some(v) = &sim.borrow().violation {
                panic!("seed {seed} step {step}: {:?}: {}", v.rule, v.detail);
            }
        }
        stats += sim.borrow().stats;
    }
    stats
}

#[test]
fn random_interleavings_keep_the_rules() {
    let stats = random_runs(1..101, 300);
    println!("{stats:?}");
    assert!(stats.ok.iter().all(|n| *n > 0), "every call must succeed sometimes: {stats:?}");
    assert!(stats.stale_in_use > 0 && stats.user_writes > 0, "{stats:?}");
}

/// The long run: `cargo test -p exo-mm -- --ignored`.
#[test]
#[ignore]
fn random_interleavings_keep_the_rules_long() {
    let stats = random_runs(1000..1400, 400);
    println!("{stats:?}");
    assert!(stats.ok.iter().all(|n| *n > 0), "{stats:?}");
}

/// Each misordering of the call code, switched on, is found by the
/// exhaustive enumeration of a scenario where it matters, under the name
/// of the rule it breaks.
#[test]
fn the_checker_catches_each_misordering_by_name() {
    let base = world(&[0, 1]);
    let cases = [
        (Mutation::ZeroBeforeShootdown, "retype a shared page into a table", Rule::RetypedWhileReachable),
        (Mutation::LinkBeforeZero, "retype a shared page into a table", Rule::WalkedUninitializedTable),
        (Mutation::MoveWithoutShootdown, "move a shared page", Rule::StaleAfterCall),
        (Mutation::StoreBeforeCheck, "fail: share into an occupied slot", Rule::FailedCallStored),
    ];
    for (mutation, call, rule) in cases {
        let calls = vec![vec![init_call(call)], vec![child_call("share a page")]];
        assert!(explore(&base, &calls).is_ok(), "{call} must pass unmutated");
        match with_mutation(mutation, || explore(&base, &calls)) {
            Err((v, _)) => {
                println!("{mutation:?}: {:?}: {}", v.rule, v.detail);
                assert_eq!(v.rule, rule, "{mutation:?}: {}", v.detail);
            }
            Ok((runs, _)) => panic!("{mutation:?} went unnoticed in {runs} interleavings"),
        }
    }
}

/// The random run finds the misorderings too, without being pointed at them.
#[test]
fn random_runs_catch_a_retype_before_the_shootdown() {
    for (mutation, rule) in [
        (Mutation::ZeroBeforeShootdown, Rule::RetypedWhileReachable),
        (Mutation::MoveWithoutShootdown, Rule::StaleAfterCall),
    ] {
        let found = with_mutation(mutation, || {
            std::panic::catch_unwind(|| random_runs(1..41, 150)).err().and_then(|e| e.downcast::<String>().ok())
        });
        let msg = found.unwrap_or_else(|| panic!("{mutation:?} went unnoticed"));
        assert!(msg.contains(&format!("{rule:?}")), "{mutation:?}: {msg}");
    }
}
