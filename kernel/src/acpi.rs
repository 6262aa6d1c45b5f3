//! ACPI at boot: the host-tested `firmware` crate walks RSDP → RSDT/XSDT
//! and reads the MADT and MCFG through the `acpi` crate (and locates the
//! DMAR, which `iommu::acpi::dmar` parses), over a bounds-checked view of
//! the physical window. Anything malformed is logged and costs only what
//! it describes: the machine boots with one CPU, without PCI devices, or
//! without DMA, rather than not at all.

use crate::phys::PHYS_OFFSET;
use firmware::window::WINDOW_LIMIT;
use firmware::{PhysView, Platform, MAX_NOTED};

/// Reads the ACPI tables through the RSDP at `rsdp` (from the boot
/// information). `None`, logged, when the RSDP or the root table is
/// unusable.
pub fn discover(rsdp: u64) -> Option<Platform<'static>> {
    // The view hands out references only to ACPI tables (firmware never
    // writes them after boot; they are not in the free memory map, so the
    // kernel never allocates their frames) and, while the `acpi` crate
    // compares a signature, to the header an RSDT/XSDT entry points at.
    // Discovery runs on the boot CPU alone before any device may DMA.
    // The window is complete and frozen (`window.rs` mapped the tables'
    // pages): the view reads only inside its spans.
    let spans = crate::phys::freeze_window();
    // SAFETY: the window maps physical addresses below WINDOW_LIMIT at
    // PHYS_OFFSET (no wrap: PHYS_OFFSET + 512 GiB is canonical kernel
    // space), and `within(spans)` keeps every read inside the spans it
    // actually maps, readable for the kernel's lifetime (the window is
    // frozen); nothing writes the tables now.
    let view = unsafe { PhysView::from_raw(PHYS_OFFSET as *const u8, WINDOW_LIMIT as usize) }?.within(spans);
    let platform = match Platform::discover(view, rsdp) {
        Ok(p) => p,
        Err(e) => {
            klog!("ACPI: {e}: booting with one CPU and no devices");
            return None;
        }
    };
    klog!(
        "ACPI: RSDP revision {}, {} at {:#x} with {} entries",
        platform.revision,
        platform.root,
        platform.root_address,
        platform.entries
    );
    for (index, pa) in platform.unreadable.iter() {
        klog!("ACPI: {} entry {index} points at {pa:#x}, outside the physical window: skipped", platform.root);
    }
    if platform.unreadable.count > MAX_NOTED {
        klog!("ACPI: ... and {} more such entries", platform.unreadable.count - MAX_NOTED);
    }
    Some(platform)
}

/// Counts the enabled CPUs the MADT lists into the kernel info page
/// (`crate::smp` starts them).
pub fn report_cpus(platform: Option<&Platform<'static>>) {
    let Some(platform) = platform else { return klog!("ACPI: no tables; assuming one CPU") };
    match platform.cpus {
        Ok(cpus) if cpus.enabled > 0 => {
            crate::kinfo::set(exo_abi::kinfo::W_CPUS, cpus.enabled as u64);
            klog!(
                "ACPI: MADT lists {} enabled CPU(s) ({} in all), local APIC at {:#x}",
                cpus.enabled,
                cpus.listed,
                cpus.local_apic_address
            );
        }
        Ok(_) => klog!("ACPI: MADT lists no enabled CPU; assuming one"),
        Err(e) => klog!("ACPI: {e}; assuming one CPU"),
    }
}
