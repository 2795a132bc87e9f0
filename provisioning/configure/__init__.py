"""Configuring the installed OS: the plan, Linux through Ansible, Windows through WinRM,
the VPN, the gate."""
