//! The interleaving checker: the five calls on several CPUs at once, as the
//! SMP kernel runs them (docs/ARCHITECTURE.md, "SMP").
//!
//! The kernel lock serialises the calls, so the sequential checker in
//! `tests.rs` describes every state *between* calls. What it cannot see is
//! what other CPUs do *during* a call: they keep running user code on the
//! translations they cached until the call's shootdown reaches them, and
//! their hardware walkers read page-table entries at any moment (a walker
//! takes no lock). This model runs the real call code over memory that
//! stops the world at every store the code makes to memory (a page-table
//! entry, or a whole frame being zeroed) and at every acknowledgement of
//! a shootdown, and there lets the other CPUs act:
//!
//! * every CPU has a TLB (page → frame, writable) and paging-structure
//!   caches (the links of levels 3..1 it walked, so a later walk may start
//!   below the root with an upper part read long ago: a walk that is not
//!   atomic against the kernel's stores is exactly such a walk);
//! * at every point each CPU outside the kernel may stay idle, touch every
//!   address of the scenario through its caches (filling them; and as a
//!   hostile user writing a forged page-table entry into every page it can
//!   write), or touch them after forgetting its paging-structure caches
//!   (a walk from the root). A [`Chooser`] makes these choices: from a
//!   script (the exhaustive enumeration replays every choice sequence) or
//!   from a seed (the randomized run);
//! * a shootdown clears the caller's caches, then the other CPUs'
//!   one at a time in a chosen order, with a point after each.
//!
//! At every point, before the choices, every CPU's every possible use of
//! every scenario address is *probed* (without changing anything): its
//! TLB entry, a walk from the root, a walk from its deepest cached link.
//! The rules, each reported by name ([`Rule`]):
//!
//! * (a) [`Rule::TranslationNeitherOldNorNew`]: every translation a CPU
//!   could use during a call is one the state before the call or the state
//!   after it allows (same frame, writable only if that state says so):
//!   no torn or mixed state. [`Rule::WalkedUninitializedTable`]: a walk
//!   only ever goes through a frame that was a table before the call or
//!   that the call has zeroed. [`Rule::UserReachesTable`]: no translation
//!   reaches a frame that is (or is becoming) a table.
//!   [`Rule::RetypedWhileReachable`]: when the kernel first stores into a
//!   frame that was not a table (it is making it one), no CPU can still
//!   reach that frame as a page, cached or by a walk.
//! * (b) [`Rule::StaleAfterCall`]: when a call returns (the lock is
//!   released), every CPU's TLB and paging-structure caches agree with
//!   the tables (the alias rule).
//! * (c) [`Rule::FailedCallStored`]: a call that fails made no store.
//! * (d) [`Rule::InvariantBroken`]: the sequential invariants
//!   ([`sequential_invariants`]) hold at every call boundary.
//!
//! What it does not model: speculative fills by the CPU making the call
//! are off in the exhaustive runs (its caches are flushed by its own
//! shootdown, and it fills only from states after the removals; the
//! randomized run turns them on); A/D-bit updates by the walker (the calls
//! never read them, and each entry store is one aligned 8-byte store);
//! idle CPUs that never entered a space (every model CPU runs a space from
//! the start, so every shootdown targets all others); device I/O page
//! tables (`DeviceTables` calls are not part of these scenarios).

use crate::{
    create, create_as, decode, index, map, span, unmap, yield_target, DeviceTables, Kind, Mutation, PhysMem, Tlb,
    GRANT, LENT, OWN, P, RW, US,
};
use exo_abi::{Error, Rights, PAGE_SIZE};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::rc::Rc;

#[cfg(test)]
mod tests;

thread_local! {
    static MUTATION: Cell<Option<Mutation>> = const { Cell::new(None) };
}

/// Is mutation `m` switched on in this thread (see [`with_mutation`])?
pub(crate) fn mutation_is_on(m: Mutation) -> bool {
    MUTATION.with(|c| c.get() == Some(m))
}

/// Run `f` with the call code misordered as `m` says.
pub(crate) fn with_mutation<R>(m: Mutation, f: impl FnOnce() -> R) -> R {
    MUTATION.with(|c| c.set(Some(m)));
    let r = f();
    MUTATION.with(|c| c.set(None));
    r
}

