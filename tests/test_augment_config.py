"""The `augment:` list in configs: spellings, nested lists, label-mixing rules and shapes."""

from __future__ import annotations

import re

import pytest
import yaml

from cnnlab.data.augment import build_pipeline
from cnnlab.errors import ConfigError
from cnnlab.resolve import load_config


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"format": "idx", "path": "/data/mnist"},
        "model": {"name": "cnn", "channels": [8, 16]},
    }))
    return path


def augment(base, value):
    return load_config(base, [f"augment={value}"]).augment


def test_every_spelling_resolves_to_the_same_list(base):
    long = augment(base, "[{name: random_apply, p: 0.3, ops: [{name: rotation, degrees: 5}, {name: hflip}]}]")
    short = augment(base, "[{random_apply: {p: 0.3, ops: [{rotation: {degrees: 5}}, hflip]}}]")
    assert long == short == [{"name": "random_apply", "p": 0.3, "ops": [
        {"name": "rotation", "degrees": 5.0, "p": 1.0}, {"name": "hflip", "p": 0.5}]}]
    # A bare value sets an op's first option.
    assert augment(base, "[{resize: 40}, {random_crop: 2}, {mixup: 0.2}]") == [
        {"name": "resize", "size": 40}, {"name": "random_crop", "padding": 2, "padding_mode": "zero"},
        {"name": "mixup", "alpha": 0.2}]
    assert augment(base, "[{random_order: [vflip, {translate: 0.1}]}]")[0]["ops"] == [
        {"name": "vflip", "p": 0.5}, {"name": "translate", "fraction": 0.1}]


def test_the_resolved_list_survives_a_round_trip(base, tmp_path):
    cfg = load_config(base, ["augment=[{random_resized_crop: {size: [24, 28], scale: [0.3, 1]}}, "
                             "{random_erasing: {value: [0.1, 0.2, 0.3]}}, cutmix]"])
    dumped = yaml.safe_dump(cfg.to_dict())  # what config.yaml in a run directory holds
    again = tmp_path / "again.yaml"
    again.write_text(dumped)
    assert load_config(again).to_dict() == cfg.to_dict()
    assert cfg.to_dict()["augment"][0]["scale"] == [0.3, 1.0]


@pytest.mark.parametrize("value, message", [
    ("[{random_apply: {ops: [hfilp]}}]", "augment[0].ops[0]: unknown augmentation 'hfilp' (did you mean 'hflip'?)"),
    ("[{random_apply: {ops: [{rotation: {degres: 5}}]}}]",
     "augment[0].ops[0].degres: unknown key for rotation (did you mean 'augment[0].ops[0].degrees'?)"),
    ("[hflip, {random_order: {ops: [vflip, {random_apply: {ops: [{cutout: {size: -1}}]}}]}}]",
     "augment[1].ops[1].ops[0].size: Input should be greater than 0"),
    ("[{random_apply: {ops: []}}]", "augment[0].ops: List should have at least 1 item"),
    ("[{random_apply: {ops: 3}}]", "augment[0].ops: Input should be a valid list (got 3)"),
    ("[{random_apply: {pp: 0.2, ops: [hflip]}}]", "augment[0].pp: unknown key for random_apply (did you mean 'augment[0].p'?)"),
    ("[{random_apply: {ops: [mixup]}}]", "augment[0].ops[0]: mixup mixes the labels of whole batches, so it cannot be nested"),
    ("[mixup, hflip]", "augment[1]: hflip comes after a label-mixing op"),
    ("[{mixup: {alpha: 0}}]", "augment[0].alpha: Input should be greater than 0"),
    ("[{random_resized_crop: {scale: [0.9, 0.1]}}]", "augment[0].scale: Value error, must be [low, high] with low <= high"),
    ("[{hflip: 0.5}, {vflip: 2}]", "augment[1].p: Input should be less than or equal to 1"),
    ("[{random_erasing: {value: black}}]", "augment[0].value"),
    ("[{resize: [1, 2, 3]}]", "augment[0].size"),
    ("[{rezise: 40}]", "augment[0]: unknown augmentation 'rezise' (did you mean 'resize'?)"),
])
def test_mistakes_name_the_key(base, value, message):
    with pytest.raises(ConfigError) as err:
        augment(base, value)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_label_mixing_needs_a_loss_that_takes_probabilities(base, monkeypatch):
    cfg = load_config(base, ["augment=[hflip, cutmix]"])
    assert cfg.loss.name == "cross_entropy"
    monkeypatch.setattr("cnnlab.training.losses.SOFT_TARGET_LOSSES", {"some_other_loss"})
    with pytest.raises(ConfigError, match=r"loss.name: 'cross_entropy' cannot learn from the class probabilities "
                                          r"that augment's cutmix produces; use a loss that can \(some_other_loss\)"):
        load_config(base, ["augment=[hflip, cutmix]"])
    load_config(base, ["augment=[hflip]"])  # without label mixing any loss will do


def test_shapes_are_checked_when_the_pipeline_is_built(base):
    def build(value, shape=(3, 32, 32)):
        return build_pipeline(augment(base, value), shape, 10)

    p = build("[hflip, {random_crop: 4}, {resize: 40}, {center_crop: 36}, mixup]")
    assert p.input_shape == (3, 36, 36) and p.image_shape == (3, 32, 32)
    assert [type(o).__name__ for o in p.eval_ops] == ["ImageOp", "ImageOp"] and len(p.train_ops) == 5
    assert p.batch_op is p.train_ops[-1] and p.batch_op.mixes_labels
    assert build("[{random_resized_crop: {size: 24}}, {center_crop: 24}]").input_shape == (3, 24, 24)
    assert build("[{resize: 16}]", (1, 32, 24)).input_shape == (1, 21, 16)  # the shorter side
    for value, shape, message in [
        ("[{random_resized_crop: {size: 24}}]", (3, 32, 32),
         "augment: training images come out 3x24x24 but evaluation images 3x32x32"),
        ("[{center_crop: 40}]", (3, 32, 32), "augment[0].center_crop: a 40x40 crop does not fit 32x32 images"),
        ("[{random_crop: {padding: 40, padding_mode: reflect}}]", (3, 32, 32),
         "augment[0].random_crop: reflect padding of 40 needs images larger than 40 px"),
        ("[{random_apply: {ops: [{resize: 20}]}}]", (3, 32, 32),
         "augment[0].random_apply: ops[0] turns 3x32x32 images into 3x20x20; ops applied at random must keep the shape"),
        ("[{random_erasing: {value: [0.1, 0.2]}}]", (3, 32, 32),
         "augment[0].random_erasing: value has 2 entries but the images have 3 channel(s)"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build(value, shape)


def test_in_memory_false_needs_image_files(base):
    cfg = load_config(base, ["data.in_memory=false", "data.workers=0"])
    assert cfg.data.in_memory is False and cfg.data.workers == 0
    assert load_config(base).data.in_memory == "auto"
    with pytest.raises(ConfigError, match="data.in_memory: Input should be 'auto', True or False"):
        load_config(base, ["data.in_memory=maybe"])
    from cnnlab.data.build import build_data

    with pytest.raises(ConfigError, match="data.in_memory: the idx format holds arrays, not image files"):
        build_data(cfg.data, 0)
