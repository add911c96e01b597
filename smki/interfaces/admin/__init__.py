"""The admin listener: plain HTTP, loopback by default, off unless configured (issue 12)."""
