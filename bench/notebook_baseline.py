"""The seed notebook's data pipeline and training loop, kept as they ran, as the baseline.

Only the hard-coded "cuda" became a `device` argument so the loop also runs on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import Dataset


class Net(nn.Module):
    """The notebook's custom model, verbatim (with its fixed preconv weights set by `make_net`)."""

    def __init__(self):
        super(Net, self).__init__()  # noqa: UP008
        self.preconv1 = nn.Conv2d(3, 2, 1)
        self.fc1 = nn.Linear(4, 128)
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = nn.Linear(128, 128)
        self.fc4 = nn.Linear(128, 128)
        self.fc5 = nn.Linear(128, 128)
        self.fc6 = nn.Linear(128, 128)
        self.fc7 = nn.Linear(128, 128)
        self.fc8 = nn.Linear(128, 1)

    def forward(self, x):
        x = x.to(torch.float32)
        x = self.preconv1(x)
        x = x.view(x.shape[0], x.shape[1], -1)
        x_max = x.max(axis=2)[0]
        x_min = (-x).max(axis=2)[0]

        x_max = (x_max - 1) * 128
        x_min = (-x_min + 1) * 128

        x = torch.cat((x_max, x_min), axis=-1)
        x = F.elu(self.fc1(x))
        x = F.elu(self.fc2(x))
        x = F.elu(self.fc3(x))
        x = F.elu(self.fc4(x))
        x = F.elu(self.fc5(x))
        x = F.elu(self.fc6(x))
        x = F.elu(self.fc7(x))
        x = self.fc8(x)

        return torch.squeeze(x)


def make_net(device="cpu"):
    """Net with the notebook's hand-set preconv (net.preconv1.weight.data[...] = ...)."""
    net = Net().to(device)
    net.preconv1.weight.data[0, 0] = 1
    net.preconv1.weight.data[0, 1] = 1
    net.preconv1.weight.data[0, 2] = 0
    net.preconv1.weight.data[1, 0] = 1
    net.preconv1.weight.data[1, 1] = 0
    net.preconv1.weight.data[1, 2] = 1
    net.preconv1.bias.data[:] = 0
    net.preconv1.requires_grad_ = False  # as in the notebook: this freezes nothing
    return net


class measure_dataset(Dataset):  # noqa: N801 - the notebook's name
    def __init__(self, size=(128, 128), data_size=10000):
        self.size = size
        self.data_size = data_size

    def __len__(self):
        return self.data_size

    def __getitem__(self, index):
        sample = np.zeros((3, self.size[0], self.size[1]))
        sample[1, :, :] = np.arange(0, self.size[0])[None, :] / (self.size[0] + 1)
        sample[2, :, :] = np.arange(0, self.size[1])[:, None] / (self.size[1] + 1)

        first_x = np.random.randint(0, self.size[0])
        second_x = np.random.randint(0, self.size[0])
        first_y = np.random.randint(0, self.size[1])
        second_y = np.random.randint(0, self.size[1])

        sample[0, first_y, first_x] = 1
        sample[0, second_y, second_x] = -1
        return sample, np.sqrt((first_x - second_x) ** 2 + (first_y - second_y) ** 2)


def train_model(trn_dataloader, model, epochs=10, device="cuda", max_steps=None):
    """The notebook's train_model; max_steps stops early for benchmarking."""
    criterion = nn.L1Loss()
    model.train()
    optimizer = optim.Adam(model.parameters(), lr=0.0001)
    running_loss = []
    steps = 0
    for _epoch in range(epochs):
        for _i, data in enumerate(trn_dataloader, 0):
            inputs, labels = data
            inputs = inputs.to(torch.float32).to(device)
            labels = labels.to(torch.float32).to(device)
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss.append(loss.cpu().detach().numpy())
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return running_loss
    return running_loss
