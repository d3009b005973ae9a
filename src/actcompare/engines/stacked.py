"""The stacked engine: S seeds x V variants = M models of one shape trained in one program.

Layout (m = s * V + v: seed-major, so the models of one seed are neighbours):
- first layer, per seed s: one weight (in, V * H0) = the V models' weights side by side. The
  models of one seed see the same batch, so their first layers are ONE wide matmul
  (b, in) @ (in, V * H0): on 2 CPU cores ~1.5x the rate of V separate ones, and one batch gather
  per seed instead of one per model. Stored as (S, in, V * H0), applied with one baddbmm.
- later layers: (M, in, out), one baddbmm for all models.
- activations: a module without parameters or buffers runs once per variant and layer on all of
  its seeds' rows (as a (S * b, H) matrix, so per-sample modules keep their meaning); a module
  with state (PReLU, a user's module with weights) runs per model, its parameters trained too.
Each model's loss is its own batch-mean cross-entropy and the step minimises their sum, so every
model gets exactly its own gradient; Adam, AdamW and SGD update each element on its own, so the
stacked tensors train exactly as M separate models would (up to float32 round-off in the matmuls).
When the variants carry their own optimizer values (``Variant.optimizer``), each model steps with its
own: an lr alone through torch's own step at lr 1 (``optim.per_model_lr``, any optimizer whose update
is linear in lr); betas, eps, weight decay, momentum, dampening through ``optim.StackedOptimizer``.
A model that diverges or fails cannot disturb the others: no operation mixes models' columns.

On CUDA the step (gather, forward, backward, optimizer) is captured once as a CUDA graph and
replayed for every full batch: a step is then one launch instead of ~100 small kernels, and
nothing is read back to the host before the epoch ends. Capture needs an optimizer with a
``capturable`` option (Adam, AdamW, NAdam, RAdam, RMSprop, Adamax); otherwise, or when capture
fails, the engine runs eagerly and says so. Warm-up and capture happen when the engine is built
(so no epoch's time includes them; ``warmup_seconds`` says how long they took), and the warm-up's
training is undone (``capture.warm_up``). The CPU path never touches any of this.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..model import NeuralNetwork, build_model
from . import OptimizerFactory, Recipe, Variant
from .capture import CaptureUnsupported, can_restore, capture, describe, first_error, quiet_uncaptured, warm_up
from .layout import first_layer_owners, stack_activations, stack_linears
from .optim import LINEAR_IN_LR, StackedOptimizer, algorithm_of, leading_owner, per_model_lr, per_model_values

log = logging.getLogger(__name__)

# Activations known to act element by element: they run on (S, b, H) views as they are. Any
# other module sees a (S * b, H) matrix (one row per sample), the shape it would see in a single run.
ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Identity,
    nn.Softsign,
    nn.Tanhshrink,
)
EVAL_CHUNK = 2048  # test images per evaluation pass: bounds memory at M * 2048 * width floats
GRAPH_DEVICES = ("cuda",)  # device types whose steps are captured (the tests add "cpu" with a stub capture)
WARMUP_STEPS = 3  # eager steps before capture (torch.cuda.graphs' recipe)


class StackedEngine:
    name = "stacked"

    def __init__(
        self,
        variants: Sequence[Variant],
        seeds: Sequence[int],
        recipe: Recipe,
        x: torch.Tensor,
        y: torch.Tensor,
        graph: bool = True,
    ) -> None:
        """graph=False: never capture (a reference for the graphed path; on CUDA the optimizer is
        still made ``capturable``, so both paths run the same kernels)."""
        hidden_sizes, optimizer, batch_size = recipe.hidden_sizes, recipe.optimizer, recipe.batch_size
        device = x.device
        self.S, self.V = len(seeds), len(variants)
        self.size = self.S * self.V
        self.batch_size, self.x, self.y = batch_size, x, y
        # Every model is built exactly as a single run builds it (same seed -> same weights). They
        # stay as standalone copies for diagnostics and model.pt (see module()).
        self.nets: list[NeuralNetwork] = [
            build_model(variants[v].activation, hidden_sizes, variants[v].init, seed)
            for seed in seeds
            for v in range(self.V)
        ]
        S, V = self.S, self.V
        self.weights, self.biases = stack_linears(self.nets, S, V, device)
        self.layers = len(self.weights)
        for net in self.nets:
            net.to(device)
        self.acts, act_params, act_owners = stack_activations(self.nets, S, V)
        self._act_modules = [m for row in self.acts for slot in row for m in slot.modules()]
        self.params = [*self.weights, *self.biases, *act_params]
        cls = _optimizer_class(optimizer)
        per_model = [dict(variants[v].optimizer) for _ in seeds for v in range(V)]
        optimizer, cls, self.per_model_optimizer = self._per_model(optimizer, cls, per_model, act_owners)
        has_capturable = "capturable" in inspect.signature(cls).parameters
        self.capturable = device.type == "cuda" and has_capturable  # capturable=True refuses CPU tensors
        self.graphed = graph and device.type in GRAPH_DEVICES and has_capturable and can_restore(cls)
        self.optimizer = optimizer(self.params, capturable=True) if self.capturable else optimizer(self.params)
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]  # batch order
        self._graph: torch.cuda.CUDAGraph | None = None
        self.warmup_seconds = 0.0  # warm-up and capture, done here: not part of any epoch
        if device.type == "cuda" and graph and not self.graphed:
            log.warning(
                "stacked engine on CUDA: %s cannot be captured in a CUDA graph (no 'capturable' "
                "option, or no known fresh state); training eagerly",
                cls.__name__,
            )
        if self.graphed and y.shape[0] >= batch_size:
            tic = time.perf_counter()
            self._capture()
            self.warmup_seconds = time.perf_counter() - tic
            if self._graph is not None:
                log.info(
                    "stacked engine: training step captured as a CUDA graph (%d models; warm-up and "
                    "capture %.2f s, not counted in any epoch)",
                    self.size,
                    self.warmup_seconds,
                )
        elif self.graphed:
            self.graphed = False  # not one full batch: nothing to replay

    def _per_model(self, optimizer: OptimizerFactory, cls: type, per_model: list[dict], act_owners: list):
        """(factory, its class, whether models differ): where the variants carry their own optimizer
        values, a step that gives each model its own (lr alone: torch's own step at lr 1, then each
        model's lr; betas, eps, ...: StackedOptimizer); else the factory as it is."""
        differ = {k for own in per_model for k in set(own) | set(per_model[0]) if own.get(k) != per_model[0].get(k)}
        if not differ:
            return optimizer, cls, False
        shared = {k: q.default for k, q in inspect.signature(cls).parameters.items() if q.default is not q.empty}
        shared.update(getattr(optimizer, "keywords", {}))
        # owners: the model of each element. First layer and its bias: a seed's V models side by side in
        # the columns; later layers (M, ., .): the leading index; activation parameters: one model each.
        cols = first_layer_owners(self.S, self.V, self.weights[0].shape[-1] // self.V)
        owners = [cols, *[None] * (self.layers - 1), cols, *[None] * (self.layers - 1), *act_owners]
        algorithm = algorithm_of(cls, shared)
        if differ == {"lr"} and cls.__name__ in LINEAR_IN_LR:
            lrs = torch.tensor([float({**shared, **own}["lr"]) for own in per_model], dtype=self.params[0].dtype)
            maps = [lrs[(leading_owner(p) if o is None else o).cpu()] for p, o in zip(self.params, owners, strict=True)]
            options = {k: v for k, v in getattr(optimizer, "keywords", {}).items() if k != "lr"}
            return functools.partial(per_model_lr(cls), lr_maps=maps, **options), cls, True
        if algorithm is not None and differ <= {"lr", "betas", "eps", "weight_decay", "momentum", "dampening"}:
            stacked = functools.partial(
                StackedOptimizer,
                models=self.size,
                algorithm=algorithm,
                owners=owners,
                nesterov=bool(shared.get("nesterov", False)),
                **per_model_values(algorithm, shared, per_model),
            )
            return stacked, StackedOptimizer, True
        raise ValueError(
            f"{cls.__name__} with these options cannot give each stacked model its own "
            f"{sorted(differ)}: train these runs in separate groups"
        )

    # ------------------------------------------------------------ forward
    def _activate(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        """h: (S, V, b, H) pre-activations -> (M, b, H) activations."""
        outs = []
        # unbind, not h[:, v]: its backward is one stack, where V selects would each fill a
        # full-size zero gradient and add them up (measured: ~30 % of a CPU step).
        for hv, slot in zip(h.unbind(1), self.acts[layer], strict=True):  # hv: (S, b, H)
            act = slot.shared
            if act is None:  # per model: its own parameters
                outs.append(torch.stack([a(_own(hs)) for hs, a in zip(hv.unbind(0), slot.per_seed, strict=True)]))
            elif isinstance(act, ELEMENTWISE) and not getattr(act, "inplace", False):
                outs.append(act(hv))  # on the strided view itself: no copy (stack below makes one)
            else:  # any other module, all seeds' rows at once as a (S * b, H) batch of samples
                outs.append(act(_own(hv.reshape(-1, hv.shape[-1]))).view(hv.shape))
        return torch.stack(outs, dim=1).reshape(self.size, h.shape[2], h.shape[3])

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        """xb: (S, b, in), the batch of each seed -> logits (M, b, classes)."""
        S, V, b = self.S, self.V, xb.shape[1]
        h = torch.baddbmm(self.biases[0], xb, self.weights[0])  # (S, b, V*H0): one wide matmul per seed
        h = h.view(S, b, V, -1).transpose(1, 2)  # (S, V, b, H0), a view
        for i in range(1, self.layers):
            h = torch.baddbmm(self.biases[i], self._activate(i - 1, h), self.weights[i])  # (M, b, out)
            if i < self.layers - 1:
                h = h.view(S, V, b, -1)
        return h

    # ------------------------------------------------------------ training
    def _step(self, idx: torch.Tensor, loss_sum: torch.Tensor, correct: torch.Tensor, zero: bool) -> None:
        """One optimizer step of every model on its seed's batch idx[s] (S, b) of training rows."""
        S, b = idx.shape
        flat = idx.reshape(-1)
        xb = self.x.index_select(0, flat).view(S, b, -1)
        yb = self.y.index_select(0, flat).view(S, 1, b).expand(S, self.V, b).reshape(self.size, b)
        logits = self.forward(xb)
        losses = F.cross_entropy(logits.reshape(self.size * b, -1), yb.reshape(-1), reduction="none")
        losses = losses.view(self.size, b).mean(1)  # (M,): each model's own batch-mean loss
        if zero:
            self.optimizer.zero_grad(set_to_none=not self.graphed)
        losses.sum().backward()
        self.optimizer.step()
        with torch.no_grad():  # summed on the device; read back once per epoch
            loss_sum.add_(losses.detach(), alpha=b)
            correct.add_((logits.argmax(-1) == yb).sum(1))

    def train_epoch(self) -> tuple[list[float], list[float]]:
        for mod in self._act_modules:
            mod.train()
        n, bs, device = self.y.shape[0], self.batch_size, self.y.device
        # Each seed's permutation from its own CPU generator: the batch order of a single run.
        order = torch.stack([torch.randperm(n, generator=g) for g in self.generators]).to(device)  # (S, n)
        full = n // bs * bs
        if self._graph is not None:
            self._loss_sum.zero_()
            self._correct.zero_()
            for start in range(0, full, bs):
                self._idx.copy_(order[:, start : start + bs])
                self._graph.replay()
            loss_sum, correct = self._loss_sum, self._correct
            rest = range(full, n, bs)
        else:
            loss_sum = torch.zeros(self.size, device=device)
            correct = torch.zeros(self.size, dtype=torch.long, device=device)
            rest = range(0, n, bs)
        with quiet_uncaptured() if self.capturable else contextlib.nullcontext():
            for start in rest:  # eager steps: every step without a graph; with one, the last partial batch
                self._step(order[:, start : start + bs], loss_sum, correct, zero=True)
        return (loss_sum / n).tolist(), (correct.double() / n).tolist()

    def _capture(self) -> None:
        """Warm up on a side stream, undo the warm-up's training, record one full-batch step as a CUDA
        graph on the same stream (torch.cuda.graphs' whole-network recipe). A failed capture is logged
        with its first error and the engine trains eagerly; an error in the warm-up itself is the
        model's (or out of memory) and is raised as it is."""
        device, cuda = self.y.device, self.y.device.type == "cuda"
        self._idx = torch.zeros(self.S, self.batch_size, dtype=torch.long, device=device)
        self._loss_sum = torch.zeros(self.size, device=device)
        self._correct = torch.zeros(self.size, dtype=torch.long, device=device)
        stream = torch.cuda.Stream(device) if cuda else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))
        try:
            warm_up(
                lambda: self._step(self._idx, self._loss_sum, self._correct, zero=True),
                self.optimizer,
                self._act_modules,
                WARMUP_STEPS,
                stream,
            )
        except CaptureUnsupported as err:
            self.graphed = False
            log.warning("stacked engine: %s; training eagerly", err)
            return
        finally:
            if stream is not None:
                torch.cuda.current_stream(device).wait_stream(stream)
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad from the graph's pool
        try:
            self._graph = capture(lambda: self._step(self._idx, self._loss_sum, self._correct, zero=False), stream)
        except Exception as err:  # capture is an optimisation: say so and train eagerly
            self.graphed = False
            self._graph = None
            self.optimizer.zero_grad(set_to_none=True)  # drop gradients allocated by the failed capture
            first = first_error(err)
            later = "" if first is err else f"; then {describe(err)}"
            log.warning("stacked engine: CUDA graph capture failed (%s%s); training eagerly", describe(first), later)

    # ------------------------------------------------------------ evaluation and export
    @torch.inference_mode()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        for mod in self._act_modules:
            mod.eval()
        loss = torch.zeros(self.size, device=y.device)
        correct = torch.zeros(self.size, dtype=torch.long, device=y.device)
        for start in range(0, y.shape[0], EVAL_CHUNK):
            xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            logits = self.forward(xb.unsqueeze(0).expand(self.S, -1, -1))  # (M, b, C)
            ym = yb.expand(self.size, -1)
            loss += (
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ym.reshape(-1), reduction="none")
                .view(self.size, -1)
                .sum(1)
            )
            correct += (logits.argmax(-1) == ym).sum(1)
        n = y.shape[0]
        return (loss / n).tolist(), (correct.double() / n).tolist()

    @torch.no_grad()
    def module(self, m: int) -> NeuralNetwork:
        s, v = divmod(m, self.V)
        net = self.nets[m]
        lins = net.linears()
        h0 = lins[0].out_features
        lins[0].weight.copy_(self.weights[0][s, :, v * h0 : (v + 1) * h0].T)
        lins[0].bias.copy_(self.biases[0][s, 0, v * h0 : (v + 1) * h0])
        for i in range(1, self.layers):
            lins[i].weight.copy_(self.weights[i][m].T)
            lins[i].bias.copy_(self.biases[i][m, 0])
        for layer, (_, act) in enumerate(net.hidden_layers()):
            trained = self.acts[layer][v]
            if trained.shared is None:  # per-seed modules: their trained state
                act.load_state_dict(trained.per_seed[s].state_dict())
        return net


def _own(x: torch.Tensor) -> torch.Tensor:
    """x itself when it is a fresh tensor, else a copy: autograd forbids in-place activations
    (inplace=true) on the views that unbind returns. Copying costs S * b * H floats."""
    return x.clone() if x._is_view() else x


def _optimizer_class(factory: OptimizerFactory) -> type:
    return getattr(factory, "func", factory)  # a functools.partial from Hydra, or the class
