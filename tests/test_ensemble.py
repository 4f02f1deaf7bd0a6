"""Logits bundles and ensembling: weight search and per-class bias on constructed cases, alignment, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmcls.cli import run_main
from mmcls.errors import UserError
from mmcls.logits import load_logits, save_logits, softmax
from mmcls.workflow.ensemble import combine, ensemble_files, fit_ensemble, score, search_class_bias

CLASSES = ["0101", "0102", "0201", "0202"]  # level 1: 01, 01, 02, 02
LV1 = np.array([0, 0, 1, 1])


def one_hot_logits(labels: np.ndarray, strength: float = 4.0, num_classes: int = 4) -> np.ndarray:
    return strength * np.eye(num_classes)[labels]


def test_bundle_round_trip_and_alignment(tmp_path):
    ids = ["a", "b", "c"]
    logits = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_logits(tmp_path / "x.npy", ids, logits, CLASSES)
    bundle = load_logits(tmp_path / "x.npy")
    assert bundle.ids == ids and bundle.classes == CLASSES
    np.testing.assert_array_equal(bundle.logits, logits)
    # rows and columns follow the requested order
    aligned = bundle.aligned(["c", "a"], ["0202", "0101", "0102", "0201"])
    np.testing.assert_array_equal(aligned, logits[[2, 0]][:, [3, 0, 1, 2]])
    np.testing.assert_allclose(bundle.probabilities().sum(axis=1), 1.0)


def test_bundle_errors_are_one_line(tmp_path):
    save_logits(tmp_path / "x.npy", ["a"], np.zeros((1, 4)), CLASSES)
    bundle = load_logits(tmp_path / "x.npy")
    with pytest.raises(UserError, match="1 ids are missing"):
        bundle.aligned(["a", "zz"], CLASSES)
    with pytest.raises(UserError, match="classes differ"):
        bundle.aligned(["a"], ["0101", "0102", "0201", "9999"])
    (tmp_path / "x.classes.txt").unlink()
    with pytest.raises(UserError, match=r"x\.classes\.txt is missing"):
        load_logits(tmp_path / "x.npy")
    with pytest.raises(UserError, match="not found"):
        load_logits(tmp_path / "nope.npy")
    with pytest.raises(UserError, match="does not match"):
        save_logits(tmp_path / "y.npy", ["a", "b"], np.zeros((1, 4)), CLASSES)


def test_weight_search_drops_a_noise_model_and_beats_every_single_model():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=400)
    good = softmax(one_hot_logits(truth, 1.0) + rng.normal(0, 0.6, (400, 4)))  # right most of the time
    noise = softmax(rng.normal(0, 3.0, (400, 4)))  # confident and useless
    fit = fit_ensemble([good, noise], truth, LV1)
    assert fit.weights[1] < 0.1 < fit.weights[0]
    assert fit.weighted_score >= max(fit.single_scores)
    assert fit.weighted_score > fit.equal_score  # equal weights let the noise in
    assert fit.score == fit.weighted_score  # no class bias asked for


def test_complementary_models_average_to_better_than_either():
    truth = np.tile(np.arange(4), 50)
    half = np.arange(truth.size) < truth.size // 2
    wrong = (truth + 1) % 4
    # model 1 is sure and right on the first half, mildly wrong on the second; model 2 the other way round
    m1 = np.where(half[:, None], one_hot_logits(truth, 5.0), one_hot_logits(wrong, 1.0))
    m2 = np.where(half[:, None], one_hot_logits(wrong, 1.0), one_hot_logits(truth, 5.0))
    probs = [softmax(m1), softmax(m2)]
    fit = fit_ensemble(probs, truth, LV1)
    assert max(fit.single_scores) < 0.7  # half right at level 2 (a wrong guess can share the level-1 class)
    assert fit.weighted_score == pytest.approx(1.0)


def test_class_bias_recovers_an_under_predicted_class():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, size=800)
    logits = one_hot_logits(truth, 2.0) + rng.normal(0, 0.5, (800, 4))
    logits[:, 3] -= 1.6  # class 3 is systematically too unlikely
    log_probs = np.log(softmax(logits))
    bias = search_class_bias(log_probs, truth, LV1)
    assert bias[3] > 0 and bias[3] == max(bias)
    assert score(log_probs + bias, truth, LV1) > score(log_probs, truth, LV1) + 0.05


def test_combine_is_the_weighted_mean_of_probabilities():
    rng = np.random.default_rng(2)
    p1, p2 = softmax(rng.normal(size=(5, 4))), softmax(rng.normal(size=(5, 4)))
    np.testing.assert_allclose(np.exp(combine([p1, p2], [3, 1])), 0.75 * p1 + 0.25 * p2)
    with pytest.raises(ValueError):
        combine([p1, p2], [0, 0])


@pytest.fixture
def bundles(tmp_path):
    """Two models' out-of-fold and test bundles, stored in different row and column orders."""
    rng = np.random.default_rng(3)
    ids = [f"v{i}" for i in range(60)]
    truth = rng.integers(0, 4, size=60)
    (tmp_path / "truth.csv").write_text("".join(f"{i},{CLASSES[t]}\n" for i, t in zip(ids, truth, strict=True)))
    oof_a = one_hot_logits(truth, 2.0) + rng.normal(0, 1.0, (60, 4))
    oof_b = rng.normal(0, 1.0, (60, 4))
    save_logits(tmp_path / "oof_a.npy", ids, oof_a, CLASSES)
    order, cols = rng.permutation(60), [2, 0, 3, 1]  # model b: shuffled rows and columns
    save_logits(tmp_path / "oof_b.npy", [ids[i] for i in order], oof_b[order][:, cols], [CLASSES[c] for c in cols])
    test_ids = ["t0", "t1", "t2"]
    test_a, test_b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    save_logits(tmp_path / "test_a.npy", test_ids, test_a, CLASSES)
    save_logits(tmp_path / "test_b.npy", test_ids, test_b, CLASSES)
    return tmp_path, (oof_a, oof_b), (test_a, test_b), truth


