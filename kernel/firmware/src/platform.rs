//! `Platform::discover`: the RSDP, the root table, and what the kernel
//! needs from the MADT, MCFG, DMAR and NFIT, each table judged on its own so
//! one bad table costs only what it describes.

use crate::error::{crate_error_name, FirmwareError, Table};
use crate::precheck::{self, Root, HEADER_LEN};
use crate::view::PhysView;
use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiError, AcpiTable, AcpiTables, PhysicalMapping};
use core::mem::size_of;

/// The most ECAM regions kept (real machines have one per PCI segment).
pub const MAX_ECAM_REGIONS: usize = 16;

/// The most unreadable root-table entries remembered for the log.
pub const MAX_NOTED: usize = 8;

/// What the MADT says about processors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    /// Local APIC and local x2APIC entries with the Enabled flag.
    pub enabled: u32,
    /// All local APIC and local x2APIC entries.
    pub listed: u32,
    /// The local APIC's physical address (the 64-bit override entry, if
    /// present, replaces the 32-bit field).
    pub local_apic_address: u64,
    /// PCAT_COMPAT: dual 8259 PICs are present (and must be masked).
    pub has_8259: bool,
}

/// The most processors whose local APIC IDs are kept (more are counted in
/// [`ApicIds::omitted`]).
pub const MAX_APIC_IDS: usize = 64;

/// The local APIC IDs of the processors the MADT marks enabled, in MADT
/// order (the order SMP bring-up starts them in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApicIds {
    ids: [u32; MAX_APIC_IDS],
    count: usize,
    /// Enabled processors beyond [`MAX_APIC_IDS`], not kept.
    pub omitted: usize,
}

impl ApicIds {
    pub const EMPTY: ApicIds = ApicIds { ids: [0; MAX_APIC_IDS], count: 0, omitted: 0 };

    pub fn as_slice(&self) -> &[u32] {
        &self.ids[..self.count]
    }

    fn push(&mut self, id: u32) {
        if self.as_slice().contains(&id) {
            return; // a duplicate entry names the same processor
        }
        if self.count < MAX_APIC_IDS {
            self.ids[self.count] = id;
            self.count += 1;
        } else {
            self.omitted += 1;
        }
    }

    /// The processors to start besides the boot processor `bsp`, at most
    /// `max`, in MADT order, and how many enabled ones are left parked: an
    /// ID above 255 cannot be addressed by an xAPIC's INIT/SIPI (the
    /// kernel drives the LAPIC in xAPIC mode), and `max` bounds the
    /// kernel's per-CPU tables.
    pub fn to_start(&self, bsp: u32, max: usize) -> (ApStartList, usize) {
        let mut out = ApStartList { ids: [0; MAX_APIC_IDS], count: 0 };
        let mut parked = self.omitted;
        for &id in self.as_slice().iter().filter(|&&id| id != bsp) {
            if id > 255 || out.count >= max {
                parked += 1;
            } else {
                out.ids[out.count] = id as u8;
                out.count += 1;
            }
        }
        (out, parked)
    }
}

/// xAPIC IDs of the application processors to start, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApStartList {
    ids: [u8; MAX_APIC_IDS],
    count: usize,
}

impl ApStartList {
    pub fn as_slice(&self) -> &[u8] {
        &self.ids[..self.count]
    }
}

/// One ECAM window from the MCFG.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegion {
    /// ECAM base: the address bus 0 would have, even when `start_bus` is
    /// above 0 (as the PCI Firmware spec and Linux read it).
    pub base: u64,
    pub segment: u16,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl EcamRegion {
    /// First byte of the window (the start bus's configuration space).
    pub fn window_start(&self) -> u64 {
        self.base + ((self.start_bus as u64) << 20)
    }

    /// Bytes covered: 1 MiB per bus.
    pub fn window_len(&self) -> u64 {
        ((self.end_bus as u64) - (self.start_bus as u64) + 1) << 20
    }

    /// Physical address of the 4 KiB configuration space of
    /// (bus, device, function), or `None` outside this window.
    pub fn config_address(&self, bus: u8, device: u8, function: u8) -> Option<u64> {
        if bus < self.start_bus || bus > self.end_bus || device > 31 || function > 7 {
            return None;
        }
        Some(self.base + ((bus as u64) << 20 | (device as u64) << 15 | (function as u64) << 12))
    }
}

/// The MCFG's ECAM regions (no heap: a fixed array).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EcamRegions {
    regions: [EcamRegion; MAX_ECAM_REGIONS],
    count: usize,
    /// Allocations past [`MAX_ECAM_REGIONS`], not kept.
    pub omitted: usize,
}

impl EcamRegions {
    pub fn as_slice(&self) -> &[EcamRegion] {
        &self.regions[..self.count]
    }

    /// The region holding `bus` of `segment`.
    pub fn find(&self, segment: u16, bus: u8) -> Option<&EcamRegion> {
        self.as_slice().iter().find(|r| r.segment == segment && (r.start_bus..=r.end_bus).contains(&bus))
    }
}

