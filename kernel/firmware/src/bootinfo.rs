//! The boot information a loader hands over: Xen PVH `hvm_start_info`
//! (QEMU `-kernel`) or multiboot2 (GRUB), read through [`PhysRead`] (the
//! kernel's early reader, which reaches any physical address; a `Vec` in
//! the host tests).
//!
//! A loader may put its structures anywhere in memory (PVH's memory map,
//! module list and command line are 64-bit addresses), so nothing is
//! assumed about where they are; after the memory map is read, every
//! structure must lie in the first MiB (where firmware and option ROMs
//! keep such things) or in memory the memory map lists, of any type —
//! never in a hole. Not necessarily RAM: QEMU places the PVH module
//! (initrd) below the end of low RAM minus 128 KiB, which can run into the
//! range SeaBIOS reserves at the top of RAM. What is outside is a named
//! [`BootError`], never a fault.
//!
//! Multiboot2 from GRUB differs by firmware: on BIOS it carries the
//! e820-style memory map (tag 6) and the RSDP GRUB found by scanning (tags
//! 14/15); on UEFI (boot services exited by GRUB, a framebuffer and no
//! legacy areas) it carries the map GRUB translated from the EFI memory
//! map, the EFI map itself (tag 17), the system table (tag 12) and the
//! RSDP from the EFI configuration table. The e820-style map is used when
//! present, the EFI map otherwise ([`efi_type_to_e820`]: runtime services,
//! MMIO and reserved ranges stay out of RAM). The ACPI 2.0 RSDP (tag 15)
//! wins over the 1.0 one (tag 14); with neither, [`crate::rsdp_scan`]
//! looks in the UEFI configuration table (through tag 12's system table),
//! then in the legacy BIOS areas. Framebuffer, ELF-section and other tags are
//! skipped: the kernel logs to COM1 whatever the console.

use crate::window::{listed, Kind, Region};

/// The RAM ranges kept.
pub const MAX_RAM: usize = 32;
/// The memory-map entries kept (of every type).
pub const MAX_MAP: usize = 64;
/// The most memory-map entries read from a PVH start_info.
pub const MAX_PVH_ENTRIES: u32 = 128;
pub const CMDLINE_MAX: usize = 1024;

pub const PVH_MAGIC: u32 = 0x336e_c578;
pub const MB2_MAGIC: u32 = 0x36d7_6289;

/// Physical memory as the parser reads it.
pub trait PhysRead {
    /// Fill `out` from physical address `pa` (bytes that do not exist read
    /// as anything; the parser checks addresses against the memory map
    /// afterwards).
    fn read(&self, pa: u64, out: &mut [u8]);
}

/// `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootError {
    NullInfo,
    UnknownFormat,
    PvhVersion0,
    PvhMemoryMapImplausible,
    NoRam,
    InfoOutsideMemory,
    MemoryMapOutsideMemory,
    ModuleListOutsideMemory,
    ModuleOutsideMemory,
    CmdlineOutsideMemory,
    Mb2Size,
    Mb2TagOverrun,
    Mb2EntrySize,
    /// A tag shorter than its fixed part (the tag's type).
    Mb2TagTooSmall(u32),
    Mb2EfiEntrySize,
}

impl core::fmt::Display for BootError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BootError::NullInfo => "boot information pointer is null or at the end of the address space",
            BootError::UnknownFormat => "neither a PVH start_info nor multiboot2 information",
            BootError::PvhVersion0 => "PVH start_info version 0 has no memory map",
            BootError::PvhMemoryMapImplausible => "PVH memory map missing or implausible",
            BootError::NoRam => "the memory map lists no RAM",
            BootError::InfoOutsideMemory => "boot information outside the memory map",
            BootError::MemoryMapOutsideMemory => "PVH memory map outside the memory map it describes",
            BootError::ModuleListOutsideMemory => "PVH module list outside the memory map",
            BootError::ModuleOutsideMemory => "boot image (module) empty or outside the memory map",
            BootError::CmdlineOutsideMemory => "command line outside the memory map",
            BootError::Mb2Size => "multiboot2 information has an implausible size",
            BootError::Mb2TagOverrun => "multiboot2 tag overruns the information block",
            BootError::Mb2EntrySize => "multiboot2 memory map entry size below 24",
            BootError::Mb2TagTooSmall(t) => {
                return write!(f, "multiboot2 tag of type {t} is shorter than its fixed part")
            }
            BootError::Mb2EfiEntrySize => "multiboot2 EFI memory map descriptor size below 40",
        })
    }
}

