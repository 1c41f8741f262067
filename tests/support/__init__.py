"""Helpers shared by the tests and the benchmarks (pictures, fixture corpora, crawl runners): never part of the
product, so the product's packages never import each other for test reasons."""
