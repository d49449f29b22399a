"""validate / recipes / layout / plan for notebooks and scripts: the documents
`dwdp <command> --format json` prints, as dicts, from the same library code.

A scenario is a path to a scenario YAML file, a dict of the same content (relative profile
paths in it resolve against the working directory), or a complete dwdp.Config.
"""

import ctypes
import json
import os
from collections.abc import Mapping

from dwdp import _lib
from dwdp.config import Config


def _scenario(scenario):
    """The dwdp_scenario struct for `scenario` (its buffers live as long as the struct)."""
    if isinstance(scenario, Config):
        scenario = scenario.to_scenario()
    if isinstance(scenario, (str, bytes, os.PathLike)):
        return _lib.Scenario(os.fsencode(scenario), None, None)
    if isinstance(scenario, Mapping):
        try:
            text = json.dumps(scenario, allow_nan=False)
        except (TypeError, ValueError) as error:
            _lib.fail("the scenario dict cannot be written as JSON: %s" % error)
        return _lib.Scenario(None, text.encode("utf-8"), b"<dict>")
    _lib.fail("a scenario is a path, a dict or a dwdp.Config; got %s" % type(scenario).__name__)


def _call(function, *args, result_on_error=False):
    out = ctypes.c_void_p()
    code = function(*args, ctypes.byref(out))
    text = _lib.take_text(out)
    document = json.loads(text) if text is not None else None
    _lib.check(code, document if result_on_error else None)
    return document


def _optional_int(name, value, none):
    if value is None:
        return none
    if isinstance(value, bool) or not isinstance(value, int):
        _lib.fail("%s must be an integer or None; got %r" % (name, value))
    return value


def validate(scenario, world_size=None):
    """`dwdp validate --format json [--world-size W]`: {"valid": True, ...} or
    {"valid": False, "error": {"check", "message", "recipes"}}. A scenario that does not load
    raises dwdp.Error."""
    world = _optional_int("world_size", world_size, -1)
    struct = _scenario(scenario)
    return _call(_lib.library().dwdp_validate, ctypes.byref(struct), world)


def recipes(dwdp_size, num_experts):
    """`dwdp recipes --dwdp-size D --num-experts N --format json`."""
    d = _optional_int("dwdp_size", dwdp_size, None)
    n = _optional_int("num_experts", num_experts, None)
    return _call(_lib.library().dwdp_recipes, d, n)


def layout(scenario, rank=None):
    """`dwdp layout --format json [--rank R]`. An invalid partition raises dwdp.Error whose
    .result is validate()'s document for the scenario."""
    r = _optional_int("rank", rank, -1)
    struct = _scenario(scenario)
    return _call(_lib.library().dwdp_layout, ctypes.byref(struct), r, result_on_error=True)


def plan(scenario, hardware=None, dwdp_sizes=None, max_dwdp_size=None, num_buffers=None,
         tokens_per_rank=None, sequence_lengths=None, contention=None, tokens_cv=None,
         all_recipes=False, recommend=False, objective="throughput"):
    """`dwdp plan --format json` with the CLI's options (None: the CLI's default)."""
    options = {
        "hardware": hardware,
        "dwdp_sizes": None if dwdp_sizes is None else list(dwdp_sizes),
        "max_dwdp_size": max_dwdp_size,
        "num_buffers": None if num_buffers is None else list(num_buffers),
        "tokens_per_rank": None if tokens_per_rank is None else list(tokens_per_rank),
        "sequence_lengths": None if sequence_lengths is None else list(sequence_lengths),
        "contention": contention,
        "tokens_cv": tokens_cv,
        "all_recipes": all_recipes,
        "recommend": recommend,
        "objective": objective,
    }
    try:
        text = json.dumps(options)
    except (TypeError, ValueError) as error:
        _lib.fail("the plan options cannot be written as JSON: %s" % error)
    struct = _scenario(scenario)
    return _call(_lib.library().dwdp_plan, ctypes.byref(struct), text.encode("utf-8"))
