"""A function for worker processes to run in tests: whether a module is loaded in the worker."""

import sys


def loaded(name: str) -> bool:
    return name in sys.modules
