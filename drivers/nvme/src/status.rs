//! Completion queue entries and status codes (NVMe base spec 4.6 and
//! 4.6.1.2; NVM command set spec for the I/O codes).

use core::fmt;

/// A 16-byte completion queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Command-specific result (e.g. queues granted by Set Features).
    pub dw0: u32,
    /// How far the controller has consumed the submission queue.
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    pub phase: bool,
    pub status: Status,
}

impl Completion {
    pub const BYTES: usize = 16;

    pub fn from_bytes(b: &[u8; 16]) -> Completion {
        let dw = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let (dw2, dw3) = (dw(2), dw(3));
        Completion {
            dw0: dw(0),
            sq_head: dw2 as u16,
            sq_id: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            phase: dw3 & (1 << 16) != 0,
            status: Status::from_field((dw3 >> 17) as u16),
        }
    }

    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0; 16];
        b[0..4].copy_from_slice(&self.dw0.to_le_bytes());
        b[8..12].copy_from_slice(&(self.sq_head as u32 | (self.sq_id as u32) << 16).to_le_bytes());
        let dw3 = self.cid as u32 | (self.phase as u32) << 16 | (self.status.to_field() as u32) << 17;
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        b
    }
}

/// Status code types.
pub mod sct {
    pub const GENERIC: u8 = 0;
    pub const COMMAND_SPECIFIC: u8 = 1;
    pub const MEDIA: u8 = 2;
    pub const PATH: u8 = 3;
}

/// The 15-bit status field (DW3 bits 31:17).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    pub code: u8,
    pub code_type: u8,
    /// Command retry delay index.
    pub retry_delay: u8,
    /// More information is in the Error Information log page.
    pub more: bool,
    /// Do not retry: the same command would fail again.
    pub do_not_retry: bool,
}

impl Status {
    pub const SUCCESS: Status = Status { code: 0, code_type: 0, retry_delay: 0, more: false, do_not_retry: false };

    pub const fn new(code_type: u8, code: u8) -> Status {
        Status { code, code_type, retry_delay: 0, more: false, do_not_retry: false }
    }

    pub const fn from_field(f: u16) -> Status {
        Status {
            code: f as u8,
            code_type: ((f >> 8) & 7) as u8,
            retry_delay: ((f >> 11) & 3) as u8,
            more: f & (1 << 13) != 0,
            do_not_retry: f & (1 << 14) != 0,
        }
    }

    pub const fn to_field(self) -> u16 {
        self.code as u16
            | ((self.code_type as u16) & 7) << 8
            | ((self.retry_delay as u16) & 3) << 11
            | (self.more as u16) << 13
            | (self.do_not_retry as u16) << 14
    }

    pub const fn is_success(self) -> bool {
        self.code == 0 && self.code_type == 0
    }

    /// `Ok` for success, else the error it names.
    pub fn result(self) -> Result<(), CommandError> {
        if self.is_success() {
            Ok(())
        } else {
            Err(CommandError { status: self, kind: ErrorKind::classify(self.code_type, self.code) })
        }
    }
}

/// The status codes a driver acts on, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidOpcode,
    InvalidField,
    CommandIdConflict,
    DataTransferError,
    AbortedPowerLoss,
    InternalError,
    AbortRequested,
    AbortedSqDeleted,
    InvalidNamespaceOrFormat,
    CommandSequenceError,
    InvalidPrpOffset,
    LbaOutOfRange,
    CapacityExceeded,
    NamespaceNotReady,
    ReservationConflict,
    FormatInProgress,
    CompletionQueueInvalid,
    InvalidQueueIdentifier,
    InvalidQueueSize,
    InvalidInterruptVector,
    InvalidFormat,
    ConflictingAttributes,
    WriteToReadOnlyRange,
    WriteFault,
    UnrecoveredReadError,
    CompareFailure,
    AccessDenied,
    DeallocatedOrUnwrittenBlock,
    /// A code this driver has no name for; see `CommandError::status`.
    Other,
}

