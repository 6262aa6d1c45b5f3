//! Rebootless kernel upgrade: replace the running kernel with another
//! build and return to the space that asked, without a reboot, without a
//! sixth system call, and without rebuilding anything from scratch.
//!
//! Authority: at boot the kernel makes an empty *upgrade space* and gives
//! init a handle to it (OWN and SWITCH, no GRANT, so it cannot be passed
//! on). Init links the new build's upgrade image (`exo_upgrade::image`)
//! into that space and `yield`s to the handle; [`request`] takes that
//! yield instead of entering the space. The image is checked in full
//! (format, checksum, stamp and handover version, slot, entry) before the
//! machine is touched; a bad one is refused with a named reason and the
//! caller's `yield` returns `BadTarget`.
//!
//! The switch: [`quiesce`] (the one place that stops other activity),
//! copy the image into the kernel slot the running kernel does not occupy
//! (`exo_upgrade::slots`: builds alternate between two slots, so the copy
//! never overwrites the code doing it), write the handover record
//! (`exo_upgrade::handover`) into this kernel's own memory, and jump to the
//! new build's upgrade entry. The new kernel ([`upgrade_main`]) loads its
//! own descriptor tables and per-CPU pointer, adopts the page tables (the
//! running CR3 and its kernel half), the kernel info page, the LAPIC and its
//! running timer, the I/O-MMU (tables, queue, remapping: read back from the
//! unit) and the device list, and returns into the caller's context as its
//! `yield` returning Ok. No device is reset; no space is restarted.

use crate::arch::{percpu, TrapFrame};
use crate::boot::BootInfo;
use crate::mem::{BootAlloc, KernelMem};
use crate::phys::{phys_read, phys_write, MemRange, PHYS_OFFSET};
use crate::{apic, fatal, kinfo};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use exo_abi::{kinfo as ki, Error, UPGRADE_IMAGE_VA};
use exo_upgrade::handover::{self, Handover, FRAME_WORDS, WORDS};
use exo_upgrade::image::{self, Expect, Plan, Source};
use exo_upgrade::{slots, Refusal};

/// This build's name (`EXO_KERNEL_BUILD` at build time), shown in the
/// kernel info page.
pub const BUILD: &str = match option_env!("EXO_KERNEL_BUILD") {
    Some(b) => b,
    None => "A",
};
const BUILD_BYTES: [u8; 16] = image::build_bytes(BUILD);

