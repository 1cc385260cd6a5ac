"""scj.calibrate (evaluation/calibration.py): the α order per rule against the
targets' own definitions, the losses, the choice under a cost target, the
cache, mistakes caught before compiling, and the guarantee itself by
resampling calibration sets.

One decoding run (the module fixture: a tiny random T5 pair, 128 inputs, 16 α
of chow, one compilation for the grid) feeds every end-to-end test; the other
losses and targets reuse its cache without decoding again.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import spec_cascade_jax as scj
from spec_cascade_jax.decoding import api, methods, targets
from spec_cascade_jax.decoding.errors import UsageError
from spec_cascade_jax.evaluation import calibration, metrics, risk, summary
from spec_cascade_jax.testing import BigramModel, random_bigram

ALPHAS = tuple(float(a) for a in np.round(np.linspace(0.3, 0.75, 16), 3))
N = 128
MAX_NEW = 8


def _inputs(n=N, seed=0):
  rng = np.random.default_rng(seed)
  return [[int(t) for t in rng.integers(2, 64, size=rng.integers(3, 12))] + [1]
          for _ in range(n)]


class WordVocab:
  """ids -> "w5 w9" (EOS and padding dropped): injective on outputs cut at EOS."""

  @staticmethod
  def decode(ids):
    return " ".join(f"w{t}" for t in ids if t > 1)


@pytest.fixture(scope="module")
def run(tiny_t5_2_1, tmp_path_factory):
  """(pair, inputs, cache path, result at ε = 0.2 token loss, traces added)."""
  drafter, verifier = tiny_t5_2_1
  cache = str(tmp_path_factory.mktemp("calib") / "cache.json")
  before = api.TRACE_COUNTS["spec_cascade"]
  res = scj.calibrate(drafter, verifier, _inputs(), method="spec_cascade", rule="chow",
                      epsilon=0.2, delta=0.1, alphas=ALPHAS[::-1], max_new_tokens=MAX_NEW,
                      batch_size=64, cache_path=cache, progress=False)
  return (drafter, verifier), _inputs(), cache, res, api.TRACE_COUNTS["spec_cascade"] - before


def _again(run, **kw):
  """calibrate on the fixture's cache; decoding anything would raise."""
  (drafter, verifier), inputs, cache, _, _ = run
  args = dict(method="spec_cascade", rule="chow", epsilon=0.2, delta=0.1, alphas=ALPHAS,
              max_new_tokens=MAX_NEW, batch_size=64, cache_path=cache, progress=False)
  return scj.calibrate(drafter, verifier, inputs, **{**args, **kw})


@pytest.fixture
def no_decoding(monkeypatch):
  def fail(*a, **k):
    raise AssertionError("decoded although every row is cached")
  monkeypatch.setattr(api, "generate", fail)


# ------------------------------------------------------------------ α order


def _random_dists(seed, k=400, v=12):
  r = np.random.default_rng(seed)
  q = jax.nn.softmax(jnp.asarray(2.0 * r.normal(size=(k, v)), jnp.float32))
  p = jax.nn.softmax(jnp.asarray(2.0 * r.normal(size=(k, v)), jnp.float32))
  return q, p


@pytest.mark.parametrize("key", sorted(set(calibration.BOLDER_WITH_LARGER_ALPHA)
                                        - {"seq_cascade"}))
