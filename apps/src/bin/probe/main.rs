//! `probe`: the test program the QEMU integration tests run as ordinary,
//! untrusted processes. Its first argument picks what it does; its exit
//! code tells init what happened (0 = as expected, 42 = took the fault it
//! was supposed to take, anything else = a failed check).
#![cfg_attr(exo_user, no_std, no_main)]
#![forbid(unsafe_code)]

#[cfg(not(exo_user))]
fn main() {}

#[cfg(exo_user)]
mod checks;
#[cfg(exo_user)]
mod fuzz;
#[cfg(exo_user)]
mod hostile;
#[cfg(exo_user)]
mod matrix;
#[cfg(exo_user)]
mod memfns;
#[cfg(exo_user)]
mod regions;
#[cfg(exo_user)]
mod sfuzz;
#[cfg(exo_user)]
mod sizeclass_smp;
#[cfg(exo_user)]
mod twocores;
#[cfg(exo_user)]
mod vecmath;
#[cfg(exo_user)]
mod vector;

#[cfg(exo_user)]
extern crate alloc;

#[cfg(exo_user)]
exo_rt::entry!(main);

/// Exit code meaning "faulted, as the test intended".
#[cfg(exo_user)]
pub const FAULTED: u32 = 42;

#[cfg(exo_user)]
fn main() {
    let args = exo_rt::args();
    let mut words = args.split_whitespace();
    let mode = words.next().unwrap_or("");
    let arg = words.next().and_then(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
    let code = match mode {
        "syscalls" => checks::five_syscalls(),
        "attack-read" => checks::attack_access(arg, false),
        "attack-write" => checks::attack_access(arg, true),
        "attack-calls" => checks::attack_calls(),
        "attack-edge" => checks::attack_edge(),
        "attack-port" => {
            // Port I/O is granted only to init (the TSS I/O bitmap): this
            // must raise #GP, which ends the process as a panic.
            exo_rt::println!("attack-port: writing to COM1 directly");
            exo_rt::console::serial_byte(b'!');
            exo_rt::println!("attack-port: port I/O succeeded!");
            1
        }
        m if m.starts_with("tlb-alias-") => hostile::tlb_alias(&m["tlb-alias-".len()..]),
        m if m.starts_with("ctlpage-") => hostile::ctlpage(&m["ctlpage-".len()..], arg),
        "dma-borrowed" => hostile::dma_borrowed(arg),
        "victim" | "checker" => regions::victim(),
        "share-writer" => regions::share_writer(),
        "share-reader" => regions::share_reader(),
        "share-ro" => regions::share_read_only(),
        "pager" => regions::pager(arg.max(1)),
        "alloc" => regions::build_region(),
        "fuzz" => {
            let seed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            fuzz::run(arg.max(1), seed)
        }
        "matrix" => matrix::run(),
        "vector" => vector::run(arg),
        "vecmath" => vecmath::run(arg),
        "sfuzz" => {
            let seed = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let structures = words.next() != Some("noscen");
            sfuzz::run(arg.max(1), seed, structures)
        }
        "twocores" => twocores::run(arg.max(1)),
        "sizeclass-smp" => sizeclass_smp::run(arg.max(1)),
        "memfns" => memfns::run(),
        "yieldloop" => loop {
            let _ = exo_rt::sys::yield_to(exo_rt::layout::PARENT_HANDLE_VA, exo_rt::layout::msg::YIELD);
        },
        "count" => {
            let mut x = 0u64;
            for i in 0..arg {
                x = core::hint::black_box(x.wrapping_add(i));
            }
            exo_rt::println!("count: counted to {arg:#x} (sum {x:#x})");
            0
        }
        _ => {
            exo_rt::println!("probe: unknown mode {mode:?}");
            2
        }
    };
    exo_rt::exit(code)
}
