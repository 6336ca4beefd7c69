"""`python -m pgha_agent`: the same as the pgha-firstboot entry script."""

import sys

from pgha_agent.cli import main

sys.exit(main())
