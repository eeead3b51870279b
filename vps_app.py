"""The backend from a checkout: ``python vps_app.py`` = ``python -m cerebrum.backend``."""
from cerebrum.backend.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
