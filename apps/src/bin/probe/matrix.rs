//! `probe matrix`: every call against every kind of entry, table-driven.
//!
//! Each row of [`ROWS`] is a kind of entry the probe can hold at an
//! address S (a page it owns, one it lent, pages init shared in, a page
//! under a link without OWN, persistent memory, device registers, table
//! links at each level, an alias of a table, init's region link, handles
//! with and without OWN / GRANT / SWITCH, the parent handle, device
//! handles, an empty slot, a slot with no table above it). Each column of
//! [`COLS`] puts S in one argument position of one call, with every other
//! argument valid and harmless. The cell is the result `docs/syscalls.md`
//! documents. A fresh subject is built for every cell where it can be (the
//! init-given ones are reused: columns are ordered so that the calls that
//! consume a subject come last).
//!
//! After every cell that retyped, moved or unmapped a page, every address
//! that reached that page before (all aliases, touched with a write test
//! first so the TLB holds them) must fault. [`BAD_ARGS`] then checks the
//! subject-independent errors (levels, kernel and misaligned addresses,
//! undefined rights bits, call numbers). Init checks its canaries after.

use exo_abi::{Error, Rights, CHILD_PMEM_VA, DEVICE_HANDLES_VA, PAGE_SIZE, USER_END};
use exo_rt::layout::{msg, PARENT_HANDLE_VA, SHARED_VA};
use exo_rt::{println, probe, sys};

/// Where init puts what it gives the matrix probe (see init's adversarial.rs).
pub const SHARED_RW_VA: u64 = 0x60_0000_0000;
pub const SHARED_RO_VA: u64 = 0x60_0020_0000;
pub const DEVREG_VA: u64 = 0x40_0000_0000;

const MB2: u64 = 1 << 21;
const GB1: u64 = 1 << 30;
const GB512: u64 = 1 << 39;
/// The probe's own arena: a level-3 table at slot 1, one level-2 table in
/// it, level-1 tables made as needed.
const ARENA: u64 = GB512;

use Error::{
    BadAddress as BA, BadArgument as BARG, BadLevel as BL, BadSyscall as BS, BadTarget as BT, Lent, NoRight as NR,
    NoTable as NT, NotMapped as NM, Occupied as OCC, Owned as OWNED, RightsExceeded as RE, WrongKind as WK,
};

/// Expected result of a cell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum X {
    Ok,
    E(Error),
    /// Not run (the reason is in the row's comment).
    Skip,
}
use X::{Ok as OK, Skip as SKIP};
const fn e(err: Error) -> X {
    X::E(err)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Empty,
    NoTableAbove,
    PageOwned,
    PageLent,
    SharedRw,
    SharedRo,
    PageUnderRoLink,
    Pmem,
    DeviceRegs,
    Link1,
    Link2,
    Link3,
    Alias1,
    InitRegionLink,
    HandleFull,
    HandleNoOwn,
    HandleNoGrant,
    HandleNoSwitch,
    Parent,
    DeviceFull,
    DeviceGrantOnly,
}

/// The columns: S in one argument position, everything else valid.
/// F = a fresh owned page, E_L = a fresh empty slot at level L, L = S's
/// level (0 for pages, handles and slots), L' = max(L, 1), X = 0x1000.
const COLS: [&str; 11] = [
    "create(E1, 1, frame=S)",
    "create(va=S, L', F)",
    "create_as(E0, frame=S)",
    "create_as(handle=S, F)",
    "map(src=S, L, 0, E_L, NONE)",
    "map(F, 0, as=S, X, NONE)",
    "map(T_L, L, 0, dst=S, NONE)",
    "unmap(as=S, X, 0)",
    "yield(S)",
    "map(src=S, L, 0, E_L, OWN|WRITE|GRANT)",
    "unmap(0, va=S, L)",
];

struct Row {
    kind: Kind,
    cells: [X; 11],
}

const fn row(kind: Kind, cells: [X; 11]) -> Row {
    Row { kind, cells }
}

