//! Spawn planning: where a child's handle and window go in init, which
//! pages the child gets where and with which rights (from the ELF load
//! plan and the options), and the words of its argument page.

use alloc::vec::Vec;
use exo_abi::{Rights, PAGE_SIZE};
use exo_loader::elf::LoadPlan;

/// The child's fixed addresses (`exo_rt::layout` on the target; tests
/// pass their own).
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub control: u64,
    pub parent_handle: u64,
    pub console: u64,
    pub args: u64,
    pub mailbox: u64,
    pub heap: u64,
    pub spare: u64,
}

/// What a page of the child is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A page of the program (a fresh frame filled from the ELF, moved).
    Program,
    /// A control page (moved): where the kernel enters the child, one per
    /// CPU it may run on (`Placement::va` says which: [`control_va`]).
    Control,
    /// The argument page: init keeps it and lends it read-only.
    Args,
    /// The console ring: init keeps it, the child may write.
    Console,
    /// The mailbox: init keeps it, the child may write.
    Mailbox,
    /// A SWITCH handle back to init.
    ParentHandle,
    /// A fresh zeroed heap frame (moved).
    Heap,
    /// A fresh spare frame (moved): the child's to give away (DMA, pager).
    Spare,
}

/// One page the child gets: at child address `va`, with `rights` (moved
/// pages also carry OWN and GRANT, added by the mover).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub va: u64,
    pub kind: Kind,
    pub rights: Rights,
}

/// CPUs a process can be given control pages for (the kernel's
/// `arch::MAX_CPUS`; `exo_rt::smp::MAX_CPUS`).
pub const MAX_CPUS: u64 = 8;

/// Where the child's control page for `cpu` goes: CPU 0's at the layout's,
/// every other CPU's where the kernel looks for it
/// (`exo_abi::smp_control_va`).
pub fn control_va(at: &Layout, cpu: u64) -> u64 {
    if cpu == 0 {
        at.control
    } else {
        exo_abi::smp_control_va(cpu)
    }
}

/// The CPUs of mask `cpus` a child gets a control page for: those below
/// [`MAX_CPUS`], in order. The kernel enters a space on a CPU only
/// through its page for that CPU, so this is the set of CPUs the child
/// can ever run on — pinning without kernel state.
pub fn child_cpus(cpus: u64) -> impl Iterator<Item = u64> {
    (0..MAX_CPUS).filter(move |c| cpus & (1 << c) != 0)
}

/// Every page a child gets, in the order init places them: the program's
/// pages, a control page per CPU of `cpus` (a bit mask), the argument
/// page, the console ring, the mailbox, the handle back to init,
/// `heap_pages` heap frames and `spare_pages` spare frames.
pub fn child_pages(plan: &LoadPlan, heap_pages: u64, spare_pages: u64, cpus: u64, at: &Layout) -> Vec<Placement> {
    let p = |va, kind, rights| Placement { va, kind, rights };
    let mut out: Vec<Placement> =
        plan.pages_to_map().map(|pg| p(pg.vaddr, Kind::Program, page_rights(pg.writable, pg.executable))).collect();
    out.extend(child_cpus(cpus).map(|c| p(control_va(at, c), Kind::Control, Rights::WRITE)));
    out.extend([
        p(at.args, Kind::Args, Rights::NONE),
        p(at.console, Kind::Console, Rights::WRITE),
        p(at.mailbox, Kind::Mailbox, Rights::WRITE),
        p(at.parent_handle, Kind::ParentHandle, Rights::SWITCH),
    ]);
    out.extend((0..heap_pages).map(|i| p(at.heap + i * PAGE_SIZE, Kind::Heap, Rights::WRITE)));
    out.extend((0..spare_pages).map(|i| p(at.spare + i * PAGE_SIZE, Kind::Spare, Rights::WRITE)));
    out
}

/// First PML4 slot of init used for child windows (slot k → child k).
pub const WINDOW_SLOT0: u64 = 64;

/// Init's addresses for process slot `slot`: (its SWITCH handle under
/// `handles_va`, its window — the child's address 0 seen from init).
pub fn slot_layout(handles_va: u64, slot: usize) -> (u64, u64) {
    (handles_va + slot as u64 * PAGE_SIZE, (WINDOW_SLOT0 + slot as u64) << 39)
}

/// The rights of a program page: W and X as its segment says, never both
/// from a validated plan (the loader refuses W+X segments).
pub fn page_rights(writable: bool, executable: bool) -> Rights {
    let mut rights = Rights::NONE;
    if writable {
        rights = rights | Rights::WRITE;
    }
    if executable {
        rights = rights | Rights::EXEC;
    }
    rights
}

