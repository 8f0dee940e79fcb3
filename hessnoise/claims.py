"""Every claim of Wei & Schwab (2019), where the book tests it, and its status.

The intro's claims table is :func:`claims_table` over the results files of the current
build: a row's status comes from the checks its chapter asserted, never from prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessnoise.report import load_results, status_of


@dataclass(frozen=True)
class Claim:
    """One claim: where the paper makes it, what it says, and which checks test it.

    ``chapter`` is ``None`` while no chapter tests the claim.  ``verdict`` names a boolean
    metric of the chapter for claims that the book measures rather than asserts: when its
    checks hold (the measurement is sound) and the verdict is false, the claim is reported as
    "not confirmed", with no failed check, because a measured refutation is a result.
    """

    ref: str
    statement: str
    chapter: str | None = None
    checks: tuple[str, ...] = field(default_factory=tuple)
    verdict: str | None = None


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "Lemma 1 (eq. 1, App. A.1)",
        "Near a point of a minimal valley, rotated and shifted coordinates give "
        "L = L* + ½ Σ λᵢ(θ̂) θᵢ², and SGD keeps its form.",
        "minimal_valley",
        ("lemma1_max_deviation", "lemma2_max_residual"),
    ),
    Claim(
        "Eq. 3 (master equation)",
        "In a stationary state ⟨θᵢ ∂ᵢL⟩ = (η/2)⟨C̃ᵢᵢ⟩.",
        "minimal_valley",
        ("fdr_max_relerr",),
    ),
    Claim(
        "Eq. 11",
        "With C = κH, ⟨θᵢ²⟩ = ηκ/(2 − ηλᵢ).",
        "trace_decrease",
        ("eq11_max_relerr",),
    ),
    Claim(
        "Theorem 1",
        "SGD noise decreases the Hessian trace on average, at rate (η²/2S)(1 − S/M)‖∇̂T‖² "
        "as printed (the book finds η²κ‖∇̂T‖²/4).",
        "trace_decrease",
        ("thm1_coefficient_relerr", "thm1_exact_max_relerr"),
    ),
    Claim(
        "Theorem 2",
        "Noise with Cᵢᵢ = λᵢ ∂f/∂λᵢ decreases f(λ) at rate η²‖∇̂f‖²/4.",
        "designing_noise",
        ("thm2_user_f_relerr", "theorem2_all_max_relerr"),
    ),
    Claim(
        "Corollary 2.1",
        "Isotropic noise in the non-degenerate subspace decreases the determinant.",
        "designing_noise",
        ("cor21_logdet_relerr",),
    ),
    Claim(
        "Fig. 1",
        "SGD on CIFAR-10 (PreAct-ResNet18, VGG16) moves inside one connected valley of minima.",
    ),
    Claim(
        "App. A.3 (first step)",
        "In the stationary state the excess loss is ⟨L⟩ − L* = 𝒞·Σλᵢ with 𝒞 = (η/4S)(1 − S/M).",
        "negative_eigenvalues",
        ("a3_excess_budget_ratio",),
    ),
    Claim(
        "App. A.3 (collapse)",
        "Learning rate and batch size act on the negative eigenvalues only through 𝒞: "
        "η sweeps and S sweeps fall on one curve.",
        "negative_eigenvalues",
        ("a3_collapse", "a3_collapse_resolution"),
    ),
    Claim(
        "Fig. 2(a), App. A.3",
        "The sum of negative Hessian eigenvalues is proportional to the training loss "
        "(above the valley floor), with a near-zero intercept.",
        "negative_eigenvalues",
        ("a3_collapse", "negatives_present"),
        verdict="a3_proportional",
    ),
    Claim(
        "Fig. 2(b)",
        "On the first toy the change of trace is linear in η².",
        "trace_decrease",
        ("fig2b_linear_r2",),
    ),
    Claim(
        "Fig. 2(c)–(d)",
        "On the second toy SGD noise lowers the trace and isotropic noise lowers the determinant.",
        "designing_noise",
        ("fig2cd_sgd_lowers_trace", "fig2cd_iso_lowers_logdet"),
    ),
    Claim(
        "Fig. 3",
        "The Hessian trace decreases along projected SGD paths of CIFAR-10 networks.",
    ),
    Claim(
        "Fig. 4",
        "The same holds for DenseNet on CIFAR-100 and after training on shuffled labels.",
    ),
)


def claims_table(results_dir: str | Path) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the claims table for the results in ``results_dir``."""
    results = load_results(results_dir) if Path(results_dir).exists() else {}
    rows = []
    for claim in CLAIMS:
        if claim.chapter is None:
            where, status = "—", "not yet tested"
        elif claim.chapter not in results:
            where, status = claim.chapter, "not yet tested"
        else:  # link only to chapters that ran, so the link target is in the book
            where = f"[{claim.chapter}]({claim.chapter}.ipynb)"
            status = status_of(results[claim.chapter], list(claim.checks))
            if status == "passed" and claim.verdict is not None:
                holds = results[claim.chapter]["metrics"].get(claim.verdict)
                status = {True: "passed", False: "not confirmed"}.get(holds, "incomplete")
        rows.append([claim.ref, claim.statement, where, status])
    return ["claim", "what the paper says", "chapter", "status"], rows