/// The first frame of RAM the model hands out.
pub(crate) const RAM_START: u64 = 0x10_0000;
/// A frame the model never hands out: the kernel's secret.
const SECRET: u64 = 0xbad_0000;
/// What a hostile user writes into every page it can write: an entry
/// that maps the secret frame writable, should the page ever be walked as
/// a table.
const FORGED: u64 = SECRET | P | RW | US | OWN;

/// The sequential invariants, checked after every call by the sequential
/// tests and at every call boundary here. `entries(table, range)` gives
/// the entries of `table` at the indices in `range` (zero ones may be
/// left out).
pub(crate) fn sequential_invariants(
    entries: impl Fn(u64, Range<u64>) -> Vec<(u64, u64)>,
    is_ram: impl Fn(u64) -> bool,
    kernel_half: &[u64; 256],
    spaces: &[u64],
) -> Result<(), String> {
    let mut tables = BTreeSet::new();
    let mut owners: BTreeMap<u64, usize> = BTreeMap::new();
    let mut leaves: BTreeMap<u64, (usize, bool)> = BTreeMap::new(); // frame -> (count, lent owner)
    let mut stack: Vec<(u64, u8)> = spaces.iter().map(|r| (*r, 4u8)).collect();
    let mut seen = BTreeSet::new();
    for r in spaces {
        let half = entries(*r, 256..512);
        let mut want = kernel_half.iter().enumerate().map(|(i, e)| (256 + i as u64, *e)).filter(|(_, e)| *e != 0);
        let mut got = half.iter().copied().filter(|(_, e)| *e != 0);
        if !want.by_ref().eq(got.by_ref()) {
            return Err(format!("kernel half of space {r:#x} changed"));
        }
    }
    while let Some((t, lvl)) = stack.pop() {
        if !seen.insert((t, lvl)) {
            continue;
        }
        tables.insert(t);
        for (_, e) in entries(t, 0..if lvl == 4 { 256 } else { 512 }) {
            match decode(e, lvl - 1) {
                Kind::Table { frame, .. } => stack.push((frame, lvl - 1)),
                Kind::Page { frame, lent, .. } => {
                    let ent = leaves.entry(frame).or_insert((0, false));
                    ent.0 += 1;
                    if e & OWN != 0 {
                        *owners.entry(frame).or_default() += 1;
                        ent.1 |= lent;
                    }
                }
                Kind::Handle { root, .. } => {
                    if !spaces.contains(&root) {
                        return Err(format!("handle to a non-space {root:#x}"));
                    }
                }
                Kind::Device { .. } | Kind::Empty => {}
                Kind::Foreign => return Err(format!("foreign entry {e:#x} at level {}", lvl - 1)),
            }
        }
    }
    for t in &tables {
        if !is_ram(*t) {
            return Err(format!("table {t:#x} is not RAM"));
        }
    }
    for (frame, (count, lent)) in &leaves {
        if tables.contains(frame) {
            return Err(format!("frame {frame:#x} is both a table and a user page"));
        }
        if spaces.contains(frame) {
            return Err(format!("an address-space root {frame:#x} is mapped as a page"));
        }
        if owners.get(frame).copied().unwrap_or(0) > 1 {
            return Err(format!("two owners of {frame:#x}"));
        }
        if *count > 1 && !*lent && owners.contains_key(frame) {
            return Err(format!("frame {frame:#x} shared but its owner is not LENT"));
        }
    }
    Ok(())
}

/// Physical memory: only the words that are not zero.
#[derive(Clone, Default)]
pub(crate) struct Words {
    words: BTreeMap<u64, u64>,
    /// Frames `RAM_START..ram_end` are RAM.
    pub(crate) ram_end: u64,
}

