//! Workload definitions shared by every system (host Linux, the Linux guest
//! and, later, the exokernel): names, key/value formats, the durability modes
//! and the deterministic generators (RNG, zipfian) that choose keys.
//!
//! Nothing here touches an engine, so the same definitions can be compiled
//! into any runner.

use core::fmt;

/// Every key is exactly this long: 16 ASCII decimal digits, so that
/// lexicographic order equals numeric order and scans are meaningful.
pub const KEY_BYTES: usize = 16;

/// Puts per transaction in the bulk write workloads (fillseq, fillrandom,
/// overwrite). The durable small-transaction workload is `commit`.
pub const WRITE_BATCH: usize = 100;

/// Puts per transaction while preloading a store before a measured phase.
pub const PRELOAD_BATCH: usize = 1000;

/// Longest YCSB-E scan (lengths are uniform in 1..=MAX_SCAN).
pub const MAX_SCAN: usize = 100;

/// The zipfian constant YCSB uses.
pub const ZIPF_THETA: f64 = 0.99;

/// The key of record `i`.
pub fn key_of(i: u64) -> [u8; KEY_BYTES] {
    let mut key = [b'0'; KEY_BYTES];
    let mut n = i;
    for slot in key.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    key
}

/// A named workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadRandom,
    ReadSeq,
    /// Durable small transactions: one put per transaction.
    Commit,
    YcsbA,
    YcsbB,
    YcsbC,
    YcsbD,
    YcsbE,
    YcsbF,
}

impl Workload {
    pub const ALL: [Workload; 12] = [
        Workload::FillSeq,
        Workload::FillRandom,
        Workload::Overwrite,
        Workload::ReadRandom,
        Workload::ReadSeq,
        Workload::Commit,
        Workload::YcsbA,
        Workload::YcsbB,
        Workload::YcsbC,
        Workload::YcsbD,
        Workload::YcsbE,
        Workload::YcsbF,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::ReadRandom => "readrandom",
            Workload::ReadSeq => "readseq",
            Workload::Commit => "commit",
            Workload::YcsbA => "ycsb-a",
            Workload::YcsbB => "ycsb-b",
            Workload::YcsbC => "ycsb-c",
            Workload::YcsbD => "ycsb-d",
            Workload::YcsbE => "ycsb-e",
            Workload::YcsbF => "ycsb-f",
        }
    }

    pub fn parse(s: &str) -> Result<Workload, String> {
        Workload::ALL.iter().copied().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
            format!("unknown workload {s:?} (known: {})", names.join(", "))
        })
    }

    /// Whether the store must hold `keys` records before the measured phase.
    pub fn needs_preload(self) -> bool {
        !matches!(self, Workload::FillSeq | Workload::FillRandom)
    }

    /// Whether the workload writes at all (read-only runs ignore durability).
    pub fn writes(self) -> bool {
        !matches!(self, Workload::ReadRandom | Workload::ReadSeq | Workload::YcsbC)
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a committed transaction must be durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Every commit is durable when it returns.
    Sync,
    /// Every `n` consecutive commits share one flush (the last of them waits
    /// for it); a crash loses at most the open group.
    Group(u32),
    /// Commits are durable at the next checkpoint; the run ends with one.
    Async,
}

impl Durability {
    pub fn name(self) -> String {
        match self {
            Durability::Sync => "sync".into(),
            Durability::Group(n) => format!("group{n}"),
            Durability::Async => "async".into(),
        }
    }

