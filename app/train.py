"""`python -m app.train`: training a bundled teacher (app.teachers.train)."""
from app.teachers.train import main

if __name__ == "__main__":
    main()