const fn build_word(half: usize) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < 8 {
        w |= (BUILD_BYTES[half * 8 + i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// The upgrade space's root (0: none was made).
static SPACE: AtomicU64 = AtomicU64::new(0);
/// The kernel slots reserved at boot, `[start, end)`.
static SLOTS_START: AtomicU64 = AtomicU64::new(0);
static SLOTS_END: AtomicU64 = AtomicU64::new(0);
/// Upgrades before this kernel (0 for the kernel the loader started).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The handover record, in this kernel's own slot (which the new kernel
/// does not overwrite).
static mut HANDOVER: [u64; WORDS] = [0; WORDS];

// The stamp (`exo_upgrade::image::Stamp`) and the 64-bit upgrade entry: a
// new kernel starts on its own stack with the handover record's physical
// address in rdi, interrupts off, on the old kernel's page tables.
core::arch::global_asm!(
    ".section .rodata.exo_upgrade_stamp, \"a\"",
    ".balign 8",
    ".global exo_upgrade_stamp",
    "exo_upgrade_stamp:",
    ".quad {magic}",
    ".quad {version}",
    ".quad upgrade_entry64",
    ".quad __kernel_phys_start",
    ".quad {b0}",
    ".quad {b1}",
    ".quad upgrade_entry64 + {check}",
    ".section .text.upgrade_entry, \"ax\"",
    ".global upgrade_entry64",
    "upgrade_entry64:",
    "cli",
    "lea rsp, [rip + kernel_stack_top]",
    "call {main}",
    "ud2",
    magic = const u64::from_le_bytes(image::STAMP_MAGIC),
    version = const handover::VERSION,
    b0 = const build_word(0),
    b1 = const build_word(1),
    check = const image::STAMP_CHECK,
    main = sym upgrade_main,
);

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects (CR4.TSD is never set).
    unsafe { core::arch::x86_64::_rdtsc() }
}

fn running_slot() -> u64 {
    let (s, e) = crate::boot::kernel_image_phys();
    slots::slot_of(s, e).unwrap_or(0)
}

/// Boot: the physical range to keep out of free RAM for kernels — both
/// slots when they are RAM and nothing the loader placed lies in them,
/// otherwise only this kernel's image (and upgrades are refused with
/// `NoSpareSlot`).
pub fn reserve(bi: &BootInfo) -> MemRange {
    let (ks, ke) = crate::boot::kernel_image_phys();
    let own = MemRange { start: ks & !0xfff, end: (ke + 0xfff) & !0xfff };
    let (s, e) = slots::all();
    let all = MemRange { start: s, end: e };
    let is_ram = bi.ram[..bi.ram_count].iter().any(|r| r.start <= s && e <= r.end);
    // The boot image is init's (its pages must never be overwritten). The
    // boot information may lie in the spare slot (GRUB puts it right after
    // the kernel): it is parsed into the kernel's own copy at boot, and the
    // RSDP it may hold is read only by ACPI discovery at boot, long before
    // any upgrade can overwrite it.
    let module = bi.module.filter(|m| m.overlaps(&all));
    let within = own.start >= s && own.end <= e;
    let r = if is_ram && module.is_none() && within {
        all
    } else {
        let why = match (is_ram, module) {
            (false, _) => "not all RAM",
            (_, Some(_)) => "the boot image lies in them",
            _ => "the kernel is not in slot 0",
        };
        klog!("upgrade: kernel slots {s:#x}..{e:#x}: {why}: no rebootless upgrade this boot");
        own
    };
    SLOTS_START.store(r.start, Relaxed);
    SLOTS_END.store(r.end, Relaxed);
    r
}

/// Boot: move the kernel image mapping's tables (PML4 slot 511: the PDPT
/// and page directory the entry code built inside the kernel image) into
/// boot frames, so that a later kernel loaded over this image's slot does
/// not overwrite tables every address space links.
pub fn relocate_kernel_map(alloc: &mut BootAlloc) {
    let pml4 = crate::boot::boot_pml4_phys();
    let link = phys_read::<u64>(pml4 + 511 * 8);
    let old_pdpt = link & exo_mm::ADDR_MASK;
    let (Some(pdpt), Some(pd)) = (alloc.alloc(), alloc.alloc()) else {
        fatal(format_args!("no memory for the kernel mapping's tables"));
    };
    for i in 0..512u64 {
        phys_write::<u64>(pdpt + i * 8, phys_read::<u64>(old_pdpt + i * 8));
    }
    let pd_link = phys_read::<u64>(old_pdpt + 510 * 8);
    let old_pd = pd_link & exo_mm::ADDR_MASK;
    for i in 0..512u64 {
        phys_write::<u64>(pd + i * 8, phys_read::<u64>(old_pd + i * 8));
    }
    phys_write::<u64>(pdpt + 510 * 8, pd | (pd_link & !exo_mm::ADDR_MASK));
    phys_write::<u64>(pml4 + 511 * 8, pdpt | (link & !exo_mm::ADDR_MASK));
    x86_64::instructions::tlb::flush_all();
}

/// Boot: make the upgrade space (a root with the kernel half and nothing
/// else) from a boot frame; init gets its handle (`initas`).
pub fn make_space(alloc: &mut BootAlloc, half: &[u64; 256]) {
    let Some(root) = alloc.alloc() else {
        return klog!("upgrade: no boot frame for the upgrade space: no rebootless upgrade this boot");
    };
    for (i, e) in half.iter().enumerate() {
        phys_write::<u64>(root + (256 + i as u64) * 8, *e);
    }
    SPACE.store(root, Relaxed);
}

/// The upgrade space's root, if one was made.
pub fn space() -> Option<u64> {
    Some(SPACE.load(Relaxed)).filter(|r| *r != 0)
}

/// Boot: name this build in the kernel info page.
pub fn report_build() {
    kinfo::set(ki::W_UPGRADE_BUILD, build_word(0));
    kinfo::set(ki::W_UPGRADE_BUILD + 1, build_word(1));
    kinfo::set(ki::W_UPGRADE_SLOT, running_slot());
}

/// Whether a `yield` to `target` is an upgrade request.
pub fn is_upgrade_space(target: u64) -> bool {
    target != 0 && target == SPACE.load(Relaxed)
}

/// The image as init placed it in the upgrade space: `first` is its first
/// byte's address there, `len` the bytes mapped from it on.
struct SpaceImage {
    root: u64,
    first: u64,
    len: u64,
}

impl Source for SpaceImage {
    fn len(&self) -> u64 {
        self.len
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Refusal> {
        let end = offset.checked_add(out.len() as u64).ok_or(Refusal::Truncated)?;
        if end > self.len {
            return Err(Refusal::Truncated);
        }
        let mut done = 0usize;
        while done < out.len() {
            let va = self.first + offset + done as u64;
            // Present and RAM the window maps, never lent (exo_mm).
            let pa = exo_mm::translate(&KernelMem, self.root, va, false).ok_or(Refusal::NotMapped)?;
            let n = ((0x1000 - (va & 0xfff)) as usize).min(out.len() - done);
            // SAFETY: `translate` checked that the frame is RAM inside the
            // physical window; `n` bytes stay inside that frame.
            unsafe { core::ptr::copy_nonoverlapping((PHYS_OFFSET + pa) as *const u8, out[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }
}

/// `yield` to the upgrade space (`arg` = the image's byte offset from
/// `UPGRADE_IMAGE_VA` in bits 0..39, the pages mapped for it in bits
/// 40..63). Returns only if the image is refused (`f` then returns
/// `BadTarget`); otherwise the new kernel returns to the caller.
pub fn request(f: &mut TrapFrame, arg: u64) {
    let t_request = rdtsc();
    kinfo::set(ki::W_UPGRADE_TSC_REQUEST, t_request);
    let offset = arg & ((1 << 39) - 1);
    let pages = arg >> 40;
    let src = SpaceImage {
        root: SPACE.load(Relaxed),
        first: UPGRADE_IMAGE_VA + offset,
        len: (pages * 4096).saturating_sub(offset & 0xfff).min((1 << 39) - offset),
    };
    match check(&src).and_then(|plan| quiesce().map(|parked| (plan, parked))) {
        Ok((plan, parked)) => switch(f, &src, &plan, &parked, t_request),
        Err(r) => {
            kinfo::add(ki::W_UPGRADE_REFUSED, 1);
            kinfo::set(ki::W_UPGRADE_LAST_RESULT, r as u64);
            klog!("upgrade refused: {r}; build {BUILD} keeps running");
            f.rax = Error::BadTarget as u64;
            f.rdx = 0;
        }
    }
}

fn check(src: &SpaceImage) -> Result<Plan, Refusal> {
    let (s, e) = (SLOTS_START.load(Relaxed), SLOTS_END.load(Relaxed));
    if (s, e) != slots::all() {
        return Err(Refusal::NoSpareSlot);
    }
    let plan = image::check(src, &Expect { handover_version: handover::VERSION, running_slot: running_slot() })?;
    let (a, b) = slots::range(plan.slot);
    if !crate::phys::window_contains(a, b - a) {
        return Err(Refusal::NoSpareSlot);
    }
    Ok(plan)
}

/// How long the other CPUs get to park (a CPU of a TCG guest can wait
/// for its host thread for a while).
const PARK_BOUND_US: u64 = 1_000_000;

/// Stop everything but this CPU's path through the switch, after the image
/// was found good. This CPU runs with interrupts off (every entry is an
/// interrupt gate or SYSCALL with IF masked) and holds the kernel lock;
/// every other online CPU is parked outside both kernel slots
/// (`crate::park`), its interrupted user context saved where the new
/// kernel finds it. No other step of the switch assumes one CPU.
fn quiesce() -> Result<crate::park::Parked, Refusal> {
    if x86_64::instructions::interrupts::are_enabled() {
        fatal(format_args!("upgrade: interrupts on in the kernel; cannot quiesce"));
    }
    match crate::park::park_others(PARK_BOUND_US) {
        Ok(p) => {
            kinfo::set(ki::W_UPSMP_PARKED, p.count as u64);
            kinfo::set(ki::W_UPSMP_PARK_TSC, p.ticks);
            Ok(p)
        }
        Err(cpu) => {
            klog!("upgrade: CPU {cpu} did not park within {PARK_BOUND_US} us; the others go back to build {BUILD}");
            Err(Refusal::CpuDidNotPark)
        }
    }
}

fn switch(f: &mut TrapFrame, src: &SpaceImage, plan: &Plan, parked: &crate::park::Parked, t_request: u64) -> ! {
    let mut buf = [0u8; 4096];
    for s in plan.segments() {
        let mut done = 0;
        while done < s.filesz {
            let n = (s.filesz - done).min(buf.len() as u64) as usize;
            if let Err(r) = src.read(s.offset + done, &mut buf[..n]) {
                // Checked just before; the image cannot change (this CPU
                // is the only one running), so this is a kernel bug.
                fatal(format_args!("upgrade: image unreadable after its check: {r}"));
            }
            // SAFETY: the target slot lies in the window (checked) and is
            // reserved for kernels; the running kernel is in the other.
            unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), (PHYS_OFFSET + s.paddr + done) as *mut u8, n) };
            done += n as u64;
        }
        // SAFETY: as above; the zero-filled tail is inside the segment.
        unsafe {
            core::ptr::write_bytes((PHYS_OFFSET + s.paddr + s.filesz) as *mut u8, 0, (s.memsz - s.filesz) as usize)
        };
    }
    let mut h = Handover::EMPTY;
    let pc = percpu();
    h.generation = GENERATION.load(Relaxed);
    h.current = pc.current;
    h.init = pc.init;
    h.upgrade_space = SPACE.load(Relaxed);
    h.kinfo_pa = kinfo::frame();
    h.lapic = apic::base_phys();
    h.tick_us = phys_read::<u64>(kinfo::frame() + 8 * ki::W_TICK_US as u64);
    h.tsc_per_us = phys_read::<u64>(kinfo::frame() + 8 * ki::W_TSC_PER_US as u64);
    h.slots_start = SLOTS_START.load(Relaxed);
    h.slots_end = SLOTS_END.load(Relaxed);
    h.novector = !crate::vector::enabled();
    h.tsc_at_request = t_request;
    for (d, r) in h.ram.iter_mut().zip(crate::mem::ram_ranges()) {
        *d = (r.start, r.end);
        h.ram_count += 1;
    }
    for (d, s) in h.spans.iter_mut().zip(crate::phys::freeze_window()) {
        *d = *s;
        h.span_count += 1;
    }
    crate::mmio::mapped_spans(|a, b| {
        if h.mmio_count < h.mmio.len() {
            h.mmio[h.mmio_count] = (a, b);
            h.mmio_count += 1;
        }
    });
    crate::devices::export_handover(&mut h);
    h.park_pa = crate::park::area();
    h.parked = parked.cpus;
    h.parked_count = parked.count;
    // The caller resumes as if its `yield` returned Ok(0).
    f.rax = 0;
    f.rdx = 0;
    h.frame = frame_words(f);
    // SAFETY: the other CPUs are parked, interrupts off: nothing else
    // touches HANDOVER.
    let words = unsafe { &mut *core::ptr::addr_of_mut!(HANDOVER) };
    h.tsc_at_jump = rdtsc();
    h.encode(words);
    let pa = words.as_ptr() as u64 - slots::KERNEL_VIRT;
    kinfo::set(ki::W_UPGRADE_TSC_JUMP, rdtsc());
    // SAFETY: the entry was checked to lie in the image just copied into
    // the spare slot, which the kernel mapping at KERNEL_VIRT reaches; it
    // takes the record's address in rdi and never returns.
    unsafe { core::arch::asm!("jmp {}", in(reg) plan.stamp.entry, in("rdi") pa, options(noreturn)) }
}

pub fn frame_words(f: &TrapFrame) -> [u64; FRAME_WORDS] {
    [
        f.r15, f.r14, f.r13, f.r12, f.r11, f.r10, f.r9, f.r8, f.rbp, f.rdi, f.rsi, f.rdx, f.rcx, f.rbx, f.rax,
        f.vector, f.error, f.rip, f.cs, f.rflags, f.rsp, f.ss,
    ]
}

pub fn frame_from(w: &[u64; FRAME_WORDS]) -> TrapFrame {
    TrapFrame {
        r15: w[0],
        r14: w[1],
        r13: w[2],
        r12: w[3],
        r11: w[4],
        r10: w[5],
        r9: w[6],
        r8: w[7],
        rbp: w[8],
        rdi: w[9],
        rsi: w[10],
        rdx: w[11],
        rcx: w[12],
        rbx: w[13],
        rax: w[14],
        vector: w[15],
        error: w[16],
        rip: w[17],
        cs: w[18],
        rflags: w[19],
        rsp: w[20],
        ss: w[21],
    }
}

/// The new kernel's first Rust code (from `upgrade_entry64`).
extern "C" fn upgrade_main(handover_pa: u64) -> ! {
    let t_new = rdtsc();
    // The record lies in the old kernel's slot, inside the first GiB that
    // this kernel's bootstrap view of the window covers.
    let mut words = [0u64; WORDS];
    for (i, w) in words.iter_mut().enumerate() {
        *w = phys_read::<u64>(handover_pa + 8 * i as u64);
    }
    let h = Handover::decode(&words).unwrap_or_else(|e| fatal(format_args!("upgrade: {e}")));
    let mut spans = firmware::window::Spans::EMPTY;
    for &(a, b) in h.spans() {
        if spans.insert(a, b).is_err() {
            fatal(format_args!("upgrade: the handed-over window does not fit"));
        }
    }
    crate::phys::set_window(spans);
    crate::phys::freeze_window();
    let mut ram = [MemRange::EMPTY; handover::MAX_RAM];
    for (d, &(start, end)) in ram.iter_mut().zip(h.ram()) {
        *d = MemRange { start, end };
    }
    crate::mem::set_ram(&ram[..h.ram_count]);
    crate::mem::seal_after_upgrade();
    crate::mmio::adopt(h.mmio());
    kinfo::set_frame(h.kinfo_pa);
    crate::arch::init();
    crate::enable_cpu_protections();
    crate::vector::adopt(!h.novector);
    apic::adopt(h.lapic);
    if let Err(e) = crate::devices::adopt_handover(&h) {
        fatal(format_args!("upgrade: cannot adopt the devices: {e}"));
    }
    let cr3 = x86_64::registers::control::Cr3::read_raw().0.start_address().as_u64();
    if cr3 != h.current {
        fatal(format_args!("upgrade: running on {cr3:#x}, the handover says {:#x}", h.current));
    }
    // SAFETY: the other CPUs are parked (outside this kernel), interrupts
    // off; the kernel half of the running space is the one every space
    // shares.
    let half = unsafe { &mut *core::ptr::addr_of_mut!(crate::trap::KERNEL_HALF) };
    for (i, e) in half.iter_mut().enumerate() {
        *e = phys_read::<u64>(cr3 + (256 + i as u64) * 8);
    }
    let pc = percpu();
    pc.current = h.current;
    pc.init = h.init;
    crate::arch::set_io_permission(h.current == h.init);
    SPACE.store(h.upgrade_space, Relaxed);
    SLOTS_START.store(h.slots_start, Relaxed);
    SLOTS_END.store(h.slots_end, Relaxed);
    GENERATION.store(h.generation + 1, Relaxed);
    report_build();
    // The parked CPUs: each comes back in this kernel, to what it ran.
    crate::smp::adopt_cpu(0, apic::id());
    crate::smp::publish_init(h.init);
    let back = crate::park::release_all(h.park_pa, h.parked(), PARK_BOUND_US, h.tsc_per_us);
    if back != h.parked_count {
        fatal(format_args!("upgrade: {back} of {} parked CPU(s) came back", h.parked_count));
    }
    kinfo::set(ki::W_UPSMP_RELEASE_TSC, rdtsc() - t_new);
    kinfo::set(ki::W_UPGRADE_DONE, h.generation + 1);
    kinfo::set(ki::W_UPGRADE_LAST_RESULT, 0);
    kinfo::set(ki::W_UPGRADE_TSC_NEW, t_new);
    klog!(
        "upgrade {}: build {BUILD} running in slot {}, {} device(s) adopted, {} parked CPU(s) back, {} KiB of kernel image",
        h.generation + 1,
        running_slot(),
        h.device_count,
        back,
        {
            let (s, e) = crate::boot::kernel_image_phys();
            (e - s) >> 10
        }
    );
    let f = frame_from(&h.frame);
    kinfo::set(ki::W_UPGRADE_TSC_RETURN, rdtsc());
    // SAFETY: `f` is the complete user context the old kernel saved for
    // the caller of the upgrade `yield` (its return, Ok).
    unsafe { crate::arch::trap_return(&f) }
}
