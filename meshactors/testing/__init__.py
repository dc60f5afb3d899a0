"""Fakes and checkers shipped with the package for tests: a checking xDS client and its invariant checker."""
