"""Non-persistent buffers of a remote-code model are verified after loading, never trusted.

transformers 5 builds a model on the meta device and, for buffers that are not in the checkpoint
(`register_buffer(..., persistent=False)`: rotary `inv_freq`/`cos_cached`/`sin_cached`, sin-cos
position tables), materialises them with `torch.empty_like`; native models recompute them in
`_init_weights`, 2024 remote code does not. MiniCPM-V's `resampler.pos_embed` comes back zero and
InternLM2's rotary caches hold garbage or NaN, and the model answers from them without an error.

So after loading, the model's own code computes every such buffer again: the model class is built
from its config with parameters on the meta device (`_meta_parameters`), which runs each module's
`__init__` (where these buffers are computed) while allocating no weights; only buffers take
memory, so this never holds a second copy of the model. Each loaded buffer is compared with its
fresh value; a wrong one is overwritten in place (the module keeps its buffer object and name); a
buffer that cannot be recomputed (no fresh counterpart, another shape, or non-finite even as the
code computes it) stops the load with a one-line error naming it, so no answer comes from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from classbench.errors import UserError

_TOLERANCE = {torch.float32: (1.3e-6, 1e-5), torch.float64: (1e-7, 1e-7), torch.float16: (1e-3, 1e-5),
              torch.bfloat16: (1.6e-2, 1e-5)}
"""(rtol, atol) per dtype: a buffer computed on another device may differ in the last bits."""


def non_persistent(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every non-persistent buffer that holds a tensor, by its full name, in registration order."""
    found = {}
    for prefix, module in model.named_modules():
        for name, tensor in module._buffers.items():
            if name in module._non_persistent_buffers_set and tensor is not None:
                found[f"{prefix}.{name}" if prefix else name] = tensor
    return found


@contextmanager
def _meta_parameters() -> Iterator[None]:
    """Inside: every parameter a module registers lives on the meta device (no memory); buffers and
    everything else are computed for real."""
    register = torch.nn.Module.register_parameter

    def on_meta(module: torch.nn.Module, name: str, param: torch.nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            kwargs = {"requires_grad": param.requires_grad}
            module._parameters[name] = type(param)(module._parameters[name].to("meta"), **kwargs)

    torch.nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def fresh_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The non-persistent buffers the model's own code computes from its config, on the CPU, built
    with the model's parameter dtype as the default dtype (as `from_pretrained` builds it)."""
    dtype = next(model.parameters()).dtype
    previous = torch.get_default_dtype()
    try:
        if dtype.is_floating_point:
            torch.set_default_dtype(dtype)
        with _meta_parameters(), torch.device("cpu"):
            skeleton = type(model)(model.config)
    finally:
        torch.set_default_dtype(previous)
    return non_persistent(skeleton)


def verify(model: torch.nn.Module, name: str) -> list[str]:
    """Check every non-persistent buffer against a fresh computation, recompute the wrong ones in
    place, and return their names; raise `UserError` for one that cannot be made right."""
    family = getattr(model.config, "model_type", "?")
    loaded = non_persistent(model)
    if not loaded:
        return []
    try:
        fresh = fresh_buffers(model)
    except Exception as error:
        first = next(iter(loaded))
        raise UserError(f"{name} ({family}): cannot verify buffer {first}: rebuilding its modules from the config "
                        f"failed ({type(error).__name__}: {error}); classbench will not run a model whose "
                        "buffers it cannot check") from None
    recomputed = []
    for key, tensor in loaded.items():
        expected = fresh.get(key)
        problem = _problem(tensor, expected)
        if problem is None:
            continue
        if problem != "differs":
            raise UserError(f"{name} ({family}): buffer {key} {problem}, so it cannot be recomputed; classbench "
                            "refuses to run this model (check the checkpoint's config and code)")
        _overwrite(model, key, tensor, expected)
        recomputed.append(key)
    return recomputed


def _overwrite(model: torch.nn.Module, key: str, tensor: torch.Tensor, expected: torch.Tensor) -> None:
    """Copy the fresh value into the loaded buffer; a buffer still on the meta device has no storage to
    copy into, so the module gets a tensor of the same name, dtype and device instead."""
    value = expected.to(dtype=tensor.dtype)
    if tensor.device.type == "meta":
        owner, _, name = key.rpartition(".")
        module = model.get_submodule(owner)
        device = next((p.device for p in module.parameters() if p.device.type != "meta"), torch.device("cpu"))
        module._buffers[name] = value.to(device)
        return
    with torch.no_grad():
        tensor.copy_(value.to(tensor.device))


def _problem(tensor: torch.Tensor, expected: torch.Tensor | None) -> str | None:
    """None when the loaded buffer equals what the code computes; 'differs' when it can be recomputed;
    otherwise why it cannot."""
    if expected is None:
        return "is not created by the model's code from its config"
    if expected.shape != tensor.shape:
        return f"has shape {tuple(tensor.shape)} but the model's code computes {tuple(expected.shape)}"
    if expected.is_floating_point() and not torch.isfinite(expected).all():
        return "is not finite even as the model's own code computes it from the config"
    if tensor.device.type == "meta":
        return "differs"
    got = tensor.detach().to("cpu")
    if not expected.is_floating_point():
        return None if torch.equal(got, expected.to(got.dtype)) else "differs"
    if not torch.isfinite(got).all():
        return "differs"
    rtol, atol = _TOLERANCE.get(tensor.dtype, (1e-5, 1e-8))
    close = torch.allclose(got.float(), expected.to(tensor.dtype).float(), rtol=rtol, atol=atol)
    return None if close else "differs"
