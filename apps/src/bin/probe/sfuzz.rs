//! `probe sfuzz <calls> <seed> [noscen]`: a structure-aware fuzzer with a
//! shadow model of its own address space.
//!
//! It builds structures, not only arguments: tables at every level in its
//! *arena* (PML4 slots 1..=4 of its own space), the same table linked at
//! several addresses of its own space (aliases), child address spaces
//! (`create_as`) with pages and tables shared into them read-only or
//! writable, moves, handles and copies of handles with fewer rights, pages
//! turned into tables and root tables while aliases of them exist, unmaps
//! of pages, links and handles (also through a child's handle), yields,
//! and the same calls with one argument in an error position.
//!
//! The oracle has two halves:
//! * the **model** predicts every call's result (success or the exact
//!   error of `docs/syscalls.md`, checked in the kernel's order); a
//!   difference is a finding;
//! * after every call that changed the structure, the leaf addresses whose
//!   translation the model says changed are **probed** through every alias
//!   (`exo_rt::probe`, which survives faults): an address the model says
//!   is unmapped must fault on read; a mapped one must read the tag the
//!   fuzzer wrote into that frame when it got it (frame identity), be
//!   writable exactly when the model says so, and never be a page table.
//!   Every `SWEEP` structural calls all 256 arena leaves are probed.
//!
//! The running call count goes to mailbox word 2 after every call (init
//! counts calls across fuzzer processes). Exit 0: no finding; 3: a
//! finding (printed with the seed, the step and the last calls).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use exo_abi::{Error, Rights, PAGE_SIZE, USER_END};
use exo_rt::layout::{MAILBOX_VA, PARENT_HANDLE_VA};
use exo_rt::{mem, println, probe, sys};

/// Entries modelled per table (indices 0..N; index N is "just outside").
const N: usize = 4;
/// The arena: PML4 slots `SLOT0..SLOT0 + N` of every modelled root.
const SLOT0: u64 = 1;
/// Arena leaves (N^4), probed by index.
const LEAVES: usize = N * N * N * N;
/// Full probe sweep every this many structural successes.
const SWEEP: u64 = 64;
/// Node 0 is this process's own root; node 1 stands for the parent.
const OWN: u16 = 0;
const PARENT: u16 = 1;
const TAG: u64 = 0x7a90_0000_0000_0000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum E {
    Empty,
    /// A page: frame index, the entry's own rights.
    Page(u16, Rights),
    /// A table link: node index, the link's own rights.
    Link(u16, Rights),
    /// An address-space handle: root node index, rights.
    Handle(u16, Rights),
}

struct Node {
    e: [E; N],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Data,
    Table,
    Root,
}

struct Frame {
    tag: u64,
    lent: bool,
    kind: FrameKind,
}

/// Where an entry is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Loc {
    /// Entry `i` of a modelled node.
    At(u16, usize),
    /// Spare frame `i` that init placed at `SPARE_VA + i * 4 KiB`.
    Pool(usize),
    /// The parent handle init placed at `PARENT_HANDLE_VA`.
    Parent,
    /// An entry outside the modelled indices: always empty.
    Outside,
}

/// What a successful call changes in the model.
#[derive(Clone, Copy, Debug)]
enum Plan {
    Create { src: Loc, dst: Loc, frame: u16 },
    CreateAs { src: Loc, dst: Loc, frame: u16 },
    Move { src: Loc, dst: Loc, e: E },
    Set { dst: Loc, e: E, lend: Option<u16> },
    Clear { at: Loc },
    Nothing,
}

#[derive(Clone, Copy, Debug)]
struct Call {
    nr: u64,
    a: [u64; 5],
}

impl Call {
    fn show(&self) -> String {
        let name = ["create", "map", "unmap", "create_as", "yield"].get(self.nr as usize).copied().unwrap_or("bad");
        format!("{name}({:#x}, {:#x}, {:#x}, {:#x}, {:#x})", self.a[0], self.a[1], self.a[2], self.a[3], self.a[4])
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn show(r: Result<(), Error>) -> &'static str {
    match r {
        Ok(()) => "Ok",
        Err(e) => e.name(),
    }
}

const fn shift(level: u8) -> u64 {
    12 + 9 * level as u64
}

/// The virtual address of arena leaf `i`.
fn leaf_va(i: usize) -> u64 {
    let (s, a, b, c) = (i / (N * N * N), (i / (N * N)) % N, (i / N) % N, i % N);
    ((SLOT0 + s as u64) << 39) | ((a as u64) << 30) | ((b as u64) << 21) | ((c as u64) << 12)
}

fn check_user_va(va: u64, level: u8) -> Result<(), Error> {
    if va >= USER_END || !va.is_multiple_of(1 << shift(level)) {
        Err(Error::BadAddress)
    } else {
        Ok(())
    }
}

pub struct Model {
    nodes: Vec<Node>,
    frames: Vec<Frame>,
    /// Spare frames still at their place: `pool[i]` = frame index.
    pool: Vec<Option<u16>>,
    pool_va: u64,
    seed: u64,
}

impl Model {
    fn new_node(&mut self) -> u16 {
        self.nodes.push(Node { e: [E::Empty; N] });
        (self.nodes.len() - 1) as u16
    }

    fn entry(&self, loc: Loc) -> E {
        match loc {
            Loc::At(n, i) => self.nodes[n as usize].e[i],
            Loc::Pool(i) => match self.pool[i] {
                Some(f) => E::Page(f, Rights::WRITE | Rights::OWN | Rights::GRANT),
                None => E::Empty,
            },
            Loc::Parent => E::Handle(PARENT, Rights::SWITCH),
            Loc::Outside => E::Empty,
        }
    }

