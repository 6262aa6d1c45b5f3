//! The block service's shared-memory queues: how an application hands
//! block requests to the driver process, and gets answers, with no kernel
//! call on the data path (both sides poll; a `yield` may notify).
//!
//! One region, shared with `map` between a client and the driver, holds a
//! header, a request ring (client -> driver), a response ring (driver ->
//! client) and a data area. The driver also maps the data area into the
//! device's I/O address space, so the device DMAs straight to and from
//! the client's pages: no copy.
//!
//! The driver must treat the region as hostile: the client can write any
//! byte of it at any time. So the server reads the geometry once, when it
//! formats the region, and afterwards trusts only the indices, which it
//! validates on every read; a request naming data outside the data area is
//! answered with `Status::BadRequest` and never executed.
//!
//! **When the driver dies** (its owner, init, destroys it) the region's
//! owner calls [`mark_driver_gone`]: the header's magic is cleared and the
//! driver epoch is bumped. A client remembers the epoch it attached under;
//! its next [`Client::poll`] or [`Client::submit`] after the bump fails with
//! [`ProtocolError::DriverGone`] — a named error within one poll, never a
//! hang — and every request it had in flight is lost: neither done nor
//! failed for sure (a write may or may not have reached the medium). The
//! client then attaches again ([`Client::attach`]) once a new driver has
//! formatted the region; the magic, cleared before the bump, tells it when.
//! [`Server::format`] leaves the epoch alone, so the epoch a client reads
//! before a valid magic is the one the new driver serves under.
//! A client can be stopped between its epoch check and its stores (a
//! timer preempts it while init restarts the driver) and write into the
//! new format afterwards. So every request carries the client's epoch and
//! the server refuses one with another (`BadRequest`, never executed), and
//! a new format continues the indices from the request producer instead
//! of zeroing them (a late producer or consumer store stays in bounds; the
//! dead driver's leftover requests are skipped, never replayed).
//!
//! **Who yields.** A server that shares its core with its clients yields
//! when it has nothing to do, and a client yields while it waits: each
//! gives the other the CPU. A server that runs on a core of its own polls
//! without yielding and says so in the header ([`Server::set_polling`],
//! flag [`FLAG_SERVER_POLLS`]); a client that sees the flag spins on its
//! response ring ([`Client::polls_per_yield`] polls between yields), so
//! at queue depth 1 neither side makes a system call per request. The
//! flag is only advice to the client (a hostile server can make it spin,
//! never make it misbehave): the yield bound of its wait still holds.
//!
//! This crate is device-independent: the NVMe and virtio-blk drivers serve
//! the same rings.
//!
//! Layout (offsets in bytes):
//! ```text
//! 0x000 magic "EXBQ", version, entries, block size, capacity (blocks),
//!       data offset, data length, flags (0x028, server-written)
//! 0x040 request producer   (client)     0x080 request consumer  (server)
//! 0x0c0 response producer  (server)     0x100 response consumer (client)
//! 0x140 driver epoch       (the region's owner; neither side writes it)
//! 0x1000 request ring: entries x 32 bytes (op, tag, LBA, blocks, the
//!        client's driver epoch at byte 20, data offset)
//!        response ring: entries x 16 bytes (page aligned)
//!        data area (page aligned) to the end of the region
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub const MAGIC: u32 = u32::from_le_bytes(*b"EXBQ");
pub const VERSION: u32 = 1;
const REQ_PROD: u64 = 0x40;
const REQ_CONS: u64 = 0x80;
const RESP_PROD: u64 = 0xc0;
const RESP_CONS: u64 = 0x100;
const EPOCH: u64 = 0x140;
const FLAGS: u64 = 0x28;
/// Header flag: the server polls its request ring on a core of its own
/// and never yields; a client should poll for its answer, not yield.
pub const FLAG_SERVER_POLLS: u32 = 1;
/// Polls a client makes between two yields while a polling server works
/// on its request: enough that a request answered by a running server
/// never costs the client a system call (a poll took ~2.5 µs under TCG on
/// a loaded host, so this is seconds, far above the 10-40 ms stalls seen
/// there), few enough that a server that stopped polling still lets the
/// client's yield bound end the wait (a dead driver is noticed sooner, by
/// its epoch, within one poll).
pub const SPIN_POLLS_PER_YIELD: u64 = 1 << 22;
const REQ_RING: u64 = 0x1000;
pub const REQUEST_BYTES: u64 = 32;
pub const RESPONSE_BYTES: u64 = 16;
const PAGE: u64 = 4096;

