"""`landscape`: loss and accuracy around the trained weights, and on the way to them.

Two kinds of slice through weight space, every point evaluated on the same fixed,
stratified subset of the TRAINING split (`images`, seeded), with BN in eval mode (running
statistics), the run's own loss (config `loss`, without the `loss.l2` penalty) and all
batches held in memory once:

(a) the straight line from the initial weights (init.pt) to the analysed checkpoint,
    theta(a) = theta_init + a (theta_final - theta_init) for a in -0.25..1.25 (`steps`
    points, plus 0 and 1 exactly). Every parameter moves, BN's included; BN running means
    move linearly and running variances geometrically (var_init^(1-a) var_final^a, so they
    stay positive beyond the ends), so a = 0 is the initial network and a = 1 the trained
    one exactly. Skipped, with a line saying so, when the run has no init.pt.
(b) random directions with filter normalisation (Li et al. 2018, "Visualizing the Loss
    Landscape of Neural Nets"): a Gaussian direction whose every filter (each output-channel
    slice of a conv weight, each row of a linear weight) is rescaled to the norm of the same
    filter of the trained weights; biases, BN parameters and every other 1-D parameter get
    direction zero, BN buffers stay as trained. 1-D: theta + a d1 (`steps` points); 2-D:
    theta + a d1 + b d2 (`grid` x `grid`), a, b in -span..span.

    d2 is made orthogonal to d1 filter by filter (Gram-Schmidt within each filter, then
    that filter rescaled back to the trained filter's norm). Each filter's dot product
    stays zero under that rescaling, so the whole directions are orthogonal too (|cos| at
    float64 rounding, ~1e-16) while both keep the filter-wise norms exactly; a filter of
    one element cannot be made orthogonal and is set to zero in d2. Directions are drawn
    and combined in float64, then cast to the parameters' dtype.

Each point's loss and accuracy come with a standard error over the subset's batches
(equal-sized groups of `se_batch` images, in a seeded random order): std of the batch means
/ sqrt(batches). That is the noise of the subset's estimate of the full split's value; the
points share the subset, so differences between neighbouring points are far less noisy.

Cost: points x images forward passes (ResNet-20, 545 points of 2,048 images: 1.1M). They
run under torch.inference_mode in batches of `batch` (whole SE groups, all of one size);
with `compile` auto, when the first point says the eager evaluation would take over two
minutes, the network is put through torch.compile once (its logits checked against
eager's on the first batch; eager stays on any failure or difference), which about halves
a CPU point for a ResNet (BN, ReLU and the residual add fused).

The network is a copy (subject.network()); its parameters are restored exactly at the end
and the subject's model is never touched. Outputs: lines.png (1-D, +/- 1 SE bands),
contour.png and surface.png (2-D loss), line.csv, direction.csv, grid.csv and
landscape.npz (alphas, betas, loss, acc, loss_se, acc_se and the 1-D curves).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import Field

from cnnlab.analysis.landscape_figures import plot_curves, plot_grid
from cnnlab.analysis.registry import ANALYSES, CONTEXT
from cnnlab.errors import UserError
from cnnlab.lazy import lazy
from cnnlab.progressbar import Bar

if TYPE_CHECKING:
    from cnnlab.analysis.outputs import Outputs
    from cnnlab.analysis.subject import Subject

torch = lazy("torch")

LINE_RANGE = (-0.25, 1.25)
AUTO_COMPILE_S = 120.0  # compile: auto compiles when the eager evaluation would take longer


# ---------------------------------------------------------------------- directions


def filtered(model: Any) -> dict[str, Any]:
    """The parameters a direction moves: those with 2+ dimensions (conv and linear weights)."""
    return {n: p for n, p in model.named_parameters() if p.dim() >= 2}


def _rows(t: Any) -> Any:
    return t.reshape(t.shape[0], -1)


def filter_norms(t: Any) -> Any:
    """The L2 norm of each filter (slice along dim 0) of a weight, shape (out,)."""
    return _rows(t.double()).norm(dim=1)


def random_direction(model: Any, generator: Any, norm: str = "filter") -> dict[str, Any]:
    """A Gaussian direction (float64) over every parameter of `model`: zero for 1-D ones;
    'filter': each filter rescaled to the norm of the model's matching filter; 'none': raw."""
    out = {}
    for name, p in model.named_parameters():
        if p.dim() < 2:
            out[name] = torch.zeros(p.shape, dtype=torch.float64)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float64)
        if norm == "filter":
            d = _rescale(d, filter_norms(p.detach().cpu()))
        out[name] = d
    return out


