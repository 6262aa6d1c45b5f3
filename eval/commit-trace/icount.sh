#!/bin/bash
# icount.sh [kernel] [bootimage]: one boot of test=libdb_pmem_create on
# -smp 2 under -icount shift=0 (plain round-robin TCG, standard machine);
# prints kvdb's EXO-DB lines, whose tsc_per_op is the machine's guest
# instructions per commit of each phase (eval/DB.md, "How each count is
# taken"). The per-cut rows of eval/DB.md's 2-CPU tables are this.
W=$(git rev-parse --show-toplevel)
K=${1:-$W/target/x86_64-unknown-none/release/kernel}; B=${2:-$W/target/x86_64-unknown-none/release/bootimage.bin}
D=/dev/shm/sizeclass-ic-$$; mkdir -p $D
truncate -s 512M $D/nvme.img; truncate -s 64M $D/virtio.img; truncate -s 128M $D/nvdimm.img
timeout 600 qemu-system-x86_64 -machine q35,kernel-irqchip=split,nvdimm=on -m 512M,slots=2,maxmem=4G -smp 2 -accel tcg -icount shift=0 -cpu max -device intel-iommu,intremap=on,caching-mode=on -drive file=$D/nvme.img,if=none,id=nvm,format=raw -device nvme,serial=exo0,drive=nvm,ioeventfd=on -drive file=$D/virtio.img,if=none,id=vblk,format=raw -device virtio-blk-pci,drive=vblk,disable-legacy=on,iommu_platform=on -object memory-backend-file,id=pmem0,share=on,mem-path=$D/nvdimm.img,size=128M -device nvdimm,memdev=pmem0,id=nvdimm0 -device isa-debug-exit,iobase=0xf4,iosize=0x04 -nic none -display none -no-reboot -serial file:$D/serial.log -kernel $K -initrd $B -append "test=libdb_pmem_create nonce=${NONCE:-12345677} ram_mib=512" >/dev/null 2>&1
grep -a "EXO-DB" $D/serial.log | tr ' ' '\n' | grep -E "^(workload|durability|ops|p50_us|p99_us|tsc_per_op|lines_flushed_per_op|tsc_per_us)=" | paste -sd' ' | sed 's/ workload=/\nworkload=/g'
echo
rm -rf $D