    fn set(&mut self, loc: Loc, e: E) {
        match loc {
            Loc::At(n, i) => self.nodes[n as usize].e[i] = e,
            Loc::Pool(i) => {
                assert!(e == E::Empty);
                self.pool[i] = None
            }
            Loc::Parent | Loc::Outside => unreachable!("the model never writes {loc:?}"),
        }
    }

    /// The entry slot for `level` covering `va` in the space rooted at
    /// `root`, and the rights of the links above it (`exo_mm::walk`).
    fn walk(&self, root: u16, va: u64, level: u8) -> Result<(Loc, Rights), Error> {
        if level > 3 {
            return Err(Error::BadLevel);
        }
        if va >= USER_END {
            return Err(Error::BadAddress);
        }
        if root == OWN && va >> 39 == 0 {
            // Slot 0 of our own space is init's window: only the pool and
            // the parent handle are ever named there.
            let pool_end = self.pool_va + self.pool.len() as u64 * PAGE_SIZE;
            return match va {
                PARENT_HANDLE_VA if level == 0 => Ok((Loc::Parent, Rights::ALL)),
                v if level == 0 && (self.pool_va..pool_end).contains(&v) => {
                    Ok((Loc::Pool(((v - self.pool_va) / PAGE_SIZE) as usize), Rights::ALL))
                }
                _ => panic!("sfuzz generated an address in init's window: {va:#x}"),
            };
        }
        let mut node = root;
        let mut path = Rights::ALL;
        let mut l = 3u8;
        loop {
            let raw = (va >> shift(l)) & 0x1ff;
            let idx = if l == 3 {
                raw.checked_sub(SLOT0).filter(|i| *i < N as u64)
            } else {
                Some(raw).filter(|i| *i < N as u64)
            };
            let loc = match idx {
                Some(i) if node != PARENT => Loc::At(node, i as usize),
                _ => Loc::Outside,
            };
            if l == level {
                return Ok((loc, path));
            }
            match self.entry(loc) {
                E::Link(n, r) => {
                    path = path.intersect(r);
                    node = n;
                }
                E::Empty => return Err(Error::NoTable),
                _ => return Err(Error::WrongKind),
            }
            l -= 1;
        }
    }

    /// Effective rights (`exo_mm::effective`).
    fn effective(e: E, path: Rights) -> Option<Rights> {
        match e {
            E::Page(_, r) | E::Link(_, r) => Some(r.intersect(path)),
            E::Handle(_, r) if path.contains(Rights::OWN) => Some(r),
            E::Handle(_, r) => Some(r.intersect(Rights::SWITCH)),
            E::Empty => None,
        }
    }

    fn resolve_target(&self, h: u64) -> Result<u16, Error> {
        if h == 0 {
            return Ok(OWN);
        }
        check_user_va(h, 0)?;
        let (loc, path) = self.walk(OWN, h, 0)?;
        let e = self.entry(loc);
        match (e, Self::effective(e, path)) {
            (E::Handle(n, _), Some(r)) if r.contains(Rights::OWN) => Ok(n),
            (E::Handle(..), _) => Err(Error::NoRight),
            (_, Some(_)) => Err(Error::WrongKind),
            (_, None) => Err(Error::NotMapped),
        }
    }

    fn empty_slot(&self, root: u16, va: u64, level: u8) -> Result<Loc, Error> {
        check_user_va(va, level)?;
        let (loc, path) = self.walk(root, va, level)?;
        if !path.contains(Rights::OWN) {
            return Err(Error::NoRight);
        }
        if self.entry(loc) != E::Empty {
            return Err(Error::Occupied);
        }
        Ok(loc)
    }

    fn owned_fresh_frame(&self, va: u64) -> Result<(Loc, u16), Error> {
        check_user_va(va, 0)?;
        let (loc, path) = self.walk(OWN, va, 0)?;
        let e = self.entry(loc);
        match (e, Self::effective(e, path)) {
            (E::Page(f, _), Some(r)) => {
                if !r.contains(Rights::OWN) {
                    Err(Error::NoRight)
                } else if self.frames[f as usize].lent {
                    Err(Error::Lent)
                } else {
                    Ok((loc, f))
                }
            }
            (_, Some(_)) => Err(Error::WrongKind),
            (_, None) => Err(Error::NotMapped),
        }
    }

    /// The documented outcome of a call, and what it changes.
    fn predict(&self, c: &Call) -> Result<Plan, Error> {
        let a = c.a;
        match c.nr {
            0 => {
                if !(1..=3).contains(&a[1]) {
                    return Err(Error::BadLevel);
                }
                let dst = self.empty_slot(OWN, a[0], a[1] as u8)?;
                let (src, frame) = self.owned_fresh_frame(a[2])?;
                Ok(Plan::Create { src, dst, frame })
            }
            1 => self.predict_map(a[0], a[1], a[2], a[3], a[4]),
            2 => {
                if a[2] > 3 {
                    return Err(Error::BadLevel);
                }
                let level = a[2] as u8;
                let root = self.resolve_target(a[0])?;
                check_user_va(a[1], level)?;
                let (loc, path) = self.walk(root, a[1], level)?;
                if !path.contains(Rights::OWN) {
                    return Err(Error::NoRight);
                }
                match self.entry(loc) {
                    E::Empty => Err(Error::NotMapped),
                    E::Page(_, r) if r.contains(Rights::OWN) => Err(Error::Owned),
                    _ => Ok(Plan::Clear { at: loc }),
                }
            }
            3 => {
                let dst = self.empty_slot(OWN, a[0], 0)?;
                let (src, frame) = self.owned_fresh_frame(a[1])?;
                Ok(Plan::CreateAs { src, dst, frame })
            }
            4 => {
                if a[0] == 0 {
                    return Err(Error::BadAddress);
                }
                check_user_va(a[0], 0)?;
                let (loc, path) = self.walk(OWN, a[0], 0)?;
                let e = self.entry(loc);
                match (e, Self::effective(e, path)) {
                    (E::Handle(n, _), Some(r)) if r.contains(Rights::SWITCH) => {
                        // Only the parent has a control page to enter.
                        if n == PARENT {
                            Ok(Plan::Nothing)
                        } else {
                            Err(Error::BadTarget)
                        }
                    }
                    (E::Handle(..), _) => Err(Error::NoRight),
                    (_, Some(_)) => Err(Error::WrongKind),
                    (_, None) => Err(Error::NotMapped),
                }
            }
            _ => Err(Error::BadSyscall),
        }
    }

