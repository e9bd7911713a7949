"""Tests run offline: no Hub traffic unless a test points HF_ENDPOINT at its own loopback server."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import torch  # noqa: E402

torch.set_num_threads(2)
