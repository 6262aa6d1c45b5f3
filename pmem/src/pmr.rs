//! NVMe Persistent Memory Region (PMR) registers (NVMe 1.4, section 3.1):
//! decoding what a controller offers, and the values a driver writes to
//! enable it. The PMR is a BAR (`bir`) whose contents persist; once
//! enabled it is mapped into an application like any persistent region,
//! with writes made durable by a read from it (or by PMRSTS) after a
//! fence, as the write-barrier mechanisms reported here say.

/// Register offsets in the controller's BAR 0.
pub const PMRCAP: usize = 0xE00;
pub const PMRCTL: usize = 0xE04;
pub const PMRSTS: usize = 0xE08;
pub const PMREBS: usize = 0xE0C;
pub const PMRSWTP: usize = 0xE10;
pub const PMRMSCL: usize = 0xE14;
pub const PMRMSCU: usize = 0xE18;

/// CAP.PMRS (bit 56 of the 64-bit CAP register): the PMR registers exist.
pub fn cap_has_pmr(cap: u64) -> bool {
    cap & (1 << 56) != 0
}

/// PMRCAP decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmrCap {
    pub read_data_support: bool,
    pub write_data_support: bool,
    /// Which BAR holds the region (2..=5 are valid).
    pub bir: u8,
    pub time_units: u8,
    /// Write-barrier mechanisms (bit 0: completion of a read from the PMR;
    /// bit 1: a read of PMRSTS).
    pub write_barrier_mechanisms: u8,
    /// Timeout for enabling, in `time_units` (500 ms or minutes).
    pub timeout: u8,
    pub controller_memory_space_supported: bool,
}

impl PmrCap {
    pub fn decode(v: u32) -> PmrCap {
        PmrCap {
            read_data_support: v & (1 << 3) != 0,
            write_data_support: v & (1 << 4) != 0,
            bir: ((v >> 5) & 7) as u8,
            time_units: ((v >> 8) & 3) as u8,
            write_barrier_mechanisms: ((v >> 10) & 0xF) as u8,
            timeout: ((v >> 16) & 0xFF) as u8,
            controller_memory_space_supported: v & (1 << 24) != 0,
        }
    }

    /// Whether the region is usable as persistent memory by loads/stores.
    pub fn usable(&self) -> bool {
        self.read_data_support && self.write_data_support && (2..=5).contains(&self.bir)
    }
}

/// PMRSTS decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmrStatus {
    pub error: u8,
    pub not_ready: bool,
    pub health: u8,
    pub controller_base_address_invalid: bool,
}

impl PmrStatus {
    pub fn decode(v: u32) -> PmrStatus {
        PmrStatus {
            error: (v & 0xFF) as u8,
            not_ready: v & (1 << 8) != 0,
            health: ((v >> 9) & 7) as u8,
            controller_base_address_invalid: v & (1 << 12) != 0,
        }
    }
}

/// PMRCTL value that enables the region.
pub const PMRCTL_ENABLE: u32 = 1;

/// PMREBS: the elasticity buffer size in bytes, if it fits a u64.
pub fn elasticity_buffer_bytes(pmrebs: u32) -> Option<u64> {
    let units = pmrebs & 0xF;
    let size = (pmrebs >> 8) as u64;
    // 0 = bytes, 1 = KiB, 2 = MiB, 3 = GiB.
    (units <= 3).then(|| size << (10 * units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_qemu_pmrcap() {
        // A value of the kind QEMU's `-device nvme,pmrdev=...` reports:
        // RDS, WDS, BIR=4, PMRWBM=2 (read of PMRSTS), CMSS.
        let v = (1 << 3) | (1 << 4) | (4 << 5) | (0b10 << 10) | (1 << 24);
        let c = PmrCap::decode(v);
        assert!(c.usable());
        assert_eq!(c.bir, 4);
        assert_eq!(c.write_barrier_mechanisms, 2);
        assert!(!PmrCap::decode(v & !(1 << 4)).usable());
        assert!(!PmrCap::decode((v & !(7 << 5)) | (1 << 5)).usable(), "BAR 1 is not valid");
        let s = PmrStatus::decode(1 << 8);
        assert!(s.not_ready && s.error == 0);
        assert!(cap_has_pmr(1 << 56));
        assert_eq!(elasticity_buffer_bytes((3 << 8) | 2), Some(3 << 20));
        assert_eq!(elasticity_buffer_bytes(5), None);
    }
}
