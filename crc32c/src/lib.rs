//! CRC-32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected, initial
//! and final value `!0`): libdb's checksum of log records and pages.
//!
//! Why this polynomial: x86's SSE4.2 `crc32` instruction computes it, 8
//! bytes per instruction on integer registers, against ~2.3–2.7
//! instructions per byte for the best table
//! method of CRC-32 (IEEE) that `crc32fast` takes without PCLMULQDQ
//! (eval/RECOVERY.md). Whether the CPU has SSE4.2 is asked once by CPUID at
//! run time (`cpufeatures`, which works without std and caches the answer);
//! a CPU without it gets the `crc` crate's slice-by-16 tables, the same
//! function. Both paths are public so that tests can compare them on any
//! host that has SSE4.2.
//!
//! Under QEMU's TCG the instruction is one guest instruction but slow in
//! time: QEMU 7.2 computes it one bit per loop iteration, so it costs
//! roughly 4× the time of the tables there (eval/RECOVERY.md, "After the
//! merge"). Counted (`-icount`) it is the cheaper path, as on hardware.
//!
//! The only `unsafe` of the crate is the call of the SSE4.2 function, made
//! only after CPUID said the instruction exists.
#![cfg_attr(not(test), no_std)]

/// The software path's tables (16 KiB, built at compile time).
const SOFTWARE: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

#[cfg(target_arch = "x86_64")]
cpufeatures::new!(sse42, "sse4.2");

/// CRC-32C of `data`: by the SSE4.2 instruction if the CPU has it, else
/// by tables.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    match crc32c_sse42(data) {
        Some(c) => c,
        None => crc32c_software(data),
    }
}

/// CRC-32C by tables (slice-by-16), on any CPU.
pub fn crc32c_software(data: &[u8]) -> u32 {
    SOFTWARE.checksum(data)
}

/// Whether [`crc32c`] takes the SSE4.2 instruction on this CPU.
pub fn has_sse42() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sse42::get()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// CRC-32C by the SSE4.2 `crc32` instruction; `None` if this CPU lacks it.
pub fn crc32c_sse42(data: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    if sse42::get() {
        // SAFETY: CPUID said this CPU has SSE4.2, the only target feature
        // `crc32c_sse42_unchecked` is compiled with.
        #[allow(unsafe_code)]
        return Some(unsafe { crc32c_sse42_unchecked(data) });
    }
    let _ = data;
    None
}

/// Eight bytes per `crc32` instruction, the last 0–7 one by one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn crc32c_sse42_unchecked(data: &[u8]) -> u32 {
    use core::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(u32::MAX);
    let mut words = data.chunks_exact(8);
    for w in words.by_ref() {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        crc = _mm_crc32_u64(crc, v);
    }
    let mut crc = crc as u32;
    for &b in words.remainder() {
        crc = _mm_crc32_u8(crc, b);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check value of CRC-32C (the catalogue's "123456789") and
    /// RFC 3720's test vectors (iSCSI, B.4), stored little-endian there.
    const VECTORS: &[(&[u8], u32)] =
        &[(b"", 0), (b"123456789", 0xE306_9283), (&[0u8; 32], 0x8A91_36AA), (&[0xffu8; 32], 0x62A8_AB43)];

    #[test]
    fn software_path_matches_the_standard_vectors() {
        for &(data, want) in VECTORS {
            assert_eq!(crc32c_software(data), want, "{data:?}");
        }
        let ascending: std::vec::Vec<u8> = (0..32).collect();
        assert_eq!(crc32c_software(&ascending), 0x46DD_794E);
    }

    #[test]
    fn hardware_path_matches_the_software_path() {
        let Some(_) = crc32c_sse42(b"") else {
            // Not a failure: a host without SSE4.2 runs only the fallback,
            // which the test above checks.
            std::eprintln!("this host has no SSE4.2: only the software path was tested");
            return;
        };
        assert!(has_sse42());
        for &(data, want) in VECTORS {
            assert_eq!(crc32c_sse42(data), Some(want), "{data:?}");
        }
        // Every length 0..600 at every start offset 0..8 (the word loop's
        // alignment and every remainder), pseudo-random bytes.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: std::vec::Vec<u8> = (0..608)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for start in 0..8 {
            for len in 0..600 {
                let d = &bytes[start..start + len];
                assert_eq!(crc32c_sse42(d), Some(crc32c_software(d)), "start {start} len {len}");
                assert_eq!(crc32c(d), crc32c_software(d));
            }
        }
    }

    #[test]
    fn one_flipped_bit_changes_the_checksum() {
        let mut d = [0x5au8; 152];
        let c = crc32c(&d);
        for bit in 0..d.len() * 8 {
            d[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(crc32c(&d), c, "bit {bit}");
            assert_ne!(crc32c_software(&d), c, "bit {bit}");
            d[bit / 8] ^= 1 << (bit % 8);
        }
    }
}
