//! The kernel's physical-memory window: which physical memory it maps, and
//! the page tables that map it.
//!
//! The window maps physical address `pa` at a fixed offset, but only where
//! the boot memory map says there is memory the kernel may touch as
//! ordinary write-back memory: every RAM, ACPI-reclaim and ACPI-NVS range
//! ([`plan`]), plus the pages that hold the ACPI tables the RSDP reaches,
//! wherever the memory map lists them ([`acpi_spans`]; QEMU/SeaBIOS puts
//! them in a *reserved* range at the top of the low RAM). Holes (the 32-bit
//! PCI window, device registers, the VGA frame buffer) are never mapped
//! write-back; device registers are mapped separately, uncached.
//!
//! [`Window::add`] maps a span with the largest pages that fit: 1 GiB pages
//! where the CPU has them, 2 MiB pages, and 4 KiB pages at unaligned edges.
//! It builds the tables through [`TableMemory`] (the kernel's boot frames;
//! emulated memory in the host tests) and records the mapped spans, so that
//! the kernel's physical accessors can check an address before touching it.

/// 4 KiB, 2 MiB and 1 GiB.
pub const PAGE_4K: u64 = 1 << 12;
pub const PAGE_2M: u64 = 1 << 21;
pub const PAGE_1G: u64 = 1 << 30;
/// The window is one PDPT: 512 GiB of physical address space.
pub const WINDOW_LIMIT: u64 = 1 << 39;
/// The most disjoint spans the window records.
pub const MAX_SPANS: usize = 64;

/// Entry bits: present, writable, page size (in a PDPT or PD entry), no
/// execute.
pub const PTE_P: u64 = 1;
pub const PTE_W: u64 = 1 << 1;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// What a boot memory-map entry (E820 types) describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ram,
    AcpiReclaim,
    AcpiNvs,
    Reserved,
    /// Unusable (5), persistent (7) or a type this code does not know.
    Other(u32),
}

impl Kind {
    pub fn from_e820(t: u32) -> Kind {
        match t {
            1 => Kind::Ram,
            2 => Kind::Reserved,
            3 => Kind::AcpiReclaim,
            4 => Kind::AcpiNvs,
            t => Kind::Other(t),
        }
    }
}

/// One memory-map entry, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: Kind,
}

impl Region {
    pub const EMPTY: Region = Region { start: 0, end: 0, kind: Kind::Reserved };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowError {
    /// More than [`MAX_SPANS`] disjoint spans.
    TooManySpans,
    /// No frame for a page table.
    OutOfFrames,
    /// The span is not page aligned, empty, or past [`WINDOW_LIMIT`].
    BadSpan,
    /// A page of the span lies inside a large page mapped for something
    /// else (device registers, mapped uncached).
    Conflict,
}

impl core::fmt::Display for WindowError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WindowError::TooManySpans => "too many disjoint spans for the physical window",
            WindowError::OutOfFrames => "no frame for a physical-window page table",
            WindowError::BadSpan => "span not page aligned, empty or beyond 512 GiB",
            WindowError::Conflict => "span inside a large page mapped for something else",
        })
    }
}

/// Sorted, disjoint, non-adjacent spans `[start, end)` (adjacent ones are
/// merged).
#[derive(Clone, Copy, Debug)]
pub struct Spans {
    list: [(u64, u64); MAX_SPANS],
    count: usize,
}

impl Spans {
    pub const EMPTY: Spans = Spans { list: [(0, 0); MAX_SPANS], count: 0 };

