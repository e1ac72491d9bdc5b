"""Sweep files: a grid of experiment settings, expanded into jobs with stable keys.

A sweep file is TOML with these top-level keys (all optional except that it must yield a job)::

    output  = "runs/defenses.jsonl"   # the results file (relative to the current directory)
    retries = 1                       # extra attempts for a job that raises (default 1)

    [fixed]                           # ExperimentSpec fields shared by every job
    model = "lenet"
    iterations = 20

    [grid]                            # ExperimentSpec fields, each a list: cartesian product
    batch = [1, 2]
    seed = [0, 1]
    defense_params.sigma = [0.001, 0.1]   # one key of a dict field (model_options,
                                          # defense_params, attack_options)

    [[cases]]                         # optional: settings that change together (e.g. a
    [[cases]]                         # defense and its parameters); an empty case keeps the
    defense = "gaussian"              # fixed settings, e.g. a no-defense baseline.
    defense_params = {sigma = 0.01}   # The jobs are grid x cases.

Each job is one ``ExperimentSpec``; every setting is validated with ``ExperimentSpec.from_dict``.
The same setting may not be given in two places ([fixed], [grid], a case). A job's key is the
sha256 of the canonical JSON of its complete ``ExperimentSpec.as_dict()`` (defaults included),
so the key changes whenever anything that defines the experiment changes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from fastleak._checks import nonnegative_int
from fastleak._toml import read_toml
from fastleak.errors import InvalidValueError
from fastleak.experiments import ExperimentSpec
from fastleak.experiments.spec import LATER_FIELDS

log = logging.getLogger(__name__)

TOP_LEVEL = ("output", "retries", "fixed", "grid", "cases")
# ExperimentSpec fields whose value is a dict; a sweep may set or vary their keys one by one.
DICT_FIELDS = tuple(f.name for f in dataclasses.fields(ExperimentSpec) if isinstance(
    getattr(ExperimentSpec(), f.name), dict))

SettingPath = tuple[str, ...]  # ("batch",) or ("defense_params", "sigma")


def job_key(spec: ExperimentSpec) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of the spec's complete settings; fields
    added later (``LATER_FIELDS``) are left out at their default, so older results files keep their keys."""
    settings = {k: v for k, v in spec.as_dict().items() if LATER_FIELDS.get(k, object()) != v}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Job:
    """One experiment of a sweep. ``varied``: the grid and case settings that produced it."""

    key: str
    spec: ExperimentSpec
    varied: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return self.spec.as_dict()


def _normalise(name: str) -> str:
    return name.replace("-", "_")


def _leaves(table: dict[str, Any], where: str) -> dict[SettingPath, Any]:
    """Setting paths of a [fixed] table or a case: dict fields contribute one path per key."""
    if not isinstance(table, dict):
        raise InvalidValueError(f"{where} must be a table of experiment settings, got {table!r}")
    out: dict[SettingPath, Any] = {}
    for name, value in table.items():
        name = _normalise(name)
        if name in DICT_FIELDS and isinstance(value, dict):
            out.update({(name, _normalise(k)): v for k, v in value.items()})
        else:
            out[(name,)] = value
    return out


def _axes(grid: dict[str, Any], where: str) -> dict[SettingPath, tuple[Any, ...]]:
    if not isinstance(grid, dict):
        raise InvalidValueError(f"{where} must be a table of lists, got {grid!r}")
    axes: dict[SettingPath, tuple[Any, ...]] = {}
    for name, values in grid.items():
        name = _normalise(name)
        if isinstance(values, dict):
            if name not in DICT_FIELDS:
                raise InvalidValueError(f"{where}.{name} must be a list of values; only {', '.join(DICT_FIELDS)} "
                                        f"take a table of lists (e.g. {where}.defense_params.sigma = [0.01, 0.1])")
            for key, sub in values.items():
                axes[(name, _normalise(key))] = _values(sub, f"{where}.{name}.{key}")
        else:
            axes[(name,)] = _values(values, f"{where}.{name}")
    return axes


