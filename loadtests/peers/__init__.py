"""Peer servers that ``loadtests/bench.py`` measures reactor against."""
