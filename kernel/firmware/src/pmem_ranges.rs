//! Which persistent-memory ranges the kernel may hand to init.
//!
//! The NFIT (parsed by `firmware::nfit`) says where the NVDIMMs are; this
//! module decides which of those ranges the kernel can safely map into
//! init as owned pages. A range is refused, with a reason that names what
//! it collides with, when it:
//!
//! * is empty, or not 4 KiB aligned at either end (a page-table entry maps
//!   whole pages: a partial page would hand out bytes that are not pmem);
//! * wraps around, or ends above what a page-table entry can address
//!   (52 bits);
//! * overlaps anything the kernel already knows to be something else: RAM
//!   from the boot memory map, the kernel image, the boot image, the boot
//!   information, the first MiB, device registers, or an earlier accepted
//!   pmem range (firmware that lies about one of these would otherwise
//!   make the kernel give init a second, differently cached mapping of
//!   kernel memory or of a device);
//! * would take the total past `budget` (the page tables for it come from
//!   boot frames, and the kernel allocates nothing after boot), or past
//!   [`MAX_PMEM_RANGES`] ranges.
//!
//! Pure logic, host-tested; the kernel supplies the reserved spans.

use core::fmt;

/// The most persistent-memory ranges handed to init (the kernel info page
/// describes each).
pub const MAX_PMEM_RANGES: usize = 8;

const PAGE: u64 = 4096;
/// One past the highest physical address a 4-level page-table entry holds.
const PHYS_LIMIT: u64 = 1 << 52;

/// A physical span `[start, end)` that persistent memory must not overlap,
/// with a name for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reserved {
    pub what: &'static str,
    pub start: u64,
    pub end: u64,
}

/// An accepted range: physical base and length in bytes, both page
/// aligned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmemRange {
    pub base: u64,
    pub length: u64,
}

impl PmemRange {
    pub fn end(&self) -> u64 {
        self.base + self.length
    }
}

/// Why a range was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    NotPageAligned,
    /// `base + length` wraps or passes the 52-bit physical limit.
    BeyondPhysicalLimit,
    /// Overlaps something the kernel knows to be something else.
    Overlaps(Reserved),
    /// Overlaps the accepted range `index` (in [`Selection::ranges`]).
    OverlapsAccepted {
        index: usize,
    },
    /// Would take the total past the budget.
    OverBudget {
        total: u64,
        budget: u64,
    },
    /// [`MAX_PMEM_RANGES`] ranges were already accepted.
    TooMany,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::Empty => write!(f, "it is empty"),
            Refusal::NotPageAligned => write!(f, "its base or length is not 4 KiB aligned"),
            Refusal::BeyondPhysicalLimit => write!(f, "it runs past the 52-bit physical address limit"),
            Refusal::Overlaps(r) => write!(f, "it overlaps {} ({:#x}..{:#x})", r.what, r.start, r.end),
            Refusal::OverlapsAccepted { index } => write!(f, "it overlaps persistent-memory range {index}"),
            Refusal::OverBudget { total, budget } => write!(
                f,
                "it would bring the total to {} MiB, over the {} MiB the kernel maps (page tables come from boot frames)",
                total >> 20,
                budget >> 20
            ),
            Refusal::TooMany => write!(f, "{MAX_PMEM_RANGES} ranges are already mapped"),
        }
    }
}

/// The accepted ranges, in the order the firmware listed them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    ranges: [PmemRange; MAX_PMEM_RANGES],
    count: usize,
    /// Ranges refused.
    pub refused: usize,
}

impl Selection {
    /// No ranges (no NFIT, or everything refused).
    pub const EMPTY: Selection =
        Selection { ranges: [PmemRange { base: 0, length: 0 }; MAX_PMEM_RANGES], count: 0, refused: 0 };

    pub fn ranges(&self) -> &[PmemRange] {
        &self.ranges[..self.count]
    }

    /// Total bytes accepted.
    pub fn bytes(&self) -> u64 {
        self.ranges().iter().map(|r| r.length).sum()
    }
}

