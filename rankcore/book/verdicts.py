"""The scorecard's vocabulary: verdict words, row kinds, the book's operational definitions and
the registry of verdict rules.

A chapter's verdict rule is a function decorated with :func:`rule`. The decorator records
which figure or table it judges, whether its rows count as a reproduction (``kind``), what
evidence it declares it needs, and made-up inputs that give each outcome. The test
``tests/test_scorecard.py::test_every_counted_rule_can_say_each_outcome`` runs every example
of every registered rule: a counted rule that could not come out "differs" fails it.

Rules return a verdict word (a ``str``) or a tuple whose first item is one; "not meaningful
here" is returned as a :class:`Verdict`, a ``str`` that also carries its reason, so it
compares, prints and serialises as the bare word.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

#: Verdicts, from strongest to weakest agreement. "not meaningful here": the evidence is
#: below what the rule declares it needs (images, rank-grid resolution, accuracy above
#: chance, seeds), with the reason; "needs GPU or data": the comparison could not run.
VERDICTS = ("reproduced", "same trend", "differs", "not meaningful here", "needs GPU or data")
NOT_MEANINGFUL = "not meaningful here"
#: The outcomes every counted rule must be able to give (the rules x outcomes test).
OUTCOMES = ("reproduced", "same trend", "differs")

#: Row kinds. Only ``paper claim`` rows count as reproductions; the others are shown and
#: counted apart: an ``illustration`` regenerates a figure or checks the library against
#: itself (it cannot fail for a reason the paper is about), a ``zoo check`` compares the
#: model zoo with its sources' published accuracies (the paper's Table 1 states none), and
#: ``beyond the paper`` measures what the paper argues but never tests (chapter 08).
KINDS = ("paper claim", "illustration", "zoo check", "beyond the paper")
COUNTED = "paper claim"

#: The book's operational definitions: the paper states these ideas in words; the rules
#: judge them by these. Chapters print the ones they use; the scorecard prints all.
DEFINITIONS = {
    "saturation": "the smallest evaluated rank whose top-1 reaches 95% of the top-1 at the "
                  "highest evaluated rank (rankcore.spectrum.saturation_rank)",
    "low rank": "ranks 1-10 of 32 on CIFAR-10 and ranks 1-100 of 224 on ImageNet (Figures "
                "7c, 7d)",
    "rises earlier": "a robust model saturates at a lower evaluated rank than the natural "
                     "model on the same images; 'much more quickly' (reproduced): at half the "
                     "natural model's saturation rank or below",
    "imperceptible": "the high-rank residual keeps under 10% of the image's energy "
                     "(sum of squared pixels; Figure 9)",
    "success": "a targeted attack succeeds on an image when the model predicts the target "
               "class on the adversarial image",
    "recovery": "an image is recovered when the model's prediction on the adversarial image "
                "equals the true label (Table 2)",
    "a few times the paper's": "an attack's failure rate (100 - success) or recovery rate "
                               "at most 5 times the paper's (RATE_FACTOR)",
    "above chance": "full-rank top-1 whose 95% Wilson lower bound exceeds chance (10% on "
                    "CIFAR-10, 0.1% on ImageNet) by 10 points",
    "seed scatter": "the standard deviation of final test top-1 over 3 seeds of the same "
                    "run (bench/seed_scatter.py, rankcore/book/seed_scatter/<profile>.json)",
}


class Verdict(str):
    """A verdict word that carries its reason (``Verdict("not meaningful here", "6 images;
    the rule needs 20")``). It equals, prints and serialises as the word."""

    reason: str

    def __new__(cls, word: str, reason: str = "") -> "Verdict":
        if word not in VERDICTS:
            raise ValueError(f"verdict={word!r}; expected one of {VERDICTS}")
        if word == NOT_MEANINGFUL and not reason:
            raise ValueError(f"a {NOT_MEANINGFUL!r} verdict needs its reason")
        obj = super().__new__(cls, word)
        obj.reason = reason
        return obj


def not_meaningful(reason: str) -> Verdict:
    """``Verdict("not meaningful here", reason)``."""
    return Verdict(NOT_MEANINGFUL, reason)


def word(result: Any) -> str:
    """The verdict word of a rule's result (a word, or a tuple whose first item is one)."""
    v = result[0] if isinstance(result, tuple) else result
    if v not in VERDICTS:
        raise ValueError(f"not a verdict: {v!r}; expected one of {VERDICTS}")
    return str(v)


def reason(result: Any) -> str:
    """The reason a rule's result carries ('' when none)."""
    v = result[0] if isinstance(result, tuple) else result
    return getattr(v, "reason", "")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One registered verdict rule.

    Attributes:
        name (str): ``module.function``.
        refs (tuple of str): the figures and tables it judges, e.g. ``("fig7c", "fig7d")``.
        kind (str): one of :data:`KINDS`.
        needs (str): the evidence it declares it needs ('' when it always judges).
        fn (callable): the rule.
        examples (callable): ``() -> {outcome: [kwargs, ...]}``, made-up inputs per outcome.
        read (callable): the rule's result -> its verdict (default :func:`word`).
    """
    name: str
    refs: tuple[str, ...]
    kind: str
    needs: str
    fn: Callable
    examples: Callable[[], dict[str, list[dict]]]
    read: Callable[[Any], str] = word

    def outcome(self, **kwargs) -> str:
        """The verdict word of the rule on ``kwargs``."""
        return word(self.read(self.fn(**kwargs)))


#: Every rule of the chapter modules, by name (filled as the modules are imported).
REGISTRY: dict[str, Rule] = {}

#: The chapter modules that hold verdict rules.
CHAPTER_MODULES = ("ch00_setup", "ch01_rank_images", "ch02_rank_spectrum", "ch03_rig",
                   "ch04_high_rank_training", "ch05_low_rank_training",
                   "ch06_low_rank_robustness", "ch07_appendix", "ch08_rank_as_a_metric")


def rule(*refs: str, kind: str = COUNTED, needs: str = "",
         examples: Callable[[], dict[str, list[dict]]] | dict | None = None,
         read: Callable[[Any], Any] | None = None):
    """Register a verdict rule (a decorator).

    Args:
        *refs (str): the figures and tables the rule judges.
        kind (str, optional): one of :data:`KINDS`. Default: ``"paper claim"`` (counted).
        needs (str, optional): the evidence the rule declares it needs, said in words.
        examples (dict or callable, optional): outcome -> list of keyword-argument dicts
            that give it (a callable returning that, to build tables lazily). A counted
            rule must give one for each of :data:`OUTCOMES`.
        read (callable, optional): the rule's result -> the verdict the examples name, for
            a rule that returns several (e.g. a dict per row). Default: :func:`word`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {KINDS}")
    if not refs:
        raise ValueError("a rule names the figures or tables it judges")

    def deco(fn):
        ex = examples if callable(examples) else (lambda: dict(examples or {}))
        r = Rule(f"{fn.__module__}.{fn.__qualname__}", tuple(refs), kind, needs, fn, ex,
                 read or word)
        REGISTRY[r.name] = r
        fn.rule = r
        return fn
    return deco


def all_rules() -> dict[str, Rule]:
    """Every registered rule, after importing the chapter modules that hold them."""
    for m in CHAPTER_MODULES:
        importlib.import_module(f"rankcore.book.{m}")
    return dict(REGISTRY)


def definitions_markdown(keys: list[str] | tuple[str, ...] | None = None) -> str:
    """The operational definitions ``keys`` (default: all) as a Markdown list."""
    keys = list(DEFINITIONS) if keys is None else list(keys)
    unknown = [k for k in keys if k not in DEFINITIONS]
    if unknown:
        raise KeyError(f"unknown definitions {unknown}; known: {sorted(DEFINITIONS)}")
    return "\n".join(f"- **{k}**: {DEFINITIONS[k]}." for k in keys)
