"""The claims table: statuses from checks and verdicts, the evidence column, and the measured
numbers after the status."""

import pytest

from hessnoise.claims import CLAIMS, claims_table
from hessnoise.report import Chapter


def test_statuses_and_evidence_kinds(tmp_path):
    run = Chapter("minimal_valley", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("lemma1_max_deviation", 0.0, 1.0, kind="consistency")
    headers, rows = claims_table(tmp_path)
    assert headers == ["claim", "what is claimed", "chapter", "evidence", "status"]
    assert len(rows) == len(CLAIMS)
    by_ref = {r[0]: r for r in rows}
    assert by_ref["Lemma 1 (eq. 1, App. A.1)"][-1] == "incomplete"  # lemma2 not recorded
    run.check_below("lemma2_max_residual", 0.0, 1.0, kind="consistency")
    by_ref = {r[0]: r for r in claims_table(tmp_path)[1]}
    assert by_ref["Lemma 1 (eq. 1, App. A.1)"][3:] == ["consistency", "passed"]
    for claim in CLAIMS:  # no chapter tests it, or its chapter has no results in this build
        if claim.chapter is None:
            assert by_ref[claim.ref][3:] == ["—", "not yet tested"]
        elif claim.chapter != "minimal_valley":
            assert by_ref[claim.ref][3:] == ["—", "not run in this build"]


def test_every_paper_claim_is_listed():
    refs = " ".join(c.ref for c in CLAIMS)
    for needle in ("Lemma 1", "Theorem 1", "Eq. 11", "Theorem 2", "Corollary 2.1", "Fig. 1",
                   "Fig. 2(a)", "Fig. 2(b)", "Fig. 2(c)", "Fig. 3", "Fig. 4", "A.3"):  # fmt: skip
        assert needle in refs, needle


@pytest.mark.parametrize(("verdict", "status"), [(False, "not confirmed"), (True, "passed")])
def test_measured_claims_report_their_verdict_and_numbers(tmp_path, verdict, status):
    run = Chapter("negative_eigenvalues", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("a3_collapse", 0.5, 3.0)
    run.check_true("negatives_present", True, "> 0")
    _, rows = claims_table(tmp_path)
    assert next(r for r in rows if r[0] == "Fig. 2(a), App. A.3")[-1] == "incomplete"
    run.verdict("a3_proportional", verdict)
    row = next(r for r in claims_table(tmp_path)[1] if r[0] == "Fig. 2(a), App. A.3")
    assert row[3] == "test" and row[-1] == status  # no numbers recorded: the status alone
    run.record("seeds", {"exponent": 0.74, "exponent_lo": 0.66, "exponent_hi": 0.82, "seeds": 3,
                         "proportional": 0})  # fmt: skip
    row = next(r for r in claims_table(tmp_path)[1] if r[0] == "Fig. 2(a), App. A.3")
    assert row[-1] == f"{status}: exponent 0.74 [0.66, 0.82] over 3 seeds, 0 consistent"


def test_fig2cd_states_the_fraction_of_starts(tmp_path):
    run = Chapter("designing_noise", "smoke", "cpu", results_dir=tmp_path)
    run.check_below("theorem2_all_max_relerr", 0.001, 0.03)
    run.record("grid", {"paper_late": 6, "starts": 16})
    run.verdict("fig2cd_typical", False)
    row = next(r for r in claims_table(tmp_path)[1] if r[0] == "Fig. 2(c)–(d)")
    assert row[-1] == "not confirmed: holds at 6 of 16 starts fixed in advance"
