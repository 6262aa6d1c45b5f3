//! The kernel's diagnostic log on COM1. Userspace output does not go
//! through here: init drives COM1 itself through its I/O permission.

use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

pub struct Serial;

static LOCK: Mutex<()> = Mutex::new(());

pub fn init() {
    // SAFETY: COM1's standard registers; the kernel is the only user of
    // the port at this point (init is granted it later and the kernel then
    // writes only on fatal errors).
    unsafe {
        Port::<u8>::new(COM1 + 1).write(0x00); // no interrupts
        Port::<u8>::new(COM1 + 3).write(0x80); // DLAB
        Port::<u8>::new(COM1).write(0x01); // 115200 baud
        Port::<u8>::new(COM1 + 1).write(0x00);
        Port::<u8>::new(COM1 + 3).write(0x03); // 8N1
        Port::<u8>::new(COM1 + 2).write(0xc7); // FIFO
        Port::<u8>::new(COM1 + 4).write(0x03);
    }
}

fn put(b: u8) {
    // SAFETY: polling the line-status register and writing the data
    // register of COM1 has no memory effects.
    unsafe {
        let mut lsr = Port::<u8>::new(COM1 + 5);
        while lsr.read() & 0x20 == 0 {}
        Port::<u8>::new(COM1).write(b);
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                put(b'\r');
            }
            put(b);
        }
        Ok(())
    }
}

pub fn print(args: core::fmt::Arguments) {
    use core::fmt::Write;
    let _g = LOCK.lock();
    let _ = Serial.write_fmt(args);
}

#[macro_export]
macro_rules! klog {
    ($($arg:tt)*) => {
        $crate::serial::print(format_args!("[kernel] {}\n", format_args!($($arg)*)))
    };
}
