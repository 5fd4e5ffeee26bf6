"""SparseUpdate (Lin et al., 2022), the paper's strongest baseline: its schemes and its export.

sparseupdate
  released  for the zoo models, the schemes SparseUpdate released
            (resources/tiny_training_schemes.json): conv indices count every conv in
            execution order, stem = 0 (a conv module called twice is one conv); a ratio is the fraction of a conv's INPUT channels
            whose weights are updated, the first round(ratio·Cin) of them (channel_axis 1);
            biases of the last n_bias_update convs. When a budget is given and the scheme does
            not fit, it is shrunk until it does, the way SparseUpdate's smaller-budget schemes
            differ from larger ones: first at the released bias depth, then one conv
            shallower at a time (keeping only weight layers inside the bias range); at each
            depth weight layers are dropped earliest first until one channel per layer fits,
            then all ratios are scaled by the largest common factor that fits (bisection).
  search    for any other model (or when asked), an evolutionary search in SparseUpdate's
            space: a bias depth n (biases of the last n MAC layers) and, per MAC layer, an
            input-channel ratio in {0, 1/8, 1/4, 1/2, 1}; fitness = a proxy of accuracy gain,
            Σ ratio·P_i (Fisher potential) when a probe is given, else the number of
            parameters updated; only configurations within budget (per `evaluate`) count.
            Seeded (`random.Random(seed)`), a fixed number of costed configurations.
"""

from __future__ import annotations

import json
import math
import random
from importlib import resources

from ttplan.costmodel.config import LayerUpdate, channel_count, updatable_layers
from ttplan.costmodel.errors import SpecError
from ttplan.costmodel.graph import MAC_KINDS, WHOLE_LAYER_KINDS, LayerGraph

from .baselines import distinct_layers
from ..policy.file import Policy, check_against_graph
from .select import Budget, Coster, Selection

SEARCH_RATIOS = (0.0, 0.125, 0.25, 0.5, 1.0)
SEARCH_EVALUATIONS = 300  # "a few hundred", as the brief of SparseUpdate's ES (which runs thousands)
SEARCH_POPULATION = 16
BISECTION_STEPS = 12


