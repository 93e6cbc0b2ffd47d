"""Bring your own models: feature files and checkpoints the tests write, the sweep part, the refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.zoo import architectures
from tasks.zoo.byo import SourceError, load_checkpoint, load_features, load_probe, load_sources

ROOT = Path(__file__).resolve().parents[2]
N = 60


def _features(path: Path, seed: int, *, rows: int = N, **extra) -> dict[str, np.ndarray]:
    """A little random ReLU network's layers, written as a feature file (labels shared across files)."""
    rng = np.random.default_rng(seed)
    x = np.random.default_rng(100).normal(size=(rows, 6))
    h1 = np.maximum(x @ rng.normal(size=(6, 9)), 0)
    h2 = np.maximum(h1 @ rng.normal(size=(9, 7)), 0)
    arrays = {"h1": h1, "h2": h2, "outputs": h2 @ rng.normal(size=(7, 3)),
              "labels": np.random.default_rng(101).integers(0, 3, rows)}
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA, written out here as the independent reference."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_feature_file_round_trip(tmp_path):
    written = _features(tmp_path / "a.npz", 0)
    source = load_features(tmp_path / "a.npz")
    assert source.layers == ["h1", "h2"]  # file order, reserved names left out
    np.testing.assert_array_equal(source.arrays["rep/h1"], written["h1"])
    np.testing.assert_array_equal(source.arrays["labels"], written["labels"])
    z = written["outputs"] - written["outputs"].max(1, keepdims=True)
    np.testing.assert_allclose(source.arrays["probabilities"], np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)


def test_conv_maps_are_flattened_and_probabilities_kept(tmp_path):
    maps = np.random.default_rng(0).normal(size=(N, 2, 3, 3))
    probs = np.full((N, 4), 0.25)
    np.savez(tmp_path / "c.npz", conv=maps, outputs=probs)
    source = load_features(tmp_path / "c.npz")
    assert source.arrays["rep/conv"].shape == (N, 18)
    np.testing.assert_array_equal(source.arrays["probabilities"], probs)


@pytest.mark.parametrize("case, message", [
    ("rows", "layer 'h2' has 59 rows, layer 'h1' has 60; rows must be aligned"),
    ("nan", "layer 'h1' has 1 NaN or infinite value(s)"),
    ("empty", "no layer arrays"),
    ("garbage", "not a readable .npz feature file"),
])
def test_bad_feature_files_are_refused_naming_the_file(tmp_path, case, message):
    path = tmp_path / "bad.npz"
    if case == "rows":
        np.savez(path, h1=np.ones((60, 3)), h2=np.ones((59, 3)))
    elif case == "nan":
        h1 = np.ones((60, 3))
        h1[4, 1] = np.nan
        np.savez(path, h1=h1)
    elif case == "empty":
        np.savez(path, labels=np.zeros(60, dtype=int))
    else:
        path.write_bytes(b"not a zip file")
    with pytest.raises(SourceError) as err:
        load_features(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_files_that_disagree_are_refused(tmp_path):
    _features(tmp_path / "a.npz", 0)
    _features(tmp_path / "short.npz", 1, rows=N - 1)
    with pytest.raises(SourceError, match=r"short\.npz: 59 probe rows, but a\.npz has 60"):
        load_sources(features=[tmp_path / "a.npz", tmp_path / "short.npz"])
    np.savez(tmp_path / "one_layer.npz", h1=np.ones((N, 3)))
    with pytest.raises(SourceError, match=r"one_layer\.npz: missing layer\(s\) \['h2'\]"):
        load_sources(features=[tmp_path / "a.npz", tmp_path / "one_layer.npz"])
    with pytest.raises(SourceError, match=r"a\.npz: missing layer\(s\) \['h3'\]"):
        load_sources(features=[tmp_path / "a.npz"], layers=["h1", "h3"])
    _features(tmp_path / "relabelled.npz", 2, labels=np.zeros(N, dtype=int))
    with pytest.raises(SourceError, match=r"relabelled\.npz: labels differ"):
        load_sources(features=[tmp_path / "a.npz", tmp_path / "relabelled.npz"])


def _mlp_and_probe(tmp_path: Path) -> tuple[torch.nn.Sequential, Path, np.ndarray]:
    torch.manual_seed(0)
    model = architectures.build("mlp", (5,), 3, depth=2, width=8)
    x = np.random.default_rng(0).normal(size=(N, 5)).astype(np.float32)
    np.savez(tmp_path / "probe.npz", x=x, y=np.arange(N) % 3)
    return model, tmp_path / "probe.npz", x


def _manual_forward(model: torch.nn.Sequential, x: np.ndarray) -> list[np.ndarray]:
    """relu(x W1ᵀ + b1), relu(h W2ᵀ + b2), h W3ᵀ + b3 in numpy: the second path for the hooks."""
    w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    h1 = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0)
    h2 = np.maximum(h1 @ w["fc2.weight"].T + w["fc2.bias"], 0)
    return [h1, h2, h2 @ w["logits.weight"].T + w["logits.bias"]]