def test_the_order_runs_from_cautious_to_bold_by_the_targets_definition(key):
  """Along the ordered default grid each target hands over less: its deferral
  set shrinks (rules, BiLD*), or its acceptance rises (lossy SD, which never
  defers). seq_cascade, a sequence-level rule, is checked through `generate`
  (test_seq_cascade_order)."""
  method = "spec_cascade" if key in methods.RULES else key
  rule = key if key in methods.RULES else None
  grid = calibration.order_cautious_to_bold(
      calibration.default_alphas(method, rule)[::-1], method, rule)
  q, p = _random_dists(1)
  fn = targets.get_target(method, rule or "")
  handed = []
  for a in grid:
    pi, defer = fn(q, p, q, p, jnp.full(q.shape[:-1], a))
    if key == "lossy":
      handed.append(np.asarray(jnp.minimum(1.0, pi / q)) < 1.0 - 1e-6)  # rejected mass
    else:
      handed.append(np.asarray(defer))
  for cautious, bold in zip(handed, handed[1:]):
    assert not (bold & ~cautious).any()   # bolder: a subset of the hand-overs
  assert handed[0].sum() > handed[-1].sum()


def test_seq_cascade_order():
  """seq_cascade reruns a row on the verifier iff its confidence < 1 − α:
  one row per α of the ordered grid, the same drafter output in each."""
  drafter = random_bigram(jax.random.PRNGKey(1), 16, sharpness=1.0)
  verifier = random_bigram(jax.random.PRNGKey(2), 16, sharpness=1.0)
  grid = calibration.order_cautious_to_bold(np.linspace(0, 1, 21)[::-1], "seq_cascade", None)
  ids = np.tile(np.array([[5, 1]], np.int32), (len(grid), 1))
  res = api.generate(drafter, verifier, ids, method="seq_cascade", alpha=np.array(grid),
                     max_new_tokens=6)
  deferred = res.stats["deferrals"]
  assert (np.diff(deferred) <= 0).all() and deferred[0] > deferred[-1], deferred


def test_every_alpha_method_has_an_order_and_a_valid_default_grid():
  assert set(calibration.BOLDER_WITH_LARGER_ALPHA) == set(methods.ALPHA_RANGES)
  for method in methods.taking("alpha"):
    rules = methods.RULES if methods.get(method).takes_rule else (None,)
    if method == "token_cascade":
      rules = ("chow",)
    for rule in rules:
      grid = calibration.default_alphas(method, rule)
      assert len(grid) >= 3
      for a in grid:
        api.check_settings(method=method, rule=rule, alpha=a)


# ------------------------------------------------------------------ losses, choice


def test_token_disagreement_counts_positions_past_the_shorter_output():
  assert calibration.token_disagreement([5, 6, 1], [5, 6, 1]) == 0.0
  assert calibration.token_disagreement([5, 1], [5, 6, 1]) == pytest.approx(2 / 3)
  assert calibration.token_disagreement([7, 6, 1], [5, 6, 1]) == pytest.approx(1 / 3)
  assert calibration.token_disagreement([], []) == 0.0


def test_choose_takes_the_cheapest_certified_alpha_or_the_best_within_the_cost():
  n = 200
  losses = np.zeros((4, n))
  losses[1, :4] = 1.0     # mean 0.02
  losses[2, :8] = 1.0     # mean 0.04
  losses[3, :60] = 1.0    # mean 0.3: not certified at ε = 0.1
  calls = [0.5, 0.3, 0.35, 0.1]
  table, i = calibration.choose([0.0, 0.1, 0.2, 0.3], losses, calls, [1, 2, 3, 4],
                                epsilon=0.1, delta=0.1)
  assert [r.certified for r in table] == [True, True, True, False]
  assert i == 1            # fewest calls among the certified, not the boldest
  _, i = calibration.choose([0.0, 0.1, 0.2, 0.3], losses, calls, [1, 2, 3, 4],
                            epsilon=0.1, delta=0.1, cost_target=0.4)
  assert i == 1            # best quality at <= 0.4 calls: 0.1 (0.02) beats 0.2 (0.04)
  _, i = calibration.choose([0.0, 0.1, 0.2, 0.3], losses, calls, [1, 2, 3, 4],
                            epsilon=0.1, delta=0.1, cost_target=0.2)
  assert i is None         # only the uncertified α is that cheap
  # A loss in points is tested on loss / bound: 2 points of 100 is 0.02.
  table, _ = calibration.choose([0.0], 2.0 * np.ones((1, n)), [1], [1], epsilon=5.0,
                                delta=0.1, bound=100.0)
  assert table[0].loss_mean == pytest.approx(2.0)
  assert table[0].pvalue == risk.pvalue(0.02 * np.ones(n), 0.05)