    fn predict_map(&self, src_va: u64, level: u64, h: u64, dst_va: u64, rights: u64) -> Result<Plan, Error> {
        if level > 3 {
            return Err(Error::BadLevel);
        }
        let level = level as u8;
        let want = Rights::from_bits(rights)?;
        check_user_va(src_va, level)?;
        let dst_root = self.resolve_target(h)?;
        let (src, path) = self.walk(OWN, src_va, level)?;
        let e = self.entry(src);
        let mut held = Self::effective(e, path).ok_or(Error::NotMapped)?;
        if matches!(e, E::Page(..)) && held.contains(Rights::OWN) && want.contains(Rights::OWN) {
            held = held | Rights::WRITE | Rights::EXEC;
        }
        if !held.contains(want) {
            return Err(Error::RightsExceeded);
        }
        let dst = self.empty_slot(dst_root, dst_va, level)?;
        match e {
            E::Page(f, r) => {
                if want.contains(Rights::SWITCH) {
                    return Err(Error::BadArgument);
                }
                if want.contains(Rights::OWN) {
                    return Ok(Plan::Move { src, dst, e: E::Page(f, want) });
                }
                if !held.contains(Rights::GRANT) {
                    return Err(Error::NoRight);
                }
                let lend = r.contains(Rights::OWN).then_some(f);
                Ok(Plan::Set { dst, e: E::Page(f, want), lend })
            }
            E::Link(n, _) => {
                if !held.contains(Rights::GRANT) {
                    return Err(Error::NoRight);
                }
                if want.contains(Rights::SWITCH) {
                    return Err(Error::BadArgument);
                }
                Ok(Plan::Set { dst, e: E::Link(n, want), lend: None })
            }
            E::Handle(n, _) => {
                if !held.contains(Rights::GRANT) {
                    return Err(Error::NoRight);
                }
                if want.contains(Rights::WRITE) || want.contains(Rights::EXEC) {
                    return Err(Error::BadArgument);
                }
                Ok(Plan::Set { dst, e: E::Handle(n, want), lend: None })
            }
            E::Empty => Err(Error::NotMapped),
        }
    }

    /// Locations a plan writes (a plan writing outside the model is not run).
    fn writes_outside(p: &Plan) -> bool {
        let locs = match *p {
            Plan::Create { src, dst, .. } | Plan::CreateAs { src, dst, .. } | Plan::Move { src, dst, .. } => [src, dst],
            Plan::Set { dst, .. } => [dst, dst],
            Plan::Clear { at } => [at, at],
            Plan::Nothing => return false,
        };
        locs.iter().any(|l| matches!(l, Loc::Outside | Loc::Parent))
    }

    fn apply(&mut self, p: Plan) {
        match p {
            Plan::Create { src, dst, frame } => {
                self.set(src, E::Empty);
                self.frames[frame as usize].kind = FrameKind::Table;
                let n = self.new_node();
                self.set(dst, E::Link(n, Rights::WRITE | Rights::EXEC | Rights::OWN | Rights::GRANT));
            }
            Plan::CreateAs { src, dst, frame } => {
                self.set(src, E::Empty);
                self.frames[frame as usize].kind = FrameKind::Root;
                let n = self.new_node();
                self.set(dst, E::Handle(n, Rights::OWN | Rights::GRANT | Rights::SWITCH));
            }
            Plan::Move { src, dst, e } => {
                self.set(src, E::Empty);
                self.set(dst, e);
            }
            Plan::Set { dst, e, lend } => {
                if let Some(f) = lend {
                    self.frames[f as usize].lent = true;
                }
                self.set(dst, e);
            }
            Plan::Clear { at } => self.set(at, E::Empty),
            Plan::Nothing => {}
        }
    }