/// The matrix. For a level-0 subject, column 2 names the 2 MiB address
/// containing S, whose level-1 slot holds S's page table (`Occupied`).
#[rustfmt::skip]
const ROWS: &[Row] = &[
    //                          cr.frame    cr.va     as.frame    as.handle   map.src     map.as      map.dst   unmap.as    yield       map.move    unmap.va
    row(Kind::Empty,           [e(NM),     e(OCC),   e(NM),      OK,         e(NM),      e(NM),      OK,       e(NM),      e(NM),      e(NM),      e(NM)]),
    row(Kind::NoTableAbove,    [e(NT),     OK,       e(NT),      e(NT),      e(NT),      e(NT),      e(NT),    e(NT),      e(NT),      e(NT),      e(NT)]),
    row(Kind::PageOwned,       [OK,        e(OCC),   OK,         e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      OK,         e(OWNED)]),
    row(Kind::PageLent,        [e(Lent),   e(OCC),   e(Lent),    e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      OK,         e(OWNED)]),
    // Shared in by init: no OWN; unmapping a borrowed page is allowed.
    row(Kind::SharedRw,        [e(NR),     e(OCC),   e(NR),      e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      e(RE),      OK]),
    row(Kind::SharedRo,        [e(NR),     e(OCC),   e(NR),      e(OCC),     e(NR),      e(WK),      e(OCC),   e(WK),      e(WK),      e(RE),      OK]),
    // Init's page (entry OWN) under init's level-1 link given WRITE only.
    row(Kind::PageUnderRoLink, [e(NR),     e(OCC),   e(NR),      e(NR),      e(NR),      e(WK),      e(NR),    e(WK),      e(WK),      e(RE),      e(NR)]),
    // Owned and LENT, never a table (persistent memory, device registers).
    row(Kind::Pmem,            [e(Lent),   e(OCC),   e(Lent),    e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      OK,         e(OWNED)]),
    row(Kind::DeviceRegs,      [e(Lent),   e(OCC),   e(Lent),    e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      OK,         e(OWNED)]),
    // Own fresh tables: level-0 calls walk into them (empty below).
    // A "move" of a link is a copy (links own no frame).
    row(Kind::Link1,           [e(NM),     e(OCC),   e(NM),      OK,         OK,         e(NM),      e(OCC),   e(NM),      e(NM),      OK,         OK]),
    row(Kind::Link2,           [e(NT),     e(OCC),   e(NT),      e(NT),      OK,         e(NT),      e(OCC),   e(NT),      e(NT),      OK,         OK]),
    row(Kind::Link3,           [e(NT),     e(OCC),   e(NT),      e(NT),      OK,         e(NT),      e(OCC),   e(NT),      e(NT),      OK,         OK]),
    // S = B, the second link of a table linked at A and B, which holds an
    // owned page at its entry 0: retyping through B must cut off A too.
    row(Kind::Alias1,          [OK,        e(OCC),   OK,         e(OCC),     OK,         e(WK),      e(OCC),   e(WK),      e(WK),      OK,         OK]),
    // Init's region linked WRITE only: its pages are init's. The link sits
    // in the probe's own table, so the probe may remove it (last column).
    row(Kind::InitRegionLink,  [e(NR),     e(OCC),   e(NR),      e(NR),      e(NR),      e(WK),      e(OCC),   e(WK),      e(WK),      e(RE),      OK]),
    // Handles to a child with no tables and no control page.
    row(Kind::HandleFull,      [e(WK),     e(OCC),   e(WK),      e(OCC),     OK,         e(NT),      e(OCC),   e(NT),      e(BT),      e(RE),      OK]),
    row(Kind::HandleNoOwn,     [e(WK),     e(OCC),   e(WK),      e(OCC),     OK,         e(NR),      e(OCC),   e(NR),      e(BT),      e(RE),      OK]),
    row(Kind::HandleNoGrant,   [e(WK),     e(OCC),   e(WK),      e(OCC),     e(NR),      e(NT),      e(OCC),   e(NT),      e(BT),      e(RE),      OK]),
    row(Kind::HandleNoSwitch,  [e(WK),     e(OCC),   e(WK),      e(OCC),     OK,         e(NT),      e(OCC),   e(NT),      e(NR),      e(RE),      OK]),
    // SWITCH only. Unmapping it would cut the probe off from init: skipped.
    row(Kind::Parent,          [e(WK),     e(OCC),   e(WK),      e(OCC),     e(NR),      e(NR),      e(OCC),   e(NR),      OK,         e(RE),      SKIP]),
    // Device handles: OWN|GRANT maps page F for DMA at X and unmaps it.
    row(Kind::DeviceFull,      [e(WK),     e(OCC),   e(WK),      e(OCC),     OK,         OK,         e(OCC),   OK,         e(WK),      e(RE),      OK]),
    row(Kind::DeviceGrantOnly, [e(WK),     e(OCC),   e(WK),      e(OCC),     OK,         e(NR),      e(OCC),   e(NR),      e(WK),      e(RE),      OK]),
];

