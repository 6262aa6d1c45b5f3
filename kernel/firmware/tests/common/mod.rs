//! Fake physical memory holding an ACPI image (RSDP → RSDT/XSDT → MADT,
//! MCFG, DMAR, NFIT shaped like QEMU q35's) and a runner that bounds every
//! case in time (the cases draw from `testrng::Rng`, so a case number
//! reproduces).
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Bytes of fake physical memory; everything outside is "not RAM".
pub const MEMORY: usize = 0x1_0000;
pub const RSDP_AT: u64 = 0x1000;
pub const ROOT_AT: u64 = 0x2000;

/// Where the image puts table `i` of `Image::tables`.
pub fn table_at(i: usize) -> u64 {
    0x3000 + 0x1000 * i as u64
}

pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

/// Sets byte 9 so the bytes of the table (as far as its length field says,
/// clamped to the buffer) sum to zero.
pub fn fix_checksum(t: &mut [u8]) {
    if t.len() < 36 {
        return;
    }
    let len = (u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize).min(t.len());
    t[9] = 0;
    t[9] = 0u8.wrapping_sub(sum(&t[..len]));
}

/// A system description table: QEMU's header fields, then `body`.
pub fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"BOCHS ");
    t.extend_from_slice(b"BXPC    ");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"BXPC");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    fix_checksum(&mut t);
    t
}

/// QEMU q35's MADT (hw/i386/acpi-common.c): local APIC at 0xfee00000,
/// PCAT_COMPAT, one local APIC per CPU, an I/O APIC, interrupt source
/// overrides and a local APIC NMI entry.
pub fn qemu_madt(cpus: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for id in 0..cpus {
        b.extend_from_slice(&[0, 8, id, id]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    b.extend_from_slice(&[1, 12, 0, 0]);
    b.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for (irq, gsi, flags) in [(0u8, 2u32, 0u16), (5, 5, 0xd), (9, 9, 0xd), (10, 10, 0xd), (11, 11, 0xd)] {
        b.extend_from_slice(&[2, 10, 0, irq]);
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
    }
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    sdt(b"APIC", 1, &b)
}

/// QEMU q35's MCFG: one allocation, ECAM at 0xb0000000, segment 0, buses
/// 0–255.
pub fn qemu_mcfg() -> Vec<u8> {
    let mut b = vec![0u8; 8];
    b.extend_from_slice(&0xb000_0000u64.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&[0, 255]);
    b.extend_from_slice(&0u32.to_le_bytes());
    sdt(b"MCFG", 1, &b)
}

/// QEMU's DMAR for `intel-iommu,intremap=on` (one DRHD with
/// INCLUDE_PCI_ALL at 0xfed90000, scope: the IOAPIC), plus a second DRHD
/// listing the endpoint behind the bridge 00:1c.0 and an RMRR 0xe0000..=0xfffff for 00:1d.0.
pub fn dmar() -> Vec<u8> {
    let mut b = vec![38, 0x01];
    b.extend_from_slice(&[0; 10]);
    // DRHD, INCLUDE_PCI_ALL, segment 0, registers at 0xfed90000.
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
    b.extend_from_slice(&[3, 8, 0, 0, 0, 0xff, 0, 0]);
    // DRHD with one endpoint scope (path 00:1c.0 then 0.0), registers at 0xfed91000.
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&26u16.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
    b.extend_from_slice(&[1, 10, 0, 0, 0, 0x00, 0x1c, 0x0, 0x00, 0x0]);
    // RMRR for 00:1d.0.
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&0xe0000u64.to_le_bytes());
    b.extend_from_slice(&0xfffffu64.to_le_bytes());
    b.extend_from_slice(&[1, 8, 0, 0, 0, 0, 0x1d, 0]);
    sdt(b"DMAR", 1, &b)
}

/// Where QEMU's NFIT puts the NVDIMM of the standard machine: the device
/// memory region starts at 4 GiB (RAM is below), 128 MiB long.
pub const NVDIMM_BASE: u64 = 4 << 30;
pub const NVDIMM_BYTES: u64 = 128 << 20;

/// QEMU 7.2's NFIT for one NVDIMM (hw/acpi/nvdimm.c): the 4 reserved bytes
/// after the header, then a SPA range (persistent-memory GUID, index 2,
/// proximity domain valid, write-back + non-volatile attributes), a memory
/// device to SPA mapping, and a control region (skipped by `firmware::nfit`).
pub fn qemu_nfit() -> Vec<u8> {
    let mut b = vec![0u8; 4];
    let mut spa = vec![0u8; 56];
    spa[2] = 56;
    spa[4] = 2; // SPA range index
    spa[6] = 2; // flags: proximity domain valid
    spa[16..32].copy_from_slice(&[
        0x79, 0xD3, 0xF0, 0x66, 0xF3, 0xB4, 0x74, 0x40, 0xAC, 0x43, 0x0D, 0x33, 0x18, 0xB7, 0x8C, 0xDB,
    ]);
    spa[32..40].copy_from_slice(&NVDIMM_BASE.to_le_bytes());
    spa[40..48].copy_from_slice(&NVDIMM_BYTES.to_le_bytes());
    spa[48..56].copy_from_slice(&0x8008u64.to_le_bytes());
    let mut map = vec![0u8; 48];
    map[0] = 1;
    map[2] = 48;
    map[4..8].copy_from_slice(&0x1u32.to_le_bytes());
    map[12] = 2; // the SPA range above
    map[16..24].copy_from_slice(&NVDIMM_BYTES.to_le_bytes());
    map[42] = 1; // interleave ways
    let mut ctl = vec![0u8; 80];
    ctl[0] = 4;
    ctl[2] = 80;
    b.extend(spa);
    b.extend(map);
    b.extend(ctl);
    sdt(b"NFIT", 1, &b)
}

/// An RSDP: revision 0 names an RSDT, revision 2 an XSDT.
pub fn rsdp(revision: u8, root: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(revision);
    r.extend_from_slice(&(if revision == 0 { root as u32 } else { 0 }).to_le_bytes());
    if revision > 0 {
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&root.to_le_bytes());
        r.extend_from_slice(&[0; 4]);
    }
    fix_rsdp(&mut r);
    r
}

