//! The physical window: planning from a memory map, the page-size choice,
//! the tables built (walked back over emulated memory), and the ACPI
//! pre-walk that maps the tables' pages.

use firmware::window::{
    acpi_spans, listed, pages, plan, Kind, Page, Region, Spans, TableMemory, Window, WindowError, PAGE_1G, PAGE_2M,
    PAGE_4K, PTE_NX, PTE_P, PTE_PS, PTE_W, WINDOW_LIMIT,
};
use std::collections::HashMap;
use testrng::Rng;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn region(start: u64, len: u64, t: u32) -> Region {
    Region { start, end: start + len, kind: Kind::from_e820(t) }
}

/// QEMU q35 + SeaBIOS under PVH with `ram` bytes (as logged by the kernel
/// on QEMU 7.2): low RAM up to 2 GiB, the rest above 4 GiB; the ACPI
/// tables in a reserved range right after low RAM.
fn q35(ram: u64) -> Vec<Region> {
    let low = ram.min(2 * GIB);
    let mut m = vec![
        region(0, 0x9fc00, 1),
        region(0x9fc00, 0x400, 2),
        region(0xf0000, 0x10000, 2),
        region(0x10_0000, low - 0x22000 - 0x10_0000, 1),
        region(low - 0x22000, 0x22000, 2),
        region(0xb000_0000, 0x1000_0000, 2),
        region(0xfed1_c000, 0x4000, 2),
        region(0xfffc_0000, 0x4_0000, 2),
    ];
    if ram > low {
        m.push(region(4 * GIB, ram - low, 1));
    }
    m.push(region(0xfd_0000_0000, 0x3_0000_0000, 2));
    m
}

/// Emulated physical memory: sparse 4 KiB frames, and a frame allocator
/// handing out frames from a pool far above everything mapped.
struct Mem {
    words: HashMap<u64, u64>,
    next: u64,
    limit: u64,
}

impl Mem {
    fn new(frames: u64) -> Mem {
        Mem { words: HashMap::new(), next: 0x70_0000_0000, limit: 0x70_0000_0000 + frames * PAGE_4K }
    }
}

impl TableMemory for Mem {
    fn read(&self, pa: u64) -> u64 {
        *self.words.get(&pa).unwrap_or(&0)
    }
    fn write(&mut self, pa: u64, value: u64) {
        assert_eq!(pa % 8, 0);
        self.words.insert(pa, value);
    }
    fn alloc(&mut self) -> Option<u64> {
        if self.next >= self.limit {
            return None;
        }
        let f = self.next;
        self.next += PAGE_4K;
        Some(f)
    }
}

fn build(map: &[Region], gib: bool) -> (Mem, Window) {
    let mut m = Mem::new(10_000);
    let mut w = Window::new(&mut m, gib).unwrap();
    for &(s, e) in plan(map).spans.as_slice() {
        w.add(&mut m, s, e).unwrap();
    }
    (m, w)
}

#[test]
fn plan_maps_ram_and_acpi_memory_only() {
    let mut map = q35(8 * GIB);
    map.push(region(0x20_0000_0000, 0x1000, 3)); // ACPI reclaim
    map.push(region(0x5000_0000, 0x800, 4)); // NVS, sub-page: rounds to nothing
    let p = plan(&map);
    assert_eq!(
        p.spans.as_slice(),
        [
            (0, 0x9f000),
            (0x10_0000, 2 * GIB - 0x22000),
            (4 * GIB, 10 * GIB),
            (0x20_0000_0000, (0x20_0000_0000) + 0x1000)
        ]
    );
    assert_eq!(p.ignored, 0);
    // Nothing reserved is in the plan: not ECAM, not the HT hole, not the
    // ACPI tables' reserved range (those are mapped table by table).
    for r in map.iter().filter(|r| r.kind == Kind::Reserved) {
        assert!(!p.spans.overlaps(r.start, r.end), "{r:?}");
    }
}

#[test]
fn plan_cuts_at_512_gib_and_counts_what_it_ignores() {
    let map = [region(0, 0x9f000, 1), region(WINDOW_LIMIT - GIB, 2 * GIB, 1), region(WINDOW_LIMIT + GIB, GIB, 1)];
    let p = plan(&map);
    assert_eq!(p.spans.as_slice(), [(0, 0x9f000), (WINDOW_LIMIT - GIB, WINDOW_LIMIT)]);
    assert_eq!(p.ignored, 2 * GIB);
}

