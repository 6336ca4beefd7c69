"""Test-only code for the lab: fault scenarios with a writer counting acknowledged rows, the
scenario registry, the engine faults of the systemd engine and read-throughput measures.

It serves tests/ and bench/ only, so it lives beside the tests, not in the product (builder/):
the product's lab keeps what a user runs (up, status, faults, switchover, ...). The bench scripts
put tests/ on sys.path to import it.
"""
