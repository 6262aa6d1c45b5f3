//! Controller bring-up and block I/O over [`Registers`] and [`DmaMemory`]
//! (NVMe base spec 3.5.1, "Memory-based controller initialization").
//!
//! Completion is polled here; interrupt-driven completion only changes
//! *when* [`QueuePair::reap`] is called (on the MSI-X upcall), so the same
//! queue code serves both. The kernel is not on this path at all: the
//! doorbells are in the driver's mapping of BAR 0.

use crate::command::Command;
use crate::identify::{
    ControllerInfo, IdentifyError, NamespaceInfo, SecondaryController, SecondaryControllerList, IDENTIFY_BYTES,
};
use crate::prp::{self, DmaBuffer, PrpError};
use crate::queue::{CompletionQueue, SubmissionQueue};
use crate::regs::{self, cc, Cap, Csts};
use crate::status::{CommandError, Completion};
use crate::{DmaMemory, Registers};
use core::fmt;

pub const PAGE_SIZE: u32 = 4096;
pub const MAX_IO_QUEUES: usize = 8;
/// Queue depth limit of this driver (command ids are tracked in a bitmap).
pub const MAX_QUEUE_ENTRIES: u16 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The controller completed a command with an error status.
    Command {
        command: &'static str,
        error: CommandError,
    },
    /// A wait ran out of polling budget.
    Timeout {
        waiting_for: &'static str,
    },
    /// CSTS.CFS: the controller hit a fatal error; only a reset helps.
    ControllerFatal,
    /// Every command id of the queue is in flight.
    QueueFull,
    Prp(PrpError),
    Identify(IdentifyError),
    /// The DMA region handed to `init` is too small for the configuration.
    DmaRegionTooSmall {
        needed: u64,
        given: u64,
    },
    BadConfig(&'static str),
    NoSuchQueue {
        queue: usize,
    },
    /// A synchronous wait saw a completion for another command.
    UnexpectedCompletion {
        expected: u16,
        got: u16,
    },
    /// Transfers are whole blocks.
    NotBlockMultiple {
        len: u32,
        block_size: u32,
    },
    /// A single command larger than the controller's MDTS (use the
    /// splitting `read`/`write` instead of `submit_io`).
    TransferTooLarge {
        len: u32,
        max: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Command { command, error } => write!(f, "{command} failed: {error}"),
            Error::Timeout { waiting_for } => write!(f, "timed out waiting for {waiting_for}"),
            Error::ControllerFatal => write!(f, "controller fatal status (CSTS.CFS) set"),
            Error::QueueFull => write!(f, "queue full"),
            Error::Prp(e) => write!(f, "bad DMA buffer: {e:?}"),
            Error::Identify(e) => write!(f, "bad identify data: {e:?}"),
            Error::DmaRegionTooSmall { needed, given } => write!(f, "DMA region of {given} bytes, {needed} needed"),
            Error::BadConfig(why) => write!(f, "bad configuration: {why}"),
            Error::NoSuchQueue { queue } => write!(f, "no I/O queue {queue}"),
            Error::UnexpectedCompletion { expected, got } => write!(f, "waited for command {expected}, got {got}"),
            Error::NotBlockMultiple { len, block_size } => {
                write!(f, "{len} bytes is not a multiple of the {block_size}-byte block")
            }
            Error::TransferTooLarge { len, max } => write!(f, "{len} bytes exceeds the {max}-byte transfer limit"),
        }
    }
}

impl From<PrpError> for Error {
    fn from(e: PrpError) -> Self {
        Error::Prp(e)
    }
}

/// Driver parameters.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub io_queues: u16,
    pub io_queue_entries: u16,
    pub admin_queue_entries: u16,
    pub nsid: u32,
    /// Polling iterations before a wait gives up.
    pub poll_budget: u64,
    /// Create I/O completion queues with interrupts enabled, queue `qid`
    /// on MSI-X vector `qid` (vector 0 stays the admin queue's). The
    /// driver still reaps by polling; an interrupt only says when to.
    pub interrupts: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            io_queues: 2,
            io_queue_entries: 64,
            admin_queue_entries: 32,
            nsid: 1,
            poll_budget: 50_000_000,
            interrupts: false,
        }
    }
}

