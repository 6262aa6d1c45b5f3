//! A fake NVMe controller on its own thread, for host tests.
//!
//! Shared "physical" memory is a `Vec<u8>` behind a mutex (device address
//! = index). Register writes reach the controller thread as channel
//! messages, the way doorbell writes are posted to a real device; register
//! reads come from atomics the thread keeps current. The controller runs
//! commands against an in-memory disk and keeps a separate "durable" copy
//! that only Flush updates.
#![allow(dead_code)]

use iommu::vtd::fault::FaultReason;
use iommu::vtd::walk::{translate, WalkLimits};
use iommu::vtd::{Access, Bdf};
use nvme::command::{admin, nvm, Command};
use nvme::prp;
use nvme::regs;
use nvme::status::{sct, Completion, Status};
use nvme::{DmaMemory, Registers};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

#[derive(Clone)]
pub struct SharedMem(pub Arc<Mutex<Vec<u8>>>);

impl SharedMem {
    pub fn new(bytes: usize) -> SharedMem {
        SharedMem(Arc::new(Mutex::new(vec![0; bytes])))
    }
}

impl DmaMemory for SharedMem {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        let m = self.0.lock().unwrap();
        let a = addr as usize;
        buf.copy_from_slice(&m[a..a + buf.len()]);
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        let mut m = self.0.lock().unwrap();
        let a = addr as usize;
        m[a..a + data.len()].copy_from_slice(data);
    }
}

impl iommu::vtd::PhysMem for SharedMem {
    fn read_u64(&self, pa: u64) -> u64 {
        DmaMemory::read_u64(self, pa)
    }
    fn write_u64(&mut self, pa: u64, v: u64) {
        DmaMemory::write_u64(self, pa, v)
    }
}

/// The controller's DMA goes through these VT-d tables (as QEMU's does
/// with intel-iommu): addresses in commands are IOVAs of `bdf`.
#[derive(Clone)]
pub struct IommuContext {
    pub root_table: u64,
    pub bdf: Bdf,
    pub limits: WalkLimits,
    /// Every translation fault: (IOVA, access, reason).
    pub faults: Arc<Mutex<Vec<(u64, Access, FaultReason)>>>,
}

/// Memory as the device reaches it: through the IOMMU when one is set.
/// A faulting access reads zeros / drops the write and marks the command
/// as failed, as a DMA error does.
#[derive(Clone)]
struct DeviceView {
    mem: SharedMem,
    iommu: Option<IommuContext>,
    faulted: Cell<bool>,
}

impl DeviceView {
    fn take_fault(&self) -> bool {
        self.faulted.replace(false)
    }

    /// Splits [addr, addr+len) at page boundaries and translates each piece.
    fn pieces(&self, addr: u64, len: usize, access: Access, mut f: impl FnMut(Option<u64>, usize, usize)) {
        let mut done = 0usize;
        while done < len {
            let iova = addr + done as u64;
            let n = ((4096 - (iova % 4096)) as usize).min(len - done);
            let pa = match &self.iommu {
                None => Some(iova),
                Some(ctx) => match translate(&self.mem, ctx.root_table, ctx.bdf, iova, access, &ctx.limits) {
                    Ok(t) => Some(t.pa),
                    Err(fault) => {
                        ctx.faults.lock().unwrap().push((iova & !0xfff, access, fault.reason));
                        self.faulted.set(true);
                        None
                    }
                },
            };
            f(pa, done, n);
            done += n;
        }
    }
}

