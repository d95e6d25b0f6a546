#!/usr/bin/env bash
# make test-cgroup2: corral's integration tests on a pure cgroup v2 kernel.
#
# Boots Debian's cloud kernel under qemu with software emulation (TCG: it
# needs no /dev/kvm, so it runs on any x86_64 machine or CI runner), with
# cgroup_no_v1=all and cgroup2 mounted at /sys/fs/cgroup, from an initramfs
# holding a static busybox, the static corral binary and the integration
# test binary. The guest's /init (next to this script) runs the tests, whose
# output comes back over the serial console, then prints a result line; this
# script exits with the tests' status. It fails loudly, never skips, when
# the VM cannot be built or booted or the result line is missing.
#
# Environment (the Makefile sets the first four):
#   GO, TAGS, LDFLAGS       how to build the test binary (as bin/corral is built)
#   CORRAL_BIN              the static corral binary to test (default bin/corral)
#   CGROUP2_VM_CACHE        where the guest kernel is kept (default .cache/cgroup2vm;
#                           remove it to fetch Debian's current cloud kernel)
#   CGROUP2_VM_TESTS        a -test.run pattern instead of the default set below
#   CGROUP2_VM_TESTFLAGS    more flags for the test binary (e.g. -test.count=5)
#   CGROUP2_VM_TIMEOUT      seconds before the VM is killed (default 600)
#   CGROUP2_VM_BOOT_TIMEOUT seconds for the guest's init to speak (default 90)
#   CGROUP2_VM_KEEP=1       keep the work dir (initramfs, serial log)
# Not -e: every step that can fail says what failed (fail), and the VM's
# exit status is looked at, not fatal.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
GO=${GO:-go}
TAGS=${TAGS:-seccomp netgo osusergo}
LDFLAGS=${LDFLAGS:--linkmode external -extldflags -static}
CORRAL_BIN=${CORRAL_BIN:-$repo/bin/corral}
cache=${CGROUP2_VM_CACHE:-$repo/.cache/cgroup2vm}
timeout=${CGROUP2_VM_TIMEOUT:-600}
marker=CORRAL-CGROUP2-VM-RESULT

# The tests run in the VM: those that need only busybox (the guest has no
# bash, gcc, go or unshare) and prove the v2 properties — limits and the
# reasons reported for them, CPU quota, stats, cgroup namespace, exits and
# signals, the daemon's start/stop cycle, nothing left behind.
vm_tests=(
	# cgroup v2 itself
	TestMemoryHogIsOOMKilledAndReported
	TestForkBombStoppedByPidsLimit
	TestCPUQuotaHoldsHogToHalfACPU
	TestCgroupNamespaceShowsOwnCgroupAsRoot
	TestCgroupParentHoldingCorralIsRefused
	TestDeviceCgroupDeniesOtherDevices
	TestDaemonStatsFromCgroups
	TestDaemonReloadAppliesOnlyTheDifference
	# exits, signals, the daemon's start/stop cycle, nothing left behind
	TestExitCodePropagates
	TestMissingOrNonExecutableCommand
	TestKilledBySignalReported
	TestSignalsForwardedToSandbox
	TestStopSignalReachesACommandWithoutHandlers
	TestSecondInterruptKillsAndCleansUp
	TestKill9OfCorralIsSweptByNextRun
	TestNameInUseIsRefused
	TestDaemonRestartsKilledServiceAfterBackoff
	TestDaemonStopKillsTermIgnoringServiceAfterTimeout
	# crash safety: adoption and exits seen through pidfds and cgroup2
	TestDaemonKill9LeavesSandboxesRunningAndTheNextDaemonAdoptsThem
	TestDaemonReportsTheRealExitOfASandboxThatEndedWhileItWasDown
	TestCgroupRemovedBehindCorralsBack
	# health, exit kinds and metrics read from cgroup2
	TestExecHealthCheckRunsInsideTheSandbox
	TestDaemonReportsChildOOMAndPidsLimitWithLastLines
	TestChildOOMKillsAreCountedAndAlertedAsTheyHappen
	TestMetricsMatchTheCgroup
	# the hardening, on this kernel
	TestPIDNamespaceShowsOnlyOwnProcesses
	TestCapabilitiesNoNewPrivsSeccomp
	TestRootIsReadOnly
	# every sandbox in a user namespace of its own
	TestUserNamespaceMapsABlock
	TestHostUserWithTheServicesUIDCannotTouchIt
	TestBindsUnderAUserNamespace
	TestNetworkHostUnderAUserNamespace
	TestDirectoryRootIsIDMapped
	TestMissingOrOverlappingSubordinateRangeIsRefused
	# the bridge network, in network namespaces of the tests' own (busybox's
	# nsenter puts corral in them), with the modules of vm_modules
	TestBridgeEgressAllowlist
	TestBridgePublishedPortAndNames
)
# The kernel modules the bridge network needs, which the cloud kernel
# builds as modules: veth pairs on a bridge; br_netfilter, so that bridged
# traffic meets the inet hooks where the egress lists are; the nftables
# expressions runtime/network/firewall uses (NAT and masquerade, conntrack
# state and status, fib, reject, named counters, and meta in the bridge
# family, which 6.1 keeps in a module of its own: without it the bridge
# table's rules fail with ENOENT); ctnetlink, with which a detach forgets
# a sandbox's connections. Their dependencies come along (modules.dep);
# init loads them all before the tests.
vm_modules=(
	veth bridge br_netfilter
	nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib_inet nft_reject_inet nft_objref
	nft_meta_bridge
	nf_conntrack_netlink
)
tests=${CGROUP2_VM_TESTS:-^($(IFS='|'; echo "${vm_tests[*]}"))\$}

