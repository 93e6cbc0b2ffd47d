"""runners.compare: two seeds and a weight-perturbed copy of tiny models, compared through the CLI (a real
subprocess) and the Python function; every number checked against measures.compute on arrays this test
extracts itself (a numpy forward pass), and the verdict's ranking checked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import measures
from runners.compare import compare, equivalent_sigma, main
from tasks.zoo import architectures, datasets
from tasks.zoo.training import perturb, train

ROOT = Path(__file__).resolve().parents[2]
SIGMAS = "0.003,0.01,0.03,0.1,0.3,1"
FAST = ["--measures", "cka_linear,knn_jaccard", "--bootstrap", "50", "--permutations", "9", "--sigmas", SIGMAS]


def _forward(model: torch.nn.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """Layers of the zoo's 2-layer MLP by hand in numpy (the second path for the command's hooks)."""
    w = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    x = x.astype(np.float64).reshape(len(x), -1)
    pre1 = x @ w["fc1.weight"].T + w["fc1.bias"]
    pre2 = np.maximum(pre1, 0) @ w["fc2.weight"].T + w["fc2.bias"]
    logits = np.maximum(pre2, 0) @ w["logits.weight"].T + w["logits.bias"]
    z = np.exp(logits - logits.max(1, keepdims=True))
    return {"rep/relu1": np.maximum(pre1, 0), "rep/relu2": np.maximum(pre2, 0), "rep/logits": logits,
            "pre": [pre1, pre2], "logits": logits, "probabilities": z / z.sum(1, keepdims=True)}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two seeds (A, B), a third seed as the reference (C), and A with weight noise σ = 0.01 (P)."""
    root = tmp_path_factory.mktemp("compare")
    data = datasets.load("synthetic")
    models = {}
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        torch.manual_seed(seed)
        models[name] = architectures.build("mlp", data.input_shape, data.n_classes, depth=2, width=16)
        train(models[name], data, seed=seed, epochs=5, batch_size=64, lr=0.003)
    models["p"] = perturb(models["a"], 0.01, 7)
    torch.save(models["a"].state_dict(), root / "a.pt")
    torch.save(models["b"], root / "b.pt")  # a whole module: needs no --arch
    torch.save(models["c"].state_dict(), root / "c.pt")
    torch.save(models["p"].state_dict(), root / "p.pt")
    np.savez(root / "probe.npz", x=data.x_probe, y=data.y_probe)
    return root, models, data


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "runners.compare", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def reports(zoo):
    root, _, _ = zoo
    out = {}
    for other in ("b", "p"):
        done = _cli(root, "a.pt", f"{other}.pt", "--data", "probe.npz", "--arch", "mlp_small", "--reference", "c.pt",
                    "--out", f"a_{other}", *FAST)
        assert done.returncode == 0, done.stderr[-3000:]
        out[other] = (json.loads((root / f"a_{other}" / "report.json").read_text()),
                      pd.read_parquet(root / f"a_{other}" / "report.parquet"), done.stdout)
    return out


def test_verdict_ranks_the_perturbed_copy_closer_than_another_seed(reports):
    seed, noisy = reports["b"][0]["verdict"], reports["p"][0]["verdict"]
    as_float = lambda v: math.inf if v == "inf" else v  # noqa: E731
    assert as_float(noisy["equivalent_sigma"]) < as_float(seed["equivalent_sigma"])
    assert noisy["fraction_of_seed"] < seed["fraction_of_seed"]
    assert noisy["text"].startswith("closer than two seeds")
    assert seed["text"].startswith("as different as two seeds")
    # the perturbed copy sits near its own noise level on the σ grid (it is A + noise of σ = 0.01)
    assert 0.003 <= noisy["equivalent_sigma"] <= 0.03
    assert "VERDICT: closer than two seeds" in reports["p"][2]


