//! The base runtime every userspace program links: entry and upcall
//! dispatch ([`entry`]), the five system calls ([`sys`]), console output
//! ([`console`]), a heap on owned memory ([`heap`]), exit and panic
//! reporting to the parent.
//!
//! This crate holds the userspace `unsafe` (the `syscall` instruction, the
//! context-restore trampoline, raw accesses to fixed pages); programs built
//! on it are `#![forbid(unsafe_code)]`.
#![no_std]
// The runtime only exists on the bare-metal target; on the host (for
// `cargo test --workspace`) the crate is empty.
#![cfg(exo_user)]

extern crate alloc;

pub mod blocking_fault;
pub mod blockq;
pub mod console;
pub mod control;
pub mod entry;
pub mod heap;
pub mod layout;
pub mod libc_mem;
pub mod mmio;
pub mod nvme;
pub mod probe;
pub mod region;
pub mod smp;
pub mod sys;
pub mod vector;
pub mod virtio;

pub use blocking_fault::{blocking_faults, set_blocking_fault_handler};
pub use entry::{
    faults_handled, last_wake, resume, set_fault_handler, set_upcall_handler, upcalls, wait_for_wake, yield_now,
};
pub use exo_abi as abi;

use core::sync::atomic::{AtomicBool, Ordering};
use layout::{msg, ARGS_VA, ARGS_WORDS_OFFSET, PARENT_HANDLE_VA, SCRATCH_VA};

static IS_ROOT: AtomicBool = AtomicBool::new(false);

/// Whether this is the root process (init): entered first by the kernel.
pub fn is_root() -> bool {
    IS_ROOT.load(Ordering::SeqCst)
}

pub(crate) fn set_root() {
    IS_ROOT.store(true, Ordering::SeqCst);
    console::use_serial();
}

/// Define the program's `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn exo_main() {
            let f: fn() = $main;
            f()
        }
    };
}

/// Power off the test machine through QEMU's isa-debug-exit device (root
/// process only: the port is in its I/O permission). QEMU exits with
/// status `(code << 1) | 1`.
pub fn debug_exit(code: u32) -> ! {
    // SAFETY: a port write the kernel permits only to the root process; it
    // stops the virtual machine and touches no memory.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") code, options(nomem, nostack));
    }
    loop {
        core::hint::spin_loop();
    }
}

/// End this process: tell the parent, and never run again.
pub fn exit(code: u32) -> ! {
    if is_root() {
        println!("init: exiting with code {code}");
        debug_exit(if code == 0 { 0x10 } else { 0x11 });
    }
    loop {
        let _ = sys::yield_to(PARENT_HANDLE_VA, msg::EXIT | code as u64);
    }
}

/// Print a message and end the process as a failure.
pub fn fatal(args: core::fmt::Arguments) -> ! {
    println!("{}: fatal: {}", if is_root() { "init" } else { "process" }, args);
    if is_root() {
        debug_exit(0x11);
    }
    loop {
        let _ = sys::yield_to(PARENT_HANDLE_VA, msg::PANIC);
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    fatal(format_args!("panic: {}", info))
}

/// The argument string the parent wrote (empty for the root process).
pub fn args() -> &'static str {
    if is_root() {
        return "";
    }
    // SAFETY: the parent maps the argument page read-only before starting
    // a child (rt convention); it is never written afterwards.
    let bytes = unsafe { core::slice::from_raw_parts(ARGS_VA as *const u8, ARGS_WORDS_OFFSET as usize) };
    let n = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    core::str::from_utf8(&bytes[..n]).unwrap_or("")
}

/// Word `i` of the argument page's word area (0 for the root process).
pub fn args_word(i: u64) -> u64 {
    if is_root() || i >= 256 {
        return 0;
    }
    // SAFETY: as for `args`.
    unsafe { core::ptr::read_volatile((ARGS_VA + ARGS_WORDS_OFFSET + 8 * i) as *const u64) }
}

/// Raw memory access for regions a program builds itself (page tables it
/// created, shared regions, pages mapped from others). Only addresses at or
/// above `SCRATCH_VA` are allowed, where the Rust program (code, stacks,
/// heap) never lives; an unmapped address raises a page-fault upcall like
/// any access.
pub mod mem {
    use super::SCRATCH_VA;

    fn check(va: u64) {
        assert!((SCRATCH_VA..exo_abi::USER_END).contains(&va) && va.is_multiple_of(8), "raw access to {va:#x} refused");
    }

    pub fn read(va: u64) -> u64 {
        check(va);
        // SAFETY: `check` keeps us out of Rust-owned memory; the access is
        // volatile and may fault, which the kernel turns into an upcall.
        unsafe { core::ptr::read_volatile(va as *const u64) }
    }

