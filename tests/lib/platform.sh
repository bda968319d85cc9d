# Sourced by every suite that runs real microVMs (those whose suite.sh
# carries the line "# ember-suite: microvms"): chooses the platform the
# suite's VMs run on and says which, so that no VM test can skip silently.
#
# tests/run-all.sh runs such a suite once per platform the host has, with
# EMBER_PLATFORM set to it; run alone, a suite takes EMBER_PLATFORM if set,
# else what ember-vmm would choose itself (auto).

# platform_require SUITE VMM: sets and exports EMBER_PLATFORM and
# PLATFORM, and prints "# platform NAME".  When the platform cannot run
# VMs here (or none can), prints "FAIL SUITE: why" and returns 1: a suite
# of VM tests that cannot run fails rather than skips.
platform_require() {
	local suite=$1 vmm=$2 listing wanted
	if [[ ! -x $vmm ]]; then
		echo "FAIL $suite: ember-vmm is not built: $vmm missing (run make)"
		return 1
	fi
	listing=$("$vmm" platforms 2>&1)
	wanted=${EMBER_PLATFORM:-}
	if [[ -z $wanted || $wanted == auto ]]; then
		wanted=$(awk '$2 == "available" { print $1; exit }' <<<"$listing")
		if [[ -z $wanted ]]; then
			echo "FAIL $suite: no platform can run microVMs on this host"
			sed 's/^/    /' <<<"$listing"
			return 1
		fi
	elif ! awk -v p="$wanted" '$1 == p && $2 == "available" { found = 1 } END { exit !found }' <<<"$listing"; then
		echo "FAIL $suite: platform $wanted cannot run microVMs on this host"
		sed 's/^/    /' <<<"$listing"
		return 1
	fi
	export EMBER_PLATFORM=$wanted
	PLATFORM=$wanted
	echo "# platform $PLATFORM"
}

# platforms_available VMM: the names of the platforms that can run VMs
# here, one per line, in the order ember-vmm prefers them.
platforms_available() {
	"$1" platforms 2>/dev/null | awk '$2 == "available" { print $1 }'
}

# guest_memory_pid VMM_PID: the process whose address space holds the
# guest's memory — the VMM itself on KVM, the stub process it spawned on
# systrap (its only child).
guest_memory_pid() {
	local child
	if [[ ${PLATFORM:-} == systrap ]]; then
		child=$(cat /proc/"$1"/task/*/children 2>/dev/null | awk '{ print $1; exit }')
		echo "${child:-$1}"
	else
		echo "$1"
	fi
}
