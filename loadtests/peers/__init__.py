"""Peer servers that ``python3 -m loadtests.bench`` measures reactor against."""
