"""Benchmark: ms per EMA update and its ratio to the memory-bound floor, measured side by side.

Floor: one ``lerp_`` over a single flat fp32 buffer with the model's element count (reads
shadow and live, writes shadow: 12 bytes per parameter). Compared, per model:

* ``dict loop``: the classic blog-post EMA, ``shadow[n] = (1 − β)·p + β·shadow[n]`` per tensor;
* ``AveragedModel``: ``torch.optim.swa_utils.AveragedModel`` with
  ``multi_avg_fn=get_ema_multi_avg_fn(β)``;
* ``ema_core``: ``EMA.update`` without statistics;
* ``ema_core stats step``: an update that also computes all weight statistics;
* ``ema_core stats_every=50``: mean over 50 consecutive updates, one of them a stats step;
* ``naive foreach stats``: the same statistics with plain foreach ops (allocating differences);
* ``ema_core 2 shadows``: two decays in one object, as a ratio to twice the floor;
* ``PostHocEMA``: σ_rel 0.05 and 0.10 (the post-hoc EMA's two shadows) on a step without
  a snapshot, as a ratio to twice the floor (snapshot and synthesis costs:
  ``bench/posthoc.py``);
* ``binding check alone``: the per-update test that the model still holds the tensors the
  EMA reads (``ema_core._binding.Binding.unchanged``), already inside every update above;
* ``binding check, full compare``: what that test costs once after a parameter, buffer or
  module was registered anywhere in the process (the whole module tree compared);
* ``ema_core, lerp only``: the same update without the step bookkeeping and the binding check
  (``ShadowStore.update_``), so that ``no stats`` minus this row is their cost, side by side;
* ``timm ModelEmaV3`` (when timm is installed): ``update(model)``.

``--device cuda`` runs everything on the GPU; every clock read then synchronizes the device,
so the times are GPU times.

Usage: ``python bench/ema_update.py [--quick] [--threads N] [--repeats R] [--clock wall|cpu]
[--device cpu|cuda] [--only MODEL,...] [--out FILE]``. The thread count is fixed with
``torch.set_num_threads`` (default 1: the machine is shared and a single memory-bound thread
gives the steadiest ratios). Each timing is paired with a floor timing taken just before it;
the table shows the median ms and the median of the paired ratios.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ema_core.ema import EMA
from ema_core.posthoc_ema import PostHocEMA

DECAY = 0.9999


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck block (1×1, 3×3, 1×1 convolutions with BatchNorm)."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout else nn.Identity()
        )


def resnet50_sized() -> nn.Module:
    """ResNet-50 layout ([3, 4, 6, 3] bottlenecks, 1000 classes): 25.6 M parameters."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers.append(nn.Linear(cin, 1000))
    return nn.Sequential(*layers)


def mlp(width: int, depth: int) -> nn.Module:
    """depth × Linear(width, width): width = 3162, depth = 10 gives 100 M parameters."""
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth)])


