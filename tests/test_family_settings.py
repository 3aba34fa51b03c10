"""Every option belongs to the shared config or to the families that declare it: another family's setting is an
error naming those families (constructor, TOML file, command line); --help follows --model; config.json keeps
one flat namespace, and runs written before the families declared their own settings still load and resume."""
import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from fastgan.cli import build_parser, main
from fastgan.train import FAMILIES, TrainConfig, load_generator, train
from fastgan.train.config import ALL_SETTINGS
from state_compare import assert_same, logged_rows, resumable_state

#: a dataset each family trains on, so that a config of it validates
DATASET = {"images": "digits", "points": "ring8", "sequences": "sines", "tokens": "oracle"}
#: runs written by fastgan at commit 81930dd, whose config.json and checkpoints list every family's settings
OLD_RUNS = Path(__file__).parent / "data" / "runs-81930dd"


def base(model: str) -> dict:
    return dict(model=model, dataset=DATASET[FAMILIES[model].data[0]])


def other_family_cases():
    """(setting, a model that does not take it) for every family setting."""
    for name, takers in ALL_SETTINGS.items():
        model = next(m for m in FAMILIES if m not in takers)
        yield name, model


@pytest.mark.parametrize("name, model", list(other_family_cases()))
def test_another_familys_setting_is_an_error_naming_its_families(name, model):
    value = next(f.default for family in FAMILIES.values() for group in family.settings
                 for f in dataclasses.fields(group) if f.name == name)
    # Even at its default value: the setting is not the model's, so giving it is a mistake.
    with pytest.raises(ValueError, match=rf"TrainConfig.{name}: is a setting of {', '.join(ALL_SETTINGS[name])}, "
                                         rf"not of model {model}"):
        TrainConfig(**base(model), **{name: value})


@pytest.mark.parametrize("model", list(FAMILIES))
def test_each_family_takes_its_own_settings_and_the_shared_ones(model):
    config = TrainConfig(**base(model))
    names = set(config.to_dict())
    shared = {f.name for f in dataclasses.fields(TrainConfig)}
    assert names == shared | set(FAMILIES[model].setting_names())
    for name in FAMILIES[model].setting_names():
        TrainConfig(**base(model), **{name: getattr(config, name)})  # each accepted when given


def test_settings_are_checked_against_their_declared_ranges():
    with pytest.raises(ValueError, match=r"TrainConfig.seqgan_vocab: must be >= 2; got 1"):
        TrainConfig(model="seqgan", dataset="oracle", seqgan_vocab=1)
    with pytest.raises(ValueError, match=r"TrainConfig.seqgan_rollout_delay: must be in \[0, 1\); got 1.0"):
        TrainConfig(model="seqgan", dataset="oracle", seqgan_rollout_delay=1.0)
    with pytest.raises(ValueError, match=r"TrainConfig.vae_sigma: must be > 0; got 0.0"):
        TrainConfig(model="vae", vae_sigma=0.0)
    with pytest.raises(ValueError, match=r"TrainConfig.mlp_hidden: must be >= 1; got \(8, 0\)"):
        TrainConfig(model="mlp", mlp_hidden=(8, 0))
    with pytest.raises(ValueError, match=r"TrainConfig.rgan_noise: must be one of step, sequence; got 'x'"):
        TrainConfig(model="rgan", dataset="sines", rgan_noise="x")


def test_cli_refuses_another_familys_option_in_one_line(capsys):
    assert main(["train", "--model", "dcgan", "--seqgan-vocab", "5000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastgan train: error: TrainConfig.seqgan_vocab: is a setting of seqgan, not of model dcgan"]


def test_toml_key_of_another_family_is_an_error(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "mlp"\ng_width = 8\n')
    with pytest.raises(ValueError, match="TrainConfig.g_width: is a setting of dcgan, resnet, not of model mlp"):
        TrainConfig.from_toml(cfg)


@pytest.mark.parametrize("model", list(FAMILIES))
def test_help_lists_the_shared_options_and_the_models_own(model, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", model, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("compile", "sync_bn", "conditional") or f.name in FAMILIES[model].options:
            assert "--" + f.name.replace("_", "-") in out, f.name
    for name, takers in ALL_SETTINGS.items():
        assert (("--" + name.replace("_", "-") + " ") in out) == (model in takers), name


def test_plain_help_shows_the_default_models_settings():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--g-width" in text and "--seqgan-vocab" not in text and "--model MODEL --help" in text


def test_config_json_is_flat_and_reloads(tmp_path):
    config = TrainConfig(model="seqgan", dataset="oracle", seqgan_vocab=50, seq_len=6)
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["seqgan_vocab"] == 50 and saved["lr_g"] == 0.01 and "g_width" not in saved
    assert TrainConfig.from_dict(saved) == config


def test_saved_config_of_every_familys_fields_loads():
    """Configs written before this design list all 83 fields; the other families' ones never acted and are
    dropped, an unknown name is still an error."""
    old = json.loads((OLD_RUNS / "rgan-sines" / "config.json").read_text())
    assert "seqgan_vocab" in old and "g_width" in old
    config = TrainConfig.from_dict(old)
    assert config.model == "rgan" and config.seq_len == 8 and not hasattr(config, "seqgan_vocab")
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**old, "warp_drive": 1})


@pytest.mark.parametrize("run, steps", [("mlp-ring8", 9), ("rgan-sines", 6)])
def test_a_run_written_before_the_change_resumes_bit_identically(tmp_path, run, steps, one_torch_thread):
    """The old run resumed by today's code equals today's code run from the start with the same settings."""
    old = tmp_path / "old"
    shutil.copytree(OLD_RUNS / run, old / run)
    saved = json.loads((old / run / "config.json").read_text())
    outputs = {k: saved[k] for k in ("log_every", "sample_every", "ckpt_every", "progress", "threads")}
    resumed = train(TrainConfig(out_dir=str(old), name=run, resume=True, steps=steps, **outputs))
    fresh_settings = {k: v for k, v in TrainConfig.from_dict(saved).to_dict().items()
                      if k not in ("out_dir", "name", "steps")}
    fresh = train(TrainConfig(**{**fresh_settings, "out_dir": str(tmp_path / "new"), "name": run, "steps": steps}))
    assert_same(resumable_state(fresh), resumable_state(resumed))
    assert logged_rows(fresh) == logged_rows(resumed)
    sampler, config, step = load_generator(resumed)
    assert step == steps and config.model == run.split("-")[0]