    pub fn parse(s: &str) -> Result<Durability, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "async" => Ok(Durability::Async),
            _ => {
                let n = s
                    .strip_prefix("group")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|&n| n >= 2)
                    .ok_or_else(|| format!("unknown durability {s:?} (sync, async, or groupN with N >= 2)"))?;
                Ok(Durability::Group(n))
            }
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// SplitMix64: tiny, fast and good enough to choose benchmark keys. Seeded
/// explicitly so that every system runs the same key sequence.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n); `n` must be > 0.
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: unbiased enough for benchmark key choice.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A random permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: u64) -> Vec<u64> {
        let mut v: Vec<u64> = (0..n).collect();
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Zipfian distribution over item ranks 0..n (rank 0 the most popular), by
/// the method of Gray et al., "Quickly generating billion-record synthetic
/// databases" (SIGMOD 1994), which is also what YCSB uses. The item count
/// may grow (YCSB D/E insert records); zeta is then extended incrementally.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// `items` must be at least 1; `theta` in (0, 1).
    pub fn new(items: u64, theta: f64) -> Zipfian {
        assert!(items >= 1, "zipfian needs at least one item");
        assert!(theta > 0.0 && theta < 1.0, "zipfian theta must be in (0, 1)");
        let zeta2 = Self::zeta_range(0, 2.min(items), theta);
        let zetan = Self::zeta_range(0, items, theta);
        let mut z = Zipfian { items, theta, alpha: 1.0 / (1.0 - theta), zeta2, zetan, eta: 0.0 };
        z.eta = z.compute_eta();
        z
    }

    /// Sum of 1/i^theta for i in (from, to].
    fn zeta_range(from: u64, to: u64, theta: f64) -> f64 {
        (from + 1..=to).map(|i| 1.0 / (i as f64).powf(theta)).sum()
    }

    fn compute_eta(&self) -> f64 {
        let n = self.items as f64;
        if self.items < 2 {
            return 0.0;
        }
        (1.0 - (2.0 / n).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grow the item count (never shrinks).
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan += Self::zeta_range(self.items, items, self.theta);
            if self.items < 2 {
                self.zeta2 = Self::zeta_range(0, 2.min(items), self.theta);
            }
            self.items = items;
            self.eta = self.compute_eta();
        }
    }

    /// A rank in 0..items.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if self.items >= 2 && uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let rank = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }
}

/// FNV-1a of a rank: scatters popular ranks over the key space, as YCSB's
/// "scrambled zipfian" does, so hot keys are not neighbours.
pub fn scramble(rank: u64, items: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rank.to_le_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % items
}

/// One operation of a YCSB mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YcsbOp {
    Read(u64),
    Update(u64),
    /// Insert the next new record (index = current record count).
    Insert(u64),
    /// Scan `len` records starting at a key.
    Scan(u64, usize),
    ReadModifyWrite(u64),
}

/// Chooses YCSB operations for workloads A–F over a store preloaded with
/// `records` records (CoreWorkload defaults: zipfian request distribution,
/// D reads the latest records, E scans up to MAX_SCAN records).
#[derive(Clone, Debug)]
pub struct YcsbMix {
    workload: Workload,
    records: u64,
    zipf: Zipfian,
}

impl YcsbMix {
    pub fn new(workload: Workload, records: u64) -> Result<YcsbMix, String> {
        if !matches!(
            workload,
            Workload::YcsbA | Workload::YcsbB | Workload::YcsbC | Workload::YcsbD | Workload::YcsbE | Workload::YcsbF
        ) {
            return Err(format!("{workload} is not a YCSB workload"));
        }
        if records == 0 {
            return Err("YCSB needs at least one preloaded record".into());
        }
        Ok(YcsbMix { workload, records, zipf: Zipfian::new(records, ZIPF_THETA) })
    }

    /// Records in the store, including those this mix inserted.
    pub fn records(&self) -> u64 {
        self.records
    }

    fn zipf_key(&self, rng: &mut Rng) -> u64 {
        scramble(self.zipf.next(rng), self.records)
    }

    fn latest_key(&self, rng: &mut Rng) -> u64 {
        // YCSB's "latest": zipfian over recency, rank 0 = newest record.
        let rank = self.zipf.next(rng).min(self.records - 1);
        self.records - 1 - rank
    }

    fn insert(&mut self) -> YcsbOp {
        let index = self.records;
        self.records += 1;
        self.zipf.grow_to(self.records);
        YcsbOp::Insert(index)
    }

    pub fn next(&mut self, rng: &mut Rng) -> YcsbOp {
        let p = rng.next_f64();
        match self.workload {
            Workload::YcsbA if p < 0.5 => YcsbOp::Read(self.zipf_key(rng)),
            Workload::YcsbA => YcsbOp::Update(self.zipf_key(rng)),
            Workload::YcsbB if p < 0.95 => YcsbOp::Read(self.zipf_key(rng)),
            Workload::YcsbB => YcsbOp::Update(self.zipf_key(rng)),
            Workload::YcsbD if p < 0.95 => YcsbOp::Read(self.latest_key(rng)),
            Workload::YcsbD => self.insert(),
            Workload::YcsbE if p < 0.95 => {
                let len = 1 + rng.below(MAX_SCAN as u64) as usize;
                YcsbOp::Scan(self.zipf_key(rng), len)
            }
            Workload::YcsbE => self.insert(),
            Workload::YcsbF if p < 0.5 => YcsbOp::Read(self.zipf_key(rng)),
            Workload::YcsbF => YcsbOp::ReadModifyWrite(self.zipf_key(rng)),
            // C, and anything else `new` let through: read only.
            _ => YcsbOp::Read(self.zipf_key(rng)),
        }
    }
}