/// Subject-independent errors: (what, call, expected).
#[rustfmt::skip]
const BAD_ARGS: &[(&str, Bad, Error)] = &[
    ("create level 0",               Bad::Create { va: Arg::E1, level: 0, frame: Arg::F }, BL),
    ("create level 4",               Bad::Create { va: Arg::E1, level: 4, frame: Arg::F }, BL),
    ("create va in the kernel half", Bad::Create { va: Arg::Kernel, level: 1, frame: Arg::F }, BA),
    ("create va at USER_END",        Bad::Create { va: Arg::UserEnd, level: 1, frame: Arg::F }, BA),
    ("create va misaligned",         Bad::Create { va: Arg::E1Plus4k, level: 1, frame: Arg::F }, BA),
    ("create frame in the kernel",   Bad::Create { va: Arg::E1, level: 1, frame: Arg::Kernel }, BA),
    ("create frame misaligned",      Bad::Create { va: Arg::E1, level: 1, frame: Arg::FPlus8 }, BA),
    ("map level 4",                  Bad::Map { src: Arg::F, level: 4, as_: Arg::Zero, dst: Arg::E0, rights: 0 }, BL),
    ("map undefined rights bit",     Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::E0, rights: 1 << 5 }, BARG),
    ("map rights bit 63",            Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::E0, rights: 1 << 63 }, BARG),
    ("map src in the kernel",        Bad::Map { src: Arg::Kernel, level: 0, as_: Arg::Zero, dst: Arg::E0, rights: 0 }, BA),
    ("map src misaligned",           Bad::Map { src: Arg::FPlus8, level: 0, as_: Arg::Zero, dst: Arg::E0, rights: 0 }, BA),
    ("map level-1 src not 2 MiB",    Bad::Map { src: Arg::E1Plus4k, level: 1, as_: Arg::Zero, dst: Arg::E1, rights: 0 }, BA),
    ("map as in the kernel",         Bad::Map { src: Arg::F, level: 0, as_: Arg::Kernel, dst: Arg::E0, rights: 0 }, BA),
    ("map as misaligned",            Bad::Map { src: Arg::F, level: 0, as_: Arg::FPlus8, dst: Arg::E0, rights: 0 }, BA),
    ("map dst in the kernel",        Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::Kernel, rights: 0 }, BA),
    ("map dst at USER_END",          Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::UserEnd, rights: 0 }, BA),
    ("map dst misaligned",           Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::FPlus8, rights: 0 }, BA),
    ("map SWITCH on a page",         Bad::Map { src: Arg::F, level: 0, as_: Arg::Zero, dst: Arg::E0, rights: 16 }, RE),
    ("unmap level 4",                Bad::Unmap { as_: Arg::Zero, va: Arg::F, level: 4 }, BL),
    ("unmap as in the kernel",       Bad::Unmap { as_: Arg::Kernel, va: Arg::F, level: 0 }, BA),
    ("unmap va in the kernel",       Bad::Unmap { as_: Arg::Zero, va: Arg::Kernel, level: 0 }, BA),
    ("unmap va misaligned",          Bad::Unmap { as_: Arg::Zero, va: Arg::FPlus8, level: 0 }, BA),
    ("unmap level-1 va not 2 MiB",   Bad::Unmap { as_: Arg::Zero, va: Arg::E1Plus4k, level: 1 }, BA),
    ("create_as handle in kernel",   Bad::CreateAs { handle: Arg::Kernel, frame: Arg::F }, BA),
    ("create_as handle misaligned",  Bad::CreateAs { handle: Arg::FPlus8, frame: Arg::F }, BA),
    ("create_as frame in kernel",    Bad::CreateAs { handle: Arg::E0, frame: Arg::Kernel }, BA),
    ("yield to handle 0",            Bad::Yield { handle: Arg::Zero }, BA),
    ("yield to the kernel half",     Bad::Yield { handle: Arg::Kernel }, BA),
    ("yield misaligned",             Bad::Yield { handle: Arg::FPlus8 }, BA),
    ("call number 5",                Bad::Number(5), BS),
    ("call number 99",               Bad::Number(99), BS),
    ("call number u64::MAX",         Bad::Number(u64::MAX), BS),
];