impl Words {
    fn get(&self, pa: u64) -> u64 {
        assert_eq!(pa % 8, 0);
        self.words.get(&pa).copied().unwrap_or(0)
    }
    fn set(&mut self, pa: u64, v: u64) {
        assert_eq!(pa % 8, 0);
        if v == 0 {
            self.words.remove(&pa);
        } else {
            self.words.insert(pa, v);
        }
    }
    fn entries(&self, table: u64, range: Range<u64>) -> Vec<(u64, u64)> {
        self.words.range(table + range.start * 8..table + range.end * 8).map(|(pa, e)| ((pa - table) / 8, *e)).collect()
    }
    fn is_ram(&self, pa: u64) -> bool {
        (RAM_START..self.ram_end).contains(&pa)
    }
    /// Every frame reachable as a table (roots included) from `roots`.
    fn tables(&self, roots: impl Iterator<Item = u64>) -> BTreeSet<u64> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(u64, u8)> = roots.map(|r| (r, 4)).collect();
        while let Some((t, lvl)) = stack.pop() {
            if !seen.insert((t, lvl)) || lvl == 0 {
                continue;
            }
            for (_, e) in self.entries(t, 0..if lvl == 4 { 256 } else { 512 }) {
                if let Kind::Table { frame, .. } = decode(e, lvl - 1) {
                    stack.push((frame, lvl - 1));
                }
            }
        }
        seen.into_iter().map(|(t, _)| t).collect()
    }
}

impl PhysMem for Words {
    fn read(&self, pa: u64) -> u64 {
        self.get(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        self.set(pa, value)
    }
    fn is_ram(&self, pa: u64) -> bool {
        Words::is_ram(self, pa)
    }
}

/// What a CPU's access to a page gives: the frame and whether it may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Translation {
    frame: u64,
    writable: bool,
}

impl Translation {
    /// Does `now` (what some state's tables give) allow this translation?
    fn allowed_by(self, now: Option<Translation>) -> bool {
        matches!(now, Some(t) if t.frame == self.frame && (t.writable || !self.writable))
    }
}

/// A link a walk went through: the paging-structure cache's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    /// Level of the entry (3, 2 or 1).
    level: u8,
    /// The address bits above the entry's span.
    prefix: u64,
    table: u64,
    writable: bool,
}

/// The hardware walk of `va` from `table`, whose entries are at level
/// `top`, with `writable` the AND of the links above it; `links` gets
/// every link it went through.
fn hw_walk(
    mem: &Words,
    mut table: u64,
    top: u8,
    va: u64,
    mut writable: bool,
    links: &mut Vec<Link>,
) -> Option<Translation> {
    for l in (0..=top).rev() {
        let e = mem.get(table + index(va, l) * 8);
        writable &= e & RW != 0;
        match decode(e, l) {
            Kind::Table { frame, .. } if l > 0 => {
                links.push(Link { level: l, prefix: va & !(span(l) - 1), table: frame, writable });
                table = frame;
            }
            Kind::Page { frame, .. } if l == 0 => return Some(Translation { frame, writable }),
            _ => return None,
        }
    }
    None
}

fn walk_root(mem: &Words, root: u64, va: u64) -> Option<Translation> {
    hw_walk(mem, root, 3, va, true, &mut Vec::new())
}

/// One CPU: the space it runs (its CR3) and its caches.
#[derive(Clone, Debug)]
pub(crate) struct Cpu {
    pub(crate) space: u64,
    tlb: BTreeMap<u64, Translation>,
    /// (level, prefix) -> the link cached for it.
    psc: BTreeMap<(u8, u64), Link>,
}

impl Cpu {
    pub(crate) fn new(space: u64) -> Cpu {
        Cpu { space, tlb: BTreeMap::new(), psc: BTreeMap::new() }
    }
    fn flush(&mut self) {
        self.tlb.clear();
        self.psc.clear();
    }
    /// The deepest cached link on `va`'s path.
    fn deepest_link(&self, va: u64) -> Option<Link> {
        (1..=3u8).find_map(|l| self.psc.get(&(l, va & !(span(l) - 1))).copied())
    }
    /// A walk of `va` starting from the deepest cached link.
    fn cached_walk(&self, mem: &Words, va: u64, links: &mut Vec<Link>) -> Option<Translation> {
        match self.deepest_link(va) {
            Some(link) => {
                links.push(link);
                hw_walk(mem, link.table, link.level - 1, va, link.writable, links)
            }
            None => hw_walk(mem, self.space, 3, va, true, links),
        }
    }
}