# ------------------------------------------------------------------ end to end


def test_calibrate_orders_the_grid_certifies_a_prefix_and_compiles_once(run):
  *_, res, traces = run
  assert traces <= 1                       # the whole grid: one compilation (0: cached)
  assert [r.alpha for r in res.table] == sorted(ALPHAS)   # given bold-first, ordered
  certified = [r.certified for r in res.table]
  k = sum(certified)
  assert certified == [True] * k + [False] * (len(ALPHAS) - k)
  assert 0 < k < len(ALPHAS)
  assert all(r.pvalue <= 0.1 for r in res.table[:k]) and res.table[k].pvalue > 0.1
  assert res.table[0].loss_mean == 0.0     # chow at 0.3 defers every token here
  cheapest = min(res.table[:k], key=lambda r: (r.verifier_calls_per_token, r.loss_mean))
  assert res.alpha == cheapest.alpha
  assert res.n == N and "0.9" in res.guarantee and f"α = {res.alpha:g}" in res.guarantee
  assert json.loads(json.dumps(res.to_dict()))["alpha"] == res.alpha
  assert f"| {res.alpha:g} ←" in res.to_markdown()


def test_a_rerun_decodes_nothing_and_a_new_target_reuses_the_rows(run, no_decoding):
  first = run[3]
  assert _again(run) == first
  tight = _again(run, epsilon=0.02)
  assert [r.loss_mean for r in tight.table] == [r.loss_mean for r in first.table]
  assert len(tight.certified_alphas) < len(first.certified_alphas)   # stricter ε: fewer


def test_an_interrupted_calibration_decodes_only_what_is_missing(run, tmp_path, monkeypatch):
  (drafter, verifier), inputs, cache, first, _ = run
  partial = str(tmp_path / "cache.json")
  with open(cache) as f:
    data = json.load(f)
  group = calibration.cache_group("spec_cascade", "chow", ALPHAS[-1])
  data["groups"][group] = {k: v for k, v in data["groups"][group].items() if int(k) < 64}
  with open(partial, "w") as f:
    json.dump(data, f)
  calls = []
  real = api.generate
  monkeypatch.setattr(api, "generate", lambda *a, **k: calls.append(k) or real(*a, **k))
  again = _again(((drafter, verifier), inputs, partial, None, None))
  assert len(calls) == 1 and np.all(calls[0]["alpha"] == ALPHAS[-1])   # one batch of 64
  assert again == first


def test_a_cache_of_other_settings_is_refused(run, tmp_path):
  (_, _), _, cache, _, _ = run
  other = str(tmp_path / "c.json")
  shutil.copy(cache, other)
  with pytest.raises(UsageError, match="other settings"):
    _again(run, cache_path=other, max_new_tokens=MAX_NEW + 1)


def test_sequence_and_callable_losses(run, no_decoding):
  (_, _), inputs, cache, token_res, _ = run
  with open(cache) as f:
    groups = json.load(f)["groups"]
  ver = [groups["verifier"][str(i)]["tokens"] for i in range(N)]
  refs = [WordVocab.decode(v) for v in ver]    # references = the verifier's own outputs
  em = _again(run, loss="exact_match", references=refs, vocabulary=WordVocab(), epsilon=0.2)
  same = _again(run, loss=lambda y, v, r: float(y != v), epsilon=0.2)
  for a, b, t in zip(em.table, same.table, token_res.table):
    assert a.loss_mean == pytest.approx(b.loss_mean)   # an output equals v, or it does not
    assert (a.loss_mean > 0) == (t.loss_mean > 0)
  chrf = _again(run, loss="chrf", references=refs, vocabulary=WordVocab(), epsilon=5.0)
  assert chrf.table[0].loss_mean == 0.0
  bold = chrf.table[-1]
  bold_rows = groups[calibration.cache_group("spec_cascade", "chow", bold.alpha)]
  outs = [WordVocab.decode(bold_rows[str(i)]["tokens"]) for i in range(N)]
  own = np.asarray(metrics.sentence_scores("chrf", refs, refs))   # 100, or 0 for ""
  drop = np.maximum(0.0, own - np.asarray(metrics.sentence_scores("chrf", refs, outs)))
  assert bold.loss_mean == pytest.approx(drop.mean())
  assert "points" in chrf.guarantee


