//! Runs one workload against one engine and measures it: wall-clock time,
//! a latency sample per operation, and the in-process counters.

use crate::counters::{flushes_now, BlockStat, ProcIo, SyscallCounter};
use crate::engines::{self, Engine};
use crate::results::Row;
use crate::workload::{
    key_of, make_value, Durability, Rng, Workload, YcsbMix, YcsbOp, KEY_BYTES, PRELOAD_BATCH, WRITE_BATCH,
};
use std::path::PathBuf;
use std::time::Instant;

/// What one `eval-bench run` does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub engine: String,
    /// A directory in which the run makes (and afterwards removes) a fresh
    /// store directory.
    pub dir: PathBuf,
    pub workload: Workload,
    pub value_bytes: usize,
    pub durability: Durability,
    pub ops: u64,
    /// Records preloaded before the measured phase (default: `ops`).
    pub keys: u64,
    pub medium: String,
    pub system: String,
    pub seed: u64,
    /// `/sys/block/<dev>/stat` of a block device that holds `dir` and that
    /// nothing else uses: fills the device_* columns.
    pub block_stat: Option<PathBuf>,
}

/// Base values cycled through by the writes, generated before timing. Every
/// write stamps a unique sequence number into the first 8 bytes, so no
/// write ever stores the value a key already holds (SQLite, for one, skips
/// the commit's flush when a page did not change).
const VALUE_POOL: usize = 256;

/// One reading of every counter we can read in-process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Snapshot {
    pub(crate) syscalls: Option<u64>,
    pub(crate) io: Option<ProcIo>,
    pub(crate) flushes: Option<u64>,
}

pub(crate) struct Counters {
    syscalls: Option<SyscallCounter>,
    /// What taking one snapshot adds to the counters themselves.
    pub(crate) overhead: Option<(Snapshot, Snapshot)>,
}

impl Counters {
    pub(crate) fn open() -> Counters {
        let syscalls = match SyscallCounter::open() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("eval-bench: syscall counting unavailable: {e}");
                None
            }
        };
        let mut c = Counters { syscalls, overhead: None };
        let a = c.snapshot();
        let b = c.snapshot();
        c.overhead = Some((a, b));
        c
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            syscalls: self.syscalls.as_ref().and_then(|c| c.read().ok()),
            io: ProcIo::read_self().ok(),
            flushes: flushes_now(),
        }
    }
}

pub(crate) fn delta(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

/// Latency samples in nanoseconds, one per operation.
pub(crate) struct Latencies(pub(crate) Vec<u64>);

impl Latencies {
    pub(crate) fn percentile_us(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let idx = (((self.0.len() - 1) as f64) * p).round() as usize;
        let (_, v, _) = self.0.select_nth_unstable(idx);
        *v as f64 / 1000.0
    }
}

struct Phase<'a> {
    engine: &'a mut dyn Engine,
    values: Vec<Vec<u8>>,
    lat: Latencies,
    rng: Rng,
    writes: u64,
    /// The next single put's value, stamped before its timing starts.
    staged: Vec<u8>,
    /// Checksum of everything read, so reads cannot be optimised away.
    sink: u64,
}

