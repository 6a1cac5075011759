"""Threads sharing one model take turns: same maps as one thread, and the model exactly as it was."""

import threading

import torch
from tiny import assert_same_state, model_state
from torch import nn

import simexplain


class BatchNormCNN(nn.Module):
    """A training-mode CNN with BatchNorm: a forward in train mode would change its running statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


JOBS = [
    ("input-x-gradient", {"guided": True}),
    ("input-x-gradient", {"guided": False}),
    ("smooth-grad", {"samples": 3, "seed": 1, "guided": True}),
    ("interaction-cam", {"reduction": "max"}),
    ("pair-grad-cam", {}),
    ("conditional-occlusion", {"window": 8, "stride": 4}),
]


def test_four_threads_on_one_model_match_one_thread_and_leave_the_model_as_it_was():
    model = simexplain.PairModel(BatchNormCNN().train(), layer="features.4")
    model.encoder.train()
    x1, x2 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    before = model_state(model)
    expected = {i: simexplain.explain(model, x1, x2, name, **params) for i, (name, params) in enumerate(JOBS)}
    assert_same_state(before, model_state(model))

    results, errors = {}, []
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            start.wait()
            for round_ in range(3):
                for i, (name, params) in enumerate(JOBS):
                    if (i + worker + round_) % 2 == 0:  # threads interleave different methods
                        results[(worker, round_, i)] = simexplain.explain(model, x1, x2, name, **params)
        except Exception as error:  # noqa: BLE001  (reported below, with the thread's failure)
            errors.append(repr(error))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert len(results) == 4 * 3 * len(JOBS) // 2
    for (_, _, i), e in results.items():
        torch.testing.assert_close(e.map1, expected[i].map1, rtol=0, atol=0)
        torch.testing.assert_close(e.map2, expected[i].map2, rtol=0, atol=0)
    assert_same_state(before, model_state(model))
    assert model.encoder.training and model.encoder.features[1].training
