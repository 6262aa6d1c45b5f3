//! Device choice without the device info page: which serial number the
//! `nth` NVMe controller must report, and which function the `nvme`
//! crate's chooser picks.

/// The serial number the `nth` NVMe controller (bus order) must report:
/// from the command line's `nvme_serials=A,B,...` when given
/// (`nvme_serials=any` checks nothing; a list shorter than `nth` falls
/// back to `defaults`), else `defaults[nth]`.
pub fn serial_for<'a>(cmdline: &'a str, nth: usize, defaults: &[&'a str]) -> Option<&'a str> {
    let given = cmdline.split_whitespace().find_map(|w| w.strip_prefix("nvme_serials="));
    match given {
        Some("any") => None,
        Some(list) => list.split(',').nth(nth).or_else(|| defaults.get(nth).copied()),
        None => defaults.get(nth).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::select::{count, pick, Function, Want};

    const D: [&str; 2] = ["exo0", "exo1"];

    #[test]
    fn serials_come_from_the_command_line_or_the_defaults() {
        assert_eq!(serial_for("test=x", 0, &D), Some("exo0"));
        assert_eq!(serial_for("test=x", 1, &D), Some("exo1"));
        assert_eq!(serial_for("test=x", 2, &D), None);
        assert_eq!(serial_for("nvme_serials=any", 0, &D), None);
        assert_eq!(serial_for("a nvme_serials=S1,S2 b", 1, &D), Some("S2"));
        assert_eq!(serial_for("nvme_serials=S1", 1, &D), Some("exo1"));
    }

    fn f(bdf: u16, class: u32, is_vf: bool, vfs_enabled: u64) -> Function {
        Function { bdf, class, is_vf, vfs_enabled }
    }

    #[test]
    fn the_chooser_skips_vfs_and_finds_the_pf() {
        const NVME: u32 = 0x01_08_02;
        const NET: u32 = 0x02_00_00;
        let devs = [f(0x08, NET, false, 0), f(0x10, NVME, false, 2), f(0x11, NVME, true, 0), f(0x18, NVME, false, 0)];
        assert_eq!(pick(&devs, Want::Controller, 0), Some(1));
        assert_eq!(pick(&devs, Want::Controller, 1), Some(3));
        assert_eq!(pick(&devs, Want::SrIovPf, 0), Some(1));
        assert_eq!(count(&devs, Want::Controller), 2);
    }
}