say() { echo "test-cgroup2: $*"; }
fail() {
	echo "test-cgroup2: FAIL: $*" >&2
	exit 1
}

start=$(date +%s%N)
elapsed() {
	local ms=$((($(date +%s%N) - start) / 1000000))
	printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}
[ "$(id -u)" = 0 ] || fail "must run as root (apt, and the tests run real sandboxes): sudo make test-cgroup2"
[ "$(uname -m)" = x86_64 ] || fail "the VM test boots Debian's amd64 cloud kernel and needs an x86_64 host, not $(uname -m)"
[ -x "$CORRAL_BIN" ] || fail "no corral binary at $CORRAL_BIN (make build)"

# --- what the VM is made of -------------------------------------------------

apt_updated=
apt_install() {
	say "installing $* with apt"
	if [ -z "$apt_updated" ]; then
		apt-get update -qq || fail "apt-get update"
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		fail "apt-get install $*"
}

command -v qemu-system-x86_64 >/dev/null || apt_install qemu-system-x86
busybox=/bin/busybox
if ! [ -x $busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
	apt_install busybox-static
fi
# The guest has no libc: busybox must be static.
if LC_ALL=C readelf -l $busybox 2>/dev/null | grep -q 'program interpreter'; then
	fail "$busybox is dynamically linked; install busybox-static"
fi

# Debian's cloud kernel: the lightest Debian kernel with everything the
# sandboxes need built in (cgroups, namespaces, seccomp, BPF), LZ4 so quick
# to unpack under TCG. Downloaded once, never installed into /boot, with
# its modules (the bridge network's are modules there: see vm_modules),
# which its package ships without a modules.dep: busybox depmod makes one.
kernel=$cache/vmlinuz
modules=$cache/lib/modules
if ! [ -s "$kernel" ] || ! [ -s "$(ls -d "$modules"/*/modules.dep 2>/dev/null | head -n 1)" ]; then
	say "fetching Debian's cloud kernel into $cache"
	mkdir -p "$cache" || fail "mkdir $cache"
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
	if [ -z "$pkg" ]; then
		apt-get update -qq || fail "apt-get update"
		apt_updated=1
		pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
	fi
	[ -n "$pkg" ] || fail "apt knows no linux-image-cloud-amd64 package (is the Debian main archive in the apt sources?)"
	dl=$(mktemp -d "$cache/download.XXXXXX") || fail "mktemp"
	# apt's warning that _apt cannot write here (so it downloads as root) is harmless.
	(cd "$dl" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed as root') || true
	deb=$(ls "$dl"/*.deb 2>/dev/null | head -n 1)
	[ -n "$deb" ] || fail "apt-get download $pkg gave no package"
	dpkg -x "$deb" "$dl/x" || fail "dpkg -x $deb"
	vmlinuz=$(ls "$dl"/x/boot/vmlinuz-* 2>/dev/null | head -n 1)
	[ -n "$vmlinuz" ] || fail "$deb holds no /boot/vmlinuz-*"
	kver=${vmlinuz##*/vmlinuz-}
	[ -d "$dl/x/lib/modules/$kver" ] || fail "$deb holds no /lib/modules/$kver"
	$busybox depmod -b "$dl/x" "$kver" || fail "depmod of $deb's modules"
	# The kernel and its modules are replaced together: a kernel never
	# meets another version's modules.
	rm -rf "$modules" "$kernel" && mkdir -p "$modules" &&
		mv "$dl/x/lib/modules/$kver" "$modules/" &&
		cp "$vmlinuz" "$kernel.tmp" && mv "$kernel.tmp" "$kernel" || fail "copy the kernel and its modules"
	basename "$vmlinuz" >"$cache/vmlinuz.version"
	rm -rf "$dl"
fi
kver=$(cd "$modules" && ls -d */ | head -n 1) && kver=${kver%/}
[ -n "$kver" ] || fail "no modules in $modules (remove $cache to fetch the kernel again)"
say "kernel $(cat "$cache/vmlinuz.version" 2>/dev/null || echo "$kernel"), $(qemu-system-x86_64 --version | head -n 1)"

work=$(mktemp -d /tmp/corral-cgroup2vm.XXXXXX) || fail "mktemp"
vm=
cleanup() {
	# Interrupted: stop the VM (timeout passes the signal on to qemu).
	if [ -n "$vm" ]; then
		kill -TERM "$vm" 2>/dev/null
		wait "$vm" 2>/dev/null
	fi
	if [ "${CGROUP2_VM_KEEP:-}" = 1 ]; then
		say "work dir kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The integration tests, static and with the same tags as bin/corral: the
# guest has no libc and no Go toolchain.
say "building the integration test binary"
(cd "$repo" && CGO_ENABLED=1 "$GO" test -c -tags "$TAGS" -ldflags "$LDFLAGS" -o "$work/integration.test" ./integration) ||
	fail "build the integration test binary"

# The initramfs: one uncompressed newc archive (nothing to decompress
# under emulation, no concatenation to pad).
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tests,proc,sys,dev,tmp,run,var/tmp,root}
cp $busybox "$root/bin/busybox"
cp "$CORRAL_BIN" "$root/bin/corral"
cp "$work/integration.test" "$root/tests/integration.test"
install -m 0755 "$here/init" "$root/init"
# The modules of vm_modules and what they need, uncompressed (busybox
# insmod reads a plain .ko), with a modules.dep and modules.alias of their
# own for the guest's modprobe (and the kernel's requests for more).
kmods=$root/lib/modules/$kver
mkdir -p "$kmods"
cp "$modules/$kver"/modules.builtin* "$modules/$kver/modules.order" "$kmods/" 2>/dev/null
for m in "${vm_modules[@]}"; do
	line=$(grep -E "(^|/)$m\.ko(\.xz|\.zst|\.gz)?:" "$modules/$kver/modules.dep") ||
		fail "no module $m in the $kver package"
	for f in $(echo "$line" | tr -d ':'); do
		dst=$kmods/${f%.*}
		case $f in *.ko) dst=$kmods/$f ;; esac
		[ -e "$dst" ] && continue
		mkdir -p "$(dirname "$dst")"
		case $f in
		*.ko) cp "$modules/$kver/$f" "$dst" ;;
		*.xz) xz -dc "$modules/$kver/$f" >"$dst" ;;
		*.zst) zstd -qdc "$modules/$kver/$f" >"$dst" ;;
		*.gz) gzip -dc "$modules/$kver/$f" >"$dst" ;;
		esac || fail "copy module $f"
	done
