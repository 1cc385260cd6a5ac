"""benchmarks/lm_vs_hf.py (decoder-only LMs against HF assisted generation) on tiny shapes.

One run of the script with a 3-layer Gemma-2-shaped verifier of hidden size
64: the pair it builds loads on both sides, every decoding (ours speculative
and verifier-only at batch 1 and batched, HF assisted, HF greedy batched)
equals HF greedy token for token with the full number of new tokens, and
the JSON holds what BENCHMARKS.md quotes (machine, command, versions, rows,
ratios with their spread).
"""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import lm_vs_hf  # noqa: E402

pytestmark = pytest.mark.slow  # a benchmark smoke run (torch and transformers)

TINY = ["--examples", "3", "--max-new-tokens", "8", "--repeats", "1", "--batch", "2",
        "--vocab-size", "512", "--hidden-size", "64", "--intermediate-size", "128",
        "--num-heads", "2", "--num-kv-heads", "1", "--head-dim", "32",
        "--verifier-layers", "3", "--drafter-layers", "1", "--max-prompt-tokens", "12"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = tmp_path_factory.mktemp("lm_vs_hf")
  path = str(out / "lm_vs_hf.json")
  report = lm_vs_hf.main(TINY + ["--json", path])  # the HF directories: a removed temp dir
  with open(path) as f:
    return report, json.load(f)


def test_outputs_are_identical_token_for_token(run):
  _, saved = run
  assert saved["outputs_identical"] is True
  assert not any(saved["mismatch_examples"].values()), saved["mismatch_examples"]
  assert not any(saved["short_examples"].values()), saved["short_examples"]
  names = [r["name"] for r in saved["rows"]]
  assert names == ["ours speculative", "HF assisted (γ=3 constant)", "ours verifier",
                   "HF greedy", "ours speculative, batch 2", "ours verifier, batch 2",
                   "HF greedy, batch 2"]
  assert all(r["mismatches"] == 0 for r in saved["rows"])


def test_json_has_the_fields_benchmarks_md_quotes(run):
  report, saved = run
  assert set(saved) >= {"machine", "command", "args", "pair", "acceptance",
                        "tokens_per_verifier_call", "rows", "ratios", "batch_ours_over_hf",
                        "outputs_identical", "wall_s"}
  m = saved["machine"]
  for key in ("date", "cpu", "cpu_count", "jax", "torch", "transformers", "flax", "python",
              "torch_threads", "description"):
    assert m.get(key) not in (None, ""), key
  # --torch-threads not given: the faster of 1 and torch's default, both timed.
  probe = m["torch_threads_probe_s"]
  assert "1" in probe and str(m["torch_threads"]) == min(probe, key=probe.get), probe
  assert saved["command"].startswith("python benchmarks/lm_vs_hf.py --examples 3")
  assert saved["args"]["examples"] == 3 and saved["args"]["num_draft_tokens"] == 3
  assert saved["pair"]["verifier"]["layers"] == 3 and saved["pair"]["drafter"]["layers"] == 1
  assert 0.0 <= saved["acceptance"] <= 1.0
  assert 1.0 <= saved["tokens_per_verifier_call"] <= 4.0  # γ + 1 at most
  for r in saved["rows"]:
    assert r["tok_s"] > 0, r
  for name, ratio in saved["ratios"].items():
    lo, hi = ratio["interval"]
    assert 0 < lo <= hi and 0 < ratio["iqr"][0] <= ratio["iqr"][1], name
    assert len(ratio["per_example"]) == 3, name
  assert saved["rows"] == json.loads(json.dumps(report["rows"]))
