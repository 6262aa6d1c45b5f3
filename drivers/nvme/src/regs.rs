//! Controller registers (NVMe base specification 2.0, section 3.1).

pub const CAP: u64 = 0x00;
pub const VS: u64 = 0x08;
pub const INTMS: u64 = 0x0c;
pub const INTMC: u64 = 0x10;
pub const CC: u64 = 0x14;
pub const CSTS: u64 = 0x1c;
pub const AQA: u64 = 0x24;
pub const ASQ: u64 = 0x28;
pub const ACQ: u64 = 0x30;
pub const DOORBELL_BASE: u64 = 0x1000;

const fn bits(v: u64, lo: u32, width: u32) -> u64 {
    (v >> lo) & ((1u64 << width) - 1)
}

/// Controller capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum entries per queue (the field is 0-based).
    pub const fn max_queue_entries(self) -> u32 {
        bits(self.0, 0, 16) as u32 + 1
    }
    /// Queues must be physically contiguous.
    pub const fn contiguous_queues_required(self) -> bool {
        bits(self.0, 16, 1) != 0
    }
    /// Worst-case time for CSTS.RDY to change, in milliseconds (500 ms units).
    pub const fn timeout_ms(self) -> u32 {
        bits(self.0, 24, 8) as u32 * 500
    }
    /// Doorbell stride: doorbells are 4 << DSTRD bytes apart.
    pub const fn doorbell_stride(self) -> u32 {
        4 << bits(self.0, 32, 4)
    }
    pub const fn nvm_command_set(self) -> bool {
        bits(self.0, 37, 8) & 1 != 0
    }
    /// Smallest memory page size, bytes (2^(12 + MPSMIN)).
    pub const fn min_page_size(self) -> u32 {
        1 << (12 + bits(self.0, 48, 4))
    }
    pub const fn max_page_size(self) -> u32 {
        1 << (12 + bits(self.0, 52, 4))
    }
    /// Persistent memory region supported.
    pub const fn pmr_supported(self) -> bool {
        bits(self.0, 56, 1) != 0
    }
}

/// Offset of the submission queue `qid` tail doorbell.
pub const fn sq_tail_doorbell(qid: u16, cap: Cap) -> u64 {
    DOORBELL_BASE + (2 * qid as u64) * cap.doorbell_stride() as u64
}

/// Offset of the completion queue `qid` head doorbell.
pub const fn cq_head_doorbell(qid: u16, cap: Cap) -> u64 {
    DOORBELL_BASE + (2 * qid as u64 + 1) * cap.doorbell_stride() as u64
}

/// Controller configuration.
pub mod cc {
    pub const ENABLE: u32 = 1 << 0;
    /// Shutdown notification: normal.
    pub const SHUTDOWN_NORMAL: u32 = 1 << 14;

    /// CC for the NVM command set, `page_size` memory pages (a power of
    /// two >= 4096), 64-byte SQ entries (IOSQES = 6) and 16-byte CQ
    /// entries (IOCQES = 4), round-robin arbitration.
    pub const fn value(page_size: u32, enable: bool) -> u32 {
        let mps = page_size.trailing_zeros() - 12;
        (enable as u32) | mps << 7 | 6 << 16 | 4 << 20
    }
}

/// Controller status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csts(pub u32);

impl Csts {
    pub const fn ready(self) -> bool {
        self.0 & 1 != 0
    }
    /// Controller fatal status: the controller gave up; only a reset helps.
    pub const fn fatal(self) -> bool {
        self.0 & 2 != 0
    }
    /// Shutdown status: 0 normal, 1 in progress, 2 complete.
    pub const fn shutdown_status(self) -> u32 {
        (self.0 >> 2) & 3
    }
}

/// AQA for admin queues of the given sizes (fields are 0-based).
pub const fn aqa_value(sq_entries: u16, cq_entries: u16) -> u32 {
    (sq_entries as u32 - 1) | (cq_entries as u32 - 1) << 16
}
