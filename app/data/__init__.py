"""Images, degradations, the task registry, benchmark pairs, clean image sources and metrics: pure data, the lowest layer."""
