"""Where the evidence shows: `plan --json` and plan's text (the guide's budget row, the probe's numbers
explained), report.md's evidence section (retrieval, forgetting watch, replay)."""
from __future__ import annotations

import json

from training.plan.cli import main as plan_main
from training.plan.render import probe_lines
from training.report.evidence import evidence_section

RETRIEVAL = {"answer_loss_base": 4.2, "answer_loss_with_retrieval": 1.9, "answer_loss_oracle": 1.1, "gap_nats": 3.1,
             "gap_closed": 0.742, "gap_measurable": True, "passages_k": 3, "pairs_scored": 24,
             "retriever": "BM25 (bm25s)",
             "examples": [{"question": "What is the capital of Zorbia?", "answer": "Quexlin",
                           "top_passage": "The capital of Zorbia is Quexlin.", "loss_base": 6.0,
                           "loss_with_retrieval": 0.4, "loss_oracle": 0.2, "answer_in_passages": True}]}


def test_plan_json_carries_the_guides_cpt_row(capsys):
    assert plan_main(["--json", "--params", "7e9", "--corpus-size", "10GB", "--gap", "knowledge",
                      "--gpu", "A100-80GB"]) == 0
    g = json.loads(capsys.readouterr().out)["decision"]["guide_budget"]
    assert g["row"] == "CPT, 7B, 10 GB corpus" and g["low_usd"] == 150 and g["high_usd"] == 300
    assert g["why_different"] and "Lambda Labs" in g["source"]


def test_plan_json_guide_budget_is_null_without_a_row(capsys):
    assert plan_main(["--json", "--params", "1e9", "--corpus-size", "10GB", "--gap", "knowledge"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["guide_budget"] is None


def test_plan_text_shows_the_guide_row_and_why(capsys):
    assert plan_main(["--params", "7e9", "--corpus-size", "10GB", "--gap", "knowledge", "--gpu", "A100-80GB"]) == 0
    out = capsys.readouterr().out
    assert "guide's budget table: CPT, 7B, 10 GB corpus ~$150-300" in out and "why they differ" in out


def test_probe_numbers_come_with_their_meaning_and_rule():
    text = "\n".join(probe_lines({"ppl_ratio": 2.4, "fertility_ratio": 1.05, "summary": "s", "retrieval": RETRIEVAL}))
    assert "perplexity domain/reference 2.40" in text and "> 2 suggests a knowledge gap" in text
    assert "fertility domain/reference 1.05" in text and "> 1.3" in text
    assert "4.20 (question alone) -> 1.90" in text and "gap closed 74%" in text
    assert ">= 50%: RAG (+ SFT for format), not CPT" in text and "Zorbia" in text
    unmeasurable = "\n".join(probe_lines({"retrieval": dict(RETRIEVAL, gap_measurable=False)}))
    assert "does not decide" in unmeasurable or "already predicts" in unmeasurable


def test_report_evidence_section_retrieval_and_forgetting():
    recipe = {"decision": {"path": "sft", "evidence": {"retrieval": {k: v for k, v in RETRIEVAL.items()
                                                                      if k != "examples"}}},
              "eval": {"forgetting_threshold_pct": 10}}
    events = [{"event": "stage_start", "stage": "cpt", "type": "cpt",
               "data": {"replay_blocks": 3, "replay_tokens": 768, "replay_fraction": 0.1, "replay_repeats": 2}},
              {"event": "eval", "stage": "cpt", "step": 5, "general_perplexity": 100.0,
               "general_perplexity_change_pct": 2.0},
              {"event": "eval", "stage": "cpt", "step": 10, "general_perplexity": 130.0,
               "general_perplexity_change_pct": 32.6},
              {"event": "forgetting_warning", "stage": "cpt", "step": 10, "message": "general-text perplexity rose"}]
    text = "\n".join(evidence_section(events, recipe))
    assert "Retrieval closes **74%**" in text and "| 24 sampled pairs | 4.200 | 1.900 | 1.100 |" in text
    assert "replay mixed 768 tokens" in text and "10.0% of the tokens" in text
    assert "step 10: 130 (+32.6%)" in text and "general-text perplexity rose" in text
    bare = "\n".join(evidence_section([], {}))
    assert "Retrieval was not measured" in bare and "No CPT stage" in bare


def test_monitor_line_shows_general_perplexity_and_forgetting(tmp_path):
    from tui.runstate import RunState
    from tui.widgets.timeline import timeline_text
    (tmp_path / "recipe.yaml").write_text("name: t\nstages:\n  - {type: cpt, data: [x], max_steps: 10}\n")
    st = RunState.from_run(tmp_path)
    st.apply({"event": "stage_start", "stage": "cpt", "type": "cpt", "total_steps": 10})
    assert "general-text" not in timeline_text(st).plain
    st.apply({"event": "eval", "stage": "cpt", "step": 5, "eval_loss": 2.0, "general_perplexity": 130.0,
              "general_perplexity_change_pct": 30.0})
    assert "general-text perplexity 130 (+30.0%)" in timeline_text(st).plain
    st.apply({"event": "forgetting_warning", "stage": "cpt", "step": 5, "message": "m"})
    assert "forgetting: past the threshold" in timeline_text(st).plain


def test_plan_text_that_trains_nothing_has_no_empty_time_source_line(capsys):
    """rag_only estimates no training throughput: no dangling 'time from:' line (a plan that trains says
    where its time comes from)."""
    assert plan_main(["--params", "1e9", "--corpus-size", "30MB", "--gap", "knowledge", "--gpu", "H100"]) == 0
    out = capsys.readouterr().out
    assert "decision: rag_only" in out and "time from:" not in out
    assert plan_main(["--params", "1e9", "--corpus-size", "2GB", "--gap", "knowledge", "--gpu", "H100"]) == 0
    assert "time from: cpt:" in capsys.readouterr().out
