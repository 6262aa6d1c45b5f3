//! The DMA Remapping Reporting table (VT-d specification, chapter 8).
//!
//! Layout: the ACPI header, host address width, flags, ten reserved bytes,
//! then remapping structures, each `type: u16, length: u16, ...`. DRHD,
//! RMRR, ATSR and SATC structures end in device scopes, each
//! `type: u8, length: u8, flags, reserved, enumeration id, start bus` and a
//! path of (device, function) pairs.

use super::{check_header, AcpiError, Problem, SdtHeader, SDT_HEADER_LEN};
use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

const TABLE: &str = "DMAR";

/// DMAR flags (byte 37).
pub const FLAG_INTR_REMAP: u8 = 1 << 0;
pub const FLAG_X2APIC_OPT_OUT: u8 = 1 << 1;
pub const FLAG_DMA_CTRL_PLATFORM_OPT_IN: u8 = 1 << 2;

/// DRHD flags.
pub const DRHD_INCLUDE_PCI_ALL: u8 = 1 << 0;

/// Remapping structure types.
pub const TYPE_DRHD: u16 = 0;
pub const TYPE_RMRR: u16 = 1;
pub const TYPE_ATSR: u16 = 2;
pub const TYPE_RHSA: u16 = 3;
pub const TYPE_ANDD: u16 = 4;
pub const TYPE_SATC: u16 = 5;

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct DmarFixed {
    host_address_width: u8,
    flags: u8,
    reserved: [u8; 10],
}
const DMAR_FIXED_END: usize = SDT_HEADER_LEN + 12;

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RemapHeader {
    kind: U16,
    length: U16,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct DrhdFixed {
    kind: U16,
    length: U16,
    flags: u8,
    size: u8,
    segment: U16,
    register_base: U64,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RmrrFixed {
    kind: U16,
    length: U16,
    reserved: U16,
    segment: U16,
    base: U64,
    limit: U64,
}

/// ATSR and SATC share this shape: flags, reserved, segment.
#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct SegmentScopedFixed {
    kind: U16,
    length: U16,
    flags: u8,
    reserved: u8,
    segment: U16,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct RhsaFixed {
    kind: U16,
    length: U16,
    reserved: U32,
    register_base: U64,
    proximity_domain: U32,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct AnddFixed {
    kind: U16,
    length: U16,
    reserved: [u8; 3],
    acpi_device_number: u8,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct ScopeFixed {
    kind: u8,
    length: u8,
    flags: u8,
    reserved: u8,
    enumeration_id: u8,
    start_bus: u8,
}
const SCOPE_FIXED_LEN: usize = 6;

fn err(offset: usize, field: &'static str, problem: Problem) -> AcpiError {
    AcpiError { table: TABLE, offset, field, problem }
}

/// A validated DMAR table.
#[derive(Clone, Copy, Debug)]
pub struct Dmar<'a> {
    pub header: SdtHeader,
    /// Maximum DMA physical address width in bits (the table stores N-1).
    pub host_address_width: u8,
    pub flags: u8,
    /// The table bytes (exactly `header.length` of them).
    bytes: &'a [u8],
}

impl<'a> Dmar<'a> {
    /// Parses and fully validates a DMAR table, every nested structure and
    /// device scope included.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AcpiError> {
        let (header, bytes) = check_header(bytes, TABLE, b"DMAR", DMAR_FIXED_END)?;
        let Ok((fixed, _)) = DmarFixed::read_from_prefix(&bytes[SDT_HEADER_LEN..]) else {
            // check_header guaranteed DMAR_FIXED_END bytes; kept as an error, not a panic.
            return Err(err(
                SDT_HEADER_LEN,
                "host_address_width",
                Problem::Truncated { needed: DMAR_FIXED_END, available: bytes.len() },
            ));
        };
        // The VT-d spec stores width - 1; anything past 64 bits is nonsense.
        if fixed.host_address_width >= 64 {
            return Err(err(
                SDT_HEADER_LEN,
                "host_address_width",
                Problem::InvalidValue {
                    value: fixed.host_address_width as u64,
                    rule: "host address width - 1 must be below 64",
                },
            ));
        }
        let dmar = Dmar { header, host_address_width: fixed.host_address_width + 1, flags: fixed.flags, bytes };
        for structure in dmar.raw_structures() {
            let structure = structure?;
            for scope in structure.scopes_raw() {
                scope?;
            }
        }
        Ok(dmar)
    }

    pub fn interrupt_remapping(&self) -> bool {
        self.flags & FLAG_INTR_REMAP != 0
    }
    pub fn x2apic_opt_out(&self) -> bool {
        self.flags & FLAG_X2APIC_OPT_OUT != 0
    }
    pub fn dma_ctrl_platform_opt_in(&self) -> bool {
        self.flags & FLAG_DMA_CTRL_PLATFORM_OPT_IN != 0
    }

    fn raw_structures(&self) -> RawStructures<'a> {
        RawStructures { bytes: self.bytes, offset: DMAR_FIXED_END }
    }

    /// All remapping structures, in table order.
    pub fn structures(&self) -> impl Iterator<Item = RemappingStructure<'a>> + 'a {
        // parse() walked this exact iterator and saw no error, so `ok()`
        // drops nothing; it only spares us an unreachable panic.
        self.raw_structures().map_while(|s| s.ok()).map(|s| s.decode())
    }

    pub fn drhds(&self) -> impl Iterator<Item = Drhd<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Drhd(d) => Some(d),
            _ => None,
        })
    }

    /// The unit that remaps requests of (segment, bus, device, function):
    /// a DRHD whose device scopes name it (an endpoint scope) or a bridge
    /// above it (a sub-hierarchy scope), else the segment's
    /// INCLUDE_PCI_ALL unit (VT-d spec 8.3.1). `bridge_buses` reads a
    /// bridge's (secondary, subordinate) bus numbers from configuration
    /// space, `None` when the function is not a bridge.
    pub fn unit_for(
        &self,
        segment: u16,
        bus: u8,
        device: u8,
        function: u8,
        mut bridge_buses: impl FnMut(u8, u8, u8) -> Option<(u8, u8)>,
    ) -> Option<Drhd<'a>> {
        let target = (bus, device, function);
        for unit in self.drhds().filter(|d| d.segment == segment && !d.include_pci_all()) {
            for scope in unit.scopes() {
                let Some(named) = scope.resolve(|b, d, f| bridge_buses(b, d, f).map(|(sec, _)| sec)) else {
                    continue;
                };
                match scope.kind {
                    ScopeKind::PciEndpoint if named == target => return Some(unit),
                    ScopeKind::PciSubHierarchy => {
                        if named == target {
                            return Some(unit);
                        }
                        if let Some((sec, sub)) = bridge_buses(named.0, named.1, named.2) {
                            if (sec..=sub).contains(&bus) {
                                return Some(unit);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        self.drhds().find(|d| d.segment == segment && d.include_pci_all())
    }

    pub fn rmrrs(&self) -> impl Iterator<Item = Rmrr<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            RemappingStructure::Rmrr(r) => Some(r),
            _ => None,
        })
    }
}

/// One remapping structure whose length has been checked, not yet decoded.
#[derive(Clone, Copy)]
struct RawStructure<'a> {
    kind: u16,
    /// Offset of the structure within the table.
    offset: usize,
    bytes: &'a [u8],
}