/// The shared region as each side maps it. Index words are accessed with
/// acquire/release ordering; everything else with plain reads and writes
/// ordered by them.
#[allow(clippy::len_without_is_empty)] // a region is never empty
pub trait SharedRegion {
    fn len(&self) -> u64;
    fn load_acquire(&self, offset: u64) -> u32;
    fn store_release(&self, offset: u64, value: u32);
    fn read(&self, offset: u64, buf: &mut [u8]);
    fn write(&self, offset: u64, data: &[u8]);
}

/// Ring geometry, fixed when the server formats the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Ring entries, a power of two.
    pub entries: u32,
    pub block_size: u32,
    pub capacity_blocks: u64,
    pub data_offset: u64,
    pub data_len: u64,
}

const fn align_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

impl Geometry {
    /// The layout for a region of `region_len` bytes with `entries` ring
    /// slots; `None` if it does not fit or `entries` is not a power of two.
    pub fn new(region_len: u64, entries: u32, block_size: u32, capacity_blocks: u64) -> Option<Geometry> {
        if !entries.is_power_of_two() || entries > 1 << 16 || block_size == 0 {
            return None;
        }
        let resp = align_up(REQ_RING + entries as u64 * REQUEST_BYTES, PAGE);
        let data_offset = align_up(resp + entries as u64 * RESPONSE_BYTES, PAGE);
        let data_len = region_len.checked_sub(data_offset).filter(|l| *l > 0)?;
        Some(Geometry { entries, block_size, capacity_blocks, data_offset, data_len })
    }

