//! Vector state (x87, SSE, AVX): the kernel itself is soft-float and never
//! touches these registers, so a user context's vector registers survive
//! any kernel entry untouched. Only two things need the kernel:
//!
//! - when it saves an interrupted context into the space's control page
//!   (`upcall::save`), it also saves the vector registers there, into the
//!   control page's vector save area, with `XSAVEOPT` (or `XSAVE`, or
//!   `FXSAVE64` on a CPU without XSAVE), written through the physical
//!   window like the rest of the context. The runtime restores them itself
//!   (`XRSTOR` in `exo_rt`'s resume), so the kernel never reads the area
//!   and a space that corrupts it only faults itself;
//! - when it switches address spaces (`upcall::switch_to`), it puts every
//!   vector register in its initial state (`XRSTOR` of an empty header, or
//!   `FXRSTOR64` of a clean image), so no space ever sees another's values.
//!
//! XCR0 is limited to x87|SSE|AVX (what fits the control page's area); a
//! CPU's AVX-512, AMX or PKRU state is left disabled.

use core::sync::atomic::{AtomicU64, Ordering};
use exo_abi::{control, VectorKind};

/// x87, SSE and AVX state components.
const XCR0_WANTED: u64 = 0b111;

static KIND: AtomicU64 = AtomicU64::new(VectorKind::None as u64);
static MASK: AtomicU64 = AtomicU64::new(0);
static USE_XSAVEOPT: AtomicU64 = AtomicU64::new(0);

/// The state every register is reset to on a switch: for XSAVE an empty
/// header (XSTATE_BV = 0: every component to its initial state) with the
/// default MXCSR, which `XRSTOR` loads regardless; for FXSAVE the same
/// bytes are a clean `FXRSTOR64` image once the x87 control word is set.
#[repr(C, align(64))]
struct CleanImage([u8; 576]);

static CLEAN: CleanImage = {
    let mut b = [0u8; 576];
    // FCW = 0x037f (x87 default), at offset 0.
    b[0] = 0x7f;
    b[1] = 0x03;
    // MXCSR = 0x1f80 (all SIMD exceptions masked), at offset 24.
    b[24] = 0x80;
    b[25] = 0x1f;
    CleanImage(b)
};

/// Turn on FXSR/SSE exceptions and, where the CPU has it, XSAVE with the
/// components the save area can hold. Called once per CPU at boot; with
/// `enable` false (`novector`) everything stays off.
pub fn init(enable: bool) {
    configure(enable, true)
}

/// Whether vector state is saved and cleared (not `novector`, and the CPU
/// has FXSR).
pub fn enabled() -> bool {
    KIND.load(Ordering::Relaxed) != VectorKind::None as u64
}

/// `init` without resetting the registers: a rebootless upgrade's new
/// kernel returns straight into the space that asked for it, whose vector
/// registers are still live (the kernel itself never uses them).
pub fn adopt(enable: bool) {
    configure(enable, false)
}

fn configure(enable: bool, reset: bool) {
    if !enable {
        klog!("vector state: off (novector): x87/SSE/AVX instructions fault; nothing saved or cleared");
        return;
    }
    let leaf1 = core::arch::x86_64::__cpuid(1);
    let has_fxsr = leaf1.edx & (1 << 24) != 0;
    let has_xsave = leaf1.ecx & (1 << 26) != 0;
    if !has_fxsr {
        klog!("vector state: no FXSR; x87/SSE state is not saved (programs must not use it)");
        return;
    }
    let (mut cr0, mut cr4): (u64, u64);
    // SAFETY: reading control registers has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    cr0 = (cr0 & !((1 << 2) | (1 << 3))) | (1 << 1); // EM off, TS off, MP on
    cr4 |= (1 << 9) | (1 << 10); // OSFXSR, OSXMMEXCPT
    if has_xsave {
        cr4 |= 1 << 18; // OSXSAVE
    }
    // SAFETY: setting the FPU/SSE enable bits the CPU reports; the kernel
    // is compiled soft-float, so its own code is unaffected.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack));
    }
    if !has_xsave {
        KIND.store(VectorKind::Fxsave as u64, Ordering::Relaxed);
        MASK.store(0b11, Ordering::Relaxed);
        klog!("vector state: FXSAVE (x87, SSE), 512-byte area");
        if reset {
            clear();
        }
        return;
    }
    let leaf_d = core::arch::x86_64::__cpuid_count(0xd, 0);
    let supported = (leaf_d.edx as u64) << 32 | leaf_d.eax as u64;
    let mask = supported & XCR0_WANTED;
    // SAFETY: XCR0 gets only components the CPU reports, x87 (bit 0,
    // always set) included; OSXSAVE is on.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nomem, nostack));
    }
    // EBX now reports the area size for the components in XCR0.
    let size = core::arch::x86_64::__cpuid_count(0xd, 0).ebx as u64;
    assert!(size <= control::VECTOR_AREA_MAX, "XSAVE area of {size} bytes does not fit the control page");
    let xsaveopt = core::arch::x86_64::__cpuid_count(0xd, 1).eax & 1 != 0;
    USE_XSAVEOPT.store(xsaveopt as u64, Ordering::Relaxed);
    KIND.store(VectorKind::Xsave as u64, Ordering::Relaxed);
    MASK.store(mask, Ordering::Relaxed);
    klog!(
        "vector state: {} with XCR0 {mask:#x} (x87, SSE{}), {size}-byte area",
        if xsaveopt { "XSAVEOPT" } else { "XSAVE" },
        if mask & 4 != 0 { ", AVX" } else { "" }
    );
    if reset {
        clear();
    }
}

