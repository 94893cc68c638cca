"""OOD detection on real data: MNIST digits (in) against notMNIST letters (out)."""

import numpy as np
import pytest

from keras_reliability import ood
from keras_reliability.metrics import evaluate_ood
from keras_reliability.metrics import ood_auroc

# Maximum-softmax AUROC (MNIST test in, notMNIST out) and mean MSP of each
# set, computed with these released models in ../shared/data (notMNIST
# README), with average ranks for ties.
WONG2020_MSP = {
    "fgsm": (0.9071, 0.982, 0.793),
    "pgd_madry": (0.8763, 0.995, 0.891),
}
# Hendrycks & Gimpel (2017), Table 2: MNIST vs notMNIST, MSP AUROC 85%.
HENDRYCKS_GIMPEL_MSP_AUROC = 0.85

NUM_TRAIN = 8000
NUM_OOD = 3000


@pytest.mark.parametrize("name", sorted(WONG2020_MSP))
def test_msp_auroc_of_released_mnist_models_matches_the_reference(
    name, mnist_test_images, notmnist_test_images, wong2020_mnist_model
):
    x_in, _ = mnist_test_images
    x_out, _ = notmnist_test_images
    model = wong2020_mnist_model(name)
    scorer = ood.MaxSoftmax()
    scores_in, scores_out = scorer.score(model, x_in), scorer.score(model, x_out)
    auroc, mean_in, mean_out = WONG2020_MSP[name]
    assert ood_auroc(scores_in, scores_out) == pytest.approx(auroc, abs=5e-5)
    assert -scores_in.mean() == pytest.approx(mean_in, abs=5e-4)
    assert -scores_out.mean() == pytest.approx(mean_out, abs=5e-4)


@pytest.fixture(scope="module")
def trained_cnn(mnist_test_images, notmnist_test_images, small_mnist_cnn):
    x, y = mnist_test_images
    model = small_mnist_cnn(0)
    model.fit(x[:NUM_TRAIN], y[:NUM_TRAIN], epochs=3, batch_size=128, verbose=0)
    data = {
        "train": (x[:NUM_TRAIN], y[:NUM_TRAIN]),
        "test": (x[NUM_TRAIN:], y[NUM_TRAIN:]),
        "ood": notmnist_test_images[0][:NUM_OOD],
    }
    return model, data


SCORERS = {
    "msp": ood.MaxSoftmax,
    "maxlogit": ood.MaxLogit,
    "energy": ood.Energy,
    "entropy": ood.Entropy,
    "odin": lambda: ood.ODIN(temperature=1000.0, epsilon=0.0014),
    "mahalanobis": ood.Mahalanobis,
    "knn": lambda: ood.KNN(k=50),
    "vim": ood.ViM,
    "react": ood.ReAct,
}


@pytest.fixture(scope="module")
def results(trained_cnn):
    model, data = trained_cnn
    x_train, y_train = data["train"]
    x_test, _ = data["test"]
    table = {}
    for name, make in SCORERS.items():
        scorer = make().fit(model, x_train, y_train)
        table[name] = evaluate_ood(scorer.score(model, x_test), scorer.score(model, data["ood"]))
    print("\nMNIST (in) vs notMNIST (out), CNN trained on 8000 MNIST test images:")
    for name, row in table.items():
        print(f"  {name:12s} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    return table


def test_cnn_learns_mnist(trained_cnn):
    model, data = trained_cnn
    x_test, y_test = data["test"]
    accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
    assert accuracy > 0.96


def test_msp_reaches_the_published_mnist_vs_notmnist_auroc(results):
    assert results["msp"]["auroc"] >= HENDRYCKS_GIMPEL_MSP_AUROC


def test_a_feature_based_scorer_beats_msp(results):
    best = max(results[name]["auroc"] for name in ("mahalanobis", "knn", "vim", "react"))
    assert best > results["msp"]["auroc"] + 0.02


def test_every_scorer_detects_letters_better_than_chance(results):
    for name, row in results.items():
        assert row["auroc"] > 0.75, name
        assert 0.0 <= row["fpr95"] <= 1.0
