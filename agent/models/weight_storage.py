"""How an inference checkpoint stores its policy weights: ``float32`` (as trained),
``float16``, or ``int8`` (8-bit symmetric per output row with a float32 scale per row, for
the large matrices; the rest float16). Every format is cast back to float32 when the
checkpoint is read (:func:`decode_policy_state`), so the policy always computes in float32.

An ``int8`` checkpoint keeps its quantised tensors outside ``policy_state`` (under
``policy_state_int8``): a reader that knows nothing of them fails on the missing keys
instead of loading raw integers as weights."""
from __future__ import annotations

from typing import Any, Dict, Mapping, MutableMapping

import torch

#: the storage formats of :func:`encode_policy_state`
WEIGHT_STORAGE = ("float32", "float16", "int8")
#: int8 storage quantises floating tensors with >= 2 dims and at least this many elements
INT8_MIN_NUMEL = 4096

__all__ = ["WEIGHT_STORAGE", "INT8_MIN_NUMEL", "encode_policy_state", "decode_policy_state"]


def _quantise_rows(tensor: torch.Tensor) -> Dict[str, torch.Tensor]:
    """``{"q": int8 tensor, "scale": float32 (rows,)}`` with ``q * scale ≈ tensor`` row by row
    (rows = the first dim: a linear layer's outputs, a conv's output channels)."""
    rows = tensor.detach().float().reshape(tensor.shape[0], -1)
    scale = rows.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(rows / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return {"q": q.reshape(tensor.shape).contiguous(), "scale": scale.contiguous()}


def encode_policy_state(state: Mapping[str, torch.Tensor],
                        storage: str) -> Dict[str, Any]:
    """The checkpoint keys for ``state`` (a float32 state dict) in ``storage``:
    ``{"policy_state": {...}, "policy_state_int8": {...}}`` (the second only for int8).
    Non-floating tensors (counters, indices) are kept as they are."""
    if storage not in WEIGHT_STORAGE:
        raise ValueError(f"weight storage {storage!r}: choose from {', '.join(WEIGHT_STORAGE)}")
    plain: Dict[str, torch.Tensor] = {}
    quantised: Dict[str, Dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if not value.is_floating_point() or storage == "float32":
            plain[key] = value.clone()
        elif storage == "int8" and value.dim() >= 2 and value.numel() >= INT8_MIN_NUMEL:
            quantised[key] = _quantise_rows(value)
        else:
            plain[key] = value.to(torch.float16)
    out: Dict[str, Any] = {"policy_state": plain}
    if quantised:
        out["policy_state_int8"] = quantised
    return out


def decode_policy_state(checkpoint: MutableMapping[str, Any]) -> None:
    """Inverse of :func:`encode_policy_state`, in place: ``checkpoint["policy_state"]``
    becomes a float32 state dict (int8 rows times their scales, float16 cast up); a
    checkpoint of float32 weights is left as it is."""
    quantised = checkpoint.pop("policy_state_int8", None) or {}
    state = {}
    for key, value in checkpoint["policy_state"].items():
        state[key] = value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    for key, packed in quantised.items():
        q, scale = packed["q"], packed["scale"]
        state[key] = (q.float().reshape(q.shape[0], -1) * scale[:, None]).reshape(q.shape)
    checkpoint["policy_state"] = state
