//! Recoverable memory probes: read or write-test one word and learn whether
//! the access faulted, without dying and without a fault handler of the
//! program's own. For tests that must show an access is refused (the
//! fuzzer's oracle, the adversarial matrix).
//!
//! Each probe is one instruction at a known address (`rt_probe_read_insn`,
//! `rt_probe_write_insn`). When a page fault arrives with the saved `rip`
//! on one of them, [`fixup`] (called by the upcall dispatcher before any
//! program handler) rewrites the saved context so that it resumes at
//! `rt_probe_resume` with `rdx` = 1 and `rax` = the hardware error code —
//! Linux's exception tables, in userspace.
//!
//! The write probe is `lock or qword ptr [va], 0`: a write access for the
//! MMU (it needs a writable translation, and fills the TLB with one) that
//! leaves memory unchanged. So probing a page that should be read-only, or
//! gone, cannot itself corrupt anything if the kernel got it wrong (for
//! instance if the page has become a page table).

use exo_abi::control;

core::arch::global_asm!(
    r#"
    .section .text.rt_probe, "ax"
    .global rt_probe_read
rt_probe_read:
    xor edx, edx
    .global rt_probe_read_insn
rt_probe_read_insn:
    mov rax, qword ptr [rdi]
    .global rt_probe_resume
rt_probe_resume:
    ret

    .global rt_probe_write
rt_probe_write:
    xor edx, edx
    .global rt_probe_write_insn
rt_probe_write_insn:
    lock or qword ptr [rdi], 0
    xor eax, eax
    ret
"#
);

/// What a probe returns in `rax:rdx` (the SysV ABI returns a two-word
/// struct of integers in those registers).
#[repr(C)]
struct Raw {
    value: u64,
    faulted: u64,
}

extern "C" {
    fn rt_probe_read(va: u64) -> Raw;
    fn rt_probe_write(va: u64) -> Raw;
    fn rt_probe_read_insn();
    fn rt_probe_write_insn();
    fn rt_probe_resume();
}

/// Probes must stay away from the memory the Rust program lives in (code,
/// stacks, heap, control page: everything below `SCRATCH_VA`); any other
/// address is fine, the kernel half included (it must fault).
fn check(va: u64) {
    assert!(va >= crate::layout::SCRATCH_VA && va.is_multiple_of(8), "probe of {va:#x} refused");
}

/// Read the word at `va`: `Ok(value)`, or `Err(error code)` if it faulted.
pub fn read(va: u64) -> Result<u64, u64> {
    check(va);
    // SAFETY: `rt_probe_read` reads one word in assembly, outside Rust's
    // memory model, at an address no Rust object occupies (`check`); a
    // fault there is turned by `fixup` into a return with `faulted` = 1.
    let r = unsafe { rt_probe_read(va) };
    if r.faulted != 0 {
        Err(r.value)
    } else {
        Ok(r.value)
    }
}

/// Write-test the word at `va` without changing it: `Ok(())` if the
/// access was allowed, `Err(error code)` if it faulted.
pub fn write(va: u64) -> Result<(), u64> {
    check(va);
    // SAFETY: as for `read`; `lock or [va], 0` stores back the value it
    // read, so a successful probe changes no memory.
    let r = unsafe { rt_probe_write(va) };
    if r.faulted != 0 {
        Err(r.value)
    } else {
        Ok(())
    }
}

/// Probe faults taken so far.
pub fn faults() -> u64 {
    FAULTS.load(core::sync::atomic::Ordering::Relaxed)
}

static FAULTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Called by the dispatcher on a page fault: if the saved context is
/// stopped on a probe instruction, make it return "faulted" and say so.
pub(crate) fn fixup(code: u64) -> bool {
    let rip = crate::control::read(control::SAVED + 16 * 8);
    if rip != rt_probe_read_insn as *const () as u64 && rip != rt_probe_write_insn as *const () as u64 {
        return false;
    }
    FAULTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    // rax = the error code, rdx = 1; the new rip last, so that an
    // interruption before it only retries the probe.
    crate::control::write(control::SAVED, code);
    crate::control::write(control::SAVED + 3 * 8, 1);
    crate::control::write(control::SAVED + 16 * 8, rt_probe_resume as *const () as u64);
    true
}
