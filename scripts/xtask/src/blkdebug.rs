//! Device failures on demand: QEMU's `blkdebug` block driver between the
//! NVMe controller and its image fails the requests a rule names, and the
//! controller reports each as an NVMe error status (a Write Fault for a
//! failed write or flush, an Unrecovered Read Error for a read). The rules
//! go in a configuration file, one `[inject-error]` or `[set-state]`
//! section each (QEMU's `docs/devel/testing/blkdebug.rst`).
//!
//! A rule is armed by an event of the block layer (`write_aio`, `read_aio`,
//! `flush_to_disk`) and then fails matching requests (by kind, `iotype`,
//! and by a sector inside the request, in 512-byte units). Counting is
//! done with states: each flush moves the state one up, so a rule for
//! state `k` fails the `k`-th flush and every later one.

use std::fmt::Write;
use std::path::Path;

/// One failure the device will show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every flush from the `n`-th on (1-based) fails.
    FlushesFrom(u32),
    /// Every write touching this 512-byte sector fails.
    WritesAt(u64),
    /// The first read touching this 512-byte sector fails; later ones work.
    FirstReadAt(u64),
}

/// The configuration file's text for `faults`.
pub fn config(faults: &[Fault]) -> String {
    let mut c = String::new();
    for f in faults {
        match *f {
            Fault::FlushesFrom(n) => {
                let n = n.max(1);
                for state in 1..n {
                    let _ = writeln!(
                        c,
                        "[set-state]\nevent = \"flush_to_disk\"\nstate = \"{state}\"\nnew_state = \"{}\"\n",
                        state + 1
                    );
                }
                let _ = writeln!(
                    c,
                    "[inject-error]\nevent = \"flush_to_disk\"\niotype = \"flush\"\nstate = \"{n}\"\nerrno = \"5\"\n"
                );
            }
            Fault::WritesAt(sector) => {
                let _ = writeln!(
                    c,
                    "[inject-error]\nevent = \"write_aio\"\niotype = \"write\"\nsector = \"{sector}\"\nerrno = \"5\"\n"
                );
            }
            Fault::FirstReadAt(sector) => {
                let _ = writeln!(
                    c,
                    "[inject-error]\nevent = \"read_aio\"\niotype = \"read\"\nsector = \"{sector}\"\nonce = \"on\"\nerrno = \"5\"\n"
                );
            }
        }
    }
    c
}

/// The NVMe drive's `-drive` options (without `if`/`id`): the raw image
/// behind blkdebug with the configuration file `config`.
pub fn drive(image: &Path, config: &Path) -> String {
    format!(
        "driver=raw,file.driver=blkdebug,file.config={},file.image.filename={}",
        crate::machine::qemu_escape(config),
        crate::machine::qemu_escape(image)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_are_counted_with_a_chain_of_states() {
        let c = config(&[Fault::FlushesFrom(3)]);
        assert_eq!(c.matches("[set-state]").count(), 2);
        assert!(c.contains("state = \"1\"\nnew_state = \"2\""));
        assert!(c.contains("state = \"2\"\nnew_state = \"3\""));
        assert!(c.contains("[inject-error]\nevent = \"flush_to_disk\"\niotype = \"flush\"\nstate = \"3\""));
        // From the first flush: no state to count.
        assert_eq!(config(&[Fault::FlushesFrom(1)]).matches("[set-state]").count(), 0);
    }

    #[test]
    fn sectors_and_one_shot_reads() {
        let c = config(&[Fault::WritesAt(40), Fault::FirstReadAt(7)]);
        assert!(c.contains("event = \"write_aio\"\niotype = \"write\"\nsector = \"40\""));
        assert!(c.contains("event = \"read_aio\"\niotype = \"read\"\nsector = \"7\"\nonce = \"on\""));
        let d = drive(Path::new("/i/nvme,1.img"), Path::new("/i/f.conf"));
        assert_eq!(d, "driver=raw,file.driver=blkdebug,file.config=/i/f.conf,file.image.filename=/i/nvme,,1.img");
    }
}
