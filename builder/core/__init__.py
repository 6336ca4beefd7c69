"""Shared foundations every capability uses, and nothing above them: errors, logging, the one
process runner, where data and outputs live, atomic file writes, the per-stage cache, the
manifest, the build context and the warm-build check. Imports nothing from the other
subpackages except the model's types (context, manifest)."""