const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Config {
    fn queue_bytes(entries: u16) -> u64 {
        round_up(entries as u64 * 64, PAGE_SIZE as u64) + round_up(entries as u64 * 16, PAGE_SIZE as u64)
    }

    /// Bytes of DMA memory `init` carves up: admin queues, one identify
    /// page, and per I/O queue its rings plus one PRP list page per
    /// command id.
    pub fn dma_bytes_needed(&self) -> u64 {
        let per_io = Self::queue_bytes(self.io_queue_entries) + self.io_queue_entries as u64 * PAGE_SIZE as u64;
        Self::queue_bytes(self.admin_queue_entries) + PAGE_SIZE as u64 + self.io_queues as u64 * per_io
    }
}

/// Device-visible memory the driver owns for its queues (page aligned).
#[derive(Clone, Copy, Debug)]
pub struct DmaRegion {
    pub base: u64,
    pub len: u64,
}

struct Carver {
    next: u64,
    end: u64,
}

impl Carver {
    fn take(&mut self, bytes: u64) -> u64 {
        let at = self.next;
        self.next += round_up(bytes, PAGE_SIZE as u64);
        debug_assert!(self.next <= self.end);
        at
    }
}

/// Command ids in flight, one bit each.
#[derive(Clone, Copy, Debug)]
struct CidSet {
    words: [u64; MAX_QUEUE_ENTRIES as usize / 64],
    limit: u16,
}

impl CidSet {
    fn new(limit: u16) -> CidSet {
        CidSet { words: [0; MAX_QUEUE_ENTRIES as usize / 64], limit }
    }
    fn take(&mut self) -> Option<u16> {
        for (w, word) in self.words.iter_mut().enumerate() {
            if *word != u64::MAX {
                let bit = word.trailing_ones() as u16;
                let cid = w as u16 * 64 + bit;
                if cid >= self.limit {
                    return None;
                }
                *word |= 1 << bit;
                return Some(cid);
            }
        }
        None
    }
    fn release(&mut self, cid: u16) -> bool {
        if cid >= self.limit {
            return false;
        }
        let (w, bit) = (cid as usize / 64, cid % 64);
        let was = self.words[w] & (1 << bit) != 0;
        self.words[w] &= !(1 << bit);
        was
    }
    fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
}

/// One submission/completion queue pair and its doorbells.
#[derive(Clone, Copy, Debug)]
pub struct QueuePair {
    pub qid: u16,
    sq: SubmissionQueue,
    cq: CompletionQueue,
    sq_doorbell: u64,
    cq_doorbell: u64,
    in_flight: CidSet,
    /// SQ tail last written to the doorbell.
    rung_tail: u16,
    /// One PRP list page per command id, at `lists + cid * PAGE_SIZE`.
    lists: u64,
}