/// Size of the fixed part before device scopes, per type; `None` for types
/// without scopes (their fixed size is checked in `minimum_length`).
fn scopes_start(kind: u16) -> Option<usize> {
    match kind {
        TYPE_DRHD => Some(16),
        TYPE_RMRR => Some(24),
        TYPE_ATSR | TYPE_SATC => Some(8),
        _ => None,
    }
}

fn minimum_length(kind: u16) -> usize {
    match kind {
        TYPE_DRHD => 16,
        TYPE_RMRR => 24,
        TYPE_ATSR | TYPE_SATC => 8,
        TYPE_RHSA => 20,
        TYPE_ANDD => 8,
        _ => 4,
    }
}

fn structure_name(kind: u16) -> &'static str {
    match kind {
        TYPE_DRHD => "DRHD",
        TYPE_RMRR => "RMRR",
        TYPE_ATSR => "ATSR",
        TYPE_RHSA => "RHSA",
        TYPE_ANDD => "ANDD",
        TYPE_SATC => "SATC",
        _ => "remapping structure",
    }
}

fn length_field(kind: u16) -> &'static str {
    match kind {
        TYPE_DRHD => "DRHD.length",
        TYPE_RMRR => "RMRR.length",
        TYPE_ATSR => "ATSR.length",
        TYPE_RHSA => "RHSA.length",
        TYPE_ANDD => "ANDD.length",
        TYPE_SATC => "SATC.length",
        _ => "remapping structure length",
    }
}