#[test]
fn spans_merge_and_report_gaps() {
    let mut s = Spans::EMPTY;
    s.insert(0x5000, 0x8000).unwrap();
    s.insert(0x1000, 0x2000).unwrap();
    s.insert(0x2000, 0x3000).unwrap(); // touches: merged
    s.insert(0x7000, 0x9000).unwrap(); // overlaps: merged
    assert_eq!(s.as_slice(), [(0x1000, 0x3000), (0x5000, 0x9000)]);
    assert!(s.contains(0x1000, 0x2000));
    assert!(!s.contains(0x2fff, 2));
    assert!(!s.contains(0x4000, 1));
    assert!(s.contains(0x8fff, 1));
    assert!(!s.contains(u64::MAX, 2));
    assert_eq!(s.missing(0, 0xa000).collect::<Vec<_>>(), [(0, 0x1000), (0x3000, 0x5000), (0x9000, 0xa000)]);
    assert_eq!(s.missing(0x1000, 0x3000).count(), 0);
    assert_eq!(s.missing(0x2000, 0x6000).collect::<Vec<_>>(), [(0x3000, 0x5000)]);
    assert_eq!(s.bytes(), 0x6000);
    let mut full = Spans::EMPTY;
    for i in 0..64u64 {
        full.insert(i * 0x2000, i * 0x2000 + 0x1000).unwrap();
    }
    assert_eq!(full.insert(0x100_0000, 0x100_1000), Err(WindowError::TooManySpans));
    // A span that merges takes no new slot, even when the list is full.
    full.insert(0x1000, 0x2000).unwrap();
    assert_eq!(full.as_slice().len(), 63);
}

#[test]
fn pages_are_the_largest_aligned_ones() {
    let p: Vec<Page> = pages(0x1f_f000, GIB + PAGE_2M + 0x3000, true).collect();
    assert_eq!(p[0], Page { pa: 0x1f_f000, size: PAGE_4K });
    assert_eq!(p[1], Page { pa: 0x20_0000, size: PAGE_2M });
    assert!(p.contains(&Page { pa: GIB, size: PAGE_2M }));
    assert_eq!(p.iter().filter(|x| x.size == PAGE_1G).count(), 0);
    assert_eq!(p.last().unwrap(), &Page { pa: GIB + PAGE_2M + 0x2000, size: PAGE_4K });
    let q: Vec<Page> = pages(0, 3 * GIB, true).collect();
    assert_eq!(q.len(), 3);
    assert!(q.iter().all(|x| x.size == PAGE_1G));
    assert_eq!(pages(0, 3 * GIB, false).count(), 3 * 512);
    // Contiguous and exact, whatever the bounds.
    for (s, e) in [(0x1000, 0x2000), (0x3000, 5 * GIB + 0x7000), (0x20_0000, 0x40_0000)] {
        for gib in [false, true] {
            let mut at = s;
            for pg in pages(s, e, gib) {
                assert_eq!(pg.pa, at);
                assert_eq!(pg.pa % pg.size, 0);
                at += pg.size;
            }
            assert_eq!(at, e);
        }
    }
}

/// Every page boundary around the spans translates to itself inside them
/// and to nothing outside; leaves are writable, not executable.
fn check_identity(m: &Mem, w: &Window, map: &[Region]) {
    let spans = w.spans;
    let mut probes = vec![];
    for &(s, e) in spans.as_slice() {
        probes.extend([s, s + 8, e - 8, e, s.saturating_sub(8), ((s + e) / 2) & !7]);
    }
    for r in map {
        probes.extend([r.start & !7, r.end.saturating_sub(8) & !7, r.end]);
    }
    for pa in probes {
        let t = w.translate(m, pa);
        if spans.contains(pa, 8) {
            assert_eq!(t, Some(pa), "{pa:#x}");
        } else if !spans.contains(pa, 1) {
            assert_eq!(t, None, "{pa:#x} is outside the window but mapped");
        }
    }
    // Every leaf is present, writable, NX; huge ones carry PS.
    for (&a, &v) in &m.words {
        if v & PTE_P != 0 && (v & PTE_PS != 0 || v & PTE_NX != 0) {
            assert_eq!(v & (PTE_P | PTE_W | PTE_NX), PTE_P | PTE_W | PTE_NX, "{a:#x}: {v:#x}");
        }
    }
}

#[test]
fn q35_windows_map_exactly_the_plan() {
    for ram in [128 * MIB, 512 * MIB, 2 * GIB, 4 * GIB, 8 * GIB] {
        for gib in [false, true] {
            let map = q35(ram);
            let (m, w) = build(&map, gib);
            check_identity(&m, &w, &map);
            assert_eq!(w.spans.as_slice(), plan(&map).spans.as_slice());
            // Holes are not mapped: the PCI hole, ECAM, the VGA frame buffer.
            for pa in [0xa_0000, 0xb000_0000, 0xfee0_0000, 3 * GIB, 0xfd_0000_0000] {
                assert_eq!(w.translate(&m, pa), None, "{pa:#x} with {ram:#x}");
            }
            // A handful of tables: the PDPT, a PD per partly mapped GiB (all
            // of them without 1 GiB pages) and a PT per unaligned edge.
            let gibs = ram.div_ceil(GIB) + 1;
            assert!(w.frames <= 1 + gibs + 4, "{} frames for {ram:#x} (1 GiB pages {gib})", w.frames);
            if gib && ram == 8 * GIB {
                assert!(w.frames <= 6, "{}", w.frames);
            }
        }
    }
}

