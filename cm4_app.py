"""The orchestrator from a checkout: ``python cm4_app.py`` = ``python -m cerebrum.orchestrator``."""
from cerebrum.orchestrator.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
