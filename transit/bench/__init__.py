"""Benchmarks that anyone can run: `transit bench ingest`, each figure next to its reference."""
