"""Every node checks its own inputs against its own schema before it runs.

ComfyUI checks widget values when a prompt is queued, but not all of it: NaN passes every min/max
comparison, and values that reach a node through the API or from another node skip the widget
checks entirely. A NaN ``clip_lambda`` would "succeed" and rank by NaN; an unknown ``precision``
would raise a bare KeyError. So each node's inputs are checked here, from the very schema the UI
shows (ranges, combo options), with the input's name and the fix in the message.
"""

from __future__ import annotations

import functools
import inspect
import math

from comfy_api.latest import io

from ..blended.errors import InputError
from . import comfy_glue as glue


def _number_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _range_text(spec) -> str:
    low, high = getattr(spec, "min", None), getattr(spec, "max", None)
    if low is not None and high is not None:
        return f"from {_number_text(low)} to {_number_text(high)}"
    if low is not None:
        return f"of at least {_number_text(low)}"
    if high is not None:
        return f"of at most {_number_text(high)}"
    return ""


def check_value(spec, value) -> None:
    """Raise InputError when ``value`` does not fit input ``spec`` (an io.*.Input of a schema)."""
    name = spec.id
    if isinstance(spec, io.Float.Input | io.Int.Input):
        whole = isinstance(spec, io.Int.Input)
        kind = "a whole number" if whole else "a number"
        ok_type = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            raise InputError(f"{name} is {value!r}: give {kind} {_range_text(spec)}.".replace("  ", " "))
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        if (low is not None and value < low) or (high is not None and value > high):
            raise InputError(f"{name} is {_number_text(value)}: give {kind} {_range_text(spec)}.")
    elif isinstance(spec, io.Combo.Input):
        options = list(spec.options or [])
        if value not in options:
            shown = ", ".join(repr(o) for o in options[:12]) + (" ..." if len(options) > 12 else "")
            raise InputError(f"{name} {value!r} is not one of its choices: {shown}.")
    elif isinstance(spec, io.String.Input):
        if not isinstance(value, str):
            raise InputError(f"{name} must be text, not {type(value).__name__}.")
    elif isinstance(spec, io.Boolean.Input):
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, not {value!r}.")


def check_inputs(node_cls, inputs: dict) -> None:
    """Check every widget input of ``node_cls`` present in ``inputs``; file pickers listed in the node's
    ``FILE_INPUTS`` are left to the loader, whose message says where a missing file belongs."""
    skip = set(getattr(node_cls, "FILE_INPUTS", ()))
    for spec in node_cls.define_schema().inputs:
        if spec.id in inputs and spec.id not in skip and inputs[spec.id] is not None:
            check_value(spec, inputs[spec.id])


class BlendedNode(io.ComfyNode):
    """Base class of the pack's nodes: ``execute`` runs only on inputs that fit the schema, and a
    library error it raises reaches the user in the library's words (``glue.user_errors``), so no
    node repeats either."""

    FILE_INPUTS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("execute")
        if run is None or getattr(run.__func__, "checks_inputs", False):  # ComfyUI clones classes
            return

        signature = inspect.signature(run.__func__)

        @functools.wraps(run.__func__)
        def execute(node_cls, *args, **kwargs):
            with glue.user_errors():
                check_inputs(node_cls, signature.bind_partial(node_cls, *args, **kwargs).arguments)
                return run.__func__(node_cls, *args, **kwargs)

        execute.checks_inputs = True
        cls.execute = classmethod(execute)
