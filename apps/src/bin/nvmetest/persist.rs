//! `nvmetest persist-write` / `persist-check`: the two boots of the
//! `nvme_persist` test, sharing a nonce.

use crate::hw::{self, Nvme};
use crate::pattern;
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use exo_abi::PAGE_SIZE;
use exo_rt::println;

/// The part of the namespace the persistence test uses, in bytes (146.5
/// MiB.., past `nvme_rw`'s first 128 MiB): a header block, then 1 MiB of
/// data, in whatever blocks the namespace has.
const PERSIST_OFFSET: u64 = (146 << 20) + (512 << 10);
const PERSIST_DATA_BYTES: u64 = 1 << 20;
const PERSIST_MAGIC: u64 = u64::from_le_bytes(*b"EXOPERS1");

/// (header LBA, data blocks) of the persistence area on `d`'s namespace.
fn persist_area(d: &Nvme) -> Result<(u64, u64), String> {
    let bs = d.block_size() as u64;
    let w = hw::area(d, "the persistence area", PERSIST_OFFSET, bs + PERSIST_DATA_BYTES)?;
    Ok((w.first, w.blocks - 1))
}

/// `nvme_persist_write`: the pattern for `nonce` over 2,048 blocks, a
/// header naming the nonce, then a flush. Nothing else makes it durable.
pub fn persist_write() -> Result<(), String> {
    let g = hw::grants()?;
    let nonce = g.extra[0];
    let (mut d, data) = hw::bring_up(&g, hw::spare_dma(g.handle)?, 2)?;
    let bufs = Buffers::new(data);
    let bs = d.block_size() as u64;
    let (header, blocks) = persist_area(&d)?;
    let win = bufs.dma.win;
    let chunk = 64 * PAGE_SIZE / bs;
    let mut lba = 0;
    while lba < blocks {
        let n = chunk.min(blocks - lba);
        pattern::fill(&win, 0, nonce, header + 1 + lba, n, bs);
        d.write(0, header + 1 + lba, &bufs.buffer(0, 0, n * bs)).map_err(|e| format!("persist write: {e}"))?;
        lba += n;
    }
    win.fill(0, bs, 0);
    win.write64(0, PERSIST_MAGIC);
    win.write64(8, nonce);
    win.write64(16, blocks);
    // The header through the second queue the job asked for (the first,
    // shared, if the controller granted only one).
    d.write(d.queue_for(1), header, &bufs.buffer(0, 0, bs)).map_err(|e| format!("persist header: {e}"))?;
    for q in 0..d.io_queue_count() {
        d.flush(q).map_err(|e| format!("flush: {e}"))?;
    }
    println!("nvmed: wrote {blocks} blocks of {bs} bytes for nonce {nonce:#x} at LBA {} and flushed", header + 1);
    Ok(())
}

/// `nvme_persist_check`: after a reboot, the header names this run's nonce
/// and every block holds its pattern. The header is then erased (and
/// flushed) so that a later check cannot pass on this run's data.
pub fn persist_check() -> Result<(), String> {
    let g = hw::grants()?;
    let nonce = g.extra[0];
    let (mut d, data) = hw::bring_up(&g, hw::spare_dma(g.handle)?, 2)?;
    let bufs = Buffers::new(data);
    let bs = d.block_size() as u64;
    let (header, want_blocks) = persist_area(&d)?;
    let win = bufs.dma.win;
    win.fill(0, bs, 0xa5);
    d.read(0, header, &bufs.buffer(0, 0, bs)).map_err(|e| format!("persist header read: {e}"))?;
    let (magic, found, blocks) = (win.read64(0), win.read64(8), win.read64(16));
    if magic != PERSIST_MAGIC || found != nonce || blocks != want_blocks {
        return Err(format!(
            "header after reboot: magic {magic:#x}, nonce {found:#x} (expected {nonce:#x}), {blocks} blocks: the first boot's writes did not persist"
        ));
    }
    let chunk = 64 * PAGE_SIZE / bs;
    let mut lba = 0;
    let q = d.queue_for(1);
    while lba < blocks {
        let at = header + 1 + lba;
        let n = chunk.min(blocks - lba);
        win.fill(0, n * bs, 0xa5);
        d.read(q, at, &bufs.buffer(0, 0, n * bs)).map_err(|e| format!("persist read: {e}"))?;
        if let Some((b, j, got, want)) = pattern::check(&win, 0, nonce, at, n, bs) {
            return Err(format!("after reboot: LBA {} word {j}: read {got:#x}, wrote {want:#x}", at + b));
        }
        lba += n;
    }
    win.fill(0, bs, 0);
    d.write(0, header, &bufs.buffer(0, 0, bs)).map_err(|e| format!("erasing the header: {e}"))?;
    d.flush(0).map_err(|e| format!("flush: {e}"))?;
    println!("nvmed: all {blocks} blocks of {bs} bytes written before the reboot (nonce {nonce:#x}) read back intact; header erased");
    Ok(())
}