impl Phase<'_> {
    /// Batched puts of the given record indices; each op's latency is its
    /// transaction's time divided by the batch size.
    fn batched_puts(&mut self, indices: &[u64]) -> Result<(), String> {
        for chunk in indices.chunks(WRITE_BATCH) {
            let keys: Vec<[u8; KEY_BYTES]> = chunk.iter().map(|&i| key_of(i)).collect();
            let bufs: Vec<Vec<u8>> = (0..chunk.len()).map(|_| self.next_value()).collect();
            let puts: Vec<(&[u8], &[u8])> = keys.iter().zip(&bufs).map(|(k, v)| (&k[..], &v[..])).collect();
            let t = Instant::now();
            self.engine.commit(&puts)?;
            let per_op = t.elapsed().as_nanos() as u64 / chunk.len() as u64;
            self.lat.0.extend(std::iter::repeat_n(per_op, chunk.len()));
        }
        Ok(())
    }

    /// A fresh value: a pool value with a unique stamp.
    fn next_value(&mut self) -> Vec<u8> {
        self.writes += 1;
        let mut v = self.values[(self.writes % VALUE_POOL as u64) as usize].clone();
        stamp(&mut v, self.writes);
        v
    }

    /// Prepares the value of the next `put_staged` (outside the timing).
    fn stage(&mut self) {
        self.writes += 1;
        self.staged.clear();
        self.staged.extend_from_slice(&self.values[(self.writes % VALUE_POOL as u64) as usize]);
        stamp(&mut self.staged, self.writes);
    }

    fn put_staged(&mut self, index: u64) -> Result<(), String> {
        let key = key_of(index);
        self.engine.commit(&[(&key, &self.staged)])
    }

    fn get_one(&mut self, index: u64) -> Result<(), String> {
        let key = key_of(index);
        let mut sum = 0u64;
        let found = self.engine.get(&key, &mut |v| sum = sum.wrapping_add(v.len() as u64 + v[0] as u64))?;
        if !found {
            return Err(format!("record {index} missing: the engine lost a committed key"));
        }
        self.sink = self.sink.wrapping_add(sum);
        Ok(())
    }

    fn timed(&mut self, f: impl FnOnce(&mut Self) -> Result<(), String>) -> Result<(), String> {
        let t = Instant::now();
        f(self)?;
        self.lat.0.push(t.elapsed().as_nanos() as u64);
        Ok(())
    }
}

/// Writes `seq` into the first bytes of a value (as many as fit).
fn stamp(value: &mut [u8], seq: u64) {
    let bytes = seq.to_le_bytes();
    let n = value.len().min(8);
    value[..n].copy_from_slice(&bytes[..n]);
}

fn preload(engine: &mut dyn Engine, keys: u64, values: &[Vec<u8>]) -> Result<(), String> {
    let mut i = 0u64;
    while i < keys {
        let end = (i + PRELOAD_BATCH as u64).min(keys);
        let batch: Vec<[u8; KEY_BYTES]> = (i..end).map(key_of).collect();
        // Preloaded values carry stamps the measured phase never uses.
        let bufs: Vec<Vec<u8>> = (i..end)
            .map(|k| {
                let mut v = values[(k % values.len() as u64) as usize].clone();
                stamp(&mut v, u64::MAX - k);
                v
            })
            .collect();
        let puts: Vec<(&[u8], &[u8])> = batch.iter().zip(&bufs).map(|(k, v)| (&k[..], &v[..])).collect();
        engine.commit(&puts)?;
        i = end;
    }
    engine.finish()
}

/// Runs the measured workload; returns the result row.
pub fn run(cfg: &RunConfig) -> Result<Row, String> {
    if cfg.ops == 0 {
        return Err("--ops must be at least 1".into());
    }
    if cfg.value_bytes == 0 {
        return Err("--value-bytes must be at least 1".into());
    }
    if cfg.workload.needs_preload() && cfg.keys == 0 {
        return Err(format!("{} needs --keys >= 1", cfg.workload));
    }
    let store = cfg.dir.join(format!("eval-{}-{}", cfg.engine, std::process::id()));
    if store.exists() {
        std::fs::remove_dir_all(&store).map_err(|e| format!("clearing {}: {e}", store.display()))?;
    }
    std::fs::create_dir_all(&store).map_err(|e| format!("creating {}: {e}", store.display()))?;
    let result = run_in(cfg, &store);
    // Remove the store even when the run failed; report the run's error first.
    let cleanup = std::fs::remove_dir_all(&store).map_err(|e| format!("removing {}: {e}", store.display()));
    let row = result?;
    cleanup?;
    Ok(row)
}