    /// What every arena leaf of our own space translates to: 0 for
    /// nothing, else `frame + 1`, with bit 31 set if writable.
    fn snapshot(&self, out: &mut [u32]) {
        out.fill(0);
        let root = &self.nodes[OWN as usize];
        for s in 0..N {
            let E::Link(n3, r3) = root.e[s] else { continue };
            for a in 0..N {
                let E::Link(n2, r2) = self.nodes[n3 as usize].e[a] else {
                    continue;
                };
                for b in 0..N {
                    let E::Link(n1, r1) = self.nodes[n2 as usize].e[b] else {
                        continue;
                    };
                    for c in 0..N {
                        if let E::Page(f, r) = self.nodes[n1 as usize].e[c] {
                            let w = r.intersect(r1).intersect(r2).intersect(r3).contains(Rights::WRITE);
                            out[((s * N + a) * N + b) * N + c] = (f as u32 + 1) | ((w as u32) << 31);
                        }
                    }
                }
            }
        }
    }
}

/// Statistics that show which structures the run built.
#[derive(Default)]
struct Stats {
    calls: u64,
    ok: u64,
    errors: [u64; 16],
    by_call: [u64; 5],
    creates: u64,
    creates_aliased: u64,
    roots: u64,
    roots_aliased: u64,
    moves: u64,
    moves_aliased: u64,
    unmaps_aliased: u64,
    table_aliases: u64,
    child_links: u64,
    child_unmaps: u64,
    shares_ro: u64,
    shares_rw: u64,
    handle_copies: u64,
    yields: u64,
    probes: u64,
    sweeps: u64,
}

pub struct Fuzzer {
    m: Model,
    rng: Rng,
    st: Stats,
    before: Vec<u32>,
    after: Vec<u32>,
    /// The last 8 calls made and their results (for a finding's report).
    recent: [Option<(Call, Result<(), Error>)>; 8],
    step: u64,
    structural: u64,
    budget: u64,
}

type Finding = String;

impl Fuzzer {
    /// Tag the frame at `va` (writable, owned, just moved there).
    fn tag(&mut self, f: u16, va: u64) {
        let tag = TAG | (self.m.seed & 0xffff) << 32 | (f as u64) << 8 | 0x5a;
        self.m.frames[f as usize].tag = tag;
        mem::write(va, tag);
    }

    /// Make one call: predict, run, compare, and probe what changed.
    fn exec(&mut self, c: Call) -> Result<Result<(), Error>, Finding> {
        let predicted = self.m.predict(&c);
        if let Ok(p) = &predicted {
            if Model::writes_outside(p) {
                return Ok(Err(Error::BadArgument)); // not run: outside the model
            }
        }
        let multi = self.aliases_of(&predicted);
        self.m.snapshot(&mut self.before);
        let got = sys::raw_number(c.nr, c.a[0], c.a[1], c.a[2], c.a[3], c.a[4]).map(|_| ());
        self.recent[(self.step % 8) as usize] = Some((c, got));
        self.step += 1;
        self.st.calls += 1;
        mem::write(MAILBOX_VA + 16, self.st.calls);
        let want = predicted.map(|_| ());
        if got != want {
            return Err(format!("{} returned {}, the model says {}", c.show(), show(got), show(want)));
        }
        match got {
            Ok(()) => self.st.ok += 1,
            Err(e) => self.st.errors[(e as usize).min(15)] += 1,
        }
        if c.nr < 5 {
            self.st.by_call[c.nr as usize] += 1;
        }
        let Ok(plan) = predicted else { return Ok(got) };
        self.count(&plan, c, multi);
        self.m.apply(plan);
        if matches!(plan, Plan::Nothing) {
            return Ok(got);
        }
        self.structural += 1;
        self.m.snapshot(&mut self.after);
        let full = self.structural.is_multiple_of(SWEEP);
        if full {
            self.st.sweeps += 1;
        }
        for i in 0..LEAVES {
            if full || self.before[i] != self.after[i] {
                self.probe(i, self.before[i])?;
            }
        }
        Ok(got)
    }

    /// Whether the frame a plan retypes, moves or unmaps is reachable at
    /// more than one arena leaf before the call.
    fn aliases_of(&mut self, p: &Result<Plan, Error>) -> bool {
        let f = match p {
            Ok(Plan::Create { frame, .. } | Plan::CreateAs { frame, .. }) => *frame,
            Ok(Plan::Move { e: E::Page(f, _), .. }) => *f,
            Ok(Plan::Clear { at }) => match self.m.entry(*at) {
                E::Page(f, _) => f,
                _ => return false,
            },
            _ => return false,
        };
        self.m.snapshot(&mut self.before);
        self.before.iter().filter(|x| **x != 0 && (**x & 0x7fff_ffff) == f as u32 + 1).count() > 1
    }

    fn count(&mut self, p: &Plan, c: Call, aliased: bool) {
        let s = &mut self.st;
        match *p {
            Plan::Create { .. } => {
                s.creates += 1;
                s.creates_aliased += aliased as u64;
            }
            Plan::CreateAs { .. } => {
                s.roots += 1;
                s.roots_aliased += aliased as u64;
            }
            Plan::Move { .. } => {
                s.moves += 1;
                s.moves_aliased += aliased as u64;
            }
            Plan::Clear { .. } => {
                s.unmaps_aliased += aliased as u64;
                s.child_unmaps += (c.a[0] != 0) as u64;
            }
            Plan::Set { e: E::Link(..), .. } if c.a[2] != 0 => s.child_links += 1,
            Plan::Set { e: E::Link(..), .. } => s.table_aliases += 1,
            Plan::Set { e: E::Page(_, r), .. } if r.contains(Rights::WRITE) => s.shares_rw += 1,
            Plan::Set { e: E::Page(..), .. } => s.shares_ro += 1,
            Plan::Set { e: E::Handle(..), .. } => s.handle_copies += 1,
            Plan::Set { .. } => {}
            Plan::Nothing => s.yields += 1,
        }
    }

