"""`python -m app.evaluate`: scoring the bundled teachers on their benchmarks (app.teachers.evaluate)."""
from app.teachers.evaluate import main

if __name__ == "__main__":
    main()