#[derive(Clone, Copy)]
enum Arg {
    Zero,
    F,
    FPlus8,
    E0,
    E1,
    E1Plus4k,
    Kernel,
    UserEnd,
}

#[derive(Clone, Copy)]
enum Bad {
    Create { va: Arg, level: u64, frame: Arg },
    Map { src: Arg, level: u64, as_: Arg, dst: Arg, rights: u64 },
    Unmap { as_: Arg, va: Arg, level: u64 },
    CreateAs { handle: Arg, frame: Arg },
    Yield { handle: Arg },
    Number(u64),
}

/// A subject: where it is, its level, and every address that reaches the
/// page it is (empty for non-pages).
struct Subject {
    va: u64,
    level: u64,
    aliases: [u64; 2],
}

struct Matrix {
    /// Next fresh leaf of the arena, next fresh level-1 and level-2 slot,
    /// next fresh root slot.
    leaf: u64,
    cur_l1: u64,
    l1: u64,
    l2: u64,
    slot: u64,
    shared_rw: u64,
    shared_ro: u64,
    pmem: u64,
    pmem_pages: u64,
    devreg: u64,
    have_device: bool,
    problems: u32,
}

fn show(r: Result<(), Error>) -> &'static str {
    match r {
        Ok(()) => "Ok",
        Err(e) => e.name(),
    }
}

fn spare() -> Result<u64, Error> {
    crate::regions::spare().ok_or(Error::NotMapped)
}

impl Matrix {
    /// A fresh empty leaf (its level-1 table exists).
    fn e0(&mut self) -> Result<u64, Error> {
        if self.leaf.is_multiple_of(MB2) {
            let t = self.l1_slot();
            sys::create(t, 1, spare()?)?;
            self.leaf = t;
            self.cur_l1 = t;
        }
        let va = self.leaf;
        self.leaf += PAGE_SIZE;
        Ok(va)
    }

    /// A fresh empty level-1 slot (in the arena's level-2 table).
    fn l1_slot(&mut self) -> u64 {
        self.l1 += MB2;
        self.l1
    }

    fn e1(&mut self) -> u64 {
        self.l1_slot()
    }

    fn e2(&mut self) -> u64 {
        self.l2 += GB1;
        self.l2
    }

    fn e3(&mut self) -> u64 {
        self.slot += 1;
        self.slot * GB512
    }

    fn el(&mut self, level: u64) -> Result<u64, Error> {
        match level {
            0 => self.e0(),
            1 => Ok(self.e1()),
            2 => Ok(self.e2()),
            _ => Ok(self.e3()),
        }
    }

    /// A fresh owned page (WRITE|OWN|GRANT) at a fresh leaf.
    fn page(&mut self) -> Result<u64, Error> {
        let va = self.e0()?;
        sys::map(spare()?, 0, 0, va, Rights::WRITE | Rights::OWN | Rights::GRANT)?;
        Ok(va)
    }

