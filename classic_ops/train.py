"""The main job: LeNet-5 trained on scikit-learn's bundled handwritten digits (8x8 images
brought to 32x32; nothing is downloaded), with classic_ops kernels for every convolution
and max-pool, or with native torch layers for comparison."""
import copy
import os
import sys
import time

import torch
import torch.nn.functional as F

from . import convert, revert
from .models import lenet5


def load_digits_32x32(test_fraction=0.2, seed=0):
    """(train_x, train_y, test_x, test_y): 1,797 digits, upsampled to 28x28 and padded to
    32x32 as LeNet-5 expects, standardized with the training set's statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.pad(F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False), (2, 2, 2, 2))
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(range(len(labels)), test_size=test_fraction,
                                           random_state=seed, stratify=labels.numpy())
    train_x, test_x = images[train_idx], images[test_idx]
    mean, std = train_x.mean(), train_x.std()
    return (train_x - mean) / std, labels[train_idx], (test_x - mean) / std, labels[test_idx]


def random_shift(images, generator, max_shift=2):
    """Moves each image by up to max_shift pixels in each direction (the background fills
    in): handwriting is never centred the same way twice."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=images.amin().item())
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


def _progress(done, total, text, width=30, stream=sys.stderr):
    filled = width * done // total
    stream.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}")
    if done == total:
        stream.write("\n")
    stream.flush()


def evaluate(model, x, y, batch_size=256):
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return (predictions == y).float().mean().item(), predictions


def confusion_matrix(predictions, labels, classes=10):
    matrix = torch.zeros(classes, classes, dtype=torch.long)
    matrix.index_put_((labels, predictions), torch.ones_like(labels), accumulate=True)
    return matrix


def format_confusion(matrix):
    lines = ["true \\ predicted " + " ".join(f"{c:>4}" for c in range(matrix.shape[1]))]
    lines += [f"{r:>16} " + " ".join(f"{v:>4}" for v in row.tolist()) for r, row in enumerate(matrix)]
    return "\n".join(lines)


def train(model, data, epochs=15, batch_size=32, lr=2e-3, seed=0, device="cpu", label="", show=True):
    """Adam with a cosine schedule and random shifts; returns (test accuracy, predictions,
    seconds, history)."""
    train_x, train_y, test_x, test_y = (t.to(device) for t in data)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = (len(train_x) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        total_loss = correct = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            logits = model(random_shift(train_x[batch], generator))
            loss = F.cross_entropy(logits, train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == train_y[batch]).sum().item()
            if show:
                _progress(step + 1, steps_per_epoch, f"{label} epoch {epoch}/{epochs} loss {loss.item():.4f}")
        test_accuracy, _ = evaluate(model, test_x, test_y)
        history.append((epoch, total_loss / len(train_x), correct / len(train_x), test_accuracy))
        if show:
            print(f"  {label} epoch {epoch:2d}: loss {history[-1][1]:.4f}  train acc {history[-1][2]:.4f}  "
                  f"test acc {test_accuracy:.4f}")
    seconds = time.perf_counter() - start
    accuracy, predictions = evaluate(model, test_x, test_y)
    return accuracy, predictions, seconds, history


def main(epochs=15, compare=False, checkpoint="checkpoints/lenet5_digits.pt", device=None, seed=0):
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    data = load_digits_32x32(seed=seed)
    print(f"LeNet-5 on scikit-learn digits: {len(data[0])} training and {len(data[2])} test images, "
          f"32x32, on {device} with {torch.get_num_threads()} threads")
    model = lenet5()
    initial_state = copy.deepcopy(model.state_dict())

    print("== classic_ops kernels for every convolution and max-pool")
    accuracy, predictions, seconds, history = train(model, data, epochs, seed=seed, device=device,
                                                    label="classic_ops")
    if checkpoint:
        os.makedirs(os.path.dirname(checkpoint) or ".", exist_ok=True)
        torch.save({"model": "lenet5", "state_dict": model.state_dict(), "test_accuracy": accuracy,
                    "history": history}, checkpoint)
        print(f"checkpoint saved to {checkpoint}")
    results = [("classic_ops", accuracy, seconds)]

    if compare:
        print("== native torch layers, same initial weights and batches")
        native = lenet5()
        native.load_state_dict(initial_state)
        revert(native)
        native_accuracy, _, native_seconds, _ = train(native, data, epochs, seed=seed, device=device,
                                                      label="native")
        results.append(("native torch", native_accuracy, native_seconds))
        convert(native)  # leaves the model as it came

    test_y = data[3]
    print("\nconfusion matrix of the classic_ops model on the test set:")
    print(format_confusion(confusion_matrix(predictions.cpu(), test_y)))
    print(f"\n{'layers':14} {'test accuracy':>14} {'train time':>11}")
    for name, acc, secs in results:
        print(f"{name:14} {acc:14.2%} {secs:10.1f}s")
    return results