/// Which firmware the loader ran on, as far as its information tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// PVH says nothing about it (QEMU `-kernel` runs SeaBIOS's loader).
    Unknown,
    /// Multiboot2 without EFI tags.
    Bios,
    /// Multiboot2 with an EFI system table or EFI memory map tag.
    Uefi,
}

/// Where the RSDP address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpSource {
    None,
    /// The loader passed it (PVH `rsdp_paddr`, multiboot2 tag 14/15).
    Loader,
    /// [`crate::rsdp_scan`] found it in the EBDA or the BIOS area.
    Scan,
    /// The UEFI configuration table (through the system table, tag 12).
    EfiSystemTable,
}

/// An EFI memory descriptor's type (UEFI 2.10 §7.2.3) as an e820 type,
/// for a machine whose boot services have been exited: loader and boot
/// services memory and conventional memory are RAM; ACPI reclaimable and
/// NVS keep their meaning; unusable is 5, persistent memory 7; runtime
/// services code and data, MMIO, MMIO port space, PAL code, reserved and
/// unknown types are reserved (2), never RAM. `boot_services_running`:
/// the loader kept boot services alive (tag 18), so their memory is not
/// free either.
pub fn efi_type_to_e820(efi: u32, boot_services_running: bool) -> u32 {
    match efi {
        1 | 2 | 7 => 1,
        3 | 4 if !boot_services_running => 1,
        9 => 3,
        10 => 4,
        8 => 5,
        14 => 7,
        _ => 2,
    }
}

/// What the loader told us.
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub protocol: &'static str,
    pub ram: [Range; MAX_RAM],
    pub ram_count: usize,
    pub map: [Region; MAX_MAP],
    pub map_count: usize,
    pub module: Option<Range>,
    pub cmdline: [u8; CMDLINE_MAX],
    pub cmdline_len: usize,
    pub rsdp: u64,
    pub rsdp_source: RsdpSource,
    pub firmware: Firmware,
    /// The 64-bit EFI system table (multiboot2 tag 12; 0: none).
    pub efi_system_table: u64,
    /// The boot information itself (page-rounded; not to be reused).
    pub info: Range,
}

impl BootInfo {
    pub fn ram(&self) -> &[Range] {
        &self.ram[..self.ram_count]
    }
    pub fn map(&self) -> &[Region] {
        &self.map[..self.map_count]
    }
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }

    /// `[pa, pa + len)` lies in the first MiB or in memory the memory map
    /// lists.
    pub fn in_memory(&self, pa: u64, len: u64) -> bool {
        pa.checked_add(len).is_some_and(|e| e <= 0x10_0000) || listed(self.map(), pa, len)
    }

    /// Append an entry; one that continues the previous entry of the same
    /// kind extends it (an EFI memory map lists RAM in many adjacent
    /// pieces, which would otherwise fill the fixed arrays).
    fn add_region(&mut self, start: u64, len: u64, ty: u32) {
        if len == 0 {
            return;
        }
        let kind = Kind::from_e820(ty);
        let end = start.saturating_add(len);
        match self.map[..self.map_count].last_mut() {
            Some(last) if last.kind == kind && last.end == start => last.end = end,
            _ if self.map_count < MAX_MAP => {
                self.map[self.map_count] = Region { start, end, kind };
                self.map_count += 1;
            }
            _ => {}
        }
        if kind != Kind::Ram {
            return;
        }
        match self.ram[..self.ram_count].last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ if self.ram_count < MAX_RAM => {
                self.ram[self.ram_count] = Range { start, end };
                self.ram_count += 1;
            }
            _ => {}
        }
    }

    /// Copy the NUL-terminated command line at `pa`, every byte checked.
    fn copy_cmdline(&mut self, mem: &impl PhysRead, pa: u64) -> Result<(), BootError> {
        if pa == 0 {
            return Ok(());
        }
        let mut n = 0;
        while n < CMDLINE_MAX - 1 {
            let at = pa.checked_add(n as u64).ok_or(BootError::CmdlineOutsideMemory)?;
            if !self.in_memory(at, 1) {
                return Err(BootError::CmdlineOutsideMemory);
            }
            let mut b = [0u8];
            mem.read(at, &mut b);
            if b[0] == 0 {
                break;
            }
            self.cmdline[n] = b[0];
            n += 1;
        }
        self.cmdline_len = n;
        Ok(())
    }
}