impl QueuePair {
    fn new(qid: u16, sq_base: u64, cq_base: u64, entries: u16, lists: u64, cap: Cap) -> QueuePair {
        QueuePair {
            qid,
            sq: SubmissionQueue::new(sq_base, entries),
            cq: CompletionQueue::new(cq_base, entries),
            sq_doorbell: regs::sq_tail_doorbell(qid, cap),
            cq_doorbell: regs::cq_head_doorbell(qid, cap),
            // At most entries - 1 commands can sit in the ring at once.
            in_flight: CidSet::new(entries - 1),
            rung_tail: 0,
            lists,
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.count()
    }

    /// The PRP list page reserved for command id `cid`.
    pub fn list_page(&self, cid: u16) -> u64 {
        self.lists + cid as u64 * PAGE_SIZE as u64
    }

    fn reserve(&mut self) -> Result<u16, Error> {
        if self.sq.is_full() {
            return Err(Error::QueueFull);
        }
        self.in_flight.take().ok_or(Error::QueueFull)
    }

    /// Puts `cmd` (with command id `cid`, from `reserve`) in the ring
    /// without telling the controller; see [`Self::ring`].
    fn place(&mut self, mem: &mut impl DmaMemory, mut cmd: Command, cid: u16) -> Result<(), Error> {
        cmd.set_cid(cid);
        if self.sq.push(mem, &cmd).is_none() {
            self.in_flight.release(cid);
            return Err(Error::QueueFull);
        }
        Ok(())
    }

    /// Puts `cmd` in the ring and rings the SQ tail doorbell.
    fn push(
        &mut self,
        regs: &mut impl Registers,
        mem: &mut impl DmaMemory,
        cmd: Command,
        cid: u16,
    ) -> Result<(), Error> {
        self.place(mem, cmd, cid)?;
        self.ring(regs);
        Ok(())
    }

    /// Writes the SQ tail doorbell if commands were placed since the last
    /// ring: one MMIO write for a whole batch of submissions.
    pub fn ring(&mut self, regs: &mut impl Registers) {
        let tail = self.sq.tail();
        if tail != self.rung_tail {
            regs.write32(self.sq_doorbell, tail as u32);
            self.rung_tail = tail;
        }
    }

    /// Submits `cmd` and returns its command id.
    pub fn submit(&mut self, regs: &mut impl Registers, mem: &mut impl DmaMemory, cmd: Command) -> Result<u16, Error> {
        let cid = self.reserve()?;
        self.push(regs, mem, cmd, cid)?;
        Ok(cid)
    }

    /// Takes one completion if posted: frees its command id and SQ slots
    /// and rings the CQ head doorbell.
    pub fn reap(&mut self, regs: &mut impl Registers, mem: &impl DmaMemory) -> Option<Completion> {
        let c = self.take(mem)?;
        regs.write32(self.cq_doorbell, self.cq.head() as u32);
        Some(c)
    }

    fn take(&mut self, mem: &impl DmaMemory) -> Option<Completion> {
        let c = self.cq.pop(mem)?;
        self.sq.update_head(c.sq_head);
        self.in_flight.release(c.cid);
        Some(c)
    }

    /// Takes up to `max` posted completions, handing each to `each`, and
    /// writes the CQ head doorbell once at the end. Returns how many.
    pub fn reap_batch(
        &mut self,
        regs: &mut impl Registers,
        mem: &impl DmaMemory,
        max: usize,
        mut each: impl FnMut(Completion),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(c) = self.take(mem) else { break };
            each(c);
            n += 1;
        }
        if n > 0 {
            regs.write32(self.cq_doorbell, self.cq.head() as u32);
        }
        n
    }

    /// Submits and polls until that command completes.
    fn execute(
        &mut self,
        regs: &mut impl Registers,
        mem: &mut impl DmaMemory,
        cmd: Command,
        name: &'static str,
        budget: u64,
    ) -> Result<Completion, Error> {
        let cid = self.submit(regs, mem, cmd)?;
        self.wait(regs, mem, cid, name, budget)
    }

    fn wait(
        &mut self,
        regs: &mut impl Registers,
        mem: &impl DmaMemory,
        cid: u16,
        name: &'static str,
        budget: u64,
    ) -> Result<Completion, Error> {
        for _ in 0..budget {
            if let Some(c) = self.reap(regs, mem) {
                if c.cid != cid {
                    return Err(Error::UnexpectedCompletion { expected: cid, got: c.cid });
                }
                c.status.result().map_err(|error| Error::Command { command: name, error })?;
                return Ok(c);
            }
            regs.relax();
        }
        if Csts(regs.read32(regs::CSTS)).fatal() {
            return Err(Error::ControllerFatal);
        }
        Err(Error::Timeout { waiting_for: name })
    }
}

/// How many I/O queue pairs to create: what was asked, cut to what the
/// controller granted in dword 0 of its Set Features (Number of Queues)
/// completion (NSQA in bits 15:0, NCQA in bits 31:16, both 0's based; a
/// pair needs one of each). Never 0: a controller grants at least one.
pub fn queue_pairs_granted(asked: u16, dw0: u32) -> u16 {
    let granted = (dw0 & 0xffff).min(dw0 >> 16) + 1;
    (asked as u32).min(granted).max(1) as u16
}

/// The queue (index) that a user who wants its own queue `wanted` shares
/// when the controller granted only `granted` pairs: queues are dealt out
/// round robin, so with one pair everyone shares queue 0.
pub fn shared_queue(wanted: usize, granted: usize) -> usize {
    wanted % granted.max(1)
}

/// A reaped I/O command: its id and how it ended.
pub type Polled = (u16, Result<(), CommandError>);

