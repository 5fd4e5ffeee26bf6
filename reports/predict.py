"""The one place a device model enters the reports.

A predictor is any callable `(method, graph, updates, options) -> {"time_s", "energy_j",
"fits_ram"}` taking one configuration: the method that chose it (TinyTrain's runs include the
Fisher probe), the traced graph (its input shape gives the batch size), the updates
({layer: LayerUpdate}) and the cost options it was planned under. `device_predictor` makes
one from a device (`devices.planning.device_context`): the configuration's step cost
(`devices.stepcost.step_cost`, the same columns the device logs and `ttplan predict` use) put
through the device's calibration. Without a predictor every device-dependent field is None,
never a guess; a device without a calibration gives fits_ram and None for time and energy.
"""

from __future__ import annotations

from collections.abc import Callable

from ttplan.costmodel.errors import SpecError
from ttplan.devices.planning import DeviceContext, prediction
from ttplan.devices.probecost import graph_inputs, probe_macs_of_run
from ttplan.devices.stepcost import step_cost

Predictor = Callable[..., dict]
DEVICE_FIELDS = ("time_s", "energy_j", "fits_ram")


def predict(predictor: Predictor | None, method: str, graph, updates: dict, options) -> dict:
    """{time_s, energy_j, fits_ram} from the predictor, or all None without one."""
    if predictor is None:
        return dict.fromkeys(DEVICE_FIELDS)
    result = predictor(method, graph, updates, options)
    if not isinstance(result, dict) or not set(DEVICE_FIELDS) <= set(result):
        raise SpecError(f"a device predictor must return a dict with {', '.join(DEVICE_FIELDS)}")
    return {k: result[k] for k in DEVICE_FIELDS}


class DevicePredictor:
    """A predictor for one device and workload; remembers each configuration it has costed
    (neighbouring what-if cells often plan the same configuration)."""

    def __init__(self, ctx: DeviceContext, model=None):
        self.ctx = ctx
        self.model = model  # nn.Module or name whose probe a tinytrain run pays (None: the graph's)
        self._seen: dict = {}
        self._probe: dict = {}

    @property
    def label(self) -> str:
        cal = self.ctx.calibration
        return (f"{self.ctx.device.name}, {self.ctx.iterations} iterations x "
                f"{self.ctx.samples} samples"
                + ("" if cal is None else f", calibration {cal.label}"))

    def __call__(self, method: str, graph, updates: dict, options) -> dict:
        key = (method, id(graph), options, frozenset(updates.items()))
        if key not in self._seen:
            cost = step_cost(None, updates, tuple(graph.input_shape), options=options,
                             graph=graph)
            p = prediction(self.ctx, method, cost, sample_shape=tuple(graph.input_shape[1:]),
                           probe_macs=self._probe_macs(method, graph))
            # The graph is kept alive with its entry, so its id() is never reused.
            self._seen[key] = (graph, {"time_s": p["total_s"], "energy_j": p["energy_j"],
                                       "fits_ram": p["fits_ram"]})
        return dict(self._seen[key][1])

    def _probe_macs(self, method: str, graph) -> int | None:
        """The Fisher probe's MACs a tinytrain run pays (devices.probecost), of the model
        (by default the one the graph names) fed the graph's inputs."""
        if method.lower() != "tinytrain" or self.ctx.calibration is None:
            return None
        key = (graph.model_name, tuple(graph.input_shape[1:]))
        if key not in self._probe:
            model = self.model if self.model is not None else graph.model_name
            self._probe[key] = probe_macs_of_run(method, model, graph_inputs(graph),
                                                 self.ctx.samples)
        return self._probe[key]


def device_predictor(ctx: DeviceContext | None, model=None) -> DevicePredictor | None:
    return None if ctx is None else DevicePredictor(ctx, model)


def for_model(predictor: Predictor | None, module) -> Predictor | None:
    """`predictor` bound to the nn.Module whose configurations it predicts (a tinytrain run's
    probe is counted on it); a predictor already bound, or not a DevicePredictor, as it is."""
    if isinstance(predictor, DevicePredictor) and predictor.model is None:
        bound = DevicePredictor(predictor.ctx, module)
        bound._seen = predictor._seen  # the same device and workload: share what is costed
        return bound
    return predictor
