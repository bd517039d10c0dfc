"""Optimizers and learning-rate schedulers with ``torch.optim``'s names, defaults and math.

``SGD``, ``Adam`` and ``AdamW`` update parameters in place from their ``.grad`` with PyTorch's
update formulas, so a model trained here from the same weights and batches follows PyTorch's
trajectory; :mod:`cnnperf.optim.lr_scheduler` gives the same learning-rate sequences.

>>> import numpy as np
>>> from cnnperf import nn, optim
>>> model = nn.Linear(3, 1)
>>> opt = optim.AdamW(model.parameters(), lr=1e-2)
>>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
>>> x, y = np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)
>>> for _ in range(3):
...     opt.zero_grad()
...     loss = nn.functional.mse_loss(model(x), y)
...     loss.backward(); opt.step(); sched.step()
>>> round(sched.get_last_lr()[0], 6)
0.007939
"""

from __future__ import annotations

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
