//! `probe sizeclass-smp <n>`: the heap (`exo_rt::heap`, size classes in
//! front of talc) used by two activations of this space on two CPUs at
//! once, as `twocores` starts them. Each makes `n` random operations:
//! allocate a filled block (0..1,500 bytes: size classes, talc and the
//! border), free one of its own after checking its fill, grow or shrink
//! one (`Vec` reallocation, contents checked), hand one to the other
//! activation (which checks and frees it: a block allocated on one CPU
//! freed on the other) or take one handed over. Every block carries its
//! own fill byte, so a block handed out twice, or overwritten by a list
//! link, fails the check. Mailbox words: 16 = operations, 24 = failed
//! checks, 32 = blocks freed on the other CPU, 40 = progress samples in
//! which the other activation was part-way through its run (they ran at
//! the same time).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
use exo_abi::{control, Reason};
use exo_rt::layout::MAILBOX_VA;
use exo_rt::{mem, println};
use spin::Mutex;

/// Blocks handed to activation `i` (0 = main on CPU 0, 1 = the second).
static HANDED: [Mutex<Vec<Block>>; 2] = [Mutex::new(Vec::new()), Mutex::new(Vec::new())];
/// The second activation's stack, allocated by main before CPU 1 can
/// enter (the core handler must not allocate).
static STACK: Mutex<Option<&'static mut [u64]>> = Mutex::new(None);
static OPS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static BAD: AtomicU64 = AtomicU64::new(0);
static CROSS: AtomicU64 = AtomicU64::new(0);
static OVERLAP: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static N: AtomicU64 = AtomicU64::new(0);

/// A heap block whose every byte is `fill`.
struct Block {
    data: Vec<u8>,
    fill: u8,
}

impl Block {
    fn new(len: usize, fill: u8) -> Block {
        Block { data: alloc::vec![fill; len], fill }
    }
    fn check(&self) {
        if self.data.iter().any(|&b| b != self.fill) {
            BAD.fetch_add(1, SeqCst);
        }
    }
}

/// xorshift64*: each activation its own stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn work(me: usize) {
    let n = N.load(SeqCst);
    let other = 1 - me;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((me as u64 + 1) * 0x1234_5678));
    let mut own: Vec<Block> = Vec::new();
    for i in 0..n {
        let fill = (i as u8) | 1;
        match rng.below(10) {
            0..=3 => {
                let len = match rng.below(4) {
                    0 => rng.below(17) as usize,
                    1 | 2 => rng.below(1025) as usize,
                    _ => 1000 + rng.below(500) as usize,
                };
                own.push(Block::new(len, fill));
                if own.len() > 64 {
                    let b = own.swap_remove(rng.below(own.len() as u64) as usize);
                    b.check();
                }
            }
            4 | 5 if !own.is_empty() => {
                let b = own.swap_remove(rng.below(own.len() as u64) as usize);
                b.check();
            }
            6 if !own.is_empty() => {
                let k = rng.below(own.len() as u64) as usize;
                let b = &mut own[k];
                b.check();
                let new_len = rng.below(1500) as usize;
                if new_len > b.data.len() {
                    b.data.resize(new_len, b.fill);
                } else {
                    b.data.truncate(new_len);
                    b.data.shrink_to_fit();
                }
                b.check();
            }
            7 | 8 if !own.is_empty() => {
                let b = own.swap_remove(rng.below(own.len() as u64) as usize);
                let mut q = HANDED[other].lock();
                if q.len() < 256 {
                    q.push(b);
                } else {
                    drop(q);
                    b.check();
                }
            }
            _ => {
                let b = HANDED[me].lock().pop();
                if let Some(b) = b {
                    b.check();
                    drop(b);
                    CROSS.fetch_add(1, SeqCst);
                }
            }
        }
        OPS[me].store(i + 1, SeqCst);
        if i % 256 == 0 {
            let o = OPS[other].load(SeqCst);
            if o > 0 && o < n {
                OVERLAP.fetch_add(1, SeqCst);
            }
        }
    }
    for b in own {
        b.check();
    }
}

fn on_core(cpu: u64, reason: Reason, a: u64, b: u64, _c: u64) -> ! {
    if reason != Reason::Yield {
        exo_rt::fatal(format_args!("sizeclass-smp: {reason:?} {a:#x} {b:#x} on CPU {cpu}"));
    }
    if exo_rt::control::read(control::SAVED_VALID) != 0 {
        exo_rt::resume()
    }
    let Some(stack) = STACK.lock().take() else {
        exo_rt::fatal(format_args!("sizeclass-smp: a second start on CPU {cpu}"));
    };
    exo_rt::smp::start_activation(cpu, stack, second)
}

extern "C" fn second() -> ! {
    STARTED.store(1, SeqCst);
    work(1);
    DONE.store(1, SeqCst);
    loop {
        exo_rt::yield_now();
    }
}

pub fn run(n: u64) -> u32 {
    N.store(n, SeqCst);
    *STACK.lock() = Some(Box::leak(alloc::vec![0u64; 2048].into_boxed_slice()));
    exo_rt::smp::set_core_handler(on_core);
    mem::write(MAILBOX_VA + 8, 1);
    while STARTED.load(SeqCst) == 0 {
        core::hint::spin_loop();
    }
    work(0);
    while DONE.load(SeqCst) == 0 {
        core::hint::spin_loop();
    }
    for q in &HANDED {
        for b in q.lock().drain(..) {
            b.check();
        }
    }
    let ops = OPS[0].load(SeqCst) + OPS[1].load(SeqCst);
    let (bad, cross, overlap) = (BAD.load(SeqCst), CROSS.load(SeqCst), OVERLAP.load(SeqCst));
    mem::write(MAILBOX_VA + 16, ops);
    mem::write(MAILBOX_VA + 24, bad);
    mem::write(MAILBOX_VA + 32, cross);
    mem::write(MAILBOX_VA + 40, overlap);
    println!(
        "sizeclass-smp: {ops} heap operations by two activations, {cross} blocks freed on the other CPU, \
         {overlap} samples with both part-way, {bad} failed checks"
    );
    u32::from(bad != 0)
}
