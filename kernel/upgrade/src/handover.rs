//! The handover record: what the old kernel tells the new one, and
//! nothing more. It is short because the kernel is stateless: the page
//! tables, the kernel info page, the device and I/O page tables and the
//! interrupt-remapping table stay where they are (in memory, and pointed
//! at by the I/O-MMU's own registers), and the new kernel adopts them as
//! they are. The record names where they are, and the few facts the
//! first kernel measured or decided at boot that cannot be read back from
//! the hardware.
//!
//! Version [`VERSION`]; one page of little-endian words:
//!
//! ```text
//! word 0   MAGIC "EXOHANDO"
//!      1   VERSION
//!      2   words used (header included)
//!      3   CRC-32 of words [4, used) as bytes
//!      4.. FIXED fields (see `Handover`), then four counted lists:
//!          RAM ranges (start, end), window spans (start, end),
//!          kernel MMIO spans (start, end), devices (requester id, domain),
//!          the interrupted context (22 words),
//!          and (since version 2) the parking area's physical address and
//!          a counted list of the parked application processors, two words
//!          each: index | APIC id << 8 | has-context << 40, running space.
//! ```
//!
//! Version 2 added the parked CPUs: an upgrade with several CPUs online
//! parks every other CPU outside both kernel slots (each saves the user
//! context it interrupted into its own slot of the parking area, which
//! stays where it is); the new kernel releases each into its own AP entry
//! and returns it to the space it was running, or to idle.

/// The handover format version; an image whose stamp names another is
/// refused (`Refusal::WrongAbi`). Bump it on any change to this layout.
pub const VERSION: u64 = 2;
pub const MAGIC: u64 = u64::from_le_bytes(*b"EXOHANDO");
/// The record fits one 4 KiB page.
pub const WORDS: usize = 512;
pub const MAX_RAM: usize = 32;
pub const MAX_SPANS: usize = 64;
pub const MAX_MMIO: usize = 8;
pub const MAX_DEVICES: usize = 20;
/// The saved user context (the kernel's trap frame: 15 registers, vector,
/// error, rip, cs, rflags, rsp, ss).
pub const FRAME_WORDS: usize = 22;
/// Parked application processors a record can list (CPU indices 1..=15).
pub const MAX_APS: usize = 15;

/// One application processor parked for the switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParkedCpu {
    /// Its CPU index (1.., the boot CPU is 0): its per-CPU tables and its
    /// slot in the parking area.
    pub index: u8,
    /// Its local APIC id (the destination of IPIs to it).
    pub apic_id: u32,
    /// The space it was running (its root table; 0: idle in the kernel).
    pub running: u64,
    /// It interrupted a user context, saved in its parking slot, to return
    /// to (false: it was idle, or waiting in the kernel with nothing to
    /// resume).
    pub has_context: bool,
}

/// The I/O-MMU as the first kernel set it up (the queue's position and the
/// tables are read back from the unit's registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iommu {
    /// Register page (0: no unit, devices have no DMA).
    pub regs: u64,
    /// Where queued invalidation's wait descriptors write their status.
    pub status_pa: u64,
    /// Interrupt remapping is on.
    pub remapping: bool,
    /// The host address width from the DMAR.
    pub haw: u8,
}

/// One device of the boot-time device list (index = its handle's index).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Device {
    pub requester_id: u16,
    /// Its domain id; 0 = the device has no I/O page table.
    pub domain: u16,
}

