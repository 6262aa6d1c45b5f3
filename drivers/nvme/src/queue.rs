//! Submission and completion rings (NVMe base spec 3.3).
//!
//! The host owns the SQ tail and the CQ head; the controller owns the SQ
//! head (reported in every completion) and the CQ tail (discovered through
//! the phase tag, which the controller inverts on every pass of the ring).

use crate::command::Command;
use crate::status::Completion;
use crate::DmaMemory;

/// A submission queue ring of 64-byte entries.
#[derive(Clone, Copy, Debug)]
pub struct SubmissionQueue {
    base: u64,
    entries: u16,
    tail: u16,
    /// Last SQ head the controller reported.
    head: u16,
}

impl SubmissionQueue {
    /// A ring of `entries` (2..=65536 is the spec's range; u16 caps it at
    /// 65535) at device address `base`.
    pub fn new(base: u64, entries: u16) -> SubmissionQueue {
        SubmissionQueue { base, entries: entries.max(2), tail: 0, head: 0 }
    }

    pub const fn base(&self) -> u64 {
        self.base
    }
    pub const fn entries(&self) -> u16 {
        self.entries
    }
    pub const fn tail(&self) -> u16 {
        self.tail
    }

    /// Commands the controller has not yet consumed.
    pub const fn in_flight(&self) -> u16 {
        ((self.tail as u32 + self.entries as u32 - self.head as u32) % self.entries as u32) as u16
    }

    /// A full ring keeps one slot empty: tail + 1 == head.
    pub const fn is_full(&self) -> bool {
        (self.tail as u32 + 1) % self.entries as u32 == self.head as u32
    }

    /// Copies `cmd` into the tail slot and returns the new tail, the value
    /// for the SQ tail doorbell. `None` if the ring is full.
    pub fn push(&mut self, mem: &mut impl DmaMemory, cmd: &Command) -> Option<u16> {
        if self.is_full() {
            return None;
        }
        mem.write(self.base + self.tail as u64 * Command::BYTES as u64, &cmd.to_bytes());
        self.tail = ((self.tail as u32 + 1) % self.entries as u32) as u16;
        Some(self.tail)
    }

    /// Records the controller's SQ head from a completion, freeing slots.
    pub fn update_head(&mut self, head: u16) {
        if head < self.entries {
            self.head = head;
        }
    }
}

/// A completion queue ring of 16-byte entries.
#[derive(Clone, Copy, Debug)]
pub struct CompletionQueue {
    base: u64,
    entries: u16,
    head: u16,
    /// The phase value that marks a new entry in the current pass. Starts
    /// at 1 because the ring starts zeroed.
    phase: bool,
}

impl CompletionQueue {
    /// The ring memory must be zeroed before the queue is created.
    pub fn new(base: u64, entries: u16) -> CompletionQueue {
        CompletionQueue { base, entries: entries.max(2), head: 0, phase: true }
    }

    pub const fn base(&self) -> u64 {
        self.base
    }
    pub const fn entries(&self) -> u16 {
        self.entries
    }
    pub const fn head(&self) -> u16 {
        self.head
    }
    pub const fn phase(&self) -> bool {
        self.phase
    }

    /// The next completion if the controller has posted one; advances the
    /// head (flipping the phase on wrap). After taking one or more, write
    /// [`Self::head`] to the CQ head doorbell.
    pub fn pop(&mut self, mem: &impl DmaMemory) -> Option<Completion> {
        let slot = self.base + self.head as u64 * Completion::BYTES as u64;
        // Phase (dword 3) first: only once it shows the current phase may
        // the rest of the entry be read. `DmaMemory::read` must not be
        // reordered before an earlier read (an acquire fence on hardware).
        let dw3 = mem.read_u32(slot + 12);
        if (dw3 & (1 << 16) != 0) != self.phase {
            return None;
        }
        let mut raw = [0u8; 16];
        mem.read(slot, &mut raw);
        let entry = Completion::from_bytes(&raw);
        self.head += 1;
        if self.head >= self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
        Some(entry)
    }
}
