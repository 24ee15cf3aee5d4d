"""Locust scenarios against reactor; ``loadtests/run.py`` runs them.

Each scenario module is a locustfile (``locust -f loadtests/locustfiles/NAME.py``
from the repository root): ``hello``, ``mixed``, ``idle`` and ``churn``.
:mod:`loadtests.locustfiles.shapes` holds the load shapes, which a scenario
uses when ``$LOADTEST_SHAPE`` names one; :mod:`loadtests.locustfiles.common`
the status check and the final CSV reports. See ``docs/loadtesting.md``.
"""
