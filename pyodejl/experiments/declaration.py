"""What an experiment is: a declaration, with no loop and no file I/O.

An :class:`Experiment` names its rows (variants), its settings (full and
``--quick``), a ``setup`` that gives each (variant, seed) its
:class:`~pyodejl.experiments.trainer.Problem`, :class:`~pyodejl.experiments.trainer.Training`
and measurements, the table it produces (:class:`Column`) and the targets it is
judged against (:class:`Target`). :func:`pyodejl.experiments.engine.run_experiment`
runs it into run folders; :mod:`pyodejl.experiments.report` turns those into
tables and verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyodejl.experiments.trainer import Measurement, Problem, Training

__all__ = ["Column", "Experiment", "RankAgreement", "RunSpec", "Target"]


@dataclass(frozen=True)
class RunSpec:
    """One (variant, seed) run: what to train, how, and what to measure.

    Attributes:
        problem: the :class:`~pyodejl.experiments.trainer.Problem`.
        training: the :class:`~pyodejl.experiments.trainer.Training`.
        measurements: cadence and final measurements.
    """

    problem: Problem
    training: Training
    measurements: tuple[Measurement, ...] = ()


@dataclass(frozen=True)
class Column:
    """A table column: the mean ± std over seeds of one result key.

    Attributes:
        key: a key of the runs' results (a final measurement, or a timing:
            ``train_wall_s``, ``train_cpu_s``, ``compile_s``).
        label: the column's heading.
        scale: multiply by this before printing (e.g. 1e3 for ms).
        digits: significant digits of the mean.
    """

    key: str
    label: str
    scale: float = 1.0
    digits: int = 4


_COMPARISONS = ("ratio", "speedup", "difference", "value")


@dataclass(frozen=True)
class Target:
    """A claim the experiment is judged against, from same-run means over seeds.

    ``compare`` says what is computed from the seed means m(variant) and
    m(baseline): ``"ratio"`` m(variant)/m(baseline), ``"speedup"``
    m(baseline)/m(variant), ``"difference"`` m(variant) − m(baseline), ``"value"``
    m(variant) alone (the baseline is not read). The target
    is met when that value ``op`` ``threshold`` holds (``op``: ``"<="`` or ``">="``).

    Attributes:
        key: the result key compared.
        variant: the row judged.
        baseline: the row it is compared with.
        compare: ``"ratio"``, ``"speedup"``, ``"difference"`` or ``"value"``.
        op: ``"<="`` or ``">="``.
        threshold: the bound.
        what: the claim in words (e.g. "ERNODE NFE ≥ 30 % fewer").
        seed_figure: the seed's own number, for the table beside ours.
    """

    key: str
    variant: str
    baseline: str
    compare: str
    op: str
    threshold: float
    what: str
    seed_figure: str = ""

    def __post_init__(self):
        if self.compare not in _COMPARISONS:
            raise ValueError(f"compare must be one of {list(_COMPARISONS)}, got {self.compare!r}")
        _check_op(self.op)

    @property
    def rows(self) -> tuple[str, ...]:
        return (self.variant, self.baseline)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


def _check_op(op):
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>=', got {op!r}")


@dataclass(frozen=True)
class RankAgreement:
    """A claim that two result keys order a set of rows alike: Spearman's rank correlation
    between the seed means of ``key`` and of ``sign`` × ``other`` over ``variants``, met when
    it ``op`` ``threshold`` (e.g. the Laplace evidence against the held-out log-likelihood
    over a grid of models: model selection by marginal likelihood).

    Attributes:
        key: the first result key (e.g. ``"log_evidence"``).
        other: the second (e.g. ``"heldout_nll"``).
        variants: the rows ranked (at least 3).
        op: ``"<="`` or ``">="``.
        threshold: the bound on the correlation, in [−1, 1].
        what: the claim in words.
        seed_figure: the source's own figure, if any.
        sign: multiplies ``other`` before ranking (−1: a lower ``other`` is better).
    """

    key: str
    other: str
    variants: tuple[str, ...]
    op: str
    threshold: float
    what: str
    seed_figure: str = ""
    sign: float = 1.0
    compare = "spearman"

    def __post_init__(self):
        _check_op(self.op)
        if len(self.variants) < 3:
            raise ValueError(f"a rank agreement needs at least 3 rows, got {list(self.variants)}")
        if self.sign not in (1.0, -1.0):
            raise ValueError(f"sign must be 1 or -1, got {self.sign!r}")

    @property
    def rows(self) -> tuple[str, ...]:
        return tuple(self.variants)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, self.other)


@dataclass(frozen=True)
class Experiment:
    """A seed experiment, declared.

    Attributes:
        name: the command-line name (``pyodejl run NAME``).
        title: one line: what it measures.
        source: the seed and table or figure it reproduces.
        variants: the rows, in table order.
        settings: ``quick -> dict``: every setting that changes a number (JSON
            values), recorded in each run's configuration.
        setup: ``(variant, seed, settings) -> RunSpec``.
        columns: the table.
        targets: the claims judged (:class:`Target`, :class:`RankAgreement`).
        seeds: default seeds of a full run.
        quick_variants: the rows a ``--quick`` run trains (default: all).
        quick_seeds: the seeds of a ``--quick`` run.
        notes: what a reader of the table must know (substituted data, ...).
        summarise: ``measurement records -> dict``: numbers derived from a run's
            records at report time (e.g. how rough a quantity's path was), added to
            its result's; None: none.
    """

    name: str
    title: str
    source: str
    variants: tuple[str, ...]
    settings: Callable[[bool], dict]
    setup: Callable[[str, int, dict], RunSpec]
    columns: tuple[Column, ...]
    targets: tuple[Target | RankAgreement, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    quick_variants: tuple[str, ...] | None = None
    quick_seeds: tuple[int, ...] = (0,)
    notes: str = ""
    summarise: Callable[[list], dict] | None = None

    def __post_init__(self):
        unknown = {row for t in self.targets for row in t.rows}
        unknown |= set(self.quick_variants or ())
        unknown -= set(self.variants)
        if unknown:
            raise ValueError(f"experiment {self.name!r}: targets or quick_variants name unknown rows "
                             f"{sorted(unknown)}; its rows are {list(self.variants)}")

    def rows(self, quick: bool) -> tuple[str, ...]:
        return tuple(self.quick_variants or self.variants) if quick else self.variants
