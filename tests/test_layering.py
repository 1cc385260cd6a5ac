"""The package's import graph: no circles, layers that point down, no private
names across packages (docs/design.md §5).

Every module of spec_cascade_jax is parsed (ast, nothing is imported), and
every import in it counts, at module level or inside a function: a lazy import
is still an arrow. `from pkg import name` is an arrow to the submodule
pkg.name where that is a module, else to pkg itself.

The exceptions are listed by name, each with its reason. An exception that no
longer occurs fails the test too, so the lists shrink as the code is fixed.
"""

from __future__ import annotations

import ast
import collections
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "spec_cascade_jax"

# Layer of each package (the first name below spec_cascade_jax; "" is the
# package's own __init__). A module may import its own package and any lower
# layer; the entry points may also import each other.
LAYERS = {
    "models": 0, "data": 0,                              # bottom
    "decoding": 1,                                       # core
    "parallel": 2, "training": 2, "evaluation": 2,       # uses
    "main": 3, "tasks": 3, "testing": 3, "generation": 3, "": 3,   # entry points
}
ENTRY_LAYER = 3

# (importer, imported) arrows allowed against the layering.
ALLOWED_ARROWS = {
    ("spec_cascade_jax.training.recipes", "spec_cascade_jax.evaluation.metrics"):
        "training validates with the project's one BLEU, evaluation.metrics.bleu "
        "(docs/design.md §6.2); evaluation never imports training",
}
# What decoding may import outside its own package: the model protocol, no more
# (docs/design.md §5). Not data: a helper that needs a vocabulary or padding
# belongs to a consumer above decoding.
DECODING_MAY_IMPORT = {"spec_cascade_jax.models.protocol"}
# The one module that may import gin: configuration stays at the edge.
GIN_IMPORTERS = {"spec_cascade_jax.main"}
# Arrows left out of the search for circles; each one closes a known circle.
ALLOWED_CIRCLE_ARROWS: dict = {}
# (importer, imported module, private name) uses allowed across packages.
ALLOWED_PRIVATE: dict = {}


def _modules() -> dict[str, str]:
  """{dotted module name: file path} of every module of the package."""
  out = {}
  for folder, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
    for f in sorted(files):
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
        out[name.removesuffix(".__init__")] = path
  return out


MODULES = _modules()


def _is_private(name: str) -> bool:
  return name.startswith("_") and not name.startswith("__")


def package_of(module: str) -> str:
  """spec_cascade_jax.decoding.api -> "decoding"; spec_cascade_jax -> ""."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def _outside_imports(path: str) -> set[str]:
  """The top-level names of every module `path` imports from outside the package."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name.split(".")[0] for a in node.names}
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
      out.add(node.module.split(".")[0])
  return out - {PACKAGE}