def transformer(d_model: int, layers: int) -> nn.Module:
    """Encoder stack: 12 small tensors per layer (LayerNorm, biases, projections)."""
    layer = nn.TransformerEncoderLayer(d_model, 8, 4 * d_model, batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def paired(
    fn: Callable[[], None], floor: Callable[[], None], repeats: int, clock: Callable[[], float]
) -> tuple[float, float]:
    """Median ms of ``fn`` and median of its per-repeat ratio to ``floor`` timed just before.

    Pairing each measurement with a floor measurement taken right before it cancels most of
    the drift of a busy machine.
    """
    fn()
    floor()
    times, ratios = [], []
    for _ in range(repeats):
        a = clock()
        floor()
        b = clock()
        fn()
        c = clock()
        times.append(c - b)
        ratios.append((c - b) / (b - a))
    return 1e3 * statistics.median(times), statistics.median(ratios)


def dict_loop(model: nn.Module) -> Callable[[], None]:
    """The classic blog-post EMA: a dict of clones, a new tensor per parameter per step."""
    shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    def update() -> None:
        with torch.no_grad():
            for n, p in model.named_parameters():
                shadow[n] = ((1.0 - DECAY) * p + DECAY * shadow[n]).clone()

    return update


def naive_foreach_stats(model: nn.Module) -> Callable[[], None]:
    """Statistics with plain foreach ops: allocate differences, norms, then update."""
    live = [p.detach() for p in model.parameters()]
    shadow = [t.clone() for t in live]

    def update() -> None:
        diff = torch._foreach_sub(live, shadow)
        norms = torch._foreach_norm(diff) + torch._foreach_norm(live)
        torch._foreach_lerp_(shadow, live, 1.0 - DECAY)
        after = torch._foreach_sub(live, shadow)
        norms += torch._foreach_norm(after) + torch._foreach_norm(shadow)
        torch.stack(norms).tolist()

    return update


class _Unchecked:
    """Stands in for ``Binding`` to time an update without the check."""

    @staticmethod
    def unchanged() -> bool:
        return True


def bench_model(
    name: str, model: nn.Module, repeats: int, clock: Callable[[], float]
) -> list[tuple[str, float, float]]:
    """(method, ms per update, ratio to the floor) rows for one model."""
    n = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    flat_s, flat_l = torch.randn(n, device=device), torch.randn(n, device=device)

    def floor() -> None:
        flat_s.lerp_(flat_l, 1.0 - DECAY)

    floor_ms, _ = paired(floor, floor, repeats, clock)
    rows = [("floor: one lerp_ over a flat buffer", floor_ms, 1.0)]

    def row(label: str, fn: Callable[[], None], per_call: int = 1, floors: int = 1) -> None:
        """Time ``fn`` (``per_call`` updates) against ``per_call`` floors, paired."""

        def floors_() -> None:
            for _ in range(per_call):
                floor()

        reps = repeats if per_call == 1 else max(3, repeats // 3)
        ms, ratio = paired(fn, floors_, reps, clock)
        rows.append((label, ms / per_call, ratio / floors))

    row("dict loop (blog-post EMA)", dict_loop(model))
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY))
    averaged.update_parameters(model)  # the first call only copies
    row("AveragedModel + get_ema_multi_avg_fn", lambda: averaged.update_parameters(model))
    ema = EMA(model, DECAY)
    row("ema_core, no stats", lambda: ema.update(model))
    binding = ema._store.binding
    row("binding check alone (part of every update)", binding.unchanged)
    row("binding check, full compare (after a registration)", binding.same_objects)
    ema._store.binding = _Unchecked()  # type: ignore[assignment]
    row("ema_core, no stats, binding check skipped", lambda: ema.update(model))
    ema._store.binding = binding
    ema.stats_every = 1
    row("ema_core, stats step", lambda: ema.update(model))
    ema.stats_every = 50

    def fifty() -> None:
        for _ in range(50):
            ema.update(model)

    row("ema_core, mean over 50 steps (stats_every=50)", fifty, per_call=50)
    row("naive foreach stats step", naive_foreach_stats(model))
    two = EMA(model, [0.999, DECAY])
    row("ema_core, 2 shadows (ratio to 2× floor)", lambda: two.update(model), floors=2)
    with tempfile.TemporaryDirectory() as folder:
        posthoc = PostHocEMA(model, folder, snapshot_every=10**9)
        row("PostHocEMA σ_rel 0.05 + 0.10, no snapshot (ratio to 2× floor)",
            lambda: posthoc.update(model), floors=2)
    try:
        from timm.utils.model_ema import ModelEmaV3
    except ImportError:
        return rows
    timm_ema = ModelEmaV3(model, decay=DECAY)
    row("timm ModelEmaV3", lambda: timm_ema.update(model))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, few repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall",
        help="wall (perf_counter) or cpu (thread_time: ignores time the thread is descheduled)",
    )
    parser.add_argument("--only", default="", help="comma-separated model names to run")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default="", help="also write the markdown table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        models = {"resnet50-sized": resnet50_sized, "mlp-10M": lambda: mlp(1000, 10),
                  "transformer-small": lambda: transformer(128, 12)}
        repeats = 5
    else:
        models = {"resnet50-sized": resnet50_sized, "mlp-100M": lambda: mlp(3162, 10),
                  "transformer-many-small": lambda: transformer(256, 24)}
        repeats = args.repeats
    wanted = set(filter(None, args.only.split(",")))
    clock = CLOCKS[args.clock]
    if args.device == "cuda":
        def clock() -> float:  # GPU time: every read waits for the queued kernels
            torch.cuda.synchronize()
            return time.perf_counter()
    lines = [
        f"torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if args.device == 'cuda' else platform.machine()}, "
        f"torch.set_num_threads({args.threads}), {args.clock} clock, median of {repeats} "
        "repeats, each paired with a floor measurement",
        "",
        "| model | params | tensors | method | ms/update | × floor |",
        "|---|---:|---:|---|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for name, build in models.items():
        if wanted and name not in wanted:
            continue
        with torch.no_grad():
            model = build().to(args.device)
        n = sum(p.numel() for p in model.parameters())
        tensors = len(model.state_dict())
        for label, ms, ratio in bench_model(name, model, repeats, clock):
            line = f"| {name} | {n / 1e6:.1f} M | {tensors} | {label} | {ms:.3f} | {ratio:.3f} |"
            lines.append(line)
            print(line, flush=True)
        del model
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
