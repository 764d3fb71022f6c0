"""Where a node's networks run: the ``device`` parameter that policy_node and mppi_node share."""
from __future__ import annotations

import re
from typing import Optional


def check_device(value: str) -> Optional[str]:
    """ParamSpec validator: auto, cpu, cuda or cuda:N, and only a GPU torch can see."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        return f"device must be auto, cpu, cuda or cuda:N; got '{value}'"
    if value.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            return f"device {value}: torch sees no GPU here (use auto or cpu)"
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            return f"device {value}: only {torch.cuda.device_count()} GPU(s)"
    return None


def resolve_device(value: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else as it is."""
    if value == "auto":
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"
    return value