def released_schemes() -> dict:
    text = resources.files("ttplan.planner").joinpath("resources/tiny_training_schemes.json").read_text("utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def released_scheme_for(graph: LayerGraph, model_name: str, memory_bytes: int | None):
    """(budget key in KB, scheme) of a zoo model, or None if none applies to this graph.
    With a memory budget, the scheme searched for the largest budget not above it, else the
    largest one."""
    schemes = released_schemes().get(model_name)
    if not schemes:
        return None
    convs = distinct_layers(n for n in graph.mac_layers() if n.kind == "conv")
    keys = sorted(schemes, key=float)
    if memory_bytes is not None:
        below = [k for k in keys if float(k) * 1000 <= memory_bytes]
        keys = below or keys[:1]
    key = keys[-1]
    scheme = schemes[key]
    if max(scheme["weight_update_idx"]) >= len(convs) or scheme["n_bias_update"] > len(convs):
        return None  # a modified model: the indices would point at other layers
    return key, scheme


def _scheme_updates(convs, n_bias: int, weights: list[tuple[int, float]], scale: float):
    updates = {c.name: LayerUpdate(weight=False, bias=True) for c in convs[len(convs) - n_bias:]}
    for idx, ratio in weights:
        node = convs[idx]
        size = channel_count(node, 1)
        k = min(size, max(1, math.floor(scale * ratio * size + 0.5)))
        updates[node.name] = LayerUpdate(weight=True, bias=node.name in updates,
                                         channels=None if k == size else tuple(range(k)),
                                         channel_axis=1)
    return updates


def sparseupdate_released(coster: Coster, key: str, scheme: dict, budget: Budget) -> Selection | None:
    """The released scheme, shrunk to the budget if needed (see the module docstring)."""
    convs = distinct_layers(n for n in coster.graph.mac_layers() if n.kind == "conv")
    weights = list(zip(scheme["weight_update_idx"], scheme["weight_update_ratio"]))
    n_bias = scheme["n_bias_update"]
    start = coster.calls

    def result(updates, how):
        ev = coster.evaluate(updates)
        return Selection(updates, 0.0, ev, coster.calls - start,
                         f"released SparseUpdate scheme for {key} KB{how}")

    full = _scheme_updates(convs, n_bias, weights, 1.0)
    if budget.fits(coster.evaluate(full)):
        return result(full, "")
    for depth in range(n_bias, 0, -1):
        # At a shallower depth, only the weight layers inside the bias range stay.
        inside = weights if depth == n_bias else [w for w in weights if w[0] >= len(convs) - depth]
        for drop in range(len(inside) + 1):
            kept = inside[drop:]
            if not budget.fits(coster.evaluate(_scheme_updates(convs, depth, kept, 0.0))):
                continue
            low, high = 0.0, 1.0
            for _ in range(BISECTION_STEPS if kept else 0):
                mid = (low + high) / 2
                if budget.fits(coster.evaluate(_scheme_updates(convs, depth, kept, mid))):
                    low = mid
                else:
                    high = mid
            how = [f"biases of the last {depth} convs"] if depth != n_bias else []
            how += [f"{len(weights) - len(kept)} weight layer(s) dropped"] if len(kept) < len(weights) else []
            how += [f"ratios scaled by {low:.4f}"] if kept and low < 1 else []
            return result(_scheme_updates(convs, depth, kept, low), f", shrunk to fit: {'; '.join(how)}")
    return None


# ------------------------------------------------------------------------ evolutionary search

def sparseupdate_search(coster: Coster, budget: Budget, potential: dict[str, float] | None,
                        seed: int, evaluations: int = SEARCH_EVALUATIONS) -> Selection | None:
    """SparseUpdate-style evolutionary search (module docstring). None if nothing fits."""
    layers = distinct_layers(n for n in coster.costed.ops() if n.kind in MAC_KINDS)
    if not layers:
        raise SpecError(f"{coster.graph.model_name} has no conv/linear layer to train")
    start = coster.calls
    search = _GenomeSearch(layers, coster, budget, potential, random.Random(seed))
    search.evolve(evaluations)
    fitness_of = search.fitness_of
    feasible = [g for g in fitness_of if fitness_of[g] > -math.inf and search.updates_of(g)]
    if not feasible:
        return None
    best = max(feasible, key=lambda g: (fitness_of[g], g))
    updates = search.updates_of(best)
    ev = coster.evaluate(updates)
    proxy_name = "Σ ratio·Fisher potential" if potential is not None else "parameters updated"
    return Selection(updates, 0.0, ev, coster.calls - start,
                     f"evolutionary search: {len(fitness_of)} configurations, seed {seed}, "
                     f"proxy {proxy_name}")


class _GenomeSearch:
    """The evolutionary search: its space, operators and generations. A genome is (n_bias, ratios): the biases of the
    last n_bias layers, and per layer an index into SEARCH_RATIOS (the share of its input
    channels updated). Every genome evaluated is remembered in `fitness_of` (its proxy, or
    -inf when over budget); `rng` draws every random choice, in the search's order."""

    def __init__(self, layers, coster: Coster, budget: Budget,
                 potential: dict[str, float] | None, rng: random.Random):
        self.layers, self.coster, self.budget = layers, coster, budget
        self.potential, self.rng = potential, rng
        self.count = len(layers)
        self.fitness_of: dict[tuple, float] = {}

    def evolve(self, evaluations: int) -> None:
        """Generations until `evaluations` genomes have been evaluated (or 20× that many
        tries): the fitter half of the feasible genomes breed the next population. What it
        found is in `fitness_of`."""
        rng, fitness_of = self.rng, self.fitness_of
        population = [(1, (0,) * self.count)] + \
            [self.random_genome() for _ in range(SEARCH_POPULATION - 1)]
        tries = 0
        while len(fitness_of) < evaluations and tries < 20 * evaluations:
            tries += 1
            for genome in population:
                self.fitness(genome)
            feasible = sorted({g for g in fitness_of if fitness_of[g] > -math.inf},
                              key=lambda g: (-fitness_of[g], g))
            parents = feasible[:SEARCH_POPULATION // 2] or [self.random_genome() for _ in range(2)]
            population = []
            while len(population) < SEARCH_POPULATION:
                a, b = rng.choice(parents), rng.choice(parents)
                child = self.mutate(self.crossover(a, b)) if rng.random() < 0.7 \
                    else self.mutate(a)
                if child not in fitness_of:
                    population.append(child)
                elif rng.random() < 0.05:
                    population.append(self.random_genome())
                tries += 1
                if tries >= 20 * evaluations:
                    break

    def updates_of(self, genome) -> dict:
        n_bias, ratios = genome
        updates = {}
        for i, node in enumerate(self.layers):
            bias = i >= self.count - n_bias and node.bias_numel > 0
            ratio = SEARCH_RATIOS[ratios[i]]
            if ratio:
                size = channel_count(node, 1)
                k = size if node.kind in WHOLE_LAYER_KINDS else \
                    min(size, max(1, math.floor(ratio * size + 0.5)))
                updates[node.name] = LayerUpdate(True, bias, None if k == size else tuple(range(k)), 1)
            elif bias:
                updates[node.name] = LayerUpdate(weight=False, bias=True)
        return updates

    def proxy(self, genome) -> float:
        n_bias, ratios = genome
        value = 0.0
        for i, node in enumerate(self.layers):
            ratio = SEARCH_RATIOS[ratios[i]]
            if self.potential is not None:
                value += ratio * self.potential.get(node.name, 0.0)
            else:
                value += ratio * node.weight_numel + (node.bias_numel if i >= self.count - n_bias else 0)
        # Among equal proxies prefer more biases: they are SparseUpdate's cheap first step.
        return value + 1e-9 * n_bias

    def fitness(self, genome) -> float:
        if genome not in self.fitness_of:
            fits = self.budget.fits(self.coster.evaluate(self.updates_of(genome)))
            self.fitness_of[genome] = self.proxy(genome) if fits else -math.inf
        return self.fitness_of[genome]

    def random_genome(self):
        # Start sparse and near the output, where SparseUpdate's schemes live.
        rng, count = self.rng, self.count
        ratios = [0] * count
        for _ in range(rng.randint(0, 3)):
            ratios[rng.randrange(count // 2, count)] = rng.randrange(1, len(SEARCH_RATIOS))
        return rng.randint(0, max(1, count // 3)), tuple(ratios)

    def mutate(self, genome):
        rng, count = self.rng, self.count
        n_bias, ratios = genome[0], list(genome[1])
        if rng.random() < 0.5:
            n_bias = min(count, max(0, n_bias + rng.choice((-3, -2, -1, 1, 2, 3))))
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(count)
            ratios[i] = min(len(SEARCH_RATIOS) - 1, max(0, ratios[i] + rng.choice((-1, 1))))
        return n_bias, tuple(ratios)

    def crossover(self, a, b):
        rng = self.rng
        ratios = tuple(x if rng.random() < 0.5 else y for x, y in zip(a[1], b[1]))
        return (a[0] if rng.random() < 0.5 else b[0]), ratios


# ------------------------------------------------------------------------------ export

def export_sparseupdate(policy: Policy, graph: LayerGraph, notes: list[str] | None = None) -> dict:
    """The policy in SparseUpdate's `backward_config` form (`backward_config`), with each
    approximation it makes appended to `notes` when a list is given."""
    config, found = backward_config(policy, graph)
    if notes is not None:
        notes.extend(found)
    return config


def backward_config(policy: Policy, graph: LayerGraph) -> tuple[dict, tuple[str, ...]]:
    """(config, notes): the policy in SparseUpdate's `backward_config` form, and what the
    export could not express exactly.

    Conv indices count every conv in execution order, the stem being 0 (as the released
    schemes do). SparseUpdate can only say "the biases of the last n convs" and "the first
    ratio·Cin input channels of these convs", so an export can be lossy; each approximation is
    a note: a bias set that is not a suffix (n_bias_update then covers the earliest one and
    everything after it), an output-channel selection (exported as its fraction), and layers
    that are not convs (a classifier, which SparseUpdate always trains; norm layers).
    """
    check_against_graph(policy, graph)
    # One conv per module (a module called twice is one conv), as the released schemes count.
    convs = [n.name for n in distinct_layers(n for n in graph.mac_layers() if n.kind == "conv")]
    index = {name: i for i, name in enumerate(convs)}
    nodes = {n.name: n for n in updatable_layers(graph)}
    notes, weights, bias_idx = [], [], []
    for layer in policy.layers:
        name = layer["name"]
        if name not in index:
            notes.append(f"{name} is not a conv: SparseUpdate's format has no place for it")
            continue
        if layer["update_bias"]:
            bias_idx.append(index[name])
        if layer["update_weight"]:
            ratio, note = _weight_ratio(layer, nodes[name])
            notes.extend(note)
            weights.append((index[name], ratio))
    n_bias = len(convs) - min(bias_idx) if bias_idx else 0
    if bias_idx and len(bias_idx) != n_bias:
        notes.append(f"n_bias_update={n_bias} also updates {n_bias - len(bias_idx)} conv "
                     "bias(es) the policy leaves frozen (SparseUpdate updates a suffix)")
    if not weights and not n_bias:
        _refuse_inexpressible(policy)
    weights.sort()
    return ({"n_bias_update": n_bias, "manual_weight_idx": [i for i, _ in weights],
             "weight_update_ratio": [r for _, r in weights]}, tuple(notes))


def _weight_ratio(layer: dict, node) -> tuple[float, tuple[str, ...]]:
    """(ratio, notes): the share of a conv's input channels its weight update covers, and a
    note when the policy's channels are not a prefix of the input channels."""
    if layer["channels"] is None:
        return 1.0, ()
    name, count = layer["name"], len(layer["channels"])
    size = channel_count(node, layer["channel_axis"])
    ratio = count / size
    prefix = layer["channels"] == list(range(count))
    if layer["channel_axis"] == 1 and prefix:
        return ratio, ()
    return ratio, (f"{name}: {count} of {size} "
                   f"{'output' if layer['channel_axis'] == 0 else 'input'} channels "
                   f"exported as ratio {ratio:g} of the first input channels",)


def _refuse_inexpressible(policy: Policy) -> None:
    """Never an empty backward_config with success: say what the format cannot express."""
    trained = [layer["name"] for layer in policy.layers
               if layer["update_weight"] or layer["update_bias"]]
    if not trained:
        raise SpecError("the policy trains no layer: there is no backward_config to export")
    shown = ", ".join(trained[:5]) + (f" and {len(trained) - 5} more" if len(trained) > 5
                                      else "")
    raise SpecError(f"SparseUpdate's backward_config can express none of this policy: it "
                    f"trains {shown}, and the format indexes convs only")