    /// One span `[start, end)` (empty if `end <= start`).
    pub const fn one(start: u64, end: u64) -> Spans {
        let mut list = [(0, 0); MAX_SPANS];
        list[0] = (start, end);
        Spans { list, count: if end > start { 1 } else { 0 } }
    }

    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.list[..self.count]
    }

    /// Total bytes covered.
    pub fn bytes(&self) -> u64 {
        self.as_slice().iter().map(|(s, e)| e - s).sum()
    }

    /// Whether all of `[pa, pa + len)` is covered (`len` 0 counts as 1).
    pub fn contains(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len.max(1)) else {
            return false;
        };
        // Merged spans: a covered range lies inside one of them.
        let i = self.as_slice().partition_point(|&(_, e)| e <= pa);
        self.as_slice().get(i).is_some_and(|&(s, e)| s <= pa && end <= e)
    }

    /// Whether any byte of `[start, end)` is covered.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.as_slice().iter().any(|&(s, e)| s < end && start < e)
    }

    /// Add `[start, end)`, merging with what it overlaps or touches.
    pub fn insert(&mut self, start: u64, end: u64) -> Result<(), WindowError> {
        if start >= end {
            return Ok(());
        }
        let (mut s, mut e) = (start, end);
        // Remove every span that overlaps or touches, widening [s, e).
        let mut out = [(0u64, 0u64); MAX_SPANS];
        let mut n = 0;
        for &(a, b) in self.as_slice() {
            if a <= e && s <= b {
                s = s.min(a);
                e = e.max(b);
            } else {
                out[n] = (a, b);
                n += 1;
            }
        }
        if n == MAX_SPANS {
            return Err(WindowError::TooManySpans);
        }
        let at = out[..n].partition_point(|&(a, _)| a < s);
        out.copy_within(at..n, at + 1);
        out[at] = (s, e);
        self.list = out;
        self.count = n + 1;
        Ok(())
    }

    /// The parts of `[start, end)` not yet covered, in order.
    pub fn missing(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut at = start;
        let mut spans = self.as_slice().iter().copied().filter(move |&(s, e)| s < end && start < e).peekable();
        core::iter::from_fn(move || loop {
            if at >= end {
                return None;
            }
            match spans.peek().copied() {
                Some((s, e)) if s <= at => {
                    at = at.max(e);
                    spans.next();
                }
                Some((s, _)) => {
                    let gap = (at, s.min(end));
                    at = s;
                    return Some(gap);
                }
                None => {
                    let gap = (at, end);
                    at = end;
                    return Some(gap);
                }
            }
        })
    }
}

/// What [`plan`] decided.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Spans to map: RAM, ACPI reclaim and ACPI NVS, page aligned.
    pub spans: Spans,
    /// Bytes of such memory left out (beyond [`WINDOW_LIMIT`], or past
    /// [`MAX_SPANS`]).
    pub ignored: u64,
}

/// The spans the window maps from the memory map alone: every RAM,
/// ACPI-reclaim and ACPI-NVS range, rounded inward to whole pages and cut
/// at [`WINDOW_LIMIT`]. Reserved ranges and holes are left out.
pub fn plan(map: &[Region]) -> Plan {
    let mut p = Plan { spans: Spans::EMPTY, ignored: 0 };
    for r in map {
        if !matches!(r.kind, Kind::Ram | Kind::AcpiReclaim | Kind::AcpiNvs) || r.end <= r.start {
            continue;
        }
        let start = r.start.saturating_add(PAGE_4K - 1) & !(PAGE_4K - 1);
        let end = r.end & !(PAGE_4K - 1);
        if end <= start {
            continue;
        }
        let cut = end.min(WINDOW_LIMIT);
        p.ignored += end - cut.max(start);
        if cut > start && p.spans.insert(start, cut).is_err() {
            p.ignored += cut - start;
        }
    }
    p
}

/// Whether every page of `[pa, pa + len)` lies in some entry of the memory
/// map (of any kind): never in a hole.
pub fn listed(map: &[Region], pa: u64, len: u64) -> bool {
    let Some(end) = pa.checked_add(len.max(1)) else {
        return false;
    };
    let (mut at, end) = (pa & !(PAGE_4K - 1), end.saturating_add(PAGE_4K - 1) & !(PAGE_4K - 1));
    // Entries may be unsorted and overlapping: advance through them until
    // nothing extends the covered prefix.
    loop {
        if at >= end {
            return true;
        }
        let next = map
            .iter()
            .filter(|r| r.start & !(PAGE_4K - 1) <= at && r.end.saturating_add(PAGE_4K - 1) & !(PAGE_4K - 1) > at)
            .map(|r| r.end.saturating_add(PAGE_4K - 1) & !(PAGE_4K - 1))
            .max();
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
}

/// One page of a span's decomposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub pa: u64,
    pub size: u64,
}

