import sys

from harness.checks.session import main

sys.exit(main())
