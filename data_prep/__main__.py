"""`python -m data_prep {download,shard,verify,synth} ...`, the same as `cxr-sr prep ...`."""
import sys

from data_prep.cli import main

if __name__ == "__main__":
    sys.exit(main())
