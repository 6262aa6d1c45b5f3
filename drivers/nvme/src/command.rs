//! Submission queue entries (NVMe base spec 4.2; NVM command set spec).
//!
//! Every builder leaves the command id 0: the queue that submits the
//! command assigns it.

/// Admin opcodes.
pub mod admin {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const VIRTUALIZATION_MANAGEMENT: u8 = 0x1c;
}

/// NVM command set opcodes.
pub mod nvm {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
}

/// Identify CNS values.
pub mod cns {
    pub const NAMESPACE: u8 = 0x00;
    pub const CONTROLLER: u8 = 0x01;
    pub const ACTIVE_NAMESPACES: u8 = 0x02;
    pub const PRIMARY_CONTROLLER_CAPABILITIES: u8 = 0x14;
    pub const SECONDARY_CONTROLLERS: u8 = 0x15;
}

/// Virtualization Management actions (NVMe base spec 5.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtAction {
    /// Set how many flexible resources the primary controller keeps.
    PrimaryFlexible = 0x1,
    SecondaryOffline = 0x7,
    /// Give a (offline) secondary controller `count` flexible resources.
    SecondaryAssign = 0x8,
    SecondaryOnline = 0x9,
}

/// Flexible resource types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtResource {
    /// Queue pairs.
    Queues = 0,
    /// Interrupt vectors.
    Interrupts = 1,
}

pub const FEATURE_NUMBER_OF_QUEUES: u8 = 0x07;

/// A 64-byte submission queue entry as sixteen dwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Command {
    pub dw: [u32; 16],
}

impl Command {
    pub const BYTES: usize = 64;

    fn new(opcode: u8, nsid: u32) -> Command {
        let mut dw = [0; 16];
        // PSDT (bits 15:14) = 00: PRPs, not SGLs. FUSE = 00.
        dw[0] = opcode as u32;
        dw[1] = nsid;
        Command { dw }
    }