/// The whole record, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    /// How many upgrades preceded this one (0 for the first).
    pub generation: u64,
    /// Per-CPU state: the running space and the root scheduler's space.
    pub current: u64,
    pub init: u64,
    /// The upgrade space (its root), whose handle only init holds.
    pub upgrade_space: u64,
    /// The kernel info page and the device info page.
    pub kinfo_pa: u64,
    pub devinfo_pa: u64,
    /// The LAPIC's physical base; the timer keeps running, calibrated as:
    pub lapic: u64,
    pub tick_us: u64,
    pub tsc_per_us: u64,
    /// The kernel slots the first kernel reserved (both, or 0..0 if the
    /// spare one was taken by the boot image: then no upgrade is possible).
    pub slots_start: u64,
    pub slots_end: u64,
    /// `novector` was on the command line.
    pub novector: bool,
    /// TSC when the old kernel jumped (its last instruction's time).
    pub tsc_at_jump: u64,
    /// TSC when the old kernel took the upgrade request.
    pub tsc_at_request: u64,
    pub iommu: Iommu,
    pub ram: [(u64, u64); MAX_RAM],
    pub ram_count: usize,
    pub spans: [(u64, u64); MAX_SPANS],
    pub span_count: usize,
    pub mmio: [(u64, u64); MAX_MMIO],
    pub mmio_count: usize,
    pub devices: [Device; MAX_DEVICES],
    pub device_count: usize,
    /// The context to return to (init's, as its `yield` returns Ok(0)).
    pub frame: [u64; FRAME_WORDS],
    /// The parking area (physical; 0: none, one CPU online).
    pub park_pa: u64,
    pub parked: [ParkedCpu; MAX_APS],
    pub parked_count: usize,
}

impl Handover {
    pub const EMPTY: Handover = Handover {
        generation: 0,
        current: 0,
        init: 0,
        upgrade_space: 0,
        kinfo_pa: 0,
        devinfo_pa: 0,
        lapic: 0,
        tick_us: 0,
        tsc_per_us: 0,
        slots_start: 0,
        slots_end: 0,
        novector: false,
        tsc_at_jump: 0,
        tsc_at_request: 0,
        iommu: Iommu { regs: 0, status_pa: 0, remapping: false, haw: 0 },
        ram: [(0, 0); MAX_RAM],
        ram_count: 0,
        spans: [(0, 0); MAX_SPANS],
        span_count: 0,
        mmio: [(0, 0); MAX_MMIO],
        mmio_count: 0,
        devices: [Device { requester_id: 0, domain: 0 }; MAX_DEVICES],
        device_count: 0,
        frame: [0; FRAME_WORDS],
        park_pa: 0,
        parked: [ParkedCpu { index: 0, apic_id: 0, running: 0, has_context: false }; MAX_APS],
        parked_count: 0,
    };

    pub fn ram(&self) -> &[(u64, u64)] {
        &self.ram[..self.ram_count]
    }
    pub fn spans(&self) -> &[(u64, u64)] {
        &self.spans[..self.span_count]
    }
    pub fn mmio(&self) -> &[(u64, u64)] {
        &self.mmio[..self.mmio_count]
    }
    pub fn devices(&self) -> &[Device] {
        &self.devices[..self.device_count]
    }
    pub fn parked(&self) -> &[ParkedCpu] {
        &self.parked[..self.parked_count]
    }

    /// Write the record into `out`; returns the words used.
    pub fn encode(&self, out: &mut [u64; WORDS]) -> usize {
        let mut w = Writer { out, at: 4 };
        for v in [
            self.generation,
            self.current,
            self.init,
            self.upgrade_space,
            self.kinfo_pa,
            self.devinfo_pa,
            self.lapic,
            self.tick_us,
            self.tsc_per_us,
            self.slots_start,
            self.slots_end,
            self.novector as u64,
            self.tsc_at_jump,
            self.tsc_at_request,
            self.iommu.regs,
            self.iommu.status_pa,
            self.iommu.remapping as u64,
            self.iommu.haw as u64,
        ] {
            w.push(v);
        }
        for list in [self.ram(), self.spans(), self.mmio()] {
            w.push(list.len() as u64);
            for &(a, b) in list {
                w.push(a);
                w.push(b);
            }
        }
        w.push(self.device_count as u64);
        for d in self.devices() {
            w.push(d.requester_id as u64 | (d.domain as u64) << 16);
        }
        for v in self.frame {
            w.push(v);
        }
        w.push(self.park_pa);
        w.push(self.parked_count as u64);
        for c in self.parked() {
            w.push(c.index as u64 | (c.apic_id as u64) << 8 | (c.has_context as u64) << 40);
            w.push(c.running);
        }
        let used = w.at;
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = used as u64;
        out[3] = crc(&out[4..used]) as u64;
        used
    }

