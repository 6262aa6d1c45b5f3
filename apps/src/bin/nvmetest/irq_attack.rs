//! `nvmetest irq-forge` / `irq-compat`: the interrupt attacks of the
//! `irq_forged_handle_blocked` and `irq_compat_forged` tests.

use crate::hw;
use crate::msix::{irqs, remappable_msi};
use crate::rw::Buffers;
use alloc::format;
use alloc::string::String;
use exo_abi::PAGE_SIZE;
use exo_rt::{println, yield_now};
use nvme::driver::{Config, Direction};

/// `count` 4 KiB reads on I/O queue `q`, completion by polling (the
/// forged interrupts must not arrive anywhere).
fn polled_reads(d: &mut hw::Nvme, bufs: &Buffers, q: usize, count: u64) -> Result<(), String> {
    for i in 0..count {
        let cid = d
            .submit_io(q, Direction::Read, i * 8, &bufs.buffer(0, 0, PAGE_SIZE))
            .map_err(|e| format!("submit: {e}"))?;
        loop {
            if let Some((got, outcome)) = d.poll(q).map_err(|e| format!("poll: {e}"))? {
                if got != cid {
                    return Err(format!("completion for {got}, expected {cid}"));
                }
                outcome.map_err(|e| format!("read: {e}"))?;
                break;
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

/// `nvmetest irq-forge` / `irq-compat` (tests `irq_forged_handle_blocked`,
/// `irq_compat_forged`): make the controller interrupt through MSI-X
/// entries aimed at another device's interrupt-remapping entries
/// (`compat` false; the source-id check must drop them), or as
/// compatibility-format MSIs on exception vectors and as a DMA write into
/// the interrupt address range naming another device's vector (`compat`
/// true; VT-d blocks these while GSTS.CFIS is clear, QEMU 7.2 does not, so
/// the kernel itself must survive them). Init counts what arrives; then, as a control, the
/// same queues interrupt through this device's own entries.
pub fn attack(compat: bool) -> Result<(), String> {
    let g = hw::grants()?;
    let table = g.extra[0] & 0xffff_ffff;
    let own = (g.extra[0] >> 32) as u32;
    let other_vector = (g.extra[1] & 0xffff) as u32;
    let other_handle = ((g.extra[1] >> 16) & 0xffff) as u32;
    set_entry(&g.bar, table, 0, remappable_msi(own));
    if compat {
        // Compatibility format (address 0xfee0_0000 = CPU 0, data = the
        // vector), aimed at exception vectors: #PF (14, normally with an
        // error code) and #DF (8, on its own stack). The kernel must see
        // through both and drop them.
        set_entry(&g.bar, table, 1, (0xfee0_0000, 14));
        set_entry(&g.bar, table, 2, (0xfee0_0000, 8));
    } else {
        set_entry(&g.bar, table, 1, remappable_msi(other_handle));
        set_entry(&g.bar, table, 2, remappable_msi(other_handle + 1));
    }
    let config = Config { io_queues: 2, io_queue_entries: 64, interrupts: true, ..Config::default() };
    let (mut d, data) = hw::bring_up_with(&g, hw::spare_dma(g.handle)?, config)?;
    let bufs = Buffers::new(data);
    println!("nvmetest irq-attack: {} admin-queue interrupts arrived through my own remapping entry", irqs());
    let n = 64;
    // Interrupts of bring-up's admin commands that arrived while init's
    // handler was busy are delivered late (latched by the kernel): let
    // them drain before counting.
    for _ in 0..20 {
        yield_now();
    }
    let i0 = irqs();
    // I/O queues 1 and 2 (indices 0 and 1), or queue 1 twice when the
    // controller granted one pair (its MSI-X entry 2 then stays unused).
    let second = d.queue_for(1);
    polled_reads(&mut d, &bufs, 0, n)?;
    polled_reads(&mut d, &bufs, second, n)?;
    let how = if compat {
        String::from("compatibility-format MSIs with exception vectors 14 and 8")
    } else {
        format!("MSIs through the other device's remapping entries {other_handle}, {}", other_handle + 1)
    };
    println!("nvmetest irq-attack: {} I/O queue(s) raised {} {how}", d.io_queue_count(), 2 * n);
    for _ in 0..20 {
        yield_now();
    }
    let forged = irqs() - i0;
    if compat {
        // A DMA write into the interrupt address range is an MSI as well:
        // a read whose data (the vector, in every word) lands at I/O
        // address 0xfee0_0000.
        let bs = d.block_size() as u64;
        let win = bufs.dma.win;
        for i in 0..PAGE_SIZE / 4 {
            win.write32(4 * i, other_vector);
        }
        d.write(0, 4096, &bufs.buffer(0, 0, PAGE_SIZE)).map_err(|e| format!("staging the vector page: {e}"))?;
        let pages = [0xfee0_0000u64];
        let aimed = nvme::prp::DmaBuffer { pages: &pages, offset: 0, len: (PAGE_SIZE / bs * bs) as u32 };
        let r = d.read(0, 4096, &aimed);
        // (Its writes at addresses with bit 4 set are remappable-format
        // MSIs: those naming this device's own entries legitimately
        // interrupt this driver, so they are not counted as forged.)
        println!("nvmetest irq-attack: a read DMA into the interrupt range at 0xfee00000 (data = vector {other_vector:#x}): {r:?}");
    }
    if forged != 0 {
        return Err(format!("{forged} forged interrupts came back to this driver"));
    }
    // Control: the same queues, pointed at this device's own entries, do
    // interrupt, so silence above was the I/O-MMU's doing.
    set_entry(&g.bar, table, 1, remappable_msi(own + 1));
    set_entry(&g.bar, table, 2, remappable_msi(own + 2));
    let c0 = irqs();
    polled_reads(&mut d, &bufs, 0, 8)?;
    polled_reads(&mut d, &bufs, second, 8)?;
    // Forwarding is asynchronous to the polled completions: give it time.
    for _ in 0..100 {
        if irqs() - c0 >= 8 {
            break;
        }
        yield_now();
    }
    let control = irqs() - c0;
    println!("nvmetest irq-attack: control: 16 I/Os through my own entries gave {control} interrupts");
    if control == 0 {
        return Err("the control I/Os raised no interrupt: the test proves nothing".into());
    }
    Ok(())
}

/// Program MSI-X entry `j` of the table at `table` in BAR 0, unmasked.
fn set_entry(bar: &exo_rt::mmio::Window, table: u64, j: u64, (addr, data): (u32, u32)) {
    let e = table + 16 * j;
    bar.write32(e + 12, 1); // masked while it changes
    bar.write32(e, addr);
    bar.write32(e + 4, 0);
    bar.write32(e + 8, data);
    bar.write32(e + 12, 0);
}
