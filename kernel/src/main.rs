//! The exokernel. Its only abstraction is the page table: five system calls
//! (see `docs/syscalls.md`) edit page tables and switch between them; faults
//! and interrupts are delivered to userspace as upcalls; after boot it
//! allocates nothing and keeps no per-process state.
//!
//! Boot path: `boot` (PVH / multiboot2 entry, long mode) → [`kmain`]:
//! descriptor tables (`arch`), free memory, the LAPIC timer (`apic`), init's
//! address space (`initas`), then the first upcall into init. From then on
//! the kernel only runs in `trap`, entered from userspace.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {}

#[cfg(target_os = "none")]
#[macro_use]
mod serial;
#[cfg(target_os = "none")]
mod acpi;
#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod idle;
#[cfg(target_os = "none")]
mod initas;
#[cfg(target_os = "none")]
mod kinfo;
#[cfg(target_os = "none")]
mod mem;
#[cfg(target_os = "none")]
mod mmio;
#[cfg(target_os = "none")]
mod park;
#[cfg(target_os = "none")]
mod phys;
#[cfg(target_os = "none")]
mod pmem;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod upcall;
#[cfg(target_os = "none")]
mod upgrade;
#[cfg(target_os = "none")]
mod vector;
#[cfg(target_os = "none")]
mod window;

#[cfg(target_os = "none")]
pub use kernel::*;

#[cfg(target_os = "none")]
mod kernel {
    use crate::mem::BootAlloc;
    use crate::phys::{phys_read, MemRange};
    use crate::{apic, arch, boot, initas, kinfo, mem, trap, upcall, window};
    use exo_abi::{kinfo as ki, Reason};

    /// Tick length of the preemption timer.
    const TICK_US: u64 = 10_000;
    /// The physical window is one PDPT: RAM above 512 GiB is not used.
    const WINDOW_LIMIT: u64 = firmware::window::WINDOW_LIMIT;

    /// Stop the machine with a message. Through QEMU's isa-debug-exit the
    /// exit status becomes 37, which the test harness reports as a kernel
    /// failure (never a pass).
    pub fn fatal(args: core::fmt::Arguments) -> ! {
        crate::serial::print(format_args!("[kernel] {}\n", args));
        // SAFETY: writing the isa-debug-exit port only stops the VM (and is
        // a no-op on a machine without the device).
        unsafe { x86_64::instructions::port::Port::<u32>::new(0xf4).write(0x12) };
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        fatal(format_args!("PANIC: {}", info))
    }

    /// Subtract `hole` from the ranges in place.
    fn subtract(ranges: &mut [MemRange; boot::MAX_RANGES], count: &mut usize, hole: MemRange) {
        let mut i = 0;
        while i < *count {
            let r = ranges[i];
            if !r.overlaps(&hole) {
                i += 1;
                continue;
            }
            let left = MemRange { start: r.start, end: hole.start.max(r.start) };
            let right = MemRange { start: hole.end.min(r.end), end: r.end };
            ranges[i] = left;
            if right.len() > 0 && *count < boot::MAX_RANGES {
                ranges[*count] = right;
                *count += 1;
            }
            i += 1;
        }
    }

    pub fn enable_cpu_protections() {
        let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
        let mut cr4: u64;
        // SAFETY: reading and setting CR4 feature bits the CPU reports
        // (SMEP: never execute user pages; SMAP: never touch them — the
        // kernel reaches user memory only through the physical window).
        unsafe {
            core::arch::asm!("mov {}, cr4", out(reg) cr4);
            if leaf7.ebx & (1 << 7) != 0 {
                cr4 |= 1 << 20;
            }
            if leaf7.ebx & (1 << 20) != 0 {
                cr4 |= 1 << 21;
            }
            core::arch::asm!("mov cr4, {}", in(reg) cr4);
        }
    }

