//! Which NVMe controller a job gets, from what the functions are — their
//! class code, bus position and SR-IOV state as the kernel's device list
//! describes them — never "the first 1b36:0010 found" (which on a machine
//! with two controllers, or one behind a bridge, is whichever the walk met
//! first). The driver then confirms the choice by the serial number the
//! controller reports (`identify::serial_matches`).

/// PCI class code of an NVMe controller (mass storage, NVM, NVMe).
pub const NVME_CLASS: u32 = 0x01_08_02;

/// What init knows about a PCI function before any driver has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Bus/device/function (routing id).
    pub bdf: u16,
    /// Class code (base, sub, programming interface).
    pub class: u32,
    /// An SR-IOV virtual function (driven only through its PF's setup).
    pub is_vf: bool,
    /// For a physical function: how many VFs the kernel enabled.
    pub vfs_enabled: u64,
}

/// The kind of controller a job needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Any NVMe controller (the `n`-th by bus position).
    Controller,
    /// A physical function whose virtual functions are enabled.
    SrIovPf,
}

impl Function {
    fn fits(&self, want: Want) -> bool {
        self.class == NVME_CLASS && !self.is_vf && (want == Want::Controller || self.vfs_enabled > 0)
    }
}

/// The index in `fns` of the `nth` (from 0) controller that fits `want`,
/// counted in bus order (lowest routing id first); `None` if there are
/// not that many.
pub fn pick(fns: &[Function], want: Want, nth: usize) -> Option<usize> {
    fns.iter().enumerate().filter(|(_, f)| f.fits(want)).find_map(|(i, f)| {
        let before = fns.iter().enumerate().filter(|(j, g)| g.fits(want) && (g.bdf, *j) < (f.bdf, i)).count();
        (before == nth).then_some(i)
    })
}

/// How many controllers fit `want`.
pub fn count(fns: &[Function], want: Want) -> usize {
    fns.iter().filter(|f| f.fits(want)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn f(bdf: u16, class: u32, is_vf: bool, vfs_enabled: u64) -> Function {
        Function { bdf, class, is_vf, vfs_enabled }
    }

    #[test]
    fn controllers_are_picked_by_kind_and_bus_position() {
        // The two-controller machine as the kernel may list it: virtio-blk,
        // the second controller met first, then the first one.
        let two = [f(0x0020, 0x01_00_00, false, 0), f(0x0028, NVME_CLASS, false, 0), f(0x0018, NVME_CLASS, false, 0)];
        assert_eq!(pick(&two, Want::Controller, 0), Some(2), "lowest bus position first");
        assert_eq!(pick(&two, Want::Controller, 1), Some(1));
        assert_eq!(pick(&two, Want::Controller, 2), None);
        assert_eq!(pick(&two, Want::SrIovPf, 0), None);
        assert_eq!(count(&two, Want::Controller), 2);
        // SR-IOV machine with a second, plain controller on the root bus:
        // the PF is behind a bridge (higher bus) and its VFs share its class.
        let sriov = [
            f(0x0018, NVME_CLASS, false, 0),
            f(0x0100, NVME_CLASS, false, 4),
            f(0x0102, NVME_CLASS, true, 0),
            f(0x0103, NVME_CLASS, true, 0),
        ];
        assert_eq!(pick(&sriov, Want::SrIovPf, 0), Some(1));
        assert_eq!(pick(&sriov, Want::Controller, 0), Some(0));
        assert_eq!(pick(&sriov, Want::Controller, 1), Some(1), "VFs are never picked");
        assert_eq!(pick(&sriov, Want::Controller, 2), None);
        assert_eq!(pick(&[], Want::Controller, 0), None);
        // Equal routing ids (a malformed list) still give each index once.
        let dup = [f(1, NVME_CLASS, false, 0), f(1, NVME_CLASS, false, 0)];
        assert_eq!((pick(&dup, Want::Controller, 0), pick(&dup, Want::Controller, 1)), (Some(0), Some(1)));
    }
}
