//! The bare-metal side of libfs's NVMe pager (`libfs::pager`): the frames
//! of its budget are spare frames init gave this process (args words 1–2,
//! at `SPARE_VA`), owned here and written through that view; a page of a
//! mapped file is one of them *shared* (`map` without OWN) at the file's
//! address, read-only or writable, and `unmap`ped again on eviction or
//! when write-back makes it clean. Faults in the mapping window go to the
//! pager through the runtime's blocking fault handler, because resolving
//! one may read the page through the block service (yielding to the
//! driver while the answer is due).
//!
//! The kernel's TLB rule: every `unmap` flushes the whole TLB; `map` only
//! adds. The pager's counts (`maps`, `unmaps`) are these system calls.

use alloc::format;
use alloc::string::String;
use exo_abi::{Error as SysError, Rights, PAGE_SIZE};
use exo_rt::layout::SCRATCH_VA;
use exo_rt::region::Region;
use exo_rt::{println, sys};
use libdb::BlockStorage;
use libfs::pager::{Mmu, MmuError, Pager};
use libfs::Fs;

use crate::blockdev::BlockqDevice;

pub type NvmeFs = Fs<BlockStorage<BlockqDevice>>;

/// Files are mapped in this window (one level-2 table's span).
pub const MAP_VA: u64 = SCRATCH_VA;
pub const MAP_SPAN: u64 = 1 << 30;

/// Everything the fault handler needs, behind one lock: the file system,
/// the pager and the frames. The program takes the lock for its own libfs
/// calls (never while touching a mapped page: the handler would find it
/// busy and refuse the fault by name).
pub struct Paged {
    pub fs: NvmeFs,
    pub pager: Pager,
    pub mmu: SpareMmu,
    /// System calls made while resolving faults (maps, unmaps, yields to
    /// the block driver).
    pub fault_syscalls: u64,
}

pub static PAGED: spin::Mutex<Option<Paged>> = spin::Mutex::new(None);

/// The pager's frames: the first `budget` spare frames, owned here; the
/// spare frames after them become page tables for the mapping window.
pub struct SpareMmu {
    frames: Region,
    next_table: u64,
    spares: u64,
}

impl SpareMmu {
    pub fn new(budget: usize) -> Result<SpareMmu, String> {
        let (spares, base) = (exo_rt::args_word(1), exo_rt::args_word(2));
        if (spares as usize) < budget + 1 || base != exo_rt::layout::SPARE_VA {
            return Err(format!("{spares} spare frames at {base:#x}: the pager needs {} at SPARE_VA", budget + 1));
        }
        let frames = Region::claim(base, budget as u64 * PAGE_SIZE).map_err(|e| format!("pager frames: {e}"))?;
        Ok(SpareMmu { frames, next_table: budget as u64, spares })
    }

    /// Page tables for `[va, va + len)` of the window, from spare frames.
    pub fn prepare(&mut self, va: u64, len: u64) -> Result<(), String> {
        if va < MAP_VA || va.saturating_add(len) > MAP_VA + MAP_SPAN {
            return Err(format!("{va:#x}+{len:#x} is outside the mapping window"));
        }
        self.table(MAP_VA, 2)?;
        let mut at = va & !((1 << 21) - 1);
        while at < va + len {
            self.table(at, 1)?;
            at += 1 << 21;
        }
        Ok(())
    }

    fn table(&mut self, va: u64, level: u64) -> Result<(), String> {
        if self.next_table >= self.spares {
            return Err(format!("no spare frame left for a level-{level} table at {va:#x}"));
        }
        let frame = exo_rt::layout::SPARE_VA + self.next_table * PAGE_SIZE;
        match sys::create(va, level, frame) {
            Ok(()) => {
                self.next_table += 1;
                Ok(())
            }
            Err(SysError::Occupied) => Ok(()),
            Err(e) => Err(format!("level-{level} table at {va:#x}: {}", e.name())),
        }
    }

    fn frame_va(&self, f: usize) -> u64 {
        self.frames.base() + f as u64 * PAGE_SIZE
    }
}

impl Mmu for SpareMmu {
    fn frame(&mut self, f: usize) -> &mut [u8] {
        let at = f * PAGE_SIZE as usize;
        &mut self.frames.as_mut_slice()[at..at + PAGE_SIZE as usize]
    }
    fn map(&mut self, f: usize, va: u64, writable: bool) -> Result<(), MmuError> {
        let rights = if writable { Rights::WRITE } else { Rights::NONE };
        sys::map(self.frame_va(f), 0, 0, va, rights).map_err(|e| MmuError { op: "map", va, why: e.name() })
    }
    fn unmap(&mut self, va: u64) -> Result<(), MmuError> {
        sys::unmap(0, va, 0).map_err(|e| MmuError { op: "unmap", va, why: e.name() })
    }
}

fn claims(addr: u64) -> bool {
    (MAP_VA..MAP_VA + MAP_SPAN).contains(&addr)
}

/// The blocking fault handler: the pager resolves it (bit 1 of the error
/// code: the access was a write).
fn on_fault(addr: u64, code: u64) -> bool {
    let Some(mut guard) = PAGED.try_lock() else {
        println!("pager: fault at {addr:#x} while the pager was busy (a mapped page touched inside a libfs call)");
        return false;
    };
    let Some(p) = guard.as_mut() else { return false };
    let calls = sys::calls();
    let r = p.pager.fault(&mut p.fs, &mut p.mmu, addr, code & 2 != 0);
    p.fault_syscalls += sys::calls() - calls;
    match r {
        Ok(resolved) => resolved,
        Err(e) => {
            println!("pager: fault at {addr:#x}: {e}");
            false
        }
    }
}

/// Install `paged` and the fault handler for the window.
pub fn install(paged: Paged) {
    *PAGED.lock() = Some(paged);
    exo_rt::set_blocking_fault_handler(claims, on_fault);
}

/// Run `f` on the installed pager state.
pub fn with<T>(f: impl FnOnce(&mut Paged) -> T) -> Option<T> {
    PAGED.lock().as_mut().map(f)
}