done
$busybox depmod -b "$root" "$kver" || fail "depmod of the initramfs's modules"
printf '%s\n' "${vm_modules[@]}" >"$root/etc/vm-modules"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
{
	printf 'TESTS=%q\n' "$tests"
	printf 'TESTFLAGS=%q\n' "${CGROUP2_VM_TESTFLAGS:-}"
	# go test's own limit, inside the VM's: its panic shows which test hung.
	printf 'GO_TEST_TIMEOUT=%ss\n' "$((timeout - 60))"
} >"$root/tests/run.conf"
(cd "$root" && find . | $busybox cpio -o -H newc 2>/dev/null) >"$work/initrd.cpio" || fail "build the initramfs"
say "initramfs $(($(stat -c %s "$work/initrd.cpio") / 1024 / 1024)) MiB; booting (TCG, timeout ${timeout}s)"

# --- boot ---------------------------------------------------------------------

# The pc machine, not microvm: microvm has no HPET or ACPI PM timer, and
# when the emulated TSC cannot be calibrated against the PIT (about one
# boot in ten here, when the host is busy) the guest kernel, left without
# a clock reference, hangs silently in early boot. qboot (if qemu ships it)
# boots faster than SeaBIOS. -nodefaults: no NIC, VGA, floppy or CD; the
# serial console is stdio. The kernel's command line makes it pure cgroup v2.
bios=()
[ -e /usr/share/qemu/qboot.rom ] && bios=(-bios qboot.rom)
log=$work/serial.log
booted() { grep -aq '^cgroup2 VM: ' "$log"; }
boot() {
	: >"$log"
	timeout -k 10 "$timeout" qemu-system-x86_64 \
		-accel tcg,thread=multi -M pc "${bios[@]}" -nodefaults -m 1024 -smp 2 \
		-display none -serial stdio -no-reboot \
		-kernel "$kernel" -initrd "$work/initrd.cpio" \
		-append "console=ttyS0 quiet panic=-1 cgroup_no_v1=all" \
		</dev/null >"$log" 2>&1 &
	vm=$!
	# The serial console as it comes, for CI's log: go test's own output.
	tail -n +1 -f --pid="$vm" "$log" | sed -u 's/\r$//' &
	# The guest's init speaks within seconds; a VM silent for long hangs.
	local waited=0
	while ! booted && kill -0 "$vm" 2>/dev/null; do
		if [ "$waited" -ge "$boot_timeout" ]; then
			say "the VM's init did not start within ${boot_timeout}s: stopping the VM"
			kill -TERM "$vm"
			break
		fi
		sleep 1
		waited=$((waited + 1))
	done
	wait "$vm"
	qemu_rc=$?
	vm=
	wait
}
boot_timeout=${CGROUP2_VM_BOOT_TIMEOUT:-90}
boot
if ! booted; then
	# Emulated early boot can still stall (see above): boot a new VM, once.
	# Failing tests are never retried.
	say "RETRYING: the VM did not boot (qemu exit status $qemu_rc); serial log so far:"
	sed 's/\r$//' "$log" | tail -n 20
	mv "$log" "$log.first"
	boot
fi
elapsed=$(elapsed)

result=$(tr -d '\r' <"$log" | grep -a -o "^$marker rc=[0-9]*" | tail -n 1)
if [ -z "$result" ]; then
	if grep -aq 'Kernel panic' "$log"; then
		why="the guest kernel panicked"
	elif ! [ -s "$log" ]; then
		why="qemu printed nothing (exit status $qemu_rc)"
	else
		why="no '$marker' line in the serial log (qemu exit status $qemu_rc; 124 means it hit the ${timeout}s timeout)"
	fi
	echo "----- serial log (last 80 lines) -----" >&2
	tr -d '\r' <"$log" | tail -n 80 >&2
	fail "$why"
fi
rc=${result##*rc=}
if [ "$rc" != 0 ]; then
	fail "the integration tests failed in the cgroup v2 VM (go test exit status $rc) after ${elapsed}s"
fi
say "PASS: the integration tests passed on cgroup v2 in ${elapsed}s"