/// Repairs both RSDP checksums (the 2.0 one over its length field's bytes).
pub fn fix_rsdp(r: &mut [u8]) {
    r[8] = 0;
    r[8] = 0u8.wrapping_sub(sum(&r[..20]));
    if r.len() >= 36 && r[15] > 0 {
        let len = (u32::from_le_bytes([r[20], r[21], r[22], r[23]]) as usize).min(r.len());
        r[32] = 0;
        r[32] = 0u8.wrapping_sub(sum(&r[..len]));
    }
}

/// An RSDT (4-byte entries) or XSDT (8-byte entries).
pub fn root(revision: u8, entries: &[u64]) -> Vec<u8> {
    let mut b = Vec::new();
    for &e in entries {
        if revision == 0 {
            b.extend_from_slice(&(e as u32).to_le_bytes());
        } else {
            b.extend_from_slice(&e.to_le_bytes());
        }
    }
    sdt(if revision == 0 { b"RSDT" } else { b"XSDT" }, 1, &b)
}

/// The pieces of an ACPI image, kept apart so tests can corrupt one and
/// lay the image out again.
#[derive(Clone)]
pub struct Image {
    pub rsdp: Vec<u8>,
    pub root: Vec<u8>,
    pub tables: Vec<Vec<u8>>,
}

impl Image {
    /// QEMU's layout: MADT (two CPUs), MCFG, DMAR, NFIT.
    pub fn qemu(revision: u8) -> Image {
        Image::with(revision, vec![qemu_madt(2), qemu_mcfg(), dmar(), qemu_nfit()], &[])
    }

    /// `tables` at `table_at(i)`, listed in that order, then `extra`
    /// addresses.
    pub fn with(revision: u8, tables: Vec<Vec<u8>>, extra: &[u64]) -> Image {
        let mut entries: Vec<u64> = (0..tables.len()).map(table_at).collect();
        entries.extend_from_slice(extra);
        Image { rsdp: rsdp(revision, ROOT_AT), root: root(revision, &entries), tables }
    }

    pub fn memory(&self) -> Vec<u8> {
        let mut m = vec![0u8; MEMORY];
        let mut put = |at: u64, bytes: &[u8]| {
            let at = at as usize;
            let n = bytes.len().min(MEMORY - at);
            m[at..at + n].copy_from_slice(&bytes[..n]);
        };
        put(RSDP_AT, &self.rsdp);
        put(ROOT_AT, &self.root);
        for (i, t) in self.tables.iter().enumerate() {
            assert!(t.len() <= 0x1000, "test tables fit in a page");
            put(table_at(i), t);
        }
        m
    }
}

/// How long one case may take before it counts as a hang (a case takes
/// microseconds; the bound is generous for a loaded 2-core machine).
pub const CASE_BOUND: Duration = Duration::from_secs(10);

/// Runs `check(i)` for `i in 0..cases` on a worker thread; fails naming
/// the case if one panics or runs longer than [`CASE_BOUND`].
pub fn run_bounded(name: &str, cases: usize, check: fn(usize)) {
    let (tx, rx) = mpsc::channel::<usize>();
    let worker = thread::spawn(move || {
        for i in 0..cases {
            tx.send(i).unwrap();
            check(i);
        }
    });
    let mut current = None;
    loop {
        match rx.recv_timeout(CASE_BOUND) {
            Ok(i) => current = Some(i),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: case {current:?} did not finish within {CASE_BOUND:?} (a hang)")
            }
        }
    }
    if worker.join().is_err() {
        panic!("{name}: case {current:?} panicked");
    }
}