struct RawStructures<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for RawStructures<'a> {
    type Item = Result<RawStructure<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let at = self.offset;
        // On any error, stop iterating afterwards: a bad length means we no
        // longer know where the next structure starts.
        let fail = |me: &mut Self, e| {
            me.offset = me.bytes.len();
            Some(Err(e))
        };
        let Ok((head, _)) = RemapHeader::read_from_prefix(rest) else {
            return fail(
                self,
                err(at, "remapping structure header", Problem::Truncated { needed: 4, available: rest.len() }),
            );
        };
        let kind = head.kind.get();
        let length = head.length.get() as usize;
        let minimum = minimum_length(kind);
        if length < minimum {
            return fail(self, err(at + 2, length_field(kind), Problem::LengthTooSmall { length, minimum }));
        }
        if length > rest.len() {
            return fail(
                self,
                err(at + 2, length_field(kind), Problem::LengthOverrun { length, remaining: rest.len() }),
            );
        }
        let raw = RawStructure { kind, offset: at, bytes: &rest[..length] };
        if let Err(e) = raw.check_fields() {
            return fail(self, e);
        }
        self.offset += length;
        Some(Ok(raw))
    }
}

impl<'a> RawStructure<'a> {
    /// Field rules beyond lengths (the VT-d spec, section 8.3 onwards).
    fn check_fields(&self) -> Result<(), AcpiError> {
        match self.kind {
            TYPE_DRHD => {
                let (d, _) = DrhdFixed::read_from_prefix(self.bytes).map_err(|_| self.short())?;
                if d.register_base.get() & 0xfff != 0 {
                    return Err(err(
                        self.offset + 8,
                        "DRHD.register_base",
                        Problem::InvalidValue {
                            value: d.register_base.get(),
                            rule: "register base must be 4 KiB aligned",
                        },
                    ));
                }
            }
            TYPE_RMRR => {
                let (r, _) = RmrrFixed::read_from_prefix(self.bytes).map_err(|_| self.short())?;
                let (base, limit) = (r.base.get(), r.limit.get());
                if base & 0xfff != 0 {
                    return Err(err(
                        self.offset + 8,
                        "RMRR.base",
                        Problem::InvalidValue { value: base, rule: "RMRR base must be 4 KiB aligned" },
                    ));
                }
                if limit & 0xfff != 0xfff {
                    return Err(err(
                        self.offset + 16,
                        "RMRR.limit",
                        Problem::InvalidValue {
                            value: limit,
                            rule: "RMRR limit must be the last byte of a 4 KiB page",
                        },
                    ));
                }
                if limit < base {
                    return Err(err(
                        self.offset + 16,
                        "RMRR.limit",
                        Problem::InvalidValue { value: limit, rule: "RMRR limit must not be below its base" },
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn short(&self) -> AcpiError {
        err(
            self.offset,
            structure_name(self.kind),
            Problem::Truncated { needed: minimum_length(self.kind), available: self.bytes.len() },
        )
    }

    fn scopes_raw(&self) -> RawScopes<'a> {
        match scopes_start(self.kind) {
            Some(start) => {
                RawScopes { owner: structure_name(self.kind), bytes: self.bytes, base: self.offset, offset: start }
            }
            None => RawScopes { owner: "", bytes: &[], base: self.offset, offset: 0 },
        }
    }

    fn scopes(&self) -> DeviceScopes<'a> {
        DeviceScopes { raw: self.scopes_raw() }
    }

    fn decode(&self) -> RemappingStructure<'a> {
        let b = self.bytes;
        match self.kind {
            TYPE_DRHD => match DrhdFixed::read_from_prefix(b) {
                Ok((d, _)) => RemappingStructure::Drhd(Drhd {
                    flags: d.flags,
                    register_set_size_log2_pages: d.size,
                    segment: d.segment.get(),
                    register_base: d.register_base.get(),
                    scopes: self.scopes(),
                }),
                Err(_) => self.other(),
            },
            TYPE_RMRR => match RmrrFixed::read_from_prefix(b) {
                Ok((r, _)) => RemappingStructure::Rmrr(Rmrr {
                    segment: r.segment.get(),
                    base: r.base.get(),
                    limit: r.limit.get(),
                    scopes: self.scopes(),
                }),
                Err(_) => self.other(),
            },
            TYPE_ATSR | TYPE_SATC => match SegmentScopedFixed::read_from_prefix(b) {
                Ok((a, _)) => {
                    let s = SegmentScoped { flags: a.flags, segment: a.segment.get(), scopes: self.scopes() };
                    if self.kind == TYPE_ATSR {
                        RemappingStructure::Atsr(s)
                    } else {
                        RemappingStructure::Satc(s)
                    }
                }
                Err(_) => self.other(),
            },
            TYPE_RHSA => match RhsaFixed::read_from_prefix(b) {
                Ok((r, _)) => RemappingStructure::Rhsa(Rhsa {
                    register_base: r.register_base.get(),
                    proximity_domain: r.proximity_domain.get(),
                }),
                Err(_) => self.other(),
            },
            TYPE_ANDD => match AnddFixed::read_from_prefix(b) {
                Ok((a, name)) => {
                    // The name is NUL-terminated inside the structure.
                    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                    RemappingStructure::Andd(Andd {
                        acpi_device_number: a.acpi_device_number,
                        object_name: &name[..end],
                    })
                }
                Err(_) => self.other(),
            },
            _ => self.other(),
        }
    }

    fn other(&self) -> RemappingStructure<'a> {
        RemappingStructure::Unknown { kind: self.kind, bytes: self.bytes }
    }
}

/// A decoded remapping structure.
#[derive(Clone, Copy, Debug)]
pub enum RemappingStructure<'a> {
    Drhd(Drhd<'a>),
    Rmrr(Rmrr<'a>),
    Atsr(SegmentScoped<'a>),
    Rhsa(Rhsa),
    Andd(Andd<'a>),
    Satc(SegmentScoped<'a>),
    /// A type this parser does not know; its length was still checked so
    /// the walk could step over it (newer firmware adds types).
    Unknown {
        kind: u16,
        bytes: &'a [u8],
    },
}

/// DMA-remapping hardware unit definition: one VT-d unit.
#[derive(Clone, Copy, Debug)]
pub struct Drhd<'a> {
    pub flags: u8,
    /// Size of the register set as log2 of 4 KiB pages (0 on older firmware).
    pub register_set_size_log2_pages: u8,
    pub segment: u16,
    /// Physical address of the unit's registers (4 KiB aligned).
    pub register_base: u64,
    scopes: DeviceScopes<'a>,
}

impl<'a> Drhd<'a> {
    /// The unit covers every PCI device of its segment not claimed by
    /// another unit (the scopes then list only IOAPICs/HPETs).
    pub fn include_pci_all(&self) -> bool {
        self.flags & DRHD_INCLUDE_PCI_ALL != 0
    }
    pub fn scopes(&self) -> DeviceScopes<'a> {
        self.scopes
    }
}

/// Reserved memory region reporting: memory some device DMAs to behind the
/// OS's back (USB legacy emulation, graphics); it must stay identity-mapped
/// for the listed devices.
#[derive(Clone, Copy, Debug)]
pub struct Rmrr<'a> {
    pub segment: u16,
    pub base: u64,
    /// Inclusive end address.
    pub limit: u64,
    scopes: DeviceScopes<'a>,
}

impl<'a> Rmrr<'a> {
    pub fn scopes(&self) -> DeviceScopes<'a> {
        self.scopes
    }
}

/// ATSR (root ports supporting ATS) or SATC (SoC integrated address
/// translation cache): flags, segment and scopes.
#[derive(Clone, Copy, Debug)]
pub struct SegmentScoped<'a> {
    pub flags: u8,
    pub segment: u16,
    scopes: DeviceScopes<'a>,
}

impl<'a> SegmentScoped<'a> {
    pub fn scopes(&self) -> DeviceScopes<'a> {
        self.scopes
    }
}