@pytest.mark.parametrize("form", ["module", "state_dict", "zoo_checkpoint"])
def test_checkpoints_load_and_extract(tmp_path, form):
    model, probe_path, x = _mlp_and_probe(tmp_path)
    path = tmp_path / "m.pt"
    arch = {"name": "mlp", "depth": 2, "width": 8}
    if form == "module":
        torch.save(model, path)
        arch = None
    elif form == "state_dict":
        torch.save(model.state_dict(), path)
    else:
        torch.save({"state_dict": model.state_dict(), "spec": {"arch": arch}}, path)
        arch = None
    source = load_checkpoint(path, load_probe(probe_path), arch)
    assert source.layers == ["relu1", "relu2", "logits"]
    for got, want in zip([source.arrays[f"rep/{n}"] for n in source.layers], _manual_forward(model, x.astype(np.float64))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert [k for k in source.arrays if k.startswith("pre/")] == ["pre/fc1", "pre/fc2"]
    np.testing.assert_array_equal(source.arrays["labels"], np.arange(N) % 3)


def test_bad_checkpoints_are_refused_naming_the_file(tmp_path):
    model, probe_path, _ = _mlp_and_probe(tmp_path)
    probe = load_probe(probe_path)
    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(SourceError, match=rf"{path}: unknown architecture 'transformer9'; valid choices: \["):
        load_checkpoint(path, probe, {"name": "transformer9"})
    with pytest.raises(SourceError, match=rf"{path}: state dict does not fit architecture mlp"):
        load_checkpoint(path, probe, {"name": "mlp", "width": 16})
    with pytest.raises(SourceError, match=rf"{path}: a state dict needs an architecture config"):
        load_checkpoint(path, probe, None)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SourceError, match=rf"{broken}: checkpoint does not load"):
        load_checkpoint(broken, probe, {"name": "mlp", "width": 8})
    with pytest.raises(SourceError, match=rf"{tmp_path / 'absent.pt'}: no such file"):
        load_checkpoint(tmp_path / "absent.pt", probe, {"name": "mlp"})


