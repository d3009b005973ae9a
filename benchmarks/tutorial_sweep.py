"""The PyTorch quickstart's way of comparing activations, as a newcomer would write it: the baseline
the project's speed is measured against (sweep.py times it; loops.py uses its train and test loops).

    python benchmarks/tutorial_sweep.py ROOT EPOCHS BATCH_SIZE DEVICE [SEEDS, e.g. 0,1,2; default 0]

Seeds x 4 activations x EPOCHS, one after another: torchvision's MNIST with ToTensor, a DataLoader,
``loss.item()`` every step.
"""

import sys

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import ToTensor


class NeuralNetwork(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(28 * 28, 128), act(), nn.Linear(128, 128), act(), nn.Linear(128, 10)
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


def train(dataloader, model, loss_fn, optimizer, device) -> float:
    """One epoch; the mean loss per batch."""
    model.train()
    total = 0.0
    for X, y in dataloader:
        X, y = X.to(device), y.to(device)
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += loss.item()
    return total / len(dataloader)


def test(dataloader, model, loss_fn, device) -> tuple[float, float]:
    """(mean loss per batch, accuracy)."""
    size, num_batches = len(dataloader.dataset), len(dataloader)
    model.eval()
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for X, y in dataloader:
            X, y = X.to(device), y.to(device)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return test_loss / num_batches, correct / size


def main(root: str, epochs: int, batch_size: int, device: str, seeds: str = "0") -> None:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    training_data = datasets.MNIST(root=root, train=True, download=False, transform=ToTensor())
    test_data = datasets.MNIST(root=root, train=False, download=False, transform=ToTensor())
    train_dataloader = DataLoader(training_data, batch_size=batch_size, shuffle=True)
    test_dataloader = DataLoader(test_data, batch_size=batch_size)
    for seed in (int(s) for s in seeds.split(",")):
        for name, act in [("relu", nn.ReLU), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)]:
            torch.manual_seed(seed)
            model = NeuralNetwork(act).to(device)
            loss_fn = nn.CrossEntropyLoss()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            for _ in range(epochs):
                train(train_dataloader, model, loss_fn, optimizer, device)
                loss, acc = test(test_dataloader, model, loss_fn, device)
            print(f"{name} seed {seed}: test accuracy {100 * acc:.2f} %, loss {loss:.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], *sys.argv[5:6])