def _rescale(d: Any, norms: Any) -> Any:
    rows = _rows(d)
    own = rows.norm(dim=1)
    scale = torch.where(own > 0, norms / own.clamp_min(1e-300), torch.zeros_like(own))
    return (rows * scale[:, None]).reshape(d.shape)


def orthogonalise(d1: dict[str, Any], d2: dict[str, Any], model: Any) -> dict[str, Any]:
    """d2 made orthogonal to d1 within every filter, each filter rescaled back to the trained
    filter's norm (see the module docstring): orthogonal as a whole, filter norms kept."""
    out = {}
    for name, p in model.named_parameters():
        a, b = d1[name], d2[name]
        if p.dim() < 2:
            out[name] = torch.zeros_like(b)
            continue
        ra, rb = _rows(a), _rows(b)
        aa = (ra * ra).sum(1)
        coef = torch.where(aa > 0, (ra * rb).sum(1) / aa.clamp_min(1e-300), torch.zeros_like(aa))
        rb = rb - coef[:, None] * ra
        target = filter_norms(p.detach().cpu())
        # After Gram-Schmidt a filter of one element (or parallel by chance) has nothing left.
        left = rb.norm(dim=1) > 1e-12 * target.clamp_min(1e-300)
        rb = torch.where(left[:, None], rb, torch.zeros_like(rb))
        out[name] = _rescale(rb.reshape(b.shape), target)
    return out


def directions(model: Any, seed: int, norm: str = "filter") -> tuple[dict[str, Any], dict[str, Any]]:
    """The two directions of the 2-D slice (the first is also the 1-D one), seeded."""
    g = torch.Generator().manual_seed(seed)
    d1 = random_direction(model, g, norm)
    d2 = random_direction(model, g, norm)
    if norm == "filter":
        d2 = orthogonalise(d1, d2, model)
    return d1, d2


def cosine(d1: dict[str, Any], d2: dict[str, Any]) -> float:
    dot = sum(float((d1[k] * d2[k]).sum()) for k in d1)
    n1 = sum(float((d1[k] * d1[k]).sum()) for k in d1) ** 0.5
    n2 = sum(float((d2[k] * d2[k]).sum()) for k in d2) ** 0.5
    return dot / (n1 * n2) if n1 > 0 and n2 > 0 else 0.0


# ---------------------------------------------------------------------- evaluation