/// Fills `buf` (resized to `len`) with a value: pseudo-random bytes that
/// differ per `stamp`, so no engine can dedupe or compress its way ahead.
pub fn make_value(buf: &mut Vec<u8>, len: usize, stamp: u64) {
    buf.resize(len, 0);
    let mut rng = Rng::new(stamp ^ 0x005E_ED0F_DA7A);
    for chunk in buf.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_ordered() {
        assert_eq!(&key_of(0), b"0000000000000000");
        assert_eq!(&key_of(1234), b"0000000000001234");
        assert!(key_of(9) < key_of(10));
        assert!(key_of(99_999) < key_of(100_000));
    }

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()).unwrap(), w);
        }
        assert!(Workload::parse("fill").is_err());
        for d in [Durability::Sync, Durability::Group(8), Durability::Group(64), Durability::Async] {
            assert_eq!(Durability::parse(&d.name()).unwrap(), d);
        }
        assert!(Durability::parse("group1").is_err());
        assert!(Durability::parse("groupx").is_err());
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Rng::new(7).permutation(1000);
        assert_ne!(p[..10], (0..10).collect::<Vec<u64>>()[..]);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<u64>>());
    }

    #[test]
    fn zipfian_stays_in_range_and_is_skewed() {
        let n = 1000;
        let z = Zipfian::new(n, ZIPF_THETA);
        let mut rng = Rng::new(42);
        let mut counts = vec![0u64; n as usize];
        let draws = 200_000;
        for _ in 0..draws {
            let r = z.next(&mut rng);
            assert!(r < n);
            counts[r as usize] += 1;
        }
        // P(rank 0) = 1/zeta(n); zeta(1000, 0.99) ~ 7.4.
        let expected0 = draws as f64 / z.zetan;
        let got0 = counts[0] as f64;
        assert!((got0 - expected0).abs() / expected0 < 0.05, "rank 0: {got0} vs {expected0}");
        // P(0)/P(1) = 2^theta ~ 1.99.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((ratio - 2f64.powf(ZIPF_THETA)).abs() < 0.15, "ratio {ratio}");
        // The tail is hit but rarely: the top 10% of ranks take most draws.
        let top: u64 = counts[..100].iter().sum();
        assert!(top as f64 > 0.6 * draws as f64, "top decile {top}");
        assert!(counts[500..].iter().sum::<u64>() > 0);
    }

    #[test]
    fn zipfian_grows_like_a_fresh_one() {
        let mut grown = Zipfian::new(10, ZIPF_THETA);
        grown.grow_to(5000);
        let fresh = Zipfian::new(5000, ZIPF_THETA);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
        let (mut a, mut b) = (Rng::new(3), Rng::new(3));
        for _ in 0..100 {
            assert_eq!(grown.next(&mut a), fresh.next(&mut b));
        }
    }

    #[test]
    fn single_item_zipfian_always_returns_zero() {
        let z = Zipfian::new(1, ZIPF_THETA);
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| z.next(&mut rng) == 0));
    }

    #[test]
    fn ycsb_mixes_have_their_proportions() {
        let mut rng = Rng::new(9);
        let mut a = YcsbMix::new(Workload::YcsbA, 1000).unwrap();
        let updates = (0..10_000).filter(|_| matches!(a.next(&mut rng), YcsbOp::Update(_))).count();
        assert!((4500..5500).contains(&updates), "A updates {updates}");

        let mut d = YcsbMix::new(Workload::YcsbD, 1000).unwrap();
        let mut inserts = 0;
        for _ in 0..10_000 {
            match d.next(&mut rng) {
                YcsbOp::Insert(i) => {
                    assert_eq!(i, 1000 + inserts);
                    inserts += 1;
                }
                YcsbOp::Read(k) => assert!(k < d.records()),
                other => panic!("unexpected {other:?} in D"),
            }
        }
        assert!((400..600).contains(&inserts), "D inserts {inserts}");

        let mut e = YcsbMix::new(Workload::YcsbE, 1000).unwrap();
        for _ in 0..1000 {
            if let YcsbOp::Scan(k, len) = e.next(&mut rng) {
                assert!(k < e.records() && (1..=MAX_SCAN).contains(&len));
            }
        }
        assert!(YcsbMix::new(Workload::Commit, 10).is_err());
        assert!(YcsbMix::new(Workload::YcsbA, 0).is_err());
    }

    #[test]
    fn values_have_the_requested_size_and_differ() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        make_value(&mut a, 100, 1);
        make_value(&mut b, 100, 2);
        assert_eq!(a.len(), 100);
        assert_ne!(a, b);
        make_value(&mut a, 4096, 1);
        assert_eq!(a.len(), 4096);
    }
}