def _scan(module: str, path: str):
  """(arrows {imported module}, private uses {(imported module, name)})."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), filename=path)
  is_init = path.endswith("__init__.py")
  arrows, private = set(), set()
  bound = {}  # local name -> package module it refers to
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name in MODULES:
          arrows.add(a.name)
          if a.asname:
            bound[a.asname] = a.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against this module's package
        base = module.split(".")[:None if is_init else -1]
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module or ""
      if source not in MODULES:
        continue
      for a in node.names:
        sub = f"{source}.{a.name}"
        if sub in MODULES:
          arrows.add(sub)
          bound[a.asname or a.name] = sub
        else:
          arrows.add(source)
          if _is_private(a.name):
            private.add((source, a.name))
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in bound and _is_private(node.attr)):
      private.add((bound[node.value.id], node.attr))
  arrows.discard(module)  # main.py imports itself under __main__ on purpose
  return arrows, private


GRAPH, PRIVATE = {}, {}
for _m, _p in MODULES.items():
  GRAPH[_m], PRIVATE[_m] = _scan(_m, _p)


def test_every_package_has_a_layer():
  assert {package_of(m) for m in MODULES} <= set(LAYERS), (
      "a new package or top-level module: give it a layer in LAYERS "
      "(and a place in docs/design.md §5)")


def test_the_scan_sees_lazy_and_module_level_imports():
  # Module level (sweep) and inside a function (generation.generate's mesh= branch).
  assert "spec_cascade_jax.evaluation.results" in GRAPH["spec_cascade_jax.evaluation.sweep"]
  assert "spec_cascade_jax.parallel" in GRAPH["spec_cascade_jax.generation"]
  # Private names are seen (this use stays inside one package, so it is allowed).
  assert ("spec_cascade_jax.parallel.partitioning", "_check_mesh") in PRIVATE[
      "spec_cascade_jax.parallel.generate"]


def _layer_breaks():
  out = set()
  for src, targets in GRAPH.items():
    for tgt in targets:
      ps, pt = package_of(src), package_of(tgt)
      if ps == pt or LAYERS[pt] < LAYERS[ps]:
        continue
      if LAYERS[ps] == LAYERS[pt] == ENTRY_LAYER:
        continue
      out.add((src, tgt))
  return out


def test_imports_point_down_the_layers():
  breaks = _layer_breaks()
  unexpected = sorted(breaks - set(ALLOWED_ARROWS))
  assert not unexpected, (
      "imports against the layering (models, data < decoding < parallel, training, "
      f"evaluation < main, tasks, testing; docs/design.md §5): {unexpected}")
  stale = sorted(set(ALLOWED_ARROWS) - breaks)
  assert not stale, f"listed in ALLOWED_ARROWS but gone: remove them {stale}"


def _circles(graph):
  """Strongly connected components of more than one module (Tarjan)."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []
  counter = [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def _decoding_breaks(graph):
  return sorted((src, tgt) for src, targets in graph.items() if package_of(src) == "decoding"
                for tgt in targets
                if package_of(tgt) != "decoding" and tgt not in DECODING_MAY_IMPORT)


def test_decoding_depends_on_nothing_but_the_model_protocol():
  breaks = _decoding_breaks(GRAPH)
  assert not breaks, (
      "decoding imports only decoding and the model protocol (docs/design.md §5): move "
      f"what needs data, a model family or a vocabulary to its consumer: {breaks}")
  planted = {m: set(t) for m, t in GRAPH.items()}
  planted["spec_cascade_jax.decoding.greedy"].add("spec_cascade_jax.data.vocab")
  assert _decoding_breaks(planted) == [("spec_cascade_jax.decoding.greedy",
                                        "spec_cascade_jax.data.vocab")]


def test_only_main_imports_gin():
  importers = sorted(m for m, path in MODULES.items() if "gin" in _outside_imports(path))
  assert importers == sorted(GIN_IMPORTERS), (
      "library modules never import gin (docs/design.md §5): gin files name them through "
      f"dynamic registration; main.py alone parses the configs. Importers: {importers}")


def test_no_circles():
  pruned = {m: {t for t in ts if (m, t) not in ALLOWED_CIRCLE_ARROWS}
            for m, ts in GRAPH.items()}
  assert not _circles(pruned), "modules that import each other (directly or round a loop)"
  stale = sorted(a for a in ALLOWED_CIRCLE_ARROWS if a[1] not in GRAPH.get(a[0], ()))
  assert not stale, f"listed in ALLOWED_CIRCLE_ARROWS but gone: remove them {stale}"
  closing = {a for a in ALLOWED_CIRCLE_ARROWS if any(a[0] in c and a[1] in c
                                                      for c in _circles(GRAPH))}
  assert closing == set(ALLOWED_CIRCLE_ARROWS), (
      f"these allowed arrows close no circle any more: {set(ALLOWED_CIRCLE_ARROWS) - closing}")


def test_no_private_names_across_packages():
  crossing = {(src, tgt, name) for src, uses in PRIVATE.items() for tgt, name in uses
              if package_of(src) != package_of(tgt)}
  unexpected = sorted(crossing - set(ALLOWED_PRIVATE))
  assert not unexpected, f"private names used from another package: {unexpected}"
  stale = sorted(set(ALLOWED_PRIVATE) - crossing)
  assert not stale, f"listed in ALLOWED_PRIVATE but gone: remove them {stale}"


def test_circle_search_finds_a_planted_circle():
  graph = collections.defaultdict(set, {m: set(t) for m, t in GRAPH.items()})
  graph["spec_cascade_jax.models.t5.model"].add("spec_cascade_jax.decoding.kernel")
  graph["spec_cascade_jax.decoding.kernel"].add("spec_cascade_jax.models.t5.model")
  assert ["spec_cascade_jax.decoding.kernel",
          "spec_cascade_jax.models.t5.model"] in _circles(graph)
