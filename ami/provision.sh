#!/bin/bash
# Install the appliance onto a Debian 12 host (Packer runs this on the AMI builder).
#
#   SRC      the repository checkout to install (default: this script's parent dir)
#   DESTDIR  install under this root instead of / (tests; packaging)
#   SKIP_APT=1            do not apt-get install the OS packages
#   VENV_ARGS             extra `python3 -m venv` arguments (tests: --system-site-packages)
#   PIP_INSTALL_ARGS      extra `pip install` arguments (tests: --no-deps --no-index ...)
#
# Every step either completes or stops the build with a message naming it.
set -euo pipefail

SRC=${SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DESTDIR=${DESTDIR:-}
VENV=/opt/appliance/venv
VENV_ARGS=${VENV_ARGS:-}
PIP_INSTALL_ARGS=${PIP_INSTALL_ARGS:-}

step=start
trap 'echo "provision.sh: FAILED at step \"$step\" (line $LINENO, exit $?)" >&2' ERR
die() { echo "provision.sh: $step: $*" >&2; exit 1; }

step=check
[ -f "$SRC/pyproject.toml" ] || die "SRC=$SRC is not the appliance repository (no pyproject.toml)"
for f in appliance.service appliance-bootstrap.service appliance-ha.service 60-appliance.conf modules-appliance.conf \
         logrotate-appliance appliance.yaml; do
    [ -f "$SRC/ami/$f" ] || die "missing $SRC/ami/$f"
done
[ -d "$SRC/rules" ] || die "missing $SRC/rules (the default rule set)"
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (or set DESTDIR)"; fi

if [ "${SKIP_APT:-0}" != 1 ]; then
    step=apt
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3 python3-venv python3-dev build-essential \
        libnetfilter-queue-dev iptables nftables conntrack iproute2 logrotate \
        conntrackd jq tcpdump
    # conntrackd: HA state sync, run by `appliance ha` (ha.sync), never by its own unit (below);
    # jq, tcpdump: docs/aws.md, read the status file, see both directions cross the appliance
fi

step=venv
python3 -m venv $VENV_ARGS "$DESTDIR$VENV"
"$DESTDIR$VENV/bin/python" -m pip --version >/dev/null || die "pip is missing from $DESTDIR$VENV"

step=pip
# shellcheck disable=SC2086  # PIP_INSTALL_ARGS is a list of words
"$DESTDIR$VENV/bin/python" -m pip install -q $PIP_INSTALL_ARGS "$SRC[live,aws]"
[ -x "$DESTDIR$VENV/bin/appliance" ] || die "pip did not install the appliance console script"
# On sudo's secure_path: docs/aws.md has the operator run `sudo appliance bootstrap --dry-run`.
install -d "$DESTDIR/usr/local/bin"
ln -sfn "$VENV/bin/appliance" "$DESTDIR/usr/local/bin/appliance"

step=files
install -D -m 0644 "$SRC/ami/appliance.service"           "$DESTDIR/etc/systemd/system/appliance.service"
install -D -m 0644 "$SRC/ami/appliance-bootstrap.service" "$DESTDIR/etc/systemd/system/appliance-bootstrap.service"
install -D -m 0644 "$SRC/ami/appliance-ha.service"        "$DESTDIR/etc/systemd/system/appliance-ha.service"
install -D -m 0644 "$SRC/ami/60-appliance.conf"           "$DESTDIR/etc/sysctl.d/60-appliance.conf"
install -D -m 0644 "$SRC/ami/modules-appliance.conf"      "$DESTDIR/etc/modules-load.d/appliance.conf"
install -D -m 0644 "$SRC/ami/logrotate-appliance"         "$DESTDIR/etc/logrotate.d/appliance"
install -D -m 0644 "$SRC/ami/sysusers-appliance.conf"     "$DESTDIR/usr/lib/sysusers.d/appliance.conf"
# The units' user; into a scratch root (DESTDIR, the tests) systemd-sysusers makes it at boot.
if [ -z "$DESTDIR" ]; then
    systemd-sysusers /usr/lib/sysusers.d/appliance.conf || die "systemd-sysusers could not create the appliance user"
fi
install -d -m 0755 "$DESTDIR/etc/appliance" "$DESTDIR/var/log/appliance"
# A config supplied earlier (user-data, a rebuilt image) wins over the default.
[ -e "$DESTDIR/etc/appliance/appliance.yaml" ] ||
    install -m 0644 "$SRC/ami/appliance.yaml" "$DESTDIR/etc/appliance/appliance.yaml"
rm -rf "$DESTDIR/etc/appliance/rules"
cp -r "$SRC/rules" "$DESTDIR/etc/appliance/rules"
if [ -d "$SRC/docs" ]; then
    install -d "$DESTDIR/opt/appliance/docs"
    cp -r "$SRC/docs/." "$DESTDIR/opt/appliance/docs/"
fi

step=enable
# The symlinks `systemctl enable` makes, without needing a running systemd.
install -d "$DESTDIR/etc/systemd/system/multi-user.target.wants"
for u in appliance-bootstrap.service appliance.service; do
    ln -sfn "/etc/systemd/system/$u" "$DESTDIR/etc/systemd/system/multi-user.target.wants/$u"
done

# Debian's conntrackd.service would start a second conntrackd with the package's own config
# (multicast sync, which a VPC does not carry) and take the lock `appliance ha`'s conntrackd
# needs: masked, the way `systemctl mask` does it. appliance-ha.service is installed, not
# enabled: only a pair's user-data (an `ha:` section) enables it (docs/ha.md).
ln -sfn /dev/null "$DESTDIR/etc/systemd/system/conntrackd.service"

step=done
echo "provision.sh: installed the appliance into ${DESTDIR:-/} ($VENV)"