def _values(values: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(values, list) or not values:
        raise InvalidValueError(f"{where} must be a non-empty list of values, got {values!r}; "
                                "put settings that do not vary in [fixed]")
    return tuple(values)


def _overlap(a: SettingPath, b: SettingPath) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _check_disjoint(source: str, first: set[SettingPath], first_name: str, second: set[SettingPath],
                    second_name: str) -> None:
    clashes = sorted({".".join(max(a, b, key=len)) for a in first for b in second if _overlap(a, b)})
    if clashes:
        raise InvalidValueError(f"{source}: {', '.join(clashes)} set in both {first_name} and {second_name}; "
                                "give each setting in one place only")


def _settings(assignments: dict[SettingPath, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for path, value in assignments.items():
        if len(path) == 1:
            settings[path[0]] = dict(value) if isinstance(value, dict) else value
        else:
            settings.setdefault(path[0], {})[path[1]] = value
    return settings


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; see the module docstring for the schema. ``jobs()`` expands it."""

    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, Any] = field(default_factory=dict)
    cases: tuple[dict[str, Any], ...] = ({},)
    output: str | None = None
    retries: int = 1
    source: str = "sweep"

    def __post_init__(self) -> None:
        nonnegative_int(self.retries, f"{self.source}: retries")
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise InvalidValueError(f"{self.source}: output must be a non-empty path string, got {self.output!r}")
        if not isinstance(self.cases, tuple) or not self.cases:
            raise InvalidValueError(f"{self.source}: cases must be a non-empty sequence of tables")
        fixed = set(_leaves(self.fixed, f"{self.source} [fixed]"))
        axes = set(_axes(self.grid, f"{self.source} [grid]"))
        _check_disjoint(self.source, fixed, "[fixed]", axes, "[grid]")
        for i, case in enumerate(self.cases):
            paths = set(_leaves(case, f"{self.source} [[cases]] #{i + 1}"))
            _check_disjoint(self.source, fixed, "[fixed]", paths, f"[[cases]] #{i + 1}")
            _check_disjoint(self.source, axes, "[grid]", paths, f"[[cases]] #{i + 1}")

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "sweep") -> "SweepSpec":
        if not isinstance(values, dict):
            raise InvalidValueError(f"{source}: a sweep must be a table, got {type(values).__name__}")
        unknown = sorted(set(values) - set(TOP_LEVEL))
        if unknown:
            raise InvalidValueError(f"{source}: unknown top-level key(s) {unknown}; valid: {', '.join(TOP_LEVEL)} "
                                    "(experiment settings go in [fixed] or [grid])")
        cases = values.get("cases", [{}])
        if not isinstance(cases, list) or not cases:
            raise InvalidValueError(f"{source}: cases must be a non-empty array of tables ([[cases]]), got {cases!r}")
        return cls(fixed=values.get("fixed", {}), grid=values.get("grid", {}), cases=tuple(cases),
                   output=values.get("output"), retries=values.get("retries", 1), source=source)

    def jobs(self) -> tuple[Job, ...]:
        """Every job, grid order (first key outermost) then case order; duplicates are dropped."""
        fixed = _leaves(self.fixed, "[fixed]")
        axes = _axes(self.grid, "[grid]")
        cases = [_leaves(case, "case") for case in self.cases]
        jobs: dict[str, Job] = {}
        for point in itertools.product(*axes.values()):
            chosen = dict(zip(axes, point))
            for case_leaves in cases:
                varied = {".".join(p): v for p, v in {**chosen, **case_leaves}.items()}
                try:
                    spec = ExperimentSpec.from_dict(_settings({**fixed, **chosen, **case_leaves}))
                except (ValueError, TypeError) as exc:
                    where = ", ".join(f"{k}={v!r}" for k, v in varied.items()) or "the fixed settings"
                    raise InvalidValueError(f"{self.source}: job {where}: {exc}") from None
                key = job_key(spec)
                if key in jobs:
                    log.warning("%s: job %s repeats an earlier job; it runs once", self.source, varied)
                    continue
                jobs[key] = Job(key=key, spec=spec, varied=varied)
        return tuple(jobs.values())


def load(path: str | os.PathLike) -> SweepSpec:
    """Read and validate a sweep file (every job is checked with ``ExperimentSpec.from_dict``)."""
    values = read_toml(path, "sweep file")
    sweep = SweepSpec.from_dict(values, source=os.fspath(path))
    sweep.jobs()
    return sweep
