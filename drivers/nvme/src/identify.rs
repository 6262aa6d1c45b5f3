//! Identify data structures (NVMe base spec 5.17.2.1; NVM command set
//! spec 4.1.5.1).

/// Why identify data was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifyError {
    /// Fewer than 4096 bytes.
    Short { len: usize },
    /// SQES/CQES do not allow 64-byte / 16-byte entries.
    UnsupportedEntrySize { sqes: u8, cqes: u8 },
    /// FLBAS selects a format beyond NLBAF.
    FormatIndexOutOfRange { index: u8, count: u8 },
    /// LBADS outside 512 B ..= 64 KiB (spec: at least 9).
    BadBlockSize { lbads: u8 },
    /// NSZE is zero: an inactive namespace.
    EmptyNamespace,
}

pub const IDENTIFY_BYTES: usize = 4096;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    le32(b, at) as u64 | (le32(b, at + 4) as u64) << 32
}

/// The fields of Identify Controller a driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerInfo {
    pub vendor_id: u16,
    pub serial: [u8; 20],
    pub model: [u8; 40],
    pub firmware: [u8; 8],
    /// Maximum data transfer size as a power of two of CAP.MPSMIN pages;
    /// 0 means no limit.
    pub mdts: u8,
    pub controller_id: u16,
    pub version: u32,
    /// Number of namespaces (highest valid NSID).
    pub namespace_count: u32,
    /// Optional NVM commands supported (ONCS).
    pub optional_commands: u16,
    /// A volatile write cache is present (Flush is meaningful).
    pub volatile_write_cache: bool,
}

impl ControllerInfo {
    pub fn parse(b: &[u8]) -> Result<ControllerInfo, IdentifyError> {
        if b.len() < IDENTIFY_BYTES {
            return Err(IdentifyError::Short { len: b.len() });
        }
        // SQES (byte 512) and CQES (513): low nibble required size, high
        // nibble maximum, both log2. We always use 64 and 16 bytes.
        let (sqes, cqes) = (b[512], b[513]);
        let fits = |v: u8, want: u8| (v & 0xf) <= want && want <= (v >> 4);
        if !fits(sqes, 6) || !fits(cqes, 4) {
            return Err(IdentifyError::UnsupportedEntrySize { sqes, cqes });
        }
        let mut serial = [0; 20];
        serial.copy_from_slice(&b[4..24]);
        let mut model = [0; 40];
        model.copy_from_slice(&b[24..64]);
        let mut firmware = [0; 8];
        firmware.copy_from_slice(&b[64..72]);
        Ok(ControllerInfo {
            vendor_id: le16(b, 0),
            serial,
            model,
            firmware,
            mdts: b[77],
            controller_id: le16(b, 78),
            version: le32(b, 80),
            namespace_count: le32(b, 516),
            optional_commands: le16(b, 520),
            volatile_write_cache: b[525] & 1 != 0,
        })
    }

    /// Largest transfer in bytes, given CAP's minimum page size; `None`
    /// when the controller sets no limit.
    pub fn max_transfer_bytes(&self, min_page_size: u32) -> Option<u64> {
        if self.mdts == 0 {
            None
        } else {
            Some((min_page_size as u64).checked_shl(self.mdts as u32).unwrap_or(u64::MAX))
        }
    }

    /// The model string without its space padding.
    pub fn model_str(&self) -> &str {
        core::str::from_utf8(&self.model).unwrap_or("").trim_end()
    }

    /// The serial number without its space (or NUL) padding; `""` if it
    /// is not ASCII text.
    pub fn serial_str(&self) -> &str {
        serial_text(&self.serial)
    }

    /// Whether this is the controller whose serial number is `want`
    /// (compared without the padding; an empty `want` matches nothing).
    pub fn is_serial(&self, want: &str) -> bool {
        serial_matches(&self.serial, want)
    }
}

/// An Identify Controller serial field (SN, 20 ASCII bytes, space padded)
/// as text; `""` if it is not printable ASCII.
pub fn serial_text(field: &[u8; 20]) -> &str {
    let s = core::str::from_utf8(field).unwrap_or("");
    let s = s.trim_end_matches([' ', '\0']);
    if s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        s
    } else {
        ""
    }
}

/// Device choice by what the controller says it is: its serial field
/// names `want` exactly (padding aside). Empty names never match, so a
/// controller with a blank serial is never mistaken for a chosen one.
pub fn serial_matches(field: &[u8; 20], want: &str) -> bool {
    let have = serial_text(field);
    !want.is_empty() && have == want
}