def test_every_number_equals_measures_compute(zoo, reports):
    root, models, data = zoo
    arrays = {name: _forward(m, data.x_probe) for name, m in models.items()}
    labels = data.y_probe
    for other in ("b", "p"):
        frame = reports[other][1]
        a, b = arrays["a"], arrays[other]
        main = frame[frame["pair"].eq("A~B")]
        assert set(main["section"]) == {"functional", "heatmap", "matched_layers", "activation_region", "weights"}
        for _, row in main.iterrows():
            name = row["measure"]
            if row["section"] == "functional":
                kind = measures.info(name).inputs
                key = "probabilities" if kind == "probabilities" else "logits"
                extra = {"labels": labels} if measures.info(name).requires_labels else {}
                want = measures.compute(name, a[key], b[key], **extra)
                assert row["low"] <= row["value"] <= row["high"]
            elif row["section"] in ("heatmap", "matched_layers"):
                want = measures.compute(name, a[f"rep/{row['layer_a']}"], b[f"rep/{row['layer_b']}"])
            elif row["section"] == "activation_region":
                want = measures.compute(name, a["pre"], b["pre"])
            else:
                want = measures.compute(name, models["a"], models[other], **json.loads(row["params"]))
            assert row["value"] == pytest.approx(want, rel=1e-5, abs=1e-7), (other, row.to_dict())
        p_values = main.loc[main["section"].eq("matched_layers"), "p_value"]
        assert ((p_values > 0) & (p_values <= 1)).all() and len(p_values) == 2 * 3
        # the calibration: A against its noisy copy at σ = 0.1 (noise seed 0), and against the seed C
        noisy = _forward(perturb(models["a"], 0.1, 0), data.x_probe)
        ref = frame[frame["pair"].eq("A~noise") & frame["sigma"].eq(0.1)].set_index("measure")["value"]
        assert ref["disagreement"] == pytest.approx(np.mean(a["logits"].argmax(1) != noisy["logits"].argmax(1)))
        cka = np.mean([1 - measures.compute("cka_linear", a[k], noisy[k]) for k in ("rep/relu1", "rep/relu2", "rep/logits")])
        assert ref["cka_linear (mean over matched layers)"] == pytest.approx(cka, rel=1e-5)
        seed = frame[frame["pair"].eq("A~seed")].set_index("measure")["value"]
        assert seed["jsd"] == pytest.approx(measures.compute("jsd", a["probabilities"], arrays["c"]["probabilities"]))


def test_outputs_and_report(zoo, reports):
    root, _, _ = zoo
    html = (root / "a_b" / "report.html").read_text()
    assert "data:image/png;base64" in html and "as different as two seeds" in html
    for name in ("heatmaps.png", "verdict.png"):
        assert (root / "a_b" / name).stat().st_size > 10_000
    heat = reports["b"][0]["heatmaps"]["cka_linear"]
    assert heat["layers_a"] == ["relu1", "relu2", "logits"] and np.shape(heat["values"]) == (3, 3)


def test_python_function_takes_a_dataloader(zoo, reports):
    _, models, data = zoo
    loader = DataLoader(TensorDataset(torch.from_numpy(data.x_probe), torch.from_numpy(data.y_probe)), batch_size=64)
    report = compare(models["a"], models["b"], loader, measures_=("cka_linear",), sigmas=(0.01, 0.1),
                     n_bootstrap=20, n_permutations=5, progress=False)
    frame = report.frame()
    cli = reports["b"][1]
    for name in ("disagreement", "accuracy_difference", "jsd"):
        got = frame[(frame["pair"] == "A~B") & (frame["measure"] == name)]["value"].item()
        assert got == pytest.approx(cli[(cli["pair"] == "A~B") & (cli["measure"] == name)]["value"].item(), rel=1e-9)


def test_equivalent_sigma_interpolates_in_log_sigma():
    sigmas, curve = [0.01, 0.1, 1.0], [0.1, 0.2, 0.4]
    assert equivalent_sigma(0.2, sigmas, curve, 0.0) == pytest.approx(0.1)
    assert equivalent_sigma(0.3, sigmas, curve, 0.0) == pytest.approx(10 ** -0.5)  # half way in log σ
    assert equivalent_sigma(0.5, sigmas, curve, 0.0) == math.inf
    assert equivalent_sigma(0.0, sigmas, curve, 0.0) == 0.0
    assert equivalent_sigma(0.05, sigmas, curve, 0.0) == pytest.approx(0.005)  # linear from σ = 0


