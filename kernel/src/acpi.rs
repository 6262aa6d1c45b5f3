//! Finding ACPI tables: RSDP → XSDT (or RSDT) → tables by signature. The
//! tables themselves are parsed by the host-tested `iommu::acpi` module.
//! Anything malformed is logged and skipped: the machine boots without the
//! affected devices rather than not at all.

use crate::mem::{phys_read, PHYS_OFFSET};

/// The most bytes of one table the kernel will look at.
const MAX_TABLE: u64 = 64 * 1024;
const WINDOW: u64 = 1 << 30;

fn checksum_ok(pa: u64, len: u64) -> bool {
    (0..len).fold(0u8, |s, i| s.wrapping_add(phys_read::<u8>(pa + i))) == 0
}

/// The bytes of the table at `pa`, after checking that its header's length
/// is sane and inside the window, and its checksum.
fn table(pa: u64) -> Result<&'static [u8], &'static str> {
    if pa == 0 || pa.checked_add(36).is_none_or(|e| e > WINDOW) {
        return Err("table address outside the physical window");
    }
    let len = phys_read::<u32>(pa + 4) as u64;
    if !(36..=MAX_TABLE).contains(&len) || pa + len > WINDOW {
        return Err("table length implausible");
    }
    if !checksum_ok(pa, len) {
        return Err("table checksum wrong");
    }
    // SAFETY: [pa, pa + len) lies inside the physical window (checked),
    // which maps RAM for the kernel's lifetime; firmware tables are never
    // written after boot.
    Ok(unsafe { core::slice::from_raw_parts((PHYS_OFFSET + pa) as *const u8, len as usize) })
}

/// Find the table with `signature` through the RSDP at `rsdp`.
pub fn find(rsdp: u64, signature: &[u8; 4]) -> Result<Option<&'static [u8]>, &'static str> {
    if rsdp == 0 || rsdp + 36 > WINDOW {
        return Err("no RSDP");
    }
    if phys_read::<[u8; 8]>(rsdp) != *b"RSD PTR " || !checksum_ok(rsdp, 20) {
        return Err("RSDP signature or checksum wrong");
    }
    let revision = phys_read::<u8>(rsdp + 15);
    let (root, entry_size) = if revision >= 2 {
        (phys_read::<u64>(rsdp + 24), 8)
    } else {
        (phys_read::<u32>(rsdp + 16) as u64, 4)
    };
    let root_table = table(root)?;
    let expect: &[u8; 4] = if entry_size == 8 { b"XSDT" } else { b"RSDT" };
    if &root_table[..4] != expect {
        return Err("root table has the wrong signature");
    }
    for chunk in root_table[36..].chunks_exact(entry_size) {
        let mut b = [0u8; 8];
        b[..entry_size].copy_from_slice(chunk);
        let pa = u64::from_le_bytes(b);
        match table(pa) {
            Ok(t) if &t[..4] == signature => return Ok(Some(t)),
            Ok(_) => {}
            Err(e) => klog!("ACPI: skipping a table at {pa:#x}: {e}"),
        }
    }
    Ok(None)
}

/// Read the MADT (parsed by the host-fuzzed `iommu::acpi::madt`): count the
/// enabled CPUs for the kernel info page. Only the boot CPU runs for now;
/// the others stay parked until SMP brings them up.
pub fn report_cpus(rsdp: u64) {
    let madt = match find(rsdp, b"APIC") {
        Ok(Some(t)) => t,
        Ok(None) => return klog!("ACPI: no MADT; assuming one CPU"),
        Err(e) => return klog!("ACPI: {e}; assuming one CPU"),
    };
    match iommu::acpi::madt::Madt::parse(madt) {
        Ok(m) => {
            let cpus = m.enabled_cpus().count() as u64;
            crate::kinfo::set(exo_abi::kinfo::W_CPUS, cpus);
            klog!(
                "ACPI: MADT lists {cpus} enabled CPU(s), local APIC at {:#x}; running on the boot CPU",
                m.local_apic_address
            );
        }
        Err(e) => klog!("ACPI: MADT rejected: {e}; assuming one CPU"),
    }
}