/// Root-table entries whose header lies outside the view (the crate reads
/// them as absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unreadable {
    /// (entry index, physical address), the first [`MAX_NOTED`].
    pub noted: [(usize, u64); MAX_NOTED],
    pub count: usize,
}

impl Unreadable {
    pub fn iter(&self) -> impl Iterator<Item = &(usize, u64)> {
        self.noted[..self.count.min(MAX_NOTED)].iter()
    }
}

/// What the firmware's ACPI tables say, table by table.
#[derive(Clone, Copy, Debug)]
pub struct Platform<'v> {
    /// The RSDP's revision (0: ACPI 1.0 with an RSDT; 2+: an XSDT).
    pub revision: u8,
    /// `Table::Rsdt` or `Table::Xsdt`.
    pub root: Table,
    pub root_address: u64,
    /// Entries in the root table.
    pub entries: usize,
    pub unreadable: Unreadable,
    /// From the MADT, through the `acpi` crate.
    pub cpus: Result<Cpus, FirmwareError>,
    /// The enabled processors' local APIC IDs, from the same MADT pass
    /// (empty when `cpus` is an error).
    pub apic_ids: ApicIds,
    /// From the MCFG, through the `acpi` crate.
    pub ecam: Result<EcamRegions, FirmwareError>,
    /// The DMAR's bytes (length from its header, checksum checked), found
    /// through the `acpi` crate; the crate does not parse DMAR, so these go
    /// to `iommu::acpi::dmar::Dmar::parse`.
    pub dmar: Result<&'v [u8], FirmwareError>,
    /// The NFIT's bytes (length from its header, checksum checked), found
    /// through the `acpi` crate like the DMAR; the crate does not parse
    /// NFIT, so these go to `firmware::nfit`. `Err(Missing(Nfit))` on a
    /// machine without persistent memory (or with QEMU's `nvdimm=off`).
    pub nfit: Result<&'v [u8], FirmwareError>,
}

/// The DMAR's fixed part (VT-d spec 8.1), so the crate's `find_table` can
/// locate and checksum it.
#[repr(C, packed)]
struct DmarHeader {
    header: SdtHeader,
    host_address_width: u8,
    flags: u8,
    reserved: [u8; 10],
}