    /// Check arena leaf `i` against the model (`was`: what it translated
    /// to before the call, for the report).
    fn probe(&mut self, i: usize, was: u32) -> Result<(), Finding> {
        let va = leaf_va(i);
        let now = self.after[i];
        self.st.probes += 1;
        let read = probe::read(va);
        if now == 0 {
            if let Ok(v) = read {
                let old = match was & 0x7fff_ffff {
                    0 => String::from("nothing"),
                    x => {
                        let f = &self.m.frames[x as usize - 1];
                        let kind = match f.kind {
                            FrameKind::Data => "still data",
                            FrameKind::Table => "now a page table",
                            FrameKind::Root => "now a root table",
                        };
                        format!("frame {} ({kind})", x - 1)
                    }
                };
                return Err(format!(
                    "read through {va:#x} succeeded (value {v:#x}) but the model says nothing is mapped there (before the call: {old}); write test: {}",
                    if probe::write(va).is_ok() { "WRITABLE" } else { "faults" }
                ));
            }
            return Ok(());
        }
        let f = ((now & 0x7fff_ffff) - 1) as usize;
        let writable = now >> 31 != 0;
        let frame = &self.m.frames[f];
        if frame.kind != FrameKind::Data {
            return Err(format!("the model maps table frame {f} at {va:#x}"));
        }
        match read {
            Err(code) => {
                return Err(format!("read through {va:#x} faulted (error {code:#x}); the model maps frame {f} there"))
            }
            Ok(v) if frame.tag != 0 && v != frame.tag => {
                return Err(format!("{va:#x} reads {v:#x}, but frame {f} has tag {:#x}", frame.tag))
            }
            Ok(_) => {}
        }
        match (writable, probe::write(va)) {
            (true, Err(code)) => {
                Err(format!("write test at {va:#x} faulted (error {code:#x}); the model says writable"))
            }
            (false, Ok(())) => Err(format!("write test at {va:#x} succeeded; the model says read-only")),
            _ => Ok(()),
        }
    }

    // ---- generators ----

    /// An address for an entry of `level` in the space rooted at `root`,
    /// walking the model so that most addresses lead somewhere: `full`
    /// prefers occupied final entries, otherwise empty ones.
    fn gen_va(&mut self, root: u16, level: u8, full: bool) -> u64 {
        let mut va = 0;
        let mut node = Some(root).filter(|r| *r != PARENT);
        for l in (level..=3).rev() {
            let mut i = self.rng.below(N as u64) as usize;
            if let Some(n) = node {
                let e = &self.m.nodes[n as usize].e;
                let good = |k: usize| {
                    if l > level {
                        matches!(e[k], E::Link(..))
                    } else {
                        (e[k] != E::Empty) == full
                    }
                };
                let mut cands = [0usize; N];
                let mut n_c = 0;
                for k in 0..N {
                    if good(k) {
                        cands[n_c] = k;
                        n_c += 1;
                    }
                }
                if n_c > 0 && self.rng.chance(85) {
                    i = cands[self.rng.below(n_c as u64) as usize];
                }
            }
            if self.rng.chance(2) {
                i = N; // just outside the modelled indices
            }
            let raw = if l == 3 { SLOT0 + i as u64 } else { i as u64 };
            va |= raw << shift(l);
            node = match node.map(|n| self.m.nodes[n as usize].e.get(i).copied()) {
                Some(Some(E::Link(m, _))) => Some(m),
                _ => None,
            };
        }
        va
    }

    /// A level-0 address holding something of `kind` (page or handle) in
    /// our own arena, if one exists (searched from a random start).
    fn find_leaf(&mut self, want: fn(&E) -> bool) -> Option<u64> {
        (0..32).find_map(|_| {
            let va = self.gen_va(OWN, 0, true);
            let (loc, _) = self.m.walk(OWN, va, 0).ok()?;
            want(&self.m.entry(loc)).then_some(va)
        })
    }

    fn pool_frame(&mut self) -> Option<u64> {
        let n = self.m.pool.len();
        let start = self.rng.below(n.max(1) as u64) as usize;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|i| self.m.pool[*i].is_some())
            .map(|i| self.m.pool_va + i as u64 * PAGE_SIZE)
    }

    fn gen_rights(&mut self, held: Rights) -> u64 {
        match self.rng.below(20) {
            0 => 1 << (5 + self.rng.below(59)), // undefined bit
            1..=4 => self.rng.below(32),        // anything defined
            _ => {
                let mut r = held.bits() & self.rng.next() & 0x1f;
                if self.rng.chance(30) {
                    r |= Rights::OWN.bits() | Rights::WRITE.bits() & held.bits();
                }
                r
            }
        }
    }

    fn held_at(&self, va: u64, level: u8) -> Rights {
        match self.m.walk(OWN, va, level) {
            Ok((loc, path)) => Model::effective(self.m.entry(loc), path).unwrap_or(Rights::NONE),
            Err(_) => Rights::NONE,
        }
    }

    /// A handle of ours (to a child), or 0.
    fn handle(&mut self) -> u64 {
        self.find_leaf(|e| matches!(e, E::Handle(n, _) if *n != PARENT)).unwrap_or(0)
    }

    fn handle_root(&self, h: u64) -> u16 {
        self.m.resolve_target(h).unwrap_or(OWN)
    }

    fn gen_level(&mut self) -> u8 {
        [0, 0, 0, 0, 1, 1, 2, 3][self.rng.below(8) as usize]
    }

