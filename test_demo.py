"""The familiar entry point: ``python test_demo.py [esr run options]`` is ``esr run``."""
import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
