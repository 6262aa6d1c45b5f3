//! Console output. There is no console system call: the root process
//! (init) owns COM1 through the I/O permission the kernel grants it, and
//! every other process writes into a ring page shared with its parent,
//! which copies it out (see init's scheduler).
//!
//! Ring layout (one page): word 0 = bytes ever written (producer), word 1 =
//! bytes ever consumed (consumer), bytes 16.. = data.

use crate::layout::{msg, CONSOLE_VA, PARENT_HANDLE_VA};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const RING_DATA: u64 = 16;
pub const RING_CAP: u64 = 4096 - RING_DATA;

static SERIAL: AtomicBool = AtomicBool::new(false);
/// True while the root process is writing to COM1 from its main context,
/// so that its upcall handler does not interleave ring output.
pub static SERIAL_BUSY: AtomicBool = AtomicBool::new(false);

/// Write to COM1 directly (root process only).
pub fn use_serial() {
    SERIAL.store(true, Ordering::SeqCst);
}

pub fn serial_byte(b: u8) {
    // SAFETY: port I/O on COM1, permitted to the root process by the
    // kernel's TSS I/O bitmap (any other process would take a #GP upcall);
    // no memory is touched.
    unsafe {
        loop {
            let lsr: u8;
            core::arch::asm!("in al, dx", out("al") lsr, in("dx") 0x3fdu16, options(nomem, nostack));
            if lsr & 0x20 != 0 {
                break;
            }
        }
        core::arch::asm!("out dx, al", in("al") b, in("dx") 0x3f8u16, options(nomem, nostack));
    }
}

/// A byte from COM1's receiver, if one is waiting (root process only).
pub fn serial_read() -> Option<u8> {
    // SAFETY: port I/O on COM1 as in `serial_byte`; reading the data
    // register only consumes the received byte.
    unsafe {
        let lsr: u8;
        core::arch::asm!("in al, dx", out("al") lsr, in("dx") 0x3fdu16, options(nomem, nostack));
        if lsr & 1 == 0 {
            return None;
        }
        let b: u8;
        core::arch::asm!("in al, dx", out("al") b, in("dx") 0x3f8u16, options(nomem, nostack));
        Some(b)
    }
}

/// A ring page somewhere in this address space.
pub struct Ring {
    pub va: u64,
}

impl Ring {
    fn word(&self, i: u64) -> &AtomicU64 {
        // SAFETY: the ring page is mapped writable at `va` for the whole
        // life of the process (the parent mapped it, or the caller owns it);
        // AtomicU64 has the layout of u64 and the words are 8-aligned.
        unsafe { &*((self.va + i * 8) as *const AtomicU64) }
    }
    fn byte_ptr(&self, i: u64) -> *mut u8 {
        (self.va + RING_DATA + i % RING_CAP) as *mut u8
    }
    /// Append as much of `bytes` as fits; returns how many.
    pub fn push(&self, bytes: &[u8]) -> usize {
        let head = self.word(0).load(Ordering::Acquire);
        let tail = self.word(1).load(Ordering::Acquire);
        let room = RING_CAP - (head - tail).min(RING_CAP);
        let n = (bytes.len() as u64).min(room);
        for i in 0..n {
            // SAFETY: inside the ring's data area (index taken mod RING_CAP).
            unsafe { core::ptr::write_volatile(self.byte_ptr(head + i), bytes[i as usize]) };
        }
        self.word(0).store(head + n, Ordering::Release);
        n as usize
    }
    /// Take everything written so far, passing each byte to `out`.
    pub fn drain(&self, mut out: impl FnMut(u8)) -> u64 {
        let head = self.word(0).load(Ordering::Acquire);
        let mut tail = self.word(1).load(Ordering::Acquire);
        if head < tail || head - tail > RING_CAP {
            // A hostile or broken producer: skip to its head.
            self.word(1).store(head, Ordering::Release);
            return 0;
        }
        let n = head - tail;
        while tail < head {
            // SAFETY: inside the ring's data area.
            out(unsafe { core::ptr::read_volatile(self.byte_ptr(tail)) });
            tail += 1;
        }
        self.word(1).store(tail, Ordering::Release);
        n
    }
}

pub fn write_bytes(bytes: &[u8]) {
    if SERIAL.load(Ordering::SeqCst) {
        SERIAL_BUSY.store(true, Ordering::SeqCst);
        for &b in bytes {
            if b == b'\n' {
                serial_byte(b'\r');
            }
            serial_byte(b);
        }
        SERIAL_BUSY.store(false, Ordering::SeqCst);
        return;
    }
    let ring = Ring { va: CONSOLE_VA };
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = ring.push(rest);
        rest = &rest[n..];
        if !rest.is_empty() {
            let _ = crate::sys::yield_to(PARENT_HANDLE_VA, msg::DRAIN);
        }
    }
}

pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

pub fn print(args: core::fmt::Arguments) {
    use core::fmt::Write;
    let _ = Console.write_fmt(args);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