    /// One call, chosen by the current structure.
    fn gen(&mut self) -> Call {
        // Tables are never reclaimed: keep most spare frames for pages, and
        // make tables rarer as the spare frames run out.
        let spares = self.m.pool.iter().filter(|p| p.is_some()).count() as u64;
        let mut k = self.rng.below(100);
        if (8..=19).contains(&k) && self.rng.below(self.m.pool.len() as u64 + 1) > spares + 16 {
            k = 20 + self.rng.below(80);
        }
        let mut c = match k {
            // Bring a spare frame into the arena (then it gets its tag).
            0..=7 => {
                let src = self.pool_frame().unwrap_or(self.m.pool_va);
                let dst = self.gen_va(OWN, 0, false);
                Call { nr: 1, a: [src, 0, 0, dst, 0b1101] }
            }
            // A table, from a spare frame or from a page of the arena.
            8..=15 => {
                let mut level = 1 + self.rng.below(3) as u8;
                let mut va = self.gen_va(OWN, level, false);
                if self.rng.chance(60) {
                    // Extend a path: the first missing table on the way to a leaf.
                    let leaf = self.gen_va(OWN, 0, false);
                    if let Some(l) = (1..=3u8)
                        .rev()
                        .find(|l| matches!(self.m.walk(OWN, leaf, *l), Ok((loc, _)) if self.m.entry(loc) == E::Empty))
                    {
                        level = l;
                        va = leaf & !((1u64 << shift(l)) - 1);
                    }
                }
                let f =
                    if self.rng.chance(40) { self.pool_frame() } else { self.find_leaf(|e| matches!(e, E::Page(..))) };
                Call { nr: 0, a: [va, level as u64, f.unwrap_or(self.m.pool_va), 0, 0] }
            }
            16..=19 => {
                let h = self.gen_va(OWN, 0, false);
                let f =
                    if self.rng.chance(30) { self.pool_frame() } else { self.find_leaf(|e| matches!(e, E::Page(..))) };
                Call { nr: 3, a: [h, f.unwrap_or(self.m.pool_va), 0, 0, 0] }
            }
            20..=59 => {
                let level = self.gen_level();
                let src = if level == 0 && self.rng.chance(50) {
                    self.find_leaf(|e| !matches!(e, E::Empty)).unwrap_or(0x8000_0000_0000)
                } else {
                    self.gen_va(OWN, level, true)
                };
                let h = if self.rng.chance(30) { self.handle() } else { 0 };
                let root = self.handle_root(h);
                // A child's root starts empty: link whole tables into it often.
                let level = if root != OWN && self.rng.chance(30) { 3 } else { level };
                let src = if root != OWN && level == 3 { self.gen_va(OWN, 3, true) } else { src };
                let dst = self.gen_va(root, level, false);
                let held = self.held_at(src, level);
                let r = self.gen_rights(held);
                Call { nr: 1, a: [src, level as u64, h, dst, r] }
            }
            60..=84 => {
                // Mostly pages and handles: unmapping a link leaks its table.
                let level = if self.rng.chance(85) { 0 } else { self.gen_level() };
                let h = if self.rng.chance(25) { self.handle() } else { 0 };
                let root = self.handle_root(h);
                let va = self.gen_va(root, level, true);
                Call { nr: 2, a: [h, va, level as u64, 0, 0] }
            }
            85..=87 => {
                let h = if self.rng.chance(60) { self.handle() } else { self.gen_va(OWN, 0, true) };
                Call { nr: 4, a: [h, 0, 0, 0, 0] }
            }
            _ => {
                // Some call with one argument in an error position.
                let mut c = self.gen_plain();
                self.corrupt(&mut c);
                c
            }
        };
        if c.nr == 4 && self.rng.below(400) == 0 {
            c.a = [PARENT_HANDLE_VA, exo_rt::layout::msg::YIELD, 0, 0, 0];
        }
        c
    }

    fn gen_plain(&mut self) -> Call {
        loop {
            let c = self.gen();
            if c.nr < 5 && c.a[0] != PARENT_HANDLE_VA {
                return c;
            }
        }
    }

    fn corrupt(&mut self, c: &mut Call) {
        let bad_va = |r: &mut Rng, va: u64| match r.below(6) {
            0 => 0xffff_8000_0000_0000 | (r.next() & 0x7fff_ffff_f000),
            1 => USER_END,
            2 => va | 8,
            // The next page (only in the arena: init's window is not modelled).
            3 if va >> 39 != 0 => va + PAGE_SIZE,
            4 => 0xffff_ffff_8000_0000,
            _ => va | (1 << 47),
        };
        let i = self.rng.below(5) as usize;
        match (c.nr, i) {
            (_, _) if self.rng.chance(5) => c.nr = 5 + self.rng.below(1 << 20),
            (0, 1) | (1, 1) => c.a[1] = 4 + self.rng.below(6),
            (2, 2) => c.a[2] = 4 + self.rng.below(6),
            (1, 4) => c.a[4] |= 1 << (5 + self.rng.below(59)),
            (1, 2) | (2, 0) => {
                c.a[i] = [PARENT_HANDLE_VA, self.m.pool_va, bad_va(&mut self.rng, c.a[i])][self.rng.below(3) as usize]
            }
            (4, _) => {
                c.a[0] =
                    [0, PARENT_HANDLE_VA + 8, self.m.pool_va, bad_va(&mut self.rng, c.a[0])][self.rng.below(4) as usize]
            }
            _ => {
                let j = match c.nr {
                    0 => [0, 2][self.rng.below(2) as usize],
                    1 => [0, 3][self.rng.below(2) as usize],
                    2 => 1,
                    _ => [0, 1][self.rng.below(2) as usize],
                };
                c.a[j] = bad_va(&mut self.rng, c.a[j]);
            }
        }
    }

    fn report(&self, what: &str) {
        println!("sfuzz: FINDING seed {} step {}: {what}", self.m.seed, self.step);
        println!("sfuzz: the last calls (oldest first):");
        for k in 0..8 {
            if let Some((c, r)) = self.recent[((self.step + k) % 8) as usize] {
                println!("sfuzz:   {} -> {}", c.show(), show(r));
            }
        }
    }

