//! Persistent memory as owned pages in init.
//!
//! An NVDIMM appears only in the ACPI NFIT (not in the boot memory map),
//! above RAM and outside the kernel's physical window. At boot the kernel
//! takes the NFIT's bytes (located and checksummed by `firmware`), parses
//! them with `firmware::nfit`, keeps the persistent-memory ranges that
//! `firmware::pmem_ranges` accepts (page aligned, overlapping nothing the
//! kernel knows to be something else, within [`BUDGET`]), and maps them
//! into init back to back from `PMEM_VA`: owned, writable, write-back
//! cacheable (it is memory), and LENT, exactly like device registers are
//! given, so that they can never be retyped into page tables — which the
//! kernel could not even zero, since they lie outside its window — but can
//! be moved to another process with `map`. The kernel info page describes
//! each range. The kernel itself never reads or writes persistent memory.
//!
//! The NFIT is walked with `firmware::nfit::structures`, which allocates
//! nothing: the kernel has no heap.

use crate::boot::BootInfo;
use crate::mem::BootAlloc;
use crate::{devices, kinfo, mmio};
use exo_abi::{kinfo as ki, Rights, PMEM_VA};
use firmware::nfit::{RangeKind, Structure};
use firmware::pmem_ranges::{self, PmemRange, Reserved, Selection, MAX_PMEM_RANGES};
use firmware::Platform;
use spin::Mutex;

/// The most persistent memory the kernel maps into init. Its page tables
/// (one 4 KiB table per 2 MiB) come from boot frames: 1 GiB costs 2 MiB.
/// 2 GiB: `eval --recovery` opens a 1 GiB database on an NVDIMM of 1.125
/// GiB (the standard machine's is 128 MiB).
pub const BUDGET: u64 = 2 << 30;

const _: () = assert!(MAX_PMEM_RANGES == ki::MAX_PMEM_RANGES);

/// What boot decided: the accepted ranges (mapped into init by
/// [`grant_to_init`]).
static SELECTED: Mutex<Selection> = Mutex::new(Selection::EMPTY);

/// Room for every reserved span: the first MiB, 32 RAM ranges, the kernel
/// image, boot image and boot information, 8 kernel MMIO mappings, and 20
/// devices' configuration pages and 6 BARs each (184), with slack.
const MAX_SPANS: usize = 224;

/// Spans persistent memory must not overlap (RAM, the first MiB, the
/// kernel, the boot image and information, MMIO the kernel maps, device
/// registers).
struct Spans {
    list: [Reserved; MAX_SPANS],
    count: usize,
    overflow: bool,
}

impl Spans {
    fn add(&mut self, what: &'static str, start: u64, end: u64) {
        if end <= start {
            return;
        }
        match self.list.get_mut(self.count) {
            Some(slot) => {
                *slot = Reserved { what, start, end };
                self.count += 1;
            }
            None => self.overflow = true,
        }
    }
}

fn reserved_spans(bi: &BootInfo, spans: &mut Spans) {
    spans.add("the first MiB", 0, 0x10_0000);
    for r in &bi.ram[..bi.ram_count] {
        spans.add("RAM", r.start, r.end);
    }
    let (ks, ke) = crate::boot::kernel_image_phys();
    spans.add("the kernel image", ks, ke);
    if let Some(m) = bi.module {
        spans.add("the boot image", m.start, m.end);
    }
    spans.add("the boot information", bi.info.start, bi.info.end);
    mmio::mapped_spans(|start, end| spans.add("registers the kernel maps (LAPIC, ECAM, VT-d)", start, end));
    devices::register_spans(|start, end| spans.add("a device's registers", start, end));
}

/// Reads the NFIT and decides which persistent-memory ranges init gets.
/// Everything that goes wrong is logged and costs only persistent memory.
/// Run after `devices::init` (whose registers pmem must not overlap) and
/// before init's address space is built.
pub fn discover(platform: Option<&Platform<'static>>, bi: &BootInfo, alloc: &BootAlloc) {
    *SELECTED.lock() = select(platform, bi, alloc);
}

