"""python -m fastgan.cli: the `fastgan` command."""
import sys

from . import main

sys.exit(main())
