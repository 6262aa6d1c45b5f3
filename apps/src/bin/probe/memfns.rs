//! `memfns`: the runtime's C memory functions (`exo_rt::libc_mem`:
//! `memcpy`, `memmove`, `memset`, `memcmp`/`bcmp`) through the safe slice
//! operations that call them, at every length from 0 to 300 and at
//! misaligned offsets, checked byte by byte against what C says they do.
//! Exit 0 if every case was right; 1 and the first wrong case otherwise.

use alloc::vec;
use core::cmp::Ordering;
use core::hint::black_box;
use exo_rt::println;

const MAX_LEN: usize = 300;
const OFFSETS: [usize; 4] = [0, 1, 7, 13];

/// A byte pattern no shifted copy of itself matches (position and seed mixed).
fn pat(seed: usize, i: usize) -> u8 {
    (i.wrapping_mul(131).wrapping_add(seed.wrapping_mul(29)) ^ (i >> 3)) as u8
}

/// The first failing case, if any.
fn check() -> Result<usize, alloc::string::String> {
    let mut cases = 0;
    let mut buf = vec![0u8; 2 * MAX_LEN + 64];
    let mut other = vec![0u8; 2 * MAX_LEN + 64];
    for n in 0..=MAX_LEN {
        for &d in &OFFSETS {
            for &s in &OFFSETS {
                // memcpy (copy_from_slice of a run-time length).
                let len = black_box(n);
                for (i, b) in other.iter_mut().enumerate() {
                    *b = pat(1, i);
                }
                buf.fill(0xee);
                buf[d..d + len].copy_from_slice(&other[s..s + len]);
                for (i, &b) in buf.iter().enumerate() {
                    let want = if (d..d + len).contains(&i) { pat(1, i - d + s) } else { 0xee };
                    if b != want {
                        return Err(alloc::format!("memcpy n={n} dest+{d} src+{s}: byte {i} is {b:#x}, not {want:#x}"));
                    }
                }
                // memmove, both directions, overlapping by s + d bytes.
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = pat(2, i);
                }
                let (from, to) = (s, s + d);
                buf.copy_within(from..from + len, to);
                for (i, &b) in buf.iter().enumerate() {
                    let want = if (to..to + len).contains(&i) { pat(2, i - to + from) } else { pat(2, i) };
                    if b != want {
                        return Err(alloc::format!("memmove up n={n} {from}->{to}: byte {i} is {b:#x}, not {want:#x}"));
                    }
                }
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = pat(3, i);
                }
                buf.copy_within(to..to + len, from);
                for (i, &b) in buf.iter().enumerate() {
                    let want = if (from..from + len).contains(&i) { pat(3, i - from + to) } else { pat(3, i) };
                    if b != want {
                        return Err(alloc::format!(
                            "memmove down n={n} {to}->{from}: byte {i} is {b:#x}, not {want:#x}"
                        ));
                    }
                }
                cases += 3;
            }
            // memset.
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pat(4, i);
            }
            let v = black_box(0x5a ^ n as u8);
            buf[d..d + black_box(n)].fill(v);
            for (i, &b) in buf.iter().enumerate() {
                let want = if (d..d + n).contains(&i) { v } else { pat(4, i) };
                if b != want {
                    return Err(alloc::format!("memset n={n} dest+{d}: byte {i} is {b:#x}, not {want:#x}"));
                }
            }
            // memcmp / bcmp: equal, then the first difference at each
            // position, smaller and greater.
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pat(5, i);
            }
            for (i, b) in other.iter_mut().enumerate() {
                *b = pat(5, i + d);
            }
            let (a, b) = (&buf[d..d + n], &other[..n]);
            if a.cmp(black_box(b)) != Ordering::Equal || a != black_box(b) {
                return Err(alloc::format!("memcmp n={n} at +{d}: equal bytes compare unequal"));
            }
            for at in 0..n {
                for delta in [1u8, 0x80, 0xff] {
                    other[at] = pat(5, at + d).wrapping_add(delta);
                    let (a, b) = (&buf[d..d + n], &other[..n]);
                    let want = pat(5, at + d).cmp(&other[at]);
                    let got = black_box(a).cmp(black_box(b));
                    if got != want || (black_box(a) == black_box(b)) {
                        return Err(alloc::format!(
                            "memcmp n={n} at +{d}, first difference at {at} ({:#x} vs {:#x}): {got:?}, not {want:?}",
                            pat(5, at + d),
                            other[at]
                        ));
                    }
                    other[at] = pat(5, at + d);
                    cases += 1;
                }
            }
        }
    }
    Ok(cases)
}

pub fn run() -> u32 {
    match check() {
        Ok(cases) => {
            println!("memfns: {cases} cases of memcpy, memmove, memset and memcmp right (lengths 0..={MAX_LEN})");
            0
        }
        Err(e) => {
            println!("memfns: WRONG: {e}");
            1
        }
    }
}