def test_ensemble_files_aligns_and_applies_the_fit_to_test(bundles):
    folder, (oof_a, oof_b), (test_a, test_b), truth = bundles
    result = ensemble_files([folder / "oof_a.npy", folder / "oof_b.npy"], [folder / "test_a.npy",
                            folder / "test_b.npy"], folder / "truth.csv")
    direct = fit_ensemble([softmax(oof_a), softmax(oof_b)], truth, LV1)
    assert result.fit.weights == pytest.approx(direct.weights)  # shuffled rows/columns did not change the fit
    expected = combine([softmax(test_a), softmax(test_b)], direct.weights)
    np.testing.assert_allclose(result.test_log_probs, expected, rtol=1e-5, atol=1e-5)
    assert result.test_labels() == [CLASSES[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(result.oof_log_probs, combine([softmax(oof_a), softmax(oof_b)], direct.weights),
                               rtol=1e-5, atol=1e-5)


def test_ensemble_cli_writes_submission_logits_and_report(bundles, capsys):

    from mmcls.commands import ensemble

    folder = bundles[0]
    args = ["--oof", str(folder / "oof_a.npy"), "--oof", str(folder / "oof_b.npy"), "--test",
            str(folder / "test_a.npy"), "--test", str(folder / "test_b.npy"), "--truth", str(folder / "truth.csv"),
            "--class-bias", "--output", str(folder / "out.csv"), "--logits", str(folder / "ens.npy"),
            "--report", str(folder / "report.json")]
    assert run_main(ensemble.main, args) == 0
    lines = (folder / "out.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["t0", "t1", "t2"]
    report = json.loads((folder / "report.json").read_text())
    assert report["score"] >= report["weighted_score"] >= max(report["single_scores"]) - 1e-12
    saved = load_logits(folder / "ens.npy")
    assert [CLASSES[i] for i in saved.logits.argmax(axis=1)] == [line.split(",")[1] for line in lines]
    # mismatched model counts and unlabelled out-of-fold ids are one-line errors
    assert run_main(ensemble.main, ["--oof", str(folder / "oof_a.npy"), "--test", str(folder / "test_a.npy"),
                                    "--test", str(folder / "test_b.npy"), "--truth", str(folder / "truth.csv")]) == 2
    assert "error: --oof and --test must name the same models" in capsys.readouterr().err  # the command's flags
    (folder / "short.csv").write_text("v0,0101\n")
    assert run_main(ensemble.main, ["--oof", str(folder / "oof_a.npy"), "--truth", str(folder / "short.csv")]) == 2


def test_fixed_and_equal_weights_skip_the_search(bundles):
    folder, _, (test_a, test_b), _ = bundles
    oof, test = [folder / "oof_a.npy", folder / "oof_b.npy"], [folder / "test_a.npy", folder / "test_b.npy"]
    fixed = ensemble_files(oof, test, folder / "truth.csv", weights=[3, 1])
    assert fixed.fit.weights == pytest.approx([0.75, 0.25]) and fixed.fit.history == []
    np.testing.assert_allclose(fixed.test_log_probs, combine([softmax(test_a), softmax(test_b)], [3, 1]), atol=1e-6)
    equal = ensemble_files(oof, test, folder / "truth.csv", search=False)
    assert equal.fit.weights == pytest.approx([0.5, 0.5])
    assert equal.fit.weighted_score == pytest.approx(equal.fit.equal_score)
    without_oof = ensemble_files([], test, None, weights=[1, 3])
    assert without_oof.fit is None
    np.testing.assert_allclose(without_oof.test_log_probs, combine([softmax(test_a), softmax(test_b)], [1, 3]),
                               atol=1e-6)
    with pytest.raises(UserError, match=r"^weights: need 2"):  # the library names its argument
        ensemble_files(oof, test, folder / "truth.csv", weights=[1])
