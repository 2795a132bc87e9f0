"""The lab's WinRM side: a WS-Management shell server that unmodified pywinrm talks to."""