    fn summary(&self) {
        let s = &self.st;
        println!(
            "sfuzz: seed {}: {} calls ({} ok; by call create/map/unmap/create_as/yield {:?}; errors by code {:?})",
            self.m.seed, s.calls, s.ok, s.by_call, s.errors
        );
        println!(
            "sfuzz: built: {} tables ({} from aliased frames), {} roots ({} aliased), {} moves ({} aliased), {} table aliases, {} links into children, {} unmaps through child handles, {} unmaps of aliased pages, shares {} read-only / {} writable, {} handle copies, {} yields",
            s.creates, s.creates_aliased, s.roots, s.roots_aliased, s.moves, s.moves_aliased, s.table_aliases, s.child_links, s.child_unmaps, s.unmaps_aliased, s.shares_ro, s.shares_rw, s.handle_copies, s.yields
        );
        println!(
            "sfuzz: {} probes ({} faulted as the model said), {} full sweeps; {} model nodes, {} spare frames left",
            s.probes,
            probe::faults(),
            s.sweeps,
            self.m.nodes.len(),
            self.m.pool.iter().filter(|p| p.is_some()).count()
        );
    }
}

// ---- directed structures (the regression set) ----

const fn va4(s: u64, a: u64, b: u64, c: u64) -> u64 {
    ((SLOT0 + s) << 39) | (a << 30) | (b << 21) | (c << 12)
}
const RWXOG: u64 = 0b1111;
const RWOG: u64 = 0b1101;

impl Fuzzer {
    /// Run calls that must all behave as the model says (and be probed).
    fn script(&mut self, name: &str, calls: &[(u64, [u64; 5])]) -> Result<(), Finding> {
        for (nr, a) in calls {
            let mut a = *a;
            for x in a.iter_mut() {
                // POOL stands for "the next spare frame".
                if *x == POOL {
                    *x = self.pool_frame().ok_or_else(|| format!("{name}: no spare frame left"))?;
                }
            }
            let c = Call { nr: *nr, a };
            let r = self.exec(c).map_err(|f| format!("structure {name:?}: {f}"))?;
            if *nr == 1 && self.in_pool(a[0]) && r.is_ok() {
                self.tag_at(a[3]).map_err(|f| format!("structure {name:?}: {f}"))?;
            }
        }
        Ok(())
    }

    /// Write its tag into the frame just moved to `va`, through any
    /// writable address of it, and probe every address of it.
    fn tag_at(&mut self, va: u64) -> Result<(), Finding> {
        let Ok((Loc::At(n, i), _)) = self.m.walk(OWN, va, 0) else {
            return Ok(());
        };
        let E::Page(f, _) = self.m.nodes[n as usize].e[i] else {
            return Ok(());
        };
        self.m.snapshot(&mut self.after);
        let mine = |x: u32| x & 0x7fff_ffff == f as u32 + 1;
        if let Some(k) = (0..LEAVES).find(|k| mine(self.after[*k]) && self.after[*k] >> 31 != 0) {
            self.tag(f, leaf_va(k));
        }
        for k in 0..LEAVES {
            if mine(self.after[k]) {
                self.probe(k, 0)?;
            }
        }
        Ok(())
    }

    /// The structures that broke the kernel once, each in a slot of its
    /// own: a table linked at two addresses of our space (A and B), a page
    /// reached through both and written through B, then the page retyped
    /// (create, create_as), moved, or unmapped through A; and a table
    /// shared with a child, unmapped through the child's handle.
    fn structures(&mut self) -> u32 {
        let mut found = 0;
        let mut note = |fz: &mut Fuzzer, r: Result<(), Finding>| {
            if let Err(f) = r {
                fz.report(&f);
                found += 1;
            }
        };
        let r = self.structures_a();
        note(self, r);
        let r = self.structures_b();
        note(self, r);
        let r = self.structures_c();
        note(self, r);
        let r = self.structures_d();
        note(self, r);
        let r = self.structures_e();
        note(self, r);
        let r = self.structures_f();
        note(self, r);
        let r = self.structures_g();
        note(self, r);
        if found == 0 {
            println!("sfuzz: the directed alias structures behaved as documented");
        }
        found
    }

    fn structures_a(&mut self) -> Result<(), Finding> {
        // Slot 0: level-3, level-2 tables; T1 at A = (0,0,0), alias B = (0,0,1).
        let (a, b) = (va4(0, 0, 0, 0), va4(0, 0, 1, 0));
        self.script(
            "alias tables",
            &[
                (0, [va4(0, 0, 0, 0), 3, POOL, 0, 0]),
                (0, [va4(0, 0, 0, 0), 2, POOL, 0, 0]),
                (0, [a, 1, POOL, 0, 0]),
                (1, [a, 1, 0, b, RWXOG]),
                (1, [POOL, 0, 0, a, RWOG]),
                (1, [POOL, 0, 0, a + PAGE_SIZE, RWOG]),
                (1, [POOL, 0, 0, a + 2 * PAGE_SIZE, RWOG]),
                (0, [va4(0, 0, 3, 0), 1, POOL, 0, 0]),
                (1, [POOL, 0, 0, va4(0, 0, 3, 0), RWOG]),
            ],
        )?;
        Ok(())
    }