fn overlap(a_start: u64, a_end: u64, b_start: u64, b_end: u64) -> bool {
    a_start < b_end && b_start < a_end
}

/// Checks each candidate `(base, length)` in order against `reserved`,
/// the ranges accepted before it and `budget` (total bytes); calls
/// `refused(index, base, length, why)` for each one refused.
pub fn select(
    candidates: impl IntoIterator<Item = (u64, u64)>,
    reserved: &[Reserved],
    budget: u64,
    mut refused: impl FnMut(usize, u64, u64, Refusal),
) -> Selection {
    let mut s = Selection::default();
    for (i, (base, length)) in candidates.into_iter().enumerate() {
        match check(&s, base, length, reserved, budget) {
            Ok(()) => {
                s.ranges[s.count] = PmemRange { base, length };
                s.count += 1;
            }
            Err(why) => {
                s.refused += 1;
                refused(i, base, length, why);
            }
        }
    }
    s
}

fn check(s: &Selection, base: u64, length: u64, reserved: &[Reserved], budget: u64) -> Result<(), Refusal> {
    if length == 0 {
        return Err(Refusal::Empty);
    }
    if !base.is_multiple_of(PAGE) || !length.is_multiple_of(PAGE) {
        return Err(Refusal::NotPageAligned);
    }
    let end = base.checked_add(length).filter(|e| *e <= PHYS_LIMIT).ok_or(Refusal::BeyondPhysicalLimit)?;
    if let Some(r) = reserved.iter().find(|r| overlap(base, end, r.start, r.end)) {
        return Err(Refusal::Overlaps(*r));
    }
    if let Some(index) = s.ranges().iter().position(|r| overlap(base, end, r.base, r.end())) {
        return Err(Refusal::OverlapsAccepted { index });
    }
    let total = s.bytes() + length; // each ≤ 2^52, at most 8 of them: no overflow
    if total > budget {
        return Err(Refusal::OverBudget { total, budget });
    }
    if s.count == MAX_PMEM_RANGES {
        return Err(Refusal::TooMany);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// The standard machine: 512 MiB of RAM (split around the PCI hole on
    /// a bigger machine), the kernel at 1 MiB, the LAPIC page.
    fn reserved() -> Vec<Reserved> {
        vec![
            Reserved { what: "the first MiB", start: 0, end: MIB },
            Reserved { what: "RAM", start: MIB, end: 512 * MIB },
            Reserved { what: "the kernel image", start: MIB, end: 3 * MIB },
            Reserved { what: "RAM", start: 4 * GIB, end: 5 * GIB },
            Reserved { what: "device registers", start: 0xfee0_0000, end: 0xfee0_1000 },
        ]
    }

    fn run(candidates: &[(u64, u64)], budget: u64) -> (Selection, Vec<(usize, Refusal)>) {
        let mut why = Vec::new();
        let s = select(candidates.iter().copied(), &reserved(), budget, |i, _, _, r| why.push((i, r)));
        (s, why)
    }

    #[test]
    fn the_standard_nvdimm_is_accepted() {
        let (s, why) = run(&[(8 * GIB, 128 * MIB)], GIB);
        assert_eq!(s.ranges(), &[PmemRange { base: 8 * GIB, length: 128 * MIB }]);
        assert_eq!((s.bytes(), s.refused), (128 * MIB, 0));
        assert!(why.is_empty());
    }

    #[test]
    fn every_refusal_is_named() {
        let cases: [((u64, u64), Refusal, &str); 9] = [
            ((8 * GIB, 0), Refusal::Empty, "empty"),
            ((8 * GIB + 512, 128 * MIB), Refusal::NotPageAligned, "4 KiB aligned"),
            ((8 * GIB, 128 * MIB - 1), Refusal::NotPageAligned, "4 KiB aligned"),
            ((u64::MAX - 0xfff, 0x2000), Refusal::BeyondPhysicalLimit, "52-bit"),
            (((1 << 52) - 0x1000, 0x2000), Refusal::BeyondPhysicalLimit, "52-bit"),
            ((256 * MIB, 512 * MIB), Refusal::Overlaps(reserved()[1]), "overlaps RAM (0x100000..0x20000000)"),
            ((5 * GIB - 0x1000, 0x2000), Refusal::Overlaps(reserved()[3]), "overlaps RAM"),
            ((0xfee0_0000, 0x1000), Refusal::Overlaps(reserved()[4]), "overlaps device registers"),
            ((0, 0x1000), Refusal::Overlaps(reserved()[0]), "overlaps the first MiB"),
        ];
        for ((base, length), want, text) in cases {
            let (s, why) = run(&[(base, length)], GIB);
            assert_eq!(s.ranges(), &[], "{base:#x}+{length:#x}");
            assert_eq!(why, vec![(0, want)]);
            assert!(want.to_string().contains(text), "{want}");
        }
    }

    #[test]
    fn several_ranges_overlaps_budget_and_count() {
        // Two good ranges, one overlapping the first, one over budget.
        let (s, why) =
            run(&[(8 * GIB, 256 * MIB), (9 * GIB, 512 * MIB), (8 * GIB + 128 * MIB, MIB), (10 * GIB, 512 * MIB)], GIB);
        assert_eq!(s.ranges().len(), 2);
        assert_eq!(s.bytes(), 768 * MIB);
        assert_eq!(s.refused, 2);
        assert_eq!(why[0], (2, Refusal::OverlapsAccepted { index: 0 }));
        assert_eq!(why[1], (3, Refusal::OverBudget { total: 1280 * MIB, budget: GIB }));
        assert!(why[1].1.to_string().contains("1280 MiB, over the 1024 MiB"), "{}", why[1].1);
        // The budget is a total: a refused range does not stop a smaller
        // later one.
        let (s, _) = run(&[(8 * GIB, GIB), (10 * GIB, 0x1000)], GIB);
        assert_eq!(s.ranges().len(), 1);
        let (s, _) = run(&[(8 * GIB, GIB + 0x1000), (10 * GIB, 0x1000)], GIB);
        assert_eq!(s.ranges(), &[PmemRange { base: 10 * GIB, length: 0x1000 }]);
        // At most MAX_PMEM_RANGES.
        let many: Vec<_> = (0..MAX_PMEM_RANGES as u64 + 2).map(|i| (8 * GIB + i * MIB, 0x1000)).collect();
        let (s, why) = run(&many, GIB);
        assert_eq!(s.ranges().len(), MAX_PMEM_RANGES);
        assert_eq!(why, vec![(MAX_PMEM_RANGES, Refusal::TooMany), (MAX_PMEM_RANGES + 1, Refusal::TooMany)]);
    }

    #[test]
    fn random_candidates_never_overlap_anything_once_accepted() {
        let mut rng = testrng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next_u64();
        for _ in 0..2_000 {
            let n = (next() % 12) as usize;
            let candidates: Vec<_> = (0..n)
                .map(|_| {
                    let base = match next() % 3 {
                        0 => next() % (16 * GIB),
                        1 => (next() % (16 * GIB)) & !0xfff,
                        _ => next(),
                    };
                    let length = match next() % 3 {
                        0 => (next() % (2 * GIB)) & !0xfff,
                        1 => next() % GIB,
                        _ => next(),
                    };
                    (base, length)
                })
                .collect();
            let (s, why) = run(&candidates, GIB);
            assert_eq!(s.ranges().len() + why.len(), n);
            assert!(s.bytes() <= GIB);
            for (i, a) in s.ranges().iter().enumerate() {
                assert!(a.length > 0 && a.base % PAGE == 0 && a.length % PAGE == 0 && a.end() <= PHYS_LIMIT);
                assert!(reserved().iter().all(|r| !overlap(a.base, a.end(), r.start, r.end)));
                for b in &s.ranges()[i + 1..] {
                    assert!(!overlap(a.base, a.end(), b.base, b.end()));
                }
            }
        }
    }
}
