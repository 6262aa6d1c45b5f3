//! Rebootless kernel upgrade, init's side (`docs/syscalls.md`, "Rebootless
//! kernel upgrade"): copy an upgrade image from the boot image into pages
//! init owns under `UPGRADE_IMAGE_VA`, link that level-3 table read-only
//! into the upgrade space (once), and `yield` to the upgrade handle only
//! init holds. The kernel checks the image; a good one replaces the kernel
//! and the `yield` returns Ok in the new kernel, a bad one is refused
//! (`BadTarget`) with the reason in the kernel info page.

use crate::spawn;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use exo_abi::{kinfo as ki, Error, Rights, PAGE_SIZE, UPGRADE_HANDLE_VA, UPGRADE_IMAGE_VA};
use exo_rt::{kinfo, mem, sys};
use exo_upgrade::Refusal;

/// Pages placed under `UPGRADE_IMAGE_VA` so far (reused by every upgrade).
static PLACED: AtomicU64 = AtomicU64::new(0);
static LINKED: AtomicBool = AtomicBool::new(false);

/// What one upgrade cost, from the kernel info page's TSC stamps and
/// init's own around the `yield` (TSC ticks; guest instructions under
/// `-icount shift=0`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Report {
    /// Init's `yield` to its return: everything, check and copy included.
    pub call: u64,
    /// The old kernel taking the request to its jump (check, copy, record).
    pub old_kernel: u64,
    /// The old kernel's last instruction (the jump) to init's first
    /// instruction after the `yield`: the switch itself.
    pub switch: u64,
    /// Of which: the new kernel's first Rust instruction to its return.
    pub new_kernel: u64,
    /// Bytes of the image.
    pub image_bytes: u64,
}

/// Why an upgrade did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The kernel refused the image (it keeps running).
    Refused(Refusal),
    /// Init could not stage the image or the call failed otherwise.
    Other(String),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Refused(r) => write!(f, "refused: {r}"),
            Failure::Other(s) => f.write_str(s),
        }
    }
}

/// The running kernel's build name (kernel info page).
pub fn running_build() -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&kinfo::word(ki::W_UPGRADE_BUILD).to_le_bytes());
    b[8..].copy_from_slice(&kinfo::word(ki::W_UPGRADE_BUILD + 1).to_le_bytes());
    String::from(exo_upgrade::image::build_name(&b))
}

/// Copy `bytes` to `UPGRADE_IMAGE_VA` (placing pages as needed) and link
/// the table into the upgrade space; returns the `yield` argument.
fn stage(bytes: &[u8]) -> Result<u64, String> {
    let pages = (bytes.len() as u64).div_ceil(PAGE_SIZE).max(1);
    while PLACED.load(SeqCst) < pages {
        let va = UPGRADE_IMAGE_VA + PLACED.load(SeqCst) * PAGE_SIZE;
        spawn::place_page(va, Rights::WRITE, |_| {}).map_err(|e| format!("staging the upgrade image: {e}"))?;
        PLACED.fetch_add(1, SeqCst);
    }
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        mem::write(UPGRADE_IMAGE_VA + 8 * i as u64, u64::from_le_bytes(w));
    }
    if !LINKED.load(SeqCst) {
        // Read-only: the kernel only reads the image.
        sys::map(UPGRADE_IMAGE_VA, 3, UPGRADE_HANDLE_VA, UPGRADE_IMAGE_VA, Rights::NONE)
            .map_err(|e| format!("linking the image into the upgrade space: {}", e.name()))?;
        LINKED.store(true, SeqCst);
    }
    Ok(pages << 40)
}

/// Upgrade the kernel to the boot image's entry `name`.
pub fn upgrade(name: &str) -> Result<Report, Failure> {
    let image = exo_loader::bootimage::BootImage::parse(exo_rt::boot_image())
        .ok()
        .and_then(|b| b.find(name))
        .ok_or_else(|| Failure::Other(format!("no {name} in the boot image")))?;
    let arg = stage(image.data).map_err(Failure::Other)?;
    let done_before = kinfo::word(ki::W_UPGRADE_DONE);
    let t0 = exo_rt::time::rdtsc();
    let r = sys::yield_to(UPGRADE_HANDLE_VA, arg);
    let t1 = exo_rt::time::rdtsc();
    match r {
        Ok(()) => {
            if kinfo::word(ki::W_UPGRADE_DONE) != done_before + 1 {
                return Err(Failure::Other("the yield returned Ok but no upgrade was counted".into()));
            }
            let k = |w| kinfo::word(w);
            Ok(Report {
                call: t1 - t0,
                old_kernel: k(ki::W_UPGRADE_TSC_JUMP) - k(ki::W_UPGRADE_TSC_REQUEST),
                switch: t1 - k(ki::W_UPGRADE_TSC_JUMP),
                new_kernel: k(ki::W_UPGRADE_TSC_RETURN) - k(ki::W_UPGRADE_TSC_NEW),
                image_bytes: image.data.len() as u64,
            })
        }
        Err(Error::BadTarget) => {
            let code = kinfo::word(ki::W_UPGRADE_LAST_RESULT);
            Err(Refusal::from_code(code)
                .map(Failure::Refused)
                .unwrap_or_else(|| Failure::Other(format!("refused with unknown code {code}"))))
        }
        Err(e) => Err(Failure::Other(format!("yield to the upgrade space: {}", e.name()))),
    }
}
