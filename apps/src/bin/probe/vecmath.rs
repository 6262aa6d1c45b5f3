//! `vecmath SEED`: compiled Rust arithmetic in the vector registers across
//! preemptions. Each round sums a series unique to this process (its seed)
//! and the round in f64 (scalar SSE2, whose accumulators the compiler keeps
//! in XMM registers through the loop) and in two-lane arrays the compiler
//! packs into SSE2 registers (`addpd` on f64 halves and quarters, `paddq`
//! on 64-bit integers; the SSE2 intrinsics would need `unsafe` here,
//! programs forbid it), then checks every sum
//! against the same series summed in integers. All f64 values are
//! integers or quarter-integers well below 2^53, so each sum is exact
//! whatever the order: a single lost or foreign XMM value makes it wrong.
//! Exit 0 when enough rounds were preempted and every sum was exact.

use exo_rt::println;

/// Terms per round: a few million instructions, so timer ticks land
/// inside the loops.
const TERMS: u64 = 200_000;
/// Preempted rounds wanted before passing.
const PREEMPTED_ROUNDS: u64 = 8;
/// Round limit (the test's time bound if preemption never comes).
const MAX_ROUNDS: u64 = 300;

/// Term `i` of round `round`: below 2^16 for seeds below 8, so its square
/// is below 2^32 and a round's sum of squares below 2^50 (exact in f64).
fn term(seed: u64, round: u64, i: u64) -> u64 {
    (seed & 7) * 8192 + (round & 0xff) * 16 + (i % 4096)
}

/// What one round computes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Sums {
    /// Σx, Σx² (scalar f64, as integers).
    sum: u64,
    squares: u64,
    /// Σx/2, Σx/4 (packed f64, times 4).
    halves_x4: u64,
    quarters_x4: u64,
    /// Σx³ and Σ(x ^ seed) (packed 64-bit integers, wrapping).
    cubes: u64,
    mixed: u64,
}

/// The series in SSE2 registers: compiled Rust, scalar and two-lane.
#[inline(never)]
fn in_vector_registers(seed: u64, round: u64) -> Sums {
    let (mut sum, mut squares) = (0f64, 0f64);
    let mut packed = [0f64; 2];
    let mut ints = [0u64; 2];
    for i in 0..TERMS {
        let n = term(seed, round, i);
        let x = n as f64;
        sum += x;
        squares += x * x;
        let (h, q) = (x * 0.5, x * 0.25);
        packed = [packed[0] + h, packed[1] + q];
        let (c, m) = (n.wrapping_mul(n).wrapping_mul(n), n ^ seed);
        ints = [ints[0].wrapping_add(c), ints[1].wrapping_add(m)];
    }
    Sums {
        sum: sum as u64,
        squares: squares as u64,
        halves_x4: (packed[0] * 4.0) as u64,
        quarters_x4: (packed[1] * 4.0) as u64,
        cubes: ints[0],
        mixed: ints[1],
    }
}

/// The same series in integers (general registers).
fn in_integers(seed: u64, round: u64) -> Sums {
    let mut s = Sums { sum: 0, squares: 0, halves_x4: 0, quarters_x4: 0, cubes: 0, mixed: 0 };
    for i in 0..TERMS {
        let n = term(seed, round, i);
        s.sum += n;
        s.squares += n * n;
        s.cubes = s.cubes.wrapping_add(n.wrapping_mul(n).wrapping_mul(n));
        s.mixed = s.mixed.wrapping_add(n ^ seed);
    }
    s.halves_x4 = 2 * s.sum;
    s.quarters_x4 = s.sum;
    s
}

pub fn run(seed: u64) -> u32 {
    let mut preempted = 0;
    let mut round = 0;
    while round < MAX_ROUNDS && preempted < PREEMPTED_ROUNDS {
        round += 1;
        let before = exo_rt::upcalls();
        let got = core::hint::black_box(in_vector_registers(core::hint::black_box(seed), round));
        if exo_rt::upcalls() != before {
            preempted += 1;
        }
        let want = in_integers(seed, round);
        if got != want {
            println!("vecmath {seed}: WRONG in round {round}: {got:?}, expected {want:?}");
            return 3;
        }
    }
    println!("vecmath {seed}: {round} rounds, {preempted} preempted, every f64 and SSE2 sum exact");
    if preempted < PREEMPTED_ROUNDS {
        println!("vecmath {seed}: only {preempted} rounds were preempted (want {PREEMPTED_ROUNDS})");
        return 6;
    }
    0
}