    /// A fresh handle to a new child space with `rights`.
    fn handle(&mut self, rights: Rights) -> Result<u64, Error> {
        let h = self.e0()?;
        sys::create_as(h, spare()?)?;
        if rights == Rights::OWN | Rights::GRANT | Rights::SWITCH {
            return Ok(h);
        }
        let copy = self.e0()?;
        sys::map(h, 0, 0, copy, rights)?;
        Ok(copy)
    }

    fn build(&mut self, kind: Kind) -> Result<Subject, Error> {
        let page = |va| Subject { va, level: 0, aliases: [va, va] };
        let other = |va, level| Subject { va, level, aliases: [0, 0] };
        Ok(match kind {
            Kind::Empty => other(self.e0()?, 0),
            Kind::NoTableAbove => other(self.e1() + 3 * PAGE_SIZE, 0),
            Kind::PageOwned => page(self.page()?),
            Kind::PageLent => {
                let p = self.page()?;
                let elsewhere = self.e0()?;
                sys::map(p, 0, 0, elsewhere, Rights::NONE)?;
                page(p)
            }
            Kind::SharedRw => {
                self.shared_rw += 1;
                page(SHARED_RW_VA + (self.shared_rw - 1) * PAGE_SIZE)
            }
            Kind::SharedRo => {
                self.shared_ro += 1;
                page(SHARED_RO_VA + (self.shared_ro - 1) * PAGE_SIZE)
            }
            Kind::PageUnderRoLink => page(SHARED_VA + PAGE_SIZE),
            Kind::Pmem => {
                self.pmem += 1;
                page(CHILD_PMEM_VA + (self.pmem - 1) * PAGE_SIZE)
            }
            Kind::DeviceRegs => page(self.devreg),
            Kind::Link1 => {
                let va = self.e1();
                sys::create(va, 1, spare()?)?;
                other(va, 1)
            }
            Kind::Link2 => {
                let va = self.e2();
                sys::create(va, 2, spare()?)?;
                other(va, 2)
            }
            Kind::Link3 => {
                let va = self.e3();
                sys::create(va, 3, spare()?)?;
                other(va, 3)
            }
            Kind::Alias1 => {
                let (a, b) = (self.e1(), self.e1());
                sys::create(a, 1, spare()?)?;
                sys::map(a, 1, 0, b, Rights::WRITE | Rights::EXEC | Rights::OWN | Rights::GRANT)?;
                sys::map(spare()?, 0, 0, a, Rights::WRITE | Rights::OWN | Rights::GRANT)?;
                Subject { va: b, level: 1, aliases: [a, b] }
            }
            Kind::InitRegionLink => other(SHARED_VA, 1),
            Kind::HandleFull => other(self.handle(Rights::OWN | Rights::GRANT | Rights::SWITCH)?, 0),
            Kind::HandleNoOwn => other(self.handle(Rights::GRANT | Rights::SWITCH)?, 0),
            Kind::HandleNoGrant => other(self.handle(Rights::OWN | Rights::SWITCH)?, 0),
            Kind::HandleNoSwitch => other(self.handle(Rights::OWN | Rights::GRANT)?, 0),
            Kind::Parent => other(PARENT_HANDLE_VA, 0),
            Kind::DeviceFull => other(DEVICE_HANDLES_VA, 0),
            Kind::DeviceGrantOnly => other(DEVICE_HANDLES_VA + PAGE_SIZE, 0),
        })
    }

    /// Whether init gave what a row needs.
    fn available(&self, kind: Kind) -> bool {
        match kind {
            Kind::Pmem => self.pmem_pages >= COLS.len() as u64,
            Kind::DeviceRegs => self.devreg != 0,
            Kind::DeviceFull | Kind::DeviceGrantOnly => self.have_device,
            _ => true,
        }
    }