/// `[start, end)` (page aligned) cut into the largest pages that fit and
/// are aligned: 1 GiB ones only if `gib_pages`.
pub fn pages(start: u64, end: u64, gib_pages: bool) -> impl Iterator<Item = Page> {
    let mut at = start;
    core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let size = [PAGE_1G, PAGE_2M, PAGE_4K]
            .into_iter()
            .filter(|&s| s != PAGE_1G || gib_pages)
            .find(|&s| at.is_multiple_of(s) && end - at >= s)
            .unwrap_or(PAGE_4K);
        let p = Page { pa: at, size };
        at += size;
        Some(p)
    })
}

/// Physical memory as the window builder sees it: read and write a table
/// entry, and take a zeroed frame for a new table.
pub trait TableMemory {
    fn read(&self, pa: u64) -> u64;
    fn write(&mut self, pa: u64, value: u64);
    /// A zeroed 4 KiB frame, or `None`.
    fn alloc(&mut self) -> Option<u64>;
}

/// The window's tables (a PDPT and what hangs below it) and what it maps.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Physical address of the PDPT (linked at the window's PML4 slot).
    pub pdpt: u64,
    /// 1 GiB pages allowed (CPUID 0x80000001 EDX bit 26).
    pub gib_pages: bool,
    /// What is mapped.
    pub spans: Spans,
    /// Table frames taken (the PDPT included).
    pub frames: u64,
}

impl Window {
    /// An empty window; its PDPT comes from `m`.
    pub fn new<M: TableMemory>(m: &mut M, gib_pages: bool) -> Result<Window, WindowError> {
        let pdpt = m.alloc().ok_or(WindowError::OutOfFrames)?;
        Ok(Window { pdpt, gib_pages, spans: Spans::EMPTY, frames: 1 })
    }

    /// Map `[start, end)` (page aligned), the parts not mapped yet, and
    /// record it. On an error the spans mapped before are kept; the pages
    /// of this span already written stay mapped but unrecorded (so never
    /// used), and the caller treats the span as unmapped.
    pub fn add<M: TableMemory>(&mut self, m: &mut M, start: u64, end: u64) -> Result<(), WindowError> {
        if start >= end || !start.is_multiple_of(PAGE_4K) || !end.is_multiple_of(PAGE_4K) || end > WINDOW_LIMIT {
            return Err(WindowError::BadSpan);
        }
        // Room for the span in the list first (the worst case: it merges
        // with nothing).
        let mut spans = self.spans;
        spans.insert(start, end)?;
        let gaps = self.spans;
        for (s, e) in gaps.missing(start, end) {
            for page in pages(s, e, self.gib_pages) {
                self.map_page(m, page)?;
            }
        }
        self.spans = spans;
        Ok(())
    }

    /// The slot for `page`, making the tables above it; fails if a large
    /// page is in the way.
    fn map_page<M: TableMemory>(&mut self, m: &mut M, page: Page) -> Result<(), WindowError> {
        let leaf_bits = PTE_P | PTE_W | PTE_NX;
        let mut table = self.pdpt;
        // (shift of the index at this level, page size mapped by an entry)
        for (shift, size) in [(30u32, PAGE_1G), (21, PAGE_2M), (12, PAGE_4K)] {
            let slot = table + ((page.pa >> shift) & 511) * 8;
            let entry = m.read(slot);
            if size == page.size {
                if entry & PTE_P != 0 {
                    return Err(WindowError::Conflict);
                }
                let ps = if size == PAGE_4K { 0 } else { PTE_PS };
                m.write(slot, page.pa | leaf_bits | ps);
                return Ok(());
            }
            if entry & PTE_P == 0 {
                let f = m.alloc().ok_or(WindowError::OutOfFrames)?;
                self.frames += 1;
                m.write(slot, f | PTE_P | PTE_W);
                table = f;
            } else if entry & PTE_PS != 0 {
                return Err(WindowError::Conflict);
            } else {
                table = entry & ADDR;
            }
        }
        Err(WindowError::BadSpan)
    }