/// Data direction of an I/O command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// A running controller with its admin queue and I/O queue pairs.
pub struct Driver<R: Registers, M: DmaMemory> {
    regs: R,
    mem: M,
    cap: Cap,
    admin: QueuePair,
    io: [Option<QueuePair>; MAX_IO_QUEUES],
    io_count: usize,
    controller: ControllerInfo,
    namespace: NamespaceInfo,
    nsid: u32,
    max_transfer: u64,
    budget: u64,
}

impl<R: Registers, M: DmaMemory> Driver<R, M> {
    /// Resets and enables the controller, identifies it and namespace
    /// `config.nsid`, and creates `config.io_queues` polled I/O queue pairs,
    /// all in `region`.
    pub fn init(regs: R, mut mem: M, region: DmaRegion, config: Config) -> Result<Self, Error> {
        let cap = Cap(regs.read64(regs::CAP));
        if !cap.nvm_command_set() {
            return Err(Error::BadConfig("controller lacks the NVM command set"));
        }
        if cap.min_page_size() > PAGE_SIZE || cap.max_page_size() < PAGE_SIZE {
            return Err(Error::BadConfig("controller cannot use 4 KiB pages"));
        }
        if config.io_queues == 0 || config.io_queues as usize > MAX_IO_QUEUES {
            return Err(Error::BadConfig("io_queues must be 1..=MAX_IO_QUEUES"));
        }
        let limit = cap.max_queue_entries().min(MAX_QUEUE_ENTRIES as u32);
        for entries in [config.io_queue_entries, config.admin_queue_entries] {
            if entries < 2 || entries as u32 > limit {
                return Err(Error::BadConfig("queue entries must be 2..=min(CAP.MQES+1, MAX_QUEUE_ENTRIES)"));
            }
        }
        if config.admin_queue_entries > 4096 {
            return Err(Error::BadConfig("admin queues hold at most 4096 entries"));
        }
        if !region.base.is_multiple_of(PAGE_SIZE as u64) {
            return Err(Error::BadConfig("DMA region must be page aligned"));
        }
        let needed = config.dma_bytes_needed();
        if region.len < needed {
            return Err(Error::DmaRegionTooSmall { needed, given: region.len });
        }
        let budget = config.poll_budget.max(1);
        let mut carve = Carver { next: region.base, end: region.base + region.len };

        // 1. Disable and wait for RDY = 0.
        if regs.read32(regs::CC) & cc::ENABLE != 0 || Csts(regs.read32(regs::CSTS)).ready() {
            regs.write32(regs::CC, 0);
            wait_ready(&regs, false, budget)?;
        }

        // 2. Admin queues.
        let a = config.admin_queue_entries;
        let asq = carve.take(a as u64 * 64);
        let acq = carve.take(a as u64 * 16);
        zero(&mut mem, acq, a as u64 * 16);
        let identify = carve.take(PAGE_SIZE as u64);
        let admin = QueuePair::new(0, asq, acq, a, identify, cap);
        regs.write32(regs::AQA, regs::aqa_value(a, a));
        regs.write64(regs::ASQ, asq);
        regs.write64(regs::ACQ, acq);

        // 3. Enable and wait for RDY = 1.
        regs.write32(regs::CC, cc::value(PAGE_SIZE, true));
        wait_ready(&regs, true, budget)?;

        let mut d = Driver {
            regs,
            mem,
            cap,
            admin,
            io: [None; MAX_IO_QUEUES],
            io_count: 0,
            controller: PLACEHOLDER_CONTROLLER,
            namespace: PLACEHOLDER_NAMESPACE,
            nsid: config.nsid,
            max_transfer: 0,
            budget,
        };

        // 4. Identify.
        let mut page = [0u8; IDENTIFY_BYTES];
        d.admin_execute(Command::identify_controller(identify), "Identify Controller")?;
        d.mem.read(identify, &mut page);
        d.controller = ControllerInfo::parse(&page).map_err(Error::Identify)?;
        d.admin_execute(Command::identify_namespace(config.nsid, identify), "Identify Namespace")?;
        d.mem.read(identify, &mut page);
        d.namespace = NamespaceInfo::parse(&page).map_err(Error::Identify)?;
        // Largest single command: MDTS, and what one PRP list page can
        // describe for a buffer that starts mid-page.
        let list_limit = prp::max_transfer_for_list_pages(1, PAGE_SIZE) - PAGE_SIZE as u64;
        let mdts = d.controller.max_transfer_bytes(cap.min_page_size()).unwrap_or(u64::MAX);
        let bs = d.namespace.block_size() as u64;
        d.max_transfer = (mdts.min(list_limit).min(65535 * bs) / bs) * bs;
        if d.max_transfer == 0 {
            return Err(Error::BadConfig("MDTS is smaller than one block"));
        }

        // 5. I/O queues: ask for them, then create CQ before SQ.
        let granted = d.admin_execute(
            Command::set_queue_count(config.io_queues, config.io_queues),
            "Set Features (Number of Queues)",
        )?;
        let count = queue_pairs_granted(config.io_queues, granted.dw0);
        let e = config.io_queue_entries;
        for i in 0..count {
            let qid = i + 1;
            let sq = carve.take(e as u64 * 64);
            let cq = carve.take(e as u64 * 16);
            let lists = carve.take(e as u64 * PAGE_SIZE as u64);
            zero(&mut d.mem, cq, e as u64 * 16);
            let vector = if config.interrupts { Some(qid) } else { None };
            d.admin_execute(Command::create_io_cq(qid, e, cq, vector), "Create I/O Completion Queue")?;
            d.admin_execute(Command::create_io_sq(qid, e, sq, qid), "Create I/O Submission Queue")?;
            d.io[i as usize] = Some(QueuePair::new(qid, sq, cq, e, lists, cap));
            d.io_count += 1;
        }
        Ok(d)
    }