    /// Run column `col` with subject `s`; returns the result and the
    /// destination of a successful move (for a reused subject).
    fn cell(&mut self, col: usize, s: &Subject) -> Result<Result<(), Error>, Error> {
        let (v, l) = (s.va, s.level);
        let x = 0x1000;
        Ok(match col {
            0 => {
                let e1 = self.e1();
                sys::create(e1, 1, v)
            }
            1 => {
                let f = self.page()?;
                if l == 0 {
                    sys::create(v & !(MB2 - 1), 1, f)
                } else {
                    sys::create(v, l, f)
                }
            }
            2 => {
                let e0 = self.e0()?;
                sys::create_as(e0, v).map(|_| ())
            }
            3 => {
                let f = self.page()?;
                sys::create_as(v, f).map(|_| ())
            }
            4 => {
                let dst = self.el(l)?;
                sys::map(v, l, 0, dst, Rights::NONE)
            }
            5 => {
                let f = self.page()?;
                sys::map(f, 0, v, x, Rights::NONE)
            }
            6 => {
                // T_L: the arena's own link at that level (or a fresh page).
                let t = match l {
                    0 => self.page()?,
                    1 => {
                        self.e0()?; // makes sure a leaf table exists
                        self.cur_l1
                    }
                    2 => ARENA,
                    _ => ARENA,
                };
                sys::map(t, l, 0, v, Rights::NONE)
            }
            7 => sys::unmap(v, x, 0),
            8 => sys::yield_to(v, msg::YIELD),
            9 => {
                let dst = self.el(l)?;
                let r = sys::map(v, l, 0, dst, Rights::OWN | Rights::WRITE | Rights::GRANT);
                if r.is_ok() && v == self.devreg {
                    self.devreg = dst; // the one device-register page moved
                }
                r
            }
            _ => sys::unmap(0, v, l),
        })
    }

    fn run_rows(&mut self) -> (u32, u32, u32) {
        let (mut ok, mut bad, mut skipped) = (0, 0, 0);
        for r in ROWS {
            if !self.available(r.kind) {
                println!("matrix: {:?}: not given by init, row skipped", r.kind);
                skipped += COLS.len() as u32;
                continue;
            }
            for (col, want) in r.cells.iter().enumerate() {
                if *want == SKIP {
                    skipped += 1;
                    continue;
                }
                let s = match self.build(r.kind) {
                    Ok(s) => s,
                    Err(err) => {
                        println!("matrix: FAIL {:?}: building the subject: {}", r.kind, err.name());
                        bad += 1;
                        continue;
                    }
                };
                // Touch every address of the page: the TLB now holds them.
                // (Not device registers: reading them may have effects.)
                let touchable = r.kind != Kind::DeviceRegs;
                for a in s.aliases.iter().filter(|a| **a != 0 && touchable) {
                    let _ = probe::read(*a);
                    let _ = probe::write(*a);
                }
                let got = match self.cell(col, &s) {
                    Ok(r) => r,
                    Err(err) => {
                        println!("matrix: FAIL {:?} / {}: setting up: {}", r.kind, COLS[col], err.name());
                        bad += 1;
                        continue;
                    }
                };
                let expected = match want {
                    OK => Ok(()),
                    X::E(err) => Err(*err),
                    SKIP => unreachable!(),
                };
                let mut good = got == expected;
                if !good {
                    println!(
                        "matrix: FAIL {:?} / {}: got {}, documented {}",
                        r.kind,
                        COLS[col],
                        show(got),
                        show(expected)
                    );
                }
                // A page retyped, moved away or unmapped is reachable
                // through none of its old addresses.
                let cut: &[u64] = match (got.is_ok() && touchable && s.aliases[0] != 0, col, s.level) {
                    (false, ..) => &[],
                    // Retyped (a table, a root): every address of it.
                    (true, 0 | 2, _) => &s.aliases,
                    // A page moved or unmapped: every address of it.
                    (true, 9 | 10, 0) => &s.aliases,
                    // The alias link B removed: B no longer reaches the page.
                    (true, 10, _) => &s.aliases[1..],
                    _ => &[],
                };
                {
                    for a in cut {
                        if let Ok(v) = probe::read(*a) {
                            println!(
                                "matrix: FAIL {:?} / {}: {a:#x} still reads {v:#x} after the call",
                                r.kind, COLS[col]
                            );
                            good = false;
                        }
                    }
                }
                if good {
                    ok += 1;
                } else {
                    bad += 1;
                }
            }
        }
        (ok, bad, skipped)
    }

