import numpy as np
import torch

from tavaal.data import load_dataset
from tavaal.inference import forward_pool, mc_dropout_probabilities, per_sample_loss
from tavaal.models import build_task_model


def test_forward_pool_keeps_the_callers_order(tmp_path):
    digits = load_dataset("digits", tmp_path)
    torch.manual_seed(0)
    model = build_task_model("digits_cnn", digits.info.input_shape, 10)
    indices = np.array([500, 3, 77, 3, 1000], dtype=np.int64)
    out = forward_pool(model, digits.x_train, indices, digits.info, "cpu", batch_size=2)
    single = [
        forward_pool(model, digits.x_train, np.array([i]), digits.info, "cpu").logits[0]
        for i in indices
    ]
    np.testing.assert_allclose(out.logits, np.stack(single), rtol=1e-5, atol=1e-5)
    assert out.embedding.shape == (5, model.embedding_dim) and out.predicted_loss is None


def test_mc_dropout_passes(tmp_path):
    digits = load_dataset("digits", tmp_path)
    indices = np.arange(40, dtype=np.int64)
    torch.manual_seed(0)
    plain = build_task_model("digits_cnn", digits.info.input_shape, 10, dropout=0.0)
    reference = forward_pool(plain, digits.x_train, indices, digits.info, "cpu").logits
    out = mc_dropout_probabilities(plain, digits.x_train, indices, digits.info, "cpu", 3, 7)
    probs = out.probabilities
    np.testing.assert_allclose(out.logits, reference, rtol=1e-5, atol=1e-5)
    # Without dropout every pass is the deterministic prediction.
    expected = torch.softmax(torch.from_numpy(reference), 1).numpy()
    for t in range(3):
        np.testing.assert_allclose(probs[t], expected, rtol=1e-5, atol=1e-6)

    torch.manual_seed(0)
    noisy = build_task_model("digits_cnn", digits.info.input_shape, 10, dropout=0.5)
    a = mc_dropout_probabilities(noisy, digits.x_train, indices, digits.info, "cpu", 4, 7, 16)
    b = mc_dropout_probabilities(noisy, digits.x_train, indices, digits.info, "cpu", 4, 7, 16)
    a, b = a.probabilities, b.probabilities
    assert a.shape == (4, 40, 10)
    np.testing.assert_array_equal(a, b)  # seeded masks
    assert not np.allclose(a[0], a[1])  # passes differ
    np.testing.assert_allclose(a.sum(axis=2), 1.0, rtol=1e-5)
    assert not noisy.training  # the model is left in eval mode


def test_per_sample_loss_hand_value():
    logits = np.array([[0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    loss = per_sample_loss(logits, np.array([1, 0]))
    np.testing.assert_allclose(loss, [np.log(2), np.log(1 + np.exp(-2))], rtol=1e-6)