    fn admin_execute(&mut self, cmd: Command, name: &'static str) -> Result<Completion, Error> {
        self.admin.execute(&mut self.regs, &mut self.mem, cmd, name, self.budget)
    }

    pub fn controller(&self) -> &ControllerInfo {
        &self.controller
    }
    pub fn namespace(&self) -> &NamespaceInfo {
        &self.namespace
    }
    pub fn block_size(&self) -> u32 {
        self.namespace.block_size()
    }
    pub fn cap(&self) -> Cap {
        self.cap
    }
    /// Largest transfer of one command, bytes.
    pub fn max_transfer_bytes(&self) -> u64 {
        self.max_transfer
    }
    pub fn io_queue_count(&self) -> usize {
        self.io_count
    }
    pub fn mem(&self) -> &M {
        &self.mem
    }
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }
    pub fn regs(&self) -> &R {
        &self.regs
    }
    /// The queue a user wanting its own queue `wanted` uses: `wanted`
    /// itself if the controller granted that many, else one it shares
    /// ([`shared_queue`]). Users of a shared queue must not wait
    /// synchronously ([`Self::read`], [`Self::write`], [`Self::flush`])
    /// while commands of another are in flight on it.
    pub fn queue_for(&self, wanted: usize) -> usize {
        shared_queue(wanted, self.io_count)
    }

    /// Whether two wanted queues end up as the same queue.
    pub fn queues_shared(&self, a: usize, b: usize) -> bool {
        self.queue_for(a) == self.queue_for(b)
    }

    pub fn queue(&self, queue: usize) -> Result<&QueuePair, Error> {
        self.io.get(queue).and_then(|q| q.as_ref()).ok_or(Error::NoSuchQueue { queue })
    }

    fn check_blocks(&self, len: u32) -> Result<u32, Error> {
        let bs = self.block_size();
        if len == 0 || !len.is_multiple_of(bs) {
            return Err(Error::NotBlockMultiple { len, block_size: bs });
        }
        Ok(len / bs)
    }

    /// Submits one read or write without waiting; returns its command id.
    /// `buf` must fit in one command (`max_transfer_bytes`).
    pub fn submit_io(&mut self, queue: usize, dir: Direction, lba: u64, buf: &DmaBuffer) -> Result<u16, Error> {
        let cid = self.queue_io(queue, dir, lba, buf)?;
        self.ring(queue)?;
        Ok(cid)
    }

    /// Like [`Self::submit_io`] but leaves the doorbell for [`Self::ring`],
    /// so a batch of submissions costs one MMIO write.
    pub fn queue_io(&mut self, queue: usize, dir: Direction, lba: u64, buf: &DmaBuffer) -> Result<u16, Error> {
        let blocks = self.check_blocks(buf.len)?;
        if buf.len as u64 > self.max_transfer {
            return Err(Error::TransferTooLarge { len: buf.len, max: self.max_transfer });
        }
        let nsid = self.nsid;
        let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
        let cid = q.reserve()?;
        let list = q.list_page(cid);
        let p = match prp::build(&mut self.mem, buf, PAGE_SIZE, &[list]) {
            Ok(p) => p,
            Err(e) => {
                q.in_flight.release(cid);
                return Err(e.into());
            }
        };
        let cmd = match dir {
            Direction::Read => Command::read(nsid, lba, blocks as u16, p.prp1, p.prp2),
            Direction::Write => Command::write(nsid, lba, blocks as u16, p.prp1, p.prp2, false),
        };
        q.place(&mut self.mem, cmd, cid)?;
        Ok(cid)
    }

    /// Tells the controller about commands queued with [`Self::queue_io`].
    pub fn ring(&mut self, queue: usize) -> Result<(), Error> {
        let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
        q.ring(&mut self.regs);
        Ok(())
    }

    /// Reaps up to `max` completions with one CQ doorbell write.
    pub fn poll_batch(&mut self, queue: usize, max: usize, mut each: impl FnMut(Polled)) -> Result<usize, Error> {
        let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
        Ok(q.reap_batch(&mut self.regs, &self.mem, max, |c| each((c.cid, c.status.result()))))
    }

    /// Reaps one completion from `queue`, if any: (command id, outcome).
    pub fn poll(&mut self, queue: usize) -> Result<Option<Polled>, Error> {
        let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
        Ok(q.reap(&mut self.regs, &self.mem).map(|c| (c.cid, c.status.result())))
    }

    /// Reads `buf.len` bytes from `lba` into `buf`, split into commands of
    /// at most `max_transfer_bytes`. Waits for each; other commands must
    /// not be in flight on this queue.
    pub fn read(&mut self, queue: usize, lba: u64, buf: &DmaBuffer) -> Result<(), Error> {
        self.transfer(queue, Direction::Read, lba, buf)
    }

    pub fn write(&mut self, queue: usize, lba: u64, buf: &DmaBuffer) -> Result<(), Error> {
        self.transfer(queue, Direction::Write, lba, buf)
    }

    fn transfer(&mut self, queue: usize, dir: Direction, lba: u64, buf: &DmaBuffer) -> Result<(), Error> {
        self.check_blocks(buf.len)?;
        let bs = self.block_size() as u64;
        let name = match dir {
            Direction::Read => "Read",
            Direction::Write => "Write",
        };
        let mut done: u64 = 0;
        while done < buf.len as u64 {
            let n = (buf.len as u64 - done).min(self.max_transfer);
            let start = buf.offset as u64 + done;
            let first_page = (start / PAGE_SIZE as u64) as usize;
            let chunk = DmaBuffer {
                pages: buf.pages.get(first_page..).unwrap_or(&[]),
                offset: (start % PAGE_SIZE as u64) as u32,
                len: n as u32,
            };
            let cid = self.submit_io(queue, dir, lba + done / bs, &chunk)?;
            let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
            q.wait(&mut self.regs, &self.mem, cid, name, self.budget)?;
            done += n;
        }
        Ok(())
    }

    /// Flush: everything completed before is durable once this returns.
    pub fn flush(&mut self, queue: usize) -> Result<(), Error> {
        let nsid = self.nsid;
        let q = self.io.get_mut(queue).and_then(|q| q.as_mut()).ok_or(Error::NoSuchQueue { queue })?;
        q.execute(&mut self.regs, &mut self.mem, Command::flush(nsid), "Flush", self.budget)?;
        Ok(())
    }

    /// Runs an arbitrary admin command (for what this driver does not wrap).
    pub fn admin_command(&mut self, cmd: Command, name: &'static str) -> Result<Completion, Error> {
        self.admin_execute(cmd, name)
    }

    /// The secondary (SR-IOV virtual function) controllers of this primary
    /// controller, read into `out`; returns how many.
    pub fn secondary_controllers(&mut self, out: &mut [SecondaryController]) -> Result<usize, Error> {
        let buffer = self.admin.lists;
        self.admin_execute(Command::identify_secondary_controllers(0, buffer), "Identify Secondary Controller List")?;
        let mut page = [0u8; IDENTIFY_BYTES];
        self.mem.read(buffer, &mut page);
        let list = SecondaryControllerList::parse(&page).map_err(Error::Identify)?;
        let mut n = 0;
        for (slot, c) in out.iter_mut().zip(list.iter()) {
            *slot = c;
            n += 1;
        }
        Ok(n)
    }

    /// This primary controller's SR-IOV capabilities (Identify CNS 14h):
    /// how many flexible queues and vectors a secondary may get.
    pub fn primary_controller_caps(&mut self) -> Result<crate::identify::PrimaryControllerCaps, Error> {
        let buffer = self.admin.lists;
        self.admin_execute(
            Command::identify_primary_controller_caps(buffer),
            "Identify Primary Controller Capabilities",
        )?;
        let mut page = [0u8; IDENTIFY_BYTES];
        self.mem.read(buffer, &mut page);
        crate::identify::PrimaryControllerCaps::parse(&page).map_err(Error::Identify)
    }

    /// Gives secondary controller `cntlid` `queues` queue pairs and
    /// `interrupts` vectors and brings it online, so the virtual function
    /// can be handed to an application's own driver. The PF's driver must
    /// also set VF Enable in the SR-IOV capability (see `pci::SrIov`).
    pub fn bring_up_secondary(&mut self, cntlid: u16, queues: u16, interrupts: u16) -> Result<(), Error> {
        use crate::command::{VirtAction, VirtResource};
        let steps = [
            (VirtAction::SecondaryOffline, VirtResource::Queues, 0, "Virtualization Management (offline)"),
            (
                VirtAction::SecondaryAssign,
                VirtResource::Interrupts,
                interrupts,
                "Virtualization Management (assign interrupts)",
            ),
            (VirtAction::SecondaryAssign, VirtResource::Queues, queues, "Virtualization Management (assign queues)"),
            (VirtAction::SecondaryOnline, VirtResource::Queues, 0, "Virtualization Management (online)"),
        ];
        for (action, resource, count, name) in steps {
            self.admin_execute(Command::virtualization_management(action, resource, cntlid, count), name)?;
        }
        Ok(())
    }

    /// Normal shutdown (CC.SHN = 01), waiting for CSTS.SHST = complete.
    pub fn shutdown(self) -> Result<(R, M), Error> {
        let cc_now = self.regs.read32(regs::CC);
        self.regs.write32(regs::CC, (cc_now & !(3 << 14)) | cc::SHUTDOWN_NORMAL);
        for _ in 0..self.budget {
            if Csts(self.regs.read32(regs::CSTS)).shutdown_status() == 2 {
                return Ok((self.regs, self.mem));
            }
            self.regs.relax();
        }
        Err(Error::Timeout { waiting_for: "shutdown" })
    }
}