    const fn response_ring(&self) -> u64 {
        align_up(REQ_RING + self.entries as u64 * REQUEST_BYTES, PAGE)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

impl Op {
    const fn code(self) -> u8 {
        match self {
            Op::Read => 1,
            Op::Write => 2,
            Op::Flush => 3,
        }
    }
}

/// A request as the client writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    pub tag: u32,
    pub lba: u64,
    pub blocks: u32,
    /// Offset of the data in the region (inside the data area).
    pub data_offset: u64,
}

impl Request {
    fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = self.op.code();
        b[4..8].copy_from_slice(&self.tag.to_le_bytes());
        b[8..16].copy_from_slice(&self.lba.to_le_bytes());
        b[16..20].copy_from_slice(&self.blocks.to_le_bytes());
        b[24..32].copy_from_slice(&self.data_offset.to_le_bytes());
        b
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Malformed: unknown op, zero blocks, data outside the data area, or
    /// stamped with another driver epoch (a dead driver's client's, late).
    BadRequest,
    /// The blocks lie beyond the device's capacity.
    OutOfRange,
    /// The device failed the command; `detail` carries its status (for
    /// NVMe, the 15-bit status field).
    DeviceError {
        detail: u32,
    },
}

impl Status {
    const fn encode(self) -> (u32, u32) {
        match self {
            Status::Ok => (0, 0),
            Status::BadRequest => (1, 0),
            Status::OutOfRange => (2, 0),
            Status::DeviceError { detail } => (3, detail),
        }
    }
    const fn decode(code: u32, detail: u32) -> Status {
        match code {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::OutOfRange,
            _ => Status::DeviceError { detail },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub tag: u32,
    pub status: Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The header is not a formatted block queue (client side).
    BadHeader,
    /// The region is too small for the requested geometry.
    RegionTooSmall,
    /// The peer moved an index further than the ring allows: the region
    /// is corrupt or the peer hostile. Stop serving it.
    IndexOutOfRange {
        producer: u32,
        consumer: u32,
    },
    RingFull,
    /// The client asked for data outside the data area.
    DataOutsideArea,
    /// A new client cannot attach yet: the server has not answered every
    /// request of the client before it (one that died with requests in
    /// flight). Try again after the server has run.
    PreviousClientBusy {
        requests: u32,
        answered: u32,
    },
    /// The driver this client attached to is gone: the region's owner
    /// bumped the driver epoch from `attached` to `now`
    /// ([`mark_driver_gone`]). Requests in flight are lost; attach again.
    DriverGone {
        attached: u32,
        now: u32,
    },
}

/// The driver epoch of `region` (0 until its owner first marks a driver
/// gone).
pub fn driver_epoch(region: &impl SharedRegion) -> u32 {
    region.load_acquire(EPOCH)
}

/// For the region's owner, once the driver serving it can run no more:
/// clear the magic (no client attaches to the dead driver's format) and
/// bump the driver epoch (every attached client's next poll or submit
/// fails with [`ProtocolError::DriverGone`]). Returns the new epoch. Call
/// it before a new driver formats the region.
pub fn mark_driver_gone(region: &impl SharedRegion) -> u32 {
    region.store_release(0x00, 0);
    let next = driver_epoch(region).wrapping_add(1);
    region.store_release(EPOCH, next);
    next
}

/// Requests a client has submitted that the server has not answered, as
/// the indices in `region` say (for the owner's report when a driver dies;
/// a hostile peer may make this any value).
pub fn unanswered(region: &impl SharedRegion) -> u32 {
    region.load_acquire(REQ_PROD).wrapping_sub(region.load_acquire(RESP_PROD))
}

fn write_u32(r: &impl SharedRegion, at: u64, v: u32) {
    r.write(at, &v.to_le_bytes());
}
fn write_u64(r: &impl SharedRegion, at: u64, v: u64) {
    r.write(at, &v.to_le_bytes());
}
fn read_u32(r: &impl SharedRegion, at: u64) -> u32 {
    let mut b = [0; 4];
    r.read(at, &mut b);
    u32::from_le_bytes(b)
}
fn read_u64(r: &impl SharedRegion, at: u64) -> u64 {
    let mut b = [0; 8];
    r.read(at, &mut b);
    u64::from_le_bytes(b)
}

/// The driver's end.
pub struct Server<R: SharedRegion> {
    region: R,
    geometry: Geometry,
    req_cons: u32,
    resp_prod: u32,
    /// The driver epoch when this server formatted the region: requests
    /// stamped with another are a dead driver's client's, written late.
    epoch: u32,
}

impl<R: SharedRegion> Server<R> {
    /// Formats `region` (zeroed indices, header) and keeps the geometry.
    pub fn format(region: R, entries: u32, block_size: u32, capacity_blocks: u64) -> Result<Server<R>, ProtocolError> {
        let g =
            Geometry::new(region.len(), entries, block_size, capacity_blocks).ok_or(ProtocolError::RegionTooSmall)?;
        // The indices continue from the request producer as it stands
        // (0 in a fresh region): a client of a dead driver that was stopped
        // between its epoch check and its index store (preempted) may
        // still store `producer + 1` — or its response consumer, which is
        // at most the producer — into this format. Starting from the
        // producer keeps such a late store inside the ring's bounds, and
        // the request it announces carries the old epoch, so it is refused
        // (`validate`). Requests the dead driver left are skipped: lost.
        let base = region.load_acquire(REQ_PROD);
        for off in [REQ_CONS, RESP_PROD, RESP_CONS] {
            region.store_release(off, base);
        }
        let epoch = driver_epoch(&region);
        write_u32(&region, 0x04, VERSION);
        write_u32(&region, 0x08, g.entries);
        write_u32(&region, 0x0c, g.block_size);
        write_u64(&region, 0x10, g.capacity_blocks);
        write_u64(&region, 0x18, g.data_offset);
        write_u64(&region, 0x20, g.data_len);
        // A new driver starts as a yielding one; it says when it polls.
        region.store_release(FLAGS, 0);
        // Magic last: a client that sees it sees a complete header.
        region.store_release(0x00, MAGIC);
        Ok(Server { region, geometry: g, req_cons: base, resp_prod: base, epoch })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Tell clients whether this server polls on a core of its own (they
    /// then poll for answers instead of yielding) or yields when idle.
    pub fn set_polling(&self, polls: bool) {
        self.region.store_release(FLAGS, if polls { FLAG_SERVER_POLLS } else { 0 });
    }

    /// The next request, validated, or `None` if the ring is empty. A
    /// malformed request comes back as `Err(request tag, reason)` wrapped
    /// in `Ok(Some(Err(..)))` so the caller answers it with BadRequest.
    #[allow(clippy::type_complexity)]
    pub fn next_request(&mut self) -> Result<Option<Result<Request, (u32, Status)>>, ProtocolError> {
        let producer = self.region.load_acquire(REQ_PROD);
        let pending = producer.wrapping_sub(self.req_cons);
        if pending > self.geometry.entries {
            return Err(ProtocolError::IndexOutOfRange { producer, consumer: self.req_cons });
        }
        if pending == 0 {
            return Ok(None);
        }
        // The response ring must have room for the answer: requests are
        // only consumed while responses can be produced.
        let resp_cons = self.region.load_acquire(RESP_CONS);
        let unacked = self.resp_prod.wrapping_sub(resp_cons);
        if unacked > self.geometry.entries {
            return Err(ProtocolError::IndexOutOfRange { producer: self.resp_prod, consumer: resp_cons });
        }
        if unacked == self.geometry.entries {
            return Ok(None);
        }
        let slot = (self.req_cons % self.geometry.entries) as u64;
        let mut raw = [0u8; 32];
        self.region.read(REQ_RING + slot * REQUEST_BYTES, &mut raw);
        self.req_cons = self.req_cons.wrapping_add(1);
        self.region.store_release(REQ_CONS, self.req_cons);
        Ok(Some(self.validate(&raw)))
    }

    fn validate(&self, raw: &[u8; 32]) -> Result<Request, (u32, Status)> {
        let tag = u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let lba = u64::from_le_bytes([raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]]);
        let blocks = u32::from_le_bytes([raw[16], raw[17], raw[18], raw[19]]);
        let data_offset = u64::from_le_bytes([raw[24], raw[25], raw[26], raw[27], raw[28], raw[29], raw[30], raw[31]]);
        let op = match raw[0] {
            1 => Op::Read,
            2 => Op::Write,
            3 => Op::Flush,
            _ => return Err((tag, Status::BadRequest)),
        };
        let req = Request { op, tag, lba, blocks, data_offset };
        if u32::from_le_bytes([raw[20], raw[21], raw[22], raw[23]]) != self.epoch {
            // Written for a driver that is gone: never executed.
            return Err((tag, Status::BadRequest));
        }
        if op == Op::Flush {
            return Ok(req);
        }
        let g = &self.geometry;
        let bytes = blocks as u64 * g.block_size as u64;
        let data_end = g.data_offset + g.data_len;
        if blocks == 0 || data_offset < g.data_offset || data_offset.checked_add(bytes).is_none_or(|end| end > data_end)
        {
            return Err((tag, Status::BadRequest));
        }
        if lba.checked_add(blocks as u64).is_none_or(|end| end > g.capacity_blocks) {
            return Err((tag, Status::OutOfRange));
        }
        Ok(req)
    }

    /// Posts the answer for `tag`.
    pub fn respond(&mut self, tag: u32, status: Status) {
        let slot = (self.resp_prod % self.geometry.entries) as u64;
        let at = self.geometry.response_ring() + slot * RESPONSE_BYTES;
        let (code, detail) = status.encode();
        write_u32(&self.region, at, tag);
        write_u32(&self.region, at + 4, code);
        write_u32(&self.region, at + 8, detail);
        self.resp_prod = self.resp_prod.wrapping_add(1);
        self.region.store_release(RESP_PROD, self.resp_prod);
    }
}

/// The application's end.
pub struct Client<R: SharedRegion> {
    region: R,
    geometry: Geometry,
    req_prod: u32,
    resp_cons: u32,
    /// The driver epoch this client attached under.
    epoch: u32,
}

impl<R: SharedRegion> Client<R> {
    /// Attaches to a region the server formatted, as a new client.
    pub fn attach(region: R) -> Result<Client<R>, ProtocolError> {
        let mut c = Client::resume(region)?;
        // A client before this one (a process that died) may have left
        // requests in flight. Every request gets exactly one answer, so
        // wait until the server has answered all of them, then skip the
        // answers nobody will take: this client starts with nothing in
        // flight and never sees an answer to someone else's request.
        let resp_prod = c.region.load_acquire(RESP_PROD);
        if resp_prod != c.req_prod {
            return Err(ProtocolError::PreviousClientBusy { requests: c.req_prod, answered: resp_prod });
        }
        c.region.store_release(RESP_CONS, resp_prod);
        c.resp_cons = resp_prod;
        Ok(c)
    }

    /// Attach as the client that was already using the rings (it wrote a
    /// request by hand, say): the indices are taken as they are, and
    /// answers still due are this client's to take.
    pub fn resume(region: R) -> Result<Client<R>, ProtocolError> {
        // The epoch first: a magic seen after it was written after the
        // bump that preceded it (`mark_driver_gone` clears the magic first).
        let epoch = driver_epoch(&region);
        if region.load_acquire(0x00) != MAGIC || read_u32(&region, 0x04) != VERSION {
            return Err(ProtocolError::BadHeader);
        }
        let g = Geometry {
            entries: read_u32(&region, 0x08),
            block_size: read_u32(&region, 0x0c),
            capacity_blocks: read_u64(&region, 0x10),
            data_offset: read_u64(&region, 0x18),
            data_len: read_u64(&region, 0x20),
        };
        // The client checks too: a buggy server should not make it index
        // outside its own mapping.
        match Geometry::new(region.len(), g.entries, g.block_size, g.capacity_blocks) {
            Some(expected) if expected == g => {}
            _ => return Err(ProtocolError::BadHeader),
        }
        let req_prod = region.load_acquire(REQ_PROD);
        let resp_cons = region.load_acquire(RESP_CONS);
        if driver_epoch(&region) != epoch {
            // Marked gone while we read: this format is the dead driver's.
            return Err(ProtocolError::BadHeader);
        }
        Ok(Client { region, geometry: g, req_prod, resp_cons, epoch })
    }

    /// The driver epoch this client attached under.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// `Err(DriverGone)` once the region's owner has marked the driver
    /// this client attached to gone.
    pub fn check_driver(&self) -> Result<(), ProtocolError> {
        let now = driver_epoch(&self.region);
        if now != self.epoch {
            return Err(ProtocolError::DriverGone { attached: self.epoch, now });
        }
        Ok(())
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
    pub fn region(&self) -> &R {
        &self.region
    }

    /// The server says it polls on a core of its own (read live: a
    /// driver moved onto a shared core clears it).
    pub fn server_polls(&self) -> bool {
        self.region.load_acquire(FLAGS) & FLAG_SERVER_POLLS != 0
    }

    /// How many times to poll for an answer before yielding once: 1
    /// when the server shares the core (it runs only when we yield),
    /// [`SPIN_POLLS_PER_YIELD`] when it polls on its own core.
    pub fn polls_per_yield(&self) -> u64 {
        if self.server_polls() {
            SPIN_POLLS_PER_YIELD
        } else {
            1
        }
    }

    /// Requests in flight (submitted, response not yet taken).
    pub fn in_flight(&self) -> u32 {
        self.req_prod.wrapping_sub(self.resp_cons)
    }

    /// Queues `req`. Full while `entries` requests await responses.
    pub fn submit(&mut self, req: &Request) -> Result<(), ProtocolError> {
        self.check_driver()?;
        if req.op != Op::Flush {
            let bytes = req.blocks as u64 * self.geometry.block_size as u64;
            let end = self.geometry.data_offset + self.geometry.data_len;
            if req.data_offset < self.geometry.data_offset || req.data_offset.saturating_add(bytes) > end {
                return Err(ProtocolError::DataOutsideArea);
            }
        }
        if self.in_flight() >= self.geometry.entries {
            return Err(ProtocolError::RingFull);
        }
        let slot = (self.req_prod % self.geometry.entries) as u64;
        let mut raw = req.encode();
        raw[20..24].copy_from_slice(&self.epoch.to_le_bytes());
        self.region.write(REQ_RING + slot * REQUEST_BYTES, &raw);
        self.req_prod = self.req_prod.wrapping_add(1);
        self.region.store_release(REQ_PROD, self.req_prod);
        Ok(())
    }

    /// Takes the next response, if the server has posted one.
    pub fn poll(&mut self) -> Result<Option<Response>, ProtocolError> {
        self.check_driver()?;
        let producer = self.region.load_acquire(RESP_PROD);
        let ready = producer.wrapping_sub(self.resp_cons);
        if ready > self.geometry.entries {
            return Err(ProtocolError::IndexOutOfRange { producer, consumer: self.resp_cons });
        }
        if ready == 0 {
            return Ok(None);
        }
        let slot = (self.resp_cons % self.geometry.entries) as u64;
        let at = self.geometry.response_ring() + slot * RESPONSE_BYTES;
        let tag = read_u32(&self.region, at);
        let status = Status::decode(read_u32(&self.region, at + 4), read_u32(&self.region, at + 8));
        self.resp_cons = self.resp_cons.wrapping_add(1);
        self.region.store_release(RESP_CONS, self.resp_cons);
        Ok(Some(Response { tag, status }))
    }
}