/// Where the choices come from.
pub(crate) struct Chooser {
    script: Vec<usize>,
    /// Every choice made: (taken, out of).
    pub(crate) trace: Vec<(usize, usize)>,
    rng: Option<testrng::Rng>,
}

impl Chooser {
    /// Replay `script`, then take choice 0 (the exhaustive enumeration).
    pub(crate) fn scripted(script: Vec<usize>) -> Chooser {
        Chooser { script, trace: Vec::new(), rng: None }
    }
    pub(crate) fn random(seed: u64) -> Chooser {
        Chooser { script: Vec::new(), trace: Vec::new(), rng: Some(testrng::Rng::new(seed)) }
    }
    pub(crate) fn choose(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let i = self.trace.len();
        let c = match (self.script.get(i), &mut self.rng) {
            (Some(c), _) => *c,
            (None, Some(rng)) => rng.below(n as u64) as usize,
            (None, None) => 0,
        };
        assert!(c < n, "script does not fit the run: choice {i} is {c} of {n}");
        self.trace.push((c, n));
        c
    }
    /// The next choice sequence of a depth-first enumeration after a run
    /// that made the choices in `trace`; None when all were run.
    pub(crate) fn next_script(trace: &[(usize, usize)]) -> Option<Vec<usize>> {
        let j = trace.iter().rposition(|(c, n)| c + 1 < *n)?;
        let mut s: Vec<usize> = trace[..j].iter().map(|(c, _)| *c).collect();
        s.push(trace[j].0 + 1);
        Some(s)
    }
}

/// A broken rule, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rule {
    TranslationNeitherOldNorNew,
    WalkedUninitializedTable,
    UserReachesTable,
    RetypedWhileReachable,
    StaleAfterCall,
    FailedCallStored,
    InvariantBroken,
}

#[derive(Clone, Debug)]
pub(crate) struct Violation {
    pub(crate) rule: Rule,
    pub(crate) detail: String,
}

/// A system call as a CPU makes it (the caller is the space it runs).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Call {
    Create { va: u64, level: u64, frame_va: u64 },
    CreateAs { handle_va: u64, frame_va: u64 },
    Map { src: u64, level: u64, dst_as: u64, dst: u64, rights: Rights },
    Unmap { as_: u64, va: u64, level: u64 },
    Yield { handle_va: u64 },
}

impl Call {
    /// Index of the call in (create, map, unmap, create_as, yield).
    pub(crate) fn kind(&self) -> usize {
        match self {
            Call::Create { .. } => 0,
            Call::Map { .. } => 1,
            Call::Unmap { .. } => 2,
            Call::CreateAs { .. } => 3,
            Call::Yield { .. } => 4,
        }
    }
}

/// Counts of what the runs did, so that a test can show it was not vacuous.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) calls: u64,
    pub(crate) ok: [u64; 5],
    pub(crate) stores: u64,
    pub(crate) points: u64,
    pub(crate) probes: u64,
    pub(crate) shootdowns: u64,
    pub(crate) acks: u64,
    pub(crate) user_writes: u64,
    /// Translations probed during a call that the state before allows
    /// and the state after does not (stale ones still in use: the window
    /// the shootdown closes).
    pub(crate) stale_in_use: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.calls += o.calls;
        for (a, b) in self.ok.iter_mut().zip(o.ok) {
            *a += b;
        }
        self.stores += o.stores;
        self.points += o.points;
        self.probes += o.probes;
        self.shootdowns += o.shootdowns;
        self.acks += o.acks;
        self.user_writes += o.user_writes;
        self.stale_in_use += o.stale_in_use;
    }
}

/// What a CPU could use during a call.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    cpu: usize,
    space: u64,
    va: u64,
    t: Translation,
    how: &'static str,
}

/// The call in progress.
struct InCall {
    cpu: usize,
    call: Call,
    before: Words,
    tables_before: BTreeSet<u64>,
    /// Frames the call has zeroed (new tables or roots).
    zeroed: BTreeSet<u64>,
    stores: u64,
    seen: BTreeSet<Seen>,
    /// The tables the CPUs' spaces reach now (None: to be recomputed).
    reachable: Option<BTreeSet<u64>>,
}

