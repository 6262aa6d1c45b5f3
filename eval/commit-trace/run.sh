#!/bin/bash
# run.sh KVDB_ELF OUT [kernel] [bootimage]: boot test=libdb_pmem_create under
# plain TCG with -s -S and single-step one kvdb commit (NHIT-th entry into
# kvdb::workload::commit, default 6; 102 = sync commit 99 since kvdb
# preloads its keys (101 before)) with gdb
# (trace.py); then attr.py OUT KVDB_ELF [outer|inner] sums it per function.
# See eval/DB.md, "Two CPUs (--smp 2) and the pmem sync commit's instructions".
W=$(git rev-parse --show-toplevel)
ELF=$1; OUT=$2; K=${3:-$W/target/x86_64-unknown-none/release/kernel}; B=${4:-$W/target/x86_64-unknown-none/release/bootimage.bin}
ADDRS=$(nm $ELF | grep '_ZN4kvdb8workload6commit' | awk '{print "0x"$1}' | paste -sd,)
D=/dev/shm/pmemsmp-tr-$$; mkdir -p $D
truncate -s 512M $D/nvme.img; truncate -s 64M $D/virtio.img; truncate -s 128M $D/nvdimm.img
qemu-system-x86_64 -machine q35,kernel-irqchip=split,nvdimm=on -m 512M,slots=2,maxmem=4G -smp 1 -accel tcg -cpu max -device intel-iommu,intremap=on,caching-mode=on -drive file=$D/nvme.img,if=none,id=nvm,format=raw -device nvme,serial=exo0,drive=nvm,ioeventfd=on -drive file=$D/virtio.img,if=none,id=vblk,format=raw -device virtio-blk-pci,drive=vblk,disable-legacy=on,iommu_platform=on -object memory-backend-file,id=pmem0,share=on,mem-path=$D/nvdimm.img,size=128M -device nvdimm,memdev=pmem0,id=nvdimm0 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -nic none -display none -no-reboot -serial file:$D/serial.log -kernel $K -initrd $B -append "test=libdb_pmem_create nonce=12345677 ram_mib=512" -s -S &
QP=$!
sleep 1
COMMIT_ADDRS=$ADDRS NHIT=${NHIT:-6} CTRACE_OUT=$OUT timeout 900 gdb -q -batch -x $W/eval/commit-trace/trace.py 2>&1 | tail -12
kill $QP 2>/dev/null; wait $QP 2>/dev/null
rm -rf $D