    /// The physical address `va_offset` translates to through the tables
    /// (`va_offset` = virtual address minus the window's base), if mapped:
    /// a walk for tests and self-checks.
    pub fn translate<M: TableMemory>(&self, m: &M, va_offset: u64) -> Option<u64> {
        if va_offset >= WINDOW_LIMIT {
            return None;
        }
        let mut table = self.pdpt;
        for (shift, size) in [(30u32, PAGE_1G), (21, PAGE_2M), (12, PAGE_4K)] {
            let entry = m.read(table + ((va_offset >> shift) & 511) * 8);
            if entry & PTE_P == 0 {
                return None;
            }
            if size == PAGE_4K || entry & PTE_PS != 0 {
                return Some((entry & ADDR & !(size - 1)) + (va_offset & (size - 1)));
            }
            table = entry & ADDR;
        }
        None
    }
}

/// The largest ACPI table [`acpi_spans`] maps (a DSDT can be large; the
/// tables the kernel reads are small).
pub const MAX_TABLE: u64 = 1 << 20;
/// The most root-table entries followed.
pub const MAX_ENTRIES: usize = 64;

/// Walk RSDP → RSDT/XSDT → each listed table, asking `add(pa, len)` to make
/// each structure readable before `read(pa, buf)` reads it. `add` returns
/// whether the span is now readable (the kernel refuses spans outside the
/// memory map); `read` whether the bytes could be read. Only headers and
/// lengths are looked at: checksums and contents are `Platform::discover`'s
/// business, which later reads exactly what this made readable. Returns
/// the number of tables made readable (the root included).
pub fn acpi_spans(
    rsdp: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    add: &mut dyn FnMut(u64, u64) -> bool,
) -> usize {
    let mut r = [0u8; 36];
    if rsdp == 0 || !add(rsdp, 20) || !read(rsdp, &mut r[..20]) || &r[..8] != b"RSD PTR " {
        return 0;
    }
    let rsdt = u32::from_le_bytes([r[16], r[17], r[18], r[19]]) as u64;
    let mut root = (rsdt, 4u64);
    if r[15] >= 2 && add(rsdp, 36) && read(rsdp, &mut r) {
        let xsdt = u64::from_le_bytes([r[24], r[25], r[26], r[27], r[28], r[29], r[30], r[31]]);
        if xsdt != 0 {
            root = (xsdt, 8);
        }
    }
    let (root, width) = root;
    let Some(len) = table(root, read, add) else {
        return 0;
    };
    let mut n = 1;
    let count = (len.saturating_sub(36) / width).min(MAX_ENTRIES as u64);
    for i in 0..count {
        let mut e = [0u8; 8];
        if !read(root + 36 + i * width, &mut e[..width as usize]) {
            break;
        }
        let pa = u64::from_le_bytes(e);
        if table(pa, read, add).is_some() {
            n += 1;
        }
    }
    n
}

/// Make the table at `pa` readable: its header, then its whole length
/// (at least 36, at most [`MAX_TABLE`] bytes). Its length if it worked.
fn table(pa: u64, read: &mut dyn FnMut(u64, &mut [u8]) -> bool, add: &mut dyn FnMut(u64, u64) -> bool) -> Option<u64> {
    let mut h = [0u8; 36];
    if pa == 0 || !add(pa, 36) || !read(pa, &mut h) {
        return None;
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64;
    if !(36..=MAX_TABLE).contains(&len) || !add(pa, len) {
        return None;
    }
    Some(len)
}