impl ErrorKind {
    pub const fn classify(code_type: u8, code: u8) -> ErrorKind {
        use ErrorKind::*;
        match (code_type, code) {
            (sct::GENERIC, 0x01) => InvalidOpcode,
            (sct::GENERIC, 0x02) => InvalidField,
            (sct::GENERIC, 0x03) => CommandIdConflict,
            (sct::GENERIC, 0x04) => DataTransferError,
            (sct::GENERIC, 0x05) => AbortedPowerLoss,
            (sct::GENERIC, 0x06) => InternalError,
            (sct::GENERIC, 0x07) => AbortRequested,
            (sct::GENERIC, 0x08) => AbortedSqDeleted,
            (sct::GENERIC, 0x0b) => InvalidNamespaceOrFormat,
            (sct::GENERIC, 0x0c) => CommandSequenceError,
            (sct::GENERIC, 0x13) => InvalidPrpOffset,
            (sct::GENERIC, 0x80) => LbaOutOfRange,
            (sct::GENERIC, 0x81) => CapacityExceeded,
            (sct::GENERIC, 0x82) => NamespaceNotReady,
            (sct::GENERIC, 0x83) => ReservationConflict,
            (sct::GENERIC, 0x84) => FormatInProgress,
            (sct::COMMAND_SPECIFIC, 0x00) => CompletionQueueInvalid,
            (sct::COMMAND_SPECIFIC, 0x01) => InvalidQueueIdentifier,
            (sct::COMMAND_SPECIFIC, 0x02) => InvalidQueueSize,
            (sct::COMMAND_SPECIFIC, 0x08) => InvalidInterruptVector,
            (sct::COMMAND_SPECIFIC, 0x0a) => InvalidFormat,
            (sct::COMMAND_SPECIFIC, 0x80) => ConflictingAttributes,
            (sct::COMMAND_SPECIFIC, 0x82) => WriteToReadOnlyRange,
            (sct::MEDIA, 0x80) => WriteFault,
            (sct::MEDIA, 0x81) => UnrecoveredReadError,
            (sct::MEDIA, 0x85) => CompareFailure,
            (sct::MEDIA, 0x86) => AccessDenied,
            (sct::MEDIA, 0x87) => DeallocatedOrUnwrittenBlock,
            _ => Other,
        }
    }

    /// The specification's name for the status.
    pub const fn name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            InvalidOpcode => "Invalid Command Opcode",
            InvalidField => "Invalid Field in Command",
            CommandIdConflict => "Command ID Conflict",
            DataTransferError => "Data Transfer Error",
            AbortedPowerLoss => "Commands Aborted due to Power Loss Notification",
            InternalError => "Internal Error",
            AbortRequested => "Command Abort Requested",
            AbortedSqDeleted => "Command Aborted due to SQ Deletion",
            InvalidNamespaceOrFormat => "Invalid Namespace or Format",
            CommandSequenceError => "Command Sequence Error",
            InvalidPrpOffset => "PRP Offset Invalid",
            LbaOutOfRange => "LBA Out of Range",
            CapacityExceeded => "Capacity Exceeded",
            NamespaceNotReady => "Namespace Not Ready",
            ReservationConflict => "Reservation Conflict",
            FormatInProgress => "Format In Progress",
            CompletionQueueInvalid => "Completion Queue Invalid",
            InvalidQueueIdentifier => "Invalid Queue Identifier",
            InvalidQueueSize => "Invalid Queue Size",
            InvalidInterruptVector => "Invalid Interrupt Vector",
            InvalidFormat => "Invalid Format",
            ConflictingAttributes => "Conflicting Attributes",
            WriteToReadOnlyRange => "Attempted Write to Read Only Range",
            WriteFault => "Write Fault",
            UnrecoveredReadError => "Unrecovered Read Error",
            CompareFailure => "Compare Failure",
            AccessDenied => "Access Denied",
            DeallocatedOrUnwrittenBlock => "Deallocated or Unwritten Logical Block",
            Other => "unrecognised status",
        }
    }
}

/// A command the controller completed with an error status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandError {
    pub kind: ErrorKind,
    pub status: Status,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (status type {:#x}, code {:#04x}{})",
            self.kind.name(),
            self.status.code_type,
            self.status.code,
            if self.status.do_not_retry { ", do not retry" } else { "" }
        )
    }
}
