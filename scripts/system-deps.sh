#!/usr/bin/env bash
# Installs the Debian packages Masterline's lab and tests use, only when they are missing.
set -euo pipefail
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v zstd >/dev/null || need+=(zstd)
# runuser (the lab) and setpriv (a parent-death signal for every image stream's ssh).
{ command -v runuser && command -v setpriv; } >/dev/null || need+=(util-linux)
# The lab's laptops run Debian's python3 (Ansible modules, the flipped-byte fault).
[ -x /usr/bin/python3 ] || need+=(python3)
# Welcome sheets print names in any Latin (or other) script with DejaVu Sans.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
# The welcome sheets' tests read the PDF's text back (pdftotext).
command -v pdftotext >/dev/null || need+=(poppler-utils)
# The console's browser tests and screenshots (Playwright drives Debian's Chromium; its
# own browser download is never used).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The PE builder (`masterline pe build`) unpacks Debian packages it fetched with apt-get
# download (dpkg-deb, apt: part of any Debian); its tests read the initramfs back with cpio.
command -v cpio >/dev/null || need+=(cpio)
# Network boot and the VM laptops: QEMU (TCG when KVM cannot run guests), the iPXE ROMs
# (BIOS and UEFI) QEMU's NICs boot from and the iPXE builds a site's TFTP serves, OVMF
# (UEFI, Secure Boot with Microsoft's keys), dnsmasq (DHCP, proxy-DHCP, TFTP on the
# test's bench network), mtools (the USB stick image's FAT, written without mounting).
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/lib/ipxe/qemu/pxe-e1000.rom ] || need+=(ipxe-qemu)
[ -f /usr/lib/ipxe/undionly.kpxe ] || need+=(ipxe)
[ -f /usr/share/OVMF/OVMF_CODE_4M.secboot.fd ] || need+=(ovmf)
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v mcopy >/dev/null || need+=(mtools)
command -v ip >/dev/null || need+=(iproute2)
# bench.pe_download: the plain static file server the PE's download is measured against.
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
# The shaped relay bench (bench/relay_shaped.py): udpcast's udp-sender/udp-receiver, the
# multicast engine behind FOG and Clonezilla, as the anchor on the same bench (tc is
# iproute2's).
command -v udp-sender >/dev/null || need+=(udpcast)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "system-deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