/// The machine: memory, CPUs, the spaces that exist, and the checker.
pub(crate) struct Sim {
    pub(crate) mem: Words,
    pub(crate) cpus: Vec<Cpu>,
    pub(crate) spaces: Vec<u64>,
    pub(crate) kernel_half: [u64; 256],
    /// The addresses users touch and probes walk.
    pub(crate) vas: Vec<u64>,
    pub(crate) chooser: Chooser,
    /// Setting up: no points, no checks, flushes clear every CPU.
    pub(crate) quiet: bool,
    /// Let the CPU making a call fill its caches at points (speculation).
    pub(crate) caller_fills: bool,
    /// Offer a fill by a walk from the root (paging-structure caches
    /// forgotten) as a third choice besides idle and a fill through them.
    pub(crate) fresh_fills: bool,
    /// Let only one CPU (or none) act at each point: the choice is
    /// which, instead of each CPU's own (fewer runs with many CPUs).
    pub(crate) one_actor: bool,
    pub(crate) violation: Option<Violation>,
    pub(crate) stats: Stats,
    call: Option<InCall>,
}

impl Sim {
    pub(crate) fn new(mem: Words, kernel_half: [u64; 256], init: u64) -> Sim {
        Sim {
            mem,
            cpus: Vec::new(),
            spaces: vec![init],
            kernel_half,
            vas: Vec::new(),
            chooser: Chooser::scripted(Vec::new()),
            quiet: true,
            caller_fills: false,
            fresh_fills: false,
            one_actor: false,
            violation: None,
            stats: Stats::default(),
            call: None,
        }
    }

    /// A copy of the machine's state (memory, CPUs, spaces, addresses)
    /// that makes its choices with `chooser`, checking from the start.
    pub(crate) fn fork(&self, chooser: Chooser) -> Sim {
        let mut s = Sim::new(self.mem.clone(), self.kernel_half, self.spaces[0]);
        s.spaces = self.spaces.clone();
        s.cpus = self.cpus.clone();
        s.vas = self.vas.clone();
        s.chooser = chooser;
        s.caller_fills = self.caller_fills;
        s.fresh_fills = self.fresh_fills;
        s.one_actor = self.one_actor;
        s.start();
        s
    }

    fn fail(&mut self, rule: Rule, detail: String) {
        if self.violation.is_none() {
            let call = self.call.as_ref().map(|c| format!(" during CPU {}'s {:x?}", c.cpu, c.call)).unwrap_or_default();
            self.violation = Some(Violation { rule, detail: format!("{detail}{call}") });
        }
    }

    fn caller(&self) -> Option<usize> {
        self.call.as_ref().map(|c| c.cpu)
    }

    /// Frames that are tables now, for the call in progress: those before
    /// it and those it zeroed.
    fn is_table(&self, frame: u64) -> bool {
        self.call.as_ref().is_some_and(|c| c.tables_before.contains(&frame) || c.zeroed.contains(&frame))
    }

    /// The kernel stores `word` (or zeroes the whole frame, if None) at
    /// `pa`. True if a walker can see the store: it lands in a table some
    /// CPU's space reaches and changes a bit the walker reads (a store
    /// that changes only software bits, or one non-present entry into
    /// another, or any store into a frame no walk reaches, is invisible:
    /// the point after it would offer the other CPUs exactly the choices
    /// of the point before).
    fn kernel_store(&mut self, pa: u64, word: Option<u64>) -> bool {
        let frame = pa & !(PAGE_SIZE - 1);
        let mut visible = false;
        if let Some(call) = &mut self.call {
            call.stores += 1;
            self.stats.stores += 1;
            if !call.tables_before.contains(&frame) && !call.zeroed.contains(&frame) {
                self.check_unreachable(frame);
            }
            if word.is_none() {
                self.call.as_mut().unwrap().zeroed.insert(frame);
            }
            let call = self.call.as_mut().unwrap();
            if call.reachable.is_none() {
                call.reachable = Some(self.mem.tables(self.cpus.iter().map(|c| c.space)));
            }
            if call.reachable.as_ref().unwrap().contains(&frame) {
                visible = match word {
                    Some(new) => {
                        let old = self.mem.get(pa);
                        const IGNORED: u64 = OWN | GRANT | LENT;
                        let both_absent = old & P == 0 && new & P == 0;
                        !both_absent && (old ^ new) & !IGNORED != 0
                    }
                    None => true,
                };
            }
            if visible {
                // The store may change which frames the walks reach.
                call.reachable = None;
            }
        }
        match word {
            Some(v) => self.mem.set(pa, v),
            None => {
                for i in 0..512 {
                    self.mem.set(pa + i * 8, 0);
                }
            }
        }
        visible
    }

