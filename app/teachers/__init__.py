"""Networks, field families, checkpoint reading, the loader, the registry of bundled teachers, hookable layers and session teachers."""