fn select(platform: Option<&Platform<'static>>, bi: &BootInfo, alloc: &BootAlloc) -> Selection {
    let Some(platform) = platform else {
        klog!("pmem: no ACPI tables: no persistent memory");
        return Selection::EMPTY;
    };
    let bytes = match platform.nfit {
        Ok(b) => b,
        Err(e) => {
            klog!("pmem: {e}: no persistent memory");
            return Selection::EMPTY;
        }
    };
    let nfit = match firmware::nfit::structures(bytes) {
        Ok(n) => n,
        Err(e) => {
            klog!("pmem: NFIT rejected: {e}; no persistent memory");
            return Selection::EMPTY;
        }
    };
    let mut spans = Spans { list: [Reserved { what: "", start: 0, end: 0 }; MAX_SPANS], count: 0, overflow: false };
    reserved_spans(bi, &mut spans);
    if spans.overflow {
        klog!("pmem: too many reserved spans to check against: no persistent memory");
        return Selection::EMPTY;
    }
    let persistent = || {
        nfit.clone().filter_map(|s| match s {
            Structure::Spa(r) if r.kind == RangeKind::PersistentMemory => Some(r),
            _ => None,
        })
    };
    for r in persistent() {
        let dimms = nfit.clone().filter(|s| matches!(s, Structure::Mapping(m) if m.spa_index == r.index)).count();
        klog!(
            "pmem: NFIT persistent-memory range {} at {:#x}, {} MiB, attributes {:#x}, {} NVDIMM mapping(s)",
            r.index,
            r.base,
            r.length >> 20,
            r.attributes,
            dimms
        );
    }
    let candidates = persistent().map(|r| (r.base, r.length));
    let mut selection = pmem_ranges::select(candidates, &spans.list[..spans.count], BUDGET, |i, base, length, why| {
        klog!("pmem: persistent-memory range #{i} ({base:#x}, {length:#x} bytes) refused: {why}");
    });
    // The tables come from boot frames: keep at least half of what is left
    // for init's RAM (a machine with little RAM and a large NVDIMM).
    let tables = tables_needed(selection.ranges());
    let free = alloc.free[..alloc.count].iter().map(|r| r.len() / 4096).sum::<u64>();
    if tables > free / 2 {
        klog!(
            "pmem: mapping {} MiB needs {tables} table frames, over half the {free} free: no persistent memory",
            selection.bytes() >> 20
        );
        let refused = selection.refused + selection.ranges().len();
        selection = Selection::EMPTY;
        selection.refused = refused;
    }
    selection
}

/// Table frames to map `ranges` back to back from `PMEM_VA` (level-1
/// tables per 2 MiB, level-2 per GiB, the level-3 one; generous).
fn tables_needed(ranges: &[PmemRange]) -> u64 {
    let total: u64 = ranges.iter().map(|r| r.length).sum();
    total.div_ceil(1 << 21) + total.div_ceil(1 << 30) + 2
}

/// Leaf bits for persistent memory in init: owned, writable, never
/// executable, write-back cached (no PWT/PCD: it is memory), and LENT so
/// that it can never become a page table.
fn pmem_leaf() -> u64 {
    exo_mm::present_bits(Rights::WRITE | Rights::OWN | Rights::GRANT) | exo_mm::LENT
}

/// Map the accepted ranges into init back to back from `PMEM_VA` and
/// describe them in the kernel info page.
pub fn grant_to_init<M: exo_mm::PhysMem, F: FnMut() -> Option<u64>>(
    m: &mut exo_mm::BootMapper<M, F>,
) -> Result<(), &'static str> {
    let selection = *SELECTED.lock();
    let fail = |_| "persistent memory: out of memory for tables";
    let mut va = PMEM_VA;
    for (i, r) in selection.ranges().iter().enumerate() {
        let mut off = 0;
        while off < r.length {
            m.map_leaf(va + off, r.base + off, pmem_leaf()).map_err(fail)?;
            off += 4096;
        }
        kinfo::set(ki::pmem_word(i, ki::PMEM_PHYS), r.base);
        kinfo::set(ki::pmem_word(i, ki::PMEM_BYTES), r.length);
        kinfo::set(ki::pmem_word(i, ki::PMEM_VA), va);
        klog!(
            "pmem: {:#x}..{:#x} ({} MiB) mapped into init at {va:#x}, write-back, LENT",
            r.base,
            r.end(),
            r.length >> 20
        );
        va += r.length;
    }
    kinfo::set(ki::W_PMEM_RANGES, selection.ranges().len() as u64);
    kinfo::set(ki::W_PMEM_REFUSED, selection.refused as u64);
    Ok(())
}