@pytest.mark.parametrize("kw,match", [
    (dict(loss="wer"), "loss="),
    (dict(epsilon=0.0), "epsilon"),
    (dict(epsilon=1.5), "epsilon"),
    (dict(delta=1.0), "delta"),
    (dict(method="speculative", rule=None), "no α"),
    (dict(alphas=(0.1, 1.5)), "outside"),
    (dict(alphas=(0.1, 0.1)), "repeats"),
    (dict(loss="chrf", epsilon=1.0), "reference"),
    (dict(loss="chrf", epsilon=1.0, references=["x"] * N), "vocabulary"),
    (dict(cost_target=-1.0), "cost_target"),
    (dict(batch_size=0), "batch_size"),
])
def test_mistakes_raise_before_anything_compiles(run, kw, match):
  before = dict(api.TRACE_COUNTS)
  with pytest.raises(UsageError, match=match):
    _again(run, cache_path=None, **kw)
  assert dict(api.TRACE_COUNTS) == before


def test_empty_inputs_raise():
  bigram = BigramModel(logits=jnp.zeros((8, 8)))
  with pytest.raises(UsageError, match="empty"):
    scj.calibrate(bigram, bigram, [], epsilon=0.1)


# ------------------------------------------------------------------ the guarantee


@pytest.mark.slow   # 1,000 Learn-then-Test runs
def test_resampled_calibration_sets_violate_at_most_delta_of_the_time(run):
  """The pool of 128 decoded examples (their losses at every α) is the
  distribution: each of S draws takes m examples from it with replacement,
  runs Learn then Test (`calibration.choose`) and reads the chosen α's true
  risk, the pool mean, against ε (no test-set noise). The guarantee says
  P(risk > ε) ≤ δ; the violation count is then at most Bin(S, δ) in law, and
  the check fails only above that law's 0.999 quantile (a false alarm once in
  a thousand runs). A naive choice, the cheapest α whose calibration mean is
  ≤ ε, must fail the same check: the test can tell a guarantee from none."""
  (_, _), _, cache, res, _ = run
  with open(cache) as f:
    groups = json.load(f)["groups"]
  ver = [groups["verifier"][str(i)]["tokens"] for i in range(N)]
  rows = {a: groups[calibration.cache_group("spec_cascade", "chow", a)] for a in ALPHAS}
  pool = np.array([[calibration.token_disagreement(rows[a][str(i)]["tokens"], ver[i])
                    for i in range(N)] for a in ALPHAS])        # [A, N]
  risks = pool.mean(axis=1)
  calls = [r.verifier_calls_per_token for r in res.table]
  eps, delta, m, draws = 0.2, 0.1, 64, 1000
  # The check has teeth only if some α sits just above ε (a near miss to pick).
  assert ((risks > eps) & (risks < eps + 0.05)).any(), risks
  rng = np.random.default_rng(0)
  violations = naive = 0
  for _ in range(draws):
    sample = pool[:, rng.integers(0, N, size=m)]
    _, i = calibration.choose(ALPHAS, sample, calls, calls, epsilon=eps, delta=delta)
    violations += i is not None and risks[i] > eps
    ok = np.flatnonzero(sample.mean(axis=1) <= eps)
    naive += risks[min(ok, key=lambda j: calls[j])] > eps
  limit = stats.binom.ppf(0.999, draws, delta)
  print(f"violations {violations}, naive {naive}, limit {limit} of {draws}")
  assert violations <= limit, (violations, limit)
  assert naive > limit, (naive, limit)


