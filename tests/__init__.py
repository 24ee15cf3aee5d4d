"""reactor's tests.

A regular package, not a namespace one: a regular package named ``tests`` that
some distribution installs into site-packages (sniffpy does, a dependency of
REDbot's) would otherwise win over this directory, and ``from tests.conftest
import ...`` would fail.
"""
