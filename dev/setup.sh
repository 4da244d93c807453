#!/usr/bin/env bash
# Install what the appliance, its lab and its tests need on Debian 12, as root.
# Idempotent: re-running only checks. Fails hard on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # datapath: NFQUEUE via iptables-nft, connmark, conntrack, namespaces
  iptables nftables conntrack iproute2 libnetfilter-queue-dev
  # HA: conntrack entries (offload marks included) replicated to the standby (appliance ha, ha.sync)
  conntrackd
  # building the C extensions (netfilterqueue, pytricia)
  gcc python3-dev python3-pip python3-venv
  # the lab's real clients and servers
  curl dnsutils netcat-openbsd iputils-ping socat openssl dnsmasq-base iperf3 tcpdump
  # bench.lab_flood --overload: a SYN flood faster than a Python sender
  hping3
  # AMI tooling checks (packer validate, systemd-analyze verify)
  packer systemd
  # a real Prometheus server: the test that scrapes the lab appliance's /metrics
  prometheus
  # tests: the names the protocol logs carry, compared with a packet analyser's (tshark)
  tshark
  # tests: the replay --report HTML rendered by a real headless browser
  chromium
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # tshark's package asks whether non-root users may capture: no (tests read files as root)
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's system Python refuses global pip installs (PEP 668); the appliance is
# a system service here, so install into it deliberately.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# prometheus_client (in `live`) comes from pip, not Debian's python3-prometheus-client: that one
# installs for /usr/bin/python3 only, and the appliance may run on another interpreter (pyenv here)
# (the editable install also compiles the hot path with Cython, in place: setup.py;
# after editing one of its modules, `python3 setup.py build_ext --inplace` rebuilds it)
python3 -m pip install -q -e ".[live,aws,test]"
# development tools: atheris for `python3 -m bench.fuzz` (coverage-guided fuzzing; a manylinux
# wheel, no compiler needed on Python 3.11), hypothesis for the property tests, cython for
# rebuilding the compiled hot path in place
python3 -m pip install -q atheris hypothesis "cython>=3.0"
echo "setup: ok ($(python3 --version), appliance $(python3 -m appliance --version))" >&2
