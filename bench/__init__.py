"""`make bench`: how close the check-in path comes to this machine's limits (see bench/README.md)."""