/// Remapping hardware static affinity (NUMA node of a unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rhsa {
    pub register_base: u64,
    pub proximity_domain: u32,
}

/// ACPI namespace device declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Andd<'a> {
    pub acpi_device_number: u8,
    pub object_name: &'a [u8],
}

/// What a device scope names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    PciEndpoint,
    PciSubHierarchy,
    IoApic,
    MsiCapableHpet,
    AcpiNamespaceDevice,
    Unknown(u8),
}

impl From<u8> for ScopeKind {
    fn from(v: u8) -> Self {
        match v {
            1 => ScopeKind::PciEndpoint,
            2 => ScopeKind::PciSubHierarchy,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::MsiCapableHpet,
            5 => ScopeKind::AcpiNamespaceDevice,
            other => ScopeKind::Unknown(other),
        }
    }
}

/// A device scope: a path from `start_bus` through bridges to a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceScope<'a> {
    pub kind: ScopeKind,
    pub flags: u8,
    /// IOAPIC id, HPET number or ACPI device number, depending on `kind`.
    pub enumeration_id: u8,
    pub start_bus: u8,
    /// (device, function) pairs, at least one; validated even-length.
    path: &'a [u8],
}

impl<'a> DeviceScope<'a> {
    /// The path's (device, function) hops, first hop on `start_bus`.
    pub fn path(&self) -> impl Iterator<Item = (u8, u8)> + 'a {
        self.path.chunks_exact(2).map(|p| (p[0], p[1]))
    }

    pub fn path_len(&self) -> usize {
        self.path.len() / 2
    }

    /// Follows the path to the (bus, device, function) it names.
    /// `secondary_bus` reads the secondary bus number of the bridge at a
    /// (bus, device, function) from PCI configuration space; it returns
    /// `None` if that function is not a bridge, and so does this.
    pub fn resolve(&self, mut secondary_bus: impl FnMut(u8, u8, u8) -> Option<u8>) -> Option<(u8, u8, u8)> {
        let mut bus = self.start_bus;
        let mut hops = self.path();
        let mut hop = hops.next()?;
        for next in hops {
            bus = secondary_bus(bus, hop.0, hop.1)?;
            hop = next;
        }
        Some((bus, hop.0, hop.1))
    }
}