def _in_process(root: Path, capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """The CLI's ``main`` in this process (the subprocess path is covered above; this saves start-ups)."""
    monkeypatch.chdir(root)
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_mismatched_architectures_skip_weight_measures_and_say_why(zoo, capsys, monkeypatch):
    root, _, data = zoo
    torch.manual_seed(3)
    wide = architectures.build("mlp", data.input_shape, data.n_classes, depth=2, width=24)
    torch.save(wide, root / "wide.pt")
    code, out, err = _in_process(root, capsys, monkeypatch, "a.pt", "wide.pt", "--data", "probe.npz",
                                 "--arch", "mlp_small", *FAST)
    assert code == 0, err[-2000:]
    assert "weight_distance: A and B have different architectures" in out
    frame = pd.read_parquet(root / "results" / "compare" / "a_vs_wide" / "report.parquet")
    assert not frame["section"].eq("weights").any() and frame["section"].eq("activation_region").any()


@pytest.mark.parametrize("case, message", [
    ("rows", "short.npz: 59 probe rows, but"),
    ("broken", "broken.pt: checkpoint does not load"),
    ("nan", "nan.pt: outputs has"),
    ("arch", "a.pt: unknown architecture 'mlp9'"),
])
def test_bad_input_is_one_line_naming_the_file(zoo, case, message, capsys, monkeypatch):
    root, models, data = zoo
    if case == "rows":
        np.savez(root / "long.npz", h=np.ones((60, 3)), outputs=np.eye(3)[np.arange(60) % 3])
        np.savez(root / "short.npz", h=np.ones((59, 3)), outputs=np.eye(3)[np.arange(59) % 3])
        args = ["long.npz", "short.npz"]
    elif case == "broken":
        (root / "broken.pt").write_bytes((root / "a.pt").read_bytes()[:300])
        args = ["a.pt", "broken.pt", "--data", "probe.npz", "--arch", "mlp_small"]
    elif case == "nan":
        bad = perturb(models["a"], 0.0, 0)
        with torch.no_grad():
            bad.logits.bias.fill_(float("nan"))
        torch.save(bad, root / "nan.pt")
        args = ["a.pt", "nan.pt", "--data", "probe.npz", "--arch", "mlp_small"]
    else:
        args = ["a.pt", "b.pt", "--data", "probe.npz", "--arch", "{name: mlp9}"]
    code, _, err = _in_process(root, capsys, monkeypatch, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("compare: "), err


def test_recipe_trains_the_seed_reference_like_a_given_checkpoint(zoo, reports, capsys, monkeypatch):
    """--recipe fast --recipe-seed 2 retrains C (seed 2 of conf/train/fast.yaml, which the fixture used):
    the seed reference rows equal those computed from the checkpoint c.pt."""
    root, _, _ = zoo
    code, _, err = _in_process(root, capsys, monkeypatch, "a.pt", "b.pt", "--data", "synthetic", "--arch", "mlp_small",
                               "--recipe", "fast", "--recipe-seed", "2", "--out", "a_b_recipe", *FAST)
    assert code == 0, err[-2000:]
    frame = pd.read_parquet(root / "a_b_recipe" / "report.parquet")
    trained = frame[frame["pair"].eq("A~seed")].set_index("measure")["value"]
    given = reports["b"][1]
    given = given[given["pair"].eq("A~seed")].set_index("measure")["value"]
    pd.testing.assert_series_equal(trained.sort_index(), given.sort_index(), rtol=1e-9)


def test_safetensors_feature_files_compare_like_the_same_npz(zoo, capsys, monkeypatch):
    """A .safetensors feature file (with or without 'layers' metadata) gives the numbers of the .npz holding
    the same arrays; a .safetensors state dict is still read as a checkpoint."""
    import safetensors.numpy
    import safetensors.torch

    root, models, data = zoo
    rng = np.random.default_rng(5)
    arrays = {name: {"h1": rng.standard_normal((60, 6)), "h2": rng.standard_normal((60, 4)),
                     "outputs": np.eye(3)[rng.integers(0, 3, 60)]} for name in ("fa", "fb")}
    for name, layers in arrays.items():
        np.savez(root / f"{name}.npz", **layers)
        safetensors.numpy.save_file(layers, str(root / f"{name}.safetensors"),
                                    metadata={"layers": json.dumps(["h1", "h2", "outputs"])} if name == "fa" else None)
    frames = {}
    for suffix in ("npz", "safetensors"):
        code, _, err = _in_process(root, capsys, monkeypatch, f"fa.{suffix}", f"fb.{suffix}", "--out", f"st_{suffix}", *FAST)
        assert code == 0, err[-2000:]
        frames[suffix] = pd.read_parquet(root / f"st_{suffix}" / "report.parquet")
    key = ["section", "measure", "layer_a", "layer_b"]
    npz, st = (frames[s].sort_values(key).reset_index(drop=True) for s in ("npz", "safetensors"))
    assert len(npz) > 0 and npz[key].equals(st[key])
    np.testing.assert_allclose(st["value"].to_numpy(float), npz["value"].to_numpy(float), rtol=0, atol=0)
    safetensors.torch.save_file(models["a"].state_dict(), str(root / "a_state.safetensors"))
    code, _, err = _in_process(root, capsys, monkeypatch, "a_state.safetensors", "a.pt", "--data", "probe.npz",
                               "--arch", "mlp_small", "--out", "st_state", *FAST)
    assert code == 0, err[-2000:]
