"""Every claim of Wei & Schwab (2019) that the book tests, where, and how it fared.

The intro's claims table is :func:`claims_table` over the results files of the current
build: a row's status comes from the checks its chapter asserted and the verdicts it
measured, never from prose.  A row also says what kind of evidence it rests on: ``test``
when at least one of its checks could have failed had the claim been false, ``consistency``
when its checks are identities or sanity checks that hold by construction (they show the code
does what the derivation says, not that the paper is right).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hessnoise.report import load_results, status_of


@dataclass(frozen=True)
class Claim:
    """One claim: where it is made, what it says, and which checks and measurements test it.

    ``chapter`` is ``None`` while no chapter tests the claim.  ``verdict`` names a boolean
    metric of the chapter for claims that the book measures rather than asserts: when the
    chapter's checks hold (the measurement is sound) and the verdict is false, the claim is
    reported as "not confirmed", with no failed check, because a measured refutation is a
    result.  ``measured`` is a format string over the chapter's metrics that says what was
    measured, e.g. ``"holds at {grid_paper_late} of {grid_starts} starts"``.
    """

    ref: str
    statement: str
    chapter: str | None = None
    checks: tuple[str, ...] = field(default_factory=tuple)
    verdict: str | None = None
    measured: str | None = None


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
        "Eq. 3 on a real network (App. A.3's stationarity)",
        "The non-degenerate coordinates of SGD near the floor are stationary: the "
        "fluctuation–dissipation relation holds in the runs of Fig. 2(a).",
        "negative_eigenvalues",
        ("a3_excess_budget_ratio",),
        verdict="fdr_stationary",
        measured="mean gap {fdr_gap_mean:+.1%} ± {fdr_gap_mean_se:.1%}, χ² p = {fdr_p:.2g}",
    ),
    Claim(
        "Eq. 4 (Sec. 2.1.2)",
        "Near a minimum the second term of eq. 4 is small next to the first, the mean outer "
        "product of per-sample gradients, and the negative eigenvalues come from it alone.",
        "sgd_noise",
        ("weyl_gap", "floor_sampled_residual"),
        verdict="eq4_second_term_small",
        measured="‖H − E‖/‖E‖ = {sgd_second_term_ratio_min:.3g}–{sgd_second_term_ratio_max:.3g} "
        "near the floor; with the first term of smoothed targets ‖R₄‖/‖A‖ ≤ "
        "{sgd_soft_second_term_ratio_max:.2f}",
    ),
    Claim(
        "Eq. 5, eq. 10 (Sec. 2.1.2)",
        "The mini-batch noise covariance is C = (1/S)(1 − S/M)·H.",
        "sgd_noise",
        ("minibatch_formula_z",),
        verdict="eq5_paper_near_floor",
        measured="paper's mini-batches near the floor: alignment {sgd_paper_alignment_min:.2f}–"
        "{sgd_paper_alignment_max:.2f}, tr C/tr H at {sgd_paper_kappa_min:.1e}–"
        "{sgd_paper_kappa_max:.1e} of eq. 5, γ = {gamma:.2f} [{gamma_lo:.2f}, {gamma_hi:.2f}]",
    ),
    Claim(
        "Sec. 2.1.3 (timescale separation)",
        "The non-degenerate directions relax to a stationary state much faster than the "
        "valley floor changes.",
        "sgd_noise",
        ("floor_split",),
        verdict="timescale_separation",
        measured="{ts_slow_directions} of {ts_n} directions slower than the equilibration "
        "window, {ts_slow_drift_directions} slower than a tenth of the trace's drift time "
        "{ts_tau_drift:.3g}",
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
        "Theorem 1 on a real network",
        "With sampled labels (noise exactly H/S on an interpolating floor), the floor point "
        "below SGD slides along −P_Γ∇tr H and tr H falls at 𝒞‖P_Γ∇tr H‖² per unit of ηt (the "
        "slow flow of Li, Wang & Arora, with Damian et al.'s finite-η factor).",
        "slow_flow",
        (
            "limit_map_invariance",
            "gauss_newton_twice",
            "static_displacement",
            "collapse_resolution",
        ),
        verdict="slow_flow_rate",
        measured="{all_ratio_min:.3f}–{all_ratio_max:.3f} of the prediction at 𝒞 = "
        "{all_c_min:.1e} over {all_seeds} seeds; up to {all_worst_ratio:.2f} at 𝒞 = "
        "{all_worst_c:.1e}",
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
        "After the first few epochs, SGD moves inside one connected valley of minima: the "
        "projections of its states onto minima are line-connected.",
        "projected_paths",
        ("training_reached_threshold", "replay_bit_identical", "projection_budget_respected"),
        verdict="valley_connected",
        measured="{projected_points} projected points, {unconnected_segments} segments "
        "unconnected, connected from epoch {main_valley_start:.0f} of {main_epochs}",
    ),
    Claim(
        "Fig. 4(b)–(c), App. A.2.2",
        "From a minimum reached after training on partly shuffled labels, SGD on the clean "
        "data moves along a connected valley of minima in which the validation loss falls.",
        "projected_paths",
        ("rl_descent_reached",),
        verdict="random_label_valley",
        measured="validation loss {val_loss_start:.3f} → {val_loss_end:.3f} above H(q), "
        "{rl_unconnected_segments} of {rl_segments} segments unconnected",
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
        measured="largest z {seeds_collapse_z_max:.2f}, detectable relative difference "
        "{seeds_resolution_max:.0%}",
    ),
    Claim(
        "Fig. 2(a), App. A.3",
        "The sum of negative Hessian eigenvalues is proportional to the training loss "
        "(above the valley floor), with a near-zero intercept.",
        "negative_eigenvalues",
        ("a3_collapse", "negatives_present"),
        verdict="a3_proportional",
        measured="exponent {seeds_exponent:.2f} [{seeds_exponent_lo:.2f}, "
        "{seeds_exponent_hi:.2f}] over {seeds_seeds} seeds, {seeds_proportional} consistent",
    ),
    Claim(
        "Fig. 2(a), this book's follow-up",
        "The curvature of the valley floor accounts for most of the bend of Fig. 2(a).",
        "curved_floor",
        ("probe_first_order_share", "floor_curvature_snr"),
        verdict="floor_dominates_at_runs",
        measured="floor share {at_floor_share_lo:.0%} at 𝒞 = {at_c_lo:.1e}, "
        "{at_floor_share_hi:.0%} at {at_c_hi:.1e}",
    ),
    Claim(
        "Fig. 2(b)",
        "On the first toy the change of trace is linear in η², with Theorem 1's constant.",
        "trace_decrease",
        ("thm1_coefficient_relerr", "thm1_printed_over_measured"),
    ),
    Claim(
        "Fig. 2(c)–(d)",
        "On the second toy SGD noise lowers the trace and isotropic noise lowers the determinant.",
        "designing_noise",
        ("theorem2_all_max_relerr",),
        verdict="fig2cd_typical",
        measured="holds at {grid_paper_late} of {grid_starts} starts fixed in advance",
    ),
    Claim(
        "Efficiency at equal loss (this book)",
        "Which of two noises lowers f faster at equal training loss follows from the start "
        "alone (the efficiency proposition).",
        "designing_noise",
        ("theorem2_all_max_relerr",),
        verdict="efficiency_predicts_grid",
        measured="predicts {grid_predicted_late} of {grid_comparisons} winners",
    ),
    Claim(
        "Fig. 3",
        "The Hessian trace decreases along projected SGD paths of CIFAR-10 networks.",
        "trace_along_path",
        ("operator_loss_is_path_loss", "hvp_matches_finite_difference", "points_per_path"),
        verdict="trace_decreases",
        measured="slope {trace_slope:.3g} [{trace_slope_lo:.3g}, {trace_slope_hi:.3g}] per "
        "epoch over {seeds} seeds, {frac_seeds_decreasing:.0%} falling; scale-invariant "
        "{invariant_trace_slope:.3g} [{invariant_trace_slope_lo:.3g}, "
        "{invariant_trace_slope_hi:.3g}]; without BatchNorm {nobn_trace_slope:.3g} "
        "[{nobn_trace_slope_lo:.3g}, {nobn_trace_slope_hi:.3g}]; max λ_max·η/2 "
        "{max_lambda_max_times_eta_over_2:.2f}",
    ),
    Claim(
        "Fig. 3 (with the validation loss)",
        "The trace keeps falling while the validation loss rises.",
        "trace_along_path",
        ("points_per_path",),
        verdict="trace_val_anticorrelated",
        measured="rank correlation {main_val_rho:.2f} [{main_val_rho_lo:.2f}, "
        "{main_val_rho_hi:.2f}], validation-loss slope {main_val_slope:.2g} per epoch",
    ),
    Claim(
        "Fig. 4(b)–(c) (the trace)",
        "After training on shuffled labels, the trace falls along the projected SGD path.",
        "trace_along_path",
        ("points_per_path",),
        verdict="rl_trace_decreases",
        measured="slope {rl_slope:.3g} [{rl_slope_lo:.3g}, {rl_slope_hi:.3g}] per epoch, one seed",
    ),
    Claim(
        "Fig. 4(a)",
        "The trace also falls along the projected paths of DenseNet on CIFAR-100.",
    ),
)


def evidence_kind(results: dict[str, Any], check_names: tuple[str, ...]) -> str:
    """``'test'`` if any of the named checks could have failed, else ``'consistency'``."""
    kinds = {c["name"]: c.get("kind", "test") for c in results["checks"]}
    return "test" if any(kinds.get(n) == "test" for n in check_names) else "consistency"


def _measured(claim: Claim, metrics: dict[str, Any]) -> str:
    if claim.measured is None:
        return ""
    try:
        return claim.measured.format(**metrics)
    except (KeyError, ValueError, TypeError):  # a metric missing or None (non-finite)
        return ""


def claims_table(results_dir: str | Path) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the claims table for the results in ``results_dir``."""
    results = load_results(results_dir) if Path(results_dir).exists() else {}
    rows = []
    for claim in CLAIMS:
        if claim.chapter is None or claim.chapter not in results:
            # a chapter that tests the claim but has no current results in this build (the
            # book command ran another chapter alone, or set this one's stale results aside)
            status = "not yet tested" if claim.chapter is None else "not run in this build"
            rows.append([claim.ref, claim.statement, claim.chapter or "—", "—", status])
            continue
        data = results[claim.chapter]
        # link only to chapters that ran, so the link target is in the book
        where = f"[{claim.chapter}]({claim.chapter}.ipynb)"
        status = status_of(data, list(claim.checks))
        if status == "passed" and claim.verdict is not None:
            holds = data["metrics"].get(claim.verdict)
            status = {True: "passed", False: "not confirmed"}.get(holds, "incomplete")
        kind = "test" if claim.verdict is not None else evidence_kind(data, claim.checks)
        measured = _measured(claim, data["metrics"])
        rows.append([claim.ref, claim.statement, where, kind,
                     f"{status}: {measured}" if measured else status])  # fmt: skip
    return ["claim", "what is claimed", "chapter", "evidence", "status"], rows
