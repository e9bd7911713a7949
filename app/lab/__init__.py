"""The app's service on numpy images: scenes, looks, Distill duels, verdicts, presets and export; no Gradio here."""
