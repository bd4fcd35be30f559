"""Benchmarks and conformance runs (`make bench`, `make conformance`)."""
