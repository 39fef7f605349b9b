import sys

from otmarl.cli import main

sys.exit(main())