#[test]
fn adding_a_mapped_span_again_takes_nothing_and_conflicts_are_refused() {
    let map = q35(2 * GIB);
    let (mut m, mut w) = build(&map, true);
    let frames = w.frames;
    w.add(&mut m, 0x10_0000, 0x20_0000).unwrap();
    assert_eq!(w.frames, frames);
    // A 2 MiB page mapped for something else (as the kernel's MMIO code
    // does) is in the way of a 4 KiB page inside it.
    let pd = m.read(w.pdpt + 3 * 8) & !0xfff;
    assert_eq!(pd, 0, "GiB 3 has no RAM");
    let f = m.alloc().unwrap();
    m.write(w.pdpt + 3 * 8, f | PTE_P | PTE_W);
    m.write(f + 503 * 8, (3 * GIB + 503 * PAGE_2M) | PTE_P | PTE_W | PTE_PS | 0x18);
    let before = w.spans.as_slice().to_vec();
    assert_eq!(w.add(&mut m, 0xfee0_0000, 0xfee0_1000), Err(WindowError::Conflict));
    assert_eq!(w.spans.as_slice(), before, "a refused span is not recorded");
    assert_eq!(w.add(&mut m, 0x1000, 0x1800), Err(WindowError::BadSpan));
    assert_eq!(w.add(&mut m, WINDOW_LIMIT, WINDOW_LIMIT + 0x1000), Err(WindowError::BadSpan));
}

#[test]
fn running_out_of_frames_is_an_error() {
    let map = q35(8 * GIB);
    let mut m = Mem::new(2);
    let mut w = Window::new(&mut m, false).unwrap();
    let r = plan(&map).spans.as_slice().iter().try_for_each(|&(s, e)| w.add(&mut m, s, e));
    assert_eq!(r, Err(WindowError::OutOfFrames));
}

#[test]
fn random_spans_translate_exactly() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let mut rnd = move || rng.next_u64();
    for round in 0..200 {
        let mut m = Mem::new(100_000);
        let mut w = Window::new(&mut m, round % 2 == 0).unwrap();
        let mut map = vec![];
        for _ in 0..(rnd() % 12 + 1) {
            let start = (rnd() % (64 * GIB)) & !(PAGE_4K - 1);
            let len = match rnd() % 3 {
                0 => (rnd() % (64 * PAGE_4K)) & !(PAGE_4K - 1),
                1 => (rnd() % (8 * PAGE_2M)) & !(PAGE_4K - 1),
                _ => (rnd() % (3 * GIB)) & !(PAGE_4K - 1),
            } + PAGE_4K;
            map.push(region(start, len, 1));
            let before = w.spans;
            w.add(&mut m, start, start + len).unwrap();
            for (s, e) in before.as_slice() {
                assert!(w.spans.contains(*s, e - s));
            }
            assert!(w.spans.contains(start, len));
        }
        check_identity(&m, &w, &map);
    }
}

#[test]
fn listed_means_no_page_in_a_hole() {
    let map = q35(2 * GIB);
    assert!(listed(&map, 0x7ffe_1f75, 36));
    assert!(listed(&map, 0xf5a00, 20));
    assert!(listed(&map, 0x9fb00, 0x200), "RAM then the EBDA, both listed");
    assert!(!listed(&map, 0xa_0000, 1), "VGA hole");
    assert!(!listed(&map, 0x7fff_f000, 0x2000), "runs off the end of low memory");
    assert!(!listed(&map, 3 * GIB, 36));
    assert!(!listed(&map, u64::MAX - 4, 36));
}

