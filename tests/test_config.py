"""Config loading, overrides and validation messages."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.config import apply_override
from cnnlab.errors import ConfigError
from cnnlab.resolve import load_config


@pytest.fixture
def base(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"format": "idx", "path": "/data/mnist"},
        "model": {"name": "cnn", "channels": [8, 16]},
        "optim": {"name": "sgd", "lr": 0.1},
    }))
    return path


def test_defaults_are_resolved_from_schema_and_builder_signatures(base):
    cfg = load_config(base)
    assert cfg.name == "exp"  # from the file name
    assert cfg.train.epochs == 10 and cfg.train.out_dir == "runs"
    assert cfg.data.val_fraction == 0.1
    d = cfg.to_dict()
    assert d["model"]["dropout"] == 0.0 and d["model"]["pool"] == "max"  # cnn() defaults
    assert d["optim"]["momentum"] == 0.0 and d["optim"]["lr"] == 0.1
    assert d["loss"] == {"name": "cross_entropy", "l2": 0.0, "l2_params": "weights", "class_weights": None,
                         "class_weights_beta": 0.999, "label_smoothing": 0.0}


def test_dotted_overrides_are_typed(base):
    cfg = load_config(base, ["optim.lr=0.01", "train.epochs=3", "model.dropout=0.2",
                             "model.channels=[4, 8, 16]", "optim.nesterov=true", "optim.momentum=0.9"])
    assert cfg.optim.lr == 0.01 and cfg.train.epochs == 3
    d = cfg.to_dict()
    assert d["model"]["dropout"] == 0.2 and d["model"]["channels"] == [4, 8, 16]
    assert d["optim"]["nesterov"] is True


@pytest.mark.parametrize("override, message", [
    ("model.dropuot=0.2", "model.dropuot: unknown key for cnn (did you mean 'model.dropout'?)"),
    ("optim.lrr=0.1", "optim.lrr: unknown key for sgd (did you mean 'optim.lr'?)"),  # a common key
    ("data.val_fracton=0.1", "data.val_fracton: unknown key for idx (did you mean 'data.val_fraction'?)"),
    ("train.epoch=3", "train.epoch: unknown key (did you mean 'train.epochs'?)"),
    ("trian.epochs=3", "unknown section 'trian' (did you mean 'train'?)"),
    ("optim.lr=fast", "optim.lr: Input should be a valid number"),
    ("optim.lr=-1", "optim.lr: Input should be greater than 0"),
    ("train.batch_size=0", "train.batch_size: Input should be greater than 0"),
    ("data.val_fraction=1.5", "data.val_fraction: Input should be less than 1"),
    ("model.name=resnt", "model.name: unknown model 'resnt' (did you mean 'resnet'?)"),
    ("optim.name=adamm", "optim.name: unknown optimizer 'adamm' (did you mean 'adam'?)"),
    ("schedule.name=cosin", "schedule.name: unknown schedule 'cosin' (did you mean 'cosine'?)"),
    ("data.format=idxx", "data.format: unknown data format 'idxx' (did you mean 'idx'?)"),
    ("data.image_sise=32", "data.image_sise: unknown key for idx"),
    ("device=gpu", "device: Input should be 'auto', 'cpu', 'cuda' or 'mps'"),
    ("schedule.name=step", None),
    ("augment=[hflp]", "augment[0]: unknown augmentation 'hflp' (did you mean 'hflip'?)"),
    ("augment=[{color_jitter: {hue: 0.9}}]", "augment[0].hue: Input should be less than or equal to 0.5"),
    ("lr=0.1", "override 'lr': 'lr' is not a section; did you mean 'optim.lr'?"),
    ("out_dir=x", "'out_dir' is not a section; did you mean 'train.out_dir'?"),
    ("colour=1", "unknown section 'colour'"),
    ("optim.lr", "expected KEY=VALUE"),
])
def test_bad_values_are_one_line_naming_the_key(base, override, message):
    if message is None:
        load_config(base, [override])  # valid
        return
    with pytest.raises(ConfigError) as err:
        load_config(base, [override])
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("data:\n  format: idx\n  path: [unclosed\nmodel: {name: cnn}\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: invalid YAML at line \d+"):
        load_config(path)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


def test_a_dataset_passed_where_the_config_goes_gets_told_what_goes_where(tmp_path, mnist_dir):
    # The real MNIST archive of the shared datasets and a folder: both are data, not configs.
    mnist = mnist_dir / "train-images-idx3-ubyte.gz"
    for data in (tmp_path, mnist):
        with pytest.raises(ConfigError) as e:
            load_config(data)
        assert str(e.value).startswith(f"{data}: this is data, not a config")
        assert f"data.path={data} data.format=FORMAT" in str(e.value)


def test_a_sections_key_written_at_the_top_of_the_file_is_told_its_section(base):
    raw = yaml.safe_load(base.read_text())
    for key, value, section in (("epochs", 3, "train"), ("lr", 0.1, "optim"), ("limit_train", 50, "data")):
        base.write_text(yaml.safe_dump({**raw, key: value}))
        with pytest.raises(ConfigError) as e:
            load_config(base)
        assert str(e.value) == (f"{base}: {key}: unknown top-level key; it belongs under {section}: "
                                f"(did you mean '{section}.{key}'?)")


def test_missing_required_section(tmp_path):
    path = tmp_path / "nodata.yaml"
    path.write_text("model: {name: cnn}\n")
    with pytest.raises(ConfigError, match="data: required key is missing"):
        load_config(path)


def test_augment_accepts_three_spellings(base):
    cfg = load_config(base, ["augment=[hflip, {random_crop: {padding: 2}}, {name: rotation, degrees: 5}]"])
    assert [a["name"] for a in cfg.augment] == ["hflip", "random_crop", "rotation"]
    assert cfg.augment[1]["padding"] == 2 and cfg.augment[1]["padding_mode"] == "zero"
    assert cfg.augment[2]["degrees"] == 5


def test_override_creates_nested_keys():
    raw = {}
    apply_override(raw, "schedule.name=plateau")
    apply_override(raw, "schedule.patience=3")
    assert raw == {"schedule": {"name": "plateau", "patience": 3}}


def test_switching_a_function_drops_the_file_options_it_does_not_take(tmp_path):
    path = tmp_path / "sgd.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"format": "idx", "path": "/data/mnist"},
        "model": {"name": "cnn", "channels": [8, 16], "conv_dropout": 0.1},
        "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
    }))
    cfg = load_config(path, ["optim.name=adam"])
    d = cfg.to_dict()["optim"]
    assert d["name"] == "adam" and "momentum" not in d and d["weight_decay"] == 5e-4 and d["lr"] == 0.1
    # Options given on the command line are kept, and checked against the new function.
    with pytest.raises(ConfigError, match="optim.momentum: unknown key for adam"):
        load_config(path, ["optim.name=adam", "optim.momentum=0.5"])
    assert "channels" not in load_config(path, ["model.name=lenet"]).to_dict()["model"]
    # Without a switch, a key the function does not take is still an error.
    with pytest.raises(ConfigError, match="model.channels: unknown key for lenet"):
        path.write_text(path.read_text().replace("name: cnn", "name: lenet"))
        load_config(path)
