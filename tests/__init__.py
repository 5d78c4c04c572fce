"""The test suite: a package, so that ``from tests.helpers import ...`` finds tests/helpers.py."""