    /// Read a record, checking everything (a record is written by a
    /// kernel, but a bad one must stop the new kernel with a reason, not
    /// send it off into garbage).
    pub fn decode(words: &[u64]) -> Result<Handover, HandoverError> {
        if words.len() < 4 {
            return Err(HandoverError::Truncated);
        }
        if words[0] != MAGIC {
            return Err(HandoverError::BadMagic);
        }
        if words[1] != VERSION {
            return Err(HandoverError::WrongVersion { found: words[1] });
        }
        let used = usize::try_from(words[2]).map_err(|_| HandoverError::Truncated)?;
        if used < 4 || used > words.len() || used > WORDS {
            return Err(HandoverError::Truncated);
        }
        if crc(&words[4..used]) as u64 != words[3] {
            return Err(HandoverError::BadChecksum);
        }
        let mut r = Reader { words: &words[..used], at: 4 };
        let mut h = Handover::EMPTY;
        h.generation = r.next()?;
        h.current = r.next()?;
        h.init = r.next()?;
        h.upgrade_space = r.next()?;
        h.kinfo_pa = r.next()?;
        h.devinfo_pa = r.next()?;
        h.lapic = r.next()?;
        h.tick_us = r.next()?;
        h.tsc_per_us = r.next()?;
        h.slots_start = r.next()?;
        h.slots_end = r.next()?;
        h.novector = r.flag()?;
        h.tsc_at_jump = r.next()?;
        h.tsc_at_request = r.next()?;
        h.iommu.regs = r.next()?;
        h.iommu.status_pa = r.next()?;
        h.iommu.remapping = r.flag()?;
        h.iommu.haw = u8::try_from(r.next()?).map_err(|_| HandoverError::BadField("host address width"))?;
        h.ram_count = r.pairs(&mut h.ram, "RAM ranges")?;
        h.span_count = r.pairs(&mut h.spans, "window spans")?;
        h.mmio_count = r.pairs(&mut h.mmio, "MMIO spans")?;
        let n = r.count(MAX_DEVICES, "devices")?;
        for d in h.devices[..n].iter_mut() {
            let v = r.next()?;
            if v >> 32 != 0 {
                return Err(HandoverError::BadField("device entry"));
            }
            *d = Device { requester_id: v as u16, domain: (v >> 16) as u16 };
        }
        h.device_count = n;
        for f in h.frame.iter_mut() {
            *f = r.next()?;
        }
        h.park_pa = r.next()?;
        let n = r.count(MAX_APS, "parked CPUs")?;
        for i in 0..n {
            let v = r.next()?;
            let c = ParkedCpu {
                index: v as u8,
                apic_id: (v >> 8) as u32,
                has_context: v >> 40 & 1 != 0,
                running: r.next()?,
            };
            let repeated = h.parked[..i].iter().any(|p| p.index == c.index);
            if v >> 41 != 0 || c.index == 0 || c.index as usize > MAX_APS || repeated {
                return Err(HandoverError::BadField("parked CPU entry"));
            }
            if c.has_context && c.running == 0 {
                return Err(HandoverError::BadField("parked CPU context without a space"));
            }
            h.parked[i] = c;
        }
        h.parked_count = n;
        if n > 0 && h.park_pa == 0 {
            return Err(HandoverError::BadField("parked CPUs without a parking area"));
        }
        if r.at != used {
            return Err(HandoverError::BadField("trailing words"));
        }
        if h.current == 0 || h.init == 0 || h.kinfo_pa == 0 {
            return Err(HandoverError::BadField("no running space, init or kernel info page"));
        }
        Ok(h)
    }
}

/// Why a handover record was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverError {
    Truncated,
    BadMagic,
    WrongVersion { found: u64 },
    BadChecksum,
    BadField(&'static str),
    TooMany(&'static str),
}

impl core::fmt::Display for HandoverError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandoverError::Truncated => f.write_str("handover record truncated"),
            HandoverError::BadMagic => f.write_str("handover record: bad magic"),
            HandoverError::WrongVersion { found } => write!(f, "handover version {found}, expected {VERSION}"),
            HandoverError::BadChecksum => f.write_str("handover record: checksum mismatch"),
            HandoverError::BadField(what) => write!(f, "handover record: bad {what}"),
            HandoverError::TooMany(what) => write!(f, "handover record: too many {what}"),
        }
    }
}