fn r32(mem: &impl PhysRead, pa: u64) -> u32 {
    let mut b = [0u8; 4];
    mem.read(pa, &mut b);
    u32::from_le_bytes(b)
}

fn r64(mem: &impl PhysRead, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    mem.read(pa, &mut b);
    u64::from_le_bytes(b)
}

/// Parse the boot information at `info_pa` (`magic` = the loader's `eax`).
pub fn parse(mem: &impl PhysRead, info_pa: u64, magic: u32) -> Result<BootInfo, BootError> {
    if info_pa == 0 || info_pa > u64::MAX - (1 << 21) {
        return Err(BootError::NullInfo);
    }
    let page = info_pa & !0xfff;
    let mut bi = BootInfo {
        protocol: "",
        ram: [Range { start: 0, end: 0 }; MAX_RAM],
        ram_count: 0,
        map: [Region::EMPTY; MAX_MAP],
        map_count: 0,
        module: None,
        cmdline: [0; CMDLINE_MAX],
        cmdline_len: 0,
        rsdp: 0,
        rsdp_source: RsdpSource::None,
        firmware: Firmware::Unknown,
        efi_system_table: 0,
        info: Range { start: page, end: page + 0x1000 },
    };
    let cmdline = if r32(mem, info_pa) == PVH_MAGIC {
        parse_pvh(mem, info_pa, &mut bi)?
    } else if magic == MB2_MAGIC {
        parse_mb2(mem, info_pa, &mut bi)?
    } else {
        return Err(BootError::UnknownFormat);
    };
    if !bi.in_memory(bi.info.start, bi.info.len()) {
        return Err(BootError::InfoOutsideMemory);
    }
    let efi_rsdp =
        || crate::rsdp_scan::from_efi_system_table(mem, bi.efi_system_table, |pa, len| bi.in_memory(pa, len));
    if bi.rsdp != 0 {
        bi.rsdp_source = RsdpSource::Loader;
    } else if let Some(pa) = efi_rsdp() {
        bi.rsdp = pa;
        bi.rsdp_source = RsdpSource::EfiSystemTable;
    } else if let Some(pa) = crate::rsdp_scan::scan(mem) {
        bi.rsdp = pa;
        bi.rsdp_source = RsdpSource::Scan;
    }
    bi.copy_cmdline(mem, cmdline)?;
    if let Some(m) = bi.module {
        if m.is_empty() || !bi.in_memory(m.start, m.len()) {
            return Err(BootError::ModuleOutsideMemory);
        }
    }
    Ok(bi)
}

/// `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`, version 1).
/// Returns the command line's address (0: none).
fn parse_pvh(mem: &impl PhysRead, pa: u64, bi: &mut BootInfo) -> Result<u64, BootError> {
    bi.protocol = "PVH";
    let version = r32(mem, pa + 4);
    let nr_modules = r32(mem, pa + 12);
    let modlist = r64(mem, pa + 16);
    let cmdline = r64(mem, pa + 24);
    bi.rsdp = r64(mem, pa + 32);
    if version < 1 {
        return Err(BootError::PvhVersion0);
    }
    let memmap = r64(mem, pa + 40);
    let entries = r32(mem, pa + 48);
    if memmap == 0 || entries == 0 || entries > MAX_PVH_ENTRIES || memmap > u64::MAX - MAX_PVH_ENTRIES as u64 * 24 {
        return Err(BootError::PvhMemoryMapImplausible);
    }
    for i in 0..entries as u64 {
        let e = memmap + i * 24;
        bi.add_region(r64(mem, e), r64(mem, e + 8), r32(mem, e + 16));
    }
    if bi.ram_count == 0 {
        return Err(BootError::NoRam);
    }
    if !bi.in_memory(memmap, entries as u64 * 24) {
        return Err(BootError::MemoryMapOutsideMemory);
    }
    if nr_modules > 0 && modlist != 0 {
        if !bi.in_memory(modlist, 32) {
            return Err(BootError::ModuleListOutsideMemory);
        }
        let start = r64(mem, modlist);
        let size = r64(mem, modlist + 8);
        bi.module = Some(Range { start, end: start.saturating_add(size) });
    }
    Ok(cmdline)
}