impl DmaMemory for DeviceView {
    fn read(&self, addr: u64, buf: &mut [u8]) {
        let mem = self.mem.clone();
        self.pieces(addr, buf.len(), Access::Read, |pa, at, n| match pa {
            Some(pa) => mem.read(pa, &mut buf[at..at + n]),
            None => buf[at..at + n].fill(0),
        });
    }
    fn write(&mut self, addr: u64, data: &[u8]) {
        let mut mem = self.mem.clone();
        self.pieces(addr, data.len(), Access::Write, |pa, at, n| {
            if let Some(pa) = pa {
                mem.write(pa, &data[at..at + n]);
            }
        });
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FakeConfig {
    pub blocks: u64,
    /// log2 block size: 9 or 12 (the two formats the namespace offers).
    pub lbads: u8,
    pub mdts: u8,
    /// CAP.MQES (0-based).
    pub mqes: u16,
    pub max_io_queues: u16,
    /// CAP.DSTRD.
    pub doorbell_stride_log2: u8,
    /// Post the completions of each batch of commands in reverse order,
    /// as a controller with internal parallelism may.
    pub reorder: bool,
    /// Leave an I/O submission queue alone until this many commands are
    /// pending, so batches (and reordering) happen deterministically.
    pub min_batch: u16,
    /// SR-IOV secondary controllers (ids 1..=n, virtual functions 1..=n)
    /// sharing 16 flexible queue pairs and 8 flexible vectors.
    pub secondaries: u16,
    /// Identify Controller's serial number (space padded to 20 bytes).
    pub serial: &'static str,
    /// VQFRSM: flexible queue resources one secondary may get at most.
    pub max_vq_per_secondary: u16,
}

impl Default for FakeConfig {
    fn default() -> Self {
        // Like QEMU's nvme: MDTS 7 (512 KiB), MQES 2047.
        FakeConfig {
            blocks: 4096,
            lbads: 9,
            mdts: 7,
            mqes: 2047,
            max_io_queues: 4,
            doorbell_stride_log2: 0,
            reorder: false,
            min_batch: 1,
            secondaries: 0,
            serial: "FAKE0001",
            max_vq_per_secondary: 16,
        }
    }
}

/// What the controller saw, for tests to check.
#[derive(Default, Debug)]
pub struct Stats {
    pub commands_per_sq: HashMap<u16, u64>,
    pub flushes: u64,
    pub max_prp_pages: usize,
    pub cq_wraps: u64,
    pub doorbell_writes: u64,
    /// Interrupt vector of each I/O CQ (None = polled).
    pub cq_vectors: HashMap<u16, Option<u16>>,
    /// Completions posted in a different order than their commands.
    pub reordered: u64,
}

pub struct Disk {
    pub data: Vec<u8>,
    /// What survives a power cut: the data as of the last Flush.
    pub durable: Vec<u8>,
}

enum Msg {
    Write { offset: u64, value: u32 },
    Stop,
}

struct RegState {
    cap: u64,
    cc: AtomicU32,
    csts: AtomicU32,
    aqa: AtomicU32,
    asq: AtomicU64,
    acq: AtomicU64,
}

/// The driver's side of the register window.
pub struct FakeRegs {
    state: Arc<RegState>,
    tx: Sender<Msg>,
}

impl Registers for FakeRegs {
    fn len(&self) -> u64 {
        0x2000
    }
    // The NVMe driver makes only dword accesses; the narrower ones are the
    // dword's bytes, and narrower writes would be a driver bug.
    fn read8(&self, offset: u64) -> u8 {
        (self.read32(offset & !3) >> ((offset & 3) * 8)) as u8
    }
    fn read16(&self, offset: u64) -> u16 {
        (self.read32(offset & !3) >> ((offset & 2) * 8)) as u16
    }
    fn write8(&self, offset: u64, _value: u8) {
        panic!("the NVMe driver wrote a byte at {offset:#x}: registers take dwords");
    }
    fn write16(&self, offset: u64, _value: u16) {
        panic!("the NVMe driver wrote 16 bits at {offset:#x}: registers take dwords");
    }
    fn read32(&self, offset: u64) -> u32 {
        let s = &self.state;
        match offset {
            regs::CAP => s.cap as u32,
            o if o == regs::CAP + 4 => (s.cap >> 32) as u32,
            regs::VS => 0x0001_0400,
            regs::CC => s.cc.load(Ordering::SeqCst),
            regs::CSTS => s.csts.load(Ordering::SeqCst),
            regs::AQA => s.aqa.load(Ordering::SeqCst),
            _ => 0,
        }
    }
    fn write32(&self, offset: u64, value: u32) {
        if offset == regs::CC {
            self.state.cc.store(value, Ordering::SeqCst);
        }
        // A stopped controller drops writes, like a device that is gone.
        let _ = self.tx.send(Msg::Write { offset, value });
    }
    fn relax(&self) {
        std::thread::yield_now();
    }
}

pub struct FakeController {
    pub mem: SharedMem,
    pub disk: Arc<Mutex<Disk>>,
    pub stats: Arc<Mutex<Stats>>,
    /// When false, I/O commands fail with Namespace Not Ready.
    pub namespace_ready: Arc<AtomicBool>,
    tx: Sender<Msg>,
    state: Arc<RegState>,
    thread: Option<JoinHandle<()>>,
}

impl FakeController {
    pub fn start(config: FakeConfig, mem_bytes: usize) -> FakeController {
        Self::start_with(config, SharedMem::new(mem_bytes), None)
    }

    /// A controller on existing memory, optionally behind an IOMMU.
    pub fn start_with(config: FakeConfig, mem: SharedMem, iommu: Option<IommuContext>) -> FakeController {
        let bytes = (config.blocks << config.lbads) as usize;
        let disk = Arc::new(Mutex::new(Disk { data: vec![0; bytes], durable: vec![0; bytes] }));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let namespace_ready = Arc::new(AtomicBool::new(true));
        // CAP: MQES, CQR (bit 16), TO = 15 (bits 31:24), DSTRD (35:32),
        // CSS bit 37 (NVM), MPSMIN = 0, MPSMAX = 4.
        let cap =
            config.mqes as u64 | 1 << 16 | 15 << 24 | (config.doorbell_stride_log2 as u64) << 32 | 1 << 37 | 4 << 52;
        let state = Arc::new(RegState {
            cap,
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            aqa: AtomicU32::new(0),
            asq: AtomicU64::new(0),
            acq: AtomicU64::new(0),
        });
        let (tx, rx) = channel();
        let mut worker = Worker {
            secondaries: vec![Secondary::default(); config.secondaries as usize],
            config,
            dev: DeviceView { mem: mem.clone(), iommu, faulted: Cell::new(false) },
            disk: disk.clone(),
            stats: stats.clone(),
            ready: namespace_ready.clone(),
            state: state.clone(),
            sqs: HashMap::new(),
            cqs: HashMap::new(),
            enabled: false,
        };
        let thread = std::thread::spawn(move || worker.run(rx));
        FakeController { mem, disk, stats, namespace_ready, tx, state, thread: Some(thread) }
    }

    pub fn regs(&self) -> FakeRegs {
        FakeRegs { state: self.state.clone(), tx: self.tx.clone() }
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sq {
    base: u64,
    entries: u16,
    head: u16,
    tail: u16,
    cqid: u16,
}

struct Cq {
    base: u64,
    entries: u16,
    tail: u16,
    head: u16,
    phase: bool,
}

#[derive(Clone, Copy, Default)]
struct Secondary {
    online: bool,
    queues: u16,
    interrupts: u16,
}

const FLEXIBLE_QUEUES: u16 = 16;
const FLEXIBLE_INTERRUPTS: u16 = 8;

struct Worker {
    secondaries: Vec<Secondary>,
    config: FakeConfig,
    dev: DeviceView,
    disk: Arc<Mutex<Disk>>,
    stats: Arc<Mutex<Stats>>,
    ready: Arc<AtomicBool>,
    state: Arc<RegState>,
    sqs: HashMap<u16, Sq>,
    cqs: HashMap<u16, Cq>,
    enabled: bool,
}

fn ok() -> (Status, u32) {
    (Status::SUCCESS, 0)
}
fn generic(code: u8) -> (Status, u32) {
    (Status { do_not_retry: true, ..Status::new(sct::GENERIC, code) }, 0)
}
fn specific(code: u8) -> (Status, u32) {
    (Status { do_not_retry: true, ..Status::new(sct::COMMAND_SPECIFIC, code) }, 0)
}

impl Worker {
    fn run(&mut self, rx: Receiver<Msg>) {
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Stop => return,
                Msg::Write { offset, value } => self.register_write(offset, value),
            }
        }
    }

    fn stride(&self) -> u32 {
        4 << self.config.doorbell_stride_log2
    }

    fn register_write(&mut self, offset: u64, value: u32) {
        let s = self.state.clone();
        match offset {
            regs::AQA => s.aqa.store(value, Ordering::SeqCst),
            o if o == regs::ASQ => {
                s.asq.store((s.asq.load(Ordering::SeqCst) & !0xffff_ffff) | value as u64, Ordering::SeqCst)
            }
            o if o == regs::ASQ + 4 => {
                s.asq.store((s.asq.load(Ordering::SeqCst) & 0xffff_ffff) | (value as u64) << 32, Ordering::SeqCst)
            }
            o if o == regs::ACQ => {
                s.acq.store((s.acq.load(Ordering::SeqCst) & !0xffff_ffff) | value as u64, Ordering::SeqCst)
            }
            o if o == regs::ACQ + 4 => {
                s.acq.store((s.acq.load(Ordering::SeqCst) & 0xffff_ffff) | (value as u64) << 32, Ordering::SeqCst)
            }
            regs::CC => self.cc_write(value),
            o if o >= regs::DOORBELL_BASE => {
                self.stats.lock().unwrap().doorbell_writes += 1;
                let index = (o - regs::DOORBELL_BASE) / u64::from(self.stride());
                let qid = (index / 2) as u16;
                if index.is_multiple_of(2) {
                    let mut pending = 0;
                    if let Some(sq) = self.sqs.get_mut(&qid) {
                        assert!(value < sq.entries as u32, "SQ {qid} tail doorbell {value} beyond ring");
                        sq.tail = value as u16;
                        pending = (sq.tail + sq.entries - sq.head) % sq.entries;
                    }
                    if qid == 0 || pending >= self.config.min_batch {
                        self.process(qid);
                    }
                } else if let Some(cq) = self.cqs.get_mut(&qid) {
                    assert!(value < cq.entries as u32, "CQ {qid} head doorbell {value} beyond ring");
                    cq.head = value as u16;
                }
            }
            _ => {}
        }
    }

    fn cc_write(&mut self, value: u32) {
        let enable = value & 1 != 0;
        if enable && !self.enabled {
            let aqa = self.state.aqa.load(Ordering::SeqCst);
            let sq_entries = (aqa & 0xfff) as u16 + 1;
            let cq_entries = ((aqa >> 16) & 0xfff) as u16 + 1;
            // IOSQES must be 6 and IOCQES 4 for I/O queues to work.
            assert_eq!((value >> 16) & 0xf, 6, "CC.IOSQES");
            assert_eq!((value >> 20) & 0xf, 4, "CC.IOCQES");
            assert_eq!((value >> 7) & 0xf, 0, "CC.MPS: 4 KiB pages");
            self.sqs.insert(
                0,
                Sq { base: self.state.asq.load(Ordering::SeqCst), entries: sq_entries, head: 0, tail: 0, cqid: 0 },
            );
            self.cqs.insert(
                0,
                Cq { base: self.state.acq.load(Ordering::SeqCst), entries: cq_entries, tail: 0, head: 0, phase: true },
            );
            self.enabled = true;
            self.state.csts.store(1, Ordering::SeqCst);
        } else if !enable && self.enabled {
            self.sqs.clear();
            self.cqs.clear();
            self.enabled = false;
            self.state.csts.store(0, Ordering::SeqCst);
        }
        if (value >> 14) & 3 != 0 && self.enabled {
            // Shutdown complete (SHST = 10b), RDY stays.
            self.state.csts.store(1 | 2 << 2, Ordering::SeqCst);
        }
    }

    fn process(&mut self, qid: u16) {
        let mut done = Vec::new();
        let mut cqid = 0;
        while let Some(sq) = self.sqs.get_mut(&qid) {
            if sq.head == sq.tail {
                break;
            }
            let mut raw = [0u8; 64];
            self.dev.read(sq.base + sq.head as u64 * 64, &mut raw);
            sq.head = (sq.head + 1) % sq.entries;
            cqid = sq.cqid;
            let cmd = Command::from_bytes(&raw);
            *self.stats.lock().unwrap().commands_per_sq.entry(qid).or_default() += 1;
            self.dev.take_fault();
            let (mut status, dw0) = if qid == 0 { self.admin(&cmd) } else { self.io(&cmd) };
            if self.dev.take_fault() && status.is_success() {
                // A DMA the IOMMU refused: the command fails, the data
                // never reached (or came from) the page.
                status = generic(0x04).0;
            }
            done.push((cmd.cid(), status, dw0));
            if !self.config.reorder {
                break;
            }
        }
        if done.is_empty() {
            return;
        }
        if self.config.reorder && done.len() > 1 {
            done.reverse();
            self.stats.lock().unwrap().reordered += done.len() as u64;
        }
        let head = self.sqs.get(&qid).map(|sq| sq.head).unwrap_or(0);
        for (cid, status, dw0) in done {
            self.complete(cqid, Completion { dw0, sq_head: head, sq_id: qid, cid, phase: false, status });
        }
        // Without reordering, take the next command (one at a time).
        if !self.config.reorder {
            self.process(qid);
        }
    }

    fn complete(&mut self, cqid: u16, mut c: Completion) {
        let cq = self.cqs.get_mut(&cqid).expect("completion queue exists");
        assert_ne!((cq.tail + 1) % cq.entries, cq.head, "CQ {cqid} overflow: the driver did not reap");
        c.phase = cq.phase;
        let at = cq.base + cq.tail as u64 * 16;
        cq.tail += 1;
        if cq.tail == cq.entries {
            cq.tail = 0;
            cq.phase = !cq.phase;
            self.stats.lock().unwrap().cq_wraps += 1;
        }
        self.dev.write(at, &c.to_bytes());
    }

    fn write_identify(&mut self, cmd: &Command, page: &[u8; 4096]) -> (Status, u32) {
        let mut off = 0usize;
        let mut segments = Vec::new();
        if prp::walk(&self.dev, cmd.prp1(), cmd.prp2(), 4096, 4096, |a, n| segments.push((a, n))).is_err() {
            return generic(0x13);
        }
        for (a, n) in segments {
            self.dev.write(a, &page[off..off + n as usize]);
            off += n as usize;
        }
        ok()
    }

    fn admin(&mut self, cmd: &Command) -> (Status, u32) {
        match cmd.opcode() {
            admin::IDENTIFY => match cmd.dw[10] & 0xff {
                1 => {
                    let mut p = [0u8; 4096];
                    p[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
                    let mut sn = [b' '; 20];
                    let n = self.config.serial.len().min(20);
                    sn[..n].copy_from_slice(&self.config.serial.as_bytes()[..n]);
                    p[4..24].copy_from_slice(&sn);
                    p[24..64].copy_from_slice(b"exo fake nvme                           ");
                    p[64..72].copy_from_slice(b"1.0     ");
                    p[77] = self.config.mdts;
                    p[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
                    p[512] = 0x66;
                    p[513] = 0x44;
                    p[516..520].copy_from_slice(&1u32.to_le_bytes());
                    p[525] = 1;
                    self.write_identify(cmd, &p)
                }
                0 => {
                    if cmd.nsid() != 1 {
                        return generic(0x0b);
                    }
                    let mut p = [0u8; 4096];
                    for at in [0, 8, 16] {
                        p[at..at + 8].copy_from_slice(&self.config.blocks.to_le_bytes());
                    }
                    p[25] = 1; // two formats
                    p[26] = if self.config.lbads == 12 { 1 } else { 0 };
                    p[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
                    p[132..136].copy_from_slice(&(12u32 << 16).to_le_bytes());
                    self.write_identify(cmd, &p)
                }
                0x14 => {
                    let mut p = [0u8; 4096];
                    p[32..36].copy_from_slice(&(FLEXIBLE_QUEUES as u32).to_le_bytes());
                    p[44..46].copy_from_slice(&self.config.max_vq_per_secondary.to_le_bytes());
                    p[64..68].copy_from_slice(&(FLEXIBLE_INTERRUPTS as u32).to_le_bytes());
                    p[76..78].copy_from_slice(&FLEXIBLE_INTERRUPTS.to_le_bytes());
                    self.write_identify(cmd, &p)
                }
                0x15 => {
                    let from = (cmd.dw[10] >> 16) as u16;
                    let mut p = [0u8; 4096];
                    let mut n = 0usize;
                    for (i, sc) in self.secondaries.iter().enumerate() {
                        let id = i as u16 + 1;
                        if id < from || n == 127 {
                            continue;
                        }
                        let e = &mut p[32 + 32 * n..64 + 32 * n];
                        e[0..2].copy_from_slice(&id.to_le_bytes());
                        e[4] = sc.online as u8;
                        e[8..10].copy_from_slice(&id.to_le_bytes());
                        e[10..12].copy_from_slice(&sc.queues.to_le_bytes());
                        e[12..14].copy_from_slice(&sc.interrupts.to_le_bytes());
                        n += 1;
                    }
                    p[0] = n as u8;
                    self.write_identify(cmd, &p)
                }
                _ => generic(0x02),
            },
            admin::VIRTUALIZATION_MANAGEMENT => {
                let action = cmd.dw[10] & 0xf;
                let resource = (cmd.dw[10] >> 8) & 7;
                let cntlid = (cmd.dw[10] >> 16) as u16;
                let count = cmd.dw[11] as u16;
                if cntlid == 0 || cntlid as usize > self.secondaries.len() {
                    return generic(0x02);
                }
                let i = cntlid as usize - 1;
                let used = |v: &Vec<Secondary>, queues: bool| -> u16 {
                    v.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, s)| if queues { s.queues } else { s.interrupts })
                        .sum()
                };
                match action {
                    7 => self.secondaries[i].online = false,
                    8 => {
                        if self.secondaries[i].online {
                            return generic(0x02);
                        }
                        let (pool, queues) =
                            if resource == 0 { (FLEXIBLE_QUEUES, true) } else { (FLEXIBLE_INTERRUPTS, false) };
                        if count > pool - used(&self.secondaries, queues)
                            || (queues && count > self.config.max_vq_per_secondary)
                        {
                            return generic(0x02);
                        }
                        if queues {
                            self.secondaries[i].queues = count;
                        } else {
                            self.secondaries[i].interrupts = count;
                        }
                    }
                    9 => {
                        let sc = &mut self.secondaries[i];
                        if sc.queues == 0 || sc.interrupts == 0 {
                            return generic(0x02);
                        }
                        sc.online = true;
                    }
                    _ => return generic(0x02),
                }
                ok()
            }
            admin::SET_FEATURES if cmd.dw[10] & 0xff == 0x07 => {
                let want_sq = (cmd.dw[11] & 0xffff) as u16 + 1;
                let want_cq = (cmd.dw[11] >> 16) as u16 + 1;
                let n = want_sq.min(want_cq).min(self.config.max_io_queues) as u32;
                (Status::SUCCESS, (n - 1) | (n - 1) << 16)
            }
            admin::CREATE_IO_CQ => {
                let qid = (cmd.dw[10] & 0xffff) as u16;
                let entries = (cmd.dw[10] >> 16) + 1;
                if qid == 0 || qid > self.config.max_io_queues || self.cqs.contains_key(&qid) {
                    return specific(0x01);
                }
                if entries < 2 || entries > self.config.mqes as u32 + 1 {
                    return specific(0x02);
                }
                if cmd.dw[11] & 1 == 0 || !cmd.prp1().is_multiple_of(4096) {
                    return generic(0x02);
                }
                self.cqs.insert(qid, Cq { base: cmd.prp1(), entries: entries as u16, tail: 0, head: 0, phase: true });
                let vector = (cmd.dw[11] & 2 != 0).then_some((cmd.dw[11] >> 16) as u16);
                self.stats.lock().unwrap().cq_vectors.insert(qid, vector);
                ok()
            }
            admin::CREATE_IO_SQ => {
                let qid = (cmd.dw[10] & 0xffff) as u16;
                let entries = (cmd.dw[10] >> 16) + 1;
                let cqid = (cmd.dw[11] >> 16) as u16;
                if qid == 0 || qid > self.config.max_io_queues || self.sqs.contains_key(&qid) {
                    return specific(0x01);
                }
                if entries < 2 || entries > self.config.mqes as u32 + 1 {
                    return specific(0x02);
                }
                if cqid == 0 || !self.cqs.contains_key(&cqid) {
                    return specific(0x00);
                }
                self.sqs.insert(qid, Sq { base: cmd.prp1(), entries: entries as u16, head: 0, tail: 0, cqid });
                ok()
            }
            admin::DELETE_IO_SQ => {
                let qid = (cmd.dw[10] & 0xffff) as u16;
                if qid == 0 || self.sqs.remove(&qid).is_none() {
                    return specific(0x01);
                }
                ok()
            }
            admin::DELETE_IO_CQ => {
                let qid = (cmd.dw[10] & 0xffff) as u16;
                if qid == 0 || self.cqs.remove(&qid).is_none() {
                    return specific(0x01);
                }
                ok()
            }
            _ => generic(0x01),
        }
    }

    fn io(&mut self, cmd: &Command) -> (Status, u32) {
        if cmd.nsid() != 1 {
            return generic(0x0b);
        }
        if !self.ready.load(Ordering::SeqCst) {
            return (Status::new(sct::GENERIC, 0x82), 0);
        }
        match cmd.opcode() {
            nvm::FLUSH => {
                let mut d = self.disk.lock().unwrap();
                let d = &mut *d;
                d.durable.copy_from_slice(&d.data);
                self.stats.lock().unwrap().flushes += 1;
                ok()
            }
            op @ (nvm::READ | nvm::WRITE) => {
                let bs = 1u64 << self.config.lbads;
                let (lba, blocks) = (cmd.lba(), cmd.block_count() as u64);
                if lba.checked_add(blocks).is_none_or(|end| end > self.config.blocks) {
                    return generic(0x80);
                }
                let len = blocks * bs;
                if self.config.mdts != 0 && len > 4096u64 << self.config.mdts {
                    return generic(0x02);
                }
                let mut segments = Vec::new();
                if prp::walk(&self.dev, cmd.prp1(), cmd.prp2(), len, 4096, |a, n| segments.push((a, n))).is_err() {
                    return generic(0x13);
                }
                {
                    let mut st = self.stats.lock().unwrap();
                    st.max_prp_pages = st.max_prp_pages.max(segments.len());
                }
                let mut disk = self.disk.lock().unwrap();
                let mut at = (lba * bs) as usize;
                for (addr, n) in segments {
                    let n = n as usize;
                    if op == nvm::READ {
                        let chunk = disk.data[at..at + n].to_vec();
                        self.dev.write(addr, &chunk);
                    } else {
                        let mut chunk = vec![0; n];
                        self.dev.read(addr, &mut chunk);
                        disk.data[at..at + n].copy_from_slice(&chunk);
                    }
                    at += n;
                }
                ok()
            }
            _ => generic(0x01),
        }
    }
}