// SAFETY: `DmarHeader` is the DMAR's 48-byte fixed part, `repr(C, packed)`
// so its layout is the table's; `precheck::survey` admits only DMARs at
// least 48 bytes long and inside the view before `find_table` maps one.
unsafe impl AcpiTable for DmarHeader {
    const SIGNATURE: Signature = Signature::DMAR;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// The NFIT's fixed part (ACPI 6.x, 5.2.25): the header and 4 reserved
/// bytes, so the crate's `find_table` can locate and checksum it.
#[repr(C, packed)]
struct NfitHeader {
    header: SdtHeader,
    reserved: u32,
}

// SAFETY: `NfitHeader` is the NFIT's 40-byte fixed part, `repr(C, packed)`
// so its layout is the table's; `precheck::survey` admits only NFITs at
// least 40 bytes long and inside the view before `find_table` maps one.
unsafe impl AcpiTable for NfitHeader {
    const SIGNATURE: Signature = Signature::NFIT;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

impl<'v> Platform<'v> {
    /// Walks RSDP → RSDT/XSDT at `rsdp` in `view` and reads the MADT, MCFG,
    /// DMAR and NFIT. Fails as a whole only when the RSDP or the root table
    /// is unusable; a bad MADT, MCFG, DMAR or NFIT is an error in its own
    /// field.
    pub fn discover(view: PhysView<'v>, rsdp: u64) -> Result<Self, FirmwareError> {
        let root = precheck::root(&view, rsdp)?;
        // SAFETY: `precheck::root` checked the RSDP (signature, checksums,
        // a 2.0+ length inside the view) and the root table it names
        // (signature, length of at least its header, inside the view,
        // checksum, whole entries), which is what `from_rsdp` reads.
        let tables = unsafe { AcpiTables::from_rsdp(view, rsdp as usize) }
            .map_err(|e| FirmwareError::Crate { table: root.table, error: crate_error_name(&e) })?;

        let mut unreadable = Unreadable::default();
        let mut entries = 0;
        for (i, pa) in precheck::entries(&view, &root).enumerate() {
            entries += 1;
            if !precheck::header_readable(&view, pa) {
                if unreadable.count < MAX_NOTED {
                    unreadable.noted[unreadable.count] = (i, pa);
                }
                unreadable.count += 1;
            }
        }

        let cpus = cpus(&view, &root, &tables);
        Ok(Platform {
            revision: root.revision,
            root: root.table,
            root_address: root.pa,
            entries,
            unreadable,
            cpus: cpus.map(|(c, _)| c),
            apic_ids: cpus.map(|(_, ids)| ids).unwrap_or(ApicIds::EMPTY),
            ecam: ecam(&view, &root, &tables),
            dmar: dmar(&view, &root, &tables),
            nfit: nfit(&view, &root, &tables),
        })
    }
}

/// Finds the table through the crate, after `precheck::survey` has framed
/// every candidate, and turns the crate's errors into named ones.
fn find<'v, T: AcpiTable>(
    view: &PhysView<'v>,
    root: &Root,
    tables: &AcpiTables<PhysView<'v>>,
    table: Table,
    min_len: usize,
) -> Result<(PhysicalMapping<PhysView<'v>, T>, &'v [u8]), FirmwareError> {
    let survey = precheck::survey(view, root, table, min_len as u64)?;
    if survey.found == 0 {
        return Err(FirmwareError::Missing(table));
    }
    let mapping = match tables.find_table::<T>() {
        Ok(m) => m,
        // The crate skips (and only logs) a table whose checksum or OEM id
        // is bad, then reports the signature missing; say why instead.
        Err(AcpiError::TableMissing(_)) => return Err(survey.first_problem.unwrap_or(FirmwareError::Missing(table))),
        Err(e) => return Err(FirmwareError::Crate { table, error: crate_error_name(&e) }),
    };
    let pa = mapping.physical_start() as u64;
    let len = mapping.region_length() as u64;
    // Inside the view: the survey framed every table with this signature.
    let bytes = view.bytes(pa, len).map_err(|_| FirmwareError::OutsideView { table, pa, len })?;
    if len < min_len as u64 || len < HEADER_LEN {
        return Err(FirmwareError::BadLength { table, pa, length: len, why: "is shorter than the table's fixed part" });
    }
    Ok((mapping, bytes))
}

fn cpus(view: &PhysView<'_>, root: &Root, tables: &AcpiTables<PhysView<'_>>) -> Result<(Cpus, ApicIds), FirmwareError> {
    let (madt, bytes) = find::<Madt>(view, root, tables, Table::Madt, size_of::<Madt>())?;
    precheck::madt_entries(bytes)?;
    let madt = madt.get();
    let mut cpus = Cpus {
        enabled: 0,
        listed: 0,
        local_apic_address: madt.local_apic_address as u64,
        has_8259: madt.supports_8259(),
    };
    let mut ids = ApicIds::EMPTY;
    for entry in madt.entries() {
        let (flags, id) = match entry {
            MadtEntry::LocalApic(e) => (e.flags, e.apic_id as u32),
            MadtEntry::LocalX2Apic(e) => (e.flags, e.x2apic_id),
            MadtEntry::LocalApicAddressOverride(e) => {
                cpus.local_apic_address = e.local_apic_address;
                continue;
            }
            _ => continue,
        };
        cpus.listed += 1;
        if flags & 1 != 0 {
            cpus.enabled += 1;
            ids.push(id);
        }
    }
    Ok((cpus, ids))
}

fn ecam(view: &PhysView<'_>, root: &Root, tables: &AcpiTables<PhysView<'_>>) -> Result<EcamRegions, FirmwareError> {
    let (mcfg, _) = find::<Mcfg>(view, root, tables, Table::Mcfg, size_of::<Mcfg>())?;
    let empty = EcamRegion { base: 0, segment: 0, start_bus: 0, end_bus: 0 };
    let mut out = EcamRegions { regions: [empty; MAX_ECAM_REGIONS], count: 0, omitted: 0 };
    // The crate rounds a length that is not 44 + 16n down to whole
    // allocations (some firmware pads the table); so do we.
    for (index, e) in mcfg.entries().iter().enumerate() {
        let region = EcamRegion {
            base: e.base_address,
            segment: e.pci_segment_group,
            start_bus: e.bus_number_start,
            end_bus: e.bus_number_end,
        };
        let bad = |why| Err(FirmwareError::McfgAllocation { index, why });
        if region.start_bus > region.end_bus {
            return bad("start bus above end bus");
        }
        if region.base & 0xf_ffff != 0 {
            return bad("ECAM base not 1 MiB aligned");
        }
        if region.base.checked_add(((region.end_bus as u64) + 1) << 20).is_none() {
            return bad("ECAM window runs past the top of the address space");
        }
        if out.count < MAX_ECAM_REGIONS {
            out.regions[out.count] = region;
            out.count += 1;
        } else {
            out.omitted += 1;
        }
    }
    Ok(out)
}

fn dmar<'v>(view: &PhysView<'v>, root: &Root, tables: &AcpiTables<PhysView<'v>>) -> Result<&'v [u8], FirmwareError> {
    let (_, bytes) = find::<DmarHeader>(view, root, tables, Table::Dmar, size_of::<DmarHeader>())?;
    Ok(bytes)
}

fn nfit<'v>(view: &PhysView<'v>, root: &Root, tables: &AcpiTables<PhysView<'v>>) -> Result<&'v [u8], FirmwareError> {
    let (_, bytes) = find::<NfitHeader>(view, root, tables, Table::Nfit, size_of::<NfitHeader>())?;
    Ok(bytes)
}