fn wait_ready(regs: &impl Registers, ready: bool, budget: u64) -> Result<(), Error> {
    for _ in 0..budget {
        let csts = Csts(regs.read32(regs::CSTS));
        if csts.fatal() && ready {
            return Err(Error::ControllerFatal);
        }
        if csts.ready() == ready {
            return Ok(());
        }
        regs.relax();
    }
    Err(Error::Timeout { waiting_for: if ready { "CSTS.RDY = 1" } else { "CSTS.RDY = 0" } })
}

fn zero(mem: &mut impl DmaMemory, at: u64, len: u64) {
    let zeros = [0u8; 256];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(zeros.len() as u64) as usize;
        mem.write(at + off, &zeros[..n]);
        off += n as u64;
    }
}

// Values that are overwritten before `init` returns; they only let the
// driver struct exist while the identify commands run.
const PLACEHOLDER_CONTROLLER: ControllerInfo = ControllerInfo {
    vendor_id: 0,
    serial: [0; 20],
    model: [0; 40],
    firmware: [0; 8],
    mdts: 0,
    controller_id: 0,
    version: 0,
    namespace_count: 0,
    optional_commands: 0,
    volatile_write_cache: false,
};
const PLACEHOLDER_NAMESPACE: NamespaceInfo = NamespaceInfo {
    size: 0,
    capacity: 0,
    utilization: 0,
    format: crate::identify::LbaFormat { metadata_size: 0, lbads: 9, relative_performance: 0 },
    format_index: 0,
    format_count: 0,
};
