"""`python -m llama_arena`: the `arena` command without its installed script."""
import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
