#!/usr/bin/env bash
# Install what the test suite drives: real TFTP clients and servers from the distribution.
# Idempotent and quick when everything is present. Needs root (or sudo) for apt-get.
set -euo pipefail

need=()
command -v curl >/dev/null || need+=(curl)
[ -x /usr/bin/tftp ] || need+=(tftp-hpa)
command -v atftp >/dev/null || need+=(atftp)
command -v busybox >/dev/null || need+=(busybox)
[ -x /usr/sbin/in.tftpd ] || need+=(tftpd-hpa)
command -v python3 >/dev/null || need+=(python3)
# Booting real firmware (tftpd/tests/boot.rs): qemu, OVMF, iPXE's ROMs and ipxe.efi, dnsmasq.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -e /usr/share/ovmf/OVMF.fd ] || need+=(ovmf)
[ -e /usr/lib/ipxe/qemu/efi-virtio.rom ] || need+=(ipxe-qemu)
[ -e /usr/lib/ipxe/ipxe.efi ] || need+=(ipxe)
command -v dnsmasq >/dev/null || need+=(dnsmasq-base)
# U-Boot's tftpboot (tftpd/tests/uboot.rs): its qemu-x86_64 build, run with qemu -bios.
[ -e /usr/lib/u-boot/qemu-x86_64/u-boot.rom ] || need+=(u-boot-qemu)
command -v ss >/dev/null || need+=(iproute2)
# The .deb smoke test (scripts/deb-smoke.sh): man, systemd-socket-activate, systemd-analyze.
command -v man >/dev/null || need+=(man-db)
command -v systemd-socket-activate >/dev/null || need+=(systemd)
# The namespace test bed (scripts/netbed.sh, tftpd/tests/netbed.rs): its NAT router.
command -v nft >/dev/null || need+=(nftables)
# The HTTP origin of tftpd/tests/origin_cache.rs (its access log counts the origin's GETs).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)

if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # tftpd-hpa's package starts a daemon on port 69; keep it from doing so.
    $sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    # Debian 12's qemu-system-x86 (7.2) removes a newer qemu-utils (10.0 from backports on
    # these machines); nothing here needs qemu-img. Never ask about it, or about conffiles.
    $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${need[@]}" >/dev/null
    $sudo rm -f /usr/sbin/policy-rc.d
fi