/// Iterator over validated device scopes.
#[derive(Clone, Copy, Debug)]
pub struct DeviceScopes<'a> {
    raw: RawScopes<'a>,
}

impl<'a> Iterator for DeviceScopes<'a> {
    type Item = DeviceScope<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        self.raw.next()?.ok()
    }
}

#[derive(Clone, Copy, Debug)]
struct RawScopes<'a> {
    owner: &'static str,
    /// The enclosing structure's bytes.
    bytes: &'a [u8],
    /// Offset of the enclosing structure in the table, for errors.
    base: usize,
    offset: usize,
}

fn scope_field(owner: &'static str, field: ScopeField) -> &'static str {
    match (owner, field) {
        ("DRHD", ScopeField::Header) => "DRHD device scope",
        ("DRHD", ScopeField::Length) => "DRHD device scope length",
        ("RMRR", ScopeField::Header) => "RMRR device scope",
        ("RMRR", ScopeField::Length) => "RMRR device scope length",
        ("ATSR", ScopeField::Header) => "ATSR device scope",
        ("ATSR", ScopeField::Length) => "ATSR device scope length",
        ("SATC", ScopeField::Header) => "SATC device scope",
        ("SATC", ScopeField::Length) => "SATC device scope length",
        (_, ScopeField::Header) => "device scope",
        (_, ScopeField::Length) => "device scope length",
    }
}

#[derive(Clone, Copy)]
enum ScopeField {
    Header,
    Length,
}

impl<'a> Iterator for RawScopes<'a> {
    type Item = Result<DeviceScope<'a>, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..)?;
        if rest.is_empty() {
            return None;
        }
        let at = self.base + self.offset;
        let owner = self.owner;
        let fail = |me: &mut Self, e| {
            me.offset = me.bytes.len();
            Some(Err(e))
        };
        let Ok((s, _)) = ScopeFixed::read_from_prefix(rest) else {
            return fail(
                self,
                err(
                    at,
                    scope_field(owner, ScopeField::Header),
                    Problem::Truncated { needed: SCOPE_FIXED_LEN, available: rest.len() },
                ),
            );
        };
        let length = s.length as usize;
        let field = scope_field(owner, ScopeField::Length);
        // At least one (device, function) hop: a zero or header-only length
        // would name nothing (and a zero length would never advance).
        let minimum = SCOPE_FIXED_LEN + 2;
        if length < minimum {
            return fail(self, err(at + 1, field, Problem::LengthTooSmall { length, minimum }));
        }
        if !(length - SCOPE_FIXED_LEN).is_multiple_of(2) {
            return fail(
                self,
                err(at + 1, field, Problem::LengthNotMultiple { length: length - SCOPE_FIXED_LEN, unit: 2 }),
            );
        }
        if length > rest.len() {
            return fail(self, err(at + 1, field, Problem::LengthOverrun { length, remaining: rest.len() }));
        }
        for (i, hop) in rest[SCOPE_FIXED_LEN..length].chunks_exact(2).enumerate() {
            if hop[0] > 31 || hop[1] > 7 {
                return fail(
                    self,
                    err(
                        at + SCOPE_FIXED_LEN + 2 * i,
                        "device scope path",
                        Problem::InvalidValue {
                            value: ((hop[0] as u64) << 8) | hop[1] as u64,
                            rule: "path entries are (device <= 31, function <= 7)",
                        },
                    ),
                );
            }
        }
        self.offset += length;
        Some(Ok(DeviceScope {
            kind: ScopeKind::from(s.kind),
            flags: s.flags,
            enumeration_id: s.enumeration_id,
            start_bus: s.start_bus,
            path: &rest[SCOPE_FIXED_LEN..length],
        }))
    }
}
