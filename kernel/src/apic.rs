//! The local APIC timer (the preemption clock) and silencing the legacy PIC.
//! The timer period is calibrated against the PIT so that the tick length
//! reported in the kernel info page is a measurement, not an assumption.

use crate::phys::PHYS_OFFSET;
use x86_64::instructions::port::Port;

static mut LAPIC: u64 = 0;

const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_LVT_TIMER: u64 = 0x320;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_CUR: u64 = 0x390;
const REG_TIMER_DIV: u64 = 0x3e0;

fn reg(off: u64) -> *mut u32 {
    // SAFETY: reading the base set once at boot.
    (unsafe { LAPIC } + off) as *mut u32
}

fn read(off: u64) -> u32 {
    // SAFETY: LAPIC MMIO, mapped uncached by `mem::map_lapic`.
    unsafe { core::ptr::read_volatile(reg(off)) }
}

fn write(off: u64, v: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile(reg(off), v) }
}

/// Whether the LAPIC is mapped yet (an NMI can arrive before).
pub fn ready() -> bool {
    // SAFETY: reading the base set once at boot (a u64 load; boot is
    // single-threaded, and an NMI reads either value whole).
    unsafe { core::ptr::addr_of!(LAPIC).read_volatile() != 0 }
}

/// The LAPIC's physical base (0 before `init`).
pub fn base_phys() -> u64 {
    // SAFETY: reading the base set once at boot.
    let v = unsafe { core::ptr::addr_of!(LAPIC).read_volatile() };
    v.saturating_sub(PHYS_OFFSET)
}

/// Take over a LAPIC a previous kernel set up (a rebootless upgrade): the
/// timer keeps running with its calibration; nothing is reprogrammed.
pub fn adopt(phys: u64) {
    // SAFETY: set once, by the single-threaded upgrade entry, before any
    // interrupt can be taken.
    unsafe { LAPIC = PHYS_OFFSET + phys };
    // The running timer's count, for the application processors a kernel
    // upgrade releases (`init_this_cpu`): as the first kernel calibrated it.
    TIMER_COUNT.store(read(REG_TIMER_INIT), core::sync::atomic::Ordering::Relaxed);
}

/// Whether `vector` is in service at the LAPIC: true for an interrupt
/// being handled, never for a CPU exception.
pub fn in_service(vector: u8) -> bool {
    read(0x100 + (vector as u64 / 32) * 0x10) & (1 << (vector % 32)) != 0
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Remap the 8259 PICs away from the exception vectors and mask them all.
fn disable_pic() {
    // SAFETY: the standard 8259 initialization sequence on its fixed ports.
    unsafe {
        let mut c1 = Port::<u8>::new(0x20);
        let mut d1 = Port::<u8>::new(0x21);
        let mut c2 = Port::<u8>::new(0xa0);
        let mut d2 = Port::<u8>::new(0xa1);
        c1.write(0x11);
        c2.write(0x11);
        d1.write(0x20);
        d2.write(0x28);
        d1.write(4);
        d2.write(2);
        d1.write(1);
        d2.write(1);
        d1.write(0xff);
        d2.write(0xff);
    }
}

/// Result of the calibration.
pub struct Timer {
    pub tick_us: u64,
    pub tsc_per_us: u64,
}

/// Enable the LAPIC (mapped at `phys` in the window) and start a periodic
/// timer of about `tick_us` microseconds on [`crate::arch::TIMER_VECTOR`].
pub fn init(phys: u64, tick_us: u64) -> Timer {
    // SAFETY: set once during single-threaded boot.
    unsafe { LAPIC = PHYS_OFFSET + phys };
    disable_pic();
    write(REG_SVR, 0x100 | crate::arch::SPURIOUS_VECTOR as u32);
    write(REG_TPR, 0);
    write(REG_TIMER_DIV, 0x3); // divide by 16

    // Measure LAPIC and TSC ticks over 10 ms of PIT channel 2.
    let pit_count: u16 = 11932; // 1.193182 MHz * 10 ms
    let (lapic_ticks, tsc_ticks);
    // SAFETY: PIT channel 2 and port 0x61 (its gate) are fixed legacy ports.
    unsafe {
        let mut p61 = Port::<u8>::new(0x61);
        let v = p61.read();
        p61.write((v & 0xfd) | 1);
        Port::<u8>::new(0x43).write(0xb0);
        Port::<u8>::new(0x42).write(pit_count as u8);
        Port::<u8>::new(0x42).write((pit_count >> 8) as u8);
        let v = p61.read() & 0xfe;
        p61.write(v);
        p61.write(v | 1);
        write(REG_TIMER_INIT, u32::MAX);
        let t0 = core::arch::x86_64::_rdtsc();
        let mut spins = 0u64;
        while p61.read() & 0x20 == 0 && spins < 100_000_000 {
            spins += 1;
        }
        tsc_ticks = core::arch::x86_64::_rdtsc() - t0;
        lapic_ticks = u32::MAX - read(REG_TIMER_CUR);
    }
    let per_us = (lapic_ticks as u64 / 10_000).max(1);
    let count = (per_us * tick_us).min(u32::MAX as u64) as u32;
    TIMER_COUNT.store(count, core::sync::atomic::Ordering::Relaxed);
    write(REG_LVT_TIMER, (1 << 17) | crate::arch::TIMER_VECTOR as u32); // periodic
    write(REG_TIMER_INIT, count);
    Timer { tick_us, tsc_per_us: tsc_ticks / 10_000 }
}

/// The periodic timer's initial count the boot CPU calibrated; every
/// application processor's LAPIC timer runs at the same rate (same bus
/// clock), so they reuse it instead of calibrating against the one PIT.
static TIMER_COUNT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

const REG_ID: u64 = 0x20;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;

/// This CPU's local APIC ID (xAPIC: bits 24..32 of the ID register).
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// On an application processor: enable its LAPIC (the MMIO page is at the
/// same physical address on every CPU, and each CPU sees its own) and
/// start its periodic timer at the boot CPU's calibrated rate.
pub fn init_this_cpu() {
    write(REG_SVR, 0x100 | crate::arch::SPURIOUS_VECTOR as u32);
    write(REG_TPR, 0);
    write(REG_TIMER_DIV, 0x3);
    write(REG_LVT_TIMER, (1 << 17) | crate::arch::TIMER_VECTOR as u32);
    write(REG_TIMER_INIT, TIMER_COUNT.load(core::sync::atomic::Ordering::Relaxed));
}

/// Write the interrupt command register and wait until the LAPIC has sent
/// it (delivery status clear; bounded, a lost IPI is the caller's timeout).
fn send_icr(dest: u32, low: u32) {
    write(REG_ICR_HIGH, dest << 24);
    write(REG_ICR_LOW, low);
    let mut spins = 0u32;
    while read(REG_ICR_LOW) & (1 << 12) != 0 && spins < 1_000_000 {
        core::hint::spin_loop();
        spins += 1;
    }
}

/// INIT (assert, level) to the CPU with local APIC ID `dest`.
pub fn send_init(dest: u8) {
    send_icr(dest as u32, 0x0000_4500);
}

/// A start-up IPI: `dest` starts in real mode at `page << 12`.
pub fn send_startup(dest: u8, page: u8) {
    send_icr(dest as u32, 0x0000_4600 | page as u32);
}

/// A fixed interrupt on `vector` to the CPU with local APIC ID `dest`.
pub fn send_fixed(dest: u8, vector: u8) {
    send_icr(dest as u32, (1 << 14) | vector as u32);
}
