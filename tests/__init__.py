"""monohead's test suite: a package, so that test modules import their helpers as ``tests._helpers``
and ``tests._reference`` (pytest's recommended layout; fixtures live in ``conftest.py``)."""