/// Fake ACPI: RSDP in the BIOS area, RSDT and tables in the reserved range
/// at the top of low RAM.
fn acpi_image(rev: u8, entries: &[u64]) -> HashMap<u64, u8> {
    let mut b = HashMap::new();
    let mut put = |pa: u64, bytes: &[u8]| {
        for (i, x) in bytes.iter().enumerate() {
            b.insert(pa + i as u64, *x);
        }
    };
    let rsdp = 0xf5a00u64;
    let root = 0x7ffe_1f75u64;
    let mut r = vec![0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[15] = rev;
    r[16..20].copy_from_slice(&(root as u32).to_le_bytes());
    if rev >= 2 {
        r[24..32].copy_from_slice(&root.to_le_bytes());
    }
    put(rsdp, &r);
    let width = if rev >= 2 { 8 } else { 4 };
    let mut t = vec![0u8; 36];
    t[..4].copy_from_slice(if rev >= 2 { b"XSDT" } else { b"RSDT" });
    t[4..8].copy_from_slice(&(36 + width * entries.len() as u32).to_le_bytes());
    for e in entries {
        t.extend_from_slice(&e.to_le_bytes()[..width as usize]);
    }
    put(root, &t);
    for (i, &e) in entries.iter().enumerate() {
        let mut h = vec![0u8; 36];
        h[..4].copy_from_slice(b"TEST");
        h[4..8].copy_from_slice(&(100 + i as u32 * 0x1000).to_le_bytes());
        put(e, &h);
    }
    b
}

fn prewalk(img: &HashMap<u64, u8>, map: &[Region]) -> (usize, Spans) {
    let mut readable = Spans::EMPTY;
    let mut add = |pa: u64, len: u64| {
        if !listed(map, pa, len) {
            return false;
        }
        let (s, e) = (pa & !0xfff, (pa + len + 0xfff) & !0xfff);
        readable.insert(s, e).unwrap();
        true
    };
    let mut spans_seen = Spans::EMPTY;
    let n = {
        let mut read = |pa: u64, buf: &mut [u8]| {
            // Reads happen only after `add` said yes: recorded here for the
            // check below.
            spans_seen.insert(pa & !0xfff, (pa + buf.len() as u64 + 0xfff) & !0xfff).unwrap();
            for (i, x) in buf.iter_mut().enumerate() {
                *x = *img.get(&(pa + i as u64)).unwrap_or(&0);
            }
            true
        };
        acpi_spans(0xf5a00, &mut read, &mut add)
    };
    for &(s, e) in spans_seen.as_slice() {
        assert!(readable.contains(s, e - s), "read {s:#x}..{e:#x} before adding it");
    }
    (n, readable)
}

#[test]
fn acpi_prewalk_maps_every_listed_table_and_nothing_in_a_hole() {
    let map = q35(2 * GIB);
    for rev in [0, 2] {
        let tables = [0x7ffe_0000, 0x7ffe_2000, 0xb000_0000 - 0x100, 3 * GIB, 0x7ffd_e000];
        let (n, readable) = prewalk(&acpi_image(rev, &tables), &map);
        // Root + the tables in listed memory (the one just below ECAM lies
        // in the hole between low RAM and ECAM; 3 GiB is in the PCI hole).
        assert_eq!(n, 1 + 3, "revision {rev}");
        assert!(readable.contains(0x7ffe_2000, 100 + 0x1000));
        assert!(readable.contains(0xf5a00, 20));
        assert!(!readable.overlaps(0xa_0000, 0xc_0000));
        assert!(!readable.overlaps(0x8000_0000, 1 << 32));
        // Reserved ranges no table lies in (ECAM, the chipset's, the BIOS
        // flash, the HyperTransport hole) stay unmapped.
        for r in map.iter().filter(|r| r.kind == Kind::Reserved && r.start >= 0xb000_0000) {
            assert!(!readable.overlaps(r.start, r.end), "{r:?}");
        }
    }
}

#[test]
fn acpi_prewalk_survives_garbage() {
    let map = q35(512 * MIB);
    // No RSDP; an RSDP in a hole.
    assert_eq!(prewalk(&HashMap::new(), &map).0, 0);
    let mut rng = Rng::new(0x1234_5678_9abc_def1);
    for _ in 0..2000 {
        let mut img = acpi_image(2, &[0x7ffe_0000, 0x1ffe_0000]);
        for _ in 0..8 {
            let x = rng.next_u64();
            let keys: Vec<u64> = img.keys().copied().collect();
            let k = keys[(x % keys.len() as u64) as usize];
            img.insert(k, (x >> 32) as u8);
        }
        let (n, readable) = prewalk(&img, &map);
        assert!(n <= 65);
        assert!(!readable.overlaps(0xa_0000, 0xc_0000));
        assert!(!readable.overlaps(512 * MIB, 0xb000_0000));
    }
}

#[test]
fn a_view_within_spans_reads_only_inside_them() {
    let memory = vec![7u8; 0x4000];
    let spans = [(0x1000u64, 0x2000u64), (0x3000, 0x3800)];
    let v = firmware::PhysView::from_slice(&memory).within(&spans);
    assert!(v.bytes(0x1000, 0x1000).is_ok());
    assert!(v.bytes(0x1ff0, 0x20).is_err(), "runs into the gap");
    assert!(v.read_u32(0x800).is_err());
    assert!(v.read_u32(0x37fc).is_ok());
    assert!(v.read_u32(0x37fd).is_err());
    assert!(v.bytes(0x2000, 0).is_err(), "an empty read in the gap");
    assert!(firmware::PhysView::from_slice(&memory).read_u32(0x800).is_ok());
}
