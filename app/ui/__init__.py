"""The Gradio app, one module per tab; nothing imports it."""
