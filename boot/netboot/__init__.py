"""Network boot served by Masterline: the bench's iPXE script, the PE's kernel and
initramfs over HTTP, iPXE for UEFI HTTP boot, and the dnsmasq configuration (proxy-DHCP
or DHCP, TFTP) that gets a laptop's firmware to them."""