    /// The kernel is about to make `frame` a table: no CPU may reach it.
    fn check_unreachable(&mut self, frame: u64) {
        let caching: Vec<String> = (0..self.cpus.len())
            .filter_map(|c| {
                let va = self.cpus[c].tlb.iter().find(|(_, t)| t.frame == frame)?.0;
                Some(format!("CPU {c} at {va:#x}"))
            })
            .collect();
        if !caching.is_empty() {
            let d = format!("frame {frame:#x} becomes a table while still cached: {}", caching.join(", "));
            return self.fail(Rule::RetypedWhileReachable, d);
        }
        for c in 0..self.cpus.len() {
            let cpu = &self.cpus[c];
            for &va in &self.vas {
                let fresh = walk_root(&self.mem, cpu.space, va);
                let cached = cpu.cached_walk(&self.mem, va, &mut Vec::new());
                if [fresh, cached].iter().flatten().any(|t| t.frame == frame) {
                    let d = format!("frame {frame:#x} becomes a table while CPU {c} can walk to it at {va:#x}");
                    return self.fail(Rule::RetypedWhileReachable, d);
                }
            }
        }
    }

    /// A point where other CPUs act: probe, then let each act.
    fn point(&mut self) {
        if self.quiet || self.violation.is_some() {
            return;
        }
        self.stats.points += 1;
        self.probe();
        let caller = self.caller();
        let actors: Vec<usize> = (0..self.cpus.len()).filter(|c| Some(*c) != caller || self.caller_fills).collect();
        let acting: Vec<usize> = if self.one_actor {
            let k = self.chooser.choose(actors.len() + 1);
            actors.get(k).copied().into_iter().collect()
        } else {
            actors.into_iter().filter(|_| self.chooser.choose(2) == 1).collect()
        };
        for c in acting {
            let fresh = self.fresh_fills && !self.cpus[c].psc.is_empty() && self.chooser.choose(2) == 1;
            self.touch(c, fresh, Some(c) != caller);
        }
    }

    /// Every use of every address every CPU could make now, checked.
    fn probe(&mut self) {
        for c in 0..self.cpus.len() {
            for i in 0..self.vas.len() {
                let va = self.vas[i];
                let cpu = &self.cpus[c];
                let cached = cpu.tlb.get(&va).copied();
                let mut fresh_links = Vec::new();
                let fresh = hw_walk(&self.mem, cpu.space, 3, va, true, &mut fresh_links);
                let mut psc_links = Vec::new();
                let via_psc = match cpu.deepest_link(va) {
                    Some(_) => cpu.cached_walk(&self.mem, va, &mut psc_links),
                    None => None,
                };
                self.stats.probes += 1;
                for link in fresh_links.iter().chain(&psc_links) {
                    if !self.is_table(link.table) {
                        let d = format!(
                            "CPU {c} walks {va:#x} through frame {:#x} (a level-{} link) before it is a table",
                            link.table, link.level
                        );
                        return self.fail(Rule::WalkedUninitializedTable, d);
                    }
                }
                for (t, how) in [(cached, "its TLB"), (fresh, "a walk"), (via_psc, "a walk from its cached links")] {
                    let Some(t) = t else { continue };
                    if self.is_table(t.frame) {
                        let d = format!("CPU {c} reaches table frame {:#x} at {va:#x} through {how}", t.frame);
                        return self.fail(Rule::UserReachesTable, d);
                    }
                    if let Some(call) = &mut self.call {
                        call.seen.insert(Seen { cpu: c, space: self.cpus[c].space, va, t, how });
                    }
                }
            }
        }
    }