fn crc(words: &[u64]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for w in words {
        h.update(&w.to_le_bytes());
    }
    h.finalize()
}

struct Writer<'a> {
    out: &'a mut [u64; WORDS],
    at: usize,
}

impl Writer<'_> {
    fn push(&mut self, v: u64) {
        // The lists are bounded by their arrays: 4 + 18 + 3 + 2*(32+64+8)
        // + 1 + 20 + 22 + 2 + 2*15 = 308 words at most, inside the page.
        if let Some(slot) = self.out.get_mut(self.at) {
            *slot = v;
            self.at += 1;
        }
    }
}

struct Reader<'a> {
    words: &'a [u64],
    at: usize,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<u64, HandoverError> {
        let v = *self.words.get(self.at).ok_or(HandoverError::Truncated)?;
        self.at += 1;
        Ok(v)
    }
    fn flag(&mut self) -> Result<bool, HandoverError> {
        match self.next()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(HandoverError::BadField("flag")),
        }
    }
    fn count(&mut self, max: usize, what: &'static str) -> Result<usize, HandoverError> {
        let n = self.next()?;
        if n > max as u64 {
            return Err(HandoverError::TooMany(what));
        }
        Ok(n as usize)
    }
    fn pairs(&mut self, out: &mut [(u64, u64)], what: &'static str) -> Result<usize, HandoverError> {
        let n = self.count(out.len(), what)?;
        for p in out[..n].iter_mut() {
            *p = (self.next()?, self.next()?);
            if p.1 < p.0 {
                return Err(HandoverError::BadField(what));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handover {
        let mut h = Handover::EMPTY;
        h.generation = 2;
        h.current = 0x7000;
        h.init = 0x7000;
        h.upgrade_space = 0x9000;
        h.kinfo_pa = 0x5000;
        h.devinfo_pa = 0x6000;
        h.lapic = 0xfee0_0000;
        h.tick_us = 10_000;
        h.tsc_per_us = 2_000;
        h.slots_start = 0x10_0000;
        h.slots_end = 0x50_0000;
        h.tsc_at_jump = 123;
        h.iommu = Iommu { regs: 0xfed9_0000, status_pa: 0x8000, remapping: true, haw: 39 };
        h.ram[0] = (0x10_0000, 0x800_0000);
        h.ram_count = 1;
        h.spans[0] = (0, 0x800_0000);
        h.spans[1] = (0x7ffe_0000, 0x8000_0000);
        h.span_count = 2;
        h.mmio[0] = (0xfee0_0000, 0xfec0_0000 + 0x40_0000);
        h.mmio_count = 1;
        h.devices[0] = Device { requester_id: 0x18, domain: 1 };
        h.devices[1] = Device { requester_id: 0x0100, domain: 0 };
        h.device_count = 2;
        h.frame[17] = 0x20_1234;
        h.park_pa = 0x9000;
        h.parked[0] = ParkedCpu { index: 1, apic_id: 1, running: 0x7000, has_context: true };
        h.parked[1] = ParkedCpu { index: 2, apic_id: 6, running: 0, has_context: false };
        h.parked_count = 2;
        h
    }

    fn encoded(h: &Handover) -> ([u64; WORDS], usize) {
        let mut out = [0; WORDS];
        let n = h.encode(&mut out);
        (out, n)
    }

    #[test]
    fn a_record_round_trips() {
        let h = sample();
        let (w, n) = encoded(&h);
        assert_eq!(Handover::decode(&w[..n]), Ok(h));
        // Trailing page contents do not matter.
        assert_eq!(Handover::decode(&w), Ok(h));
    }

    #[test]
    fn the_largest_record_fits_its_page() {
        let mut h = sample();
        h.ram_count = MAX_RAM;
        h.span_count = MAX_SPANS;
        h.mmio_count = MAX_MMIO;
        h.device_count = MAX_DEVICES;
        for (i, c) in h.parked.iter_mut().enumerate() {
            *c = ParkedCpu { index: i as u8 + 1, apic_id: u32::MAX, running: 0x7000, has_context: true };
        }
        h.parked_count = MAX_APS;
        let (w, n) = encoded(&h);
        assert!(n <= WORDS);
        assert_eq!(Handover::decode(&w[..n]), Ok(h));
    }

    #[test]
    fn hostile_records_are_refused_by_name() {
        let (w, n) = encoded(&sample());
        assert_eq!(Handover::decode(&w[..3]), Err(HandoverError::Truncated));
        assert_eq!(Handover::decode(&w[..n - 1]), Err(HandoverError::Truncated));
        let mut bad = w;
        bad[0] = 0;
        assert_eq!(Handover::decode(&bad), Err(HandoverError::BadMagic));
        let mut bad = w;
        bad[1] = VERSION + 1;
        assert_eq!(Handover::decode(&bad), Err(HandoverError::WrongVersion { found: VERSION + 1 }));
        for i in 4..n {
            let mut bad = w;
            bad[i] ^= 1 << 7;
            assert_eq!(Handover::decode(&bad[..n]), Err(HandoverError::BadChecksum), "word {i}");
        }
        let mut bad = w;
        bad[2] = u64::MAX;
        assert_eq!(Handover::decode(&bad), Err(HandoverError::Truncated));
    }

    /// Counts and fields that pass the checksum (a kernel bug, or a record
    /// written by a different build) are still checked.
    #[test]
    fn resealed_nonsense_is_refused() {
        let reseal = |w: &mut [u64; WORDS]| {
            let used = w[2] as usize;
            w[3] = crc(&w[4..used]) as u64;
        };
        let (w, _) = encoded(&sample());
        // The RAM count sits right after the 18 fixed words.
        let mut bad = w;
        bad[4 + 18] = MAX_RAM as u64 + 1;
        reseal(&mut bad);
        assert_eq!(Handover::decode(&bad), Err(HandoverError::TooMany("RAM ranges")));
        let mut bad = w;
        bad[4 + 11] = 2; // novector
        reseal(&mut bad);
        assert_eq!(Handover::decode(&bad), Err(HandoverError::BadField("flag")));
        let mut bad = w;
        bad[4 + 18 + 1] = 0x900_0000; // a RAM range that ends before it starts
        reseal(&mut bad);
        assert_eq!(Handover::decode(&bad), Err(HandoverError::BadField("RAM ranges")));
        let mut h = sample();
        h.init = 0;
        let (w, _) = encoded(&h);
        assert!(matches!(Handover::decode(&w), Err(HandoverError::BadField(_))));
    }

    /// The parked-CPU list (version 2) is checked entry by entry.
    #[test]
    fn parked_cpu_lists_are_checked() {
        let bad_parked = |edit: &dyn Fn(&mut Handover)| {
            let mut h = sample();
            edit(&mut h);
            let (w, _) = encoded(&h);
            Handover::decode(&w)
        };
        let entry = Err(HandoverError::BadField("parked CPU entry"));
        assert_eq!(bad_parked(&|h| h.parked[0].index = 0), entry, "CPU 0 is the one that switches");
        assert_eq!(bad_parked(&|h| h.parked[1].index = 1), entry, "one CPU listed twice");
        assert_eq!(bad_parked(&|h| h.parked[1].index = 16), entry);
        assert_eq!(
            bad_parked(&|h| h.parked[1].has_context = true),
            Err(HandoverError::BadField("parked CPU context without a space"))
        );
        assert_eq!(bad_parked(&|h| h.park_pa = 0), Err(HandoverError::BadField("parked CPUs without a parking area")));
        // One CPU: no list, no area.
        let mut h = sample();
        h.parked = Handover::EMPTY.parked;
        h.parked_count = 0;
        h.park_pa = 0;
        let (w, n) = encoded(&h);
        assert_eq!(Handover::decode(&w[..n]), Ok(h));
        // The count is bounded by the array.
        let (mut w, n) = encoded(&sample());
        w[n - 5] = MAX_APS as u64 + 1;
        w[3] = crc(&w[4..n]) as u64;
        assert_eq!(Handover::decode(&w), Err(HandoverError::TooMany("parked CPUs")));
    }
}
