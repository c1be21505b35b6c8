import sys

from btnk_env.cli import main

sys.exit(main())