    pub fn write(va: u64, v: u64) {
        check(va);
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile(va as *mut u64, v) }
    }

    /// Zero the page at `va` (page-aligned).
    pub fn zero_page(va: u64) {
        check(va);
        assert!(va.is_multiple_of(exo_abi::PAGE_SIZE), "zero_page({va:#x}): not page-aligned");
        for off in (0..exo_abi::PAGE_SIZE).step_by(8) {
            // SAFETY: as for `read`.
            unsafe { core::ptr::write_volatile((va + off) as *mut u64, 0) }
        }
    }

    /// Copy `data` to `va` (byte-wise, volatile).
    pub fn write_bytes(va: u64, data: &[u8]) {
        check(va & !7);
        assert!(va + data.len() as u64 <= exo_abi::USER_END);
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as for `read`.
            unsafe { core::ptr::write_volatile((va + i as u64) as *mut u8, *b) }
        }
    }

    /// Touch any address, as hostile code would (isolation tests): the
    /// access goes through the hardware's checks alone. Only for addresses
    /// the program does not own (the kernel's, another process's): the
    /// expected outcome is a page-fault upcall.
    pub fn hostile_touch(va: u64, write: bool) {
        // SAFETY: the access is made in assembly, outside Rust's memory
        // model; for the addresses this is meant for (not mapped, or
        // supervisor-only) it cannot succeed and raises a fault upcall.
        unsafe {
            if write {
                core::arch::asm!("mov qword ptr [{}], 0xbad", in(reg) va, options(nostack));
            } else {
                core::arch::asm!("mov {0}, qword ptr [{0}]", inout(reg) va => _, options(nostack));
            }
        }
    }

    /// Jump to `va` with `rax` = 99 (an invalid system-call number), as
    /// hostile code would. For the isolation test of a `syscall` placed in
    /// the last bytes of the user half; never returns normally.
    pub fn hostile_jump(va: u64) -> ! {
        // SAFETY: control leaves Rust for code the caller placed at `va`;
        // whatever it does ends in a fault upcall or exit (it never returns
        // here, hence `noreturn`).
        unsafe { core::arch::asm!("mov eax, 99", "jmp rdx", in("rdx") va, options(noreturn)) }
    }

    pub fn read_byte(va: u64) -> u8 {
        check(va & !7);
        // SAFETY: as for `read`.
        unsafe { core::ptr::read_volatile(va as *const u8) }
    }
}

/// The kernel info page (root process only).
pub mod kinfo {
    pub fn word(i: usize) -> u64 {
        assert!(super::is_root() && i < 256);
        // SAFETY: the kernel maps the info page read-only into the root
        // process at KINFO_VA before entering it.
        unsafe { core::ptr::read_volatile((exo_abi::KINFO_VA + 8 * i as u64) as *const u64) }
    }

    pub fn cmdline() -> &'static str {
        assert!(super::is_root());
        let off = exo_abi::kinfo::CMDLINE_OFFSET as u64;
        // SAFETY: as for `word`; the command line is NUL-terminated within
        // CMDLINE_MAX bytes (the kernel writes at most CMDLINE_MAX - 1).
        let bytes =
            unsafe { core::slice::from_raw_parts((exo_abi::KINFO_VA + off) as *const u8, exo_abi::kinfo::CMDLINE_MAX) };
        let n = bytes.iter().position(|b| *b == 0).unwrap_or(0);
        core::str::from_utf8(&bytes[..n]).unwrap_or("")
    }
}

/// The boot image (root process only): mapped by the kernel at
/// `BOOT_IMAGE_VA`, starting at the module's offset within its first page.
pub fn boot_image() -> &'static [u8] {
    assert!(is_root());
    let phys = kinfo::word(exo_abi::kinfo::W_BOOT_IMAGE_PHYS);
    let len = kinfo::word(exo_abi::kinfo::W_BOOT_IMAGE_LEN);
    if len == 0 || len > (1 << 32) {
        return &[];
    }
    let va = exo_abi::BOOT_IMAGE_VA + (phys & 0xfff);
    // SAFETY: the kernel maps every page of the boot image, owned and
    // writable, at BOOT_IMAGE_VA before entering init; init never moves
    // those pages away while this slice is in use (it reads programs only).
    unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) }
}

/// Time and instruction counting for benchmarks.
pub mod time {
    /// The time-stamp counter (user-readable: the kernel does not set
    /// CR4.TSD). Under QEMU `-icount shift=0` it counts guest instructions.
    pub fn rdtsc() -> u64 {
        // SAFETY: `rdtsc` only reads a counter.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// Execute exactly `2 * n` instructions (`dec; jnz` per iteration), to
    /// calibrate what one TSC tick means.
    pub fn spin_instructions(n: u64) {
        if n == 0 {
            return;
        }
        // SAFETY: a register-only loop.
        unsafe {
            core::arch::asm!("2:", "dec {0}", "jnz 2b", inout(reg) n => _, options(nomem, nostack));
        }
    }
}

/// Word `i` of the device info page (root process only; see
/// `exo_abi::devinfo`).
pub fn devinfo(i: usize) -> u64 {
    assert!(is_root() && i < 512);
    // SAFETY: the kernel maps the device info page read-only into the root
    // process at DEVINFO_VA before entering it.
    unsafe { core::ptr::read_volatile((exo_abi::DEVINFO_VA + 8 * i as u64) as *const u64) }
}
