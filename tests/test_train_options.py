"""Training options on real MNIST slices: optimizers, L2, hinge, clipping, EMA, early stop, TTA, AMP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_config
from torch import nn

from cnnlab.callbacks import StopTraining
from cnnlab.cli import main
from cnnlab.config import Config
from cnnlab.errors import ConfigError
from cnnlab.resolve import load_config
from cnnlab.rundir import Run
from cnnlab.training.early_stop import EarlyStopping
from cnnlab.training.losses import LOSSES, l2_parameters
from cnnlab.training.progress import Reporter
from cnnlab.training.runner import resume, train
from cnnlab.training.session import build_session

ONE_EPOCH = {"epochs": 1}  # 3 steps of 64 images: exact replays stay within float tolerance


def mnist(path: Path, n: int = 192, val: float = 0.0) -> dict:
    # The first n images (limit_mode first): the accuracy floors below were set on that slice.
    return {"format": "idx", "path": str(path), "limit_train": n, "limit_mode": "first", "val_fraction": val}


def config(tmp_path: Path, data: dict, name: str = "c", **sections) -> Config:
    """write_config's tiny CNN, except that an `optim` section replaces its SGD options entirely."""
    optim = sections.pop("optim", None)
    path = write_config(tmp_path / f"{name}.yaml", data, **sections)
    cfg = load_config(path)
    if optim is None:
        return cfg
    raw = cfg.to_dict()
    raw["optim"] = optim
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def run(cfg: Config) -> tuple[Path, dict]:
    result = train(cfg, quiet=True)
    return result.run_dir, result.summary


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def ckpt(run_dir: Path, name: str = "last.pt") -> dict:
    return torch.load(run_dir / name, weights_only=True)