# ------------------------------------------------------------------ the main job's row


def _record(curve, method, rule, alpha, calls, per_example):
  return {"kind": "point", "curve": curve, "method": method, "rule": rule, "alpha": alpha,
          "num_draft_tokens": 5, "temperature": 0.0, "seed": 0, "quality": {"bleu": 30.0},
          "relative_latency": 1.0 - alpha / 2, "relative_latency_interval": None,
          "cost": {"verifier_calls_per_token": calls, "drafter_steps_per_token": 2 * calls,
                   "mean_tokens": 10.0},
          "per_example": per_example}


def _sweep_records(n=400):
  """A verifier and one SpecCascade[chow] curve whose α 0.5 loses every
  token on 1 example in 100 (certifiable at ε = 0.05) and α 0.9 half of them."""
  ver = {"tokens": [[5, 1]] * n, "chrf": [100.0] * n}
  mild = np.zeros(n)
  mild[::100] = 1.0
  recs = [_record("Verifier", "verifier", "", 0.0, 1.0, ver)]
  for alpha, loss, calls in ((0.9, np.full(n, 0.5), 0.2), (0.1, np.zeros(n), 0.5),
                             (0.5, mild, 0.3)):
    recs.append(_record("SpecCascade[chow]", "spec_cascade", "chow", alpha, calls,
                        {"token_loss": list(loss), "chrf": list(100.0 - 10.0 * loss)}))
  return recs


def test_the_sweep_row_calibrates_on_one_half_and_checks_on_the_other():
  recs = _sweep_records()
  rows = calibration.calibrate_sweep(recs)
  token = [r for r in rows if r["loss"] == "token"]
  chrf = [r for r in rows if r["loss"] == "chrf"]
  assert len(token) == len(chrf) == 1 and token[0]["curve"] == "SpecCascade[chow]"
  assert token[0]["alpha"] == 0.5 and token[0]["verifier_calls_per_token"] == 0.3
  assert token[0]["n_calibration"] == token[0]["n_check"] == 200
  perm = np.random.default_rng(calibration.SWEEP_SPLIT_SEED).permutation(400)
  mild = np.asarray(recs[3]["per_example"]["token_loss"])
  assert token[0]["heldout_loss"] == pytest.approx(mild[perm[200:]].mean())
  # chrF drops 10 points on 1 example in 100 at α 0.5: 0.1 points on average,
  # certified at ε = 2 points; at α 0.9 the drop is 5 points everywhere.
  assert chrf[0]["alpha"] == 0.5
  s = summary.summarize(recs)
  assert s["calibrated"] == rows
  md = summary.format_markdown(s)
  assert "Calibrated α (ε, δ = 0.1)" in md
  assert "| SpecCascade[chow] | token disagreement (0.05) | 0.5 |" in md


def test_results_without_per_example_losses_get_no_row():
  recs = _sweep_records()
  for r in recs:
    r.pop("per_example")
  assert calibration.calibrate_sweep(recs) == []
  assert "Calibrated" not in summary.format_markdown(summary.summarize(recs))
  recs = _sweep_records()
  recs[2]["per_example"] = None    # one point of the curve without them: no row
  assert calibration.calibrate_sweep(recs) == []