    fn arg(&mut self, a: Arg, f: u64) -> Result<u64, Error> {
        Ok(match a {
            Arg::Zero => 0,
            Arg::F => f,
            Arg::FPlus8 => f + 8,
            Arg::E0 => self.e0()?,
            Arg::E1 => self.e1(),
            Arg::E1Plus4k => self.e1() + PAGE_SIZE,
            Arg::Kernel => 0xffff_8000_0010_0000,
            Arg::UserEnd => USER_END,
        })
    }

    fn run_bad(&mut self) -> Result<(u32, u32), Error> {
        let (mut ok, mut bad) = (0, 0);
        for (what, call, want) in BAD_ARGS {
            let f = self.page()?;
            let got = match *call {
                Bad::Create { va, level, frame } => sys::create(self.arg(va, f)?, level, self.arg(frame, f)?),
                Bad::Map { src, level, as_, dst, rights } => {
                    let (s, a, d) = (self.arg(src, f)?, self.arg(as_, f)?, self.arg(dst, f)?);
                    sys::raw_number(1, s, level, a, d, rights).map(|_| ())
                }
                Bad::Unmap { as_, va, level } => sys::unmap(self.arg(as_, f)?, self.arg(va, f)?, level),
                Bad::CreateAs { handle, frame } => {
                    sys::create_as(self.arg(handle, f)?, self.arg(frame, f)?).map(|_| ())
                }
                Bad::Yield { handle } => sys::yield_to(self.arg(handle, f)?, msg::YIELD),
                Bad::Number(n) => sys::raw_number(n, 0, 0, 0, 0, 0).map(|_| ()),
            };
            if got == Err(*want) {
                ok += 1;
            } else {
                println!("matrix: FAIL {what}: got {}, documented {}", show(got), want.name());
                bad += 1;
            }
        }
        Ok((ok, bad))
    }
}

pub fn run() -> u32 {
    let mut m = Matrix {
        leaf: ARENA + 5 * MB2, // multiple of 2 MiB: the first e0 makes a table
        cur_l1: 0,
        l1: ARENA + 4 * MB2,
        l2: ARENA + GB1,
        slot: 1,
        shared_rw: 0,
        shared_ro: 0,
        pmem: 0,
        pmem_pages: exo_rt::args_word(3),
        devreg: if exo_rt::args_word(5) != 0 { DEVREG_VA } else { 0 },
        have_device: exo_rt::args_word(4) != 0,
        problems: 0,
    };
    // The arena: level 3 at slot 1, level 2 in it; level-1 tables on demand.
    for (level, va) in [(3, ARENA), (2, ARENA)] {
        if let Err(err) = spare().and_then(|f| sys::create(va, level, f)) {
            println!("matrix: building the arena: {}", err.name());
            return 2;
        }
    }
    // The level-1 slot after the arena's own link is used by e1(); keep
    // the arena's leaves in a table of their own.
    m.l1 = ARENA + 64 * MB2;
    let (ok, bad, skipped) = m.run_rows();
    println!(
        "matrix: {} rows x {} columns: {ok} cells as documented, {bad} not, {skipped} skipped",
        ROWS.len(),
        COLS.len()
    );
    let (bok, bbad) = match m.run_bad() {
        Ok(x) => x,
        Err(err) => {
            println!("matrix: bad-argument table: setting up: {}", err.name());
            (0, 1)
        }
    };
    println!("matrix: {bok} bad-argument calls as documented, {bbad} not");
    // Nothing beyond what was granted is reachable: the kernel half.
    for va in [0xffff_8000_0000_0000u64, 0xffff_8000_0010_0000, 0xffff_ffff_8000_0000, 0xffff_ffff_8010_0000] {
        if probe::read(va).is_ok() {
            println!("matrix: FAIL kernel address {va:#x} is readable");
            m.problems += 1;
        }
    }
    if bad + bbad + m.problems == 0 {
        0
    } else {
        1
    }
}