/// The eight words of a child's argument page: heap bytes, spare-frame
/// count, the spare frames' address, then up to five caller's words
/// (more are dropped).
pub fn args_words(heap_pages: u64, spare_pages: u64, spare_va: u64, words: &[u64]) -> [u64; 8] {
    let mut out = [0u64; 8];
    out[0] = heap_pages * PAGE_SIZE;
    out[1] = spare_pages;
    out[2] = spare_va;
    for (i, w) in words.iter().take(5).enumerate() {
        out[3 + i] = *w;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use exo_loader::elf::Segment;

    const AT: Layout = Layout {
        control: 0x3000,
        parent_handle: 0x4000,
        console: 0x5000,
        args: 0x6000,
        mailbox: 0x20_0000_0000,
        heap: 0x4000_0000,
        spare: 0x8000_0000,
    };

    fn seg(vaddr: u64, memsz: u64, writable: bool, executable: bool) -> Segment {
        Segment { vaddr, memsz, file_offset: 0, filesz: memsz, writable, executable }
    }

    #[test]
    fn a_child_gets_its_program_fixed_pages_heap_and_spares_each_once() {
        // Text: 2 pages, R+X; data + BSS: 0x1800 bytes from mid-page, RW
        // (touching 2 pages).
        let text = seg(0x20_0000, 0x2000, false, true);
        let data = seg(0x20_2800, 0x1800, true, false);
        let plan = LoadPlan { entry: 0x20_0010, segments: vec![text, data], pages: 4 };
        let pages = child_pages(&plan, 3, 2, 1, &AT);
        let program: Vec<_> = pages.iter().filter(|p| p.kind == Kind::Program).map(|p| (p.va, p.rights)).collect();
        assert_eq!(
            program,
            [
                (0x20_0000, Rights::EXEC),
                (0x20_1000, Rights::EXEC),
                (0x20_2000, Rights::WRITE),
                (0x20_3000, Rights::WRITE),
            ]
        );
        let rights = |k: Kind| pages.iter().find(|p| p.kind == k).unwrap().rights;
        assert_eq!(rights(Kind::Args), Rights::NONE, "arguments are lent read-only");
        assert_eq!(rights(Kind::ParentHandle), Rights::SWITCH);
        assert_eq!(rights(Kind::Console), Rights::WRITE);
        let count = |k: Kind| pages.iter().filter(|p| p.kind == k).count();
        assert_eq!((count(Kind::Heap), count(Kind::Spare)), (3, 2));
        assert_eq!(pages.len(), 4 + 5 + 3 + 2);
        // No page is placed twice, and nothing is both writable and
        // executable.
        let mut vas: Vec<_> = pages.iter().map(|p| p.va).collect();
        vas.sort();
        vas.dedup();
        assert_eq!(vas.len(), pages.len());
        assert!(pages.iter().all(|p| !(p.rights.contains(Rights::WRITE) && p.rights.contains(Rights::EXEC))));
        assert!(pages.iter().all(|p| p.va % PAGE_SIZE == 0));
        // The order init places them in: the program first (the control
        // page needs the entry), the spares last.
        assert_eq!(pages[4].kind, Kind::Control);
        assert_eq!(pages.last().unwrap().va, AT.spare + PAGE_SIZE);
    }

    #[test]
    fn no_heap_no_spares_is_just_the_program_and_the_fixed_pages() {
        let plan = LoadPlan { entry: 0x20_0000, segments: vec![seg(0x20_0000, 1, false, true)], pages: 1 };
        let kinds: Vec<_> = child_pages(&plan, 0, 0, 1, &AT).iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [Kind::Program, Kind::Control, Kind::Args, Kind::Console, Kind::Mailbox, Kind::ParentHandle]);
    }

    #[test]
    fn a_child_gets_a_control_page_for_each_cpu_it_may_run_on_and_no_other() {
        let plan = LoadPlan { entry: 0x20_0000, segments: vec![seg(0x20_0000, 1, false, true)], pages: 1 };
        let controls = |cpus: u64| -> Vec<u64> {
            child_pages(&plan, 0, 0, cpus, &AT).iter().filter(|p| p.kind == Kind::Control).map(|p| p.va).collect()
        };
        assert_eq!(controls(1), [AT.control]);
        // Pinned to CPU 2: only CPU 2's page, where the kernel looks for it.
        assert_eq!(controls(1 << 2), [exo_abi::smp_control_va(2)]);
        assert_eq!(controls(0b1011), [AT.control, exo_abi::smp_control_va(1), exo_abi::smp_control_va(3)]);
        // No CPU: a child that can never run (and CPUs past MAX_CPUS are ignored).
        assert!(controls(0).is_empty());
        assert_eq!(controls(1 << 9 | 1 << 1), [exo_abi::smp_control_va(1)]);
        // No page of another kind lands on a control page.
        let pages = child_pages(&plan, 4, 4, 0xff, &AT);
        let mut vas: Vec<_> = pages.iter().map(|p| p.va).collect();
        vas.sort();
        vas.dedup();
        assert_eq!(vas.len(), pages.len());
    }

    #[test]
    fn slots_get_disjoint_handles_and_windows() {
        let h = 0x7000_0000;
        assert_eq!(slot_layout(h, 0), (h, 64 << 39));
        assert_eq!(slot_layout(h, 31), (h + 31 * PAGE_SIZE, 95 << 39));
        // A window is one PML4 slot: 512 GiB, never shared.
        let (_, w0) = slot_layout(h, 3);
        let (_, w1) = slot_layout(h, 4);
        assert_eq!(w1 - w0, 1 << 39);
    }

    #[test]
    fn program_pages_get_their_segment_rights() {
        assert_eq!(page_rights(false, false), Rights::NONE);
        assert_eq!(page_rights(true, false), Rights::WRITE);
        assert_eq!(page_rights(false, true), Rights::EXEC);
    }

    #[test]
    fn argument_words_carry_heap_spares_and_five_words() {
        let w = args_words(16, 3, 0x5000_0000, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(w, [16 * PAGE_SIZE, 3, 0x5000_0000, 1, 2, 3, 4, 5]);
        assert_eq!(args_words(0, 0, 9, &[]), [0, 0, 9, 0, 0, 0, 0, 0]);
    }
}
