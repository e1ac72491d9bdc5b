import sys

from fastleak.cli import main

sys.exit(main())
