"""The CIFAR-10 write-up's network (../shared/workloads/003, section 1.1, its Code/nm.py) as the
student wrote it: a plain nn.Module of their own, trained by cnnlab through `imports:`.

cnnlab passes `num_classes` and `in_channels` (from the data) to an __init__ that takes them; the
other parameters are options of `model:` in the config, checked against these type hints."""

from __future__ import annotations

from torch import nn


class NN(nn.Module):
    """Two conv-ReLU-pool stages (3 -> 16 -> 32 channels, 32 -> 8 px), then FC 128, FC 128, FC 10."""

    def __init__(self, in_channels: int = 3, hidden_channels: tuple[int, int] = (16, 32),
                 hidden_neurons: tuple[int, int] = (128, 128), num_classes: int = 10):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.extractor = nn.Sequential(
            # stage 1
            nn.Conv2d(in_channels=in_channels, out_channels=hidden_channels[0], kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            # stage 2
            nn.Conv2d(in_channels=hidden_channels[0], out_channels=hidden_channels[1], kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2))
        self.classifier = nn.Sequential(
            nn.Linear(hidden_channels[1] * 8 * 8, hidden_neurons[0]),
            nn.ReLU(),
            nn.Linear(hidden_neurons[0], hidden_neurons[1]),
            nn.ReLU(),
            nn.Linear(hidden_neurons[1], num_classes))

    def forward(self, inputs):
        hidden = self.extractor(inputs)
        return self.classifier(hidden.view(-1, self.hidden_channels[1] * 8 * 8))