    pub const fn opcode(&self) -> u8 {
        self.dw[0] as u8
    }
    pub const fn cid(&self) -> u16 {
        (self.dw[0] >> 16) as u16
    }
    pub fn set_cid(&mut self, cid: u16) {
        self.dw[0] = (self.dw[0] & 0xffff) | (cid as u32) << 16;
    }
    pub const fn nsid(&self) -> u32 {
        self.dw[1]
    }
    pub const fn prp1(&self) -> u64 {
        self.dw[6] as u64 | (self.dw[7] as u64) << 32
    }
    pub const fn prp2(&self) -> u64 {
        self.dw[8] as u64 | (self.dw[9] as u64) << 32
    }
    pub fn set_prps(&mut self, prp1: u64, prp2: u64) {
        self.dw[6] = prp1 as u32;
        self.dw[7] = (prp1 >> 32) as u32;
        self.dw[8] = prp2 as u32;
        self.dw[9] = (prp2 >> 32) as u32;
    }

    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0; 64];
        for (chunk, dw) in b.chunks_exact_mut(4).zip(self.dw) {
            chunk.copy_from_slice(&dw.to_le_bytes());
        }
        b
    }

    pub fn from_bytes(b: &[u8; 64]) -> Command {
        let mut dw = [0; 16];
        for (d, chunk) in dw.iter_mut().zip(b.chunks_exact(4)) {
            *d = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Command { dw }
    }

    /// Identify Controller into the 4 KiB buffer at `buffer`.
    pub fn identify_controller(buffer: u64) -> Command {
        let mut c = Command::new(admin::IDENTIFY, 0);
        c.set_prps(buffer, 0);
        c.dw[10] = cns::CONTROLLER as u32;
        c
    }

    /// Identify Namespace `nsid` into the 4 KiB buffer at `buffer`.
    pub fn identify_namespace(nsid: u32, buffer: u64) -> Command {
        let mut c = Command::new(admin::IDENTIFY, nsid);
        c.set_prps(buffer, 0);
        c.dw[10] = cns::NAMESPACE as u32;
        c
    }

    /// Active namespace id list (ids above `after`).
    pub fn identify_active_namespaces(after: u32, buffer: u64) -> Command {
        let mut c = Command::new(admin::IDENTIFY, after);
        c.set_prps(buffer, 0);
        c.dw[10] = cns::ACTIVE_NAMESPACES as u32;
        c
    }

    /// Primary controller capabilities (CNS 14h) of this controller.
    pub fn identify_primary_controller_caps(buffer: u64) -> Command {
        let mut c = Command::new(admin::IDENTIFY, 0);
        c.set_prps(buffer, 0);
        c.dw[10] = cns::PRIMARY_CONTROLLER_CAPABILITIES as u32;
        c
    }

    /// Secondary controller list (CNS 15h): controllers with id >= `from`.
    pub fn identify_secondary_controllers(from: u16, buffer: u64) -> Command {
        let mut c = Command::new(admin::IDENTIFY, 0);
        c.set_prps(buffer, 0);
        c.dw[10] = cns::SECONDARY_CONTROLLERS as u32 | (from as u32) << 16;
        c
    }

    /// Virtualization Management: `action` on controller `cntlid` with
    /// `count` resources of type `resource` (ignored by online/offline).
    pub fn virtualization_management(action: VirtAction, resource: VirtResource, cntlid: u16, count: u16) -> Command {
        let mut c = Command::new(admin::VIRTUALIZATION_MANAGEMENT, 0);
        c.dw[10] = action as u32 | (resource as u32) << 8 | (cntlid as u32) << 16;
        c.dw[11] = count as u32;
        c
    }

    /// Set Features / Number of Queues: asks for `sq` and `cq` I/O queues.
    /// The completion's dword 0 holds what was granted (0-based).
    pub fn set_queue_count(sq: u16, cq: u16) -> Command {
        let mut c = Command::new(admin::SET_FEATURES, 0);
        c.dw[10] = FEATURE_NUMBER_OF_QUEUES as u32;
        c.dw[11] = (sq as u32 - 1) | (cq as u32 - 1) << 16;
        c
    }

    /// Create I/O Completion Queue `qid` of `entries` entries at `base`
    /// (physically contiguous). `interrupt` = Some(vector) enables
    /// interrupts on that MSI-X vector; None makes it a polled queue.
    pub fn create_io_cq(qid: u16, entries: u16, base: u64, interrupt: Option<u16>) -> Command {
        let mut c = Command::new(admin::CREATE_IO_CQ, 0);
        c.set_prps(base, 0);
        c.dw[10] = qid as u32 | (entries as u32 - 1) << 16;
        let (ien, iv) = match interrupt {
            Some(v) => (1, v as u32),
            None => (0, 0),
        };
        // PC (bit 0) = physically contiguous; IEN bit 1; IV 31:16.
        c.dw[11] = 1 | ien << 1 | iv << 16;
        c
    }

    /// Create I/O Submission Queue `qid` at `base`, completing to `cqid`.
    pub fn create_io_sq(qid: u16, entries: u16, base: u64, cqid: u16) -> Command {
        let mut c = Command::new(admin::CREATE_IO_SQ, 0);
        c.set_prps(base, 0);
        c.dw[10] = qid as u32 | (entries as u32 - 1) << 16;
        // PC = 1, QPRIO = 00 (urgent; ignored under round robin), CQID 31:16.
        c.dw[11] = 1 | (cqid as u32) << 16;
        c
    }

    pub fn delete_io_sq(qid: u16) -> Command {
        let mut c = Command::new(admin::DELETE_IO_SQ, 0);
        c.dw[10] = qid as u32;
        c
    }

    pub fn delete_io_cq(qid: u16) -> Command {
        let mut c = Command::new(admin::DELETE_IO_CQ, 0);
        c.dw[10] = qid as u32;
        c
    }

    fn rw(opcode: u8, nsid: u32, lba: u64, blocks: u16, prp1: u64, prp2: u64, fua: bool) -> Command {
        let mut c = Command::new(opcode, nsid);
        c.set_prps(prp1, prp2);
        c.dw[10] = lba as u32;
        c.dw[11] = (lba >> 32) as u32;
        // NLB is 0-based; FUA is bit 30.
        c.dw[12] = (blocks as u32).saturating_sub(1) | (fua as u32) << 30;
        c
    }

    /// Read `blocks` (1..=65535; the driver never builds 0) from `lba`.
    pub fn read(nsid: u32, lba: u64, blocks: u16, prp1: u64, prp2: u64) -> Command {
        Self::rw(nvm::READ, nsid, lba, blocks, prp1, prp2, false)
    }

    /// Write; `fua` forces the data to media before completion.
    pub fn write(nsid: u32, lba: u64, blocks: u16, prp1: u64, prp2: u64, fua: bool) -> Command {
        Self::rw(nvm::WRITE, nsid, lba, blocks, prp1, prp2, fua)
    }

    pub fn flush(nsid: u32) -> Command {
        Command::new(nvm::FLUSH, nsid)
    }

    /// Starting LBA of a read or write.
    pub const fn lba(&self) -> u64 {
        self.dw[10] as u64 | (self.dw[11] as u64) << 32
    }
    /// Block count of a read or write (NLB + 1).
    pub const fn block_count(&self) -> u32 {
        (self.dw[12] & 0xffff) + 1
    }
}