    #[no_mangle]
    extern "C" fn kmain(info: u64, magic: u64) -> ! {
        crate::serial::init();
        klog!("exokernel starting");
        let bi = boot::parse(info, magic as u32).unwrap_or_else(|e| fatal(format_args!("cannot boot: {e}")));
        boot::drop_scratch();
        let (loader, firmware) = match (bi.protocol, bi.firmware) {
            ("PVH", _) => (ki::BOOT_PVH, "PVH"),
            (_, firmware::bootinfo::Firmware::Uefi) => (ki::BOOT_MB2_UEFI, "multiboot2 on UEFI"),
            _ => (ki::BOOT_MB2_BIOS, "multiboot2 on BIOS"),
        };
        let rsdp_source = match bi.rsdp_source {
            firmware::bootinfo::RsdpSource::None => ki::RSDP_NONE,
            firmware::bootinfo::RsdpSource::Loader => ki::RSDP_LOADER,
            firmware::bootinfo::RsdpSource::Scan => ki::RSDP_SCAN,
            firmware::bootinfo::RsdpSource::EfiSystemTable => ki::RSDP_EFI_TABLE,
        };
        klog!(
            "boot information: {firmware}, RSDP {}",
            match rsdp_source {
                ki::RSDP_LOADER => "from the loader",
                ki::RSDP_SCAN => "found by scanning the EBDA and BIOS area",
                ki::RSDP_EFI_TABLE => "from the UEFI configuration table",
                _ => "not found (no ACPI: one CPU, no devices)",
            }
        );
        mem::set_ram(&bi.ram[..bi.ram_count]);
        arch::init();
        enable_cpu_protections();
        // `novector` on the command line leaves x87/SSE/AVX disabled (no
        // save, no clear: what a switch costs without vector state; SSE
        // instructions then raise #UD, so nothing can leak).
        let novector = bi.cmdline[..bi.cmdline_len].split(|b| *b == b' ').any(|w| w == b"novector");
        crate::vector::init(!novector);

        // Free RAM: what the loader reported, minus the first MiB, the
        // kernel image, the boot image and the boot information.
        let mut free = [MemRange::EMPTY; boot::MAX_RANGES];
        let mut count = 0;
        for r in &bi.ram[..bi.ram_count] {
            let start = ((r.start.max(0x10_0000)) + 0xfff) & !0xfff;
            let end = r.end.min(WINDOW_LIMIT) & !0xfff;
            if end > start {
                free[count] = MemRange { start, end };
                count += 1;
            }
            if r.end > WINDOW_LIMIT {
                klog!(
                    "RAM above 512 GiB ignored ({:#x}..{:#x}): the window is one PDPT",
                    r.start.max(WINDOW_LIMIT),
                    r.end
                );
            }
        }
        // The kernel image, and the spare slot an upgrade loads into.
        subtract(&mut free, &mut count, crate::upgrade::reserve(&bi));
        if let Some(m) = bi.module {
            subtract(&mut free, &mut count, MemRange { start: m.start & !0xfff, end: (m.end + 0xfff) & !0xfff });
        }
        subtract(&mut free, &mut count, bi.info);
        let mut alloc = BootAlloc { free, count, taken: 0 };

        // The physical window: all of RAM and the ACPI tables (the entry
        // code mapped only the first GiB).
        let w = window::build(&bi, &mut alloc)
            .unwrap_or_else(|e| fatal(format_args!("cannot build the physical window: {e}")));
        klog!(
            "window: {} MiB in {} span(s), {} table frames ({} pages), {} ACPI table(s) mapped{}",
            w.bytes >> 20,
            w.spans,
            w.frames,
            if w.gib_pages { "1 GiB" } else { "2 MiB" },
            w.acpi_tables,
            if w.ignored > 0 { " (some RAM beyond the window ignored)" } else { "" }
        );
        // Free RAM the window does not map (more memory-map ranges than it
        // records) cannot be used.
        let mut i = 0;
        while i < alloc.count {
            let r = alloc.free[i];
            if r.len() > 0 && !crate::phys::window_contains(r.start, r.len()) {
                klog!("RAM {:#x}..{:#x} ignored: outside the physical window", r.start, r.end);
                alloc.free[i] = MemRange::EMPTY;
            }
            i += 1;
        }
        match window::self_check(&alloc) {
            Ok(Some(pa)) => klog!("window: the early reader and the window agree at {pa:#x}"),
            Ok(None) => {}
            Err(e) => fatal(format_args!("{e}")),
        }
        let total: u64 = alloc.free[..alloc.count].iter().map(|r| r.len()).sum();

        let lapic = x86_64::registers::model_specific::Msr::new(0x1b);
        // SAFETY: reading IA32_APIC_BASE has no side effects.
        let apic_base = unsafe { lapic.read() };
        if apic_base & (1 << 10) != 0 {
            // Firmware may hand over in x2APIC mode (servers with many
            // CPUs, some UEFI setups); the kernel drives the xAPIC's MMIO
            // registers, which then do not respond.
            fatal(format_args!(
                "the firmware left the local APIC in x2APIC mode; this kernel drives it in xAPIC mode: \
                 turn x2APIC off in the firmware setup (docs/HARDWARE.md)"
            ));
        }
        let lapic = apic_base & 0xf_ffff_f000;
        if let Err(e) = crate::mmio::map(lapic, 4096, &mut alloc, &bi.ram[..bi.ram_count]) {
            fatal(format_args!("cannot map the local APIC at {lapic:#x}: {e}"));
        }
        let platform = crate::acpi::discover(bi.rsdp);
        crate::devices::init(platform.as_ref(), &mut alloc, &bi.ram);
        crate::pmem::discover(platform.as_ref(), &bi, &alloc);

        let kinfo_pa = alloc.alloc().unwrap_or_else(|| fatal(format_args!("no memory for the kernel info page")));
        kinfo::set_frame(kinfo_pa);
        kinfo::set(ki::W_BOOT_LOADER, loader);
        kinfo::set(ki::W_RSDP_SOURCE, rsdp_source);
        crate::acpi::report_cpus(platform.as_ref());
        let timer = apic::init(lapic, TICK_US);
        kinfo::set(ki::W_TICK_US, timer.tick_us);
        kinfo::set(ki::W_TSC_PER_US, timer.tsc_per_us);
        kinfo::set_bytes(ki::CMDLINE_OFFSET, &bi.cmdline[..bi.cmdline_len.min(ki::CMDLINE_MAX - 1)]);
        if let Some(m) = bi.module {
            kinfo::set(ki::W_BOOT_IMAGE_PHYS, m.start);
            kinfo::set(ki::W_BOOT_IMAGE_LEN, m.len());
        }

        // The kernel half every address space shares (its image mapping's
        // tables first moved out of the image, for upgrades).
        crate::upgrade::relocate_kernel_map(&mut alloc);
        let pml4 = boot::boot_pml4_phys();
        // SAFETY: single-threaded boot; no address space exists yet.
        let half = unsafe { &mut *core::ptr::addr_of_mut!(trap::KERNEL_HALF) };
        for (i, e) in half.iter_mut().enumerate() {
            *e = phys_read::<u64>(pml4 + (256 + i as u64) * 8);
        }
        crate::upgrade::make_space(&mut alloc, half);
        crate::upgrade::report_build();

        let built = initas::build(&bi, &mut alloc, half, kinfo_pa)
            .unwrap_or_else(|e| fatal(format_args!("cannot start init: {e}")));
        kinfo::set(ki::W_INIT_AS, built.root);
        kinfo::set(ki::W_RAM_BYTES, built.ram_bytes);
        // The non-empty free ranges, as init got them, in address order.
        let mut sorted = alloc.free;
        sorted[..alloc.count].sort_unstable_by_key(|r| (r.len() == 0, r.start));
        let mut n = 0;
        for r in sorted[..alloc.count].iter().filter(|r| r.len() > 0).take(ki::MAX_RAM_RANGES) {
            kinfo::set(ki::W_RAM_RANGE0 + 2 * n, r.start);
            kinfo::set(ki::W_RAM_RANGE0 + 2 * n + 1, r.len());
            n += 1;
        }
        kinfo::set(ki::W_RAM_RANGES, n as u64);
        arch::percpu().init = built.root;
        klog!(
            "booted via {}: {} MiB RAM free, {} MiB ({} KiB) to init in {} range(s), {} boot frames, tick {} us, entering init at {:#x}",
            bi.protocol,
            total >> 20,
            built.ram_bytes >> 20,
            built.ram_bytes >> 10,
            n,
            alloc.taken,
            timer.tick_us,
            built.entry
        );

        // The other CPUs: started now that init's space exists; each
        // stays idle until init gives it a control page (crate::smp).
        crate::smp::start_aps(platform.as_ref(), &bi, timer.tsc_per_us);

        let mut f = arch::TrapFrame::default();
        if upcall::enter(&mut f, built.root, Reason::Yield, 0, 0, 0).is_err() {
            fatal(format_args!("init has no usable control page"));
        }
        crate::smp::publish_init(built.root);
        // SAFETY: `f` is a complete user context built by `enter`.
        unsafe { arch::trap_return(&f) }
    }
}