def _sweep(results: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "runners.sweep", "sweep=byo", f"results_dir={results}",
           "measures.include=[cka_linear,knn_jaccard,disagreement,accuracy_difference,activation_region,weight_distance]",
           *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_byo_sweep_on_feature_files(tmp_path):
    arrays = [_features(tmp_path / f"m{i}.npz", i) for i in range(3)]
    done = _sweep(tmp_path / "results", f"byo.features={tmp_path}")  # a directory of .npz files
    assert done.returncode == 0, done.stderr[-3000:]
    scores = pd.read_parquet(tmp_path / "results" / "byo" / "scores.parquet")
    # models: 3 pairs x 2x2 layer pairs x 2 representational measures + 3 pairs x 2 functional, plus
    # 3 models x 2 ordered layer pairs x 2 measures within models; no activation-region or weight rows
    assert sorted(scores["measure"].unique()) == ["accuracy_difference", "cka_linear", "disagreement", "knn_jaccard"]
    assert len(scores) == 3 * 4 * 2 + 3 * 2 + 3 * 2 * 2
    # knn_jaccard is undefined on a ReLU layer with an all-zero row (no cosine direction): recorded, not lost
    assert scores["status"].eq("ok").sum() > len(scores) / 2
    assert scores.loc[~scores["measure"].eq("knn_jaccard"), "status"].eq("ok").all()
    for _, row in scores[scores["measure"].eq("cka_linear")].iterrows():
        x = arrays[row["seed_a"]][row["layer_a"]]
        y = arrays[row["seed_b"]][row["layer_b"]]
        assert row["value"] == pytest.approx(_linear_cka(x, y), rel=1e-9)
    disagreement = scores[scores["measure"].eq("disagreement")].set_index(["seed_a", "seed_b"])["value"]
    for (a, b), value in disagreement.items():
        assert value == pytest.approx(np.mean(arrays[a]["outputs"].argmax(1) != arrays[b]["outputs"].argmax(1)))
    assert "measure activation_region skipped: needs ReLU pre-activations" in done.stdout + done.stderr
    evaluations = pd.read_parquet(tmp_path / "results" / "byo" / "evaluations.parquet")
    assert {"layer_identification", "invariance", "layer_monotonicity"} <= set(evaluations["task"])
    again = _sweep(tmp_path / "results", f"byo.features={tmp_path}")
    assert "0 rows computed in this run" in again.stdout


def test_byo_sweep_on_checkpoints_adds_weight_and_region_measures(tmp_path):
    model, probe_path, _ = _mlp_and_probe(tmp_path)
    torch.save(model.state_dict(), tmp_path / "a.pt")
    torch.manual_seed(1)
    other = architectures.build("mlp", (5,), 3, depth=2, width=8)
    torch.save(other.state_dict(), tmp_path / "b.pt")
    done = _sweep(tmp_path / "results", f"byo.checkpoints=[{tmp_path / 'a.pt'},{tmp_path / 'b.pt'}]",
                  f"byo.probe={probe_path}", "byo.arch={name: mlp, depth: 2, width: 8}")
    assert done.returncode == 0, done.stderr[-3000:]
    scores = pd.read_parquet(tmp_path / "results" / "byo" / "scores.parquet")
    weight = scores[scores["measure"].eq("weight_distance")]["value"].item()
    flat = [torch.cat([p.detach().reshape(-1) for p in m.parameters()]).double() for m in (model, other)]
    assert weight == pytest.approx(float((flat[0] - flat[1]).norm()), rel=1e-9)
    assert scores["measure"].eq("activation_region").sum() == 1


@pytest.mark.parametrize("bad, message", [
    ("nan", "nan.npz: layer 'h1' has 1 NaN or infinite value(s)"),
    ("unknown_arch", "a.pt: unknown architecture 'resnet999'"),
])
def test_byo_sweep_refuses_a_bad_file_in_one_line(tmp_path, bad, message):
    if bad == "nan":
        _features(tmp_path / "a.npz", 0)
        h1 = _features(tmp_path / "nan.npz", 1)["h1"]
        h1[0, 0] = np.nan
        _features(tmp_path / "nan.npz", 1, h1=h1)
        overrides = [f"byo.features=[{tmp_path / 'a.npz'},{tmp_path / 'nan.npz'}]"]
    else:
        model, probe_path, _ = _mlp_and_probe(tmp_path)
        torch.save(model.state_dict(), tmp_path / "a.pt")
        overrides = [f"byo.checkpoints=[{tmp_path / 'a.pt'}]", f"byo.probe={probe_path}", "byo.arch={name: resnet999}"]
    done = _sweep(tmp_path / "results", *overrides)
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert message in line and str(tmp_path) in line


def test_byo_sweep_without_outputs_or_labels_skips_what_needs_them(tmp_path):
    for i in range(3):
        arrays = _features(tmp_path / f"m{i}.npz", i)
        np.savez(tmp_path / f"m{i}.npz", h1=arrays["h1"], h2=arrays["h2"])
    done = _sweep(tmp_path / "results", f"byo.features={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "measure disagreement skipped: needs outputs" in done.stdout + done.stderr
    assert "pc_deletion: not applicable (no labels" in done.stdout
    scores = pd.read_parquet(tmp_path / "results" / "byo" / "scores.parquet")
    assert set(scores["measure"]) == {"cka_linear", "knn_jaccard"}


# --- safetensors: the same formats written with the safetensors library ---

def test_safetensors_feature_file_round_trip_and_layer_order(tmp_path):
    from safetensors.numpy import save_file
    written = _features(tmp_path / "a.npz", 0)
    arrays = {"layer10": written["h2"], "layer2": written["h1"], "outputs": written["outputs"], "labels": written["labels"]}
    save_file(arrays, tmp_path / "natural.safetensors")
    source = load_features(tmp_path / "natural.safetensors")
    assert source.layers == ["layer2", "layer10"]  # no metadata: natural order, 2 before 10
    np.testing.assert_array_equal(source.arrays["rep/layer2"], written["h1"])
    np.testing.assert_array_equal(source.arrays["rep/layer10"], written["h2"])
    np.testing.assert_array_equal(source.arrays["labels"], written["labels"])
    z = written["outputs"] - written["outputs"].max(1, keepdims=True)
    np.testing.assert_allclose(source.arrays["probabilities"], np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)
    save_file(arrays, tmp_path / "listed.safetensors", metadata={"layers": '["layer10", "layer2"]'})
    assert load_features(tmp_path / "listed.safetensors").layers == ["layer10", "layer2"]


def test_safetensors_half_precision_and_conv_maps(tmp_path):
    from safetensors.torch import save_file
    maps = torch.randn(N, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    save_file({"conv": maps.to(torch.bfloat16), "fc": maps.flatten(1).half()}, tmp_path / "h.safetensors")
    source = load_features(tmp_path / "h.safetensors")
    assert source.arrays["rep/conv"].shape == (N, 18) and source.arrays["rep/conv"].dtype == np.float32
    np.testing.assert_array_equal(source.arrays["rep/conv"], maps.to(torch.bfloat16).float().flatten(1).numpy())
    np.testing.assert_array_equal(source.arrays["rep/fc"], maps.flatten(1).half().float().numpy())


@pytest.mark.parametrize("case, message", [
    ("rows", "layer 'h2' has 59 rows, layer 'h1' has 60; rows must be aligned"),
    ("nan", "layer 'h1' has 1 NaN or infinite value(s)"),
    ("missing", "metadata 'layers' names missing layer(s) ['h3']"),
    ("metadata", "metadata 'layers' must be a JSON list of layer names"),
    ("garbage", "not a readable .safetensors feature file"),
])
def test_bad_safetensors_feature_files_are_refused_naming_the_file(tmp_path, case, message):
    from safetensors.numpy import save_file
    path = tmp_path / "bad.safetensors"
    if case == "rows":
        save_file({"h1": np.ones((60, 3)), "h2": np.ones((59, 3))}, path)
    elif case == "nan":
        h1 = np.ones((60, 3))
        h1[4, 1] = np.nan
        save_file({"h1": h1}, path)
    elif case == "missing":
        save_file({"h1": np.ones((60, 3)), "h2": np.ones((60, 3))}, path, metadata={"layers": '["h1", "h3"]'})
    elif case == "metadata":
        save_file({"h1": np.ones((60, 3))}, path, metadata={"layers": "h1, h2"})
    else:
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(SourceError) as err:
        load_features(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_safetensors_and_npz_files_mix_in_one_directory(tmp_path):
    from safetensors.numpy import save_file
    a = _features(tmp_path / "a.npz", 0)
    b = _features(tmp_path / "b_tmp.npz", 1)
    (tmp_path / "b_tmp.npz").unlink()
    save_file(b, tmp_path / "b.safetensors", metadata={"layers": '["h1", "h2"]'})
    sources = load_sources(features=tmp_path)
    assert [s.path.name for s in sources] == ["a.npz", "b.safetensors"]
    np.testing.assert_array_equal(sources[1].arrays["rep/h2"], b["h2"])
    np.testing.assert_array_equal(sources[0].arrays["rep/h2"], a["h2"])
    save_file({"h1": b["h1"]}, tmp_path / "c.safetensors")
    with pytest.raises(SourceError, match=r"c\.safetensors: missing layer\(s\) \['h2'\]"):
        load_sources(features=tmp_path)


def test_safetensors_state_dict_checkpoints(tmp_path):
    from safetensors.torch import save_file
    model, probe_path, x = _mlp_and_probe(tmp_path)
    path = tmp_path / "m.safetensors"
    save_file(model.state_dict(), path)
    probe = load_probe(probe_path)
    source = load_checkpoint(path, probe, {"name": "mlp", "depth": 2, "width": 8})
    for got, want in zip([source.arrays[f"rep/{n}"] for n in source.layers], _manual_forward(model, x.astype(np.float64))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(SourceError, match=rf"{path}: unknown architecture 'transformer9'; valid choices: \["):
        load_checkpoint(path, probe, {"name": "transformer9"})
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SourceError, match=rf"{broken}: not a readable .safetensors state dict"):
        load_checkpoint(broken, probe, {"name": "mlp", "depth": 2, "width": 8})