/// Identify Primary Controller Capabilities (CNS 14h): how the primary
/// controller's flexible resources can be given to its secondary
/// (SR-IOV virtual function) controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryControllerCaps {
    pub controller_id: u16,
    /// VQFRT: flexible queue resources in all.
    pub vq_flexible_total: u32,
    /// VQPRT: private queue resources of the primary.
    pub vq_private: u16,
    /// VQFRSM: at most this many flexible queue resources per secondary
    /// (its admin queue included).
    pub vq_max_per_secondary: u16,
    /// VIFRT: flexible interrupt resources in all.
    pub vi_flexible_total: u32,
    /// VIFRSM: at most this many flexible interrupt resources per secondary.
    pub vi_max_per_secondary: u16,
}

impl PrimaryControllerCaps {
    pub fn parse(b: &[u8]) -> Result<PrimaryControllerCaps, IdentifyError> {
        if b.len() < IDENTIFY_BYTES {
            return Err(IdentifyError::Short { len: b.len() });
        }
        Ok(PrimaryControllerCaps {
            controller_id: le16(b, 0),
            vq_flexible_total: le32(b, 32),
            vq_private: le16(b, 42),
            vq_max_per_secondary: le16(b, 44),
            vi_flexible_total: le32(b, 64),
            vi_max_per_secondary: le16(b, 76),
        })
    }
}

/// One LBA format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata bytes per block.
    pub metadata_size: u16,
    /// log2 of the data block size.
    pub lbads: u8,
    /// Relative performance (0 = best).
    pub relative_performance: u8,
}

/// The fields of Identify Namespace a driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Size in logical blocks.
    pub size: u64,
    pub capacity: u64,
    pub utilization: u64,
    /// The format in use (FLBAS).
    pub format: LbaFormat,
    pub format_index: u8,
    pub format_count: u8,
}

impl NamespaceInfo {
    pub fn parse(b: &[u8]) -> Result<NamespaceInfo, IdentifyError> {
        if b.len() < IDENTIFY_BYTES {
            return Err(IdentifyError::Short { len: b.len() });
        }
        let size = le64(b, 0);
        if size == 0 {
            return Err(IdentifyError::EmptyNamespace);
        }
        // NLBAF (byte 25) is 0-based. FLBAS (26): bits 3:0 the index, bits
        // 6:5 its upper bits when more than 16 formats exist.
        let format_count = b[25].saturating_add(1);
        let flbas = b[26];
        let index = (flbas & 0xf) | ((flbas >> 5) & 3) << 4;
        if index >= format_count || index >= 64 {
            return Err(IdentifyError::FormatIndexOutOfRange { index, count: format_count });
        }
        let raw = le32(b, 128 + 4 * index as usize);
        let format = LbaFormat {
            metadata_size: raw as u16,
            lbads: (raw >> 16) as u8,
            relative_performance: ((raw >> 24) & 3) as u8,
        };
        if !(9..=16).contains(&format.lbads) {
            return Err(IdentifyError::BadBlockSize { lbads: format.lbads });
        }
        Ok(NamespaceInfo {
            size,
            capacity: le64(b, 8),
            utilization: le64(b, 16),
            format,
            format_index: index,
            format_count,
        })
    }

    pub const fn block_size(&self) -> u32 {
        1 << self.format.lbads
    }
}

/// One entry of the secondary controller list (an SR-IOV virtual
/// function's controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecondaryController {
    pub id: u16,
    pub primary_id: u16,
    pub online: bool,
    /// The PCIe virtual function number (1-based) this controller is.
    pub virtual_function: u16,
    /// Flexible queue pairs and interrupt vectors assigned.
    pub queues: u16,
    pub interrupts: u16,
}

/// The secondary controller list (Identify CNS 15h): up to 127 entries of
/// 32 bytes after a 32-byte header whose first byte is the count.
pub struct SecondaryControllerList<'a> {
    page: &'a [u8],
    count: usize,
}

pub const MAX_SECONDARY_CONTROLLERS: usize = 127;

impl<'a> SecondaryControllerList<'a> {
    pub fn parse(page: &'a [u8]) -> Result<Self, IdentifyError> {
        if page.len() < IDENTIFY_BYTES {
            return Err(IdentifyError::Short { len: page.len() });
        }
        let count = page[0] as usize;
        if count > MAX_SECONDARY_CONTROLLERS {
            return Err(IdentifyError::FormatIndexOutOfRange {
                index: page[0],
                count: MAX_SECONDARY_CONTROLLERS as u8,
            });
        }
        Ok(SecondaryControllerList { page, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = SecondaryController> + 'a {
        let page = self.page;
        (0..self.count).map(move |i| {
            let e = &page[32 + 32 * i..32 + 32 * (i + 1)];
            SecondaryController {
                id: le16(e, 0),
                primary_id: le16(e, 2),
                online: e[4] & 1 != 0,
                virtual_function: le16(e, 8),
                queues: le16(e, 10),
                interrupts: le16(e, 12),
            }
        })
    }
}
