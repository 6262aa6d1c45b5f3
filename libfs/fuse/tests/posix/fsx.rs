//! An fsx-style data test: a seeded sequence of random operations on a
//! few files, done on the mount and on the reference directory side by
//! side; after every step the touched file's size and whole content are
//! compared, read through a fresh open (which drops the kernel's cached
//! pages of a FUSE file, so the bytes come from libfs).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use testrng::Rng;

const FILES: usize = 3;
const MAX_OFF: u64 = 200 << 10;
const MAX_LEN: u64 = 40 << 10;

struct Side {
    dir: PathBuf,
    fds: Vec<File>,
}

impl Side {
    fn new(dir: &Path) -> Result<Side, String> {
        let mut fds = vec![];
        for i in 0..FILES {
            fds.push(open_rw(&dir.join(name(i)))?);
        }
        Ok(Side { dir: dir.to_path_buf(), fds })
    }
}

fn name(i: usize) -> String {
    format!("file{i}")
}

fn open_rw(p: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(|e| format!("open {}: {e}", p.display()))
}

/// `steps` operations from `seed`; Err names the first step whose result
/// or content differs.
pub fn run(seed: u64, steps: usize, mnt: &Path, reference: &Path) -> Result<String, String> {
    let mut rng = Rng::new(seed);
    let mut sides = [Side::new(mnt)?, Side::new(reference)?];
    let mut counts = [0usize; 8];
    for step in 0..steps {
        let f = rng.below(FILES as u64) as usize;
        let kind = rng.below(100);
        let what: String;
        let results: Vec<String> = match kind {
            0..=39 => {
                let off = rng.below(MAX_OFF);
                let mut data = vec![0u8; rng.range(1..=MAX_LEN) as usize];
                rng.fill(&mut data);
                what = format!("pwrite {} at {off}", data.len());
                counts[0] += 1;
                sides.iter().map(|s| format!("{:?}", s.fds[f].write_at(&data, off).map_err(|e| e.kind()))).collect()
            }
            40..=54 => {
                let mut data = vec![0u8; rng.range(1..=MAX_LEN / 4) as usize];
                rng.fill(&mut data);
                what = format!("append {}", data.len());
                counts[1] += 1;
                sides
                    .iter()
                    .map(|s| {
                        let r = OpenOptions::new()
                            .append(true)
                            .open(s.dir.join(name(f)))
                            .and_then(|mut h| h.write_all(&data));
                        format!("{:?}", r.map_err(|e| e.kind()))
                    })
                    .collect()
            }
            55..=69 => {
                let size = rng.below(MAX_OFF + MAX_LEN);
                what = format!("ftruncate {size}");
                counts[2] += 1;
                sides.iter().map(|s| format!("{:?}", s.fds[f].set_len(size).map_err(|e| e.kind()))).collect()
            }
            70..=84 => {
                let off = rng.below(MAX_OFF + MAX_LEN);
                let len = rng.range(1..=MAX_LEN) as usize;
                what = format!("pread {len} at {off}");
                counts[3] += 1;
                sides
                    .iter()
                    .map(|s| {
                        let mut buf = vec![0u8; len];
                        let r = s.fds[f].read_at(&mut buf, off).map(|n| {
                            buf.truncate(n);
                            buf
                        });
                        format!("{:?}", r.map(|b| crc(&b)).map_err(|e| e.kind()))
                    })
                    .collect()
            }
            85..=89 => {
                what = "fsync".into();
                counts[4] += 1;
                sides.iter().map(|s| format!("{:?}", s.fds[f].sync_all().map_err(|e| e.kind()))).collect()
            }
            90..=94 => {
                what = "close and reopen".into();
                counts[5] += 1;
                let mut out = vec![];
                for s in sides.iter_mut() {
                    s.fds[f] = open_rw(&s.dir.join(name(f)))?;
                    out.push("ok".into());
                }
                out
            }
            _ => {
                // Rename another file over this one (the open fd of the
                // victim keeps the old file); recreate the other name.
                let g = (f + 1 + rng.below(FILES as u64 - 1) as usize) % FILES;
                what = format!("rename {} over {}", name(g), name(f));
                counts[6] += 1;
                let mut out = vec![];
                for s in sides.iter_mut() {
                    let r = fs::rename(s.dir.join(name(g)), s.dir.join(name(f)));
                    out.push(format!("{:?}", r.map_err(|e| e.kind())));
                    // The replaced file, still open: its bytes are intact.
                    let old = s.fds[f].metadata().map(|m| m.len()).unwrap_or(0);
                    let mut buf = vec![0u8; old as usize];
                    let n = s.fds[f].read_exact_at(&mut buf, 0).map(|()| old).map_err(|e| e.kind());
                    out.push(format!("old fd reads {n:?} bytes, crc {:08x}", crc(&buf)));
                    s.fds[f] = open_rw(&s.dir.join(name(f)))?;
                    s.fds[g] = open_rw(&s.dir.join(name(g)))?;
                }
                out
            }
        };
        let results: Vec<String> = results.chunks(results.len() / 2).map(|c| c.join("; ")).collect();
        if results[0] != results[1] {
            return Err(format!(
                "seed {seed} step {step} ({what} on {}): mount {} reference {}",
                name(f),
                results[0],
                results[1]
            ));
        }
        for i in 0..FILES {
            let [m, r] = [&sides[0], &sides[1]].map(|s| content(&s.dir.join(name(i))));
            if m != r {
                return Err(format!(
                    "seed {seed} step {step} ({what} on {}): {} differs: mount {} reference {}",
                    name(f),
                    name(i),
                    describe(&m),
                    describe(&r)
                ));
            }
        }
        counts[7] += 1;
    }
    Ok(format!(
        "seed {seed}: {steps} steps ({} pwrite, {} append, {} ftruncate, {} pread, {} fsync, {} reopen, {} rename over) agree",
        counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6]
    ))
}

fn content(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| e.to_string())
}

fn describe(c: &Result<Vec<u8>, String>) -> String {
    match c {
        Ok(v) => format!("{} bytes, crc {:08x}", v.len(), crc(v)),
        Err(e) => e.clone(),
    }
}

fn crc(b: &[u8]) -> u32 {
    // FNV-1a: enough to tell contents apart in a message.
    b.iter().fold(0x811c_9dc5u32, |h, &x| (h ^ x as u32).wrapping_mul(0x0100_0193))
}
