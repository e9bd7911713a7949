"""Hugging Face Space entry point: build the ASVP Lab UI and launch it."""
from app.ui.demo import CSS, build_demo


demo = build_demo()

if __name__ == "__main__":
    demo.launch(css=CSS)
