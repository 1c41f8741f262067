"""The test suite (pytest), a package so that its helpers, tests.support, are importable by benchmarks too."""