/// Save the current vector registers into the control page `page` (its
/// area, through the window, checked once by the caller) and record how.
#[inline(always)]
pub fn save(page: crate::upcall::CtlPage) {
    let kind = KIND.load(Ordering::Relaxed);
    let mask = MASK.load(Ordering::Relaxed);
    // The usual case first (set only with `VectorKind::Xsave`): one test.
    if USE_XSAVEOPT.load(Ordering::Relaxed) != 0 {
        let va = page.va(control::VECTOR_AREA, control::VECTOR_AREA_MAX);
        // XSAVEOPT's modified-state optimisation never applies here: the
        // last XRSTOR was the runtime's, at CPL 3 and another address.
        // SAFETY: `va` is the window's mapping of the control page's
        // vector area (checked by `page`: RAM the kernel maps, a writable
        // frame of the space), 64-byte aligned, XCR0's image size (`init`).
        unsafe {
            core::arch::asm!("xsaveopt64 [{}]", in(reg) va, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
        };
    } else if kind == VectorKind::Fxsave as u64 {
        let va = page.va(control::VECTOR_AREA, control::VECTOR_AREA_MAX);
        // SAFETY: as above; at least 512 bytes long.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) va, options(nostack)) };
    } else if kind == VectorKind::Xsave as u64 {
        let va = page.va(control::VECTOR_AREA, control::VECTOR_AREA_MAX);
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("xsave64 [{}]", in(reg) va, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
        };
    }
    page.write(control::VECTOR_MASK, mask);
    page.write(control::VECTOR_KIND, kind);
}

/// Put every vector register in its initial state (on a switch of
/// address space: the next space must not see the last one's values).
pub fn clear() {
    let kind = KIND.load(Ordering::Relaxed);
    let mask = MASK.load(Ordering::Relaxed);
    let img = CLEAN.0.as_ptr();
    if kind == VectorKind::Fxsave as u64 {
        // SAFETY: `CLEAN` is a valid 64-byte-aligned FXRSTOR image (MXCSR
        // has no reserved bit set).
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) img, options(nostack, readonly)) };
    } else if kind == VectorKind::Xsave as u64 {
        // SAFETY: `CLEAN` is a valid standard-format XSAVE image: its
        // header (bytes 512..576) is zero, so every component in `mask`
        // is initialised; MXCSR is the default.
        unsafe {
            core::arch::asm!("xrstor64 [{}]", in(reg) img, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack, readonly))
        };
    }
}

/// On an application processor: the same control-register and XCR0
/// settings [`init`] made on the boot CPU (each CPU has its own), without
/// the log.
pub fn init_this_cpu() {
    adopt_this_cpu();
    clear();
}

/// [`init_this_cpu`] without resetting the registers: an AP a kernel
/// upgrade parked returns to the user context it interrupted, whose
/// vector registers are still live (the kernel never uses them).
pub fn adopt_this_cpu() {
    let kind = KIND.load(Ordering::Relaxed);
    if kind == VectorKind::None as u64 {
        return;
    }
    let (mut cr0, mut cr4): (u64, u64);
    // SAFETY: reading control registers has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    cr0 = (cr0 & !((1 << 2) | (1 << 3))) | (1 << 1);
    cr4 |= (1 << 9) | (1 << 10);
    if kind == VectorKind::Xsave as u64 {
        cr4 |= 1 << 18;
    }
    // SAFETY: the bits the boot CPU set after checking CPUID (every CPU of
    // the machine reports the same features).
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack));
    }
    if kind == VectorKind::Xsave as u64 {
        let mask = MASK.load(Ordering::Relaxed);
        // SAFETY: the components the boot CPU enabled, which this CPU
        // supports too; OSXSAVE is on.
        unsafe {
            core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nomem, nostack));
        }
    }
}