fn run_in(cfg: &RunConfig, store: &std::path::Path) -> Result<Row, String> {
    let records = if cfg.workload.needs_preload() { cfg.keys } else { cfg.ops };
    let expected = records.saturating_mul((cfg.value_bytes + KEY_BYTES) as u64 + 64)
        + if cfg.workload.writes() { cfg.ops.saturating_mul(cfg.value_bytes as u64 + 64) } else { 0 };
    let mut engine = engines::open(&cfg.engine, store, &cfg.medium, cfg.durability, expected)?;
    let values: Vec<Vec<u8>> = (0..VALUE_POOL as u64)
        .map(|i| {
            let mut v = Vec::new();
            make_value(&mut v, cfg.value_bytes, cfg.seed ^ i);
            v
        })
        .collect();
    if cfg.workload.needs_preload() {
        preload(engine.as_mut(), cfg.keys, &values)?;
    }
    let mut rng = Rng::new(cfg.seed);
    // Key orders are drawn before timing starts.
    let plan: Vec<u64> = match cfg.workload {
        Workload::FillSeq => (0..cfg.ops).collect(),
        Workload::FillRandom => rng.permutation(cfg.ops),
        Workload::Overwrite | Workload::ReadRandom | Workload::Commit => {
            (0..cfg.ops).map(|_| rng.below(cfg.keys)).collect()
        }
        _ => Vec::new(),
    };
    let mut ycsb = match cfg.workload {
        Workload::YcsbA | Workload::YcsbB | Workload::YcsbC | Workload::YcsbD | Workload::YcsbE | Workload::YcsbF => {
            Some(YcsbMix::new(cfg.workload, cfg.keys)?)
        }
        _ => None,
    };

    let counters = Counters::open();
    let mut phase = Phase {
        engine: engine.as_mut(),
        values,
        lat: Latencies(Vec::with_capacity(cfg.ops as usize)),
        rng,
        writes: 0,
        staged: Vec::new(),
        sink: 0,
    };
    let block_path = cfg.block_stat.as_deref();
    if block_path.is_some() {
        // Write back anything earlier phases left dirty (and commit the
        // journal) so the device counts below belong to this phase.
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
    }
    let block_before = block_path.map(BlockStat::read).transpose()?;
    let barriers_before = phase.engine.barriers();
    let before = counters.snapshot();
    let started = Instant::now();
    match cfg.workload {
        Workload::FillSeq | Workload::FillRandom | Workload::Overwrite => phase.batched_puts(&plan)?,
        Workload::ReadRandom => {
            for &i in &plan {
                phase.timed(|p| p.get_one(i))?;
            }
        }
        Workload::Commit => {
            for &i in &plan {
                phase.stage();
                phase.timed(|p| p.put_staged(i))?;
            }
        }
        Workload::ReadSeq => {
            let mut left = cfg.ops;
            while left > 0 {
                let want = left.min(cfg.keys) as usize;
                let mut last = Instant::now();
                let mut sum = 0u64;
                let lat = &mut phase.lat.0;
                let got = phase.engine.scan(&key_of(0), want, &mut |k, v| {
                    sum = sum.wrapping_add(k[0] as u64 + v.len() as u64);
                    let now = Instant::now();
                    lat.push(now.duration_since(last).as_nanos() as u64);
                    last = now;
                })?;
                if got != want {
                    return Err(format!("readseq saw {got} records, expected {want}"));
                }
                phase.sink = phase.sink.wrapping_add(sum);
                left -= want as u64;
            }
        }
        _ => {
            let mix = ycsb.as_mut().ok_or("internal: YCSB mix missing")?;
            for _ in 0..cfg.ops {
                let op = mix.next(&mut phase.rng);
                if matches!(op, YcsbOp::Update(_) | YcsbOp::Insert(_) | YcsbOp::ReadModifyWrite(_)) {
                    phase.stage();
                }
                phase.timed(|p| match op {
                    YcsbOp::Read(i) => p.get_one(i),
                    YcsbOp::Update(i) | YcsbOp::Insert(i) => p.put_staged(i),
                    YcsbOp::ReadModifyWrite(i) => {
                        p.get_one(i)?;
                        p.put_staged(i)
                    }
                    YcsbOp::Scan(i, len) => {
                        let mut sum = 0u64;
                        p.engine
                            .scan(&key_of(i), len, &mut |k, v| sum = sum.wrapping_add(k[15] as u64 + v.len() as u64))?;
                        p.sink = p.sink.wrapping_add(sum);
                        Ok(())
                    }
                })?;
            }
        }
    }
    // Durability is part of the work: the final flush is timed and counted
    // (but is not any single operation's latency).
    phase.engine.finish()?;
    let elapsed = started.elapsed().as_secs_f64();
    let after = counters.snapshot();
    let barriers_after = phase.engine.barriers();
    let block_after = match block_path {
        Some(p) => {
            // Untimed: what the file system still owes the device for this
            // phase (deferred journal commits, metadata) is counted too.
            // SAFETY: as above.
            unsafe { libc::sync() };
            Some(BlockStat::read(p)?)
        }
        None => None,
    };
    let device = |f: fn(&BlockStat) -> u64| -> Option<f64> {
        let (a, b) = (block_before?, block_after?);
        Some(f(&b).saturating_sub(f(&a)) as f64 / cfg.ops as f64)
    };
    std::hint::black_box(phase.sink);

    let ops = cfg.ops as f64;
    let (o1, o2) = counters.overhead.expect("calibrated at open");
    let net = |f: fn(&Snapshot) -> Option<u64>| -> Option<f64> {
        let measured = delta(f(&before), f(&after))?;
        let cost = delta(f(&o1), f(&o2)).unwrap_or(0);
        Some(measured.saturating_sub(cost) as f64 / ops)
    };
    let mut lat = phase.lat;
    Ok(Row {
        system: cfg.system.clone(),
        engine: cfg.engine.clone(),
        medium: cfg.medium.clone(),
        workload: cfg.workload.name().into(),
        value_bytes: cfg.value_bytes as u64,
        durability: cfg.durability.name(),
        ops: cfg.ops,
        ops_per_sec: ops / elapsed.max(1e-9),
        p50_us: lat.percentile_us(0.50),
        p99_us: lat.percentile_us(0.99),
        syscalls_per_op: net(|s| s.syscalls),
        bytes_copied_per_op: net(|s| s.io.map(|io| io.rchar + io.wchar)),
        bytes_written_per_op: net(|s| s.io.map(|io| io.write_bytes)),
        flushes_per_op: match delta(barriers_before, barriers_after) {
            Some(engine_counted) => Some(engine_counted as f64 / ops),
            None => net(|s| s.flushes),
        },
        device_write_cmds_per_op: device(|s| s.write_ios),
        device_flushes_per_op: device(|s| s.flush_ios),
        device_bytes_written_per_op: device(|s| s.write_sectors * 512),
        ..Row::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_make_values_unique() {
        let mut a = vec![7u8; 100];
        let mut b = a.clone();
        stamp(&mut a, 1);
        stamp(&mut b, 2);
        assert_ne!(a, b);
        assert_eq!(a[8..], b[8..]);
        let mut tiny = vec![0u8; 3];
        stamp(&mut tiny, 0x030201);
        assert_eq!(tiny, [1, 2, 3]);
    }

    #[test]
    fn percentiles_pick_the_right_sample() {
        let mut l = Latencies((1..=100).map(|i| i * 1000).collect());
        assert_eq!(l.percentile_us(0.5), 51.0);
        assert_eq!(l.percentile_us(0.99), 99.0);
        assert_eq!(Latencies(vec![]).percentile_us(0.5), 0.0);
    }
}
