"""`python -m app.experiments`: the search's command line (app.study.cli)."""
from app.study.cli import main

if __name__ == "__main__":
    main()