    /// CPU `c` touches every address: through its TLB, else a walk (from
    /// its cached links, or from the root after forgetting them if
    /// `fresh`), filling its caches; a user also writes the forged entry
    /// through every writable translation.
    fn touch(&mut self, c: usize, fresh: bool, user: bool) {
        if fresh {
            self.cpus[c].psc.clear();
        }
        for i in 0..self.vas.len() {
            let va = self.vas[i];
            let cpu = &mut self.cpus[c];
            let t = match cpu.tlb.get(&va) {
                Some(t) => Some(*t),
                None => {
                    let mut links = Vec::new();
                    let t = cpu.cached_walk(&self.mem, va, &mut links);
                    for link in links {
                        cpu.psc.insert((link.level, link.prefix), link);
                    }
                    if let Some(t) = t {
                        cpu.tlb.insert(va, t);
                    }
                    t
                }
            };
            if let Some(t) = t.filter(|t| user && t.writable) {
                self.mem.set(t.frame, FORGED);
                self.stats.user_writes += 1;
            }
        }
    }

    /// Between calls: every cache agrees with the tables, the sequential
    /// invariants hold; then every CPU touches every address.
    fn boundary(&mut self) {
        if self.quiet || self.violation.is_some() {
            return;
        }
        for c in 0..self.cpus.len() {
            let cpu = &self.cpus[c];
            for (va, t) in &cpu.tlb {
                let now = walk_root(&self.mem, cpu.space, *va);
                if !t.allowed_by(now) {
                    let d = format!("CPU {c} still caches {va:#x} -> {t:x?}; the tables say {now:x?}");
                    return self.fail(Rule::StaleAfterCall, d);
                }
            }
            for link in cpu.psc.values() {
                let mut links = Vec::new();
                hw_walk(&self.mem, cpu.space, 3, link.prefix, true, &mut links);
                let now = links.iter().find(|l| l.level == link.level);
                if !now.is_some_and(|l| l.table == link.table && (l.writable || !link.writable)) {
                    let d = format!("CPU {c} still caches the link {link:x?}; the tables say {now:x?}");
                    return self.fail(Rule::StaleAfterCall, d);
                }
            }
        }
        let mem = &self.mem;
        if let Err(e) =
            sequential_invariants(|t, r| mem.entries(t, r), |f| mem.is_ram(f), &self.kernel_half, &self.spaces)
        {
            return self.fail(Rule::InvariantBroken, e);
        }
        for c in 0..self.cpus.len() {
            self.touch(c, false, true);
        }
    }

    fn begin_call(&mut self, cpu: usize, call: Call) {
        if self.quiet {
            return;
        }
        let roots = self.spaces.iter().copied().chain(self.cpus.iter().map(|c| c.space));
        let tables_before = self.mem.tables(roots);
        let before = self.mem.clone();
        self.call = Some(InCall {
            cpu,
            call,
            before,
            tables_before,
            zeroed: BTreeSet::new(),
            stores: 0,
            seen: BTreeSet::new(),
            reachable: None,
        });
    }

    fn end_call(&mut self, result: Result<u64, Error>) {
        let Some(call) = self.call.take() else { return };
        self.stats.calls += 1;
        if result.is_ok() {
            self.stats.ok[call.call.kind()] += 1;
        }
        if self.violation.is_some() {
            return;
        }
        if result.is_err() && call.stores > 0 {
            let d = format!("the call failed ({result:?}) after {} stores", call.stores);
            self.call = Some(call);
            self.fail(Rule::FailedCallStored, d);
            self.call = None;
            return;
        }
        for s in &call.seen {
            let old = walk_root(&call.before, s.space, s.va);
            let new = walk_root(&self.mem, s.space, s.va);
            if !s.t.allowed_by(old) && !s.t.allowed_by(new) {
                let d = format!(
                    "CPU {} could use {:#x} -> {:x?} through {}: before the call {old:x?}, after it {new:x?}",
                    s.cpu, s.va, s.t, s.how
                );
                self.call = Some(call);
                self.fail(Rule::TranslationNeitherOldNorNew, d);
                self.call = None;
                return;
            }
            if !s.t.allowed_by(new) {
                self.stats.stale_in_use += 1;
            }
        }
        self.boundary();
    }

