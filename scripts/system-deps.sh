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
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
echo "system-deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