class Probe:
    """Loss and accuracy of `model` on fixed batches held in memory, with standard errors
    over equal groups of `group` images; moves the model's parameters to points."""

    def __init__(self, model: Any, x: Any, y: Any, loss_fn: Any, group: int, batch: int):
        self.model, self.loss_fn, self.group = model.eval(), loss_fn, group
        groups = len(x) // group
        self.n = groups * group
        # Forward batches of whole groups, all of one size (a compiled model sees one shape).
        k = max(d for d in range(1, groups + 1) if groups % d == 0 and (d * group <= batch or d == 1))
        self.batch = k * group
        self.batches = [(x[i:i + self.batch], y[i:i + self.batch]) for i in range(0, self.n, self.batch)]
        self.params = dict(model.named_parameters())
        self.buffers = dict(model.named_buffers())
        self.base = {k: p.detach().clone() for k, p in self.params.items()}
        self.base_buffers = {k: b.detach().clone() for k, b in self.buffers.items()}
        self.forward = model
        self.evaluated = 0
        self.extra_images = 0  # through the network outside evaluate() (the compile check)

    def compile(self) -> tuple[bool, str]:
        """Evaluate through torch.compile from now on, if it compiles and gives the eager
        model's logits on the first batch at the current point (else stay eager); says how."""
        xb = self.batches[0][0]
        try:
            compiled = torch.compile(self.model, dynamic=False)
            with torch.inference_mode():
                self.extra_images += 2 * len(xb)
                want, got = self.model(xb), compiled(xb)
        except Exception as e:  # no compiler, an unsupported op: the eager model is as right
            return False, f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); eager"
        diff = float((got.float() - want.float()).abs().max())
        scale = float(want.float().abs().max()) + 1.0
        if not diff <= 1e-4 * scale:
            return False, f"torch.compile's logits differ from eager by {diff:.2e}; eager"
        self.forward = compiled
        return True, f"torch.compile (logits within {diff:.1e} of eager)"

    def evaluate(self) -> tuple[float, float, float, float]:
        """(loss, loss SE, accuracy, accuracy SE) at the current parameters."""
        losses, accs = [], []
        with torch.inference_mode():
            for xb, yb in self.batches:
                logits = self.forward(xb)
                for i in range(0, len(xb), self.group):
                    lg, yg = logits[i:i + self.group], yb[i:i + self.group]
                    losses.append(self.loss_fn(lg.float(), yg))
                    accs.append((lg.argmax(1) == yg).float().mean())
        self.evaluated += 1
        loss = torch.stack(losses).double().cpu().numpy()
        acc = torch.stack(accs).double().cpu().numpy()
        k = len(loss)
        se = (lambda v: float(v.std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan"))
        return float(loss.mean()), se(loss), float(acc.mean()), se(acc)

    def move(self, a: float, d1: dict[str, Any], b: float = 0.0, d2: dict[str, Any] | None = None) -> None:
        """Parameters to base + a d1 + b d2 (float64 arithmetic, cast to each parameter's dtype)."""
        with torch.no_grad():
            for k, p in self.params.items():
                step = a * d1[k] if a else None
                if d2 is not None and b:
                    step = b * d2[k] if step is None else step + b * d2[k]
                if step is None or not step.any():
                    p.copy_(self.base[k])
                else:
                    p.copy_((self.base[k].double() + step.to(p.device)).to(p.dtype))

    def place(self, params: dict[str, Any], buffers: dict[str, Any]) -> None:
        """Parameters and buffers set to the given tensors (names absent are left as they are)."""
        with torch.no_grad():
            for k, v in params.items():
                self.params[k].copy_(v.to(self.params[k].dtype))
            for k, v in buffers.items():
                self.buffers[k].copy_(v.to(self.buffers[k].dtype))

    def restore(self) -> None:
        """The parameters and buffers exactly as they were given."""
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.base[k])
            for k, b in self.buffers.items():
                b.copy_(self.base_buffers[k])


def line_point(a: float, start: dict[str, Any], end: dict[str, Any], start_buf: dict[str, Any],
               end_buf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parameters and BN statistics at `a` on the line from start (0) to end (1): linear,
    running variances geometric (positive for every a)."""
    params = {k: start[k].double() + a * (end[k].double() - start[k].double()) for k in end}
    buffers = {}
    for k, v in end_buf.items():
        if not v.is_floating_point() or k not in start_buf:
            continue
        s, e = start_buf[k].double(), v.double()
        if k.endswith("running_var"):
            buffers[k] = torch.exp(torch.log(s.clamp_min(1e-30)) + a * (torch.log(e.clamp_min(1e-30)) - torch.log(s.clamp_min(1e-30))))
        else:
            buffers[k] = s + a * (e - s)
    return params, buffers


def _axis(lo: float, hi: float, n: int, exact: tuple[float, ...]) -> np.ndarray:
    """n evenly spaced values from lo to hi, plus the `exact` ones when the spacing misses them."""
    values = list(np.linspace(lo, hi, n))
    for e in exact:
        if not np.isclose(values, e, atol=1e-9).any():
            values.append(e)
        else:
            values[int(np.argmin(np.abs(np.asarray(values) - e)))] = e
    return np.array(sorted(values))


# ---------------------------------------------------------------------- the analysis


@ANALYSES.register("landscape", context=CONTEXT)
def landscape(subject: Subject, out: Outputs,
              steps: Annotated[int, Field(ge=3, le=1001)] = 51,
              grid: Annotated[int, Field(ge=3, le=201)] = 21,
              span: Annotated[float, Field(gt=0, le=100)] = 1.0,
              images: Annotated[int, Field(ge=2, le=1_000_000)] = 2048,
              seed: Annotated[int, Field(ge=0)] = 0,
              batch: Annotated[int, Field(ge=1, le=65536)] = 256,
              se_batch: Annotated[int, Field(ge=1, le=65536)] = 64,
              compile: Literal["auto", True, False] = "auto") -> list[str]:
    """The training loss on the line from the initial to the trained weights and on filter-normalised random directions (1-D and 2-D)."""
    from cnnlab.training.losses import build_loss

    started = time.perf_counter()
    split_name, split = subject.split("train")
    idx = subject.stratified(split, images, seed)
    if len(idx) < 2:
        raise UserError(f"{subject.cfg.data.path}: the training split has {len(idx)} labelled images; the landscape needs 2+")
    groups = max(2, len(idx) // se_batch)
    group = len(idx) // groups
    # A seeded shuffle: the SE groups are exchangeable samples, not runs of one class.
    idx = [idx[i] for i in np.random.default_rng(seed).permutation(len(idx))][: groups * group]
    x, y = subject.batch(split, idx)
    loss_fn = build_loss(subject.cfg.loss, len(subject.classes), (subject.info.get("class_counts") or {}).get("train"))
    net = subject.network()
    for p in net.parameters():
        p.requires_grad_(False)
    probe = Probe(net, x, y, loss_fn, group, batch)
    n = probe.n

    has_init = subject.run.checkpoint_path("init") is not None
    alphas_line = _axis(*LINE_RANGE, steps, (0.0, 1.0))
    alphas = _axis(-span, span, steps, (0.0,))
    axis2 = _axis(-span, span, grid, (0.0,))
    d1, d2 = directions(net, seed)
    cos = cosine(d1, d2)

    timings: dict[str, float] = {}
    jobs: list[tuple[str, Any, Any]] = []  # (part, index, move the network there)
    line = None
    if has_init:
        init = subject.network("init")
        start = {k: v.detach() for k, v in init.named_parameters()}
        start_buf = {k: v.detach() for k, v in init.named_buffers()}
        line = np.zeros((len(alphas_line), 4))
        for i, a in enumerate(alphas_line):
            jobs.append(("line", i, lambda a=float(a): probe.place(*line_point(a, start, probe.base, start_buf, probe.base_buffers))))
    curve = np.zeros((len(alphas), 4))
    for i, a in enumerate(alphas):
        jobs.append(("direction", i, lambda a=float(a): probe.move(a, d1)))
    surf = np.zeros((len(axis2), len(axis2), 4))  # [beta, alpha]
    for j, b in enumerate(axis2):
        for i, a in enumerate(axis2):
            jobs.append(("grid", (j, i), lambda a=float(a), b=float(b): probe.move(a, d1, b, d2)))
    results = {"line": line, "direction": curve, "grid": surf}
    how = "eager"
    try:
        with Bar("landscape", len(jobs), loss="-") as bar:
            for k, (part, key, go) in enumerate(jobs):
                if k and part != jobs[k - 1][0]:
                    probe.restore()  # the line also moved BN statistics
                t0 = time.perf_counter()
                go()
                results[part][key] = probe.evaluate()
                took = time.perf_counter() - t0
                timings[part] = timings.get(part, 0.0) + took
                if k == 0 and (compile is True or (compile == "auto" and took * (len(jobs) - 1) > AUTO_COMPILE_S)):
                    t0 = time.perf_counter()
                    _, how = probe.compile()
                    timings["compile"] = time.perf_counter() - t0
                bar.advance(part, loss=f"{float(results[part][key][0]):.4f}")
    finally:
        probe.restore()
    out.forward_passes += probe.evaluated * n + probe.extra_images
    seconds = time.perf_counter() - started

    # ------------------------------------------------------------------ files
    cols = ["loss", "loss_se", "acc", "acc_se"]
    if line is not None:
        out.csv("line.csv", ["alpha", *cols], [[float(a), *map(float, r)] for a, r in zip(alphas_line, line)])
    out.csv("direction.csv", ["alpha", *cols], [[float(a), *map(float, r)] for a, r in zip(alphas, curve)])
    out.csv("grid.csv", ["alpha", "beta", *cols],
            [[float(a), float(b), *map(float, surf[j, i])] for j, b in enumerate(axis2) for i, a in enumerate(axis2)])
    extra = {}
    if line is not None:
        extra = {"line_alphas": alphas_line, "line_loss": line[:, 0], "line_loss_se": line[:, 1],
                 "line_acc": line[:, 2], "line_acc_se": line[:, 3]}
    out.npz("landscape", alphas=axis2, betas=axis2, loss=surf[..., 0], loss_se=surf[..., 1], acc=surf[..., 2],
            acc_se=surf[..., 3], direction_alphas=alphas, direction_loss=curve[:, 0], direction_loss_se=curve[:, 1],
            direction_acc=curve[:, 2], direction_acc_se=curve[:, 3], cosine=np.array(cos), images=np.array(n),
            se_batch=np.array(group), **extra)
    bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    title = (f"{subject.run.name} ({subject.cfg.model.name}, {subject.which} checkpoint, epoch "
             f"{subject.payload.get('epoch', '?')}): {n:,} training images{', BN in eval mode' if bn else ''}")
    plot_curves(out, title, alphas_line if line is not None else None, line, alphas, curve, group, n // group)
    plot_grid(out, title, axis2, surf)

    # ------------------------------------------------------------------ findings
    loss_name = subject.cfg.loss.name
    found = [f"{n:,} {split_name} images (stratified, seed {seed}) in {n // group} batches of {group} for the "
             f"standard errors; loss {loss_name}{' (without the l2 penalty)' if subject.cfg.loss.l2 else ''}"
             f"{'; BN in eval mode (running statistics)' if bn else ''}"]
    if line is not None:
        i0, i1 = int(np.argmin(np.abs(alphas_line))), int(np.argmin(np.abs(alphas_line - 1)))
        lo = int(np.argmin(line[:, 0]))
        inner = line[i0:i1 + 1, 0]
        rise = float(np.max(inner - np.linspace(inner[0], inner[-1], len(inner))))
        found.append(f"init->final line: loss {line[i0, 0]:.4f} (init, acc {line[i0, 2]:.1%}) -> {line[i1, 0]:.4f} "
                     f"(final, acc {line[i1, 2]:.1%}), +/- {line[i1, 1]:.4f} SE; lowest {line[lo, 0]:.4f} at "
                     f"alpha {alphas_line[lo]:+.2f}; from init to final it lies up to {rise:.4f} above the chord between "
                     f"the ends and {'falls' if np.all(np.diff(inner) <= 2 * line[i0:i1, 1]) else 'does NOT fall'} "
                     "monotonically (within 2 SE)")
    else:
        found.append(f"init->final line: skipped, {subject.run.name} has no init.pt (runs save it at the start; "
                     "this one predates that)")
    c0 = int(np.argmin(np.abs(alphas)))
    lo = int(np.argmin(curve[:, 0]))
    found.append(f"random direction (filter-normalised, seed {seed}): loss {curve[c0, 0]:.4f} +/- {curve[c0, 1]:.4f} "
                 f"at the trained weights, {curve[0, 0]:.4f} / {curve[-1, 0]:.4f} at alpha -/+{span:g}; lowest "
                 f"{curve[lo, 0]:.4f} at alpha {alphas[lo]:+.2f}")
    jb, ia = np.unravel_index(int(np.argmin(surf[..., 0])), surf.shape[:2])
    found.append(f"2-D grid {len(axis2)}x{len(axis2)} (|cos(d1, d2)| = {abs(cos):.1e}): loss {surf[..., 0].min():.4f}.."
                 f"{surf[..., 0].max():.4f}, lowest at (alpha, beta) = ({axis2[ia]:+.2f}, {axis2[jb]:+.2f}); "
                 f"accuracy {surf[..., 2].min():.1%}..{surf[..., 2].max():.1%}")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    per_point = sum(v for k, v in timings.items() if k != "compile") / max(probe.evaluated, 1)
    found.append(f"cost: {probe.evaluated} points x {n:,} images = {probe.evaluated * n:,} forward passes in "
                 f"{seconds:.1f} s ({parts}; {per_point:.2f} s a point; "
                 f"batches of {probe.batch}, {how})")
    return found