    /// Called once the CPUs and addresses are set: from now on, check.
    fn start(&mut self) {
        self.quiet = false;
        self.boundary();
    }
}

/// Memory as the call code sees it: every store is a point.
struct SimMem(Rc<RefCell<Sim>>);

impl PhysMem for SimMem {
    fn read(&self, pa: u64) -> u64 {
        self.0.borrow().mem.get(pa)
    }
    fn write(&mut self, pa: u64, value: u64) {
        let mut s = self.0.borrow_mut();
        if s.kernel_store(pa, Some(value)) {
            s.point();
        }
    }
    /// One event: if the frame is not a table yet, it is checked
    /// unreachable first, so no CPU can see it half zeroed.
    fn zero_frame(&mut self, pa: u64) {
        let mut s = self.0.borrow_mut();
        if s.kernel_store(pa, None) {
            s.point();
        }
    }
    fn is_ram(&self, pa: u64) -> bool {
        self.0.borrow().mem.is_ram(pa)
    }
}

/// The shootdown as `smp::shootdown` does it: the caller flushes, then
/// each other CPU acknowledges in some order, running until it does.
struct SimTlb(Rc<RefCell<Sim>>);

impl Tlb for SimTlb {
    fn flush_everywhere(&mut self) {
        let mut s = self.0.borrow_mut();
        s.stats.shootdowns += 1;
        let Some(caller) = s.caller() else {
            s.cpus.iter_mut().for_each(Cpu::flush);
            return;
        };
        s.cpus[caller].flush();
        let mut targets: Vec<usize> = (0..s.cpus.len()).filter(|c| *c != caller).collect();
        while !targets.is_empty() {
            let k = s.chooser.choose(targets.len());
            let c = targets.remove(k);
            s.cpus[c].flush();
            s.stats.acks += 1;
            s.point();
        }
    }
}

/// No devices in these scenarios.
struct NoDevices;

impl DeviceTables for NoDevices {
    fn map(&mut self, _: u64, _: u64, _: u64, _: bool) -> Result<(), Error> {
        Err(Error::NotMapped)
    }
    fn unmap(&mut self, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NotMapped)
    }
}

/// CPU `cpu` makes `call` (as the space it runs), under the kernel lock.
pub(crate) fn run_call(sim: &Rc<RefCell<Sim>>, cpu: usize, call: Call) -> Result<u64, Error> {
    sim.borrow_mut().begin_call(cpu, call);
    let caller = sim.borrow().cpus[cpu].space;
    let kernel_half = sim.borrow().kernel_half;
    let (mut mem, mut tlb, mut dev) = (SimMem(sim.clone()), SimTlb(sim.clone()), NoDevices);
    let r = match call {
        Call::Create { va, level, frame_va } => create(&mut mem, &mut tlb, caller, va, level, frame_va).map(|_| 0),
        Call::CreateAs { handle_va, frame_va } => {
            create_as(&mut mem, &mut tlb, caller, handle_va, frame_va, &kernel_half)
        }
        Call::Map { src, level, dst_as, dst, rights } => {
            map(&mut mem, &mut tlb, &mut dev, caller, src, level, dst_as, dst, rights.bits()).map(|_| 0)
        }
        Call::Unmap { as_, va, level } => unmap(&mut mem, &mut tlb, &mut dev, caller, as_, va, level).map(|_| 0),
        Call::Yield { handle_va } => yield_target(&mem, caller, handle_va),
    };
    let mut s = sim.borrow_mut();
    match (call, r) {
        (Call::CreateAs { .. }, Ok(root)) => s.spaces.push(root),
        (Call::Yield { .. }, Ok(target)) => {
            // The switch reloads CR3: this CPU's caches are gone.
            s.cpus[cpu].flush();
            s.cpus[cpu].space = target;
        }
        _ => {}
    }
    s.end_call(r);
    r
}