def test_sweep_losses_keep_the_verifier_tokens_and_the_others_losses():
  refs = ["a b", "c"]
  ver = calibration.sweep_losses("verifier", [[5, 1], [6, 1]], refs, refs, None)
  assert ver["tokens"] == [[5, 1], [6, 1]] and "token_loss" not in ver
  assert ver["chrf"] == [100.0, 100.0]
  other = calibration.sweep_losses("spec_cascade", [[5, 1], [7, 1]], ["a b", "x"], refs,
                                   ver["tokens"])
  assert other["token_loss"] == [0.0, 0.5] and "tokens" not in other
  assert calibration.sweep_verifier_tokens(
      [{"method": "verifier", "temperature": 0, "per_example": ver}]) == ver["tokens"]
  assert "token_loss" not in calibration.sweep_losses("spec_cascade", [[5, 1]], ["a"], ["a"],
                                                      None)


@pytest.mark.slow   # six loops, a compilation each
@pytest.mark.parametrize("method,rule", [("spec_cascade", "token_v3"),
                                         ("token_cascade", "chow"), ("oracle_cascade", "diff"),
                                         ("seq_cascade", None), ("lossy", None),
                                         ("bild", None)])
def test_every_loop_with_an_alpha_calibrates(method, rule):
  """Each loop that takes α decodes its whole default grid as per-row α on a
  toy bigram pair; the table follows the grid, cautious first."""
  drafter = random_bigram(jax.random.PRNGKey(1), 16, sharpness=2.0)
  verifier = random_bigram(jax.random.PRNGKey(2), 16, sharpness=2.0)
  res = scj.calibrate(drafter, verifier, [[3, 1]] * 8, method=method, rule=rule,
                      epsilon=0.3, delta=0.1, max_new_tokens=4, progress=False)
  assert [r.alpha for r in res.table] == list(calibration.order_cautious_to_bold(
      calibration.default_alphas(method, rule), method, rule))
  assert all(0.0 <= r.loss_mean <= 1.0 and r.verifier_calls_per_token >= 0 for r in res.table)
  assert res.table[0].verifier_calls_per_token >= res.table[-1].verifier_calls_per_token
  assert res.rule == (rule or "") and "8 calibration examples" in res.guarantee


def test_the_calibrate_job_writes_the_chosen_alpha_and_its_table(tmp_path, monkeypatch):
  """run_calibration (configs/runs/calibrate.gin) on a fake task: a toy pair,
  its texts the ids spelt out, references the verifier's own outputs."""
  from spec_cascade_jax.evaluation import infer
  drafter = random_bigram(jax.random.PRNGKey(1), 16, sharpness=2.0)
  verifier = random_bigram(jax.random.PRNGKey(2), 16, sharpness=2.0)
  ids = [[3, 1]] * 60
  ver = api.generate(None, verifier, np.array(ids[:1], np.int32), method="verifier",
                     max_new_tokens=6).tokens[0]
  ref = WordVocab.decode(infer.cut_at_eos([int(t) for t in ver], (1,)))
  data = infer.TaskData("fake", "validation", ids, ["x"] * 60, [ref] * 60, WordVocab.decode,
                        [])
  monkeypatch.setattr(infer, "check_task", lambda *a, **k: None)
  monkeypatch.setattr(infer, "load_task", lambda *a, **k: data)
  res = calibration.run_calibration(drafter, verifier, output_dir=str(tmp_path), task="fake",
                                    rule="chow", loss="chrf", epsilon=20.0, max_new_tokens=6)
  stored = json.loads((tmp_path / "calibration.json").read_text())
  assert stored["alpha"] == res.alpha and stored["loss"] == "chrf" and stored["n"] == 60
  assert len(stored["table"]) == len(calibration.default_alphas("spec_cascade", "chow"))
  assert (tmp_path / "calibration.md").read_text().startswith("Calibrated α for "
                                                              "spec_cascade[chow]")
  assert (tmp_path / "calibration_cache.json").exists()
  with pytest.raises(UsageError, match="epsilon"):   # before anything loads
    calibration.run_calibration(drafter, verifier, output_dir=str(tmp_path), task="fake",
                                epsilon=2.0)
