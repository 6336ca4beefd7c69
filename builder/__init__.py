"""pgha-build: one cluster description in, everything to deploy a Patroni HA cluster on RHEL 8 out."""

__version__ = "0.1.0"
