"""python -m builder: the same as the pgha-build command."""

from builder.cli import main

main()