    // Each: touch through B (a write test fills the TLB), then act through A.
    fn structures_b(&mut self) -> Result<(), Finding> {
        let (a, b) = (va4(0, 0, 0, 0), va4(0, 0, 1, 0));
        self.touch(b)?;
        self.script("page retyped into a table through an alias", &[(0, [va4(0, 0, 2, 0), 1, a, 0, 0])])?;
        Ok(())
    }

    fn structures_c(&mut self) -> Result<(), Finding> {
        let (a, b) = (va4(0, 0, 0, 0), va4(0, 0, 1, 0));
        self.touch(b + PAGE_SIZE)?;
        self.script("page retyped into a root through an alias", &[(3, [va4(0, 0, 3, 1), a + PAGE_SIZE, 0, 0, 0])])?;
        Ok(())
    }

    fn structures_d(&mut self) -> Result<(), Finding> {
        let (a, b) = (va4(0, 0, 0, 0), va4(0, 0, 1, 0));
        self.touch(b + 2 * PAGE_SIZE)?;
        self.script("page moved away through an alias", &[(1, [a + 2 * PAGE_SIZE, 0, 0, va4(0, 0, 3, 2), RWOG])])?;
        Ok(())
    }

    fn structures_e(&mut self) -> Result<(), Finding> {
        let (a, b) = (va4(0, 0, 0, 0), va4(0, 0, 1, 0));
        self.script("shared page", &[(1, [va4(0, 0, 3, 0), 0, 0, a + 3 * PAGE_SIZE, 1])])?;
        self.touch(b + 3 * PAGE_SIZE)?;
        self.script("shared page unmapped through an alias", &[(2, [0, a + 3 * PAGE_SIZE, 0, 0, 0])])?;
        Ok(())
    }

    fn structures_f(&mut self) -> Result<(), Finding> {
        // Slot 1: a level-3 table of ours linked into a child's slot 1 with
        // OWN; a page shared into it; the child's handle unmaps it.
        let h = va4(0, 0, 3, 3);
        let p = va4(1, 0, 0, 0);
        self.script(
            "table shared with a child",
            &[
                (3, [h, POOL, 0, 0, 0]),
                (0, [va4(1, 0, 0, 0), 3, POOL, 0, 0]),
                (0, [va4(1, 0, 0, 0), 2, POOL, 0, 0]),
                (0, [va4(1, 0, 0, 0), 1, POOL, 0, 0]),
                (1, [va4(1, 0, 0, 0), 3, h, va4(1, 0, 0, 0), RWXOG]),
                (1, [va4(0, 0, 3, 0), 0, 0, p, 1]),
            ],
        )?;
        self.touch(p)?;
        self.script("unmap through the child's handle", &[(2, [h, p, 0, 0, 0])])?;
        Ok(())
    }

    fn structures_g(&mut self) -> Result<(), Finding> {
        // And the same through a link of a whole level-3 table twice in our
        // own space (slot 2 = alias of slot 1), retyping through slot 1.
        self.script(
            "level-3 alias",
            &[(1, [va4(1, 0, 0, 0), 3, 0, va4(2, 0, 0, 0), RWXOG]), (1, [POOL, 0, 0, va4(1, 0, 0, 3), RWOG])],
        )?;
        self.touch(va4(2, 0, 0, 3))?;
        self.script("retype under a level-3 alias", &[(0, [va4(1, 0, 1, 0), 1, va4(1, 0, 0, 3), 0, 0])])
    }

    fn in_pool(&self, va: u64) -> bool {
        (self.m.pool_va..self.m.pool_va + self.m.pool.len() as u64 * PAGE_SIZE).contains(&va)
    }

    /// Write-test `va` (it must be writable now): the TLB then holds a
    /// writable translation of it.
    fn touch(&mut self, va: u64) -> Result<(), Finding> {
        probe::write(va).map_err(|code| format!("touch of {va:#x} faulted ({code:#x})"))
    }
}

const POOL: u64 = u64::MAX;

pub fn run(calls: u64, seed: u64, structures: bool) -> u32 {
    let spares = exo_rt::args_word(1);
    let pool_va = exo_rt::args_word(2);
    let mut m = Model { nodes: Vec::new(), frames: Vec::new(), pool: Vec::new(), pool_va, seed };
    m.new_node(); // OWN
    m.new_node(); // PARENT
    for i in 0..spares {
        m.frames.push(Frame { tag: 0, lent: false, kind: FrameKind::Data });
        m.pool.push(Some(i as u16));
    }
    let mut fz = Fuzzer {
        m,
        rng: Rng(0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        st: Stats::default(),
        before: vec![0; LEAVES],
        after: vec![0; LEAVES],
        recent: [None; 8],
        step: 0,
        structural: 0,
        budget: calls,
    };
    println!(
        "sfuzz: seed {seed}, {calls} calls, {spares} spare frames, directed structures {}",
        if structures { "first" } else { "off" }
    );
    if structures {
        let found = fz.structures();
        if found > 0 {
            println!("sfuzz: {found} of the directed structures broke isolation");
            fz.summary();
            return 3;
        }
    }
    while fz.st.calls < fz.budget {
        let c = fz.gen();
        match fz.exec(c) {
            Ok(r) => {
                if c.nr == 1 && r.is_ok() && fz.in_pool(c.a[0]) {
                    if let Err(f) = fz.tag_at(c.a[3]) {
                        fz.report(&f);
                        fz.summary();
                        return 3;
                    }
                }
            }
            Err(f) => {
                fz.report(&f);
                fz.summary();
                return 3;
            }
        }
        if fz.st.calls.is_multiple_of(100_000) {
            println!("sfuzz: {} calls so far", fz.st.calls);
        }
    }
    fz.summary();
    0
}
