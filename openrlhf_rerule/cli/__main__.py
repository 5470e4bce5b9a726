"""`python -m openrlhf_rerule.cli ...` = `rerule ...` with this checkout's code (the plans' DRY_RUN data steps use it)."""

import sys

from openrlhf_rerule.cli import main

sys.exit(main())
