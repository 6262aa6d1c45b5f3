//! The five system calls as safe functions. Each is one `syscall`
//! instruction; the kernel checks every argument, so no wrapper can do harm
//! by passing a bad value — it gets an [`Error`] back.

use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::{decode_result, Error, Rights, Syscall};

/// System calls this process has made (every `syscall` instruction goes
/// through [`raw_number`]), for benchmarks that count kernel crossings.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// System calls made so far by this process.
pub fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

#[inline(always)]
fn raw(nr: Syscall, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> Result<u64, Error> {
    raw_number(nr as u64, a0, a1, a2, a3, a4)
}

/// A system call by number (the fuzz test uses this for hostile numbers).
#[inline(always)]
pub fn raw_number(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> Result<u64, Error> {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let (rax, rdx): (u64, u64);
    // SAFETY: the kernel's system-call contract: it reads rax, rdi, rsi,
    // rdx, r10, r8, returns in rax/rdx and clobbers rcx and r11; it never
    // touches this process's memory except through page-table changes the
    // caller asked for.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => rax,
            in("rdi") a0,
            in("rsi") a1,
            inlateout("rdx") a2 => rdx,
            in("r10") a3,
            in("r8") a4,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    decode_result(rax, rdx)
}

/// Turn the owned frame at `frame_va` into a page table of `level` at `va`.
pub fn create(va: u64, level: u64, frame_va: u64) -> Result<(), Error> {
    raw(Syscall::Create, va, level, frame_va, 0, 0).map(|_| ())
}

/// Link what is at `src_va` (`level` 0 = page) into `dst_as` (0 = self) at
/// `dst_va` with `rights`.
pub fn map(src_va: u64, level: u64, dst_as: u64, dst_va: u64, rights: Rights) -> Result<(), Error> {
    raw(Syscall::Map, src_va, level, dst_as, dst_va, rights.bits()).map(|_| ())
}

/// Remove the entry at `va` (`level`) from `as_` (0 = self).
pub fn unmap(as_: u64, va: u64, level: u64) -> Result<(), Error> {
    raw(Syscall::Unmap, as_, va, level, 0, 0).map(|_| ())
}

/// Make a new address space from the owned frame at `frame_va`; its handle
/// goes to `handle_va`. Returns its id.
pub fn create_as(handle_va: u64, frame_va: u64) -> Result<u64, Error> {
    raw(Syscall::CreateAs, handle_va, frame_va, 0, 0, 0)
}

/// Switch to the space named by the handle at `handle_va`. Returns when
/// someone switches back and this program's runtime resumes it.
pub fn yield_to(handle_va: u64, arg: u64) -> Result<(), Error> {
    raw(Syscall::Yield, handle_va, arg, 0, 0, 0).map(|_| ())
}

/// Init only (anyone else gets `BadAddress`): "nothing to run on this
/// CPU", halt it until its next interrupt (`yield(IDLE_HALT_HANDLE_VA, 0)`,
/// docs/syscalls.md). A tick or a device interrupt that wakes it enters
/// init afresh (this call does not return then); `Ok(true)` is a halt that
/// an interrupt the kernel handles itself ended, `Ok(false)` no halt: an
/// interrupt is latched in this CPU's `pending` words, for init to take.
pub fn idle_halt() -> Result<bool, Error> {
    raw(Syscall::Yield, exo_abi::IDLE_HALT_HANDLE_VA, 0, 0, 0, 0).map(|r| r != exo_abi::IDLE_NOT_HALTED_PENDING)
}