def replay(cfg: Config, update) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The run's epochs by hand on the trainer's batches: forward, backward, update(params, state)."""
    s = build_session(cfg)  # same seed: same initial weights and batch order as train(cfg)
    params = list(s.model.parameters())
    state: dict = {}
    grads = []
    for _ in range(cfg.train.epochs):
        for x, y in s.train_loader:
            s.model.zero_grad(set_to_none=True)
            s.loss_fn(s.model(x), y).backward()
            grads += [p.grad.clone() for p in params]
            with torch.no_grad():
                update(params, state)
    return s.model.state_dict(), grads


def assert_same_weights(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m, k=k: f"{k}: {m}")


# ----------------------------------------------------------------------------- optimizers


def test_adagrad_matches_its_update_rule(mnist_small, tmp_path):
    lr, decay, wd, init, eps = 0.05, 0.2, 1e-2, 0.1, 1e-10
    cfg = config(tmp_path, mnist(mnist_small), optim={"name": "adagrad", "lr": lr, "lr_decay": decay, "weight_decay": wd,
                                                       "initial_accumulator_value": init, "eps": eps}, train=ONE_EPOCH)

    def adagrad(params, state):
        state["t"] = state.get("t", 0) + 1
        clr = lr / (1 + (state["t"] - 1) * decay)
        for i, p in enumerate(params):
            g = p.grad + wd * p
            acc = state[i] = state.get(i, torch.full_like(p, init)) + g * g
            p -= clr * g / (acc.sqrt() + eps)

    expected, _ = replay(cfg, adagrad)
    run_dir, _ = run(cfg)
    assert_same_weights(ckpt(run_dir)["model"], expected)


def test_rmsprop_matches_its_update_rule(mnist_small, tmp_path):
    lr, alpha, eps, mom, wd = 0.01, 0.9, 1e-8, 0.5, 1e-2
    cfg = config(tmp_path, mnist(mnist_small), optim={"name": "rmsprop", "lr": lr, "alpha": alpha, "eps": eps,
                                                       "momentum": mom, "centered": True, "weight_decay": wd},
                 train=ONE_EPOCH)

    def rmsprop(params, state):
        for i, p in enumerate(params):
            g = p.grad + wd * p
            v, m, buf = state.get(i, (torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p)))
            v = alpha * v + (1 - alpha) * g * g
            m = alpha * m + (1 - alpha) * g  # centered: subtract the squared mean gradient
            buf = mom * buf + g / ((v - m * m).sqrt() + eps)
            state[i] = (v, m, buf)
            p -= lr * buf

    expected, _ = replay(cfg, rmsprop)
    run_dir, _ = run(cfg)
    # Centred RMSprop divides by sqrt(v - m^2), which magnifies float rounding differences.
    assert_same_weights(ckpt(run_dir)["model"], expected, rtol=1e-3, atol=1e-4)


def test_optimizer_options_are_validated(mnist_small, tmp_path):
    with pytest.raises(ConfigError, match=r"optim.alpah: unknown key for rmsprop \(did you mean 'optim.alpha'\?\)"):
        config(tmp_path, mnist(mnist_small), optim={"name": "rmsprop", "alpah": 0.9, "momentum": 0.0})


# ----------------------------------------------------------------------------- L2 and losses


def test_l2_penalty_equals_weight_decay_for_plain_sgd(mnist_small, tmp_path):
    lam, lr = 0.05, 0.1
    sgd = {"name": "sgd", "lr": lr, "momentum": 0.0}
    decay_dir, _ = run(config(tmp_path, mnist(mnist_small), "a", optim={**sgd, "weight_decay": lam}, train=ONE_EPOCH))
    l2_cfg = config(tmp_path, mnist(mnist_small), "b", optim=sgd, loss={"l2": lam, "l2_params": "all"}, train=ONE_EPOCH)
    l2_dir, l2 = run(l2_cfg)

    def textbook(params, state):  # w <- w - lr * (dL/dw + lam * w), noting lam/2 * |w|^2 first
        state.setdefault("penalty", []).append(lam / 2 * sum(float(p.square().sum()) for p in params))
        for p in params:
            p -= lr * (p.grad + lam * p)

    by_hand, _ = replay(l2_cfg, textbook)
    assert_same_weights(ckpt(decay_dir)["model"], ckpt(l2_dir)["model"], rtol=1e-5, atol=1e-6)
    assert_same_weights(ckpt(l2_dir)["model"], by_hand, rtol=1e-5, atol=1e-6)
    a, b = rows(decay_dir)[0], rows(l2_dir)[0]
    assert "train_l2" not in a
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)  # train_loss is the data loss alone
    penalties = []
    replay(l2_cfg, lambda params, state: (textbook(params, state), penalties.__setitem__(slice(None), state["penalty"])))
    assert len(penalties) == 3 and b["train_l2"] == pytest.approx(sum(penalties) / 3, rel=1e-5)  # 3 equal batches
    assert l2["best"]["train_l2"] == {"value": b["train_l2"], "epoch": 1}


def test_l2_default_covers_conv_and_linear_weights_only(mnist_small, tmp_path):
    s = build_session(config(tmp_path, mnist(mnist_small), model={"norm": "batch", "fc_hidden": [16]}))
    names = {id(p): n for n, p in s.model.named_parameters()}
    picked = sorted(names[id(p)] for p in l2_parameters(s.model, "weights"))
    modules = dict(s.model.named_modules())
    assert picked and all(n.endswith(".weight") and isinstance(modules[n[:-7]], (nn.Conv2d, nn.Linear)) for n in picked)
    convs_and_linears = [m for m in s.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(picked) == len(convs_and_linears) == 4  # 2 convs, hidden and output linear layers
    assert len(l2_parameters(s.model, "all")) == len(names)  # plus biases and BN scales/shifts


def test_hinge_loss_follows_the_multiclass_hinge_formula(mnist_small, tmp_path):
    cfg = config(tmp_path, mnist(mnist_small), loss={"name": "hinge", "margin": 2.0, "p": 2})
    s = build_session(cfg)
    x, y = next(iter(s.train_loader))
    with torch.no_grad():
        logits = s.model(x)
    loss = LOSSES.build(cfg.loss, num_classes=10)(logits, y)
    true = logits.gather(1, y[:, None])
    terms = (2.0 - true + logits).clamp(min=0) ** 2
    terms[torch.arange(len(y)), y] = 0  # j != y only
    assert float(loss) == pytest.approx(float((terms.sum(1) / 10).mean()), rel=1e-6)


def test_hinge_loss_trains(mnist_small, tmp_path):
    hinge_dir, hinge = run(config(tmp_path, mnist(mnist_small, n=600), loss={"name": "hinge"}, train={"epochs": 2}))
    assert hinge["test_acc"] > 0.6  # 600 MNIST images, 2 epochs; chance is 0.1
    first, second = rows(hinge_dir)
    assert second["test_loss"] < first["test_loss"] < 0.9  # hinge values: at most margin * 9/10 when all scores tie


# ----------------------------------------------------------------------------- clipping and precision


def test_grad_clip_value_clamps_each_element(mnist_small, tmp_path):
    lr, v = 0.1, 2e-3
    cfg = config(tmp_path, mnist(mnist_small), optim={"name": "sgd", "lr": lr, "momentum": 0.0},
                 train={**ONE_EPOCH, "grad_clip_value": v})

    def clipped_sgd(params, state):
        for p in params:
            p -= lr * p.grad.clamp(-v, v)

    expected, grads = replay(cfg, clipped_sgd)
    assert sum(int((g.abs() > v).sum()) for g in grads) > 100  # the clip really bites
    run_dir, _ = run(cfg)
    assert_same_weights(ckpt(run_dir)["model"], expected)


def test_grad_clip_norm_scales_the_global_norm(mnist_small, tmp_path):
    lr, c = 0.1, 0.05
    cfg = config(tmp_path, mnist(mnist_small), optim={"name": "sgd", "lr": lr, "momentum": 0.0},
                 train={**ONE_EPOCH, "grad_clip": c})

    def clipped_sgd(params, state):
        norm = torch.stack([p.grad.norm() for p in params]).norm()
        for p in params:
            p -= lr * p.grad * min(1.0, c / (float(norm) + 1e-6))

    expected, grads = replay(cfg, clipped_sgd)
    n = len(grads) // 3  # parameters per step
    assert all(float(torch.stack([g.norm() for g in grads[i:i + n]]).norm()) > 2 * c for i in range(0, len(grads), n))
    run_dir, _ = run(cfg)
    assert_same_weights(ckpt(run_dir)["model"], expected)


def test_fp16_clips_the_unscaled_gradients(mnist_small, tmp_path):
    lr, c = 0.1, 0.01
    cfg = config(tmp_path, mnist(mnist_small, n=64), optim={"name": "sgd", "lr": lr, "momentum": 0.0},
                 train={"amp": "fp16", "grad_clip": c, "epochs": 1})  # one step
    start = {n: p.detach().clone() for n, p in build_session(cfg).model.named_parameters()}
    run_dir, summary = run(cfg)
    state = ckpt(run_dir)
    step = torch.stack([(state["model"][n] - w).norm() for n, w in start.items()]).norm()
    # Clipping the scaled gradients would move the weights 65536 times less than lr * c.
    assert float(step) == pytest.approx(lr * c, rel=1e-3)
    assert state["scaler"]["scale"] == 65536.0 and summary["status"] == "completed"


def test_bf16_autocast_trains_on_cpu(mnist_small, tmp_path):
    data = mnist(mnist_small, n=400)
    plain_dir, plain = run(config(tmp_path, data, "off", train={"amp": "off", "epochs": 1}))
    bf16_dir, bf16 = run(config(tmp_path, data, "bf16", train={"amp": "bf16", "epochs": 1}))
    a, b = rows(plain_dir)[0], rows(bf16_dir)[0]
    assert a["train_loss"] != b["train_loss"]  # autocast really ran in bfloat16 ...
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=0.05)  # ... and learnt the same
    assert abs(bf16["test_acc"] - plain["test_acc"]) < 0.1 and bf16["test_acc"] > 0.3 and ckpt(bf16_dir)["model"]["0.0.weight"].dtype == torch.float32


# ----------------------------------------------------------------------------- EMA


def test_ema_averages_weights_and_batchnorm_buffers(mnist_small, tmp_path):
    decay = 0.6
    cfg = config(tmp_path, mnist(mnist_small, n=64), train={"ema": decay, "epochs": 3})  # one step per epoch
    s = build_session(cfg)
    raw, avg = [], []

    def snapshot(epoch, metrics):
        raw.append({k: v.clone() for k, v in trainer.engine.model.state_dict().items()})
        avg.append({k: v.clone() for k, v in trainer.engine.ema.module.state_dict().items()})

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trainer = s.trainer(Run(run_dir), Reporter(3, 1, quiet=True), [snapshot])
    trainer.fit()
    float_keys = [k for k, v in raw[0].items() if v.is_floating_point()]
    assert any("running_mean" in k for k in float_keys)
    for k in float_keys:
        expected = raw[0][k]
        torch.testing.assert_close(avg[0][k], expected)  # the first update copies
        for t in (1, 2):
            expected = decay * expected + (1 - decay) * raw[t][k]
            torch.testing.assert_close(avg[t][k], expected)
    last, best = ckpt(run_dir), ckpt(run_dir, "best.pt")
    assert_same_weights(last["model"], avg[-1])  # evaluate / predict read the EMA weights ...
    assert_same_weights(last["raw_model"], raw[-1])  # ... resume reads the raw ones
    assert int(last["ema_updates"]) == 3 and best["epoch"] == 3
    assert_same_weights(best["model"], avg[-1])
    # The logged test accuracy is the EMA model's.
    trained = build_session(cfg).model
    trained.load_state_dict(avg[-1])
    trained.eval()
    loader = s.eval_loaders["test"]
    with torch.no_grad():
        acc = sum(int((trained(x).argmax(1) == y).sum()) for x, y in loader) / len(loader.x)
    assert acc == pytest.approx(trainer.state.history[-1]["test_acc"])


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_rule():
    stopper = EarlyStopping("val_loss", patience=2, min_delta=0.05)
    stopper.on_epoch_end(1, {"val_loss": 1.0})
    stopper.on_epoch_end(2, {"val_loss": 0.96})  # better, but not by more than min_delta
    assert stopper.bad_epochs == 1 and stopper.note() == "no val_loss gain 1/2"
    stopper.on_epoch_end(3, {"val_loss": 0.9})
    assert (stopper.best, stopper.best_epoch, stopper.bad_epochs) == (0.9, 3, 0)
    stopper.on_epoch_end(4, {"val_loss": 0.95})
    with pytest.raises(StopTraining) as e:
        stopper.on_epoch_end(5, {"val_loss": 0.91})
    assert e.value.status == "early_stopped"
    assert e.value.reason == ("early stop after epoch 5: val_loss did not improve by more than 0.05 "
                              "for 2 epochs (best 0.9 at epoch 3)")
    acc = EarlyStopping("val_acc", patience=1)  # auto mode: accuracy is maximised
    acc.on_epoch_end(1, {"val_acc": 0.5})
    acc.on_epoch_end(2, {"val_acc": 0.6})
    with pytest.raises(StopTraining):
        acc.on_epoch_end(3, {"val_acc": 0.6})


def test_early_stop_ends_the_run_and_its_counters_resume(mnist_small, tmp_path, capsys):
    # No epoch can lower train_loss by more than 10: the run stops after epoch 1 + patience, whatever the data.
    sections = dict(train={"epochs": 6, "early_stop": {"monitor": "train_loss", "patience": 2, "min_delta": 10}})
    whole_dir, whole = run(config(tmp_path, mnist(mnist_small), "a", **sections))
    assert whole["status"] == "early_stopped" and whole["epochs"] == 3 and whole["epochs_planned"] == 6
    assert whole["reason"] == (f"early stop after epoch 3: train_loss did not improve by more than 10 for 2 epochs "
                               f"(best {rows(whole_dir)[0]['train_loss']:.4g} at epoch 1)")
    assert len(rows(whole_dir)) == 3
    assert ckpt(whole_dir)["callbacks"]["early_stop"]["bad_epochs"] == 2

    def interrupt(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt

    cfg = config(tmp_path, mnist(mnist_small), "b", **sections)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, quiet=True, callbacks=[interrupt])
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if d != whole_dir]
    assert ckpt(run_dir)["callbacks"]["early_stop"] == {"best": rows(run_dir)[0]["train_loss"], "best_epoch": 1,
                                                        "bad_epochs": 0}
    resumed = resume(run_dir).summary
    assert resumed["status"] == "early_stopped" and resumed["epochs"] == 3  # not 4: the counters came back
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(rows(run_dir)) == strip(rows(whole_dir))
    assert resume(run_dir).summary["epochs"] == 3  # resuming a finished run trains nothing more
    assert "early stop after epoch 3" in capsys.readouterr().err


def test_bad_options_are_one_line_exit_2_before_any_run_directory(mnist_small, tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path / "c.yaml", mnist(mnist_small))
    cases = [
        (["train.early_stop.monitor=val_acc"], "train.early_stop.monitor: 'val_acc' is not logged "
                                               "(this run has no validation split: set data.val_fraction > 0)"),
        (["train.early_stop.monitor=train_l2"], "train.early_stop.monitor: 'train_l2' is not logged"),
        (["train.early_stop.patiense=2"], "train.early_stop.patiense: unknown key (did you mean 'train.early_stop.patience'?)"),
        (["schedule.name=plateau", "schedule.monitor=val_acc"], "schedule.monitor: 'val_acc' is not logged"),
        (["schedule.warmup_epochs=2"], "schedule.warmup_epochs: 2 epochs of warm-up (6 steps) leave nothing"),
        (["train.ema=1"], "train.ema: Input should be less than 1"),
        (["train.tta=vflip"], "train.tta: Input should be 'none' or 'hflip'"),
        (["loss.name=hinge", "loss.p=3"], "loss.p: Input should be 1 or 2"),
    ]
    for overrides, message in cases:
        assert main(["train", str(cfg), *overrides]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler to be found
    monkeypatch.delenv("CXX", raising=False)
    assert main(["train", str(cfg), "train.compile=true"]) == 2
    assert "train.compile: torch.compile on the CPU needs a C++ compiler" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    # With the penalty on, train_l2 is a metric like any other.
    _, s = run(config(tmp_path, mnist(mnist_small), loss={"l2": 1e-3},
                      train={"epochs": 1, "early_stop": {"monitor": "train_l2"}}))
    assert s["status"] == "completed"


def test_plateau_on_train_loss_and_on_val_acc_without_a_test_split(mnist_small, kaggle_dir, tmp_path):
    """The lr of each logged epoch follows the plateau rule applied to the logged metric."""
    # A large relative threshold (20%) makes "no improvement", and so lr cuts, likely.
    for data, monitor, better in (
        (mnist(mnist_small), "train_loss", lambda v, best: v < best * (1 - 0.2)),
        ({"format": "npy_csv", "path": str(kaggle_dir), "limit_train": 400, "val_fraction": 0.25}, "val_acc",
         lambda v, best: v > best * (1 + 0.2)),
    ):
        run_dir, s = run(config(tmp_path, data, monitor, schedule={"name": "plateau", "monitor": monitor, "patience": 0,
                                                                   "factor": 0.5, "threshold": 0.2}, train={"epochs": 4}))
        got = rows(run_dir)
        assert ("test_acc" in got[0]) == (monitor == "train_loss")  # the Kaggle layout has no test labels
        lr, best = 0.05, None
        for r in got:
            assert r["lr"] == pytest.approx(lr)
            if best is None or better(r[monitor], best):
                best = r[monitor]
            else:
                lr *= 0.5
        assert got[-1]["lr"] < 0.05 and s["status"] == "completed"


# ----------------------------------------------------------------------------- TTA, summary, CLI


def test_hflip_tta_averages_logits_in_every_evaluation(mnist_small, tmp_path, capsys):
    import numpy as np
    from conftest import read_idx

    cfg = config(tmp_path, mnist(mnist_small, n=400), train={"tta": "hflip", "epochs": 1})
    run_dir, s = run(cfg)
    session = build_session(cfg)
    model = session.model
    model.load_state_dict(ckpt(run_dir, "best.pt")["model"])
    model.eval()
    loader = session.eval_loaders["test"]
    with torch.no_grad():
        plain = torch.cat([model(x) for x, _ in loader])
        mean = torch.cat([(model(x) + model(x.flip(3))) / 2 for x, _ in loader])
    y = loader.y
    assert not torch.allclose(plain, mean, atol=1e-3)  # the mirror changes the scores
    tta_acc = float((mean.argmax(1) == y).float().mean())
    assert s["test_acc"] == pytest.approx(tta_acc)
    assert rows(run_dir)[0]["test_loss"] == pytest.approx(float(nn.functional.cross_entropy(mean, y)), rel=1e-5)

    assert main(["evaluate", str(run_dir)]) == 0
    assert json.loads((run_dir / "eval-test-best.json").read_text())["acc"] == pytest.approx(s["test_acc"], abs=1e-12)
    x = read_idx(mnist_small / "t10k-images-idx3-ubyte.gz")
    np.save(tmp_path / "test.npy", x.reshape(len(x), 784))
    assert main(["predict", str(run_dir), str(tmp_path / "test.npy"), "--out", str(tmp_path / "p.csv")]) == 0
    pred = [int(line.split(",")[1]) for line in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert pred == mean.argmax(1).tolist()
    capsys.readouterr()


def test_summary_has_best_errors_and_their_epochs(mnist_small, tmp_path):
    run_dir, s = run(config(tmp_path, mnist(mnist_small, n=400, val=0.2), train={"epochs": 3}))
    got = rows(run_dir)
    for split in ("train", "val", "test"):
        best = max(got, key=lambda r, split=split: r[f"{split}_acc"])
        assert s[f"best_{split}_error"] == pytest.approx(1 - best[f"{split}_acc"])
        assert s[f"best_{split}_error_epoch"] == best["epoch"]
        assert s["best"][f"{split}_error"] == {"value": s[f"best_{split}_error"], "epoch": best["epoch"]}
    _, s = run(config(tmp_path, mnist(mnist_small), "noval", train={"epochs": 1}))
    assert s["best_val_error"] is None and s["best_val_error_epoch"] is None and s["best_test_error_epoch"] == 1


def test_cli_trains_with_every_new_option_and_prints_them(mnist_small, tmp_path, capsys):
    cfg = write_config(tmp_path / "all.yaml", mnist(mnist_small, n=256, val=0.25),
                       optim={"name": "rmsprop", "lr": 0.002, "momentum": 0.0},
                       schedule={"name": "exponential", "gamma": 0.99, "per": "step", "warmup_epochs": 0.5},
                       loss={"name": "hinge", "l2": 1e-4},
                       train={"epochs": 2, "ema": 0.9, "tta": "hflip", "grad_clip": 5.0, "grad_clip_value": 1.0,
                              "amp": "bf16", "early_stop": {"monitor": "val_loss", "patience": 3}})
    code = main(["train", str(cfg)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.err.splitlines()
    assert any(line.startswith("options evaluating EMA weights (decay 0.9); early stop on val_loss (patience 3); "
                               "tta hflip; l2 0.0001 on weights; warm-up 0.5 epochs") for line in lines)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and "(+l2 " in epochs[0] and "val (ema, tta) loss" in epochs[0]
    run_dir = Path(captured.out.strip().splitlines()[-1])
    first, second = rows(run_dir)
    # 3 steps per epoch; warm-up: 2 steps (lr / 2, lr); step 3 starts the exponential at lr.
    assert first["lr"] == pytest.approx(0.002 / 2)
    assert second["lr"] == pytest.approx(0.002 * 0.99)
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["status"] == "completed" and s["test_acc"] > 0.3
    stored = load_config(run_dir / "config.yaml")
    assert stored.train.early_stop.monitor == "val_loss" and stored.loss.l2 == 1e-4 and stored.schedule.warmup_epochs == 0.5


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_keys(mnist_small, tmp_path):
    data = mnist(mnist_small)
    eager_dir, _ = run(config(tmp_path, data, "eager", train=ONE_EPOCH))
    compiled_dir, s = run(config(tmp_path, data, "compiled", train={**ONE_EPOCH, "compile": True}))
    eager, compiled = ckpt(eager_dir)["model"], ckpt(compiled_dir)["model"]
    assert list(compiled) == list(eager)  # no `_orig_mod.` prefixes
    assert_same_weights(compiled, eager, rtol=0, atol=2e-3)  # inductor rounds differently; steps move ~1e-2
    assert rows(compiled_dir)[0]["train_loss"] == pytest.approx(rows(eager_dir)[0]["train_loss"], rel=1e-4)
    assert s["status"] == "completed" and main(["evaluate", str(compiled_dir)]) == 0