/// Multiboot2 information: a size, then 8-aligned tags.
/// Returns the command line's address (0: none).
fn parse_mb2(mem: &impl PhysRead, pa: u64, bi: &mut BootInfo) -> Result<u64, BootError> {
    bi.protocol = "multiboot2";
    bi.firmware = Firmware::Bios;
    let total = r32(mem, pa) as u64;
    if !(16..=(1 << 20)).contains(&total) {
        return Err(BootError::Mb2Size);
    }
    bi.info = Range { start: pa & !0xfff, end: (pa + total + 0xfff) & !0xfff };
    let mut off = 8u64;
    let mut cmdline = 0;
    let (mut rsdp_v1, mut rsdp_v2) = (0, 0);
    // The EFI memory map (tag, size) and whether boot services still run.
    let mut efi_map = None;
    let mut boot_services_running = false;
    let mut e820_map = false;
    while off + 8 <= total {
        let tag = pa + off;
        let ty = r32(mem, tag);
        let size = r32(mem, tag + 4) as u64;
        if size < 8 || off + size > total {
            return Err(BootError::Mb2TagOverrun);
        }
        // The fixed part each tag kept here must have.
        let least = match ty {
            3 => 16,
            6 | 17 => 16,
            14 => 8 + 20,
            15 => 8 + 36,
            11 | 12 => 12,
            _ => 8,
        };
        if size < least {
            return Err(BootError::Mb2TagTooSmall(ty));
        }
        match ty {
            0 => break,
            1 => cmdline = tag + 8,
            3 if bi.module.is_none() => {
                let start = r32(mem, tag + 8) as u64;
                let end = r32(mem, tag + 12) as u64;
                bi.module = Some(Range { start, end: end.max(start) });
            }
            6 => {
                let esize = r32(mem, tag + 8) as u64;
                if esize < 24 {
                    return Err(BootError::Mb2EntrySize);
                }
                e820_map = true;
                let mut e = tag + 16;
                while e + esize <= tag + size {
                    bi.add_region(r64(mem, e), r64(mem, e + 8), r32(mem, e + 16));
                    e += esize;
                }
            }
            12 => {
                bi.firmware = Firmware::Uefi;
                bi.efi_system_table = r64(mem, tag + 8);
            }
            11 | 19 | 20 => bi.firmware = Firmware::Uefi,
            17 => {
                bi.firmware = Firmware::Uefi;
                efi_map = Some((tag, size));
            }
            18 => boot_services_running = true,
            14 if rsdp_v1 == 0 => rsdp_v1 = tag + 8,
            15 if rsdp_v2 == 0 => rsdp_v2 = tag + 8,
            _ => {}
        }
        off = (off + size + 7) & !7;
    }
    bi.rsdp = if rsdp_v2 != 0 { rsdp_v2 } else { rsdp_v1 };
    if let (false, Some((tag, size))) = (e820_map, efi_map) {
        add_efi_map(mem, tag, size, boot_services_running, bi)?;
    }
    if bi.ram_count == 0 {
        return Err(BootError::NoRam);
    }
    Ok(cmdline)
}

/// Tag 17: descriptor size, descriptor version, then the EFI memory
/// descriptors (type, pad, physical start, virtual start, pages,
/// attributes).
fn add_efi_map(
    mem: &impl PhysRead,
    tag: u64,
    size: u64,
    boot_services_running: bool,
    bi: &mut BootInfo,
) -> Result<(), BootError> {
    let dsize = r32(mem, tag + 8) as u64;
    if dsize < 40 {
        return Err(BootError::Mb2EfiEntrySize);
    }
    let mut d = tag + 16;
    while d + dsize <= tag + size {
        let ty = efi_type_to_e820(r32(mem, d), boot_services_running);
        let start = r64(mem, d + 8);
        let bytes = r64(mem, d + 24).saturating_mul(4096);
        bi.add_region(start, bytes.min(u64::MAX - start), ty);
        d += dsize;
    }
    Ok(())
}
