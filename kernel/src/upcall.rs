//! Upcalls: how the kernel saves an interrupted context into the
//! interrupted address space's own control page, and how it enters an
//! address space at its upcall entry. The control page is found by walking
//! that space's page tables (it must be present, user and writable), and
//! written through the physical-memory window, so a missing or hostile
//! control page can only ever cost its owner its life, never the kernel's.

use crate::arch::{percpu, TrapFrame, USER_CS, USER_DS};
use crate::kinfo;
use crate::mem::KernelMem;
use crate::phys::{phys_read, Checked};

/// A control page, checked against the window once per use.
pub type CtlPage = Checked<PAGE_SIZE>;
use exo_abi::{control, kinfo as ki, Reason, PAGE_SIZE, USER_END};

/// Physical address of `root`'s control page for this CPU, if it is
/// usable (CPU 0's is at `CONTROL_VA`; see `exo_abi::smp_control_va`).
pub fn control_page(root: u64) -> Option<u64> {
    exo_mm::translate(&KernelMem, root, percpu().control_va, true)
}

pub fn masked(ctl: u64) -> bool {
    phys_read::<u64>(ctl + control::MASKED) != 0
}

/// Save the interrupted user context `f` into the control page, unless the
/// space is masked (its upcall handler is running and still needs what is
/// saved there). Returns whether it saved. The page is checked against
/// the window once, not at every word.
#[inline]
pub fn save(ctl: u64, f: &TrapFrame) -> bool {
    save_inlined(ctl, f)
}

/// [`save`] inlined into its caller (`yield`'s, where a call would cost
/// its own register saves).
#[inline(always)]
pub fn save_inlined(ctl: u64, f: &TrapFrame) -> bool {
    let page = CtlPage::new(ctl);
    if page.read(control::MASKED) != 0 {
        return false;
    }
    // Register by register (an array first would be copied through the
    // stack): the order of `exo_abi::ControlPage::saved`.
    let saved = |i: u64, r: u64| page.write(control::SAVED + 8 * i, r);
    saved(0, f.rax);
    saved(1, f.rbx);
    saved(2, f.rcx);
    saved(3, f.rdx);
    saved(4, f.rsi);
    saved(5, f.rdi);
    saved(6, f.rbp);
    saved(7, f.rsp);
    saved(8, f.r8);
    saved(9, f.r9);
    saved(10, f.r10);
    saved(11, f.r11);
    saved(12, f.r12);
    saved(13, f.r13);
    saved(14, f.r14);
    saved(15, f.r15);
    saved(16, f.rip);
    saved(17, f.rflags);
    crate::vector::save(page);
    page.write(control::SAVED_VALID, 1);
    true
}

/// Where an address space is entered: its control page and the upcall
/// entry point and stack it names.
#[derive(Clone, Copy)]
pub struct EntryPoint {
    ctl: CtlPage,
    rip: u64,
    rsp: u64,
}

/// Check that `root` can be entered: a control page with a user entry
/// point and stack.
pub fn entry_point(root: u64) -> Option<EntryPoint> {
    entry_point_at(control_page(root)?)
}

/// [`entry_point`] for a control page already found (at `ctl`).
#[inline]
pub fn entry_point_at(ctl: u64) -> Option<EntryPoint> {
    let page = CtlPage::new(ctl);
    let rip = page.read(control::ENTRY);
    let rsp = page.read(control::STACK);
    if rip >= USER_END || rsp >= USER_END {
        return None;
    }
    Some(EntryPoint { ctl: page, rip, rsp })
}

/// Rewrite `f` so that returning from the trap enters `root` at its upcall
/// entry with `reason` and arguments, switching address spaces if needed.
/// Fails (changing nothing) if `root` has no usable control page.
pub fn enter(f: &mut TrapFrame, root: u64, reason: Reason, a: u64, b: u64, c: u64) -> Result<(), ()> {
    let e = entry_point(root).ok_or(())?;
    enter_at(f, root, e, reason, a, b, c);
    Ok(())
}

/// `enter` with an entry point the caller already looked up (and nothing
/// has run in between to change it).
pub fn enter_at(f: &mut TrapFrame, root: u64, e: EntryPoint, reason: Reason, a: u64, b: u64, c: u64) {
    e.ctl.write(control::MASKED, 1);
    switch_to(root);
    *f = TrapFrame {
        rip: e.rip,
        cs: USER_CS,
        rflags: 0x202,
        rsp: e.rsp,
        ss: USER_DS,
        rdi: reason as u64,
        rsi: a,
        rdx: b,
        rcx: c,
        r8: percpu().index,
        ..TrapFrame::default()
    };
    kinfo::add(ki::W_UPCALLS, 1);
}

/// [`enter_at`] for a return through `upcall_return` (the SYSCALL
/// path's exit for a fresh entry): writes only what that exit reads — the
/// return frame and the five argument registers — since it zeroes every
/// other register itself (so the next space still sees nothing of the
/// last one's). Any other exit must use `enter_at`, or clear the rest
/// with [`TrapFrame::clear_other_registers`].
#[inline(always)]
pub fn enter_at_fresh(f: &mut TrapFrame, root: u64, e: EntryPoint, reason: Reason, a: u64, b: u64, c: u64) {
    e.ctl.write(control::MASKED, 1);
    switch_to_inlined(root);
    f.rip = e.rip;
    f.cs = USER_CS;
    f.rflags = 0x202;
    f.rsp = e.rsp;
    f.ss = USER_DS;
    f.rdi = reason as u64;
    f.rsi = a;
    f.rdx = b;
    f.rcx = c;
    f.r8 = percpu().index;
    kinfo::add(ki::W_UPCALLS, 1);
}

/// Make `root` the running address space.
pub fn switch_to(root: u64) {
    switch_to_inlined(root)
}

/// [`switch_to`] inlined into its caller (`yield`'s).
#[inline(always)]
fn switch_to_inlined(root: u64) {
    let pc = percpu();
    if pc.current != root {
        // SAFETY: `root` is a root table built by the kernel (boot or
        // create_as) whose kernel half is the kernel's own, so the kernel
        // stays mapped across the switch.
        unsafe {
            core::arch::asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags));
        }
        pc.current = root;
        // No space sees another's vector registers (the one switched away
        // from had them saved, if it wanted them, by `save`).
        crate::vector::clear();
    }
    crate::arch::set_io_permission(root == pc.init);
}
